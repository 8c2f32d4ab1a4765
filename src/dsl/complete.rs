//! Completion and inline hints for a partly typed command, from the verb table.
//!
//! Shared by the REPL (rustyline) and the Jupyter kernel (`complete_request`).

use std::path::Path;

use super::lex::continuation_at;
use super::table::{find_verb, ArgSpec, VerbSpec, VERBS};
use super::value::Kind;

/// One completion: the text that replaces the word being typed, and what to list.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Candidate {
    /// Shown in the list of completions.
    pub display: String,
    /// Replaces the text from the completion's start to the cursor.
    pub replacement: String,
}

/// The state of the command under the cursor.
struct Cursor<'a> {
    /// Byte offset where the word under the cursor starts.
    word_start: usize,
    /// The word under the cursor, up to the cursor.
    word: &'a str,
    /// Complete words of this command before the cursor's word.
    before: Vec<&'a str>,
}

/// `text` with every line continuation (`\`, blanks, newline) turned into as many blanks,
/// so a continued command reads as one line and byte offsets are unchanged.
fn blank_continuations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i..].starts_with('\\').then(|| continuation_at(&text[i..])).flatten() {
            Some(n) if text[i..i + n].ends_with('\n') => {
                out.extend(std::iter::repeat_n(' ', n));
                i += n;
            }
            _ => {
                let c = text[i..].chars().next().expect("in bounds");
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

fn cursor(line: &str, pos: usize) -> Cursor<'_> {
    let pos = pos.min(line.len());
    let blanked = blank_continuations(&line[..pos]);
    let text = &line[..pos];
    // Find the start of the current command and word, tracking quotes.
    let mut quote: Option<char> = None;
    let mut word_start = 0;
    let mut words = Vec::new();
    let mut in_word = false;
    for (i, c) in blanked.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => {
                    quote = Some(c);
                    if !in_word {
                        in_word = true;
                        word_start = i;
                    }
                }
                ';' | '\n' => {
                    words.clear();
                    in_word = false;
                    word_start = i + 1;
                }
                c if c.is_whitespace() => {
                    if in_word {
                        words.push((word_start, i));
                    }
                    in_word = false;
                    word_start = i + c.len_utf8();
                }
                _ => {
                    if !in_word {
                        in_word = true;
                        word_start = i;
                    }
                }
            },
        }
    }
    if !in_word {
        word_start = pos;
    }
    Cursor {
        word_start,
        word: &text[word_start..],
        before: words.into_iter().map(|(s, e)| &text[s..e]).collect(),
    }
}

/// Completions for the word under the cursor: `(start, candidates)`, where `start` is the
/// byte offset the candidates' replacements begin at.
pub fn complete(line: &str, pos: usize) -> (usize, Vec<Candidate>) {
    let cur = cursor(line, pos);
    let mut out = Vec::new();
    let Some(first) = cur.before.first() else {
        for v in VERBS.iter().filter(|v| v.name.starts_with(cur.word)) {
            out.push(word(v.name));
        }
        return (cur.word_start, out);
    };
    let Some(verb) = find_verb(first) else {
        return (cur.word_start, out);
    };
    if let Some((key, value)) = cur.word.split_once('=') {
        let start = cur.word_start + key.len() + 1;
        if let Some(opt) = verb.option(key) {
            out = complete_kind(&opt.kind, &[], value);
        }
        return (start, out);
    }
    let used: Vec<&str> = cur.before[1..].iter().filter_map(|w| w.split_once('=').map(|(k, _)| k)).collect();
    for o in verb.options.iter().filter(|o| o.name.starts_with(cur.word) && !used.contains(&o.name)) {
        out.push(Candidate { display: format!("{}=", o.name), replacement: format!("{}=", o.name) });
    }
    let positionals = cur.before[1..].iter().filter(|w| !w.contains('=')).count();
    if let Some(arg) = arg_at(verb, positionals) {
        if verb.name == "help" {
            out.extend(VERBS.iter().filter(|v| v.name.starts_with(cur.word)).map(|v| word(v.name)));
        }
        out.extend(complete_kind(&arg.kind, arg.suggest, cur.word));
    }
    out.sort();
    out.dedup();
    (cur.word_start, out)
}

fn arg_at(verb: &VerbSpec, i: usize) -> Option<&ArgSpec> {
    verb.args.get(i).or_else(|| verb.args.last().filter(|a| a.many))
}

fn word(w: &str) -> Candidate {
    Candidate { display: w.to_string(), replacement: format!("{w} ") }
}

fn complete_kind(kind: &Kind, suggest: &[&str], prefix: &str) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = suggest.iter().filter(|s| s.starts_with(prefix)).map(|s| word(s)).collect();
    match kind {
        Kind::Choice(choices) => {
            out.extend(choices.iter().filter(|c| c.starts_with(prefix)).map(|c| word(c)))
        }
        Kind::Bool => out.extend(["true", "false"].iter().filter(|c| c.starts_with(prefix)).map(|c| word(c))),
        Kind::Path => out.extend(complete_path(prefix)),
        _ => {}
    }
    out
}

/// File-system completions for a partly typed path (directories end in `/`).
pub fn complete_path(prefix: &str) -> Vec<Candidate> {
    let (dir, file) = match prefix.rfind('/') {
        Some(i) => (&prefix[..=i], &prefix[i + 1..]),
        None => ("", prefix),
    };
    let expanded = if let Some(rest) = dir.strip_prefix("~/") {
        std::env::var("HOME").map(|h| format!("{h}/{rest}")).unwrap_or_else(|_| dir.to_string())
    } else {
        dir.to_string()
    };
    let read_from = if expanded.is_empty() { Path::new(".") } else { Path::new(&expanded) };
    let Ok(entries) = std::fs::read_dir(read_from) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with(file) || (name.starts_with('.') && !file.starts_with('.')) {
            continue;
        }
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let (display, replacement) = if is_dir {
            (format!("{name}/"), format!("{dir}{name}/"))
        } else {
            (name.clone(), format!("{dir}{name} "))
        };
        out.push(Candidate { display, replacement });
    }
    out.sort();
    out
}

/// A grey inline hint after the cursor: the rest of a verb being typed, then the options
/// not yet used (`fit ` → `[epochs=N] [batch=N] …`). `None` when the cursor is not at the end.
pub fn hint(line: &str, pos: usize) -> Option<String> {
    if pos != line.len() || line.trim().is_empty() {
        return None;
    }
    let cur = cursor(line, pos);
    if cur.before.is_empty() {
        let matches: Vec<&VerbSpec> = VERBS.iter().filter(|v| v.name.starts_with(cur.word)).collect();
        if matches.len() != 1 {
            return None;
        }
        let v = matches[0];
        let rest = &v.name[cur.word.len()..];
        let usage = v.usage();
        // The arguments part of the usage line, then the first few options.
        let args_end = usage.find(" [").filter(|_| !v.options.is_empty()).map_or(usage.len(), |i| {
            v.options.first().and_then(|o| usage.find(&format!(" [{}=", o.name))).unwrap_or(i)
        });
        let args = &usage[v.name.len()..args_end];
        let opts = option_hints(v, &[]).map(|o| format!(" {o}")).unwrap_or_default();
        return Some(format!("{rest}{args}{opts}"));
    }
    let verb = find_verb(cur.before[0])?;
    let used: Vec<&str> = cur.before[1..]
        .iter()
        .chain(std::iter::once(&cur.word))
        .filter_map(|w| w.split_once('=').map(|(k, _)| k))
        .collect();
    if !cur.word.is_empty() && !cur.word.contains('=') {
        // Completing an option key: show the rest of the unique match.
        let keys: Vec<_> = verb.options.iter().filter(|o| o.name.starts_with(cur.word)).collect();
        if let [only] = keys.as_slice() {
            return Some(format!("{}={}", &only.name[cur.word.len()..], only.kind.placeholder()));
        }
        return None;
    }
    // After a finished `key=value` the hint needs a separating space.
    let lead = match cur.word.split_once('=') {
        Some((_, "")) => return None,
        Some(_) => " ",
        None => "",
    };
    option_hints(verb, &used).map(|h| format!("{lead}{h}"))
}

/// Options a hint shows at most; more are elided with `…` (`help VERB` lists them all).
const HINTED_OPTIONS: usize = 4;

/// `[epochs=N] [batch=N] …`: the options of `verb` not in `used`.
fn option_hints(verb: &VerbSpec, used: &[&str]) -> Option<String> {
    let rest: Vec<String> = verb
        .options
        .iter()
        .filter(|o| !used.contains(&o.name))
        .map(|o| format!("[{}={}]", o.name, o.kind.placeholder()))
        .collect();
    match rest.len() {
        0 => None,
        n if n > HINTED_OPTIONS => Some(format!("{} …", rest[..HINTED_OPTIONS].join(" "))),
        _ => Some(rest.join(" ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replacements(line: &str) -> Vec<String> {
        complete(line, line.len()).1.into_iter().map(|c| c.replacement).collect()
    }

    #[test]
    fn completes_verbs_options_and_choices() {
        assert_eq!(replacements("fi"), ["fit "]);
        assert_eq!(complete("seed 1; fi", 10).0, 8);
        assert!(replacements("fit ep").contains(&"epochs=".to_string()));
        assert_eq!(replacements("optimizer ad"), ["adam ", "adamw "]);
        assert_eq!(replacements("lr 0.1 schedule=co"), ["constant ", "cosine "]);
        assert_eq!(complete("lr 0.1 schedule=co", 18).0, 16);
        assert!(replacements("help pl").contains(&"plot ".to_string()));
        assert!(replacements("fit epochs=3 ").iter().all(|r| r != "epochs="));
        assert!(replacements("zzz ").is_empty());
        // A continued line is still the same command.
        assert_eq!(replacements("fit \\\nep"), ["epochs="]);
        assert_eq!(hint("fit \\  \nep", 10).as_deref(), Some("ochs=N"));
        assert_eq!(replacements("seed 1\nfi"), ["fit "]);
    }

    #[test]
    fn completes_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.csv"), "x,y\n").unwrap();
        std::fs::create_dir(dir.path().join("runs")).unwrap();
        let base = dir.path().to_str().unwrap();
        let line = format!("data {base}/tr");
        assert_eq!(replacements(&line), [format!("{base}/train.csv ")]);
        let line = format!("save {base}/ru");
        assert_eq!(replacements(&line), [format!("{base}/runs/")]);
    }

    #[test]
    fn hints_show_the_rest() {
        assert_eq!(hint("fi", 2).as_deref(), Some("t [epochs=N] [batch=N] [steps=N] [log=N] …"));
        assert_eq!(hint("see", 3).as_deref(), Some("d [N]"));
        assert_eq!(
            hint("plo", 3).as_deref(),
            Some("t loss|lr|surface|fit|confusion [file=PATH] [log=true|false] [compare=TEXT,…]")
        );
        assert_eq!(
            hint("fit epochs=3 ", 13).as_deref(),
            Some("[batch=N] [steps=N] [log=N] [accumulate=N] …")
        );
        assert_eq!(
            hint("eval ", 5).as_deref(),
            Some("[split=train|valid|test] [file=PATH] [prompt=TEXT] [reference=TEXT] …")
        );
        assert_eq!(hint("fit ep", 6).as_deref(), Some("ochs=N"));
        assert_eq!(
            hint("fit epochs=3", 12).as_deref(),
            Some(" [batch=N] [steps=N] [log=N] [accumulate=N] …")
        );
        assert_eq!(hint("fit", 3).as_deref(), Some(" [epochs=N] [batch=N] [steps=N] [log=N] …"));
        assert_eq!(hint("fit", 1), None);
        assert_eq!(hint("", 0), None);
    }
}
