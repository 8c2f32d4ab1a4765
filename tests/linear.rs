//! The teaching case end to end: linear regression by SGD (walkthrough 5).

mod common;

use common::{cell, err, ok, render, tables, weights};
use tunelab::{Event, Session};

const SETUP: &str = "data synthetic linear n=1000 w=3 b=2 noise=0.1; load linear; optimizer sgd lr=0.01";

#[test]
fn sgd_converges_to_the_closed_form_answer() {
    for seed in [42, 7, 2024] {
        let mut s = Session::new();
        ok(&mut s, &format!("seed {seed}; {SETUP}"));
        ok(&mut s, "fit epochs=100");
        let w = weights(&s);
        let (wv, bv) = (w[0].1[0] as f64, w[1].1[0] as f64);
        assert!((wv - 3.0).abs() < 0.1, "seed {seed}: w = {wv}");
        assert!((bv - 2.0).abs() < 0.1, "seed {seed}: b = {bv}");
        // On the training split the closed form is the exact optimum.
        let out = ok(&mut s, "eval split=train");
        let t = tables(&out)[0];
        let (learned, closed) = (cell(t, "train MSE", 1), cell(t, "train MSE", 2));
        assert!(learned >= closed * (1.0 - 1e-6), "seed {seed}: SGD {learned} beat least squares {closed}");
        assert!(learned <= closed * 1.05, "seed {seed}: learned MSE {learned} is not within 5% of {closed}");
        // Learned and closed-form parameters agree too.
        assert!((cell(t, "w", 1) - cell(t, "w", 2)).abs() < 0.05, "{}", t.to_text());
        assert!((cell(t, "b", 1) - cell(t, "b", 2)).abs() < 0.05, "{}", t.to_text());
        // One loss line per epoch.
        assert_eq!(s.history().epoch(), 100);
    }
}

#[test]
fn fit_prints_the_loss_of_every_epoch_and_it_falls() {
    let mut s = Session::new();
    ok(&mut s, SETUP);
    let out = ok(&mut s, "fit epochs=20");
    let lines: Vec<String> = out
        .iter()
        .filter_map(|e| match e {
            Event::Text(t) if t.starts_with("epoch") => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(lines.len(), 20, "{lines:?}");
    let loss = |l: &str| -> f64 {
        l.split("train loss ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(loss(&lines[19]) < loss(&lines[0]) / 10.0, "{lines:?}");
    let e = &s.history().epochs;
    assert!(e.iter().all(|r| r.valid_loss.is_some() && r.complete));
}

#[test]
fn undo_returns_the_exact_previous_weights_and_state() {
    let mut s = Session::new();
    ok(&mut s, SETUP);
    ok(&mut s, "fit epochs=2");
    let before = weights(&s);
    let steps_before = s.history().step();
    ok(&mut s, "fit epochs=3");
    let after_first = weights(&s);
    assert_ne!(before, after_first);
    ok(&mut s, "undo");
    assert_eq!(weights(&s), before, "undo must restore bit-identical weights");
    assert_eq!(s.history().step(), steps_before);
    // The optimizer state and random generator came back too: the same fit gives the same result.
    ok(&mut s, "fit epochs=3");
    assert_eq!(weights(&s), after_first);
    // step is undoable as well, and undo with nothing left says so.
    ok(&mut s, "undo; undo");
    assert!(err(&mut s, "undo").contains("nothing to undo"));
}

/// `undo` walks back through the last five fits, one at a time and exactly; the sixth
/// has nothing left (the oldest entries were dropped as newer ones came).
#[test]
fn undo_goes_back_five_fits_and_no_further() {
    let mut s = Session::new();
    ok(&mut s, SETUP);
    let mut before = Vec::new();
    for _ in 0..7 {
        before.push(weights(&s));
        ok(&mut s, "fit epochs=1");
    }
    for expected in before.iter().rev().take(5) {
        ok(&mut s, "undo");
        assert_eq!(&weights(&s), expected);
    }
    assert!(err(&mut s, "undo").contains("nothing to undo"));
}

#[test]
fn step_shows_parameters_gradients_and_the_update() {
    let mut s = Session::new();
    ok(&mut s, &format!("{SETUP}; batch 1000"));
    let w0 = weights(&s);
    let out = ok(&mut s, "step");
    let t = tables(&out)[0];
    assert_eq!(t.columns, ["param", "value", "gradient", "update", "new value"]);
    for (row, w) in [("w", w0[0].1[0]), ("b", w0[1].1[0])] {
        let (value, grad, update, new) = (cell(t, row, 1), cell(t, row, 2), cell(t, row, 3), cell(t, row, 4));
        assert!((value - w as f64).abs() < 1e-5, "{row}: shown value {value} vs weight {w}");
        assert!((update + 0.01 * grad).abs() < 1e-6 * grad.abs().max(1.0), "{row}: update = -lr * grad");
        assert!((new - value - update).abs() < 1e-5, "{row}: new = value + update");
    }
    // dL/dw for MSE of y≈wx+b is -2·mean((y - ŷ)·x): w starts far below 3, so it is negative.
    assert!(cell(t, "w", 2) < 0.0);
    assert_eq!(s.history().step(), 1);
    assert!(render(&out).contains("update = −lr × gradient"));
    let grads = render(&ok(&mut s, "show grads"));
    assert!(grads.contains("weight") && grads.contains("bias"), "{grads}");
}

#[test]
fn every_optimizer_and_schedule_trains_the_linear_model() {
    for opt in [
        "sgd lr=0.05 momentum=0.9",
        "sgd lr=0.05 momentum=0.9 nesterov=true",
        "adam lr=0.05",
        "adamw lr=0.05",
        "rmsprop lr=0.01",
    ] {
        let mut s = Session::new();
        ok(&mut s, &format!("{SETUP}; optimizer {opt}; lr schedule=cosine warmup=0.1"));
        ok(&mut s, "fit epochs=30");
        let w = weights(&s);
        assert!((w[0].1[0] - 3.0).abs() < 0.15 && (w[1].1[0] - 2.0).abs() < 0.15, "{opt}: {w:?}");
        let lrs: Vec<f64> = s.history().steps.iter().map(|r| r.lr).collect();
        let peak = lrs.iter().cloned().fold(0.0, f64::max);
        assert!(lrs[0] < peak / 10.0 && *lrs.last().unwrap() < peak / 100.0, "{opt}: warm-up then decay");
    }
}

#[test]
fn several_inputs_and_csv_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("houses.csv");
    let mut csv = String::from("area,rooms,noise_col,price\n");
    for i in 0..400 {
        let (a, r) = ((i % 37) as f64 / 10.0, (i % 5) as f64);
        csv += &format!("{a},{r},{},{}\n", i % 3, 1.5 * a - 2.0 * r + 0.5);
    }
    std::fs::write(&path, csv).unwrap();
    let mut s = Session::new();
    let out = ok(
        &mut s,
        &format!(
            "data {} x=area,rooms y=price split=0.8/0.2; load linear; optimizer adam lr=0.05",
            path.display()
        ),
    );
    assert!(render(&out).contains("2 input(s) (area, rooms) → price"), "{}", render(&out));
    ok(&mut s, "fit epochs=60");
    let out = ok(&mut s, "eval");
    let t = tables(&out)[0];
    assert!(t.title.as_ref().unwrap().contains("valid"), "no test split: eval falls back to valid");
    assert!(
        (cell(t, "w[0]", 1) - 1.5).abs() < 0.05 && (cell(t, "w[1]", 1) + 2.0).abs() < 0.05,
        "{}",
        t.to_text()
    );
    let out = ok(&mut s, "predict [1, 2] [2, 0]");
    let t = tables(&out)[0];
    let p: f64 = t.rows[0][1].parse().unwrap();
    assert!((p - (1.5 - 4.0 + 0.5)).abs() < 0.1, "{}", t.to_text());
}

#[test]
fn save_and_load_round_trip_and_training_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run1");
    let mut s = Session::new();
    ok(&mut s, &format!("{SETUP}; optimizer adam lr=0.01; fit epochs=2; freeze b"));
    ok(&mut s, &format!("save {}", run.display()));
    for f in ["config.json", "model.safetensors", "optimizer.safetensors", "tunelab.json"] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let saved = weights(&s);
    let mut t = Session::new();
    ok(&mut t, &format!("{SETUP}; load {}", run.display()));
    assert_eq!(weights(&t), saved);
    assert_eq!(t.history().step(), s.history().step());
    assert!(render(&ok(&mut t, "show params")).contains("frozen"));
    // Both sessions continue identically from the same state (the data is the same seed).
    ok(&mut s, "seed 5; fit epochs=1");
    ok(&mut t, "seed 5; fit epochs=1");
    assert_eq!(weights(&s), weights(&t));
}

#[test]
fn snapshots_restore_and_freeze() {
    let mut s = Session::new();
    ok(&mut s, SETUP);
    ok(&mut s, "snapshot start");
    let start = weights(&s);
    ok(&mut s, "freeze b; fit epochs=3");
    let w = weights(&s);
    assert_eq!(w[1], start[1], "a frozen bias does not move");
    assert_ne!(w[0], start[0]);
    ok(&mut s, "restore start");
    assert_eq!(weights(&s), start);
    ok(&mut s, "undo");
    assert_eq!(weights(&s), w, "restore itself can be undone");
    assert!(render(&ok(&mut s, "show snapshots")).contains("start"));
}

#[test]
fn plots_are_png_and_svg() {
    let mut s = Session::new();
    ok(&mut s, SETUP);
    assert!(err(&mut s, "plot loss").contains("nothing to plot yet"));
    ok(&mut s, "fit epochs=5");
    for what in ["loss", "lr", "surface", "fit"] {
        let out = ok(&mut s, &format!("plot {what} file=out/{what}"));
        let image = out
            .iter()
            .find_map(|e| match e {
                Event::Image(i) => Some(i.clone()),
                _ => None,
            })
            .unwrap();
        assert!(image.figure.png.starts_with(b"\x89PNG"), "{what}");
        assert!(image.figure.svg.contains("<svg"), "{what}");
        assert_eq!(image.file.unwrap().to_str(), Some(format!("out/{what}").as_str()));
    }
    // The surface's descent path has one point per update plus the start.
    assert_eq!(s.history().path.len() as u64, s.history().step() + 1);
}

#[test]
fn accumulation_clipping_penalties_and_early_stopping() {
    // Gradient accumulation: 2 micro-batches of 16 make the same update as one batch of 32.
    let mut a = Session::new();
    let mut b = Session::new();
    ok(&mut a, &format!("{SETUP}; fit epochs=2 batch=32"));
    ok(&mut b, &format!("{SETUP}; fit epochs=2 batch=16 accumulate=2"));
    assert_eq!(a.history().step(), b.history().step());
    for ((_, x), (_, y)) in weights(&a).iter().zip(weights(&b).iter()) {
        assert!((x[0] - y[0]).abs() < 1e-5, "{x:?} vs {y:?}");
    }
    // Clipping bounds every update: with clip=0.01 and lr 0.01 no step moves w by more than 1e-4.
    let mut c = Session::new();
    ok(&mut c, &format!("{SETUP}; batch 1000"));
    let w0 = weights(&c)[0].1[0];
    ok(&mut c, "fit steps=1 clip=0.01");
    assert!((weights(&c)[0].1[0] - w0).abs() <= 1.0001e-4);
    // An L2 penalty pulls w below the unpenalised answer.
    let mut d = Session::new();
    ok(&mut d, &format!("{SETUP}; regularize l2=0.5; fit epochs=30"));
    let shrunk = weights(&d)[0].1[0];
    assert!(shrunk < 2.5 && shrunk > 1.0, "w = {shrunk}: 3/(1+0.5) ≈ 2 for unit-variance x");
    // Early stopping restores the best epoch's weights.
    let mut e = Session::new();
    ok(&mut e, &format!("{SETUP}; optimizer sgd lr=0.05"));
    let out = ok(&mut e, "fit epochs=60 patience=2");
    let text = render(&out);
    assert!(text.contains("early stopping after"), "{text}");
    let h = e.history();
    let best = h.epochs.iter().filter_map(|r| r.valid_loss).fold(f64::MAX, f64::min);
    assert!(h.epoch() < 60);
    let out = ok(&mut e, "eval split=valid");
    assert!(
        (cell(tables(&out)[0], "valid MSE", 1) - best).abs() < 1e-6,
        "the restored weights give the best valid loss {best}"
    );
}
