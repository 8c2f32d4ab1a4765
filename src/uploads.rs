//! A process-wide count of host→device copies made by tunelab's own upload paths, so a
//! test can check that training on a GPU keeps the weights resident: after the first
//! `fit`, `eval`, `plot` and a second `fit` upload no weights or optimizer state.
//!
//! Counted: [`Params::to_device`](crate::model::params::Params::to_device) and a snapshot
//! restored onto another device (weights), `Optimizer::to_device` (optimizer state), and
//! data moved with `device` or encoded into a device matrix (data). Only copies from the
//! CPU to another device count; CPU → CPU is free and is not counted. What this does not
//! see (a copy inside candle, a tensor built on the device by other code) a test checks
//! another way: the model's `Var`s keep their tensor ids and their device.

use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{Device, Tensor};

/// What an upload carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// Model parameters.
    Weights = 0,
    /// Optimizer moments and buffers.
    OptimizerState = 1,
    /// Data set matrices (inputs, targets, token ids, labels).
    Data = 2,
}

static COUNTS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// Tensors of kind `what` copied from the host to a device so far in this process.
pub fn count(what: Upload) -> u64 {
    COUNTS[what as usize].load(Ordering::Relaxed)
}

/// Records `tensors` tensors of kind `what` built from host memory on `device` (nothing
/// when `device` is the CPU).
pub(crate) fn note(what: Upload, device: &Device, tensors: u64) {
    if !device.is_cpu() {
        COUNTS[what as usize].fetch_add(tensors, Ordering::Relaxed);
    }
}

/// `t.to_device(device)`, counted when it copies host memory to a device.
pub(crate) fn to_device(t: &Tensor, device: &Device, what: Upload) -> candle_core::Result<Tensor> {
    if t.device().is_cpu() {
        note(what, device, 1);
    }
    t.to_device(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_to_cpu_is_not_an_upload() {
        let before = count(Upload::Data);
        let t = Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap();
        let moved = to_device(&t, &Device::Cpu, Upload::Data).unwrap();
        note(Upload::Data, &Device::Cpu, 2);
        assert_eq!(moved.to_vec1::<f32>().unwrap(), [1.0, 2.0]);
        // Other tests in this process may upload nothing either: the CPU build has no device.
        assert_eq!(count(Upload::Data), before);
    }
}
