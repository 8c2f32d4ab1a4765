//! Errors of the command language, each pointing at the column where the problem is.

use super::span::Span;

/// What kind of mistake a [`ParseError`] reports; tests and front-ends match on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// A string or list without its closing quote or bracket.
    Unterminated,
    /// Misplaced punctuation (`=` without a key, a stray `]`, a nested list).
    Syntax,
    /// The first word is not a verb.
    UnknownVerb,
    /// A `key=` the verb does not take.
    UnknownOption,
    /// The same `key=` twice.
    DuplicateOption,
    /// A value of the wrong type or out of range.
    BadValue,
    /// A required positional argument is missing.
    MissingArgument,
    /// More positional arguments than the verb takes.
    TooManyArguments,
}

/// A command-language error: a one-line message that names the problem and the fix, and
/// the span of the offending text.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// The class of mistake.
    pub kind: ParseErrorKind,
    /// The offending text.
    pub span: Span,
    /// The one-line message, with the fix.
    pub message: String,
}

impl ParseError {
    /// An error of `kind` at `span`.
    pub fn new(kind: ParseErrorKind, span: Span, message: String) -> ParseError {
        ParseError { kind, span, message }
    }
}
