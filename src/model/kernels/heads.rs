//! Splitting a hidden vector into attention heads and merging them back, each one graph
//! node: `[batch, len, heads·dim] ↔ [batch, heads, len, dim]`.
//!
//! From candle's ops this is a reshape, a transpose and a copy, three nodes whose backward
//! each allocate and accumulate a gradient of the whole tensor (one of them through a
//! strided add). Here the forward is one copy and the backward the opposite copy (on CUDA,
//! candle's strided copy; on the CPU, f32/f64, a row-block copy on rayon's pool).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use super::{contiguous, fusable, with_real, KernelError, Real};
use crate::error::Result;

const OP: &str = "heads";

/// `[batch, len, heads·dim]` → `[batch, heads, len, dim]`, contiguous.
pub fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, l, h) = x.dims3()?;
    if (fusable(x) || super::graph_op_on_cuda(x)) && x.elem_count() > 0 && heads > 0 && h % heads == 0 {
        return Ok(x.contiguous()?.apply_op1(Heads { heads, split: true })?);
    }
    Ok(x.reshape((b, l, heads, h / heads.max(1)))?.transpose(1, 2)?.contiguous()?)
}

/// `[batch, heads, len, dim]` → `[batch, len, heads·dim]`, contiguous.
pub fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, h, l, d) = x.dims4()?;
    if (fusable(x) || super::graph_op_on_cuda(x)) && x.elem_count() > 0 {
        return Ok(x.contiguous()?.apply_op1(Heads { heads: h, split: false })?);
    }
    Ok(x.transpose(1, 2)?.contiguous()?.reshape((b, l, h * d))?)
}

/// The copy between the two layouts: `split` reads `[b, l, heads, d]` and writes
/// `[b, heads, l, d]`; the other way round otherwise.
#[derive(Clone, Copy)]
struct Heads {
    heads: usize,
    split: bool,
}

impl Heads {
    /// `(batch, len, dim)` of input dimensions `dims`.
    fn sizes(&self, dims: &[usize]) -> std::result::Result<(usize, usize, usize), KernelError> {
        match (self.split, dims) {
            (true, &[b, l, hd]) if hd % self.heads.max(1) == 0 => Ok((b, l, hd / self.heads.max(1))),
            (false, &[b, h, l, d]) if h == self.heads => Ok((b, l, d)),
            _ => Err(KernelError::Shape {
                op: OP,
                what: format!(
                    "{dims:?} cannot be {} {} heads",
                    if self.split { "split into" } else { "merged from" },
                    self.heads
                ),
            }),
        }
    }

    /// The copy itself, in blocks of output rows on rayon's pool.
    fn copy<T: Real>(&self, x: &[T], (l, d): (usize, usize)) -> Vec<T> {
        let h = self.heads;
        let mut out = vec![T::zero(); x.len()];
        if self.split {
            // Output rows are (batch, head, position): each is one position's slice of a head.
            super::par_rows(&mut out, d, |first, block| {
                for (r, dst) in (first..).zip(block.chunks_exact_mut(d)) {
                    let (bh, li) = (r / l, r % l);
                    let (bi, hi) = (bh / h, bh % h);
                    let from = ((bi * l + li) * h + hi) * d;
                    dst.copy_from_slice(&x[from..from + d]);
                }
            });
        } else {
            // Output rows are (batch, position): one slice from every head.
            super::par_rows(&mut out, h * d, |first, block| {
                for (r, dst) in (first..).zip(block.chunks_exact_mut(h * d)) {
                    let (bi, li) = (r / l, r % l);
                    for (hi, part) in dst.chunks_exact_mut(d).enumerate() {
                        let from = ((bi * h + hi) * l + li) * d;
                        part.copy_from_slice(&x[from..from + d]);
                    }
                }
            });
        }
        out
    }
}

impl CustomOp1 for Heads {
    fn name(&self) -> &'static str {
        "tunelab-heads"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        super::count_call();
        let (b, len, d) = self.sizes(l.dims())?;
        let h = self.heads;
        if b * len * h * d == 0 {
            return Err(KernelError::Shape { op: OP, what: format!("empty input {:?}", l.dims()) }.into());
        }
        let shape = if self.split { Shape::from((b, h, len, d)) } else { Shape::from((b, len, h * d)) };
        with_real!(s, OP, "x", |T| {
            let x = contiguous::<T>(s, l, OP, "x")?;
            Ok((T::wrap(self.copy(x, (len, d))), shape))
        })
    }

    /// On CUDA: candle's strided copy, reading the input through the permuted layout.
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::{BackendDevice, BackendStorage};
        super::count_call();
        let (b, len, d) = self.sizes(l.dims())?;
        let h = self.heads;
        let off = l.start_offset();
        // The output's dimensions, and the input's strides along each of them.
        let (shape, src) = if self.split {
            (
                Shape::from((b, h, len, d)),
                Layout::new((b, h, len, d).into(), vec![len * h * d, d, h * d, 1], off),
            )
        } else {
            (
                Shape::from((b, len, h * d)),
                Layout::new((b, len, h, d).into(), vec![h * len * d, d, len * d, 1], off),
            )
        };
        // SAFETY: the strided copy below writes every element.
        let mut out = unsafe { s.device().alloc_uninit(&shape, s.dtype())? };
        s.copy_strided_src(&mut out, 0, &src)?;
        Ok((out, shape))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let back = Heads { heads: self.heads, split: !self.split };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&back)?))
    }
}
