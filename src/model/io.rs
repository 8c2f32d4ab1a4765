//! Models in and out of directories in the Hugging Face layout: `config.json` +
//! `model.safetensors`, tensor names as the PyTorch `state_dict` has them.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::{Linear, Model};
use crate::error::{bail, Error, Result};
use crate::files::{create_dir, write_atomic, write_bytes_atomic};

/// Writes `config.json` and `model.safetensors` for `model` into `dir` (created if needed).
pub fn save_model(model: &dyn Model, dir: &Path) -> Result<()> {
    create_dir(dir)?;
    let config = serde_json::to_string_pretty(&model.config()).expect("config is plain JSON");
    write_bytes_atomic(&dir.join("config.json"), config.as_bytes())?;
    let tensors: HashMap<String, Tensor> =
        model.params().iter().map(|p| (p.name.clone(), p.var.as_tensor().clone())).collect();
    write_tensors(&tensors, &dir.join("model.safetensors"))
}

/// Writes named tensors as a safetensors file, atomically.
pub fn write_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    write_atomic(path, |tmp| Ok(candle_core::safetensors::save(tensors, tmp)?))
}

/// Reads a safetensors file onto `device`.
pub fn read_tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, device).map_err(|e| Error::Read {
        path: path.to_path_buf(),
        reason: format!("{e}; is it a safetensors file?"),
    })
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Read { path: path.to_path_buf(), reason: e.to_string() })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Read { path: path.to_path_buf(), reason: format!("invalid JSON: {e}") })
}

/// Loads a model saved in `dir` (by `save`, or any directory with a config.json whose
/// `model_type` tunelab knows), checking every expected tensor is there with its shape.
pub fn load_model(dir: &Path, device: &Device) -> Result<Box<dyn Model>> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        bail!("'{}' has no config.json: give a directory written by `save`, or `load linear`", dir.display())
    }
    let config = read_json(&config_path)?;
    let model_type = config.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
    match model_type {
        "tunelab-linear" => {
            let mut tensors = read_tensors(&dir.join("model.safetensors"), device)?;
            let inputs = config.get("in_features").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
            let take = |t: &mut HashMap<String, Tensor>, name: &str| {
                t.remove(name).ok_or_else(|| {
                    Error::invalid(format!("model.safetensors in '{}' has no tensor '{name}'", dir.display()))
                })
            };
            let weight = take(&mut tensors, "weight")?;
            let bias = take(&mut tensors, "bias")?;
            if weight.dims() != [1, inputs] {
                bail!("'weight' has shape {:?} but config.json says in_features={inputs}", weight.dims())
            }
            let weight = weight.to_dtype(candle_core::DType::F32)?;
            let bias = bias.to_dtype(candle_core::DType::F32)?;
            Ok(Box::new(Linear::from_tensors(weight, bias)?))
        }
        "" => bail!("config.json in '{}' has no model_type", dir.display()),
        other => bail!(
            "model_type '{other}' in '{}' is not supported yet; supported: tunelab-linear",
            dir.display()
        ),
    }
}
