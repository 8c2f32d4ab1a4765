//! LoRA: fresh adapters change nothing, only the adapters and the head train, merged and
//! unmerged models agree, `undo` reverts `lora` and `lora merge`, the PEFT layout matches
//! what the real `peft` package writes and reads (tests/fixtures/tiny-peft, made by
//! tests/fixtures/make_peft_fixture.py), and on the real MiniLM weights and movie reviews
//! LoRA comes close to full fine-tuning while training well under 2% of the parameters.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use common::{asset, err, ok, render, tables};
use tunelab::data::Batch;
use tunelab::model::{Model, Pass};
use tunelab::{Event, Session};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-peft")
}

fn reference() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("reference.json")).unwrap()).unwrap()
}

/// The reference token ids as a batch (padding id 0 masked out).
fn reference_batch() -> Batch {
    let ids: Vec<Vec<u32>> = reference()["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect())
        .collect();
    let (b, l) = (ids.len(), ids[0].len());
    let mask: Vec<u32> = ids.concat().iter().map(|&t| u32::from(t != 0)).collect();
    Batch::Text {
        ids: Tensor::from_vec(ids.concat(), (b, l), &Device::Cpu).unwrap(),
        mask: Tensor::from_vec(mask, (b, l), &Device::Cpu).unwrap(),
        labels: None,
    }
}

/// The loaded model's logits on the reference batch, without dropout.
fn logits(s: &Session) -> Vec<Vec<f32>> {
    let model: &dyn Model = s.loaded_model().expect("a model is loaded");
    model.forward(&reference_batch(), &mut Pass::eval()).unwrap().to_vec2::<f32>().unwrap()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// A small labelled text file in the fixture's tiny vocabulary.
fn tiny_reviews(dir: &Path) -> String {
    let pos = ["the film was good", "a great , funny movie", "good acting !", "very funny and great"];
    let neg =
        ["a dull , very long plot", "the movie was bad", "not good but too long", "bad acting , dull plot"];
    let mut csv = String::from("text,label\n");
    for i in 0..12 {
        csv += &format!("\"{}\",pos\n\"{}\",neg\n", pos[i % 4], neg[i % 4]);
    }
    let path = dir.join("tiny.csv");
    std::fs::write(&path, csv).unwrap();
    path.display().to_string()
}

fn base_weights(s: &Session) -> HashMap<String, Vec<f32>> {
    s.weights()
        .unwrap()
        .into_iter()
        .filter(|(n, _)| !n.contains("lora_") && !n.starts_with("classifier"))
        .collect()
}

/// B starts at zero, so attaching LoRA changes no output; `fit` then trains only A, B and
/// the head, leaving every base weight bit-identical; merging folds the update in (outputs
/// agree to 1e-5); `lora off` computes as the base; `undo` reverts merge, fit and attach.
#[test]
fn lora_starts_as_the_base_trains_only_adapters_and_merges_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Session::new();
    let base = fixture().join("base");
    ok(&mut s, &format!("seed 5; data {} max_len=16; load {}", tiny_reviews(tmp.path()), base.display()));
    let before = logits(&s);
    ok(&mut s, "snapshot pre");
    let params_before = s.loaded_model().unwrap().params().len();
    let out = render(&ok(&mut s, "lora r=4 alpha=8 target=query,value"));
    assert!(out.contains("LoRA r=4 alpha=8 (scale 2) on 4 weight(s) (query, value), on"), "{out}");
    assert_eq!(logits(&s), before, "fresh adapters (B = 0) must leave the outputs bit-identical");
    let trainable: Vec<String> =
        s.loaded_model().unwrap().params().iter().filter(|p| p.trainable).map(|p| p.name.clone()).collect();
    assert_eq!(trainable.len(), 2 + 4 * 2, "{trainable:?}");
    assert!(trainable.iter().all(|n| n.contains(".lora_") || n.starts_with("classifier.")), "{trainable:?}");
    let shown = render(&ok(&mut s, "show params"));
    assert!(shown.contains("trainable") && shown.contains("LoRA r=4"), "{shown}");

    let frozen = base_weights(&s);
    ok(&mut s, "optimizer adamw lr=1e-2 weight_decay=0.01; fit epochs=2 batch=8");
    assert_eq!(base_weights(&s), frozen, "base weights must be bit-identical after fit");
    let trained = logits(&s);
    assert!(max_diff(&trained, &before) > 1e-3, "training changed nothing");
    let b = s
        .weights()
        .unwrap()
        .into_iter()
        .find(|(n, _)| n.ends_with("layer.0.attention.self.query.lora_B.weight"));
    assert!(b.unwrap().1.iter().any(|x| *x != 0.0), "B was not trained");

    // off → the base encoder (with the trained head); on → back exactly.
    ok(&mut s, "lora off");
    let off = logits(&s);
    assert!(max_diff(&off, &trained) > 1e-4);
    assert!(err(&mut s, "lora merge").contains("LoRA is off"));
    ok(&mut s, "lora on");
    assert_eq!(logits(&s), trained);

    let out = render(&ok(&mut s, "lora merge"));
    assert!(out.contains("merged LoRA into 4 weight(s)"), "{out}");
    let merged = logits(&s);
    let d = max_diff(&merged, &trained);
    println!("merged vs unmerged logits: max |Δ| = {d:e}");
    assert!(d <= 1e-5, "merged and unmerged differ by {d}");
    assert_eq!(s.loaded_model().unwrap().params().len(), params_before);
    assert!(s.loaded_model().unwrap().params().lora().is_none());

    // undo: merge, then the fit, then the attach.
    ok(&mut s, "undo");
    assert_eq!(logits(&s), trained);
    ok(&mut s, "undo");
    assert_eq!(logits(&s), before);
    ok(&mut s, "undo");
    assert!(s.loaded_model().unwrap().params().lora().is_none());
    assert_eq!(s.loaded_model().unwrap().params().len(), params_before);
    assert_eq!(logits(&s), before);
    // A snapshot taken before `lora` restores the plain model.
    ok(&mut s, "lora r=2; fit epochs=1 batch=8; restore pre");
    assert!(s.loaded_model().unwrap().params().lora().is_none());
    assert_eq!(logits(&s), before);
}

/// Bad `lora` commands fail in one line and change nothing.
#[test]
fn lora_errors_change_nothing() {
    let mut s = Session::new();
    assert!(err(&mut s, "lora").contains("no model loaded"));
    ok(&mut s, &format!("load {}", fixture().join("base").display()));
    let before = render(&ok(&mut s, "show params"));
    let e = err(&mut s, "lora target=qury");
    assert!(
        e.contains("no linear weight matches target 'qury'") && e.contains("did you mean 'query'"),
        "{e}"
    );
    assert!(err(&mut s, "lora target=classifier").contains("classifier head"));
    assert!(err(&mut s, "lora merge").contains("no LoRA to merge"));
    assert!(err(&mut s, "lora off").contains("no LoRA attached"));
    assert!(err(&mut s, "lora r=100").contains("more than the smallest targeted weight dimension (16)"));
    assert!(err(&mut s, "adapter size=100").contains("wider than the hidden states (16)"));
    assert_eq!(render(&ok(&mut s, "show params")), before);
    ok(&mut s, "lora r=2");
    let attached = render(&ok(&mut s, "show params"));
    assert!(err(&mut s, "lora r=4").contains("already attached"));
    assert!(err(&mut s, "lora merge r=4").contains("r= applies when attaching"));
    assert_eq!(render(&ok(&mut s, "show params")), attached);
    let e = err(&mut s, &format!("load {} base=x", fixture().join("base").display()));
    assert!(e.contains("base= applies to LoRA adapter directories"), "{e}");
}

/// An adapter written by the real peft package (r=4, alpha=8 on query/value, a trained
/// classifier in modules_to_save) loads on its base and gives peft's logits; `save` writes
/// it back in the same layout and names, and loading that gives identical logits.
#[test]
fn peft_adapters_load_with_peft_logits_and_round_trip() {
    let r = reference();
    let (adapter, base) = (fixture().join("adapter"), fixture().join("base"));
    let mut s = Session::new();
    // adapter_config.json names a base that is not here: the error says how to give it.
    let e = err(&mut s, &format!("load {}", adapter.display()));
    assert!(e.contains("base model 'tiny-peft-base' was not found") && e.contains("base=DIR"), "{e}");
    let out = render(&ok(&mut s, &format!("load {} base={}", adapter.display(), base.display())));
    assert!(out.contains("adapter: LoRA r=4 alpha=8 (scale 2) on 4 weight(s) (query, value), on"), "{out}");
    let want: Vec<Vec<f32>> = r["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect();
    let got = logits(&s);
    let d = max_diff(&got, &want);
    println!("tunelab vs peft logits: max |Δ| = {d:e}");
    assert!(d < 1e-4, "{got:?} vs peft {want:?}");
    // The session's predictions use the same model.
    let out = ok(&mut s, &format!("predict \"{}\"", r["texts"][0].as_str().unwrap()));
    let row = &tables(&out)[0].rows[0];
    let (l0, l1) = (want[0][0] as f64, want[0][1] as f64);
    let p_pos = 1.0 / (1.0 + (l0 - l1).exp());
    assert!((row[3].parse::<f64>().unwrap() - p_pos).abs() < 1e-4, "{row:?} vs p(pos) {p_pos}");

    // Save: the PEFT layout, with peft's tensor names and shapes.
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("adapter");
    let out = render(&ok(&mut s, &format!("save {}", out_dir.display())));
    assert!(out.contains("PEFT layout"), "{out}");
    assert!(!out_dir.join("model.safetensors").exists(), "a LoRA save writes the adapter only");
    let ours =
        candle_core::safetensors::load(out_dir.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    let theirs =
        candle_core::safetensors::load(adapter.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = ours.keys().collect();
    names.sort();
    let mut peft_names: Vec<&String> = theirs.keys().collect();
    peft_names.sort();
    assert_eq!(names, peft_names);
    assert!(names
        .contains(&&"base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight".to_string()));
    for (k, t) in &theirs {
        assert_eq!(ours[k].dims(), t.dims(), "{k}");
        let diff = (&ours[k] - t).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0, "{k} changed on the way through");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["task_type"], "SEQ_CLS");
    assert_eq!((cfg["r"].as_u64(), cfg["lora_alpha"].as_f64()), (Some(4), Some(8.0)));
    assert_eq!(cfg["target_modules"], serde_json::json!(["query", "value"]));
    assert_eq!(cfg["modules_to_save"], serde_json::json!(["classifier"]));
    assert_eq!(cfg["lora_dropout"].as_f64(), Some(0.1));
    assert!(cfg["base_model_name_or_path"].as_str().unwrap().ends_with("tiny-peft/base"), "{cfg}");

    // Load it back (the recorded base is found this time): identical logits.
    let mut t = Session::new();
    ok(&mut t, &format!("load {}", out_dir.display()));
    assert_eq!(logits(&t), got);
}

/// `save` of a model trained with LoRA in tunelab, then `load` in a new session: the same
/// logits, the base still frozen, and the training record (step, optimizer) resumed.
#[test]
fn lora_save_then_load_resumes_with_identical_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_reviews(tmp.path());
    let mut s = Session::new();
    ok(&mut s, &format!("seed 2; data {data} max_len=16; load {}", fixture().join("base").display()));
    ok(&mut s, "lora r=2 alpha=4 dropout=0.05 target=*.layer.1.*");
    ok(&mut s, "optimizer adam lr=5e-3; fit epochs=1 batch=8");
    let dir = tmp.path().join("run");
    ok(&mut s, &format!("save {}", dir.display()));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("adapter_config.json")).unwrap()).unwrap();
    // A glob target is written as the explicit list of adapted modules.
    let targets = cfg["target_modules"].as_array().unwrap();
    assert_eq!(targets.len(), 6, "{cfg}");
    assert!(targets.iter().all(|t| t.as_str().unwrap().starts_with("bert.encoder.layer.1.")));
    let mut t = Session::new();
    ok(&mut t, &format!("seed 2; data {data} max_len=16"));
    let out = render(&ok(&mut t, &format!("load {}", dir.display())));
    assert!(out.contains(&format!("resumed at step {}", s.history().step())), "{out}");
    assert_eq!(logits(&t), logits(&s));
    assert!(t.weights().unwrap() == s.weights().unwrap(), "the weights (or their order) differ after load");
    let frozen = |s: &Session| -> Vec<bool> {
        s.loaded_model().unwrap().params().iter().map(|p| p.trainable).collect()
    };
    assert_eq!(frozen(&t), frozen(&s));
    // Both go on identically.
    ok(&mut s, "fit epochs=1 batch=8");
    ok(&mut t, "fit epochs=1 batch=8");
    assert_eq!(logits(&t), logits(&s));
}

fn accuracy(events: &[Event]) -> f64 {
    let t = tables(events)[0];
    t.rows.iter().find(|r| r[0] == "accuracy").map(|r| r[3].parse().unwrap()).expect("an accuracy row")
}

/// Held-out accuracy of full fine-tuning on the same 300 test snippets, measured by
/// `tests/bert_session.rs::fine_tuning_minilm_on_movie_reviews_beats_the_bar` (seed 1, 2,000
/// snippets split 0.75/0.1/0.15, max_len=64, AdamW lr=5e-5, 2 epochs of batch 32: 0.8033 on
/// 2026-11-23). Not re-run here to keep this test's CPU time down.
const FULL_FINE_TUNING_ACCURACY: f64 = 0.8033;
/// How far below full fine-tuning LoRA may land (measured: 0.7767, 0.027 below).
const MARGIN: f64 = 0.05;

/// Walkthrough 4 on real weights: LoRA r=8 on query/value of the pretrained MiniLM, with a
/// fresh classification head, on the same 1,500 Rotten Tomatoes snippets and 300 held-out
/// ones as the full fine-tuning test. One epoch at lr 2e-3 (LoRA wants a larger rate than
/// full fine-tuning's 5e-5) keeps it near two CPU minutes; two epochs at 1e-3 gave 0.7733.
#[test]
fn lora_on_minilm_comes_close_to_full_fine_tuning_with_under_2_percent_trainable() {
    let mut s = Session::new();
    let reviews = asset("movie_reviews").join("reviews.csv");
    ok(&mut s, &format!("seed 1; data {} limit=2000 split=0.75/0.1/0.15 max_len=64", reviews.display()));
    ok(&mut s, &format!("load {} task=classify", asset("minilm").display()));
    let out = render(&ok(&mut s, "lora r=8 alpha=16 dropout=0.05 target=query,value"));
    let p = s.loaded_model().unwrap().params();
    let (trainable, total) = (p.trainable_numel(), p.numel());
    let fraction = trainable as f64 / total as f64;
    println!("{out}");
    ok(&mut s, "optimizer adamw lr=2e-3 weight_decay=0.01; fit epochs=1 batch=32");
    let events = ok(&mut s, "eval");
    let acc = accuracy(&events);
    println!("{}", render(&events));
    println!(
        "LoRA held-out accuracy {acc:.4} training {trainable}/{total} parameters ({:.2}%); \
         full fine-tuning {FULL_FINE_TUNING_ACCURACY:.4} training 100%; margin {MARGIN}",
        100.0 * fraction
    );
    assert!(fraction < 0.02, "LoRA trains {:.2}% of the parameters", 100.0 * fraction);
    assert!(
        acc >= FULL_FINE_TUNING_ACCURACY - MARGIN,
        "LoRA accuracy {acc} is more than {MARGIN} below full fine-tuning's {FULL_FINE_TUNING_ACCURACY}"
    );
}

/// Bottleneck adapters (`adapter size=N`): the identity at first, only they and the head
/// train, the base stays bit-identical, `save` → `load` gives the same logits and `undo`
/// removes them.
#[test]
fn bottleneck_adapters_start_as_identity_train_alone_and_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_reviews(tmp.path());
    let mut s = Session::new();
    ok(&mut s, &format!("seed 4; data {data} max_len=16; load {}", fixture().join("base").display()));
    let before = logits(&s);
    let out = render(&ok(&mut s, "adapter size=4"));
    assert!(out.contains("bottleneck adapters of size 4") && out.contains("4 site(s)"), "{out}");
    assert_eq!(logits(&s), before, "fresh adapters (up = 0) must leave the outputs bit-identical");
    assert!(err(&mut s, "lora").contains("one method at a time"));
    let frozen = base_weights(&s);
    let adapters =
        |s: &Session| s.weights().unwrap().into_iter().filter(|(n, _)| n.contains(".adapter.")).count();
    assert_eq!(adapters(&s), 4 * 4);
    ok(&mut s, "optimizer adam lr=1e-2; fit epochs=2 batch=8");
    let frozen_after: HashMap<String, Vec<f32>> =
        base_weights(&s).into_iter().filter(|(n, _)| !n.contains(".adapter.")).collect();
    let frozen: HashMap<String, Vec<f32>> =
        frozen.into_iter().filter(|(n, _)| !n.contains(".adapter.")).collect();
    assert_eq!(frozen_after, frozen, "base weights must be bit-identical after fit");
    let trained = logits(&s);
    assert!(max_diff(&trained, &before) > 1e-4);
    let dir = tmp.path().join("adapted");
    let out = render(&ok(&mut s, &format!("save {}", dir.display())));
    assert!(out.contains("adapters.safetensors") && dir.join("adapters.safetensors").is_file(), "{out}");
    let base_file = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(base_file.keys().all(|k| !k.contains(".adapter.")), "model.safetensors keeps the base layout");
    let mut t = Session::new();
    ok(&mut t, &format!("seed 4; data {data} max_len=16; load {}", dir.display()));
    assert_eq!(logits(&t), trained);
    assert_eq!(adapters(&t), 4 * 4);
    assert!(render(&ok(&mut t, "adapter")).contains("size 4 at 4 site(s)"));
    ok(&mut s, "undo; undo");
    assert_eq!(adapters(&s), 0);
    assert_eq!(logits(&s), before);
}

/// Prompt tuning: a peft PROMPT_TUNING adapter (3 virtual tokens and a head) gives peft's
/// logits, saves back in the same layout and round-trips; `prompt tuning` in tunelab trains
/// only the virtual tokens and the head, and `undo` removes them.
#[test]
fn prompt_tuning_matches_peft_trains_alone_and_round_trips() {
    let r = reference();
    let (adapter, base) = (fixture().join("prompt"), fixture().join("base"));
    let mut s = Session::new();
    let out = render(&ok(&mut s, &format!("load {} base={}", adapter.display(), base.display())));
    assert!(out.contains("prompt tuning with 3 virtual tokens"), "{out}");
    let want: Vec<Vec<f32>> = r["prompt_logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect();
    let got = logits(&s);
    let d = max_diff(&got, &want);
    println!("tunelab vs peft prompt-tuning logits: max |Δ| = {d:e}");
    assert!(d < 1e-4, "{got:?} vs peft {want:?}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prompt");
    ok(&mut s, &format!("save {}", dir.display()));
    let ours = candle_core::safetensors::load(dir.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    let theirs =
        candle_core::safetensors::load(adapter.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    let (mut a, mut b): (Vec<&String>, Vec<&String>) = (ours.keys().collect(), theirs.keys().collect());
    a.sort();
    b.sort();
    assert_eq!(a, b);
    let mut t = Session::new();
    ok(&mut t, &format!("load {}", dir.display()));
    assert_eq!(logits(&t), got);

    // Training a fresh prompt in tunelab.
    let mut s = Session::new();
    ok(&mut s, &format!("seed 6; data {} max_len=16; load {}", tiny_reviews(tmp.path()), base.display()));
    let before = logits(&s);
    let frozen = base_weights(&s);
    let out = render(&ok(&mut s, "prompt tuning tokens=3"));
    assert!(out.contains("3 virtual tokens"), "{out}");
    assert!(err(&mut s, "lora").contains("one method at a time"));
    ok(&mut s, "optimizer adam lr=1e-2; fit epochs=2 batch=8");
    let after: HashMap<String, Vec<f32>> =
        base_weights(&s).into_iter().filter(|(n, _)| n != "prompt_embeddings").collect();
    assert_eq!(after, frozen, "base weights must be bit-identical after fit");
    assert!(max_diff(&logits(&s), &before) > 1e-4);
    ok(&mut s, "undo; undo");
    assert!(s.loaded_model().unwrap().params().prompt_tokens().is_none());
    assert_eq!(logits(&s), before);
}
