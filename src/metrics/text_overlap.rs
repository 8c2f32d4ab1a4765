//! Text-overlap metrics for generated text: corpus BLEU-4 (as sacrebleu computes it) and
//! ROUGE-L (as Google's `rouge-score` package computes it), on whitespace words or
//! characters. `eval generate` compares generations with references through these.
//!
//! Checked against the Python packages on fixed strings: `tests/text_overlap.rs`, with the
//! numbers made by `tests/fixtures/make_text_overlap_reference.py`.

use std::collections::HashMap;

/// How a text is split into the tokens the metrics count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tokenize {
    /// Runs of non-whitespace (sacrebleu's `tokenize="none"`); for pre-tokenized text.
    Whitespace,
    /// Every non-whitespace character a token (sacrebleu's `tokenize="char"`); for Chinese
    /// and other text without spaces.
    Chars,
    /// `rouge-score`'s default: lowercased, runs of ASCII letters and digits (everything
    /// else, non-ASCII included, separates or is dropped).
    Rouge,
}

/// The tokens of `text`.
pub fn tokens(text: &str, how: Tokenize) -> Vec<String> {
    match how {
        Tokenize::Whitespace => text.split_whitespace().map(str::to_string).collect(),
        Tokenize::Chars => text.chars().filter(|c| !c.is_whitespace()).map(String::from).collect(),
        Tokenize::Rouge => text
            .to_lowercase()
            .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
    }
}

/// A corpus BLEU score and its parts.
#[derive(Clone, Debug, PartialEq)]
pub struct Bleu {
    /// BLEU on sacrebleu's 0–100 scale.
    pub score: f64,
    /// Modified n-gram precisions for n = 1..4, in percent (smoothed where no n-gram matched).
    pub precisions: [f64; 4],
    /// The brevity penalty, `exp(1 − ref_len / hyp_len)` when the hypotheses are shorter.
    pub brevity_penalty: f64,
    /// Tokens in all hypotheses.
    pub hyp_len: usize,
    /// Tokens in all references.
    pub ref_len: usize,
}

fn ngram_counts(toks: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    if toks.len() >= n {
        for w in toks.windows(n) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

/// Corpus BLEU-4 of `hypotheses` against one reference each (Papineni et al.; sacrebleu's
/// `corpus_bleu` with its defaults): n-gram matches clipped by the reference counts and
/// summed over the corpus, the geometric mean of the four precisions, times the brevity
/// penalty. Smoothing is sacrebleu's default `exp` (Chen & Cherry's method 3, as NIST's
/// mteval): the k-th precision with no match counts as `1 / (2^k · total)`; an order with
/// no n-grams at all (hypotheses shorter than n), or no match of any order, makes BLEU 0. Extra hypotheses or
/// references beyond the shorter list are ignored.
pub fn corpus_bleu(hypotheses: &[&str], references: &[&str], how: Tokenize) -> Bleu {
    let (mut correct, mut total) = ([0usize; 4], [0usize; 4]);
    let (mut hyp_len, mut ref_len) = (0, 0);
    for (h, r) in hypotheses.iter().zip(references) {
        let (h, r) = (tokens(h, how), tokens(r, how));
        hyp_len += h.len();
        ref_len += r.len();
        for n in 1..=4 {
            let refs = ngram_counts(&r, n);
            for (gram, c) in ngram_counts(&h, n) {
                correct[n - 1] += c.min(refs.get(gram).copied().unwrap_or(0));
            }
            total[n - 1] += h.len().saturating_sub(n - 1);
        }
    }
    let mut precisions = [0.0; 4];
    let mut smooth = 1.0;
    for n in 0..4 {
        // No match at all: BLEU 0 and no precisions (sacrebleu's early stop).
        if total[n] == 0 || correct.iter().all(|c| *c == 0) {
            break;
        }
        precisions[n] = if correct[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total[n] as f64)
        } else {
            100.0 * correct[n] as f64 / total[n] as f64
        };
    }
    let brevity_penalty = if hyp_len == 0 {
        0.0
    } else if hyp_len < ref_len {
        (1.0 - ref_len as f64 / hyp_len as f64).exp()
    } else {
        1.0
    };
    let score = if precisions.contains(&0.0) {
        0.0
    } else {
        brevity_penalty * (precisions.iter().map(|p| p.ln()).sum::<f64>() / 4.0).exp()
    };
    Bleu { score, precisions, brevity_penalty, hyp_len, ref_len }
}

/// A ROUGE score: precision, recall and their harmonic mean.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rouge {
    /// Fraction of the candidate's tokens in the longest common subsequence.
    pub precision: f64,
    /// Fraction of the reference's tokens in it.
    pub recall: f64,
    /// `2·P·R / (P + R)` (0 when both are 0).
    pub fmeasure: f64,
}

/// Length of the longest common subsequence of two token lists.
fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diag = 0;
        for (j, y) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if x == y { diag + 1 } else { row[j + 1].max(row[j]) };
            diag = up;
        }
    }
    row[b.len()]
}

/// ROUGE-L of `candidate` against `reference` (Lin 2004, as `rouge_scorer.RougeScorer(
/// ["rougeL"]).score(reference, candidate)` without stemming): the longest common
/// subsequence over candidate length (precision) and reference length (recall). Either
/// text empty gives all zeros.
pub fn rouge_l(candidate: &str, reference: &str, how: Tokenize) -> Rouge {
    let (c, r) = (tokens(candidate, how), tokens(reference, how));
    if c.is_empty() || r.is_empty() {
        return Rouge { precision: 0.0, recall: 0.0, fmeasure: 0.0 };
    }
    let lcs = lcs_len(&c, &r) as f64;
    let (precision, recall) = (lcs / c.len() as f64, lcs / r.len() as f64);
    let fmeasure =
        if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    Rouge { precision, recall, fmeasure }
}

/// The mean ROUGE-L F-measure over candidate/reference pairs (how corpus ROUGE is usually
/// reported); 0 for no pairs.
pub fn mean_rouge_l(candidates: &[&str], references: &[&str], how: Tokenize) -> f64 {
    let n = candidates.len().min(references.len());
    if n == 0 {
        return 0.0;
    }
    candidates.iter().zip(references).map(|(c, r)| rouge_l(c, r, how).fmeasure).sum::<f64>() / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_text_scores_full_marks() {
        let t = "the cat sat on the mat today";
        assert!((corpus_bleu(&[t], &[t], Tokenize::Whitespace).score - 100.0).abs() < 1e-9);
        assert_eq!(rouge_l(t, t, Tokenize::Whitespace).fmeasure, 1.0);
        assert_eq!(
            lcs_len(&tokens("a b c d", Tokenize::Whitespace), &tokens("a c d b", Tokenize::Whitespace)),
            3
        );
        assert_eq!(tokens("Hello, World-42!", Tokenize::Rouge), ["hello", "world", "42"]);
        assert_eq!(tokens("床前 明月光", Tokenize::Chars).len(), 5);
    }
}
