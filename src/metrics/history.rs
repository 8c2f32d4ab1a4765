//! The training record: every update's loss and rate, per-epoch losses, evaluations and,
//! for small models, the path the parameters took.

use serde::{Deserialize, Serialize};

/// One optimizer update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Update number since the model was loaded (1-based).
    pub step: u64,
    /// Epoch the update belongs to (1-based, counted since load).
    pub epoch: u64,
    /// Training loss of the batch, before the update.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
}

/// One epoch (or the part of one a fit got through before it stopped).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch number since load (1-based).
    pub epoch: u64,
    /// Update number at its end.
    pub step: u64,
    /// Mean training loss over its batches.
    pub train_loss: f64,
    /// Validation loss at its end, when there is a validation split.
    pub valid_loss: Option<f64>,
    /// Validation accuracy at its end, for classifiers.
    #[serde(default)]
    pub valid_accuracy: Option<f64>,
    /// False when the fit stopped part-way through it.
    pub complete: bool,
}

/// One `eval` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Update number when evaluated.
    pub step: u64,
    /// The split.
    pub split: String,
    /// Metric name ("mse").
    pub metric: String,
    /// Its value.
    pub value: f64,
}

/// The parameters' values after an update (for the loss-surface path).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathPoint {
    /// Update number (0 = before the first).
    pub step: u64,
    /// All parameter values, flattened in parameter order.
    pub values: Vec<f64>,
}

/// Everything recorded about training the current model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Every update.
    pub steps: Vec<StepRecord>,
    /// Every epoch.
    pub epochs: Vec<EpochRecord>,
    /// Every evaluation.
    pub evals: Vec<EvalRecord>,
    /// Parameter values along the way (models with few parameters only).
    pub path: Vec<PathPoint>,
}

impl History {
    /// Updates made so far.
    pub fn step(&self) -> u64 {
        self.steps.last().map_or(0, |s| s.step)
    }

    /// Completed epochs so far.
    pub fn epoch(&self) -> u64 {
        self.epochs.iter().filter(|e| e.complete).count() as u64
    }

    /// Mean of the losses of the steps after `from_step` (exclusive).
    pub fn mean_loss_since(&self, from_step: u64) -> Option<f64> {
        let losses: Vec<f64> = self.steps.iter().filter(|s| s.step > from_step).map(|s| s.loss).collect();
        (!losses.is_empty()).then(|| losses.iter().sum::<f64>() / losses.len() as f64)
    }
}
