//! Penalties against forgetting: L2-SP (stay near the starting weights) and EWC (elastic
//! weight consolidation: stay near a previous task's weights where they mattered to it).
//!
//! Both hold copies of the weights (the anchor), made only when the user asks for them.

use candle_core::{DType, Tensor};

use crate::data::Dataset;
use crate::error::{bail, Result};
use crate::model::layers::Dropout;
use crate::model::{Model, Pass};

/// One EWC term: parameter name, θ*, F.
pub type EwcTerm = (String, Tensor, Tensor);

/// At most this many rows of a split estimate the Fisher information (one backward each).
pub const FISHER_ROWS: usize = 256;

/// `weight · Σ (θ − θ₀)²` over trainable parameters (Li et al. 2018, "L2-SP").
#[derive(Clone, Debug)]
pub struct L2Sp {
    /// The penalty's weight.
    pub weight: f64,
    /// The starting point θ₀ by parameter name, and the step it was taken at.
    pub anchor: Vec<(String, Tensor)>,
    /// The training step the anchor was copied at.
    pub step: u64,
}

/// `λ/2 · Σ F (θ − θ*)²` (Kirkpatrick et al. 2017, "EWC"), with `F` the diagonal of the
/// empirical Fisher information of a previous task at its solution θ*.
#[derive(Clone, Debug)]
pub struct Ewc {
    /// λ.
    pub lambda: f64,
    /// θ* and F (scaled to a largest entry of 1) by parameter name (parameters trainable
    /// when it was estimated).
    pub terms: Vec<EwcTerm>,
    /// What F was estimated on, for messages.
    pub source: String,
    /// The largest entry of F before scaling.
    pub max: f64,
}

/// The anchors in force; empty by default.
#[derive(Clone, Debug, Default)]
pub struct Anchors {
    /// `regularize l2sp=`.
    pub l2sp: Option<L2Sp>,
    /// `regularize ewc=`.
    pub ewc: Option<Ewc>,
}

impl Anchors {
    /// Whether no anchored penalty is in force.
    pub fn is_empty(&self) -> bool {
        self.l2sp.is_none() && self.ewc.is_none()
    }

    /// The sum of the anchored penalties for `model`'s current weights (with a gradient
    /// graph for its trainable parameters); `None` when there are none. Parameters missing
    /// from an anchor, or of another shape (a re-sized head), are not penalised.
    pub fn penalty(&self, model: &dyn Model) -> Result<Option<Tensor>> {
        let mut total: Option<Tensor> = None;
        let mut add = |t: Tensor| -> Result<()> {
            total = Some(match total.take() {
                Some(s) => (s + t)?,
                None => t,
            });
            Ok(())
        };
        for p in model.params().iter().filter(|p| p.trainable) {
            let w = p.var.as_tensor();
            if let Some(l2sp) = &self.l2sp {
                if let Some((_, a)) = l2sp.anchor.iter().find(|(n, a)| *n == p.name && a.shape() == w.shape())
                {
                    let d = w.sub(&a.to_device(w.device())?)?;
                    add(d.sqr()?.sum_all()?.affine(l2sp.weight, 0.0)?)?;
                }
            }
            if let Some(ewc) = &self.ewc {
                if let Some((_, star, f)) =
                    ewc.terms.iter().find(|(n, s, _)| *n == p.name && s.shape() == w.shape())
                {
                    let d = w.sub(&star.to_device(w.device())?)?;
                    let term = d.sqr()?.mul(&f.to_device(w.device())?)?.sum_all()?;
                    add(term.affine(ewc.lambda / 2.0, 0.0)?)?;
                }
            }
        }
        Ok(total)
    }
}

/// A copy of every parameter's current value, by name, detached from the graph (a plain
/// `copy` stays linked to the variable, so `θ − copy(θ)` would have no gradient).
pub fn copy_weights(model: &dyn Model) -> Result<Vec<(String, Tensor)>> {
    model.params().iter().map(|p| Ok((p.name.clone(), p.var.as_tensor().copy()?.detach()))).collect()
}

/// The diagonal of the empirical Fisher information of `model`'s loss at its current
/// weights: the mean over `rows` (at most [`FISHER_ROWS`]) of each trainable parameter's
/// squared per-row gradient, without dropout, then divided by its largest entry. Returns
/// θ* (a copy of the weights), F by parameter name, and the largest entry before scaling.
///
/// Why scaled: a model fitted to near-zero training loss has near-zero gradients, so the
/// raw F (and the λ it needs) shrinks by orders of magnitude with how long task A was
/// trained. Scaled to a maximum of 1, λ means the same thing every time: the weight of
/// `(θ−θ*)²` for the parameter task A depends on most (`l2sp=` weights every parameter so).
pub fn fisher_diagonal(model: &dyn Model, data: &Dataset, rows: &[u32]) -> Result<(Vec<EwcTerm>, f64)> {
    let rows = &rows[..rows.len().min(FISHER_ROWS)];
    if rows.is_empty() {
        bail!("no rows to estimate the Fisher information on; name a split with rows (data=train)")
    }
    let trainable: Vec<_> = model.params().iter().filter(|p| p.trainable).collect();
    let mut sums: Vec<Option<Tensor>> = vec![None; trainable.len()];
    for &row in rows {
        let loss =
            model.loss(&data.batch(&[row])?, &mut Pass { train: true, dropout: Dropout::disabled() })?;
        let grads = loss.backward()?;
        for (p, sum) in trainable.iter().zip(sums.iter_mut()) {
            if let Some(g) = grads.get(p.var.as_tensor()) {
                let sq = g.detach().to_dtype(DType::F32)?.sqr()?;
                *sum = Some(match sum.take() {
                    Some(s) => (s + sq)?,
                    None => sq,
                });
            }
        }
    }
    let mut max = 0.0f64;
    for s in sums.iter().flatten() {
        max = max.max(s.max_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()? / rows.len() as f64);
    }
    if max <= 0.0 || !max.is_finite() {
        bail!("the loss has no gradient on these rows (Fisher information {max}); nothing for ewc= to keep")
    }
    let scale = 1.0 / (rows.len() as f64 * max);
    let terms = trainable
        .iter()
        .zip(sums)
        .filter_map(|(p, s)| s.map(|s| (p, s)))
        .map(|(p, s)| {
            Ok((p.name.clone(), p.var.as_tensor().copy()?.detach(), s.affine(scale, 0.0)?.detach()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((terms, max))
}
