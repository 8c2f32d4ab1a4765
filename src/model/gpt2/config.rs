//! GPT-2's `config.json` (transformers' `GPT2Config` field names).

use serde::{Deserialize, Serialize};

use crate::error::{bail, Result};

fn drop_default() -> f64 {
    0.1
}
fn eps_default() -> f64 {
    1e-5
}
fn init_default() -> f64 {
    0.02
}
fn act_default() -> String {
    "gelu_new".into()
}
fn yes() -> bool {
    true
}
fn eot() -> u32 {
    50256
}

/// The shape and hyper-parameters of a GPT-2 model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Positions the learned position embeddings cover (the context window).
    pub n_positions: usize,
    /// Width of every hidden state.
    pub n_embd: usize,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block.
    pub n_head: usize,
    /// Width of the feed-forward layer (default 4 × n_embd).
    #[serde(default)]
    pub n_inner: Option<usize>,
    /// Activation of the feed-forward layer (`gelu_new`, the tanh approximation).
    #[serde(default = "act_default")]
    pub activation_function: String,
    /// Dropout on the residual branches.
    #[serde(default = "drop_default")]
    pub resid_pdrop: f64,
    /// Dropout on the embeddings.
    #[serde(default = "drop_default")]
    pub embd_pdrop: f64,
    /// Dropout on attention probabilities.
    #[serde(default = "drop_default")]
    pub attn_pdrop: f64,
    /// Layer-norm epsilon.
    #[serde(default = "eps_default")]
    pub layer_norm_epsilon: f64,
    /// Standard deviation of the initial weights.
    #[serde(default = "init_default")]
    pub initializer_range: f64,
    /// Scale attention scores by 1/√head_dim (GPT-2 does).
    #[serde(default = "yes")]
    pub scale_attn_weights: bool,
    /// Beginning-of-text token.
    #[serde(default = "eot")]
    pub bos_token_id: u32,
    /// End-of-text token.
    #[serde(default = "eot")]
    pub eos_token_id: u32,
}

impl Gpt2Config {
    /// A preset shape with the given vocabulary: `small` (GPT-2 small, 124M with the GPT-2
    /// vocabulary: 12 × 768, 12 heads, 1024 positions), `distil` (distilgpt2: 6 layers), `mini`
    /// (4 × 256, 4 heads, 256 positions), `tiny` (2 × 32, 2 heads, 64 positions, for tests).
    pub fn preset(name: &str, vocab_size: usize) -> Result<Gpt2Config> {
        let (embd, layers, heads, positions) = match name {
            "small" | "base" => (768, 12, 12, 1024),
            "distil" => (768, 6, 12, 1024),
            "mini" => (256, 4, 4, 256),
            "tiny" => (32, 2, 2, 64),
            other => bail!("unknown GPT-2 shape '{other}': use small, distil, mini, tiny or config=FILE"),
        };
        Ok(Gpt2Config {
            vocab_size,
            n_positions: positions,
            n_embd: embd,
            n_layer: layers,
            n_head: heads,
            n_inner: None,
            activation_function: act_default(),
            resid_pdrop: 0.1,
            embd_pdrop: 0.1,
            attn_pdrop: 0.1,
            layer_norm_epsilon: 1e-5,
            initializer_range: 0.02,
            scale_attn_weights: true,
            bos_token_id: eot(),
            eos_token_id: eot(),
        })
    }

    /// Width of the feed-forward layer.
    pub fn inner(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// Checks the shape is usable.
    pub fn validate(&self) -> Result<()> {
        if self.n_head == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            bail!("n_embd {} is not a multiple of n_head {}; fix config.json", self.n_embd, self.n_head)
        }
        if !["gelu_new", "gelu_pytorch_tanh", "gelu", "relu"].contains(&self.activation_function.as_str()) {
            bail!(
                "activation_function '{}' is not supported; use gelu_new, gelu or relu",
                self.activation_function
            )
        }
        Ok(())
    }
}
