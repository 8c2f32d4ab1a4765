//! Rotary position embedding in transformers' half-split layout (`rotate_half`), fused:
//! each pair `(x[i], x[i + d/2])` of a head is rotated by its position's angle in one pass.
//! A rotation's transpose is the rotation by the opposite angle, so the backward pass is
//! the same kernel with the sine negated.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor, D};

use super::{contiguous, fusable, with_real, KernelError, Real};
use crate::error::Result;

const OP: &str = "rope";

/// `x` `[batch, heads, len, head_dim]` rotated by the tables `cos`, `sin` `[len, head_dim/2]`
/// (`layers::rope_tables`): `[x1·c − x2·s, x2·c + x1·s]` for the two halves of the last
/// dimension. Fused on CPU (f32/f64) and CUDA (f32), bf16/f16 through the f32 kernel; other
/// inputs, or tables that need a gradient, take [`rope_composite`].
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let tables_ok = !cos.track_op() && !sin.track_op();
    if super::half_to_fuse(x) && tables_ok {
        return super::in_f32(x.dtype(), [x, cos, sin], |[x, c, s]| rope(&x, &c, &s));
    }
    let d = x.dim(D::Minus1)?;
    let len = if x.rank() >= 2 { x.dim(D::Minus2)? } else { 0 };
    let same =
        |t: &Tensor| t.dtype() == x.dtype() && t.dims() == [len, d / 2] && t.device().same_device(x.device());
    let device_ok = fusable(x) || super::fusable_cuda(x);
    if !(device_ok && tables_ok && x.rank() >= 2 && d % 2 == 0 && same(cos) && same(sin)) {
        return rope_composite(x, cos, sin);
    }
    Ok(x.contiguous()?.apply_op3(&cos.contiguous()?, &sin.contiguous()?, Rope { inverse: false })?)
}

/// The same rotation from candle's ops (narrow, broadcast multiplies, concatenation).
pub fn rope_composite(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let half = d / 2;
    let (x1, x2) = (x.narrow(D::Minus1, 0, half)?, x.narrow(D::Minus1, half, half)?);
    let a = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let b = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
    Ok(Tensor::cat(&[a, b], D::Minus1)?)
}

/// Rotates every head row of `x` (`d` wide, rows cycling through `len` positions) by the
/// tables' angles, or by their opposites when `inverse`.
fn rotate<T: Real>(x: &[T], cos: &[T], sin: &[T], d: usize, len: usize, inverse: bool) -> Vec<T> {
    let half = d / 2;
    let mut y = vec![T::zero(); x.len()];
    for (row, (xr, yr)) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)).enumerate() {
        let at = (row % len) * half;
        let (c, s) = (&cos[at..at + half], &sin[at..at + half]);
        let (y1, y2) = yr.split_at_mut(half);
        for i in 0..half {
            let s = if inverse { -s[i] } else { s[i] };
            let (x1, x2) = (xr[i], xr[half + i]);
            y1[i] = x1 * c[i] - x2 * s;
            y2[i] = x2 * c[i] + x1 * s;
        }
    }
    y
}

/// The op: `(x, cos, sin) → x rotated`; its backward is the inverse rotation of the
/// gradient, and the tables get none.
struct Rope {
    inverse: bool,
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "tunelab-rope"
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
        if !self.inverse {
            super::count_call();
        }
        with_real!(s1, OP, "x", |T| {
            let x = contiguous::<T>(s1, l1, OP, "x")?;
            let cos = contiguous::<T>(s2, l2, OP, "cos")?;
            let sin = contiguous::<T>(s3, l3, OP, "sin")?;
            let dims = l1.dims();
            let (d, len) = (dims[dims.len() - 1], dims[dims.len() - 2]);
            if d % 2 != 0 || cos.len() != len * d / 2 || sin.len() != cos.len() {
                let what = format!(
                    "x {dims:?}, cos {:?}, sin {:?}: tables must be [len, d/2]",
                    l2.dims(),
                    l3.dims()
                );
                return Err(KernelError::Shape { op: OP, what }.into());
            }
            Ok((T::wrap(rotate(x, cos, sin, d, len.max(1), self.inverse)), l1.shape().clone()))
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
        if !self.inverse {
            super::count_call();
        }
        super::cuda::rope(self.inverse, (s1, l1), (s2, l2), (s3, l3))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let inverse = Rope { inverse: !self.inverse };
        Ok((Some(grad.contiguous()?.apply_op3_no_bwd(cos, sin, &inverse)?), None, None))
    }
}
