//! The CUDA versions of the fused kernels (a `--features cuda` build): the AdamW update and
//! layer norm forward and backward, for contiguous f32 tensors.
//!
//! The CUDA C source below is compiled once per process with NVRTC at first use (no nvcc
//! at build time, so the CPU build and CI are unaffected) and loaded into each device's
//! module cache under [`MODULE`]. Each kernel does the arithmetic of its CPU twin in
//! `adamw.rs` / `layer_norm.rs`, in the same order, so the two agree to rounding (fused
//! multiply-adds aside); tests/gpu.rs checks them against the composite ops on the GPU.

use std::sync::OnceLock;

use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::cudarc::nvrtc;
use candle_core::cuda_backend::WrapErr;
use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, Device, Layout, Shape, Storage, Tensor};

use super::AdamStep;

/// The name the compiled module is cached under in each `CudaDevice`.
const MODULE: &str = "tunelab_kernels";

/// Threads per block of the row kernels (layer norm): 8 warps.
const ROW_THREADS: u32 = 256;
/// Columns each thread of the layer-norm backward accumulates `dw`/`db` for, so rows up to
/// `ROW_THREADS · MAX_COLS` wide run fused; wider ones take the composite op.
const MAX_COLS: usize = 8;
/// The widest rows the layer-norm kernels take.
pub(crate) const MAX_HIDDEN: usize = ROW_THREADS as usize * MAX_COLS;
/// Rows one block of the layer-norm backward handles (its `dw`/`db` partial sums are added
/// to the result once per block).
const ROWS_PER_BLOCK: u32 = 16;

const SOURCE: &str = r#"
// Sum of v over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ float block_sum(float v, float* shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    const int warps = blockDim.x >> 5;
    v = (int)threadIdx.x < warps ? shared[threadIdx.x] : 0.0f;
    if (warp == 0) {
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
        if (lane == 0) shared[32] = v;
    }
    __syncthreads();
    return shared[32];
}

// Mean and 1/sqrt(var + eps) of one row, two passes (as the CPU kernel).
__device__ void moments(const float* x, int d, float eps, float* shared, float* mean, float* rstd) {
    float s = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) s += x[i];
    const float m = block_sum(s, shared) / (float)d;
    float q = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) { const float c = x[i] - m; q += c * c; }
    *mean = m;
    *rstd = 1.0f / sqrtf(block_sum(q, shared) / (float)d + eps);
}

// One block per row: y = (x - mean) * rstd * w + b.
extern "C" __global__ void layer_norm_f32(const float* x, const float* w, const float* b, float* y,
                                          const int d, const float eps) {
    __shared__ float shared[33];
    const size_t row = blockIdx.x;
    const float* xr = x + row * d;
    float* yr = y + row * d;
    float mean, rstd;
    moments(xr, d, eps, shared, &mean, &rstd);
    for (int i = threadIdx.x; i < d; i += blockDim.x) yr[i] = (xr[i] - mean) * rstd * w[i] + b[i];
}

// out = [dx | dw | db] (dw, db zeroed by the caller). Each block takes rows_per_block rows,
// keeps its partial dw/db per column in registers and adds them once.
extern "C" __global__ void layer_norm_bwd_f32(const float* x, const float* w, const float* dy, float* out,
                                              const int rows, const int d, const float eps,
                                              const int rows_per_block) {
    __shared__ float shared[33];
    float* dw = out + (size_t)rows * d;
    float* db = dw + d;
    float aw[8], ab[8];
    for (int k = 0; k < 8; ++k) { aw[k] = 0.0f; ab[k] = 0.0f; }
    const int first = blockIdx.x * rows_per_block;
    const int last = min(rows, first + rows_per_block);
    for (int r = first; r < last; ++r) {
        const float* xr = x + (size_t)r * d;
        const float* gr = dy + (size_t)r * d;
        float* dxr = out + (size_t)r * d;
        float mean, rstd;
        moments(xr, d, eps, shared, &mean, &rstd);
        float sg = 0.0f, sgx = 0.0f;
        for (int i = threadIdx.x; i < d; i += blockDim.x) {
            const float h = (xr[i] - mean) * rstd;
            const float g = gr[i] * w[i];
            sg += g;
            sgx += g * h;
        }
        const float mean_g = block_sum(sg, shared) / (float)d;
        const float mean_gx = block_sum(sgx, shared) / (float)d;
        int k = 0;
        for (int i = threadIdx.x; i < d; i += blockDim.x, ++k) {
            const float h = (xr[i] - mean) * rstd;
            dxr[i] = rstd * (gr[i] * w[i] - mean_g - h * mean_gx);
            aw[k] += gr[i] * h;
            ab[k] += gr[i];
        }
    }
    int k = 0;
    for (int i = threadIdx.x; i < d; i += blockDim.x, ++k) {
        atomicAdd(dw + i, aw[k]);
        atomicAdd(db + i, ab[k]);
    }
}

// Dropout's scaled keep-mask: SplitMix64(seed ^ i·golden), kept when its top 32 bits reach
// threshold (layers/dropout.rs computes the same bits on the CPU).
extern "C" __global__ void dropout_mask_f32(const unsigned long long n, const unsigned long long seed,
                                            const unsigned int threshold, const float scale, float* out) {
    const unsigned long long stride = (unsigned long long)blockDim.x * gridDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        unsigned long long z = seed ^ (i * 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z = z ^ (z >> 31);
        out[i] = (unsigned int)(z >> 32) >= threshold ? scale : 0.0f;
    }
}

// Adam / AdamW: new parameter and moments (mode 1: decoupled decay, 2: L2 into the gradient).
extern "C" __global__ void adam_f32(const unsigned int n, const float* p, const float* g, const float* m,
                                    const float* v, float* np, float* nm, float* nv, const float lr,
                                    const float b1, const float b2, const float one_b1, const float one_b2,
                                    const float eps, const float decay, const float wd, const int mode,
                                    const float corr1, const float corr2, const int first) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        float pi = p[i], gi = g[i];
        if (mode == 1) pi = pi * decay;
        else if (mode == 2) gi = gi + pi * wd;
        const float mi = (first ? 0.0f : m[i]) * b1 + gi * one_b1;
        const float vi = (first ? 0.0f : v[i]) * b2 + gi * gi * one_b2;
        const float denom = sqrtf(vi * corr2) + eps;
        np[i] = pi - (mi * corr1) / denom * lr;
        nm[i] = mi;
        nv[i] = vi;
    }
}
"#;

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

/// `x`'s f32 elements from its layout's start, checked contiguous.
fn contiguous_f32<'a>(
    s: &'a CudaStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, f32>> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("fused CUDA kernel: {what} is not contiguous")))?;
    Ok(s.as_cuda_slice::<f32>()?.slice(start..end))
}

/// Layer norm forward on CUDA (`x` `[rows, d]` flattened, `w`, `b` `[d]`).
pub(crate) fn layer_norm_fwd(
    eps: f64,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
    (s3, l3): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (x, w, b) =
        (contiguous_f32(s1, l1, "x")?, contiguous_f32(s2, l2, "weight")?, contiguous_f32(s3, l3, "bias")?);
    let d = l2.shape().elem_count();
    let n = l1.shape().elem_count();
    if d == 0 || n % d != 0 || l3.shape().elem_count() != d {
        candle_core::bail!(
            "fused CUDA layer norm: x {:?}, weight {:?}, bias {:?}",
            l1.dims(),
            l2.dims(),
            l3.dims()
        )
    }
    let rows = (n / d) as u32;
    // SAFETY: every element is written by the kernel.
    let y = unsafe { dev.alloc::<f32>(n)? };
    let f = dev.get_or_load_custom_func("layer_norm_f32", MODULE, ptx()?)?;
    let mut launch = f.builder();
    let (d32, eps32) = (d as i32, eps as f32);
    launch.arg(&x).arg(&w).arg(&b).arg(&y).arg(&d32).arg(&eps32);
    let cfg = LaunchConfig { grid_dim: (rows, 1, 1), block_dim: (ROW_THREADS, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: the arguments match the kernel's signature; sizes were checked above.
    unsafe { launch.launch(cfg) }.w()?;
    Ok((CudaStorage::wrap_cuda_slice(y, dev.clone()), l1.shape().clone()))
}

/// Layer norm backward on CUDA: `[dx | dw | db]` flattened, as the CPU op.
pub(crate) fn layer_norm_bwd(
    eps: f64,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
    (s3, l3): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (x, w, dy) =
        (contiguous_f32(s1, l1, "x")?, contiguous_f32(s2, l2, "weight")?, contiguous_f32(s3, l3, "grad")?);
    let (n, d) = (l1.shape().elem_count(), l2.shape().elem_count());
    if d == 0 || n % d != 0 || l3.shape().elem_count() != n || d > MAX_HIDDEN {
        candle_core::bail!(
            "fused CUDA layer-norm backward: x {:?}, weight {:?}, grad {:?}",
            l1.dims(),
            l2.dims(),
            l3.dims()
        )
    }
    let rows = (n / d) as u32;
    let out = dev.alloc_zeros::<f32>(n + 2 * d)?;
    let f = dev.get_or_load_custom_func("layer_norm_bwd_f32", MODULE, ptx()?)?;
    let mut launch = f.builder();
    let (rows32, d32, eps32, per) = (rows as i32, d as i32, eps as f32, ROWS_PER_BLOCK as i32);
    launch.arg(&x).arg(&w).arg(&dy).arg(&out).arg(&rows32).arg(&d32).arg(&eps32).arg(&per);
    let cfg = LaunchConfig {
        grid_dim: (rows.div_ceil(ROWS_PER_BLOCK), 1, 1),
        block_dim: (ROW_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: the arguments match the kernel's signature; sizes were checked above.
    unsafe { launch.launch(cfg) }.w()?;
    Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), Shape::from(n + 2 * d)))
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
    let f = dev.get_or_load_custom_func("adam_f32", MODULE, ptx()?)?;
    let mut launch = f.builder();
    launch.arg(&n32);
    for view in &views {
        launch.arg(view);
    }
    launch.arg(&np).arg(&nm).arg(&nv);
    for x in &scalars {
        launch.arg(x);
    }
    launch.arg(&mode).arg(&corr1).arg(&corr2).arg(&first);
    // SAFETY: the arguments match the kernel's signature; all buffers hold n f32.
    unsafe { launch.launch(LaunchConfig::for_num_elems(n32)) }.w()?;
    drop(launch);
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
    if n > 0 {
        let f = dev.get_or_load_custom_func("dropout_mask_f32", MODULE, ptx()?)?;
        let mut launch = f.builder();
        let n64 = n as u64;
        launch.arg(&n64).arg(&seed).arg(&threshold).arg(&scale).arg(&out);
        let blocks = (n.div_ceil(256)).min(65_535 * 16) as u32;
        let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: the arguments match the kernel's signature; out holds n f32.
        unsafe { launch.launch(cfg) }.w()?;
    }
    let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(out, dev.clone()));
    Ok(Tensor::from_storage(storage, shape.clone(), BackpropOp::none(), false))
}
