//! LoRA adapters in peft's layout: `adapter_config.json` and `adapter_model.safetensors`
//! with peft's tensor names (`base_model.model.{module}.lora_A.weight` `[r, in]`,
//! `….lora_B.weight` `[out, r]`, and the `modules_to_save` tensors under
//! `base_model.model.{name}`), so `peft.PeftModel.from_pretrained(base, DIR)` loads what
//! tunelab saves and tunelab loads what peft saves.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::Tensor;
use serde_json::json;

use super::lora::{in_out, module_of, Adapter, Lora, LoraConfig};
use super::{name_matches, Params};
use crate::error::{bail, Error, Result};

/// The prefix peft puts before the base model's parameter names in adapter files.
pub const PEFT_PREFIX: &str = "base_model.model.";

/// Writes `adapter_config.json` and `adapter_model.safetensors` (peft's layout) for the
/// adapters of `params` into `dir`, created if needed.
pub fn save_adapter(params: &Params, task_type: Option<&str>, dir: &Path) -> Result<()> {
    let Some(lora) = params.lora() else { bail!("the model has no LoRA adapter") };
    crate::files::create_dir(dir)?;
    let config = serde_json::to_string_pretty(&adapter_config(lora, task_type)).expect("plain JSON");
    crate::files::write_bytes_atomic(&dir.join("adapter_config.json"), config.as_bytes())?;
    super::write_tensors(&params.peft_tensors()?, &dir.join("adapter_model.safetensors"))
}

impl Params {
    /// The adapter tensors and the `modules_to_save` parameters under peft's names
    /// (`base_model.model.{name}`), as `adapter_model.safetensors` holds them.
    pub fn peft_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let Some(lora) = self.lora() else { bail!("the model has no LoRA adapter") };
        let mut out = HashMap::new();
        for ad in lora.adapters.values() {
            // AdaLoRA's singular values are folded into A: peft reads a plain LoRA adapter.
            let a = self.get(&ad.a).expect("adapter tensors exist").var.as_tensor();
            out.insert(format!("{PEFT_PREFIX}{}", ad.a), lora.effective_a(self, ad, a)?);
            out.insert(
                format!("{PEFT_PREFIX}{}", ad.b),
                self.get(&ad.b).expect("adapter tensors exist").var.as_tensor().clone(),
            );
        }
        for p in self.iter().filter(|p| lora.modules_to_save.iter().any(|m| name_matches(m, &p.name))) {
            out.insert(format!("{PEFT_PREFIX}{}", p.name), p.var.as_tensor().clone());
        }
        Ok(out)
    }

    /// These parameters with the adapter of a peft `adapter_model.safetensors` attached:
    /// `lora_A`/`lora_B` tensors become adapters, other tensors replace the base parameter
    /// of the same name (peft's `modules_to_save`). Every tensor must fit a parameter.
    pub fn with_peft_tensors(
        &self,
        mut config: LoraConfig,
        tensors: HashMap<String, Tensor>,
        fan_in_fan_out: impl Fn(&str) -> bool,
        base_model: Option<String>,
        source: &Path,
    ) -> Result<Params> {
        let bad = |msg: String| Error::Read { path: source.to_path_buf(), reason: msg };
        let mut fresh = Vec::new();
        let mut replaced = HashMap::new();
        let mut adapters = BTreeMap::new();
        let mut names: Vec<&String> = tensors.keys().collect();
        names.sort();
        for key in names {
            let t = &tensors[key];
            let Some(name) = key.strip_prefix(PEFT_PREFIX) else {
                return Err(bad(format!(
                    "tensor '{key}' does not start with '{PEFT_PREFIX}'; is it a peft adapter?"
                )));
            };
            if let Some(module) = name.strip_suffix(".lora_A.weight") {
                let base = format!("{module}.weight");
                let Some(w) = self.get(&base) else {
                    return Err(bad(format!("adapter '{key}' is for '{base}', which the base model lacks; is base= the model it was trained on?")));
                };
                let fifo = fan_in_fan_out(&base);
                let (i, o) = in_out(w.var.as_tensor(), fifo)?;
                let b_key = format!("{PEFT_PREFIX}{module}.lora_B.weight");
                let Some(b) = tensors.get(&b_key) else {
                    return Err(bad(format!("'{key}' has no '{b_key}'")));
                };
                let r = t.dim(0)?;
                if t.dims() != [r, i] || b.dims() != [o, r] {
                    return Err(bad(format!(
                        "'{key}' {:?} / lora_B {:?} do not fit '{base}' {:?} (want [r, {i}] and [{o}, r])",
                        t.dims(),
                        b.dims(),
                        w.var.dims()
                    )));
                }
                if r != config.r {
                    return Err(bad(format!("'{key}' has rank {r} but adapter_config.json says r={} (rank_pattern is not supported)", config.r)));
                }
                let cast = |x: &Tensor| x.to_device(w.var.device())?.to_dtype(w.var.dtype());
                let ad = Adapter {
                    a: format!("{module}.lora_A.weight"),
                    b: format!("{module}.lora_B.weight"),
                    fan_in_fan_out: fifo,
                    e: None,
                };
                fresh.push((ad.a.clone(), cast(t)?));
                fresh.push((ad.b.clone(), cast(b)?));
                adapters.insert(base, ad);
            } else if name.ends_with(".lora_B.weight") {
                continue; // taken with its lora_A
            } else {
                let Some(p) = self.get(name) else {
                    return Err(bad(format!("tensor '{key}' matches no parameter of the base model")));
                };
                if p.var.dims() != t.dims() {
                    return Err(bad(format!(
                        "'{key}' has shape {:?} but the model's '{name}' is {:?}",
                        t.dims(),
                        p.var.dims()
                    )));
                }
                replaced.insert(name.to_string(), t.to_device(p.var.device())?.to_dtype(p.var.dtype())?);
            }
        }
        if adapters.is_empty() {
            return Err(bad("no lora_A/lora_B tensors: only LoRA adapters are supported".into()));
        }
        if config.targets.is_empty() {
            config.targets = adapters.keys().map(|k| module_of(k).to_string()).collect();
        }
        let mut modules_to_save: Vec<String> =
            replaced.keys().map(|n| n.rsplit_once('.').map_or(n.as_str(), |(m, _)| m).to_string()).collect();
        modules_to_save.sort();
        modules_to_save.dedup();
        let lora = Lora {
            config,
            adapters,
            enabled: true,
            modules_to_save,
            base_model,
            adaptive: None,
            quantized: None,
        };
        self.adding_lora(lora, fresh, replaced)
    }
}

/// `adapter_config.json` for `lora` on a model whose task is `task_type` (peft's names:
/// `SEQ_CLS`, `CAUSAL_LM`, or none).
pub fn adapter_config(lora: &Lora, task_type: Option<&str>) -> serde_json::Value {
    let c = &lora.config;
    json!({
        "peft_type": "LORA",
        "task_type": task_type,
        "base_model_name_or_path": lora.base_model,
        "r": c.r,
        // peft types lora_alpha as an int; keep whole numbers whole.
        "lora_alpha": if c.alpha.fract() == 0.0 { json!(c.alpha as i64) } else { json!(c.alpha) },
        "lora_dropout": c.dropout,
        "target_modules": c.targets,
        "fan_in_fan_out": lora.adapters.values().any(|a| a.fan_in_fan_out),
        "bias": "none",
        "use_rslora": c.rslora,
        "use_dora": false,
        "modules_to_save": if lora.modules_to_save.is_empty() { None } else { Some(&lora.modules_to_save) },
        "init_lora_weights": true,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "inference_mode": true,
        "revision": null,
        "auto_mapping": null,
    })
}

/// The [`LoraConfig`] of a peft `adapter_config.json`, refusing what tunelab cannot apply.
pub fn read_adapter_config(cfg: &serde_json::Value, path: &Path) -> Result<LoraConfig> {
    let bad = |msg: String| Error::Read { path: path.to_path_buf(), reason: msg };
    let peft_type = cfg.get("peft_type").and_then(|v| v.as_str()).unwrap_or("");
    if peft_type != "LORA" {
        return Err(bad(format!("peft_type '{peft_type}' is not supported; tunelab loads LORA adapters")));
    }
    for key in ["use_dora", "lora_bias"] {
        if cfg.get(key).and_then(|v| v.as_bool()) == Some(true) {
            return Err(bad(format!("{key}=true is not supported; tunelab loads plain LoRA adapters")));
        }
    }
    if cfg.get("bias").and_then(|v| v.as_str()).is_some_and(|b| b != "none") {
        return Err(bad("bias other than \"none\" is not supported".into()));
    }
    for key in ["rank_pattern", "alpha_pattern"] {
        if cfg.get(key).and_then(|v| v.as_object()).is_some_and(|m| !m.is_empty()) {
            return Err(bad(format!("{key} is not supported: every adapter must share r and lora_alpha")));
        }
    }
    let r = cfg.get("r").and_then(|v| v.as_u64()).unwrap_or(8) as usize;
    let targets = match cfg.get("target_modules") {
        Some(serde_json::Value::Array(a)) => {
            a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
        }
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    Ok(LoraConfig {
        r,
        alpha: cfg.get("lora_alpha").and_then(|v| v.as_f64()).unwrap_or(8.0),
        dropout: cfg.get("lora_dropout").and_then(|v| v.as_f64()).unwrap_or(0.0),
        targets,
        rslora: cfg.get("use_rslora").and_then(|v| v.as_bool()).unwrap_or(false),
    })
}
