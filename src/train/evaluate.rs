//! Losses and predictions without gradients, for validation, `eval` and `predict`.

use candle_core::{DType, D};

use crate::data::{Batch, Dataset, Split};
use crate::error::Result;
use crate::model::{Model, Pass};

/// Mean loss of `model` over `rows`, in chunks of `chunk`, building no gradient graph.
/// `None` when there are no rows.
pub fn mean_loss_rows(model: &dyn Model, data: &Dataset, rows: &[u32], chunk: usize) -> Result<Option<f64>> {
    if rows.is_empty() {
        return Ok(None);
    }
    let mut total = 0.0;
    for part in rows.chunks(chunk.max(1)) {
        let loss = model.loss(&data.batch(part)?, &mut Pass::eval())?;
        total += loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * part.len() as f64;
    }
    Ok(Some(total / rows.len() as f64))
}

/// Mean loss over a split (see [`mean_loss_rows`]).
pub fn mean_loss(model: &dyn Model, data: &Dataset, split: Split, chunk: usize) -> Result<Option<f64>> {
    mean_loss_rows(model, data, data.split(split), chunk)
}

/// What a classifier predicts for some rows (for texts cut into windows, one prediction per
/// text, from the mean of its windows' logits).
pub struct Predictions {
    /// The text (row of the data before any windowing) of each prediction.
    pub rows: Vec<u32>,
    /// The true class of each row.
    pub truth: Vec<u32>,
    /// The predicted class (argmax of the logits).
    pub predicted: Vec<u32>,
    /// Mean cross-entropy.
    pub loss: f64,
}

impl Predictions {
    /// Fraction of rows predicted correctly.
    pub fn accuracy(&self) -> f64 {
        let right = self.truth.iter().zip(&self.predicted).filter(|(a, b)| a == b).count();
        right as f64 / self.truth.len().max(1) as f64
    }
}

/// Class predictions of a classifier for `rows`, in chunks of `chunk`. Only the argmax and
/// the loss come back to the host — unless the texts were cut into windows, where the
/// logits come back to be pooled per text (see [`pool_windows`]).
pub fn classify_rows(model: &dyn Model, data: &Dataset, rows: &[u32], chunk: usize) -> Result<Predictions> {
    if let Some(owner) = data.text().and_then(|t| t.window_owner()) {
        return classify_windows(model, data, rows, owner, chunk);
    }
    let mut out = Predictions { rows: rows.to_vec(), truth: Vec::new(), predicted: Vec::new(), loss: 0.0 };
    for part in rows.chunks(chunk.max(1)) {
        let batch = data.batch(part)?;
        let logits = model.forward(&batch, &mut Pass::eval())?;
        if let Batch::Text { labels: Some(labels), .. } = &batch {
            let loss = crate::model::kernels::cross_entropy(&logits, labels)?;
            out.loss += loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * part.len() as f64;
            out.truth.extend(labels.to_vec1::<u32>()?);
        }
        out.predicted.extend(logits.argmax(D::Minus1)?.to_vec1::<u32>()?);
    }
    out.loss /= rows.len().max(1) as f64;
    Ok(out)
}

/// Windowed texts: the logits of every window, pooled per text by their mean; the loss is
/// the cross-entropy of the pooled logits.
fn classify_windows(
    model: &dyn Model,
    data: &Dataset,
    rows: &[u32],
    owner: &[u32],
    chunk: usize,
) -> Result<Predictions> {
    let (mut logits, mut truth) = (Vec::new(), Vec::new());
    for part in rows.chunks(chunk.max(1)) {
        let batch = data.batch(part)?;
        logits.extend(model.forward(&batch, &mut Pass::eval())?.to_dtype(DType::F32)?.to_vec2::<f32>()?);
        if let Batch::Text { labels: Some(labels), .. } = &batch {
            truth.extend(labels.to_vec1::<u32>()?);
        }
    }
    let owners: Vec<u32> = rows.iter().map(|&r| owner[r as usize]).collect();
    let (texts, pooled, first) = pool_windows(&logits, &owners);
    let mut out = Predictions { rows: texts, truth: Vec::new(), predicted: Vec::new(), loss: 0.0 };
    for (l, &f) in pooled.iter().zip(&first) {
        let best = l.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i);
        out.predicted.push(best as u32);
        if let Some(&t) = truth.get(f) {
            out.truth.push(t);
            let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max + l.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
            out.loss += lse - l[t as usize] as f64;
        }
    }
    out.loss /= pooled.len().max(1) as f64;
    Ok(out)
}

/// The mean of the logit rows of each owner, owners in order of first appearance. Returns
/// the owners, their pooled logits, and the index of each owner's first row.
pub fn pool_windows(logits: &[Vec<f32>], owners: &[u32]) -> (Vec<u32>, Vec<Vec<f32>>, Vec<usize>) {
    let mut slot = std::collections::HashMap::new();
    let (mut texts, mut sums, mut counts, mut first) =
        (Vec::new(), Vec::<Vec<f32>>::new(), Vec::new(), Vec::new());
    for (i, (l, &o)) in logits.iter().zip(owners).enumerate() {
        let k = *slot.entry(o).or_insert_with(|| {
            texts.push(o);
            sums.push(vec![0.0; l.len()]);
            counts.push(0usize);
            first.push(i);
            texts.len() - 1
        });
        sums[k].iter_mut().zip(l).for_each(|(s, x)| *s += x);
        counts[k] += 1;
    }
    for (s, c) in sums.iter_mut().zip(&counts) {
        s.iter_mut().for_each(|x| *x /= *c as f32);
    }
    (texts, sums, first)
}

#[cfg(test)]
mod tests {
    use super::pool_windows;

    #[test]
    fn windows_pool_by_mean_in_order_of_first_appearance() {
        let logits = vec![vec![1.0, 0.0], vec![0.0, 4.0], vec![3.0, 2.0], vec![5.0, 0.0]];
        let (texts, pooled, first) = pool_windows(&logits, &[7, 3, 7, 3]);
        assert_eq!(texts, [7, 3]);
        assert_eq!(pooled, [vec![2.0, 1.0], vec![2.5, 2.0]]);
        assert_eq!(first, [0, 1]);
    }
}
