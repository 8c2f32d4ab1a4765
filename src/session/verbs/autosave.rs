//! `autosave` and `resume`: a session checkpoint written during `fit`, and a session rebuilt
//! from it after a crash.
//!
//! A checkpoint is `DIR/checkpoint/`: what `save` writes (config.json, model.safetensors,
//! the tokenizer, optimizer.safetensors, tunelab.json with the history) plus `session.json`
//! (the `data` command, the seed and the settings). It is replaced whole at every autosave
//! (`files::write_dir_atomic`), so a crash at any instant leaves the previous one.

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::dsl::{self, Command, Value};
use crate::error::{bail, Error, Result};
use crate::metrics::History;
use crate::model::{save_model, save_tokenizer, Model};
use crate::session::checkpoint::save_training;
use crate::session::{Event, Session, Sink};
use crate::train::{Optimizer, Schedule};

/// Where `autosave` writes and `resume` reads when not told.
pub const DEFAULT_DIR: &str = ".tunelab/autosave";

const FORMAT: u32 = 1;

/// When autosave writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Every {
    /// After every N updates.
    Steps(u64),
    /// After every N complete epochs.
    Epochs(u64),
}

/// The `autosave` setting of a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Autosave {
    /// How often.
    pub every: Every,
    /// The session directory; the checkpoint is its `checkpoint/`.
    pub dir: PathBuf,
}

impl Autosave {
    /// Whether a checkpoint is due after an update (`epoch_end` false) or at the end of an
    /// epoch (`epoch_end` true), given the history so far. A step-counted checkpoint that
    /// falls on an epoch's last update is written again with the epoch's record.
    pub fn due(&self, history: &History, epoch_end: bool) -> bool {
        match self.every {
            Every::Steps(n) => history.step() > 0 && history.step().is_multiple_of(n.max(1)),
            Every::Epochs(n) => epoch_end && history.epoch() > 0 && history.epoch().is_multiple_of(n.max(1)),
        }
    }

    fn describe(&self) -> String {
        let every = match self.every {
            Every::Steps(1) => "every update".to_string(),
            Every::Steps(n) => format!("every {n} updates"),
            Every::Epochs(1) => "every epoch".to_string(),
            Every::Epochs(n) => format!("every {n} epochs"),
        };
        format!("autosave {every} to {}/checkpoint/", self.dir.display())
    }
}

/// What `session.json` holds: what `resume` needs beyond the saved model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    format: u32,
    /// The `data` command that loaded the data, as typed.
    data: Option<String>,
    /// Whether that command ran on the freshly seeded generator, so re-running it after
    /// re-seeding rebuilds the same rows and splits.
    data_reproducible: bool,
    seed: u64,
    batch: usize,
    epochs: usize,
    l1: f64,
    l2: f64,
    /// `precision` (absent in checkpoints written before it existed: f32).
    #[serde(default)]
    precision: Option<String>,
    autosave: Autosave,
}

/// The `data` command of the session, and whether it ran right after seeding.
#[derive(Clone, Debug)]
pub(crate) struct DataSpec {
    pub text: String,
    pub reproducible: bool,
}

impl DataSpec {
    /// The spec of `cmd`, run with the generator in state `rng` under seed `seed`.
    pub fn new(cmd: &Command, rng: &StdRng, seed: u64) -> DataSpec {
        DataSpec { text: cmd.text.clone(), reproducible: *rng == StdRng::seed_from_u64(seed) }
    }
}

/// Writes the checkpoint of `autosave.dir` (atomically, replacing the previous one).
pub(crate) fn write_checkpoint(
    record: &SessionRecord,
    model: &dyn Model,
    optimizer: &Optimizer,
    schedule: &Schedule,
    history: &History,
) -> Result<()> {
    let dir = record.autosave.dir.join("checkpoint");
    crate::files::write_dir_atomic(&dir, |stage| {
        save_model(model, stage)?;
        save_tokenizer(model, stage)?;
        save_training(stage, model, optimizer, schedule, history, record.seed)?;
        let json = serde_json::to_string_pretty(record).expect("plain data");
        crate::files::write_file(&stage.join("session.json"), json.as_bytes())
    })
}

/// The checkpoint writer `fit` calls (see [`crate::train::Trainer::autosave`]).
pub(crate) type Hook = crate::train::AutosaveHook<'static>;

impl Session {
    /// The autosave hook for a `fit`, when autosave is on and the model is one `save`
    /// writes whole (LoRA and prompt-tuning directories need their base model: a warning).
    pub(crate) fn autosave_hook(&self, sink: &mut dyn Sink) -> Result<Option<Hook>> {
        let Some(autosave) = self.autosave.clone() else { return Ok(None) };
        let params = self.model()?.params();
        if params.lora().is_some() || params.prompt_tokens().is_some() {
            sink.emit(Event::Warning(
                "autosave skips LoRA and prompt-tuned models (their directories need the base model); `save` them"
                    .into(),
            ));
            return Ok(None);
        }
        let record = self.session_record(&autosave);
        let schedule = self.schedule.clone();
        Ok(Some(Box::new(
            move |model: &dyn Model, optimizer: &Optimizer, history: &History, epoch_end: bool| {
                if autosave.due(history, epoch_end) {
                    write_checkpoint(&record, model, optimizer, &schedule, history)?;
                }
                Ok(())
            },
        )))
    }

    /// The record `session.json` gets for `autosave`.
    pub(crate) fn session_record(&self, autosave: &Autosave) -> SessionRecord {
        SessionRecord {
            format: FORMAT,
            data: self.data_spec.as_ref().map(|d| d.text.clone()),
            data_reproducible: self.data_spec.as_ref().is_some_and(|d| d.reproducible),
            seed: self.settings.seed,
            batch: self.settings.batch,
            epochs: self.settings.epochs,
            l1: self.settings.l1,
            l2: self.settings.l2,
            precision: Some(self.settings.precision.name().to_string()),
            autosave: autosave.clone(),
        }
    }

    /// `autosave every=N [unit=steps|epochs] [dir=DIR]`, `autosave off`, `autosave`.
    pub(crate) fn autosave_cmd(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let word = cmd.arg(0).and_then(Value::as_str);
        match word {
            Some("off") => {
                self.autosave = None;
                sink.emit(Event::Text("autosave off".into()));
                return Ok(());
            }
            Some(other) => {
                return Err(Error::invalid(format!(
                    "autosave takes `off` or options, not '{other}'; e.g. `autosave every=100`"
                ))
                .at(cmd.args[0].span))
            }
            None => {}
        }
        let given = ["every", "unit", "dir"].iter().any(|k| cmd.given(k).is_some());
        if !given {
            let text = self.autosave.as_ref().map_or("autosave off".to_string(), Autosave::describe);
            sink.emit(Event::Text(text));
            return Ok(());
        }
        let n = cmd.usize("every").unwrap_or(100) as u64;
        let every = match cmd.str("unit").as_deref() {
            Some("epochs") => Every::Epochs(n),
            _ => Every::Steps(n),
        };
        let dir = PathBuf::from(cmd.str("dir").unwrap_or_else(|| DEFAULT_DIR.to_string()));
        if dir.is_file() {
            return Err(Error::invalid(format!(
                "'{}' is a file; autosave writes a directory (dir=DIR)",
                dir.display()
            ))
            .at(cmd.span_of("dir")));
        }
        let autosave = Autosave { every, dir };
        sink.emit(Event::Text(format!(
            "{}; `tunelab resume {}` restarts from it after a crash",
            autosave.describe(),
            autosave.dir.display()
        )));
        self.autosave = Some(autosave);
        Ok(())
    }

    /// `resume [DIR]`: the session of an autosave checkpoint — data, model, optimizer
    /// state, history, seed and settings. Built aside; the current session is replaced
    /// only when all of it loaded.
    pub(crate) fn resume_cmd(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let dir = PathBuf::from(cmd.arg(0).and_then(Value::as_str).unwrap_or(DEFAULT_DIR));
        let ckpt = dir.join("checkpoint");
        let path = ckpt.join("session.json");
        if !path.is_file() {
            let e = Error::invalid(format!(
                "no autosave checkpoint in '{}' (no checkpoint/session.json); give the dir= of `autosave`, \
                 or `load` a directory written by `save`",
                dir.display()
            ));
            return Err(match cmd.args.first() {
                Some(a) => e.at(a.span),
                None => e,
            });
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Read { path: path.clone(), reason: e.to_string() })?;
        let record: SessionRecord = serde_json::from_str(&text).map_err(|e| Error::damaged(&path, e))?;
        if record.format != FORMAT {
            bail!("'{}' has format {} but this tunelab reads {FORMAT}", path.display(), record.format)
        }
        let mut fresh = Session::new();
        fresh.device = self.device.clone();
        fresh.settings.seed = record.seed;
        fresh.settings.batch = record.batch;
        fresh.settings.epochs = record.epochs;
        fresh.settings.l1 = record.l1;
        fresh.settings.l2 = record.l2;
        fresh.settings.precision =
            record.precision.as_deref().and_then(crate::train::Precision::parse).unwrap_or_default();
        fresh.rng = StdRng::seed_from_u64(record.seed);
        if let Some(data) = &record.data {
            fresh.run_quietly(data, sink)?;
            if !record.data_reproducible {
                sink.emit(Event::Warning(
                    "the data was loaded after other random draws, so its shuffle and split may differ from the \
                     original run's"
                        .into(),
                ));
            }
        }
        fresh.run_quietly(&format!("load {}", quote(&ckpt)), sink)?;
        fresh.autosave = Some(record.autosave.clone());
        // Commit: keep what belongs to the front-end (the interrupt flag) and the command log.
        fresh.cancel = self.cancel.clone();
        fresh.log = std::mem::take(&mut self.log);
        *self = fresh;
        sink.emit(Event::Text(format!(
            "resumed from {} at step {} (epoch {}): model, optimizer state, history{}; {}",
            ckpt.display(),
            self.history.step(),
            self.history.epoch(),
            record.data.as_ref().map(|d| format!(", data `{d}`")).unwrap_or_default(),
            record.autosave.describe()
        )));
        Ok(())
    }

    /// Parses and dispatches `src` (a command `resume` replays), without logging it. Its
    /// errors name the command, since its text is not what the user typed.
    fn run_quietly(&mut self, src: &str, sink: &mut dyn Sink) -> Result<()> {
        let replay = |session: &mut Session, sink: &mut dyn Sink| -> Result<()> {
            for cmd in dsl::parse(src)? {
                session.dispatch(&cmd, sink)?;
            }
            Ok(())
        };
        replay(self, sink).map_err(|e| {
            Error::invalid(format!(
                "resume could not replay `{src}`: {e}; run it from the directory the session ran in, \
                 or load the checkpoint with `load DIR/checkpoint` and the data by hand"
            ))
        })
    }
}

/// A path as a quoted DSL word.
fn quote(path: &Path) -> String {
    format!("\"{}\"", path.display())
}
