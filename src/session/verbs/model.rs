//! `load`, `freeze` / `unfreeze`, `save`.

use std::path::Path;

use rand::rngs::StdRng;

use crate::dsl::{suggestion, Command, Value};
use crate::error::{Error, Result};
use crate::metrics::History;
use crate::model::{load_model, save_model, Init, Linear, Model};
use crate::session::checkpoint::{load_training, save_training};
use crate::session::{Event, Session, Sink};
use crate::train::Optimizer;

impl Session {
    pub(crate) fn load(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let name = cmd.arg(0).and_then(Value::as_str).unwrap_or_default().to_string();
        let mut rng: StdRng = self.rng.clone();
        let mut training = None;
        let model: Box<dyn Model> = if name == "linear" {
            let inputs = match cmd.usize("inputs") {
                Some(n) => n,
                None => self.data.as_ref().map_or(1, |d| d.dims()),
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
            let dir = Path::new(&name);
            if !dir.is_dir() {
                let dym = suggestion(&name, ["linear"]);
                return Err(Error::invalid(format!(
                    "no model '{name}'{dym}: give `linear`, or a directory written by `save`"
                ))
                .at(cmd.args[0].span));
            }
            let model = load_model(dir, &self.device).map_err(|e| e.at(cmd.args[0].span))?;
            training = load_training(dir, &self.device)?;
            model
        };
        if let Some(data) = &self.data {
            if let Some(inputs) = model.input_dims().filter(|d| *d != data.dims()) {
                sink.emit(Event::Warning(format!(
                    "the model has {inputs} input(s) but the loaded data has {}; load matching data before `fit`",
                    data.dims()
                )));
            }
        }

        // Commit: a new model starts a new training record.
        let mut model = model;
        let (optimizer, history, resumed) = match training {
            Some(t) => {
                for pattern in &t.frozen {
                    let idx = model.params().matching(pattern);
                    model.params_mut().set_trainable(&idx, false);
                }
                self.schedule = t.schedule;
                (t.optimizer, t.history, true)
            }
            None => (Optimizer::new(self.optimizer.config.clone()), History::default(), false),
        };
        self.model = Some(model);
        self.model_id += 1;
        self.optimizer = optimizer;
        self.history = history;
        self.last_grads = None;
        self.undo.clear();
        self.step_queue.clear();
        self.rng = rng;
        let m = self.model()?;
        let values: Vec<String> = if m.params().numel() <= 8 {
            self.weights()?.iter().map(|(n, v)| format!("{n}={}", fmt_values(v))).collect()
        } else {
            Vec::new()
        };
        let mut line = format!("model: {}", m.describe());
        if !values.is_empty() {
            line += &format!(" — initial {}", values.join(", "));
        }
        if resumed {
            line += &format!(
                " — resumed at step {} with {}",
                self.history.step(),
                self.optimizer.config.describe()
            );
        }
        sink.emit(Event::Text(line));
        Ok(())
    }

    pub(crate) fn freeze(&mut self, cmd: &Command, sink: &mut dyn Sink, unfreeze: bool) -> Result<()> {
        let model = self.model()?;
        let params = model.params();
        let mut selected: Vec<usize> = Vec::new();
        let names: Vec<(&str, crate::dsl::Span)> =
            cmd.args.iter().filter_map(|a| a.value.as_str().map(|s| (s, a.span))).collect();
        for (name, span) in &names {
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
                .at(*span));
            }
            selected.extend(hits);
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
        if names.is_empty() && cmd.given("layers").is_none() {
            selected = (0..params.len()).collect();
        }
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
        let what = if changed.is_empty() {
            "nothing changed".to_string()
        } else {
            format!("{verb}: {}", changed.join(", "))
        };
        sink.emit(Event::Text(format!(
            "{what}; trainable {t}/{n} parameters ({:.1}%)",
            100.0 * t as f64 / n.max(1) as f64
        )));
        Ok(())
    }

    pub(crate) fn save(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let model = self.model()?;
        let dir_text = cmd.arg(0).and_then(Value::as_str).unwrap_or_default();
        let dir = Path::new(dir_text);
        if dir.is_file() {
            return Err(Error::invalid(format!("'{dir_text}' is a file; `save` writes a directory"))
                .at(cmd.args[0].span));
        }
        save_model(model, dir)?;
        save_training(dir, model, &self.optimizer, &self.schedule, &self.history)?;
        sink.emit(Event::Text(format!(
            "saved {} model at step {} to {dir_text}/ (config.json, model.safetensors, optimizer state, tunelab.json)",
            model.family(),
            self.history.step()
        )));
        Ok(())
    }
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
