//! tunelab: fine-tune neural networks interactively from a terminal REPL, scripts and
//! Jupyter, with the model, optimizer state, data and history kept resident between
//! commands.
//!
//! Crate map (see ARCHITECTURE.md for the whole picture):
//! - [`dsl`]: the command language — lexer, parser, the verb table, help, completion.
//! - [`session`]: the engine — owns all state, executes commands, emits [`session::Event`]s.
//! - [`model`]: trainable models and their parameters; HF-layout save/load.
//! - [`data`]: reading, generating, splitting and batching data.
//! - [`train`]: optimizers, schedules, the update step and the fit loop.
//! - [`metrics`]: metrics and the training history.
//! - [`plot`]: charts as PNG and SVG bytes.
//! - [`host_memory`]: a global allocator that reuses freed large blocks (CPU training).
//! - [`uploads`]: a count of host→device copies, for tests of GPU residency.
//! - Front-ends: [`term`] (terminal rendering), [`repl`], [`script`], [`kernel`] (Jupyter); `bench`.
//!
//! ```
//! use tunelab::{Event, Session};
//! let mut s = Session::new();
//! let mut out: Vec<Event> = Vec::new();
//! s.run("data synthetic linear n=200; load linear init=zeros; fit epochs=2", &mut out).unwrap();
//! assert_eq!(s.history().epoch(), 2);
//! ```

pub mod bench;
pub mod bridge;
pub mod data;
pub mod device_memory;
pub mod dsl;
pub mod error;
mod files;
pub mod host_memory;
pub mod kernel;
pub mod metrics;
pub mod model;
pub mod plot;
pub mod repl;
pub mod script;
pub mod session;
pub mod term;
pub mod train;
pub mod uploads;

pub use error::{Error, Result};
pub use session::{Event, Flow, Session, Sink};
