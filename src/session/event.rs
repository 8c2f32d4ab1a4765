//! What a session says: events a front-end renders, and the [`Sink`] it renders them with.
//!
//! The engine never prints. Each front-end (REPL, script runner, Jupyter kernel, evcxr
//! display) implements [`Sink`] once and maps every event to its medium.

use std::path::PathBuf;

use crate::plot::Figure;

/// One thing the session has to say.
#[derive(Clone, Debug)]
pub enum Event {
    /// The session is about to run this command (front-ends may echo it, e.g. in scripts).
    Echo(String),
    /// A line (or lines) of plain text.
    Text(String),
    /// A piece of text that continues the current line (generated tokens, as they come);
    /// a stream ends with a piece ending in a newline.
    Stream(String),
    /// A table of results.
    Table(Table),
    /// A chart, with the file the user asked for (`plot … file=PATH`), if any.
    Image(Image),
    /// Progress of long work (`fit`): start, updates, finish.
    Progress(Progress),
    /// Something the user should know that did not stop the command.
    Warning(String),
    /// A command failed; the session state is as it was before it.
    Error(Diagnostic),
}

/// Where events go. Implemented by every front-end, and by `Vec<Event>` for tests.
pub trait Sink {
    /// Receives one event.
    fn emit(&mut self, event: Event);
}

impl Sink for Vec<Event> {
    fn emit(&mut self, event: Event) {
        self.push(event);
    }
}

/// A table: a title, column names and rows of already formatted cells.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    /// Shown above the table.
    pub title: Option<String>,
    /// Column headings.
    pub columns: Vec<String>,
    /// Rows of cells, each as long as `columns`.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new<S: Into<String>>(columns: impl IntoIterator<Item = S>) -> Table {
        Table { title: None, columns: columns.into_iter().map(Into::into).collect(), rows: Vec::new() }
    }

    /// Sets the title.
    pub fn titled(mut self, title: impl Into<String>) -> Table {
        self.title = Some(title.into());
        self
    }

    /// Appends a row.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Plain-text rendering with aligned columns (numbers right-aligned), used by the
    /// terminal front-ends and as `text/plain` in Jupyter. Widths are terminal columns, so
    /// CJK text (two columns a character) lines up too.
    pub fn to_text(&self) -> String {
        use unicode_width::UnicodeWidthStr;
        let ncols = self.columns.len();
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.width()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(ncols) {
                widths[i] = widths[i].max(cell.width());
            }
        }
        let numeric: Vec<bool> = (0..ncols)
            .map(|i| {
                !self.rows.is_empty() && self.rows.iter().all(|r| r.get(i).is_none_or(|c| looks_numeric(c)))
            })
            .collect();
        let mut out = String::new();
        if let Some(t) = &self.title {
            out.push_str(t);
            out.push('\n');
        }
        let fmt_row = |cells: &[String], out: &mut String| {
            let mut line = String::new();
            for i in 0..ncols {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                let pad = widths[i] - cell.width();
                if i > 0 {
                    line.push_str("  ");
                }
                if numeric[i] {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        };
        fmt_row(&self.columns, &mut out);
        for row in &self.rows {
            fmt_row(row, &mut out);
        }
        out
    }
}

fn looks_numeric(cell: &str) -> bool {
    let c = cell.trim_start_matches(['+', '-']);
    !c.is_empty()
        && c.chars().next().is_some_and(|ch| ch.is_ascii_digit() || ch == '.')
        && c.parse::<f64>().is_ok()
}

/// A chart to show or write.
#[derive(Clone, Debug)]
pub struct Image {
    /// The rendered chart (PNG and SVG).
    pub figure: Figure,
    /// Where the user asked for it to be written (without extension), if anywhere.
    pub file: Option<PathBuf>,
}

/// Progress of a long task.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// What is running ("fit").
    pub task: String,
    /// Units done so far (steps).
    pub done: u64,
    /// Units in all.
    pub total: u64,
    /// A short status, e.g. "epoch 2/3 loss 0.0123".
    pub message: String,
    /// Set on the last event of the task.
    pub finished: bool,
}

/// A failed command, located in its source for carets and `FILE:LINE:COL` prefixes.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// The one-line message (problem and fix).
    pub message: String,
    /// 1-based line of the error within the source that was run.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// The source line, for a caret display.
    pub source_line: String,
    /// Character offset of the caret within `source_line`.
    pub caret: usize,
    /// Width of the caret underline in characters.
    pub width: usize,
}

impl Diagnostic {
    /// The source line and a `^^^` underline beneath the offending text, placed by terminal
    /// columns (a CJK character in a prompt or path is two columns wide).
    pub fn snippet(&self) -> String {
        use unicode_width::UnicodeWidthStr;
        let cols = |skip: usize, take: usize| {
            self.source_line.chars().skip(skip).take(take).collect::<String>().width()
        };
        // A caret past the end of the line (a missing argument) still gets one `^`.
        let under = if self.width == 0 { 0 } else { cols(self.caret, self.width).max(1) };
        format!("  {}\n  {}{}", self.source_line, " ".repeat(cols(0, self.caret)), "^".repeat(under))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_numbers_right() {
        let mut t = Table::new(["param", "value"]).titled("params");
        t.row(["w", "3.01"]);
        t.row(["bias", "-12.5"]);
        assert_eq!(t.to_text(), "params\nparam  value\nw       3.01\nbias   -12.5\n");
    }

    #[test]
    fn carets_sit_under_wide_characters() {
        let d = Diagnostic {
            message: "m".into(),
            line: 1,
            col: 10,
            source_line: "generate \"床前\" top_p=2".into(),
            caret: 14,
            width: 7,
        };
        assert_eq!(d.snippet(), "  generate \"床前\" top_p=2\n                  ^^^^^^^");
        let at_end = Diagnostic { source_line: "fit".into(), caret: 3, width: 1, ..d };
        assert_eq!(at_end.snippet(), "  fit\n     ^");
    }

    #[test]
    fn table_pads_wide_characters_by_terminal_columns() {
        let mut t = Table::new(["text", "label"]);
        t.row(["好吃", "pos"]);
        t.row(["tasty", "pos"]);
        // "好吃" is four columns wide: one space of padding to reach "tasty".
        assert_eq!(t.to_text(), "text   label\n好吃   pos\ntasty  pos\n");
    }
}
