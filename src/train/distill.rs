//! Knowledge distillation (Hinton et al., 2015): a student classifier trained on a mix of the
//! labels and a teacher's softened predictions, optionally on a transfer set of texts
//! without labels as well.

use std::sync::{Arc, Mutex};

use candle_core::{Device, Tensor, D};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::data::{Batch, Split, TextData};
use crate::error::Result;
use crate::model::Model;

/// A teacher classifier, held read-only, and how its soft targets are mixed in.
pub struct Distill {
    /// The teacher: never trained, run without dropout.
    pub teacher: Box<dyn Model>,
    /// Where it was loaded from (shown to the user).
    pub source: String,
    /// Softmax temperature `T` of both teacher and student in the soft term.
    pub temperature: f64,
    /// Weight of the soft term; `1 − alpha` weighs the cross-entropy on the labels.
    pub alpha: f64,
    /// Texts without labels on which the student matches the teacher too, if any.
    pub transfer: Option<TransferSet>,
}

impl Distill {
    /// The same teacher and transfer set on another device.
    pub fn to_device(&self, device: &Device) -> Result<Distill> {
        Ok(Distill {
            teacher: self.teacher.to_device(device)?,
            source: self.source.clone(),
            temperature: self.temperature,
            alpha: self.alpha,
            transfer: self.transfer.as_ref().map(|t| t.to_device(device)).transpose()?,
        })
    }
}

/// Hinton's transfer set: texts without labels, tokenized once, on which the student learns
/// the teacher's soft targets alone. Each update draws as many of them as its labelled batch
/// holds, so a student with few labels sees the teacher's view of many more texts.
#[derive(Clone, Debug)]
pub struct TransferSet {
    /// The file they came from (shown to the user).
    pub source: String,
    /// The texts, tokenized for the student (their labels are placeholders, never read).
    pub texts: TextData,
}

impl TransferSet {
    /// Number of texts.
    pub fn len(&self) -> usize {
        self.texts.split(Split::Train).len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `n` texts (at most all of them) drawn without replacement, chosen by `seed` alone so a
    /// resumed fit draws what an uninterrupted one would.
    pub fn sample(&self, n: usize, seed: u64) -> Result<Batch> {
        let rows = self.texts.split(Split::Train);
        let mut rng = StdRng::seed_from_u64(seed);
        let picked = rand::seq::index::sample(&mut rng, rows.len(), n.min(rows.len()));
        let idx: Vec<u32> = picked.iter().map(|i| rows[i]).collect();
        self.texts.batch(&idx)
    }

    /// The same texts on another device.
    pub fn to_device(&self, device: &Device) -> Result<TransferSet> {
        Ok(TransferSet { source: self.source.clone(), texts: self.texts.to_device(device)? })
    }
}

impl std::fmt::Debug for Distill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Distill({}, T={}, alpha={})", self.source, self.temperature, self.alpha)
    }
}

/// A teacher shared between the session and the training steps.
pub type SharedDistill = Arc<Mutex<Distill>>;

/// `alpha · T² · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − alpha) · hard`, the KL divergence
/// averaged over the rows of the batch (PyTorch's `kl_div(…, reduction="batchmean")`), for
/// student logits `s` and teacher logits `t` of shape `[n, classes]`; `hard` is the
/// cross-entropy on the labels. The `T²` keeps the soft term's gradients on the scale of the
/// hard term's as `T` changes. Gradients flow into `student` only.
pub fn distill_loss(
    student: &Tensor,
    teacher: &Tensor,
    hard: &Tensor,
    temperature: f64,
    alpha: f64,
) -> Result<Tensor> {
    let n = student.dim(0)?.max(1) as f64;
    let log_s = candle_nn::ops::log_softmax(&student.affine(1.0 / temperature, 0.0)?, D::Minus1)?;
    let log_t = candle_nn::ops::log_softmax(&teacher.detach().affine(1.0 / temperature, 0.0)?, D::Minus1)?;
    let kl = (log_t.exp()? * (log_t - log_s)?)?.sum_all()?.affine(1.0 / n, 0.0)?;
    let soft = kl.affine(alpha * temperature * temperature, 0.0)?;
    Ok((soft + hard.affine(1.0 - alpha, 0.0)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The mix against the formula worked by hand for two rows of two classes.
    #[test]
    fn loss_is_the_weighted_sum_of_scaled_kl_and_cross_entropy() {
        let d = Device::Cpu;
        let s = Var::new(&[[1.0f32, 0.0], [0.0, 2.0]], &d).unwrap();
        let t = Tensor::new(&[[2.0f32, 0.0], [0.5, 0.5]], &d).unwrap();
        let hard = Tensor::new(0.7f32, &d).unwrap();
        let (temp, alpha) = (2.0f64, 0.25f64);
        let softmax = |a: f64, b: f64| {
            let (ea, eb) = ((a / temp).exp(), (b / temp).exp());
            (ea / (ea + eb), eb / (ea + eb))
        };
        let kl_row = |s: (f64, f64), t: (f64, f64)| {
            let (ps, pt) = (softmax(s.0, s.1), softmax(t.0, t.1));
            pt.0 * (pt.0 / ps.0).ln() + pt.1 * (pt.1 / ps.1).ln()
        };
        let kl = (kl_row((1.0, 0.0), (2.0, 0.0)) + kl_row((0.0, 2.0), (0.5, 0.5))) / 2.0;
        let want = alpha * temp * temp * kl + (1.0 - alpha) * 0.7;
        let got = distill_loss(s.as_tensor(), &t, &hard, temp, alpha).unwrap().to_scalar::<f32>().unwrap();
        assert!((got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        // alpha = 1 with the student equal to the teacher: nothing to learn.
        let same = distill_loss(&t, &t, &hard, temp, 1.0).unwrap().to_scalar::<f32>().unwrap();
        assert!(same.abs() < 1e-7, "{same}");
        // Gradients reach the student.
        let g = distill_loss(s.as_tensor(), &t, &hard, temp, alpha).unwrap().backward().unwrap();
        let gs = g.get(s.as_tensor()).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(gs > 1e-3, "{gs}");
    }
}
