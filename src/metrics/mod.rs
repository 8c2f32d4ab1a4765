//! Metrics and the training history every front-end can query.

mod classification;
mod history;
mod regression;
pub mod text_overlap;

pub use classification::{ClassScores, Confusion};
pub use history::{EpochRecord, EvalRecord, History, PathPoint, StepRecord};
pub use regression::{least_squares, linear_predictions, mae, mse};
pub use text_overlap::{corpus_bleu, mean_rouge_l, rouge_l, Bleu, Rouge, Tokenize};
