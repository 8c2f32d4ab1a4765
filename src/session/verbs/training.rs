//! `optimizer`, `lr`, `fit`, `step`.

use std::time::Instant;

use rand::seq::SliceRandom;

use super::{num, signed};
use crate::data::{Dataset, Split};
use crate::dsl::{Command, Value};
use crate::error::{bail, Error, Result};
use crate::metrics::{PathPoint, StepRecord};
use crate::model::layers::step_seed;
use crate::model::Pass;
use crate::session::settings::SMALL_MODEL;
use crate::session::snapshot::Snapshot;
use crate::session::{Event, Session, Sink, Table};
use crate::train::{copy_weights, fisher_diagonal, Ewc, L2Sp, FISHER_ROWS};
use crate::train::{
    fit, lr_range_test, train_step, FitEnd, FitPlan, Monitor, OptimConfig, OptimKind, Optimizer,
    ScheduleKind, StepConfig, StepResult, Trainer,
};

impl Session {
    pub(crate) fn optimizer_cmd(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let name = cmd.arg(0).and_then(Value::as_str);
        if name.is_none() && cmd.options.is_empty() {
            sink.emit(Event::Text(format!("optimizer {}", self.optimizer.config.describe())));
            return Ok(());
        }
        let current = &self.optimizer.config;
        let kind = name.and_then(OptimKind::from_name).unwrap_or(current.kind);
        let mut config =
            if kind == current.kind { current.clone() } else { OptimConfig::defaults(kind, current.lr) };
        if let Some(lr) = cmd.f64("lr") {
            config.lr = lr;
        }
        if let Some(m) = cmd.f64("momentum") {
            config.momentum = m;
        }
        if let Some(n) = cmd.bool("nesterov") {
            config.nesterov = n;
        }
        if let Some(wd) = cmd.f64("weight_decay") {
            config.weight_decay = wd;
        }
        if let Some(Value::List(b)) = cmd.value("betas") {
            match b.as_slice() {
                [b1, b2] => config.betas = (b1.as_f64().unwrap_or(0.9), b2.as_f64().unwrap_or(0.999)),
                _ => {
                    return Err(Error::invalid("betas takes two numbers, like betas=0.9,0.999")
                        .at(cmd.span_of("betas")))
                }
            }
        }
        if let Some(eps) = cmd.f64("eps") {
            config.eps = eps;
        }
        if let Some(a) = cmd.f64("alpha") {
            config.alpha = a;
        }
        for (key, kinds) in [
            ("momentum", &[OptimKind::Sgd, OptimKind::RmsProp][..]),
            ("nesterov", &[OptimKind::Sgd]),
            ("betas", &[OptimKind::Adam, OptimKind::AdamW]),
            ("alpha", &[OptimKind::RmsProp]),
            ("eps", &[OptimKind::Adam, OptimKind::AdamW, OptimKind::RmsProp]),
        ] {
            if cmd.given(key).is_some() && !kinds.contains(&kind) {
                let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
                return Err(Error::invalid(format!(
                    "{key}= applies to {}, not {}",
                    names.join("/"),
                    kind.name()
                ))
                .at(cmd.span_of(key)));
            }
        }
        config.validate()?;
        let fresh = kind != self.optimizer.config.kind;
        let had_state = self.optimizer.tracked() > 0;
        if fresh {
            self.optimizer = Optimizer::new(config);
        } else {
            self.optimizer.reconfigure(config);
        }
        let note = if fresh && had_state { " (new optimizer: state starts fresh)" } else { "" };
        sink.emit(Event::Text(format!("optimizer {}{note}", self.optimizer.config.describe())));
        Ok(())
    }

    pub(crate) fn lr(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        if cmd.arg(0).and_then(Value::as_str) == Some("find") {
            return self.lr_find(cmd, sink);
        }
        for key in ["start", "end", "steps"] {
            if cmd.given(key).is_some() {
                return Err(Error::invalid(format!("{key}= belongs to `lr find`")).at(cmd.span_of(key)));
            }
        }
        let mut schedule = self.schedule.clone();
        let mut lr = self.optimizer.config.lr;
        if let Some(arg) = cmd.args.first() {
            let atom = crate::dsl::Atom { text: arg.value.to_string(), quoted: false };
            lr = crate::dsl::Kind::Float(crate::dsl::Bound::Positive)
                .parse_atom(&atom)
                .ok()
                .and_then(|v| v.as_f64())
                .ok_or_else(|| {
                    let why = crate::dsl::Kind::Float(crate::dsl::Bound::Positive)
                        .parse_atom(&atom)
                        .err()
                        .unwrap_or_default();
                    Error::invalid(format!("lr VALUE: {why}; or `lr find`")).at(arg.span)
                })?;
        }
        if let Some(k) = cmd.str("schedule") {
            schedule.kind = ScheduleKind::from_name(&k).expect("choices come from the table");
        }
        if let Some(w) = cmd.f64("warmup") {
            if w >= 1.0 && w.fract() != 0.0 {
                return Err(Error::invalid("warmup is a whole number of steps (≥ 1) or a fraction below 1")
                    .at(cmd.span_of("warmup")));
            }
            schedule.warmup = w;
        }
        if let Some(m) = cmd.f64("min_lr") {
            schedule.min_lr = m;
        }
        if let Some(s) = cmd.usize("step_size") {
            schedule.step_size = s;
        }
        if let Some(g) = cmd.f64("gamma") {
            schedule.gamma = g;
        }
        if schedule.min_lr > lr {
            bail!("min_lr ({}) is above the learning rate ({lr}); lower min_lr", schedule.min_lr)
        }
        self.optimizer.config.lr = lr;
        self.schedule = schedule;
        sink.emit(Event::Text(format!("lr {} {}", lr, self.schedule.describe())));
        Ok(())
    }

    /// `lr find`: the range test on a copy of the state, a plot, a suggestion.
    fn lr_find(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        self.check_trainable()?;
        let (start, end) = (cmd.f64("start").unwrap_or(1e-7), cmd.f64("end").unwrap_or(10.0));
        if start >= end {
            return Err(Error::invalid(format!("start= ({start}) must be below end= ({end})"))
                .at(cmd.span_of("start")));
        }
        let steps = cmd.usize("steps").unwrap_or(100);
        let before = Snapshot::take(
            "lr find".into(),
            self.model_id,
            self.model()?,
            &self.optimizer,
            &self.history,
            &self.rng,
        )?;
        let (Some(model), Some(data)) = (self.model.as_deref(), self.data.as_ref()) else {
            unreachable!("checked")
        };
        let cfg = StepConfig { accumulate: 1, clip: None, ..self.step_config(cmd)? };
        let result = lr_range_test(
            model,
            &mut self.optimizer,
            data,
            self.settings.batch,
            (start, end, steps),
            self.settings.seed,
            &cfg,
            &self.cancel,
        );
        // Whatever happened, the weights and optimizer state go back.
        let model = self.model.as_deref_mut().expect("checked");
        let (optimizer, history, rng) = before.restore(model)?;
        (self.optimizer, self.history, self.rng) = (optimizer, history, rng);
        let test = result?;
        let steep = test.steepest;
        let smoothed: Vec<(f64, f64)> = test.points.iter().map(|p| (p.0.log10(), p.2)).collect();
        let at = smoothed
            .iter()
            .min_by(|a, b| (a.0 - steep.log10()).abs().total_cmp(&(b.0 - steep.log10()).abs()))
            .copied();
        let figure = crate::plot::line_chart(&crate::plot::LineChart {
            name: "lr_find".into(),
            title: format!("learning-rate range test — suggestion {steep:.2e}"),
            x_label: "log10(learning rate)".into(),
            y_label: "loss".into(),
            series: vec![
                crate::plot::Series {
                    label: "loss".into(),
                    points: test.points.iter().map(|p| (p.0.log10(), p.1)).collect(),
                    style: crate::plot::SeriesStyle::Thin,
                },
                crate::plot::Series {
                    label: "smoothed loss".into(),
                    points: smoothed,
                    style: crate::plot::SeriesStyle::Bold,
                },
                crate::plot::Series {
                    label: format!("steepest descent {steep:.1e}"),
                    points: at.into_iter().collect(),
                    style: crate::plot::SeriesStyle::Markers,
                },
            ],
            log_y: test.points.iter().map(|p| p.1).fold(0.0, f64::max)
                > 100.0 * test.points.iter().map(|p| p.1).fold(f64::MAX, f64::min),
        })?;
        sink.emit(Event::Image(crate::session::Image { figure, file: None }));
        sink.emit(Event::Text(format!(
            "lr find: {} steps from {start:.0e}; the loss falls fastest at {steep:.2e} and is lowest at {:.2e} \
             (a tenth of that: {:.2e}); try `lr {}` — the weights and optimizer state are as before",
            test.points.len(),
            test.minimum,
            test.minimum / 10.0,
            num(steep)
        )));
        Ok(())
    }

    /// Checks that the model and data fit together by a forward pass on one row (no
    /// gradient), so a mismatch fails before anything changes.
    fn check_trainable(&self) -> Result<()> {
        let model = self.model()?;
        let data = self.data_set()?;
        if model.params().trainable_numel() == 0 {
            bail!("every parameter is frozen: `unfreeze` some (e.g. `unfreeze all`) before training")
        }
        let first = &data.split(Split::Train)[..1];
        model.forward(&data.batch(first)?, &mut Pass::eval())?;
        Ok(())
    }

    /// A fresh masked-LM head starts from the training split's token frequencies (see
    /// [`crate::model::Model::start_from_token_prior`]), announced once.
    fn start_from_token_prior(&mut self, sink: &mut dyn Sink) -> Result<()> {
        let (Some(model), Some(Dataset::Text(data))) = (self.model.as_mut(), self.data.as_ref()) else {
            return Ok(());
        };
        if model.task() != crate::model::Task::MaskedLm {
            return Ok(());
        }
        if let Some(loss) = model.start_from_token_prior(&|| data.token_counts(Split::Train))? {
            sink.emit(Event::Text(format!(
                "masked-LM head: a fresh output bias starts at the log token frequencies of the training split, \
                 so the training loss starts near {loss:.2} (what knowing only those frequencies scores) rather \
                 than log(vocab), and the first updates learn context instead of which tokens are common"
            )));
        }
        Ok(())
    }

    /// Accumulation and clipping from the command, penalties from `regularize`.
    fn step_config(&self, cmd: &Command) -> Result<StepConfig> {
        Ok(StepConfig {
            accumulate: cmd.usize("accumulate").unwrap_or(1),
            clip: cmd.f64("clip"),
            l1: self.settings.l1,
            l2: self.settings.l2,
            class_weights: self.class_weights_now()?,
            anchors: (!self.anchors.is_empty()).then(|| self.anchors.clone()),
            distill: self.distill.clone(),
            loss_scale: self.settings.precision.scales_loss().then(|| self.loss_scaler.clone()),
        })
    }

    pub(crate) fn regularize(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        // Validate and build everything first; assign last.
        if cmd.given("data").is_some() && cmd.given("ewc").is_none() {
            return Err(Error::invalid(
                "data= names the split that ewc= estimates the Fisher information on; add ewc=λ",
            )
            .at(cmd.span_of("data")));
        }
        let mut anchors = (*self.anchors).clone();
        if let Some(w) = cmd.f64("l2sp") {
            anchors.l2sp = match (w, anchors.l2sp.take()) {
                (0.0, _) => None,
                (w, Some(old)) => Some(L2Sp { weight: w, ..old }),
                (w, None) => {
                    let model = self.model().map_err(|e| e.at(cmd.span_of("l2sp")))?;
                    Some(L2Sp { weight: w, anchor: copy_weights(model)?, step: self.history.step() })
                }
            };
        }
        if let Some(lambda) = cmd.f64("ewc") {
            anchors.ewc = if lambda == 0.0 {
                None
            } else {
                let model = self.model().map_err(|e| e.at(cmd.span_of("ewc")))?;
                let data = self.data_set().map_err(|e| e.at(cmd.span_of("ewc")))?;
                let split = cmd.str("data").as_deref().and_then(Split::from_name).unwrap_or(Split::Train);
                let rows = data.split(split);
                if rows.is_empty() {
                    return Err(Error::invalid(format!(
                        "the {} split is empty; estimate the Fisher information on another (data=train)",
                        split.name()
                    ))
                    .at(cmd.span_of("data")));
                }
                model.forward(&data.batch(&rows[..1])?, &mut Pass::eval())?;
                let n = rows.len().min(FISHER_ROWS);
                let (terms, max) = fisher_diagonal(model, data, rows)?;
                let source = format!(
                    "{} rows of the {} split of {} at step {}",
                    n,
                    split.name(),
                    data.source(),
                    self.history.step()
                );
                Some(Ewc { lambda, terms, source, max })
            };
        }
        if let Some(v) = cmd.f64("l1") {
            self.settings.l1 = v;
        }
        if let Some(v) = cmd.f64("l2") {
            self.settings.l2 = v;
        }
        let fresh_ewc = cmd.f64("ewc").is_some_and(|l| l > 0.0);
        self.anchors = std::sync::Arc::new(anchors);
        let mut line = format!("regularize l1={} l2={}", self.settings.l1, self.settings.l2);
        if let Some(a) = &self.anchors.l2sp {
            line += &format!(" l2sp={} (toward the weights of step {})", a.weight, a.step);
        }
        if let Some(e) = &self.anchors.ewc {
            line += &format!(" ewc={}", e.lambda);
            if fresh_ewc {
                line += &format!(
                    " (Fisher information from {}; largest entry {}, scaled to 1)",
                    e.source,
                    num(e.max)
                );
            }
        }
        sink.emit(Event::Text(line));
        Ok(())
    }

    pub(crate) fn dropout(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let model =
            self.model.as_mut().ok_or_else(|| Error::invalid("no model loaded: run `load NAME` first"))?;
        if let Some(p) = cmd.arg(0).and_then(Value::as_f64) {
            if p >= 1.0 {
                return Err(
                    Error::invalid("dropout must be below 1, e.g. `dropout 0.1`").at(cmd.args[0].span)
                );
            }
            model.set_dropout(p)?;
        }
        match model.dropout() {
            Some(p) => sink.emit(Event::Text(format!("dropout {p}"))),
            None => sink.emit(Event::Text(format!("the {} model has no dropout", model.family()))),
        }
        Ok(())
    }

    pub(crate) fn fit(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        self.check_trainable()?;
        let plan = FitPlan {
            epochs: cmd.usize("epochs").unwrap_or(self.settings.epochs),
            batch: cmd.usize("batch").unwrap_or(self.settings.batch),
            max_steps: cmd.usize("steps"),
            log_every: cmd.usize("log").unwrap_or(1),
            record_path: self.model()?.params().numel() <= SMALL_MODEL,
            step: self.step_config(cmd)?,
            patience: cmd.usize("patience"),
            monitor: match cmd.str("monitor").as_deref() {
                Some("valid_accuracy") => Monitor::ValidAccuracy,
                _ => Monitor::ValidLoss,
            },
        };
        if plan.patience.is_some() && self.data_set()?.split(Split::Valid).is_empty() {
            return Err(Error::invalid("early stopping watches the validation split, which is empty; load data with split=0.8/0.1/0.1")
                .at(cmd.span_of("patience")));
        }
        if plan.monitor == Monitor::ValidAccuracy && self.model()?.task() != crate::model::Task::Classify {
            return Err(Error::invalid("monitor=valid_accuracy needs a classifier; use monitor=valid_loss")
                .at(cmd.span_of("monitor")));
        }
        self.push_undo(&cmd.text)?;
        self.start_from_token_prior(sink)?;
        let started = Instant::now();
        let step_before = self.history.step();
        let autosave = self.autosave_hook(sink)?;
        let (Some(model), Some(data)) = (self.model.as_deref(), self.data.as_ref()) else {
            unreachable!("checked")
        };
        let trainer = Trainer {
            model,
            optimizer: &mut self.optimizer,
            schedule: &self.schedule,
            data,
            history: &mut self.history,
            cancel: &self.cancel,
            seed: self.settings.seed,
            autosave,
        };
        let skipped_before = self.loss_scaler.skipped();
        // The last fit's gradients (kept for `show grads`) go now, not when this fit ends:
        // a model's worth of blocks held through the fit sits among its steps' activations,
        // and the heap grew fresh pages around them every step (each later `fit` ran up to
        // 40% slower per step than the first; GPT-2 small on 2 cores).
        self.last_grads = None;
        let report = fit(trainer, &plan, sink);
        self.step_queue.clear();
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                // Out of device memory keeps its own one-line advice (smaller batch, bf16…).
                let e = e.device_memory("fit");
                if matches!(e, Error::OutOfDeviceMemory { .. }) {
                    return Err(e);
                }
                let at = self.history.step();
                return Err(Error::invalid(format!(
                    "fit failed at step {}: {e}; the weights are those of step {at} (`undo` returns to before the fit)",
                    at + 1
                )));
            }
        };
        if report.steps == 0 {
            self.undo.pop();
        }
        if report.last_grads.is_some() {
            self.last_grads = report.last_grads;
        }
        if report.last_step_peak.is_some() {
            self.last_step_peak = report.last_step_peak;
        }
        let secs = started.elapsed().as_secs_f64();
        let skipped = self.loss_scaler.skipped() - skipped_before;
        if skipped > 0 {
            sink.emit(Event::Text(format!(
                "f16: {skipped} update(s) skipped because the scaled gradients overflowed; loss scale now {}",
                self.loss_scaler.scale()
            )));
        }
        match report.end {
            FitEnd::Completed => {
                let last = match self.history.epochs.last() {
                    Some(e) if e.step > step_before => {
                        let valid =
                            e.valid_loss.map(|v| format!(", valid loss {}", num(v))).unwrap_or_default();
                        format!("; last epoch train loss {}{valid}", num(e.train_loss))
                    }
                    _ => String::new(),
                };
                sink.emit(Event::Text(format!(
                    "fit: {} steps in {secs:.2} s ({}){last}; now at step {}",
                    report.steps,
                    pace(report.steps, secs),
                    self.history.step()
                )));
            }
            FitEnd::Interrupted => {
                self.interrupted = true;
                sink.emit(Event::Warning(format!(
                    "interrupted after step {} ({} of this fit): the model keeps those weights; `undo` returns to before the fit",
                    self.history.step(),
                    report.steps
                )));
            }
            FitEnd::EarlyStopped { best_epoch, best } => {
                sink.emit(Event::Text(format!(
                    "early stopping after {} steps: no improvement for {} epoch(s); restored the weights of epoch {best_epoch} ({} {})",
                    report.steps,
                    plan.patience.unwrap_or(0),
                    if plan.monitor == Monitor::ValidAccuracy { "valid accuracy" } else { "valid loss" },
                    num(best)
                )));
            }
            FitEnd::Diverged { what, step, loss, lr } => {
                bail!(
                    "{what} became {loss} at step {step} (lr {}): that update was not applied, the weights are those \
                     of step {}; lower the learning rate (e.g. `lr {}`), clip gradients (`fit clip=1`), or `undo` \
                     to return to before this fit",
                    num(lr),
                    step - 1,
                    num(self.optimizer.config.lr / 10.0)
                )
            }
        }
        Ok(())
    }

    pub(crate) fn step(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        self.check_trainable()?;
        let n = cmd.usize("n").unwrap_or(1);
        let batch_size = cmd.usize("batch").unwrap_or(self.settings.batch);
        let step_cfg = self.step_config(cmd)?;
        self.push_undo(&cmd.text)?;
        let small = self.model()?.params().numel() <= SMALL_MODEL;
        if small && self.history.path.last().is_none_or(|p| p.step != self.history.step()) {
            let values = self.model()?.params().flat_values()?;
            self.history.path.push(PathPoint { step: self.history.step(), values });
        }
        let lr = self.optimizer.config.lr;
        let mut shown = None;
        for _ in 0..n {
            // The next batch of the current pass over the training split.
            if self.step_queue.is_empty() {
                let mut rows = self.data_set()?.split(Split::Train).to_vec();
                rows.shuffle(&mut self.rng);
                rows.reverse();
                self.step_queue = rows;
            }
            let take = batch_size.min(self.step_queue.len());
            let rows: Vec<u32> = self.step_queue.split_off(self.step_queue.len() - take);
            let (Some(model), Some(data)) = (self.model.as_deref(), self.data.as_ref()) else {
                unreachable!()
            };
            let batch = data.batch(&rows)?;
            let before = model.params().flat_values()?;
            let seed = step_seed(self.settings.seed, self.history.step() + 1);
            let update = match train_step(model, &mut self.optimizer, std::slice::from_ref(&batch), lr, seed, &step_cfg)? {
                StepResult::Applied(u) => u,
                StepResult::NonFinite(what, value) => bail!(
                    "{what} is {value} at step {}: the update was not applied; lower the learning rate or `undo`",
                    self.history.step() + 1
                ),
                StepResult::Overflow(scale) => {
                    sink.emit(Event::Warning(format!(
                        "f16 gradients overflowed: the update was skipped and the loss scale halved to {scale}; step again"
                    )));
                    break;
                }
            };
            let after = model.params().flat_values()?;
            let loss_after = model
                .loss(&batch, &mut Pass::eval())?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
            let step = self.history.step() + 1;
            let epoch = self.history.epoch() + 1;
            self.history.steps.push(StepRecord { step, epoch, loss: update.loss, lr });
            if small {
                self.history.path.push(PathPoint { step, values: after.clone() });
            }
            shown = Some((update, before, after, loss_after, rows.len()));
        }
        let (update, before, after, loss_after, rows) = shown.expect("n ≥ 1");
        let model = self.model()?;
        let mut table = Table::new(["param", "value", "gradient", "update", "new value"]).titled(format!(
            "step {} · batch of {rows} · lr {} · batch loss {} → {}",
            self.history.step(),
            num(lr),
            num(update.loss),
            num(loss_after)
        ));
        let grads: std::collections::HashMap<&str, Vec<f64>> = update
            .grads
            .iter()
            .filter_map(|(n, g)| {
                let v =
                    g.flatten_all().ok()?.to_dtype(candle_core::DType::F64).ok()?.to_vec1::<f64>().ok()?;
                Some((n.as_str(), v))
            })
            .collect();
        let mut offset = 0;
        for p in model.params().iter() {
            let len = p.var.elem_count();
            let g = grads.get(p.name.as_str());
            let label = |i: usize| {
                let short = match p.name.as_str() {
                    "weight" if model.family() == "linear" => "w",
                    "bias" if model.family() == "linear" => "b",
                    other => other,
                };
                if len == 1 {
                    short.to_string()
                } else {
                    format!("{short}[{i}]")
                }
            };
            if small {
                for i in 0..len {
                    let grad = g.map(|g| num(g[i])).unwrap_or_else(|| "frozen".into());
                    table.row([
                        label(i),
                        num(before[offset + i]),
                        grad,
                        signed(after[offset + i] - before[offset + i]),
                        num(after[offset + i]),
                    ]);
                }
            } else {
                let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
                let delta: Vec<f64> = (0..len).map(|i| after[offset + i] - before[offset + i]).collect();
                table.row([
                    format!("{} (norms)", p.name),
                    num(norm(&before[offset..offset + len])),
                    g.map(|g| num(norm(g))).unwrap_or_else(|| "frozen".into()),
                    num(norm(&delta)),
                    num(norm(&after[offset..offset + len])),
                ]);
            }
            offset += len;
        }
        sink.emit(Event::Table(table));
        if self.optimizer.config.kind == OptimKind::Sgd
            && self.optimizer.config.momentum == 0.0
            && self.optimizer.config.weight_decay == 0.0
        {
            sink.emit(Event::Text("update = −lr × gradient".into()));
        }
        self.last_grads = Some(update.grads);
        Ok(())
    }
}

/// How fast a fit went, in the unit that reads well: "250 steps/s", "2.5 steps/s", or
/// "4.2 s/step" below one step a second (large models on a CPU).
fn pace(steps: usize, secs: f64) -> String {
    let rate = steps as f64 / secs.max(1e-9);
    if rate >= 10.0 {
        format!("{rate:.0} steps/s")
    } else if rate >= 1.0 {
        format!("{rate:.1} steps/s")
    } else if steps == 0 {
        "no steps".to_string()
    } else {
        format!("{:.1} s/step", secs / steps as f64)
    }
}

#[cfg(test)]
mod pace_tests {
    #[test]
    fn pace_reads_well_fast_and_slow() {
        assert_eq!(super::pace(1000, 4.0), "250 steps/s");
        assert_eq!(super::pace(5, 2.0), "2.5 steps/s");
        assert_eq!(super::pace(8, 83.6), "10.4 s/step");
        assert_eq!(super::pace(0, 0.5), "no steps");
    }
}
