//! Σ x² of a gradient in one read, for the global gradient norm: the composite
//! `g.sqr().sum_all()` writes a gradient-sized temporary and reads it back, for every
//! parameter at every step.

use candle_core::{DType, Storage, Tensor};

use super::Real;
use crate::error::Result;

/// Elements per parallel task. `train_step` bounds each gradient's largest |g| by its
/// norm with a margin that holds for at most 4096 squares per lane (`BLOCK` / 8 lanes).
const BLOCK: usize = 1 << 15;

/// Σ x² over every element of `t`, as a 0-dimensional f64 tensor on `t`'s device: one
/// pass over a contiguous f32/f64 CPU tensor (blocks summed in a fixed order, so the same
/// bits on any number of threads), the composite ops elsewhere.
pub fn sum_squares(t: &Tensor) -> Result<Tensor> {
    if super::fusable(t) {
        let sum = match t.dtype() {
            DType::F32 => fused::<f32>(t),
            _ => fused::<f64>(t),
        };
        if let Some(sum) = sum {
            super::count_call();
            return Ok(Tensor::new(sum, t.device())?);
        }
    }
    Ok(t.sqr()?.sum_all()?.to_dtype(DType::F64)?)
}

/// The sum for a contiguous CPU tensor of `T`, or `None` for any other layout.
fn fused<T: Real>(t: &Tensor) -> Option<f64> {
    use rayon::prelude::*;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { return None };
    let (start, end) = layout.contiguous_offsets()?;
    let xs = &T::slice(cpu)?[start..end];
    let partials: Vec<f64> = if xs.len() > 2 * BLOCK {
        xs.par_chunks(BLOCK).map(squares::<T>).collect()
    } else {
        xs.chunks(BLOCK).map(squares::<T>).collect()
    };
    Some(partials.iter().sum())
}

super::avx512_twin! {
    /// Σ x² of one block.
    fn squares<T: Real>(c: &[T]) -> f64 {
        super::sum_map(c, |x| x * x).to_f64()
    }
}
