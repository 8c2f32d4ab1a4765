//! BERT's `config.json`: the fields the forward pass needs, the rest kept verbatim so a
//! saved model keeps everything its source had.

use serde::{Deserialize, Serialize};

use super::Flavour;
use crate::error::{bail, Error, Result};

fn dropout_default() -> f64 {
    0.1
}
fn eps_default() -> f64 {
    1e-12
}
fn init_default() -> f64 {
    0.02
}
fn act_default() -> String {
    "gelu".into()
}
fn two() -> usize {
    2
}

/// The shape and hyper-parameters of a BERT encoder (Hugging Face field names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Activation of the feed-forward layer (`gelu`, `gelu_new`, `relu`, `silu`).
    #[serde(default = "act_default")]
    pub hidden_act: String,
    /// Dropout on hidden states.
    #[serde(default = "dropout_default")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    #[serde(default = "dropout_default")]
    pub attention_probs_dropout_prob: f64,
    /// Longest sequence the position embeddings cover.
    pub max_position_embeddings: usize,
    /// Number of segment types.
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    /// Standard deviation of the initial weights.
    #[serde(default = "init_default")]
    pub initializer_range: f64,
    /// Layer-norm epsilon.
    #[serde(default = "eps_default")]
    pub layer_norm_eps: f64,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: usize,
    /// Dropout before the classifier (defaults to `hidden_dropout_prob`).
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    /// Which member of the family (from `model_type`; not a config.json field of its own).
    #[serde(skip)]
    pub flavour: Flavour,
}

impl BertConfig {
    /// A preset shape: `base` (BERT-base: 768 wide, 12 layers), `small` (256, 4 layers),
    /// `tiny` (64, 2 layers, for tests), with the given vocabulary size.
    pub fn preset(name: &str, vocab_size: usize) -> Result<BertConfig> {
        let (hidden, layers, heads, inter) = match name {
            "base" => (768, 12, 12, 3072),
            "small" => (256, 4, 4, 1024),
            "mini" => (128, 2, 2, 512),
            "tiny" => (64, 2, 2, 128),
            other => bail!("unknown BERT shape '{other}': use base, small, mini, tiny or config=FILE"),
        };
        Ok(BertConfig {
            vocab_size,
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: inter,
            hidden_act: act_default(),
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            classifier_dropout: None,
            flavour: Flavour::Bert,
        })
    }

    /// The configuration in a config.json of any flavour ([`Flavour::of_model_type`]; no
    /// `model_type` reads as BERT).
    pub fn from_json(raw: &serde_json::Value) -> Result<BertConfig> {
        let model_type = raw.get("model_type").and_then(|v| v.as_str()).unwrap_or("bert");
        let Some(flavour) = Flavour::of_model_type(model_type) else {
            bail!(
                "model_type '{model_type}' is not a BERT-family encoder; supported: {}",
                Flavour::MODEL_TYPES
            )
        };
        let mut config = match flavour {
            Flavour::DistilBert => super::flavour::distilbert_config(raw)?,
            _ => serde_json::from_value(raw.clone())
                .map_err(|e| Error::invalid(format!("not a {model_type} config: {e}")))?,
        };
        config.flavour = flavour;
        Ok(config)
    }

    /// Checks the shape is usable.
    pub fn validate(&self) -> Result<()> {
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            bail!(
                "hidden_size {} is not a multiple of num_attention_heads {}; fix config.json",
                self.hidden_size,
                self.num_attention_heads
            )
        }
        if !["gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu"].contains(&self.hidden_act.as_str()) {
            bail!("hidden_act '{}' is not supported; use gelu, gelu_new, relu or silu", self.hidden_act)
        }
        Ok(())
    }
}
