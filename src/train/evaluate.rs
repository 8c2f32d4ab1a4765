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

/// What a classifier predicts for some rows.
pub struct Predictions {
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
/// the loss come back to the host.
pub fn classify_rows(model: &dyn Model, data: &Dataset, rows: &[u32], chunk: usize) -> Result<Predictions> {
    let mut out = Predictions { truth: Vec::new(), predicted: Vec::new(), loss: 0.0 };
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
