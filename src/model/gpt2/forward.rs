//! The GPT-2 forward pass, as in the original: token + position embeddings → N × (layer
//! norm → causal self-attention → residual; layer norm → MLP → residual) → final layer
//! norm → logits through the (tied) token-embedding matrix.

use candle_core::Tensor;

use super::Gpt2Config;
use crate::error::{bail, Result};
use crate::model::causal::{causal_attention, KvCache};
use crate::model::kernels;
use crate::model::layers::{conv1d, conv1d_dropout, embedding, layer_norm, linear, merge_heads, split_heads};
use crate::model::{Params, Pass};

/// `act(x · w + b)` (GPT-2's `Conv1D` layout); with a GELU, one fused node
/// (`kernels::conv1d_gelu`).
fn dense_act(x: &Tensor, w: &Tensor, b: &Tensor, name: &str) -> Result<Tensor> {
    match name {
        "gelu" => kernels::conv1d_gelu(x, w, b, false),
        "relu" => Ok(conv1d(x, w, b)?.relu()?),
        // gelu_new / gelu_pytorch_tanh: the tanh approximation.
        _ => kernels::conv1d_gelu(x, w, b, true),
    }
}

/// Final hidden states `[batch, len, n_embd]` for token `ids` `[batch, len]` placed after
/// the positions already in `cache` (which grows by `len`; pass `None` for training).
pub fn hidden(
    p: &Params,
    c: &Gpt2Config,
    ids: &Tensor,
    mut cache: Option<&mut KvCache>,
    pass: &mut Pass,
) -> Result<Tensor> {
    let t = |name: &str| p.tensor(name, pass.train);
    let (_, len) = ids.dims2()?;
    let past = cache.as_ref().map_or(0, |c| c.len());
    if past + len > c.n_positions {
        bail!(
            "{} tokens exceed GPT-2's context of {} positions; use block= / max_tokens= so that they fit",
            past + len,
            c.n_positions
        )
    }
    let x = embedding(ids, &t("transformer.wte.weight")?)?;
    let x = x.broadcast_add(&t("transformer.wpe.weight")?.narrow(0, past, len)?)?;
    let mut x = pass.dropout.apply(&x, c.embd_pdrop)?;
    for i in 0..c.n_layer {
        let l = |name: &str| t(&format!("transformer.h.{i}.{name}"));
        let ln = |x: &Tensor, n: &str| {
            layer_norm(x, &l(&format!("{n}.weight"))?, &l(&format!("{n}.bias"))?, c.layer_norm_epsilon)
        };
        // Causal self-attention: one projection to queries, keys and values.
        let qkv = conv1d(&ln(&x, "ln_1")?, &l("attn.c_attn.weight")?, &l("attn.c_attn.bias")?)?;
        let e = c.n_embd;
        let heads = |j: usize| split_heads(&qkv.narrow(2, j * e, e)?, c.n_head);
        let (q, mut k, mut v) = (heads(0)?, heads(1)?, heads(2)?);
        if let Some(cache) = cache.as_deref_mut() {
            (k, v) = cache.extend(i, k, v)?;
        }
        let a = merge_heads(&causal_attention(&q, &k, &v, &mut pass.dropout, c.attn_pdrop)?)?;
        let a = conv1d_dropout(
            &a,
            &l("attn.c_proj.weight")?,
            &l("attn.c_proj.bias")?,
            &mut pass.dropout,
            c.resid_pdrop,
        )?;
        x = (&x + a)?;
        // Feed-forward.
        let h = dense_act(
            &ln(&x, "ln_2")?,
            &l("mlp.c_fc.weight")?,
            &l("mlp.c_fc.bias")?,
            &c.activation_function,
        )?;
        let m = conv1d_dropout(
            &h,
            &l("mlp.c_proj.weight")?,
            &l("mlp.c_proj.bias")?,
            &mut pass.dropout,
            c.resid_pdrop,
        )?;
        x = (&x + m)?;
    }
    layer_norm(&x, &t("transformer.ln_f.weight")?, &t("transformer.ln_f.bias")?, c.layer_norm_epsilon)
}

/// Next-token logits `[batch, len, vocab]` of hidden states: the language-model head shares
/// the token-embedding matrix.
pub fn logits(p: &Params, hidden: &Tensor, pass: &Pass) -> Result<Tensor> {
    linear(hidden, &p.tensor("transformer.wte.weight", pass.train)?, None)
}
