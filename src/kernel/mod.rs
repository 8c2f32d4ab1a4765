//! The Jupyter kernel: the same [`Session`](crate::Session) behind the Jupyter messaging
//! protocol (5.3), so notebooks, JupyterLab, VS Code and nbclient drive tunelab.
//!
//! ```text
//!  shell ──► server (one request at a time) ──► execute ──► Engine (the session's thread)
//!  control ─► interrupt / shutdown                 │              │ Event*
//!  heartbeat ◄► echo                               ▼              ▼
//!  iopub ◄── status, execute_input, outputs ◄── render (Event → display_data, stream, error)
//! ```
//!
//! - [`connection`] — the connection file, and the wire format with its HMAC-SHA256 signature.
//! - [`server`] — binds the five channels and runs the message loops.
//! - [`engine`] — the session on its own thread, kept for the kernel's life; cooperative
//!   interrupts through the session's cancel flag.
//! - [`execute`] — one `execute_request`, in the protocol's order.
//! - [`render`] — events as Jupyter outputs (tables as HTML, plots as PNG + SVG, live progress).
//! - [`introspect`] — `complete`, `inspect`, `is_complete`, from the DSL's verb table.
//! - [`magic`] — `%time`, `%%time`, `%who`, `%reset`.
//! - [`history`] — the cells executed so far, for `history_request`.
//! - [`info`] — `kernel_info_reply`.
//! - [`install`] — `tunelab kernel install` / `uninstall` (the kernelspec from `kernel/`).
//!
//! **Invariants:** only this module knows about Jupyter; nothing here touches a tensor or
//! the session's state except through [`Session::run`](crate::Session::run) on the engine's
//! thread; a message whose signature does not verify is dropped (and logged) before anything
//! reads it; the reply to an `execute_request` is sent only after all of its outputs.

pub mod connection;
pub mod engine;
pub mod execute;
pub mod history;
pub mod info;
pub mod install;
pub mod introspect;
pub mod magic;
pub mod render;
pub mod server;

use std::path::{Path, PathBuf};

pub use install::{install, uninstall, Prefix};

/// Why the kernel could not start or the kernelspec could not be installed. Every message
/// is one line that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The connection file could not be read or parsed.
    #[error("cannot read the connection file '{}': {reason}", path.display())]
    ConnectionFile {
        /// The file.
        path: PathBuf,
        /// Why, with the fix.
        reason: String,
    },
    /// A channel's socket could not be bound.
    #[error(
        "cannot bind the {channel} channel on {endpoint}: {reason}; is another kernel using these ports?"
    )]
    Bind {
        /// shell, iopub, stdin, control or hb.
        channel: &'static str,
        /// The ZeroMQ endpoint.
        endpoint: String,
        /// What the transport said.
        reason: String,
    },
    /// The async runtime could not be started.
    #[error("cannot start the kernel's event loop: {0}")]
    Runtime(std::io::Error),
    /// Installing or removing the kernelspec failed.
    #[error("{0}")]
    Install(String),
}

/// Runs the kernel described by `connection_file` until a client asks it to shut down.
pub fn run(connection_file: &Path) -> Result<(), KernelError> {
    let info = connection::read_connection_file(connection_file)?;
    server::serve(info)
}
