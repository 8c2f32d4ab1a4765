//! The llama family's `config.json` (transformers' `LlamaConfig` field names), and the same
//! shape read from a GGUF file's metadata.

use serde::{Deserialize, Serialize};

use crate::error::{bail, Result};

fn positions_default() -> usize {
    2048
}
fn eps_default() -> f64 {
    1e-6
}
fn init_default() -> f64 {
    0.02
}
fn act_default() -> String {
    "silu".into()
}

/// The shape and hyper-parameters of a llama-family decoder (Llama, SmolLM2, TinyLlama…).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Width of the SwiGLU feed-forward layer.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads per layer.
    pub num_attention_heads: usize,
    /// Key/value heads per layer (grouped-query attention; default: one per query head).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    /// Width of one head (default hidden_size / num_attention_heads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Longest sequence the model was trained on (the context window).
    #[serde(default = "positions_default")]
    pub max_position_embeddings: usize,
    /// RMS-norm epsilon.
    #[serde(default = "eps_default")]
    pub rms_norm_eps: f64,
    /// Rotary base frequency (transformers 4.x field; 5.x keeps it in `rope_parameters`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// transformers 5.x's rotary settings (`{"rope_type": "default", "rope_theta": …}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<serde_json::Value>,
    /// Rotary scaling (long-context variants); only none is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<serde_json::Value>,
    /// The language-model head shares the token-embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Dropout on attention probabilities (0 in every released llama).
    #[serde(default)]
    pub attention_dropout: f64,
    /// Biases on the q/k/v/o projections (not supported: false in llama models).
    #[serde(default)]
    pub attention_bias: bool,
    /// Biases in the feed-forward layer (not supported: false in llama models).
    #[serde(default)]
    pub mlp_bias: bool,
    /// Activation of the gate projection (`silu`).
    #[serde(default = "act_default")]
    pub hidden_act: String,
    /// Standard deviation of the initial weights of a fresh model.
    #[serde(default = "init_default")]
    pub initializer_range: f64,
    /// Beginning-of-text token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    /// End-of-text token(s): a number or a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<serde_json::Value>,
}

impl LlamaConfig {
    /// A small shape for tests and scratch models: `layers` × `hidden` wide, `heads` query
    /// heads sharing `kv_heads` key/value heads, feed-forward 2 × hidden, 64 positions.
    pub fn tiny(
        vocab_size: usize,
        hidden: usize,
        layers: usize,
        heads: usize,
        kv_heads: usize,
    ) -> LlamaConfig {
        LlamaConfig {
            vocab_size,
            hidden_size: hidden,
            intermediate_size: 2 * hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: Some(kv_heads),
            head_dim: None,
            max_position_embeddings: 64,
            rms_norm_eps: 1e-5,
            rope_theta: Some(10000.0),
            rope_parameters: None,
            rope_scaling: None,
            tie_word_embeddings: false,
            attention_dropout: 0.0,
            attention_bias: false,
            mlp_bias: false,
            hidden_act: act_default(),
            initializer_range: 0.02,
            bos_token_id: None,
            eos_token_id: None,
        }
    }

    /// Key/value heads per layer.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one attention head.
    pub fn head_size(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// The rotary base frequency (`rope_theta`, or `rope_parameters.rope_theta`; 10000 when
    /// neither is given, as transformers does).
    pub fn theta(&self) -> f64 {
        self.rope_theta
            .or_else(|| self.rope_parameters.as_ref()?.get("rope_theta")?.as_f64())
            .unwrap_or(10000.0)
    }

    /// The end-of-text ids (`eos_token_id` as a number or a list).
    pub fn eos_ids(&self) -> Vec<u32> {
        match &self.eos_token_id {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|n| n as u32).into_iter().collect(),
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| Some(v.as_u64()? as u32)).collect(),
            _ => Vec::new(),
        }
    }

    /// Checks the shape is one this module runs, naming the field to fix.
    pub fn validate(&self) -> Result<()> {
        let (heads, kv) = (self.num_attention_heads, self.kv_heads());
        if heads == 0 || kv == 0 || !heads.is_multiple_of(kv) {
            bail!(
                "num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}; fix config.json"
            )
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(heads) {
            bail!(
                "hidden_size {} is not a multiple of num_attention_heads {heads}; fix config.json",
                self.hidden_size
            )
        }
        if !self.head_size().is_multiple_of(2) {
            bail!("head_dim {} is odd; rotary embeddings need an even head width", self.head_size())
        }
        if self.hidden_act != "silu" {
            bail!("hidden_act '{}' is not supported for llama models; use silu", self.hidden_act)
        }
        if self.attention_bias || self.mlp_bias {
            bail!("attention_bias / mlp_bias are not supported for llama models; set them to false")
        }
        let scaled = |v: &Option<serde_json::Value>| {
            v.as_ref()
                .and_then(|v| v.get("rope_type").or_else(|| v.get("type")))
                .and_then(|t| t.as_str())
                .is_some_and(|t| t != "default")
        };
        if scaled(&self.rope_scaling) || scaled(&self.rope_parameters) {
            bail!(
                "scaled rotary embeddings (rope_scaling) are not supported; use a model without rope_scaling"
            )
        }
        if !(0.0..1.0).contains(&self.attention_dropout) {
            bail!("attention_dropout {} is not a probability in [0, 1)", self.attention_dropout)
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_transformers_4_and_5_layouts() {
        let v4: LlamaConfig = serde_json::from_str(
            r#"{"vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
                "num_attention_heads": 2, "rope_theta": 100000.0, "eos_token_id": 2}"#,
        )
        .unwrap();
        assert_eq!((v4.theta(), v4.kv_heads(), v4.head_size(), v4.eos_ids()), (100000.0, 2, 4, vec![2]));
        let v5: LlamaConfig = serde_json::from_str(
            r#"{"vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
                "num_attention_heads": 2, "num_key_value_heads": 1, "eos_token_id": [2, 0],
                "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}}"#,
        )
        .unwrap();
        assert_eq!((v5.theta(), v5.kv_heads(), v5.eos_ids()), (500000.0, 1, vec![2, 0]));
        v5.validate().unwrap();
        let mut bad = v5.clone();
        bad.rope_parameters = Some(serde_json::json!({"rope_type": "llama3", "factor": 8.0}));
        assert!(bad.validate().unwrap_err().to_string().contains("rope_scaling"));
        bad = v5;
        bad.num_key_value_heads = Some(3);
        assert!(bad.validate().unwrap_err().to_string().contains("num_key_value_heads"));
    }
}
