//! An optional system BLAS for the CPU's large f32/f64 matrix products.
//!
//! The fused dense layers ([`super::linear`]) run their products on the `gemm` crate, the
//! one candle's CPU matmul calls: portable, and within reach of the best BLAS kernels in
//! the forward products, but not in a whole training step. With Intel's MKL (the BLAS
//! PyTorch's CPU wheels carry), a short SmolLM2-135M fit ran 21–35% faster on a 2-core
//! AVX-512 machine (2–13% in its steady steps); GPT-2 small and MiniLM gained nothing, and
//! OpenBLAS measured no faster than `gemm` (benches/RESULTS.md, 2026-12-08).
//! So a BLAS is opt-in:
//!
//! - `TUNELAB_BLAS=PATH` loads that library: any CBLAS with the standard 32-bit-integer
//!   interface, e.g. MKL's `libmkl_rt.so` (`pip install mkl` puts it in the environment's
//!   `lib/`), OpenBLAS's `libopenblas.so.0`, or the `scipy-openblas32` wheel's
//!   `libscipy_openblas.so` (its symbols carry a `scipy_` prefix, found too).
//! - Unset (or `off`), every product stays on `gemm`.
//!
//! The library runs each product whole on its own threads, as many as candle uses
//! (`RAYON_NUM_THREADS`); products of a few rows (generation's matrix-vector ones) and
//! small ones stay on `gemm`. What was loaded shows in the `device` command and in `tunelab
//! bench`'s JSON ([`describe`]); a library that cannot be loaded is reported once at start-up
//! ([`load_warning`]) and the products stay on `gemm`.

use std::any::TypeId;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// `cblas_?gemm`'s signature (row/column-major and transpose flags as CBLAS enums).
type GemmFn<T> = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    T,
    *const T,
    c_int,
    *const T,
    c_int,
    T,
    *mut T,
    c_int,
);

/// `CblasRowMajor`, `CblasNoTrans`, `CblasTrans`.
const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

/// A loaded CBLAS.
pub(crate) struct Blas {
    /// Keeps the functions below valid.
    _library: libloading::Library,
    sgemm: GemmFn<f32>,
    dgemm: GemmFn<f64>,
    /// What [`describe`] reports: the library, and its own configuration string if it has one.
    name: String,
}

/// The process's BLAS: `Ok(None)` when none is wanted, `Err` when `TUNELAB_BLAS` names a
/// library that cannot be used.
static BLAS: OnceLock<Result<Option<Blas>, String>> = OnceLock::new();

fn loaded() -> &'static Result<Option<Blas>, String> {
    BLAS.get_or_init(|| match std::env::var("TUNELAB_BLAS") {
        Ok(v) if matches!(v.as_str(), "off" | "none" | "0" | "") => Ok(None),
        Ok(path) => open(&path).map(Some).map_err(|why| {
            format!(
                "TUNELAB_BLAS={path}: {why}; point it at a CBLAS library such as libmkl_rt.so, or unset it"
            )
        }),
        Err(_) => Ok(None),
    })
}

/// Products run on the BLAS so far in this process (tests check the BLAS path ran).
static CALLS: AtomicUsize = AtomicUsize::new(0);

/// How many products the BLAS has run in this process.
pub fn calls() -> usize {
    CALLS.load(Ordering::Relaxed)
}

/// The BLAS the CPU's large products run on, if one is loaded.
pub(crate) fn get() -> Option<&'static Blas> {
    loaded().as_ref().ok().and_then(Option::as_ref)
}

/// What runs the CPU's large matrix products: the BLAS loaded, else `gemm`.
pub fn describe() -> String {
    match loaded() {
        Ok(Some(b)) => b.name.clone(),
        _ => "gemm".into(),
    }
}

/// Why the library `TUNELAB_BLAS` names could not be loaded, if it could not: one line with
/// the fix, for the front-ends to print at start-up.
pub fn load_warning() -> Option<String> {
    loaded().as_ref().err().cloned()
}

/// Opens `name` and finds `cblas_sgemm`/`cblas_dgemm` in it, bare or with the
/// `scipy_openblas` wheels' `scipy_` prefix.
fn open(name: &str) -> Result<Blas, String> {
    // SAFETY: loading a shared library runs its initialisers; the libraries meant here
    // (BLAS implementations) only set up their tables and threads.
    let library = unsafe { libloading::Library::new(name) }.map_err(|e| {
        // libloading's message is "dlopen failed"; the loader's own reason is its source.
        let why = std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
        format!("cannot load it ({why})")
    })?;
    // SAFETY (the lookups below): a symbol's address is only read here, not called.
    let prefix = ["", "scipy_"]
        .into_iter()
        .find(|p| unsafe { library.get::<*const c_void>(format!("{p}cblas_sgemm\0").as_bytes()) }.is_ok())
        .ok_or_else(|| "it has no cblas_sgemm".to_string())?;
    // SAFETY: the CBLAS functions have the signatures of `GemmFn` (the CBLAS standard's
    // LP64 interface, 32-bit integers); the library outlives the pointers (kept in `Blas`).
    let (sgemm, dgemm) = unsafe {
        let s = *library
            .get::<GemmFn<f32>>(format!("{prefix}cblas_sgemm\0").as_bytes())
            .map_err(|e| e.to_string())?;
        let d = *library
            .get::<GemmFn<f64>>(format!("{prefix}cblas_dgemm\0").as_bytes())
            .map_err(|e| e.to_string())?;
        // As many threads as candle's (see the module's docs). Both take a C `int`.
        let threads = c_int::try_from(candle_core::utils::get_num_threads()).unwrap_or(1);
        for set in ["openblas_set_num_threads", "MKL_Set_Num_Threads"] {
            if let Ok(f) = library.get::<unsafe extern "C" fn(c_int)>(format!("{prefix}{set}\0").as_bytes()) {
                f(threads);
            }
        }
        (s, d)
    };
    // SAFETY: OpenBLAS's `openblas_get_config` returns a static NUL-terminated string.
    let config = unsafe {
        library.get::<unsafe extern "C" fn() -> *const std::ffi::c_char>(
            format!("{prefix}openblas_get_config\0").as_bytes(),
        )
    }
    .ok()
    .map(|f| unsafe { std::ffi::CStr::from_ptr(f()) }.to_string_lossy().into_owned());
    let name = match config {
        Some(c) => format!("{name} ({c})"),
        None => name.to_string(),
    };
    Ok(Blas { _library: library, sgemm, dgemm, name })
}

impl Blas {
    /// Whether [`Blas::gemm`] takes an `m×k · k×n` product of `T`: f32 or f64, every size
    /// within the BLAS's 32-bit integers.
    pub(crate) fn takes<T: 'static>(&self, (m, n, k): (usize, usize, usize)) -> bool {
        let real = [TypeId::of::<f32>(), TypeId::of::<f64>()].contains(&TypeId::of::<T>());
        real && [m, n, k, m * k, k * n, m * n].into_iter().all(|v| c_int::try_from(v).is_ok())
    }

    /// `C (m×n, row stride ldc) ← A·B (+ C when accumulate)`, where `A` is `m×k` (stored
    /// transposed when `ta`, leading dimension `lda`) and `B` is `k×n` (stored transposed
    /// when `tb`, leading dimension `ldb`), all row-major.
    ///
    /// # Safety
    /// [`Blas::takes`] must accept `T` and the sizes, and the leading dimensions must be
    /// among them (each is `m`, `n` or `k`). The operands must address `m×k`, `k×n` and
    /// `m×n` elements in bounds of live allocations, and `C` must not overlap `A` or `B`.
    /// Without `accumulate`, `C` is only written (it may be uninitialised).
    pub(crate) unsafe fn gemm<T: 'static>(
        &self,
        (m, n, k): (usize, usize, usize),
        (a, lda, ta): (*const T, usize, bool),
        (b, ldb, tb): (*const T, usize, bool),
        (c, ldc): (*mut T, usize),
        accumulate: bool,
    ) {
        debug_assert!(self.takes::<T>((m, n, k)) && [lda, ldb, ldc].iter().all(|v| [m, n, k].contains(v)));
        CALLS.fetch_add(1, Ordering::Relaxed);
        let (m, n, k) = (m as c_int, n as c_int, k as c_int);
        let (lda, ldb, ldc) = (lda as c_int, ldb as c_int, ldc as c_int);
        let ta = if ta { TRANS } else { NO_TRANS };
        let tb = if tb { TRANS } else { NO_TRANS };
        if TypeId::of::<T>() == TypeId::of::<f32>() {
            let beta = if accumulate { 1.0 } else { 0.0 };
            (self.sgemm)(ROW_MAJOR, ta, tb, m, n, k, 1.0, a.cast(), lda, b.cast(), ldb, beta, c.cast(), ldc);
        } else {
            let beta = if accumulate { 1.0 } else { 0.0 };
            (self.dgemm)(ROW_MAJOR, ta, tb, m, n, k, 1.0, a.cast(), lda, b.cast(), ldb, beta, c.cast(), ldc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_that_is_missing_or_no_blas_says_so() {
        let missing = open("/nonexistent/libopenblas.so.0").err().expect("no such file");
        assert!(missing.starts_with("cannot load it ("), "{missing}");
        // The C library loads everywhere tunelab runs and has no CBLAS in it.
        let not_blas = open("libc.so.6").err().expect("libc has no sgemm");
        assert_eq!(not_blas, "it has no cblas_sgemm");
    }
}
