//! A frozen base kept quantized under LoRA adapters (as QLoRA does): the weights that carry
//! an adapter are stored as 8- or 4-bit blocks (candle's `QTensor`, GGML's `q8_0` / `q4_0`)
//! instead of f32, and dequantized on the fly each time the forward pass asks for them
//! (`Params::tensor`), so at rest they take a quarter (q8_0) to an eighth (q4_0) of the
//! memory. Their `Var` keeps an empty placeholder. Nothing is trained through them: the
//! adapters on top are, exactly as with an f32 base. `lora merge` dequantizes.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Tensor, Var};

use super::{Param, Params};
use crate::error::{bail, Result};

/// The quantized base weights, by name.
#[derive(Clone)]
pub struct QuantizedBase {
    /// The block format.
    pub dtype: GgmlDType,
    tensors: BTreeMap<String, Arc<QTensor>>,
}

impl std::fmt::Debug for QuantizedBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QuantizedBase({:?}, {} tensors)", self.dtype, self.tensors.len())
    }
}

impl PartialEq for QuantizedBase {
    fn eq(&self, other: &QuantizedBase) -> bool {
        self.dtype == other.dtype
            && self.tensors.len() == other.tensors.len()
            && self.tensors.iter().zip(&other.tensors).all(|(a, b)| a.0 == b.0 && Arc::ptr_eq(a.1, b.1))
    }
}

impl QuantizedBase {
    /// The quantized weight `name`, if it is one.
    pub fn get(&self, name: &str) -> Option<&QTensor> {
        self.tensors.get(name).map(|q| q.as_ref())
    }

    /// Values held.
    pub fn numel(&self) -> usize {
        self.tensors.values().map(|q| q.shape().elem_count()).sum()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.tensors.values().map(|q| q.storage_size_in_bytes()).sum()
    }
}

/// The block format of a `quantize=` name.
pub fn ggml_dtype(name: &str) -> Option<GgmlDType> {
    match name {
        "q8_0" => Some(GgmlDType::Q8_0),
        "q4_0" => Some(GgmlDType::Q4_0),
        _ => None,
    }
}

impl Params {
    /// These parameters with the base weights under LoRA adapters quantized to `dtype`
    /// (weights whose last dimension is not a multiple of the block size stay f32 and are
    /// returned by name). Fails, changing nothing, without LoRA or when already quantized.
    pub fn with_quantized_base(&self, dtype: GgmlDType) -> Result<(Params, Vec<String>)> {
        let Some(lora) = self.lora() else {
            bail!("quantize= keeps the base under LoRA adapters quantized; attach LoRA")
        };
        if lora.quantized.is_some() {
            bail!("the base is already quantized")
        }
        let mut tensors = BTreeMap::new();
        let mut skipped = Vec::new();
        for name in lora.adapters.keys() {
            let p = self.get(name).expect("adapted weights exist");
            let t = p.var.as_tensor();
            if t.dims().last().is_none_or(|d| d % dtype.block_size() != 0) {
                skipped.push(name.clone());
                continue;
            }
            tensors.insert(name.clone(), Arc::new(QTensor::quantize(t, dtype)?));
        }
        let mut items = Vec::new();
        for p in self.iter() {
            let var = if tensors.contains_key(&p.name) {
                Var::from_tensor(&Tensor::zeros(0, p.var.dtype(), p.var.device())?)?
            } else {
                p.var.clone()
            };
            items.push(Param { name: p.name.clone(), var, trainable: p.trainable });
        }
        let mut lora = lora.clone();
        lora.quantized = Some(QuantizedBase { dtype, tensors });
        let mut out = Params::from_parts(items, Some(lora));
        out.bottleneck = self.bottleneck.clone();
        Ok((out, skipped))
    }

    /// The quantized base, when there is one.
    pub fn quantized(&self) -> Option<&QuantizedBase> {
        self.lora().and_then(|l| l.quantized.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::SeedableRng;

    #[test]
    fn a_quantized_base_is_smaller_and_close_to_the_f32_one() {
        let w: Vec<f32> = (0..64 * 64).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
        let w = Tensor::from_vec(w, (64, 64), &Device::Cpu).unwrap();
        let p = Params::new(vec![("l.query.weight".into(), w.clone())]).unwrap();
        let config = super::super::lora::LoraConfig {
            r: 2,
            alpha: 2.0,
            dropout: 0.0,
            targets: vec!["query".into()],
            rslora: false,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let l =
            p.with_lora(config, &[("l.query.weight".into(), false)], vec![], None, None, &mut rng).unwrap();
        let (q, skipped) = l.with_quantized_base(GgmlDType::Q8_0).unwrap();
        assert!(skipped.is_empty());
        let qb = q.quantized().unwrap();
        assert_eq!((qb.numel(), q.numel()), (64 * 64, l.numel()));
        assert!(qb.bytes() * 3 < 64 * 64 * 4, "{} bytes", qb.bytes());
        let back = q.tensor("l.query.weight", false).unwrap();
        let err = (back - &w).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(err < 0.01, "q8_0 round trip error {err}");
        let merged = q.merge_lora().unwrap();
        assert_eq!(merged.get("l.query.weight").unwrap().var.dims(), [64, 64]);
    }
}
