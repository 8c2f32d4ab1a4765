//! Optimizers: SGD (momentum, Nesterov), Adam, AdamW and RMSProp with PyTorch's update
//! rules and defaults. tunelab owns them (rather than candle-nn's) so their state can be
//! shown, snapshotted, moved between devices and saved.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::Grads;
use crate::error::{bail, Result};
use crate::model::kernels::{self, AdamStep, MomentBounds};
use crate::model::Params;

/// Which update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimKind {
    /// Stochastic gradient descent, optionally with (Nesterov) momentum.
    Sgd,
    /// Adam with L2 weight decay added to the gradient.
    Adam,
    /// Adam with decoupled weight decay.
    AdamW,
    /// RMSProp, optionally with momentum.
    RmsProp,
}

impl OptimKind {
    /// The name used in commands.
    pub fn name(self) -> &'static str {
        match self {
            OptimKind::Sgd => "sgd",
            OptimKind::Adam => "adam",
            OptimKind::AdamW => "adamw",
            OptimKind::RmsProp => "rmsprop",
        }
    }

    /// The kind called `name`.
    pub fn from_name(name: &str) -> Option<OptimKind> {
        [OptimKind::Sgd, OptimKind::Adam, OptimKind::AdamW, OptimKind::RmsProp]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// Names of the per-parameter state tensors, as PyTorch's `optimizer.state_dict()` has them.
    fn slot_names(self, config: &OptimConfig) -> &'static [&'static str] {
        match self {
            OptimKind::Sgd if config.momentum > 0.0 => &["momentum_buffer"],
            OptimKind::Sgd => &[],
            OptimKind::Adam | OptimKind::AdamW => &["exp_avg", "exp_avg_sq"],
            OptimKind::RmsProp if config.momentum > 0.0 => &["square_avg", "momentum_buffer"],
            OptimKind::RmsProp => &["square_avg"],
        }
    }
}

/// Settings of an optimizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    /// The update rule.
    pub kind: OptimKind,
    /// Base learning rate (the schedule scales it).
    pub lr: f64,
    /// SGD / RMSProp momentum.
    pub momentum: f64,
    /// SGD: Nesterov momentum.
    pub nesterov: bool,
    /// L2 penalty (decoupled for AdamW).
    pub weight_decay: f64,
    /// Adam(W) decay rates of the first and second moments.
    pub betas: (f64, f64),
    /// Adam(W)/RMSProp denominator term.
    pub eps: f64,
    /// RMSProp smoothing constant.
    pub alpha: f64,
}

impl OptimConfig {
    /// PyTorch's defaults for `kind` (AdamW's weight decay 0.01), with learning rate `lr`.
    pub fn defaults(kind: OptimKind, lr: f64) -> OptimConfig {
        OptimConfig {
            kind,
            lr,
            momentum: 0.0,
            nesterov: false,
            weight_decay: if kind == OptimKind::AdamW { 0.01 } else { 0.0 },
            betas: (0.9, 0.999),
            eps: 1e-8,
            alpha: 0.99,
        }
    }

    /// Checks combinations the option types cannot (Nesterov needs momentum, betas < 1).
    pub fn validate(&self) -> Result<()> {
        if self.nesterov && (self.kind != OptimKind::Sgd || self.momentum <= 0.0) {
            bail!("nesterov needs sgd with momentum > 0, e.g. `optimizer sgd momentum=0.9 nesterov=true`")
        }
        let (b1, b2) = self.betas;
        if !(0.0..1.0).contains(&b1) || !(0.0..1.0).contains(&b2) {
            bail!("betas must be two numbers in [0, 1), like betas=0.9,0.999")
        }
        if self.momentum >= 1.0 {
            bail!("momentum must be below 1, like momentum=0.9")
        }
        Ok(())
    }

    /// One line in the language's own syntax: `sgd lr=0.01 momentum=0.9`.
    pub fn describe(&self) -> String {
        let mut s = format!("{} lr={}", self.kind.name(), self.lr);
        match self.kind {
            OptimKind::Sgd => {
                s += &format!(" momentum={}", self.momentum);
                if self.nesterov {
                    s += " nesterov=true";
                }
            }
            OptimKind::Adam | OptimKind::AdamW => {
                s += &format!(" betas={},{} eps={}", self.betas.0, self.betas.1, self.eps)
            }
            OptimKind::RmsProp => {
                s += &format!(" alpha={} eps={} momentum={}", self.alpha, self.eps, self.momentum)
            }
        }
        s + &format!(" weight_decay={}", self.weight_decay)
    }
}

/// Per-parameter state: the update count (for Adam's bias correction) and the slot tensors.
#[derive(Debug, Default)]
struct Slot {
    step: u64,
    tensors: Vec<Tensor>,
    /// Set when this optimizer made the tensors itself; a clone of the slot (a snapshot,
    /// an undo entry) shares it, so the count says whether anyone else can see them.
    made_here: Option<Arc<()>>,
    /// Set when the tensors were handed out by [`Optimizer::state`].
    lent: AtomicBool,
    /// Bounds on the moments, carried from one in-place update to the next so the next one
    /// can be proved finite without its arithmetic.
    bounds: Option<MomentBounds>,
}

impl Clone for Slot {
    fn clone(&self) -> Slot {
        Slot {
            step: self.step,
            tensors: self.tensors.clone(),
            made_here: self.made_here.clone(),
            lent: AtomicBool::new(self.lent.load(Ordering::Relaxed)),
            bounds: self.bounds,
        }
    }
}

impl Slot {
    /// Whether the tensors are this optimizer's alone, so the update may write them in place.
    fn exclusive(&self) -> bool {
        self.made_here.as_ref().is_some_and(|o| Arc::strong_count(o) == 1)
            && !self.lent.load(Ordering::Relaxed)
    }
}

/// An optimizer: settings plus per-parameter state, keyed by parameter name.
///
/// Cloning an `Optimizer` is a cheap and exact snapshot: state tensors that a clone (or
/// [`state`](Optimizer::state)) can see are replaced by the next update, never written;
/// Adam(W) writes in place only the moments no one else holds.
#[derive(Clone, Debug)]
pub struct Optimizer {
    /// The settings.
    pub config: OptimConfig,
    slots: BTreeMap<String, Slot>,
}

impl Optimizer {
    /// A fresh optimizer (no state yet).
    pub fn new(config: OptimConfig) -> Optimizer {
        Optimizer { config, slots: BTreeMap::new() }
    }

    /// Changes settings but keeps the state (moments carry over).
    pub fn reconfigure(&mut self, config: OptimConfig) {
        let old_names = self.config.kind.slot_names(&self.config);
        let new_names = config.kind.slot_names(&config);
        if old_names != new_names {
            self.slots.clear();
        }
        self.config = config;
    }

    /// Applies one update to every trainable parameter that has a gradient in `grads`, at
    /// learning rate `lr`. All new values are computed before any is written, so a failure
    /// leaves the parameters and state as they were. Returns false, writing nothing, when a
    /// new value would be NaN or infinite.
    pub fn step(&mut self, params: &Params, grads: &Grads, lr: f64) -> Result<bool> {
        self.step_bounded(params, grads, &HashMap::new(), lr)
    }

    /// [`step`](Self::step), given for some gradients a bound on their largest `|g|` (their
    /// L2 norm, which the gradient clipping computes anyway): Adam(W)'s in-place update
    /// then proves its result finite without reading those gradients an extra time.
    pub fn step_bounded(
        &mut self,
        params: &Params,
        grads: &Grads,
        g_bounds: &HashMap<String, f64>,
        lr: f64,
    ) -> Result<bool> {
        let fused = kernels::enabled();
        let mut updates = Vec::new();
        let mut in_place = Vec::new();
        let mut fresh_moments = Vec::new();
        let mut sums = Vec::new();
        for p in params.iter().filter(|p| p.trainable) {
            let Some(g) = grads.get(&p.name) else { continue };
            if fused {
                if let Some(step) = self.in_place_step(&p.name, lr) {
                    let [m, v] = &self.slots[&p.name].tensors[..] else {
                        unreachable!("Adam has two moments")
                    };
                    // Proved finite from bounds (reads p and g), else checked exactly (the
                    // update's arithmetic, read-only).
                    let known = self.slots[&p.name].bounds;
                    let value = p.var.as_tensor();
                    let g_bound = g_bounds.get(&p.name).copied();
                    if let Some(next) =
                        kernels::adam_update_bounded(value, g, Some((m, v)), &step, known, g_bound)?
                    {
                        in_place.push((p, g, step, Some(next)));
                        continue;
                    }
                    match kernels::adam_update_finite(value, g, m, v, &step)? {
                        Some(true) => {
                            in_place.push((p, g, step, None));
                            continue;
                        }
                        Some(false) => return Ok(false),
                        None => {}
                    }
                } else if let Some((step, moments)) =
                    self.fresh_moments_step(&p.name, lr).filter(|_| p.var.device().is_cpu())
                {
                    // The first update, or the first since a snapshot took the moments: the
                    // parameter in place, new moments beside the old ones.
                    let value = p.var.as_tensor();
                    let old = moments.as_ref().map(|(m, v)| (m, v));
                    let g_bound = g_bounds.get(&p.name).copied();
                    if let Some(next) = kernels::adam_update_bounded(value, g, old, &step, None, g_bound)? {
                        fresh_moments.push((p, g, step, moments, Some(next)));
                        continue;
                    }
                    // Rare (a huge learning rate): the exact check, zeros for absent moments.
                    let zeros;
                    let (m, v) = match old {
                        Some(mv) => mv,
                        None => {
                            zeros = (value.zeros_like()?, value.zeros_like()?);
                            (&zeros.0, &zeros.1)
                        }
                    };
                    match kernels::adam_update_finite(value, g, m, v, &step)? {
                        Some(true) => {
                            fresh_moments.push((p, g, step, moments, None));
                            continue;
                        }
                        Some(false) => return Ok(false),
                        None => {}
                    }
                }
            }
            let slot = self.slots.get(&p.name).cloned().unwrap_or_default();
            let (value, slot) = self.update(p.var.as_tensor(), g, slot, lr, fused)?;
            sums.push(value.sum_all()?.to_dtype(DType::F32)?);
            updates.push((p, value, slot));
        }
        // A finite gradient times a huge learning rate can still overflow: write nothing
        // unless every new value is finite (one sum, one transfer to the host; the in-place
        // updates were checked above, by their bounds or by a read-only pass).
        if !sums.is_empty() && !Tensor::stack(&sums, 0)?.sum_all()?.to_scalar::<f32>()?.is_finite() {
            return Ok(false);
        }
        for (p, g, step, bounds) in in_place {
            let slot = self.slots.get_mut(&p.name).expect("checked above");
            let [m, v] = &slot.tensors[..] else { unreachable!("Adam has two moments") };
            kernels::adam_update_in_place(p.var.as_tensor(), g, m, v, &step)?;
            slot.step += 1;
            slot.bounds = bounds;
        }
        // The new moments of all these parameters in two buffers (see the kernel for why).
        let items: Vec<kernels::FirstUpdate<'_>> = fresh_moments
            .iter()
            .map(|(p, g, step, moments, _)| kernels::FirstUpdate {
                p: p.var.as_tensor(),
                g,
                moments: moments.as_ref().map(|(m, v)| (m, v)),
                step,
            })
            .collect();
        let new = match kernels::adam_update_params_in_place(&items)? {
            Some(new) => new,
            // Parameters of different dtypes: one at a time.
            None => items
                .iter()
                .map(|it| {
                    let new = kernels::adam_update_param_in_place(it.p, it.g, it.moments, it.step)?;
                    Ok(new.expect("the bound or the exact check above saw the tensors fit"))
                })
                .collect::<Result<Vec<_>>>()?,
        };
        drop(items);
        for ((p, _, _, _, bounds), (m, v)) in fresh_moments.into_iter().zip(new) {
            let slot = self.slots.entry(p.name.clone()).or_default();
            slot.step += 1;
            slot.tensors = vec![m, v];
            slot.made_here = Some(Arc::new(()));
            slot.lent = AtomicBool::new(false);
            slot.bounds = bounds;
        }
        for (p, value, slot) in updates {
            p.var.set(&value)?;
            self.slots.insert(p.name.clone(), slot);
        }
        Ok(true)
    }

    /// The hyper-parameters of the next Adam(W) update of `name` when its moments exist and
    /// are this optimizer's alone (so the update may write them in place), else `None`.
    fn in_place_step(&self, name: &str, lr: f64) -> Option<AdamStep> {
        let slot = self.slots.get(name)?;
        let adam = matches!(self.config.kind, OptimKind::Adam | OptimKind::AdamW);
        (adam && slot.tensors.len() == 2 && slot.exclusive()).then(|| self.adam_step(slot.step + 1, lr))
    }

    /// The hyper-parameters of the next Adam(W) update of `name` and its moments (`None`
    /// before the first update) when that update must give the optimizer new moments: the
    /// first, or the first since a snapshot or [`state`](Self::state) took them.
    fn fresh_moments_step(&self, name: &str, lr: f64) -> Option<(AdamStep, Option<(Tensor, Tensor)>)> {
        if !matches!(self.config.kind, OptimKind::Adam | OptimKind::AdamW) {
            return None;
        }
        let slot = self.slots.get(name);
        let moments = match slot.map(|s| &s.tensors[..]) {
            None | Some([]) => None,
            Some([m, v]) => Some((m.clone(), v.clone())),
            Some(_) => return None,
        };
        Some((self.adam_step(slot.map_or(0, |s| s.step) + 1, lr), moments))
    }

    /// Adam(W)'s hyper-parameters for update number `t` at learning rate `lr`.
    fn adam_step(&self, t: u64, lr: f64) -> AdamStep {
        let c = &self.config;
        AdamStep {
            lr,
            beta1: c.betas.0,
            beta2: c.betas.1,
            eps: c.eps,
            weight_decay: c.weight_decay,
            decoupled: c.kind == OptimKind::AdamW,
            t: t as i32,
        }
    }

    /// The update rule for one parameter: returns its new value and state. With `fused`,
    /// Adam(W) on contiguous CPU tensors takes the one-pass kernel (`kernels::adam_update`).
    fn update(&self, p: &Tensor, g: &Tensor, mut slot: Slot, lr: f64, fused: bool) -> Result<(Tensor, Slot)> {
        let c = &self.config;
        slot.step += 1;
        let t = slot.step as i32;
        let first = slot.tensors.is_empty();
        if fused && matches!(c.kind, OptimKind::Adam | OptimKind::AdamW) {
            if let Some((value, m, v)) = self.fused_adam(p, g, &slot, lr)? {
                slot.tensors = vec![m, v];
                slot.made_here = Some(Arc::new(()));
                slot.lent = AtomicBool::new(false);
                slot.bounds = None;
                return Ok((value, slot));
            }
        }
        // The composite rules make new tensors too, but not on a path that writes in place.
        slot.made_here = None;
        slot.bounds = None;
        let value = match c.kind {
            OptimKind::Sgd => {
                let mut g =
                    if c.weight_decay > 0.0 { (g + p.affine(c.weight_decay, 0.0)?)? } else { g.clone() };
                if c.momentum > 0.0 {
                    let buf =
                        if first { g.clone() } else { (slot.tensors[0].affine(c.momentum, 0.0)? + &g)? };
                    g = if c.nesterov { (&g + buf.affine(c.momentum, 0.0)?)? } else { buf.clone() };
                    slot.tensors = vec![buf];
                }
                (p - g.affine(lr, 0.0)?)?
            }
            OptimKind::Adam | OptimKind::AdamW => {
                let (b1, b2) = c.betas;
                let (p, g) = match c.kind {
                    OptimKind::AdamW => (p.affine(1.0 - lr * c.weight_decay, 0.0)?, g.clone()),
                    _ if c.weight_decay > 0.0 => (p.clone(), (g + p.affine(c.weight_decay, 0.0)?)?),
                    _ => (p.clone(), g.clone()),
                };
                let (m, v) = if first {
                    (g.zeros_like()?, g.zeros_like()?)
                } else {
                    (slot.tensors[0].clone(), slot.tensors[1].clone())
                };
                let m = (m.affine(b1, 0.0)? + g.affine(1.0 - b1, 0.0)?)?;
                let v = (v.affine(b2, 0.0)? + g.sqr()?.affine(1.0 - b2, 0.0)?)?;
                let m_hat = m.affine(1.0 / (1.0 - b1.powi(t)), 0.0)?;
                let denom = v.affine(1.0 / (1.0 - b2.powi(t)), 0.0)?.sqrt()?.affine(1.0, c.eps)?;
                let new = (&p - m_hat.div(&denom)?.affine(lr, 0.0)?)?;
                slot.tensors = vec![m, v];
                new
            }
            OptimKind::RmsProp => {
                let g = if c.weight_decay > 0.0 { (g + p.affine(c.weight_decay, 0.0)?)? } else { g.clone() };
                let sq = if first { g.zeros_like()? } else { slot.tensors[0].clone() };
                let sq = (sq.affine(c.alpha, 0.0)? + g.sqr()?.affine(1.0 - c.alpha, 0.0)?)?;
                let step = g.div(&sq.sqrt()?.affine(1.0, c.eps)?)?;
                if c.momentum > 0.0 {
                    let buf = if first { step } else { (slot.tensors[1].affine(c.momentum, 0.0)? + step)? };
                    let new = (p - buf.affine(lr, 0.0)?)?;
                    slot.tensors = vec![sq, buf];
                    new
                } else {
                    slot.tensors = vec![sq];
                    (p - step.affine(lr, 0.0)?)?
                }
            }
        };
        Ok((value, slot))
    }

    /// Adam(W) through the fused kernel: the new value and moments, or `None` when the
    /// tensors do not fit the kernel (the composite rule runs instead).
    fn fused_adam(
        &self,
        p: &Tensor,
        g: &Tensor,
        slot: &Slot,
        lr: f64,
    ) -> Result<Option<(Tensor, Tensor, Tensor)>> {
        let step = self.adam_step(slot.step, lr);
        let moments = match slot.tensors.as_slice() {
            [m, v] => Some((m, v)),
            _ => None,
        };
        kernels::adam_update(p, g, moments, &step)
    }

    /// The state as named tensors, `{param}.{slot}` (e.g. `weight.exp_avg`), plus each
    /// parameter's update count.
    pub fn state(&self) -> (HashMap<String, Tensor>, BTreeMap<String, u64>) {
        let names = self.config.kind.slot_names(&self.config);
        let mut tensors = HashMap::new();
        let mut steps = BTreeMap::new();
        for (param, slot) in &self.slots {
            // The caller may keep these tensors: the next update must not write them.
            slot.lent.store(true, Ordering::Relaxed);
            steps.insert(param.clone(), slot.step);
            for (name, t) in names.iter().zip(&slot.tensors) {
                tensors.insert(format!("{param}.{name}"), t.clone());
            }
        }
        (tensors, steps)
    }

    /// Restores state written by [`state`](Self::state).
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        steps: &BTreeMap<String, u64>,
    ) -> Result<()> {
        let names = self.config.kind.slot_names(&self.config);
        let mut slots = BTreeMap::new();
        for (param, step) in steps {
            let ts = names
                .iter()
                .map(|n| tensors.get(&format!("{param}.{n}")).cloned())
                .collect::<Option<Vec<_>>>();
            match ts {
                Some(ts) => slots.insert(param.clone(), Slot { step: *step, tensors: ts, ..Slot::default() }),
                None if names.is_empty() => {
                    slots.insert(param.clone(), Slot { step: *step, ..Slot::default() })
                }
                None => bail!("optimizer state for '{param}' is incomplete; expected {}", names.join(", ")),
            };
        }
        self.slots = slots;
        Ok(())
    }

    /// The same optimizer with its state on `device`.
    pub fn to_device(&self, device: &Device) -> Result<Optimizer> {
        let mut out = self.clone();
        for slot in out.slots.values_mut() {
            for t in slot.tensors.iter_mut() {
                *t = crate::uploads::to_device(t, device, crate::uploads::Upload::OptimizerState)?;
            }
        }
        Ok(out)
    }

    /// Bytes of state held on the device.
    pub fn state_bytes(&self) -> usize {
        self.slots.values().flat_map(|s| &s.tensors).map(|t| t.elem_count() * t.dtype().size_in_bytes()).sum()
    }

    /// Number of parameters with state.
    pub fn tracked(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grads_of(params: &Params, loss: &Tensor) -> Grads {
        let store = loss.backward().unwrap();
        params
            .iter()
            .filter_map(|p| store.get(p.var.as_tensor()).map(|g| (p.name.clone(), g.clone())))
            .collect()
    }
    use candle_core::Var;

    /// Minimise f(p) = Σ (p - 3)² from p = [0, 1] for `steps` updates; returns p.
    fn run(config: OptimConfig, steps: usize) -> Vec<f32> {
        let params =
            Params::new(vec![("p".into(), Tensor::new(&[0f32, 1.0], &Device::Cpu).unwrap())]).unwrap();
        let mut opt = Optimizer::new(config);
        for _ in 0..steps {
            let p = params.tensor("p", true).unwrap();
            let loss = p.affine(1.0, -3.0).unwrap().sqr().unwrap().sum_all().unwrap();
            assert!(opt.step(&params, &grads_of(&params, &loss), opt.config.lr).unwrap());
        }
        params.get("p").unwrap().var.as_tensor().to_vec1::<f32>().unwrap()
    }

    // Reference values printed by PyTorch 2.15 (torch.optim.X([p], ...), the same loss and
    // starting point, two updates).
    #[test]
    fn two_updates_match_pytorch() {
        let cfg = |kind, lr, momentum, nesterov, wd| {
            let mut c = OptimConfig::defaults(kind, lr);
            c.momentum = momentum;
            c.nesterov = nesterov;
            c.weight_decay = wd;
            c
        };
        use OptimKind::*;
        let cases = [
            ("sgd", cfg(Sgd, 0.1, 0.0, false, 0.0), [1.08, 1.72]),
            ("sgd momentum", cfg(Sgd, 0.1, 0.9, false, 0.0), [1.62, 2.08]),
            ("sgd nesterov", cfg(Sgd, 0.1, 0.9, true, 0.0), [2.3328, 2.5552]),
            ("sgd weight decay", cfg(Sgd, 0.1, 0.0, false, 0.1), [1.074, 1.6981]),
            ("adam", cfg(Adam, 0.1, 0.0, false, 0.0), [0.1998973, 1.1998335]),
            ("adam weight decay", cfg(Adam, 0.1, 0.0, false, 0.5), [0.1998665, 1.1997385]),
            ("adamw", cfg(AdamW, 0.1, 0.0, false, 0.5), [0.1948973, 1.0974259]),
            ("rmsprop", cfg(RmsProp, 0.01, 0.0, false, 0.0), [0.1696825, 1.1690567]),
            ("rmsprop momentum", cfg(RmsProp, 0.01, 0.9, false, 0.1), [0.2596207, 1.2589101]),
        ];
        for (name, config, want) in cases {
            let got = run(config, 2);
            assert!(got.iter().zip(want).all(|(g, w)| (g - w).abs() < 2e-6), "{name}: {got:?} vs {want:?}");
        }
    }

    /// The fused Adam(W) kernel against the composite rule: five updates of a small
    /// least-squares problem, same losses and parameters.
    #[test]
    fn fused_adam_matches_the_composite_update() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[1f32, 2.0, -1.0], [0.5, -1.5, 2.0], [3.0, 0.0, 1.0], [-2.0, 1.0, 0.5]], &dev)
            .unwrap();
        let y = Tensor::new(&[1f32, -2.0, 0.5, 3.0], &dev).unwrap();
        for kind in [OptimKind::Adam, OptimKind::AdamW] {
            let mut config = OptimConfig::defaults(kind, 0.05);
            config.weight_decay = 0.1;
            let mut losses = [Vec::new(), Vec::new()];
            let mut finals = Vec::new();
            for (path, fused) in [(0, false), (1, true)] {
                let params =
                    Params::new(vec![("w".into(), Tensor::new(&[0.1f32, -0.2, 0.3], &dev).unwrap())])
                        .unwrap();
                let opt = Optimizer::new(config.clone());
                let mut slots: BTreeMap<String, Slot> = BTreeMap::new();
                kernels::set_enabled(true);
                let calls = kernels::fused_calls();
                for _ in 0..5 {
                    let w = params.tensor("w", true).unwrap();
                    let pred = x.matmul(&w.unsqueeze(1).unwrap()).unwrap().squeeze(1).unwrap();
                    let loss = (pred - &y).unwrap().sqr().unwrap().mean_all().unwrap();
                    losses[path].push(loss.to_scalar::<f32>().unwrap());
                    let grads = grads_of(&params, &loss);
                    let p = params.get("w").unwrap();
                    let slot = slots.remove("w").unwrap_or_default();
                    let (value, slot) =
                        opt.update(p.var.as_tensor(), &grads["w"], slot, 0.05, fused).unwrap();
                    p.var.set(&value).unwrap();
                    slots.insert("w".into(), slot);
                }
                finals.push(params.get("w").unwrap().var.as_tensor().to_vec1::<f32>().unwrap());
                if fused {
                    assert!(kernels::fused_calls() >= calls + 5, "{kind:?}: the fused update did not run");
                }
            }
            assert!(
                losses[0][4] < losses[0][0] * 0.9,
                "{kind:?}: the loss does not go down: {:?}",
                losses[0]
            );
            for (a, b) in losses[0].iter().zip(&losses[1]) {
                assert!(
                    (a - b).abs() <= 1e-6 * a.abs().max(1.0),
                    "{kind:?}: losses {:?} vs {:?}",
                    losses[0],
                    losses[1]
                );
            }
            for (a, b) in finals[0].iter().zip(&finals[1]) {
                assert!((a - b).abs() < 1e-6, "{kind:?}: parameters {:?} vs {:?}", finals[0], finals[1]);
            }
        }
    }

    #[test]
    fn every_optimizer_converges() {
        for kind in [OptimKind::Sgd, OptimKind::Adam, OptimKind::AdamW, OptimKind::RmsProp] {
            let mut c = OptimConfig::defaults(kind, 0.05);
            c.weight_decay = 0.0;
            let p = run(c, 400);
            assert!(p.iter().all(|v| (v - 3.0).abs() < 0.05), "{kind:?} {p:?}");
        }
    }

    #[test]
    fn frozen_and_gradless_parameters_are_untouched() {
        let mut params = Params::new(vec![
            ("a".into(), Tensor::new(&[1f32], &Device::Cpu).unwrap()),
            ("b".into(), Tensor::new(&[1f32], &Device::Cpu).unwrap()),
        ])
        .unwrap();
        params.set_trainable(&[1], false);
        let loss = (params.tensor("a", true).unwrap() + params.tensor("b", true).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let mut opt = Optimizer::new(OptimConfig::defaults(OptimKind::Adam, 0.1));
        assert!(opt.step(&params, &grads_of(&params, &loss), 0.1).unwrap());
        assert_eq!(params.get("b").unwrap().var.as_tensor().to_vec1::<f32>().unwrap(), [1.0]);
        assert_eq!(opt.tracked(), 1);
        let _ = Var::new(&[0f32], &Device::Cpu);
    }

    #[test]
    fn state_round_trips() {
        let params =
            Params::new(vec![("p".into(), Tensor::new(&[0f32, 1.0], &Device::Cpu).unwrap())]).unwrap();
        let mut opt = Optimizer::new(OptimConfig::defaults(OptimKind::Adam, 0.1));
        let loss = params.tensor("p", true).unwrap().sqr().unwrap().sum_all().unwrap();
        assert!(opt.step(&params, &grads_of(&params, &loss), 0.1).unwrap());
        let (t, s) = opt.state();
        assert_eq!(t.len(), 2);
        let mut other = Optimizer::new(opt.config.clone());
        other.load_state(&t, &s).unwrap();
        assert_eq!(other.state().1, s);
    }
    /// The storage address of slot tensor `i` of parameter `name` (to see whether an update
    /// wrote in place or replaced the tensor).
    fn storage_of(opt: &Optimizer, name: &str, i: usize) -> usize {
        &*opt.slots[name].tensors[i].storage_and_layout().0 as *const candle_core::Storage as usize
    }

    /// Adam(W) writes its moments in place once they are its own, and only then: a clone (a
    /// snapshot) and the tensors `state` handed out keep their values while training goes on,
    /// and the updates still equal the composite rule's.
    #[test]
    fn in_place_updates_leave_snapshots_and_lent_state_alone() {
        kernels::set_enabled(true);
        let params =
            Params::new(vec![("p".into(), Tensor::new(&[0f32, 1.0, -2.0], &Device::Cpu).unwrap())]).unwrap();
        let mut opt = Optimizer::new(OptimConfig::defaults(OptimKind::AdamW, 0.1));
        let step = |opt: &mut Optimizer| {
            let p = params.tensor("p", true).unwrap();
            let loss = p.affine(1.0, -3.0).unwrap().sqr().unwrap().sum_all().unwrap();
            assert!(opt.step(&params, &grads_of(&params, &loss), 0.1).unwrap());
        };
        step(&mut opt);
        let first = storage_of(&opt, "p", 0);
        step(&mut opt);
        assert_eq!(storage_of(&opt, "p", 0), first, "the second update writes the moments in place");
        // A clone shares the moments: the next update replaces them, and the clone keeps its own.
        let snapshot = opt.clone();
        let kept = snapshot.slots["p"].tensors[0].to_vec1::<f32>().unwrap();
        step(&mut opt);
        assert_ne!(storage_of(&opt, "p", 0), first);
        assert_eq!(snapshot.slots["p"].tensors[0].to_vec1::<f32>().unwrap(), kept);
        // Lent tensors likewise.
        let (lent, _) = opt.state();
        let lent_m = lent["p.exp_avg"].to_vec1::<f32>().unwrap();
        step(&mut opt);
        assert_eq!(lent["p.exp_avg"].to_vec1::<f32>().unwrap(), lent_m);
        // The four updates (the first and those after the snapshot and after `state` with new
        // moments, the second all in place) equal four of the composite rule.
        let fused = params.get("p").unwrap().var.as_tensor().to_vec1::<f32>().unwrap();
        let reference =
            Params::new(vec![("p".into(), Tensor::new(&[0f32, 1.0, -2.0], &Device::Cpu).unwrap())]).unwrap();
        let mut slot = Slot::default();
        for _ in 0..4 {
            let p = reference.get("p").unwrap();
            let loss = p.var.as_tensor().affine(1.0, -3.0).unwrap().sqr().unwrap().sum_all().unwrap();
            let g = loss.backward().unwrap().get(p.var.as_tensor()).unwrap().clone();
            let (value, next) = opt.update(p.var.as_tensor(), &g, slot, 0.1, false).unwrap();
            p.var.set(&value).unwrap();
            slot = next;
        }
        let composite = reference.get("p").unwrap().var.as_tensor().to_vec1::<f32>().unwrap();
        assert!(
            fused.iter().zip(&composite).all(|(a, b)| (a - b).abs() < 1e-6),
            "{fused:?} vs {composite:?}"
        );
    }

    /// An update that would overflow writes nothing, on the in-place paths as on the others:
    /// the first update, the first after a snapshot, and one with the optimizer's own moments.
    #[test]
    fn an_overflowing_in_place_update_writes_nothing() {
        kernels::set_enabled(true);
        let params =
            Params::new(vec![("p".into(), Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap())]).unwrap();
        let mut opt = Optimizer::new(OptimConfig::defaults(OptimKind::Adam, 0.1));
        let grads = |params: &Params| {
            let loss = params.tensor("p", true).unwrap().sqr().unwrap().sum_all().unwrap();
            grads_of(params, &loss)
        };
        // The first update (new moments, the parameter in place) at lr 1e39: nothing written.
        let start = params.get("p").unwrap().var.as_tensor().to_vec1::<f32>().unwrap();
        assert!(!opt.step(&params, &grads(&params), 1e39).unwrap());
        assert_eq!(params.get("p").unwrap().var.as_tensor().to_vec1::<f32>().unwrap(), start);
        assert!(opt.slots.is_empty(), "no state from a refused first update");
        assert!(opt.step(&params, &grads(&params), 0.1).unwrap());
        // After a snapshot (new moments again): nothing written either.
        let snapshot = opt.clone();
        let after_first = params.get("p").unwrap().var.as_tensor().to_vec1::<f32>().unwrap();
        assert!(!opt.step(&params, &grads(&params), 1e39).unwrap());
        assert_eq!(params.get("p").unwrap().var.as_tensor().to_vec1::<f32>().unwrap(), after_first);
        assert_eq!(opt.slots["p"].step, 1);
        drop(snapshot);
        let (before, m_before) = (
            params.get("p").unwrap().var.as_tensor().to_vec1::<f32>().unwrap(),
            opt.slots["p"].tensors[0].to_vec1::<f32>().unwrap(),
        );
        assert!(opt.slots["p"].exclusive());
        assert!(!opt.step(&params, &grads(&params), 1e39).unwrap());
        assert_eq!(params.get("p").unwrap().var.as_tensor().to_vec1::<f32>().unwrap(), before);
        assert_eq!(opt.slots["p"].tensors[0].to_vec1::<f32>().unwrap(), m_before);
        assert_eq!(opt.slots["p"].step, 1);
    }
}
