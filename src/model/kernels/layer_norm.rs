//! Layer normalisation over the last dimension, fused: one pass per row forward, and one
//! kernel for the whole backward (dx, dγ and dβ together).
//!
//! Forward keeps nothing but its output; the backward recomputes each row's mean and
//! 1/σ from `x`, which costs one read of the row and saves storing two extra tensors.
//!
//! [`add_layer_norm`] is a post-norm transformer's "add & norm", `layer_norm(x + residual)`,
//! as one node: the sum is formed a row at a time inside the kernels (forward and backward)
//! and never becomes a tensor, so candle's backward has no `[tokens, hidden]` edge to
//! zero-fill and add into between the residual add and the norm.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Storage, Tensor, D};

use super::{contiguous, fusable, same_len, with_real, KernelError, Real};
use crate::error::Result;

const OP: &str = "layer-norm";

/// Whether rows `hidden` wide fit the CUDA norm kernels (wider ones use the composite op).
pub(super) fn cuda_width_ok(hidden: usize) -> bool {
    #[cfg(feature = "cuda")]
    {
        hidden <= super::cuda::MAX_HIDDEN
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = hidden;
        false
    }
}

/// `(x - mean) / sqrt(var + eps) · w + b` over the last dimension (`w`, `b`: `[hidden]`),
/// fused on CPU for contiguous f32/f64 and on CUDA for f32, bf16/f16 through the f32 kernel
/// ([`super::in_f32`]); other inputs take [`layer_norm_composite`].
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let hidden = x.dim(D::Minus1)?;
    if super::half_to_fuse(x) {
        return super::in_f32(x.dtype(), [x, w, b], |[x, w, b]| layer_norm(&x, &w, &b, eps));
    }
    let same =
        |t: &Tensor| t.dtype() == x.dtype() && t.dims() == [hidden] && t.device().same_device(x.device());
    let cuda = super::fusable_cuda(x) && cuda_width_ok(hidden);
    if !((fusable(x) || cuda) && same(w) && same(b)) {
        return layer_norm_composite(x, w, b, eps);
    }
    let (w, b) = (w.contiguous()?, b.contiguous()?);
    Ok(x.contiguous()?.apply_op3(&w, &b, LayerNorm { eps })?)
}

/// `layer_norm(x + residual, w, b)`: BERT's "add & norm" after each sub-layer, as one node
/// where [`layer_norm`] fuses (`residual` the same shape, dtype and device as `x`); elsewhere
/// the add, then [`layer_norm`]. The gradient of `x` and of `residual` is the same tensor.
pub fn add_layer_norm(x: &Tensor, residual: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let hidden = x.dim(D::Minus1)?;
    let like_x = |t: &Tensor| t.dtype() == x.dtype() && t.device().same_device(x.device());
    let fits = like_x(residual)
        && residual.dims() == x.dims()
        && like_x(w)
        && like_x(b)
        && w.dims() == [hidden]
        && b.dims() == [hidden];
    if fits && super::half_to_fuse(x) {
        return super::in_f32(x.dtype(), [x, residual, w, b], |[x, r, w, b]| {
            add_layer_norm(&x, &r, &w, &b, eps)
        });
    }
    let cuda = super::fusable_cuda(x) && cuda_width_ok(hidden);
    if !(fits && (fusable(x) || cuda)) {
        return layer_norm(&(x + residual)?, w, b, eps);
    }
    // One [2, hidden] input for the weight and bias: a CustomOp takes three inputs at most.
    let wb = Tensor::stack(&[w, b], 0)?;
    Ok(x.contiguous()?.apply_op3(&residual.contiguous()?, &wb, AddLayerNorm { eps })?)
}

/// The same function as [`layer_norm`] from candle's elementwise ops (computed in f32,
/// f64 stays f64): the reference the kernel is tested against, and the path for other
/// dtypes and devices.
pub fn layer_norm_composite(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = if dtype == candle_core::DType::F64 { x.clone() } else { x.to_dtype(candle_core::DType::F32)? };
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(normed.to_dtype(dtype)?.broadcast_mul(w)?.broadcast_add(b)?)
}

/// Mean and 1/sqrt(var + eps) of one row (two passes, as the composite computes them).
fn moments<T: Real>(row: &[T], eps: T) -> (T, T) {
    let n = T::of(row.len() as f64);
    let mut sum = T::zero();
    for &v in row {
        sum += v;
    }
    let mean = sum / n;
    let mut sq = T::zero();
    for &v in row {
        let c = v - mean;
        sq += c * c;
    }
    (mean, (sq / n + eps).sqrt().recip())
}

/// One row of the forward: `y = (s - mean) · rstd · w + b`.
#[inline(always)]
fn normalize_row<T: Real>(s: &[T], w: &[T], b: &[T], y: &mut [T], eps: T) {
    let (mean, rstd) = moments(s, eps);
    for i in 0..s.len() {
        y[i] = (s[i] - mean) * rstd * w[i] + b[i];
    }
}

/// One block of rows' part of the backward: its `dw` and `db` sums, and a row of x̂.
struct RowGrads<T> {
    dw: Vec<T>,
    db: Vec<T>,
    xhat: Vec<T>,
}

impl<T: Real> RowGrads<T> {
    fn new(d: usize) -> Self {
        Self { dw: vec![T::zero(); d], db: vec![T::zero(); d], xhat: vec![T::zero(); d] }
    }

    /// Writes the row's `dx` from its input `s` and upstream `dy`; adds into `dw`, `db`.
    #[inline(always)]
    fn row(&mut self, s: &[T], dy: &[T], w: &[T], dx: &mut [T], eps: T, inv_d: T) {
        let (mean, rstd) = moments(s, eps);
        let (mut sum_g, mut sum_gx) = (T::zero(), T::zero());
        for i in 0..s.len() {
            let h = (s[i] - mean) * rstd;
            self.xhat[i] = h;
            let g = dy[i] * w[i];
            sum_g += g;
            sum_gx += g * h;
            self.dw[i] += dy[i] * h;
            self.db[i] += dy[i];
        }
        let (mean_g, mean_gx) = (sum_g * inv_d, sum_gx * inv_d);
        for i in 0..s.len() {
            dx[i] = rstd * (dy[i] * w[i] - mean_g - self.xhat[i] * mean_gx);
        }
    }
}

/// The layer norm of each `w.len()`-wide row of `x`, or of `x + r` (the sum formed a row at
/// a time into a scratch row, never stored whole), in parallel blocks of rows.
fn forward<T: Real>(x: &[T], r: Option<&[T]>, w: &[T], b: &[T], eps: T) -> Vec<T> {
    let d = w.len();
    let mut y = vec![T::zero(); x.len()];
    super::par_rows(&mut y, d, |row, block| {
        let mut sum = vec![T::zero(); if r.is_some() { d } else { 0 }];
        for (k, yr) in block.chunks_exact_mut(d).enumerate() {
            let at = (row + k) * d;
            let xr = &x[at..at + d];
            let s = match r {
                Some(r) => {
                    add_rows(xr, &r[at..at + d], &mut sum);
                    &sum[..]
                }
                None => xr,
            };
            normalize_row(s, w, b, yr, eps);
        }
    });
    y
}

/// The backward of [`forward`]: `[ds | dw | db]` in one vector, `ds` the gradient at the
/// rows normalised (`x`, or `x + r`). Each block of rows writes its `ds` and returns its
/// parts of `dw` and `db`, summed in block order.
fn backward<T: Real>(x: &[T], r: Option<&[T]>, dy: &[T], w: &[T], eps: T) -> Vec<T> {
    let (n, d) = (x.len(), w.len());
    let inv_d = T::of(1.0 / d as f64);
    let mut out = vec![T::zero(); n + 2 * d];
    let (ds, rest) = out.split_at_mut(n);
    let partials = super::par_rows_partials(ds, d, |row, block| {
        let mut acc = RowGrads::new(d);
        let mut sum = vec![T::zero(); if r.is_some() { d } else { 0 }];
        for (k, dsr) in block.chunks_exact_mut(d).enumerate() {
            let at = (row + k) * d;
            let xr = &x[at..at + d];
            let s = match r {
                Some(r) => {
                    add_rows(xr, &r[at..at + d], &mut sum);
                    &sum[..]
                }
                None => xr,
            };
            acc.row(s, &dy[at..at + d], w, dsr, eps, inv_d);
        }
        acc
    });
    let (dw, db) = rest.split_at_mut(d);
    for p in partials {
        for i in 0..d {
            dw[i] += p.dw[i];
            db[i] += p.db[i];
        }
    }
    out
}

/// The forward op: `(x, w, b) → y`.
struct LayerNorm {
    eps: f64,
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "tunelab-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        super::count_call();
        with_real!(s1, OP, "x", |T| {
            let x = contiguous::<T>(s1, l1, OP, "x")?;
            let w = contiguous::<T>(s2, l2, OP, "weight")?;
            let b = contiguous::<T>(s3, l3, OP, "bias")?;
            let d = w.len();
            if d == 0 || x.len() % d != 0 || b.len() != d {
                let what = format!(
                    "x {:?}, weight {:?}, bias {:?}: w and b must be [last dim of x]",
                    l1.dims(),
                    l2.dims(),
                    l3.dims()
                );
                return Err(KernelError::Shape { op: OP, what }.into());
            }
            Ok((T::wrap(forward(x, None, w, b, T::of(self.eps))), l1.shape().clone()))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::count_call();
        super::cuda::norm_fwd(self.eps, (s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = w.elem_count();
        let n = x.elem_count();
        let packed = x.apply_op3_no_bwd(w, &grad.contiguous()?, &LayerNormBackward { eps: self.eps })?;
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        let dw = packed.narrow(0, n, d)?;
        let db = packed.narrow(0, n + d, d)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// The backward op: `(x, w, dy) → [dx | dw | db]` flattened into one vector.
///
/// With x̂ = (x - mean)·r and g = dy·w: `dx = r · (g - mean(g) - x̂ · mean(g·x̂))`,
/// `dw = Σ_rows dy·x̂`, `db = Σ_rows dy`.
struct LayerNormBackward {
    eps: f64,
}

impl CustomOp3 for LayerNormBackward {
    fn name(&self) -> &'static str {
        "tunelab-layer-norm-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        with_real!(s1, OP, "x", |T| {
            let x = contiguous::<T>(s1, l1, OP, "x")?;
            let w = contiguous::<T>(s2, l2, OP, "weight")?;
            let dy = contiguous::<T>(s3, l3, OP, "grad")?;
            let (n, d) = (x.len(), w.len());
            same_len(OP, dy.len(), l3, ("x", n, l1))?;
            let out = backward(x, None, dy, w, T::of(self.eps));
            Ok((T::wrap(out), Shape::from(n + 2 * d)))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::norm_bwd(self.eps, 2, (s1, l1), (s2, l2), (s3, l3))
    }
}

/// The "add & norm" forward op: `(x, r, [w; b]) → layer_norm(x + r) · w + b`.
struct AddLayerNorm {
    eps: f64,
}

impl CustomOp3 for AddLayerNorm {
    fn name(&self) -> &'static str {
        "tunelab-add-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        super::count_call();
        with_real!(s1, OP, "x", |T| {
            let x = contiguous::<T>(s1, l1, OP, "x")?;
            let r = contiguous::<T>(s2, l2, OP, "residual")?;
            let wb = contiguous::<T>(s3, l3, OP, "weight and bias")?;
            let d = wb.len() / 2;
            same_len(OP, r.len(), l2, ("x", x.len(), l1))?;
            if d == 0 || x.len() % d != 0 || wb.len() != 2 * d {
                let what =
                    format!("x {:?}, [weight; bias] {:?}: must be [2, last dim of x]", l1.dims(), l3.dims());
                return Err(KernelError::Shape { op: OP, what }.into());
            }
            let (w, b) = wb.split_at(d);
            Ok((T::wrap(forward(x, Some(r), w, b, T::of(self.eps))), l1.shape().clone()))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::count_call();
        super::cuda::add_norm_fwd(self.eps, (s1, l1), (s2, l2), (s3, l3))
    }

    fn bwd(
        &self,
        x: &Tensor,
        r: &Tensor,
        wb: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, d) = (x.elem_count(), wb.elem_count() / 2);
        let op = AddLayerNormBackward { eps: self.eps, wb: wb.clone() };
        let packed = x.apply_op3_no_bwd(r, &grad.contiguous()?, &op)?;
        let ds = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        let dwb = if wb.track_op() { Some(packed.narrow(0, n, 2 * d)?.reshape((2, d))?) } else { None };
        let dr = if r.track_op() { Some(ds.clone()) } else { None };
        let dx = if x.track_op() { Some(ds) } else { None };
        Ok((dx, dr, dwb))
    }
}

/// `s = x + r`, element by element.
#[inline(always)]
fn add_rows<T: Real>(x: &[T], r: &[T], s: &mut [T]) {
    for ((s, &a), &b) in s.iter_mut().zip(x).zip(r) {
        *s = a + b;
    }
}

/// The "add & norm" backward op: `(x, r, dy) → [ds | dw | db]` with `[w; b]` a constant it
/// holds (a CustomOp takes three inputs); `ds` is the layer norm's input gradient at
/// `s = x + r`, the gradient of both `x` and `r`.
struct AddLayerNormBackward {
    eps: f64,
    wb: Tensor,
}

impl CustomOp3 for AddLayerNormBackward {
    fn name(&self) -> &'static str {
        "tunelab-add-layer-norm-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (guard, lwb) = self.wb.storage_and_layout();
        let Storage::Cpu(swb) = &*guard else {
            return Err(KernelError::NotContiguous { op: OP, arg: "weight and bias" }.into());
        };
        with_real!(s1, OP, "x", |T| {
            let x = contiguous::<T>(s1, l1, OP, "x")?;
            let r = contiguous::<T>(s2, l2, OP, "residual")?;
            let dy = contiguous::<T>(s3, l3, OP, "grad")?;
            let wb = contiguous::<T>(swb, lwb, OP, "weight and bias")?;
            let (n, d) = (x.len(), wb.len() / 2);
            same_len(OP, r.len(), l2, ("x", n, l1))?;
            same_len(OP, dy.len(), l3, ("x", n, l1))?;
            let out = backward(x, Some(r), dy, &wb[..d], T::of(self.eps));
            Ok((T::wrap(out), Shape::from(n + 2 * d)))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let (guard, lwb) = self.wb.storage_and_layout();
        let Storage::Cuda(swb) = &*guard else {
            candle_core::bail!("fused CUDA add & norm backward: weight and bias are not on the GPU")
        };
        super::cuda::add_norm_bwd(self.eps, (s1, l1), (s2, l2), (s3, l3), (swb, lwb))
    }
}
