//! `prompt tuning tokens=N`, and prompt-tuning adapters in peft's layout
//! (`PROMPT_TUNING`: `prompt_embeddings` + `base_model.{head}` tensors) for `save` and
//! `load`. The virtual tokens themselves live in `model::prompt`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use rand::rngs::StdRng;
use serde_json::json;

use crate::dsl::Command;
use crate::error::{bail, Error, Result};
use crate::model::prompt::{sample_vocab, PROMPT};
use crate::model::{name_matches, write_tensors, Model, Task};
use crate::session::verbs::share;
use crate::session::{Event, Session, Sink};

/// The prefix peft puts before a prompt-tuned model's own parameter names.
const PROMPT_PREFIX: &str = "base_model.";

/// Parameter-name patterns that train beside the prompt: a classifier's head.
fn kept(model: &dyn Model) -> Vec<String> {
    match model.task() {
        Task::Classify => model.group("head").unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// These parameters of `model` with the prompt of a peft `PROMPT_TUNING` adapter file
/// attached (and its head tensors in place of the base's).
pub(crate) fn attach_peft_prompt(
    model: &mut dyn Model,
    tensors: HashMap<String, Tensor>,
    path: &Path,
) -> Result<()> {
    let bad = |msg: String| Error::Read { path: path.to_path_buf(), reason: msg };
    let Some(prompt) = tensors.get(PROMPT) else { return Err(bad(format!("no '{PROMPT}' tensor"))) };
    let params = model.params().with_prompt(prompt.clone(), &kept(model))?;
    for (key, t) in &tensors {
        if key == PROMPT {
            continue;
        }
        let name = key.strip_prefix(PROMPT_PREFIX).unwrap_or(key);
        let Some(p) = params.get(name) else {
            return Err(bad(format!("tensor '{key}' matches no parameter")));
        };
        if p.var.dims() != t.dims() {
            return Err(bad(format!("'{key}' has shape {:?} but '{name}' is {:?}", t.dims(), p.var.dims())));
        }
    }
    // Every shape checked: now the head's values (new variables, the old ones untouched).
    let values: Vec<Tensor> = params
        .iter()
        .map(|p| match tensors.get(&format!("{PROMPT_PREFIX}{}", p.name)) {
            Some(t) => t.to_dtype(p.var.dtype()),
            None => Ok(p.var.as_tensor().clone()),
        })
        .collect::<candle_core::Result<_>>()?;
    *model.params_mut() = params.with_values(&values)?;
    Ok(())
}

impl Session {
    pub(crate) fn prompt(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let model = self.model()?;
        if !["bert", "roberta", "distilbert"].contains(&model.family()) || model.task() != Task::Classify {
            bail!("prompt tuning is implemented for BERT-family classifiers (`load NAME task=classify`); `lora` works on any model")
        }
        let tokens = cmd.usize("tokens").unwrap_or(20);
        let words_name = format!("{}.embeddings.word_embeddings.weight", model.family());
        let Some(words) = model.params().get(&words_name) else {
            bail!("the model has no word embeddings to start the prompt from")
        };
        let mut rng: StdRng = self.rng.clone();
        let init = sample_vocab(words.var.as_tensor(), tokens, &mut rng)?;
        let fresh = model.params().with_prompt(init, &kept(model))?;
        // Commit.
        self.push_undo(&cmd.text)?;
        let model = self.model.as_deref_mut().expect("checked");
        *model.params_mut() = fresh;
        self.rng = rng;
        self.last_grads = None;
        let p = model.params();
        sink.emit(Event::Text(format!(
            "prompt tuning: {tokens} virtual tokens before every text (started from random vocabulary \
             embeddings), base weights frozen — {} parameters trainable; sequences may now have at most \
             {tokens} fewer tokens; `undo` removes it",
            share(p.trainable_numel(), p.numel())
        )));
        Ok(())
    }

    /// `save DIR` of a prompt-tuned model: peft's PROMPT_TUNING layout plus tunelab's record.
    pub(crate) fn save_prompt(&self, dir: &Path, dir_text: &str, sink: &mut dyn Sink) -> Result<()> {
        let model = self.model()?;
        let p = model.params();
        let tokens = p.prompt_tokens().expect("caller checked");
        let prompt = p.get(PROMPT).expect("attached").var.as_tensor().clone();
        let keep = kept(model);
        let mut tensors: HashMap<String, Tensor> = HashMap::from([(PROMPT.to_string(), prompt.clone())]);
        for q in p.iter().filter(|q| keep.iter().any(|k| name_matches(k, &q.name))) {
            tensors.insert(format!("{PROMPT_PREFIX}{}", q.name), q.var.as_tensor().clone());
        }
        let config = model.config();
        let get = |k: &str| config.get(k).cloned().unwrap_or(serde_json::Value::Null);
        let cfg = json!({
            "peft_type": "PROMPT_TUNING",
            "task_type": "SEQ_CLS",
            "base_model_name_or_path": self.model_source,
            "num_virtual_tokens": tokens,
            "token_dim": prompt.dim(1)?,
            "num_transformer_submodules": 1,
            "num_attention_heads": get("num_attention_heads"),
            "num_layers": get("num_hidden_layers"),
            "prompt_tuning_init": "RANDOM",
            "prompt_tuning_init_text": null,
            "tokenizer_name_or_path": null,
            "modules_to_save": if keep.is_empty() { None } else { Some(&keep) },
            "inference_mode": true,
            "revision": null,
            "auto_mapping": null,
        });
        crate::files::create_dir(dir)?;
        let text = serde_json::to_string_pretty(&cfg).expect("plain JSON");
        crate::files::write_bytes_atomic(&dir.join("adapter_config.json"), text.as_bytes())?;
        write_tensors(&tensors, &dir.join("adapter_model.safetensors"))?;
        crate::session::checkpoint::save_training(
            dir,
            model,
            &self.optimizer,
            &self.schedule,
            &self.history,
            self.settings.seed,
        )?;
        sink.emit(Event::Text(format!(
            "saved prompt tuning ({tokens} virtual tokens) at step {} to {dir_text}/ in the PEFT layout \
             (adapter_config.json, adapter_model.safetensors) with optimizer state and tunelab.json; base: {}",
            self.history.step(),
            self.model_source.as_deref().unwrap_or("none (built at random)")
        )));
        Ok(())
    }
}
