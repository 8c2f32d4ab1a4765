//! The Adam / AdamW update of one parameter, fused: the new parameter and both moments in
//! one pass over the four tensors, instead of about fifteen elementwise ops each allocating
//! a tensor. The results are new tensors (the optimizer never writes state in place, so a
//! snapshot of it stays a cheap clone), with the composite update's arithmetic in the same
//! order.

use candle_core::{Storage, Tensor};

use super::{enabled, Real};
use crate::error::Result;

/// The hyper-parameters of one Adam(W) update.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Denominator term.
    pub eps: f64,
    /// Weight decay: decoupled (`p · (1 - lr·wd)`) for AdamW, added to the gradient for Adam.
    pub weight_decay: f64,
    /// AdamW (decoupled decay) rather than Adam.
    pub decoupled: bool,
    /// The update count, from 1 (bias correction).
    pub t: i32,
}

/// New `(parameter, first moment, second moment)` after one update of parameter `p` with
/// gradient `g` and moments `m`, `v` (`None` on the first update: zeros), or `None` when
/// the tensors are not all contiguous f32/f64 on the CPU (or the kernels are off) and the
/// caller should use its composite update.
pub fn adam_update(
    p: &Tensor,
    g: &Tensor,
    moments: Option<(&Tensor, &Tensor)>,
    step: &AdamStep,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    if !enabled() {
        return Ok(None);
    }
    #[cfg(feature = "cuda")]
    if p.device().is_cuda() {
        return super::cuda::adam_update(p, g, moments, step);
    }
    Ok(match p.dtype() {
        candle_core::DType::F32 => update::<f32>(p, g, moments, step)?,
        candle_core::DType::F64 => update::<f64>(p, g, moments, step)?,
        _ => None,
    })
}

/// A contiguous CPU tensor's elements as `T`, or `None`.
fn with_slice<T: Real, R>(t: &Tensor, f: impl FnOnce(&[T]) -> R) -> Option<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { return None };
    let (start, end) = layout.contiguous_offsets()?;
    T::slice(cpu).map(|all| f(&all[start..end]))
}

/// Elements per parallel task of the update.
const BLOCK: usize = 1 << 15;

fn update<T: Real>(
    p: &Tensor,
    g: &Tensor,
    moments: Option<(&Tensor, &Tensor)>,
    s: &AdamStep,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    let n = p.elem_count();
    let same = |t: &Tensor| t.dtype() == p.dtype() && t.elem_count() == n;
    if !same(g) || moments.is_some_and(|(m, v)| !same(m) || !same(v)) {
        return Ok(None);
    }
    let zeros;
    let (m, v) = match moments {
        Some(mv) => mv,
        None => {
            zeros = p.zeros_like()?;
            (&zeros, &zeros)
        }
    };
    let (b1, b2) = (T::of(s.beta1), T::of(s.beta2));
    let (one_b1, one_b2) = (T::of(1.0 - s.beta1), T::of(1.0 - s.beta2));
    let decay = T::of(1.0 - s.lr * s.weight_decay);
    let wd = T::of(s.weight_decay);
    let corr1 = T::of(1.0 / (1.0 - s.beta1.powi(s.t)));
    let corr2 = T::of(1.0 / (1.0 - s.beta2.powi(s.t)));
    let (lr, eps) = (T::of(s.lr), T::of(s.eps));
    let out = with_slice::<T, _>(p, |p| {
        with_slice::<T, _>(g, |g| {
            with_slice::<T, _>(m, |m| {
                with_slice::<T, _>(v, |v| {
                    let (mut np, mut nm, mut nv) =
                        (vec![T::zero(); n], vec![T::zero(); n], vec![T::zero(); n]);
                    // One block of the index range: element `start + j` of every tensor.
                    let update = |i: usize, np: &mut [T], nm: &mut [T], nv: &mut [T]| {
                        let start = i * BLOCK;
                        for j in 0..np.len() {
                            let k = start + j;
                            let (pi, gi) = if s.decoupled {
                                (p[k] * decay, g[k])
                            } else if s.weight_decay > 0.0 {
                                (p[k], g[k] + p[k] * wd)
                            } else {
                                (p[k], g[k])
                            };
                            let mi = m[k] * b1 + gi * one_b1;
                            let vi = v[k] * b2 + gi * gi * one_b2;
                            let denom = (vi * corr2).sqrt() + eps;
                            np[j] = pi - (mi * corr1) / denom * lr;
                            nm[j] = mi;
                            nv[j] = vi;
                        }
                    };
                    if n > BLOCK {
                        use rayon::prelude::*;
                        np.par_chunks_mut(BLOCK)
                            .zip(nm.par_chunks_mut(BLOCK))
                            .zip(nv.par_chunks_mut(BLOCK))
                            .enumerate()
                            .for_each(|(i, ((np, nm), nv))| update(i, np, nm, nv));
                    } else {
                        update(0, &mut np, &mut nm, &mut nv);
                    }
                    (np, nm, nv)
                })
            })
        })
    });
    let Some(Some(Some(Some((np, nm, nv))))) = out else { return Ok(None) };
    super::count_call();
    let (shape, device) = (p.shape(), p.device());
    Ok(Some((
        Tensor::from_vec(np, shape, device)?,
        Tensor::from_vec(nm, shape, device)?,
        Tensor::from_vec(nv, shape, device)?,
    )))
}
