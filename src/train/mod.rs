//! Training: optimizers, learning-rate schedules, the update step and the fit loop.

mod anchor;
mod distill;
mod evaluate;
mod fit;
mod loss;
mod lr_find;
mod optim;
mod precision;
mod schedule;
mod step;

pub use anchor::{copy_weights, fisher_diagonal, Anchors, Ewc, L2Sp, FISHER_ROWS};
pub use distill::{distill_loss, Distill, SharedDistill, TransferSet};
pub use evaluate::{classify_rows, mean_loss, mean_loss_rows, pool_windows, Predictions};
pub use fit::{fit, steps_per_epoch, AutosaveHook, FitEnd, FitPlan, FitReport, Monitor, Trainer};
pub use loss::{inverse_frequency, weighted_cross_entropy, ClassWeights};
pub use lr_find::{lr_range_test, RangeTest};
pub use optim::{OptimConfig, OptimKind, Optimizer};
pub use precision::{LossScaler, Precision};
pub use schedule::{Schedule, ScheduleKind};
pub use step::{train_step, Grads, StepConfig, StepResult, Update};
