//! The training record saved beside a model: optimizer state (`optimizer.safetensors`) and
//! `tunelab.json` (optimizer settings, schedule, frozen parameters, history) — what `load`
//! needs to go on training exactly where `save` left off.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::error::{bail, Error, Result};
use crate::files::write_bytes_atomic;
use crate::metrics::History;
use crate::model::{read_tensors, write_tensors, Model};
use crate::train::{OptimConfig, Optimizer, Schedule};

const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Record {
    format: u32,
    tunelab_version: String,
    optimizer: OptimConfig,
    optimizer_steps: BTreeMap<String, u64>,
    schedule: Schedule,
    frozen: Vec<String>,
    history: History,
    /// The session seed: epoch shuffles and dropout masks derive from it and the step, so
    /// a resumed fit repeats an uninterrupted one.
    #[serde(default)]
    seed: Option<u64>,
    /// A classifier's class names (a LoRA adapter directory has no config.json for them).
    #[serde(default)]
    labels: Option<Vec<String>>,
}

/// What [`load_training`] gives back.
pub(crate) struct Training {
    pub optimizer: Optimizer,
    pub schedule: Schedule,
    pub frozen: Vec<String>,
    pub history: History,
    pub seed: Option<u64>,
    pub labels: Option<Vec<String>>,
}

/// Writes `optimizer.safetensors` and `tunelab.json` into `dir`.
pub(crate) fn save_training(
    dir: &Path,
    model: &dyn Model,
    optimizer: &Optimizer,
    schedule: &Schedule,
    history: &History,
    seed: u64,
) -> Result<()> {
    let (tensors, steps) = optimizer.state();
    let opt_path = dir.join("optimizer.safetensors");
    if tensors.is_empty() {
        let _ = std::fs::remove_file(&opt_path);
    } else {
        write_tensors(&tensors, &opt_path)?;
    }
    let record = Record {
        format: FORMAT,
        tunelab_version: env!("CARGO_PKG_VERSION").to_string(),
        optimizer: optimizer.config.clone(),
        optimizer_steps: steps,
        schedule: schedule.clone(),
        frozen: model.params().iter().filter(|p| !p.trainable).map(|p| p.name.clone()).collect(),
        history: history.clone(),
        seed: Some(seed),
        labels: model.labels().map(<[String]>::to_vec),
    };
    let json = serde_json::to_string_pretty(&record).expect("record is plain data");
    write_bytes_atomic(&dir.join("tunelab.json"), json.as_bytes())
}

/// Reads the training record of `dir`, if it has one.
pub(crate) fn load_training(dir: &Path, device: &Device) -> Result<Option<Training>> {
    let path = dir.join("tunelab.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Read { path: path.clone(), reason: e.to_string() })?;
    let record: Record = serde_json::from_str(&text).map_err(|e| Error::Read {
        path: path.clone(),
        reason: format!("not a tunelab training record: {e}"),
    })?;
    if record.format != FORMAT {
        bail!("'{}' has record format {} but this tunelab reads {FORMAT}", path.display(), record.format)
    }
    let mut optimizer = Optimizer::new(record.optimizer);
    let opt_path = dir.join("optimizer.safetensors");
    let tensors = if opt_path.is_file() { read_tensors(&opt_path, device)? } else { Default::default() };
    optimizer.load_state(&tensors, &record.optimizer_steps)?;
    Ok(Some(Training {
        optimizer,
        schedule: record.schedule,
        frozen: record.frozen,
        history: record.history,
        seed: record.seed,
        labels: record.labels,
    }))
}
