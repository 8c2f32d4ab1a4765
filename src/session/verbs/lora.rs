//! `lora` (attach, merge, on/off), and LoRA adapters in and out of directories in the PEFT
//! layout for `save` and `load`. The adapters themselves live in `model::lora`.

use std::path::Path;

use rand::rngs::StdRng;

use crate::dsl::{suggestion, Command, Value};
use crate::error::{bail, Error, Result};
use crate::model::adalora::AdaConfig;
use crate::model::bert::BertTask;
use crate::model::lora::{adaptable, target_matches, LoraConfig};
use crate::model::peft::{read_adapter_config, save_adapter, PEFT_PREFIX};
use crate::model::{config_labels, hub, load_text_model, name_matches, read_json, read_tensors, Model, Task};
use crate::session::checkpoint::{load_training, Training};
use crate::session::verbs::share;
use crate::session::{Event, Session, Sink};

/// What loading an adapter directory gives `load`.
pub(crate) struct LoadedAdapter {
    pub model: Box<dyn Model>,
    pub training: Option<Training>,
    /// The adapter carried the classifier head (peft's modules_to_save).
    pub head_from_checkpoint: bool,
    /// The base model, as recorded for the next `save`.
    pub base: String,
}

/// peft's `task_type` for a model's task.
fn task_type(task: Task) -> Option<&'static str> {
    match task {
        Task::Classify => Some("SEQ_CLS"),
        Task::CausalLm => Some("CAUSAL_LM"),
        _ => None,
    }
}

/// How a model name is recorded as a base: a local directory by its absolute path, a hub
/// id as typed.
pub(crate) fn source_name(name: &str) -> String {
    match Path::new(name).is_dir().then(|| std::fs::canonicalize(name).ok()).flatten() {
        Some(p) => p.display().to_string(),
        None => name.to_string(),
    }
}

impl Session {
    pub(crate) fn lora(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let model = self.model()?;
        let action = cmd.arg(0).and_then(Value::as_str).map(str::to_string);
        if let Some(action) = &action {
            if let Some(key) =
                ["r", "alpha", "dropout", "target"].into_iter().find(|k| cmd.given(k).is_some())
            {
                return Err(Error::invalid(format!(
                    "{key}= applies when attaching LoRA, not to `lora {action}`"
                ))
                .at(cmd.span_of(key)));
            }
        }
        let attached = model.params().lora().cloned();
        match (action.as_deref(), attached) {
            (Some("merge"), Some(l)) if !l.enabled => {
                bail!("LoRA is off, so merging would change the outputs you see; `lora on` first")
            }
            (Some("merge"), _) => {
                let merged = model.params().merge_lora()?;
                let n = model.params().lora().map_or(0, |l| l.adapters.len());
                self.push_undo(&cmd.text)?;
                let model = self.model.as_deref_mut().expect("checked");
                *model.params_mut() = merged;
                let p = model.params();
                sink.emit(Event::Text(format!(
                    "merged LoRA into {n} weight(s): a plain {} model again, trainable {} parameters \
                     (the base stays frozen: `unfreeze` trains it); `undo` unmerges",
                    model.family(),
                    share(p.trainable_numel(), p.numel())
                )));
            }
            (Some(a), _) => {
                let on = a == "on";
                let model = self.model.as_deref_mut().expect("checked");
                model.params_mut().set_lora_enabled(on)?;
                let note = if on { "the model uses its adapters" } else { "the model computes as its base" };
                sink.emit(Event::Text(format!("LoRA {a}: {note}")));
            }
            (None, Some(lora)) => {
                if let Some(key) =
                    ["r", "alpha", "dropout", "target"].into_iter().find(|k| cmd.given(k).is_some())
                {
                    return Err(Error::invalid(format!(
                        "LoRA is already attached ({}); `lora merge` or `undo` first to attach another",
                        lora.describe()
                    ))
                    .at(cmd.span_of(key)));
                }
                let p = model.params();
                sink.emit(Event::Text(format!(
                    "{}; trainable {} parameters",
                    lora.describe(),
                    share(p.trainable_numel(), p.numel())
                )));
            }
            (None, None) => self.attach_lora(cmd, sink)?,
        }
        Ok(())
    }

    /// `lora r= alpha= dropout= target=`: validates, then attaches fresh adapters.
    fn attach_lora(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let model = self.model()?;
        let params = model.params();
        let targets: Vec<String> = match cmd.value("target") {
            Some(Value::List(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            Some(v) => v.as_str().map(|s| vec![s.to_string()]).unwrap_or_default(),
            None => model.lora_targets().iter().map(|s| s.to_string()).collect(),
        };
        let span = cmd.given("target").map(|t| t.span).unwrap_or(cmd.span);
        if targets.is_empty() {
            return Err(Error::invalid(format!(
                "the {} model has no default LoRA targets; name them, e.g. `lora target=NAME,NAME` (`show params` lists the weights)",
                model.family()
            ))
            .at(span));
        }
        let modules_to_save = match model.task() {
            Task::Classify => model.group("head").unwrap_or_default(),
            _ => Vec::new(),
        };
        let in_head = |n: &str| modules_to_save.iter().any(|m| name_matches(m, n));
        let mut chosen: Vec<(String, bool)> = Vec::new();
        for target in &targets {
            let hits: Vec<&str> = params
                .iter()
                .filter(|p| adaptable(&p.name, p.var.dims()) && target_matches(target, &p.name))
                .map(|p| p.name.as_str())
                .collect();
            if hits.is_empty() || hits.iter().all(|h| in_head(h)) {
                if !hits.is_empty() {
                    return Err(Error::invalid(format!(
                        "'{target}' is the classifier head, which trains fully beside LoRA; target encoder layers (e.g. query,value)"
                    ))
                    .at(span));
                }
                let modules: Vec<String> = params
                    .iter()
                    .filter(|p| adaptable(&p.name, p.var.dims()))
                    .filter_map(|p| {
                        crate::model::lora::module_of(&p.name).rsplit('.').next().map(str::to_string)
                    })
                    .collect();
                let dym = suggestion(target, modules.iter().map(String::as_str));
                return Err(Error::invalid(format!(
                    "no linear weight matches target '{target}'{dym}; give module names (query, value), prefixes or globs (`show params` lists the weights)"
                ))
                .at(span));
            }
            for h in hits.into_iter().filter(|h| !in_head(h)) {
                if !chosen.iter().any(|(c, _)| c == h) {
                    chosen.push((h.to_string(), model.fan_in_fan_out(h)));
                }
            }
        }
        // peft matches plain names against every module; anything else is written as the
        // explicit list of adapted modules.
        let plain = targets.iter().all(|t| !t.contains('*') && !t.contains('.'));
        let written = if plain {
            targets.clone()
        } else {
            chosen.iter().map(|(n, _)| crate::model::lora::module_of(n).to_string()).collect()
        };
        let r = cmd.usize("r").unwrap_or(8);
        let smallest = chosen
            .iter()
            .filter_map(|(n, _)| params.get(n).map(|p| p.var.dims().iter().copied().min().unwrap_or(0)))
            .min()
            .unwrap_or(0);
        if r > smallest {
            return Err(Error::invalid(format!(
                "r={r} is more than the smallest targeted weight dimension ({smallest}); a low-rank update needs r ≤ {smallest}"
            ))
            .at(cmd.span_of("r")));
        }
        let config = LoraConfig {
            r,
            alpha: cmd.f64("alpha").unwrap_or(16.0),
            dropout: cmd.f64("dropout").unwrap_or(0.0),
            targets: written,
            rslora: false,
        };
        let adaptive = match cmd.usize("budget") {
            Some(budget) => {
                let total = r * chosen.len();
                if budget >= total {
                    return Err(Error::invalid(format!(
                        "budget={budget} must be below r × adapted weights = {r} × {} = {total} for AdaLoRA to prune anything; \
                         e.g. budget={}",
                        chosen.len(),
                        total / 2
                    ))
                    .at(cmd.span_of("budget")));
                }
                let start = cmd.usize("prune_start").unwrap_or(20) as u64;
                let end = cmd.usize("prune_end").unwrap_or(200) as u64;
                if end <= start {
                    return Err(Error::invalid(format!(
                        "prune_end={end} must come after prune_start={start} (updates)"
                    ))
                    .at(cmd.span_of("prune_end")));
                }
                Some(AdaConfig { budget, start, end, beta: 0.85 })
            }
            None => {
                for key in ["prune_start", "prune_end"] {
                    if cmd.given(key).is_some() {
                        return Err(Error::invalid(format!(
                            "{key}= schedules AdaLoRA's pruning; give budget= too"
                        ))
                        .at(cmd.span_of(key)));
                    }
                }
                None
            }
        };
        let mut rng: StdRng = self.rng.clone();
        let mut fresh = params.with_lora(
            config,
            &chosen,
            modules_to_save,
            self.model_source.clone(),
            adaptive.clone(),
            &mut rng,
        )?;
        let mut quantized_note = None;
        if let Some(dtype) = cmd.str("quantize").as_deref().and_then(crate::model::quantized::ggml_dtype) {
            let f32_bytes: usize = fresh
                .lora()
                .map(|l| l.adapters.keys().filter_map(|n| fresh.get(n)).map(|p| p.var.elem_count() * 4).sum())
                .unwrap_or(0);
            let (q, skipped) = fresh.with_quantized_base(dtype).map_err(|e| e.at(cmd.span_of("quantize")))?;
            let qb = q.quantized().expect("just quantized");
            let mut note = format!(
                "base weights under the adapters kept {}: {} values in {} instead of {} (f32); dequantized per forward pass",
                format!("{dtype:?}").to_lowercase(),
                qb.numel(),
                super::bytes(qb.bytes()),
                super::bytes(f32_bytes)
            );
            if !skipped.is_empty() {
                note += &format!(
                    "; {} weight(s) stay f32 (last dimension not a multiple of {})",
                    skipped.len(),
                    dtype.block_size()
                );
            }
            quantized_note = Some(note);
            fresh = q;
        }
        // Commit. Quantizing frees the f32 base only if no undo entry keeps it: the undo
        // history goes (a named `snapshot` taken before is the way back).
        if quantized_note.is_some() {
            self.undo.clear();
            if let Some(note) = quantized_note.as_mut() {
                *note += "; the undo history is cleared so the f32 base is freed (`snapshot NAME` before `lora` keeps a way back)";
            }
        } else {
            self.push_undo(&cmd.text)?;
        }
        let trained = self.history.step() > 0;
        let model = self.model.as_deref_mut().expect("checked");
        *model.params_mut() = fresh;
        self.rng = rng;
        self.last_grads = None;
        let p = model.params();
        let lora = p.lora().expect("just attached");
        let head = if lora.modules_to_save.is_empty() {
            String::new()
        } else {
            format!(" and the head ({})", lora.modules_to_save.join(", "))
        };
        sink.emit(Event::Text(format!(
            "{}: base weights frozen, training the adapters{head} — {} parameters trainable",
            lora.describe(),
            share(p.trainable_numel(), p.numel())
        )));
        if let Some(note) = quantized_note {
            sink.emit(Event::Text(note));
        }
        if let Some(a) = &adaptive {
            sink.emit(Event::Text(format!(
                "AdaLoRA: each update B·diag(E)·A; the total rank falls from {} to budget={} between updates {} and {}, \
                 the least important singular values (smoothed |E·∂L/∂E|) pruned first",
                lora.config.r * lora.adapters.len(),
                a.budget,
                a.start,
                a.end
            )));
        }
        if lora.config.dropout > 0.0 {
            sink.emit(Event::Text(format!(
                "note: dropout={} is saved for peft (lora_dropout) but not applied by tunelab's merged-weight LoRA; the model's own dropout still applies",
                lora.config.dropout
            )));
        }
        if trained {
            sink.emit(Event::Warning(
                "the base was trained in this session: `save` of a LoRA model writes only the adapter and head, so save the base first and load the adapter with base=DIR".into(),
            ));
        }
        if lora.base_model.is_none() {
            sink.emit(Event::Warning(
                "this base model was built at random: a saved adapter cannot be loaded without it (save the base first)".into(),
            ));
        }
        Ok(())
    }

    /// `save DIR` of a model with LoRA: the PEFT layout plus tunelab's training record.
    pub(crate) fn save_lora(&self, dir: &Path, dir_text: &str, sink: &mut dyn Sink) -> Result<()> {
        let model = self.model()?;
        save_adapter(model.params(), task_type(model.task()), dir)?;
        crate::session::checkpoint::save_training(
            dir,
            model,
            &self.optimizer,
            &self.schedule,
            &self.history,
            self.settings.seed,
        )?;
        let lora = model.params().lora().expect("caller checked");
        sink.emit(Event::Text(format!(
            "saved LoRA adapter ({} weight(s), r={}{}) at step {} to {dir_text}/ in the PEFT layout \
             (adapter_config.json, adapter_model.safetensors) with optimizer state and tunelab.json; base: {}",
            lora.adapters.len(),
            lora.config.r,
            if lora.modules_to_save.is_empty() { String::new() } else { format!(" + {}", lora.modules_to_save.join(", ")) },
            self.history.step(),
            lora.base_model.as_deref().unwrap_or("none (built at random)")
        )));
        Ok(())
    }

    /// `load DIR` of an adapter directory: its base model (`base=` or the config's
    /// `base_model_name_or_path`), then the adapter and head on top.
    pub(crate) fn load_adapter(
        &self,
        cmd: &Command,
        dir: &Path,
        rng: &mut StdRng,
        sink: &mut dyn Sink,
    ) -> Result<LoadedAdapter> {
        let cfg_path = dir.join("adapter_config.json");
        let cfg = read_json(&cfg_path)?;
        // LoRA, or prompt tuning (`None`).
        let config = match cfg.get("peft_type").and_then(|v| v.as_str()) {
            Some("PROMPT_TUNING") => None,
            _ => Some(read_adapter_config(&cfg, &cfg_path)?),
        };
        let recorded = cfg.get("base_model_name_or_path").and_then(|v| v.as_str()).map(str::to_string);
        let (base_name, span) = match (cmd.str("base"), recorded) {
            (Some(b), _) => (b, cmd.span_of("base")),
            (None, Some(b)) => (b, cmd.args[0].span),
            (None, None) => bail!("'{}' names no base model; give it with base=DIR", cfg_path.display()),
        };
        let base_dir = hub::resolve(&base_name).map_err(|e| {
            Error::invalid(format!(
                "the adapter's base model '{base_name}' was not found ({e}); give it with base=DIR"
            ))
            .at(span)
        })?;
        let tensors = read_tensors(&dir.join("adapter_model.safetensors"), &self.device)?;
        let training = load_training(dir, &self.device)?;
        let base_config = read_json(&base_dir.join("config.json")).ok();
        // A classifier head saved with the adapter fixes the number of classes.
        let head_rows = tensors
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix(PEFT_PREFIX).or_else(|| k.strip_prefix("base_model.")).is_some_and(|n| {
                    ["classifier.weight", "classifier.out_proj.weight", "score.weight"].contains(&n)
                })
            })
            .find_map(|(_, t)| t.dim(0).ok());
        let task = match head_rows {
            Some(n) => {
                let data = self.data.as_ref().and_then(|d| d.text()).map(|d| d.label_set.names.clone());
                let candidates = [
                    training.as_ref().and_then(|t| t.labels.clone()),
                    base_config.as_ref().and_then(config_labels),
                    data,
                ];
                let labels = candidates
                    .into_iter()
                    .flatten()
                    .find(|l| l.len() == n)
                    .unwrap_or_else(|| (0..n).map(|i| i.to_string()).collect());
                BertTask::Classify(labels)
            }
            None => self.text_task(cmd, base_config.as_ref()).0,
        };
        let mut model: Box<dyn Model> =
            Box::new(load_text_model(&base_dir, task, rng, &self.device).map_err(|e| e.at(span))?);
        let base = source_name(&base_name);
        let path = dir.join("adapter_model.safetensors");
        let what = match config {
            Some(config) => {
                let params = model.params().with_peft_tensors(
                    config,
                    tensors,
                    |n| model.fan_in_fan_out(n),
                    Some(base.clone()),
                    &path,
                )?;
                *model.params_mut() = params;
                model.params().lora().expect("just attached").describe()
            }
            None => {
                super::prompt::attach_peft_prompt(model.as_mut(), tensors, &path)?;
                format!("prompt tuning with {} virtual tokens", model.params().prompt_tokens().unwrap_or(0))
            }
        };
        sink.emit(Event::Text(format!("adapter: {what} on base {base}")));
        Ok(LoadedAdapter { model, training, head_from_checkpoint: head_rows.is_some(), base })
    }
}
