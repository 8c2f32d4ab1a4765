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

#[cfg(test)]
mod tests {
    use crate::Session;

    #[test]
    fn charts_and_tables_become_evcxr_blocks() {
        let mut s = Session::new();
        let out = s
            .exec("data synthetic linear n=100 split=0.8/0.2\nload linear init=zeros\nfit epochs=2 batch=20\neval\nplot loss")
            .unwrap();
        assert_eq!(out.images().len(), 1);
        let blocks = out.evcxr_blocks();
        let mimes: Vec<&str> =
            blocks.lines().filter_map(|l| l.strip_prefix("EVCXR_BEGIN_CONTENT ")).collect();
        assert_eq!(mimes, ["text/plain", "text/html", "image/png"]);
        assert_eq!(blocks.matches("EVCXR_END_CONTENT").count(), 3);
        assert!(blocks.contains("<table"), "{blocks}");
        let png = blocks.split("EVCXR_BEGIN_CONTENT image/png\n").nth(1).unwrap().lines().next().unwrap();
        assert!(data_encoding::BASE64.decode(png.as_bytes()).unwrap().starts_with(b"\x89PNG"));
        assert!(out.to_string().contains("epoch 2/2"));
        // A failing command is an error the caller can `?`.
        assert!(s.exec("fit epoch=3").is_err());
    }
}
