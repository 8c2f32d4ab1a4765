//! Session settings that commands read their defaults from.

/// Defaults that `seed`, `batch` and `epochs` show and set.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Seed of the session's random generator.
    pub seed: u64,
    /// Rows per update when `fit`/`step` are not given `batch=`.
    pub batch: usize,
    /// Passes over the training data when `fit` is not given `epochs=`.
    pub epochs: usize,
    /// L1 penalty weight (`regularize l1=`).
    pub l1: f64,
    /// L2 penalty weight (`regularize l2=`).
    pub l2: f64,
    /// Class weights of a classifier's training loss (`loss weights=`).
    pub class_weights: crate::train::ClassWeights,
    /// The compute precision of forward and backward passes (`precision`).
    pub precision: crate::train::Precision,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            seed: 42,
            batch: 32,
            epochs: 3,
            l1: 0.0,
            l2: 0.0,
            class_weights: crate::train::ClassWeights::None,
            precision: crate::train::Precision::F32,
        }
    }
}

/// How many undo entries are kept (each holds a copy of the weights and optimizer state).
pub const UNDO_DEPTH: usize = 5;

/// Models with at most this many scalars record their parameter path for `plot surface`
/// and show element-wise values in `step` and `show params`.
pub const SMALL_MODEL: usize = 32;
