//! rustyline glue: completion, hints, highlighting and multi-line input, all from the
//! verb table in `dsl`.

use std::borrow::Cow;

use console::Style;
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use crate::dsl::complete::{complete, hint};
use crate::dsl::table::find_verb;

/// The REPL's line-editor helper.
pub struct TuneHelper {
    /// Whether to colour the line and hints.
    pub colors: bool,
}

impl Helper for TuneHelper {}

impl Completer for TuneHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, candidates) = complete(line, pos);
        Ok((
            start,
            candidates.into_iter().map(|c| Pair { display: c.display, replacement: c.replacement }).collect(),
        ))
    }
}

impl Hinter for TuneHelper {
    type Hint = String;

    fn hint(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> Option<String> {
        hint(line, pos)
    }
}

impl Highlighter for TuneHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if !self.colors {
            return Cow::Borrowed(line);
        }
        let start = line.len() - line.trim_start().len();
        let end = line[start..].find(char::is_whitespace).map_or(line.len(), |i| start + i);
        let verb = &line[start..end];
        if verb.is_empty() || verb.starts_with('#') {
            return Cow::Borrowed(line);
        }
        let style = if find_verb(verb).is_some() { Style::new().cyan().bold() } else { Style::new().red() };
        let painted = style.force_styling(true).apply_to(verb);
        Cow::Owned(format!("{}{painted}{}", &line[..start], &line[end..]))
    }

    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        if self.colors {
            Cow::Owned(Style::new().dim().force_styling(true).apply_to(hint).to_string())
        } else {
            Cow::Borrowed(hint)
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        self.colors
    }
}

impl Validator for TuneHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        // A trailing backslash continues the command on the next line (the lexer's rule).
        let input = ctx.input();
        let last_line = input.rsplit('\n').next().unwrap_or(input);
        if last_line.rfind('\\').is_some_and(|i| crate::dsl::continuation_at(&last_line[i..]).is_some()) {
            Ok(ValidationResult::Incomplete)
        } else {
            Ok(ValidationResult::Valid(None))
        }
    }
}
