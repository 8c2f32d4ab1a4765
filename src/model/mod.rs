//! Models: the trainable modules and what the session needs to know about them.
//!
//! Every model family implements [`Model`]: named [`Params`], a loss on a [`Batch`], an
//! HF-style `config.json`. The trainable forward passes use only ops with a backward pass
//! (see shared/CANDLE.md: candle's fused norms, softmax and rope cut the graph).

mod io;
mod linear;
mod params;

pub use io::{load_model, read_json, read_tensors, save_model, write_tensors};
pub use linear::{Init, Linear};
pub use params::{name_matches, Param, Params};

use candle_core::{Device, Tensor};

use crate::data::Batch;
use crate::error::Result;

/// A model the session can train, evaluate and save.
pub trait Model: Send {
    /// The family name used in `config.json`'s `model_type` and messages ("linear").
    fn family(&self) -> &'static str;

    /// One line for `show model`.
    fn describe(&self) -> String;

    /// The weights.
    fn params(&self) -> &Params;

    /// The weights, to change which are trainable.
    fn params_mut(&mut self) -> &mut Params;

    /// The model's outputs for a batch. With `train`, trainable parameters are tracked
    /// for gradients; without, no graph is built.
    fn forward(&self, batch: &Batch, train: bool) -> Result<Tensor>;

    /// The mean loss over a batch (a scalar tensor).
    fn loss(&self, batch: &Batch, train: bool) -> Result<Tensor>;

    /// `config.json` contents, in the layout Hugging Face tools read.
    fn config(&self) -> serde_json::Value;

    /// Parameter-name patterns for a group name the user may type in `freeze`
    /// (`w` → `weight` for the linear model). `None` when `name` is no group.
    fn group(&self, _name: &str) -> Option<Vec<String>> {
        None
    }

    /// Group names offered to the user.
    fn group_names(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Number of numbered layers (for `freeze layers=0..8`).
    fn layer_count(&self) -> usize {
        0
    }

    /// Parameter-name prefix of layer `i`.
    fn layer_prefix(&self, i: usize) -> String {
        format!("layers.{i}")
    }

    /// Number of numeric inputs, for models of numeric data (`None` for text models).
    fn input_dims(&self) -> Option<usize> {
        None
    }

    /// The same model (weights and trainable flags) on another device.
    fn to_device(&self, device: &Device) -> Result<Box<dyn Model>>;
}
