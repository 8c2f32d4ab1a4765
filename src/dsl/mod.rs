//! The tunelab command language.
//!
//! One command per line: `verb args key=value …`. The [`table`] of verbs drives the
//! [`parse`]r, [`help`] and [`complete`]ion, so the three never disagree.
//!
//! ```
//! let cmds = tunelab::dsl::parse("optimizer adamw lr=2e-5; fit epochs=3").unwrap();
//! assert_eq!(cmds[1].name(), "fit");
//! assert_eq!(cmds[0].f64("lr"), Some(2e-5));
//! ```

pub mod complete;
mod error;
pub mod help;
mod lex;
mod parse;
mod span;
mod suggest;
pub mod table;
mod value;

pub use error::{ParseError, ParseErrorKind};
pub use lex::{continuation_at, Atom};
pub use parse::{parse, Command};
pub use span::{Span, Spanned};
pub use suggest::{did_you_mean, suggestion};
pub use value::{Bound, Kind, Value};
