//! Mixed precision: the dtype a forward pass computes in, and the loss scale that keeps f16
//! gradients from underflowing.
//!
//! The weights stay f32 ("master weights") and the optimizer updates them in f32; a forward
//! pass casts each weight to the compute dtype as it reads it (`Params::tensor`), so the
//! matrix products and activations are bf16/f16 while norms, softmax and losses upcast to
//! f32 inside. The cast is an ordinary graph op, so each gradient comes back f32.
//!
//! bf16 has f32's exponent range and needs nothing more. f16 does not: small gradients
//! flush to zero. [`LossScaler`] multiplies the loss by a scale before backward and divides
//! the gradients by it after; a step whose gradients overflow is skipped and the scale
//! halved, and after [`GROWTH_INTERVAL`] good steps in a row it doubles (PyTorch's
//! `GradScaler` policy).

use std::sync::{Arc, Mutex};

use candle_core::DType;

/// The compute precision of forward and backward passes (`precision`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// Everything f32 (the default).
    #[default]
    F32,
    /// bf16 compute, f32 master weights.
    Bf16,
    /// f16 compute, f32 master weights, dynamic loss scaling.
    F16,
}

impl Precision {
    /// The precision called `name` (`f32`, `bf16`, `f16`; `fp32`/`fp16`/`float16`… too).
    pub fn parse(name: &str) -> Option<Precision> {
        match name.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Some(Precision::F32),
            "bf16" | "bfloat16" => Some(Precision::Bf16),
            "f16" | "fp16" | "float16" | "half" => Some(Precision::F16),
            _ => None,
        }
    }

    /// Its name as the language writes it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// The dtype forward passes compute in.
    pub fn compute(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }

    /// Whether training needs loss scaling.
    pub fn scales_loss(self) -> bool {
        self == Precision::F16
    }
}

/// The first loss scale (2^16, as PyTorch's `GradScaler`).
pub const INITIAL_SCALE: f64 = 65536.0;
/// Good steps in a row after which the scale doubles.
pub const GROWTH_INTERVAL: u32 = 2000;

/// Dynamic loss scaling for f16 training, shared between the session (which keeps it from
/// fit to fit) and the update step (which reads and adjusts it).
#[derive(Clone, Debug)]
pub struct LossScaler(Arc<Mutex<ScaleState>>);

#[derive(Debug)]
struct ScaleState {
    scale: f64,
    good_steps: u32,
    skipped: u64,
}

impl Default for LossScaler {
    fn default() -> LossScaler {
        LossScaler(Arc::new(Mutex::new(ScaleState { scale: INITIAL_SCALE, good_steps: 0, skipped: 0 })))
    }
}

impl LossScaler {
    fn state(&self) -> std::sync::MutexGuard<'_, ScaleState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The scale the next step multiplies its loss by.
    pub fn scale(&self) -> f64 {
        self.state().scale
    }

    /// Steps skipped so far because their scaled gradients overflowed.
    pub fn skipped(&self) -> u64 {
        self.state().skipped
    }

    /// Records a step whose gradients were finite: after [`GROWTH_INTERVAL`] of them in a
    /// row the scale doubles.
    pub fn good_step(&self) {
        let mut s = self.state();
        s.good_steps += 1;
        if s.good_steps >= GROWTH_INTERVAL {
            s.good_steps = 0;
            s.scale = (s.scale * 2.0).min(f64::from(f32::MAX) / 2.0);
        }
    }

    /// Records a step whose scaled gradients overflowed (it was skipped): the scale
    /// halves. Returns `false` when the scale has fallen so low that the overflow cannot be
    /// the scale's fault (the loss itself diverges).
    pub fn overflowed(&self) -> bool {
        let mut s = self.state();
        s.good_steps = 0;
        s.skipped += 1;
        s.scale /= 2.0;
        s.scale >= 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in [Precision::F32, Precision::Bf16, Precision::F16] {
            assert_eq!(Precision::parse(p.name()), Some(p));
        }
        assert_eq!(Precision::parse("FP16"), Some(Precision::F16));
        assert_eq!(Precision::parse("int8"), None);
    }

    #[test]
    fn the_scale_halves_on_overflow_and_doubles_after_a_run_of_good_steps() {
        let s = LossScaler::default();
        assert!(s.overflowed());
        assert_eq!(s.scale(), INITIAL_SCALE / 2.0);
        for _ in 0..GROWTH_INTERVAL - 1 {
            s.good_step();
        }
        assert_eq!(s.scale(), INITIAL_SCALE / 2.0);
        s.good_step();
        assert_eq!(s.scale(), INITIAL_SCALE);
        assert_eq!(s.skipped(), 1);
        // Seventeen halvings take 2^16 below 1: the overflow is no longer the scale's doing.
        let gave_up = (0..17).map(|_| s.overflowed()).any(|ok| !ok);
        assert!(gave_up);
    }
}
