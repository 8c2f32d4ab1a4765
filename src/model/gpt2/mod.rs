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

/// A GPT-2 model with its tokenizer: a language model, or a sequence classifier (as
/// transformers' `GPT2ForSequenceClassification`: a linear `score` layer, without bias, on
/// the last real token's hidden state).
pub struct Gpt2 {
    config: Gpt2Config,
    /// Class names when it is a classifier.
    labels: Option<Vec<String>>,
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
    /// or vocab.json + merges.txt). With `labels` it is a classifier: the checkpoint's
    /// `score` layer is kept when it has as many classes, else initialised from `rng`.
    pub fn load(
        dir: &Path,
        labels: Option<Vec<String>>,
        rng: &mut impl rand::Rng,
        device: &Device,
    ) -> Result<Gpt2> {
        let raw_config = super::read_json(&dir.join("config.json"))?;
        let config: Gpt2Config = serde_json::from_value(raw_config.clone())
            .map_err(|e| Error::damaged(dir.join("config.json"), format!("not a GPT-2 config: {e}")))?;
        config.validate()?;
        let tokenizer = TextTokenizer::from_dir(dir)?;
        let mut tensors = weights::read_checkpoint(dir, device)?;
        let score = tensors.remove("score.weight");
        let params = weights::assemble(&config, tensors, rng, device, &dir.display().to_string())?;
        let mut model = Gpt2 { config, labels: None, params, tokenizer, raw_config };
        model.check_vocab()?;
        if let Some(labels) = labels {
            model.attach_head(labels, score, rng)?;
        }
        Ok(model)
    }

    /// A randomly initialised model of `config`'s shape with `tokenizer`; a classifier over
    /// `labels` when given.
    pub fn random(
        config: Gpt2Config,
        labels: Option<Vec<String>>,
        tokenizer: TextTokenizer,
        rng: &mut impl rand::Rng,
        device: &Device,
    ) -> Result<Gpt2> {
        config.validate()?;
        let params = weights::assemble(&config, Default::default(), rng, device, "")?;
        let raw_config = serde_json::to_value(&config).expect("plain data");
        let mut model = Gpt2 { config, labels: None, params, tokenizer, raw_config };
        model.check_vocab()?;
        if let Some(labels) = labels {
            model.attach_head(labels, None, rng)?;
        }
        Ok(model)
    }

    /// Makes the model a classifier over `labels`, with `score` as its output layer when it
    /// has that many rows, else a fresh one drawn from `rng` (normal, σ = initializer_range).
    fn attach_head(
        &mut self,
        labels: Vec<String>,
        score: Option<Tensor>,
        rng: &mut impl rand::Rng,
    ) -> Result<()> {
        let (n, e) = (labels.len(), self.config.n_embd);
        let device = CausalLm::device(self);
        let score = match score.filter(|s| s.dims() == [n, e]) {
            Some(s) => s.to_dtype(candle_core::DType::F32)?.to_device(&device)?,
            None => {
                use rand_distr::Distribution;
                let normal = rand_distr::Normal::new(0.0, self.config.initializer_range)
                    .map_err(|e| Error::invalid(format!("initializer_range: {e}")))?;
                let values: Vec<f32> = (0..n * e).map(|_| normal.sample(rng) as f32).collect();
                Tensor::from_vec(values, (n, e), &device)?
            }
        };
        if self.params.get("score.weight").is_some() {
            self.params.replace("score.weight", score)?;
        } else {
            let named: Vec<(String, Tensor)> = self
                .params
                .iter()
                .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
                .chain(std::iter::once(("score.weight".to_string(), score)))
                .collect();
            let frozen: Vec<usize> =
                self.params.iter().enumerate().filter(|(_, p)| !p.trainable).map(|(i, _)| i).collect();
            self.params = Params::new(named)?;
            self.params.set_trainable(&frozen, false);
        }
        self.labels = Some(labels);
        Ok(())
    }

    /// Classification logits `[batch, labels]`: the `score` layer on the hidden state of each
    /// row's last real token (right padding, as the attention `mask` says).
    fn classify(&self, ids: &Tensor, mask: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let h = forward::hidden(&self.params, &self.config, ids, None, pass)?;
        let (b, l, e) = h.dims3()?;
        let lens = mask.to_dtype(candle_core::DType::U32)?.sum(1)?.to_vec1::<u32>()?;
        let rows: Vec<u32> =
            lens.iter().enumerate().map(|(r, n)| (r * l) as u32 + n.saturating_sub(1)).collect();
        let rows = Tensor::from_vec(rows, b, h.device())?;
        let last = h.reshape((b * l, e))?.index_select(&rows, 0)?;
        crate::model::layers::linear(&last, &self.params.tensor("score.weight", pass.train)?, None)
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
        let model = Gpt2 { config, labels: None, params, tokenizer, raw_config };
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
            labels: self.labels.clone(),
            params: self.params.clone(),
            tokenizer: self.tokenizer.clone(),
            raw_config: self.raw_config.clone(),
        }
    }

    fn check_vocab(&self) -> Result<()> {
        super::check_vocab(&self.tokenizer, self.config.vocab_size)
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
        let head = match &self.labels {
            Some(l) => format!(" + classifier over {} labels ({})", l.len(), l.join(", ")),
            None => String::new(),
        };
        format!(
            "GPT-2 {} layers × {} wide, {} heads, {} positions, vocab {}{head}; {:.1}M parameters, {:.1}M trainable ({:.1}%)",
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
        if self.labels.is_some() {
            Task::Classify
        } else {
            Task::CausalLm
        }
    }

    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    fn forward(&self, batch: &Batch, pass: &mut Pass) -> Result<Tensor> {
        let (ids, mask) = Gpt2::ids_of(batch)?;
        if self.labels.is_some() {
            return crate::model::layers::upcast(self.classify(ids, mask, pass)?);
        }
        let h = forward::hidden(&self.params, &self.config, ids, None, pass)?;
        crate::model::layers::upcast(forward::logits(&self.params, &h, pass)?)
    }

    fn loss(&self, batch: &Batch, pass: &mut Pass) -> Result<Tensor> {
        let (ids, mask) = Gpt2::ids_of(batch)?;
        if self.labels.is_some() {
            let Batch::Text { labels: Some(labels), .. } = batch else {
                bail!("this batch has no labels, so there is no loss")
            };
            return crate::model::kernels::cross_entropy(&self.forward(batch, pass)?, labels);
        }
        lm_loss(&self.forward(batch, pass)?, ids, mask)
    }

    fn config(&self) -> serde_json::Value {
        let mut c = self.raw_config.clone();
        let obj = c.as_object_mut().expect("config.json is an object");
        obj.insert("model_type".into(), json!("gpt2"));
        obj.insert("architectures".into(), json!(["GPT2LMHeadModel"]));
        if let Some(labels) = &self.labels {
            obj.insert("architectures".into(), json!(["GPT2ForSequenceClassification"]));
            crate::model::put_labels(obj, labels);
            obj.insert("pad_token_id".into(), json!(self.tokenizer.pad_id));
        }
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
            // A classifier's head is `score`; a language model's is tied to the token embeddings.
            "head" | "classifier" | "score" if self.labels.is_some() => vec!["score".into()],
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

    fn labels(&self) -> Option<&[String]> {
        self.labels.as_deref()
    }

    fn set_labels(&mut self, labels: Vec<String>, rng: &mut rand::rngs::StdRng) -> Result<()> {
        if self.labels.is_none() {
            bail!("a GPT-2 language model has no class labels; load it with task=classify")
        }
        let keep = self.labels.as_ref().is_some_and(|l| l.len() == labels.len());
        let score =
            keep.then(|| self.params.get("score.weight").map(|p| p.var.as_tensor().clone())).flatten();
        self.attach_head(labels, score, rng)
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

    fn fan_in_fan_out(&self, name: &str) -> bool {
        // GPT-2's Conv1D stores its weights [in, out].
        name.starts_with("transformer.h.") && name.ends_with(".weight") && !name.contains(".ln_")
    }

    fn lora_targets(&self) -> &'static [&'static str] {
        &["c_attn"]
    }

    fn causal(&self) -> Option<&dyn CausalLm> {
        // A classifier still has the tied language-model head, but it is trained for its labels.
        self.labels.is_none().then_some(self as &dyn CausalLm)
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
