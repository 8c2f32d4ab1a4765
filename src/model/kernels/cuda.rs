//! The CUDA versions of the fused kernels (a `--features cuda` build), for contiguous f32
//! tensors: the AdamW update; layer norm (alone and after a residual add), RMS norm, rotary
//! embedding, the attention softmax (scale + broadcast mask bias), bias + GELU (erf and
//! tanh), SwiGLU and per-row cross-entropy, each forward and backward; dropout's keep-masks.
//!
//! The CUDA C source (`kernels.cu`) is compiled once per process with NVRTC at first use (no nvcc
//! at build time, so the CPU build and CI are unaffected) and loaded into each device's
//! module cache under [`MODULE`]. Each kernel does the arithmetic of its CPU twin in
//! sibling `.rs` files, in the same order, so the two agree to rounding (fused
//! multiply-adds aside); tests/gpu.rs checks them against the composite ops on the GPU.

use std::sync::OnceLock;

use candle_core::cuda_backend::cudarc::driver::{CudaView, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::cudarc::nvrtc;
use candle_core::cuda_backend::WrapErr;
use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, Device, Layout, Shape, Storage, Tensor};

use super::AdamStep;

/// The name the compiled module is cached under in each `CudaDevice`.
const MODULE: &str = "tunelab_kernels";

/// Threads per block of the row kernels (norms, softmax, the GELU backward): 8 warps.
const ROW_THREADS: u32 = 256;
/// Columns each thread of the layer-norm backward accumulates `dw`/`db` for, so rows up to
/// `ROW_THREADS · MAX_COLS` wide run fused; wider ones take the composite op.
const MAX_COLS: usize = 8;
/// The widest rows the layer-norm kernels take.
pub(crate) const MAX_HIDDEN: usize = ROW_THREADS as usize * MAX_COLS;
/// Rows one block of the norms' backward handles (its `dw`/`db` partial sums are added to
/// the result once per block).
const ROWS_PER_BLOCK: u32 = 16;
/// Rows one block of the bias-GELU backward sums its columns over.
const GELU_ROWS_PER_BLOCK: u32 = 32;

/// The kernels' CUDA C source (also compiled with `nvcc --ptx` by
/// `scripts/cuda-toolchain.sh check`, which needs no GPU).
const SOURCE: &str = include_str!("kernels.cu");

/// The PTX of [`SOURCE`], compiled at first use.
fn ptx() -> candle_core::Result<&'static str> {
    static PTX: OnceLock<Result<String, String>> = OnceLock::new();
    let compiled = PTX.get_or_init(|| {
        let opts = nvrtc::CompileOptions { name: Some("tunelab_kernels.cu".into()), ..Default::default() };
        nvrtc::compile_ptx_with_opts(SOURCE, opts).map(|p| p.to_src()).map_err(|e| e.to_string())
    });
    match compiled {
        Ok(ptx) => Ok(ptx),
        Err(e) => {
            Err(candle_core::Error::Msg(format!("compiling tunelab's CUDA kernels with NVRTC failed: {e}")))
        }
    }
}

/// `x`'s elements of type `T` (f32 unless said) from its layout's start, checked contiguous.
fn view<'a, T: candle_core::cuda_backend::CudaDType>(
    s: &'a CudaStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<CudaView<'a, T>> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("fused CUDA kernel: {what} is not contiguous")))?;
    Ok(s.as_cuda_slice::<T>()?.slice(start..end))
}

/// Launches kernel `$name` of [`MODULE`] with config `$cfg` and the arguments in order.
/// The launch is unsafe: each call site says, in a SAFETY comment, why its arguments match
/// the kernel's signature and why every buffer is as large as the kernel indexes.
macro_rules! launch {
    ($dev:expr, $name:expr, $cfg:expr; $($arg:expr),+ $(,)?) => {{
        let func = $dev.get_or_load_custom_func($name, MODULE, ptx()?)?;
        let cfg: LaunchConfig = $cfg;
        let mut args = func.builder();
        $( args.arg($arg); )+
        unsafe { args.launch(cfg) }.w()?;
    }};
}

/// `blocks` blocks of `threads` threads, one-dimensional.
fn grid(blocks: usize, threads: u32) -> LaunchConfig {
    LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}

/// 256-thread blocks for a grid-stride loop over `n` items (at most ~1M blocks).
fn grid_stride(n: usize) -> LaunchConfig {
    grid(n.div_ceil(256).min(65_535 * 16), 256)
}

/// One warp per row over `rows` rows.
fn warp_per_row(rows: usize) -> LaunchConfig {
    grid(rows.div_ceil((ROW_THREADS / 32) as usize), ROW_THREADS)
}

/// A kernel's f32 output on `dev`, as the storage an op returns.
fn output(
    out: candle_core::cuda_backend::cudarc::driver::CudaSlice<f32>,
    dev: &candle_core::cuda_backend::CudaDevice,
    shape: Shape,
) -> (CudaStorage, Shape) {
    (CudaStorage::wrap_cuda_slice(out, dev.clone()), shape)
}

/// Rows of `k` in a tensor of `n` elements, checked to fit the kernels' `int` indices.
fn rows_of(op: &str, n: usize, k: usize) -> candle_core::Result<usize> {
    if k == 0 || !n.is_multiple_of(k) || n > i32::MAX as usize {
        candle_core::bail!("fused CUDA {op}: {n} elements are not rows of {k} (or too many for one launch)")
    }
    Ok(n / k)
}

/// Layer norm (`bias` given, kernel `layer_norm_f32`) or RMS norm (`rms_norm_f32`) forward
/// on CUDA: `x` `[rows, d]` flattened, `w` and `b` `[d]`.
pub(crate) fn norm_fwd(
    eps: f64,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
    bias: Option<(&CudaStorage, &Layout)>,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (x, w) = (view::<f32>(s1, l1, "x")?, view::<f32>(s2, l2, "weight")?);
    let (n, d) = (l1.shape().elem_count(), l2.shape().elem_count());
    let rows = rows_of("norm", n, d)?;
    let b = match bias {
        Some((s3, l3)) if l3.shape().elem_count() == d => Some(view::<f32>(s3, l3, "bias")?),
        Some((_, l3)) => {
            candle_core::bail!("fused CUDA layer norm: bias {:?} for weight {:?}", l3.dims(), l2.dims())
        }
        None => None,
    };
    // SAFETY: every element is written by the kernel.
    let y = unsafe { dev.alloc::<f32>(n)? };
    let (d32, eps32) = (d as i32, eps as f32);
    if rows > 0 {
        // SAFETY (both): the kernels' signatures; x and y hold rows × d, w and b hold d.
        match &b {
            Some(b) => launch!(dev, "layer_norm_f32", grid(rows, ROW_THREADS); &x, &w, b, &y, &d32, &eps32),
            None => launch!(dev, "rms_norm_f32", grid(rows, ROW_THREADS); &x, &w, &y, &d32, &eps32),
        }
    }
    Ok(output(y, dev, l1.shape().clone()))
}

/// The norms' backward on CUDA: `[dx | dw | db]` (layer norm, `grads` 2) or `[dx | dw]`
/// (RMS norm, `grads` 1) flattened, as the CPU ops; rows up to [`MAX_HIDDEN`] wide.
pub(crate) fn norm_bwd(
    eps: f64,
    grads: usize,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
    (s3, l3): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (x, w, dy) =
        (view::<f32>(s1, l1, "x")?, view::<f32>(s2, l2, "weight")?, view::<f32>(s3, l3, "grad")?);
    let (n, d) = (l1.shape().elem_count(), l2.shape().elem_count());
    let rows = rows_of("norm backward", n, d)?;
    if l3.shape().elem_count() != n || d > MAX_HIDDEN {
        candle_core::bail!(
            "fused CUDA norm backward: x {:?}, weight {:?}, grad {:?}",
            l1.dims(),
            l2.dims(),
            l3.dims()
        )
    }
    let name = if grads == 2 { "layer_norm_bwd_f32" } else { "rms_norm_bwd_f32" };
    let out = dev.alloc_zeros::<f32>(n + grads * d)?;
    let (rows32, d32, eps32, per) = (rows as i32, d as i32, eps as f32, ROWS_PER_BLOCK as i32);
    if rows > 0 {
        let blocks = rows.div_ceil(ROWS_PER_BLOCK as usize);
        // SAFETY: the kernel's signature; out holds rows × d + grads × d, the inputs as checked.
        launch!(dev, name, grid(blocks, ROW_THREADS); &x, &w, &dy, &out, &rows32, &d32, &eps32, &per);
    }
    Ok(output(out, dev, Shape::from(n + grads * d)))
}

/// `[w; b]`'s halves, each `[d]`, for the "add & norm" kernels.
fn weight_and_bias<'a>(
    s: &'a CudaStorage,
    l: &Layout,
    d: usize,
) -> candle_core::Result<(CudaView<'a, f32>, CudaView<'a, f32>)> {
    if l.shape().elem_count() != 2 * d || d > MAX_HIDDEN {
        candle_core::bail!("fused CUDA add & norm: [weight; bias] {:?} for rows of {d}", l.dims())
    }
    let wb = view::<f32>(s, l, "weight and bias")?;
    Ok((wb.slice(..d), wb.slice(d..)))
}

/// "Add & norm" forward on CUDA: `layer_norm(x + r)` with `[w; b]` stacked `[2, d]`.
pub(crate) fn add_norm_fwd(
    eps: f64,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
    (s3, l3): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (x, r) = (view::<f32>(s1, l1, "x")?, view::<f32>(s2, l2, "residual")?);
    let n = l1.shape().elem_count();
    let d = l1.dims().last().copied().unwrap_or(0);
    let rows = rows_of("add & norm", n, d)?;
    if l2.shape().elem_count() != n {
        candle_core::bail!("fused CUDA add & norm: residual {:?} for x {:?}", l2.dims(), l1.dims())
    }
    let (w, b) = weight_and_bias(s3, l3, d)?;
    // SAFETY: every element is written by the kernel (one block per row).
    let y = unsafe { dev.alloc::<f32>(n)? };
    let (d32, eps32) = (d as i32, eps as f32);
    if rows > 0 {
        // SAFETY: the kernel's signature; x, r and y hold rows × d, w and b hold d.
        launch!(dev, "add_layer_norm_f32", grid(rows, ROW_THREADS); &x, &r, &w, &b, &y, &d32, &eps32);
    }
    Ok(output(y, dev, l1.shape().clone()))
}

/// "Add & norm" backward on CUDA: `[ds | dw | db]` flattened, as the CPU op.
pub(crate) fn add_norm_bwd(
    eps: f64,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
    (s3, l3): (&CudaStorage, &Layout),
    (s4, l4): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (x, r, dy) =
        (view::<f32>(s1, l1, "x")?, view::<f32>(s2, l2, "residual")?, view::<f32>(s3, l3, "grad")?);
    let n = l1.shape().elem_count();
    let d = l1.dims().last().copied().unwrap_or(0);
    let rows = rows_of("add & norm backward", n, d)?;
    if l2.shape().elem_count() != n || l3.shape().elem_count() != n {
        candle_core::bail!(
            "fused CUDA add & norm backward: x {:?}, residual {:?}, grad {:?}",
            l1.dims(),
            l2.dims(),
            l3.dims()
        )
    }
    let (w, _) = weight_and_bias(s4, l4, d)?;
    let out = dev.alloc_zeros::<f32>(n + 2 * d)?;
    let (rows32, d32, eps32, per) = (rows as i32, d as i32, eps as f32, ROWS_PER_BLOCK as i32);
    if rows > 0 {
        let blocks = rows.div_ceil(ROWS_PER_BLOCK as usize);
        // SAFETY: the kernel's signature; out holds rows × d + 2d, x, r and dy rows × d, w d.
        launch!(dev, "add_layer_norm_bwd_f32", grid(blocks, ROW_THREADS);
            &x, &r, &w, &dy, &out, &rows32, &d32, &eps32, &per);
    }
    Ok(output(out, dev, Shape::from(n + 2 * d)))
}

/// The rotary embedding on CUDA (half-split layout; `inverse`: the backward's opposite
/// rotation): `x` `[.., len, d]`, tables `[len, d/2]`.
pub(crate) fn rope(
    inverse: bool,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
    (s3, l3): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (x, cos, sin) = (view::<f32>(s1, l1, "x")?, view::<f32>(s2, l2, "cos")?, view::<f32>(s3, l3, "sin")?);
    let dims = l1.dims();
    if dims.len() < 2 {
        candle_core::bail!("fused CUDA rope: x {dims:?} has no [len, d] dims")
    }
    let (d, len) = (dims[dims.len() - 1], dims[dims.len() - 2]);
    let n = l1.shape().elem_count();
    rows_of("rope", n, d.max(1))?;
    let want = len * (d / 2);
    if d % 2 != 0 || l2.shape().elem_count() != want || l3.shape().elem_count() != want {
        candle_core::bail!("fused CUDA rope: x {dims:?}, cos {:?}, sin {:?}", l2.dims(), l3.dims())
    }
    // SAFETY: every element is written by the kernel (each thread writes both of a pair).
    let y = unsafe { dev.alloc::<f32>(n)? };
    let (pairs, d32, len32, inv) = ((n / 2) as u64, d as i32, len as i32, i32::from(inverse));
    if n > 0 {
        // SAFETY: the kernel's signature; x and y hold n, the tables len × d/2.
        launch!(dev, "rope_f32", grid_stride(n / 2); &x, &cos, &sin, &y, &pairs, &d32, &len32, &inv);
    }
    Ok(output(y, dev, l1.shape().clone()))
}

/// The softmax's broadcast bias as the kernel reads it: start, and the element strides of the
/// layout padded to rank 4 (0 along broadcast dims). `None` above rank 4.
fn bias_strides(l: &Layout) -> Option<[i64; 5]> {
    let rank = l.dims().len();
    if rank > 4 || rank == 0 {
        return None;
    }
    let mut out = [l.start_offset() as i64, 0, 0, 0, 0];
    for (k, &st) in l.stride().iter().enumerate() {
        out[1 + 4 - rank + k] = if l.dims()[k] == 1 { 0 } else { st as i64 };
    }
    Some(out)
}

/// `softmax(x · scale + bias)` over the last dim on CUDA; `bias`, when given, is laid out
/// broadcast to `x`'s shape (rank ≤ 4).
pub(crate) fn softmax_fwd(
    scale: f64,
    (s1, l1): (&CudaStorage, &Layout),
    bias: Option<(&CudaStorage, &Layout)>,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let x = view::<f32>(s1, l1, "x")?;
    let dims = l1.dims();
    if dims.len() > 4 {
        candle_core::bail!("fused CUDA softmax: rank {} above 4", dims.len())
    }
    let k = dims.last().copied().unwrap_or(1);
    let n = l1.shape().elem_count();
    let rows = rows_of("softmax", n, k)?;
    // x's leading dims padded to [d0, d1, d2]; the kernel needs d1 and d2.
    let mut lead = [1usize; 3];
    for (slot, &d) in lead.iter_mut().rev().zip(dims[..dims.len().saturating_sub(1)].iter().rev()) {
        *slot = d;
    }
    let (has_bias, [start, s0, s1, s2, s3], bias) = match bias {
        None => (0i32, [0i64; 5], None),
        Some((sb, lb)) => {
            let strides = bias_strides(lb).filter(|_| lb.dims() == dims).ok_or_else(|| {
                candle_core::Error::Msg(format!("fused CUDA softmax: bias {:?} for x {dims:?}", lb.dims()))
            })?;
            (1, strides, Some(sb.as_cuda_slice::<f32>()?))
        }
    };
    // SAFETY: every element is written by the kernel.
    let y = unsafe { dev.alloc::<f32>(n)? };
    let (rows32, k32, scale32, d1, d2) =
        (rows as i32, k as i32, scale as f32, lead[1] as i32, lead[2] as i32);
    if rows > 0 {
        // SAFETY (both): the kernel's signature; x and y hold rows × k, and the bias offsets
        // stay inside its storage because its layout has x's shape (no bias: not read).
        match bias {
            Some(b) => launch!(dev, "softmax_f32", warp_per_row(rows);
                &x, b, &y, &rows32, &k32, &scale32, &has_bias, &d1, &d2, &start, &s0, &s1, &s2, &s3),
            None => launch!(dev, "softmax_f32", warp_per_row(rows);
                &x, &x, &y, &rows32, &k32, &scale32, &has_bias, &d1, &d2, &start, &s0, &s1, &s2, &s3),
        }
    }
    Ok(output(y, dev, l1.shape().clone()))
}

/// The softmax's backward on CUDA: `dx = scale · y · (dy - Σ dy·y)` per row.
pub(crate) fn softmax_bwd(
    scale: f64,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (y, dy) = (view::<f32>(s1, l1, "y")?, view::<f32>(s2, l2, "grad")?);
    let n = l1.shape().elem_count();
    let k = l1.dims().last().copied().unwrap_or(1);
    let rows = rows_of("softmax backward", n, k)?;
    if l2.shape().elem_count() != n {
        candle_core::bail!("fused CUDA softmax backward: grad {:?} for y {:?}", l2.dims(), l1.dims())
    }
    // SAFETY: every element is written by the kernel.
    let dx = unsafe { dev.alloc::<f32>(n)? };
    let (rows32, k32, scale32) = (rows as i32, k as i32, scale as f32);
    if rows > 0 {
        // SAFETY: the kernel's signature; y, dy and dx hold rows × k.
        launch!(dev, "softmax_bwd_f32", warp_per_row(rows); &y, &dy, &dx, &rows32, &k32, &scale32);
    }
    Ok(output(dx, dev, l1.shape().clone()))
}

/// `gelu(x + bias)` on CUDA (`kind` 0: erf, 1: tanh), `bias` `[last dim of x]`.
pub(crate) fn bias_gelu_fwd(
    kind: i32,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (x, b) = (view::<f32>(s1, l1, "x")?, view::<f32>(s2, l2, "bias")?);
    let (n, d) = (l1.shape().elem_count(), l2.shape().elem_count());
    rows_of("bias-GELU", n, d)?;
    // SAFETY: every element is written by the kernel.
    let y = unsafe { dev.alloc::<f32>(n)? };
    let (n64, d32) = (n as u64, d as i32);
    if n > 0 {
        // SAFETY: the kernel's signature; x and y hold n, b holds d.
        launch!(dev, "bias_gelu_f32", grid_stride(n); &x, &b, &y, &n64, &d32, &kind);
    }
    Ok(output(y, dev, l1.shape().clone()))
}

/// The bias-GELU backward on CUDA: `[dx | db]` flattened, as the CPU op.
pub(crate) fn bias_gelu_bwd(
    kind: i32,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
    (s3, l3): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (x, b, dy) = (view::<f32>(s1, l1, "x")?, view::<f32>(s2, l2, "bias")?, view::<f32>(s3, l3, "grad")?);
    let (n, d) = (l1.shape().elem_count(), l2.shape().elem_count());
    let rows = rows_of("bias-GELU backward", n, d)?;
    if l3.shape().elem_count() != n {
        candle_core::bail!("fused CUDA bias-GELU backward: grad {:?} for x {:?}", l3.dims(), l1.dims())
    }
    let out = dev.alloc_zeros::<f32>(n + d)?;
    let (rows32, d32, per) = (rows as i32, d as i32, GELU_ROWS_PER_BLOCK as i32);
    if rows > 0 {
        // Blocks (row chunk, column tile): each thread sums one column of db over its rows.
        let cfg = LaunchConfig {
            grid_dim: ((rows as u32).div_ceil(GELU_ROWS_PER_BLOCK), (d as u32).div_ceil(ROW_THREADS), 1),
            block_dim: (ROW_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the kernel's signature; x, dy hold rows × d, out rows × d + d, b holds d.
        launch!(dev, "bias_gelu_bwd_f32", cfg; &x, &b, &dy, &out, &rows32, &d32, &kind, &per);
    }
    Ok(output(out, dev, Shape::from(n + d)))
}

/// SwiGLU on CUDA: `silu(g) · u` over two same-sized tensors.
pub(crate) fn swiglu_fwd(
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (g, u) = (view::<f32>(s1, l1, "gate")?, view::<f32>(s2, l2, "up")?);
    let n = l1.shape().elem_count();
    if l2.shape().elem_count() != n {
        candle_core::bail!("fused CUDA SwiGLU: gate {:?}, up {:?}", l1.dims(), l2.dims())
    }
    // SAFETY: every element is written by the kernel.
    let y = unsafe { dev.alloc::<f32>(n)? };
    let n64 = n as u64;
    if n > 0 {
        // SAFETY: the kernel's signature; g, u and y hold n.
        launch!(dev, "swiglu_f32", grid_stride(n); &g, &u, &y, &n64);
    }
    Ok(output(y, dev, l1.shape().clone()))
}

/// The SwiGLU backward on CUDA: `[dg | du]` flattened, as the CPU op.
pub(crate) fn swiglu_bwd(
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
    (s3, l3): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (g, u, dy) = (view::<f32>(s1, l1, "gate")?, view::<f32>(s2, l2, "up")?, view::<f32>(s3, l3, "grad")?);
    let n = l1.shape().elem_count();
    if l2.shape().elem_count() != n || l3.shape().elem_count() != n {
        candle_core::bail!(
            "fused CUDA SwiGLU backward: gate {:?}, up {:?}, grad {:?}",
            l1.dims(),
            l2.dims(),
            l3.dims()
        )
    }
    // SAFETY: every element is written by the kernel (both halves).
    let out = unsafe { dev.alloc::<f32>(2 * n)? };
    let n64 = n as u64;
    if n > 0 {
        // SAFETY: the kernel's signature; g, u and dy hold n, out 2n.
        launch!(dev, "swiglu_bwd_f32", grid_stride(n); &g, &u, &dy, &out, &n64);
    }
    Ok(output(out, dev, Shape::from(2 * n)))
}

/// Rows and classes of `[n, k]` logits with `[n]` targets (and `[n]` upstream gradients).
fn cross_entropy_shape(logits: &Layout, rest: &[&Layout]) -> candle_core::Result<(usize, usize)> {
    let (rows, k) = logits.shape().dims2()?;
    if let Some(bad) = rest.iter().find(|l| l.shape().elem_count() != rows) {
        candle_core::bail!("fused CUDA cross-entropy: {:?} for logits {:?}", bad.dims(), logits.dims())
    }
    rows_of("cross-entropy", rows * k, k)?;
    Ok((rows, k))
}

/// One block per row of a cross-entropy kernel: a warp for a few classes, up to 512 threads
/// for a vocabulary.
fn cross_entropy_grid(rows: usize, k: usize) -> LaunchConfig {
    grid(rows, (k.div_ceil(32) * 32).clamp(32, 512) as u32)
}

/// Per-row cross-entropy on CUDA: `[n]` losses `logsumexp(x_r) - x_r[t_r]` of `[n, k]` f32
/// logits and `[n]` u32 targets (NaN for a target outside `0..k`).
pub(crate) fn cross_entropy_rows(
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (x, t) = (view::<f32>(s1, l1, "logits")?, view::<u32>(s2, l2, "targets")?);
    let (rows, k) = cross_entropy_shape(l1, &[l2])?;
    // SAFETY: every element is written by the kernel.
    let loss = unsafe { dev.alloc::<f32>(rows)? };
    let k32 = k as i32;
    if rows > 0 {
        // SAFETY: the kernel's signature; x holds rows × k, t and loss hold rows.
        launch!(dev, "cross_entropy_f32", cross_entropy_grid(rows, k); &x, &t, &loss, &k32);
    }
    Ok(output(loss, dev, Shape::from(rows)))
}

/// The per-row cross-entropy's backward on CUDA: `(softmax(x_r) - onehot(t_r)) · g_r`.
pub(crate) fn cross_entropy_rows_bwd(
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
    (s3, l3): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (x, t, g) =
        (view::<f32>(s1, l1, "logits")?, view::<u32>(s2, l2, "targets")?, view::<f32>(s3, l3, "grad")?);
    let (rows, k) = cross_entropy_shape(l1, &[l2, l3])?;
    // SAFETY: every element is written by the kernel.
    let dx = unsafe { dev.alloc::<f32>(rows * k)? };
    let k32 = k as i32;
    if rows > 0 {
        // SAFETY: the kernel's signature; x and dx hold rows × k, t and g hold rows.
        launch!(dev, "cross_entropy_bwd_f32", cross_entropy_grid(rows, k); &x, &t, &g, &dx, &k32);
    }
    Ok(output(dx, dev, l1.shape().clone()))
}

/// The Adam(W) update of one f32 parameter on CUDA: new `(parameter, m, v)` tensors, or
/// `None` when a tensor is not a contiguous f32 CUDA tensor of the parameter's size.
pub(crate) fn adam_update(
    p: &Tensor,
    g: &Tensor,
    moments: Option<(&Tensor, &Tensor)>,
    s: &AdamStep,
) -> crate::error::Result<Option<(Tensor, Tensor, Tensor)>> {
    let Device::Cuda(dev) = p.device() else { return Ok(None) };
    let n = p.elem_count();
    let ok = |t: &Tensor| t.dtype() == candle_core::DType::F32 && t.elem_count() == n && t.device().is_cuda();
    if !ok(p) || !ok(g) || moments.is_some_and(|(m, v)| !ok(m) || !ok(v)) || n == 0 || n > u32::MAX as usize {
        return Ok(None);
    }
    let (m, v) = moments.unwrap_or((p, p)); // not read on the first update
    let guards = [p, g, m, v].map(|t| t.storage_and_layout());
    let mut views = Vec::with_capacity(4);
    for (storage, layout) in &guards {
        let Storage::Cuda(cs) = &**storage else { return Ok(None) };
        let Some((start, end)) = layout.contiguous_offsets() else { return Ok(None) };
        views.push(cs.as_cuda_slice::<f32>()?.slice(start..end));
    }
    // SAFETY: every element of the three outputs is written by the kernel.
    let (np, nm, nv) = unsafe { (dev.alloc::<f32>(n)?, dev.alloc::<f32>(n)?, dev.alloc::<f32>(n)?) };
    let mode: i32 = if s.decoupled {
        1
    } else if s.weight_decay > 0.0 {
        2
    } else {
        0
    };
    let scalars = [
        s.lr,
        s.beta1,
        s.beta2,
        1.0 - s.beta1,
        1.0 - s.beta2,
        s.eps,
        1.0 - s.lr * s.weight_decay,
        s.weight_decay,
    ]
    .map(|x| x as f32);
    let corr1 = (1.0 / (1.0 - s.beta1.powi(s.t))) as f32;
    let corr2 = (1.0 / (1.0 - s.beta2.powi(s.t))) as f32;
    let first = i32::from(moments.is_none());
    let n32 = n as u32;
    let [lr, b1, b2, one_b1, one_b2, eps, decay, wd] = &scalars;
    let [pv, gv, mv, vv] = &views[..] else { unreachable!("four views") };
    // SAFETY: the kernel's signature; all seven buffers hold n f32.
    launch!(dev, "adam_f32", LaunchConfig::for_num_elems(n32);
        &n32, pv, gv, mv, vv, &np, &nm, &nv, lr, b1, b2, one_b1, one_b2, eps, decay, wd, &mode, &corr1, &corr2, &first);
    drop(views);
    drop(guards);
    super::count_call();
    let wrap = |slice| {
        let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(slice, dev.clone()));
        Tensor::from_storage(storage, p.shape().clone(), BackpropOp::none(), false)
    };
    Ok(Some((wrap(np), wrap(nm), wrap(nv))))
}

/// Dropout's scaled keep-mask computed on the device (see `layers::dropout::keep_mask`).
pub(crate) fn dropout_mask(
    seed: u64,
    threshold: u32,
    scale: f32,
    shape: &Shape,
    device: &Device,
) -> crate::error::Result<Tensor> {
    let Device::Cuda(dev) = device else { crate::error::bail!("dropout_mask_cuda needs a CUDA device") };
    let n = shape.elem_count();
    // SAFETY: every element is written by the kernel.
    let out = unsafe { dev.alloc::<f32>(n)? };
    let n64 = n as u64;
    if n > 0 {
        // SAFETY: the kernel's signature; out holds n f32.
        launch!(dev, "dropout_mask_f32", grid_stride(n); &n64, &seed, &threshold, &scale, &out);
    }
    let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(out, dev.clone()));
    Ok(Tensor::from_storage(storage, shape.clone(), BackpropOp::none(), false))
}
