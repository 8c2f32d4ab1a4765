//! Learning-rate schedules: a pure function from the step within a fit to a rate.

use serde::{Deserialize, Serialize};

/// How the rate changes over one `fit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// The base rate throughout.
    Constant,
    /// Linear decay from the base rate to `min_lr` at the end of the fit.
    Linear,
    /// Half-cosine decay from the base rate to `min_lr`.
    Cosine,
    /// Multiply by `gamma` every `step_size` epochs.
    Step,
}

impl ScheduleKind {
    /// The name used in commands.
    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Constant => "constant",
            ScheduleKind::Linear => "linear",
            ScheduleKind::Cosine => "cosine",
            ScheduleKind::Step => "step",
        }
    }

    /// The kind called `name`.
    pub fn from_name(name: &str) -> Option<ScheduleKind> {
        [ScheduleKind::Constant, ScheduleKind::Linear, ScheduleKind::Cosine, ScheduleKind::Step]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// A schedule with an optional linear warm-up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// The decay shape.
    pub kind: ScheduleKind,
    /// Warm-up: a number of steps when ≥ 1, a fraction of the fit's steps when < 1.
    pub warmup: f64,
    /// Final rate of linear and cosine decay.
    pub min_lr: f64,
    /// Epochs between step decays.
    pub step_size: usize,
    /// Step decay factor.
    pub gamma: f64,
}

impl Default for Schedule {
    fn default() -> Schedule {
        Schedule { kind: ScheduleKind::Constant, warmup: 0.0, min_lr: 0.0, step_size: 1, gamma: 0.1 }
    }
}

impl Schedule {
    /// Warm-up length in steps for a fit of `total` steps.
    pub fn warmup_steps(&self, total: usize) -> usize {
        if self.warmup >= 1.0 {
            self.warmup as usize
        } else {
            (self.warmup * total as f64).round() as usize
        }
    }

    /// The rate at `step` (0-based) of a fit of `total` steps with `per_epoch` steps per
    /// epoch, for base rate `base`.
    pub fn lr_at(&self, base: f64, step: usize, total: usize, per_epoch: usize) -> f64 {
        let warm = self.warmup_steps(total);
        if step < warm {
            return base * (step + 1) as f64 / warm as f64;
        }
        let span = total.saturating_sub(warm).max(1) as f64;
        let progress = ((step - warm) as f64 / span).clamp(0.0, 1.0);
        match self.kind {
            ScheduleKind::Constant => base,
            ScheduleKind::Linear => self.min_lr + (base - self.min_lr) * (1.0 - progress),
            ScheduleKind::Cosine => {
                self.min_lr + (base - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            ScheduleKind::Step => {
                let epoch = step / per_epoch.max(1);
                base * self.gamma.powi((epoch / self.step_size.max(1)) as i32)
            }
        }
    }

    /// One line in the language's own syntax.
    pub fn describe(&self) -> String {
        let mut s = format!("schedule={}", self.kind.name());
        if self.warmup > 0.0 {
            s += &format!(" warmup={}", self.warmup);
        }
        match self.kind {
            ScheduleKind::Linear | ScheduleKind::Cosine => s += &format!(" min_lr={}", self.min_lr),
            ScheduleKind::Step => s += &format!(" step_size={} gamma={}", self.step_size, self.gamma),
            ScheduleKind::Constant => {}
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let mut s = Schedule::default();
        assert_eq!(s.lr_at(0.1, 50, 100, 10), 0.1);
        s.kind = ScheduleKind::Linear;
        assert!((s.lr_at(1.0, 0, 100, 10) - 1.0).abs() < 1e-12);
        assert!((s.lr_at(1.0, 50, 100, 10) - 0.5).abs() < 1e-12);
        s.kind = ScheduleKind::Cosine;
        assert!((s.lr_at(1.0, 50, 100, 10) - 0.5).abs() < 1e-12);
        assert!(s.lr_at(1.0, 99, 100, 10) < 0.01);
        s.kind = ScheduleKind::Step;
        s.gamma = 0.5;
        s.step_size = 2;
        assert_eq!(s.lr_at(1.0, 19, 100, 10), 1.0);
        assert_eq!(s.lr_at(1.0, 20, 100, 10), 0.5);
    }

    #[test]
    fn warmup_ramps_then_decays() {
        let s = Schedule { kind: ScheduleKind::Linear, warmup: 0.1, ..Schedule::default() };
        assert_eq!(s.warmup_steps(100), 10);
        assert!((s.lr_at(1.0, 0, 100, 10) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(1.0, 9, 100, 10) - 1.0).abs() < 1e-12);
        assert!(s.lr_at(1.0, 10, 100, 10) <= 1.0);
        let s = Schedule { warmup: 5.0, ..Schedule::default() };
        assert_eq!(s.warmup_steps(1000), 5);
    }
}
