//! `export`: the training record as a file other tools (and Rust cells) read.

use std::path::PathBuf;

use crate::dsl::{Command, Value};
use crate::error::{Error, Result};
use crate::session::{Event, Session, Sink};

/// Where `export` writes by default and where `tunelab_bridge` reads: `$TUNELAB_EXPORT_DIR`,
/// else `tunelab-export` in the working directory (absolute, so a Rust cell's child process
/// finds it wherever it runs).
pub(crate) fn export_dir() -> PathBuf {
    let dir =
        std::env::var_os("TUNELAB_EXPORT_DIR").map_or_else(|| PathBuf::from("tunelab-export"), PathBuf::from);
    std::path::absolute(&dir).unwrap_or(dir)
}

impl Session {
    /// `export history [file=PATH]`.
    pub(crate) fn export(&mut self, cmd: &Command, sink: &mut dyn Sink) -> Result<()> {
        let what = cmd.arg(0).and_then(Value::as_str).unwrap_or("history");
        debug_assert_eq!(what, "history", "the verb table allows only history");
        let path = cmd.str("file").map_or_else(|| export_dir().join("history.csv"), PathBuf::from);
        if self.history.steps.is_empty() && self.history.evals.is_empty() {
            return Err(Error::invalid("nothing to export yet: run `fit` (or `eval`) first").at(cmd.span));
        }
        let rows = crate::bridge::export::write_history(&self.history, &path)
            .map_err(|source| Error::Write { path: path.clone(), source }.at(cmd.span_of("file")))?;
        let shown =
            std::env::current_dir().ok().and_then(|cwd| path.strip_prefix(cwd).ok().map(PathBuf::from));
        sink.emit(Event::Text(format!(
            "exported history: {rows} rows (kind,step,epoch,split,metric,value) to {}{}",
            shown.as_deref().unwrap_or(&path).display(),
            if path == export_dir().join("history.csv") {
                " — in a %%rust cell: tunelab_bridge::history()"
            } else {
                ""
            }
        )));
        Ok(())
    }
}
