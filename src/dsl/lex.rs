//! The lexer: source text → tokens with spans.
//!
//! Whitespace separates tokens; a newline or `;` ends a command; `\` at the end of a line
//! continues the command on the next one; `#` at the start of a token begins a comment that
//! runs to the end of the line. Strings are quoted with `"…"` (escapes `\" \\ \n \t`) or `'…'`
//! (raw); lists are `[a, b, c]` (or bare `a,b,c`, split later by the option's type).

use super::error::{ParseError, ParseErrorKind};
use super::span::{Span, Spanned};

/// One element of a bracketed list, or a scalar value.
#[derive(Clone, Debug, PartialEq)]
pub struct Atom {
    /// The text after unquoting.
    pub text: String,
    /// Whether it was written in quotes (quoted text is never a number or a keyword).
    pub quoted: bool,
}

/// A lexical token.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// A bare word: a verb, a key, a number, a path, a range like `0..8`.
    Word(String),
    /// A quoted string, unescaped.
    Quoted(String),
    /// A bracketed list `[…]`.
    List(Vec<Spanned<Atom>>),
    /// `=` between a key and its value.
    Eq,
    /// End of a command: a newline or `;`.
    Sep,
}

/// A token with its span in the source.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// What was read.
    pub tok: Tok,
    /// Where.
    pub span: Span,
}

fn is_word_end(c: char) -> bool {
    c.is_whitespace() || matches!(c, '=' | ';' | '"' | '\'' | '[' | ']')
}

struct Lexer<'s> {
    src: &'s str,
    pos: usize,
}

impl<'s> Lexer<'s> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Length of a line continuation at the cursor, if there is one: a `\`, optional blanks,
    /// then a newline (or the end of the text).
    fn continuation(&self) -> Option<usize> {
        continuation_at(&self.src[self.pos..])
    }

    fn word(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if is_word_end(c) || self.continuation().is_some() {
                break;
            }
            self.bump();
        }
        self.src[start..self.pos].to_string()
    }

    fn quoted(&mut self, quote: char) -> Result<String, ParseError> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => {
                    return Err(ParseError::new(
                        ParseErrorKind::Unterminated,
                        Span::new(start, start + 1),
                        format!("unterminated string: add the closing {quote}"),
                    ))
                }
                Some(c) if c == quote => return Ok(out),
                Some('\\') if quote == '"' => match self.bump() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(c @ ('"' | '\\')) => out.push(c),
                    Some(c) => {
                        out.push('\\');
                        out.push(c);
                    }
                    None => {}
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn list(&mut self) -> Result<Vec<Spanned<Atom>>, ParseError> {
        let open = self.pos;
        self.bump();
        let mut items = Vec::new();
        loop {
            while matches!(self.peek(), Some(c) if c == ',' || (c.is_whitespace() && c != '\n')) {
                self.bump();
            }
            let at = self.pos;
            match self.peek() {
                None | Some('\n') | Some(';') => {
                    return Err(ParseError::new(
                        ParseErrorKind::Unterminated,
                        Span::new(open, open + 1),
                        "unterminated list: add the closing ]".to_string(),
                    ))
                }
                Some(']') => {
                    self.bump();
                    return Ok(items);
                }
                Some('[') => {
                    return Err(ParseError::new(
                        ParseErrorKind::Syntax,
                        Span::new(at, at + 1),
                        "lists cannot be nested: write [a, b, c]".to_string(),
                    ))
                }
                Some('=') => {
                    return Err(ParseError::new(
                        ParseErrorKind::Syntax,
                        Span::new(at, at + 1),
                        "unexpected '=' inside a list: quote the item if it contains '='".to_string(),
                    ))
                }
                Some(q @ ('"' | '\'')) => {
                    let text = self.quoted(q)?;
                    items.push(Spanned { value: Atom { text, quoted: true }, span: Span::new(at, self.pos) });
                }
                Some(_) => {
                    let mut text = String::new();
                    while let Some(c) = self.peek() {
                        if c == ',' || is_word_end(c) {
                            break;
                        }
                        text.push(c);
                        self.bump();
                    }
                    items
                        .push(Spanned { value: Atom { text, quoted: false }, span: Span::new(at, self.pos) });
                }
            }
        }
    }
}

/// If `rest` starts with a line continuation (`\`, optional blanks, then a newline or the
/// end of the text), its length in bytes. The REPL uses the same rule to decide that a line
/// is incomplete.
pub fn continuation_at(rest: &str) -> Option<usize> {
    let after = rest.strip_prefix('\\')?;
    let blanks = after.len() - after.trim_start_matches([' ', '\t']).len();
    let tail = &after[blanks..];
    let newline = if tail.starts_with("\r\n") {
        2
    } else if tail.starts_with('\n') {
        1
    } else if tail.is_empty() {
        0
    } else {
        return None;
    };
    Some(1 + blanks + newline)
}

/// Splits `src` into tokens. Fails only on unterminated strings or lists and stray brackets.
pub fn lex(src: &str) -> Result<Vec<Token>, ParseError> {
    let mut lx = Lexer { src, pos: 0 };
    let mut out = Vec::new();
    let mut token_start = true;
    while let Some(c) = lx.peek() {
        let start = lx.pos;
        let tok = match c {
            '\n' | ';' => {
                lx.bump();
                Tok::Sep
            }
            _ if lx.continuation().is_some() => {
                lx.pos += lx.continuation().unwrap_or(0);
                token_start = true;
                continue;
            }
            c if c.is_whitespace() => {
                lx.bump();
                token_start = true;
                continue;
            }
            '#' if token_start => {
                while !matches!(lx.peek(), None | Some('\n')) {
                    lx.bump();
                }
                continue;
            }
            '=' => {
                lx.bump();
                Tok::Eq
            }
            '"' | '\'' => Tok::Quoted(lx.quoted(c)?),
            '[' => Tok::List(lx.list()?),
            ']' => {
                return Err(ParseError::new(
                    ParseErrorKind::Syntax,
                    Span::new(start, start + 1),
                    "unexpected ']': lists are written [a, b, c]".to_string(),
                ))
            }
            _ => Tok::Word(lx.word()),
        };
        token_start = matches!(tok, Tok::Sep | Tok::Eq);
        out.push(Token { tok, span: Span::new(start, lx.pos) });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Tok> {
        lex(src).unwrap().into_iter().map(|t| t.tok).collect()
    }

    fn w(s: &str) -> Tok {
        Tok::Word(s.to_string())
    }

    #[test]
    fn words_keys_and_values() {
        assert_eq!(
            kinds("fit epochs=3 batch = 16"),
            vec![w("fit"), w("epochs"), Tok::Eq, w("3"), w("batch"), Tok::Eq, w("16")]
        );
    }

    #[test]
    fn comments_separators_and_continuations() {
        assert_eq!(
            kinds("seed 1 # the seed\nfit \\\n epochs=2; eval"),
            vec![w("seed"), w("1"), Tok::Sep, w("fit"), w("epochs"), Tok::Eq, w("2"), Tok::Sep, w("eval")]
        );
        assert_eq!(kinds("data a#b.csv"), vec![w("data"), w("a#b.csv")]);
        // Blanks after the backslash are forgiven; a backslash at the very end is dropped.
        assert_eq!(kinds("fit \\  \nepochs=1 \\"), vec![w("fit"), w("epochs"), Tok::Eq, w("1")]);
        assert_eq!(kinds("a\\b"), vec![w("a\\b")]);
    }

    #[test]
    fn quoted_strings_and_lists() {
        let toks = kinds(r#"predict "a \"b\" c" 'x\y' [1, 2,3]"#);
        assert_eq!(toks[1], Tok::Quoted("a \"b\" c".into()));
        assert_eq!(toks[2], Tok::Quoted("x\\y".into()));
        match &toks[3] {
            Tok::List(items) => {
                let texts: Vec<_> = items.iter().map(|a| a.value.text.as_str()).collect();
                assert_eq!(texts, ["1", "2", "3"]);
            }
            other => panic!("expected a list, got {other:?}"),
        }
    }

    #[test]
    fn unterminated_string_points_at_the_quote() {
        let err = lex("load \"abc").unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::Unterminated);
        assert_eq!(err.span.start, 5);
        let err = lex("x=[1, 2").unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::Unterminated);
        assert_eq!(err.span.start, 2);
    }
}
