//! Device memory as the CUDA driver counts it: the bytes in use now and the peak since a
//! reset, so `fit` can report what its last step needed and `tunelab bench suite` the
//! peak of its timed steps.
//!
//! How candle allocates decides how exact this is. candle 0.11 allocates every tensor
//! through cudarc's `CudaStream::alloc`, which calls `cuMemAllocAsync` — memory from the
//! device's default memory pool — whenever the device supports memory pools (every GPU
//! since Pascal with a driver from CUDA 11.2 on). The pool counts the bytes handed out
//! (`CU_MEMPOOL_ATTR_USED_MEM_CURRENT`) and their high-water mark
//! (`CU_MEMPOOL_ATTR_USED_MEM_HIGH`, which may be set to 0 to restart it): an exact peak of
//! tensor memory, updated by the driver at every allocation. Memory taken outside the pool
//! — cuBLAS's workspace, the CUDA context itself, kernels' modules — is not in it.
//!
//! Without memory pools cudarc falls back to `cuMemAlloc`, and so does this module: it
//! reads `cuMemGetInfo` (total − free, which counts everything on the device, other
//! processes included) and keeps the largest value it has sampled since the reset, which
//! is a lower bound of the true peak ([`Reading::exact`] says which one was read).
//!
//! On the CPU, or in a build without the `cuda` feature, every function returns `None`.

use candle_core::Device;

/// One reading of a device's memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Bytes in use now.
    pub in_use: u64,
    /// The most bytes in use at once since the last [`reset_peak`].
    pub peak: u64,
    /// `true` when read from the default memory pool (an exact peak of tensor memory);
    /// `false` when sampled from `cuMemGetInfo` (a lower bound of the peak, counting
    /// everything on the device).
    pub exact: bool,
}

/// Reads the memory of `device` now: in use, and the peak since the last [`reset_peak`].
/// Waits for the device's stream first, so work already queued is counted. `None` on the
/// CPU, without the `cuda` feature, or if the driver does not answer.
pub fn read(device: &Device) -> Option<Reading> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => cuda::read(d),
        _ => None,
    }
}

/// Bytes of `device` in use now (see [`read`]).
pub fn in_use(device: &Device) -> Option<u64> {
    read(device).map(|r| r.in_use)
}

/// The most bytes of `device` in use at once since the last [`reset_peak`] (see [`read`]).
pub fn peak(device: &Device) -> Option<u64> {
    read(device).map(|r| r.peak)
}

/// Restarts the peak of `device` at what is in use now, after waiting for its stream.
/// Returns whether a peak is kept for this device (`false` on the CPU).
pub fn reset_peak(device: &Device) -> bool {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => cuda::reset_peak(d),
        _ => false,
    }
}

/// Bytes of memory `device` has in all, as the driver reports it. `None` on the CPU,
/// without the `cuda` feature, or if the driver does not answer.
pub fn total(device: &Device) -> Option<u64> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => cuda::total(d),
        _ => None,
    }
}

/// Bytes as MiB (2^20 bytes), for reports.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::sync::atomic::{AtomicU64, Ordering};

    use candle_core::cuda_backend::cudarc::driver::{sys, CudaContext};
    use candle_core::CudaDevice;

    use super::Reading;

    /// The largest `cuMemGetInfo` value sampled since the last reset (the fallback).
    static SAMPLED_PEAK: AtomicU64 = AtomicU64::new(0);

    /// The device's default memory pool, the one `cuMemAllocAsync` draws from; `None`
    /// when cudarc allocates with `cuMemAlloc` instead.
    fn pool(ctx: &CudaContext) -> Option<sys::CUmemoryPool> {
        if !ctx.has_async_alloc() {
            return None;
        }
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        // SAFETY: `pool` is a valid out-pointer; the device handle comes from a live context.
        unsafe { sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) }.result().ok()?;
        Some(pool)
    }

    fn attribute(pool: sys::CUmemoryPool, attr: sys::CUmemPool_attribute) -> Option<u64> {
        let mut value: u64 = 0;
        // SAFETY: the USED_MEM_* attributes are `cuuint64_t`, written through the pointer.
        unsafe { sys::cuMemPoolGetAttribute(pool, attr, &mut value as *mut u64 as *mut _) }.result().ok()?;
        Some(value)
    }

    /// total − free from `cuMemGetInfo`, folded into the sampled peak.
    fn sampled() -> Option<u64> {
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: two valid out-pointers; the caller bound the context to this thread.
        unsafe { sys::cuMemGetInfo_v2(&mut free, &mut total) }.result().ok()?;
        let used = total.saturating_sub(free) as u64;
        SAMPLED_PEAK.fetch_max(used, Ordering::Relaxed);
        Some(used)
    }

    /// Binds the device's context to this thread and waits for its stream.
    fn settle(d: &CudaDevice) -> Option<std::sync::Arc<CudaContext>> {
        let stream = d.cuda_stream();
        let ctx = stream.context().clone();
        ctx.bind_to_thread().ok()?;
        stream.synchronize().ok()?;
        Some(ctx)
    }

    pub(super) fn read(d: &CudaDevice) -> Option<Reading> {
        let ctx = settle(d)?;
        if let Some(pool) = pool(&ctx) {
            use sys::CUmemPool_attribute::*;
            let in_use = attribute(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT)?;
            let peak = attribute(pool, CU_MEMPOOL_ATTR_USED_MEM_HIGH)?;
            return Some(Reading { in_use, peak: peak.max(in_use), exact: true });
        }
        let in_use = sampled()?;
        Some(Reading { in_use, peak: SAMPLED_PEAK.load(Ordering::Relaxed), exact: false })
    }

    pub(super) fn total(d: &CudaDevice) -> Option<u64> {
        d.cuda_stream().context().bind_to_thread().ok()?;
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: two valid out-pointers; the context was bound to this thread above.
        unsafe { sys::cuMemGetInfo_v2(&mut free, &mut total) }.result().ok()?;
        Some(total as u64)
    }

    pub(super) fn reset_peak(d: &CudaDevice) -> bool {
        let Some(ctx) = settle(d) else { return false };
        if let Some(pool) = pool(&ctx) {
            let mut zero: u64 = 0;
            // SAFETY: USED_MEM_HIGH may only be set to 0, passed as a `cuuint64_t`; the
            // driver then restarts it at the current use.
            let set = unsafe {
                sys::cuMemPoolSetAttribute(
                    pool,
                    sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
                    &mut zero as *mut u64 as *mut _,
                )
            };
            return set.result().is_ok();
        }
        SAMPLED_PEAK.store(0, Ordering::Relaxed);
        sampled().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_has_no_device_memory_reading() {
        assert_eq!(read(&Device::Cpu), None);
        assert_eq!(peak(&Device::Cpu), None);
        assert_eq!(in_use(&Device::Cpu), None);
        assert!(!reset_peak(&Device::Cpu));
        assert_eq!(mib(3 << 20), 3.0);
    }
}
