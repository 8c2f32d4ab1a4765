//! BERT encoders with a sequence-classification head (as `BertForSequenceClassification`)
//! or a masked-LM head (as `BertForMaskedLM`), trainable end to end.
//!
//! Parameter names are those of the Hugging Face checkpoints (`bert.encoder.layer.3.…`),
//! so loading and saving need no renaming table beyond adding the `bert.` prefix that bare
//! `BertModel` checkpoints (like all-MiniLM-L6-v2) leave out.

mod config;
mod flavour;
mod forward;
mod weights;

pub use config::BertConfig;
pub use flavour::Flavour;
pub use forward::probabilities as forward_probabilities;

use std::path::Path;

use candle_core::{Device, Tensor};
use serde_json::json;

use super::{Model, Params, Pass, Task};
use crate::data::{Batch, TextTokenizer};
use crate::error::{bail, Result};

/// What the model is trained to do.
#[derive(Clone, Debug, PartialEq)]
pub enum BertTask {
    /// Sequence classification into these classes.
    Classify(Vec<String>),
    /// Masked-language-model pretraining (15% of tokens, 80/10/10).
    MaskedLm,
}

/// A BERT encoder with a task head.
pub struct Bert {
    config: BertConfig,
    task: BertTask,
    params: Params,
    tokenizer: TextTokenizer,
    /// The source `config.json`, written back on save with tunelab's fields updated.
    raw_config: serde_json::Value,
    /// What loading did (fresh head, unused tensors), for the user.
    pub load_notes: Vec<String>,
}

impl Bert {
    /// The encoder's configuration.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The task.
    pub fn task(&self) -> &BertTask {
        &self.task
    }

    /// A model from a directory with `config.json`, weights and a tokenizer. Head
    /// parameters the checkpoint lacks are initialised from `rng`.
    pub fn load(dir: &Path, task: BertTask, rng: &mut impl rand::Rng, device: &Device) -> Result<Bert> {
        let raw_config = super::read_json(&dir.join("config.json"))?;
        let config = BertConfig::from_json(&raw_config)
            .map_err(|e| crate::error::Error::damaged(dir.join("config.json"), e))?;
        config.validate()?;
        let tokenizer = TextTokenizer::from_dir(dir)?;
        let tensors = weights::read_checkpoint(dir, config.flavour, device)?;
        let (params, notes) =
            weights::assemble(&config, &task, tensors, rng, device, &dir.display().to_string())?;
        let bert = Bert { config, task, params, tokenizer, raw_config, load_notes: notes };
        bert.check_vocab()?;
        Ok(bert)
    }

    /// A randomly initialised model of `config`'s shape with `tokenizer`.
    pub fn random(
        config: BertConfig,
        task: BertTask,
        tokenizer: TextTokenizer,
        rng: &mut impl rand::Rng,
        device: &Device,
    ) -> Result<Bert> {
        config.validate()?;
        let (params, _) = weights::assemble(&config, &task, Default::default(), rng, device, "")?;
        let raw_config = serde_json::to_value(&config).expect("plain data");
        let bert = Bert { config, task, params, tokenizer, raw_config, load_notes: Vec::new() };
        bert.check_vocab()?;
        Ok(bert)
    }

    /// Renames the classes of a classifier; with a different number of classes the
    /// classifier layer is re-initialised from `rng` (only sensible before training it).
    pub fn relabel(&mut self, labels: Vec<String>, rng: &mut impl rand::Rng) -> Result<()> {
        let BertTask::Classify(old) = &self.task else { bail!("a masked-LM model has no labels") };
        if old.len() != labels.len() {
            let device = self.params.iter().next().map(|p| p.var.device().clone()).unwrap_or(Device::Cpu);
            let task = BertTask::Classify(labels.clone());
            let (fresh, _) = weights::assemble(&self.config, &task, Default::default(), rng, &device, "")?;
            for name in ["classifier.weight", "classifier.bias"] {
                let name = self.config.flavour.name(name);
                let t = fresh.get(&name).expect("a classifier has these").var.as_tensor().clone();
                self.params.replace(&name, t)?;
            }
        }
        self.task = BertTask::Classify(labels);
        Ok(())
    }

    /// Hidden states `[batch, len, hidden]` of the encoder for token `ids` and attention
    /// `mask`, without dropout or gradients (for inspection and parity tests).
    pub fn hidden_states(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        forward::encode(&self.params, &self.config, ids, mask, &mut Pass::eval())
    }

    /// The pooler output (dense + tanh on `[CLS]`; DistilBERT: dense + ReLU) of hidden states.
    pub fn pooled(&self, hidden: &Tensor) -> Result<Tensor> {
        forward::pool(&self.params, &self.config, &forward::first_token(hidden)?, false)
    }

    /// This model's name for a parameter or module BERT calls `canonical`
    /// (see [`Flavour::name`]).
    pub fn name(&self, canonical: &str) -> String {
        self.config.flavour.name(canonical)
    }

    /// The same model with every parameter cast to `dtype` (f64 for gradient checks).
    pub fn cast(&self, dtype: candle_core::DType) -> Result<Bert> {
        Ok(Bert { params: self.params.to_dtype(dtype)?, ..self.shallow_clone() })
    }

    fn shallow_clone(&self) -> Bert {
        Bert {
            config: self.config.clone(),
            task: self.task.clone(),
            params: self.params.clone(),
            tokenizer: self.tokenizer.clone(),
            raw_config: self.raw_config.clone(),
            load_notes: self.load_notes.clone(),
        }
    }

    fn check_vocab(&self) -> Result<()> {
        super::check_vocab(&self.tokenizer, self.config.vocab_size)
    }

    fn labels_of(&self) -> Option<&[String]> {
        match &self.task {
            BertTask::Classify(l) => Some(l),
            BertTask::MaskedLm => None,
        }
    }
}

impl Model for Bert {
    fn family(&self) -> &'static str {
        self.config.flavour.family()
    }

    fn describe(&self) -> String {
        let c = &self.config;
        let head = match &self.task {
            BertTask::Classify(l) => format!("classifier over {} labels ({})", l.len(), l.join(", ")),
            BertTask::MaskedLm => "masked-LM head".into(),
        };
        let (t, n) = (self.params.trainable_numel(), self.params.numel());
        let family = match c.flavour {
            Flavour::Bert => "BERT",
            Flavour::Roberta => "RoBERTa",
            Flavour::DistilBert => "DistilBERT",
        };
        format!(
            "{family} {} layers × {} wide, {} heads, vocab {} + {head}; {:.1}M parameters, {:.1}M trainable ({:.1}%)",
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.vocab_size,
            n as f64 / 1e6,
            t as f64 / 1e6,
            100.0 * t as f64 / n.max(1) as f64
        )
    }

    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    fn task(&self) -> Task {
        match self.task {
            BertTask::Classify(_) => Task::Classify,
            BertTask::MaskedLm => Task::MaskedLm,
        }
    }

    fn forward(&self, batch: &Batch, pass: &mut Pass) -> Result<Tensor> {
        let Batch::Text { ids, mask, .. } = batch else {
            bail!("BERT takes text: `data FILE text=COL label=COL`")
        };
        let hidden = forward::encode(&self.params, &self.config, ids, mask, pass)?;
        let logits = match &self.task {
            BertTask::Classify(_) => forward::classify(&self.params, &self.config, &hidden, pass)?,
            BertTask::MaskedLm => forward::mlm_logits(&self.params, &self.config, &hidden, pass)?,
        };
        crate::model::layers::upcast(logits)
    }

    fn loss(&self, batch: &Batch, pass: &mut Pass) -> Result<Tensor> {
        let Batch::Text { ids, mask, labels } = batch else {
            bail!("BERT takes text: `data FILE text=COL label=COL`")
        };
        match &self.task {
            BertTask::Classify(_) => {
                let Some(labels) = labels else { bail!("this batch has no labels, so there is no loss") };
                let logits = self.forward(batch, pass)?;
                crate::model::kernels::cross_entropy(&logits, labels)
            }
            BertTask::MaskedLm => {
                forward::mlm_loss(&self.params, &self.config, &self.tokenizer, ids, mask, pass)
            }
        }
    }

    fn start_from_token_prior(&mut self, counts: &dyn Fn() -> Result<Vec<u64>>) -> Result<Option<f64>> {
        if self.task != BertTask::MaskedLm {
            return Ok(None);
        }
        let name = self.name("cls.predictions.bias");
        let Some(bias) = self.params.get(&name) else { return Ok(None) };
        let untouched = bias
            .var
            .as_tensor()
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_dtype(candle_core::DType::F32)?
            .to_scalar::<f32>()?
            == 0.0;
        if !untouched || !bias.trainable {
            return Ok(None);
        }
        let mut counts = counts()?;
        if counts.len() > bias.var.elem_count() {
            return Ok(None);
        }
        counts.resize(bias.var.elem_count(), 0);
        // Special tokens are never masked, so never predicted.
        let t = &self.tokenizer;
        for id in [t.cls_id, t.sep_id, t.mask_id, Some(t.pad_id)].into_iter().flatten() {
            if let Some(c) = counts.get_mut(id as usize) {
                *c = 0;
            }
        }
        let (prior, loss) = weights::token_log_prior(&counts);
        let value = Tensor::from_vec(prior, counts.len(), bias.var.device())?.to_dtype(bias.var.dtype())?;
        bias.var.set(&value)?;
        Ok(Some(loss))
    }

    fn config(&self) -> serde_json::Value {
        let mut c = self.raw_config.clone();
        let obj = c.as_object_mut().expect("config.json is an object");
        let flavour = self.config.flavour;
        obj.insert("model_type".into(), json!(flavour.config_model_type()));
        match &self.task {
            BertTask::Classify(labels) => {
                obj.insert("architectures".into(), json!([flavour.architecture(false)]));
                crate::model::put_labels(obj, labels);
            }
            BertTask::MaskedLm => {
                obj.insert("architectures".into(), json!([flavour.architecture(true)]));
            }
        }
        c
    }

    fn group(&self, name: &str) -> Option<Vec<String>> {
        let n = |canonical: &str| self.name(canonical);
        Some(match name {
            "embeddings" => vec![n("bert.embeddings")],
            "encoder" => vec![n("bert.encoder")],
            "pooler" => vec![n("bert.pooler.dense")],
            "head" | "classifier" => match self.task {
                BertTask::Classify(_) => vec![n("classifier")],
                BertTask::MaskedLm => vec![
                    n("cls.predictions.transform.dense"),
                    n("cls.predictions.transform.LayerNorm"),
                    n("cls.predictions.bias"),
                ],
            },
            "norms" | "layernorm" => vec!["*LayerNorm*".into(), "*layer_norm*".into()],
            "biases" => vec!["*.bias".into()],
            _ => return None,
        })
    }

    fn group_names(&self) -> Vec<&'static str> {
        vec!["embeddings", "encoder", "pooler", "head", "norms", "biases"]
    }

    fn layer_count(&self) -> usize {
        self.config.num_hidden_layers
    }

    fn layer_prefix(&self, i: usize) -> String {
        self.name(&format!("bert.encoder.layer.{i}"))
    }

    fn tokenizer(&self) -> Option<&TextTokenizer> {
        Some(&self.tokenizer)
    }

    fn labels(&self) -> Option<&[String]> {
        self.labels_of()
    }

    fn dropout(&self) -> Option<f64> {
        Some(self.config.hidden_dropout_prob)
    }

    fn set_dropout(&mut self, p: f64) -> Result<()> {
        self.config.hidden_dropout_prob = p;
        self.config.attention_probs_dropout_prob = p;
        let distil = self.config.flavour == Flavour::DistilBert;
        // DistilBERT keeps its own classifier-dropout field; the others fall back to hidden.
        self.config.classifier_dropout = distil.then_some(p);
        if let Some(obj) = self.raw_config.as_object_mut() {
            if distil {
                for key in ["dropout", "attention_dropout", "seq_classif_dropout"] {
                    obj.insert(key.into(), json!(p));
                }
            } else {
                obj.insert("hidden_dropout_prob".into(), json!(p));
                obj.insert("attention_probs_dropout_prob".into(), json!(p));
                obj.remove("classifier_dropout");
            }
        }
        Ok(())
    }

    fn set_labels(&mut self, labels: Vec<String>, rng: &mut rand::rngs::StdRng) -> Result<()> {
        self.relabel(labels, rng)
    }

    fn adapter_sites(&self) -> Vec<(String, usize)> {
        let h = self.config.hidden_size;
        (0..self.config.num_hidden_layers)
            .flat_map(|i| {
                [
                    (self.name(&format!("bert.encoder.layer.{i}.attention.output")), h),
                    (self.name(&format!("bert.encoder.layer.{i}.output")), h),
                ]
            })
            .collect()
    }

    fn lora_targets(&self) -> &'static [&'static str] {
        self.config.flavour.lora_targets()
    }

    fn to_device(&self, device: &Device) -> Result<Box<dyn Model>> {
        Ok(Box::new(Bert { params: self.params.to_device(device)?, ..self.shallow_clone() }))
    }
}
