//! What [`Session::exec`](crate::Session::exec) returns: the events of a run, displayable by
//! evcxr (`:dep tunelab`) as rich output.
//!
//! evcxr shows a value through its `evcxr_display` method when it has one: the method prints
//! blocks framed by `EVCXR_BEGIN_CONTENT MIME` and `EVCXR_END_CONTENT`, which evcxr_jupyter
//! turns into one display with every MIME type. An [`Output`] prints all of its text as
//! `text/plain`, its tables as `text/html`, and each chart as its own `image/png` display.

use std::fmt;

use data_encoding::BASE64;

use crate::kernel::render::table_html;
use crate::session::Event;

/// The events of one [`Session::exec`](crate::Session::exec), in order.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// What the session said.
    pub events: Vec<Event>,
}

impl Output {
    /// Everything the run printed, as a terminal would show it (without charts).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for e in &self.events {
            match e {
                Event::Text(t) => {
                    out.push_str(t);
                    out.push('\n');
                }
                Event::Stream(piece) => out.push_str(piece),
                Event::Table(t) => out.push_str(&t.to_text()),
                Event::Warning(w) => out.push_str(&format!("warning: {w}\n")),
                Event::Error(d) => out.push_str(&format!("error: {}\n", d.message)),
                Event::Image(i) => out.push_str(&format!("<plot: {}>\n", i.figure.title)),
                Event::Echo(_) | Event::Progress(_) => {}
            }
        }
        out
    }

    /// The PNG bytes of every chart, in order.
    pub fn images(&self) -> Vec<&[u8]> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Image(i) => Some(i.figure.png.as_slice()),
                _ => None,
            })
            .collect()
    }

    /// The evcxr display blocks of this output (what [`Output::evcxr_display`] prints).
    pub fn evcxr_blocks(&self) -> String {
        let mut out = String::new();
        let block = |out: &mut String, mime: &str, body: &str| {
            out.push_str(&format!("EVCXR_BEGIN_CONTENT {mime}\n{body}\nEVCXR_END_CONTENT\n"));
        };
        let text = self.text();
        let tables: Vec<String> = self
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Table(t) => Some(table_html(t)),
                _ => None,
            })
            .collect();
        if !text.is_empty() {
            block(&mut out, "text/plain", text.trim_end());
        }
        if !tables.is_empty() {
            let mut html = format!("<pre>{}</pre>", crate::kernel::render::escape(text.trim_end()));
            html.push_str(&tables.concat());
            block(&mut out, "text/html", &html);
        }
        for png in self.images() {
            block(&mut out, "image/png", &BASE64.encode(png));
        }
        out
    }

    /// Called by evcxr to show this value in a notebook: text, tables as HTML, charts as PNG.
    pub fn evcxr_display(&self) {
        print!("{}", self.evcxr_blocks());
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl crate::Sink for Output {
    fn emit(&mut self, event: Event) {
        self.events.push(event);
    }
}
