//! RMS normalisation over the last dimension (llama's norm), fused forward and backward.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor, D};

use super::{contiguous, fusable, same_len, with_real, KernelError, Real};
use crate::error::Result;

const OP: &str = "rms-norm";

/// `x / sqrt(mean(x²) + eps) · w` over the last dimension (`w`: `[hidden]`), fused on CPU
/// for contiguous f32/f64 and on CUDA for f32, bf16/f16 through the f32 kernel; other inputs
/// take [`rms_norm_composite`].
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let hidden = x.dim(D::Minus1)?;
    if super::half_to_fuse(x) {
        return super::in_f32(x.dtype(), [x, w], |[x, w]| rms_norm(&x, &w, eps));
    }
    let cuda = super::fusable_cuda(x) && super::layer_norm::cuda_width_ok(hidden);
    let same_device = w.device().same_device(x.device());
    if !((fusable(x) || cuda) && same_device && w.dtype() == x.dtype() && w.dims() == [hidden]) {
        return rms_norm_composite(x, w, eps);
    }
    Ok(x.contiguous()?.apply_op2(&w.contiguous()?, RmsNorm { eps })?)
}

/// The same function as [`rms_norm`] from candle's elementwise ops, computed in f32 (f64
/// stays f64) as transformers' `LlamaRMSNorm` does.
pub fn rms_norm_composite(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = if dtype == candle_core::DType::F64 { x.clone() } else { x.to_dtype(candle_core::DType::F32)? };
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = x.broadcast_div(&(ms + eps)?.sqrt()?)?;
    Ok(normed.to_dtype(dtype)?.broadcast_mul(w)?)
}

/// 1/sqrt(mean(x²) + eps) of one row.
fn rstd<T: Real>(row: &[T], eps: T) -> T {
    let mut sq = T::zero();
    for &v in row {
        sq += v * v;
    }
    (sq / T::of(row.len() as f64) + eps).sqrt().recip()
}

/// The forward op: `(x, w) → y`.
struct RmsNorm {
    eps: f64,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "tunelab-rms-norm"
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
            let w = contiguous::<T>(s2, l2, OP, "weight")?;
            let d = w.len();
            if d == 0 || x.len() % d != 0 {
                let what = format!("x {:?}, weight {:?}: w must be [last dim of x]", l1.dims(), l2.dims());
                return Err(KernelError::Shape { op: OP, what }.into());
            }
            let eps = T::of(self.eps);
            let mut y = vec![T::zero(); x.len()];
            super::par_rows(&mut y, d, |row, block| {
                let x = &x[row * d..row * d + block.len()];
                for (xr, yr) in x.chunks_exact(d).zip(block.chunks_exact_mut(d)) {
                    let r = rstd(xr, eps);
                    for i in 0..d {
                        yr[i] = xr[i] * r * w[i];
                    }
                }
            });
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
        super::cuda::norm_fwd(self.eps, (s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, d) = (x.elem_count(), w.elem_count());
        let packed = x.apply_op3_no_bwd(w, &grad.contiguous()?, &RmsNormBackward { eps: self.eps })?;
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        Ok((Some(dx), Some(packed.narrow(0, n, d)?)))
    }
}

/// The backward op: `(x, w, dy) → [dx | dw]`. With x̂ = x·r and g = dy·w:
/// `dx = r · (g - x̂ · mean(g·x̂))`, `dw = Σ_rows dy·x̂`.
struct RmsNormBackward {
    eps: f64,
}

impl candle_core::CustomOp3 for RmsNormBackward {
    fn name(&self) -> &'static str {
        "tunelab-rms-norm-backward"
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
        with_real!(s1, OP, "x", |T| {
            let x = contiguous::<T>(s1, l1, OP, "x")?;
            let w = contiguous::<T>(s2, l2, OP, "weight")?;
            let dy = contiguous::<T>(s3, l3, OP, "grad")?;
            let (n, d) = (x.len(), w.len());
            same_len(OP, dy.len(), l3, ("x", n, l1))?;
            let eps = T::of(self.eps);
            let inv_d = T::of(1.0 / d as f64);
            let mut out = vec![T::zero(); n + d];
            let (dx, dw) = out.split_at_mut(n);
            // Each block of rows writes its dx and returns its part of dw.
            let partials = super::par_rows_partials(dx, d, |row, block| {
                let (x, dy) = (&x[row * d..row * d + block.len()], &dy[row * d..row * d + block.len()]);
                let mut dw = vec![T::zero(); d];
                for ((xr, dyr), dxr) in
                    x.chunks_exact(d).zip(dy.chunks_exact(d)).zip(block.chunks_exact_mut(d))
                {
                    let r = rstd(xr, eps);
                    let mut sum_gx = T::zero();
                    for i in 0..d {
                        let h = xr[i] * r;
                        sum_gx += dyr[i] * w[i] * h;
                        dw[i] += dyr[i] * h;
                    }
                    let mean_gx = sum_gx * inv_d;
                    for i in 0..d {
                        dxr[i] = r * (dyr[i] * w[i] - xr[i] * r * mean_gx);
                    }
                }
                dw
            });
            for part in partials {
                for (acc, v) in dw.iter_mut().zip(part) {
                    *acc += v;
                }
            }
            Ok((T::wrap(out), Shape::from(n + d)))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::norm_bwd(self.eps, 1, (s1, l1), (s2, l2), (s3, l3))
    }
}
