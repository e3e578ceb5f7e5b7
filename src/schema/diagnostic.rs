//! Spans and diagnostics for schema text: byte ranges, their line and column, and the rendering of
//! an error with its source line and a caret.

use std::fmt;

/// A byte range in the schema source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end: end.max(start) }
    }

    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// Whether a diagnostic stops the schema from compiling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Severity {
    #[default]
    Error,
    /// The schema compiles, but something in it deserves attention.
    Warning,
}

/// One problem found in schema text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub span: Span,
    pub severity: Severity,
}

impl Diagnostic {
    /// An error.
    pub fn new(message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic { message: message.into(), span, severity: Severity::Error }
    }

    pub fn warning(message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic { message: message.into(), span, severity: Severity::Warning }
    }

    /// 1-based line and column (in characters) of the start of the span.
    pub fn line_col(&self, source: &str) -> (usize, usize) {
        line_col(source, self.span.start)
    }

    /// Renders `file:line:col: error: message` (or `warning:`), the source line and a caret under
    /// the span.
    pub fn render(&self, file: &str, source: &str) -> String {
        let (line, col) = self.line_col(source);
        let start = floor_char(source, self.span.start.min(source.len()));
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[line_start..].find('\n').map_or(source.len(), |i| line_start + i);
        // A long line is shown as a window around the span (a 1 MB name must not print 3 MB).
        let from = floor_char(source, start.saturating_sub(WINDOW / 2).max(line_start));
        let to = floor_char(source, (from + WINDOW).min(line_end));
        let (before, after) = (if from > line_start { "…" } else { "" }, if to < line_end { "…" } else { "" });
        let text = format!("{before}{}{after}", source.get(from..to).unwrap_or("").trim_end_matches('\r'));
        let span_end = floor_char(source, self.span.end.min(to).max(start));
        let width = source.get(start..span_end).map_or(1, |s| s.chars().count()).max(1);
        let gutter = line.to_string().len();
        let shown_before = before.chars().count() + source.get(from..start).map_or(0, |s| s.chars().count());
        let pad: String = text.chars().take(shown_before).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
        format!(
            "{file}:{line}:{col}: {kind}: {msg}\n{blank} |\n{line} | {text}\n{blank} | {pad}{carets}\n",
            kind = match self.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            },
            msg = crate::text::elide_to(&self.message, MAX_MESSAGE_BYTES),
            blank = " ".repeat(gutter),
            carets = "^".repeat(width),
        )
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The longest message shown; longer ones (which echo a long input) are elided in the middle.
const MAX_MESSAGE_BYTES: usize = 600;

/// The most bytes of a source line shown under a diagnostic.
const WINDOW: usize = 160;

fn floor_char(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char(source, offset);
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Renders every diagnostic, in source order.
pub fn render_all(diags: &[Diagnostic], file: &str, source: &str) -> String {
    let mut sorted: Vec<&Diagnostic> = diags.iter().collect();
    sorted.sort_by_key(|d| (d.span.start, d.span.end));
    sorted.iter().map(|d| d.render(file, source)).collect()
}
