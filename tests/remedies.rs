//! The remedies of the walkthroughs' FAQs, each shown to change the outcome in the expected
//! direction on real or synthetic data (issue 13).

mod common;

use std::path::Path;

use common::{asset, cell, ok, render, tables};
use tunelab::data::TextTable;
use tunelab::Session;

/// Writes `(text, label)` rows as jsonl.
fn write_jsonl(path: &Path, rows: &[(String, String)]) {
    let lines: Vec<String> =
        rows.iter().map(|(t, l)| serde_json::json!({ "text": t, "label": l }).to_string()).collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// The real movie-review snippets, positives and negatives apart, in file order.
fn reviews_by_label() -> (Vec<String>, Vec<String>) {
    let table = TextTable::read(&asset("movie_reviews").join("reviews.csv")).unwrap();
    let texts = table.column_values(table.column("text").unwrap());
    let labels = table.column_values(table.column("label").unwrap());
    let pick = |want: &str| -> Vec<String> {
        texts.iter().zip(&labels).filter(|(_, l)| *l == want).map(|(t, _)| t.clone()).collect()
    };
    (pick("pos"), pick("neg"))
}

/// Class imbalance: on a 1:6 slice of the sentiment data (40 positive, 240 negative
/// snippets for training; a balanced held-out set of 100 + 100), MiniLM fine-tuned with
/// plain cross-entropy finds few positives; `loss weights=auto` raises the positive
/// (minority) recall. The lower four of six encoder layers are frozen to keep it quick.
#[test]
fn weighted_loss_raises_minority_recall_on_imbalanced_reviews() {
    let dir = tempfile::tempdir().unwrap();
    let (pos, neg) = reviews_by_label();
    // Positives come first in the file and negatives after: take from spread-out places.
    let every = |v: &[String], n: usize, offset: usize| -> Vec<String> {
        let step = v.len() / (n + 1);
        (0..n).map(|i| v[offset + i * step].clone()).collect()
    };
    let lab = |v: Vec<String>, l: &str| v.into_iter().map(|t| (t, l.to_string())).collect::<Vec<_>>();
    let mut train = lab(every(&pos, 40, 0), "pos");
    train.extend(lab(every(&neg, 240, 0), "neg"));
    let mut test = lab(every(&pos, 100, 7), "pos");
    test.extend(lab(every(&neg, 100, 7), "neg"));
    let (train_file, test_file) = (dir.path().join("train.jsonl"), dir.path().join("test.jsonl"));
    write_jsonl(&train_file, &train);
    write_jsonl(&test_file, &test);

    let run = |weights: &str| -> (f64, f64, String) {
        let mut s = Session::new();
        let data = ok(
            &mut s,
            &format!(
                "seed 5; data {} test={} split=1/0 max_len=48",
                train_file.display(),
                test_file.display()
            ),
        );
        let shown = render(&ok(&mut s, "show data"));
        assert!(shown.contains("imbalanced (neg 240, pos 40, ratio 1:6.0)"), "{shown}");
        assert!(render(&data).contains("remedies: `loss weights=auto`"), "{}", render(&data));
        ok(&mut s, &format!("load {} task=classify", asset("minilm").display()));
        ok(&mut s, "freeze embeddings layers=0..4");
        ok(&mut s, &format!("loss weights={weights}; optimizer adamw lr=3e-4; fit epochs=3 batch=16"));
        let out = ok(&mut s, "eval");
        let report = tables(&out)[0];
        (cell(report, "pos", 2), cell(report, "neg", 2), render(&out))
    };
    let (plain_pos, plain_neg, plain) = run("none");
    let (weighted_pos, weighted_neg, weighted) = run("auto");
    println!("unweighted:\n{plain}\nweighted (auto):\n{weighted}");
    println!(
        "minority (pos) recall: unweighted {plain_pos:.3}, weighted {weighted_pos:.3}; \
         majority (neg) recall: unweighted {plain_neg:.3}, weighted {weighted_neg:.3}"
    );
    assert!(
        weighted_pos >= plain_pos + 0.15,
        "weighted loss should raise the minority recall by 0.15 or more: {plain_pos} → {weighted_pos}"
    );
}

/// `balance=` evens out the training labels only; valid and test keep their real ratio.
#[test]
fn balance_resamples_the_training_split_only() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<(String, String)> = (0..120)
        .map(|i| (format!("text number {i}"), (if i % 6 == 0 { "pos" } else { "neg" }).to_string()))
        .collect();
    let file = dir.path().join("d.jsonl");
    write_jsonl(&file, &rows);
    for how in ["oversample", "undersample"] {
        let mut s = Session::new();
        let out = render(&ok(&mut s, &format!("data {} split=0.5/0.25/0.25 balance={how}", file.display())));
        assert!(out.contains(&format!("train {how}d from 60 to")), "{out}");
        assert!(!out.contains("imbalanced"), "balanced train split: {out}");
        let t = render(&ok(&mut s, "show data"));
        println!("{how}:\n{t}");
        let shown = tables(&ok(&mut s, "show data"))[0].clone();
        let train = &shown.rows[0];
        assert_eq!(train[1].split(' ').next(), train[2].split(' ').next(), "{how}: {t}");
        let valid_total: usize = shown.rows[1][3].parse().unwrap();
        assert_eq!(valid_total, 30, "valid untouched");
    }
}

/// `eval` of a regression reports the MAE beside the MSE, for the learned and the
/// closed-form fit, and records it in the history. With Gaussian noise of σ = 0.5 the
/// best possible MAE is σ·√(2/π) ≈ 0.399.
#[test]
fn regression_eval_reports_mae() {
    let mut s = Session::new();
    ok(&mut s, "seed 2; data synthetic linear n=4000 w=3 b=2 noise=0.5; load linear");
    ok(&mut s, "optimizer sgd lr=0.1; fit epochs=20 batch=64");
    let out = ok(&mut s, "eval");
    let t = tables(&out)[0];
    let (learned, closed) = (cell(t, "test MAE", 1), cell(t, "test MAE", 2));
    let expected = 0.5 * (2.0 / std::f64::consts::PI).sqrt();
    println!(
        "{}\ntest MAE learned {learned:.4}, closed form {closed:.4}, σ√(2/π) = {expected:.4}",
        render(&out)
    );
    assert!((closed - expected).abs() < 0.05, "closed-form MAE {closed} vs {expected}");
    assert!((learned - closed).abs() < 0.01, "learned MAE {learned} vs closed form {closed}");
    let history = render(&ok(&mut s, "show history"));
    assert!(history.contains("mae"), "{history}");
}
