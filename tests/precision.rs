//! `precision bf16|f16`: half-precision forward and backward passes over f32 master
//! weights, on the CPU (the same code runs on CUDA: tests/gpu.rs). Each test trains and
//! checks numbers: the linear model recovers its true weights, a tiny BERT learns its task
//! and its loss curve stays near the f32 one, the weights and optimizer state stay f32.

use std::path::Path;

mod common;

use candle_core::DType;
use common::{ok, render as text};
use tunelab::Session;

/// Every weight and every optimizer moment of the session's model is f32.
fn assert_master_weights_f32(s: &Session) {
    let model = s.loaded_model().expect("a model");
    for p in model.params().iter() {
        assert_eq!(p.var.dtype(), DType::F32, "weight {} is {:?}", p.name, p.var.dtype());
    }
    for (name, t) in s.optimizer_state() {
        assert_eq!(t.dtype(), DType::F32, "optimizer state {name} is {:?}", t.dtype());
    }
}

fn linear_weights(s: &Session) -> Vec<f32> {
    s.weights().unwrap().into_iter().flat_map(|(_, v)| v).collect()
}

#[test]
fn bf16_and_f16_train_the_linear_model_to_its_true_weights() {
    for precision in ["bf16", "f16"] {
        let mut s = Session::new();
        ok(
            &mut s,
            &format!(
                "seed 3; data synthetic linear n=1024 w=[3,-1,0.5] b=2 noise=0.1; load linear; \
                 precision {precision}; optimizer adamw lr=0.05; fit epochs=12 batch=64"
            ),
        );
        // weight [1, 3] then bias [1]; bf16 keeps about 3 significant digits.
        let w = linear_weights(&s);
        for (got, want) in w.iter().zip([3.0, -1.0, 0.5, 2.0]) {
            assert!((got - want).abs() < 0.06, "{precision}: learned {w:?}, true [3, -1, 0.5, 2]");
        }
        assert_master_weights_f32(&s);
    }
}

/// The tiny BERT task of `common::tiny_bert_task`, 60 lines per label.
fn bert_setup(dir: &Path) -> String {
    common::tiny_bert_task(dir, 60)
}

fn losses(s: &Session) -> Vec<f64> {
    s.history().steps.iter().map(|r| r.loss).collect()
}

#[test]
fn a_bf16_bert_tracks_the_f32_loss_curve_and_learns_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let setup = bert_setup(dir.path());
    let run = |precision: &str| {
        let mut s = Session::new();
        ok(&mut s, &setup);
        ok(&mut s, &format!("precision {precision}; fit epochs=6 batch=16"));
        let eval = text(&ok(&mut s, "eval split=test"));
        (s, eval)
    };
    let (f32s, _) = run("f32");
    let (bf16s, eval) = run("bf16");
    let (a, b) = (losses(&f32s), losses(&bf16s));
    assert_eq!(a.len(), b.len());
    // Same start, same batches and dropout masks: the first updates differ only by rounding.
    for (i, (x, y)) in a.iter().zip(&b).take(5).enumerate() {
        assert!((x - y).abs() < 0.02 * x.abs().max(1.0), "step {}: f32 loss {x}, bf16 {y}", i + 1);
    }
    let (first, last) = (b[..4].iter().sum::<f64>() / 4.0, b[b.len() - 4..].iter().sum::<f64>() / 4.0);
    assert!(last < 0.6 * first, "bf16 loss went from {first:.4} to {last:.4}");
    let accuracy: f64 = eval
        .split("accuracy ")
        .nth(1)
        .and_then(|r| r.split([',', ' ']).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in {eval}"));
    assert!(accuracy >= 0.8, "bf16 test accuracy {accuracy}: {eval}");
    assert_master_weights_f32(&bf16s);
}

#[test]
fn f16_scales_the_loss_and_skips_overflowing_updates() {
    // Targets around ±300: the scaled gradient of the loss (2·error/n · 2^16) overflows f16
    // until the scale has come down, so the first updates are skipped, then training goes on.
    let mut s = Session::new();
    let out = text(&ok(
        &mut s,
        "seed 4; data synthetic linear n=256 w=[300] b=0 noise=0.1; load linear; precision f16; \
         optimizer adam lr=30; fit epochs=150 batch=256",
    ));
    assert!(out.contains("skipped because the scaled gradients overflowed"), "{out}");
    let w = linear_weights(&s);
    assert!((w[0] - 300.0).abs() < 3.0 && w[1].abs() < 3.0, "f16 learned {w:?}, true [300, 0]");
    assert_master_weights_f32(&s);
}

#[test]
fn precision_is_a_session_setting_that_survives_load_and_rejects_unknown_names() {
    let mut s = Session::new();
    ok(&mut s, "precision bf16; data synthetic linear n=64 w=[1] b=0; load linear");
    let shown = text(&ok(&mut s, "precision"));
    assert!(shown.contains("precision bf16"), "{shown}");
    assert_eq!(s.loaded_model().unwrap().params().compute(), Some(DType::BF16));
    let err = common::err(&mut s, "precision int8");
    assert!(err.contains("f32") && err.contains("bf16"), "{err}");
    assert!(text(&ok(&mut s, "precision")).contains("precision bf16"));
    ok(&mut s, "precision f32");
    assert_eq!(s.loaded_model().unwrap().params().compute(), None);
}
