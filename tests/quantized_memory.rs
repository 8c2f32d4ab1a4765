//! The peak memory of a LoRA training step on a quantized base (`lora … quantize=q8_0`)
//! against the same step on the f32 base, counted by this test binary's allocator.
//!
//! A file of its own: the counting allocator sees every allocation of the process, so no
//! other test may run beside this one.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{ok, render};
use tunelab::Session;

/// The system allocator, counting the bytes live now and the most live since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now =
                    LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: f64 = 1024.0 * 1024.0;

/// A random BERT 512 wide with 4 layers (12.6 M values in its linear layers, all adapted),
/// LoRA r=8 on every linear layer, one epoch of 5 steps. Returns the bytes live before the
/// fit, the peak during it, and the first and last losses.
fn lora_step_memory(dir: &std::path::Path, quantize: &str) -> (usize, usize, f64, f64) {
    let mut s = Session::new();
    let folder = env!("CARGO_MANIFEST_DIR");
    ok(
        &mut s,
        &format!(
            "seed 3; load bert config={} vocab={folder}/tutorials/07-remedies/vocab.txt task=classify",
            dir.join("config.json").display()
        ),
    );
    ok(
        &mut s,
        &format!("data {folder}/tutorials/07-remedies/words-teacher.jsonl limit=40 split=1/0 max_len=16"),
    );
    let out = ok(&mut s, &format!("lora r=8 alpha=16 target=query,key,value,dense quantize={quantize}"));
    println!("{}", render(&out));
    ok(&mut s, "optimizer adamw lr=1e-3");
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    ok(&mut s, "fit epochs=1 batch=8 log=1");
    let peak = PEAK.load(Ordering::Relaxed);
    let steps = &s.history().steps;
    (before, peak, steps[0].loss, steps[steps.len() - 1].loss)
}

/// The quantized base trains, and the peak of its step is below the f32 base's: the f32
/// base holds 4 bytes per base value, q8_0 about 1.06, and the one-op merge
/// (`merged_quantized`) keeps the dequantized copy alive only while it runs.
#[test]
fn a_quantized_base_peaks_below_the_f32_base_in_a_training_step() {
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "vocab_size": 32, "hidden_size": 512, "num_hidden_layers": 4, "num_attention_heads": 8,
        "intermediate_size": 2048, "max_position_embeddings": 64, "type_vocab_size": 2,
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let (f_before, f_peak, f_first, f_last) = lora_step_memory(dir.path(), "none");
    let (q_before, q_peak, q_first, q_last) = lora_step_memory(dir.path(), "q8_0");
    println!(
        "f32 base: {:.1} MiB live before the fit, peak {:.1} MiB, loss {f_first:.4} → {f_last:.4}\n\
         q8_0 base: {:.1} MiB live before the fit, peak {:.1} MiB, loss {q_first:.4} → {q_last:.4}\n\
         peak ratio q8_0 / f32 = {:.3}",
        f_before as f64 / MIB,
        f_peak as f64 / MIB,
        q_before as f64 / MIB,
        q_peak as f64 / MIB,
        q_peak as f64 / f_peak as f64
    );
    assert!(q_before < f_before, "at rest: {q_before} vs {f_before} bytes");
    assert!(
        (q_peak as f64) < 0.75 * f_peak as f64,
        "the quantized step should peak well below the f32 one: {q_peak} vs {f_peak} bytes"
    );
    assert!(q_last.is_finite() && q_last != q_first, "the quantized path trains: {q_first} → {q_last}");
}
