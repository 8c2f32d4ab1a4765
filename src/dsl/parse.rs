//! The parser: tokens → [`Command`]s checked against the verb table.

use super::error::{ParseError, ParseErrorKind};
use super::lex::{lex, Atom, Tok, Token};
use super::span::{Span, Spanned};
use super::suggest;
use super::table::{find_verb, verb_names, OptSpec, VerbSpec};
use super::value::Value;

/// A parsed command: a verb of the table with typed arguments and options.
#[derive(Clone, Debug)]
pub struct Command {
    /// The verb's table entry.
    pub verb: &'static VerbSpec,
    /// Positional arguments in order, typed by the verb's argument kinds.
    pub args: Vec<Spanned<Value>>,
    /// `key=value` options given explicitly.
    pub options: Vec<(&'static OptSpec, Spanned<Value>)>,
    /// The whole command within the source text.
    pub span: Span,
    /// The command's source text.
    pub text: String,
}

impl Command {
    /// The verb's name.
    pub fn name(&self) -> &'static str {
        self.verb.name
    }

    /// The `i`-th positional argument.
    pub fn arg(&self, i: usize) -> Option<&Value> {
        self.args.get(i).map(|a| &a.value)
    }

    /// The option `name` if given explicitly.
    pub fn given(&self, name: &str) -> Option<&Spanned<Value>> {
        self.options.iter().find(|(o, _)| o.name == name).map(|(_, v)| v)
    }

    /// The option `name`: as given, else its table default (if it has one).
    pub fn value(&self, name: &str) -> Option<Value> {
        if let Some(v) = self.given(name) {
            return Some(v.value.clone());
        }
        let spec = self.verb.option(name)?;
        let atom = Atom { text: spec.default?.to_string(), quoted: false };
        spec.kind.parse_atom(&atom).ok()
    }

    /// The option as a real number.
    pub fn f64(&self, name: &str) -> Option<f64> {
        self.value(name).and_then(|v| v.as_f64())
    }

    /// The option as a count (kinds with a non-negative bound only).
    pub fn usize(&self, name: &str) -> Option<usize> {
        self.value(name).and_then(|v| v.as_i64()).map(|i| i.max(0) as usize)
    }

    /// The option as text.
    pub fn str(&self, name: &str) -> Option<String> {
        self.value(name).and_then(|v| v.as_str().map(str::to_string))
    }

    /// The option as a boolean.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.value(name).and_then(|v| v.as_bool())
    }

    /// The span of option `name` if given, else of the whole command (for error carets).
    pub fn span_of(&self, name: &str) -> Span {
        self.given(name).map_or(self.span, |v| v.span)
    }
}

/// Parses source text (one or many commands separated by newlines or `;`).
/// Empty lines and comments give no command.
pub fn parse(src: &str) -> Result<Vec<Command>, ParseError> {
    let tokens = lex(src)?;
    tokens
        .split(|t| t.tok == Tok::Sep)
        .filter(|group| !group.is_empty())
        .map(|group| bind(src, group))
        .collect()
}

/// A value before it is typed: one atom, or a bracketed list.
enum Raw<'t> {
    Atom(Spanned<Atom>),
    List(&'t [Spanned<Atom>], Span),
}

impl Raw<'_> {
    fn span(&self) -> Span {
        match self {
            Raw::Atom(a) => a.span,
            Raw::List(_, s) => *s,
        }
    }

    fn typed(&self, kind: &super::value::Kind) -> Result<Value, (String, Span)> {
        match self {
            Raw::Atom(a) => kind.parse_atom(&a.value).map_err(|e| (e, a.span)),
            Raw::List(items, _) => kind.parse_list(items),
        }
    }
}

fn raw_of(t: &Token) -> Option<Raw<'_>> {
    match &t.tok {
        Tok::Word(w) => {
            Some(Raw::Atom(Spanned { value: Atom { text: w.clone(), quoted: false }, span: t.span }))
        }
        Tok::Quoted(s) => {
            Some(Raw::Atom(Spanned { value: Atom { text: s.clone(), quoted: true }, span: t.span }))
        }
        Tok::List(items) => Some(Raw::List(items, t.span)),
        Tok::Eq | Tok::Sep => None,
    }
}

fn is_key(word: &str) -> bool {
    let mut chars = word.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn err(kind: ParseErrorKind, span: Span, message: String) -> ParseError {
    ParseError::new(kind, span, message)
}

/// Checks one command's tokens against the verb table.
fn bind(src: &str, toks: &[Token]) -> Result<Command, ParseError> {
    let span = toks[0].span.join(toks[toks.len() - 1].span);
    let verb_word = match &toks[0].tok {
        Tok::Word(w) => w,
        _ => {
            return Err(err(
                ParseErrorKind::Syntax,
                toks[0].span,
                "a command starts with a verb, like `fit epochs=3`; type `help` for the list".into(),
            ))
        }
    };
    let verb = find_verb(verb_word).ok_or_else(|| {
        err(
            ParseErrorKind::UnknownVerb,
            toks[0].span,
            format!(
                "unknown verb '{verb_word}'{}; type `help` for the list",
                suggest::hint(verb_word, verb_names())
            ),
        )
    })?;

    let mut positional: Vec<Raw> = Vec::new();
    let mut options: Vec<(&'static OptSpec, Spanned<Value>)> = Vec::new();
    let mut i = 1;
    while i < toks.len() {
        let t = &toks[i];
        let next_is_eq = toks.get(i + 1).is_some_and(|n| n.tok == Tok::Eq);
        if t.tok == Tok::Eq {
            return Err(err(
                ParseErrorKind::Syntax,
                t.span,
                "'=' needs an option name before it, like epochs=3".into(),
            ));
        }
        if !next_is_eq {
            positional.push(raw_of(t).expect("separators were split off"));
            i += 1;
            continue;
        }
        // key = value
        let key = match &t.tok {
            Tok::Word(w) if is_key(w) => w.as_str(),
            _ => {
                return Err(err(
                    ParseErrorKind::Syntax,
                    t.span,
                    "an option name is a word like epochs or lr; quote values that contain '='".into(),
                ))
            }
        };
        let eq = &toks[i + 1];
        let value = toks.get(i + 2).and_then(raw_of).ok_or_else(|| {
            err(ParseErrorKind::Syntax, eq.span, format!("missing value after '{key}=': write {key}=VALUE"))
        })?;
        let spec = verb.option(key).ok_or_else(|| unknown_option(verb, key, t.span))?;
        if options.iter().any(|(o, _)| o.name == spec.name) {
            return Err(err(
                ParseErrorKind::DuplicateOption,
                t.span,
                format!("option '{key}' is given twice; keep one"),
            ));
        }
        let typed = value
            .typed(&spec.kind)
            .map_err(|(why, at)| err(ParseErrorKind::BadValue, at, format!("{} {key}: {why}", verb.name)))?;
        options.push((spec, Spanned { value: typed, span: value.span() }));
        i += 3;
    }

    let mut args = Vec::new();
    for (n, raw) in positional.iter().enumerate() {
        let spec = match verb.args.get(n) {
            Some(s) => s,
            None => match verb.args.last() {
                Some(last) if last.many => last,
                _ => return Err(too_many(verb, raw.span())),
            },
        };
        let value = raw.typed(&spec.kind).map_err(|(why, at)| {
            err(ParseErrorKind::BadValue, at, format!("{} {}: {why}", verb.name, spec.name))
        })?;
        args.push(Spanned { value, span: raw.span() });
    }
    if let Some(missing) = verb.args.iter().skip(positional.len()).find(|a| a.required) {
        let example = verb.examples.first().copied().unwrap_or(verb.name);
        return Err(err(
            ParseErrorKind::MissingArgument,
            Span::new(span.end, span.end + 1),
            format!("'{}' needs {} ({}), e.g. `{example}`", verb.name, missing.name, missing.doc),
        ));
    }

    Ok(Command { verb, args, options, span, text: src[span.start..span.end].to_string() })
}

fn unknown_option(verb: &VerbSpec, key: &str, span: Span) -> ParseError {
    let names: Vec<&str> = verb.options.iter().map(|o| o.name).collect();
    let message = if names.is_empty() {
        format!("'{}' takes no options; remove '{key}='", verb.name)
    } else {
        format!(
            "unknown option '{key}' for '{}'{}; it takes {}",
            verb.name,
            suggest::hint(key, names.iter().copied()),
            names.join(", ")
        )
    };
    err(ParseErrorKind::UnknownOption, span, message)
}

fn too_many(verb: &VerbSpec, span: Span) -> ParseError {
    let message = match verb.args.len() {
        0 => format!("'{}' takes no arguments; usage: {}", verb.name, verb.usage()),
        n => format!("too many arguments for '{}' (it takes {n}); usage: {}", verb.name, verb.usage()),
    };
    err(ParseErrorKind::TooManyArguments, span, message)
}
