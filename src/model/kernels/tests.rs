//! Each fused op against its composite: forward values and the gradients candle's backprop
//! gets through the composite graph, on random shapes, in f32 and f64; and that the fused
//! path really ran (the kernel counter moved).

use candle_core::{DType, Device, Tensor, Var, D};

use super::*;

/// Random normal tensor of `shape` and `dtype`; the seed follows from the shape and `std`,
/// so every run draws the same numbers.
fn randn(shape: &[usize], dtype: DType, std: f64) -> Tensor {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let seed = shape.iter().fold(std.to_bits(), |h, &d| h.wrapping_mul(31).wrapping_add(d as u64));
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let normal = rand_distr::Normal::new(0.0, std).unwrap();
    let n = shape.iter().product::<usize>();
    let v: Vec<f64> = (0..n).map(|_| normal.sample(&mut rng)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

/// The largest absolute value in `t`, at least 1 (the scale tolerances are relative to).
fn scale_of(t: &Tensor) -> f64 {
    let m = t.to_dtype(DType::F64).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    m.to_scalar::<f64>().unwrap().max(1.0)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let d = (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap()).unwrap();
    d.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
}

/// Runs `f` on fresh variables holding `inputs`, backpropagates `Σ f(..) · r` for a fixed
/// random `r`, and returns the output and every input's gradient.
fn value_and_grads(
    inputs: &[Tensor],
    r: Option<&Tensor>,
    f: impl Fn(&[Tensor]) -> Tensor,
) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts);
    let loss = match r {
        Some(r) => (&y * r).unwrap().sum_all().unwrap(),
        None => y.sum_all().unwrap(),
    };
    let store = loss.backward().unwrap();
    let grads = ts.iter().map(|t| store.get(t).expect("every input gets a gradient").clone()).collect();
    (y, grads)
}

/// Fused vs composite: forward within `fwd_tol` and every gradient within `grad_tol`
/// (both relative to the largest value, when that is above 1), and the fused kernel ran.
fn compare(
    what: &str,
    inputs: &[Tensor],
    fused: impl Fn(&[Tensor]) -> Tensor,
    composite: impl Fn(&[Tensor]) -> Tensor,
    fwd_tol: f64,
    grad_tol: f64,
) {
    // Debug builds default to the composite ops (kernels/mod.rs): these tests are about the
    // fused ones.
    super::set_enabled(true);
    let before = fused_calls();
    let probe = fused(inputs);
    assert!(fused_calls() > before, "{what}: the fused kernel did not run");
    let r = randn(probe.dims(), probe.dtype(), 1.0);
    let r = if probe.rank() == 0 { None } else { Some(&r) };
    let (y1, g1) = value_and_grads(inputs, r, &fused);
    let (y2, g2) = value_and_grads(inputs, r, &composite);
    let d = max_diff(&y1, &y2) / scale_of(&y2);
    assert!(d < fwd_tol, "{what}: forward differs by {d:e}");
    for (i, (a, b)) in g1.iter().zip(&g2).enumerate() {
        let d = max_diff(a, b) / scale_of(b);
        assert!(d < grad_tol, "{what}: gradient of input {i} differs by {d:e} (relative)");
    }
}

/// Layer norm of `x` with `w`, `b`, and RMS norm of `x` with `w`, fused vs composite.
fn compare_norms(what: &str, x: &Tensor, w: &Tensor, b: &Tensor, tol: f64) {
    compare(
        &format!("layer_norm {what}"),
        &[x.clone(), w.clone(), b.clone()],
        |t| layer_norm(&t[0], &t[1], &t[2], 1e-5).unwrap(),
        |t| layer_norm_composite(&t[0], &t[1], &t[2], 1e-5).unwrap(),
        tol,
        tol,
    );
    compare(
        &format!("rms_norm {what}"),
        &[x.clone(), w.clone()],
        |t| rms_norm(&t[0], &t[1], 1e-6).unwrap(),
        |t| rms_norm_composite(&t[0], &t[1], 1e-6).unwrap(),
        tol,
        tol,
    );
}

#[test]
fn layer_norm_matches_the_composite() {
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-10)] {
        for shape in [[2usize, 3, 8], [4, 5, 33], [1, 7, 384]] {
            let d = shape[2];
            let inputs = [randn(&shape, dtype, 2.0), randn(&[d], dtype, 1.0), randn(&[d], dtype, 1.0)];
            compare(
                &format!("layer_norm {dtype:?} {shape:?}"),
                &inputs,
                |t| layer_norm(&(&t[0] + 1.0).unwrap(), &t[1], &t[2], 1e-5).unwrap(),
                |t| layer_norm_composite(&(&t[0] + 1.0).unwrap(), &t[1], &t[2], 1e-5).unwrap(),
                tol,
                tol,
            );
        }
    }
}

#[test]
fn rms_norm_matches_the_composite() {
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-10)] {
        for shape in [[2usize, 3, 8], [3, 4, 64]] {
            let inputs = [randn(&shape, dtype, 2.0), randn(&[shape[2]], dtype, 1.0)];
            compare(
                &format!("rms_norm {dtype:?} {shape:?}"),
                &inputs,
                |t| rms_norm(&t[0], &t[1], 1e-6).unwrap(),
                |t| rms_norm_composite(&t[0], &t[1], 1e-6).unwrap(),
                tol,
                tol,
            );
        }
    }
}

#[test]
fn softmax_with_padding_and_causal_masks_matches_the_composite() {
    let dev = Device::Cpu;
    for (dtype, tol) in [(DType::F32, 1e-6), (DType::F64, 1e-12)] {
        let (b, h, q) = (3usize, 2usize, 5usize);
        // Padding bias [b, 1, 1, q]: row i has i padded keys at the end.
        let pad: Vec<f32> =
            (0..b).flat_map(|i| (0..q).map(move |j| if j + i >= q { -1e9 } else { 0.0 })).collect();
        let pad = Tensor::from_vec(pad, (b, 1, 1, q), &dev).unwrap().to_dtype(dtype).unwrap();
        // Causal + padding [b, 1, q, q], as llama builds it.
        let causal = crate::model::layers::causal_bias(q, 0, dtype, &dev).unwrap();
        let both = causal.broadcast_add(&pad).unwrap();
        let scale = 1.0 / (8f64).sqrt();
        for (name, bias) in [("no mask", None), ("padding", Some(&pad)), ("causal+padding", Some(&both))] {
            let inputs = [randn(&[b, h, q, q], dtype, 3.0)];
            compare(
                &format!("softmax {dtype:?} {name}"),
                &inputs,
                |t| softmax(&t[0], scale, bias).unwrap(),
                |t| softmax_composite(&t[0], scale, bias).unwrap(),
                tol,
                tol * 10.0,
            );
        }
    }
}

#[test]
fn linear_and_attention_scores_match_candles_matmul() {
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
        // A dense layer over [batch, len, in], with and without its bias, and over a plain
        // matrix of rows; sizes past gemm's blocking (k > 256) and odd ones.
        for (x_shape, out) in [(vec![2usize, 5, 7], 3usize), (vec![3, 17, 300], 65), (vec![9, 4], 1)] {
            let inp = *x_shape.last().unwrap();
            let inputs =
                [randn(&x_shape, dtype, 1.0), randn(&[out, inp], dtype, 0.5), randn(&[out], dtype, 1.0)];
            compare(
                &format!("linear {dtype:?} {x_shape:?} → {out}"),
                &inputs,
                |t| linear(&t[0], &t[1], Some(&t[2])).unwrap(),
                |t| linear_composite(&t[0], &t[1], Some(&t[2])).unwrap(),
                tol,
                tol,
            );
            compare(
                &format!("linear without bias {dtype:?} {x_shape:?} → {out}"),
                &inputs[..2],
                |t| linear(&t[0], &t[1], None).unwrap(),
                |t| linear_composite(&t[0], &t[1], None).unwrap(),
                tol,
                tol,
            );
        }
        // GPT-2's Conv1D, x · w + b with w stored [in, out].
        let inputs = [randn(&[2, 9, 40], dtype, 1.0), randn(&[40, 24], dtype, 0.5), randn(&[24], dtype, 1.0)];
        compare(
            &format!("conv1d {dtype:?}"),
            &inputs,
            |t| conv1d(&t[0], &t[1], Some(&t[2])).unwrap(),
            |t| {
                (t[0].reshape((18, 40)).unwrap().matmul(&t[1]).unwrap().broadcast_add(&t[2]).unwrap())
                    .reshape((2, 9, 24))
                    .unwrap()
            },
            tol,
            tol,
        );
        // Attention scores q · kᵀ over [batch, heads, len, head_dim], queries ≠ keys.
        compare_matmul_nt(&format!("matmul_nt {dtype:?}"), [&[2, 3, 5, 8], &[2, 3, 7, 8]], dtype, tol);
    }
}

/// [`matmul_nt`] of random `a`, `b` of the two shapes against candle's `a · bᵀ`.
fn compare_matmul_nt(what: &str, [a, b]: [&[usize]; 2], dtype: DType, tol: f64) {
    compare(
        what,
        &[randn(a, dtype, 1.0), randn(b, dtype, 1.0)],
        |t| matmul_nt(&t[0], &t[1]).unwrap(),
        |t| t[0].matmul(&t[1].t().unwrap()).unwrap(),
        tol,
        tol,
    );
}

/// With a BLAS loaded (`TUNELAB_BLAS`; CI points it at the `scipy-openblas32` wheel), every
/// product form the dense layers and attention scores hand it — `A·Bᵀ` with a bias
/// accumulated, `A·B`, `Aᵀ·B` (weight gradients), batched `A·Bᵀ` — against candle's matmul,
/// forward and gradients, f32 and f64; and the BLAS really ran. Skipped without
/// `TUNELAB_BLAS`; fails when it names a library that does not load.
#[test]
fn system_blas_products_match_candles_matmul() {
    if let Some(why) = blas::load_warning() {
        panic!("{why}");
    }
    if blas::get().is_none() {
        eprintln!("skipped: no BLAS loaded (TUNELAB_BLAS unset)");
        return;
    }
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
        let before = blas::calls();
        let inputs =
            [randn(&[3, 40, 96], dtype, 1.0), randn(&[80, 96], dtype, 0.5), randn(&[80], dtype, 1.0)];
        compare(
            &format!("linear on the BLAS {dtype:?}"),
            &inputs,
            |t| linear(&t[0], &t[1], Some(&t[2])).unwrap(),
            |t| linear_composite(&t[0], &t[1], Some(&t[2])).unwrap(),
            tol,
            tol,
        );
        let inputs = [randn(&[2, 50, 72], dtype, 1.0), randn(&[72, 88], dtype, 0.5)];
        compare(
            &format!("conv1d on the BLAS {dtype:?}"),
            &inputs,
            |t| conv1d(&t[0], &t[1], None).unwrap(),
            |t| t[0].broadcast_matmul(&t[1]).unwrap(),
            tol,
            tol,
        );
        compare_matmul_nt(
            &format!("matmul_nt on the BLAS {dtype:?}"),
            [&[2, 2, 70, 64], &[2, 2, 90, 64]],
            dtype,
            tol,
        );
        assert!(blas::calls() > before, "{dtype:?}: no product ran on the BLAS ({})", blas::describe());
    }
}

#[test]
fn a_frozen_weight_gets_no_gradient_and_its_input_still_does() {
    set_enabled(true);
    let x = Var::from_tensor(&randn(&[4, 6], DType::F32, 1.0)).unwrap();
    let w = randn(&[3, 6], DType::F32, 1.0); // a plain tensor: frozen
    let b = Var::from_tensor(&randn(&[3], DType::F32, 1.0)).unwrap();
    let y = linear(x.as_tensor(), &w, Some(b.as_tensor())).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&w).is_none());
    // d Σy / dx = Σ_out w, the same for every row; d Σy / db = the number of rows.
    let want = w.sum(0).unwrap().to_vec1::<f32>().unwrap();
    for row in grads.get(x.as_tensor()).unwrap().to_vec2::<f32>().unwrap() {
        for (g, w) in row.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{row:?} vs {want:?}");
        }
    }
    assert_eq!(grads.get(b.as_tensor()).unwrap().to_vec1::<f32>().unwrap(), [4.0; 3]);
}

#[test]
fn bias_gelu_matches_candles_gelus() {
    for (dtype, fwd_tol) in [(DType::F32, 1e-6), (DType::F64, 1e-6)] {
        for shape in [[2usize, 3, 16], [4, 6, 1536]] {
            let inputs = [randn(&shape, dtype, 3.0), randn(&[shape[2]], dtype, 1.0)];
            compare(
                &format!("bias_gelu {dtype:?} {shape:?}"),
                &inputs,
                |t| bias_gelu(&t[0], &t[1]).unwrap(),
                |t| bias_gelu_composite(&t[0], &t[1]).unwrap(),
                fwd_tol,
                1e-5,
            );
            // candle's backward of its tanh GELU rounds the constants to six digits, so the
            // gradients agree to ~1e-7 even in f64.
            compare(
                &format!("bias_gelu_tanh {dtype:?} {shape:?}"),
                &inputs,
                |t| bias_gelu_tanh(&t[0], &t[1]).unwrap(),
                |t| bias_gelu_tanh_composite(&t[0], &t[1]).unwrap(),
                1e-6,
                1e-5,
            );
        }
    }
}

#[test]
fn rope_matches_the_composite_and_its_backward_is_the_inverse_rotation() {
    let dev = Device::Cpu;
    for (dtype, tol) in [(DType::F32, 1e-6), (DType::F64, 1e-12)] {
        for (b, h, len, d, past) in [(2usize, 3usize, 5usize, 8usize, 0usize), (1, 4, 17, 64, 9)] {
            let (cos, sin) = crate::model::layers::rope_tables(past, len, d, 10_000.0, dtype, &dev).unwrap();
            compare(
                &format!("rope {dtype:?} {b}x{h}x{len}x{d}"),
                &[randn(&[b, h, len, d], dtype, 2.0)],
                |t| rope(&t[0], &cos, &sin).unwrap(),
                |t| rope_composite(&t[0], &cos, &sin).unwrap(),
                tol,
                tol,
            );
        }
    }
    // A rotation keeps lengths: ‖rope(x)‖ = ‖x‖ per head row (to the f32 rounding of the
    // tables, whose angles are computed in f32 as transformers does).
    let (cos, sin) = crate::model::layers::rope_tables(3, 6, 16, 10_000.0, DType::F64, &dev).unwrap();
    let x = randn(&[2, 2, 6, 16], DType::F64, 1.0);
    let norms = |t: &Tensor| {
        t.sqr().unwrap().sum(D::Minus1).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
    };
    let (a, b) = (norms(&x), norms(&rope(&x, &cos, &sin).unwrap()));
    assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-6 * a.max(1.0)), "{a:?} vs {b:?}");
}

/// bf16/f16 inputs run the f32 kernels (cast in, cast back: `in_f32`), so mixed-precision
/// training takes the fused path too; the result is the composite's to half precision.
#[test]
fn half_precision_runs_the_f32_kernels() {
    let dev = Device::Cpu;
    for dtype in [DType::BF16, DType::F16] {
        let tol = 3e-2;
        let (x, w, b) = (randn(&[3, 5, 64], dtype, 2.0), randn(&[64], dtype, 1.0), randn(&[64], dtype, 1.0));
        compare_norms(&format!("{dtype:?}"), &x, &w, &b, tol);
        compare(
            &format!("bias_gelu {dtype:?}"),
            &[x.clone(), b.clone()],
            |t| bias_gelu(&t[0], &t[1]).unwrap(),
            |t| bias_gelu_composite(&t[0], &t[1]).unwrap(),
            tol,
            tol,
        );
        let (cos, sin) = crate::model::layers::rope_tables(0, 5, 64, 10_000.0, dtype, &dev).unwrap();
        compare(
            &format!("rope {dtype:?}"),
            std::slice::from_ref(&x),
            |t| rope(&t[0], &cos, &sin).unwrap(),
            |t| rope_composite(&t[0], &cos, &sin).unwrap(),
            tol,
            tol,
        );
        let causal = crate::model::layers::causal_bias(8, 0, dtype, &dev).unwrap();
        let out = softmax(&randn(&[2, 3, 8, 8], dtype, 3.0), 0.5, Some(&causal)).unwrap();
        assert_eq!(out.dtype(), dtype, "the result is cast back");
        compare(
            &format!("softmax {dtype:?}"),
            &[randn(&[2, 3, 8, 8], dtype, 3.0)],
            |t| softmax(&t[0], 0.5, Some(&causal)).unwrap(),
            |t| softmax_composite(&t[0], 0.5, Some(&causal)).unwrap(),
            tol,
            tol,
        );
    }
}

#[test]
fn fast_erf_is_within_its_bound() {
    // erf values from the standard tables (Abramowitz & Stegun table 7.1).
    for (x, want) in [
        (0.0f64, 0.0f64),
        (0.5, 0.520_499_877_8),
        (1.0, 0.842_700_792_9),
        (2.0, 0.995_322_265_0),
        (-1.5, -0.966_105_146_5),
    ] {
        let got: f64 = gelu::erf(x);
        assert!((got - want).abs() < 5e-7, "erf({x}) = {got}, want {want}");
    }
}

#[test]
fn cross_entropy_matches_the_composite() {
    let dev = Device::Cpu;
    for (dtype, tol) in [(DType::F32, 1e-6), (DType::F64, 1e-12)] {
        for (n, k) in [(5usize, 2usize), (17, 300)] {
            let targets: Vec<u32> = (0..n).map(|i| ((i * 7 + 3) % k) as u32).collect();
            let targets = Tensor::from_vec(targets, n, &dev).unwrap();
            let inputs = [randn(&[n, k], dtype, 4.0)];
            compare(
                &format!("cross_entropy {dtype:?} {n}x{k}"),
                &inputs,
                |t| (cross_entropy(&t[0], &targets).unwrap() * 3.0).unwrap(),
                |t| (cross_entropy_composite(&t[0], &targets).unwrap() * 3.0).unwrap(),
                tol,
                tol,
            );
        }
    }
}

/// The per-row form (what CUDA runs, candle taking the mean) gives the composite's loss and
/// gradient on the CPU too.
#[test]
fn per_row_cross_entropy_averaged_matches_the_composite() {
    let dev = Device::Cpu;
    let (n, k) = (9usize, 40usize);
    let targets = Tensor::from_vec((0..n as u32).map(|i| (i * 13) % k as u32).collect(), n, &dev).unwrap();
    compare(
        "cross_entropy per row",
        &[randn(&[n, k], DType::F32, 3.0)],
        |t| cross_entropy::cross_entropy_per_row(&t[0], &targets).unwrap().mean_all().unwrap(),
        |t| cross_entropy_composite(&t[0], &targets).unwrap(),
        1e-6,
        1e-6,
    );
}

#[test]
fn cross_entropy_rejects_a_target_outside_the_classes() {
    super::set_enabled(true);
    let logits = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
    let targets = Tensor::new(&[0u32, 3], &Device::Cpu).unwrap();
    let err = cross_entropy(&logits, &targets).unwrap_err().to_string();
    assert!(err.contains("target 3") && err.contains("0..3"), "{err}");
}

#[test]
fn adam_update_matches_the_composite_rule() {
    super::set_enabled(true);
    // One coordinate by hand: p=1, g=0.5, AdamW lr 0.1, wd 0.01, first step (m̂ = g,
    // v̂ = g², so the step is lr·g/(|g| + eps)).
    let dev = Device::Cpu;
    let p = Tensor::new(&[1f32, -2.0], &dev).unwrap();
    let g = Tensor::new(&[0.5f32, -0.25], &dev).unwrap();
    let s =
        AdamStep { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, decoupled: true, t: 1 };
    let (np, m, v) = adam_update(&p, &g, None, &s).unwrap().expect("f32 on CPU is fused");
    let np = np.to_vec1::<f32>().unwrap();
    assert!((np[0] - (1.0 * (1.0 - 0.001) - 0.1)).abs() < 1e-6, "{np:?}");
    assert!((np[1] - (-2.0 * (1.0 - 0.001) + 0.1)).abs() < 1e-6, "{np:?}");
    assert!((m.to_vec1::<f32>().unwrap()[0] - 0.05).abs() < 1e-7);
    assert!((v.to_vec1::<f32>().unwrap()[0] - 0.00025).abs() < 1e-9);
    // Not fusable: a bf16 parameter falls back to the caller.
    let p16 = p.to_dtype(DType::BF16).unwrap();
    assert!(adam_update(&p16, &g.to_dtype(DType::BF16).unwrap(), None, &s).unwrap().is_none());
}

/// Inputs large enough that every kernel splits its rows into several blocks run on rayon's
/// threads (`par_rows`): the same values and gradients as the composite ops.
#[test]
fn kernels_split_across_threads_match_the_composite() {
    let dev = Device::Cpu;
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-10)] {
        let (x, w, b) =
            (randn(&[3, 100, 384], dtype, 2.0), randn(&[384], dtype, 1.0), randn(&[384], dtype, 1.0));
        compare_norms(&format!("{dtype:?} in blocks"), &x, &w, &b, tol);
        let xb = randn(&[2, 100, 768], dtype, 3.0);
        let bias = randn(&[768], dtype, 1.0);
        compare(
            &format!("bias_gelu_tanh {dtype:?} in blocks"),
            &[xb, bias],
            |t| bias_gelu_tanh(&t[0], &t[1]).unwrap(),
            |t| bias_gelu_tanh_composite(&t[0], &t[1]).unwrap(),
            1e-6,
            1e-5,
        );
        let causal = crate::model::layers::causal_bias(128, 0, dtype, &dev).unwrap();
        compare(
            &format!("softmax {dtype:?} causal in blocks"),
            &[randn(&[4, 4, 128, 128], dtype, 3.0)],
            |t| softmax(&t[0], 0.125, Some(&causal)).unwrap(),
            |t| softmax_composite(&t[0], 0.125, Some(&causal)).unwrap(),
            tol,
            tol * 10.0,
        );
        let (n, k) = (40usize, 5000usize);
        let targets =
            Tensor::from_vec((0..n as u32).map(|i| (i * 997) % k as u32).collect(), n, &dev).unwrap();
        compare(
            &format!("cross_entropy {dtype:?} in blocks"),
            &[randn(&[n, k], dtype, 4.0)],
            |t| cross_entropy(&t[0], &targets).unwrap(),
            |t| cross_entropy_composite(&t[0], &targets).unwrap(),
            tol,
            tol,
        );
    }
}

/// The Adam update of a tensor split into parallel blocks gives the same bits as the
/// update of each piece on its own (one block, the calling thread).
#[test]
fn adam_update_in_blocks_equals_the_update_piece_by_piece() {
    super::set_enabled(true);
    let n = 100_003;
    let (p, g) = (randn(&[n], DType::F32, 1.0), randn(&[n], DType::F32, 0.1));
    let (m, v) = (randn(&[n], DType::F32, 0.01), randn(&[n], DType::F32, 0.01).abs().unwrap());
    let s =
        AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, decoupled: true, t: 7 };
    let whole = adam_update(&p, &g, Some((&m, &v)), &s).unwrap().unwrap();
    for start in [0, 20_000, 40_000, 99_990] {
        let len = 10.min(n - start);
        let piece = |t: &Tensor| t.narrow(0, start, len).unwrap();
        let part = adam_update(&piece(&p), &piece(&g), Some((&piece(&m), &piece(&v))), &s).unwrap().unwrap();
        for (a, b) in [(&whole.0, &part.0), (&whole.1, &part.1), (&whole.2, &part.2)] {
            assert_eq!(piece(a).to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap(), "at {start}");
        }
    }
}

/// Adam(W) written in place gives the bits of the update into new tensors (one block and
/// many, f32 and f64, AdamW and Adam with L2 decay); the read-only check says whether the new
/// values are finite; tensors the kernel does not fit are refused, untouched.
#[test]
fn adam_update_in_place_gives_the_bits_of_the_fresh_update() {
    super::set_enabled(true);
    for (n, dtype, decoupled) in
        [(100_003, DType::F32, true), (37, DType::F32, false), (70_001, DType::F64, false)]
    {
        let (p, g) = (randn(&[n], dtype, 1.0), randn(&[n], dtype, 0.1));
        let (m, v) = (randn(&[n], dtype, 0.01), randn(&[n], dtype, 0.01).abs().unwrap());
        let s =
            AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, decoupled, t: 3 };
        let fresh = adam_update(&p, &g, Some((&m, &v)), &s).unwrap().unwrap();
        assert_eq!(adam_update_finite(&p, &g, &m, &v, &s).unwrap(), Some(true));
        assert!(adam_update_in_place(&p, &g, &m, &v, &s).unwrap());
        for (name, a, b) in [("p", &fresh.0, &p), ("m", &fresh.1, &m), ("v", &fresh.2, &v)] {
            let (a, b) = (a.to_dtype(DType::F64).unwrap(), b.to_dtype(DType::F64).unwrap());
            assert_eq!(a.to_vec1::<f64>().unwrap(), b.to_vec1::<f64>().unwrap(), "{name}, {n} {dtype:?}");
        }
    }
    // An overflowing step is seen by the read-only pass, which writes nothing.
    let (p, g) = (randn(&[1000], DType::F32, 1.0), randn(&[1000], DType::F32, 0.1));
    let (m, v) = (p.zeros_like().unwrap(), p.zeros_like().unwrap());
    let before = p.to_vec1::<f32>().unwrap();
    let huge =
        AdamStep { lr: 1e39, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: true, t: 1 };
    assert_eq!(adam_update_finite(&p, &g, &m, &v, &huge).unwrap(), Some(false));
    assert_eq!(p.to_vec1::<f32>().unwrap(), before);
    // Not the kernel's: a strided parameter, a bf16 one, moments sharing one storage.
    let s =
        AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: true, t: 1 };
    let wide = randn(&[10, 200], DType::F32, 1.0);
    let strided = wide.narrow(1, 0, 100).unwrap();
    let (g100, z100) =
        (randn(&[10, 100], DType::F32, 0.1), Tensor::zeros((10, 100), DType::F32, &Device::Cpu).unwrap());
    assert!(!adam_update_in_place(&strided, &g100, &z100, &z100.copy().unwrap(), &s).unwrap());
    assert_eq!(adam_update_finite(&strided, &g100, &z100, &z100.copy().unwrap(), &s).unwrap(), None);
    let p16 = p.to_dtype(DType::BF16).unwrap();
    let (g16, m16) = (g.to_dtype(DType::BF16).unwrap(), m.to_dtype(DType::BF16).unwrap());
    assert!(!adam_update_in_place(&p16, &g16, &m16, &m16.copy().unwrap(), &s).unwrap());
    assert!(!adam_update_in_place(&p, &g, &m, &m, &s).unwrap());
    assert_eq!(p.to_vec1::<f32>().unwrap(), before);
}

/// The update that writes only the parameter in place (the first of a fit) gives the bits
/// of the fresh update, with moments and without (zeros), and leaves the old moments as
/// they were; tensors the kernel does not fit are refused, untouched.
#[test]
fn adam_update_param_in_place_gives_the_bits_of_the_fresh_update() {
    super::set_enabled(true);
    for (n, dtype, decoupled, with_moments) in [
        (100_003, DType::F32, true, true),
        (37, DType::F32, false, true),
        (70_001, DType::F64, false, false),
        (33_000, DType::F32, true, false),
    ] {
        let (p, g) = (randn(&[n], dtype, 1.0), randn(&[n], dtype, 0.1));
        let (m, v) = (randn(&[n], dtype, 0.01), randn(&[n], dtype, 0.01).abs().unwrap());
        let moments = with_moments.then_some((&m, &v));
        let s =
            AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, decoupled, t: 3 };
        let (m_before, v_before) = (m.copy().unwrap(), v.copy().unwrap());
        let fresh = adam_update(&p, &g, moments, &s).unwrap().unwrap();
        let (nm, nv) = adam_update_param_in_place(&p, &g, moments, &s).unwrap().unwrap();
        let bits = |t: &Tensor| t.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
        let case = format!("{n} {dtype:?} moments: {with_moments}");
        assert_eq!(bits(&fresh.0), bits(&p), "p, {case}");
        assert_eq!(bits(&fresh.1), bits(&nm), "m, {case}");
        assert_eq!(bits(&fresh.2), bits(&nv), "v, {case}");
        assert_eq!(bits(&m), bits(&m_before), "the old m is left alone, {case}");
        assert_eq!(bits(&v), bits(&v_before), "the old v is left alone, {case}");
    }
    let s =
        AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: true, t: 1 };
    let wide = randn(&[10, 200], DType::F32, 1.0);
    let strided = wide.narrow(1, 0, 100).unwrap();
    let g100 = randn(&[10, 100], DType::F32, 0.1);
    assert!(adam_update_param_in_place(&strided, &g100, None, &s).unwrap().is_none());
    assert_eq!(max_diff(&wide, &randn(&[10, 200], DType::F32, 1.0)), 0.0, "refused, untouched");
}

/// The first update of several parameters at once gives each the bits of its own update,
/// puts all the new moments in two shared buffers, and the next (in-place) update writes
/// each parameter's part of them and nothing else; mixed dtypes are refused, untouched.
#[test]
fn the_first_update_of_many_parameters_shares_two_buffers() {
    super::set_enabled(true);
    let s =
        AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, decoupled: true, t: 1 };
    let shapes: [&[usize]; 3] = [&[300, 70], &[37], &[5, 4001]];
    let ps: Vec<Tensor> = shapes.iter().map(|d| randn(d, DType::F32, 1.0)).collect();
    let gs: Vec<Tensor> = shapes.iter().map(|d| randn(d, DType::F32, 0.1)).collect();
    let alone: Vec<Tensor> = ps.iter().map(|p| p.copy().unwrap()).collect();
    let items: Vec<FirstUpdate<'_>> =
        ps.iter().zip(&gs).map(|(p, g)| FirstUpdate { p, g, moments: None, step: &s }).collect();
    let together = adam_update_params_in_place(&items).unwrap().unwrap();
    let bits = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let storage = |t: &Tensor| &*t.storage_and_layout().0 as *const candle_core::Storage as usize;
    for (i, ((p, g), (m, v))) in ps.iter().zip(&gs).zip(&together).enumerate() {
        let (nm, nv) = adam_update_param_in_place(&alone[i], g, None, &s).unwrap().unwrap();
        assert_eq!(bits(p), bits(&alone[i]), "p {i}");
        assert_eq!((bits(m), bits(v)), (bits(&nm), bits(&nv)), "moments {i}");
        assert_eq!(m.dims(), p.dims(), "m {i} has its parameter's shape");
        assert_eq!(storage(m), storage(&together[0].0), "every m in one buffer");
        assert_eq!(storage(v), storage(&together[0].1), "every v in one buffer");
    }
    // The second update writes the views in place: each matches its own fresh update.
    let s2 = AdamStep { t: 2, ..s };
    let expected: Vec<_> = ps
        .iter()
        .zip(&gs)
        .zip(&together)
        .map(|((p, g), (m, v))| adam_update(p, g, Some((m, v)), &s2).unwrap().unwrap())
        .collect();
    for ((p, g), (m, v)) in ps.iter().zip(&gs).zip(&together) {
        assert!(adam_update_in_place(p, g, m, v, &s2).unwrap());
    }
    for (i, ((p, (m, v)), e)) in ps.iter().zip(&together).zip(&expected).enumerate() {
        assert_eq!(
            (bits(p), bits(m), bits(v)),
            (bits(&e.0), bits(&e.1), bits(&e.2)),
            "step 2, parameter {i}"
        );
    }
    let (p64, g64) = (randn(&[10], DType::F64, 1.0), randn(&[10], DType::F64, 0.1));
    let before = bits(&ps[1]);
    let mixed = [
        FirstUpdate { p: &ps[1], g: &gs[1], moments: None, step: &s },
        FirstUpdate { p: &p64, g: &g64, moments: None, step: &s },
    ];
    assert!(adam_update_params_in_place(&mixed).unwrap().is_none());
    assert_eq!(bits(&ps[1]), before, "refused, untouched");
}

/// The bound proves ordinary updates finite and returns moment bounds that hold after
/// them, step after step (the gradient read, or bounded by its L2 norm as `train_step`
/// passes it); it declines a huge learning rate, ε = 0 and a NaN gradient, leaving those to
/// the exact check.
#[test]
fn adam_bounds_hold_and_decline_what_they_cannot_prove() {
    super::set_enabled(true);
    let n = 50_000;
    let (p, m, v) = (
        randn(&[n], DType::F32, 1.0),
        Tensor::zeros(n, DType::F32, &Device::Cpu).unwrap(),
        Tensor::zeros(n, DType::F32, &Device::Cpu).unwrap(),
    );
    let max = |t: &Tensor| t.abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap() as f64;
    let mut known = None;
    for t in 1..=4 {
        let g = randn(&[n], DType::F32, 0.1 * t as f64).affine(1.0, 0.01 * t as f64).unwrap();
        let s = AdamStep {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            decoupled: t % 2 == 0,
            t,
        };
        // Odd steps: |g| ≤ ‖g‖₂, so g is not read.
        let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().sqrt() as f64;
        let g_bound = (t % 2 == 1).then_some(norm);
        let b = adam_update_bounded(&p, &g, Some((&m, &v)), &s, known, g_bound)
            .unwrap()
            .expect("an ordinary step is provable");
        assert!(adam_update_in_place(&p, &g, &m, &v, &s).unwrap());
        assert!(
            max(&m) <= b.m && max(&v) <= b.v,
            "step {t}: |m| {} ≤ {}, v {} ≤ {}",
            max(&m),
            b.m,
            max(&v),
            b.v
        );
        known = Some(b);
    }
    let g = randn(&[n], DType::F32, 0.1);
    let s =
        AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: true, t: 5 };
    assert!(adam_update_bounded(&p, &g, Some((&m, &v)), &AdamStep { lr: 1e39, ..s }, known, None)
        .unwrap()
        .is_none());
    assert!(adam_update_bounded(&p, &g, Some((&m, &v)), &AdamStep { eps: 0.0, ..s }, known, None)
        .unwrap()
        .is_none());
    let nan =
        Tensor::cat(&[Tensor::new(&[f32::NAN], &Device::Cpu).unwrap(), g.narrow(0, 1, n - 1).unwrap()], 0)
            .unwrap();
    assert!(adam_update_bounded(&p, &nan, Some((&m, &v)), &s, known, None).unwrap().is_none());
    assert!(
        adam_update_bounded(&p, &nan, Some((&m, &v)), &s, known, Some(f64::NAN)).unwrap().is_none(),
        "a NaN bound is no bound: g is read"
    );
    assert!(
        adam_update_bounded(&p, &g, Some((&m, &v)), &s, None, None).unwrap().is_some(),
        "reads m and v without carried bounds"
    );
    assert!(
        adam_update_bounded(&p, &g, None, &s, None, None).unwrap().is_some(),
        "the first update: no moments yet, zero bounds"
    );
    assert!(adam_update_bounded(&p, &g, None, &AdamStep { lr: 1e39, ..s }, None, None).unwrap().is_none());
}

/// With a sink open, the fused dense layers (plain, + GELU, + dropout, GPT-2's `x · w`)
/// hand their weights' and biases' gradients to it; a weight also used through candle's own
/// ops (a tied embedding matrix) has the rest in candle's store; a layer's input keeps its
/// gradient in the store. Added up, they are candle's gradients without the sink.
#[test]
fn a_grad_sink_holds_what_candles_store_would_hold() {
    super::set_enabled(true);
    let var = |dims: &[usize]| Var::from_tensor(&randn(dims, DType::F32, 1.0)).unwrap();
    let (x, w, b, w2, b2, c, cb) =
        (var(&[2, 3, 8]), var(&[5, 8]), var(&[5]), var(&[6, 8]), var(&[6]), var(&[8, 4]), var(&[4]));
    let ids = Tensor::new(&[1u32, 4, 4, 0], &Device::Cpu).unwrap();
    let mask =
        (randn(&[2, 3, 6], DType::F32, 1.0).ge(0.0).unwrap().to_dtype(DType::F32).unwrap() * 2.0).unwrap();
    let loss = || {
        let parts = [
            linear(&x, &w, Some(&b)).unwrap().sqr().unwrap().sum_all().unwrap(),
            linear_gelu(&x, &w2, &b2, false).unwrap().sum_all().unwrap(),
            linear_dropout(&x, &w2, &b2, Some(&mask)).unwrap().sqr().unwrap().sum_all().unwrap(),
            conv1d(&x, &c, Some(&cb)).unwrap().sqr().unwrap().sum_all().unwrap(),
            // The tied use: rows of w looked up by candle's index_select.
            w.as_tensor().index_select(&ids, 0).unwrap().sqr().unwrap().sum_all().unwrap(),
        ];
        parts.iter().skip(1).fold(parts[0].clone(), |a, p| (a + p).unwrap())
    };
    let plain = loss().backward().unwrap();
    let sink = GradSink::open();
    let store = loss().backward().unwrap();
    let mut sunk = sink.finish();
    for (name, v) in [("w", &w), ("b", &b), ("w2", &w2), ("b2", &b2), ("c", &c), ("cb", &cb), ("x", &x)] {
        let t = v.as_tensor();
        let got = match (store.get(t), sunk.remove(&t.id())) {
            (Some(a), Some(s)) => (a + s).unwrap(),
            (a, s) => a.cloned().or(s).unwrap_or_else(|| panic!("{name}: no gradient")),
        };
        let want = plain.get(t).unwrap();
        let diff = (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5, "{name}: {diff}");
        let in_store = store.get(t).is_some();
        match name {
            "x" => assert!(in_store, "a layer input's gradient stays in candle's store"),
            "w" => assert!(in_store, "the tied use's part is candle's"),
            _ => assert!(!in_store, "{name}: the sink should hold it"),
        }
    }
    assert!(sunk.is_empty(), "only the variables' gradients: {}", sunk.len());
    // Closed, it collects nothing: the store has every gradient again.
    assert!(loss().backward().unwrap().get(b.as_tensor()).is_some());
}

/// Attention as one node against candle's own ops (`q·kᵀ`, softmax, mask multiply, `·v`):
/// padding and causal biases (keys longer than queries, as with a KV cache), with and without
/// a dropout mask, in f32 and f64; values and the gradients of q, k and v.
#[test]
fn fused_attention_matches_the_composite_ops() {
    let dev = Device::Cpu;
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-11)] {
        for (b, h, tq, tk, d) in [(2, 3, 5, 5, 4), (1, 2, 3, 7, 8), (3, 4, 33, 33, 16)] {
            let (q, k, v) = (
                randn(&[b, h, tq, d], dtype, 1.0),
                randn(&[b, h, tk, d], dtype, 1.0),
                randn(&[b, h, tk, d], dtype, 1.5),
            );
            // Padding: the last key of batch 0 masked out; causal: query i sees keys ≤ i + past.
            let mut pad = vec![1u32; b * tk];
            pad[tk - 1] = 0;
            let pad =
                crate::model::layers::attention_bias(&Tensor::from_vec(pad, (b, tk), &dev).unwrap(), dtype)
                    .unwrap();
            let causal = crate::model::layers::causal_bias(tq, tk - tq, dtype, &dev).unwrap();
            let keep: Vec<f64> =
                (0..b * h * tq * tk).map(|i| if (i * 7919) % 10 < 2 { 0.0 } else { 1.25 }).collect();
            let keep = Tensor::from_vec(keep, (b, h, tq, tk), &dev).unwrap().to_dtype(dtype).unwrap();
            let scale = 1.0 / (d as f64).sqrt();
            for (name, bias) in [("padding", &pad), ("causal", &causal)] {
                for mask in [None, Some(&keep)] {
                    let what = format!(
                        "attention {dtype:?} {name} {b}x{h}x{tq}x{tk}x{d} dropout={}",
                        mask.is_some()
                    );
                    compare(
                        &what,
                        &[q.clone(), k.clone(), v.clone()],
                        |t| {
                            attention(&t[0], &t[1], &t[2], Some(bias), scale, mask).unwrap().expect("fusable")
                        },
                        |t| {
                            let s = t[0].matmul(&t[1].t().unwrap()).unwrap();
                            let p = softmax_composite(&s, scale, Some(bias)).unwrap();
                            let p = match mask {
                                Some(m) => (p * m).unwrap(),
                                None => p,
                            };
                            p.matmul(&t[2]).unwrap()
                        },
                        tol,
                        tol * 10.0,
                    );
                }
            }
        }
    }
}

/// What the fused attention leaves to the composite path: a bias being trained, inputs that
/// are not 4-D, mismatched head sizes.
#[test]
fn fused_attention_declines_what_it_does_not_handle() {
    super::set_enabled(true);
    let q = randn(&[1, 2, 3, 4], DType::F32, 1.0);
    let trained = Var::from_tensor(&randn(&[1, 1, 1, 3], DType::F32, 1.0)).unwrap();
    assert!(attention(&q, &q, &q, Some(trained.as_tensor()), 0.5, None).unwrap().is_none());
    let flat = q.flatten_to(1).unwrap();
    assert!(attention(&flat, &flat, &flat, None, 0.5, None).unwrap().is_none());
    let wide = randn(&[1, 2, 3, 5], DType::F32, 1.0);
    assert!(attention(&q, &wide, &wide, None, 0.5, None).unwrap().is_none());
    assert!(attention(&q, &q, &q, None, 0.5, None).unwrap().is_some());
}

/// Σx² in one pass equals the composite `sqr().sum_all()`, over several parallel blocks and
/// on a transposed (non-contiguous) view, which takes the composite path.
#[test]
fn sum_squares_matches_the_composite() {
    super::set_enabled(true);
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
        let g = randn(&[300, 700], dtype, 0.3);
        let want =
            g.sqr().unwrap().sum_all().unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
        let before = fused_calls();
        let got = sum_squares(&g).unwrap().to_scalar::<f64>().unwrap();
        assert!(fused_calls() > before, "the one-pass sum ran");
        assert!(((got - want) / want).abs() < tol, "{dtype:?}: {got} vs {want}");
        let t = sum_squares(&g.t().unwrap()).unwrap().to_scalar::<f64>().unwrap();
        assert!(((t - want) / want).abs() < tol, "{dtype:?} transposed: {t} vs {want}");
    }
}

/// The feed-forward's `gelu(x · op(w) + b)` as one node against the dense layer and the
/// GELU from candle's ops, both GELUs and both weight layouts, f32 and f64, with enough
/// rows to split the GELU across threads.
#[test]
fn dense_gelu_matches_the_composite_ops() {
    // The erf GELU is Abramowitz–Stegun's (|err| < 1.5e-7), so f64 matches candle's exact
    // one to about that, as `bias_gelu` does.
    for dtype in [DType::F32, DType::F64] {
        for (rows, inp, out) in [(3, 5, 7), (160, 48, 256)] {
            let x = randn(&[2, rows, inp], dtype, 1.0);
            let (w_out_in, w_in_out) = (randn(&[out, inp], dtype, 0.4), randn(&[inp, out], dtype, 0.4));
            let b = randn(&[out], dtype, 0.5);
            for tanh in [false, true] {
                let act = |u: &Tensor, b: &Tensor| {
                    if tanh {
                        bias_gelu_tanh_composite(u, b).unwrap()
                    } else {
                        bias_gelu_composite(u, b).unwrap()
                    }
                };
                compare(
                    &format!("linear_gelu {dtype:?} {rows}x{inp}x{out} tanh={tanh}"),
                    &[x.clone(), w_out_in.clone(), b.clone()],
                    |t| linear_gelu(&t[0], &t[1], &t[2], tanh).unwrap(),
                    |t| act(&t[0].broadcast_matmul(&t[1].t().unwrap()).unwrap(), &t[2]),
                    1e-6,
                    1e-5,
                );
                compare(
                    &format!("conv1d_gelu {dtype:?} {rows}x{inp}x{out} tanh={tanh}"),
                    &[x.clone(), w_in_out.clone(), b.clone()],
                    |t| conv1d_gelu(&t[0], &t[1], &t[2], tanh).unwrap(),
                    |t| act(&t[0].broadcast_matmul(&t[1]).unwrap(), &t[2]),
                    1e-6,
                    1e-5,
                );
            }
        }
    }
}

/// A frozen weight gets no gradient through the fused feed-forward node, and its input
/// and bias still get theirs (as with the dense layer alone).
#[test]
fn dense_gelu_with_a_frozen_weight_trains_the_rest() {
    super::set_enabled(true);
    let x = Var::from_tensor(&randn(&[4, 6], DType::F32, 1.0)).unwrap();
    let w = randn(&[5, 6], DType::F32, 0.5);
    let b = Var::from_tensor(&randn(&[5], DType::F32, 0.5)).unwrap();
    let y = linear_gelu(x.as_tensor(), &w, b.as_tensor(), false).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&w).is_none());
    assert!(grads.get(x.as_tensor()).is_some() && grads.get(b.as_tensor()).is_some());
}

/// The one-node feed-forward runs the two-node path's kernels in the same order: the same
/// bits forward and backward.
#[test]
fn dense_gelu_gives_the_bits_of_the_two_node_path() {
    super::set_enabled(true);
    let inputs = [
        randn(&[2, 70, 24], DType::F32, 1.0),
        randn(&[96, 24], DType::F32, 0.4),
        randn(&[96], DType::F32, 0.5),
    ];
    let r = randn(&[2, 70, 96], DType::F32, 1.0);
    let (y1, g1) = value_and_grads(&inputs, Some(&r), |t| linear_gelu(&t[0], &t[1], &t[2], false).unwrap());
    let (y2, g2) = value_and_grads(&inputs, Some(&r), |t| {
        bias_gelu(&linear(&t[0], &t[1], None).unwrap(), &t[2]).unwrap()
    });
    let bits = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(bits(&y1), bits(&y2));
    for (a, b) in g1.iter().zip(&g2) {
        assert_eq!(bits(a), bits(b));
    }
}

/// A dense layer and its dropout as one node, against candle's ops (both weight layouts, f32
/// and f64), and bit for bit against the two fused nodes it replaces.
#[test]
fn dense_dropout_matches_the_composite_and_the_two_node_path() {
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-11)] {
        for (rows, inp, out) in [(3, 5, 7), (150, 40, 300)] {
            let x = randn(&[2, rows, inp], dtype, 1.0);
            let (w_out_in, w_in_out) = (randn(&[out, inp], dtype, 0.4), randn(&[inp, out], dtype, 0.4));
            let b = randn(&[out], dtype, 0.5);
            let keep: Vec<f64> =
                (0..2 * rows * out).map(|i| if (i * 7919) % 10 < 3 { 0.0 } else { 1.0 / 0.7 }).collect();
            let mask = Tensor::from_vec(keep, (2, rows, out), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
            compare(
                &format!("linear_dropout {dtype:?} {rows}x{inp}x{out}"),
                &[x.clone(), w_out_in.clone(), b.clone()],
                |t| linear_dropout(&t[0], &t[1], &t[2], Some(&mask)).unwrap(),
                |t| (linear_composite(&t[0], &t[1], Some(&t[2])).unwrap() * &mask).unwrap(),
                tol,
                tol * 10.0,
            );
            compare(
                &format!("conv1d_dropout {dtype:?} {rows}x{inp}x{out}"),
                &[x.clone(), w_in_out.clone(), b.clone()],
                |t| conv1d_dropout(&t[0], &t[1], &t[2], Some(&mask)).unwrap(),
                |t| (t[0].broadcast_matmul(&t[1]).unwrap().broadcast_add(&t[2]).unwrap() * &mask).unwrap(),
                tol,
                tol * 10.0,
            );
        }
    }
    let (x, w, b) = (
        randn(&[2, 70, 24], DType::F32, 1.0),
        randn(&[96, 24], DType::F32, 0.4),
        randn(&[96], DType::F32, 0.5),
    );
    let keep: Vec<f32> = (0..2 * 70 * 96).map(|i| if i % 7 == 0 { 0.0 } else { 1.25 }).collect();
    let mask = Tensor::from_vec(keep, (2, 70, 96), &Device::Cpu).unwrap();
    let r = randn(&[2, 70, 96], DType::F32, 1.0);
    let inputs = [x, w, b];
    let (y1, g1) =
        value_and_grads(&inputs, Some(&r), |t| linear_dropout(&t[0], &t[1], &t[2], Some(&mask)).unwrap());
    let (y2, g2) = value_and_grads(&inputs, Some(&r), |t| {
        mul_mask(&linear(&t[0], &t[1], Some(&t[2])).unwrap(), &mask).unwrap()
    });
    let bits = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(bits(&y1), bits(&y2));
    for (a, b) in g1.iter().zip(&g2) {
        assert_eq!(bits(a), bits(b));
    }
    // Without a mask (evaluation) it is the dense layer.
    let plain = linear_dropout(&inputs[0], &inputs[1], &inputs[2], None).unwrap();
    assert_eq!(bits(&plain), bits(&linear(&inputs[0], &inputs[1], Some(&inputs[2])).unwrap()));
}

/// "Add & norm" as one node against candle's ops (`layer_norm_composite(x + r)`) in f32 and
/// f64, over shapes inside one parallel block and across several: the value and the
/// gradients of x, the residual, the weight and the bias.
#[test]
fn add_layer_norm_matches_the_composite() {
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-10)] {
        for shape in [[2usize, 3, 8], [4, 5, 33], [3, 70, 384]] {
            let d = shape[2];
            let inputs = [
                randn(&shape, dtype, 2.0),
                randn(&shape, dtype, 1.0),
                randn(&[d], dtype, 1.0),
                randn(&[d], dtype, 1.0),
            ];
            compare(
                &format!("add_layer_norm {dtype:?} {shape:?}"),
                &inputs,
                |t| add_layer_norm(&t[0], &t[1], &t[2], &t[3], 1e-5).unwrap(),
                |t| layer_norm_composite(&(&t[0] + &t[1]).unwrap(), &t[2], &t[3], 1e-5).unwrap(),
                tol,
                tol,
            );
        }
    }
}

/// The one-node "add & norm" forms the sum a row at a time and runs the layer norm's
/// arithmetic on it unchanged: the bits of the add followed by the fused layer norm, forward
/// and backward. A frozen weight and bias get no gradient, the two summands still do.
#[test]
fn add_layer_norm_gives_the_bits_of_the_add_then_the_norm() {
    super::set_enabled(true);
    let inputs = [
        randn(&[2, 90, 48], DType::F32, 1.5),
        randn(&[2, 90, 48], DType::F32, 1.0),
        randn(&[48], DType::F32, 0.7),
        randn(&[48], DType::F32, 0.3),
    ];
    let r = randn(&[2, 90, 48], DType::F32, 1.0);
    let (y1, g1) =
        value_and_grads(&inputs, Some(&r), |t| add_layer_norm(&t[0], &t[1], &t[2], &t[3], 1e-12).unwrap());
    let (y2, g2) = value_and_grads(&inputs, Some(&r), |t| {
        layer_norm(&(&t[0] + &t[1]).unwrap(), &t[2], &t[3], 1e-12).unwrap()
    });
    let bits = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(bits(&y1), bits(&y2));
    for (a, b) in g1.iter().zip(&g2) {
        assert_eq!(bits(a), bits(b));
    }
    let (x, res) = (Var::from_tensor(&inputs[0]).unwrap(), Var::from_tensor(&inputs[1]).unwrap());
    let y = add_layer_norm(x.as_tensor(), res.as_tensor(), &inputs[2], &inputs[3], 1e-5).unwrap();
    let grads = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&inputs[2]).is_none() && grads.get(&inputs[3]).is_none());
    assert_eq!(bits(grads.get(x.as_tensor()).unwrap()), bits(grads.get(res.as_tensor()).unwrap()));
}

/// SwiGLU `silu(g) · u` as one node against candle's `silu` and product, f32 and f64, with
/// gates far out in both tails (std 6: sigmoid near 0 and 1) and over several parallel blocks.
#[test]
fn swiglu_matches_the_composite() {
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-11)] {
        for (shape, std) in [([2usize, 3, 8], 1.0), ([3, 40, 1536], 6.0)] {
            let inputs = [randn(&shape, dtype, std), randn(&shape, dtype, 1.0)];
            compare(
                &format!("swiglu {dtype:?} {shape:?}"),
                &inputs,
                |t| swiglu(&t[0], &t[1]).unwrap(),
                |t| swiglu_composite(&t[0], &t[1]).unwrap(),
                tol,
                tol,
            );
        }
    }
    // Far below zero the gate shuts the product off (no NaN from e^{-g} overflowing).
    let g = Tensor::new(&[-1000f32, -90.0, 0.0, 90.0], &Device::Cpu).unwrap();
    let y =
        swiglu(&g, &Tensor::ones(4, DType::F32, &Device::Cpu).unwrap()).unwrap().to_vec1::<f32>().unwrap();
    assert!(y[0].abs() < 1e-30 && y[1].abs() < 1e-30 && y[2] == 0.0 && (y[3] - 90.0).abs() < 1e-4, "{y:?}");
}

/// Σ f(inputs) · r's gradient from the fused backward against central differences, in f64,
/// at up to `per_input` evenly spread entries of every input.
fn check_finite_differences(what: &str, inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Tensor, tol: f64) {
    super::set_enabled(true);
    let before = fused_calls();
    let probe = f(inputs);
    assert!(fused_calls() > before, "{what}: the fused kernel did not run");
    let r = randn(probe.dims(), DType::F64, 1.0);
    let loss = |ts: &[Tensor]| (f(ts) * &r).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
    let (_, grads) = value_and_grads(inputs, Some(&r), &f);
    let h = 1e-5;
    for (i, (input, grad)) in inputs.iter().zip(&grads).enumerate() {
        let base = input.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let analytic = grad.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let per_input = 12;
        let step = (base.len() / per_input).max(1);
        for at in (0..base.len()).step_by(step) {
            let nudged = |delta: f64| {
                let mut v = base.clone();
                v[at] += delta;
                let mut ts = inputs.to_vec();
                ts[i] = Tensor::from_vec(v, input.shape(), &Device::Cpu).unwrap();
                loss(&ts)
            };
            let numeric = (nudged(h) - nudged(-h)) / (2.0 * h);
            let err = (numeric - analytic[at]).abs() / numeric.abs().max(1.0);
            assert!(
                err < tol,
                "{what}: input {i}[{at}]: fused {} vs finite difference {numeric}",
                analytic[at]
            );
        }
    }
}

/// Every fused op's backward against finite differences of its own forward (f64): the
/// parity tests above compare with candle's backward; this one needs no reference at all.
#[test]
fn every_fused_backward_matches_finite_differences() {
    let f64s = |shape: &[usize], std: f64| randn(shape, DType::F64, std);
    let (x, w, b) = (f64s(&[2, 5, 12], 1.0), f64s(&[12], 1.0), f64s(&[12], 0.5));
    let tol = 1e-6;
    check_finite_differences(
        "layer_norm",
        &[x.clone(), w.clone(), b.clone()],
        |t| layer_norm(&t[0], &t[1], &t[2], 1e-5).unwrap(),
        tol,
    );
    check_finite_differences(
        "add_layer_norm",
        &[x.clone(), f64s(&[2, 5, 12], 0.8), w.clone(), b.clone()],
        |t| add_layer_norm(&t[0], &t[1], &t[2], &t[3], 1e-5).unwrap(),
        tol,
    );
    check_finite_differences(
        "rms_norm",
        &[x.clone(), w.clone()],
        |t| rms_norm(&t[0], &t[1], 1e-6).unwrap(),
        tol,
    );
    check_finite_differences("bias_gelu", &[x.clone(), b.clone()], |t| bias_gelu(&t[0], &t[1]).unwrap(), tol);
    check_finite_differences(
        "bias_gelu_tanh",
        &[x.clone(), b.clone()],
        |t| bias_gelu_tanh(&t[0], &t[1]).unwrap(),
        tol,
    );
    check_finite_differences(
        "swiglu",
        &[f64s(&[2, 5, 12], 3.0), x.clone()],
        |t| swiglu(&t[0], &t[1]).unwrap(),
        tol,
    );
    let causal = crate::model::layers::causal_bias(5, 0, DType::F64, &Device::Cpu).unwrap();
    check_finite_differences(
        "softmax",
        &[f64s(&[2, 2, 5, 5], 2.0)],
        |t| softmax(&t[0], 0.5, Some(&causal)).unwrap(),
        tol,
    );
    let (cos, sin) = crate::model::layers::rope_tables(2, 5, 8, 10_000.0, DType::F64, &Device::Cpu).unwrap();
    check_finite_differences("rope", &[f64s(&[1, 2, 5, 8], 1.0)], |t| rope(&t[0], &cos, &sin).unwrap(), tol);
    let targets = Tensor::new(&[3u32, 0, 6, 1], &Device::Cpu).unwrap();
    check_finite_differences(
        "cross_entropy",
        &[f64s(&[4, 7], 2.0)],
        |t| cross_entropy(&t[0], &targets).unwrap(),
        tol,
    );
    let (wd, bd) = (f64s(&[9, 12], 0.5), f64s(&[9], 0.5));
    check_finite_differences(
        "linear",
        &[x.clone(), wd.clone(), bd.clone()],
        |t| linear(&t[0], &t[1], Some(&t[2])).unwrap(),
        tol,
    );
    check_finite_differences(
        "linear_gelu",
        &[x.clone(), wd.clone(), bd.clone()],
        |t| linear_gelu(&t[0], &t[1], &t[2], false).unwrap(),
        tol,
    );
    let keep: Vec<f64> = (0..2 * 5 * 9).map(|i| if i % 4 == 0 { 0.0 } else { 4.0 / 3.0 }).collect();
    let keep = Tensor::from_vec(keep, (2, 5, 9), &Device::Cpu).unwrap();
    check_finite_differences(
        "linear_dropout",
        &[x.clone(), wd, bd],
        |t| linear_dropout(&t[0], &t[1], &t[2], Some(&keep)).unwrap(),
        tol,
    );
    let pad = crate::model::layers::attention_bias(
        &Tensor::new(&[[1u32, 1, 1, 1, 0], [1, 1, 1, 1, 1]], &Device::Cpu).unwrap(),
        DType::F64,
    )
    .unwrap();
    check_finite_differences(
        "attention",
        &[f64s(&[2, 2, 5, 4], 1.0), f64s(&[2, 2, 5, 4], 1.0), f64s(&[2, 2, 5, 4], 1.0)],
        |t| attention(&t[0], &t[1], &t[2], Some(&pad), 0.5, None).unwrap().expect("fusable"),
        tol,
    );
}

/// The embedding node against candle's `index_select`: the rows and the table's gradient
/// with repeated ids (f32 and f64 tables, u32 and i64 ids); with a sink open, the table's
/// gradient goes to the sink alone, also when the table is tied to a dense layer (the rows
/// added in place into the layer's part); an id past the table is a clear error.
#[test]
fn the_embedding_node_matches_index_select_and_fills_the_sink() {
    super::set_enabled(true);
    let dev = Device::Cpu;
    for (dtype, tol) in [(DType::F32, 1e-6), (DType::F64, 1e-14)] {
        let table = Var::from_tensor(&randn(&[7, 5], dtype, 1.0)).unwrap();
        let r = randn(&[2, 3, 5], dtype, 1.0);
        let ids_u32 = Tensor::new(&[[1u32, 4, 4], [0, 6, 1]], &dev).unwrap();
        let ids_i64 = Tensor::new(&[[1i64, 4, 4], [0, 6, 1]], &dev).unwrap();
        for ids in [&ids_u32, &ids_i64] {
            let before = fused_calls();
            let fused = embedding(ids, table.as_tensor()).unwrap();
            assert!(fused_calls() > before, "the fused node ran");
            let want = table
                .as_tensor()
                .index_select(&ids.flatten_all().unwrap(), 0)
                .unwrap()
                .reshape((2, 3, 5))
                .unwrap();
            assert_eq!(max_diff(&fused, &want), 0.0, "{dtype:?}: the rows");
            let grad = |rows: Tensor| (rows * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let (got, want) = (grad(fused), grad(want));
            let d = max_diff(got.get(table.as_tensor()).unwrap(), want.get(table.as_tensor()).unwrap());
            assert!(d < tol, "{dtype:?}: the table's gradient differs by {d}");
        }
        // Tied: the table is also the weight of a dense layer.
        let x = Var::from_tensor(&randn(&[2, 3, 5], dtype, 1.0)).unwrap();
        let tied = || {
            let rows = embedding(&ids_u32, table.as_tensor()).unwrap();
            let logits = linear(x.as_tensor(), table.as_tensor(), None).unwrap();
            ((rows * &r).unwrap().sum_all().unwrap() + logits.sqr().unwrap().sum_all().unwrap()).unwrap()
        };
        let alone = || (embedding(&ids_u32, table.as_tensor()).unwrap() * &r).unwrap().sum_all().unwrap();
        for (name, loss) in [("tied", &tied as &dyn Fn() -> Tensor), ("alone", &alone)] {
            let plain = loss().backward().unwrap();
            let sink = GradSink::open();
            let store = loss().backward().unwrap();
            let mut sunk = sink.finish();
            assert!(store.get(table.as_tensor()).is_none(), "{name}: the sink holds the table's gradient");
            let got = sunk.remove(&table.as_tensor().id()).expect("in the sink");
            let d = max_diff(&got, plain.get(table.as_tensor()).unwrap());
            assert!(d < tol * 10.0, "{dtype:?} {name}: the sink's gradient differs by {d}");
        }
    }
    let table = randn(&[7, 5], DType::F32, 1.0);
    let err = embedding(&Tensor::new(&[2u32, 9], &dev).unwrap(), &table).unwrap_err().to_string();
    assert!(err.contains("id 9 is outside the table's 7 rows"), "{err}");
}
