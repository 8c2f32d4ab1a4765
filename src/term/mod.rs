//! Rendering session events in a terminal: the one place the REPL and the script runner
//! turn [`Event`]s into text, colours, progress bars and plot files.

use std::io::Write;
use std::path::{Path, PathBuf};

use console::Style;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::session::{Diagnostic, Event, Image, Progress, Sink};

/// A [`Sink`] that prints to stdout/stderr and writes plots to files.
pub struct TerminalSink {
    /// Directory plots go to when `plot` is not given `file=`.
    pub plot_dir: PathBuf,
    /// Name of the script being run, for `FILE:LINE:COL:` error prefixes (`None` in the REPL).
    pub origin: Option<String>,
    /// Print each command before running it (scripts with `--echo`, the demo).
    pub echo: bool,
    colors: bool,
    bar: Option<ProgressBar>,
    out: Box<dyn Write + Send>,
}

impl TerminalSink {
    /// A sink printing to stdout, with colours when stdout is a terminal and `NO_COLOR` is
    /// not set.
    pub fn new(plot_dir: PathBuf, origin: Option<String>) -> TerminalSink {
        TerminalSink {
            plot_dir,
            origin,
            echo: false,
            colors: console::colors_enabled(),
            bar: None,
            out: Box::new(std::io::stdout()),
        }
    }

    fn style(&self, s: Style) -> Style {
        if self.colors {
            s.force_styling(true)
        } else {
            Style::new().force_styling(false)
        }
    }

    /// Prints a line to stdout, above the progress bar if one is showing.
    fn line(&mut self, text: &str) {
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.suspend(|| {
                let _ = writeln!(self.out, "{text}");
                let _ = self.out.flush();
            }),
            _ => {
                let _ = writeln!(self.out, "{text}");
                let _ = self.out.flush();
            }
        }
    }

    /// Prints a piece of a line (streamed text) and flushes it so it shows at once.
    fn piece(&mut self, text: &str) {
        let _ = write!(self.out, "{text}");
        let _ = self.out.flush();
    }

    /// Prints a line to stderr, above the progress bar if one is showing.
    fn eline(&mut self, text: &str) {
        let _ = self.out.flush();
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    fn progress(&mut self, p: Progress) {
        if p.finished {
            if let Some(bar) = self.bar.take() {
                bar.finish_and_clear();
            }
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(Some(p.total), ProgressDrawTarget::stderr_with_hz(10));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} {bar:30.cyan/blue} {pos}/{len} steps · {msg} [{elapsed_precise} < {eta}]",
                )
                .expect("valid template")
                .progress_chars("█▉▊▋▌▍▎▏ "),
            );
            bar
        });
        bar.set_prefix(p.task.clone());
        bar.set_length(p.total);
        bar.set_position(p.done);
        bar.set_message(p.message);
    }

    fn image(&mut self, image: Image) {
        let stem = image.file.clone().unwrap_or_else(|| self.plot_dir.join(&image.figure.name));
        match write_figure(&stem, &image) {
            Ok((png, svg)) => {
                let label = self.style(Style::new().green()).apply_to("plot");
                self.line(&format!(
                    "{label} {}: {} (and {})",
                    image.figure.title,
                    png.display(),
                    svg.display()
                ));
            }
            Err(e) => {
                let label = self.style(Style::new().red().bold()).apply_to("error");
                self.eline(&format!(
                    "{label}: cannot write the plot to {}: {e}; check the directory is writable",
                    stem.display()
                ));
            }
        }
    }

    fn error(&mut self, d: Diagnostic) {
        let label = self.style(Style::new().red().bold()).apply_to("error");
        let head = match &self.origin {
            Some(file) => format!("{file}:{}:{}: {label}: {}", d.line, d.col, d.message),
            None => format!("{label}: {}", d.message),
        };
        self.eline(&head);
        if !d.source_line.trim().is_empty() {
            let caret = self.style(Style::new().red()).apply_to(d.snippet());
            self.eline(&caret.to_string());
        }
    }
}

/// Writes `stem.png` and `stem.svg`, creating the directory; returns both paths.
fn write_figure(stem: &Path, image: &Image) -> std::io::Result<(PathBuf, PathBuf)> {
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    std::fs::write(&png, &image.figure.png)?;
    std::fs::write(&svg, &image.figure.svg)?;
    Ok((png, svg))
}

impl Sink for TerminalSink {
    fn emit(&mut self, event: Event) {
        match event {
            Event::Echo(cmd) => {
                if self.echo {
                    let prompt = self.style(Style::new().cyan().bold()).apply_to("tunelab>");
                    self.line(&format!("{prompt} {cmd}"));
                }
            }
            Event::Text(t) => self.line(&t),
            Event::Stream(piece) => self.piece(&piece),
            Event::Table(t) => {
                let text = t.to_text();
                let text = text.trim_end();
                match (&t.title, self.colors) {
                    (Some(title), true) => {
                        let rest = text.strip_prefix(title.as_str()).unwrap_or(text);
                        let bold = self.style(Style::new().bold()).apply_to(title);
                        self.line(&format!("{bold}{rest}"));
                    }
                    _ => self.line(text),
                }
            }
            Event::Image(image) => self.image(image),
            Event::Progress(p) => self.progress(p),
            Event::Warning(w) => {
                let label = self.style(Style::new().yellow().bold()).apply_to("warning");
                self.eline(&format!("{label}: {w}"));
            }
            Event::Error(d) => self.error(d),
        }
    }
}

impl Drop for TerminalSink {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
