//! Train/valid/test splits.

use rand::seq::SliceRandom;

use crate::error::{bail, Result};

/// Which part of a data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Rows the model trains on.
    Train = 0,
    /// Rows for the per-epoch validation loss.
    Valid = 1,
    /// Rows held out for `eval`.
    Test = 2,
}

impl Split {
    /// All three, in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

    /// The name used in commands (`train`, `valid`, `test`).
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }

    /// The split called `name`.
    pub fn from_name(name: &str) -> Option<Split> {
        Split::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Row indices for each split. `fractions` has 2 (train/valid) or 3 (train/valid/test)
/// entries summing to 1. Sizes are rounded, the test split takes the remainder, and the
/// training split always has at least one row.
pub fn split_indices(
    n: usize,
    fractions: &[f64],
    shuffle: bool,
    rng: &mut impl rand::Rng,
) -> Result<[Vec<u32>; 3]> {
    if !(2..=3).contains(&fractions.len()) {
        bail!("split needs 2 or 3 fractions, like 0.8/0.1/0.1")
    }
    let mut order: Vec<u32> = (0..n as u32).collect();
    if shuffle {
        order.shuffle(rng);
    }
    let n_train = ((n as f64 * fractions[0]).round() as usize).clamp(1, n);
    let n_valid = if fractions.len() == 2 {
        n - n_train
    } else {
        ((n as f64 * fractions[1]).round() as usize).min(n - n_train)
    };
    let test = order.split_off(n_train + n_valid);
    let valid = order.split_off(n_train);
    Ok([order, valid, test])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn splits_partition_the_rows() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let [tr, va, te] = split_indices(1000, &[0.8, 0.1, 0.1], true, &mut rng).unwrap();
        assert_eq!((tr.len(), va.len(), te.len()), (800, 100, 100));
        let mut all: Vec<u32> = tr.iter().chain(&va).chain(&te).copied().collect();
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        let [tr, va, te] = split_indices(10, &[0.7, 0.3], false, &mut rng).unwrap();
        assert_eq!((tr.len(), va.len(), te.len()), (7, 3, 0));
        assert_eq!(tr, (0..7).collect::<Vec<_>>());
        let [tr, _, _] = split_indices(1, &[0.1, 0.9], true, &mut rng).unwrap();
        assert_eq!(tr.len(), 1);
    }
}
