//! The attention softmax, fused: `softmax(x · scale + bias)` over the last dimension in one
//! pass per row, where `bias` is the additive mask (`[batch, 1, 1, keys]` padding,
//! `[1, 1, q, keys]` causal, or both) broadcast over heads and queries without being
//! materialised. Backward: `dx = scale · y · (dy - Σ dy·y)`, one pass.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor, D};

use super::{contiguous, fusable, same_len, with_real, KernelError, Real};
use crate::error::Result;

const OP: &str = "softmax";

/// `softmax(x · scale + bias)` over the last dimension; `bias` broadcasts to `x`'s shape and
/// gets no gradient (it is a mask). Fused on CPU for f32/f64 and on CUDA for f32 (rank ≤ 4);
/// bf16/f16 runs the same kernel in f32; other inputs, or a bias that is itself being
/// trained, take [`softmax_composite`].
pub fn softmax(x: &Tensor, scale: f64, bias: Option<&Tensor>) -> Result<Tensor> {
    if super::half_to_fuse(x) && bias.is_none_or(|b| !b.track_op()) {
        return match bias {
            None => super::in_f32(x.dtype(), [x], |[x]| softmax(&x, scale, None)),
            Some(b) => super::in_f32(x.dtype(), [x, b], |[x, b]| softmax(&x, scale, Some(&b))),
        };
    }
    let bias_ok =
        bias.is_none_or(|b| b.dtype() == x.dtype() && !b.track_op() && b.device().same_device(x.device()));
    let cuda = super::fusable_cuda(x) && x.rank() <= 4;
    if !((fusable(x) || cuda) && bias_ok) {
        return softmax_composite(x, scale, bias);
    }
    let x = x.contiguous()?;
    Ok(match bias {
        None => x.apply_op1(Softmax { scale })?,
        Some(b) => x.apply_op2(&b.broadcast_as(x.shape())?, Softmax { scale })?,
    })
}

/// The same function as [`softmax`] from candle's ops (which have a backward pass).
/// Half-precision input (bf16/f16) is computed in f32 and the result cast back, as
/// mixed-precision training does for every reduction.
pub fn softmax_composite(x: &Tensor, scale: f64, bias: Option<&Tensor>) -> Result<Tensor> {
    let dtype = x.dtype();
    let half = matches!(dtype, DType::BF16 | DType::F16);
    let up = |t: &Tensor| if half { t.to_dtype(DType::F32) } else { Ok(t.clone()) };
    let s = (up(x)? * scale)?;
    let s = match bias {
        Some(b) => s.broadcast_add(&up(b)?)?,
        None => s,
    };
    let y = candle_nn::ops::softmax(&s, D::Minus1)?;
    Ok(if half { y.to_dtype(dtype)? } else { y })
}

/// Offsets into a (possibly broadcast, strided) bias storage: the start of each row of the
/// last dimension, and the stride along it.
pub(crate) fn bias_rows(l: &Layout) -> (Vec<usize>, usize) {
    let dims = l.dims();
    let stride = l.stride();
    let rank = dims.len();
    let rows: usize = dims[..rank - 1].iter().product();
    let mut offsets = Vec::with_capacity(rows);
    let mut index = vec![0usize; rank - 1];
    for _ in 0..rows {
        offsets.push(l.start_offset() + index.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>());
        for k in (0..rank - 1).rev() {
            index[k] += 1;
            if index[k] < dims[k] {
                break;
            }
            index[k] = 0;
        }
    }
    (offsets, stride[rank - 1])
}

/// Softmax of `x · scale (+ bias)` into `y`, row by row; `bias(r, j)` reads the bias.
fn forward<T: Real>(x: &[T], k: usize, scale: T, bias: impl Fn(usize, usize) -> T + Sync) -> Vec<T> {
    let mut y = vec![T::zero(); x.len()];
    super::par_rows(&mut y, k, |first, block| {
        let x = &x[first * k..first * k + block.len()];
        for (i, (xr, yr)) in x.chunks_exact(k).zip(block.chunks_exact_mut(k)).enumerate() {
            let r = first + i;
            for j in 0..k {
                yr[j] = xr[j] * scale + bias(r, j);
            }
            let max = super::max_of(yr);
            for v in yr.iter_mut() {
                *v = (*v - max).exp_fast();
            }
            let inv = super::sum_map(yr, |v| v).recip();
            for v in yr.iter_mut() {
                *v *= inv;
            }
        }
    });
    y
}

/// The forward op: `x → y` (no bias) or `(x, bias broadcast to x) → y`.
struct Softmax {
    scale: f64,
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "tunelab-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        super::count_call();
        with_real!(s, OP, "x", |T| {
            let x = contiguous::<T>(s, l, OP, "x")?;
            let k = l.dims().last().copied().unwrap_or(1).max(1);
            Ok((T::wrap(forward(x, k, T::of(self.scale), |_, _| T::zero())), l.shape().clone()))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::count_call();
        super::cuda::softmax_fwd(self.scale, (s, l), None)
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxBackward { scale: self.scale })?))
    }
}

impl CustomOp2 for Softmax {
    fn name(&self) -> &'static str {
        "tunelab-softmax-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        super::count_call();
        with_real!(s1, OP, "x", |T| {
            let x = contiguous::<T>(s1, l1, OP, "x")?;
            let all = T::slice(s2).ok_or(KernelError::DType {
                op: OP,
                arg: "bias",
                dtype: candle_core::backend::BackendStorage::dtype(s2),
            })?;
            if l2.dims() != l1.dims() {
                let what = format!("bias {:?} is not broadcast to x {:?}", l2.dims(), l1.dims());
                return Err(KernelError::Shape { op: OP, what }.into());
            }
            let k = l1.dims().last().copied().unwrap_or(1).max(1);
            let (rows, step) = bias_rows(l2);
            let y = forward(x, k, T::of(self.scale), |r, j| all[rows[r] + j * step]);
            Ok((T::wrap(y), l1.shape().clone()))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::count_call();
        super::cuda::softmax_fwd(self.scale, (s1, l1), Some((s2, l2)))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _bias: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = y.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxBackward { scale: self.scale })?;
        Ok((Some(dx), None))
    }
}

/// The backward op: `(y, dy) → dx = scale · y · (dy - Σ dy·y)` per row.
struct SoftmaxBackward {
    scale: f64,
}

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "tunelab-softmax-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        with_real!(s1, OP, "y", |T| {
            let y = contiguous::<T>(s1, l1, OP, "y")?;
            let dy = contiguous::<T>(s2, l2, OP, "grad")?;
            same_len(OP, dy.len(), l2, ("y", y.len(), l1))?;
            let k = l1.dims().last().copied().unwrap_or(1).max(1);
            let scale = T::of(self.scale);
            let mut dx = vec![T::zero(); y.len()];
            super::par_rows(&mut dx, k, |first, block| {
                let (y, dy) =
                    (&y[first * k..first * k + block.len()], &dy[first * k..first * k + block.len()]);
                for ((yr, gr), dr) in y.chunks_exact(k).zip(dy.chunks_exact(k)).zip(block.chunks_exact_mut(k))
                {
                    let mut dot = T::zero();
                    for j in 0..k {
                        dot += yr[j] * gr[j];
                    }
                    for j in 0..k {
                        dr[j] = scale * yr[j] * (gr[j] - dot);
                    }
                }
            });
            Ok((T::wrap(dx), l1.shape().clone()))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::softmax_bwd(self.scale, (s1, l1), (s2, l2))
    }
}
