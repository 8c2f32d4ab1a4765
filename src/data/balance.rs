//! Evening out the labels of a training split (`data … balance=`), the data-side remedy for
//! imbalanced classes. Validation and test splits are never resampled.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

/// How to even out the classes of the training split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    /// Repeat randomly chosen rows of each smaller class until it has as many as the largest.
    Oversample,
    /// Keep a random subset of each larger class as large as the smallest.
    Undersample,
}

impl Balance {
    /// `oversample` / `undersample` (`none` and anything else: `None`).
    pub fn from_name(name: &str) -> Option<Balance> {
        match name {
            "oversample" => Some(Balance::Oversample),
            "undersample" => Some(Balance::Undersample),
            _ => None,
        }
    }
}

/// The rows of `train` resampled so every class present has the same count, shuffled.
/// `labels[i]` is the class of row `i`. Classes absent from `train` stay absent.
pub fn balance(train: &[u32], labels: &[u32], how: Balance, rng: &mut impl Rng) -> Vec<u32> {
    let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut by_class: Vec<Vec<u32>> = vec![Vec::new(); classes];
    for &i in train {
        by_class[labels[i as usize] as usize].push(i);
    }
    let present = by_class.iter().filter(|c| !c.is_empty());
    let target = match how {
        Balance::Oversample => present.map(Vec::len).max().unwrap_or(0),
        Balance::Undersample => present.map(Vec::len).min().unwrap_or(0),
    };
    let mut out = Vec::new();
    for mut rows in by_class.into_iter().filter(|c| !c.is_empty()) {
        rows.shuffle(rng);
        if rows.len() >= target {
            rows.truncate(target);
        } else {
            let extra: Vec<u32> =
                (0..target - rows.len()).map(|_| *rows.choose(rng).expect("non-empty")).collect();
            rows.extend(extra);
        }
        out.extend(rows);
    }
    out.shuffle(rng);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn both_ways_even_out_the_classes() {
        let labels: Vec<u32> = (0..70).map(|i| u32::from(i >= 60)).collect();
        let train: Vec<u32> = (0..70).collect();
        let count = |rows: &[u32], c: u32| rows.iter().filter(|&&i| labels[i as usize] == c).count();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let over = balance(&train, &labels, Balance::Oversample, &mut rng);
        assert_eq!((count(&over, 0), count(&over, 1)), (60, 60));
        let under = balance(&train, &labels, Balance::Undersample, &mut rng);
        assert_eq!((count(&under, 0), count(&under, 1)), (10, 10));
        let mut again = rand::rngs::StdRng::seed_from_u64(0);
        assert_eq!(balance(&train, &labels, Balance::Oversample, &mut again), over, "seeded");
    }
}
