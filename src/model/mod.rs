//! Models: the trainable modules and what the session needs to know about them.
//!
//! Every model family implements [`Model`]: named [`Params`], a loss on a [`Batch`], an
//! HF-style `config.json`. The trainable forward passes use only ops with a backward pass
//! (see shared/CANDLE.md: candle's fused norms, softmax and rope cut the graph).

pub mod adalora;
pub mod bert;
pub mod bottleneck;
pub mod causal;
pub mod gpt2;
pub mod hub;
mod io;
pub mod kernels;
pub mod layers;
mod linear;
pub mod llama;
pub mod lora;
mod params;
pub mod peft;
pub mod prompt;
pub mod quantized;

pub use io::{
    config_labels, is_causal_family, load_causal_model, load_model, load_text_model, model_type, put_labels,
    read_checkpoint, read_json, read_tensors, save_model, save_tokenizer, write_tensors,
};
pub use linear::{Init, Linear};
pub use params::{name_matches, Param, Params};

use candle_core::{Device, Tensor};

use crate::data::{Batch, TextTokenizer};
use crate::error::Result;
use layers::Dropout;

/// Checks a text model's tokenizer fits its embedding table (a bigger vocabulary would index
/// past it).
pub(crate) fn check_vocab(tokenizer: &TextTokenizer, vocab_size: usize) -> Result<()> {
    let tv = tokenizer.vocab_size();
    if tv > vocab_size {
        crate::error::bail!(
            "the tokenizer has {tv} tokens but the model's vocab_size is {vocab_size}; use the tokenizer the model was trained with"
        )
    }
    Ok(())
}

/// How a forward pass runs: whether it builds the gradient graph for trainable parameters,
/// and where its dropout masks come from.
pub struct Pass {
    /// Track gradients of trainable parameters (and apply dropout).
    pub train: bool,
    /// Dropout masks (disabled when evaluating).
    pub dropout: Dropout,
}

impl Pass {
    /// Evaluation: no graph, no dropout.
    pub fn eval() -> Pass {
        Pass { train: false, dropout: Dropout::disabled() }
    }

    /// Training, with dropout masks seeded by `seed`.
    pub fn train(seed: u64) -> Pass {
        Pass { train: true, dropout: Dropout::seeded(seed) }
    }
}

/// What a model predicts, which decides its loss, metrics and `eval` report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// A number (mean squared error).
    Regression,
    /// One of several classes (cross-entropy; accuracy, precision, recall, F1).
    Classify,
    /// Masked tokens (masked-LM cross-entropy).
    MaskedLm,
    /// The next token (causal-LM cross-entropy; perplexity; generation).
    CausalLm,
}

/// A model the session can train, evaluate and save.
pub trait Model: Send {
    /// The family name used in `config.json`'s `model_type` and messages ("linear").
    fn family(&self) -> &'static str;

    /// One line for `show model`.
    fn describe(&self) -> String;

    /// What the model predicts.
    fn task(&self) -> Task;

    /// The weights.
    fn params(&self) -> &Params;

    /// The weights, to change which are trainable.
    fn params_mut(&mut self) -> &mut Params;

    /// The model's outputs for a batch (regression: `[n, 1]`; classification: logits
    /// `[n, labels]`).
    fn forward(&self, batch: &Batch, pass: &mut Pass) -> Result<Tensor>;

    /// The mean loss over a batch (a scalar tensor).
    fn loss(&self, batch: &Batch, pass: &mut Pass) -> Result<Tensor>;

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

    /// The tokenizer of a text model.
    fn tokenizer(&self) -> Option<&TextTokenizer> {
        None
    }

    /// Class names of a classifier, by class id.
    fn labels(&self) -> Option<&[String]> {
        None
    }

    /// Renames a classifier's classes (re-initialising its output layer from `rng` when
    /// their number changes).
    fn set_labels(&mut self, _labels: Vec<String>, _rng: &mut rand::rngs::StdRng) -> Result<()> {
        Err(crate::error::Error::invalid(format!("the {} model has no class labels", self.family())))
    }

    /// The dropout probability used in training (`None` for models without dropout).
    fn dropout(&self) -> Option<f64> {
        None
    }

    /// Sets every dropout probability of the model.
    fn set_dropout(&mut self, _p: f64) -> Result<()> {
        Err(crate::error::Error::invalid(format!("the {} model has no dropout", self.family())))
    }

    /// Number of numeric inputs, for models of numeric data (`None` for text models).
    fn input_dims(&self) -> Option<usize> {
        None
    }

    /// The model as a text generator, for causal language models.
    fn causal(&self) -> Option<&dyn causal::CausalLm> {
        None
    }

    /// Whether the 2-d weight `name` is stored `[in, out]` (GPT-2's Conv1D, peft's
    /// `fan_in_fan_out`) rather than `[out, in]` as `layers::linear` takes it. LoRA
    /// transposes its update for these.
    fn fan_in_fan_out(&self, _name: &str) -> bool {
        false
    }

    /// The modules `lora` adapts when no `target=` is given (peft's defaults for the
    /// family, e.g. `query`, `value` for BERT); empty when `target=` is required.
    fn lora_targets(&self) -> &'static [&'static str] {
        &[]
    }

    /// The sites where `adapter size=N` puts bottleneck adapters, with their widths; the
    /// forward pass sends each site's output through [`Params::adapt`]. Empty when the
    /// family has none.
    fn adapter_sites(&self) -> Vec<(String, usize)> {
        Vec::new()
    }

    /// Starts a fresh output layer from the data: sets an untrained masked-LM head's output
    /// bias (still all zeros) to the log frequencies of the training tokens, so the first
    /// updates need not learn how common each token is through the embeddings. `counts`
    /// gives them by token id (ids past its end count zero); it is called only when the head
    /// is fresh. Returns the loss of predicting those frequencies on the counted tokens
    /// (nats), or `None` when the model has no such head or it has been trained.
    fn start_from_token_prior(&mut self, _counts: &dyn Fn() -> Result<Vec<u64>>) -> Result<Option<f64>> {
        Ok(None)
    }

    /// The same model (weights and trainable flags) on another device.
    fn to_device(&self, device: &Device) -> Result<Box<dyn Model>>;
}
