//! Losses without gradients, for validation and `eval`.

use crate::data::{Dataset, Split};
use crate::error::Result;
use crate::model::Model;

/// Mean loss of `model` over a split, in chunks of `chunk` rows, building no gradient
/// graph. `None` when the split is empty.
pub fn mean_loss(model: &dyn Model, data: &Dataset, split: Split, chunk: usize) -> Result<Option<f64>> {
    let rows = data.split(split);
    if rows.is_empty() {
        return Ok(None);
    }
    let mut total = 0.0;
    for part in rows.chunks(chunk.max(1)) {
        let loss = model.loss(&data.batch(part)?, false)?;
        total += loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()? * part.len() as f64;
    }
    Ok(Some(total / rows.len() as f64))
}
