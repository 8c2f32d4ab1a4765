//! Regression metrics and the closed-form least-squares answer gradient descent is
//! compared with.

use crate::error::{bail, Result};

/// Mean squared error of y ≈ x·w + b over rows `x`.
pub fn mse(x: &[&[f64]], y: &[f64], w: &[f64], b: f64) -> f64 {
    let n = y.len().max(1) as f64;
    x.iter()
        .zip(y)
        .map(|(row, y)| {
            let pred: f64 = row.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() + b;
            (pred - y).powi(2)
        })
        .sum::<f64>()
        / n
}

/// Mean absolute error of predictions `pred` against targets `y` (the metric the FAQ
/// names beside the MSE: in the target's own unit, and less swayed by a few large errors).
pub fn mae(pred: &[f64], y: &[f64]) -> f64 {
    pred.iter().zip(y).map(|(p, y)| (p - y).abs()).sum::<f64>() / y.len().max(1) as f64
}

/// Predictions of y ≈ x·w + b for rows `x`.
pub fn linear_predictions(x: &[&[f64]], w: &[f64], b: f64) -> Vec<f64> {
    x.iter().map(|row| row.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() + b).collect()
}

/// Ordinary least squares with an intercept: the `(w, b)` minimising the MSE exactly,
/// from the normal equations (XᵀX)β = Xᵀy solved by Gaussian elimination with pivoting.
#[allow(clippy::needless_range_loop)] // index form mirrors the matrix algebra
pub fn least_squares(x: &[&[f64]], y: &[f64]) -> Result<(Vec<f64>, f64)> {
    let d = x.first().map_or(0, |r| r.len());
    if x.len() <= d {
        bail!("the closed form needs more rows ({}) than inputs + 1 ({})", x.len(), d + 1)
    }
    let k = d + 1;
    // Augmented matrix [XᵀX | Xᵀy] with a column of ones appended to X.
    let mut a = vec![vec![0.0; k + 1]; k];
    for (row, &yv) in x.iter().zip(y) {
        let xa = |i: usize| if i < d { row[i] } else { 1.0 };
        for i in 0..k {
            for j in 0..k {
                a[i][j] += xa(i) * xa(j);
            }
            a[i][k] += xa(i) * yv;
        }
    }
    for col in 0..k {
        let pivot = (col..k).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).unwrap_or(col);
        a.swap(col, pivot);
        let scale = a.iter().map(|r| r[col].abs()).fold(0.0, f64::max).max(1.0);
        if a[col][col].abs() < 1e-12 * scale {
            bail!("the closed form is undefined: the inputs are collinear (or constant)")
        }
        for r in 0..k {
            if r != col {
                let f = a[r][col] / a[col][col];
                for c in col..=k {
                    a[r][c] -= f * a[col][c];
                }
            }
        }
    }
    let beta: Vec<f64> = (0..k).map(|i| a[i][k] / a[i][i]).collect();
    Ok((beta[..d].to_vec(), beta[d]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mae_is_the_mean_absolute_error() {
        assert_eq!(mae(&[1.0, 2.0, 5.0], &[2.0, 2.0, 2.0]), 4.0 / 3.0);
        let x: Vec<&[f64]> = vec![&[1.0], &[2.0]];
        assert_eq!(linear_predictions(&x, &[3.0], 1.0), [4.0, 7.0]);
    }

    #[test]
    fn recovers_an_exact_plane() {
        let rows: Vec<Vec<f64>> = (0..20).map(|i| vec![i as f64, ((i * 7) % 5) as f64]).collect();
        let y: Vec<f64> = rows.iter().map(|r| 3.0 * r[0] - 2.0 * r[1] + 0.5).collect();
        let x: Vec<&[f64]> = rows.iter().map(|r| r.as_slice()).collect();
        let (w, b) = least_squares(&x, &y).unwrap();
        assert!((w[0] - 3.0).abs() < 1e-9 && (w[1] + 2.0).abs() < 1e-9 && (b - 0.5).abs() < 1e-9);
        assert!(mse(&x, &y, &w, b) < 1e-18);
    }

    #[test]
    fn collinear_inputs_are_an_error() {
        let rows: Vec<Vec<f64>> = (0..5).map(|i| vec![i as f64, 2.0 * i as f64]).collect();
        let x: Vec<&[f64]> = rows.iter().map(|r| r.as_slice()).collect();
        let e = least_squares(&x, &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap_err().to_string();
        assert!(e.contains("collinear"), "{e}");
    }
}
