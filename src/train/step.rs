//! One training update: forward, backward, optimizer step.

use candle_core::Tensor;

use super::Optimizer;
use crate::data::Batch;
use crate::error::Result;
use crate::model::{Model, Pass};

/// What an update did.
#[derive(Clone, Debug)]
pub struct Update {
    /// The batch loss before the update.
    pub loss: f64,
    /// The gradient of each trainable parameter, by name.
    pub grads: Vec<(String, Tensor)>,
}

/// The outcome of [`train_step`].
#[derive(Clone, Debug)]
pub enum StepResult {
    /// The update was applied.
    Applied(Update),
    /// The loss was NaN or infinite: nothing was changed.
    NonFinite(f64),
}

/// forward → loss → backward → optimizer update at rate `lr`, with dropout masks seeded by
/// `seed`. When the loss is not finite the update is skipped, so the weights stay those of
/// the last good step.
pub fn train_step(
    model: &dyn Model,
    optimizer: &mut Optimizer,
    batch: &Batch,
    lr: f64,
    seed: u64,
) -> Result<StepResult> {
    let loss = model.loss(batch, &mut Pass::train(seed))?;
    let value = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    if !value.is_finite() {
        return Ok(StepResult::NonFinite(value));
    }
    let grads = loss.backward()?;
    optimizer.step(model.params(), &grads, lr)?;
    let named = model
        .params()
        .iter()
        .filter(|p| p.trainable)
        .filter_map(|p| grads.get(p.var.as_tensor()).map(|g| (p.name.clone(), g.clone())))
        .collect();
    Ok(StepResult::Applied(Update { loss: value, grads: named }))
}
