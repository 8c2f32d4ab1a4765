//! `show`: params, grads, config, history, data, model, optimizer, snapshots, device.

use super::model::fmt_values;
use super::results::short;
use super::setup::device_name;
use super::{bytes, num};
use crate::data::{Dataset, Split, TextData};
use crate::dsl::{Command, Value};
use crate::error::Result;
use crate::session::settings::SMALL_MODEL;
use crate::session::{Event, Outcome, Session, Sink, Table};

/// `mean 23.1, median 21, max 88`.
fn length_stats(lens: &[usize]) -> String {
    if lens.is_empty() {
        return "none".into();
    }
    let mut sorted = lens.to_vec();
    sorted.sort_unstable();
    let mean = sorted.iter().sum::<usize>() as f64 / sorted.len() as f64;
    format!("mean {mean:.1}, median {}, max {}", sorted[sorted.len() / 2], sorted[sorted.len() - 1])
}

/// Summary statistics of a flat tensor: `mean ± std [min, max]`.
fn stats(v: &[f32]) -> String {
    if v.is_empty() {
        return "(empty)".into();
    }
    let n = v.len() as f64;
    let mean = v.iter().map(|x| *x as f64).sum::<f64>() / n;
    let var = v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / n;
    let (lo, hi) = v.iter().fold((f32::MAX, f32::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
    format!("mean {} ± {} [{}, {}]", num(mean), num(var.sqrt()), num(lo as f64), num(hi as f64))
}

impl Session {
    pub(crate) fn show(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        match cmd.arg(0).and_then(Value::as_str) {
            None => self.show_summary(sink),
            Some("params") => self.show_params(sink),
            Some("grads") => self.show_grads(sink),
            Some("config") => self.show_config(sink),
            Some("history") => self.show_history(sink),
            Some("data") => self.show_data(sink),
            Some("model") => self.show_model(sink),
            Some("optimizer") => {
                sink.emit(Event::Text(format!(
                    "optimizer {}\nlr schedule: {}\nstate: {} parameter(s), {}",
                    self.optimizer.config.describe(),
                    self.schedule.describe(),
                    self.optimizer.tracked(),
                    bytes(self.optimizer.state_bytes())
                )));
                Ok(())
            }
            Some("snapshots") => self.show_snapshots(sink),
            Some("device") => self.show_device(sink),
            Some("memory") => self.show_memory(sink),
            Some(other) => unreachable!("'{other}' is not in the table's choices"),
        }
    }

    fn show_summary(&self, sink: &mut dyn Sink) -> Result<()> {
        let mut t = Table::new(["", ""]);
        t.row(["device".to_string(), device_name(&self.device)]);
        t.row([
            "model".to_string(),
            self.model.as_ref().map_or("none (load linear)".into(), |m| m.describe()),
        ]);
        t.row([
            "data".to_string(),
            self.data.as_ref().map_or("none (data synthetic linear)".into(), |d| {
                format!("{} ({} rows)", d.source(), d.len())
            }),
        ]);
        t.row(["optimizer".to_string(), self.optimizer.config.describe()]);
        t.row(["schedule".to_string(), self.schedule.describe()]);
        t.row([
            "trained".to_string(),
            format!("{} steps, {} epochs", self.history.step(), self.history.epoch()),
        ]);
        t.columns = vec!["session".into(), String::new()];
        sink.emit(Event::Table(t));
        Ok(())
    }

    fn show_params(&self, sink: &mut dyn Sink) -> Result<()> {
        let model = self.model()?;
        let small = model.params().numel() <= SMALL_MODEL;
        let mut t = Table::new(["param", "shape", "trainable", "value"]);
        for p in model.params().iter() {
            let v = p.var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            let value = if small { fmt_values(&v) } else { stats(&v) };
            t.row([
                p.name.clone(),
                format!("{:?}", p.var.dims()),
                (if p.trainable { "yes" } else { "frozen" }).to_string(),
                value,
            ]);
        }
        let (tr, n) = (model.params().trainable_numel(), model.params().numel());
        t.title = Some(format!("{n} parameters, trainable {}", super::share(tr, n)));
        sink.emit(Event::Table(t));
        if let Some(lora) = model.params().lora() {
            sink.emit(Event::Text(format!(
                "{}; trainable {} parameters",
                lora.describe(),
                super::share(tr, n)
            )));
        }
        Ok(())
    }

    fn show_grads(&self, sink: &mut dyn Sink) -> Result<()> {
        let Some(grads) = &self.last_grads else {
            sink.emit(Event::Text("no gradients yet: run `step` or `fit`".into()));
            return Ok(());
        };
        let small = grads.iter().map(|(_, g)| g.elem_count()).sum::<usize>() <= SMALL_MODEL;
        let mut t = Table::new(["param", "gradient", "norm"])
            .titled(format!("gradients of the last update (step {})", self.history.step()));
        for (name, g) in grads {
            let v = g.flatten_all()?.to_vec1::<f32>()?;
            let norm = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            t.row([name.clone(), if small { fmt_values(&v) } else { stats(&v) }, num(norm)]);
        }
        sink.emit(Event::Table(t));
        Ok(())
    }

    fn show_config(&self, sink: &mut dyn Sink) -> Result<()> {
        let mut t = Table::new(["setting", "value", "meaning (command to change it)"]);
        let rows = [
            ("device", device_name(&self.device), "where tensors live (device cpu|cuda|auto)"),
            ("seed", self.settings.seed.to_string(), "seeds shuffling, splits and init (seed N)"),
            ("batch", self.settings.batch.to_string(), "rows per update (batch N, or fit batch=N)"),
            ("epochs", self.settings.epochs.to_string(), "passes per fit (epochs N, or fit epochs=N)"),
            ("optimizer", self.optimizer.config.describe(), "update rule (optimizer NAME key=value)"),
            ("lr", num(self.optimizer.config.lr), "base learning rate (lr X)"),
            ("schedule", self.schedule.describe(), "lr over each fit (lr schedule=… warmup=…)"),
            (
                "loss weights",
                self.settings.class_weights.describe(),
                "class weights of the classifier loss (loss weights=auto|[w0,w1,…]|none)",
            ),
            (
                "regularize",
                format!("l1={} l2={}", self.settings.l1, self.settings.l2),
                "penalties added to the loss (regularize l1=… l2=…)",
            ),
        ];
        for (k, v, doc) in rows {
            t.row([k.to_string(), v, doc.to_string()]);
        }
        sink.emit(Event::Table(t));
        Ok(())
    }

    fn show_history(&self, sink: &mut dyn Sink) -> Result<()> {
        let h = &self.history;
        if h.epochs.is_empty() && h.evals.is_empty() {
            sink.emit(Event::Text(format!("no epochs yet ({} single steps)", h.step())));
        }
        if !h.epochs.is_empty() {
            let mut t = Table::new(["epoch", "step", "train loss", "valid loss", ""]).titled(format!(
                "{} epochs, {} steps",
                h.epoch(),
                h.step()
            ));
            let skip = h.epochs.len().saturating_sub(20);
            if skip > 0 {
                t.title = Some(format!("{} epochs, {} steps (last 20 shown)", h.epoch(), h.step()));
            }
            for e in h.epochs.iter().skip(skip) {
                t.row([
                    e.epoch.to_string(),
                    e.step.to_string(),
                    num(e.train_loss),
                    e.valid_loss.map(num).unwrap_or_else(|| "-".into()),
                    (if e.complete { "" } else { "partial" }).to_string(),
                ]);
            }
            sink.emit(Event::Table(t));
        }
        if !h.evals.is_empty() {
            let mut t = Table::new(["step", "split", "metric", "value"]).titled("evaluations");
            for e in &h.evals {
                t.row([e.step.to_string(), e.split.clone(), e.metric.clone(), num(e.value)]);
            }
            sink.emit(Event::Table(t));
        }
        let mut t = Table::new(["#", "command", "outcome"]).titled("commands");
        let skip = self.log.len().saturating_sub(30);
        for (i, entry) in self.log.iter().enumerate().skip(skip) {
            let outcome = match &entry.outcome {
                Outcome::Done => "ok".to_string(),
                Outcome::Interrupted => "interrupted".to_string(),
                Outcome::Failed(m) => format!("failed: {m}"),
            };
            t.row([(i + 1).to_string(), entry.text.clone(), outcome]);
        }
        sink.emit(Event::Table(t));
        Ok(())
    }

    fn show_data(&self, sink: &mut dyn Sink) -> Result<()> {
        match self.data_set()? {
            Dataset::Numeric(data) => {
                let mut t = Table::new(["split", "rows"]).titled(format!(
                    "{}: inputs {} → target {}",
                    data.source,
                    data.inputs.join(", "),
                    data.target
                ));
                for s in Split::ALL {
                    t.row([s.name().to_string(), data.split(s).len().to_string()]);
                }
                sink.emit(Event::Table(t));
            }
            Dataset::Text(data) => self.show_text_data(data, sink)?,
        }
        Ok(())
    }

    fn show_text_data(&self, data: &TextData, sink: &mut dyn Sink) -> Result<()> {
        // Rows per split and label.
        let names = &data.label_set.names;
        let mut t = Table::new(
            std::iter::once("split".to_string()).chain(names.iter().cloned()).chain(["total".to_string()]),
        )
        .titled(format!(
            "{}: {} texts, labels {}",
            data.source,
            data.len(),
            data.label_set.describe()
        ));
        for s in Split::ALL {
            let counts = data.class_counts(s);
            let total: usize = counts.iter().sum();
            let cells =
                counts.iter().map(|c| format!("{c} ({:.0}%)", 100.0 * *c as f64 / total.max(1) as f64));
            t.row(std::iter::once(s.name().to_string()).chain(cells).chain([total.to_string()]));
        }
        sink.emit(Event::Table(t));
        if let Some(w) = super::data::imbalance_warning(data) {
            sink.emit(Event::Warning(w));
        }
        // Lengths, cleaning, truncation.
        let r = &data.report;
        let chars: Vec<usize> = data.texts.iter().map(|t| t.chars().count()).collect();
        let mut lines = vec![
            format!(
                "cleaning: {} empty and {} duplicate texts removed; {} augmented copies{}",
                r.empty,
                r.duplicates,
                r.augmented,
                r.rebalanced
                    .map_or(String::new(), |(how, a, b)| format!("; train {how:?}d from {a} to {b} rows")
                        .to_lowercase())
            ),
            format!("characters per text: {}", length_stats(&chars)),
        ];
        match (data.token_lens(), data.token_stats()) {
            (Some(lens), Some((_, unknown))) if data.window_stats().is_some() => {
                let (split, windows) = data.window_stats().unwrap_or_default();
                let lens: Vec<usize> = lens.iter().map(|l| *l as usize).collect();
                lines.push(format!("tokens per window: {}", length_stats(&lens)));
                lines.push(format!(
                    "{split} text(s) longer than max_len={} split into overlapping windows (stride={}): \
                     {windows} windows for {} texts; {unknown} unknown token(s)",
                    data.max_len,
                    data.stride.unwrap_or(0),
                    data.len()
                ));
            }
            (Some(lens), Some((truncated, unknown))) => {
                let lens: Vec<usize> = lens.iter().map(|l| *l as usize).collect();
                lines.push(format!("tokens per text: {}", length_stats(&lens)));
                lines.push(format!(
                    "{truncated} text(s) truncated to max_len={}; {unknown} unknown token(s)",
                    data.max_len
                ));
            }
            _ => lines.push(format!("not tokenized yet (max_len={}): load a text model", data.max_len)),
        }
        sink.emit(Event::Text(lines.join("\n")));
        // A few samples, tokenized.
        let tok = self.model.as_ref().and_then(|m| m.tokenizer());
        let mut samples = Table::new(["label", "text", "tokens"]).titled("samples");
        for &i in data.text_split(Split::Train).iter().take(3) {
            let text = &data.texts[i as usize];
            let tokens = match tok {
                Some(t) => t.tokens(text)?.join(" "),
                None => "-".into(),
            };
            samples.row([
                names[data.labels[i as usize] as usize].clone(),
                short(text, 50),
                short(&tokens, 70),
            ]);
        }
        sink.emit(Event::Table(samples));
        Ok(())
    }

    fn show_model(&self, sink: &mut dyn Sink) -> Result<()> {
        let model = self.model()?;
        let config = serde_json::to_string_pretty(&model.config()).unwrap_or_default();
        sink.emit(Event::Text(format!("{}\nconfig.json:\n{config}", model.describe())));
        Ok(())
    }

    fn show_snapshots(&self, sink: &mut dyn Sink) -> Result<()> {
        let mut t = Table::new(["name", "step", "kind", "memory"]);
        for s in &self.snapshots {
            let stale = if s.model_id == self.model_id { "" } else { " (earlier model)" };
            t.row([s.name.clone(), s.step().to_string(), format!("snapshot{stale}"), bytes(s.bytes())]);
        }
        for s in self.undo.iter().rev() {
            t.row([
                format!("before `{}`", s.name),
                s.step().to_string(),
                "undo".to_string(),
                bytes(s.bytes()),
            ]);
        }
        if t.rows.is_empty() {
            sink.emit(Event::Text(
                "no snapshots (snapshot NAME keeps one; fit and step keep undo copies)".into(),
            ));
        } else {
            sink.emit(Event::Table(t));
        }
        Ok(())
    }

    /// Bytes of the weights by dtype, trainable and frozen, and of the optimizer state and
    /// the last gradients (what LoRA, freezing and quantization save).
    fn show_memory(&self, sink: &mut dyn Sink) -> Result<()> {
        let model = self.model()?;
        let mut by: std::collections::BTreeMap<(bool, String), (usize, usize)> = Default::default();
        for p in model.params().iter() {
            let t = p.var.as_tensor();
            let e = by.entry((p.trainable, format!("{:?}", t.dtype()).to_lowercase())).or_default();
            e.0 += t.elem_count();
            e.1 += t.elem_count() * t.dtype().size_in_bytes();
        }
        let mut t = Table::new(["held", "dtype", "values", "bytes"]).titled(format!(
            "memory of {} on {}",
            model.family(),
            device_name(&self.device)
        ));
        let mut total = 0;
        for ((trainable, dtype), (n, b)) in by.iter().rev() {
            let what = if *trainable { "trainable weights" } else { "frozen weights" };
            t.row([what.to_string(), dtype.clone(), n.to_string(), bytes(*b)]);
            total += b;
        }
        if let Some(q) = model.params().quantized() {
            let dtype = format!("{:?}", q.dtype).to_lowercase();
            t.row(["frozen weights".to_string(), dtype, q.numel().to_string(), bytes(q.bytes())]);
            total += q.bytes();
        }
        let grads: usize = self
            .last_grads
            .as_ref()
            .map_or(0, |g| g.iter().map(|(_, t)| t.elem_count() * t.dtype().size_in_bytes()).sum());
        for (what, b) in [("optimizer state", self.optimizer.state_bytes()), ("last gradients", grads)] {
            t.row([what.to_string(), "-".into(), "-".into(), bytes(b)]);
            total += b;
        }
        t.row(["total".to_string(), "".into(), "".into(), bytes(total)]);
        // What the CUDA driver counts (every tensor, activations included) beside the sums above.
        match crate::device_memory::read(&self.device) {
            Some(now) => {
                let peak =
                    self.last_step_peak.map_or_else(|| "no fit step yet".into(), |b| bytes(b as usize));
                t.row(["device memory in use".to_string(), "".into(), "".into(), bytes(now.in_use as usize)]);
                t.row(["peak of the last step".to_string(), "".into(), "".into(), peak]);
            }
            None => t.row(["peak of the last step".to_string(), "".into(), "".into(), "on CUDA only".into()]),
        }
        sink.emit(Event::Table(t));
        Ok(())
    }

    fn show_device(&self, sink: &mut dyn Sink) -> Result<()> {
        let weights = self.model.as_ref().map_or(0, |m| {
            m.params().iter().map(|p| p.var.elem_count() * p.var.dtype().size_in_bytes()).sum::<usize>()
                + m.params().quantized().map_or(0, |q| q.bytes())
        });
        let grads = self
            .last_grads
            .as_ref()
            .map_or(0, |g| g.iter().map(|(_, t)| t.elem_count() * t.dtype().size_in_bytes()).sum());
        let data = self.data.as_ref().map_or(0, |d| d.device_bytes());
        let snaps: usize = self.snapshots.iter().chain(&self.undo).map(|s| s.bytes()).sum();
        let mut t = Table::new(["held on the device", "bytes"])
            .titled(format!("device {}", device_name(&self.device)));
        for (k, v) in [
            ("weights", weights),
            ("gradients", grads),
            ("optimizer state", self.optimizer.state_bytes()),
            ("data", data),
            ("snapshots + undo", snaps),
        ] {
            t.row([k.to_string(), bytes(v)]);
        }
        sink.emit(Event::Table(t));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::session::{Event, Session};

    /// `show memory` keeps its rows after a fit; on the CPU the peak row says where it is
    /// measured instead of a number.
    #[test]
    fn show_memory_on_the_cpu_keeps_its_rows_and_names_cuda_for_the_peak() {
        let mut s = Session::new();
        let mut out: Vec<Event> = Vec::new();
        s.run(
            "device cpu; data synthetic linear n=64 w=3 b=2 split=1/0; load linear; optimizer adam lr=0.1; fit steps=1 batch=64; show memory",
            &mut out,
        )
        .unwrap();
        let t = out
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Table(t) => Some(t),
                _ => None,
            })
            .unwrap();
        let first: Vec<&str> = t.rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(
            first,
            ["trainable weights", "optimizer state", "last gradients", "total", "peak of the last step"],
            "{:?}",
            t.rows
        );
        assert_eq!(t.rows[4][3], "on CUDA only");
        // Adam's two moments of the two f32 weights.
        assert_eq!(t.rows[1][3], "16 B");
    }
}
