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
    /// rhai strings, characters and comments. Returns the text and its span, and leaves the lexer
    /// after the closing brace; `None` if the text ends first.
    pub fn raw_block(&mut self) -> Option<(String, Span)> {
        let start = self.pos;
        let bytes = self.src.as_bytes();
        let mut i = start;
        let mut depth = 0usize;
        let at = |i: usize| bytes.get(i).copied();
        while let Some(byte) = at(i) {
            match byte {
                b'"' | b'\'' | b'`' => {
                    let quote = byte;
                    i += 1;
                    while let Some(c) = at(i).filter(|c| *c != quote) {
                        if c == b'\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                }
                b'/' if at(i + 1) == Some(b'/') => {
                    while at(i).is_some_and(|c| c != b'\n') {
                        i += 1;
                    }
                    continue;
                }
                b'/' if at(i + 1) == Some(b'*') => {
                    i += 2;
                    while at(i + 1).is_some() && !(at(i) == Some(b'*') && at(i + 1) == Some(b'/')) {
                        i += 1;
                    }
                    i += 1;
                }
                b'{' => depth += 1,
                b'}' if depth == 0 => {
                    let text = self.src.get(start..i)?.to_string();
                    self.pos = i + 1;
                    return Some((text, Span::new(start, i)));
                }
                b'}' => depth -= 1,
                _ => {}
            }
            i += 1;
        }
        self.pos = self.src.len();
        None
    }

    pub fn at_end(&self) -> bool {
        self.peek_char().is_none()
    }
}
