//! The BERT forward pass, in the order of the original: embeddings → N × (self-attention →
//! add & norm → feed-forward → add & norm) → task head.

use candle_core::{DType, Tensor, D};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{BertConfig, Flavour};
use crate::data::TextTokenizer;
use crate::error::{bail, Result};
use crate::model::layers::{
    add_layer_norm, attention, attention_bias, embedding, layer_norm, linear, linear_dropout, merge_heads,
    split_heads,
};
use crate::model::{kernels, Params, Pass};

/// `act(x · wᵀ + b)`: with a GELU, one fused node (`kernels::linear_gelu`).
fn dense_act(x: &Tensor, w: &Tensor, b: &Tensor, name: &str) -> Result<Tensor> {
    match name {
        "gelu" => kernels::linear_gelu(x, w, b, false),
        "gelu_new" | "gelu_pytorch_tanh" => kernels::linear_gelu(x, w, b, true),
        _ => act(&linear(x, w, Some(b))?, name),
    }
}

fn act(x: &Tensor, name: &str) -> Result<Tensor> {
    Ok(match name {
        "gelu" => x.gelu_erf()?,
        "gelu_new" | "gelu_pytorch_tanh" => x.gelu()?,
        "relu" => x.relu()?,
        _ => x.silu()?,
    })
}

/// Hidden states `[batch, len, hidden]` of token `ids` with attention `mask` (1 = token).
pub fn encode(p: &Params, c: &BertConfig, ids: &Tensor, mask: &Tensor, pass: &mut Pass) -> Result<Tensor> {
    let t = |name: &str| p.tensor(&c.flavour.name(name), pass.train);
    let (batch, len) = ids.dims2()?;
    // Prompt tuning: virtual tokens before every sequence, attended to like tokens.
    let prompt = p.prompt_embeddings(pass.train)?;
    let virtual_tokens = prompt.as_ref().map_or(0, |t| t.dim(0).unwrap_or(0));
    let len = len + virtual_tokens;
    let first = c.flavour.first_position(c);
    let positions_left = c.max_position_embeddings.saturating_sub(first);
    if len > positions_left {
        bail!(
            "sequences of {len} tokens (with {virtual_tokens} virtual) exceed the model's {positions_left} positions; use max_len ≤ {}",
            positions_left.saturating_sub(virtual_tokens)
        )
    }
    // Embeddings: token + position (+ segment 0 where the flavour has segments), then norm
    // and dropout. RoBERTa's positions start after its padding index; real tokens come first
    // in every row, so they get the same ids transformers gives them.
    let mut words = embedding(ids, &t("bert.embeddings.word_embeddings.weight")?)?;
    let mut mask = mask.clone();
    if let Some(prompt) = prompt {
        let hidden = prompt.dim(1)?;
        let prompt =
            prompt.unsqueeze(0)?.broadcast_as((batch, virtual_tokens, hidden))?.to_dtype(words.dtype())?;
        words = Tensor::cat(&[&prompt, &words], 1)?;
        let ones = Tensor::ones((batch, virtual_tokens), mask.dtype(), mask.device())?;
        mask = Tensor::cat(&[&ones, &mask], 1)?;
    }
    let positions = t("bert.embeddings.position_embeddings.weight")?.narrow(0, first, len)?;
    let mut x = words.broadcast_add(&positions)?;
    if c.flavour.has_segments() {
        let segment = t("bert.embeddings.token_type_embeddings.weight")?.narrow(0, 0, 1)?;
        x = x.broadcast_add(&segment)?;
    }
    let x = layer_norm(
        &x,
        &t("bert.embeddings.LayerNorm.weight")?,
        &t("bert.embeddings.LayerNorm.bias")?,
        c.layer_norm_eps,
    )?;
    let mut x = pass.dropout.apply(&x, c.hidden_dropout_prob)?;
    let bias = attention_bias(&mask, x.dtype())?;
    for i in 0..c.num_hidden_layers {
        let l = |name: &str| t(&format!("bert.encoder.layer.{i}.{name}"));
        // Self-attention.
        let proj = |name: &str| -> Result<Tensor> {
            let y = linear(
                &x,
                &l(&format!("attention.self.{name}.weight"))?,
                Some(&l(&format!("attention.self.{name}.bias"))?),
            )?;
            split_heads(&y, c.num_attention_heads)
        };
        let (q, k, v) = (proj("query")?, proj("key")?, proj("value")?);
        let ctx =
            merge_heads(&attention(&q, &k, &v, &bias, &mut pass.dropout, c.attention_probs_dropout_prob)?)?;
        let a = linear_dropout(
            &ctx,
            &l("attention.output.dense.weight")?,
            &l("attention.output.dense.bias")?,
            &mut pass.dropout,
            c.hidden_dropout_prob,
        )?;
        let a =
            p.adapt(&c.flavour.name(&format!("bert.encoder.layer.{i}.attention.output")), &a, pass.train)?;
        x = add_layer_norm(
            &a,
            &x,
            &l("attention.output.LayerNorm.weight")?,
            &l("attention.output.LayerNorm.bias")?,
            c.layer_norm_eps,
        )?;
        // Feed-forward.
        let h =
            dense_act(&x, &l("intermediate.dense.weight")?, &l("intermediate.dense.bias")?, &c.hidden_act)?;
        let o = linear_dropout(
            &h,
            &l("output.dense.weight")?,
            &l("output.dense.bias")?,
            &mut pass.dropout,
            c.hidden_dropout_prob,
        )?;
        let o = p.adapt(&c.flavour.name(&format!("bert.encoder.layer.{i}.output")), &o, pass.train)?;
        x = add_layer_norm(
            &o,
            &x,
            &l("output.LayerNorm.weight")?,
            &l("output.LayerNorm.bias")?,
            c.layer_norm_eps,
        )?;
    }
    Ok(x)
}

/// The first token's (`[CLS]`, `<s>`) hidden vector `[batch, hidden]`.
pub fn first_token(hidden: &Tensor) -> Result<Tensor> {
    Ok(hidden.narrow(1, 0, 1)?.squeeze(1)?)
}

/// The pooler on first-token vectors: dense + tanh (BERT's pooler, RoBERTa's head dense) or
/// dense + ReLU (DistilBERT's pre-classifier).
pub fn pool(p: &Params, c: &BertConfig, cls: &Tensor, train: bool) -> Result<Tensor> {
    let t = |name: &str| p.tensor(&c.flavour.name(name), train);
    let dense = linear(cls, &t("bert.pooler.dense.weight")?, Some(&t("bert.pooler.dense.bias")?))?;
    Ok(if c.flavour.pooler_tanh() { dense.tanh()? } else { dense.relu()? })
}

/// Classification logits `[batch, labels]`: pooler, dropout, classifier. (RoBERTa's head
/// also drops out before its dense layer.)
pub fn classify(p: &Params, c: &BertConfig, hidden: &Tensor, pass: &mut Pass) -> Result<Tensor> {
    let t = |name: &str| p.tensor(&c.flavour.name(name), pass.train);
    let drop = c.classifier_dropout.unwrap_or(c.hidden_dropout_prob);
    let mut cls = first_token(hidden)?;
    if c.flavour == Flavour::Roberta {
        cls = pass.dropout.apply(&cls, drop)?;
    }
    let pooled = pool(p, c, &cls, pass.train)?;
    let pooled = pass.dropout.apply(&pooled, drop)?;
    linear(&pooled, &t("classifier.weight")?, Some(&t("classifier.bias")?))
}

/// Masked-LM logits over the vocabulary for every position `[batch, len, vocab]`.
pub fn mlm_logits(p: &Params, c: &BertConfig, hidden: &Tensor, pass: &mut Pass) -> Result<Tensor> {
    let t = |name: &str| p.tensor(&c.flavour.name(name), pass.train);
    let h = dense_act(
        hidden,
        &t("cls.predictions.transform.dense.weight")?,
        &t("cls.predictions.transform.dense.bias")?,
        &c.hidden_act,
    )?;
    let h = layer_norm(
        &h,
        &t("cls.predictions.transform.LayerNorm.weight")?,
        &t("cls.predictions.transform.LayerNorm.bias")?,
        c.layer_norm_eps,
    )?;
    // The decoder shares the word-embedding matrix.
    linear(&h, &t("bert.embeddings.word_embeddings.weight")?, Some(&t("cls.predictions.bias")?))
}

/// BERT's masking: 15% of the real (non-special) tokens are chosen; of those 80% become
/// `[MASK]`, 10% a random token, 10% stay. Returns the corrupted ids, the flat positions
/// chosen and their original ids. Training draws from the step's seed, evaluation from a
/// fixed one so validation losses compare across epochs.
pub fn mask_tokens(
    tok: &TextTokenizer,
    ids: &Tensor,
    mask: &Tensor,
    vocab: usize,
    seed: u64,
) -> Result<(Tensor, Vec<u32>, Vec<u32>)> {
    let Some(mask_id) = tok.mask_id else {
        bail!("the tokenizer has no [MASK] token, so it cannot train a masked LM")
    };
    let special: Vec<u32> = [tok.cls_id, tok.sep_id, Some(tok.pad_id)].into_iter().flatten().collect();
    let (b, l) = ids.dims2()?;
    let mut flat = ids.flatten_all()?.to_vec1::<u32>()?;
    let attend = mask.flatten_all()?.to_vec1::<u32>()?;
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut positions = Vec::new();
    let mut targets = Vec::new();
    let candidates: Vec<usize> =
        (0..b * l).filter(|&i| attend[i] == 1 && !special.contains(&flat[i])).collect();
    for &i in &candidates {
        if rng.random::<f64>() < 0.15 {
            positions.push(i as u32);
        }
    }
    if positions.is_empty() && !candidates.is_empty() {
        positions.push(candidates[rng.random_range(0..candidates.len())] as u32);
    }
    for &i in &positions {
        let i = i as usize;
        targets.push(flat[i]);
        let r: f64 = rng.random();
        if r < 0.8 {
            flat[i] = mask_id;
        } else if r < 0.9 {
            flat[i] = rng.random_range(0..vocab as u32);
        }
    }
    Ok((Tensor::from_vec(flat, (b, l), ids.device())?, positions, targets))
}

/// Masked-LM loss: mask, encode, predict the original ids at the masked positions.
pub fn mlm_loss(
    p: &Params,
    c: &BertConfig,
    tok: &TextTokenizer,
    ids: &Tensor,
    mask: &Tensor,
    pass: &mut Pass,
) -> Result<Tensor> {
    let seed = pass.dropout.next_seed().unwrap_or(0x5EED);
    let (corrupted, positions, targets) = mask_tokens(tok, ids, mask, c.vocab_size, seed)?;
    if positions.is_empty() {
        bail!("the batch has no maskable tokens (only special tokens); check the data")
    }
    let hidden = encode(p, c, &corrupted, mask, pass)?;
    let (b, l, h) = hidden.dims3()?;
    let device = hidden.device().clone();
    let pos = Tensor::from_vec(positions, (targets.len(),), &device)?;
    let picked = hidden.reshape((b * l, h))?.index_select(&pos, 0)?;
    let logits = crate::model::layers::upcast(mlm_logits(p, c, &picked, pass)?)?;
    let targets = Tensor::from_vec(targets, (pos.dim(0)?,), &device)?;
    kernels::cross_entropy(&logits, &targets)
}

/// Softmax probabilities of logits over the last dimension (for `predict`).
pub fn probabilities(logits: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?)
}
