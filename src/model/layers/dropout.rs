//! Dropout with masks that depend only on a seed: the same seed and step give the same
//! masks on any run, so a resumed fit repeats an uninterrupted one exactly.
//!
//! On the CPU the mask's elements come one after another from the pass's generator. On a
//! GPU that would mean drawing every element on the host and uploading the mask each step
//! (760 MB per BERT-base step), so there each mask is counter-based instead ([`keep_mask`]):
//! element `i` of a mask with seed `s` is kept when the top 32 bits of SplitMix64(`s`, `i`)
//! reach `p·2³²`, computed on the device by one kernel (`kernels::cuda`). The two devices
//! therefore draw different (equally distributed) masks from the same seed.

use candle_core::{DType, Device, Shape, Tensor};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::error::Result;

/// The source of dropout masks for one forward pass (or none, when evaluating).
pub struct Dropout {
    rng: Option<SmallRng>,
}

impl Dropout {
    /// Dropout for a training step, seeded by `seed` (the fit derives it from the session
    /// seed and the step number).
    pub fn seeded(seed: u64) -> Dropout {
        Dropout { rng: Some(SmallRng::seed_from_u64(seed)) }
    }

    /// No dropout (evaluation).
    pub fn disabled() -> Dropout {
        Dropout { rng: None }
    }

    /// A fresh seed drawn from this pass's generator (for other per-step randomness, such as
    /// masked-LM masking); `None` when evaluating.
    pub fn next_seed(&mut self) -> Option<u64> {
        self.rng.as_mut().map(|r| r.random())
    }

    /// Whether masks are drawn (training).
    pub fn enabled(&self) -> bool {
        self.rng.is_some()
    }

    /// Zeroes each element of `x` with probability `p` and scales the rest by `1/(1-p)`.
    pub fn apply(&mut self, x: &Tensor, p: f64) -> Result<Tensor> {
        match self.keep_mask(x.shape(), p, x.dtype(), x.device())? {
            Some(mask) => crate::model::kernels::mul_mask(x, &mask),
            None => Ok(x.clone()),
        }
    }

    /// The mask [`apply`](Self::apply) would multiply a tensor of `shape` by: 0 with
    /// probability `p`, else `1/(1-p)`, as `dtype` on `device`; `None` when evaluating or
    /// `p` is 0. Draws what `apply` draws, so a kernel that applies the mask itself (fused
    /// attention) sees the same masks.
    pub fn keep_mask(
        &mut self,
        shape: &Shape,
        p: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Option<Tensor>> {
        let Some(rng) = self.rng.as_mut() else { return Ok(None) };
        if p <= 0.0 {
            return Ok(None);
        }
        if !device.is_cpu() {
            return Ok(Some(keep_mask(rng.random(), p, shape, device)?.to_dtype(dtype)?));
        }
        let threshold = (p * u32::MAX as f64) as u32;
        let scale = (1.0 / (1.0 - p)) as f32;
        let mask: Vec<f32> = (0..shape.elem_count())
            .map(|_| if rng.random::<u32>() >= threshold { scale } else { 0.0 })
            .collect();
        Ok(Some(Tensor::from_vec(mask, shape, &Device::Cpu)?.to_dtype(dtype)?))
    }
}

/// The counter-based scaled keep-mask of dropout probability `p` (f32, on `device`): element
/// `i` is `1/(1-p)` when the top 32 bits of `step_seed(seed, i)` are at least `p·2³²`, else 0.
/// Built on the device by a kernel on CUDA; on the CPU (the reference the GPU test compares
/// the kernel with) computed here.
pub fn keep_mask(seed: u64, p: f64, shape: &Shape, device: &Device) -> Result<Tensor> {
    let threshold = (p * u32::MAX as f64) as u32;
    let scale = (1.0 / (1.0 - p)) as f32;
    #[cfg(feature = "cuda")]
    if device.is_cuda() {
        return crate::model::kernels::dropout_mask_cuda(seed, threshold, scale, shape, device);
    }
    let mask: Vec<f32> = (0..shape.elem_count() as u64)
        .map(|i| if (step_seed(seed, i) >> 32) as u32 >= threshold { scale } else { 0.0 })
        .collect();
    Ok(Tensor::from_vec(mask, shape, &Device::Cpu)?.to_device(device)?)
}

/// Mixes a seed and a step into a new seed (SplitMix64).
pub fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[test]
    fn masks_are_reproducible_and_unbiased() {
        let x = Tensor::ones(10_000, DType::F32, &Device::Cpu).unwrap();
        let a = Dropout::seeded(7).apply(&x, 0.1).unwrap().to_vec1::<f32>().unwrap();
        let b = Dropout::seeded(7).apply(&x, 0.1).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b);
        let zeros = a.iter().filter(|v| **v == 0.0).count();
        assert!((800..1200).contains(&zeros), "{zeros} of 10000 dropped at p=0.1");
        let mean: f32 = a.iter().sum::<f32>() / a.len() as f32;
        assert!((mean - 1.0).abs() < 0.03, "inverted dropout keeps the mean: {mean}");
        assert_eq!(Dropout::disabled().apply(&x, 0.5).unwrap().to_vec1::<f32>().unwrap(), vec![1.0; 10_000]);
        assert_ne!(step_seed(1, 2), step_seed(1, 3));
    }
}
