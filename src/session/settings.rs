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

/// How many undo entries are kept at most (each holds a copy of the weights and optimizer
/// state).
pub const UNDO_DEPTH: usize = 5;

/// Bytes the undo entries of a model on `device` may hold together: an eighth of that
/// device's memory (host memory for the CPU). The newest entry is kept whatever its size,
/// so `undo` always reverts the last command; older ones go first when the budget is
/// spent. Five entries of AdamW state are fifteen copies of the weights: GPT-2 small's
/// came to 7.5 GB, and each new one was fresh memory to fault in (measured 2026-12-07).
pub fn undo_budget(device: &candle_core::Device) -> usize {
    let total = crate::device_memory::total(device).map_or_else(crate::host_memory::physical, |t| t as usize);
    total / 8
}

/// How many of the oldest undo entries (of `held` bytes each, oldest first) to drop before
/// one of `incoming` bytes is pushed: the fewest that leave at most [`UNDO_DEPTH`] entries
/// within `budget` bytes, the new one included — or all of them, when the new one alone
/// is over the budget.
pub fn undo_evictions(held: &[usize], incoming: usize, budget: usize) -> usize {
    let mut total: usize = held.iter().sum::<usize>() + incoming;
    let mut drop = 0;
    while drop < held.len() && (held.len() - drop >= UNDO_DEPTH || total > budget) {
        total -= held[drop];
        drop += 1;
    }
    drop
}

/// Models with at most this many scalars record their parameter path for `plot surface`
/// and show element-wise values in `step` and `show params`.
pub const SMALL_MODEL: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_entries_go_oldest_first_when_over_the_depth_or_the_budget() {
        // Under both limits: nothing goes.
        assert_eq!(undo_evictions(&[], 10, 100), 0);
        assert_eq!(undo_evictions(&[10, 10], 10, 100), 0);
        // At the depth: the oldest goes to make room for the new one.
        assert_eq!(undo_evictions(&[1; UNDO_DEPTH], 1, 100), 1);
        // Over the budget: the oldest go until the rest and the new one fit (30 + 40 + 40
        // is over 100, 40 + 40 is not).
        assert_eq!(undo_evictions(&[30, 40], 40, 100), 1);
        assert_eq!(undo_evictions(&[60, 10, 20], 30, 60), 1);
        assert_eq!(undo_evictions(&[60, 10, 20], 35, 60), 2);
        // A new entry alone over the budget: every older one goes, the new one stays.
        assert_eq!(undo_evictions(&[5, 5], 200, 100), 2);
    }

    #[test]
    fn the_undo_budget_is_an_eighth_of_the_host_memory_on_the_cpu() {
        let budget = undo_budget(&candle_core::Device::Cpu);
        assert_eq!(budget, crate::host_memory::physical() / 8);
        assert!(budget > 0);
    }
}
