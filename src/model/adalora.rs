//! AdaLoRA (Zhang et al., 2023): LoRA whose rank budget moves to where it matters.
//!
//! Each adapter becomes the SVD-like form `B·diag(E)·A` — `A` `[r, in]` and `B` `[out, r]`
//! as in LoRA, `E` `[r, 1]` a trainable vector of "singular values" (parameter
//! `{module}.lora_E`, starting at 1; `B` starts at 0, so a fresh adapter changes nothing).
//! After every update each singular value gets an importance `|λ·∂L/∂λ|`, smoothed by an
//! exponential moving average; between updates `start` and `end` the total kept rank falls
//! on a cubic schedule from `r × modules` to `budget`, and the least important singular
//! values across all modules are masked to 0 (they then get no gradient and stay pruned).
//! Modules that matter keep more rank than others: the ranks end unequal.
//!
//! Simplifications against the paper: the importance uses `λ` alone (not the mean over its
//! rows of `A` and columns of `B`), without the uncertainty term, and without the
//! orthogonality penalty on `A` and `B`. The state (scores, masks, step) is shared by clones
//! of the parameters, so `undo` does not rewind it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Tensor};

use super::Params;
use crate::error::Result;

/// The rank schedule of an adaptive LoRA.
#[derive(Clone, Debug, PartialEq)]
pub struct AdaConfig {
    /// Total rank kept over all modules once pruning ends.
    pub budget: usize,
    /// Updates before pruning starts (importance is only measured until then).
    pub start: u64,
    /// The update at which the budget is reached (kept from then on).
    pub end: u64,
    /// Smoothing of the importance scores (weight of the running average).
    pub beta: f64,
}

#[derive(Debug, Default)]
struct AdaState {
    step: u64,
    /// Smoothed importance of each singular value, by the adapted weight's name.
    scores: BTreeMap<String, Vec<f64>>,
    /// Which singular values are kept.
    masks: BTreeMap<String, Vec<bool>>,
}

/// AdaLoRA's settings and running state, attached to a [`super::lora::Lora`].
#[derive(Clone, Debug)]
pub struct Adaptive {
    /// The schedule.
    pub config: AdaConfig,
    state: Arc<Mutex<AdaState>>,
}

impl PartialEq for Adaptive {
    fn eq(&self, other: &Adaptive) -> bool {
        self.config == other.config && Arc::ptr_eq(&self.state, &other.state)
    }
}

impl Adaptive {
    /// A fresh schedule: every singular value of every module kept.
    pub fn new(config: AdaConfig) -> Adaptive {
        Adaptive { config, state: Arc::default() }
    }

    /// The total rank to keep after update `step`, starting from `initial`: all of it until
    /// `start`, `budget` from `end` on, and a cubic fall in between (the paper's schedule).
    pub fn target_at(&self, step: u64, initial: usize) -> usize {
        let c = &self.config;
        if step <= c.start {
            return initial;
        }
        if step >= c.end || c.end <= c.start {
            return c.budget.min(initial);
        }
        let left = 1.0 - (step - c.start) as f64 / (c.end - c.start) as f64;
        let extra = (initial.saturating_sub(c.budget)) as f64 * left.powi(3);
        c.budget + extra.round() as usize
    }

    /// The kept rank of every adapted weight (all of `r` before any pruning).
    pub fn ranks(&self, params: &Params) -> BTreeMap<String, usize> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(lora) = params.lora() else { return BTreeMap::new() };
        lora.adapters
            .keys()
            .map(|name| {
                let kept = state.masks.get(name).map_or(lora.config.r, |m| m.iter().filter(|k| **k).count());
                (name.clone(), kept)
            })
            .collect()
    }

    /// Updates done since the adapters were attached.
    pub fn step(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).step
    }

    /// After an update: score every singular value from its gradient, reallocate the rank
    /// on the schedule, and zero the pruned singular values.
    pub fn after_update(
        &self,
        params: &Params,
        grads: &std::collections::HashMap<String, Tensor>,
    ) -> Result<()> {
        let Some(lora) = params.lora() else { return Ok(()) };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.step += 1;
        let beta = self.config.beta;
        let mut values = BTreeMap::new();
        for (name, ad) in &lora.adapters {
            let Some(e) = ad.e.as_ref().and_then(|e| params.get(e)) else { continue };
            let lambda = e.var.as_tensor().flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            let grad = match grads.get(&e.name) {
                Some(g) => g.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?,
                None => vec![0.0; lambda.len()],
            };
            let scores = state.scores.entry(name.clone()).or_insert_with(|| vec![0.0; lambda.len()]);
            for ((s, l), g) in scores.iter_mut().zip(&lambda).zip(&grad) {
                *s = beta * *s + (1.0 - beta) * (l * g).abs();
            }
            values.insert(name.clone(), lambda);
        }
        let initial = lora.config.r * values.len();
        let step = state.step;
        if step > self.config.start && step <= self.config.end {
            let keep = self.target_at(step, initial);
            let mut all: Vec<(f64, &String, usize)> = Vec::new();
            for (name, s) in &state.scores {
                let kept = state.masks.get(name);
                for (i, v) in s.iter().enumerate() {
                    // Pruned values stay pruned: the budget only shrinks.
                    if kept.is_none_or(|m| m[i]) {
                        all.push((*v, name, i));
                    }
                }
            }
            all.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut masks: BTreeMap<String, Vec<bool>> =
                values.iter().map(|(n, v)| (n.clone(), vec![false; v.len()])).collect();
            for (_, name, i) in all.into_iter().take(keep) {
                if let Some(m) = masks.get_mut(name) {
                    m[i] = true;
                }
            }
            state.masks = masks;
        }
        for (name, lambda) in &values {
            let Some(mask) = state.masks.get(name) else { continue };
            if mask.iter().zip(lambda).any(|(k, l)| !k && *l != 0.0) {
                let e =
                    params.get(lora.adapters[name].e.as_deref().unwrap_or_default()).expect("checked above");
                let m: Vec<f32> = mask.iter().map(|k| if *k { 1.0 } else { 0.0 }).collect();
                let t = e.var.as_tensor();
                let m = Tensor::from_vec(m, t.dims(), t.device())?.to_dtype(t.dtype())?;
                e.var.set(&t.mul(&m)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_falls_on_a_cubic_schedule() {
        let a = Adaptive::new(AdaConfig { budget: 4, start: 10, end: 20, beta: 0.85 });
        assert_eq!(a.target_at(5, 16), 16);
        assert_eq!(a.target_at(10, 16), 16);
        assert_eq!(a.target_at(15, 16), 4 + (12.0f64 * 0.125).round() as usize);
        assert_eq!(a.target_at(20, 16), 4);
        assert_eq!(a.target_at(99, 16), 4);
    }
}
