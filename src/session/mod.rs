//! The session: the one owner of state, and the only code that executes commands.
//!
//! ```text
//! text ──► dsl::parse ──► Command ──► Session::execute ──► Event* ──► Sink (front-end)
//! ```
//!
//! **Invariant:** a command that fails leaves the state as it was. Handlers validate
//! everything first, build new values aside, and only then assign them. `fit` is the one
//! command that changes state as it goes; it stops only between complete updates, and it
//! takes an undo snapshot before the first.

mod checkpoint;
mod event;
mod settings;
mod snapshot;
mod verbs;

pub use event::{Diagnostic, Event, Image, Progress, Sink, Table};
pub use settings::Settings;
pub use verbs::autosave::{Autosave, Every, DEFAULT_DIR as AUTOSAVE_DIR};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::data::{Dataset, Split};
use crate::dsl::{self, Command, Span};
use crate::error::{bail, Error, Result};
use crate::metrics::History;
use crate::model::Model;
use crate::train::{OptimConfig, OptimKind, Optimizer, Schedule};
use snapshot::Snapshot;

/// What the front-end should do after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Read the next command.
    Continue,
    /// The user asked to leave.
    Quit,
}

/// How a command ended, for `show history`.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// It ran to the end.
    Done,
    /// It was stopped by Ctrl-C / an interrupt at a step boundary.
    Interrupted,
    /// It failed with this message (state unchanged, or as the message says).
    Failed(String),
}

/// One command the session ran.
#[derive(Clone, Debug)]
pub struct LogEntry {
    /// The command as typed.
    pub text: String,
    /// How it ended.
    pub outcome: Outcome,
}

/// An interactive fine-tuning session: device, model, optimizer state, data, history.
pub struct Session {
    device: Device,
    settings: Settings,
    rng: StdRng,
    data: Option<Dataset>,
    model: Option<Box<dyn Model>>,
    /// Where the model came from (a directory or hub id), recorded as a LoRA adapter's
    /// `base_model_name_or_path`; `None` for models built at random.
    model_source: Option<String>,
    /// Counts loads, so snapshots of an earlier model are not restored into a new one.
    model_id: u64,
    optimizer: Optimizer,
    schedule: Schedule,
    history: History,
    last_grads: Option<Vec<(String, Tensor)>>,
    /// Peak device memory (bytes) of the last `fit` step; `None` before one, or on the CPU.
    last_step_peak: Option<u64>,
    /// The confusion matrix of the last classification `eval`, for `plot confusion`.
    last_confusion: Option<crate::metrics::Confusion>,
    /// Whether the classifier head came trained from a checkpoint (so data must use its labels).
    head_from_checkpoint: bool,
    /// Penalties toward anchored weights (`regularize l2sp=` / `ewc=`); cleared by `load`.
    anchors: Arc<crate::train::Anchors>,
    /// The teacher of `distill`, if any.
    distill: Option<crate::train::SharedDistill>,
    /// The f16 loss scale, kept from fit to fit (`precision f16`).
    loss_scaler: crate::train::LossScaler,
    /// Rows `step` has yet to visit in the current pass over the training split.
    step_queue: Vec<u32>,
    snapshots: Vec<Snapshot>,
    undo: Vec<Snapshot>,
    log: Vec<LogEntry>,
    cancel: Arc<AtomicBool>,
    interrupted: bool,
    /// The evcxr context of `%%rust` cells (started by the first one).
    rust: crate::bridge::RustCells,
    /// A verb made to panic by [`Session::inject_panic`] (tests only).
    panic_in: Option<String>,
    /// `autosave`: when `fit` writes a session checkpoint, and where.
    autosave: Option<verbs::autosave::Autosave>,
    /// The `data` command of the loaded data, for the checkpoint `resume` rebuilds from.
    data_spec: Option<verbs::autosave::DataSpec>,
}

impl Default for Session {
    fn default() -> Session {
        Session::new()
    }
}

impl Session {
    /// A new session on the default device (`auto`: CUDA when built with it and a GPU is
    /// present, else the CPU), seed 42, SGD with lr 0.01.
    pub fn new() -> Session {
        let settings = Settings::default();
        Session {
            device: Device::cuda_if_available(0).unwrap_or(Device::Cpu),
            rng: StdRng::seed_from_u64(settings.seed),
            settings,
            data: None,
            model: None,
            model_source: None,
            model_id: 0,
            optimizer: Optimizer::new(OptimConfig::defaults(OptimKind::Sgd, 0.01)),
            schedule: Schedule::default(),
            history: History::default(),
            last_grads: None,
            last_step_peak: None,
            last_confusion: None,
            head_from_checkpoint: false,
            anchors: Arc::default(),
            distill: None,
            loss_scaler: Default::default(),
            step_queue: Vec::new(),
            snapshots: Vec::new(),
            undo: Vec::new(),
            log: Vec::new(),
            cancel: Arc::new(AtomicBool::new(false)),
            interrupted: false,
            rust: crate::bridge::RustCells::default(),
            panic_in: None,
            autosave: None,
            data_spec: None,
        }
    }

    /// The flag that stops a running `fit` after its current step. A front-end sets it
    /// from Ctrl-C or a kernel interrupt; the session clears it when the next `run` starts.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// The training history of the current model.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The commands run so far and how each ended.
    pub fn log(&self) -> &[LogEntry] {
        &self.log
    }

    /// The loaded model, read-only (for tests and bridges; only the session mutates it).
    pub fn loaded_model(&self) -> Option<&dyn Model> {
        self.model.as_deref()
    }

    /// One line about the loaded model (`None` before `load`).
    pub fn model_summary(&self) -> Option<String> {
        self.model.as_ref().map(|m| m.describe())
    }

    /// One line about the loaded data (`None` before `data`).
    pub fn data_summary(&self) -> Option<String> {
        self.data.as_ref().map(|d| format!("{} ({} rows)", d.source(), d.len()))
    }

    /// Rows in a split of the loaded data (0 without data).
    pub fn split_rows(&self, split: crate::data::Split) -> usize {
        self.data.as_ref().map_or(0, |d| d.split(split).len())
    }

    /// Peak device memory in bytes during the last `fit` step (see
    /// [`crate::device_memory`]): restarted before the step, read after it. `None` before a
    /// fit on CUDA, and on the CPU.
    pub fn last_step_peak(&self) -> Option<u64> {
        self.last_step_peak
    }

    /// The device tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The current weights by parameter name, as f32 (for tests and bridges).
    pub fn weights(&self) -> Result<Vec<(String, Vec<f32>)>> {
        let model = self.model()?;
        model
            .params()
            .iter()
            .map(|p| Ok((p.name.clone(), p.var.as_tensor().flatten_all()?.to_vec1::<f32>()?)))
            .collect()
    }

    /// The optimizer's state as named tensors, `{param}.{slot}` (e.g. `weight.exp_avg`),
    /// on the session's device (for tests and bridges; empty before the first update).
    pub fn optimizer_state(&self) -> std::collections::HashMap<String, candle_core::Tensor> {
        self.optimizer.state().0
    }

    /// Parses and runs `src` (one or more commands), stopping at the first error or after
    /// an interrupted command. Errors are also emitted to `sink` as [`Event::Error`].
    pub fn run(&mut self, src: &str, sink: &mut dyn Sink) -> Result<Flow> {
        self.cancel.store(false, Ordering::SeqCst);
        let commands = match dsl::parse(src) {
            Ok(c) => c,
            Err(e) => {
                let err = Error::from(e);
                self.log.push(LogEntry {
                    text: src.trim().to_string(),
                    outcome: Outcome::Failed(err.to_string()),
                });
                sink.emit(Event::Error(diagnose(&err, src, None)));
                return Err(err);
            }
        };
        for (i, cmd) in commands.iter().enumerate() {
            sink.emit(Event::Echo(cmd.text.clone()));
            let outcome = self.execute(cmd, sink);
            // Large blocks kept for reuse during the command go back to the system.
            crate::host_memory::trim();
            match outcome {
                Ok(Flow::Quit) => return Ok(Flow::Quit),
                Ok(Flow::Continue) => {}
                Err(err) => {
                    sink.emit(Event::Error(diagnose(&err, src, Some(cmd.span))));
                    return Err(err);
                }
            }
            if self.interrupted && i + 1 < commands.len() {
                sink.emit(Event::Warning(format!(
                    "interrupted: {} remaining command(s) not run",
                    commands.len() - i - 1
                )));
                break;
            }
        }
        Ok(Flow::Continue)
    }

    /// Parses and runs `src`, returning what it said: for tunelab as a library (in evcxr,
    /// `s.exec("fit epochs=3")?` shows text, tables and charts in the notebook).
    pub fn exec(&mut self, src: &str) -> Result<crate::bridge::Output> {
        let mut out = crate::bridge::Output::default();
        self.run(src, &mut out)?;
        Ok(out)
    }

    /// Runs a Rust cell (`%%rust` / `:rust`) in this session's evcxr context, emitting what
    /// it prints as it comes. Its `tunelab_bridge` module reads what `export` wrote.
    pub fn run_rust(&mut self, code: &str, sink: &mut dyn Sink) -> Result<()> {
        self.cancel.store(false, Ordering::SeqCst);
        let dir = verbs::export::export_dir();
        let result = self.rust.run(code, dir, &self.cancel, &mut |o| {
            for e in crate::bridge::cells::to_events(o) {
                sink.emit(e);
            }
        });
        let outcome = match &result {
            Ok(()) => Outcome::Done,
            Err(crate::bridge::cells::CellError::Interrupted) => Outcome::Interrupted,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        self.log.push(LogEntry { text: format!("%%rust {}", code.lines().next().unwrap_or("")), outcome });
        match result {
            Err(crate::bridge::cells::CellError::Interrupted) => {
                self.interrupted = true;
                sink.emit(Event::Warning(crate::bridge::cells::CellError::Interrupted.to_string()));
                Ok(())
            }
            other => other.map_err(|e| {
                let err = Error::invalid(e.to_string());
                sink.emit(Event::Error(diagnose(&err, code, None)));
                err
            }),
        }
    }

    /// Runs one parsed command and records it in the command log.
    ///
    /// A panic inside the command (a bug) is caught and returned as [`Error::Internal`]: the
    /// session keeps its state — handlers assign only complete values, so what a panic
    /// interrupts is at worst a value under construction — and goes on.
    pub fn execute(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<Flow> {
        self.interrupted = false;
        let caught =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.dispatch_or_panic(cmd, sink)));
        let result = caught.unwrap_or_else(|payload| {
            Err(Error::Internal { verb: cmd.name().to_string(), message: panic_message(payload.as_ref()) })
        });
        let result = result.map_err(|e| e.device_memory(cmd.name()));
        let outcome = match &result {
            Err(e) => Outcome::Failed(e.to_string()),
            Ok(_) if self.interrupted => Outcome::Interrupted,
            Ok(_) => Outcome::Done,
        };
        self.log.push(LogEntry { text: cmd.text.clone(), outcome });
        result
    }

    /// Makes the next run of `verb` panic, to test that a bug in a command costs the user
    /// nothing (`None` turns it off). Not part of the language; for tests only.
    #[doc(hidden)]
    pub fn inject_panic(&mut self, verb: Option<&str>) {
        self.panic_in = verb.map(str::to_string);
    }

    fn dispatch_or_panic(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<Flow> {
        if self.panic_in.as_deref() == Some(cmd.name()) {
            self.panic_in = None;
            panic!("injected fault in '{}'", cmd.name());
        }
        self.dispatch(cmd, sink)
    }

    fn dispatch(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<Flow> {
        // Whatever built the model (load, lora, undo…), it computes in the session's precision.
        let compute = self.settings.precision.compute();
        if let Some(m) = self.model.as_deref_mut() {
            m.params_mut().set_compute(Some(compute));
        }
        match cmd.name() {
            "quit" => return Ok(Flow::Quit),
            "export" => self.export(cmd, sink)?,
            "help" => self.help(cmd, sink)?,
            "device" => self.device_cmd(cmd, sink)?,
            "precision" => self.precision(cmd, sink)?,
            "seed" => self.seed(cmd, sink)?,
            "batch" => self.batch(cmd, sink)?,
            "epochs" => self.epochs(cmd, sink)?,
            "data" => self.data(cmd, sink)?,
            "load" => self.load(cmd, sink)?,
            "freeze" => self.freeze(cmd, sink, false)?,
            "unfreeze" => self.freeze(cmd, sink, true)?,
            "save" => self.save(cmd, sink)?,
            "optimizer" => self.optimizer_cmd(cmd, sink)?,
            "lr" => self.lr(cmd, sink)?,
            "fit" => self.fit(cmd, sink)?,
            "regularize" => self.regularize(cmd, sink)?,
            "distill" => self.distill_cmd(cmd, sink)?,
            "dropout" => self.dropout(cmd, sink)?,
            "loss" => self.loss_cmd(cmd, sink)?,
            "lora" => self.lora(cmd, sink)?,
            "adapter" => self.adapter(cmd, sink)?,
            "prompt" => self.prompt(cmd, sink)?,
            "step" => self.step(cmd, sink)?,
            "eval" => self.eval(cmd, sink)?,
            "predict" => self.predict(cmd, sink)?,
            "generate" => self.generate_cmd(cmd, sink)?,
            "compare" => self.compare(cmd, sink)?,
            "plot" => self.plot(cmd, sink)?,
            "show" => self.show(cmd, sink)?,
            "snapshot" => self.snapshot(cmd, sink)?,
            "restore" => self.restore(cmd, sink)?,
            "undo" => self.undo_cmd(sink)?,
            "autosave" => self.autosave_cmd(cmd, sink)?,
            "resume" => self.resume_cmd(cmd, sink)?,
            other => {
                return Err(Error::invalid(format!("'{other}' is in the verb table but not implemented")))
            }
        }
        Ok(Flow::Continue)
    }

    // --- shared guards -------------------------------------------------------------

    fn model(&self) -> Result<&dyn Model> {
        self.model.as_deref().ok_or_else(|| Error::invalid("no model loaded: run `load linear` first"))
    }

    fn data_set(&self) -> Result<&Dataset> {
        self.data.as_ref().ok_or_else(|| {
            Error::invalid("no data loaded: run `data synthetic linear` or `data FILE x=COLS y=COL` first")
        })
    }

    /// Makes loaded text data usable by the loaded text model: a fresh, untrained classifier
    /// head takes the data's class names (and size), and the texts are tokenized once with
    /// the model's tokenizer. Returns notes for the user.
    fn prepare_data(&mut self) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        let (Some(model), Some(crate::data::Dataset::Text(data))) = (self.model.as_mut(), self.data.as_mut())
        else {
            return Ok(notes);
        };
        if let Some(labels) = model.labels() {
            let names = &data.label_set.names;
            if labels != names.as_slice() && names.len() >= 2 {
                if self.history.step() == 0 && !self.head_from_checkpoint {
                    let note = if labels.len() == names.len() {
                        format!("the classifier's labels are now the data's: {}", data.label_set.describe())
                    } else {
                        format!(
                            "the classifier head now has {} labels, as the data: {}",
                            names.len(),
                            data.label_set.describe()
                        )
                    };
                    model.set_labels(names.clone(), &mut self.rng)?;
                    notes.push(note);
                } else {
                    bail!(
                        "the data's labels ({}) differ from the trained classifier's ({}); load data with the same labels",
                        names.join(", "),
                        labels.join(", ")
                    )
                }
            }
        }
        if let (Some(block), Some(lm)) = (data.block, model.causal()) {
            if block > lm.context_len() {
                bail!(
                    "block={block} is longer than the model's context of {} tokens; use block={} or less",
                    lm.context_len(),
                    lm.context_len()
                )
            }
        }
        if data.block.is_some() && model.labels().is_some() {
            bail!("a format=text corpus has no labels to classify; load a language model (gpt2, a .gguf, or task=mlm)")
        }
        if let Some(tok) = model.tokenizer() {
            if !data.is_encoded_for(tok) {
                data.encode(tok, &self.device)?;
                let (truncated, unknown) = data.token_stats().unwrap_or((0, 0));
                if let Some(block) = data.block {
                    let counts: Vec<String> =
                        Split::ALL.iter().map(|s| format!("{} {}", s.name(), data.split(*s).len())).collect();
                    notes.push(format!(
                        "tokenized {} texts into blocks of {block} tokens: {}; {unknown} unknown tokens",
                        data.len(),
                        counts.join(" / ")
                    ));
                    return Ok(notes);
                }
                let lens = data.token_lens().unwrap_or(&[]);
                let mean = lens.iter().map(|l| *l as f64).sum::<f64>() / lens.len().max(1) as f64;
                notes.push(format!(
                    "tokenized {} texts: mean {mean:.1} tokens, {truncated} truncated to max_len={}, {unknown} unknown tokens",
                    data.len(),
                    data.max_len
                ));
            }
        }
        Ok(notes)
    }

    /// [`prepare_data`](Self::prepare_data), printing its notes.
    fn prepare_data_announce(&mut self, sink: &mut dyn Sink) -> Result<()> {
        for note in self.prepare_data()? {
            sink.emit(Event::Text(note));
        }
        Ok(())
    }

    /// Pushes an undo entry for the state before `what`, first dropping the oldest entries
    /// that [`settings::undo_evictions`] says no longer fit. Dropping them first lets the new
    /// entry, and the moments the next update makes, reuse their memory rather than fault
    /// in fresh pages (host_memory's block cache).
    fn push_undo(&mut self, what: &str) -> Result<()> {
        let held: Vec<usize> = self.undo.iter().map(Snapshot::bytes).collect();
        let incoming = Snapshot::bytes_of(self.model()?, &self.optimizer);
        let drop = settings::undo_evictions(&held, incoming, settings::undo_budget(self.device()));
        self.undo.drain(..drop);
        let snap = Snapshot::take(
            what.to_string(),
            self.model_id,
            self.model()?,
            &self.optimizer,
            &self.history,
            &self.rng,
        )?;
        self.undo.push(snap);
        Ok(())
    }
}

/// The text of a panic's payload (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "a panic without a message".into(),
    }
    .lines()
    .next()
    .unwrap_or_default()
    .to_string()
}

/// Locates an error in the source that was run: at its own span, else at the failing
/// command (`fallback`), else at the start.
pub fn diagnose(err: &Error, src: &str, fallback: Option<Span>) -> Diagnostic {
    let span = err.span().or(fallback).unwrap_or_default();
    let (line, col) = span.line_col(src);
    let (source_line, caret, width) = span.line_of(src);
    Diagnostic { message: err.to_string(), line, col, source_line: source_line.to_string(), caret, width }
}
