//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use tunelab::session::Table;
use tunelab::{Event, Session};

/// Runs `src` on `s`, returning the events and whether it succeeded.
pub fn run(s: &mut Session, src: &str) -> (Vec<Event>, bool) {
    let mut out = Vec::new();
    let ok = s.run(src, &mut out).is_ok();
    (out, ok)
}

/// Runs `src` and panics (with the rendered output) if it fails.
pub fn ok(s: &mut Session, src: &str) -> Vec<Event> {
    let (out, ok) = run(s, src);
    assert!(ok, "`{src}` failed:\n{}", render(&out));
    out
}

/// Runs `src`, expects it to fail, and returns the error message.
pub fn err(s: &mut Session, src: &str) -> String {
    let (out, ok) = run(s, src);
    assert!(!ok, "`{src}` should have failed:\n{}", render(&out));
    out.iter()
        .find_map(|e| match e {
            Event::Error(d) => Some(d.message.clone()),
            _ => None,
        })
        .expect("a failed run emits an Error event")
}

/// Plain-text rendering of events (what a terminal shows, minus colours and plots).
pub fn render(events: &[Event]) -> String {
    let mut s = String::new();
    for e in events {
        match e {
            Event::Echo(_) | Event::Progress(_) => continue,
            Event::Text(t) => s += t,
            Event::Stream(piece) => {
                s += piece;
                continue;
            }
            Event::Table(t) => s += t.to_text().trim_end(),
            Event::Image(i) => s += &format!("[image {}]", i.figure.name),
            Event::Warning(w) => s += &format!("warning: {w}"),
            Event::Error(d) => s += &format!("error: {}", d.message),
        }
        s.push('\n');
    }
    s
}

/// The tables among the events.
pub fn tables(events: &[Event]) -> Vec<&Table> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Table(t) => Some(t),
            _ => None,
        })
        .collect()
}

/// The cell in the row whose first cell is `row`, at column `col`, as a number.
pub fn cell(t: &Table, row: &str, col: usize) -> f64 {
    let r = t.rows.iter().find(|r| r[0] == row).unwrap_or_else(|| panic!("no row {row} in\n{}", t.to_text()));
    r[col].parse().unwrap_or_else(|_| panic!("cell {row}/{col} = {} is not a number", r[col]))
}

/// The weights as (name, values).
pub fn weights(s: &Session) -> Vec<(String, Vec<f32>)> {
    s.weights().expect("a model is loaded")
}

/// Where scripts/fetch_assets.py put a real asset (scripts/test.sh runs it first).
pub fn asset(name: &str) -> PathBuf {
    let root = std::env::var("TUNELAB_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/tunelab/assets"));
    let p = root.join(name);
    assert!(
        p.join(".done").exists(),
        "asset '{name}' missing at {}: run scripts/fetch_assets.py",
        p.display()
    );
    p
}

/// Checks autograd against central finite differences (ε = 1e-5, f64 weights) on the
/// largest-gradient coordinate of every parameter: `loss` evaluates the model without a
/// gradient graph, `grads` are the autograd gradients of the same loss. Returns the names of
/// parameters that got no gradient; panics, naming the parameter, on a relative error above
/// 1e-4 (absolute 1e-9 for gradients below 1e-5, the difference quotient's own noise).
pub fn check_gradients(
    params: &tunelab::model::Params,
    grads: &candle_core::backprop::GradStore,
    loss: impl Fn() -> f64,
    what: &str,
) -> Vec<String> {
    use candle_core::{Device, Tensor};
    let mut missing = Vec::new();
    for p in params.iter() {
        let Some(g) = grads.get(p.var.as_tensor()) else {
            missing.push(p.name.clone());
            continue;
        };
        let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let v = p.var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let i = (0..g.len()).max_by(|a, b| g[*a].abs().total_cmp(&g[*b].abs())).unwrap();
        let eps = 1e-5;
        let set = |x: f64| {
            let mut w = v.clone();
            w[i] = x;
            p.var.set(&Tensor::from_vec(w, p.var.shape(), &Device::Cpu).unwrap()).unwrap();
        };
        set(v[i] + eps);
        let up = loss();
        set(v[i] - eps);
        let down = loss();
        set(v[i]);
        let numeric = (up - down) / (2.0 * eps);
        // Below 1e-5 the error is taken as absolute (1e-4 · 1e-5 = 1e-9): the difference
        // quotient itself is only good to about that much, since a loss summed over
        // thousands of f64 terms carries ~1e-14 of rounding, divided by 2ε = 2e-5. (A
        // near-zero gradient such as a query bias's, ~2e-6, otherwise fails on that noise
        // alone whenever the kernels round differently from the composite ops.)
        let err = (numeric - g[i]).abs() / numeric.abs().max(g[i].abs()).max(1e-5);
        assert!(err < 1e-4, "{what} {}[{i}]: autograd {} vs finite difference {numeric}", p.name, g[i]);
    }
    missing
}

/// A tiny random BERT classifier on a two-label text set of `rows` lines per label written
/// to `dir` (a WordPiece vocabulary of whole words, so no downloaded asset): the commands
/// `seed 9; data …; load bert config=tiny …; optimizer adamw lr=1e-3 weight_decay=0.01`.
pub fn tiny_bert_task(dir: &std::path::Path, rows: usize) -> String {
    let words = [
        "good", "great", "fine", "love", "nice", "bad", "awful", "poor", "hate", "dull", "the", "film",
        "was", "very", "a", "plot", "and", "acting",
    ];
    let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    let vocab: Vec<&str> = specials.iter().chain(&words).copied().collect();
    std::fs::write(dir.join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
    let line = |i: usize, mood: &[&str]| {
        format!("the film was {} and {} {}", mood[i % 5], mood[(i / 5) % 5], ["plot", "acting", "a"][i % 3])
    };
    let pos: Vec<String> = (0..rows).map(|i| line(i, &words[..5])).collect();
    let neg: Vec<String> = (0..rows).map(|i| line(i, &words[5..10])).collect();
    std::fs::write(dir.join("pos.txt"), pos.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("neg.txt"), neg.join("\n") + "\n").unwrap();
    format!(
        "seed 9; data {} {} max_len=16; load bert config=tiny vocab={} task=classify; \
         optimizer adamw lr=1e-3 weight_decay=0.01",
        dir.join("pos.txt").display(),
        dir.join("neg.txt").display(),
        dir.join("vocab.txt").display()
    )
}
