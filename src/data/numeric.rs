//! Numeric tables for regression: inputs `x: [n, d]` and targets `y: [n, 1]` on the device.

use candle_core::{DType, Device, Tensor};

use super::{split_indices, Batch, Split};
use crate::error::{bail, Result};
use crate::uploads::{self, Upload};

/// A numeric table for regression, split into train/valid/test.
#[derive(Clone, Debug)]
pub struct NumericData {
    /// Where it came from (a path, or "synthetic linear w=3 b=2 noise=0.1").
    pub source: String,
    /// Input column names.
    pub inputs: Vec<String>,
    /// Target column name.
    pub target: String,
    x: Tensor,
    y: Tensor,
    host_x: Vec<f64>,
    host_y: Vec<f64>,
    splits: [Vec<u32>; 3],
}

/// One split's rows on the host, for closed-form solutions and plots.
pub struct HostRows<'a> {
    /// Row-major inputs, `d` values per row.
    pub x: Vec<&'a [f64]>,
    /// Targets.
    pub y: Vec<f64>,
}

impl NumericData {
    /// A data set from rows of inputs and targets, split by `fractions` after an optional
    /// shuffle with `rng`, and uploaded to `device`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        source: String,
        inputs: Vec<String>,
        target: String,
        rows: Vec<Vec<f64>>,
        y: Vec<f64>,
        fractions: &[f64],
        shuffle: bool,
        rng: &mut impl rand::Rng,
        device: &Device,
    ) -> Result<NumericData> {
        let n = rows.len();
        let d = inputs.len();
        if n == 0 {
            bail!("the data has no rows")
        }
        if n != y.len() || rows.iter().any(|r| r.len() != d) {
            bail!("every row needs {d} input value(s) and one target")
        }
        let splits = split_indices(n, fractions, shuffle, rng)?;
        let host_x: Vec<f64> = rows.into_iter().flatten().collect();
        let x = Tensor::from_vec(host_x.iter().map(|v| *v as f32).collect::<Vec<_>>(), (n, d), device)?;
        let yt = Tensor::from_vec(y.iter().map(|v| *v as f32).collect::<Vec<_>>(), (n, 1), device)?;
        uploads::note(Upload::Data, device, 2);
        Ok(NumericData { source, inputs, target, x, y: yt, host_x, host_y: y, splits })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.host_y.len()
    }

    /// Whether there are no rows (never true for a constructed data set).
    pub fn is_empty(&self) -> bool {
        self.host_y.is_empty()
    }

    /// Number of input columns.
    pub fn dims(&self) -> usize {
        self.inputs.len()
    }

    /// Row indices of a split.
    pub fn split(&self, s: Split) -> &[u32] {
        &self.splits[s as usize]
    }

    /// Gathers the rows `idx` into a batch on the data's device.
    pub fn batch(&self, idx: &[u32]) -> Result<Batch> {
        let ids = Tensor::from_slice(idx, idx.len(), self.x.device())?;
        Ok(Batch::Regression { x: self.x.index_select(&ids, 0)?, y: Some(self.y.index_select(&ids, 0)?) })
    }

    /// The whole split as one batch.
    pub fn split_batch(&self, s: Split) -> Result<Batch> {
        self.batch(self.split(s))
    }

    /// The rows of a split on the host.
    pub fn host_rows(&self, s: Split) -> HostRows<'_> {
        let d = self.dims();
        let idx = self.split(s);
        HostRows {
            x: idx.iter().map(|&i| &self.host_x[i as usize * d..(i as usize + 1) * d]).collect(),
            y: idx.iter().map(|&i| self.host_y[i as usize]).collect(),
        }
    }

    /// The same data on another device.
    pub fn to_device(&self, device: &Device) -> Result<NumericData> {
        let x = uploads::to_device(&self.x, device, Upload::Data)?;
        let y = uploads::to_device(&self.y, device, Upload::Data)?;
        Ok(NumericData { x, y, ..self.clone() })
    }

    /// Bytes the data holds on its device.
    pub fn device_bytes(&self) -> usize {
        (self.x.elem_count() + self.y.elem_count()) * DType::F32.size_in_bytes()
    }
}
