//! Building blocks of the causal language models (GPT-2, llama), on ops with a backward
//! pass: the causal mask, RMS normalisation, rotary position embeddings in both layouts,
//! GPT-2's `Conv1D` projection and grouped-query attention's key/value repetition.

use candle_core::{DType, Device, Tensor};

use super::Dropout;
use crate::error::Result;

/// Additive causal bias `[1, 1, len, past + len]`: query `i` (at absolute position
/// `past + i`) sees keys `0..=past + i`; later keys get a large negative number.
pub fn causal_bias(len: usize, past: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let total = past + len;
    let values: Vec<f32> =
        (0..len).flat_map(|i| (0..total).map(move |j| if j <= past + i { 0.0 } else { -1e9 })).collect();
    Ok(Tensor::from_vec(values, (1, 1, len, total), device)?.to_dtype(dtype)?)
}

/// RMS normalisation over the last dimension, `x / sqrt(mean(x²) + eps) · w`, computed in
/// f32 (f64 stays f64) as transformers' `LlamaRMSNorm` does: the fused kernel on CPU,
/// `kernels::rms_norm_composite` elsewhere.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    crate::model::kernels::rms_norm(x, w, eps)
}

/// The `cos` and `sin` tables `[len, head_dim / 2]` of rotary embeddings for positions
/// `start..start + len`: angle `pos · theta^(-2i / head_dim)`.
pub fn rope_tables(
    start: usize,
    len: usize,
    head_dim: usize,
    theta: f64,
    dtype: DType,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    // As transformers: the inverse frequencies in f32, the angles in f32.
    let inv: Vec<f32> =
        (0..half).map(|i| (1.0 / theta.powf(2.0 * i as f64 / head_dim as f64)) as f32).collect();
    let mut cos = Vec::with_capacity(len * half);
    let mut sin = Vec::with_capacity(len * half);
    for pos in start..start + len {
        for f in &inv {
            let a = pos as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    let cos = Tensor::from_vec(cos, (len, half), device)?.to_dtype(dtype)?;
    let sin = Tensor::from_vec(sin, (len, half), device)?.to_dtype(dtype)?;
    Ok((cos, sin))
}

/// Rotary embedding in the half-split layout of transformers (`rotate_half`): dimension `i`
/// pairs with `i + head_dim/2`. `x`: `[batch, heads, len, head_dim]`; tables from
/// [`rope_tables`]. One fused kernel forward and backward (`kernels::rope`).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    crate::model::kernels::rope(x, cos, sin)
}

/// Rotary embedding in the interleaved layout of GGUF / llama.cpp and the original Meta
/// code: dimension `2i` pairs with `2i + 1`. Same arguments as [`rope`].
pub fn rope_interleaved(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (b, h, l, d) = x.dims4()?;
    let pairs = x.reshape((b, h, l, d / 2, 2))?;
    let (x1, x2) = (pairs.narrow(4, 0, 1)?.squeeze(4)?, pairs.narrow(4, 1, 1)?.squeeze(4)?);
    let (c, s) = (cos.unsqueeze(0)?.unsqueeze(0)?, sin.unsqueeze(0)?.unsqueeze(0)?);
    let a = (x1.broadcast_mul(&c)? - x2.broadcast_mul(&s)?)?;
    let b2 = (x2.broadcast_mul(&c)? + x1.broadcast_mul(&s)?)?;
    Ok(Tensor::stack(&[a, b2], 4)?.reshape((b, h, l, d))?)
}

/// Reorders the rows of a GGUF q/k projection weight `[heads · head_dim, in]` from the
/// interleaved rotary layout to transformers' half-split one (undoing llama.cpp's
/// conversion permute), so [`rope`] applies.
pub fn unpermute_rotary(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    let head_dim = out / heads;
    Ok(w.reshape((heads, head_dim / 2, 2, inp))?.transpose(1, 2)?.contiguous()?.reshape((out, inp))?)
}

/// GPT-2's `Conv1D`: `x · w + b` over the last dimension with `w` stored `[in, out]`
/// (transposed relative to `torch.nn.Linear`).
pub fn conv1d(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    crate::model::kernels::conv1d(x, w, Some(b))
}

/// `dropout(x · w + b)` for GPT-2's `Conv1D` (`w` `[in, out]`), the mask drawn as
/// [`Dropout::apply`] would draw it: one fused node on CPU
/// ([`crate::model::kernels::conv1d_dropout`]).
pub fn conv1d_dropout(x: &Tensor, w: &Tensor, b: &Tensor, dropout: &mut Dropout, p: f64) -> Result<Tensor> {
    let mask = dropout.keep_mask(&super::with_last(x, w.dim(1)?), p, x.dtype(), x.device())?;
    crate::model::kernels::conv1d_dropout(x, w, b, mask.as_ref())
}

/// Repeats each of `x`'s key/value heads `rep` times: `[b, kv, len, d]` → `[b, kv·rep, len, d]`
/// (grouped-query attention).
pub fn repeat_kv(x: &Tensor, rep: usize) -> Result<Tensor> {
    if rep == 1 {
        return Ok(x.clone());
    }
    let (b, kv, l, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?.broadcast_as((b, kv, rep, l, d))?.contiguous()?.reshape((b, kv * rep, l, d))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_bias_hides_the_future_only() {
        let b = causal_bias(2, 1, DType::F32, &Device::Cpu).unwrap();
        let v = b.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(v, [[0.0, 0.0, -1e9], [0.0, 0.0, 0.0]]);
    }

    #[test]
    fn rms_norm_matches_the_formula() {
        let x = Tensor::new(&[[3f32, 4.0]], &Device::Cpu).unwrap();
        let w = Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap();
        let y = rms_norm(&x, &w, 0.0).unwrap().to_vec2::<f32>().unwrap();
        let rms = (12.5f32).sqrt();
        assert!((y[0][0] - 3.0 / rms).abs() < 1e-6 && (y[0][1] - 8.0 / rms).abs() < 1e-6, "{y:?}");
    }

    /// The interleaved rotation on GGUF-permuted weights equals the half-split rotation on
    /// the unpermuted ones: the two layouts differ only by the order of the output rows.
    #[test]
    fn unpermuting_turns_interleaved_rope_into_half_split() {
        let dev = Device::Cpu;
        let (heads, head_dim, inp, len) = (2, 8, 5, 3);
        let hf = Tensor::randn(0f32, 1.0, (heads * head_dim, inp), &dev).unwrap();
        // llama.cpp's conversion: w.reshape(heads, 2, d/2, in).swapaxes(1, 2).
        let gguf = hf
            .reshape((heads, 2, head_dim / 2, inp))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((heads * head_dim, inp))
            .unwrap();
        let back = unpermute_rotary(&gguf, heads).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), hf.to_vec2::<f32>().unwrap());
        let x = Tensor::randn(0f32, 1.0, (1, len, inp), &dev).unwrap();
        let heads_of = |w: &Tensor| {
            crate::model::layers::split_heads(&crate::model::layers::linear(&x, w, None).unwrap(), heads)
                .unwrap()
        };
        let (cos, sin) = rope_tables(4, len, head_dim, 10000.0, DType::F32, &dev).unwrap();
        let a = rope(&heads_of(&hf), &cos, &sin).unwrap();
        let b = rope_interleaved(&heads_of(&gguf), &cos, &sin).unwrap();
        // Element by element after undoing the permutation of each head's dimensions.
        let b_hf = unpermute_rotary(
            &b.transpose(2, 3).unwrap().contiguous().unwrap().reshape((heads * head_dim, len)).unwrap(),
            heads,
        )
        .unwrap();
        let a_flat =
            a.transpose(2, 3).unwrap().contiguous().unwrap().reshape((heads * head_dim, len)).unwrap();
        let diff = (a_flat - b_hf).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "largest difference {diff}");
    }

    #[test]
    fn conv1d_is_a_transposed_linear() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 4), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (4, 5), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 5, &dev).unwrap();
        let a = conv1d(&x, &w, &b).unwrap();
        let l = crate::model::layers::linear(&x, &w.t().unwrap(), Some(&b)).unwrap();
        let d = (a - l).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5);
    }

    #[test]
    fn repeat_kv_repeats_each_head_in_place() {
        let x = Tensor::arange(0f32, 4.0, &Device::Cpu).unwrap().reshape((1, 2, 2, 1)).unwrap();
        let y = repeat_kv(&x, 2).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(y, [0.0, 1.0, 0.0, 1.0, 2.0, 3.0, 2.0, 3.0]);
    }
}
