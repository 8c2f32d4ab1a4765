//! Where the DSL ends and Rust begins, both ways.
//!
//! - Rust cells inside tunelab: `%%rust` cells in the kernel and `:rust` lines in the REPL are
//!   compiled and run by evcxr ([`cells`], behind the `evcxr` cargo feature). A small
//!   std-only helper module, `tunelab_bridge` ([`prelude`]), is defined in every Rust context:
//!   it reads what `export` wrote and writes data sets that `data` can load.
//! - tunelab inside evcxr: `:dep tunelab = { path = "…" }`, then [`Session::exec`] returns an
//!   [`Output`] that evcxr displays as text, HTML tables and PNG charts ([`display`]).
//!
//! The files that cross are plain CSV ([`export`]), so either side can read them without the
//! other.
//!
//! [`Session::exec`]: crate::Session::exec

pub mod cells;
pub mod display;
pub mod export;
pub mod prelude;

pub use cells::RustCells;
pub use display::Output;
