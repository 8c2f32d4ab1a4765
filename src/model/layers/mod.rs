//! Building blocks of the trainable models, written only with ops that have a backward pass
//! (the fused `candle_nn` norms and `softmax_last_dim` cut the graph; see shared/CANDLE.md):
//! candle's elementwise ops, or tunelab's own fused kernels (`model::kernels`), which have
//! fused backward passes. Each is a plain function over tensors so a reader sees the math.

mod causal;
mod dropout;

pub use crate::model::kernels::layer_norm_composite;
pub use causal::{
    causal_bias, conv1d, conv1d_dropout, repeat_kv, rms_norm, rope, rope_interleaved, rope_tables,
    unpermute_rotary,
};
pub use dropout::{keep_mask, step_seed, Dropout};

use candle_core::{DType, Tensor, D};

use crate::error::Result;

/// A half-precision (bf16/f16) tensor converted to f32, anything else as it is: what a
/// model's outputs go through under mixed precision, so losses and metrics are f32.
pub fn upcast(t: Tensor) -> Result<Tensor> {
    Ok(match t.dtype() {
        DType::BF16 | DType::F16 => t.to_dtype(DType::F32)?,
        _ => t,
    })
}

/// `x · wᵀ + b` over the last dimension, as `torch.nn.Linear` (w: `[out, in]`): one fused
/// graph node on CPU ([`crate::model::kernels::linear`]).
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    crate::model::kernels::linear(x, w, b)
}

/// `dropout(x · wᵀ + b)`, the mask drawn as [`Dropout::apply`] would draw it: one fused
/// node on CPU ([`crate::model::kernels::linear_dropout`]).
pub fn linear_dropout(x: &Tensor, w: &Tensor, b: &Tensor, dropout: &mut Dropout, p: f64) -> Result<Tensor> {
    let mask = dropout.keep_mask(&with_last(x, w.dim(0)?), p, x.dtype(), x.device())?;
    crate::model::kernels::linear_dropout(x, w, b, mask.as_ref())
}

/// `x`'s shape with its last dimension replaced by `last`.
pub(crate) fn with_last(x: &Tensor, last: usize) -> candle_core::Shape {
    let mut dims = x.dims().to_vec();
    if let Some(d) = dims.last_mut() {
        *d = last;
    }
    dims.into()
}

/// Layer normalisation over the last dimension: `(x - mean) / sqrt(var + eps) · w + b`,
/// computed in f32 (the fused kernel on CPU, [`layer_norm_composite`] elsewhere).
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    crate::model::kernels::layer_norm(x, w, b, eps)
}

/// `layer_norm(x + residual, w, b)`: a post-norm transformer's "add & norm" as one fused
/// node ([`crate::model::kernels::add_layer_norm`]); the sum never becomes a tensor.
pub fn add_layer_norm(x: &Tensor, residual: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    crate::model::kernels::add_layer_norm(x, residual, w, b, eps)
}

/// `silu(gate) · up`, the SwiGLU feed-forward's gate, as one fused node
/// ([`crate::model::kernels::swiglu`]).
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    crate::model::kernels::swiglu(gate, up)
}

/// Rows of the embedding matrix `table` for integer `ids` of any shape, as one fused node
/// ([`crate::model::kernels::embedding`]).
pub fn embedding(ids: &Tensor, table: &Tensor) -> Result<Tensor> {
    crate::model::kernels::embedding(ids, table)
}

/// Additive attention bias from a `[batch, len]` mask of 1 (attend) / 0 (padding):
/// `[batch, 1, 1, len]` holding 0 or a large negative number (the most negative f16 can
/// hold, under f16: 1e9 would be infinite there, and 0·∞ a NaN).
pub fn attention_bias(mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let (b, l) = mask.dims2()?;
    let big = if dtype == DType::F16 { 65504.0 } else { 1e9 };
    let bias = ((mask.to_dtype(dtype)? - 1.0)? * big)?;
    Ok(bias.reshape((b, 1, 1, l))?)
}

/// Scaled dot-product attention of `[batch, heads, len, head_dim]` tensors with an additive
/// bias broadcast over heads and queries; attention probabilities pass through `dropout`.
/// On the CPU the whole of it is one graph node ([`crate::model::kernels::attention`]);
/// elsewhere the scores, the fused softmax, the dropout multiply and the product with `v`
/// are separate ops (the same masks either way).
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    dropout: &mut Dropout,
    p: f64,
) -> Result<Tensor> {
    let scale = 1.0 / (q.dim(D::Minus1)? as f64).sqrt();
    let mask = dropout.keep_mask(&with_last(q, k.dim(D::Minus2)?), p, q.dtype(), q.device())?;
    if let Some(out) = crate::model::kernels::attention(q, k, v, Some(bias), scale, mask.as_ref())? {
        return Ok(out);
    }
    let probs = crate::model::kernels::softmax(&crate::model::kernels::matmul_nt(q, k)?, scale, Some(bias))?;
    let probs = match &mask {
        Some(m) => crate::model::kernels::mul_mask(&probs, m)?,
        None => probs,
    };
    Ok(probs.matmul(v)?)
}

/// `[batch, len, heads·dim]` → `[batch, heads, len, dim]`, contiguous (one fused node on CPU).
pub fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    crate::model::kernels::split_heads(x, heads)
}

/// `[batch, heads, len, dim]` → `[batch, len, heads·dim]` (one fused node on CPU).
pub fn merge_heads(x: &Tensor) -> Result<Tensor> {
    crate::model::kernels::merge_heads(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn layer_norm_matches_the_formula() {
        let x = Tensor::new(&[[1f32, 2.0, 3.0, 6.0]], &Device::Cpu).unwrap();
        let w = Tensor::new(&[1f32, 1.0, 2.0, 1.0], &Device::Cpu).unwrap();
        let b = Tensor::new(&[0f32, 0.0, 0.0, 1.0], &Device::Cpu).unwrap();
        let y = layer_norm(&x, &w, &b, 0.0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (mean, var) = (3.0f32, (4.0f32 + 1.0 + 0.0 + 9.0) / 4.0);
        let want =
            [(1.0 - mean) / var.sqrt(), (2.0 - mean) / var.sqrt(), 0.0, (6.0 - mean) / var.sqrt() + 1.0];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{y:?}");
        }
    }

    #[test]
    fn linear_keeps_leading_dimensions() {
        let x = Tensor::ones((2, 3, 4), DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::ones((5, 4), DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::ones(5, DType::F32, &Device::Cpu).unwrap();
        let y = linear(&x, &w, Some(&b)).unwrap();
        assert_eq!(y.dims(), [2, 3, 5]);
        assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0], 5.0);
    }

    #[test]
    fn padding_gets_no_attention() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 1, 3, 2), &dev).unwrap();
        let v = Tensor::new(&[[[[1f32, 0.0], [0.0, 1.0], [100.0, 100.0]]]], &dev).unwrap();
        let mask = Tensor::new(&[[1u32, 1, 0]], &dev).unwrap();
        let bias = attention_bias(&mask, DType::F32).unwrap();
        let out = attention(&q, &q, &v, &bias, &mut Dropout::disabled(), 0.1).unwrap();
        let out = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(out.iter().all(|x| *x <= 1.0 + 1e-5), "the padded value 100 leaks: {out:?}");
    }
}
