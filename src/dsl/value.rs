//! Typed values and the types (kinds) that options and arguments declare.

use std::fmt;

use super::lex::Atom;
use super::span::{Span, Spanned};
use super::suggest;

/// A typed value of an argument or option.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A whole number.
    Int(i64),
    /// A real number (always finite).
    Float(f64),
    /// `true` / `false` (also written yes/no, on/off).
    Bool(bool),
    /// A word, path, choice or quoted string.
    Str(String),
    /// `a..b` (end exclusive); `a..` leaves the end open, `..b` starts at 0.
    Range {
        /// First index.
        start: i64,
        /// One past the last index; `None` for "to the end".
        end: Option<i64>,
    },
    /// A list (`[a, b]`, `a,b`, or a split `0.8/0.1/0.1`).
    List(Vec<Value>),
}

impl Value {
    /// The value as a real number (ints convert).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The value as a whole number.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The value as text (words, paths, choices, quoted strings).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The items of a list value.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Str(s) if s.is_empty() || s.contains(char::is_whitespace) => write!(f, "{s:?}"),
            Value::Str(s) => write!(f, "{s}"),
            Value::Range { start, end } => match end {
                Some(e) => write!(f, "{start}..{e}"),
                None => write!(f, "{start}.."),
            },
            Value::List(items) => {
                let parts: Vec<String> = items.iter().map(|v| v.to_string()).collect();
                write!(f, "{}", parts.join(","))
            }
        }
    }
}

/// A numeric constraint checked when a value is parsed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    /// Any finite number.
    Any,
    /// Greater than zero.
    Positive,
    /// Zero or more.
    NonNegative,
    /// Between 0 and 1 inclusive.
    Unit,
    /// At least 1 (for counts).
    AtLeastOne,
}

impl Bound {
    fn check(self, x: f64) -> Result<(), &'static str> {
        let ok = match self {
            Bound::Any => true,
            Bound::Positive => x > 0.0,
            Bound::NonNegative => x >= 0.0,
            Bound::Unit => (0.0..=1.0).contains(&x),
            Bound::AtLeastOne => x >= 1.0,
        };
        if ok {
            Ok(())
        } else {
            Err(match self {
                Bound::Any => "",
                Bound::Positive => "must be positive",
                Bound::NonNegative => "must not be negative",
                Bound::Unit => "must be between 0 and 1",
                Bound::AtLeastOne => "must be at least 1",
            })
        }
    }
}

/// The declared type of an argument or option; drives parsing, help and completion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// A whole number within a bound.
    Int(Bound),
    /// A real number within a bound (`2e-5`, `0.1`, `3`).
    Float(Bound),
    /// `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`.
    Bool,
    /// Free text (a name, a word, a quoted string).
    Text,
    /// A file or directory path (completed from the file system).
    Path,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// An index range: `0..8`, `0..=7`, `8..`, `..4`, or one index `3`.
    Range,
    /// A comma-separated or bracketed list of the inner kind.
    List(&'static Kind),
    /// Fractions that sum to 1, written `0.8/0.1/0.1` or `0.9/0.1`.
    Split,
    /// Text or a bracketed list of texts, typed later by the command (e.g. `predict`
    /// takes `1.5`, `[1, 2]` or `"a review"` depending on the model).
    Any,
}

impl Kind {
    /// A short description for help and error messages ("a positive number", …).
    pub fn describe(&self) -> String {
        match self {
            Kind::Int(Bound::AtLeastOne) => "a whole number ≥ 1".into(),
            Kind::Int(Bound::NonNegative) => "a whole number ≥ 0".into(),
            Kind::Int(_) => "a whole number".into(),
            Kind::Float(Bound::Positive) => "a positive number".into(),
            Kind::Float(Bound::NonNegative) => "a number ≥ 0".into(),
            Kind::Float(Bound::Unit) => "a number in 0..1".into(),
            Kind::Float(_) => "a number".into(),
            Kind::Bool => "true or false".into(),
            Kind::Text => "text".into(),
            Kind::Path => "a path".into(),
            Kind::Choice(c) => format!("one of {}", c.join(", ")),
            Kind::Range => "a range like 0..8".into(),
            Kind::List(inner) => format!("a list of {}", inner.describe_plural()),
            Kind::Split => "fractions like 0.8/0.1/0.1".into(),
            Kind::Any => "a value".into(),
        }
    }

    fn describe_plural(&self) -> String {
        match self {
            Kind::Int(_) => "whole numbers".into(),
            Kind::Float(_) => "numbers".into(),
            Kind::Text | Kind::Path => "names".into(),
            Kind::Choice(c) => c.join("/"),
            other => other.describe(),
        }
    }

    /// A placeholder for usage lines (`N`, `X`, `FILE`, `sgd|adam`, …).
    pub fn placeholder(&self) -> String {
        match self {
            Kind::Int(_) => "N".into(),
            Kind::Float(_) => "X".into(),
            Kind::Bool => "true|false".into(),
            Kind::Text => "TEXT".into(),
            Kind::Path => "PATH".into(),
            Kind::Choice(c) => c.join("|"),
            Kind::Range => "A..B".into(),
            Kind::List(inner) => format!("{},…", inner.placeholder()),
            Kind::Split => "TRAIN/VALID/TEST".into(),
            Kind::Any => "VALUE".into(),
        }
    }

    /// Parses a scalar word (or quoted text) as this kind. `Err` holds the reason, without
    /// the option name (the caller adds it).
    pub fn parse_atom(&self, atom: &Atom) -> Result<Value, String> {
        let text = atom.text.as_str();
        let shown = if text.is_empty() { "nothing".to_string() } else { format!("'{text}'") };
        match self {
            Kind::Int(bound) => {
                let v =
                    parse_int(text).ok_or_else(|| format!("expected {}, got {shown}", self.describe()))?;
                bound.check(v as f64).map_err(|why| format!("{why}, got {v}"))?;
                Ok(Value::Int(v))
            }
            Kind::Float(bound) => {
                let v =
                    parse_float(text).ok_or_else(|| format!("expected {}, got {shown}", self.describe()))?;
                bound.check(v).map_err(|why| format!("{why}, got {v}"))?;
                Ok(Value::Float(v))
            }
            Kind::Bool => match text.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Ok(Value::Bool(true)),
                "false" | "no" | "off" | "0" => Ok(Value::Bool(false)),
                _ => Err(format!("expected true or false, got {shown}")),
            },
            Kind::Text | Kind::Path | Kind::Any => {
                if text.is_empty() && !atom.quoted {
                    Err("expected a value".into())
                } else if *self == Kind::Path {
                    Ok(Value::Str(expand_home(text)))
                } else {
                    Ok(Value::Str(text.to_string()))
                }
            }
            Kind::Choice(choices) => {
                let lower = text.to_ascii_lowercase();
                if let Some(c) = choices.iter().find(|c| **c == lower) {
                    Ok(Value::Str(c.to_string()))
                } else {
                    let dym = suggest::suggestion(&lower, choices.iter().copied());
                    Err(format!("unknown value {shown}{dym}; expected one of {}", choices.join(", ")))
                }
            }
            Kind::Range => {
                parse_range(text).ok_or_else(|| format!("expected a range like 0..8 or 8.., got {shown}"))
            }
            Kind::List(inner) => {
                if atom.quoted {
                    return Ok(Value::List(vec![inner.parse_atom(atom)?]));
                }
                let items = text
                    .split(',')
                    .map(|part| {
                        if part.is_empty() {
                            Err(format!("empty item in list {shown}"))
                        } else {
                            inner.parse_atom(&Atom { text: part.to_string(), quoted: false })
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Value::List(items))
            }
            Kind::Split => parse_split(text).map_err(|why| format!("{why}, got {shown}")),
        }
    }

    /// Parses the items of a bracketed list with a list kind's item type.
    pub fn parse_list(&self, items: &[Spanned<Atom>]) -> Result<Value, (String, Span)> {
        let inner = match self {
            Kind::List(inner) => inner,
            Kind::Any => &Kind::Text,
            other => other,
        };
        items
            .iter()
            .map(|a| inner.parse_atom(&a.value).map_err(|e| (e, a.span)))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::List)
    }
}

/// A path's leading `~` (alone or before `/`) stands for `$HOME`, as in a shell, so scripts and
/// notebooks can name `~/.cache/tunelab/assets/...`; `~user` and a `~` elsewhere stay as written.
pub fn expand_home(text: &str) -> String {
    match (text.strip_prefix('~'), std::env::var("HOME")) {
        (Some(rest), Ok(home)) if rest.is_empty() || rest.starts_with('/') => format!("{home}{rest}"),
        _ => text.to_string(),
    }
}

fn parse_int(text: &str) -> Option<i64> {
    let clean = text.replace('_', "");
    if let Ok(v) = clean.parse::<i64>() {
        return Some(v);
    }
    // `1e3` is a whole number too.
    let f = parse_float(&clean)?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

fn parse_float(text: &str) -> Option<f64> {
    let clean = text.replace('_', "");
    let starts_ok = clean.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == '-' || c == '+');
    if !starts_ok {
        return None; // rejects inf, nan and words
    }
    clean.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn parse_range(text: &str) -> Option<Value> {
    let idx = |s: &str| s.parse::<i64>().ok().filter(|v| *v >= 0);
    if let Some((a, b)) = text.split_once("..") {
        let start = if a.is_empty() { 0 } else { idx(a)? };
        let end = if let Some(b) = b.strip_prefix('=') {
            Some(idx(b)? + 1)
        } else if b.is_empty() {
            None
        } else {
            Some(idx(b)?)
        };
        if end.is_some_and(|e| e <= start) {
            return None;
        }
        Some(Value::Range { start, end })
    } else {
        let i = idx(text)?;
        Some(Value::Range { start: i, end: Some(i + 1) })
    }
}

fn parse_split(text: &str) -> Result<Value, String> {
    let parts: Vec<&str> = text.split('/').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err("expected 2 or 3 fractions like 0.8/0.1/0.1".into());
    }
    let mut fracs = Vec::new();
    for p in parts {
        let f = parse_float(p).ok_or_else(|| format!("'{p}' is not a number"))?;
        if f < 0.0 {
            return Err("fractions must not be negative".into());
        }
        fracs.push(f);
    }
    if fracs[0] <= 0.0 {
        return Err("the training fraction must be positive".into());
    }
    let sum: f64 = fracs.iter().sum();
    if (sum - 1.0).abs() > 1e-3 {
        return Err(format!("fractions must add up to 1 (they add up to {sum})"));
    }
    Ok(Value::List(fracs.into_iter().map(Value::Float).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atom(s: &str) -> Atom {
        Atom { text: s.to_string(), quoted: false }
    }

    #[test]
    fn numbers_parse_with_bounds() {
        assert_eq!(Kind::Float(Bound::Positive).parse_atom(&atom("2e-5")), Ok(Value::Float(2e-5)));
        assert_eq!(Kind::Int(Bound::AtLeastOne).parse_atom(&atom("1e3")), Ok(Value::Int(1000)));
        assert_eq!(Kind::Int(Bound::Any).parse_atom(&atom("1_000")), Ok(Value::Int(1000)));
        let neg = Kind::Float(Bound::Positive).parse_atom(&atom("-0.1")).unwrap_err();
        assert!(neg.contains("must be positive"), "{neg}");
        assert!(Kind::Float(Bound::Any).parse_atom(&atom("nan")).is_err());
        assert!(Kind::Float(Bound::Any).parse_atom(&atom("inf")).is_err());
        assert!(Kind::Int(Bound::Any).parse_atom(&atom("1.5")).is_err());
    }

    #[test]
    fn ranges() {
        let r = |s| Kind::Range.parse_atom(&atom(s));
        assert_eq!(r("0..8"), Ok(Value::Range { start: 0, end: Some(8) }));
        assert_eq!(r("0..=7"), Ok(Value::Range { start: 0, end: Some(8) }));
        assert_eq!(r("8.."), Ok(Value::Range { start: 8, end: None }));
        assert_eq!(r("..4"), Ok(Value::Range { start: 0, end: Some(4) }));
        assert_eq!(r("3"), Ok(Value::Range { start: 3, end: Some(4) }));
        assert!(r("5..2").is_err());
        assert!(r("a..b").is_err());
    }

    #[test]
    fn lists_splits_and_choices() {
        static F: Kind = Kind::Float(Bound::Any);
        assert_eq!(
            Kind::List(&F).parse_atom(&atom("0.9,0.999")),
            Ok(Value::List(vec![Value::Float(0.9), Value::Float(0.999)]))
        );
        assert!(Kind::List(&F).parse_atom(&atom("1,,2")).is_err());
        assert_eq!(
            Kind::Split.parse_atom(&atom("0.8/0.1/0.1")),
            Ok(Value::List(vec![Value::Float(0.8), Value::Float(0.1), Value::Float(0.1)]))
        );
        assert!(Kind::Split.parse_atom(&atom("0.8/0.3")).unwrap_err().contains("add up to 1"));
        let c = Kind::Choice(&["sgd", "adam", "adamw"]).parse_atom(&atom("adamm")).unwrap_err();
        assert!(c.contains("did you mean 'adam"), "{c}");
        assert_eq!(Kind::Bool.parse_atom(&atom("on")), Ok(Value::Bool(true)));
    }

    #[test]
    fn a_leading_tilde_in_a_path_is_home() {
        let home = std::env::var("HOME").unwrap();
        let path = |s: &str| Kind::Path.parse_atom(&atom(s)).unwrap();
        assert_eq!(path("~/.cache/x"), Value::Str(format!("{home}/.cache/x")));
        assert_eq!(path("~"), Value::Str(home));
        for kept in ["~user/x", "a/~/b", "gpt2", "./~"] {
            assert_eq!(path(kept), Value::Str(kept.into()));
        }
        assert_eq!(Kind::Text.parse_atom(&atom("~/x")), Ok(Value::Str("~/x".into())), "only paths");
    }
}
