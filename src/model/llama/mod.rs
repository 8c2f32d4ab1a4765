//! Llama-family causal language models (Llama, SmolLM2, TinyLlama: RMS norm, rotary
//! positions, grouped-query attention, SwiGLU), trainable end to end, with generation on a
//! key/value cache. They load from a Hugging Face directory or from a llama.cpp GGUF file
//! (dequantized to f32, the tokenizer rebuilt from its metadata).
//!
//! Parameter names are those of transformers' `LlamaForCausalLM` (`model.layers.3.self_attn.
//! q_proj.weight`, …), so `save` writes a directory `AutoModelForCausalLM` loads; a tied
//! model has no `lm_head.weight` (transformers re-ties it).

mod config;
mod forward;
mod gguf;
mod weights;

pub use config::LlamaConfig;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde_json::json;

use super::causal::{lm_loss, CausalLm, KvCache};
use super::{Model, Params, Pass, Task};
use crate::data::{Batch, TextTokenizer};
use crate::error::{bail, Error, Result};

/// A llama-family model with its tokenizer.
pub struct Llama {
    config: LlamaConfig,
    params: Params,
    tokenizer: TextTokenizer,
    /// The source `config.json`, written back on save with tunelab's fields updated.
    raw_config: serde_json::Value,
}

impl Llama {
    /// The model's configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// A model from a directory with `config.json`, `model.safetensors` and `tokenizer.json`.
    pub fn load(dir: &Path, device: &Device) -> Result<Llama> {
        let raw_config = super::read_json(&dir.join("config.json"))?;
        let config: LlamaConfig = serde_json::from_value(raw_config.clone())
            .map_err(|e| Error::damaged(dir.join("config.json"), format!("not a llama config: {e}")))?;
        config.validate()?;
        let mut tokenizer = TextTokenizer::from_dir(dir)?;
        special_ids_from_config(&mut tokenizer, dir, &config);
        let tensors = crate::model::read_checkpoint(dir, device)?;
        let params =
            weights::assemble(&config, tensors, &mut rand::rng(), device, &dir.display().to_string())?;
        Llama::checked(config, params, tokenizer, raw_config)
    }

    /// A model from `path`: a `.gguf` file, a directory holding one `.gguf` file and no
    /// `config.json`, or a Hugging Face model directory.
    pub fn open(path: &Path, device: &Device) -> Result<Llama> {
        if path.is_file() {
            return Llama::from_gguf(path, device);
        }
        if !path.join("config.json").is_file() {
            let ggufs: Vec<std::path::PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::Read { path: path.to_path_buf(), reason: e.to_string() })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
                .collect();
            match ggufs.as_slice() {
                [one] => return Llama::from_gguf(one, device),
                [] => {}
                _ => bail!("'{}' holds {} .gguf files; name the one to load", path.display(), ggufs.len()),
            }
        }
        Llama::load(path, device)
    }

    /// A model from a llama-family GGUF file (llama.cpp's format, any quantization candle
    /// reads): weights dequantized to trainable f32, the tokenizer from `tokenizer.json`
    /// beside the file if there is one, else rebuilt from the GGUF metadata.
    pub fn from_gguf(path: &Path, device: &Device) -> Result<Llama> {
        let g = gguf::read(path, device)?;
        let beside = path.parent().filter(|d| d.join("tokenizer.json").is_file());
        let tokenizer = match (beside, g.tokenizer) {
            (Some(dir), _) => {
                let mut t = TextTokenizer::from_dir(dir)?;
                special_ids_from_config(&mut t, dir, &g.config);
                t
            }
            (None, Some(t)) => t,
            (None, None) => bail!(
                "'{}' has no tokenizer in its metadata; put the model's tokenizer.json beside it",
                path.display()
            ),
        };
        let origin = path.display().to_string();
        let params = weights::assemble(&g.config, g.tensors, &mut rand::rng(), device, &origin)?;
        let raw_config = serde_json::to_value(&g.config).expect("plain data");
        Llama::checked(g.config, params, tokenizer, raw_config)
    }

    /// A randomly initialised model of `config`'s shape with `tokenizer`.
    pub fn random(
        config: LlamaConfig,
        tokenizer: TextTokenizer,
        rng: &mut impl rand::Rng,
        device: &Device,
    ) -> Result<Llama> {
        config.validate()?;
        let params = weights::assemble(&config, HashMap::new(), rng, device, "")?;
        let raw_config = serde_json::to_value(&config).expect("plain data");
        Llama::checked(config, params, tokenizer, raw_config)
    }

    /// The parameter names and shapes of `config`'s model, in order.
    pub fn layout(config: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
        weights::names_and_shapes(config)
    }

    /// The same model with every parameter cast to `dtype` (f64 for gradient checks).
    pub fn cast(&self, dtype: candle_core::DType) -> Result<Llama> {
        Ok(Llama { params: self.params.to_dtype(dtype)?, ..self.shallow_clone() })
    }

    fn checked(
        config: LlamaConfig,
        params: Params,
        tokenizer: TextTokenizer,
        raw_config: serde_json::Value,
    ) -> Result<Llama> {
        super::check_vocab(&tokenizer, config.vocab_size)?;
        Ok(Llama { config, params, tokenizer, raw_config })
    }

    fn shallow_clone(&self) -> Llama {
        Llama {
            config: self.config.clone(),
            params: self.params.clone(),
            tokenizer: self.tokenizer.clone(),
            raw_config: self.raw_config.clone(),
        }
    }

    fn ids_of(batch: &Batch) -> Result<(&Tensor, &Tensor)> {
        match batch {
            Batch::Text { ids, mask, .. } => Ok((ids, mask)),
            _ => bail!("a llama model takes text: `data FILE format=text block=128`"),
        }
    }
}

/// End-of-text and padding ids from the config and `tokenizer_config.json`: llama
/// tokenizers often name no padding token, so padding falls back to end-of-text.
fn special_ids_from_config(tok: &mut TextTokenizer, dir: &Path, config: &LlamaConfig) {
    let tc = super::read_json(&dir.join("tokenizer_config.json")).ok();
    let named = |key: &str| {
        let v = tc.as_ref()?.get(key)?;
        let name = v.as_str().or_else(|| v.get("content")?.as_str())?;
        tok.token_id(name)
    };
    let eos = named("eos_token").or_else(|| config.eos_ids().first().copied()).or(tok.eos_id);
    let pad = named("pad_token").or(eos);
    tok.eos_id = eos;
    if let Some(pad) = pad {
        tok.pad_id = pad;
    }
}

impl Model for Llama {
    fn family(&self) -> &'static str {
        "llama"
    }

    fn describe(&self) -> String {
        let c = &self.config;
        let (t, n) = (self.params.trainable_numel(), self.params.numel());
        format!(
            "llama {} layers × {} wide, {} heads ({} key/value), {} positions, vocab {}{}; {:.1}M parameters, {:.1}M trainable ({:.1}%)",
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.kv_heads(),
            c.max_position_embeddings,
            c.vocab_size,
            if c.tie_word_embeddings { ", tied head" } else { "" },
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
        let (ids, mask) = Llama::ids_of(batch)?;
        let h = forward::hidden(&self.params, &self.config, ids, Some(mask), None, pass)?;
        crate::model::layers::upcast(forward::logits(&self.params, &self.config, &h, pass)?)
    }

    fn loss(&self, batch: &Batch, pass: &mut Pass) -> Result<Tensor> {
        let (ids, mask) = Llama::ids_of(batch)?;
        lm_loss(&self.forward(batch, pass)?, ids, mask)
    }

    fn config(&self) -> serde_json::Value {
        let mut c = self.raw_config.clone();
        let obj = c.as_object_mut().expect("config.json is an object");
        let cfg = serde_json::to_value(&self.config).expect("plain data");
        for (k, v) in cfg.as_object().expect("a struct is an object") {
            obj.insert(k.clone(), v.clone());
        }
        obj.insert("model_type".into(), json!("llama"));
        obj.insert("architectures".into(), json!(["LlamaForCausalLM"]));
        obj.insert("rope_theta".into(), json!(self.config.theta()));
        obj.insert("torch_dtype".into(), json!("float32"));
        c
    }

    fn group(&self, name: &str) -> Option<Vec<String>> {
        let head = if self.config.tie_word_embeddings { "model.embed_tokens" } else { "lm_head" };
        Some(match name {
            "embeddings" => vec!["model.embed_tokens".into()],
            // A tied head is the token-embedding matrix.
            "head" | "lm_head" => vec![head.into()],
            "ln_f" | "norm" => vec!["model.norm".into()],
            "blocks" | "layers" => vec!["model.layers".into()],
            "attention" => vec!["model.layers.*.self_attn.*".into()],
            "mlp" => vec!["model.layers.*.mlp.*".into()],
            "norms" => vec!["*norm*".into()],
            _ => return None,
        })
    }

    fn group_names(&self) -> Vec<&'static str> {
        vec!["embeddings", "head", "ln_f", "blocks", "attention", "mlp", "norms"]
    }

    fn layer_count(&self) -> usize {
        self.config.num_hidden_layers
    }

    fn layer_prefix(&self, i: usize) -> String {
        format!("model.layers.{i}")
    }

    fn tokenizer(&self) -> Option<&TextTokenizer> {
        Some(&self.tokenizer)
    }

    fn dropout(&self) -> Option<f64> {
        Some(self.config.attention_dropout)
    }

    fn set_dropout(&mut self, p: f64) -> Result<()> {
        if !(0.0..1.0).contains(&p) {
            bail!("dropout {p} is not a probability in [0, 1)")
        }
        self.config.attention_dropout = p;
        Ok(())
    }

    fn lora_targets(&self) -> &'static [&'static str] {
        &["q_proj", "v_proj"]
    }

    fn causal(&self) -> Option<&dyn CausalLm> {
        Some(self)
    }

    fn to_device(&self, device: &Device) -> Result<Box<dyn Model>> {
        Ok(Box::new(Llama { params: self.params.to_device(device)?, ..self.shallow_clone() }))
    }
}

impl CausalLm for Llama {
    fn context_len(&self) -> usize {
        self.config.max_position_embeddings
    }

    fn stop_ids(&self) -> Vec<u32> {
        let ids = self.config.eos_ids();
        if ids.is_empty() {
            self.tokenizer.eos_id.into_iter().collect()
        } else {
            ids
        }
    }

    fn cache_layers(&self) -> usize {
        self.config.num_hidden_layers
    }

    fn device(&self) -> Device {
        self.params.iter().next().map_or(Device::Cpu, |p| p.var.device().clone())
    }

    fn logits_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let mut pass = Pass::eval();
        let h = forward::hidden(&self.params, &self.config, ids, None, Some(cache), &mut pass)?;
        forward::logits(&self.params, &self.config, &h, &pass)
    }

    fn logits(&self, ids: &Tensor) -> Result<Tensor> {
        let mut pass = Pass::eval();
        let h = forward::hidden(&self.params, &self.config, ids, None, None, &mut pass)?;
        forward::logits(&self.params, &self.config, &h, &pass)
    }
}
