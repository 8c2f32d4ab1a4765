//! Bottleneck adapters (Houlsby et al. 2019): at each site a model declares (BERT: after
//! the attention output projection and after the feed-forward output, before each residual
//! add & norm) the hidden state `h` becomes `h + up(silu(down(h)))`, with `down`
//! `[size, hidden]` and `up` `[hidden, size]`. `up` starts at zero, so a fresh adapter is
//! the identity; only the adapters (and a classifier's head) train.
//!
//! The adapter tensors are ordinary parameters named `{site}.adapter.down.weight`,
//! `….down.bias`, `….up.weight`, `….up.bias`. A model family opts in by listing its sites
//! ([`super::Model::adapter_sites`]) and passing each site's output through
//! [`Params::adapt`]; peft has no such adapters, so they are saved in tunelab's own
//! `adapters.safetensors` beside the base model.

use candle_core::{Device, Tensor};
use rand::Rng;
use rand_distr::{Distribution, Normal};

use super::{name_matches, Param, Params};
use crate::error::{bail, Result};

/// The bottleneck adapters of a model.
#[derive(Clone, Debug, PartialEq)]
pub struct Bottleneck {
    /// Width of the bottleneck.
    pub size: usize,
    /// The sites that have an adapter.
    pub sites: Vec<String>,
}

/// Whether `name` is a bottleneck adapter's tensor.
pub fn is_adapter_tensor(name: &str) -> bool {
    name.contains(".adapter.down.") || name.contains(".adapter.up.")
}

impl Params {
    /// The bottleneck adapters, when attached.
    pub fn bottleneck(&self) -> Option<&Bottleneck> {
        self.bottleneck.as_ref()
    }

    /// These parameters with a fresh adapter of width `size` at each `(site, hidden)`:
    /// `down` normal with std 0.01, `up` and the biases zero. Every other parameter is
    /// frozen except those under `keep` (a classifier's head).
    pub fn with_bottlenecks(
        &self,
        size: usize,
        sites: &[(String, usize)],
        keep: &[String],
        rng: &mut impl Rng,
    ) -> Result<Params> {
        if self.lora().is_some() || self.bottleneck().is_some() || self.prompt_tokens().is_some() {
            bail!("the model already has adapters (LoRA or bottleneck); `undo` first: one method at a time")
        }
        let Some(first) = self.iter().next() else { bail!("the model has no parameters") };
        let (device, dtype) = (first.var.device().clone(), first.var.dtype());
        let normal = Normal::new(0.0f32, 0.01).expect("valid");
        let mut tensors = Vec::new();
        for (site, hidden) in sites {
            let down: Vec<f32> = (0..size * hidden).map(|_| normal.sample(rng)).collect();
            let down = Tensor::from_vec(down, (size, *hidden), &Device::Cpu)?.to_device(&device)?;
            tensors.push((format!("{site}.adapter.down.weight"), down));
            tensors.push((format!("{site}.adapter.down.bias"), Tensor::zeros(size, dtype, &device)?));
            tensors
                .push((format!("{site}.adapter.up.weight"), Tensor::zeros((*hidden, size), dtype, &device)?));
            tensors.push((format!("{site}.adapter.up.bias"), Tensor::zeros(*hidden, dtype, &device)?));
        }
        let sites = sites.iter().map(|(s, _)| s.clone()).collect();
        self.adding_bottlenecks(Bottleneck { size, sites }, tensors, keep)
    }

    /// These parameters with the adapter tensors `tensors` (as `with_bottlenecks` names
    /// them, e.g. read back from `adapters.safetensors`) attached at those of the model's
    /// `sites` (in its order) that have them.
    pub fn with_bottleneck_tensors(
        &self,
        sites: &[(String, usize)],
        mut tensors: std::collections::HashMap<String, Tensor>,
        keep: &[String],
    ) -> Result<Params> {
        let mut ordered = Vec::new();
        let mut present = Vec::new();
        for (site, _) in sites {
            if !tensors.contains_key(&format!("{site}.adapter.down.weight")) {
                continue;
            }
            for part in ["down.weight", "down.bias", "up.weight", "up.bias"] {
                let name = format!("{site}.adapter.{part}");
                let Some(t) = tensors.remove(&name) else { bail!("adapter tensor '{name}' is missing") };
                ordered.push((name, t));
            }
            present.push(site.clone());
        }
        if let Some(extra) = tensors.keys().next() {
            bail!("adapter tensor '{extra}' fits no adapter site of this model")
        }
        let Some((_, down)) = ordered.first() else { bail!("no adapter tensors found") };
        let size = down.dim(0)?;
        self.adding_bottlenecks(Bottleneck { size, sites: present }, ordered, keep)
    }

    fn adding_bottlenecks(
        &self,
        b: Bottleneck,
        tensors: Vec<(String, Tensor)>,
        keep: &[String],
    ) -> Result<Params> {
        let mut items: Vec<Param> = self
            .iter()
            .map(|p| Param { trainable: keep.iter().any(|k| name_matches(k, &p.name)), ..p.clone() })
            .collect();
        for (name, t) in tensors {
            if self.get(&name).is_some() {
                bail!("the model already has a parameter '{name}'")
            }
            items.push(Param { name, var: candle_core::Var::from_tensor(&t)?, trainable: true });
        }
        let mut p = Params::from_parts(items, None);
        p.bottleneck = Some(b);
        Ok(p)
    }

    /// The output of adapter site `site` for hidden states `x`: `x + up(silu(down(x)))`
    /// when the site has an adapter, `x` unchanged otherwise.
    pub fn adapt(&self, site: &str, x: &Tensor, train: bool) -> Result<Tensor> {
        let Some(b) = &self.bottleneck else { return Ok(x.clone()) };
        if !b.sites.iter().any(|s| s == site) {
            return Ok(x.clone());
        }
        let t = |n: &str| self.tensor(&format!("{site}.adapter.{n}"), train);
        let h = crate::model::layers::linear(x, &t("down.weight")?, Some(&t("down.bias")?))?.silu()?;
        let h = crate::model::layers::linear(&h, &t("up.weight")?, Some(&t("up.bias")?))?;
        Ok((x + h)?)
    }

    /// The adapter tensors by name (for `adapters.safetensors`).
    pub fn bottleneck_tensors(&self) -> std::collections::HashMap<String, Tensor> {
        self.iter()
            .filter(|p| is_adapter_tensor(&p.name))
            .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn fresh_adapters_are_the_identity_and_train() {
        let w = Tensor::ones((4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let p = Params::new(vec![("l.weight".into(), w)]).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let a = p.with_bottlenecks(2, &[("l.out".into(), 4)], &[], &mut rng).unwrap();
        assert_eq!(a.len(), 5);
        assert!(!a.get("l.weight").unwrap().trainable);
        let x = Tensor::arange(0f32, 8.0, &Device::Cpu).unwrap().reshape((2, 4)).unwrap();
        let y = a.adapt("l.out", &x, true).unwrap();
        assert_eq!(y.to_vec2::<f32>().unwrap(), x.to_vec2::<f32>().unwrap());
        assert_eq!(
            a.adapt("elsewhere", &x, true).unwrap().to_vec2::<f32>().unwrap(),
            x.to_vec2::<f32>().unwrap()
        );
        let g = y.sum_all().unwrap().backward().unwrap();
        assert!(g.get(a.get("l.out.adapter.up.weight").unwrap().var.as_tensor()).is_some());
        let back = p.with_bottleneck_tensors(&[("l.out".into(), 4)], a.bottleneck_tensors(), &[]).unwrap();
        assert_eq!(back.bottleneck(), a.bottleneck());
    }
}
