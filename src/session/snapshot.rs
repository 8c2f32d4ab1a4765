//! In-memory copies of the training state for `snapshot`, `restore` and `undo`.

use candle_core::Tensor;
use rand::rngs::StdRng;

use crate::error::Result;
use crate::metrics::History;
use crate::model::{Model, Params};
use crate::train::Optimizer;

/// Everything `fit` changes: weights, optimizer state, history and the random generator.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Its name (`s1`, or what the user chose; for undo entries, the command it precedes).
    pub name: String,
    /// Which loaded model it belongs to.
    pub model_id: u64,
    values: Vec<Tensor>,
    /// The parameters' names, flags and LoRA state (the variables inside are not read), so
    /// a snapshot taken before `lora` or `lora merge` restores the layout too.
    layout: Params,
    optimizer: Optimizer,
    history: History,
    rng: StdRng,
}

impl Snapshot {
    /// Copies the state. Weights are deep-copied (they change in place); optimizer state
    /// and history are cloned (the optimizer writes in place only the moments no clone
    /// shares, so a clone keeps its values).
    pub fn take(
        name: String,
        model_id: u64,
        model: &dyn Model,
        optimizer: &Optimizer,
        history: &History,
        rng: &StdRng,
    ) -> Result<Snapshot> {
        Ok(Snapshot {
            name,
            model_id,
            values: model.params().copy_values()?,
            layout: model.params().clone(),
            optimizer: optimizer.clone(),
            history: history.clone(),
            rng: rng.clone(),
        })
    }

    /// Writes the weights back into `model` (moving them to its device if needed) and
    /// returns the optimizer, history and generator to put back in the session. When LoRA
    /// was attached or merged since, the parameters are rebuilt in the snapshot's layout.
    pub fn restore(&self, model: &mut dyn Model) -> Result<(Optimizer, History, StdRng)> {
        let device = model.params().iter().next().map(|p| p.var.device().clone());
        let optimizer = match &device {
            Some(d) => self.optimizer.to_device(d)?,
            None => self.optimizer.clone(),
        };
        if model.params().same_layout(&self.layout) {
            model.params().set_values(&self.values)?;
            model.params_mut().take_lora_state(&self.layout);
        } else {
            let values = match &device {
                Some(d) => self
                    .values
                    .iter()
                    .map(|v| crate::uploads::to_device(v, d, crate::uploads::Upload::Weights))
                    .collect::<candle_core::Result<Vec<_>>>()?,
                None => self.values.clone(),
            };
            *model.params_mut() = self.layout.with_values(&values)?;
        }
        Ok((optimizer, self.history.clone(), self.rng.clone()))
    }

    /// The weights it holds, in parameter order.
    pub fn values(&self) -> &[Tensor] {
        &self.values
    }

    /// The training record when it was taken (what `plot loss compare=` draws).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Trainable and total parameter counts of its layout (frozen ones and LoRA included).
    pub fn trainable(&self) -> (usize, usize) {
        (self.layout.trainable_numel(), self.layout.numel())
    }

    /// The update count when it was taken.
    pub fn step(&self) -> u64 {
        self.history.step()
    }

    /// Bytes of weights and optimizer state it holds.
    pub fn bytes(&self) -> usize {
        tensor_bytes(&self.values) + self.optimizer.state_bytes()
    }

    /// Bytes a snapshot of `model` and `optimizer` would hold ([`bytes`](Self::bytes)
    /// before [`take`](Self::take)).
    pub fn bytes_of(model: &dyn Model, optimizer: &Optimizer) -> usize {
        tensor_bytes(model.params().iter().map(|p| p.var.as_tensor())) + optimizer.state_bytes()
    }
}

/// Bytes of the tensors' elements.
fn tensor_bytes<'a>(ts: impl IntoIterator<Item = &'a Tensor>) -> usize {
    ts.into_iter().map(|t| t.elem_count() * t.dtype().size_in_bytes()).sum()
}
