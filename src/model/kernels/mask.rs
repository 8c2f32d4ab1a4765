//! `x · mask` where the mask is a constant (dropout's scaled keep-mask), one graph node
//! whose backward is `dy · mask` alone. candle's multiply also computes, allocates and
//! accumulates a gradient for the mask, which nothing reads.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

use super::{contiguous, fusable, same_len, with_real, Real};
use crate::error::Result;

const OP: &str = "mask";

/// `x · mask` elementwise (same shape), with a gradient for `x` only. Fused on CPU for
/// contiguous f32/f64, candle's CUDA multiply as one node on CUDA; candle's multiply
/// otherwise.
pub fn mul_mask(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    if fusable(x)
        && mask.dtype() == x.dtype()
        && mask.device().same_device(x.device())
        && mask.dims() == x.dims()
    {
        return Ok(x.contiguous()?.apply_op2(&mask.contiguous()?, MulMask)?);
    }
    Ok((x * mask)?)
}

pub(super) struct MulMask;

impl CustomOp2 for MulMask {
    fn name(&self) -> &'static str {
        "tunelab-mul-mask"
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
            let m = contiguous::<T>(s2, l2, OP, "mask")?;
            same_len(OP, m.len(), l2, ("x", x.len(), l1))?;
            use rayon::prelude::*;
            let y: Vec<T> =
                x.par_iter().zip(m).with_min_len(super::rows_per_task(1)).map(|(&v, &k)| v * k).collect();
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
        use candle_core::backend::BackendStorage;
        super::count_call();
        Ok((s1.binary_impl::<candle_core::op::Mul>(s2, l1, l2)?, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        mask: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.contiguous()?.apply_op2_no_bwd(mask, &MulMask)?), None))
    }
}
