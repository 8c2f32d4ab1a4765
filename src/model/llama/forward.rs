//! The llama forward pass, as transformers' `LlamaForCausalLM`: token embeddings → N ×
//! (RMS norm → grouped-query self-attention with rotary positions → residual; RMS norm →
//! SwiGLU feed-forward → residual) → final RMS norm → logits through `lm_head` (or the
//! token-embedding matrix when tied). Only ops with a backward pass (shared/CANDLE.md).

use candle_core::Tensor;

use super::LlamaConfig;
use crate::error::{bail, Result};
use crate::model::causal::KvCache;
use crate::model::layers::{
    attention, attention_bias, causal_bias, embedding, linear, merge_heads, repeat_kv, rms_norm, rope,
    rope_tables, split_heads, swiglu,
};
use crate::model::{Params, Pass};

/// Final hidden states `[batch, len, hidden]` for token `ids` `[batch, len]` placed after
/// the positions already in `cache` (which grows by `len`; `None` for training). `mask`
/// `[batch, len]` (1 token, 0 padding) keeps padded keys out of attention; positions count
/// from 0 in every row, as transformers does without explicit position ids.
pub fn hidden(
    p: &Params,
    c: &LlamaConfig,
    ids: &Tensor,
    mask: Option<&Tensor>,
    mut cache: Option<&mut KvCache>,
    pass: &mut Pass,
) -> Result<Tensor> {
    let t = |name: &str| p.tensor(name, pass.train);
    let (_, len) = ids.dims2()?;
    let past = cache.as_ref().map_or(0, |c| c.len());
    if past + len > c.max_position_embeddings {
        bail!(
            "{} tokens exceed the model's context of {} positions; use block= / max_tokens= so that they fit",
            past + len,
            c.max_position_embeddings
        )
    }
    let mut x = embedding(ids, &t("model.embed_tokens.weight")?)?;
    let (dtype, device) = (x.dtype(), x.device().clone());
    let (heads, kv_heads) = (c.num_attention_heads, c.kv_heads());
    let (cos, sin) = rope_tables(past, len, c.head_size(), c.theta(), dtype, &device)?;
    let mut bias = causal_bias(len, past, dtype, &device)?;
    if let Some(mask) = mask {
        bias = bias.broadcast_add(&attention_bias(mask, dtype)?)?;
    }
    for i in 0..c.num_hidden_layers {
        let l = |name: &str| t(&format!("model.layers.{i}.{name}.weight"));
        // Self-attention: rotary queries and keys, keys/values shared by groups of heads.
        let h = rms_norm(&x, &l("input_layernorm")?, c.rms_norm_eps)?;
        let q = rope(&split_heads(&linear(&h, &l("self_attn.q_proj")?, None)?, heads)?, &cos, &sin)?;
        let mut k = rope(&split_heads(&linear(&h, &l("self_attn.k_proj")?, None)?, kv_heads)?, &cos, &sin)?;
        let mut v = split_heads(&linear(&h, &l("self_attn.v_proj")?, None)?, kv_heads)?;
        if let Some(cache) = cache.as_deref_mut() {
            (k, v) = cache.extend(i, k, v)?;
        }
        let rep = heads / kv_heads;
        let (k, v) = (repeat_kv(&k, rep)?.contiguous()?, repeat_kv(&v, rep)?.contiguous()?);
        let a = attention(&q, &k, &v, &bias, &mut pass.dropout, c.attention_dropout)?;
        x = (&x + linear(&merge_heads(&a)?, &l("self_attn.o_proj")?, None)?)?;
        // SwiGLU feed-forward.
        let h = rms_norm(&x, &l("post_attention_layernorm")?, c.rms_norm_eps)?;
        let gate = linear(&h, &l("mlp.gate_proj")?, None)?;
        let up = linear(&h, &l("mlp.up_proj")?, None)?;
        x = (&x + linear(&swiglu(&gate, &up)?, &l("mlp.down_proj")?, None)?)?;
    }
    rms_norm(&x, &t("model.norm.weight")?, c.rms_norm_eps)
}

/// Next-token logits `[batch, len, vocab]` of hidden states, through `lm_head` or, when the
/// head is tied, the token-embedding matrix.
pub fn logits(p: &Params, c: &LlamaConfig, hidden: &Tensor, pass: &Pass) -> Result<Tensor> {
    let head = if c.tie_word_embeddings { "model.embed_tokens.weight" } else { "lm_head.weight" };
    linear(hidden, &p.tensor(head, pass.train)?, None)
}
