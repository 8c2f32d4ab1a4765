//! Command handlers, one file per group of verbs. Each is an `impl Session` block.

mod adapter;
pub(crate) mod autosave;
mod data;
mod distill;
mod eval_generate;
pub(crate) mod export;
mod generate;
mod lora;
mod loss;
mod model;
mod prompt;
mod results;
mod setup;
mod show;
mod snapshots;
mod training;
mod visual;

/// Formats a number for tables: up to 6 significant digits, no trailing noise.
pub(crate) fn num(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let mag = x.abs().log10().floor() as i32;
    if !(-4..6).contains(&mag) {
        return format!("{x:.4e}");
    }
    let decimals = (5 - mag).clamp(0, 10) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Formats a signed change: `+0.0123` / `-0.5`.
pub(crate) fn signed(x: f64) -> String {
    if x >= 0.0 {
        format!("+{}", num(x))
    } else {
        num(x)
    }
}

/// `74498/22787714 (0.33%)`: a part of a parameter count and its share, with two
/// decimals below 1% so small LoRA fractions do not round to nothing.
pub(crate) fn share(part: usize, total: usize) -> String {
    let pct = 100.0 * part as f64 / total.max(1) as f64;
    if pct < 1.0 {
        format!("{part}/{total} ({pct:.2}%)")
    } else {
        format!("{part}/{total} ({pct:.1}%)")
    }
}

/// Human-readable byte count.
pub(crate) fn bytes(n: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(num(3.0), "3");
        assert_eq!(num(2.999871234), "2.99987");
        assert_eq!(num(0.0102345678), "0.0102346");
        assert_eq!(num(1e-7), "1.0000e-7");
        assert_eq!(signed(0.5), "+0.5");
        assert_eq!(bytes(2048), "2.0 KiB");
    }
}
