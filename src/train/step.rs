//! One training update: forward and backward over one or more micro-batches, penalties,
//! gradient clipping, optimizer step.

use std::collections::HashMap;

use candle_core::{DType, Tensor};

use super::{distill_loss, weighted_cross_entropy, Anchors, LossScaler, Optimizer, SharedDistill};
use crate::data::Batch;
use crate::error::Result;
use crate::model::layers::step_seed;
use crate::model::{Model, Pass, Task};

/// Separates the draws from a distillation transfer set (and their dropout masks) from the
/// labelled batches' seeds.
const TRANSFER_SALT: u64 = 0x7472_616E_7366_6572;

/// Gradients by parameter name.
pub type Grads = HashMap<String, Tensor>;

/// How an update is made, beyond the optimizer (set by `fit` options and `regularize`).
#[derive(Clone, Debug)]
pub struct StepConfig {
    /// Micro-batches whose gradients are averaged into one update (gradient accumulation).
    pub accumulate: usize,
    /// Scale the gradients down so their global L2 norm is at most this.
    pub clip: Option<f64>,
    /// Weight of the L1 penalty `Σ|w|` over trainable weight matrices.
    pub l1: f64,
    /// Weight of the L2 penalty `Σw²` over trainable weight matrices (added to the loss;
    /// unlike AdamW's decoupled weight decay it passes through the optimizer's scaling).
    pub l2: f64,
    /// Class weights of a classifier's cross-entropy (`loss weights=`), by class id;
    /// `None` for the model's own (unweighted) loss.
    pub class_weights: Option<Vec<f32>>,
    /// Penalties toward anchored weights (`regularize l2sp=` / `ewc=`), shared with the
    /// session; `None` when there are none.
    pub anchors: Option<std::sync::Arc<Anchors>>,
    /// A teacher whose soft targets are mixed into a classifier's loss (`distill`).
    pub distill: Option<SharedDistill>,
    /// Dynamic loss scaling (`precision f16`), shared with the session.
    pub loss_scale: Option<LossScaler>,
}

impl Default for StepConfig {
    fn default() -> StepConfig {
        StepConfig {
            accumulate: 1,
            clip: None,
            l1: 0.0,
            l2: 0.0,
            class_weights: None,
            anchors: None,
            distill: None,
            loss_scale: None,
        }
    }
}

/// What an update did.
#[derive(Clone, Debug)]
pub struct Update {
    /// The data loss of the batch before the update (class-weighted when asked; penalties
    /// not included).
    pub loss: f64,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
    /// The gradient of each trainable parameter, by name (after clipping).
    pub grads: Vec<(String, Tensor)>,
}

/// The outcome of [`train_step`].
#[derive(Clone, Debug)]
pub enum StepResult {
    /// The update was applied.
    Applied(Update),
    /// The loss, the gradients or an updated weight were NaN or infinite: nothing was
    /// changed. Holds what went wrong (`"loss"`, `"gradient norm"`, `"an updated weight"`)
    /// and its value.
    NonFinite(&'static str, f64),
    /// Under f16 loss scaling the scaled gradients overflowed: nothing was changed and the
    /// scale was halved (to the value held), as PyTorch's `GradScaler` skips such a step.
    Overflow(f64),
}

/// The penalty term `l1·Σ|w| + l2·Σw²` over trainable parameters with two or more
/// dimensions (weight matrices and embeddings, not biases or norms).
fn penalty(model: &dyn Model, cfg: &StepConfig) -> Result<Option<Tensor>> {
    if cfg.l1 == 0.0 && cfg.l2 == 0.0 {
        return Ok(None);
    }
    let mut total: Option<Tensor> = None;
    for p in model.params().iter().filter(|p| p.trainable && p.var.rank() >= 2) {
        let w = p.var.as_tensor();
        let mut term = w.sqr()?.sum_all()?.affine(cfg.l2, 0.0)?;
        if cfg.l1 != 0.0 {
            term = (term + w.abs()?.sum_all()?.affine(cfg.l1, 0.0)?)?;
        }
        total = Some(match total {
            Some(t) => (t + term)?,
            None => term,
        });
    }
    Ok(total)
}

/// forward → loss → backward for each micro-batch (gradients averaged, weighted by batch
/// size), penalties, clipping, then one optimizer update at rate `lr`. Dropout masks are
/// seeded by `seed` and the micro-batch index. When the loss or the gradient norm is not
/// finite the update is skipped, so the weights stay those of the last good step.
pub fn train_step(
    model: &dyn Model,
    optimizer: &mut Optimizer,
    batches: &[Batch],
    lr: f64,
    seed: u64,
    cfg: &StepConfig,
) -> Result<StepResult> {
    let sizes: Vec<usize> = batches.iter().map(batch_len).collect();
    let total_rows: usize = sizes.iter().sum::<usize>().max(1);
    let mut grads: Grads = HashMap::new();
    let mut data_loss = 0.0;
    let scale = cfg.loss_scale.as_ref().map(|s| s.scale());
    for (i, (batch, &n)) in batches.iter().zip(&sizes).enumerate() {
        let mut pass = Pass::train(step_seed(seed, i as u64));
        let loss = match (&cfg.class_weights, &cfg.distill, batch) {
            (w, Some(d), Batch::Text { labels: Some(labels), .. }) if model.task() == Task::Classify => {
                let logits = model.forward(batch, &mut pass)?;
                let hard = match w {
                    Some(w) => weighted_cross_entropy(&logits, labels, w)?,
                    None => candle_nn::loss::cross_entropy(&logits, labels)?,
                };
                let d = d.lock().unwrap_or_else(|e| e.into_inner());
                let teacher = d.teacher.forward(batch, &mut Pass::eval())?.detach();
                // With a transfer set, as many texts without labels join the soft term.
                let (student, teacher) = match &d.transfer {
                    None => (logits, teacher),
                    Some(t) => {
                        let seed = step_seed(seed ^ TRANSFER_SALT, i as u64);
                        let extra = t.sample(n, seed)?;
                        let s = model.forward(&extra, &mut Pass::train(seed))?;
                        let t = d.teacher.forward(&extra, &mut Pass::eval())?.detach();
                        (Tensor::cat(&[&logits, &s], 0)?, Tensor::cat(&[&teacher, &t], 0)?)
                    }
                };
                distill_loss(&student, &teacher, &hard, d.temperature, d.alpha)?
            }
            (Some(w), _, Batch::Text { labels: Some(labels), .. }) if model.task() == Task::Classify => {
                weighted_cross_entropy(&model.forward(batch, &mut pass)?, labels, w)?
            }
            _ => model.loss(batch, &mut pass)?,
        };
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !value.is_finite() {
            return Ok(StepResult::NonFinite("loss", value));
        }
        data_loss += value * n as f64 / total_rows as f64;
        let mut objective = loss.affine(n as f64 / total_rows as f64, 0.0)?;
        if i == 0 {
            if let Some(p) = penalty(model, cfg)? {
                objective = (objective + p)?;
            }
            if let Some(p) = cfg.anchors.as_ref().map(|a| a.penalty(model)).transpose()?.flatten() {
                objective = (objective + p)?;
            }
        }
        if let Some(s) = scale {
            objective = objective.affine(s, 0.0)?;
        }
        // The fused dense layers hand their weights' gradients to the sink rather than to
        // candle's store, which would zero-fill a copy of each and add into it.
        let sink = crate::model::kernels::GradSink::open();
        let store = objective.backward();
        let mut sunk = sink.finish();
        let store = store?;
        for p in model.params().iter().filter(|p| p.trainable) {
            let g = match (store.get(p.var.as_tensor()), sunk.remove(&p.var.id())) {
                (Some(a), Some(b)) => Some((a + b)?),
                (a, b) => a.cloned().or(b),
            };
            if let Some(g) = g {
                // Detached: a gradient tensor otherwise records the backward graph it came
                // from (and through it the forward activations), and optimizer moments built
                // from it would keep every step's graph alive.
                let g = g.detach();
                let sum = match grads.remove(&p.name) {
                    Some(acc) => (acc + g)?,
                    None => g,
                };
                grads.insert(p.name.clone(), sum);
            }
        }
    }
    if let Some(s) = scale {
        for g in grads.values_mut() {
            *g = g.affine(1.0 / s, 0.0)?;
        }
    }
    // Global gradient norm (one transfer to the host); clip to it when asked.
    let squares = grads
        .iter()
        .map(|(name, g)| Ok((name.clone(), crate::model::kernels::sum_squares(g)?)))
        .collect::<Result<Vec<_>>>()?;
    let sq = match squares.is_empty() {
        true => 0.0,
        false => Tensor::stack(&squares.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(), 0)?
            .sum_all()?
            .to_scalar::<f64>()?,
    };
    let grad_norm = sq.sqrt();
    // Each gradient's own norm bounds its largest |g|, so Adam(W)'s in-place update (CPU)
    // need not read the gradient again to prove its result finite. Only sums from the fused
    // kernel count: it sums at most 4096 squares per lane in the gradient's type before
    // going to f64, so the sum is short of the largest square by under 3·10⁻⁴ of it; the
    // margin covers that and the rounding of the clipping's scaling below.
    let mut g_bounds: HashMap<String, f64> = HashMap::new();
    for (name, s) in &squares {
        let g = &grads[name];
        if crate::model::kernels::fusable(g) && g.is_contiguous() {
            g_bounds.insert(name.clone(), s.to_scalar::<f64>()?.sqrt() * (1.0 + 1e-3));
        }
    }
    if !grad_norm.is_finite() {
        if let Some(scaler) = cfg.loss_scale.as_ref() {
            if scaler.overflowed() {
                return Ok(StepResult::Overflow(scaler.scale()));
            }
        }
        return Ok(StepResult::NonFinite("gradient norm", grad_norm));
    }
    if let Some(scaler) = cfg.loss_scale.as_ref() {
        scaler.good_step();
    }
    if let Some(max) = cfg.clip.filter(|m| grad_norm > *m) {
        let scale = max / (grad_norm + 1e-6);
        for g in grads.values_mut() {
            *g = g.affine(scale, 0.0)?;
        }
        g_bounds.values_mut().for_each(|b| *b *= scale);
    }
    if !optimizer.step_bounded(model.params(), &grads, &g_bounds, lr)? {
        return Ok(StepResult::NonFinite("an updated weight", f64::INFINITY));
    }
    // AdaLoRA: score the singular values and reallocate the rank budget.
    if let Some(ada) = model.params().lora().and_then(|l| l.adaptive.as_ref()) {
        ada.after_update(model.params(), &grads)?;
    }
    let named = model
        .params()
        .iter()
        .filter_map(|p| grads.get(&p.name).map(|g| (p.name.clone(), g.clone())))
        .collect();
    Ok(StepResult::Applied(Update { loss: data_loss, grad_norm, grads: named }))
}

fn batch_len(b: &Batch) -> usize {
    match b {
        Batch::Regression { x, .. } => x.dim(0).unwrap_or(1),
        Batch::Text { ids, .. } => ids.dim(0).unwrap_or(1),
    }
}
