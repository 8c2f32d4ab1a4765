//! Rust cells: `%%rust` in the kernel, `:rust` in the REPL, compiled and run by evcxr.
//!
//! evcxr runs each cell's code in a child process (this same binary, started again with
//! `EVCXR_IS_RUNTIME` set: `main` calls `evcxr::runtime_hook()` first), so variables, functions
//! and `:dep` crates persist from cell to cell, and a crash in a cell loses only the Rust
//! state, never the tunelab session. The evcxr context lives on its own thread, started at the
//! first Rust cell; the session talks to it over channels, so the session stays `Send` and an
//! interrupt can kill the child while a cell runs.
//!
//! Without the `evcxr` cargo feature a Rust cell is an error that says how to turn it on.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use crate::session::Event;

/// What a Rust cell produced, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum CellOutput {
    /// A line the cell printed on stdout.
    Stdout(String),
    /// A line the cell printed on stderr.
    Stderr(String),
    /// The cell's value (or an `evcxr_display` block), by MIME type (`text/plain`,
    /// `text/html`, `image/png` base64-encoded, ...).
    Display(Vec<(String, String)>),
}

/// Why a Rust cell failed.
#[derive(Debug, thiserror::Error)]
pub enum CellError {
    /// This build has no evcxr.
    #[error(
        "Rust cells need a tunelab built with the evcxr feature: \
         `cargo install --path . --features evcxr` (the default build leaves it out to save build time)"
    )]
    NotBuilt,
    /// evcxr could not start (no cargo/rustc on PATH, ...).
    #[error(
        "cannot start the Rust context: {0}; Rust cells need cargo and rustc on PATH (https://rustup.rs)"
    )]
    Start(String),
    /// The cell did not compile: evcxr's diagnostics.
    #[error("the Rust cell did not compile:\n{0}")]
    Compile(String),
    /// The cell panicked or failed at run time; its variables may be lost.
    #[error("the Rust cell failed: {0}")]
    Run(String),
    /// An interrupt stopped the cell; the Rust state was reset.
    #[error(
        "interrupted: the Rust cell was stopped and its variables are lost; the tunelab session is kept"
    )]
    Interrupted,
}

/// The Rust context of a session (started lazily).
#[derive(Default)]
pub struct RustCells {
    #[cfg(feature = "evcxr")]
    worker: Option<imp::Worker>,
}

impl std::fmt::Debug for RustCells {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RustCells")
    }
}

impl RustCells {
    /// Whether this build can run Rust cells.
    pub const AVAILABLE: bool = cfg!(feature = "evcxr");

    /// Runs `code` (Rust statements, items, or evcxr `:commands`), passing each output to
    /// `emit` as it comes. `export_dir` is where `tunelab_bridge` reads and writes; `cancel`
    /// stops the cell when set.
    pub fn run(
        &mut self,
        code: &str,
        export_dir: PathBuf,
        cancel: &AtomicBool,
        emit: &mut dyn FnMut(CellOutput),
    ) -> Result<(), CellError> {
        #[cfg(feature = "evcxr")]
        {
            if self.worker.is_none() {
                self.worker = Some(imp::Worker::start(&export_dir)?);
            }
            let worker = self.worker.as_mut().expect("started above");
            let result = worker.run(code, cancel, emit);
            if matches!(result, Err(CellError::Interrupted)) {
                // The child was killed: evcxr restarts it on the next cell, without the
                // helper module, so start afresh then.
                self.worker = None;
            }
            result
        }
        #[cfg(not(feature = "evcxr"))]
        {
            let _ = (code, export_dir, cancel, emit);
            Err(CellError::NotBuilt)
        }
    }
}

/// Turns a cell's output into session events: printed lines as they come, a value as its
/// text and, when it has one, its chart.
pub fn to_events(out: CellOutput) -> Vec<Event> {
    match out {
        CellOutput::Stdout(line) => vec![Event::Stream(format!("{line}\n"))],
        CellOutput::Stderr(line) => vec![Event::Warning(line)],
        CellOutput::Display(parts) => {
            let get = |m: &str| parts.iter().find(|(k, _)| k == m).map(|(_, v)| v.as_str());
            let mut events = Vec::new();
            if let Some(text) = get("text/plain").map(str::trim_end).filter(|t| !t.is_empty()) {
                events.push(Event::Text(text.to_string()));
            }
            let png = get("image/png").and_then(|b| {
                let clean: String = b.split_whitespace().collect();
                data_encoding::BASE64.decode(clean.as_bytes()).ok()
            });
            if let Some(png) = png {
                events.push(Event::Image(crate::session::Image {
                    figure: crate::plot::Figure {
                        name: "rust".into(),
                        title: "Rust cell output".into(),
                        png,
                        svg: String::new(),
                    },
                    file: None,
                }));
            }
            events
        }
    }
}

#[cfg(feature = "evcxr")]
mod imp {
    //! The evcxr context on its own thread.

    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::{CellError, CellOutput};

    type Reply = Sender<Message>;

    enum Message {
        Out(CellOutput),
        Done(Result<(), CellError>),
    }

    pub(super) struct Worker {
        jobs: Sender<(String, Reply)>,
        child: Arc<Mutex<std::process::Child>>,
    }

    impl Worker {
        pub(super) fn start(export_dir: &Path) -> Result<Worker, CellError> {
            let (jobs, rx) = channel::<(String, Reply)>();
            let (ready_tx, ready_rx) = channel();
            let prelude = super::super::prelude::source(export_dir);
            std::thread::Builder::new()
                .name("tunelab-rust-cells".into())
                .spawn(move || serve(rx, ready_tx, prelude))
                .map_err(|e| CellError::Start(e.to_string()))?;
            let child =
                ready_rx.recv().map_err(|_| CellError::Start("the Rust context thread stopped".into()))??;
            Ok(Worker { jobs, child })
        }

        pub(super) fn run(
            &mut self,
            code: &str,
            cancel: &AtomicBool,
            emit: &mut dyn FnMut(CellOutput),
        ) -> Result<(), CellError> {
            let (tx, rx) = channel();
            self.jobs
                .send((code.to_string(), tx))
                .map_err(|_| CellError::Run("the Rust context stopped".into()))?;
            let mut killed = false;
            loop {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(Message::Out(o)) => emit(o),
                    Ok(Message::Done(r)) => return if killed { Err(CellError::Interrupted) } else { r },
                    Err(RecvTimeoutError::Timeout) => {
                        if !killed && cancel.load(Ordering::SeqCst) {
                            killed = true;
                            let _ = self.child.lock().unwrap_or_else(|e| e.into_inner()).kill();
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        return Err(CellError::Run("the Rust context stopped".into()))
                    }
                }
            }
        }
    }

    /// The thread that owns the evcxr context.
    fn serve(
        jobs: Receiver<(String, Reply)>,
        ready: Sender<Result<Arc<Mutex<std::process::Child>>, CellError>>,
        prelude: String,
    ) {
        let (mut ctx, outputs) = match evcxr::CommandContext::new() {
            Ok(c) => c,
            Err(e) => {
                let _ = ready.send(Err(CellError::Start(e.to_string())));
                return;
            }
        };
        // Lines the child prints go to whichever cell is running.
        let current: Arc<Mutex<Option<Reply>>> = Arc::default();
        for (stream, stderr) in [(outputs.stdout, false), (outputs.stderr, true)] {
            let current = current.clone();
            std::thread::spawn(move || {
                for line in stream {
                    if let Some(tx) = &*current.lock().unwrap_or_else(|e| e.into_inner()) {
                        let out = if stderr { CellOutput::Stderr(line) } else { CellOutput::Stdout(line) };
                        let _ = tx.send(Message::Out(out));
                    }
                }
            });
        }
        if let Err(e) = ctx.execute(&prelude) {
            let _ =
                ready.send(Err(CellError::Start(format!("the tunelab_bridge helper did not build: {e}"))));
            return;
        }
        let _ = ready.send(Ok(ctx.process_handle()));
        for (code, reply) in jobs {
            *current.lock().unwrap_or_else(|e| e.into_inner()) = Some(reply.clone());
            let result = ctx.execute(&code);
            // evcxr flushes the child's stdout into the channel before `execute` returns; give
            // the forwarding threads a moment to pass the last lines on.
            std::thread::sleep(Duration::from_millis(20));
            *current.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let done = match result {
                Ok(out) => {
                    let mut parts: Vec<(String, String)> = out.content_by_mime_type.into_iter().collect();
                    parts.sort();
                    if !parts.is_empty() {
                        let _ = reply.send(Message::Out(CellOutput::Display(parts)));
                    }
                    Ok(())
                }
                Err(evcxr::Error::CompilationErrors(errors)) => {
                    let text: Vec<String> = errors
                        .iter()
                        .filter(|e| e.level() == "error")
                        .map(|e| {
                            let rendered = e.rendered();
                            if rendered.trim().is_empty() {
                                e.message()
                            } else {
                                rendered
                            }
                        })
                        .collect();
                    Err(CellError::Compile(text.join("\n")))
                }
                Err(evcxr::Error::SubprocessTerminated(m)) => Err(CellError::Run(m)),
                Err(e) => Err(CellError::Run(e.to_string())),
            };
            let _ = reply.send(Message::Done(done));
        }
    }
}
