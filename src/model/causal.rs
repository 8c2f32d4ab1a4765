//! What the causal language models (GPT-2, llama) share: the [`CausalLm`] interface that
//! generation uses, the key/value cache, causal self-attention over it, the next-token
//! loss, and sampling (temperature, top-k, top-p) with a seeded generator.
//!
//! Training reads a causal LM through [`Model`](super::Model) like any model: a
//! [`Batch::Text`](crate::data::Batch) of token blocks whose targets are the ids themselves,
//! shifted by one. Generation runs without a gradient graph, one token at a time, on a
//! [`KvCache`] so each step costs one position.

use candle_core::{DType, Device, Tensor, D};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::layers::{causal_bias, repeat_kv, Dropout};
use crate::error::{bail, Result};

/// Keys and values of every layer for the positions seen so far (generation only).
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// An empty cache for a model of `layers` layers.
    pub fn new(layers: usize) -> KvCache {
        KvCache { layers: vec![None; layers] }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.layers.first().and_then(|l| l.as_ref()).map_or(0, |(k, _)| k.dim(2).unwrap_or(0))
    }

    /// Whether it holds nothing yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends layer `i`'s new keys and values `[batch, kv_heads, len, head_dim]` and returns
    /// all of them (cached + new).
    pub fn extend(&mut self, i: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = match self.layers[i].take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        self.layers[i] = Some((k.clone(), v.clone()));
        Ok((k, v))
    }
}

/// Causal self-attention of queries `[b, heads, t, d]` over keys and values
/// `[b, kv_heads, past + t, d]` (grouped-query when `kv_heads < heads`); the queries sit at
/// positions `past..past + t`. Attention probabilities pass through `dropout`.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, dropout: &mut Dropout, p: f64) -> Result<Tensor> {
    let (heads, t) = (q.dim(1)?, q.dim(2)?);
    let (kv_heads, total) = (k.dim(1)?, k.dim(2)?);
    let rep = heads / kv_heads;
    let (k, v) = (repeat_kv(k, rep)?, repeat_kv(v, rep)?);
    let bias = causal_bias(t, total - t, q.dtype(), q.device())?;
    super::layers::attention(q, &k.contiguous()?, &v.contiguous()?, &bias, dropout, p)
}

/// Mean next-token cross-entropy of `logits` `[b, len, vocab]` for token `ids` `[b, len]`:
/// position `i` predicts token `i + 1`, wherever both are real tokens (`mask` 1).
pub fn lm_loss(logits: &Tensor, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (b, l, v) = logits.dims3()?;
    let (rows, targets) = next_token_targets(ids, mask)?;
    if rows.is_empty() {
        bail!("the batch has no token to predict (blocks of one token); use a larger block=")
    }
    let n = rows.len();
    let device = logits.device();
    let picked = logits.reshape((b * l, v))?.index_select(&Tensor::from_vec(rows, n, device)?, 0)?;
    let targets = Tensor::from_vec(targets, n, device)?;
    super::kernels::cross_entropy(&picked.to_dtype(promote(picked.dtype()))?, &targets)
}

/// The flat rows of `[b · len]` positions that predict a next token, and those tokens.
pub fn next_token_targets(ids: &Tensor, mask: &Tensor) -> Result<(Vec<u32>, Vec<u32>)> {
    let (ids, mask) = (ids.to_vec2::<u32>()?, mask.to_vec2::<u32>()?);
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for (r, (ids, mask)) in ids.iter().zip(&mask).enumerate() {
        for i in 0..ids.len().saturating_sub(1) {
            if mask[i] == 1 && mask[i + 1] == 1 {
                rows.push((r * ids.len() + i) as u32);
                targets.push(ids[i + 1]);
            }
        }
    }
    Ok((rows, targets))
}

/// Number of next-token predictions in a batch (for token-weighted perplexity).
pub fn predicted_tokens(mask: &Tensor) -> Result<usize> {
    Ok(mask.to_vec2::<u32>()?.iter().map(|m| m.windows(2).filter(|w| w[0] == 1 && w[1] == 1).count()).sum())
}

fn promote(dtype: DType) -> DType {
    if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// A model that generates text token by token.
pub trait CausalLm {
    /// Longest sequence (prompt and generated tokens) the model takes.
    fn context_len(&self) -> usize;

    /// Tokens that end a generation (end-of-text).
    fn stop_ids(&self) -> Vec<u32>;

    /// Number of layers (the size of a [`KvCache`]).
    fn cache_layers(&self) -> usize;

    /// The device its weights are on.
    fn device(&self) -> Device;

    /// Logits `[batch, len, vocab]` for `ids` `[batch, len]` at the positions after those in
    /// `cache`, which is extended with their keys and values. Builds no gradient graph.
    fn logits_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor>;

    /// Logits of the training forward pass for `ids` from position 0 (no cache, no graph).
    fn logits(&self, ids: &Tensor) -> Result<Tensor>;
}

/// How the next token is chosen.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    /// Always the most likely token (ignores the rest).
    pub greedy: bool,
    /// Logits are divided by this (> 0); below 1 sharpens, above 1 flattens.
    pub temperature: f64,
    /// Keep only the `k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the fewest most likely tokens whose probabilities add up to `top_p` (1: all).
    pub top_p: f64,
    /// The end-of-text token cannot come before this many new tokens (transformers'
    /// `min_new_tokens`; 0: it can come first).
    pub min_tokens: usize,
}

impl Sampling {
    /// Greedy decoding.
    pub fn greedy() -> Sampling {
        Sampling { greedy: true, temperature: 1.0, top_k: 0, top_p: 1.0, min_tokens: 0 }
    }

    /// Checks the settings, naming the bad one and the fix.
    pub fn validate(&self) -> Result<()> {
        if self.greedy {
            return Ok(());
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            bail!(
                "temperature={} cannot sample: it must be above 0; for the most likely token at every step use greedy=true",
                self.temperature
            )
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            bail!("top_p={} is not a probability mass: use a number in (0, 1], e.g. top_p=0.95", self.top_p)
        }
        Ok(())
    }

    /// The next token for `logits` (one row), drawing from `rng`.
    pub fn pick(&self, logits: &[f32], rng: &mut impl Rng) -> u32 {
        let argmax =
            || logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32);
        if self.greedy {
            return argmax();
        }
        // Temperature, then top-k, then top-p (the order of transformers' warpers).
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        if self.top_k > 0 {
            order.truncate(self.top_k);
        }
        let best = logits[order[0]] as f64 / self.temperature;
        let mut probs: Vec<f64> =
            order.iter().map(|&i| (logits[i] as f64 / self.temperature - best).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if self.top_p < 1.0 {
            let mut cum = 0.0;
            let keep = probs
                .iter()
                .position(|p| {
                    cum += p;
                    cum >= self.top_p
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
            order.truncate(keep);
            let total: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= total);
        }
        let mut u: f64 = rng.random();
        for (p, &i) in probs.iter().zip(&order) {
            if u < *p {
                return i as u32;
            }
            u -= p;
        }
        order[probs.len() - 1] as u32
    }
}

/// Generates up to `max_tokens` tokens after `prompt`, one at a time: with the KV cache
/// (`cached`) each step runs one position; without it each step reruns the whole sequence
/// through the training forward pass (the reference the cache is tested against). Sampling
/// draws from a generator seeded by `seed`. `on_token` sees each new token and returns
/// `false` to stop early (Ctrl-C). Stops after an end-of-text token (included), which
/// cannot come before `sampling.min_tokens` new tokens.
pub fn generate(
    lm: &dyn CausalLm,
    prompt: &[u32],
    max_tokens: usize,
    sampling: &Sampling,
    seed: u64,
    cached: bool,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<Vec<u32>> {
    sampling.validate()?;
    if prompt.is_empty() {
        bail!("the prompt is empty: give some text to continue, e.g. `generate \"Once upon a time\"`")
    }
    if prompt.len() >= lm.context_len() {
        bail!(
            "the prompt has {} tokens but the model's context holds {}; shorten the prompt",
            prompt.len(),
            lm.context_len()
        )
    }
    let device = lm.device();
    let mut rng = StdRng::seed_from_u64(seed);
    let stop = lm.stop_ids();
    let mut cache = KvCache::new(lm.cache_layers());
    let mut seq = prompt.to_vec();
    let mut out = Vec::new();
    let room = lm.context_len() - prompt.len();
    let mut next_input = prompt.to_vec();
    for _ in 0..max_tokens.min(room) {
        let logits = if cached {
            let ids = Tensor::from_vec(next_input.clone(), (1, next_input.len()), &device)?;
            lm.logits_cached(&ids, &mut cache)?
        } else {
            let ids = Tensor::from_vec(seq.clone(), (1, seq.len()), &device)?;
            lm.logits(&ids)?
        };
        let last = logits.dim(1)? - 1;
        let mut row = logits.narrow(1, last, 1)?.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        if out.len() < sampling.min_tokens {
            for &id in &stop {
                if let Some(l) = row.get_mut(id as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        let token = sampling.pick(&row, &mut rng);
        seq.push(token);
        out.push(token);
        next_input = vec![token];
        if !on_token(token) || stop.contains(&token) {
            break;
        }
    }
    Ok(out)
}

/// The largest element of each row of `x` over the last dimension (for tests and reports).
pub fn argmax_last(x: &Tensor) -> Result<Vec<u32>> {
    Ok(x.argmax(D::Minus1)?.flatten_all()?.to_vec1::<u32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_filters_as_transformers_does() {
        let logits = [2.0f32, 1.0, 0.5, -1.0, 3.0];
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(Sampling::greedy().pick(&logits, &mut rng), 4);
        let top1 = Sampling { greedy: false, temperature: 0.7, top_k: 1, top_p: 1.0, min_tokens: 0 };
        assert!((0..20).all(|_| top1.pick(&logits, &mut rng) == 4));
        let top2 = Sampling { greedy: false, temperature: 1.0, top_k: 2, top_p: 1.0, min_tokens: 0 };
        let seen: std::collections::BTreeSet<u32> = (0..200).map(|_| top2.pick(&logits, &mut rng)).collect();
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), [0, 4]);
        // p(3.0) ≈ 0.61 < 0.7, so top_p=0.7 keeps the two best.
        let nucleus = Sampling { greedy: false, temperature: 1.0, top_k: 0, top_p: 0.7, min_tokens: 0 };
        let seen: std::collections::BTreeSet<u32> =
            (0..200).map(|_| nucleus.pick(&logits, &mut rng)).collect();
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), [0, 4]);
        let bad = Sampling { greedy: false, temperature: 0.0, top_k: 0, top_p: 1.0, min_tokens: 0 };
        assert!(bad.validate().unwrap_err().to_string().contains("greedy=true"));
        let bad = Sampling { greedy: false, temperature: 1.0, top_k: 0, top_p: 1.5, min_tokens: 0 };
        assert!(bad.validate().unwrap_err().to_string().contains("top_p=1.5"));
    }

    #[test]
    fn next_token_targets_skip_padding() {
        let ids = Tensor::new(&[[5u32, 6, 7], [8, 9, 0]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1u32, 1, 1], [1, 1, 0]], &Device::Cpu).unwrap();
        let (rows, targets) = next_token_targets(&ids, &mask).unwrap();
        assert_eq!(rows, [0, 1, 3]);
        assert_eq!(targets, [6, 7, 9]);
        assert_eq!(predicted_tokens(&mask).unwrap(), 3);
    }
}
