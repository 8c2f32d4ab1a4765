//! The feed-forward layer's first half, `gelu(x · op(w) + b)`, as one graph node on the CPU.
//!
//! As two nodes (the dense product, then bias + GELU), the `[tokens, 4·hidden]`
//! pre-activation between them is an edge of the graph, and candle's backward gives it a
//! zero-filled gradient and adds the GELU's gradient into it: two extra passes over the
//! layer's largest activation, every layer, every step. This node runs the same two kernels
//! in the same order (the product without the bias, then `linear::Gemm` and
//! `gelu::BiasGelu`'s arithmetic unchanged), keeps the pre-activation for its backward, and
//! hands the GELU's gradient straight to the product's backward.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Device, Layout, Shape, Tensor};

use super::gelu::{BiasGelu, BiasGeluBackward, Kind};
use super::linear::{backward, dense_fits, Gemm};
use super::{fusable, KernelError};
use crate::error::Result;

const OP: &str = "dense-gelu";

/// `gelu(x · wᵀ + b)` for `w` `[out, in]` (BERT's `intermediate.dense`); `tanh` picks the
/// tanh approximation (`gelu_new`) over the exact erf GELU. One node on the CPU for
/// f32/f64; elsewhere the dense layer and [`super::bias_gelu`] as two.
pub fn linear_gelu(x: &Tensor, w: &Tensor, b: &Tensor, tanh: bool) -> Result<Tensor> {
    dense_gelu(x, w, b, true, if tanh { Kind::Tanh } else { Kind::Erf })
}

/// `gelu(x · w + b)` for `w` `[in, out]` (GPT-2's `Conv1D` `mlp.c_fc`); otherwise as
/// [`linear_gelu`].
pub fn conv1d_gelu(x: &Tensor, w: &Tensor, b: &Tensor, tanh: bool) -> Result<Tensor> {
    dense_gelu(x, w, b, false, if tanh { Kind::Tanh } else { Kind::Erf })
}

fn dense_gelu(x: &Tensor, w: &Tensor, b: &Tensor, transposed: bool, kind: Kind) -> Result<Tensor> {
    if !(fusable(x) && dense_fits(x, w, Some(b), transposed)) {
        let u = if transposed { super::linear(x, w, None)? } else { super::conv1d(x, w, None)? };
        return match kind {
            Kind::Erf => super::bias_gelu(&u, b),
            Kind::Tanh => super::bias_gelu_tanh(&u, b),
        };
    }
    let op = DenseGelu { gemm: Gemm { ta: false, tb: transposed }, kind, pre: Mutex::new(None) };
    Ok(x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, op)?)
}

/// The node on `(x, w, b)`; `pre` keeps the pre-activation `x · op(w)` (without the bias,
/// as `BiasGelu` takes it) from the forward for the backward.
struct DenseGelu {
    gemm: Gemm,
    kind: Kind,
    pre: Mutex<Option<Tensor>>,
}

impl CustomOp3 for DenseGelu {
    fn name(&self) -> &'static str {
        "tunelab-dense-gelu"
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
        let (u, shape) = self.gemm.cpu((s1, l1), (s2, l2), None)?;
        let (y, _) = candle_core::CustomOp2::cpu_fwd(
            &BiasGelu { kind: self.kind },
            &u,
            &Layout::contiguous(&shape),
            s3,
            l3,
        )?;
        let pre = match u {
            CpuStorage::F32(v) => Tensor::from_vec(v, shape.clone(), &Device::Cpu)?,
            CpuStorage::F64(v) => Tensor::from_vec(v, shape.clone(), &Device::Cpu)?,
            other => {
                let dtype = candle_core::backend::BackendStorage::dtype(&other);
                return Err(KernelError::DType { op: OP, arg: "x", dtype }.into());
            }
        };
        *self.pre.lock().unwrap_or_else(|e| e.into_inner()) = Some(pre);
        Ok((y, shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let pre = self.pre.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(u) = pre else {
            let what = "backward before forward: the pre-activation is missing".to_string();
            return Err(KernelError::Shape { op: OP, what }.into());
        };
        let (n, d) = (u.elem_count(), b.elem_count());
        let packed = u.apply_op3_no_bwd(b, &grad.contiguous()?, &BiasGeluBackward { kind: self.kind })?;
        let du = packed.narrow(0, 0, n)?.reshape(u.shape())?;
        let db = if b.track_op() { Some(packed.narrow(0, n, d)?) } else { None };
        let (dx, dw, _) = backward(self.gemm, x, w, None, &du)?;
        Ok((dx, dw, super::grad_sink::divert(b, db)?))
    }
}
