//! The tutorials' scripts (`tutorials/NN-name/NN-name.tune`), run with `tunelab run` as a
//! reader would, in their quick setting: each one's stated outcome holds and its plots are
//! non-empty PNG images. (tests/kernel/test_notebook.py executes the notebooks.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the tutorials name the assets; tests run them from `$TUNELAB_ASSETS` when it is set.
const ASSETS: &str = "~/.cache/tunelab/assets";

/// Runs a tutorial's script in a fresh folder (plots land in its `plots/`); returns the folder
/// and stdout, after checking the script exits 0.
fn run_tutorial(name: &str) -> (tempfile::TempDir, String) {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tutorials").join(name).join(format!("{name}.tune"));
    let dir = tempfile::tempdir().unwrap();
    let mut source = std::fs::read_to_string(&script).unwrap();
    if source.contains(ASSETS) {
        // Fetched assets (this panics with the fix when they are not), wherever they live.
        let root = common::asset("smollm2").parent().unwrap().to_path_buf();
        source = source.replace(ASSETS, &root.display().to_string());
    }
    let script = dir.path().join(format!("{name}.tune"));
    std::fs::write(&script, source).unwrap();
    // Data files a tutorial keeps beside its script (read by relative path).
    for f in std::fs::read_dir(script_dir(name)).unwrap().flatten() {
        let p = f.path();
        if p.extension().is_some_and(|e| e == "jsonl" || e == "txt") {
            std::fs::copy(&p, dir.path().join(f.file_name())).unwrap();
        }
    }
    let o = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .arg("run")
        .arg(&script)
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("CANDLE_NUM_THREADS", "1")
        .env("TUNELAB_HISTORY", dir.path().join("history"))
        .output()
        .expect("the binary runs");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{name}.tune failed:\n{out}\n{err}");
    (dir, out)
}

/// The regression `eval` tables of a script's output, in order: row name → (learned, closed form).
fn regression_evals(out: &str) -> Vec<Vec<(String, f64, f64)>> {
    let mut evals = Vec::new();
    let mut lines = out.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with("eval on ") {
            continue;
        }
        let mut rows = Vec::new();
        for row in lines.by_ref() {
            if row.starts_with("the learned") {
                break;
            }
            let words: Vec<&str> = row.split_whitespace().collect();
            if let [name @ .., a, b] = words.as_slice() {
                if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                    rows.push((name.join(" "), a, b));
                }
            }
        }
        evals.push(rows);
    }
    evals
}

fn row(eval: &[(String, f64, f64)], name: &str) -> (f64, f64) {
    let r = eval.iter().find(|r| r.0 == name).unwrap_or_else(|| panic!("no row {name} in {eval:?}"));
    (r.1, r.2)
}

/// The folder of tutorial `name`.
fn script_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tutorials").join(name)
}

/// A non-empty PNG at `path`.
fn assert_png(path: PathBuf) {
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.len() > 1000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
}

#[test]
fn tutorial_05_linear_regression_recovers_the_line_and_tells_the_three_stages() {
    let (dir, out) = run_tutorial("05-linear-regression");
    // Single updates, shown in full.
    assert_eq!(out.matches("update = −lr × gradient").count(), 3, "{out}");
    // The loss after every one of the 100 epochs, then the test loss.
    assert!(out.contains("epoch   1/100") && out.contains("epoch 100/100"), "{out}");
    let evals = regression_evals(&out);
    assert_eq!(evals.len(), 5, "five evals: {out}");

    // Stage 1: SGD recovers y = 3x + 2 and lands on the closed-form fit.
    let (w, w_exact) = row(&evals[0], "w");
    let (b, b_exact) = row(&evals[0], "b");
    assert!((w - 3.0).abs() < 0.05 && (b - 2.0).abs() < 0.05, "w={w} b={b}");
    assert!((w - w_exact).abs() < 0.01 && (b - b_exact).abs() < 0.01, "{:?}", evals[0]);
    let (mse, mse_exact) = row(&evals[0], "test MSE");
    assert!(mse < 1.01 * mse_exact && mse < 0.02, "test MSE {mse} vs closed form {mse_exact}");

    // Stage 2: adapting to the shifted line lowers its test loss.
    let before = row(&evals[1], "test MSE").0;
    let adapted = row(&evals[2], "test MSE").0;
    assert!(adapted < 0.1 * before && adapted < 0.02, "adaptation: {before} → {adapted}");
    // Stage 3: fine-tuning from the adapted weights beats the same budget from scratch.
    let finetuned = row(&evals[3], "test MSE").0;
    let scratch = row(&evals[4], "test MSE").0;
    assert!(finetuned < 0.5 * scratch, "fine-tuned {finetuned} vs from scratch {scratch}");

    for plot in ["loss", "surface", "fit"] {
        assert_png(dir.path().join("plots").join(format!("{plot}.png")));
    }
}

/// The train loss of `epoch E/N` lines for a fit of N epochs.
fn train_losses(out: &str, epochs: usize) -> Vec<f64> {
    let tail = format!("/{epochs}  train loss ");
    out.lines()
        .filter(|l| l.starts_with("epoch") && l.contains(&tail))
        .map(|l| l.split(&tail).nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn tutorial_06_learning_rates_momentum_and_divergence() {
    let (dir, out) = run_tutorial("06-teaching-gradient-descent");
    let evals = regression_evals(&out);
    assert_eq!(evals.len(), 5, "{out}");
    let mse = |i: usize| row(&evals[i], "test MSE");
    // lr 0.01: too small, far from the answer after 30 steps.
    assert!(row(&evals[0], "w").0 < 2.0 && mse(0).0 > 1.0, "{:?}", evals[0]);
    // lr 0.5: on the closed-form optimum.
    let (w, w_exact) = row(&evals[1], "w");
    assert!((w - w_exact).abs() < 1e-3 && (w - 3.0).abs() < 0.05, "{:?}", evals[1]);
    // lr 0.9: zigzags but converges.
    assert!(mse(2).0 < 1.1 * mse(2).1, "{:?}", evals[2]);
    // lr 1.1: the loss grows, finite, over 12 steps.
    let diverging = train_losses(&out, 12);
    let (first, last) = (diverging[0], *diverging.last().unwrap());
    assert!(last.is_finite() && last > 50.0 * first, "lr 1.1 losses {diverging:?}");
    // Momentum: the same 50 steps at lr 0.01 get at least 10× closer.
    assert!(mse(4).0 < 0.1 * mse(3).0, "plain {:?} vs momentum {:?}", evals[3], evals[4]);
    // The overflowing case is notebook-only: the script itself ran to the end without it.
    assert!(!out.contains("became inf"), "{out}");
    for plot in ["loss", "surface"] {
        assert_png(dir.path().join("plots").join(format!("{plot}.png")));
    }
}

/// The value of a one-column `eval` table's `perplexity` rows, in order.
fn perplexities(out: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| l.strip_prefix("perplexity"))
        .map(|v| v.trim().parse().unwrap_or_else(|_| panic!("perplexity {v}")))
        .collect()
}

#[test]
fn tutorial_03_light_fine_tuning_of_smollm2_on_poems_halves_perplexity() {
    let (dir, out) = run_tutorial("03-gpt2-poetry");
    assert!(
        out.contains("trainable 7080768/134515008 parameters (5.3%)"),
        "last 2 blocks + final norm: {out}"
    );
    let ppl = perplexities(&out);
    assert_eq!(ppl.len(), 3, "before, after, GPT-2: {out}");
    let (before, after) = (ppl[0], ppl[1]);
    println!("SmolLM2, quick setting: valid perplexity {before:.2} → {after:.2}");
    assert!(before > 60.0 && after < 0.75 * before, "valid perplexity {before} → {after}");
    // The before/after table, both continuing the prompt.
    assert!(out.contains("snapshot 'before' (step 0)") && out.contains("now (step 11)"), "{out}");
    assert!(out.matches("床前明月光，").count() >= 3, "a sample before and both sides of compare: {out}");
    // The GPT-2 path: random weights, real tokenizer, the same commands run.
    assert!(out.contains("model: GPT-2 4 layers") && ppl[2].is_finite(), "{out}");
    assert_png(dir.path().join("plots/loss.png"));
}

/// Tutorial 7, the FAQ remedies: long reviews are cut into windows, the teacher learns the
/// word task, the student distilled with a transfer set beats the student alone by more than
/// 0.05 (measured +0.18 with the fused kernels, +0.11 with the composite ops), LoRA on a q8_0
/// base learns it too, and `eval generate`
/// scores a tiny GPT-2 higher once it has learnt the references; MAE is reported.
#[test]
fn tutorial_07_remedies_each_run_and_show_their_effect() {
    let (_dir, out) = run_tutorial("07-remedies");
    assert!(out.contains("split into overlapping windows (stride=8): 786 windows for 600 texts"), "{out}");
    let accuracies: Vec<f64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("eval on test (300 rows)"))
        .map(|l| l.split("accuracy ").nth(1).unwrap()[..6].parse().unwrap())
        .collect();
    let [teacher, alone, distilled, adalora, quantized] = accuracies[..] else {
        panic!("five evals on the word task: {out}")
    };
    assert!(teacher > 0.8 && alone > 0.6 && distilled > alone + 0.05 && adalora > 0.7, "{accuracies:?}");
    // LoRA on a q8_0 base learns the word task as on an f32 one (measured 0.877 vs 0.873).
    let q8_row = out.lines().any(|l| l.starts_with("frozen weights") && l.contains(" q8_0 "));
    assert!(quantized > 0.8 && q8_row, "{accuracies:?}\n{out}");
    assert!(out.contains("falls from 16 to budget=6") && out.contains("frozen weights"), "{out}");
    let bleu: Vec<f64> =
        out.lines().filter_map(|l| l.strip_prefix("BLEU ")).filter_map(|l| l.trim().parse().ok()).collect();
    assert!(bleu.len() == 2 && bleu[1] > bleu[0] + 10.0, "{bleu:?}");
    assert!(out.contains("test MAE"), "{out}");
}

/// Each classification `eval` line of a script's output, in order: (accuracy, loss).
fn classification_evals(out: &str) -> Vec<(f64, f64)> {
    out.lines()
        .filter(|l| l.starts_with("eval on ") && l.contains(": accuracy "))
        .map(|l| {
            let tail = l.split(": accuracy ").nth(1).unwrap();
            let (acc, loss) = tail.split_once(", loss ").unwrap();
            (acc.trim().parse().unwrap(), loss.trim().parse().unwrap())
        })
        .collect()
}

#[test]
fn tutorial_04_minilm_on_movie_reviews_reports_per_class_and_runs_the_demos() {
    let (dir, out) = run_tutorial("04-bert-imdb-sentiment");
    let evals = classification_evals(&out);
    assert_eq!(evals.len(), 1, "{out}");
    let (acc, loss) = evals[0];
    println!("MiniLM, quick setting: test accuracy {acc:.4}, loss {loss:.4} (bar 0.65; majority class 0.53)");
    // 270 held-out reviews, 53% positive: well above the majority class, loss below log 2.
    assert!(acc >= 0.65 && loss < 0.66, "test accuracy {acc}, loss {loss}");
    for row in ["neg ", "pos ", "macro avg", "weighted avg"] {
        assert!(out.lines().any(|l| l.starts_with(row)), "report row {row}: {out}");
    }
    // Warm-up then linear decay, AdamW's decoupled weight decay.
    assert!(
        out.contains("lr 0.0002 schedule=linear warmup=0.1") && out.contains("weight_decay=0.01"),
        "{out}"
    );
    // Gradient accumulation, undone; LoRA trains a third of a percent.
    assert!(out.contains("undid `fit steps=2 batch=8 accumulate=2`: back to step 34"), "{out}");
    assert!(out.contains("(0.33%) parameters trainable") && out.contains("fit: 4 steps"), "{out}");
    for plot in ["loss", "lr", "confusion"] {
        assert_png(dir.path().join("plots").join(format!("{plot}.png")));
    }
}

#[test]
fn tutorial_02_full_fine_tuning_beats_head_only_and_the_saved_model_predicts_the_same() {
    let (dir, out) = run_tutorial("02-bert-full-vs-partial");
    let evals = classification_evals(&out);
    assert_eq!(evals.len(), 3, "full, head-only, the deployed model: {out}");
    let ((full, _), (head, _), deployed) = (evals[0], evals[1], evals[2]);
    println!("test accuracy: full fine-tuning {full:.4}, head only {head:.4}");
    assert!(full >= 0.65 && full > head + 0.1, "full {full} vs head-only {head}");
    // Only the classifier trained in the second run.
    assert!(out.contains("trainable 770/22713986 parameters"), "{out}");
    // The side-by-side table and the overlay.
    assert!(out.contains("the runs side by side"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("head ") && l.contains("770 (0.0%)")), "{out}");
    assert_png(dir.path().join("plots/loss-compare.png"));
    // Deploy: the saved model, loaded back, gives the same test results and predicts.
    assert_eq!(deployed, evals[0], "save → load changed the model");
    assert!(dir.path().join("reviews-classifier/config.json").exists());
    let predicted: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("a gripping") || l.starts_with("dull, lifeless"))
        .map(|l| l.split_whitespace().rev().nth(2).unwrap())
        .collect();
    assert_eq!(predicted, ["pos", "neg"], "{out}");
}

/// The masked-LM `eval` losses of a script's output, in order.
fn mlm_losses(out: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| l.strip_prefix("masked-LM loss"))
        .map(|v| v.trim().parse().unwrap_or_else(|_| panic!("masked-LM loss {v}")))
        .collect()
}

#[test]
fn tutorial_01_chinese_bert_pretrains_by_masked_lm_and_the_faq_runs_tell_their_story() {
    let (dir, out) = run_tutorial("01-bert-chinese");
    // Cleaning (duplicates dropped and counted), labels from the file names, augmentation.
    assert!(out.contains("labels neg → 0, pos → 1") && out.contains("duplicate text"), "{out}");
    assert!(out.contains("700 augmented copies"), "{out}");
    // Masked-LM pretraining with the bert-base-chinese vocabulary lowers the loss by 3 nats.
    let mlm = mlm_losses(&out);
    assert_eq!(mlm.len(), 2, "{out}");
    println!("masked-LM valid loss {:.3} → {:.3}", mlm[0], mlm[1]);
    assert!(mlm[0] > 9.5 && mlm[0] - mlm[1] >= 3.0, "{mlm:?}");
    let evals = classification_evals(&out);
    let acc: Vec<f64> = evals.iter().map(|e| e.0).collect();
    println!("test accuracies: {acc:?}");
    // frozen (pretrained), unfrozen (pretrained), Adam 1e-3, Adam 1e-4, early stopping,
    // L2 + dropout, SGD, RMSProp.
    assert_eq!(acc.len(), 8, "{out}");
    let (adam, adam_small, early, sgd) = (acc[2], acc[3], acc[4], acc[6]);
    assert!(acc[0] < 0.6, "frozen lower layers of a barely-pretrained model stay near chance: {acc:?}");
    assert!(adam >= 0.65, "Adam 1e-3 from random weights: {adam} (bar 0.65, 200 test reviews)");
    assert!(adam > adam_small + 0.1 && adam > sgd + 0.1, "Adam 1e-3 {adam} vs 1e-4 {adam_small}, SGD {sgd}");
    // Early stopping stopped before the 4 epochs and kept the best epoch's weights.
    assert!(out.contains("early stopping after") && out.contains("restored the weights of epoch"), "{out}");
    assert!(early >= 0.65, "early stopping {early}");
    assert!(out.contains("regularize l1=0 l2=0.0001") && out.contains("dropout 0.3"), "{out}");
    assert_eq!(out.matches("the runs side by side").count(), 2, "{out}");
    assert_png(dir.path().join("plots/loss-compare.png"));
}
