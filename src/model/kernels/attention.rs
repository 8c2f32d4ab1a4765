//! Scaled dot-product attention as one graph node on the CPU:
//! `out = dropout(softmax(q·kᵀ · scale + bias)) · v`, per (batch, head) pair.
//!
//! As separate ops, attention is four graph nodes (the scores, the softmax, the dropout
//! multiply, and candle's batched matmul with `v`, which loops over the pairs one at a
//! time), and the backward pass gives each intermediate `[batch, heads, q, keys]` tensor a
//! zero-filled gradient that it then adds into. Here the pairs run in parallel, each pair's scores live in a scratch
//! buffer that never becomes a tensor, and the backward pass recomputes them (one small
//! product, as flash attention does) instead of keeping them alive between the passes:
//!
//! ```text
//! P  = softmax(q·kᵀ·scale + bias)      P' = P ∘ mask (dropout, inverted scaling)
//! dv = P'ᵀ · dout                      dP = (dout · vᵀ) ∘ mask
//! dS = scale · P ∘ (dP − Σⱼ dP ∘ P)    dq = dS · k,   dk = dSᵀ · q
//! ```
//!
//! Each step's arithmetic is the fused softmax's and the dropout multiply's, so this node
//! computes what the four-node path computes (up to the matmuls' summation order).

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Storage, Tensor};

use super::{contiguous, with_real, KernelError, Real};
use crate::error::Result;

const OP: &str = "attention";

/// `dropout(softmax(q·kᵀ · scale + bias)) · v` for `q` `[batch, heads, q_len, head_dim]` and
/// `k`, `v` `[batch, heads, k_len, head_dim]`, as one fused node, or `None` when the inputs
/// do not fit the CPU kernel (then the caller composes the ops itself). `bias` broadcasts
/// to `[batch, heads, q_len, k_len]` and gets no gradient; `mask` is dropout's keep-mask of
/// that full shape (0 or `1/(1-p)`), multiplied into the probabilities.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    scale: f64,
    mask: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    if !super::fusable(q) || q.rank() != 4 || k.rank() != 4 || v.rank() != 4 {
        return Ok(None);
    }
    let (b, h, tq, d) = q.dims4()?;
    let (kb, kh, tk, kd) = k.dims4()?;
    let same = |t: &Tensor| t.dtype() == q.dtype() && t.device().same_device(q.device());
    if (kb, kh, kd) != (b, h, d) || v.dims() != k.dims() || !same(k) || !same(v) {
        return Ok(None);
    }
    let scores = Shape::from((b, h, tq, tk));
    let bias = match bias {
        Some(t) if !same(t) || t.track_op() => return Ok(None),
        Some(t) => match t.broadcast_as(&scores) {
            Ok(t) => Some(t),
            Err(_) => return Ok(None),
        },
        None => None,
    };
    let mask = match mask {
        Some(m) if m.dims() != scores.dims() || m.track_op() || !m.device().same_device(q.device()) => {
            return Ok(None)
        }
        Some(m) => Some(m.to_dtype(q.dtype())?.contiguous()?),
        None => None,
    };
    let op = Attention { bias, mask, scale };
    Ok(Some(q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op)?))
}

/// The forward node on `(q, k, v)`; the bias and the dropout mask are constants it holds.
struct Attention {
    bias: Option<Tensor>,
    mask: Option<Tensor>,
    scale: f64,
}

/// The sizes of one call: per (batch, head) pair, `tq × tk` scores over `d`-long head
/// vectors.
#[derive(Clone, Copy)]
struct Dims {
    tq: usize,
    tk: usize,
    d: usize,
}

impl Dims {
    fn of(lq: &Layout, lk: &Layout) -> std::result::Result<Dims, KernelError> {
        match (lq.dims(), lk.dims()) {
            (&[_, _, tq, d], &[_, _, tk, _]) => Ok(Dims { tq, tk, d }),
            (q, k) => Err(KernelError::Shape { op: OP, what: format!("q {q:?}, k {k:?}: both must be 4-D") }),
        }
    }
}

/// A constant tensor's elements for the kernel: the contiguous mask, or the bias's storage
/// with each score row's starting offset and its stride along the keys.
struct Constants<'a, T> {
    bias: Option<(&'a [T], Vec<usize>, usize)>,
    mask: Option<&'a [T]>,
}

/// Runs `f` with the op's constants read out of their storage.
fn with_constants<T: Real, R>(
    bias: Option<&Tensor>,
    mask: Option<&Tensor>,
    f: impl FnOnce(Constants<'_, T>) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let bias_guard = bias.map(|t| t.storage_and_layout());
    let mask_guard = mask.map(|t| t.storage_and_layout());
    let bias = match &bias_guard {
        Some((s, l)) => {
            let all = T::slice(cpu(s, "bias")?).ok_or(KernelError::DType {
                op: OP,
                arg: "bias",
                dtype: T::DTYPE,
            })?;
            let (rows, stride) = super::softmax::bias_rows(l);
            Some((all, rows, stride))
        }
        None => None,
    };
    let mask = match &mask_guard {
        Some((s, l)) => Some(contiguous::<T>(cpu(s, "mask")?, l, OP, "mask")?),
        None => None,
    };
    f(Constants { bias, mask })
}

/// The CPU storage under a constant input, or an error naming it.
fn cpu<'a>(s: &'a Storage, arg: &'static str) -> std::result::Result<&'a CpuStorage, KernelError> {
    match s {
        Storage::Cpu(c) => Ok(c),
        _ => Err(KernelError::NotContiguous { op: OP, arg }),
    }
}

/// `dst (m×n) = a · b` by gemm on the calling thread, each operand given as a pointer with
/// its (row, column) strides; `dst` is row-major and fully overwritten.
///
/// # Safety
/// Every element the strides address for `a` (`m×k`) and `b` (`k×n`) must be in bounds,
/// and `dst` must hold `m·n` elements.
#[allow(clippy::too_many_arguments)]
unsafe fn product<T: Real>(
    dst: &mut [T],
    (m, n, k): (usize, usize, usize),
    a: *const T,
    (a_rs, a_cs): (usize, usize),
    b: *const T,
    (b_rs, b_cs): (usize, usize),
) {
    debug_assert_eq!(dst.len(), m * n);
    gemm::gemm(
        m,
        n,
        k,
        dst.as_mut_ptr(),
        1,
        n as isize,
        false,
        a,
        a_cs as isize,
        a_rs as isize,
        b,
        b_cs as isize,
        b_rs as isize,
        T::one(),
        T::one(),
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

super::avx512_twin! {
    /// `row ← softmax(row)`.
    fn softmax_in_place<T: Real>(row: &mut [T]) {
        let max = super::max_of(row);
        for v in row.iter_mut() {
            *v = (*v - max).exp_fast();
        }
        let inv = super::sum_map(row, |v| v).recip();
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// Pair `pair`'s attention probabilities before dropout into `p` (`tq × tk`): the scores
/// `q·kᵀ`, then the fused softmax's arithmetic row by row.
fn probabilities<T: Real>(
    p: &mut [T],
    q: &[T],
    k: &[T],
    dims: Dims,
    pair: usize,
    scale: T,
    c: &Constants<T>,
) {
    let Dims { tq, tk, d, .. } = dims;
    // SAFETY: `q` and `k` are this pair's `tq×d` and `tk×d` row-major blocks; kᵀ reads k
    // with its strides swapped.
    unsafe { product(p, (tq, tk, d), q.as_ptr(), (d, 1), k.as_ptr(), (1, d)) };
    for (i, row) in p.chunks_exact_mut(tk).enumerate() {
        match &c.bias {
            Some((bias, rows, 1)) => {
                let start = rows[pair * tq + i];
                for (s, &b) in row.iter_mut().zip(&bias[start..start + tk]) {
                    *s = *s * scale + b;
                }
            }
            Some((bias, rows, stride)) => {
                let start = rows[pair * tq + i];
                for (j, s) in row.iter_mut().enumerate() {
                    *s = *s * scale + bias[start + j * stride];
                }
            }
            None => {
                for s in row.iter_mut() {
                    *s *= scale;
                }
            }
        }
        softmax_in_place(row);
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "tunelab-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        use rayon::prelude::*;
        super::count_call();
        with_real!(s1, OP, "q", |T| {
            let (q, k, v) = (
                contiguous::<T>(s1, l1, OP, "q")?,
                contiguous::<T>(s2, l2, OP, "k")?,
                contiguous::<T>(s3, l3, OP, "v")?,
            );
            let dims = Dims::of(l1, l2)?;
            let Dims { tq, tk, d, .. } = dims;
            let scale = T::of(self.scale);
            with_constants::<T, _>(self.bias.as_ref(), self.mask.as_ref(), |c| {
                let mut out = vec![T::zero(); q.len()];
                if tq * d > 0 {
                    out.par_chunks_mut(tq * d).enumerate().for_each_init(
                        || vec![T::zero(); tq * tk],
                        |p, (pair, out)| {
                            let (qp, kp, vp) = (
                                &q[pair * tq * d..][..tq * d],
                                &k[pair * tk * d..][..tk * d],
                                &v[pair * tk * d..][..tk * d],
                            );
                            probabilities(p, qp, kp, dims, pair, scale, &c);
                            if let Some(mask) = c.mask {
                                for (x, m) in p.iter_mut().zip(&mask[pair * tq * tk..][..tq * tk]) {
                                    *x *= *m;
                                }
                            }
                            // SAFETY: P' is `tq×tk` and v this pair's `tk×d`, both row-major.
                            unsafe { product(out, (tq, d, tk), p.as_ptr(), (tk, 1), vp.as_ptr(), (d, 1)) };
                        },
                    );
                }
                Ok((T::wrap(out), l1.shape().clone()))
            })
        })
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let backward = AttentionBackward {
            bias: self.bias.clone(),
            mask: self.mask.clone(),
            scale: self.scale,
            grad: grad.contiguous()?,
        };
        let packed = q.apply_op3_no_bwd(k, v, &backward)?;
        let (nq, nk) = (q.elem_count(), k.elem_count());
        let dq = packed.narrow(0, 0, nq)?.reshape(q.shape())?;
        let dk = packed.narrow(0, nq, nk)?.reshape(k.shape())?;
        let dv = packed.narrow(0, nq + nk, nk)?.reshape(v.shape())?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// The backward node on `(q, k, v)` with the output's gradient held: `[dq, dk, dv]` packed
/// into one vector.
struct AttentionBackward {
    bias: Option<Tensor>,
    mask: Option<Tensor>,
    scale: f64,
    grad: Tensor,
}

impl CustomOp3 for AttentionBackward {
    fn name(&self) -> &'static str {
        "tunelab-attention-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        use rayon::prelude::*;
        with_real!(s1, OP, "q", |T| {
            let (q, k, v) = (
                contiguous::<T>(s1, l1, OP, "q")?,
                contiguous::<T>(s2, l2, OP, "k")?,
                contiguous::<T>(s3, l3, OP, "v")?,
            );
            let dims = Dims::of(l1, l2)?;
            let Dims { tq, tk, d, .. } = dims;
            let scale = T::of(self.scale);
            let (guard, lg) = self.grad.storage_and_layout();
            let Storage::Cpu(gs) = &*guard else {
                return Err(KernelError::NotContiguous { op: OP, arg: "grad" }.into());
            };
            let dout = contiguous::<T>(gs, lg, OP, "grad")?;
            super::same_len(OP, dout.len(), lg, ("q", q.len(), l1))?;
            with_constants::<T, _>(self.bias.as_ref(), self.mask.as_ref(), |c| {
                let (nq, nk) = (q.len(), k.len());
                let mut packed = vec![T::zero(); nq + 2 * nk];
                let (dq, rest) = packed.split_at_mut(nq);
                let (dk, dv) = rest.split_at_mut(nk);
                if tq * d > 0 && tk > 0 {
                    dq.par_chunks_mut(tq * d)
                        .zip(dk.par_chunks_mut(tk * d))
                        .zip(dv.par_chunks_mut(tk * d))
                        .enumerate()
                        .for_each_init(
                            || (vec![T::zero(); tq * tk], vec![T::zero(); tq * tk]),
                            |(p, ds), (pair, ((dq, dk), dv))| {
                                let (qp, kp, vp) = (
                                    &q[pair * tq * d..][..tq * d],
                                    &k[pair * tk * d..][..tk * d],
                                    &v[pair * tk * d..][..tk * d],
                                );
                                let go = &dout[pair * tq * d..][..tq * d];
                                let mask = c.mask.map(|m| &m[pair * tq * tk..][..tq * tk]);
                                probabilities(p, qp, kp, dims, pair, scale, &c);
                                // dv = P'ᵀ · dout, with P' = P ∘ mask built in `ds` for now.
                                let kept: &[T] = match mask {
                                    Some(m) => {
                                        for ((x, &pv), &mv) in ds.iter_mut().zip(p.iter()).zip(m) {
                                            *x = pv * mv;
                                        }
                                        ds
                                    }
                                    None => p,
                                };
                                // SAFETY: P'ᵀ reads the `tq×tk` P' with swapped strides;
                                // dout is `tq×d`; dv is `tk×d`.
                                unsafe {
                                    product(dv, (tk, d, tq), kept.as_ptr(), (1, tk), go.as_ptr(), (d, 1))
                                };
                                // dP = (dout · vᵀ) ∘ mask.
                                // SAFETY: dout `tq×d`; vᵀ reads v (`tk×d`) with swapped strides.
                                unsafe { product(ds, (tq, tk, d), go.as_ptr(), (d, 1), vp.as_ptr(), (1, d)) };
                                if let Some(m) = mask {
                                    for (x, &mv) in ds.iter_mut().zip(m) {
                                        *x *= mv;
                                    }
                                }
                                // dS = scale · P ∘ (dP − Σ dP ∘ P), the softmax backward.
                                for (dr, pr) in ds.chunks_exact_mut(tk).zip(p.chunks_exact(tk)) {
                                    let mut dot = T::zero();
                                    for j in 0..tk {
                                        dot += pr[j] * dr[j];
                                    }
                                    for j in 0..tk {
                                        dr[j] = scale * pr[j] * (dr[j] - dot);
                                    }
                                }
                                // SAFETY: dS `tq×tk`, k `tk×d`, q `tq×d`; dSᵀ swaps strides.
                                unsafe {
                                    product(dq, (tq, d, tk), ds.as_ptr(), (tk, 1), kp.as_ptr(), (d, 1));
                                    product(dk, (tk, d, tq), ds.as_ptr(), (1, tk), qp.as_ptr(), (d, 1));
                                }
                            },
                        );
                }
                Ok((T::wrap(packed), Shape::from(nq + 2 * nk)))
            })
        })
    }
}
