//! SwiGLU, the llama feed-forward's gate `silu(g) · u` (g = `gate_proj(x)`, u =
//! `up_proj(x)`), fused: one pass forward and one pass backward (both gradients together).
//!
//! From candle's ops it is two nodes, `silu` and a product. The `silu`'s backward alone
//! builds seven temporaries the size of the `[tokens, intermediate]` activation (the
//! sigmoid through `neg`, `exp`, `+ 1`, `recip`, then its slope), and each node's edges
//! get a zero-filled gradient to add into: llama's largest activations, every layer.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use super::{contiguous, fusable, same_len, with_real, Real};
use crate::error::Result;

const OP: &str = "swiglu";

/// `silu(gate) · up` for two tensors of one shape: fused on CPU for contiguous f32/f64 and on
/// CUDA for f32, bf16/f16 through the f32 kernel; other inputs take [`swiglu_composite`].
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let fits =
        up.dtype() == gate.dtype() && up.dims() == gate.dims() && up.device().same_device(gate.device());
    if fits && super::half_to_fuse(gate) {
        return super::in_f32(gate.dtype(), [gate, up], |[g, u]| swiglu(&g, &u));
    }
    if !(fits && (fusable(gate) || super::fusable_cuda(gate))) {
        return swiglu_composite(gate, up);
    }
    Ok(gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)?)
}

/// `silu(gate) · up` from candle's ops: the reference the kernel is tested against.
pub fn swiglu_composite(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    Ok((gate.silu()? * up)?)
}

/// `1 / (1 + e^{-g})`. The exponent is capped at 80 so that a gate far below zero gives a
/// tiny normal number rather than a subnormal one (slow on x86; the true value there is
/// below 2e-35 anyway).
#[inline(always)]
fn sigmoid<T: Real>(g: T) -> T {
    (T::one() + num_traits::Float::min(-g, T::of(80.0)).exp_fast()).recip()
}

super::avx512_twin! {
    /// `y = silu(g) · u` over one block.
    fn forward_block<T: Real>(g: &[T], u: &[T], y: &mut [T]) {
        for ((y, &g), &u) in y.iter_mut().zip(g).zip(u) {
            *y = g * sigmoid(g) * u;
        }
    }
}

super::avx512_twin! {
    /// Both gradients over one block (see [`SwiGluBackward`]).
    fn backward_block<T: Real>(g: &[T], u: &[T], dy: &[T], dg: &mut [T], du: &mut [T]) {
        let n = dg.len();
        let (g, u, dy, du) = (&g[..n], &u[..n], &dy[..n], &mut du[..n]);
        for i in 0..n {
            let s = sigmoid(g[i]);
            dg[i] = dy[i] * u[i] * s * (T::one() + g[i] * (T::one() - s));
            du[i] = dy[i] * g[i] * s;
        }
    }
}

/// Blocks of about `PAR_GRAIN` elements: `f(start, block)` in parallel over `out`.
fn par_elems<T: Real>(out: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    super::par_blocks(out, super::rows_per_task(1), f);
}

/// The forward op: `(g, u) → silu(g) · u`.
struct SwiGlu;

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "tunelab-swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        super::count_call();
        with_real!(s1, OP, "gate", |T| {
            let g = contiguous::<T>(s1, l1, OP, "gate")?;
            let u = contiguous::<T>(s2, l2, OP, "up")?;
            same_len(OP, u.len(), l2, ("gate", g.len(), l1))?;
            let mut y = vec![T::zero(); g.len()];
            par_elems(&mut y, |start, block| {
                let (g, u) = (&g[start..start + block.len()], &u[start..start + block.len()]);
                forward_block(g, u, block);
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
        super::cuda::swiglu_fwd((s1, l1), (s2, l2))
    }

    fn bwd(
        &self,
        g: &Tensor,
        u: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let n = g.elem_count();
        let packed = g.apply_op3_no_bwd(u, &grad.contiguous()?, &SwiGluBackward)?;
        let dg = if g.track_op() { Some(packed.narrow(0, 0, n)?.reshape(g.shape())?) } else { None };
        let du = if u.track_op() { Some(packed.narrow(0, n, n)?.reshape(u.shape())?) } else { None };
        Ok((dg, du))
    }
}

/// The backward op: `(g, u, dy) → [dg | du]` with s = sigmoid(g):
/// `dg = dy · u · s · (1 + g · (1 - s))`, `du = dy · g · s`.
struct SwiGluBackward;

impl CustomOp3 for SwiGluBackward {
    fn name(&self) -> &'static str {
        "tunelab-swiglu-backward"
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
        with_real!(s1, OP, "gate", |T| {
            let g = contiguous::<T>(s1, l1, OP, "gate")?;
            let u = contiguous::<T>(s2, l2, OP, "up")?;
            let dy = contiguous::<T>(s3, l3, OP, "grad")?;
            let n = g.len();
            same_len(OP, u.len(), l2, ("gate", n, l1))?;
            same_len(OP, dy.len(), l3, ("gate", n, l1))?;
            let mut out = vec![T::zero(); 2 * n];
            let (dg, du) = out.split_at_mut(n);
            let grain = super::rows_per_task(1);
            let block = |i: usize, (dg, du): (&mut [T], &mut [T])| {
                let span = i * grain..i * grain + dg.len();
                backward_block(&g[span.clone()], &u[span.clone()], &dy[span], dg, du);
            };
            if n <= grain {
                block(0, (dg, du));
            } else {
                dg.par_chunks_mut(grain)
                    .zip(du.par_chunks_mut(grain))
                    .enumerate()
                    .for_each(|(i, p)| block(i, p));
            }
            Ok((T::wrap(out), Shape::from(2 * n)))
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
        super::cuda::swiglu_bwd((s1, l1), (s2, l2), (s3, l3))
    }
}
