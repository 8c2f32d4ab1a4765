//! Matrix products with their backward pass as one graph node: `x · wᵀ + b` (every dense
//! layer), `x · w + b` (GPT-2's `Conv1D`) and `q · kᵀ` (attention scores).
//!
//! Composed from candle's ops, a dense layer is six graph nodes (reshape, transpose,
//! matmul, broadcast, add, reshape), and candle's backward gives every node's every input a
//! fresh zero tensor and adds its gradient into it: four extra passes over the layer's output
//! and input for bookkeeping alone, and a gradient for the bias's broadcast copy as large as
//! the output. Here the layer is one node; its backward is three products (`dx = dy · w`,
//! `dw = dyᵀ · x`, `db = Σ_rows dy`), each written once, and skips the gradient of any input
//! that does not need one (a frozen weight costs no `dw`). The forward writes the bias into
//! the output before the product accumulates onto it, so the add is free.
//!
//! On the CPU the products go straight to `gemm` (the crate candle's CPU matmul calls, with
//! the same threads), for f32/f64. On CUDA the same nodes run candle's own storage ops
//! (cuBLAS, broadcast add, reduce) for any float dtype: what they save there is the
//! backward's extra kernel launches and allocations. Anything else takes the composite ops.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use super::{contiguous, fusable, with_real, KernelError, Real};
use crate::error::Result;

const OP: &str = "matmul";

/// At most this many rows make a product a matrix-vector one (see [`Gemm::run`]).
const GEMV_ROWS: usize = 4;
/// Columns of `B` one thread reads at least in a matrix-vector product.
const GEMV_MIN_COLS: usize = 256;
/// Column blocks of a product split across threads by hand start at multiples of this (a
/// whole number of the widest AVX-512 f32 vector).
const COL_ALIGN: usize = 16;
/// Below this many multiply-adds gemm runs a product on one thread (its default threading
/// threshold), so there is no serial packing to spread: such products are not split.
const THREADED_WORK: usize = 48 * 48 * 256;
/// From this many multiply-adds a product goes to the system BLAS when one is loaded
/// (below, its threads' start-up costs more than its kernels save).
const BLAS_WORK: usize = 64 * 64 * 64;

/// `x · wᵀ + b` over the last dimension of `x`, as `torch.nn.Linear` (`w`: `[out, in]`,
/// `b`: `[out]`); leading dimensions of `x` are kept. One fused node on CPU for f32/f64,
/// [`linear_composite`] otherwise.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    dense(x, w, b, true)
}

/// `x · op(w) + b` as one node (`op`: the transpose when `transposed`, `w` then `[out, in]`;
/// else `w` is `[in, out]`), or from candle's ops where the node does not apply.
fn dense(x: &Tensor, w: &Tensor, b: Option<&Tensor>, transposed: bool) -> Result<Tensor> {
    if !((fusable(x) || super::graph_op_on_cuda(x)) && dense_fits(x, w, b, transposed)) {
        return if transposed { linear_composite(x, w, b) } else { rows_times(x, w, b) };
    }
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    let op = Gemm { ta: false, tb: transposed };
    Ok(match b {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, op)?,
        None => x.apply_op2(&w, op)?,
    })
}

/// Whether `x · op(w) (+ b)` fits a one-node dense layer (`op`: the transpose when
/// `transposed`): `w` 2-D with `x`'s last dimension as its input size, `b` one value per
/// output, all of `x`'s dtype and on its device.
pub(super) fn dense_fits(x: &Tensor, w: &Tensor, b: Option<&Tensor>, transposed: bool) -> bool {
    let same = |t: &Tensor| t.dtype() == x.dtype() && t.device().same_device(x.device());
    let Ok((inputs, outputs)) = w.dims2().map(|(r, c)| if transposed { (c, r) } else { (r, c) }) else {
        return false;
    };
    let bias_ok = b.is_none_or(|b| same(b) && b.dims1().ok() == Some(outputs));
    x.rank() >= 2 && x.dims().last() == Some(&inputs) && same(w) && bias_ok
}

/// `x · wᵀ + b` from candle's ops.
pub fn linear_composite(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    rows_times(x, &w.t()?, b)
}

/// `x · m + b` from candle's ops, `m`: `[in, out]`, over the rows of `x`'s last dimension.
fn rows_times(x: &Tensor, m: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (inner, last) = dims.split_at(dims.len() - 1);
    let rows: usize = inner.iter().product();
    let y = x.reshape((rows, last[0]))?.matmul(m)?;
    let y = match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    let mut out = inner.to_vec();
    out.push(m.dim(1)?);
    Ok(y.reshape(out)?)
}

/// `x · w + b` over the last dimension of `x` with `w` stored `[in, out]` (GPT-2's
/// `Conv1D`); one fused node on CPU for f32/f64, candle's ops otherwise.
pub fn conv1d(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    dense(x, w, b, false)
}

/// `a · bᵀ` over the last two dimensions of two tensors with the same leading (batch)
/// dimensions: `[…, m, k] · [… , n, k]ᵀ → […, m, n]`, the attention scores `q · kᵀ`. One
/// fused node on CPU for f32/f64, `a.matmul(&b.t())` otherwise.
pub fn matmul_nt(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let batched = a.rank() >= 3 && a.rank() == b.rank() && {
        let (da, db) = (a.dims(), b.dims());
        let r = da.len();
        da[..r - 2] == db[..r - 2] && da[r - 1] == db[r - 1]
    };
    let device_ok = fusable(a) || super::graph_op_on_cuda(a);
    if !(device_ok && b.dtype() == a.dtype() && b.device().same_device(a.device()) && batched) {
        return Ok(a.matmul(&b.t()?)?);
    }
    Ok(a.contiguous()?.apply_op2(&b.contiguous()?, Gemm { ta: false, tb: true })?)
}

/// `C = op(A) · op(B) (+ a bias row)` over contiguous row-major inputs, where `op`
/// transposes the last two dimensions when `ta` / `tb` is set.
///
/// `A` is a batch of matrices `[…, r, c]`. `B` is either a batch of the same size, or one
/// matrix `[r, c]` shared by every row of `A`: then `A`'s leading dimensions fold into its
/// rows (a dense layer over `[batch, len, in]`). The output keeps `A`'s leading dimensions.
#[derive(Clone, Copy)]
pub(super) struct Gemm {
    pub(super) ta: bool,
    pub(super) tb: bool,
}

/// One product's sizes: `batch` products of `[m, k] · [k, n]`, with the element offset
/// from one batch to the next in each input (0: shared), and the output's shape.
struct Plan {
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    a_skip: usize,
    b_skip: usize,
    out: Shape,
}

impl Gemm {
    /// The sizes of `op(A) · op(B)` for inputs of `da` and `db` dimensions.
    fn plan(&self, da: &[usize], db: &[usize]) -> std::result::Result<Plan, KernelError> {
        let bad = || KernelError::Shape {
            op: OP,
            what: format!("cannot multiply {da:?}{} by {db:?}{}", t(self.ta), t(self.tb)),
        };
        fn t(on: bool) -> &'static str {
            if on {
                "ᵀ"
            } else {
                ""
            }
        }
        if da.len() < 2 || db.len() < 2 {
            return Err(bad());
        }
        let (ra, ca) = (da[da.len() - 2], da[da.len() - 1]);
        let (rb, cb) = (db[db.len() - 2], db[db.len() - 1]);
        let (k, n) = if self.tb { (cb, rb) } else { (rb, cb) };
        let shared = db.len() == 2;
        let (batch, m) = match (shared, self.ta) {
            // A's rows all meet the same B: fold the leading dimensions into the rows.
            (true, false) => (1, da[..da.len() - 1].iter().product::<usize>()),
            (true, true) if da.len() == 2 => (1, ca),
            (false, _) if da[..da.len() - 2] == db[..db.len() - 2] => {
                (da[..da.len() - 2].iter().product(), if self.ta { ca } else { ra })
            }
            _ => return Err(bad()),
        };
        let ka = if self.ta { ra } else { ca };
        if ka != k {
            return Err(bad());
        }
        let mut out = da[..da.len() - 2].to_vec();
        if !self.ta && shared {
            out.push(ra);
        } else {
            out.push(m);
        }
        out.push(n);
        Ok(Plan {
            batch,
            m,
            n,
            k,
            a_skip: ra * ca,
            b_skip: if shared { 0 } else { rb * cb },
            out: out.into(),
        })
    }

    /// The product on the CPU, `bias` (length `n`) added to every output row.
    fn run<T: Real>(
        &self,
        a: &[T],
        b: &[T],
        bias: Option<&[T]>,
        p: &Plan,
    ) -> std::result::Result<Vec<T>, KernelError> {
        let len = p.batch * p.m * p.n;
        if let Some(bias) = bias {
            if bias.len() != p.n {
                let what = format!("bias of {} for {} outputs", bias.len(), p.n);
                return Err(KernelError::Shape { op: OP, what });
            }
        }
        if p.k == 0 || len == 0 {
            let mut out = vec![T::zero(); len];
            if let Some(bias) = bias {
                out.chunks_exact_mut(p.n.max(1)).for_each(|row| row.copy_from_slice(bias));
            }
            return Ok(out);
        }
        // Strides of op(A) [m, k] and op(B) [k, n] in their row-major storage.
        let (a_rs, a_cs) = if self.ta { (1, p.m) } else { (p.k, 1) };
        let (b_rs, b_cs) = if self.tb { (1, p.k) } else { (p.n, 1) };
        let threads = candle_core::utils::get_num_threads();
        let parallelism =
            if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
        let mut out: Vec<T> = Vec::with_capacity(len);
        if let Some(bias) = bias {
            for _ in 0..p.batch * p.m {
                out.extend_from_slice(bias);
            }
        }
        // Addresses as integers, so the column blocks below can cross threads.
        let (dst, a_at, b_at) = (out.as_mut_ptr() as usize, a.as_ptr() as usize, b.as_ptr() as usize);
        // Columns `cols` of product `step`.
        let block = |step: usize, cols: std::ops::Range<usize>, parallelism: gemm::Parallelism| {
            // SAFETY: the plan's sizes come from the inputs' own dimensions and the slices
            // hold exactly their elements (`contiguous`); the block reads `A[step]` and
            // columns `cols` of `B[step]` (or of the shared `B`) within their slices, and
            // writes columns `cols` of the `m × n` block `step` of `out`'s capacity, which no
            // other block writes. Without a bias `read_dst` is false, so gemm only writes the
            // (uninitialised) block.
            unsafe {
                gemm::gemm(
                    p.m,
                    cols.len(),
                    p.k,
                    (dst as *mut T).add(step * p.m * p.n + cols.start),
                    1,
                    p.n as isize,
                    bias.is_some(),
                    (a_at as *const T).add(step * p.a_skip),
                    a_cs as isize,
                    a_rs as isize,
                    (b_at as *const T).add(step * p.b_skip + cols.start * b_cs),
                    b_cs as isize,
                    b_rs as isize,
                    T::one(),
                    T::one(),
                    false,
                    false,
                    false,
                    parallelism,
                );
            }
        };
        // A system BLAS, when one is loaded, takes every product past a matrix-vector one
        // whole, on its own threads (see `blas`).
        let blas = super::blas::get()
            .filter(|b| p.m > GEMV_ROWS && p.m * p.n * p.k >= BLAS_WORK && b.takes::<T>((p.m, p.n, p.k)));
        if let Some(blas) = blas {
            let (lda, ldb) = (if self.ta { p.m } else { p.k }, if self.tb { p.k } else { p.n });
            for step in 0..p.batch {
                // SAFETY: `takes` accepted `T` and the sizes (the filter above) and the
                // leading dimensions are among them; as for `block`, the plan's sizes address
                // `A[step]`, `B[step]` (or the shared `B`) within their slices and block
                // `step` of `out`'s capacity; without a bias the BLAS only writes it (beta 0).
                unsafe {
                    blas.gemm::<T>(
                        (p.m, p.n, p.k),
                        ((a_at as *const T).add(step * p.a_skip), lda, self.ta),
                        ((b_at as *const T).add(step * p.b_skip), ldb, self.tb),
                        ((dst as *mut T).add(step * p.m * p.n), p.n),
                        bias.is_some(),
                    )
                };
            }
            // SAFETY: the BLAS wrote every element (onto the bias rows, with one).
            unsafe { out.set_len(len) };
            return Ok(out);
        }
        // Split B's columns across threads by hand, one single-threaded gemm per block:
        // - A few rows (generation: one token) make gemm a matrix-vector product, which it
        //   runs on one thread, bound by reading B.
        // - With `op(B) = Bᵀ` (every dense layer's forward), gemm sees B as a row-major
        //   left operand (it computes Cᵀ = op(B)ᵀ · op(A)ᵀ), which it packs on the calling
        //   thread before its workers start: a serial pass per depth block, during which
        //   the other cores wait (a fifth of a llama step's matrix time on two cores). Split
        //   by columns, each thread packs its own part of B. Products too small for gemm
        //   to thread are left whole.
        let gemv = p.m <= GEMV_ROWS && p.n >= 2 * GEMV_MIN_COLS;
        let packs_b = self.tb && p.n >= threads * COL_ALIGN && p.m * p.n * p.k >= THREADED_WORK;
        if p.batch == 1 && threads > 1 && (gemv || packs_b) {
            use rayon::prelude::*;
            let width = match gemv {
                true => p.n.div_ceil(threads).max(GEMV_MIN_COLS),
                false => p.n.div_ceil(threads).next_multiple_of(COL_ALIGN),
            };
            (0..p.n.div_ceil(width))
                .into_par_iter()
                .for_each(|i| block(0, i * width..((i + 1) * width).min(p.n), gemm::Parallelism::None));
        } else {
            (0..p.batch).for_each(|step| block(step, 0..p.n, parallelism));
        }
        // SAFETY: every element of the `len` was written by gemm (or holds the bias gemm
        // accumulated onto).
        unsafe { out.set_len(len) };
        Ok(out)
    }

    pub(super) fn cpu(
        &self,
        (s1, l1): (&CpuStorage, &Layout),
        (s2, l2): (&CpuStorage, &Layout),
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        super::count_call();
        let p = self.plan(l1.dims(), l2.dims())?;
        with_real!(s1, OP, "a", |T| {
            let a = contiguous::<T>(s1, l1, OP, "a")?;
            let b = contiguous::<T>(s2, l2, OP, "b")?;
            let bias = match bias {
                Some((s3, l3)) => Some(contiguous::<T>(s3, l3, OP, "bias")?),
                None => None,
            };
            Ok((T::wrap(self.run(a, b, bias, &p)?), p.out))
        })
    }
}

#[cfg(feature = "cuda")]
impl Gemm {
    /// The product on CUDA through candle's own storage ops: one cuBLAS (strided batched)
    /// matmul over layouts that describe `op(A)` and `op(B)` in place, then the bias added
    /// by candle's broadcast add. Any float dtype candle's CUDA matmul takes.
    fn cuda(
        &self,
        (s1, l1): (&candle_core::CudaStorage, &Layout),
        (s2, l2): (&candle_core::CudaStorage, &Layout),
        bias: Option<(&candle_core::CudaStorage, &Layout)>,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        super::count_call();
        if !(l1.is_contiguous() && l2.is_contiguous()) {
            return Err(KernelError::NotContiguous { op: OP, arg: "a or b" }.into());
        }
        let p = self.plan(l1.dims(), l2.dims())?;
        let la = if self.ta { vec![p.a_skip, 1, p.m] } else { vec![p.a_skip, p.k, 1] };
        let lb = if self.tb { vec![p.b_skip, 1, p.k] } else { vec![p.b_skip, p.n, 1] };
        let la = Layout::new((p.batch, p.m, p.k).into(), la, l1.start_offset());
        let lb = Layout::new((p.batch, p.k, p.n).into(), lb, l2.start_offset());
        let mut y = s1.matmul(s2, (p.batch, p.m, p.n, p.k), &la, &lb)?;
        if let Some((s3, l3)) = bias {
            let rows = p.batch * p.m;
            let lb = Layout::new((rows, p.n).into(), vec![0, 1], l3.start_offset());
            y = y.binary_impl::<candle_core::op::Add>(s3, &Layout::contiguous((rows, p.n)), &lb)?;
        }
        Ok((y, p.out))
    }
}

impl CustomOp2 for Gemm {
    fn name(&self) -> &'static str {
        "tunelab-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.cpu((s1, l1), (s2, l2), None)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        self.cuda((s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _c: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (da, db, _) = backward(*self, a, b, None, grad)?;
        Ok((da, db))
    }
}

impl CustomOp3 for Gemm {
    fn name(&self) -> &'static str {
        "tunelab-linear"
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
        self.cpu((s1, l1), (s2, l2), Some((s3, l3)))
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
        self.cuda((s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        bias: &Tensor,
        _c: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        backward(*self, a, b, Some(bias), grad)
    }
}

/// Gradients of `C = A · op(B) (+ bias)` (the forms the public functions build: `op` the
/// transpose or not): `dA = dC · op(B)ᵀ`; `dB = dCᵀ · A` for `C = A · Bᵀ` and `Aᵀ · dC` for
/// `C = A · B`, summed over the rows of every batch when `B` is shared; `dbias = Σ_rows dC`.
/// Each only for an input that needs one.
pub(super) fn backward(
    op: Gemm,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    grad: &Tensor,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    debug_assert!(!op.ta, "only A · op(B) is built with a backward pass");
    let g = grad.contiguous()?;
    // Whether each input needs a gradient, before `detach` drops the graph from the copies
    // the products read.
    let (need_a, need_b) = (a.track_op(), b.track_op());
    let need_bias = bias.is_some_and(Tensor::track_op);
    let (weight, bias_input) = (b, bias);
    let (a, b) = (a.detach(), b.detach());
    let shared = b.rank() == 2;
    let da = if need_a {
        let back = Gemm { ta: false, tb: !op.tb };
        Some(g.apply_op2_no_bwd(&b, &back)?.reshape(a.shape())?)
    } else {
        None
    };
    // With a shared B, every row of A met it: fold the leading dimensions into rows.
    let rows2d = |t: &Tensor| -> candle_core::Result<Tensor> {
        let last = t.dims().last().copied().unwrap_or(1);
        t.reshape((t.elem_count() / last.max(1), last))
    };
    let db = if need_b {
        let lhs_t = Gemm { ta: true, tb: false };
        let (a, g) = if shared { (rows2d(&a)?, rows2d(&g)?) } else { (a, g.clone()) };
        Some(if op.tb { g.apply_op2_no_bwd(&a, &lhs_t)? } else { a.apply_op2_no_bwd(&g, &lhs_t)? })
    } else {
        None
    };
    let dbias = if need_bias { Some(rows2d(&g)?.apply_op1_no_bwd(&ColumnSum)?) } else { None };
    // A weight's and a bias's gradients go to the training step's sink when one is open.
    Ok((
        da,
        super::grad_sink::divert(weight, db)?,
        match bias_input {
            Some(bias) => super::grad_sink::divert(bias, dbias)?,
            None => dbias,
        },
    ))
}

/// Sums of the columns of a contiguous `[rows, n]` matrix: `[n]`.
struct ColumnSum;

impl CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "tunelab-column-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = l.dims().last().copied().unwrap_or(1).max(1);
        with_real!(s, OP, "grad", |T| {
            let x = contiguous::<T>(s, l, OP, "grad")?;
            Ok((T::wrap(column_sums(x, n)), Shape::from(n)))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        let n = l.dims().last().copied().unwrap_or(1).max(1);
        let rows = l.shape().elem_count() / n;
        let l = Layout::contiguous_with_offset((rows, n), l.start_offset());
        Ok((s.reduce_op(candle_core::op::ReduceOp::Sum, &l, &[0])?, Shape::from(n)))
    }
}

/// Column sums of row-major `x` with rows of `n`, in blocks of rows summed in parallel and
/// then in block order (the same bits for any number of threads).
fn column_sums<T: Real>(x: &[T], n: usize) -> Vec<T> {
    use rayon::prelude::*;
    let rows = super::rows_per_task(n);
    let partial = |block: &[T]| {
        let mut acc = vec![T::zero(); n];
        for row in block.chunks_exact(n) {
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v;
            }
        }
        acc
    };
    let parts: Vec<Vec<T>> = if x.len() < 2 * rows * n {
        x.chunks(rows * n).map(partial).collect()
    } else {
        x.par_chunks(rows * n).map(partial).collect()
    };
    let mut out = vec![T::zero(); n];
    for part in parts {
        for (a, v) in out.iter_mut().zip(part) {
            *a += v;
        }
    }
    out
}
