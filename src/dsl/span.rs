//! Byte spans into the source text, and their line/column for error messages.

/// A half-open byte range `start..end` into the text a command was parsed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// First byte of the spanned text.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span covering `start..end`.
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn join(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }

    /// 1-based line and column (in characters) of the span's start within `src`.
    pub fn line_col(&self, src: &str) -> (usize, usize) {
        let start = self.start.min(src.len());
        let before = &src[..floor_char_boundary(src, start)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// The source line holding the span's start, and the span's character range within it;
    /// used to draw a caret under the offending text.
    pub fn line_of<'s>(&self, src: &'s str) -> (&'s str, usize, usize) {
        let start = floor_char_boundary(src, self.start.min(src.len()));
        let end = floor_char_boundary(src, self.end.clamp(start, src.len()));
        let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
        let line = &src[line_start..line_end];
        let col = src[line_start..start].chars().count();
        let width = src[start..end.min(line_end)].chars().count().max(1);
        (line, col, width)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A value together with the span it was parsed from.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub span: Span,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_chars() {
        let src = "seed 1\nfit épochs=3";
        let at = src.find("=3").unwrap();
        assert_eq!(Span::new(at, at + 2).line_col(src), (2, 11));
        assert_eq!(Span::new(0, 1).line_col(src), (1, 1));
    }

    #[test]
    fn line_of_returns_the_line_and_caret_range() {
        let src = "seed 1\nfit epochs=x\nplot loss";
        let at = src.find('x').unwrap();
        let (line, col, width) = Span::new(at, at + 1).line_of(src);
        assert_eq!((line, col, width), ("fit epochs=x", 11, 1));
    }
}
