//! Session events as Jupyter outputs: the one place the kernel turns an [`Event`] into
//! iopub content.
//!
//! | event | output |
//! |---|---|
//! | `Text` | `stream` stdout |
//! | `Warning` | `stream` stderr |
//! | `Table` | `display_data` text/plain + text/html `<table>`; a table that ends a cell is its `execute_result` (`Out[n]`) |
//! | `Image` | `display_data` image/png (base64) + image/svg+xml (+ the files, when `file=` asked) |
//! | `Progress` | one `display_data` with a `display_id`, then `update_display_data` (≤ 10/s, and always the last) |
//! | `Error` | `error` (ename `TunelabError`, the one-line message, the source line and a caret) |
//! | `Echo` | nothing (the cell is already on screen) |

use std::time::{Duration, Instant};

use data_encoding::BASE64;
use jupyter_protocol::{
    DisplayData, ErrorOutput, ExecuteResult, ExecutionCount, JupyterMessageContent, Media, MediaType,
    StreamContent, Transient, UpdateDisplayData,
};

use crate::session::{Diagnostic, Image, Progress, Table};
use crate::Event;

/// The least time between two updates of a progress display.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Longest error message or source line shown in an `error` output, in characters.
const MAX_SHOWN: usize = 2_000;
/// Longest text kept per cell for `history_request` with `output=true`.
const MAX_HISTORY_OUTPUT: usize = 100_000;
/// Width of the text progress bar, in characters.
const BAR: usize = 30;

/// A live progress display.
struct ProgressDisplay {
    id: String,
    sent_at: Instant,
    /// The latest state not yet shown (throttled).
    pending: Option<Progress>,
}

/// Turns one cell's events into iopub content, in order.
pub struct Renderer {
    execution_count: usize,
    /// Added to diagnostics' line numbers (the cell line a run's source starts at, minus 1).
    line_offset: usize,
    progress: Option<ProgressDisplay>,
    /// The last table, held back until the next event shows whether it ends the cell.
    held: Option<Table>,
    /// The first error of the cell, for the reply.
    error: Option<ErrorOutput>,
    /// The cell's plain-text output, for the history.
    text: String,
}

impl Renderer {
    /// A renderer for the cell with this execution count.
    pub fn new(execution_count: usize) -> Renderer {
        Renderer {
            execution_count,
            line_offset: 0,
            progress: None,
            held: None,
            error: None,
            text: String::new(),
        }
    }

    /// Sets where in the cell the next source starts (1-based line), for error locations.
    pub fn set_first_line(&mut self, line: usize) {
        self.line_offset = line.saturating_sub(1);
    }

    /// The content to publish for `event`, in order.
    pub fn event(&mut self, event: Event, now: Instant) -> Vec<JupyterMessageContent> {
        let mut out = Vec::new();
        if !matches!(event, Event::Echo(_)) {
            if let Some(t) = self.held.take() {
                out.push(table_display(&t).into());
            }
        }
        match event {
            Event::Echo(_) => {}
            Event::Text(t) => {
                self.keep_text(&t);
                out.push(StreamContent::stdout(&format!("{t}\n")).into());
            }
            Event::Warning(w) => out.push(StreamContent::stderr(&format!("warning: {w}\n")).into()),
            Event::Stream(piece) => {
                if self.text.len() < MAX_HISTORY_OUTPUT {
                    self.text.push_str(&piece);
                }
                out.push(StreamContent::stdout(&piece).into());
            }
            Event::Table(t) => {
                self.keep_text(&t.to_text());
                self.held = Some(t);
            }
            Event::Image(image) => {
                out.push(image_display(&image).into());
                if let Some(note) = write_files(&image) {
                    out.push(note);
                }
            }
            Event::Progress(p) => out.extend(self.progress(p, now)),
            Event::Error(d) => {
                let err = error_output(&d, self.line_offset);
                if self.error.is_none() {
                    self.error = Some(err.clone());
                }
                out.push(err.into());
            }
        }
        out
    }

    /// When a throttled progress update is due, if one is waiting.
    pub fn deadline(&self) -> Option<Instant> {
        let p = self.progress.as_ref()?;
        p.pending.as_ref().map(|_| p.sent_at + PROGRESS_INTERVAL)
    }

    /// The waiting progress update, if any (call when [`Renderer::deadline`] has passed).
    pub fn flush_progress(&mut self, now: Instant) -> Vec<JupyterMessageContent> {
        let Some(display) = self.progress.as_mut() else { return Vec::new() };
        let Some(p) = display.pending.take() else { return Vec::new() };
        display.sent_at = now;
        vec![UpdateDisplayData::new(progress_media(&p), &display.id).into()]
    }

    fn progress(&mut self, p: Progress, now: Instant) -> Vec<JupyterMessageContent> {
        let Some(display) = self.progress.as_mut() else {
            if p.finished {
                return Vec::new();
            }
            let id = format!("tunelab-progress-{}", uuid::Uuid::new_v4());
            let mut first = DisplayData::new(progress_media(&p));
            first.transient = Some(Transient { display_id: Some(id.clone()) });
            self.progress = Some(ProgressDisplay { id, sent_at: now, pending: None });
            return vec![first.into()];
        };
        if p.finished {
            let id = display.id.clone();
            self.progress = None;
            return vec![UpdateDisplayData::new(progress_media(&p), &id).into()];
        }
        if now.duration_since(display.sent_at) >= PROGRESS_INTERVAL {
            display.sent_at = now;
            display.pending = None;
            vec![UpdateDisplayData::new(progress_media(&p), &display.id).into()]
        } else {
            display.pending = Some(p);
            Vec::new()
        }
    }

    /// The cell is over: the last progress state, the held table (as the cell's
    /// `execute_result` when `ok`, else as a display) and, when interrupted, an `error`.
    pub fn finish(&mut self, ok: bool, interrupted: bool, now: Instant) -> Vec<JupyterMessageContent> {
        let mut out = self.flush_progress(now);
        self.progress = None;
        if let Some(t) = self.held.take() {
            if ok {
                let mut result =
                    ExecuteResult::new(ExecutionCount::new(self.execution_count), table_media(&t));
                result.transient = Some(Transient { display_id: None });
                out.push(result.into());
            } else {
                out.push(table_display(&t).into());
            }
        }
        if interrupted {
            let err = ErrorOutput {
                ename: "Interrupted".into(),
                evalue: "stopped at a step boundary; the session keeps the weights of the last step \
                         (`undo` returns to before the command)"
                    .into(),
                traceback: vec![format!(
                    "\x1b[1;33mInterrupted\x1b[0m: stopped at a step boundary; the session keeps the weights \
                     of the last step (`undo` returns to before the command)"
                )],
            };
            self.error.get_or_insert(err.clone());
            out.push(err.into());
        }
        out
    }

    /// A line of stdout from the kernel itself (timings, notes); unlike a session's text it
    /// keeps a held table as the cell's result.
    pub fn note(&mut self, text: &str) -> JupyterMessageContent {
        self.keep_text(text);
        StreamContent::stdout(&format!("{text}\n")).into()
    }

    /// The first error of the cell (or the interruption), for the `execute_reply`.
    pub fn error(&self) -> Option<&ErrorOutput> {
        self.error.as_ref()
    }

    /// The cell's plain-text output so far (stdout text and tables), for the history.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn keep_text(&mut self, t: &str) {
        if self.text.len() < MAX_HISTORY_OUTPUT {
            self.text.push_str(t.trim_end());
            self.text.push('\n');
        }
    }
}

fn table_media(t: &Table) -> Media {
    Media::new(vec![MediaType::Plain(t.to_text().trim_end().to_string()), MediaType::Html(table_html(t))])
}

fn table_display(t: &Table) -> DisplayData {
    DisplayData::new(table_media(t))
}

/// A table as an HTML `<table>`: numeric columns right-aligned, text left-aligned (notebook
/// styles right-align every cell otherwise), the title as a one-line caption.
pub fn table_html(t: &Table) -> String {
    let numeric: Vec<bool> = (0..t.columns.len())
        .map(|i| !t.rows.is_empty() && t.rows.iter().all(|r| r.get(i).is_none_or(|c| is_number(c))))
        .collect();
    let align = |i: usize| {
        if numeric.get(i).copied().unwrap_or(false) {
            " style=\"text-align:right\""
        } else {
            " style=\"text-align:left\""
        }
    };
    let mut html = String::from("<table class=\"tunelab\">");
    if let Some(title) = &t.title {
        html.push_str(&format!(
            "<caption style=\"text-align:left;white-space:nowrap\"><b>{}</b></caption>",
            escape(title)
        ));
    }
    html.push_str("<thead><tr>");
    for (i, c) in t.columns.iter().enumerate() {
        html.push_str(&format!("<th{}>{}</th>", align(i), escape(c)));
    }
    html.push_str("</tr></thead><tbody>");
    for row in &t.rows {
        html.push_str("<tr>");
        for (i, c) in row.iter().enumerate() {
            html.push_str(&format!("<td{}>{}</td>", align(i), escape(c)));
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
}

fn is_number(cell: &str) -> bool {
    let c = cell.trim_start_matches(['+', '-']);
    c.chars().next().is_some_and(|ch| ch.is_ascii_digit() || ch == '.') && c.parse::<f64>().is_ok()
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn image_display(image: &Image) -> DisplayData {
    let f = &image.figure;
    let mut media = vec![MediaType::Png(BASE64.encode(&f.png))];
    // Images from Rust cells come as PNG only.
    if !f.svg.is_empty() {
        media.push(MediaType::Svg(f.svg.clone()));
    }
    media.push(MediaType::Plain(format!("<plot: {}>", f.title)));
    DisplayData::new(Media::new(media))
}

/// Writes the figure to the files `plot … file=PATH` asked for; a line saying where (or why
/// not).
fn write_files(image: &Image) -> Option<JupyterMessageContent> {
    let stem = image.file.as_ref()?;
    let (png, svg) = (stem.with_extension("png"), stem.with_extension("svg"));
    let written = (|| {
        if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&png, &image.figure.png)?;
        std::fs::write(&svg, &image.figure.svg)
    })();
    Some(match written {
        Ok(()) => {
            StreamContent::stdout(&format!("plot saved: {} (and {})\n", png.display(), svg.display())).into()
        }
        Err(e) => StreamContent::stderr(&format!(
            "warning: cannot write the plot to {}: {e}; check the directory is writable\n",
            png.display()
        ))
        .into(),
    })
}

/// The text and HTML of a progress display.
fn progress_media(p: &Progress) -> Media {
    let total = p.total.max(1);
    let filled = ((p.done.min(total) as usize) * BAR) / total as usize;
    let status = if !p.finished {
        p.message.clone()
    } else if p.done < p.total {
        "stopped".to_string()
    } else {
        "done".to_string()
    };
    let plain = format!(
        "{} {}{} {}/{} steps · {status}",
        p.task,
        "█".repeat(filled),
        "░".repeat(BAR - filled),
        p.done,
        p.total
    );
    let html = format!(
        "<div class=\"tunelab-progress\"><progress value=\"{}\" max=\"{}\" style=\"width:24em\"></progress> \
         <code>{} {}/{} steps · {}</code></div>",
        p.done,
        total,
        escape(&p.task),
        p.done,
        p.total,
        escape(&status)
    );
    Media::new(vec![MediaType::Plain(plain), MediaType::Html(html)])
}

/// An `error` output for a failed command: the message, where it is in the cell, the
/// source line and a caret under the offending text (long lines clipped around the caret).
pub fn error_output(d: &Diagnostic, line_offset: usize) -> ErrorOutput {
    let message = clip(&d.message, MAX_SHOWN);
    let mut traceback = vec![format!("\x1b[1;31mTunelabError\x1b[0m: {message}")];
    if !d.source_line.trim().is_empty() {
        let (line, caret) = window(&d.source_line, d.caret, MAX_SHOWN / 2);
        let width = d.width.clamp(1, MAX_SHOWN / 2);
        traceback.push(format!("  --> cell line {}, column {}", d.line + line_offset, d.col));
        traceback.push(format!("  {line}"));
        traceback.push(format!("  {}\x1b[31m{}\x1b[0m", " ".repeat(caret), "^".repeat(width)));
    }
    ErrorOutput { ename: "TunelabError".into(), evalue: message, traceback }
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max).collect();
    s.push('…');
    s
}

/// At most `width` characters of `line` around character `caret`; the caret's new position.
fn window(line: &str, caret: usize, width: usize) -> (String, usize) {
    let n = line.chars().count();
    if n <= width {
        return (line.to_string(), caret);
    }
    let start = caret.saturating_sub(width / 2).min(n - width);
    let mut shown: String = line.chars().skip(start).take(width).collect();
    let mut caret = caret - start;
    if start > 0 {
        shown.insert(0, '…');
        caret += 1;
    }
    if start + width < n {
        shown.push('…');
    }
    (shown, caret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::Figure;

    fn kinds(out: &[JupyterMessageContent]) -> Vec<&str> {
        out.iter().map(|c| c.message_type()).collect()
    }

    fn progress(done: u64, finished: bool) -> Event {
        Event::Progress(Progress {
            task: "fit".into(),
            done,
            total: 100,
            message: format!("loss {done}"),
            finished,
        })
    }

    #[test]
    fn text_warnings_and_tables() {
        let mut r = Renderer::new(3);
        let now = Instant::now();
        assert!(r.event(Event::Echo("seed 1".into()), now).is_empty());
        let out = r.event(Event::Text("seed 1".into()), now);
        assert_eq!(serde_json::to_value(&out[0]).unwrap()["text"], "seed 1\n");
        let mut t = Table::new(["param", "value"]).titled("a <b>");
        t.row(["w", "3.5"]);
        assert!(r.event(Event::Table(t.clone()), now).is_empty(), "held until the cell's end");
        let out = r.event(Event::Warning("careful".into()), now);
        assert_eq!(kinds(&out), ["display_data", "stream"]);
        let html = serde_json::to_value(&out[0]).unwrap()["data"]["text/html"].as_str().unwrap().to_string();
        assert!(html.contains("<b>a &lt;b&gt;</b></caption>"), "{html}");
        assert!(html.contains("<td style=\"text-align:left\">w</td>"), "{html}");
        assert!(html.contains("<td style=\"text-align:right\">3.5</td>"), "{html}");
        assert_eq!(serde_json::to_value(&out[1]).unwrap()["name"], "stderr");
        r.event(Event::Table(t), now);
        let out = r.finish(true, false, now);
        assert_eq!(kinds(&out), ["execute_result"]);
        let v = serde_json::to_value(&out[0]).unwrap();
        assert_eq!(v["execution_count"], 3);
        assert!(v["transient"].is_object());
        assert!(r.text().contains("3.5"), "{}", r.text());
    }

    #[test]
    fn progress_is_one_display_then_throttled_updates() {
        let mut r = Renderer::new(1);
        let t0 = Instant::now();
        let out = r.event(progress(0, false), t0);
        assert_eq!(kinds(&out), ["display_data"]);
        let id = serde_json::to_value(&out[0]).unwrap()["transient"]["display_id"].clone();
        assert!(id.as_str().unwrap().starts_with("tunelab-progress-"));
        // Within the interval: held back, and due at the interval's end.
        assert!(r.event(progress(10, false), t0 + Duration::from_millis(10)).is_empty());
        assert_eq!(r.deadline(), Some(t0 + PROGRESS_INTERVAL));
        let out = r.flush_progress(t0 + PROGRESS_INTERVAL);
        assert_eq!(kinds(&out), ["update_display_data"]);
        assert_eq!(serde_json::to_value(&out[0]).unwrap()["transient"]["display_id"], id);
        assert_eq!(r.deadline(), None);
        let out = r.event(progress(50, false), t0 + Duration::from_millis(250));
        assert_eq!(kinds(&out), ["update_display_data"]);
        // The last state always shows.
        let out = r.event(progress(100, true), t0 + Duration::from_millis(260));
        let v = serde_json::to_value(&out[0]).unwrap();
        assert!(v["data"]["text/plain"].as_str().unwrap().ends_with("100/100 steps · done"), "{v}");
        assert!(v["data"]["text/html"].as_str().unwrap().contains("<progress value=\"100\" max=\"100\""));
        // A second fit gets a display of its own.
        let out = r.event(progress(0, false), t0 + Duration::from_millis(270));
        assert_eq!(kinds(&out), ["display_data"]);
        assert_ne!(serde_json::to_value(&out[0]).unwrap()["transient"]["display_id"], id);
    }

    #[test]
    fn images_carry_png_and_svg() {
        let figure = Figure {
            name: "loss".into(),
            title: "loss".into(),
            png: vec![137, 80, 78, 71],
            svg: "<svg/>".into(),
        };
        let mut r = Renderer::new(1);
        let out = r.event(Event::Image(Image { figure, file: None }), Instant::now());
        let v = serde_json::to_value(&out[0]).unwrap();
        assert_eq!(v["data"]["image/png"], "iVBORw==");
        assert_eq!(v["data"]["image/svg+xml"], "<svg/>");
    }

    #[test]
    fn errors_show_the_line_and_a_caret_and_stay_short() {
        let d = Diagnostic {
            message: "unknown option 'epoch' for 'fit'".into(),
            line: 1,
            col: 5,
            source_line: "fit epoch=3".into(),
            caret: 4,
            width: 5,
        };
        let e = error_output(&d, 2);
        assert_eq!(e.ename, "TunelabError");
        assert_eq!(e.evalue, "unknown option 'epoch' for 'fit'");
        assert_eq!(e.traceback[1], "  --> cell line 3, column 5");
        assert_eq!(e.traceback[2], "  fit epoch=3");
        assert_eq!(e.traceback[3], "      \x1b[31m^^^^^\x1b[0m");
        let long = "x".repeat(10_000_000);
        let d =
            Diagnostic { message: long.clone(), source_line: long, caret: 5_000_000, width: 10_000_000, ..d };
        let e = error_output(&d, 0);
        assert!(e.traceback.iter().all(|l| l.len() < 10 * MAX_SHOWN));
        assert!(e.evalue.chars().count() <= MAX_SHOWN + 1);
    }

    #[test]
    fn interrupted_cells_end_with_an_error_output() {
        let mut r = Renderer::new(1);
        let out = r.finish(false, true, Instant::now());
        assert_eq!(kinds(&out), ["error"]);
        assert_eq!(r.error().unwrap().ename, "Interrupted");
    }
}
