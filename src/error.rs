//! The library's error type. Every message is one line that names the problem and the fix.

use std::path::PathBuf;

use crate::dsl::{ParseError, Span};

/// Result with tunelab's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a command can fail with. The session state is unchanged after any of them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text is not a valid command.
    #[error(transparent)]
    Parse(#[from] ParseError),

    /// The command is valid but cannot run now or with these values (no model yet, a
    /// column that is not there, a shape that does not fit, …). `span` points at the
    /// offending argument when there is one.
    #[error("{message}")]
    Invalid {
        /// Problem and fix.
        message: String,
        /// The offending text, if known.
        span: Option<Span>,
    },

    /// Reading a file failed.
    #[error("cannot read '{}': {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why, with the fix.
        reason: String,
    },

    /// Writing a file failed.
    #[error("cannot write '{}': {source}; check the directory exists and is writable", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The disk, a quota or the process's file-size limit ran out while writing.
    #[error(
        "disk full / file too large while saving to '{}': free space or choose another directory",
        path.display()
    )]
    DiskFull {
        /// What was being saved (the directory of a `save`).
        path: PathBuf,
    },

    /// A bug: a command panicked. The session caught it and kept its state.
    #[error("internal error in {verb}: {message} — the session state is kept; please report this")]
    Internal {
        /// The verb whose handler panicked.
        verb: String,
        /// The panic message.
        message: String,
    },

    /// A chart could not be drawn.
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),

    /// Another error, located at the command text it concerns (see [`Error::at`]).
    #[error("{source}")]
    At {
        /// The error.
        source: Box<Error>,
        /// The offending text.
        span: Span,
    },

    /// A tensor operation failed; the message names the operation and shapes (without the
    /// backtrace candle appends when `RUST_BACKTRACE` is set: an error is one line).
    #[error("tensor error: {}", without_backtrace(.0))]
    Tensor(#[from] candle_core::Error),

    /// The accelerator ran out of memory during a command (CUDA's
    /// `CUDA_ERROR_OUT_OF_MEMORY`, cuBLAS/cuRAND allocation failures). Made from a
    /// [`Error::Tensor`] or [`Error::Internal`] by [`Error::device_memory`] where
    /// `Session::execute` returns; the state is kept, as for every error.
    #[error(
        "out of device memory in {verb}: use a smaller batch (`batch 8`), accumulate gradients \
         (`fit accumulate=4`), `precision bf16` or freeze more layers; the session state is kept"
    )]
    OutOfDeviceMemory {
        /// The verb that ran out.
        verb: String,
    },
}

impl Error {
    /// A command that cannot run as asked: `message` says why and what to do.
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid { message: message.into(), span: None }
    }

    /// A file that exists but cannot be used (truncated, damaged, of another kind, or with
    /// fields of the wrong type): names the file, the first line of `why`, and the fix.
    pub fn damaged(path: impl Into<PathBuf>, why: impl std::fmt::Display) -> Error {
        let why = why.to_string();
        let why = why.lines().next().unwrap_or_default().trim_end_matches('.');
        Error::Read {
            path: path.into(),
            reason: format!(
                "{why}; the file is truncated, damaged or of another kind: restore it (save again, or copy it from the original model)"
            ),
        }
    }

    /// Points the error at `span`, unless it already points somewhere.
    pub fn at(self, span: Span) -> Error {
        match self {
            Error::Invalid { message, span: None } => Error::Invalid { message, span: Some(span) },
            e if e.span().is_some() => e,
            e => Error::At { source: Box::new(e), span },
        }
    }

    /// The one place a device's out-of-memory error becomes [`Error::OutOfDeviceMemory`]:
    /// a tensor error or a caught panic whose text carries CUDA's out-of-memory codes.
    /// Every other error is returned as it is. `Session::execute` applies it to each
    /// command's result, so the user sees one line with the fix, not a driver dump.
    pub fn device_memory(self, verb: &str) -> Error {
        let out_of_memory = match &self {
            Error::Tensor(e) => is_out_of_device_memory(&e.to_string()),
            Error::Internal { message, .. } => is_out_of_device_memory(message),
            Error::At { .. } => false,
            _ => return self,
        };
        match self {
            Error::At { source, span } => source.device_memory(verb).at(span),
            _ if out_of_memory => Error::OutOfDeviceMemory { verb: verb.to_string() },
            other => other,
        }
    }

    /// The span of the offending text, when the error knows it.
    pub fn span(&self) -> Option<Span> {
        match self {
            Error::Parse(p) => Some(p.span),
            Error::Invalid { span, .. } => *span,
            Error::At { span, .. } => Some(*span),
            _ => None,
        }
    }
}

/// Whether an error text is a CUDA allocation failure: cudarc writes driver errors as
/// `DriverError(CUDA_ERROR_OUT_OF_MEMORY, "out of memory")`, cuBLAS's as
/// `CublasError(CUBLAS_STATUS_ALLOC_FAILED)`, cuRAND's as
/// `CurandError(CURAND_STATUS_ALLOCATION_FAILED)`; candle adds context around them.
fn is_out_of_device_memory(text: &str) -> bool {
    const CODES: [&str; 4] = [
        "CUDA_ERROR_OUT_OF_MEMORY",
        "CUBLAS_STATUS_ALLOC_FAILED",
        "CURAND_STATUS_ALLOCATION_FAILED",
        "out of memory",
    ];
    CODES.iter().any(|code| text.contains(code))
}

/// A candle error's message without the backtrace it carries when `RUST_BACKTRACE` is set.
fn without_backtrace(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => without_backtrace(inner),
        other => other.to_string(),
    }
}

/// Shorthand for `Err(Error::invalid(format!(...)))`.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::invalid(format!($($arg)*)))
    };
}
pub(crate) use bail;

#[cfg(test)]
mod tests {
    use super::*;

    /// A tensor error with the text candle's CUDA backend gives for a failed allocation.
    fn cuda_error(text: &str) -> Error {
        Error::Tensor(candle_core::Error::Msg(text.to_string()))
    }

    #[test]
    fn cuda_out_of_memory_becomes_one_line_with_the_fix() {
        let texts = [
            r#"DriverError(CUDA_ERROR_OUT_OF_MEMORY, "out of memory")"#,
            "CublasError(CUBLAS_STATUS_ALLOC_FAILED)",
            "CurandError(CURAND_STATUS_ALLOCATION_FAILED)",
        ];
        for text in texts {
            let e = cuda_error(text).device_memory("fit");
            assert!(matches!(e, Error::OutOfDeviceMemory { ref verb } if verb == "fit"), "{text}: {e}");
            let message = e.to_string();
            assert_eq!(message.lines().count(), 1, "{message}");
            for fix in ["smaller batch", "accumulate=", "freeze", "state is kept"] {
                assert!(message.contains(fix), "'{message}' lacks '{fix}'");
            }
        }
    }

    #[test]
    fn a_panic_that_ran_out_of_memory_is_mapped_too() {
        let panic = Error::Internal {
            verb: "eval".into(),
            message: r#"called `Result::unwrap()` on an `Err` value: DriverError(CUDA_ERROR_OUT_OF_MEMORY, "out of memory")"#
                .into(),
        };
        assert!(matches!(panic.device_memory("eval"), Error::OutOfDeviceMemory { .. }));
        let located = cuda_error("CublasError(CUBLAS_STATUS_ALLOC_FAILED)").at(Span::new(4, 9));
        let mapped = located.device_memory("fit");
        assert!(
            matches!(&mapped, Error::At { source, .. } if matches!(**source, Error::OutOfDeviceMemory { .. }))
        );
        assert_eq!(mapped.span(), Some(Span::new(4, 9)));
    }

    #[test]
    fn a_tensor_error_is_one_line_even_with_a_backtrace() {
        let inner = candle_core::Error::Msg("shape mismatch in add".into());
        let e = Error::Tensor(candle_core::Error::WithBacktrace {
            inner: Box::new(inner),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        });
        assert_eq!(e.to_string(), "tensor error: shape mismatch in add");
    }

    #[test]
    fn other_errors_are_left_alone() {
        let shape = cuda_error("shape mismatch in matmul, lhs: [2, 3], rhs: [4, 5]").device_memory("fit");
        assert!(matches!(shape, Error::Tensor(_)));
        // A user's text that mentions memory is not a device error.
        let user = Error::invalid("column 'out of memory' not found").device_memory("data");
        assert!(matches!(user, Error::Invalid { .. }));
    }
}
