//! LoRA (low-rank adaptation, Hu et al. 2021) at the level of [`Params`], in the PEFT layout.
//!
//! An adapter on a weight `W` (`[out, in]`, as `layers::linear` takes it) adds two trainable
//! matrices, `A` `[r, in]` and `B` `[out, r]`, and the forward pass uses
//! `W.detach() + (alpha/r)·B·A` wherever the model asks [`Params::tensor`] for `W`. That is
//! LoRA exactly (`x·(W + sBA)ᵀ = x·Wᵀ + s·(x·Aᵀ)·Bᵀ`), and it needs no change to any model's
//! forward code: every family fetches its weights through `Params::tensor`. Weights stored
//! `[in, out]` (GPT-2's Conv1D, peft's `fan_in_fan_out`) get the transposed update.
//!
//! As peft: `A` is Kaiming-uniform (a=√5, i.e. U(±1/√in)), `B` is zero, so a fresh adapter
//! leaves the model's outputs unchanged. The adapter tensors are ordinary parameters named
//! `{module}.lora_A.weight` / `{module}.lora_B.weight` (peft's names without the
//! `base_model.model.` prefix), so the optimizer, snapshots, checkpoints, `freeze` and
//! `show params` see them like any other.
//!
//! `dropout=` is peft's `lora_dropout` on the adapter's input. In the merged-weight form
//! above the input is shared with `W` and cannot be dropped for the adapter alone, so
//! tunelab records the value (for adapter_config.json, where peft applies it when training
//! resumes there) but does not apply it; the model's own dropout still regularises.

use std::collections::{BTreeMap, HashMap};

use candle_core::{Device, Tensor};
use rand::Rng;

use super::{name_matches, Param, Params};
use crate::error::{bail, Error, Result};

/// LoRA hyper-parameters, as peft's `LoraConfig`.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    /// Rank of the update.
    pub r: usize,
    /// The update is scaled by `alpha / r` (`alpha / √r` with `rslora`).
    pub alpha: f64,
    /// peft's `lora_dropout`: recorded for adapter_config.json, not applied (module docs).
    pub dropout: f64,
    /// `target_modules` as written to adapter_config.json.
    pub targets: Vec<String>,
    /// Rank-stabilised scaling (`use_rslora`).
    pub rslora: bool,
}

impl LoraConfig {
    /// The factor on `B·A`.
    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }
}

/// The adapter on one base weight.
#[derive(Clone, Debug, PartialEq)]
pub struct Adapter {
    /// Name of the `A` parameter (`[r, in]`).
    pub a: String,
    /// Name of the `B` parameter (`[out, r]`).
    pub b: String,
    /// The base weight is stored `[in, out]` (peft's `fan_in_fan_out`).
    pub fan_in_fan_out: bool,
    /// AdaLoRA: name of the singular values `E` (`[r, 1]`); the update is `B·diag(E)·A`.
    pub e: Option<String>,
}

/// The LoRA state of a model: settings, adapters by base weight name, and the switch.
#[derive(Clone, Debug, PartialEq)]
pub struct Lora {
    /// Rank, scaling and targets.
    pub config: LoraConfig,
    /// Adapters by the name of the base weight they adapt.
    pub adapters: BTreeMap<String, Adapter>,
    /// Whether the forward pass uses the adapters (`lora off` compares with the base).
    pub enabled: bool,
    /// Parameter-name prefixes trained fully beside the adapters and saved with them
    /// (peft's `modules_to_save`: a classifier's head).
    pub modules_to_save: Vec<String>,
    /// Where the base model comes from (`base_model_name_or_path`); `None` for a model
    /// built at random, which an adapter alone cannot reproduce.
    pub base_model: Option<String>,
    /// AdaLoRA's rank schedule and state, when the rank is adaptive.
    pub adaptive: Option<super::adalora::Adaptive>,
    /// The adapted base weights kept quantized (`lora quantize=`), when they are.
    pub quantized: Option<super::quantized::QuantizedBase>,
}

impl Lora {
    /// Short names of the adapted modules (`query, value`), for messages.
    pub fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "LoRA r={} alpha={} (scale {}) on {} weight(s) ({}), {}",
            c.r,
            c.alpha,
            c.scale(),
            self.adapters.len(),
            c.targets.join(", "),
            if self.enabled { "on" } else { "off" }
        )
    }

    /// `A`, or `diag(E)·A` for an AdaLoRA adapter: the factor `B` multiplies.
    pub fn effective_a(&self, params: &Params, ad: &Adapter, a: &Tensor) -> Result<Tensor> {
        match ad.e.as_ref().and_then(|e| params.get(e)) {
            Some(e) => Ok(a.broadcast_mul(e.var.as_tensor())?),
            None => Ok(a.clone()),
        }
    }
}

/// The module name of a weight (`….query.weight` → `….query`).
pub fn module_of(weight: &str) -> &str {
    weight.strip_suffix(".weight").unwrap_or(weight)
}

/// Whether the module of `weight` is selected by a `target=` entry: its last dotted
/// component equals it (peft's rule: `query` selects `….self.query`), or it matches as a
/// dotted prefix or a `*` glob over the whole module name.
pub fn target_matches(target: &str, weight: &str) -> bool {
    let module = module_of(weight);
    module == target
        || module.ends_with(&format!(".{target}"))
        || (target.contains('*') && name_matches(target, module))
        || (target.contains('.') && name_matches(target, module))
}

/// Whether a parameter can carry an adapter: a 2-d `….weight` of a linear layer, not an
/// embedding table (`*embed*`, GPT-2's `wte`/`wpe`).
pub fn adaptable(name: &str, dims: &[usize]) -> bool {
    let module = module_of(name);
    let last = module.rsplit('.').next().unwrap_or(module);
    dims.len() == 2 && name.ends_with(".weight") && !last.contains("embed") && !["wte", "wpe"].contains(&last)
}

/// `W + scale·B·A` (transposed for `[in, out]` weights): the weight with its adapter merged.
pub fn merged(w: &Tensor, a: &Tensor, b: &Tensor, scale: f64, fan_in_fan_out: bool) -> Result<Tensor> {
    let delta = b.matmul(a)?.affine(scale, 0.0)?;
    let delta = if fan_in_fan_out { delta.t()? } else { delta };
    Ok(w.broadcast_add(&delta)?)
}

/// `(in, out)` of a base weight.
pub(super) fn in_out(w: &Tensor, fan_in_fan_out: bool) -> Result<(usize, usize)> {
    let &[d0, d1] = w.dims() else { bail!("LoRA adapts 2-d weights; this one has shape {:?}", w.dims()) };
    Ok(if fan_in_fan_out { (d0, d1) } else { (d1, d0) })
}

impl Params {
    /// Attaches fresh adapters (A Kaiming-uniform from `rng`, B zero) to the weights named
    /// in `weights`, freezes every other parameter except those under `modules_to_save`,
    /// and returns the new parameters. Fails, changing nothing, when LoRA is attached.
    pub fn with_lora(
        &self,
        config: LoraConfig,
        weights: &[(String, bool)],
        modules_to_save: Vec<String>,
        base_model: Option<String>,
        adaptive: Option<super::adalora::AdaConfig>,
        rng: &mut impl Rng,
    ) -> Result<Params> {
        if self.lora().is_some() {
            bail!("LoRA is already attached; `lora merge` folds it into the weights first")
        }
        if self.bottleneck().is_some() || self.prompt_tokens().is_some() {
            bail!("the model has other adapters (bottleneck or a prompt); `undo` first: one method at a time")
        }
        let mut fresh = Vec::new();
        let mut adapters = BTreeMap::new();
        for (name, fan_in_fan_out) in weights {
            let w =
                self.get(name).ok_or_else(|| Error::invalid(format!("model has no parameter '{name}'")))?;
            let w = w.var.as_tensor();
            let (i, o) = in_out(w, *fan_in_fan_out)?;
            let bound = 1.0 / (i as f64).sqrt();
            let a: Vec<f32> = (0..config.r * i).map(|_| rng.random_range(-bound..bound) as f32).collect();
            let a = Tensor::from_vec(a, (config.r, i), &Device::Cpu)?
                .to_device(w.device())?
                .to_dtype(w.dtype())?;
            let b = Tensor::zeros((o, config.r), w.dtype(), w.device())?;
            let m = module_of(name);
            let adapter = Adapter {
                a: format!("{m}.lora_A.weight"),
                b: format!("{m}.lora_B.weight"),
                fan_in_fan_out: *fan_in_fan_out,
                e: adaptive.is_some().then(|| format!("{m}.lora_E")),
            };
            fresh.push((adapter.a.clone(), a));
            fresh.push((adapter.b.clone(), b));
            if let Some(e) = &adapter.e {
                fresh.push((e.clone(), Tensor::ones((config.r, 1), w.dtype(), w.device())?));
            }
            adapters.insert(name.clone(), adapter);
        }
        let adaptive = adaptive.map(super::adalora::Adaptive::new);
        let lora =
            Lora { config, adapters, enabled: true, modules_to_save, base_model, adaptive, quantized: None };
        self.adding_lora(lora, fresh, HashMap::new())
    }

    /// These parameters with `lora` attached and its tensors `fresh` added (trainable), the
    /// values in `replaced` in new variables (the old ones are left alone); all base
    /// parameters frozen except those under `lora.modules_to_save`.
    pub(super) fn adding_lora(
        &self,
        lora: Lora,
        fresh: Vec<(String, Tensor)>,
        replaced: HashMap<String, Tensor>,
    ) -> Result<Params> {
        let mut items: Vec<Param> = Vec::new();
        for p in self.iter() {
            let trainable = lora.modules_to_save.iter().any(|m| name_matches(m, &p.name));
            let var = match replaced.get(&p.name) {
                Some(t) => candle_core::Var::from_tensor(t)?,
                None => p.var.clone(),
            };
            items.push(Param { name: p.name.clone(), var, trainable });
        }
        // Adapter tensors in the order of the weights they adapt, A before B, however they
        // were found (so a saved and reloaded adapter has the same parameter order).
        let mut fresh = fresh;
        let rank = |n: &str| {
            lora.adapters.iter().find(|(_, ad)| ad.a == n || ad.b == n || ad.e.as_deref() == Some(n)).map(
                |(base, ad)| {
                    let order = if ad.a == n {
                        0
                    } else if ad.b == n {
                        1
                    } else {
                        2
                    };
                    (self.index.get(base).copied().unwrap_or(usize::MAX), order)
                },
            )
        };
        fresh.sort_by_key(|(n, _)| rank(n));
        for (name, t) in fresh {
            if self.get(&name).is_some() {
                bail!("the model already has a parameter '{name}'")
            }
            items.push(Param { name, var: candle_core::Var::from_tensor(&t)?, trainable: true });
        }
        Ok(Params::from_parts(items, Some(lora)))
    }

    /// The parameters with every adapter folded into its base weight (`W + s·B·A`) and the
    /// adapter tensors removed; trainable flags of the rest are kept. Errors without LoRA.
    pub fn merge_lora(&self) -> Result<Params> {
        let Some(lora) = self.lora() else {
            bail!("no LoRA to merge: attach one with `lora r=8 target=…`")
        };
        let scale = lora.config.scale();
        let mut merged_values: HashMap<&str, Tensor> = HashMap::new();
        for (name, ad) in &lora.adapters {
            let t = |n: &str| self.get(n).map(|p| p.var.as_tensor().clone()).expect("adapter tensors exist");
            let a = lora.effective_a(self, ad, &t(&ad.a))?;
            let base = self.tensor_at_rest(name)?;
            merged_values.insert(name, merged(&base, &a, &t(&ad.b), scale, ad.fan_in_fan_out)?);
        }
        let adapter_names: Vec<&str> = lora
            .adapters
            .values()
            .flat_map(|a| [a.a.as_str(), a.b.as_str()].into_iter().chain(a.e.as_deref()))
            .collect();
        let mut items = Vec::new();
        for p in self.iter().filter(|p| !adapter_names.contains(&p.name.as_str())) {
            let var = match merged_values.get(p.name.as_str()) {
                Some(v) => candle_core::Var::from_tensor(v)?,
                None => p.var.clone(),
            };
            items.push(Param { name: p.name.clone(), var, trainable: p.trainable });
        }
        Ok(Params::from_parts(items, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::path::Path;

    fn params() -> Params {
        let w = Tensor::arange(0f32, 12.0, &Device::Cpu).unwrap().reshape((3, 4)).unwrap();
        let b = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap();
        let h = Tensor::ones((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        Params::new(vec![
            ("enc.query.weight".into(), w),
            ("enc.query.bias".into(), b),
            ("head.weight".into(), h),
        ])
        .unwrap()
    }

    fn config() -> LoraConfig {
        LoraConfig { r: 2, alpha: 4.0, dropout: 0.0, targets: vec!["query".into()], rslora: false }
    }

    #[test]
    fn targets_match_as_peft_does() {
        assert!(target_matches("query", "bert.encoder.layer.0.attention.self.query.weight"));
        assert!(!target_matches("quer", "bert.encoder.layer.0.attention.self.query.weight"));
        assert!(target_matches("*.layer.1.*.value", "bert.encoder.layer.1.attention.self.value.weight"));
        assert!(target_matches("bert.encoder.layer.0", "bert.encoder.layer.0.output.dense.weight"));
    }

    #[test]
    fn fresh_adapters_change_nothing_and_train_alone() {
        let p = params();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let l = p
            .with_lora(
                config(),
                &[("enc.query.weight".into(), false)],
                vec!["head".into()],
                None,
                None,
                &mut rng,
            )
            .unwrap();
        let a = l.get("enc.query.lora_A.weight").unwrap().var.as_tensor().to_vec2::<f32>().unwrap();
        assert!(a.iter().flatten().all(|x| x.abs() <= 0.5) && a.iter().flatten().any(|x| *x != 0.0));
        let w0 = p.tensor("enc.query.weight", false).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(l.tensor("enc.query.weight", true).unwrap().to_vec2::<f32>().unwrap(), w0);
        let trainable: Vec<&str> = l.iter().filter(|p| p.trainable).map(|p| p.name.as_str()).collect();
        assert_eq!(trainable, ["head.weight", "enc.query.lora_A.weight", "enc.query.lora_B.weight"]);
        // A non-zero B changes the weight by scale·B·A, and the gradient reaches A and B only.
        l.get("enc.query.lora_B.weight")
            .unwrap()
            .var
            .set(&Tensor::ones((3, 2), candle_core::DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        let w = l.tensor("enc.query.weight", true).unwrap();
        let grads = w.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(l.get("enc.query.lora_A.weight").unwrap().var.as_tensor()).is_some());
        assert!(grads.get(l.get("enc.query.weight").unwrap().var.as_tensor()).is_none());
        let col: f32 = a.iter().map(|r| r[1]).sum();
        let got = w.to_vec2::<f32>().unwrap();
        assert!((got[0][1] - (w0[0][1] + 2.0 * col)).abs() < 1e-6);
        // Merging gives the same weight; `off` gives the base one.
        let m = l.merge_lora().unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m.tensor("enc.query.weight", false).unwrap().to_vec2::<f32>().unwrap(), got);
        let mut off = l.clone();
        off.set_lora_enabled(false).unwrap();
        assert_eq!(off.tensor("enc.query.weight", false).unwrap().to_vec2::<f32>().unwrap(), w0);
    }

    #[test]
    fn fan_in_fan_out_weights_get_the_transposed_update() {
        let p = params();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let l = p
            .with_lora(config(), &[("enc.query.weight".into(), true)], vec![], None, None, &mut rng)
            .unwrap();
        // Stored [in=3, out=4]: A is [r, 3], B [4, r].
        assert_eq!(l.get("enc.query.lora_A.weight").unwrap().var.dims(), [2, 3]);
        assert_eq!(l.get("enc.query.lora_B.weight").unwrap().var.dims(), [4, 2]);
        l.get("enc.query.lora_B.weight")
            .unwrap()
            .var
            .set(&Tensor::ones((4, 2), candle_core::DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        assert_eq!(l.tensor("enc.query.weight", false).unwrap().dims(), [3, 4]);
    }

    #[test]
    fn peft_tensors_round_trip() {
        let p = params();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let l = p
            .with_lora(
                config(),
                &[("enc.query.weight".into(), false)],
                vec!["head".into()],
                None,
                None,
                &mut rng,
            )
            .unwrap();
        let t = l.peft_tensors().unwrap();
        let mut keys: Vec<&String> = t.keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "base_model.model.enc.query.lora_A.weight",
                "base_model.model.enc.query.lora_B.weight",
                "base_model.model.head.weight"
            ]
        );
        let back = p.with_peft_tensors(config(), t, |_| false, None, Path::new("x")).unwrap();
        assert_eq!(back.lora().unwrap().modules_to_save, ["head"]);
        assert_eq!(back.flat_values().unwrap(), l.flat_values().unwrap());
    }
}
