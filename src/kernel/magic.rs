//! Kernel magics: lines that start with `%` talk to the kernel rather than the session.
//!
//! - `%%time` as a cell's first line: run the cell, then print its wall time.
//! - `%time COMMANDS`: run the commands on this line and print their wall time.
//! - `%who`: a table of what the session holds (device, model, data, training so far).
//! - `%reset`: start a new session (no model, no data, default settings).
//! - `%%rust` as a cell's first line: the rest of the cell is Rust, run by evcxr
//!   ([`crate::bridge::cells`]).
//!
//! A cell is split into [`Step`]s: the tunelab lines between magics run together (parsed
//! whole before any of them runs, as in a script), each magic on its own. An unknown magic
//! fails the cell before anything runs.

use crate::dsl::continuation_at;
use crate::session::Diagnostic;

/// One magic: how it is written and what it does.
#[derive(Debug)]
pub struct MagicSpec {
    /// The magic with its `%` or `%%`.
    pub name: &'static str,
    /// Usage line.
    pub usage: &'static str,
    /// One-line documentation.
    pub doc: &'static str,
}

/// Every magic the kernel knows (completion, `inspect` and error messages read this).
pub static MAGICS: &[MagicSpec] = &[
    MagicSpec {
        name: "%%time",
        usage: "%%time  (first line of a cell)",
        doc: "runs the cell, then prints its wall time",
    },
    MagicSpec {
        name: "%time",
        usage: "%time COMMANDS",
        doc: "runs the commands on this line, then prints their wall time",
    },
    MagicSpec {
        name: "%%rust",
        usage: "%%rust  (first line of a cell)",
        doc: "the rest of the cell is Rust, compiled and run by evcxr; variables persist between \
              Rust cells and `tunelab_bridge::history()` reads what `export history` wrote",
    },
    MagicSpec {
        name: "%who",
        usage: "%who",
        doc: "shows what the session holds: device, model, data, training so far",
    },
    MagicSpec {
        name: "%reset",
        usage: "%reset [-f]",
        doc: "starts a new session: no model, no data, default optimizer and settings",
    },
];

/// What a cell does, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Run tunelab source that starts at 1-based line `first_line` of the cell.
    Run {
        /// The source.
        src: String,
        /// Its first line's number in the cell.
        first_line: usize,
        /// Print its wall time afterwards (`%time`).
        timed: bool,
    },
    /// `%who`.
    Who,
    /// `%reset`.
    Reset,
    /// `%%rust`: Rust code for evcxr.
    Rust(String),
}

/// A cell split into steps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Print the whole cell's wall time at the end (`%%time`).
    pub timed: bool,
}

/// One line of a cell and whether the line before it was continued with `\`.
struct Line<'a> {
    /// 1-based line number.
    number: usize,
    /// Byte offset of the line in the cell.
    start: usize,
    text: &'a str,
    continued: bool,
}

fn lines(code: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut continued = false;
    for (i, raw) in code.split_inclusive('\n').enumerate() {
        let text = raw.strip_suffix('\n').unwrap_or(raw);
        out.push(Line { number: i + 1, start, text, continued });
        continued = ends_continued(text);
        start += raw.len();
    }
    out
}

/// Whether `line` ends with a `\` continuation (the REPL's rule).
pub fn ends_continued(line: &str) -> bool {
    line.rfind('\\').is_some_and(|i| continuation_at(&line[i..]).is_some())
}

/// The magic word a line starts with, if it is a magic line.
fn magic_word<'a>(line: &Line<'a>) -> Option<&'a str> {
    let t = line.text.trim_start();
    (!line.continued && t.starts_with('%')).then(|| t.split_whitespace().next().unwrap_or(t))
}

/// Splits a cell into steps; an unknown or misused magic is an error located in the cell.
pub fn plan(code: &str) -> Result<Plan, Diagnostic> {
    let mut plan = Plan::default();
    if let Some(rust) = rust_cell(code) {
        plan.steps.push(Step::Rust(rust.to_string()));
        return Ok(plan);
    }
    let mut chunk: Option<(usize, usize)> = None; // (byte start, first line)
    let flush = |chunk: &mut Option<(usize, usize)>, end: usize, steps: &mut Vec<Step>| {
        if let Some((start, first_line)) = chunk.take() {
            let src = &code[start..end];
            if !src.trim().is_empty() {
                steps.push(Step::Run { src: src.to_string(), first_line, timed: false });
            }
        }
    };
    for line in lines(code) {
        let Some(word) = magic_word(&line) else {
            chunk.get_or_insert((line.start, line.number));
            continue;
        };
        flush(&mut chunk, line.start, &mut plan.steps);
        let lead = line.text.len() - line.text.trim_start().len();
        let rest = line.text.trim_start()[word.len()..].trim();
        let fail = |message: String| Err(diagnostic(&line, lead, word.chars().count(), message));
        match word {
            "%%time" if line.number == 1 => plan.timed = true,
            "%%rust" => return fail("%%rust must be the first line of the cell".into()),
            "%%time" => return fail("%%time must be the first line of the cell".into()),
            "%time" if rest.is_empty() => {
                return fail("%time needs commands to time, e.g. `%time fit epochs=3`".into())
            }
            "%time" => {
                plan.steps.push(Step::Run { src: rest.to_string(), first_line: line.number, timed: true })
            }
            "%who" if rest.is_empty() => plan.steps.push(Step::Who),
            "%reset" if rest.is_empty() || rest == "-f" => plan.steps.push(Step::Reset),
            "%who" | "%reset" => return fail(format!("{word} takes no arguments")),
            other => {
                let names: Vec<&str> = MAGICS.iter().map(|m| m.name).collect();
                return fail(format!(
                    "unknown magic '{other}'{}; the kernel knows {}",
                    crate::dsl::suggestion(other, names.iter().copied()),
                    names.join(", ")
                ));
            }
        }
    }
    flush(&mut chunk, code.len(), &mut plan.steps);
    Ok(plan)
}

/// The Rust code of a cell whose first line is `%%rust` (nothing else on that line).
fn rust_cell(code: &str) -> Option<&str> {
    let (first, rest) = code.split_once('\n').unwrap_or((code, ""));
    (first.trim() == "%%rust").then_some(rest)
}

fn diagnostic(line: &Line<'_>, caret: usize, width: usize, message: String) -> Diagnostic {
    Diagnostic {
        message,
        line: line.number,
        col: line.text[..caret].chars().count() + 1,
        source_line: line.text.to_string(),
        caret: line.text[..caret].chars().count(),
        width,
    }
}

/// `code` with every magic blanked out (same byte offsets), for completion, inspection and
/// `is_complete`: `%time`/`%%time` become blanks before the commands they time; `%who`,
/// `%reset` and unknown magics become blank lines.
pub fn blank(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    for line in lines(code) {
        let blanked = match magic_word(&line) {
            Some(w @ ("%time" | "%%time")) => {
                let at = line.text.find(w).unwrap_or(0) + w.len();
                format!("{}{}", " ".repeat(at), &line.text[at..])
            }
            Some(_) => " ".repeat(line.text.len()),
            None => line.text.to_string(),
        };
        out.push_str(&blanked);
        if code.len() > line.start + line.text.len() {
            out.push('\n');
        }
    }
    out
}

/// The documentation of a magic, for `inspect`.
pub fn help(word: &str) -> Option<String> {
    let m = MAGICS.iter().find(|m| m.name == word)?;
    Some(format!("{} — {}\n\nusage: {}\n", m.name, m.doc, m.usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &str, first_line: usize, timed: bool) -> Step {
        Step::Run { src: src.into(), first_line, timed }
    }

    #[test]
    fn plain_cells_are_one_step() {
        let p = plan("seed 1\nfit \\\n  epochs=2\n").unwrap();
        assert_eq!(p.steps, [run("seed 1\nfit \\\n  epochs=2\n", 1, false)]);
        assert!(!p.timed);
        assert_eq!(plan("  \n").unwrap().steps, []);
    }

    #[test]
    fn magics_split_the_cell() {
        let p = plan("%%time\nseed 1\n%time fit epochs=2\n%who\neval\n%reset -f").unwrap();
        assert!(p.timed);
        assert_eq!(
            p.steps,
            [
                run("seed 1\n", 2, false),
                run("fit epochs=2", 3, true),
                Step::Who,
                run("eval\n", 5, false),
                Step::Reset
            ]
        );
        // A continued line is not a magic.
        assert_eq!(plan("predict \\\n%who").unwrap().steps, [run("predict \\\n%who", 1, false)]);
    }

    #[test]
    fn bad_magics_point_at_the_word() {
        let d = plan("seed 1\n  %tme fit").unwrap_err();
        assert_eq!((d.line, d.col, d.caret, d.width), (2, 3, 2, 4));
        assert!(d.message.starts_with("unknown magic '%tme' (did you mean '%time'?)"), "{}", d.message);
        assert!(plan("seed 1\n%%time").unwrap_err().message.contains("first line"));
        assert!(plan("%who x").unwrap_err().message.contains("no arguments"));
        assert!(plan("%time").is_err());
    }

    #[test]
    fn rust_cells_are_one_step() {
        let p = plan("%%rust\nfn f() -> i32 { 1 }\n% 2").unwrap();
        assert_eq!(p.steps, [Step::Rust("fn f() -> i32 { 1 }\n% 2".into())]);
        assert!(plan("seed 1\n%%rust").unwrap_err().message.contains("first line"));
    }

    #[test]
    fn blanking_keeps_offsets() {
        let code = "%%time\n%time fit ep\n%who\nseed 1";
        let b = blank(code);
        assert_eq!(b.len(), code.len());
        assert_eq!(b, "      \n      fit ep\n    \nseed 1");
        assert_eq!(blank("fit\n"), "fit\n");
    }
}
