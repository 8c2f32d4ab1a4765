//! Llama parameters: names and shapes as transformers' `LlamaForCausalLM` state_dict has
//! them, reading a checkpoint, and the initialisation of a fresh model.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use rand::Rng;
use rand_distr::{Distribution, Normal};

use super::LlamaConfig;
use crate::error::{bail, Error, Result};
use crate::model::Params;

/// Every parameter in state_dict order: name, shape, and whether it starts at ones (the
/// norms) rather than normal noise.
fn layout(c: &LlamaConfig) -> Vec<(String, Vec<usize>, bool)> {
    let (h, i, d) = (c.hidden_size, c.intermediate_size, c.head_size());
    let (q, kv) = (c.num_attention_heads * d, c.kv_heads() * d);
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![c.vocab_size, h], false)];
    for l in 0..c.num_hidden_layers {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("self_attn.q_proj", [q, h]),
            ("self_attn.k_proj", [kv, h]),
            ("self_attn.v_proj", [kv, h]),
            ("self_attn.o_proj", [h, q]),
            ("mlp.gate_proj", [i, h]),
            ("mlp.up_proj", [i, h]),
            ("mlp.down_proj", [h, i]),
        ] {
            out.push((format!("{p}.{name}.weight"), shape.to_vec(), false));
        }
        out.push((format!("{p}.input_layernorm.weight"), vec![h], true));
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![h], true));
    }
    out.push(("model.norm.weight".into(), vec![h], true));
    if !c.tie_word_embeddings {
        out.push(("lm_head.weight".into(), vec![c.vocab_size, h], false));
    }
    out
}

/// The parameter names and shapes, in order.
pub fn names_and_shapes(c: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    layout(c).into_iter().map(|(n, s, _)| (n, s)).collect()
}

/// The parameters from checkpoint `tensors` (every one required, shapes checked, f32), or
/// all freshly initialised from `rng` when `tensors` is empty. A tied model ignores a stored
/// `lm_head.weight` (a copy of the embeddings); rotary caches (`rotary_emb.inv_freq`) are
/// recomputed, not read.
pub fn assemble(
    c: &LlamaConfig,
    mut tensors: HashMap<String, Tensor>,
    rng: &mut impl Rng,
    device: &Device,
    origin: &str,
) -> Result<Params> {
    let normal = Normal::new(0.0, c.initializer_range)
        .map_err(|e| Error::invalid(format!("initializer_range: {e}")))?;
    let loading = !tensors.is_empty();
    let mut named = Vec::new();
    for (name, shape, ones) in layout(c) {
        let t = match tensors.remove(&name) {
            Some(t) if t.dims() != shape.as_slice() => bail!(
                "'{name}' in {origin} has shape {:?} but the config implies {shape:?}; the weights and config do not match",
                t.dims()
            ),
            Some(t) => t.to_dtype(DType::F32)?.to_device(device)?,
            None if loading => bail!(
                "{origin} has no tensor '{name}': is it a llama checkpoint of this config? (first missing tensor)"
            ),
            None => {
                let n: usize = shape.iter().product();
                let values: Vec<f32> =
                    if ones { vec![1.0; n] } else { (0..n).map(|_| normal.sample(rng) as f32).collect() };
                Tensor::from_vec(values, shape, device)?
            }
        };
        named.push((name, t));
    }
    tensors.retain(|k, _| !k.ends_with("rotary_emb.inv_freq") && k != "lm_head.weight");
    if let Some(extra) = tensors.keys().min() {
        bail!(
            "{origin} has {} tensor(s) a llama model of this config does not use (e.g. '{extra}'); is it another architecture?",
            tensors.len()
        )
    }
    Params::new(named)
}
