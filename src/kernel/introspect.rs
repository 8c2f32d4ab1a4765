//! `complete_request`, `inspect_request` and `is_complete_request`, answered from the DSL's
//! verb table (the same completion and help as the REPL) plus the kernel's magics.
//!
//! Jupyter counts cursor positions in Unicode code points; the DSL counts bytes. The
//! conversions happen here, at the edge.

use jupyter_protocol::{CompleteReply, InspectReply, IsCompleteReply, Media, MediaType};

use super::magic::{self, MAGICS};
use crate::dsl::{self, help::help_for, ParseErrorKind};

/// Byte offset of code point `pos` in `text` (clamped to the end).
pub fn byte_at(text: &str, pos: usize) -> usize {
    text.char_indices().nth(pos).map_or(text.len(), |(i, _)| i)
}

/// Code point index of byte offset `byte` in `text`.
pub fn char_at(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].chars().count()
}

/// Completions for the word before `cursor_pos` (code points): verbs, options, choices,
/// paths, and magic names at the start of a line.
pub fn complete(code: &str, cursor_pos: usize) -> CompleteReply {
    let byte = byte_at(code, cursor_pos);
    let line_start = code[..byte].rfind('\n').map_or(0, |i| i + 1);
    let before = code[..byte][line_start..].trim_start();
    let (start, matches) = if before.starts_with('%') && !before.contains(char::is_whitespace) {
        let names = MAGICS.iter().filter(|m| m.name.starts_with(before)).map(|m| m.name.to_string());
        (byte - before.len(), names.collect())
    } else {
        let (start, candidates) = dsl::complete::complete(&magic::blank(code), byte);
        let mut matches: Vec<String> =
            candidates.into_iter().map(|c| c.replacement.trim_end_matches(' ').to_string()).collect();
        matches.dedup();
        (start, matches)
    };
    CompleteReply {
        matches,
        cursor_start: char_at(code, start),
        cursor_end: char_at(code, byte),
        ..CompleteReply::default()
    }
}

/// The help page of the verb (or magic) under the cursor: the word under it when that is a
/// verb (`help fit`), else the verb of the command the cursor is in. `found: false` otherwise.
pub fn inspect(code: &str, cursor_pos: usize) -> InspectReply {
    let byte = byte_at(code, cursor_pos);
    let is_sep = |c: char| c.is_whitespace() || c == ';';
    let word_start =
        code[..byte].char_indices().rev().find(|&(_, c)| is_sep(c)).map_or(0, |(i, c)| i + c.len_utf8());
    let word_end = code[byte..].find(is_sep).map_or(code.len(), |i| byte + i);
    let word = &code[word_start..word_end];
    let page = magic::help(word)
        .or_else(|| (!word.contains('=')).then(|| help_for(word).ok()).flatten())
        .or_else(|| help_for(verb_before(&magic::blank(code), byte)?).ok());
    match page {
        Some(text) => InspectReply {
            found: true,
            data: Media::new(vec![MediaType::Plain(text)]),
            ..InspectReply::default()
        },
        None => InspectReply::default(),
    }
}

/// The first word of the command that contains byte `byte` of `text`.
fn verb_before(text: &str, byte: usize) -> Option<&str> {
    let before = &text[..byte];
    let mut start = 0;
    for (i, c) in before.char_indices() {
        let continued = c == '\n' && magic::ends_continued(&before[..i]);
        if c == ';' || (c == '\n' && !continued) {
            start = i + 1;
        }
    }
    text[start..].split(|c: char| c.is_whitespace() || c == ';').find(|w| !w.is_empty())
}

/// `incomplete` when the cell ends with a `\` continuation or an unterminated string or
/// list, `invalid` when it cannot parse, else `complete`.
pub fn is_complete(code: &str) -> IsCompleteReply {
    if magic::plan(code).is_err() {
        return IsCompleteReply::invalid();
    }
    let text = magic::blank(code);
    let last_line = text.rsplit('\n').next().unwrap_or(&text);
    if magic::ends_continued(last_line) {
        return IsCompleteReply::incomplete("  ".into());
    }
    match dsl::parse(&text) {
        Ok(_) => IsCompleteReply::complete(),
        Err(e) if e.kind == ParseErrorKind::Unterminated => IsCompleteReply::incomplete(String::new()),
        Err(_) => IsCompleteReply::invalid(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jupyter_protocol::IsCompleteReplyStatus as S;

    fn matches(code: &str) -> Vec<String> {
        complete(code, code.chars().count()).matches
    }

    #[test]
    fn completes_verbs_options_choices_and_magics() {
        assert_eq!(matches("fi"), ["fit"]);
        assert_eq!(matches("optimizer ad"), ["adam", "adamw"]);
        assert!(matches("fit ep").contains(&"epochs=".to_string()));
        assert_eq!(matches("%ti"), ["%time"]);
        assert_eq!(matches("%%"), ["%%time", "%%rust"]);
        assert_eq!(matches("%time fi"), ["fit"]);
        let r = complete("lr 0.1 schedule=co", 18);
        assert_eq!((r.cursor_start, r.cursor_end), (16, 18));
    }

    #[test]
    fn cursor_positions_are_code_points() {
        // "é" is two bytes but one code point.
        let code = "# é\nfi";
        let r = complete(code, code.chars().count());
        assert_eq!(r.matches, ["fit"]);
        assert_eq!((r.cursor_start, r.cursor_end), (4, 6));
    }

    #[test]
    fn inspect_finds_the_verb_under_the_cursor() {
        let r = inspect("fit epochs=3", 5);
        assert!(r.found);
        let text = serde_json::to_value(&r.data).unwrap()["text/plain"].as_str().unwrap().to_string();
        assert!(text.starts_with("fit — "), "{text}");
        let r = inspect("seed 1; help plot", 15);
        let text = serde_json::to_value(&r.data).unwrap()["text/plain"].as_str().unwrap().to_string();
        assert!(text.starts_with("plot — "), "{text}");
        let r = inspect("optimizer \\\n  sgd lr=0.1", 20);
        assert!(serde_json::to_value(&r.data).unwrap()["text/plain"]
            .as_str()
            .unwrap()
            .starts_with("optimizer"));
        assert!(inspect("%time fit", 2).found);
        assert!(!inspect("zzz", 1).found);
        assert!(!inspect("", 0).found);
    }

    #[test]
    fn is_complete_follows_the_parser() {
        assert_eq!(is_complete("fit epochs=3").status, S::Complete);
        assert_eq!(is_complete("fit \\").status, S::Incomplete);
        assert_eq!(is_complete("fit \\  ").status, S::Incomplete);
        assert_eq!(is_complete("load \"abc").status, S::Incomplete);
        assert_eq!(is_complete("optimizer adam betas=[0.9, 0.99").status, S::Incomplete);
        assert_eq!(is_complete("fitt").status, S::Invalid);
        assert_eq!(is_complete("%tme").status, S::Invalid);
        assert_eq!(is_complete("%%time\nfit").status, S::Complete);
        assert_eq!(is_complete("").status, S::Complete);
    }
}
