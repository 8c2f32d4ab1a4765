//! Metrics and the training history every front-end can query.

mod history;
mod regression;

pub use history::{EpochRecord, EvalRecord, History, PathPoint, StepRecord};
pub use regression::{least_squares, mse};
