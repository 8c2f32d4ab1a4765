//! A dense layer followed by dropout, `(x · op(w) + b) ∘ mask`, as one graph node on the CPU
//! (BERT's attention-output and output projections, GPT-2's `c_proj`s).
//!
//! As two nodes, the layer's output is an edge of the graph that candle's backward
//! zero-fills and adds the dropout's gradient into, and the forward writes a second
//! tensor for the masked copy. Here the mask multiplies the product in place, and the
//! backward hands `dy ∘ mask` straight to the dense layer's backward. The arithmetic is
//! the two nodes' (`linear::Gemm`, then `mask::MulMask`'s multiply), so the bits are too.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Storage, Tensor};

use super::linear::{backward, dense_fits, Gemm};
use super::mask::MulMask;
use super::{contiguous, fusable, KernelError, Real};
use crate::error::Result;

const OP: &str = "dense-dropout";

/// `(x · wᵀ + b) ∘ mask` for `w` `[out, in]`; no mask (evaluation, `p = 0`) is the dense
/// layer alone. One node on the CPU for f32/f64; elsewhere [`super::linear`] then
/// [`super::mul_mask`].
pub fn linear_dropout(x: &Tensor, w: &Tensor, b: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    dense_dropout(x, w, b, true, mask)
}

/// `(x · w + b) ∘ mask` for `w` `[in, out]` (GPT-2's `Conv1D`); otherwise as
/// [`linear_dropout`].
pub fn conv1d_dropout(x: &Tensor, w: &Tensor, b: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    dense_dropout(x, w, b, false, mask)
}

fn dense_dropout(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    transposed: bool,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let dense =
        |x: &Tensor| if transposed { super::linear(x, w, Some(b)) } else { super::conv1d(x, w, Some(b)) };
    let Some(mask) = mask else { return dense(x) };
    // The mask has the output's shape: x's, with w's output size last.
    let mask_fits = || {
        let outputs = w.dims().get(usize::from(!transposed)).copied();
        let mut dims = x.dims().to_vec();
        dims.pop();
        dims.extend(outputs);
        mask.dims() == dims.as_slice()
            && mask.dtype() == x.dtype()
            && mask.device().same_device(x.device())
            && !mask.track_op()
    };
    let fits = dense_fits(x, w, Some(b), transposed) && mask_fits();
    if !(fusable(x) && fits) {
        return super::mul_mask(&dense(x)?, mask);
    }
    let op = DenseDropout { gemm: Gemm { ta: false, tb: transposed }, mask: mask.contiguous()? };
    Ok(x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, op)?)
}

/// The node on `(x, w, b)`, the dropout mask a constant it holds.
struct DenseDropout {
    gemm: Gemm,
    mask: Tensor,
}

/// `y ∘ mask` in place over contiguous `y`, in parallel blocks.
fn mask_in_place<T: Real>(y: &mut [T], mask: &Tensor) -> candle_core::Result<()> {
    let (storage, layout) = mask.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(KernelError::NotContiguous { op: OP, arg: "mask" }.into());
    };
    let m = contiguous::<T>(cpu, layout, OP, "mask")?;
    super::same_len(OP, m.len(), layout, ("output", y.len(), &Layout::contiguous(y.len())))?;
    super::par_blocks(y, super::rows_per_task(1), |start, block| {
        let m = &m[start..start + block.len()];
        for (v, &k) in block.iter_mut().zip(m) {
            *v *= k;
        }
    });
    Ok(())
}

impl CustomOp3 for DenseDropout {
    fn name(&self) -> &'static str {
        "tunelab-dense-dropout"
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
        let (mut y, shape) = self.gemm.cpu((s1, l1), (s2, l2), Some((s3, l3)))?;
        match &mut y {
            CpuStorage::F32(v) => mask_in_place(v, &self.mask)?,
            CpuStorage::F64(v) => mask_in_place(v, &self.mask)?,
            other => {
                let dtype = candle_core::backend::BackendStorage::dtype(other);
                return Err(KernelError::DType { op: OP, arg: "x", dtype }.into());
            }
        }
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
        let du = grad.contiguous()?.apply_op2_no_bwd(&self.mask, &MulMask)?;
        backward(self.gemm, x, w, Some(b), &du)
    }
}
