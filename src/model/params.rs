//! Named parameters: the weights of a model as candle `Var`s, each trainable or frozen.

use candle_core::{DType, Device, Tensor, Var};

use super::lora::{merged, Lora};
use super::quantized::{merged_frozen, merges_in_one_op, FrozenBase};
use crate::error::{bail, Result};

/// One named weight tensor.
#[derive(Clone, Debug)]
pub struct Param {
    /// Its name, as in the safetensors file (`weight`, `encoder.layer.0.attention…`).
    pub name: String,
    /// The value; updated in place by the optimizer.
    pub var: Var,
    /// Whether `fit` updates it. Frozen parameters enter the forward pass detached, so
    /// they get no gradient (and cost no backward work).
    pub trainable: bool,
}

/// All parameters of a model, in a fixed order, and the LoRA adapters on some of them.
#[derive(Clone, Debug, Default)]
pub struct Params {
    items: Vec<Param>,
    pub(super) index: std::collections::HashMap<String, usize>,
    /// LoRA adapters (their tensors are among `items`); see [`super::lora`].
    lora: Option<Lora>,
    /// Bottleneck adapters (their tensors are among `items`); see [`super::bottleneck`].
    pub(super) bottleneck: Option<super::bottleneck::Bottleneck>,
    /// The dtype forward passes compute in when it is not the stored one (`precision
    /// bf16|f16`): [`Params::tensor`] casts each weight as it hands it out.
    compute: Option<DType>,
}

impl Params {
    /// Parameters from named tensors, all trainable.
    pub fn new(named: Vec<(String, Tensor)>) -> Result<Params> {
        let items = named
            .into_iter()
            .map(|(name, t)| Ok(Param { name, var: Var::from_tensor(&t)?, trainable: true }))
            .collect::<Result<Vec<_>>>()?;
        Ok(Params::from_items(items))
    }

    fn from_items(items: Vec<Param>) -> Params {
        Params::from_parts(items, None)
    }

    /// Parameters from their items and LoRA state.
    pub(super) fn from_parts(items: Vec<Param>, lora: Option<Lora>) -> Params {
        let index = items.iter().enumerate().map(|(i, p)| (p.name.clone(), i)).collect();
        Params { items, index, lora, bottleneck: None, compute: None }
    }

    /// The LoRA adapters, when attached.
    pub fn lora(&self) -> Option<&Lora> {
        self.lora.as_ref()
    }

    /// Turns the attached LoRA adapters on or off (`lora on|off`); errors without any.
    pub fn set_lora_enabled(&mut self, on: bool) -> Result<()> {
        match &mut self.lora {
            Some(l) => l.enabled = on,
            None => bail!("no LoRA attached: `lora r=8 target=…` attaches one"),
        }
        Ok(())
    }

    /// The parameters in order.
    pub fn iter(&self) -> impl Iterator<Item = &Param> {
        self.items.iter()
    }

    /// Number of parameter tensors.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.index.get(name).map(|&i| &self.items[i])
    }

    /// The dtype forward passes compute in (`None`: the weights' own).
    pub fn compute(&self) -> Option<DType> {
        self.compute
    }

    /// Sets the dtype forward passes compute in (`precision`); `None` or the weights' own
    /// dtype computes in that. The weights themselves are not converted.
    pub fn set_compute(&mut self, dtype: Option<DType>) {
        self.compute = dtype.filter(|&d| d != DType::F32);
    }

    /// The tensor to use in a forward pass: tracked for gradients when trainable and
    /// `train` is set, detached otherwise. A weight with an enabled LoRA adapter comes back
    /// as `W + scale·B·A` (gradients flow to A and B when they are trainable). Under mixed
    /// precision it comes back cast to the compute dtype (its gradient, through the cast,
    /// stays f32).
    pub fn tensor(&self, name: &str, train: bool) -> Result<Tensor> {
        let t = self.stored_tensor(name, train)?;
        match self.compute {
            Some(dtype) if t.dtype() != dtype && t.dtype().is_float() => Ok(t.to_dtype(dtype)?),
            _ => Ok(t),
        }
    }

    fn stored_tensor(&self, name: &str, train: bool) -> Result<Tensor> {
        let Some(p) = self.get(name) else {
            bail!("model has no parameter '{name}'; `show params` lists them")
        };
        let own = |p: &Param| {
            if train && p.trainable {
                p.var.as_tensor().clone()
            } else {
                p.var.as_tensor().detach()
            }
        };
        let quantized = self.quantized().and_then(|q| q.shared(name));
        let base = || -> Result<Tensor> {
            match &quantized {
                Some(q) => Ok(q.dequantize(p.var.device())?.to_dtype(p.var.dtype())?),
                None => Ok(own(p)),
            }
        };
        if let Some(lora) = self.lora.as_ref().filter(|l| l.enabled) {
            if let Some(ad) = lora.adapters.get(name) {
                let (a, b) = (self.get(&ad.a), self.get(&ad.b));
                let (Some(a), Some(b)) = (a, b) else { bail!("LoRA adapter of '{name}' lost its tensors") };
                let a = match ad.e.as_ref().and_then(|e| self.get(e)) {
                    Some(e) => own(a).broadcast_mul(&own(e))?,
                    None => own(a),
                };
                let (b, scale) = (own(b), lora.config.scale());
                // A frozen base (no gradient to it) merges in one op that keeps less alive.
                let frozen = match &quantized {
                    Some(q) => Some(FrozenBase::Quantized(q.clone())),
                    None if !(train && p.trainable) => Some(FrozenBase::Dense(own(p))),
                    None => None,
                };
                if let Some(base) = frozen.filter(|_| merges_in_one_op(&a, &b)) {
                    return merged_frozen(base, &a, &b, scale, ad.fan_in_fan_out);
                }
                return merged(&base()?, &a, &b, scale, ad.fan_in_fan_out);
            }
        }
        base()
    }

    /// The stored value of `name` (dequantized if the base is quantized), detached.
    pub fn tensor_at_rest(&self, name: &str) -> Result<Tensor> {
        let Some(p) = self.get(name) else { bail!("model has no parameter '{name}'") };
        match self.quantized().and_then(|q| q.get(name)) {
            Some(q) => Ok(q.dequantize(p.var.device())?.to_dtype(p.var.dtype())?),
            None => Ok(p.var.as_tensor().detach()),
        }
    }

    /// Replaces a parameter's tensor with a new variable of any shape (a re-sized head),
    /// keeping its trainable flag.
    pub fn replace(&mut self, name: &str, value: Tensor) -> Result<()> {
        let Some(&i) = self.index.get(name) else { bail!("model has no parameter '{name}'") };
        self.items[i].var = Var::from_tensor(&value)?;
        Ok(())
    }

    /// Number of scalars in all parameters.
    pub fn numel(&self) -> usize {
        self.items.iter().map(|p| p.var.elem_count()).sum::<usize>()
            + self.quantized().map_or(0, |q| q.numel())
    }

    /// Number of scalars in trainable parameters.
    pub fn trainable_numel(&self) -> usize {
        self.items.iter().filter(|p| p.trainable).map(|p| p.var.elem_count()).sum()
    }

    /// Marks the parameters at `indices` trainable or frozen.
    pub fn set_trainable(&mut self, indices: &[usize], trainable: bool) {
        for &i in indices {
            self.items[i].trainable = trainable;
        }
    }

    /// Indices of the parameters whose name matches `pattern`: equal, a dotted prefix
    /// (`encoder` matches `encoder.x`), or a glob with `*`.
    pub fn matching(&self, pattern: &str) -> Vec<usize> {
        self.items
            .iter()
            .enumerate()
            .filter(|(_, p)| name_matches(pattern, &p.name))
            .map(|(i, _)| i)
            .collect()
    }

    /// Deep copies of every value (for snapshots; `Var::set` writes in place, so a plain
    /// clone would change along with the model).
    pub fn copy_values(&self) -> Result<Vec<Tensor>> {
        copy_flat(&self.items.iter().map(|p| p.var.as_tensor()).collect::<Vec<_>>())
    }

    /// Writes `values` (as made by [`copy_values`](Self::copy_values), possibly on another
    /// device) back into the parameters. All shapes are checked before anything is written.
    pub fn set_values(&self, values: &[Tensor]) -> Result<()> {
        if values.len() != self.items.len() {
            bail!("snapshot has {} tensors but the model has {}", values.len(), self.items.len())
        }
        for (p, v) in self.items.iter().zip(values) {
            if p.var.shape() != v.shape() {
                bail!("shape mismatch for '{}': model {:?}, snapshot {:?}", p.name, p.var.shape(), v.shape())
            }
        }
        for (p, v) in self.items.iter().zip(values) {
            let v = crate::uploads::to_device(v, p.var.device(), crate::uploads::Upload::Weights)?;
            p.var.set(&v.to_dtype(p.var.dtype())?)?;
        }
        Ok(())
    }

    /// The same parameters as new variables on `device` (trainable flags kept).
    pub fn to_device(&self, device: &Device) -> Result<Params> {
        self.map(|t| crate::uploads::to_device(t, device, crate::uploads::Upload::Weights))
    }

    /// The same parameters as new variables of `dtype` (trainable flags kept).
    pub fn to_dtype(&self, dtype: DType) -> Result<Params> {
        self.map(|t| t.to_dtype(dtype))
    }

    /// New variables holding `f` of each value, names and trainable flags kept.
    fn map(&self, f: impl Fn(&Tensor) -> candle_core::Result<Tensor>) -> Result<Params> {
        let items = self
            .items
            .iter()
            .map(|p| {
                let var = Var::from_tensor(&f(p.var.as_tensor())?)?;
                Ok(Param { name: p.name.clone(), var, trainable: p.trainable })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Params { bottleneck: self.bottleneck.clone(), ..Params::from_parts(items, self.lora.clone()) })
    }

    /// Whether `other` has the same parameter names in the same order (so values of one
    /// can be written into the other).
    pub fn same_layout(&self, other: &Params) -> bool {
        self.items.len() == other.items.len()
            && self.items.iter().zip(&other.items).all(|(a, b)| a.name == b.name)
    }

    /// The LoRA switch (and adapter records) of `other` (same layout) put on these
    /// parameters.
    pub fn take_lora_state(&mut self, other: &Params) {
        self.lora = other.lora.clone();
        self.bottleneck = other.bottleneck.clone();
    }

    /// New variables holding `values` (one per parameter, in order), with these names,
    /// trainable flags and LoRA state (to restore a snapshot taken before `lora`).
    pub fn with_values(&self, values: &[Tensor]) -> Result<Params> {
        if values.len() != self.items.len() {
            bail!("{} values for {} parameters", values.len(), self.items.len())
        }
        let items = self
            .items
            .iter()
            .zip(values)
            .map(|(p, v)| {
                Ok(Param { name: p.name.clone(), var: Var::from_tensor(v)?, trainable: p.trainable })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Params { bottleneck: self.bottleneck.clone(), ..Params::from_parts(items, self.lora.clone()) })
    }

    /// All values flattened to f64 on the host, in parameter order (small models only).
    pub fn flat_values(&self) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(self.numel());
        for p in &self.items {
            let v = p.var.as_tensor().flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            out.extend(v);
        }
        Ok(out)
    }
}

/// Whether a freeze/unfreeze `pattern` selects the parameter `name`.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    if pattern == "all" || pattern == name {
        return true;
    }
    if pattern.contains('*') {
        return glob(pattern.as_bytes(), name.as_bytes());
    }
    name.strip_prefix(pattern).is_some_and(|rest| rest.starts_with('.'))
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

/// Deep copies of `values`, all in one buffer when they share a dtype and a device: a
/// snapshot's weights live as long as the undo stack, and one large block lies outside the
/// heap that a training step's short-lived tensors reuse (many parameter-sized blocks left
/// among them split it, and later steps grew fresh pages; see `adam_update_params_in_place`).
fn copy_flat(values: &[&Tensor]) -> Result<Vec<Tensor>> {
    let Some(first) = values.first() else { return Ok(Vec::new()) };
    let uniform = values.iter().all(|v| v.dtype() == first.dtype() && v.device().same_device(first.device()));
    // `Tensor::cat` of a single tensor returns it as it is, not a copy.
    if !uniform || values.len() == 1 {
        return Ok(values.iter().map(|v| v.copy()).collect::<candle_core::Result<_>>()?);
    }
    let flat = values.iter().map(|v| v.flatten_all()).collect::<candle_core::Result<Vec<_>>>()?;
    let buffer = Tensor::cat(&flat, 0)?;
    let mut at = 0;
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        let n = v.elem_count();
        out.push(buffer.narrow(0, at, n)?.reshape(v.shape())?);
        at += n;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exact_prefix_and_glob() {
        assert!(name_matches("weight", "weight"));
        assert!(name_matches("encoder", "encoder.layer.0.weight"));
        assert!(!name_matches("enc", "encoder.layer.0.weight"));
        assert!(name_matches("*.bias", "encoder.layer.0.bias"));
        assert!(name_matches("encoder.layer.*.bias", "encoder.layer.11.bias"));
        assert!(!name_matches("*.bias", "encoder.layer.0.weight"));
        assert!(name_matches("all", "anything"));
    }

    #[test]
    fn snapshot_copies_do_not_follow_in_place_updates() {
        let p = Params::new(vec![("w".into(), Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap())]).unwrap();
        let copy = p.copy_values().unwrap();
        p.get("w").unwrap().var.set(&Tensor::new(&[5f32, 6.0], &Device::Cpu).unwrap()).unwrap();
        assert_eq!(copy[0].to_vec1::<f32>().unwrap(), [1.0, 2.0]);
        p.set_values(&copy).unwrap();
        assert_eq!(p.flat_values().unwrap(), [1.0, 2.0]);
        // Several parameters: copied into one buffer, each with its own shape and values.
        let two = Params::new(vec![
            ("a".into(), Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap()),
            ("b".into(), Tensor::new(&[7f32], &Device::Cpu).unwrap()),
        ])
        .unwrap();
        let copy = two.copy_values().unwrap();
        two.get("a").unwrap().var.set(&Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap()).unwrap();
        two.get("b").unwrap().var.set(&Tensor::new(&[0f32], &Device::Cpu).unwrap()).unwrap();
        assert_eq!(copy[0].to_vec2::<f32>().unwrap(), [[1.0, 2.0], [3.0, 4.0]]);
        assert_eq!(copy[1].to_vec1::<f32>().unwrap(), [7.0]);
        two.set_values(&copy).unwrap();
        assert_eq!(two.flat_values().unwrap(), [1.0, 2.0, 3.0, 4.0, 7.0]);
    }
}
