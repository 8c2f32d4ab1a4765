//! The Adam / AdamW update of one parameter, fused: the new parameter and both moments in
//! one pass over the four tensors, instead of about fifteen elementwise ops each allocating
//! a tensor, with the composite update's arithmetic in the same order.
//!
//! Two forms. [`adam_update`] returns new tensors (the first update, CUDA, and moments the
//! optimizer shares with a snapshot). [`adam_update_in_place`] writes the parameter and
//! the moments where they are: a step of a 135M-parameter model otherwise asks the
//! allocator for 1.6 GB of fresh, kernel-zeroed pages and copies the new weights into the
//! variables. [`adam_update_finite`] is its read-only twin, so the optimizer can check that
//! every new value is finite before it writes any.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use candle_core::{CpuStorage, InplaceOp1, Layout, Storage, Tensor};

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
    let k = Coefficients::new(s);
    let out = with_slice::<T, _>(p, |p| {
        with_slice::<T, _>(g, |g| {
            with_slice::<T, _>(m, |m| {
                with_slice::<T, _>(v, |v| {
                    // Uninitialised outputs: the update writes every element once, and
                    // zero-filling three parameter-sized buffers first cost as much again.
                    let (mut np, mut nm, mut nv) =
                        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
                    // One block of the index range: element `start + j` of every tensor.
                    let update = |i: usize,
                                  np: &mut [MaybeUninit<T>],
                                  nm: &mut [MaybeUninit<T>],
                                  nv: &mut [MaybeUninit<T>]| {
                        let (start, len) = (i * BLOCK, np.len());
                        let r = start..start + len;
                        update_block(&k, [&p[r.clone()], &g[r.clone()], &m[r.clone()], &v[r]], np, nm, nv)
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

impl<T: Real> Coefficients<T> {
    fn new(s: &AdamStep) -> Self {
        Coefficients {
            b1: T::of(s.beta1),
            b2: T::of(s.beta2),
            one_b1: T::of(1.0 - s.beta1),
            one_b2: T::of(1.0 - s.beta2),
            decay: T::of(if s.decoupled { 1.0 - s.lr * s.weight_decay } else { 1.0 }),
            wd: T::of(if s.decoupled { 0.0 } else { s.weight_decay }),
            corr1: T::of(1.0 / (1.0 - s.beta1.powi(s.t))),
            corr2: T::of(1.0 / (1.0 - s.beta2.powi(s.t))),
            lr: T::of(s.lr),
            eps: T::of(s.eps),
        }
    }
}

/// The update of one element: `(new parameter, new first moment, new second moment)` of
/// parameter `p`, gradient `g` and moments `m`, `v`. Every form of the update calls this,
/// so they give the same bits. No branch: AdamW's decay factor is 1 for Adam, Adam's L2
/// term 0 for AdamW (`p · 1` and `g + p · 0` are exact), so the loops vectorise.
#[inline(always)]
fn element<T: Real>(k: &Coefficients<T>, p: T, g: T, m: T, v: T) -> (T, T, T) {
    let g = g + p * k.wd;
    let p = p * k.decay;
    let m = m * k.b1 + g * k.one_b1;
    let v = v * k.b2 + g * g * k.one_b2;
    let denom = (v * k.corr2).sqrt() + k.eps;
    (p - (m * k.corr1) / denom * k.lr, m, v)
}

/// The update of one block: `[p, g, m, v]` in, the new parameter and moments written to
/// `np`, `nm`, `nv` (all of the block's length).
#[inline(always)]
fn update_block<T: Real>(
    k: &Coefficients<T>,
    [p, g, m, v]: [&[T]; 4],
    np: &mut [MaybeUninit<T>],
    nm: &mut [MaybeUninit<T>],
    nv: &mut [MaybeUninit<T>],
) {
    let len = np.len();
    let (p, g, m, v, nm, nv) = (&p[..len], &g[..len], &m[..len], &v[..len], &mut nm[..len], &mut nv[..len]);
    for j in 0..len {
        let (pj, mj, vj) = element(k, p[j], g[j], m[j], v[j]);
        np[j].write(pj);
        nm[j].write(mj);
        nv[j].write(vj);
    }
}

/// Whether [`adam_update_in_place`] of these tensors would leave every new parameter value
/// finite, computed without writing anything; `None` when the tensors do not fit the
/// in-place kernel (contiguous f32/f64 CPU tensors of one shape, kernels on).
pub fn adam_update_finite(
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    step: &AdamStep,
) -> Result<Option<bool>> {
    if !in_place_fits(&[p, g, m, v]) {
        return Ok(None);
    }
    Ok(match p.dtype() {
        candle_core::DType::F32 => finite::<f32>(p, g, m, v, step),
        _ => finite::<f64>(p, g, m, v, step),
    })
}

fn finite<T: Real>(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, s: &AdamStep) -> Option<bool> {
    let k = Coefficients::<T>::new(s);
    let block_finite = |blocks: [&[T]; 4]| finite_block(&k, blocks);
    with_slice::<T, _>(p, |p| {
        with_slice::<T, _>(g, |g| {
            with_slice::<T, _>(m, |m| {
                with_slice::<T, _>(v, |v| {
                    use rayon::prelude::*;
                    let n = p.len();
                    (0..n.div_ceil(BLOCK)).into_par_iter().all(|i| {
                        let r = i * BLOCK..((i + 1) * BLOCK).min(n);
                        block_finite([&p[r.clone()], &g[r.clone()], &m[r.clone()], &v[r]])
                    })
                })
            })
        })
    })
    .flatten()
    .flatten()
    .flatten()
}

/// Bounds on the moments after an update: the largest `|m|` and the largest `v`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MomentBounds {
    /// At least the largest `|m|`.
    pub m: f64,
    /// At least the largest `v`.
    pub v: f64,
}

/// Proves without the update's arithmetic that [`adam_update_in_place`] (or, with
/// `moments` `None`, the first update by [`adam_update_param_in_place`]) leaves every value
/// finite, from the largest `|p|` and `|g|` (one read of each; `g_bound`, when given, is at
/// least the largest `|g|` — the gradient's L2 norm is — and `g` is not read) and bounds on
/// the moments (`known`, carried from the previous update, else read from `moments`; zero
/// without):
/// with `|m'| ≤ β₁·M + (1 − β₁)·G` and `ε > 0`, no step exceeds `lr · m̂ / ε`. Returns the
/// bounds after the update when that proves it, `None` when it does not (a huge learning
/// rate, ε = 0, a non-finite input, or tensors the kernel does not fit): then
/// [`adam_update_finite`] decides exactly.
pub fn adam_update_bounded(
    p: &Tensor,
    g: &Tensor,
    moments: Option<(&Tensor, &Tensor)>,
    step: &AdamStep,
    known: Option<MomentBounds>,
    g_bound: Option<f64>,
) -> Result<Option<MomentBounds>> {
    let (eps_ok, lr_ok) = (step.eps.is_finite() && step.eps > 0.0, step.lr.is_finite() && step.lr >= 0.0);
    let fits = match moments {
        Some((m, v)) => in_place_fits(&[p, g, m, v]),
        None => in_place_fits(&[p, g]),
    };
    if !fits || !eps_ok || !lr_ok {
        return Ok(None);
    }
    let largest = |t: &Tensor| -> Option<f64> {
        match t.dtype() {
            candle_core::DType::F32 => with_slice::<f32, _>(t, largest_magnitude).flatten(),
            _ => with_slice::<f64, _>(t, largest_magnitude).flatten(),
        }
    };
    let g_bound = g_bound.filter(|b| b.is_finite() && *b >= 0.0);
    let (Some(big_p), Some(big_g)) = (largest(p), g_bound.or_else(|| largest(g))) else { return Ok(None) };
    let known = match (known, moments) {
        (Some(b), _) => b,
        (None, None) => MomentBounds { m: 0.0, v: 0.0 },
        (None, Some((m, v))) => match (largest(m), largest(v)) {
            (Some(m), Some(v)) => MomentBounds { m, v },
            _ => return Ok(None),
        },
    };
    let s = step;
    let l2 = if s.decoupled { 0.0 } else { s.weight_decay.abs() };
    let decay = if s.decoupled { (1.0 - s.lr * s.weight_decay).abs() } else { 1.0 };
    let g_eff = big_g + l2 * big_p;
    // The kernel rounds each product in the tensor's type (0.1f32 is above 0.1), so the
    // bounds carry a relative margin far above any rounding and keep bounding what it writes.
    const MARGIN: f64 = 1.0 + 1e-5;
    let m_next = (s.beta1.abs() * known.m + (1.0 - s.beta1).abs() * g_eff) * MARGIN;
    let v_next = (s.beta2.abs() * known.v + (1.0 - s.beta2).abs() * g_eff * g_eff) * MARGIN;
    let corr1 = (1.0 / (1.0 - s.beta1.powi(s.t))).abs();
    let corr2 = (1.0 / (1.0 - s.beta2.powi(s.t))).abs();
    let p_next = decay * big_p + s.lr * corr1 * m_next / s.eps;
    // Every intermediate the element rule forms is at most one of these; a quarter of the
    // type's range leaves room for rounding.
    let limit = if p.dtype() == candle_core::DType::F32 { f32::MAX as f64 } else { f64::MAX } / 4.0;
    let biggest =
        [g_eff, g_eff * g_eff, m_next * corr1, v_next * corr2, v_next, p_next, s.lr * corr1 * m_next / s.eps];
    Ok(biggest.iter().all(|x| x.is_finite() && *x < limit).then_some(MomentBounds { m: m_next, v: v_next }))
}

/// The largest `|x|` of a slice, or `None` if any element is NaN or infinite.
fn largest_magnitude<T: Real>(x: &[T]) -> Option<f64> {
    use rayon::prelude::*;
    let (big, nan) = x
        .par_chunks(BLOCK)
        .map(magnitude_block)
        .reduce(|| (T::zero(), T::zero()), |a, b| (if b.0 > a.0 { b.0 } else { a.0 }, a.1 + b.1));
    (nan.is_finite() && big.is_finite()).then(|| <T as candle_core::WithDType>::to_f64(big))
}

super::avx512_twin! {
    /// The largest `|x|` of one block, and `Σ x·0` (NaN if any `x` is NaN or infinite), in
    /// sixteen lanes the compiler vectorises.
    fn magnitude_block<T: Real>(x: &[T]) -> (T, T) {
        const LANES: usize = 16;
        let (mut big, mut nan) = ([T::zero(); LANES], [T::zero(); LANES]);
        for c in x.chunks_exact(LANES) {
            for l in 0..LANES {
                let a = c[l].abs();
                big[l] = if a > big[l] { a } else { big[l] };
                nan[l] += c[l] * T::zero();
            }
        }
        let tail = &x[x.len() / LANES * LANES..];
        let (mut b, mut n) = (T::zero(), T::zero());
        for &t in big.iter().chain(tail) {
            b = if t.abs() > b { t.abs() } else { b };
        }
        for &t in nan.iter().chain(tail) {
            n += t * T::zero();
        }
        (b, n)
    }
}

/// One Adam(W) update of parameter `p` with gradient `g`, writing the new parameter into
/// `p` and the new moments into `m` and `v`. Returns false, writing nothing, when the
/// tensors do not fit the in-place kernel (see [`adam_update_finite`]). The caller makes
/// sure no one else holds `m` and `v` (a snapshot would see them change); `p` changes in
/// place as `Var::set` would change it.
pub fn adam_update_in_place(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, step: &AdamStep) -> Result<bool> {
    if !in_place_fits(&[p, g, m, v]) {
        return Ok(false);
    }
    match p.dtype() {
        candle_core::DType::F32 => update_in_place::<f32>(p, g, m, v, step)?,
        _ => update_in_place::<f64>(p, g, m, v, step)?,
    }
    super::count_call();
    Ok(true)
}

/// One Adam(W) update that writes the new parameter into `p` in place and returns the new
/// moments as fresh tensors, reading `moments` (`None` on the first update: zeros) without
/// writing them: the first update of a fit, whose moments the undo snapshot shares (or
/// that has none yet). Against [`adam_update`] it saves a parameter-sized allocation and
/// `Var::set`'s copy back. Returns `None`, writing nothing, when the tensors do not fit the
/// in-place kernel; the caller checks first that no new value overflows.
pub fn adam_update_param_in_place(
    p: &Tensor,
    g: &Tensor,
    moments: Option<(&Tensor, &Tensor)>,
    step: &AdamStep,
) -> Result<Option<(Tensor, Tensor)>> {
    let item = FirstUpdate { p, g, moments, step };
    Ok(adam_update_params_in_place(&[item])?.and_then(|mut new| new.pop()))
}

/// One parameter's part in [`adam_update_params_in_place`].
pub struct FirstUpdate<'a> {
    /// The parameter, updated in place.
    pub p: &'a Tensor,
    /// Its gradient.
    pub g: &'a Tensor,
    /// Its moments before the update (`None`: zeros), read, not written.
    pub moments: Option<(&'a Tensor, &'a Tensor)>,
    /// The update's settings for this parameter.
    pub step: &'a AdamStep,
}

/// [`adam_update_param_in_place`] for several parameters, their new moments in two shared
/// buffers (one for every `m`, one for every `v`; each parameter gets views of them).
///
/// The moments live as long as the optimizer. Made one tensor at a time, as many
/// heap blocks, they land among the step's short-lived activations, and the heap, split
/// by them, grows fresh pages for every later step's activations: each `fit` after the
/// first ran 15–40% slower per step (GPT-2 small, 2 cores). Two buffers this large come
/// from their own mappings, off the heap. Returns `None`, writing nothing, when any
/// tensor does not fit the in-place kernel or the parameters' dtypes differ.
pub fn adam_update_params_in_place(items: &[FirstUpdate<'_>]) -> Result<Option<Vec<(Tensor, Tensor)>>> {
    let Some(first) = items.first() else { return Ok(Some(Vec::new())) };
    let dtype = first.p.dtype();
    let fits = items.iter().all(|it| {
        it.p.dtype() == dtype
            && it.p.device().same_device(first.p.device())
            && match it.moments {
                Some((m, v)) => in_place_fits(&[it.p, it.g, m, v]),
                None => in_place_fits(&[it.p, it.g]),
            }
    });
    if !fits {
        return Ok(None);
    }
    let new = match dtype {
        candle_core::DType::F32 => update_params_in_place::<f32>(items)?,
        _ => update_params_in_place::<f64>(items)?,
    };
    items.iter().for_each(|_| super::count_call());
    Ok(Some(new))
}

fn update_params_in_place<T: Real>(items: &[FirstUpdate<'_>]) -> Result<Vec<(Tensor, Tensor)>> {
    let total: usize = items.iter().map(|it| it.p.elem_count()).sum();
    let (mut nm, mut nv) = (Vec::<T>::with_capacity(total), Vec::<T>::with_capacity(total));
    {
        let (mut um, mut uv) = (&mut nm.spare_capacity_mut()[..total], &mut nv.spare_capacity_mut()[..total]);
        for it in items {
            let n = it.p.elem_count();
            let (here_m, rest_m) = std::mem::take(&mut um).split_at_mut(n);
            let (here_v, rest_v) = std::mem::take(&mut uv).split_at_mut(n);
            (um, uv) = (rest_m, rest_v);
            update_param_in_place::<T>(it, here_m, here_v)?;
        }
    }
    // SAFETY: each parameter's update wrote every element of its part of both vectors, and
    // the parts tile them.
    unsafe {
        nm.set_len(total);
        nv.set_len(total);
    }
    let device = items[0].p.device();
    let (all_m, all_v) = (Tensor::from_vec(nm, total, device)?, Tensor::from_vec(nv, total, device)?);
    let mut at = 0;
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let (n, shape) = (it.p.elem_count(), it.p.shape());
        out.push((all_m.narrow(0, at, n)?.reshape(shape)?, all_v.narrow(0, at, n)?.reshape(shape)?));
        at += n;
    }
    Ok(out)
}

/// One parameter of [`update_params_in_place`]: `p` in place, its new moments into `um`
/// and `uv` (exactly its size).
fn update_param_in_place<T: Real>(
    it: &FirstUpdate<'_>,
    um: &mut [MaybeUninit<T>],
    uv: &mut [MaybeUninit<T>],
) -> Result<()> {
    let k = Coefficients::<T>::new(it.step);
    // Every block of `p` with the same blocks of g, the old moments (if any) and the new.
    let mut run = |p: &mut [T], g: &[T], old: Option<(&[T], &[T])>| {
        use rayon::prelude::*;
        p.par_chunks_mut(BLOCK)
            .zip(um.par_chunks_mut(BLOCK))
            .zip(uv.par_chunks_mut(BLOCK))
            .enumerate()
            .for_each(|(i, ((p, nm), nv))| {
                let r = i * BLOCK..i * BLOCK + p.len();
                let old = old.map(|(m, v)| (&m[r.clone()], &v[r.clone()]));
                update_block_param_in_place(&k, p, &g[r], old, nm, nv)
            });
    };
    let not_cpu =
        || candle_core::Error::Msg("adam_update_param_in_place: an input is not a CPU slice".into());
    with_slice_mut::<T>(it.p, |p| {
        with_slice::<T, _>(it.g, |g| match it.moments {
            Some((m, v)) => {
                with_slice::<T, _>(m, |m| with_slice::<T, _>(v, |v| run(p, g, Some((m, v))))).flatten()
            }
            None => {
                run(p, g, None);
                Some(())
            }
        })
        .flatten()
        .ok_or_else(not_cpu)
    })?;
    Ok(())
}

super::avx512_twin! {
    /// One block of [`adam_update_param_in_place`]: `p` in place, the new moments into
    /// `nm` and `nv`, the old ones read from `old` (`None`: zeros).
    fn update_block_param_in_place<T: Real>(
        k: &Coefficients<T>,
        p: &mut [T],
        g: &[T],
        old: Option<(&[T], &[T])>,
        nm: &mut [MaybeUninit<T>],
        nv: &mut [MaybeUninit<T>],
    ) {
        let n = p.len();
        let (g, nm, nv) = (&g[..n], &mut nm[..n], &mut nv[..n]);
        match old {
            Some((m, v)) => {
                let (m, v) = (&m[..n], &v[..n]);
                for j in 0..n {
                    let (pj, mj, vj) = element(k, p[j], g[j], m[j], v[j]);
                    p[j] = pj;
                    nm[j].write(mj);
                    nv[j].write(vj);
                }
            }
            None => {
                for j in 0..n {
                    let (pj, mj, vj) = element(k, p[j], g[j], T::zero(), T::zero());
                    p[j] = pj;
                    nm[j].write(mj);
                    nv[j].write(vj);
                }
            }
        }
    }
}

super::avx512_twin! {
    /// Whether every new parameter value of one block is finite (read-only; the same
    /// element rule as the update). Adam's loops are bound by a square root and a division
    /// per element, which AVX-512 does sixteen lanes at a time.
    fn finite_block<T: Real>(k: &Coefficients<T>, blocks: [&[T]; 4]) -> bool {
        let [p, g, m, v] = blocks;
        // A sum of the new values is finite iff each is (NaN and ±∞ propagate); one
        // accumulator per lane keeps the loop vectorisable.
        const LANES: usize = 16;
        let mut acc = [T::zero(); LANES];
        let (pc, gc, mc, vc) =
            (p.chunks_exact(LANES), g.chunks_exact(LANES), m.chunks_exact(LANES), v.chunks_exact(LANES));
        for (((p, g), m), v) in pc.zip(gc).zip(mc).zip(vc) {
            for l in 0..LANES {
                acc[l] += element(k, p[l], g[l], m[l], v[l]).0 * T::zero();
            }
        }
        let tail = p.len() / LANES * LANES;
        (tail..p.len()).all(|j| element(k, p[j], g[j], m[j], v[j]).0.is_finite())
            && acc.iter().all(|a| a.is_finite())
    }
}

super::avx512_twin! {
    /// The in-place update of one block of `p`, `m`, `v` with gradient `g`.
    fn update_block_in_place<T: Real>(k: &Coefficients<T>, p: &mut [T], m: &mut [T], v: &mut [T], g: &[T]) {
        for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            (*p, *m, *v) = element(k, *p, g, *m, *v);
        }
    }
}

/// Contiguous f32/f64 CPU tensors of one element count and type, four distinct storages.
fn in_place_fits(ts: &[&Tensor]) -> bool {
    let p = ts[0];
    enabled()
        && matches!(p.dtype(), candle_core::DType::F32 | candle_core::DType::F64)
        && ts.iter().all(|t| {
            t.device().is_cpu()
                && t.dtype() == p.dtype()
                && t.elem_count() == p.elem_count()
                && t.is_contiguous()
        })
        && {
            // Distinct storages: the update write-locks p, m and v, then reads g.
            let at: Vec<usize> =
                ts.iter().map(|t| &*t.storage_and_layout().0 as *const Storage as usize).collect();
            (0..at.len()).all(|i| (i + 1..at.len()).all(|j| at[i] != at[j]))
        }
}

fn update_in_place<T: Real>(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, s: &AdamStep) -> Result<()> {
    let k = Coefficients::<T>::new(s);
    with_slice_mut::<T>(p, |p| {
        with_slice_mut::<T>(m, |m| {
            with_slice_mut::<T>(v, |v| {
                let done = with_slice::<T, _>(g, |g| {
                    use rayon::prelude::*;
                    let block = |((p, m), v): ((&mut [T], &mut [T]), &mut [T]), g: &[T]| {
                        update_block_in_place(&k, p, m, v, g)
                    };
                    if p.len() > BLOCK {
                        p.par_chunks_mut(BLOCK)
                            .zip(m.par_chunks_mut(BLOCK))
                            .zip(v.par_chunks_mut(BLOCK))
                            .zip(g.par_chunks(BLOCK))
                            .for_each(|(pmv, g)| block(pmv, g));
                    } else {
                        block(((p, m), v), g);
                    }
                });
                done.ok_or_else(|| {
                    candle_core::Error::Msg("adam_update_in_place: the gradient is not a CPU slice".into())
                })
            })
        })
    })?;
    Ok(())
}

/// Runs `f` on the elements of contiguous CPU tensor `t`, writable, under the tensor's
/// storage lock (candle's in-place op: the one way to write a tensor's storage).
pub(super) fn with_slice_mut<T: Real>(
    t: &Tensor,
    f: impl FnOnce(&mut [T]) -> candle_core::Result<()>,
) -> candle_core::Result<()> {
    struct Op<F>(RefCell<Option<F>>);
    impl<F: FnOnce(&mut CpuStorage, &Layout) -> candle_core::Result<()>> InplaceOp1 for Op<F> {
        fn name(&self) -> &'static str {
            "tunelab-in-place"
        }
        fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
            match self.0.borrow_mut().take() {
                Some(f) => f(storage, layout),
                None => Ok(()),
            }
        }
    }
    t.inplace_op1(&Op(RefCell::new(Some(|storage: &mut CpuStorage, layout: &Layout| {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("in-place update of a non-contiguous tensor".into()))?;
        match T::slice_mut(storage) {
            Some(all) => f(&mut all[start..end]),
            None => Err(candle_core::Error::Msg("in-place update: unexpected element type".into())),
        }
    }))))
}
