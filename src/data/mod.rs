//! Data sets: reading, generating, cleaning, splitting, tokenizing and batching.
//!
//! A [`Dataset`] lives on the session's device once loaded (text once tokenized); batches
//! are gathered from it with an index tensor, so training moves no data back to the host.

mod balance;
mod corpus;
mod numeric;
mod split;
mod synthetic;
mod table;
mod text;
mod tokenize;

pub use balance::{balance, Balance};
pub use corpus::read_corpus;
pub use numeric::{HostRows, NumericData};
pub use split::{split_indices, Split};
pub use synthetic::linear as synthetic_linear;
pub use table::TextTable;
pub use text::{augment, clean, CleanReport, LabelSet, Labelled, TextData, TextOptions};
pub use tokenize::TextTokenizer;

use candle_core::{Device, Tensor};

use crate::error::Result;

/// A batch of inputs (and targets, when known) for a model.
#[derive(Clone, Debug)]
pub enum Batch {
    /// Numeric inputs `x: [n, d]` and targets `y: [n, 1]` (f32).
    Regression {
        /// Inputs.
        x: Tensor,
        /// Targets, absent when predicting.
        y: Option<Tensor>,
    },
    /// Token ids `[n, len]` (u32, padded), attention mask `[n, len]` (u32: 1 = token,
    /// 0 = padding), and class labels `[n]` (u32) when known.
    Text {
        /// Token ids.
        ids: Tensor,
        /// Attention mask.
        mask: Tensor,
        /// Class indices.
        labels: Option<Tensor>,
    },
}

/// A loaded data set.
#[derive(Clone, Debug)]
pub enum Dataset {
    /// Numeric columns for regression.
    Numeric(NumericData),
    /// Labelled text for classification (or unlabelled for language modelling).
    Text(TextData),
}

impl Dataset {
    /// Where it came from.
    pub fn source(&self) -> &str {
        match self {
            Dataset::Numeric(d) => &d.source,
            Dataset::Text(d) => &d.source,
        }
    }

    /// Number of rows (samples).
    pub fn len(&self) -> usize {
        match self {
            Dataset::Numeric(d) => d.len(),
            Dataset::Text(d) => d.len(),
        }
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row indices of a split.
    pub fn split(&self, s: Split) -> &[u32] {
        match self {
            Dataset::Numeric(d) => d.split(s),
            Dataset::Text(d) => d.split(s),
        }
    }

    /// Gathers rows into a batch (text must be tokenized first).
    pub fn batch(&self, idx: &[u32]) -> Result<Batch> {
        match self {
            Dataset::Numeric(d) => d.batch(idx),
            Dataset::Text(d) => d.batch(idx),
        }
    }

    /// The same data on another device.
    pub fn to_device(&self, device: &Device) -> Result<Dataset> {
        Ok(match self {
            Dataset::Numeric(d) => Dataset::Numeric(d.to_device(device)?),
            Dataset::Text(d) => Dataset::Text(d.to_device(device)?),
        })
    }

    /// Bytes held on the device.
    pub fn device_bytes(&self) -> usize {
        match self {
            Dataset::Numeric(d) => d.device_bytes(),
            Dataset::Text(d) => d.device_bytes(),
        }
    }

    /// The numeric data, if this is numeric.
    pub fn numeric(&self) -> Option<&NumericData> {
        match self {
            Dataset::Numeric(d) => Some(d),
            Dataset::Text(_) => None,
        }
    }

    /// The text data, if this is text.
    pub fn text(&self) -> Option<&TextData> {
        match self {
            Dataset::Text(d) => Some(d),
            Dataset::Numeric(_) => None,
        }
    }
}
