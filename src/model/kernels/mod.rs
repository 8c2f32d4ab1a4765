//! Fused kernels (CPU, and CUDA in a CUDA build) with fused backward passes: layer norm
//! (alone and after a residual add), RMS norm, the attention softmax (scale + additive mask
//! bias), bias + GELU, SwiGLU, rotary embedding, cross-entropy, the Adam/AdamW update, and
//! (CPU) the dense layer `x · wᵀ + b`, attention, the embedding lookup, and a dense layer
//! with its GELU or its dropout as single graph nodes.
//!
//! Each op is a candle `CustomOp` whose `bwd` is itself one fused op, so training keeps its
//! graph (candle's own fused norms and softmax have no backward: shared/CANDLE.md) while a
//! layer norm costs one pass forward and one backward instead of a dozen elementwise ops,
//! each with its own temporary tensor.
//!
//! The fast paths cover contiguous f32/f64 tensors on the CPU, and (a `--features cuda`
//! build, `cuda.rs` + `kernels.cu`) f32 tensors on CUDA; bf16/f16 input runs the f32
//! kernels between two casts (`in_f32`). Anything else (norms wider than 2,048 on CUDA, a
//! mask bias that needs a gradient) goes through the composite ops, which compute the same
//! function. `TUNELAB_KERNELS=composite` in the environment, or [`set_enabled(false)`],
//! turns every fused op off (`TUNELAB_KERNELS=fused` turns them on, which is the default),
//! which is how the tests and `tunelab bench` compare the two.

mod adamw;
mod attention;
pub mod blas;
mod cross_entropy;
#[cfg(feature = "cuda")]
mod cuda;
mod dense_dropout;
mod dense_gelu;
mod embedding;
mod fast_math;
#[cfg(feature = "cuda")]
pub(crate) use cuda::dropout_mask as dropout_mask_cuda;
mod gelu;
mod grad_sink;
mod heads;
mod layer_norm;
mod linear;
mod mask;
mod rms_norm;
mod rope;
mod softmax;
mod sum_squares;
mod swiglu;
#[cfg(test)]
mod tests;

pub use adamw::{
    adam_update, adam_update_bounded, adam_update_finite, adam_update_in_place, adam_update_param_in_place,
    adam_update_params_in_place, AdamStep, FirstUpdate, MomentBounds,
};
pub use attention::attention;
pub use cross_entropy::{cross_entropy, cross_entropy_composite};
pub use dense_dropout::{conv1d_dropout, linear_dropout};
pub use dense_gelu::{conv1d_gelu, linear_gelu};
pub use embedding::embedding;
pub use gelu::{bias_gelu, bias_gelu_composite, bias_gelu_tanh, bias_gelu_tanh_composite};
pub use grad_sink::GradSink;
pub use heads::{merge_heads, split_heads};
pub use layer_norm::{add_layer_norm, layer_norm, layer_norm_composite};
pub use linear::{conv1d, linear, linear_composite, matmul_nt};
pub use mask::mul_mask;
pub use rms_norm::{rms_norm, rms_norm_composite};
pub use rope::{rope, rope_composite};
pub use softmax::{softmax, softmax_composite};
pub use sum_squares::sum_squares;
pub use swiglu::{swiglu, swiglu_composite};

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use candle_core::{CpuStorage, DType, Device, Layout, Tensor};

/// 0: not decided yet (read the environment), 1: fused, 2: composite.
static MODE: AtomicU8 = AtomicU8::new(0);

/// Whether the fused kernels are used: yes, unless `TUNELAB_KERNELS=composite` or
/// [`set_enabled`] says otherwise. (Cargo.toml compiles tunelab optimised in debug builds
/// too: unoptimised, the kernels' loops lose to candle's optimised composite ops.)
pub fn enabled() -> bool {
    match MODE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let on = std::env::var("TUNELAB_KERNELS").as_deref() != Ok("composite");
            MODE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
            on
        }
    }
}

/// Turns the fused kernels on or off for the whole process (off: every op takes its
/// composite path).
pub fn set_enabled(on: bool) {
    MODE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// How many fused forward kernels have run in this process.
static FUSED_CALLS: AtomicUsize = AtomicUsize::new(0);

/// How many fused forward kernels have run in this process: tests read it before and after
/// a forward pass to check that the fused path was taken, not the composite fallback.
pub fn fused_calls() -> usize {
    FUSED_CALLS.load(Ordering::Relaxed)
}

/// Counts one fused forward kernel.
pub(crate) fn count_call() {
    FUSED_CALLS.fetch_add(1, Ordering::Relaxed);
}

/// Why a fused kernel refused its input. The public functions check before they call a
/// kernel, so seeing one of these means a kernel was called directly with input it does not
/// handle.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The kernel reads its input as one contiguous slice.
    #[error(
        "fused kernel {op}: input {arg} is not contiguous; call .contiguous() first or use the composite op"
    )]
    NotContiguous {
        /// The kernel.
        op: &'static str,
        /// Which input.
        arg: &'static str,
    },
    /// The kernel has f32 and f64 versions only (integer targets for cross-entropy: u32).
    #[error("fused kernel {op}: dtype {dtype:?} of {arg} is not supported; use f32/f64 or the composite op")]
    DType {
        /// The kernel.
        op: &'static str,
        /// Which input.
        arg: &'static str,
        /// What it got.
        dtype: DType,
    },
    /// The inputs' shapes do not fit together.
    #[error("fused kernel {op}: {what}")]
    Shape {
        /// The kernel.
        op: &'static str,
        /// Which shapes, and what they should be.
        what: String,
    },
}

impl From<KernelError> for candle_core::Error {
    fn from(e: KernelError) -> Self {
        candle_core::Error::wrap(e)
    }
}

/// The float types the kernels are written for (f32, f64): arithmetic, conversions, and
/// getting a slice out of / a vector into candle's CPU storage.
pub trait Real:
    candle_core::WithDType
    + num_traits::Float
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + Send
    + Sync
    + 'static
{
    /// The storage's elements if they are of this type.
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    /// The storage's elements, writable, if they are of this type.
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
    /// A storage holding `v`.
    fn wrap(v: Vec<Self>) -> CpuStorage;
    /// `x` converted (constants, hyper-parameters).
    fn of(x: f64) -> Self;
    /// `e^self`, vectorisable for f32 (`fast_math`), libm's for f64.
    fn exp_fast(self) -> Self {
        self.exp()
    }
    /// `tanh(self)`, vectorisable for f32 (`fast_math`), libm's for f64.
    fn tanh_fast(self) -> Self {
        self.tanh()
    }
}

impl Real for f32 {
    fn slice(s: &CpuStorage) -> Option<&[f32]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [f32]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn wrap(v: Vec<f32>) -> CpuStorage {
        CpuStorage::F32(v)
    }
    fn of(x: f64) -> f32 {
        x as f32
    }
    #[inline(always)]
    fn exp_fast(self) -> f32 {
        fast_math::exp_f32(self)
    }
    #[inline(always)]
    fn tanh_fast(self) -> f32 {
        fast_math::tanh_f32(self)
    }
}

impl Real for f64 {
    fn slice(s: &CpuStorage) -> Option<&[f64]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [f64]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn wrap(v: Vec<f64>) -> CpuStorage {
        CpuStorage::F64(v)
    }
    fn of(x: f64) -> f64 {
        x
    }
}

/// About how many elements one parallel task of a kernel covers: below twice this a kernel
/// runs on the calling thread (handing work to another core costs a few microseconds).
const PAR_GRAIN: usize = 1 << 15;

/// The number of rows of length `d` in one parallel task.
pub(crate) fn rows_per_task(d: usize) -> usize {
    (PAR_GRAIN / d.max(1)).max(1)
}

/// Calls `f(start, block)` on consecutive `len`-element blocks of `out` (`start`: the
/// block's first index), in parallel on rayon's pool (the threads the matmuls use, idle
/// while a kernel runs) when there is more than one block. Each call writes only its own
/// block, so the result does not depend on the number of threads.
pub(crate) fn par_blocks<T: Send>(out: &mut [T], len: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    use rayon::prelude::*;
    if len == 0 || out.len() <= len {
        return f(0, out);
    }
    out.par_chunks_mut(len).enumerate().for_each(|(i, block)| f(i * len, block));
}

/// [`par_blocks`] over whole rows of length `d`, about [`PAR_GRAIN`] elements a block:
/// `f(first_row, rows)`.
pub(crate) fn par_rows<T: Send>(out: &mut [T], d: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let d = d.max(1);
    par_blocks(out, rows_per_task(d) * d, |start, block| f(start / d, block));
}

/// [`par_rows`] where each block also returns a partial result (a bias gradient summed over
/// its rows): the partials come back in block order, and blocks do not depend on the number
/// of threads, so summing them gives the same bits on every machine.
pub(crate) fn par_rows_partials<T: Send, P: Send>(
    out: &mut [T],
    d: usize,
    f: impl Fn(usize, &mut [T]) -> P + Sync,
) -> Vec<P> {
    use rayon::prelude::*;
    let rows = rows_per_task(d);
    if d == 0 {
        return vec![f(0, out)];
    }
    if out.len() < 2 * rows * d {
        return out.chunks_mut(rows * d).enumerate().map(|(i, block)| f(i * rows, block)).collect();
    }
    out.par_chunks_mut(rows * d).enumerate().map(|(i, block)| f(i * rows, block)).collect()
}

/// Σ `f(x)` over `xs`, in eight interleaved partial sums (a fixed order, so the result is
/// the same on every run, and one the compiler can vectorise, which a single running sum
/// is not).
#[inline]
pub(crate) fn sum_map<T: Real>(xs: &[T], f: impl Fn(T) -> T) -> T {
    let mut acc = [T::zero(); 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += f(c[i]);
        }
    }
    let mut total = acc.iter().fold(T::zero(), |a, &b| a + b);
    for &v in rest {
        total += f(v);
    }
    total
}

/// The largest element of `xs` (−∞ when empty), in eight interleaved lanes so that the
/// compiler vectorises it; the maximum does not depend on the order, so this is the value
/// a running maximum gives (NaNs aside, which no caller's input holds).
#[inline]
pub(crate) fn max_of<T: Real>(xs: &[T]) -> T {
    let mut acc = [T::neg_infinity(); 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    let mut max = acc.iter().fold(T::neg_infinity(), |a, &b| if b > a { b } else { a });
    for &v in rest {
        max = if v > max { v } else { max };
    }
    max
}

/// The contiguous elements of `s` under layout `l`, as `T`.
/// Checks that a backward op's upstream gradient (`grad`, laid out as `lg`) has as many
/// elements (`got`) as the forward value it belongs to (`of`, laid out as `lo`).
pub(crate) fn same_len(
    op: &'static str,
    got: usize,
    lg: &Layout,
    of: (&str, usize, &Layout),
) -> Result<(), KernelError> {
    let (name, want, lo) = of;
    if got == want {
        return Ok(());
    }
    Err(KernelError::Shape { op, what: format!("grad {:?} differs from {name} {:?}", lg.dims(), lo.dims()) })
}

pub(crate) fn contiguous<'a, T: Real>(
    s: &'a CpuStorage,
    l: &Layout,
    op: &'static str,
    arg: &'static str,
) -> Result<&'a [T], KernelError> {
    let all = T::slice(s).ok_or(KernelError::DType {
        op,
        arg,
        dtype: candle_core::backend::BackendStorage::dtype(s),
    })?;
    let (start, end) = l.contiguous_offsets().ok_or(KernelError::NotContiguous { op, arg })?;
    Ok(&all[start..end])
}

/// Whether `t` can take a fused path: kernels on, CPU, f32 or f64.
pub(crate) fn fusable(t: &Tensor) -> bool {
    enabled() && matches!(t.device(), Device::Cpu) && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// Whether `t` can take a fused CUDA kernel: kernels on, a CUDA build, a CUDA tensor, f32.
pub(crate) fn fusable_cuda(t: &Tensor) -> bool {
    cfg!(feature = "cuda") && enabled() && t.device().is_cuda() && t.dtype() == DType::F32
}

/// Whether `t` can take one of the graph-saving ops built from candle's own CUDA storage
/// ops (`linear.rs`, `heads.rs`, `mask.rs`): kernels on, a CUDA build, a CUDA float tensor
/// of any precision.
pub(crate) fn graph_op_on_cuda(t: &Tensor) -> bool {
    cfg!(feature = "cuda") && enabled() && t.device().is_cuda() && t.dtype().is_float()
}

/// Whether `t` is half precision (bf16/f16) on a device with fused f32 kernels (the CPU, or
/// CUDA in a CUDA build) and the kernels are on: then an op casts its inputs to f32, runs
/// the fused kernel and casts the result back (see [`in_f32`]), as mixed-precision training
/// computes every reduction in f32 anyway; three casts instead of a dozen composite ops.
pub(crate) fn half_to_fuse(t: &Tensor) -> bool {
    enabled()
        && matches!(t.dtype(), DType::BF16 | DType::F16)
        && (matches!(t.device(), Device::Cpu) || (cfg!(feature = "cuda") && t.device().is_cuda()))
}

/// `op` applied to `inputs` cast to f32, its result cast back to `dtype`.
pub(crate) fn in_f32<const N: usize>(
    dtype: DType,
    inputs: [&Tensor; N],
    op: impl FnOnce([Tensor; N]) -> crate::error::Result<Tensor>,
) -> crate::error::Result<Tensor> {
    let mut up = Vec::with_capacity(N);
    for t in inputs {
        up.push(t.to_dtype(DType::F32)?);
    }
    let up: [Tensor; N] = up.try_into().unwrap_or_else(|_| unreachable!("N inputs give N tensors"));
    Ok(op(up)?.to_dtype(dtype)?)
}

/// Whether the CPU runs AVX-512F (std checks once and caches it). The kernels' loops are
/// compiled for the x86-64 baseline (four f32 lanes); the hot ones have a twin compiled for
/// AVX-512 ([`avx512_twin!`]), chosen at run time so the binary still runs anywhere.
#[inline]
pub(crate) fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `fn name<T: Real>(args) -> ret { body }` that runs `body` compiled for AVX-512F
/// when the CPU has it ([`avx512`]) and for the baseline otherwise. Same bits either way:
/// Rust never contracts a multiply and an add into an FMA, so only the lane count changes.
macro_rules! avx512_twin {
    ($(#[$m:meta])* $vis:vis fn $name:ident<T: Real>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name<T: Real>($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body<T: Real>($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            if $crate::model::kernels::avx512() {
                #[target_feature(enable = "avx512f")]
                fn wide<T: Real>($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                // SAFETY: the CPU has AVX-512F (checked just above).
                return unsafe { wide($($arg),*) };
            }
            body($($arg),*)
        }
    };
}
pub(crate) use avx512_twin;

/// Runs `$body` with `$T` bound to the element type of storage `$s` (f32 or f64).
macro_rules! with_real {
    ($s:expr, $op:expr, $arg:expr, |$T:ident| $body:expr) => {{
        #[allow(unused_imports)]
        use num_traits::{Float as _, One as _, Zero as _};
        match candle_core::backend::BackendStorage::dtype($s) {
            candle_core::DType::F32 => {
                type $T = f32;
                $body
            }
            candle_core::DType::F64 => {
                type $T = f64;
                $body
            }
            dtype => Err(crate::model::kernels::KernelError::DType { op: $op, arg: $arg, dtype }.into()),
        }
    }};
}
pub(crate) use with_real;
