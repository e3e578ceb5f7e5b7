//! User text in and out. In: files and lines are read with their size limit enforced while
//! reading (never read whole and then measured), a UTF-8 byte-order mark is dropped, and text
//! that is not UTF-8 is an error locating the first bad byte by line and column. Out: inputs
//! echoed in messages are elided past a length ([`elide`]).
//!
//! Architecture invariant: the bottom layer; it knows nothing of schemas or relationships.

use std::io::{BufRead, Read};
use std::path::Path;

/// The longest piece of user input echoed in a message, in bytes; longer ones are elided.
pub const MAX_ECHO_BYTES: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read `{path}`: {message}")]
    Io { path: String, message: String },
    #[error("`{path}` is larger than the limit of {limit} bytes (reading stopped there)")]
    TooLarge { path: String, limit: usize },
    #[error("`{path}` is not UTF-8 text: byte 0x{byte:02x} at line {line}, column {column}")]
    NotUtf8 { path: String, line: usize, column: usize, byte: u8 },
}

/// Reads the whole of `path` as text, refusing it as soon as it passes `limit` bytes.
pub fn read_limited(path: &Path, limit: usize) -> Result<String, ReadError> {
    let name = path.display().to_string();
    let io = |e: std::io::Error| ReadError::Io { path: name.clone(), message: e.to_string() };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() > limit {
        return Err(ReadError::TooLarge { path: name, limit });
    }
    decode(bytes, &name, 1)
}

/// Bytes as text: a leading byte-order mark dropped; invalid UTF-8 located (lines counted from
/// `first_line`).
pub fn decode(mut bytes: Vec<u8>, name: &str, first_line: usize) -> Result<String, ReadError> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    utf8(bytes, name, first_line)
}

fn utf8(bytes: Vec<u8>, name: &str, first_line: usize) -> Result<String, ReadError> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let before = bytes.get(..at).unwrap_or(&[]);
        let line_start = before.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let line = first_line + before.iter().filter(|b| **b == b'\n').count();
        // Characters before the bad byte on its line (the prefix is valid UTF-8).
        let column = std::str::from_utf8(before.get(line_start..).unwrap_or(&[])).map_or(0, |s| s.chars().count()) + 1;
        ReadError::NotUtf8 { path: name.to_string(), line, column, byte: bytes.get(at).copied().unwrap_or(0) }
    })
}

/// Lines of a stream, each at most `max` bytes (a longer line is an error, read no further than
/// the limit), decoded as [`decode`] does; the first line may start with a byte-order mark.
pub struct BoundedLines<R> {
    input: R,
    name: String,
    max: usize,
    number: usize,
}

impl<R: BufRead> BoundedLines<R> {
    pub fn new(input: R, name: impl Into<String>, max: usize) -> BoundedLines<R> {
        BoundedLines { input, name: name.into(), max, number: 0 }
    }

    /// The number of the line last returned (1-based).
    pub fn number(&self) -> usize {
        self.number
    }

    /// The next line without its line ending, or `None` at the end.
    pub fn next_line(&mut self) -> Result<Option<String>, ReadError> {
        let mut bytes = Vec::new();
        // Room for the line's end (`\r\n`) past a line of exactly `max` bytes.
        let read = (&mut self.input)
            .take(self.max as u64 + 2)
            .read_until(b'\n', &mut bytes)
            .map_err(|e| ReadError::Io { path: self.name.clone(), message: e.to_string() })?;
        if read == 0 {
            return Ok(None);
        }
        self.number += 1;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        if bytes.len() > self.max {
            return Err(ReadError::TooLarge { path: format!("{}, line {}", self.name, self.number), limit: self.max });
        }
        // A byte-order mark is dropped only at the start of the stream.
        if self.number == 1 { decode(bytes, &self.name, 1) } else { utf8(bytes, &self.name, self.number) }.map(Some)
    }
}

/// `text` for a message: as is up to [`MAX_ECHO_BYTES`], else its start and end around a note
/// of how much was left out.
pub fn elide(text: &str) -> std::borrow::Cow<'_, str> {
    elide_to(text, MAX_ECHO_BYTES)
}

/// [`elide`] to at most about `max` bytes (a message that holds an echoed input and an
/// explanation gets a larger bound than the input alone).
pub fn elide_to(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    let cut = |mut at: usize| {
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        at
    };
    let head = cut(max * 3 / 4);
    let tail = cut(text.len() - max / 4);
    let (start, end) = (text.get(..head).unwrap_or(""), text.get(tail..).unwrap_or(""));
    std::borrow::Cow::Owned(format!("{start}…[{} bytes]…{end}", tail - head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_located() {
        let err = decode(b"ab\ncd\xffe".to_vec(), "f", 1).unwrap_err().to_string();
        assert_eq!(err, "`f` is not UTF-8 text: byte 0xff at line 2, column 3");
        let err = decode(b"\xc3\xa9\n\n  \xc3\xa9\x80".to_vec(), "f", 10).unwrap_err().to_string();
        assert!(err.contains("line 12, column 4"), "{err}");
    }

    #[test]
    fn a_byte_order_mark_is_dropped() {
        assert_eq!(decode(b"\xEF\xBB\xBFdefinition".to_vec(), "f", 1).unwrap(), "definition");
    }

    #[test]
    fn long_text_is_elided() {
        assert_eq!(elide("short"), "short");
        let long = "é".repeat(1000);
        let e = elide(&long);
        assert!(e.len() < 260 && e.contains("bytes]…"), "{e}");
    }

    #[test]
    fn lines_are_bounded() {
        let mut lines = BoundedLines::new(&b"\xEF\xBB\xBFone\r\ntwo\r\n12345678\r\nthree-is-long\n"[..], "in", 8);
        assert_eq!(lines.next_line().unwrap().as_deref(), Some("one"));
        assert_eq!(lines.next_line().unwrap().as_deref(), Some("two"));
        assert_eq!(lines.next_line().unwrap().as_deref(), Some("12345678"), "exactly the limit, then CRLF");
        let err = lines.next_line().unwrap_err().to_string();
        assert!(err.contains("in, line 4") && err.contains("limit of 8"), "{err}");
    }
}
