//! Class-weighted cross-entropy, the remedy for imbalanced classes (`loss weights=`).

use candle_core::{DType, Tensor, D};

use crate::error::{bail, Result};

/// How classes are weighted in the training loss.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ClassWeights {
    /// Every row counts the same (plain cross-entropy).
    #[default]
    None,
    /// Inverse class frequency of the training split, `n / (k · n_c)` (scikit-learn's
    /// `class_weight="balanced"`): a balanced split gets weight 1 for every class.
    Auto,
    /// A weight per class id.
    Given(Vec<f64>),
}

impl ClassWeights {
    /// `none`, `auto` or `[w0, w1, …]`, as `loss` shows it.
    pub fn describe(&self) -> String {
        match self {
            ClassWeights::None => "none".into(),
            ClassWeights::Auto => "auto".into(),
            ClassWeights::Given(w) => {
                format!("[{}]", w.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "))
            }
        }
    }

    /// The weight of each of `counts.len()` classes, given the rows per class of the
    /// training split; `None` for unweighted. A given list must have one weight per class.
    pub fn resolve(&self, counts: &[usize]) -> Result<Option<Vec<f32>>> {
        match self {
            ClassWeights::None => Ok(None),
            ClassWeights::Auto => Ok(Some(inverse_frequency(counts))),
            ClassWeights::Given(w) if w.len() != counts.len() => bail!(
                "loss weights= has {} weight(s) but the data has {} classes; give one per class or `loss weights=auto`",
                w.len(),
                counts.len()
            ),
            ClassWeights::Given(w) => Ok(Some(w.iter().map(|x| *x as f32).collect())),
        }
    }
}

/// `n / (k · n_c)` for each class (0 for a class with no rows, which never occurs in the
/// loss anyway).
pub fn inverse_frequency(counts: &[usize]) -> Vec<f32> {
    let n: usize = counts.iter().sum();
    let k = counts.len().max(1);
    counts.iter().map(|&c| if c == 0 { 0.0 } else { (n as f64 / (k * c) as f64) as f32 }).collect()
}

/// Weighted mean cross-entropy as PyTorch's `F.cross_entropy(logits, labels, weight=w)`:
/// `Σ_i w[y_i] · (−log softmax(logits_i)[y_i]) / Σ_i w[y_i]`. `logits` is `[n, k]`,
/// `labels` `[n]` (u32), `weights` has `k` entries. Built from ops with a backward pass.
pub fn weighted_cross_entropy(logits: &Tensor, labels: &Tensor, weights: &[f32]) -> Result<Tensor> {
    let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = log_p.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?;
    let w = Tensor::from_slice(weights, weights.len(), logits.device())?.to_dtype(logits.dtype())?;
    let row_w = w.index_select(labels, 0)?;
    let total = row_w.sum_all()?;
    let denom = total.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    if denom <= 0.0 {
        bail!("every row of the batch has class weight 0; give each class a positive weight")
    }
    Ok((picked * row_w)?.sum_all()?.neg()?.affine(1.0 / denom, 0.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn inverse_frequency_is_balanced() {
        assert_eq!(inverse_frequency(&[10, 10]), [1.0, 1.0]);
        assert_eq!(inverse_frequency(&[60, 10]), [70.0 / 120.0, 3.5]);
    }

    /// Numbers from `torch.nn.functional.cross_entropy(logits, y, weight=w)`.
    #[test]
    fn matches_pytorch() {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[1.0f32, 2.0, 0.5], [0.1, -1.0, 2.0], [0.3, 0.3, 0.3]], &dev).unwrap();
        let y = Tensor::new(&[0u32, 2, 1], &dev).unwrap();
        let plain = weighted_cross_entropy(&logits, &y, &[1.0, 1.0, 1.0]).unwrap();
        let reference = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
        let (a, b) = (plain.to_scalar::<f32>().unwrap(), reference.to_scalar::<f32>().unwrap());
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        // F.cross_entropy(torch.tensor(logits), torch.tensor([0,2,1]), weight=torch.tensor([2.,1.,0.5]))
        let w = weighted_cross_entropy(&logits, &y, &[2.0, 1.0, 0.5]).unwrap().to_scalar::<f32>().unwrap();
        assert!((w - 1.1766406).abs() < 1e-5, "{w}");
    }
}
