//! Models in and out of directories in the Hugging Face layout: `config.json` +
//! `model.safetensors`, tensor names as the PyTorch `state_dict` has them.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::bert::{Bert, BertTask};
use super::{Linear, Model};
use crate::error::{bail, Error, Result};
use crate::files::{create_dir, write_atomic, write_bytes_atomic, write_file};

/// Writes `config.json` and `model.safetensors` for `model` into `dir` (created if needed),
/// and its bottleneck adapters, if any, into `adapters.safetensors`.
pub fn save_model(model: &dyn Model, dir: &Path) -> Result<()> {
    create_dir(dir)?;
    let config = serde_json::to_string_pretty(&model.config()).expect("config is plain JSON");
    write_bytes_atomic(&dir.join("config.json"), config.as_bytes())?;
    // Bottleneck adapters go to their own file, so model.safetensors stays the base layout.
    let tensors: HashMap<String, Tensor> = model
        .params()
        .iter()
        .filter(|p| !super::bottleneck::is_adapter_tensor(&p.name))
        .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
        .collect();
    write_tensors(&tensors, &dir.join("model.safetensors"))?;
    let adapters = model.params().bottleneck_tensors();
    let path = dir.join("adapters.safetensors");
    if adapters.is_empty() {
        let _ = std::fs::remove_file(&path);
        Ok(())
    } else {
        write_tensors(&adapters, &path)
    }
}

/// Writes named tensors as a safetensors file, atomically and flushed to disk.
pub fn write_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let bytes = safetensors::serialize(tensors, None)
        .map_err(|e| Error::invalid(format!("cannot serialise tensors for '{}': {e}", path.display())))?;
    write_atomic(path, |tmp| write_file(tmp, &bytes))
}

/// Reads a safetensors file onto `device`.
pub fn read_tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        return Err(Error::Read {
            path: path.to_path_buf(),
            reason: "no such file; save the model again or copy the file from the original model".into(),
        });
    }
    candle_core::safetensors::load(path, device)
        .map_err(|e| Error::damaged(path, format!("not a complete safetensors file ({e})")))
}

/// Reads the weights of a Hugging Face model directory onto `device`: `model.safetensors`,
/// every shard named by `model.safetensors.index.json`, or the tensor records of
/// `pytorch_model.bin` when that is all there is (candle's reader never executes pickled
/// code). Names are as stored.
pub fn read_checkpoint(dir: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let st = dir.join("model.safetensors");
    if st.is_file() {
        return read_tensors(&st, device);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let map = read_json(&index)?;
        let Some(files) = map.get("weight_map").and_then(|m| m.as_object()) else {
            return Err(Error::Read {
                path: index,
                reason: "no weight_map object; is it a safetensors index?".into(),
            });
        };
        let shards: std::collections::BTreeSet<&str> = files.values().filter_map(|v| v.as_str()).collect();
        let mut tensors = HashMap::new();
        for shard in shards {
            tensors.extend(read_tensors(&dir.join(shard), device)?);
        }
        return Ok(tensors);
    }
    let bin = dir.join("pytorch_model.bin");
    if bin.is_file() {
        return candle_core::pickle::read_all(&bin)
            .map_err(|e| Error::Read { path: bin.clone(), reason: format!("not a PyTorch checkpoint: {e}") })?
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_device(device)?)))
            .collect();
    }
    bail!(
        "'{}' has no model.safetensors, model.safetensors.index.json or pytorch_model.bin; save the model with transformers' save_pretrained",
        dir.display()
    )
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Read { path: path.to_path_buf(), reason: e.to_string() })?;
    serde_json::from_str(&text).map_err(|e| Error::damaged(path, format!("invalid JSON: {e}")))
}

/// Writes the model's tokenizer files too, for text models.
pub fn save_tokenizer(model: &dyn Model, dir: &Path) -> Result<()> {
    match model.tokenizer() {
        Some(t) => t.save(dir),
        None => Ok(()),
    }
}

/// The `model_type` in a directory's config.json (`None` without one).
pub fn model_type(dir: &Path) -> Result<Option<String>> {
    let path = dir.join("config.json");
    if !path.is_file() {
        return Ok(None);
    }
    Ok(read_json(&path)?.get("model_type").and_then(|v| v.as_str()).map(str::to_string))
}

/// Writes a classifier's labels into a config.json object as transformers reads them
/// (`id2label`, `label2id`, `num_labels`, single-label problem type).
pub fn put_labels(config: &mut serde_json::Map<String, serde_json::Value>, labels: &[String]) {
    use serde_json::json;
    let id2label: serde_json::Map<String, serde_json::Value> =
        labels.iter().enumerate().map(|(i, l)| (i.to_string(), json!(l))).collect();
    let label2id: serde_json::Map<String, serde_json::Value> =
        labels.iter().enumerate().map(|(i, l)| (l.clone(), json!(i))).collect();
    config.insert("id2label".into(), json!(id2label));
    config.insert("label2id".into(), json!(label2id));
    config.insert("num_labels".into(), json!(labels.len()));
    config.insert("problem_type".into(), json!("single_label_classification"));
}

/// The class names in a config.json's `id2label`, in id order, when it is a classifier.
pub fn config_labels(config: &serde_json::Value) -> Option<Vec<String>> {
    let arch = config.get("architectures")?.as_array()?.first()?.as_str()?;
    if !arch.ends_with("ForSequenceClassification") {
        return None;
    }
    let map = config.get("id2label")?.as_object()?;
    let mut pairs: Vec<(usize, String)> =
        map.iter().filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string()))).collect();
    pairs.sort();
    Some(pairs.into_iter().map(|(_, v)| v).collect())
}

/// Loads a text model of `dir` for `task`, initialising a missing head from `rng`.
pub fn load_text_model(
    dir: &Path,
    task: BertTask,
    rng: &mut impl rand::Rng,
    device: &Device,
) -> Result<Bert> {
    match model_type(dir)?.as_deref() {
        Some(kind) if super::bert::Flavour::of_model_type(kind).is_some() => {
            Bert::load(dir, task, rng, device)
        }
        Some(other) => {
            bail!(
                "model_type '{other}' in '{}' is not supported yet; supported: {}, gpt2, llama",
                dir.display(),
                super::bert::Flavour::MODEL_TYPES
            )
        }
        None => bail!(
            "'{}' has no config.json: a model directory needs config.json, weights and a tokenizer",
            dir.display()
        ),
    }
}

/// Whether a config.json `model_type` is a causal language model tunelab can load.
pub fn is_causal_family(model_type: &str) -> bool {
    ["gpt2", "llama"].contains(&model_type)
}

/// Loads a causal language model from `dir` (its config.json's `model_type` says which); a
/// sequence classifier over `labels` when given.
pub fn load_causal_model(
    dir: &Path,
    labels: Option<Vec<String>>,
    rng: &mut impl rand::Rng,
    device: &Device,
) -> Result<Box<dyn Model>> {
    match model_type(dir)?.as_deref() {
        Some("gpt2") => Ok(Box::new(super::gpt2::Gpt2::load(dir, labels, rng, device)?)),
        Some("llama") if labels.is_none() => Ok(Box::new(super::llama::Llama::load(dir, device)?)),
        Some("llama") => {
            bail!("a classification head on llama models is not built yet; use GPT-2 or a BERT encoder")
        }
        other => bail!(
            "'{}' holds no causal language model (model_type {other:?}); supported: gpt2",
            dir.display()
        ),
    }
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
