//! The schema lexer: turns text into tokens on demand, so the parser can take a caveat body as raw
//! text (it is rhai, not schema language). Comments are collected, not dropped, so that `fmt` keeps
//! them.

use super::diagnostic::{Diagnostic, Span};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// A name; may contain `/` between segments (`org/team/user`).
    Ident(String),
    LBrace,
    RBrace,
    LParen,
    RParen,
    Colon,
    Pipe,
    Hash,
    Plus,
    Amp,
    Minus,
    Arrow,
    Dot,
    Comma,
    Lt,
    Gt,
    Equals,
    Star,
    Semicolon,
    /// Anything else, kept so the parser can say what it found.
    Unknown(char),
    Eof,
}

impl Tok {
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::LBrace => "`{`".into(),
            Tok::RBrace => "`}`".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Colon => "`:`".into(),
            Tok::Pipe => "`|`".into(),
            Tok::Hash => "`#`".into(),
            Tok::Plus => "`+`".into(),
            Tok::Amp => "`&`".into(),
            Tok::Minus => "`-`".into(),
            Tok::Arrow => "`->`".into(),
            Tok::Dot => "`.`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Lt => "`<`".into(),
            Tok::Gt => "`>`".into(),
            Tok::Equals => "`=`".into(),
            Tok::Star => "`*`".into(),
            Tok::Semicolon => "`;`".into(),
            Tok::Unknown(c) => format!("`{}`", c.escape_default()),
            Tok::Eof => "the end of the schema".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
    /// Comments between the previous token and this one, in order.
    pub comments: Vec<String>,
    /// Whether a blank line separates this token from the previous one.
    pub blank_line_before: bool,
}

pub struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str) -> Lexer<'a> {
        Lexer { src, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn peek_char(&self) -> Option<char> {
        self.rest().chars().next()
    }

    /// Skips white space and comments, returning the comments and whether a blank line was seen.
    fn trivia(&mut self, diags: &mut Vec<Diagnostic>) -> (Vec<String>, bool) {
        let mut comments = Vec::new();
        let mut newlines = 0;
        let mut blank = false;
        loop {
            let rest = self.rest();
            if let Some(c) = rest.chars().next().filter(|c| c.is_whitespace()) {
                if c == '\n' {
                    newlines += 1;
                    if newlines >= 2 {
                        blank = true;
                    }
                }
                self.pos += c.len_utf8();
            } else if rest.starts_with("//") {
                let end = rest.find('\n').unwrap_or(rest.len());
                comments.push(rest[..end].trim_end().to_string());
                self.pos += end;
                newlines = 0;
            } else if let Some(body) = rest.strip_prefix("/*") {
                match body.find("*/") {
                    Some(i) => {
                        comments.push(rest[..i + 4].to_string());
                        self.pos += i + 4;
                    }
                    None => {
                        diags.push(Diagnostic::new("unterminated block comment", Span::new(self.pos, self.pos + 2)));
                        self.pos = self.src.len();
                    }
                }
                newlines = 0;
            } else {
                return (comments, blank);
            }
        }
    }

    pub fn next_token(&mut self, diags: &mut Vec<Diagnostic>) -> Token {
        let (comments, blank_line_before) = self.trivia(diags);
        let start = self.pos;
        let rest = self.rest();
        let Some(c) = rest.chars().next() else {
            return Token { tok: Tok::Eof, span: Span::new(start, start), comments, blank_line_before };
        };
        let mut len = c.len_utf8();
        let tok = match c {
            '{' => Tok::LBrace,
            '}' => Tok::RBrace,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            ':' => Tok::Colon,
            '|' => Tok::Pipe,
            '#' => Tok::Hash,
            '+' => Tok::Plus,
            '&' => Tok::Amp,
            '-' if rest.starts_with("->") => {
                len = 2;
                Tok::Arrow
            }
            '-' => Tok::Minus,
            '.' => Tok::Dot,
            ',' => Tok::Comma,
            '<' => Tok::Lt,
            '>' => Tok::Gt,
            '=' => Tok::Equals,
            '*' => Tok::Star,
            ';' => Tok::Semicolon,
            c if ident_char(c) => {
                // A name runs over letters, digits and `_`, and over `/` when a name character
                // follows it (so `a/b` is one name but `a //c` is a name and a comment).
                let bytes = rest.as_bytes();
                let mut i = 0;
                while let Some(&byte) = bytes.get(i) {
                    let b = char::from(byte);
                    let next_is_ident = bytes.get(i + 1).is_some_and(|n| ident_char(char::from(*n)));
                    if ident_char(b) || (b == '/' && next_is_ident) {
                        i += 1;
                    } else {
                        break;
                    }
                }
                len = i;
                Tok::Ident(rest[..i].to_string())
            }
            other => Tok::Unknown(other),
        };
        self.pos += len;
        Token { tok, span: Span::new(start, self.pos), comments, blank_line_before }
    }

    /// Takes the raw text up to the `}` that balances an already consumed `{`, skipping braces in
    /// rhai strings, characters and comments ([`scan_rhai`]). Returns the text and its span, and
    /// leaves the lexer after the closing brace; `None` if the text ends first.
    pub fn raw_block(&mut self) -> Option<(String, Span)> {
        let start = self.pos;
        let rest = self.src.get(start..)?;
        match scan_rhai(rest).close {
            Some(len) => {
                let text = rest.get(..len)?.to_string();
                self.pos = start + len + 1;
                Some((text, Span::new(start, start + len)))
            }
            None => {
                self.pos = self.src.len();
                None
            }
        }
    }

    /// Moves to `pos` (a char boundary the caller found, such as the end of a caveat body).
    pub fn seek(&mut self, pos: usize) {
        self.pos = pos.min(self.src.len());
    }

    pub fn at_end(&self) -> bool {
        self.peek_char().is_none()
    }
}

/// What [`scan_rhai`] found in rhai text.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RhaiScan {
    /// Byte offset of the first `}` in code that no `{` opened (the end of a caveat body).
    pub close: Option<usize>,
    /// Byte offsets of the line starts (after a `\n`) that lie inside a string literal: text
    /// there is the string's content, so `fmt` must not touch its indentation.
    pub lines_in_strings: Vec<usize>,
    /// Byte offsets of the starts of lines (0 for the first) on which a `"…"` string opens that
    /// goes on past a line end with `\`: rhai skips the next line's white space up to that
    /// string's opening column, so the line's indentation is part of the string's value.
    pub pinned_lines: Vec<usize>,
}

/// Where a rhai scan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rhai {
    /// Code, with the depth of `{` opened in it; inside a back-tick string's `${…}` when it is
    /// not the outermost.
    Code(usize),
    /// `"…"` (escapes with `\`, which may also continue the string on the next line).
    Quoted,
    /// `'…'`.
    Char,
    /// `` `…` ``, which may span lines and holds `${…}` interpolations.
    Backtick,
    /// `#"…"#` with this many `#`s: no escapes.
    Raw(usize),
    /// `/* … */`, nested to this level (rhai's block comments nest).
    Block(usize),
}

/// Scans rhai text lexically (strings of each kind, characters, comments, braces), without
/// parsing it: enough to find where a caveat body ends and which of its lines begin inside a
/// string. Runs in one pass; the state stack grows only with nested interpolations.
pub fn scan_rhai(text: &str) -> RhaiScan {
    let bytes = text.as_bytes();
    let at = |i: usize| bytes.get(i).copied();
    let mut out = RhaiScan::default();
    let mut stack = vec![Rhai::Code(0)];
    let mut i = 0;
    // The start of the current line, and of the line where the open `"…"` string began.
    let (mut line, mut quote_line) = (0, 0);
    while let Some(b) = at(i) {
        let Some(&top) = stack.last() else { break };
        if b == b'\n' {
            line = i + 1;
            if matches!(top, Rhai::Quoted | Rhai::Char | Rhai::Backtick | Rhai::Raw(_)) {
                out.lines_in_strings.push(i + 1);
            }
        }
        let mut step = 1;
        match top {
            Rhai::Code(depth) => match b {
                b'"' => {
                    stack.push(Rhai::Quoted);
                    quote_line = line;
                }
                b'\'' => stack.push(Rhai::Char),
                b'`' => stack.push(Rhai::Backtick),
                b'#' if matches!(at(i + 1), Some(b'"' | b'#')) => {
                    let hashes = bytes.get(i..).map_or(0, |r| r.iter().take_while(|c| **c == b'#').count());
                    if at(i + hashes) == Some(b'"') {
                        stack.push(Rhai::Raw(hashes));
                        step = hashes + 1;
                    }
                }
                b'/' if at(i + 1) == Some(b'/') => {
                    step = bytes.get(i..).and_then(|r| r.iter().position(|c| *c == b'\n')).unwrap_or(bytes.len() - i);
                }
                b'/' if at(i + 1) == Some(b'*') => {
                    stack.push(Rhai::Block(1));
                    step = 2;
                }
                b'{' => set_top(&mut stack, Rhai::Code(depth + 1)),
                b'}' if depth > 0 => set_top(&mut stack, Rhai::Code(depth - 1)),
                b'}' if stack.len() > 1 => {
                    // The end of a `${…}` interpolation: back in its string.
                    stack.pop();
                }
                b'}' => {
                    out.close = Some(i);
                    return out;
                }
                _ => {}
            },
            Rhai::Quoted | Rhai::Char => match b {
                b'\\' => {
                    // A line continuation: `\` and a line end (rhai ignores a `\r` before it).
                    let end = match (at(i + 1), at(i + 2)) {
                        (Some(b'\n'), _) => Some(i + 2),
                        (Some(b'\r'), Some(b'\n')) => Some(i + 3),
                        _ => None,
                    };
                    if let Some(next_line) = end {
                        out.lines_in_strings.push(next_line);
                        line = next_line;
                        if top == Rhai::Quoted && out.pinned_lines.last() != Some(&quote_line) {
                            out.pinned_lines.push(quote_line);
                        }
                    }
                    step = end.map_or(2, |e| e - i);
                }
                b'"' if top == Rhai::Quoted => {
                    stack.pop();
                }
                b'\'' if top == Rhai::Char => {
                    stack.pop();
                }
                _ => {}
            },
            Rhai::Backtick => match b {
                b'`' => {
                    stack.pop();
                }
                b'$' if at(i + 1) == Some(b'{') => {
                    stack.push(Rhai::Code(0));
                    step = 2;
                }
                // `\$` is a literal `$` (so `\${` opens no interpolation); any other `\` is
                // itself.
                b'\\' if at(i + 1) == Some(b'$') => step = 2,
                _ => {}
            },
            Rhai::Raw(hashes) => {
                if b == b'"' && bytes.get(i + 1..i + 1 + hashes).is_some_and(|r| r.iter().all(|c| *c == b'#')) {
                    stack.pop();
                    step = hashes + 1;
                }
            }
            Rhai::Block(level) => match b {
                b'/' if at(i + 1) == Some(b'*') => {
                    set_top(&mut stack, Rhai::Block(level + 1));
                    step = 2;
                }
                b'*' if at(i + 1) == Some(b'/') => {
                    if level > 1 {
                        set_top(&mut stack, Rhai::Block(level - 1));
                    } else {
                        stack.pop();
                    }
                    step = 2;
                }
                _ => {}
            },
        }
        i += step;
    }
    out
}

fn set_top(stack: &mut [Rhai], state: Rhai) {
    if let Some(top) = stack.last_mut() {
        *top = state;
    }
}
