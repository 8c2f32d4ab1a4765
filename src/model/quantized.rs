//! A frozen base kept quantized under LoRA adapters (as QLoRA does): the weights that carry
//! an adapter are stored as 8- or 4-bit blocks (candle's `QTensor`, GGML's `q8_0` / `q4_0`)
//! instead of f32, and dequantized on the fly each time the forward pass asks for them
//! (`Params::tensor`), so at rest they take a quarter (q8_0) to an eighth (q4_0) of the
//! memory. Their `Var` keeps an empty placeholder. Nothing is trained through them: the
//! adapters on top are, exactly as with an f32 base. `lora merge` dequantizes.
//!
//! A training step keeps the memory low too: on the CPU, `base + scale·B·A` is one op
//! ([`merged_frozen`]) whose backward needs only A and B, so a dequantized copy of the base
//! lives only while that op runs, not until the backward pass is done (the same op serves a
//! frozen f32 base, sparing `B·A` and `scale·B·A` per adapted layer).

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor, Var};

use super::kernels::contiguous;
use super::lora::merged;
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

    /// The quantized weight `name`, shared (for an op that dequantizes it later).
    pub fn shared(&self, name: &str) -> Option<Arc<QTensor>> {
        self.tensors.get(name).cloned()
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

/// The frozen base of a [`merged_frozen`] weight: quantized blocks, or an f32 tensor.
#[derive(Clone)]
pub(crate) enum FrozenBase {
    /// Dequantized when the op runs.
    Quantized(Arc<QTensor>),
    /// Used as it is (detached).
    Dense(Tensor),
}

/// Whether [`merged_frozen`] takes adapters `a` and `b`: f32 on the CPU (elsewhere the
/// composite `merged` runs).
pub(crate) fn merges_in_one_op(a: &Tensor, b: &Tensor) -> bool {
    [a, b].iter().all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// `base + scale·B·A` (transposed for `[in, out]` weights) as one op, tracked for gradients
/// to `a` (`[r, in]`) and `b` (`[out, r]`) only: its backward needs A and B, so the step
/// keeps neither a dequantized copy of the base nor `B·A` and `scale·B·A` alive.
pub(crate) fn merged_frozen(
    base: FrozenBase,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
    fan_in_fan_out: bool,
) -> Result<Tensor> {
    let op = MergeFrozen { base, scale, fan_in_fan_out };
    Ok(a.contiguous()?.apply_op2(&b.contiguous()?, op)?)
}

/// The op of [`merged_frozen`].
struct MergeFrozen {
    base: FrozenBase,
    scale: f64,
    fan_in_fan_out: bool,
}

impl CustomOp2 for MergeFrozen {
    fn name(&self) -> &'static str {
        "merge-frozen"
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        la: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let cpu = Device::Cpu;
        let a = Tensor::from_slice(contiguous::<f32>(a, la, self.name(), "a")?, la.shape(), &cpu)?;
        let b = Tensor::from_slice(contiguous::<f32>(b, lb, self.name(), "b")?, lb.shape(), &cpu)?;
        let base = match &self.base {
            FrozenBase::Quantized(q) => q.dequantize(&cpu)?,
            FrozenBase::Dense(w) => w.detach(),
        };
        let w = merged(&base, &a, &b, self.scale, self.fan_in_fan_out).map_err(candle_core::Error::wrap)?;
        let shape = w.shape().clone();
        Ok((CpuStorage::F32(w.flatten_all()?.to_vec1::<f32>()?), shape))
    }

    /// With G the merged weight's gradient (as `[out, in]`): ∂A = scale·Bᵀ·G, ∂B = scale·G·Aᵀ.
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _merged: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = if self.fan_in_fan_out { grad.t()? } else { grad.clone() };
        let ga = b.t()?.matmul(&g)?.affine(self.scale, 0.0)?;
        let gb = g.matmul(&a.t()?)?.affine(self.scale, 0.0)?;
        Ok((Some(ga), Some(gb)))
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

    /// The one-op merge equals `merged` on the dequantized base, forward and backward, for
    /// `[out, in]` and `[in, out]` (GPT-2's Conv1D) weights.
    #[test]
    fn the_one_op_merge_matches_the_composite_one_with_gradients() {
        let cpu = Device::Cpu;
        for fan_in_fan_out in [false, true] {
            let (n_in, n_out, r) = (64, 32, 4);
            let shape = if fan_in_fan_out { (n_in, n_out) } else { (n_out, n_in) };
            let w: Vec<f32> = (0..n_in * n_out).map(|i| ((i * 53 % 97) as f32 / 48.0) - 1.0).collect();
            let q = Arc::new(
                QTensor::quantize(&Tensor::from_vec(w, shape, &cpu).unwrap(), GgmlDType::Q8_0).unwrap(),
            );
            let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, (r, n_in), &cpu).unwrap()).unwrap();
            let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n_out, r), &cpu).unwrap()).unwrap();
            let x = Tensor::randn(0f32, 1.0, (3, n_out), &cpu).unwrap();
            let loss = |w: &Tensor| {
                let w = if fan_in_fan_out { w.t().unwrap() } else { w.clone() };
                x.matmul(&w).unwrap().sqr().unwrap().sum_all().unwrap()
            };
            let one = merged_frozen(FrozenBase::Quantized(q.clone()), &a, &b, 0.5, fan_in_fan_out).unwrap();
            let composite = merged(&q.dequantize(&cpu).unwrap(), &a, &b, 0.5, fan_in_fan_out).unwrap();
            let diff = |x: &Tensor, y: &Tensor| {
                (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
            };
            let dense = FrozenBase::Dense(q.dequantize(&cpu).unwrap());
            let one_dense = merged_frozen(dense, &a, &b, 0.5, fan_in_fan_out).unwrap();
            assert!(diff(&one_dense, &composite) < 1e-6, "dense base differs ({fan_in_fan_out})");
            assert_eq!(one.dims(), composite.dims());
            assert!(diff(&one, &composite) < 1e-5, "forward differs ({fan_in_fan_out})");
            let (g1, g2) = (loss(&one).backward().unwrap(), loss(&composite).backward().unwrap());
            for v in [&a, &b] {
                let (x, y) = (g1.get(v).unwrap(), g2.get(v).unwrap());
                let tol = 1e-4 * y.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(diff(x, y) < tol, "gradient of {:?} differs ({fan_in_fan_out})", v.dims());
            }
        }
    }
}
