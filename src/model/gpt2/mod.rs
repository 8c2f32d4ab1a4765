//! GPT-2 language models (gpt2, distilgpt2 and any shape of the same architecture),
//! trainable end to end, with generation on a key/value cache.
//!
//! Parameter names are those of transformers' `GPT2LMHeadModel` (`transformer.h.3.attn.…`);
//! the language-model head is tied to the token embeddings, so a saved directory holds no
//! `lm_head.weight` (transformers re-ties it on load).

mod config;
mod forward;
mod weights;

pub use config::Gpt2Config;

use std::path::Path;

use candle_core::{Device, Tensor};
use serde_json::json;

use super::causal::{lm_loss, CausalLm, KvCache};
use super::{Model, Params, Pass, Task};
use crate::data::{Batch, TextTokenizer};
use crate::error::{bail, Error, Result};

/// A GPT-2 model with its tokenizer.
pub struct Gpt2 {
    config: Gpt2Config,
    params: Params,
    tokenizer: TextTokenizer,
    /// The source `config.json`, written back on save with tunelab's fields updated.
    raw_config: serde_json::Value,
}

impl Gpt2 {
    /// The model's configuration.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    /// A model from a directory with `config.json`, weights and a tokenizer (tokenizer.json,
    /// or vocab.json + merges.txt).
    pub fn load(dir: &Path, device: &Device) -> Result<Gpt2> {
        let raw_config = super::read_json(&dir.join("config.json"))?;
        let config: Gpt2Config = serde_json::from_value(raw_config.clone()).map_err(|e| Error::Read {
            path: dir.join("config.json"),
            reason: format!("not a GPT-2 config: {e}"),
        })?;
        config.validate()?;
        let tokenizer = TextTokenizer::from_dir(dir)?;
        let tensors = weights::read_checkpoint(dir, device)?;
        let params =
            weights::assemble(&config, tensors, &mut rand::rng(), device, &dir.display().to_string())?;
        let model = Gpt2 { config, params, tokenizer, raw_config };
        model.check_vocab()?;
        Ok(model)
    }

    /// A randomly initialised model of `config`'s shape with `tokenizer`.
    pub fn random(
        config: Gpt2Config,
        tokenizer: TextTokenizer,
        rng: &mut impl rand::Rng,
        device: &Device,
    ) -> Result<Gpt2> {
        config.validate()?;
        let params = weights::assemble(&config, Default::default(), rng, device, "")?;
        let raw_config = serde_json::to_value(&config).expect("plain data");
        let model = Gpt2 { config, params, tokenizer, raw_config };
        model.check_vocab()?;
        Ok(model)
    }

    /// A model of `config`'s shape from named tensors (every parameter required, shapes
    /// checked), for weights built in memory.
    pub fn from_tensors(
        config: Gpt2Config,
        tensors: std::collections::HashMap<String, Tensor>,
        tokenizer: TextTokenizer,
        device: &Device,
    ) -> Result<Gpt2> {
        config.validate()?;
        let params = weights::assemble(&config, tensors, &mut rand::rng(), device, "the tensors given")?;
        let raw_config = serde_json::to_value(&config).expect("plain data");
        let model = Gpt2 { config, params, tokenizer, raw_config };
        model.check_vocab()?;
        Ok(model)
    }

    /// The parameter names and shapes of `config`'s model, in order.
    pub fn layout(config: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
        weights::names_and_shapes(config)
    }

    /// The same model with every parameter cast to `dtype` (f64 for gradient checks).
    pub fn cast(&self, dtype: candle_core::DType) -> Result<Gpt2> {
        Ok(Gpt2 { params: self.params.to_dtype(dtype)?, ..self.shallow_clone() })
    }

    fn shallow_clone(&self) -> Gpt2 {
        Gpt2 {
            config: self.config.clone(),
            params: self.params.clone(),
            tokenizer: self.tokenizer.clone(),
            raw_config: self.raw_config.clone(),
        }
    }

    fn check_vocab(&self) -> Result<()> {
        let tv = self.tokenizer.vocab_size();
        if tv > self.config.vocab_size {
            bail!(
                "the tokenizer has {tv} tokens but the model's vocab_size is {}; use the tokenizer the model was trained with",
                self.config.vocab_size
            )
        }
        Ok(())
    }

    fn ids_of(batch: &Batch) -> Result<(&Tensor, &Tensor)> {
        match batch {
            Batch::Text { ids, mask, .. } => Ok((ids, mask)),
            _ => bail!("GPT-2 takes text: `data FILE format=text block=128`"),
        }
    }
}

impl Model for Gpt2 {
    fn family(&self) -> &'static str {
        "gpt2"
    }

    fn describe(&self) -> String {
        let c = &self.config;
        let (t, n) = (self.params.trainable_numel(), self.params.numel());
        format!(
            "GPT-2 {} layers × {} wide, {} heads, {} positions, vocab {}; {:.1}M parameters, {:.1}M trainable ({:.1}%)",
            c.n_layer,
            c.n_embd,
            c.n_head,
            c.n_positions,
            c.vocab_size,
            n as f64 / 1e6,
            t as f64 / 1e6,
            100.0 * t as f64 / n.max(1) as f64
        )
    }

    fn task(&self) -> Task {
        Task::CausalLm
    }

    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    fn forward(&self, batch: &Batch, pass: &mut Pass) -> Result<Tensor> {
        let (ids, _) = Gpt2::ids_of(batch)?;
        let h = forward::hidden(&self.params, &self.config, ids, None, pass)?;
        forward::logits(&self.params, &h, pass)
    }

    fn loss(&self, batch: &Batch, pass: &mut Pass) -> Result<Tensor> {
        let (ids, mask) = Gpt2::ids_of(batch)?;
        lm_loss(&self.forward(batch, pass)?, ids, mask)
    }

    fn config(&self) -> serde_json::Value {
        let mut c = self.raw_config.clone();
        let obj = c.as_object_mut().expect("config.json is an object");
        obj.insert("model_type".into(), json!("gpt2"));
        obj.insert("architectures".into(), json!(["GPT2LMHeadModel"]));
        obj.insert("tie_word_embeddings".into(), json!(true));
        for (key, value) in [
            ("n_embd", self.config.n_embd),
            ("n_layer", self.config.n_layer),
            ("n_head", self.config.n_head),
            ("n_positions", self.config.n_positions),
            ("vocab_size", self.config.vocab_size),
        ] {
            obj.insert(key.into(), json!(value));
        }
        obj.insert("resid_pdrop".into(), json!(self.config.resid_pdrop));
        obj.insert("embd_pdrop".into(), json!(self.config.embd_pdrop));
        obj.insert("attn_pdrop".into(), json!(self.config.attn_pdrop));
        c
    }

    fn group(&self, name: &str) -> Option<Vec<String>> {
        Some(match name {
            "embeddings" => vec!["transformer.wte".into(), "transformer.wpe".into()],
            // The head is tied to the token embeddings.
            "head" | "lm_head" => vec!["transformer.wte".into()],
            "ln_f" => vec!["transformer.ln_f".into()],
            "blocks" => vec!["transformer.h".into()],
            "norms" | "layernorm" => vec!["*.ln_*".into()],
            "biases" => vec!["*.bias".into()],
            _ => return None,
        })
    }

    fn group_names(&self) -> Vec<&'static str> {
        vec!["embeddings", "head", "ln_f", "blocks", "norms", "biases"]
    }

    fn layer_count(&self) -> usize {
        self.config.n_layer
    }

    fn layer_prefix(&self, i: usize) -> String {
        format!("transformer.h.{i}")
    }

    fn tokenizer(&self) -> Option<&TextTokenizer> {
        Some(&self.tokenizer)
    }

    fn dropout(&self) -> Option<f64> {
        Some(self.config.resid_pdrop)
    }

    fn set_dropout(&mut self, p: f64) -> Result<()> {
        self.config.resid_pdrop = p;
        self.config.embd_pdrop = p;
        self.config.attn_pdrop = p;
        Ok(())
    }

    fn causal(&self) -> Option<&dyn CausalLm> {
        Some(self)
    }

    fn to_device(&self, device: &Device) -> Result<Box<dyn Model>> {
        Ok(Box::new(Gpt2 { params: self.params.to_device(device)?, ..self.shallow_clone() }))
    }
}

impl CausalLm for Gpt2 {
    fn context_len(&self) -> usize {
        self.config.n_positions
    }

    fn stop_ids(&self) -> Vec<u32> {
        vec![self.config.eos_token_id]
    }

    fn cache_layers(&self) -> usize {
        self.config.n_layer
    }

    fn device(&self) -> Device {
        self.params.iter().next().map_or(Device::Cpu, |p| p.var.device().clone())
    }

    fn logits_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let mut pass = Pass::eval();
        let h = forward::hidden(&self.params, &self.config, ids, Some(cache), &mut pass)?;
        forward::logits(&self.params, &h, &pass)
    }

    fn logits(&self, ids: &Tensor) -> Result<Tensor> {
        let mut pass = Pass::eval();
        let h = forward::hidden(&self.params, &self.config, ids, None, &mut pass)?;
        forward::logits(&self.params, &h, &pass)
    }
}
