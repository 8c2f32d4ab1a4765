//! The script runner: `tunelab run FILE.tune` and `tunelab -c "cmd; cmd"`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use crate::session::Session;
use crate::term::TerminalSink;

/// Exit status for an error in the script (usage errors, failed commands).
pub const EXIT_ERROR: u8 = 2;
/// Exit status when Ctrl-C stopped the script.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Installs a Ctrl-C handler that stops a running `fit` after its current step; a second
/// Ctrl-C while the first is pending exits at once.
pub fn install_interrupt(session: &Session) {
    let flag = session.cancel_flag();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted twice: exiting");
            std::process::exit(EXIT_INTERRUPTED as i32);
        }
    });
}

/// Runs `source` (named `origin` in messages) on `session`. The whole text is parsed
/// first, so a syntax error anywhere stops it before any command runs.
pub fn run_source(session: &mut Session, source: &str, sink: &mut TerminalSink) -> ExitCode {
    match session.run(source, sink) {
        Ok(_) if session.log().last().is_some_and(|e| e.outcome == crate::session::Outcome::Interrupted) => {
            ExitCode::from(EXIT_INTERRUPTED)
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(EXIT_ERROR),
    }
}

/// Runs a `.tune` file; errors are printed as `FILE:LINE:COL: message`.
pub fn run_file(session: &mut Session, path: &Path, sink: &mut TerminalSink) -> ExitCode {
    let source = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot read script '{}': {e}; check the path", path.display());
            return ExitCode::from(EXIT_ERROR);
        }
    };
    sink.origin = Some(path.display().to_string());
    run_source(session, &source, sink)
}
