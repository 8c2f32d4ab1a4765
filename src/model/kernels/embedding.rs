//! The embedding lookup `table[ids]` as one node whose backward adds the rows' gradients
//! straight into the table's gradient.
//!
//! Through candle's `index_select`, the backward zero-fills a gradient the size of the
//! table, then `index_add` copies it to add the rows in: for a 50,257 × 768 token table,
//! two fresh 154 MB tensors and two passes over them each step to place a few hundred rows.
//! A table tied to the output layer then has two parts, added by the training step in a
//! third pass. Here, while a [`GradSink`](super::GradSink) is open (during `fit`), the rows
//! are added in place into the gradient the tied output layer already gave the sink, or
//! into one fresh zeroed table; with no sink open, the backward returns that table.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

use super::{contiguous, fusable, with_real, KernelError, Real};
use crate::error::Result;

const OP: &str = "embedding";

/// Rows of the matrix `table` (`[rows, width]`) for integer `ids` of any shape: the result
/// has the shape of `ids` plus `width`. One fused node on the CPU for f32/f64 tables and
/// u32/i64 ids; otherwise candle's `index_select`.
pub fn embedding(ids: &Tensor, table: &Tensor) -> Result<Tensor> {
    let mut shape = ids.dims().to_vec();
    shape.push(table.dim(1)?);
    let flat = ids.flatten_all()?;
    let fits = fusable(table)
        && table.rank() == 2
        && matches!(ids.dtype(), DType::U32 | DType::I64)
        && ids.device().same_device(table.device());
    let rows = if fits {
        table.contiguous()?.apply_op2(&flat.contiguous()?, Embedding)?
    } else {
        table.index_select(&flat, 0)?
    };
    Ok(rows.reshape(shape)?)
}

/// The ids of a contiguous u32/i64 storage as row numbers, each checked against `rows`.
fn row_numbers(s: &CpuStorage, l: &Layout, rows: usize) -> candle_core::Result<Vec<usize>> {
    let (start, end) = l.contiguous_offsets().ok_or(KernelError::NotContiguous { op: OP, arg: "ids" })?;
    let ids: Vec<i64> = match s {
        CpuStorage::U32(v) => v[start..end].iter().map(|&i| i as i64).collect(),
        CpuStorage::I64(v) => v[start..end].to_vec(),
        other => {
            let dtype = candle_core::backend::BackendStorage::dtype(other);
            return Err(KernelError::DType { op: OP, arg: "ids", dtype }.into());
        }
    };
    ids.into_iter()
        .map(|i| match usize::try_from(i) {
            Ok(i) if i < rows => Ok(i),
            _ => {
                let what = format!(
                    "id {i} is outside the table's {rows} rows: is the tokenizer the model's own? \
                     (load the tokenizer.json saved with the model)"
                );
                Err(KernelError::Shape { op: OP, what }.into())
            }
        })
        .collect()
}

/// The ids of tensor `ids` (on the CPU) as row numbers of a table with `rows` rows.
fn tensor_row_numbers(ids: &Tensor, rows: usize) -> candle_core::Result<Vec<usize>> {
    let (storage, layout) = ids.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(s) => row_numbers(s, layout, rows),
        _ => Err(candle_core::Error::Msg(format!("fused kernel {OP}: ids are not on the CPU"))),
    }
}

/// Adds row `r` of `grad` (`[ids.len(), width]`) into row `ids[r]` of `table`, in the
/// order of `ids` (so repeated ids sum in a fixed order).
fn add_rows<T: Real>(table: &mut [T], ids: &[usize], grad: &[T], width: usize) {
    for (&id, g) in ids.iter().zip(grad.chunks_exact(width)) {
        for (t, &g) in table[id * width..(id + 1) * width].iter_mut().zip(g) {
            *t += g;
        }
    }
}

/// The forward op: `(table, ids) → table[ids]`, `[ids.len(), width]`.
struct Embedding;

impl CustomOp2 for Embedding {
    fn name(&self) -> &'static str {
        "tunelab-embedding"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        super::count_call();
        let (rows, width) = l1.shape().dims2()?;
        let ids = row_numbers(s2, l2, rows)?;
        with_real!(s1, OP, "table", |T| {
            let table = contiguous::<T>(s1, l1, OP, "table")?;
            let mut out: Vec<T> = Vec::with_capacity(ids.len() * width);
            for &id in &ids {
                out.extend_from_slice(&table[id * width..(id + 1) * width]);
            }
            Ok((T::wrap(out), Shape::from((ids.len(), width))))
        })
    }

    fn bwd(
        &self,
        table: &Tensor,
        ids: &Tensor,
        _rows: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (rows, width) = table.dims2()?;
        let ids = tensor_row_numbers(ids, rows)?;
        let dw = match table.dtype() {
            DType::F32 => table_grad::<f32>(table, &ids, grad, width)?,
            DType::F64 => table_grad::<f64>(table, &ids, grad, width)?,
            dtype => return Err(KernelError::DType { op: OP, arg: "table", dtype }.into()),
        };
        Ok((dw, None))
    }
}

/// The table's gradient from the rows' gradient `grad`: into the open sink (`None`) or as
/// a tensor for candle's store.
fn table_grad<T: Real>(
    table: &Tensor,
    ids: &[usize],
    grad: &Tensor,
    width: usize,
) -> candle_core::Result<Option<Tensor>> {
    // A few hundred rows: reading them out costs nothing next to the table.
    let grad = grad.flatten_all()?.to_vec1::<T>()?;
    super::grad_sink::add_into(table, |dw: &mut [T]| add_rows(dw, ids, &grad, width))
}
