//! The Adam / AdamW update of one parameter, fused: the new parameter and both moments in
//! one pass over the four tensors, instead of about fifteen elementwise ops each allocating
//! a tensor. The results are new tensors (the optimizer never writes state in place, so a
//! snapshot of it stays a cheap clone), with the composite update's arithmetic in the same
//! order.

use std::mem::MaybeUninit;

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
                    // Uninitialised outputs: the update writes every element once, and
                    // zero-filling three parameter-sized buffers first cost as much again.
                    let (mut np, mut nm, mut nv) =
                        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
                    let k = Coefficients { b1, b2, one_b1, one_b2, decay, wd, corr1, corr2, lr, eps };
                    // One block of the index range: element `start + j` of every tensor.
                    let update = |i: usize,
                                  np: &mut [MaybeUninit<T>],
                                  nm: &mut [MaybeUninit<T>],
                                  nv: &mut [MaybeUninit<T>]| {
                        let (start, len) = (i * BLOCK, np.len());
                        let r = start..start + len;
                        update_block(s, &k, [&p[r.clone()], &g[r.clone()], &m[r.clone()], &v[r]], np, nm, nv)
                    };
                    let (up, um, uv) = (
                        &mut np.spare_capacity_mut()[..n],
                        &mut nm.spare_capacity_mut()[..n],
                        &mut nv.spare_capacity_mut()[..n],
                    );
                    if n > BLOCK {
                        use rayon::prelude::*;
                        up.par_chunks_mut(BLOCK)
                            .zip(um.par_chunks_mut(BLOCK))
                            .zip(uv.par_chunks_mut(BLOCK))
                            .enumerate()
                            .for_each(|(i, ((np, nm), nv))| update(i, np, nm, nv));
                    } else {
                        update(0, up, um, uv);
                    }
                    // SAFETY: every one of the n elements of each vector was written above.
                    unsafe {
                        np.set_len(n);
                        nm.set_len(n);
                        nv.set_len(n);
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

/// The update's constants, in the element type.
struct Coefficients<T> {
    b1: T,
    b2: T,
    one_b1: T,
    one_b2: T,
    decay: T,
    wd: T,
    corr1: T,
    corr2: T,
    lr: T,
    eps: T,
}

/// The update of one block: `[p, g, m, v]` in, the new parameter and moments written to
/// `np`, `nm`, `nv` (all of the block's length).
#[inline(always)]
fn update_block<T: Real>(
    s: &AdamStep,
    k: &Coefficients<T>,
    [p, g, m, v]: [&[T]; 4],
    np: &mut [MaybeUninit<T>],
    nm: &mut [MaybeUninit<T>],
    nv: &mut [MaybeUninit<T>],
) {
    let len = np.len();
    let (p, g, m, v, nm, nv) = (&p[..len], &g[..len], &m[..len], &v[..len], &mut nm[..len], &mut nv[..len]);
    for j in 0..len {
        let (pi, gi) = if s.decoupled {
            (p[j] * k.decay, g[j])
        } else if s.weight_decay > 0.0 {
            (p[j], g[j] + p[j] * k.wd)
        } else {
            (p[j], g[j])
        };
        let mi = m[j] * k.b1 + gi * k.one_b1;
        let vi = v[j] * k.b2 + gi * gi * k.one_b2;
        let denom = (vi * k.corr2).sqrt() + k.eps;
        np[j].write(pi - (mi * k.corr1) / denom * k.lr);
        nm[j].write(mi);
        nv[j].write(vi);
    }
}
