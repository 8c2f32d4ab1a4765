//! Metrics and the training history every front-end can query.

mod classification;
mod history;
mod regression;

pub use classification::{ClassScores, Confusion};
pub use history::{EpochRecord, EvalRecord, History, PathPoint, StepRecord};
pub use regression::{least_squares, linear_predictions, mae, mse};
