//! GPU done-means (issue 7): training on CUDA gives the CPU's losses, keeps the weights
//! resident between commands, and `device` moves weights and optimizer state exactly.
//!
//! Compiled only with `--features cuda` (scripts/cuda-toolchain.sh builds it and copies
//! the binary to target/cuda/gpu-tests; scripts/gpu-check.sh runs it on a GPU machine).
//! Each test prints one line and returns when no CUDA device opens. Every session is set
//! up on the CPU (`device cpu` first: a CUDA build starts on the GPU) with the same seed
//! and then moved, so both devices start from the same
//! weights, data and split; dropout masks come from a host generator, so they agree too.
#![cfg(feature = "cuda")]

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use common::ok;
use tunelab::uploads::{self, Upload};
use tunelab::Session;

/// The CUDA device the tests use, or `None` (with one line saying why) to skip.
fn cuda() -> Option<Device> {
    if !candle_core::utils::cuda_is_available() {
        println!("skipped: candle was built without CUDA");
        return None;
    }
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            // One line: with RUST_BACKTRACE set, candle appends a backtrace to the error.
            println!("skipped: no CUDA device opens ({})", e.to_string().lines().next().unwrap_or_default());
            None
        }
    }
}

const LINEAR: &str = "device cpu; seed 5; data synthetic linear n=512 w=[3,-1] b=2 noise=0.1; load linear; \
                      optimizer adamw lr=0.05; batch 32";

/// The tiny BERT task of `common::tiny_bert_task` (48 lines per label), set up on the CPU.
fn bert_setup(dir: &Path) -> String {
    format!("device cpu; {}; batch 8", common::tiny_bert_task(dir, 48))
}

/// The losses of the last `n` recorded updates.
fn last_losses(s: &Session, n: usize) -> Vec<f64> {
    let steps = &s.history().steps;
    assert!(steps.len() >= n, "only {} steps recorded", steps.len());
    steps[steps.len() - n..].iter().map(|r| r.loss).collect()
}

/// Ten updates on the CPU and ten on CUDA from the same start give the same losses.
fn losses_agree(setup: &str, what: &str) {
    let Some(_) = cuda() else { return };
    let mut cpu = Session::new();
    ok(&mut cpu, setup);
    ok(&mut cpu, "fit epochs=50 steps=10");
    let mut gpu = Session::new();
    ok(&mut gpu, setup);
    ok(&mut gpu, "device cuda");
    ok(&mut gpu, "fit epochs=50 steps=10");
    assert!(gpu.device().is_cuda());
    let (a, b) = (last_losses(&cpu, 10), last_losses(&gpu, 10));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(x.is_finite() && y.is_finite(), "{what} step {i}: cpu {x}, cuda {y}");
        assert!(
            (x - y).abs() <= 1e-3 * x.abs().max(1.0),
            "{what} step {i}: cpu {x} vs cuda {y}\ncpu {a:?}\ncuda {b:?}"
        );
    }
    println!("{what}: cpu and cuda losses agree over 10 steps (cpu {:.6} → {:.6})", a[0], a[9]);
}

#[test]
fn cpu_and_cuda_losses_agree_on_the_linear_model() {
    losses_agree(LINEAR, "linear");
}

#[test]
fn cpu_and_cuda_losses_agree_on_a_tiny_bert() {
    // Dropout off: the CPU draws its masks from a sequential generator, CUDA from a
    // counter-based one on the device (`dropout_masks_on_cuda_are_the_counter_based_reference`).
    let dir = tempfile::tempdir().unwrap();
    losses_agree(&format!("{}; dropout 0", bert_setup(dir.path())), "tiny bert");
}

#[test]
fn dropout_masks_on_cuda_are_the_counter_based_reference() {
    use tunelab::model::layers::keep_mask;
    let Some(dev) = cuda() else { return };
    let shape = candle_core::Shape::from((1000, 1000));
    let gpu = keep_mask(7, 0.1, &shape, &dev).unwrap();
    let cpu = keep_mask(7, 0.1, &shape, &Device::Cpu).unwrap();
    assert_eq!(tensor_diff(&gpu, &cpu), 0.0, "the CUDA kernel's mask differs from the CPU reference");
    let again = keep_mask(7, 0.1, &shape, &dev).unwrap();
    assert_eq!(tensor_diff(&gpu, &again), 0.0, "the same seed gave another mask");
    let other = keep_mask(8, 0.1, &shape, &dev).unwrap();
    assert!(tensor_diff(&gpu, &other) > 0.0, "another seed gave the same mask");
    let v = gpu.flatten_all().unwrap().to_device(&Device::Cpu).unwrap().to_vec1::<f32>().unwrap();
    let kept = v.iter().filter(|&&x| x != 0.0).count() as f64 / v.len() as f64;
    assert!((kept - 0.9).abs() < 0.002, "kept {kept}, want 0.9");
    assert!(v.iter().all(|&x| x == 0.0 || (x - 1.0 / 0.9).abs() < 1e-6));
    println!("dropout masks on cuda: identical to the CPU reference, kept {kept:.4} of 10^6 at p = 0.1");
}

/// Each parameter's tensor id, and whether it lives on CUDA.
fn var_ids(s: &Session) -> Vec<(String, candle_core::TensorId, bool)> {
    let model = s.loaded_model().expect("a model is loaded");
    model
        .params()
        .iter()
        .map(|p| (p.name.clone(), p.var.as_tensor().id(), p.var.device().is_cuda()))
        .collect()
}

#[test]
fn a_second_fit_after_eval_and_plot_uploads_no_weights() {
    let Some(_) = cuda() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new();
    ok(&mut s, &bert_setup(dir.path()));
    ok(&mut s, "device cuda");
    ok(&mut s, "fit epochs=50 steps=4");
    let ids = var_ids(&s);
    assert!(ids.iter().all(|(_, _, on_cuda)| *on_cuda), "{ids:?}");
    // The counters are process-wide and tests run in parallel; other tests only add, so
    // "unchanged" is checked on this test's own window and repeated a few times below.
    let weights = uploads::count(Upload::Weights);
    let state = uploads::count(Upload::OptimizerState);
    ok(&mut s, "eval");
    ok(&mut s, "plot loss");
    ok(&mut s, "fit epochs=50 steps=4");
    assert_eq!(var_ids(&s), ids, "the weights are new tensors after eval + plot + fit");
    assert!(s.optimizer_state().values().all(|t| t.device().is_cuda()), "optimizer state left the GPU");
    let (w, o) = (uploads::count(Upload::Weights) - weights, uploads::count(Upload::OptimizerState) - state);
    if w + o > 0 {
        // Another test may have moved a model in the meantime: run the window alone.
        let (weights, state) = (uploads::count(Upload::Weights), uploads::count(Upload::OptimizerState));
        ok(&mut s, "eval; plot loss; fit epochs=50 steps=2");
        assert_eq!(uploads::count(Upload::Weights), weights, "weights were uploaded again");
        assert_eq!(uploads::count(Upload::OptimizerState), state, "optimizer state was uploaded again");
    }
    assert_eq!(var_ids(&s), ids);
    assert_eq!(s.history().steps.len(), 8 + if w + o > 0 { 2 } else { 0 });
    println!("resident: 8 updates, eval and plot, no weight or optimizer upload, same {} tensors", ids.len());
}

/// Weights in parameter order, and optimizer tensors by name, as f32 values on the host.
type HostState = (Vec<(String, Vec<f32>)>, HashMap<String, Vec<f32>>);

/// Every weight and optimizer tensor, copied to the host.
fn state_on_host(s: &Session) -> HostState {
    let weights = s.weights().unwrap();
    let opt = s
        .optimizer_state()
        .into_iter()
        .map(|(k, t): (String, Tensor)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    (weights, opt)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn moving_cpu_cuda_cpu_keeps_weights_and_adamw_moments() {
    let Some(_) = cuda() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new();
    ok(&mut s, &bert_setup(dir.path()));
    ok(&mut s, "fit epochs=50 steps=3");
    let (w0, m0) = state_on_host(&s);
    assert!(m0.keys().any(|k| k.ends_with("exp_avg_sq")), "no AdamW moments: {:?}", m0.keys());
    ok(&mut s, "device cuda");
    assert!(s.optimizer_state().values().all(|t| t.device().is_cuda()));
    let (w1, m1) = state_on_host(&s);
    ok(&mut s, "device cpu");
    assert!(s.device().is_cpu());
    let (w2, m2) = state_on_host(&s);
    for (moved, back) in [(&w1, &m1), (&w2, &m2)] {
        for ((name, a), (_, b)) in w0.iter().zip(moved.iter()) {
            assert!(max_diff(a, b) <= 1e-6, "weight {name} changed by {}", max_diff(a, b));
        }
        assert_eq!(m0.len(), back.len());
        for (name, a) in &m0 {
            assert!(
                max_diff(a, &back[name]) <= 1e-6,
                "optimizer {name} changed by {}",
                max_diff(a, &back[name])
            );
        }
    }
    // Training goes on from the moved state: the next losses match a session that never moved.
    let mut stay = Session::new();
    ok(&mut stay, &bert_setup(dir.path()));
    ok(&mut stay, "fit epochs=50 steps=3");
    ok(&mut stay, "fit epochs=50 steps=2");
    ok(&mut s, "fit epochs=50 steps=2");
    let (a, b) = (last_losses(&stay, 2), last_losses(&s, 2));
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-5), "{a:?} vs {b:?}");
    println!("moved cpu→cuda→cpu: {} weights and {} optimizer tensors kept to 1e-6", w0.len(), m0.len());
}

/// The learned weights of a linear-model session, weight then bias.
fn linear_weights(s: &Session) -> Vec<f32> {
    s.weights().unwrap().into_iter().flat_map(|(_, v)| v).collect()
}

#[test]
fn bf16_and_f16_converge_on_cuda() {
    let Some(_) = cuda() else { return };
    for precision in ["bf16", "f16"] {
        let mut s = Session::new();
        ok(&mut s, &format!("{LINEAR}; device cuda; precision {precision}; fit epochs=12"));
        let w = linear_weights(&s);
        for (got, want) in w.iter().zip([3.0, -1.0, 2.0]) {
            assert!((got - want).abs() < 0.06, "{precision} on cuda learned {w:?}, true [3, -1, 2]");
        }
        println!("linear {precision} on cuda: learned {w:?} (true [3, -1, 2])");
    }
    let dir = tempfile::tempdir().unwrap();
    let setup = bert_setup(dir.path());
    let run = |precision: &str| {
        let mut s = Session::new();
        ok(&mut s, &setup);
        ok(&mut s, &format!("device cuda; precision {precision}; fit epochs=50 steps=40"));
        let eval = common::render(&ok(&mut s, "eval"));
        (last_losses(&s, 40), eval)
    };
    let (full, _) = run("f32");
    for precision in ["bf16", "f16"] {
        let (half, eval) = run(precision);
        for (i, (x, y)) in full.iter().zip(&half).take(5).enumerate() {
            assert!((x - y).abs() < 0.02 * x.abs().max(1.0), "step {}: f32 {x}, {precision} {y}", i + 1);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (first, last) = (mean(&half[..5]), mean(&half[35..]));
        assert!(last < 0.6 * first, "tiny bert {precision} on cuda: loss {first:.4} → {last:.4}");
        println!(
            "tiny bert {precision} on cuda: loss {first:.4} → {last:.4} (f32 {:.4} → {:.4}); {}",
            mean(&full[..5]),
            mean(&full[35..]),
            eval.lines().next().unwrap_or_default()
        );
    }
}

#[test]
fn out_of_device_memory_is_one_clear_error_and_the_session_goes_on() {
    let Some(_) = cuda() else { return };
    // BERT-base shape, 512-token rows, batch 4096: the attention scores of one layer alone
    // are 4096·12·512²·4 B = 51 GiB, so the first layers exhaust even a 141 GB card.
    let dir = tempfile::tempdir().unwrap();
    let words = ["good", "bad", "film", "plot", "the", "was", "and", "very"];
    let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    let vocab: Vec<&str> = specials.iter().chain(&words).copied().collect();
    std::fs::write(dir.path().join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
    for (file, mood) in [("pos.txt", "good"), ("neg.txt", "bad")] {
        let line = |i: usize| {
            (0..520).map(|j| words[(i + j) % 8].replace("good", mood)).collect::<Vec<_>>().join(" ")
        };
        let text: Vec<String> = (0..2100).map(line).collect();
        std::fs::write(dir.path().join(file), text.join("\n") + "\n").unwrap();
    }
    let mut s = Session::new();
    ok(
        &mut s,
        &format!(
            "device cpu; seed 2; data {0}/pos.txt {0}/neg.txt max_len=512 split=0.99/0.01 clean=false; \
             load bert config=base vocab={0}/vocab.txt task=classify; device cuda; optimizer adamw lr=1e-5",
            dir.path().display()
        ),
    );
    let message = common::err(&mut s, "fit steps=1 batch=4096");
    assert!(message.contains("out of") && message.contains("memory"), "{message}");
    assert!(message.contains("batch"), "the error does not suggest a smaller batch: {message}");
    assert!(!message.contains('\n'), "not one line: {message}");
    assert!(s.history().steps.is_empty(), "a step was recorded by the failed fit");
    ok(&mut s, "fit steps=2 batch=8");
    assert_eq!(s.history().steps.len(), 2);
    assert!(s.weights().unwrap().iter().all(|(_, v)| v.iter().all(|x| x.is_finite())));
    println!("out of memory at batch 4096: \"{message}\"; then 2 updates at batch 8");
}

/// Largest |a - b| over two tensors' elements, as f32 on the host.
fn tensor_diff(a: &Tensor, b: &Tensor) -> f32 {
    let host =
        |t: &Tensor| t.to_device(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    max_diff(&host(a), &host(b))
}

#[test]
fn fused_cuda_layer_norm_and_adamw_match_the_composite_ops() {
    use candle_core::Var;
    use tunelab::model::kernels;
    let Some(dev) = cuda() else { return };
    kernels::set_enabled(true);
    for (rows, hidden) in [(64, 768), (300, 384), (7, 1024)] {
        let x = Var::from_tensor(&Tensor::randn(0.5f32, 2.0, (rows, hidden), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.2, hidden, &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.2, hidden, &dev).unwrap()).unwrap();
        let r = Tensor::randn(0f32, 1.0, (rows, hidden), &dev).unwrap();
        let calls = kernels::fused_calls();
        let fused = kernels::layer_norm(&x, &w, &b, 1e-12).unwrap();
        assert!(kernels::fused_calls() > calls, "{rows}×{hidden}: the fused CUDA path was not taken");
        let composite = kernels::layer_norm_composite(&x, &w, &b, 1e-12).unwrap();
        let dy = tensor_diff(&fused, &composite);
        assert!(dy < 1e-4, "{rows}×{hidden}: forward differs by {dy}");
        let gf = (&fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gc = (&composite * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("dx", &x), ("dw", &w), ("db", &b)] {
            let (a, c) = (gf.get(v.as_tensor()).unwrap(), gc.get(v.as_tensor()).unwrap());
            let scale = c.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1.0);
            let d = tensor_diff(a, c);
            assert!(d < 1e-4 * scale, "{rows}×{hidden}: {name} differs by {d} (scale {scale})");
        }
    }
    // Three AdamW updates on CUDA (fused kernel) and on the CPU (fused CPU kernel).
    let step = |t| kernels::AdamStep {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        decoupled: true,
        t,
    };
    let p0 = Tensor::randn(0f32, 1.0, 10_000, &Device::Cpu).unwrap();
    let grads: Vec<Tensor> =
        (0..3).map(|_| Tensor::randn(0f32, 1.0, 10_000, &Device::Cpu).unwrap()).collect();
    let run = |device: &Device| {
        let mut p = p0.to_device(device).unwrap();
        let mut mv: Option<(Tensor, Tensor)> = None;
        for (t, g) in grads.iter().enumerate() {
            let g = g.to_device(device).unwrap();
            let moments = mv.as_ref().map(|(m, v)| (m, v));
            let (np, m, v) =
                kernels::adam_update(&p, &g, moments, &step(t as i32 + 1)).unwrap().expect("fused");
            assert!(np.device().same_device(device));
            p = np;
            mv = Some((m, v));
        }
        let (m, v) = mv.unwrap();
        (p, m, v)
    };
    let (gpu, cpu) = (run(&dev), run(&Device::Cpu));
    for (name, a, b) in [("parameter", &gpu.0, &cpu.0), ("m", &gpu.1, &cpu.1), ("v", &gpu.2, &cpu.2)] {
        let d = tensor_diff(a, b);
        assert!(d < 1e-6, "AdamW {name}: CUDA and CPU differ by {d}");
    }
    println!("fused CUDA kernels: layer norm forward/backward and AdamW match (3 shapes, 3 updates)");
}

/// Checks the gradients of `Σ out·r` (random `r`) for each input agree between the fused and
/// the composite op, to 1e-4 of the composite gradient's largest element (at least 1).
fn grads_agree(what: &str, fused: &Tensor, composite: &Tensor, inputs: &[(&str, &candle_core::Var)]) {
    let r = Tensor::randn(0f32, 1.0, fused.shape(), fused.device()).unwrap();
    let gf = (fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let gc = (composite * &r).unwrap().sum_all().unwrap().backward().unwrap();
    for (name, v) in inputs {
        let (a, c) = (gf.get(v.as_tensor()).unwrap(), gc.get(v.as_tensor()).unwrap());
        let scale = c.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1.0);
        let d = tensor_diff(a, c);
        assert!(d < 1e-4 * scale, "{what}: {name} differs by {d} (scale {scale})");
    }
}

#[test]
fn fused_cuda_softmax_gelu_norms_rope_and_cross_entropy_match_the_composite_ops() {
    use candle_core::Var;
    use tunelab::model::kernels;
    let Some(dev) = cuda() else { return };
    kernels::set_enabled(true);
    let fused_ran = |before: usize, what: &str| {
        assert!(kernels::fused_calls() > before, "{what}: the fused CUDA path was not taken")
    };
    // Attention softmax: padding bias [b, 1, 1, k], a causal + padding bias [b, 1, q, k], none.
    for (b, h, q, k) in [(2, 3, 5, 7), (4, 12, 33, 130), (1, 2, 600, 600)] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 3.0, (b, h, q, k), &dev).unwrap()).unwrap();
        // Sequence i of the batch keeps its first k - i·k/4 keys (padding after).
        let keep: Vec<f32> = (0..b * k).map(|n| f32::from(u8::from(n % k < k - (n / k) * k / 4))).collect();
        let mask = Tensor::from_vec(keep, (b, k), &dev).unwrap();
        let pad = tunelab::model::layers::attention_bias(&mask, candle_core::DType::F32).unwrap();
        let causal: Vec<f32> = (0..q * k).map(|i| if i % k <= i / k { 0.0 } else { -1e9 }).collect();
        let causal = Tensor::from_vec(causal, (1, 1, q, k), &dev).unwrap().broadcast_add(&pad).unwrap();
        for (name, bias) in [("padding", Some(&pad)), ("causal", Some(&causal)), ("none", None)] {
            let what = format!("softmax {b}×{h}×{q}×{k}, {name} bias");
            let calls = kernels::fused_calls();
            let fused = kernels::softmax(&x, 0.125, bias).unwrap();
            fused_ran(calls, &what);
            let composite = kernels::softmax_composite(&x, 0.125, bias).unwrap();
            let d = tensor_diff(&fused, &composite);
            assert!(d < 1e-6, "{what}: forward differs by {d}");
            grads_agree(&what, &fused, &composite, &[("dx", &x)]);
        }
    }
    // Bias + GELU, both kinds, BERT/GPT-2's feed-forward width and an odd one.
    for (rows, d) in [(300, 3072), (7, 333)] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (rows, d), &dev).unwrap()).unwrap();
        let bias = Var::from_tensor(&Tensor::randn(0f32, 0.5, d, &dev).unwrap()).unwrap();
        for tanh in [false, true] {
            let what = format!("bias-GELU ({}) {rows}×{d}", if tanh { "tanh" } else { "erf" });
            let calls = kernels::fused_calls();
            let (fused, composite) = if tanh {
                (
                    kernels::bias_gelu_tanh(&x, &bias).unwrap(),
                    kernels::bias_gelu_tanh_composite(&x, &bias).unwrap(),
                )
            } else {
                (kernels::bias_gelu(&x, &bias).unwrap(), kernels::bias_gelu_composite(&x, &bias).unwrap())
            };
            fused_ran(calls, &what);
            let d = tensor_diff(&fused, &composite);
            assert!(d < 1e-5, "{what}: forward differs by {d}");
            grads_agree(&what, &fused, &composite, &[("dx", &x), ("db", &bias)]);
        }
    }
    // RMS norm: SmolLM2's width and the widest the kernel takes.
    for (rows, d) in [(64, 576), (5, 2048)] {
        let what = format!("RMS norm {rows}×{d}");
        let x = Var::from_tensor(&Tensor::randn(0.3f32, 2.0, (rows, d), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.2, d, &dev).unwrap()).unwrap();
        let calls = kernels::fused_calls();
        let fused = kernels::rms_norm(&x, &w, 1e-5).unwrap();
        fused_ran(calls, &what);
        let composite = kernels::rms_norm_composite(&x, &w, 1e-5).unwrap();
        let d = tensor_diff(&fused, &composite);
        assert!(d < 1e-4, "{what}: forward differs by {d}");
        grads_agree(&what, &fused, &composite, &[("dx", &x), ("dw", &w)]);
    }
    // Rotary embedding: SmolLM2's head size, a decode step after a prompt (past 9).
    for (b, h, len, d, past) in [(2, 9, 33, 64, 0), (1, 3, 1, 64, 9)] {
        let what = format!("rope {b}×{h}×{len}×{d} (past {past})");
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, h, len, d), &dev).unwrap()).unwrap();
        let (cos, sin) =
            tunelab::model::layers::rope_tables(past, len, d, 10_000.0, candle_core::DType::F32, &dev)
                .unwrap();
        let calls = kernels::fused_calls();
        let fused = kernels::rope(&x, &cos, &sin).unwrap();
        fused_ran(calls, &what);
        let composite = kernels::rope_composite(&x, &cos, &sin).unwrap();
        let d = tensor_diff(&fused, &composite);
        assert!(d < 1e-6, "{what}: forward differs by {d}");
        grads_agree(&what, &fused, &composite, &[("dx", &x)]);
    }
    // Cross-entropy: two classes, and a GPT-2-sized vocabulary.
    for (rows, classes) in [(33, 2), (17, 50_257)] {
        let what = format!("cross-entropy {rows}×{classes}");
        let logits = Var::from_tensor(&Tensor::randn(0f32, 3.0, (rows, classes), &dev).unwrap()).unwrap();
        let ids: Vec<u32> = (0..rows).map(|r| ((r * 7919) % classes) as u32).collect();
        let targets = Tensor::from_vec(ids, rows, &dev).unwrap();
        let calls = kernels::fused_calls();
        let fused = kernels::cross_entropy(&logits, &targets).unwrap();
        fused_ran(calls, &what);
        let composite = kernels::cross_entropy_composite(&logits, &targets).unwrap();
        let (a, c) = (fused.to_scalar::<f32>().unwrap(), composite.to_scalar::<f32>().unwrap());
        assert!((a - c).abs() < 1e-5 * c.abs().max(1.0), "{what}: loss {a} vs {c}");
        let gf = fused.backward().unwrap();
        let gc = composite.backward().unwrap();
        let d = tensor_diff(gf.get(logits.as_tensor()).unwrap(), gc.get(logits.as_tensor()).unwrap());
        assert!(d < 1e-6, "{what}: dlogits differs by {d}");
    }
    println!("fused CUDA kernels: softmax (3 biases × 3 shapes), bias-GELU (2 kinds × 2 shapes), RMS norm, rope and cross-entropy match");
}

/// The "add & norm" and SwiGLU CUDA kernels (BERT's post-norm residuals, llama's gate)
/// against the composite ops, forward and every input's gradient.
#[test]
fn fused_cuda_add_and_norm_and_swiglu_match_the_composite_ops() {
    use candle_core::Var;
    use tunelab::model::kernels;
    let Some(dev) = cuda() else { return };
    kernels::set_enabled(true);
    let var = |mean: f32, std: f32, shape: &[usize]| {
        Var::from_tensor(&Tensor::randn(mean, std, shape, &dev).unwrap()).unwrap()
    };
    for (rows, hidden) in [(4096, 768), (300, 384), (7, 2048)] {
        let what = format!("add & norm {rows}×{hidden}");
        let (x, r) = (var(0.5, 2.0, &[rows, hidden]), var(0.0, 1.0, &[rows, hidden]));
        let (w, b) = (var(1.0, 0.2, &[hidden]), var(0.0, 0.2, &[hidden]));
        let calls = kernels::fused_calls();
        let fused = kernels::add_layer_norm(&x, &r, &w, &b, 1e-12).unwrap();
        assert!(kernels::fused_calls() > calls, "{what}: the fused CUDA path was not taken");
        let composite =
            kernels::layer_norm_composite(&(x.as_tensor() + r.as_tensor()).unwrap(), &w, &b, 1e-12).unwrap();
        let d = tensor_diff(&fused, &composite);
        assert!(d < 1e-4, "{what}: forward differs by {d}");
        grads_agree(&what, &fused, &composite, &[("dx", &x), ("dr", &r), ("dw", &w), ("db", &b)]);
    }
    for (rows, d) in [(2048, 1536), (5, 333)] {
        let what = format!("SwiGLU {rows}×{d}");
        let (g, u) = (var(0.0, 3.0, &[rows, d]), var(0.0, 1.0, &[rows, d]));
        let calls = kernels::fused_calls();
        let fused = kernels::swiglu(&g, &u).unwrap();
        assert!(kernels::fused_calls() > calls, "{what}: the fused CUDA path was not taken");
        let composite = kernels::swiglu_composite(&g, &u).unwrap();
        let diff = tensor_diff(&fused, &composite);
        assert!(diff < 1e-5, "{what}: forward differs by {diff}");
        grads_agree(&what, &fused, &composite, &[("dg", &g), ("du", &u)]);
    }
    println!("fused CUDA kernels: add & norm (3 shapes) and SwiGLU (2 shapes) match, forward and backward");
}

/// The one-node dense layer, GPT-2 Conv1D, attention scores, head split/merge and dropout
/// mask (candle's CUDA storage ops under one graph node each) against the composite ops.
#[test]
fn graph_saving_cuda_ops_match_the_composite_ops() {
    use candle_core::Var;
    use tunelab::model::{kernels, layers};
    let Some(dev) = cuda() else { return };
    let randn = |shape: &[usize]| Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &dev).unwrap()).unwrap();
    let check =
        |what: &str, fused: &dyn Fn() -> Tensor, composite: &dyn Fn() -> Tensor, inputs: &[(&str, &Var)]| {
            kernels::set_enabled(true);
            let calls = kernels::fused_calls();
            let f = fused();
            assert!(kernels::fused_calls() > calls, "{what}: the CUDA graph op was not taken");
            kernels::set_enabled(false);
            let c = composite();
            kernels::set_enabled(true);
            let d = tensor_diff(&f, &c);
            assert!(d < 1e-4, "{what}: forward differs by {d}");
            grads_agree(what, &f, &c, inputs);
        };
    let (x, w, b) = (randn(&[4, 33, 768]), randn(&[3072, 768]), randn(&[3072]));
    check(
        "linear 4×33×768 → 3072",
        &|| kernels::linear(&x, &w, Some(&b)).unwrap(),
        &|| kernels::linear_composite(&x, &w, Some(&b)).unwrap(),
        &[("dx", &x), ("dw", &w), ("db", &b)],
    );
    let wc = randn(&[768, 2304]);
    check(
        "conv1d 4×33×768 → 2304",
        &|| kernels::conv1d(&x, &wc, None).unwrap(),
        &|| kernels::conv1d(&x, &wc, None).unwrap(),
        &[("dx", &x), ("dw", &wc)],
    );
    let (q, k) = (randn(&[2, 12, 33, 64]), randn(&[2, 12, 40, 64]));
    check(
        "q·kᵀ 2×12×33×64 · 2×12×40×64",
        &|| kernels::matmul_nt(&q, &k).unwrap(),
        &|| kernels::matmul_nt(&q, &k).unwrap(),
        &[("dq", &q), ("dk", &k)],
    );
    check(
        "split heads 4×33×768 / 12",
        &|| layers::split_heads(&x, 12).unwrap(),
        &|| layers::split_heads(&x, 12).unwrap(),
        &[("dx", &x)],
    );
    check(
        "merge heads 2×12×33×64",
        &|| layers::merge_heads(&q).unwrap(),
        &|| layers::merge_heads(&q).unwrap(),
        &[("dq", &q)],
    );
    let mask = Tensor::randn(0f32, 1.0, (4, 33, 768), &dev)
        .unwrap()
        .ge(0.0)
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap();
    check(
        "dropout mask 4×33×768",
        &|| kernels::mul_mask(&x, &mask).unwrap(),
        &|| kernels::mul_mask(&x, &mask).unwrap(),
        &[("dx", &x)],
    );
    println!("CUDA graph ops: linear, conv1d, q·kᵀ, split/merge heads and the dropout mask match the composite ops");
}

/// `fit` records the peak device memory of its last step: more than nothing, and at least
/// the weights, which live on the device throughout the step; `show memory` prints it.
#[test]
fn the_peak_of_a_fit_step_covers_the_weights() {
    let Some(device) = cuda() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new();
    ok(&mut s, &bert_setup(dir.path()));
    ok(&mut s, "device cuda");
    assert_eq!(s.last_step_peak(), None, "no step yet");
    ok(&mut s, "fit steps=1");
    let weights: u64 = s
        .loaded_model()
        .expect("a model is loaded")
        .params()
        .iter()
        .map(|p| (p.var.elem_count() * p.var.dtype().size_in_bytes()) as u64)
        .sum();
    let peak = s.last_step_peak().expect("a peak after a step on CUDA");
    assert!(peak > 0 && peak >= weights, "peak {peak} B, weights {weights} B");
    let now = tunelab::device_memory::read(&device).expect("a reading on CUDA");
    let out = ok(&mut s, "show memory");
    let text = format!("{out:?}");
    assert!(text.contains("device memory in use") && text.contains("peak of the last step"), "{text}");
    println!(
        "peak of a tiny-BERT step {peak} B ≥ weights {weights} B; in use now {} B (exact pool: {})",
        now.in_use, now.exact
    );
}
