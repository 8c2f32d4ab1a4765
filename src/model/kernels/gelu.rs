//! Bias add + GELU, fused: the feed-forward layer's `gelu(x·Wᵀ + b)` after the matmul, in
//! one pass forward and one pass backward (dx and db together). Two GELUs: the exact one
//! (erf, BERT's `gelu`) and the tanh approximation (GPT-2's `gelu_new`).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor, D};

use super::{contiguous, fusable, same_len, with_real, KernelError, Real};
use crate::error::Result;

const OP: &str = "bias-gelu";

/// Which GELU (the discriminant is the CUDA kernels' `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// `u · Φ(u)` with the normal CDF through erf.
    Erf = 0,
    /// `0.5·u·(1 + tanh(√(2/π)·(u + 0.044715·u³)))`.
    Tanh = 1,
}

/// Exact (erf) GELU of `x + bias` (`bias`: `[last dim of x]`), fused on CPU for contiguous
/// f32/f64 and on CUDA for f32, bf16/f16 through the f32 kernel; other inputs take
/// [`bias_gelu_composite`].
pub fn bias_gelu(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    fused_or(x, bias, Kind::Erf)
}

/// `gelu_erf(x + bias)` from candle's ops.
pub fn bias_gelu_composite(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_add(bias)?.gelu_erf()?)
}

/// Tanh-approximated GELU (GPT-2's `gelu_new`) of `x + bias`, fused like [`bias_gelu`].
pub fn bias_gelu_tanh(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    fused_or(x, bias, Kind::Tanh)
}

/// `gelu(x + bias)` (tanh approximation) from candle's ops.
pub fn bias_gelu_tanh_composite(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_add(bias)?.gelu()?)
}

fn fused_or(x: &Tensor, bias: &Tensor, kind: Kind) -> Result<Tensor> {
    let hidden = x.dim(D::Minus1)?;
    if super::half_to_fuse(x) {
        return super::in_f32(x.dtype(), [x, bias], |[x, b]| fused_or(&x, &b, kind));
    }
    let device_ok = fusable(x) || super::fusable_cuda(x);
    if !(device_ok
        && bias.dtype() == x.dtype()
        && bias.dims() == [hidden]
        && bias.device().same_device(x.device()))
    {
        return match kind {
            Kind::Erf => bias_gelu_composite(x, bias),
            Kind::Tanh => bias_gelu_tanh_composite(x, bias),
        };
    }
    Ok(x.contiguous()?.apply_op2(&bias.contiguous()?, BiasGelu { kind })?)
}

/// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), with erf(-x) = -erf(x).
#[inline(always)]
pub(crate) fn erf<T: Real>(x: T) -> T {
    let a = x.abs();
    let t = (T::one() + T::of(0.327_591_1) * a).recip();
    let poly = t
        * (T::of(0.254_829_592)
            + t * (T::of(-0.284_496_736)
                + t * (T::of(1.421_413_741) + t * (T::of(-1.453_152_027) + t * T::of(1.061_405_429)))));
    let y = T::one() - poly * (-a * a).exp_fast();
    y.copysign(x)
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// GELU and its derivative at `u`.
#[inline(always)]
fn gelu<T: Real>(u: T, kind: Kind) -> (T, T) {
    let half = T::of(0.5);
    match kind {
        Kind::Erf => {
            let cdf = half * (T::one() + erf(u * T::of(std::f64::consts::FRAC_1_SQRT_2)));
            let pdf = T::of(FRAC_1_SQRT_2PI) * (-half * u * u).exp_fast();
            (u * cdf, cdf + u * pdf)
        }
        Kind::Tanh => {
            let c = T::of(0.044_715);
            let inner = T::of(SQRT_2_OVER_PI) * (u + c * u * u * u);
            let t = inner.tanh_fast();
            let d_inner = T::of(SQRT_2_OVER_PI) * (T::one() + T::of(3.0) * c * u * u);
            (half * u * (T::one() + t), half * (T::one() + t) + half * u * (T::one() - t * t) * d_inner)
        }
    }
}

/// The forward op: `(x, bias) → gelu(x + bias)`.
pub(super) struct BiasGelu {
    pub(super) kind: Kind,
}

impl CustomOp2 for BiasGelu {
    fn name(&self) -> &'static str {
        "tunelab-bias-gelu"
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
            let b = contiguous::<T>(s2, l2, OP, "bias")?;
            let d = b.len();
            if d == 0 || x.len() % d != 0 {
                let what = format!("x {:?}, bias {:?}: bias must be [last dim of x]", l1.dims(), l2.dims());
                return Err(KernelError::Shape { op: OP, what }.into());
            }
            let mut y = vec![T::zero(); x.len()];
            let kind = self.kind;
            super::par_rows(&mut y, d, |row, block| {
                fwd_rows(&x[row * d..row * d + block.len()], b, block, kind);
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
        super::cuda::bias_gelu_fwd(self.kind as i32, (s1, l1), (s2, l2))
    }

    fn bwd(
        &self,
        x: &Tensor,
        bias: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, d) = (x.elem_count(), bias.elem_count());
        let packed = x.apply_op3_no_bwd(bias, &grad.contiguous()?, &BiasGeluBackward { kind: self.kind })?;
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        Ok((Some(dx), Some(packed.narrow(0, n, d)?)))
    }
}

super::avx512_twin! {
    /// `y = gelu(x + b)` over whole rows of `x`.
    fn fwd_rows<T: Real>(x: &[T], b: &[T], y: &mut [T], kind: Kind) {
        let d = b.len();
        let rows = x.chunks_exact(d).zip(y.chunks_exact_mut(d));
        // One loop per kind, so each is straight-line and vectorises.
        match kind {
            Kind::Erf => rows.for_each(|(xr, yr)| {
                for i in 0..d {
                    yr[i] = gelu(xr[i] + b[i], Kind::Erf).0;
                }
            }),
            Kind::Tanh => rows.for_each(|(xr, yr)| {
                for i in 0..d {
                    yr[i] = gelu(xr[i] + b[i], Kind::Tanh).0;
                }
            }),
        }
    }
}

super::avx512_twin! {
    /// `dx = dy · gelu'(x + b)` over whole rows, each row's `dx` added into `db`.
    fn bwd_rows<T: Real>(x: &[T], dy: &[T], b: &[T], dx: &mut [T], db: &mut [T], kind: Kind) {
        // One loop per kind, so each is straight-line and vectorises.
        match kind {
            Kind::Erf => bwd_rows_with(x, dy, b, dx, db, |u| gelu(u, Kind::Erf).1),
            Kind::Tanh => bwd_rows_with(x, dy, b, dx, db, |u| gelu(u, Kind::Tanh).1),
        }
    }
}

/// `dx = dy · slope(x + b)` over rows of `b.len()`, adding each row's `dx` into `db`.
#[inline(always)]
fn bwd_rows_with<T: Real>(x: &[T], dy: &[T], b: &[T], dx: &mut [T], db: &mut [T], slope: impl Fn(T) -> T) {
    let d = b.len();
    for ((xr, gr), dr) in x.chunks_exact(d).zip(dy.chunks_exact(d)).zip(dx.chunks_exact_mut(d)) {
        for ((((&xv, &gv), &bv), dv), acc) in xr.iter().zip(gr).zip(b).zip(dr.iter_mut()).zip(db.iter_mut()) {
            let g = gv * slope(xv + bv);
            *dv = g;
            *acc += g;
        }
    }
}

/// The backward op: `(x, bias, dy) → [dx | db]` with `dx = dy · gelu'(x + b)` and
/// `db = Σ_rows dx`.
pub(super) struct BiasGeluBackward {
    pub(super) kind: Kind,
}

impl CustomOp3 for BiasGeluBackward {
    fn name(&self) -> &'static str {
        "tunelab-bias-gelu-backward"
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
            let b = contiguous::<T>(s2, l2, OP, "bias")?;
            let dy = contiguous::<T>(s3, l3, OP, "grad")?;
            let (n, d) = (x.len(), b.len());
            same_len(OP, dy.len(), l3, ("x", n, l1))?;
            let mut out = vec![T::zero(); n + d];
            let (dx, db) = out.split_at_mut(n);
            let kind = self.kind;
            // Each block of rows writes its dx and returns its part of db.
            let partials = super::par_rows_partials(dx, d, |row, block| {
                let (x, dy) = (&x[row * d..row * d + block.len()], &dy[row * d..row * d + block.len()]);
                let mut db = vec![T::zero(); d];
                bwd_rows(x, dy, b, block, &mut db, kind);
                db
            });
            for part in partials {
                for (acc, v) in db.iter_mut().zip(part) {
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
        super::cuda::bias_gelu_bwd(self.kind as i32, (s1, l1), (s2, l2), (s3, l3))
    }
}
