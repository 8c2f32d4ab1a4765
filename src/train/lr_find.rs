//! The learning-rate range test (Leslie Smith's, as fastai's `lr_find`): train for a few
//! steps while the rate grows exponentially, watch the smoothed loss, stop when it blows
//! up. The caller restores the weights afterwards.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::{train_step, Optimizer, StepConfig, StepResult};
use crate::data::{Dataset, Split};
use crate::error::{bail, Result};
use crate::model::layers::step_seed;
use crate::model::Model;

/// The losses seen at each rate, and the suggestions read off them.
#[derive(Clone, Debug)]
pub struct RangeTest {
    /// (learning rate, raw loss, smoothed loss) per step.
    pub points: Vec<(f64, f64, f64)>,
    /// The rate where the smoothed loss falls fastest (per log-unit of rate).
    pub steepest: f64,
    /// The rate with the lowest smoothed loss.
    pub minimum: f64,
}

/// Runs the range test from `start` to `end` over at most `steps` updates of `batch` rows.
/// Stops early when the smoothed loss exceeds 4× its best, or turns non-finite.
#[allow(clippy::too_many_arguments)]
pub fn lr_range_test(
    model: &dyn Model,
    optimizer: &mut Optimizer,
    data: &Dataset,
    batch: usize,
    (start, end, steps): (f64, f64, usize),
    seed: u64,
    cfg: &StepConfig,
    cancel: &std::sync::atomic::AtomicBool,
) -> Result<RangeTest> {
    let mut rows = data.split(Split::Train).to_vec();
    rows.shuffle(&mut StdRng::seed_from_u64(seed));
    let batches: Vec<&[u32]> = rows.chunks(batch.max(1)).collect();
    let (beta, mut avg, mut best) = (0.9, 0.0, f64::INFINITY);
    let mut points = Vec::new();
    for i in 0..steps.max(2) {
        if cancel.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        let lr = start * (end / start).powf(i as f64 / (steps.max(2) - 1) as f64);
        let b = data.batch(batches[i % batches.len()])?;
        let loss = match train_step(model, optimizer, &[b], lr, step_seed(seed, i as u64), cfg)? {
            StepResult::Applied(u) => u.loss,
            StepResult::NonFinite(..) => break,
            StepResult::Overflow(_) => continue,
        };
        avg = beta * avg + (1.0 - beta) * loss;
        let smoothed = avg / (1.0 - beta.powi(i as i32 + 1));
        points.push((lr, loss, smoothed));
        best = best.min(smoothed);
        if smoothed > 4.0 * best && i > 10 {
            break;
        }
    }
    if points.len() < 5 {
        bail!(
            "the range test stopped after {} steps: the loss diverged at once; try a lower start=",
            points.len()
        )
    }
    // Steepest descent of the smoothed loss against log(lr), measured over a window of a few
    // steps (a single step's slope is mostly noise), between the noisy first steps and the
    // lowest point (after it the loss only climbs).
    let lowest = points.iter().enumerate().min_by(|a, b| a.1 .2.total_cmp(&b.1 .2)).map_or(0, |(i, _)| i);
    let skip = (points.len() / 10).max(1);
    let span = (points.len() / 20).max(2);
    let mut steepest = (f64::INFINITY, points[lowest.min(skip)].0);
    for i in skip..lowest.saturating_sub(span) {
        let (a, b) = (points[i], points[i + span]);
        let slope = (b.2 - a.2) / (b.0.ln() - a.0.ln());
        if slope < steepest.0 {
            steepest = (slope, (a.0 * b.0).sqrt());
        }
    }
    let minimum = points.iter().min_by(|a, b| a.2.total_cmp(&b.2)).map_or(start, |p| p.0);
    Ok(RangeTest { points, steepest: steepest.1, minimum })
}
