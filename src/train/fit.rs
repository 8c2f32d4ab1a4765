//! The training loop. One function, its phases in order: pick the learning rate, check for
//! Ctrl-C, forward/backward/update, record, report; at the end of each epoch validate,
//! log, and check early stopping.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::{classify_rows, mean_loss, train_step, Optimizer, Schedule, StepConfig, StepResult};
use crate::data::{Dataset, Split};
use crate::device_memory;
use crate::error::Result;
use crate::metrics::{EpochRecord, History, PathPoint, StepRecord};
use crate::model::layers::step_seed;
use crate::model::{Model, Task};
use crate::session::{Event, Progress, Sink};

/// Separates the shuffling seeds from the dropout seeds derived from the same seed.
const SHUFFLE_SALT: u64 = 0x005E_ED5F_F1E0;

/// The validation number early stopping watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Monitor {
    /// Lower is better.
    ValidLoss,
    /// Higher is better (classifiers).
    ValidAccuracy,
}

/// What a fit should do.
#[derive(Clone, Debug)]
pub struct FitPlan {
    /// Passes over the training split.
    pub epochs: usize,
    /// Rows per micro-batch.
    pub batch: usize,
    /// Stop after this many updates, if set.
    pub max_steps: Option<usize>,
    /// Print the losses every this many epochs.
    pub log_every: usize,
    /// Record the parameter values after each update (small models).
    pub record_path: bool,
    /// Accumulation, clipping and penalties of each update.
    pub step: StepConfig,
    /// Stop after this many epochs without improvement, restoring the best weights.
    pub patience: Option<usize>,
    /// What early stopping watches.
    pub monitor: Monitor,
}

/// Writes a checkpoint when one is due: called with the model, optimizer and history at a
/// step boundary, and whether it is an epoch's end.
pub type AutosaveHook<'a> = Box<dyn FnMut(&dyn Model, &Optimizer, &History, bool) -> Result<()> + 'a>;

/// The state a fit works on, borrowed from the session.
pub struct Trainer<'a> {
    /// The model (its weights are updated in place).
    pub model: &'a dyn Model,
    /// Optimizer settings and state.
    pub optimizer: &'a mut Optimizer,
    /// Learning-rate schedule over this fit.
    pub schedule: &'a Schedule,
    /// The data.
    pub data: &'a Dataset,
    /// Appended to as training goes.
    pub history: &'a mut History,
    /// Set by Ctrl-C or a kernel interrupt; checked before each update.
    pub cancel: &'a AtomicBool,
    /// Seeds each epoch's shuffle (with the epoch number) and each step's dropout masks
    /// (with the step number).
    pub seed: u64,
    /// Called after each update (`false`) and each epoch's record (`true`), at a step
    /// boundary: writes a checkpoint when one is due (`autosave`). A failure is reported
    /// as a warning and ends autosaving for this fit; training goes on.
    pub autosave: Option<AutosaveHook<'a>>,
}

/// How a fit ended.
#[derive(Clone, Debug, PartialEq)]
pub enum FitEnd {
    /// All epochs (or `max_steps`) done.
    Completed,
    /// Stopped by the cancel flag after a completed update.
    Interrupted,
    /// The loss or gradients became NaN/infinite at `step`; that update was not applied.
    Diverged {
        /// What became non-finite: `"loss"` or `"gradient norm"`.
        what: &'static str,
        /// The update that would have been made.
        step: u64,
        /// The offending value.
        loss: f64,
        /// The learning rate of that step.
        lr: f64,
    },
    /// Early stopping: no improvement for `patience` epochs; the weights of `best_epoch`
    /// were restored.
    EarlyStopped {
        /// Epoch (since load) whose weights were restored.
        best_epoch: u64,
        /// Its monitored value.
        best: f64,
    },
}

/// What a fit did.
#[derive(Clone, Debug)]
pub struct FitReport {
    /// How it ended.
    pub end: FitEnd,
    /// Updates made.
    pub steps: usize,
    /// Gradients of the last update.
    pub last_grads: Option<Vec<(String, Tensor)>>,
    /// Peak device memory in bytes during the last update (its batches, forward, backward
    /// and optimizer step), from [`crate::device_memory`]; `None` on the CPU.
    pub last_step_peak: Option<u64>,
}

/// Number of updates per epoch for `rows` rows in micro-batches of `batch`, `accumulate`
/// micro-batches per update.
pub fn steps_per_epoch(rows: usize, batch: usize, accumulate: usize) -> usize {
    rows.div_ceil(batch.max(1)).div_ceil(accumulate.max(1))
}

/// Validation loss (and accuracy, for classifiers) at the end of an epoch.
fn validate(model: &dyn Model, data: &Dataset, chunk: usize) -> Result<(Option<f64>, Option<f64>)> {
    let rows = data.split(Split::Valid);
    if rows.is_empty() {
        return Ok((None, None));
    }
    if model.task() == Task::Classify {
        let p = classify_rows(model, data, rows, chunk)?;
        return Ok((Some(p.loss), Some(p.accuracy())));
    }
    Ok((mean_loss(model, data, Split::Valid, chunk)?, None))
}

/// Gives the autosave hook its turn; on failure warns once and turns it off.
fn autosave(t: &mut Trainer<'_>, epoch_end: bool, sink: &mut dyn Sink) {
    if let Some(save) = t.autosave.as_mut() {
        if let Err(e) = save(t.model, t.optimizer, t.history, epoch_end) {
            sink.emit(Event::Warning(format!("autosave failed, no more autosaves in this fit: {e}")));
            t.autosave = None;
        }
    }
}

/// The best epoch so far, for early stopping.
struct Best {
    value: f64,
    epoch: u64,
    weights: Vec<Tensor>,
    waited: usize,
}

/// Trains `t.model` as `plan` says, emitting per-epoch lines and progress to `sink`.
/// Every update is complete or not made at all, so on any exit the weights are those of
/// the last completed step (or, after early stopping, of the best epoch).
pub fn fit(mut t: Trainer<'_>, plan: &FitPlan, sink: &mut dyn Sink) -> Result<FitReport> {
    let train_rows = t.data.split(Split::Train);
    let accumulate = plan.step.accumulate.max(1);
    let per_epoch = steps_per_epoch(train_rows.len(), plan.batch, accumulate);
    let total = (plan.epochs * per_epoch).min(plan.max_steps.unwrap_or(usize::MAX));
    let eval_chunk = plan.batch.max(64);
    let report_every = (total / 100).max(1);
    let started = Instant::now();
    let mut samples = 0usize;
    let mut done = 0usize;
    let mut end = FitEnd::Completed;
    let mut last_grads = None;
    let mut last_step_peak = None;
    let device = t.model.params().iter().next().map_or(candle_core::Device::Cpu, |p| p.var.device().clone());
    let mut best: Option<Best> = None;
    let progress = |done: usize, message: String, finished: bool| {
        Event::Progress(Progress {
            task: "fit".into(),
            done: done as u64,
            total: total as u64,
            message,
            finished,
        })
    };
    sink.emit(progress(0, "starting".into(), false));
    if plan.record_path && t.history.path.last().is_none_or(|p| p.step != t.history.step()) {
        let values = t.model.params().flat_values()?;
        t.history.path.push(PathPoint { step: t.history.step(), values });
    }

    'epochs: for e in 1..=plan.epochs {
        let epoch = t.history.epoch() + 1;
        let mut order = train_rows.to_vec();
        // Each epoch's order depends only on the seed and the epoch number, so a fit resumed
        // from a checkpoint sees the batches an uninterrupted one would have.
        order.shuffle(&mut StdRng::seed_from_u64(step_seed(t.seed ^ SHUFFLE_SALT, epoch)));
        let micro: Vec<&[u32]> = order.chunks(plan.batch.max(1)).collect();
        let mut epoch_losses = Vec::new();
        let mut overflowed = 0;
        for group in micro.chunks(accumulate) {
            if done == total {
                break 'epochs;
            }
            // 1. Ctrl-C / interrupt: stop between updates, never inside one.
            if t.cancel.load(Ordering::SeqCst) {
                end = FitEnd::Interrupted;
                break;
            }
            // 2. The learning rate for this step of the fit.
            let lr = t.schedule.lr_at(t.optimizer.config.lr, done, total, per_epoch);
            // 3. Forward, backward (over the group's micro-batches), update — skipped if the
            //    loss or the gradients are not finite.
            //    The device's memory peak is restarted here and read after the update.
            device_memory::reset_peak(&device);
            let batches = group.iter().map(|rows| t.data.batch(rows)).collect::<Result<Vec<_>>>()?;
            let seed = step_seed(t.seed, t.history.step() + 1);
            let update = match train_step(t.model, t.optimizer, &batches, lr, seed, &plan.step)? {
                StepResult::Applied(u) => u,
                StepResult::NonFinite(what, value) => {
                    end = FitEnd::Diverged { what, step: t.history.step() + 1, loss: value, lr };
                    break;
                }
                // f16: the batch is spent, the update skipped and the loss scale lowered.
                StepResult::Overflow(_) => {
                    overflowed += 1;
                    done += 1;
                    continue;
                }
            };
            // 4. Record.
            last_step_peak = device_memory::peak(&device).or(last_step_peak);
            let step = t.history.step() + 1;
            t.history.steps.push(StepRecord { step, epoch, loss: update.loss, lr });
            if plan.record_path {
                t.history.path.push(PathPoint { step, values: t.model.params().flat_values()? });
            }
            epoch_losses.push(update.loss);
            last_grads = Some(update.grads);
            autosave(&mut t, false, sink);
            samples += group.iter().map(|g| g.len()).sum::<usize>();
            done += 1;
            // 5. Report.
            if done.is_multiple_of(report_every) || done == total {
                let rate = samples as f64 / started.elapsed().as_secs_f64().max(1e-9);
                sink.emit(progress(
                    done,
                    format!(
                        "epoch {e}/{} loss {:.4} lr {lr:.2e} {rate:.1} samples/s",
                        plan.epochs, update.loss
                    ),
                    false,
                ));
            }
        }
        // End of epoch (or of the part of it that ran): validation and a log line.
        if epoch_losses.is_empty() {
            // Every update of this pass was skipped by the f16 loss scaler: go on.
            if overflowed > 0 && end == FitEnd::Completed {
                continue;
            }
            break;
        }
        let complete = epoch_losses.len() + overflowed == per_epoch;
        let train_loss = epoch_losses.iter().sum::<f64>() / epoch_losses.len() as f64;
        let (valid_loss, valid_accuracy) = validate(t.model, t.data, eval_chunk)?;
        t.history.epochs.push(EpochRecord {
            epoch,
            step: t.history.step(),
            train_loss,
            valid_loss,
            valid_accuracy,
            complete,
        });
        autosave(&mut t, true, sink);
        if e % plan.log_every.max(1) == 0 || e == plan.epochs || !complete || end != FitEnd::Completed {
            let mut valid = valid_loss.map(|v| format!("  valid loss {v:.6}")).unwrap_or_default();
            if let Some(a) = valid_accuracy {
                valid += &format!("  valid accuracy {a:.4}");
            }
            let partial = if complete { "" } else { " (partial)" };
            sink.emit(Event::Text(format!(
                "epoch {e:>w$}/{}  train loss {train_loss:.6}{valid}{partial}",
                plan.epochs,
                w = plan.epochs.to_string().len()
            )));
        }
        if end != FitEnd::Completed {
            break;
        }
        // Early stopping: keep the best epoch's weights; stop after `patience` epochs
        // without improvement and put them back.
        if let Some(patience) = plan.patience {
            let value = match plan.monitor {
                Monitor::ValidLoss => valid_loss,
                Monitor::ValidAccuracy => valid_accuracy.map(|a| -a),
            };
            if let Some(v) = value {
                match &mut best {
                    Some(b) if v >= b.value => {
                        b.waited += 1;
                        if b.waited >= patience {
                            t.model.params().set_values(&b.weights)?;
                            let shown =
                                if plan.monitor == Monitor::ValidAccuracy { -b.value } else { b.value };
                            end = FitEnd::EarlyStopped { best_epoch: b.epoch, best: shown };
                            break 'epochs;
                        }
                    }
                    _ => {
                        best = Some(Best {
                            value: v,
                            epoch,
                            weights: t.model.params().copy_values()?,
                            waited: 0,
                        })
                    }
                }
            }
        }
    }
    sink.emit(progress(done, "done".into(), true));
    Ok(FitReport { end, steps: done, last_grads, last_step_peak })
}
