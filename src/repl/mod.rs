//! The terminal REPL: rustyline with persistent history, completion, hints, multi-line
//! input and Ctrl-C that stops a fit but keeps the session.

mod helper;

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use rustyline::config::Configurer;
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{CompletionType, Config, Editor};

use crate::dsl::table::find_verb;
use crate::session::{Flow, Session};
use crate::term::TerminalSink;
pub use helper::TuneHelper;

/// Where the REPL keeps its history: `$TUNELAB_HISTORY`, else
/// `$XDG_STATE_HOME/tunelab/history`, else `~/.local/state/tunelab/history`.
pub fn history_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TUNELAB_HISTORY") {
        return Some(PathBuf::from(p));
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(state.join("tunelab").join("history"))
}

/// Runs the interactive loop until `quit` or Ctrl-D.
pub fn run(session: &mut Session, sink: &mut TerminalSink) -> rustyline::Result<()> {
    let colors = console::colors_enabled();
    let config = Config::builder()
        .history_ignore_space(true)
        .history_ignore_dups(true)?
        .max_history_size(5000)?
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .build();
    let mut rl: Editor<TuneHelper, FileHistory> = Editor::with_config(config)?;
    rl.set_helper(Some(TuneHelper { colors }));
    rl.set_completion_show_all_if_ambiguous(true);
    let history = history_path();
    if let Some(path) = &history {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = rl.load_history(path);
    }

    // Ctrl-C while a command runs stops a fit after its current step. At the prompt the
    // terminal is in raw mode, so Ctrl-C reaches rustyline instead and clears the line.
    let flag = session.cancel_flag();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));

    println!(
        "tunelab {} — `help` lists the commands, Tab completes, Ctrl-C stops a fit, Ctrl-D quits",
        env!("CARGO_PKG_VERSION")
    );
    let prompt = if colors { "\x1b[1;36mtunelab>\x1b[0m " } else { "tunelab> " };
    loop {
        match rl.readline(prompt) {
            Ok(line) => {
                if line.trim().is_empty() {
                    continue;
                }
                // `quit` is not kept: the first Up arrow of the next launch should bring back
                // the last real command, not a way out.
                if !is_quit(&line) {
                    let _ = rl.add_history_entry(line.as_str());
                    if let Some(path) = &history {
                        let _ = rl.append_history(path);
                    }
                }
                if let Some(code) = rust_line(&line) {
                    let _ = session.run_rust(code, sink);
                    continue;
                }
                if let Ok(Flow::Quit) = session.run(&line, sink) {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The Rust code of a `:rust CODE` line (run by evcxr, see [`crate::bridge::cells`]).
fn rust_line(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix(":rust")?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then(|| rest.trim())
}

/// Whether `line` is just `quit` (or an alias of it).
fn is_quit(line: &str) -> bool {
    find_verb(line.trim()).is_some_and(|v| v.name == "quit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lone_quit_is_kept_out_of_history() {
        assert!(is_quit("quit"));
        assert!(is_quit("  exit "));
        assert!(!is_quit("seed 1; quit"));
        assert!(!is_quit("seed 123"));
    }

    #[test]
    fn rust_lines_are_recognised() {
        assert_eq!(rust_line(":rust let x = 1;"), Some("let x = 1;"));
        assert_eq!(rust_line("  :rust"), Some(""));
        assert_eq!(rust_line(":rusty"), None);
        assert_eq!(rust_line("fit"), None);
    }
}
