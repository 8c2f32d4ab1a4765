//! Synthetic data for teaching: y = w·x + b + noise.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// `n` rows with x drawn from a standard normal per input (one input per weight) and
/// y = w·x + b + ε, ε ~ N(0, noise²) — the data of `torch.randn` in walkthrough 5.
pub fn linear(n: usize, w: &[f64], b: f64, noise: f64, rng: &mut impl Rng) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut rows = Vec::with_capacity(n);
    let mut ys = Vec::with_capacity(n);
    for _ in 0..n {
        let x: Vec<f64> = w.iter().map(|_| StandardNormal.sample(rng)).collect();
        let e: f64 = StandardNormal.sample(rng);
        ys.push(x.iter().zip(w).map(|(x, w)| x * w).sum::<f64>() + b + noise * e);
        rows.push(x);
    }
    (rows, ys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn noiseless_data_lies_on_the_plane() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let (x, y) = linear(50, &[3.0, -1.0], 2.0, 0.0, &mut rng);
        for (r, y) in x.iter().zip(&y) {
            assert!((3.0 * r[0] - r[1] + 2.0 - y).abs() < 1e-12);
        }
    }
}
