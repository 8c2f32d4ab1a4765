//! `tunelab bench`: throughput of tunelab's own training loop on the jobs of
//! `shared/bench/torch_baseline.py`, printed as JSON with the same keys.

use std::time::Instant;

use serde_json::json;

use crate::error::{bail, Result};
use crate::session::{Event, Session, Sink};

/// A sink that drops everything (benchmarks measure the loop, not the printing).
struct Quiet;

impl Sink for Quiet {
    fn emit(&mut self, _event: Event) {}
}

/// The teaching case as the PyTorch baseline runs it: y = 3x + 2 + 0.1·noise, 1000 points,
/// full-batch SGD at lr 0.01, `steps` updates through the session's own `fit`.
/// Returns `{"linreg_sgd_steps_per_s", "linreg_final_loss", …}`.
pub fn linreg(steps: usize, device: &str) -> Result<serde_json::Value> {
    let mut s = Session::new();
    let setup = format!(
        "device {device}; seed 0; data synthetic linear n=1000 w=3 b=2 noise=0.1 split=1/0; \
         load linear; optimizer sgd lr=0.01"
    );
    s.run(&setup, &mut Quiet)?;
    // Warm-up (allocations, first-call costs), then the timed run.
    s.run("fit epochs=5 batch=1000", &mut Quiet)?;
    let t = Instant::now();
    s.run(&format!("fit epochs={steps} batch=1000 log={steps}"), &mut Quiet)?;
    let secs = t.elapsed().as_secs_f64();
    let final_loss = s.history().steps.last().map_or(f64::NAN, |r| r.loss);
    Ok(json!({
        "device": device,
        "tunelab": env!("CARGO_PKG_VERSION"),
        "linreg_sgd_steps_per_s": (steps as f64 / secs).round(),
        "linreg_final_loss": final_loss,
    }))
}

/// Runs the named workload (`linreg`; BERT and GPT-2 workloads arrive with those models).
pub fn run(workload: &str, steps: usize, device: &str) -> Result<serde_json::Value> {
    match workload {
        "linreg" => linreg(steps, device),
        other => bail!("unknown benchmark '{other}': available: linreg"),
    }
}
