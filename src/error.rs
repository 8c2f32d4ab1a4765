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

    /// A tensor operation failed; the message names the operation and shapes.
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
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

/// Shorthand for `Err(Error::invalid(format!(...)))`.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::invalid(format!($($arg)*)))
    };
}
pub(crate) use bail;
