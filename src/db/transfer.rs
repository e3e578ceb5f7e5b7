//! Export and import as JSON lines: a line with the revision and schema, then one per
//! relationship and one per object with attributes. Import also takes SpiceDB's relationship
//! text, one per line (as in validation files and `zed` exports), mixed freely with JSON lines.

use std::io::{BufRead, Write};

use serde_json::{Value, json};

use super::Database;
use super::error::DbError;
use crate::model::{ObjectRef, Relationship, Revision};
use crate::store::Mutation;

impl Database {
    /// Writes the tenant's schema, relationships and attributes at the head as JSON lines.
    pub fn export(&self, tenant: &str, out: &mut dyn Write) -> Result<Revision, DbError> {
        let head = self.tenant(tenant)?.head()?;
        let io = |e: std::io::Error| DbError::Io { what: "writing the export".into(), message: e.to_string() };
        let text = head.schema_text().map(|t| t.to_string());
        writeln!(out, "{}", json!({"revision": head.revision().0, "schema": text})).map_err(io)?;
        for r in head.index().relationships(None, None, None) {
            writeln!(out, "{}", json!({"relationship": r.to_string()})).map_err(io)?;
        }
        for (o, a) in head.index().all_attributes() {
            writeln!(out, "{}", json!({"object": o.to_string(), "attributes": a})).map_err(io)?;
        }
        Ok(head.revision())
    }

    /// Reads an export into a tenant (schema first, then relationships and attributes in
    /// chunks of [`super::Limits::import_chunk`], see [`Database::import_chunk`]); returns the
    /// last revision written. A line that is not a
    /// JSON object is a relationship in SpiceDB's text form
    /// (`document:1#viewer@user:alice[expiration:2030-01-01T00:00:00Z]`); blank lines and lines
    /// starting with `//` or `#` are skipped.
    ///
    /// ```
    /// let db = pemba::db::Database::in_memory();
    /// db.create_tenant("t").unwrap();
    /// db.write_schema("t", "definition user {}\ndefinition doc { relation viewer: user }").unwrap();
    /// let text = "// from a validation file\ndoc:1#viewer@user:ann\ndoc:2#viewer@user:bob\n";
    /// db.import("t", &mut text.as_bytes()).unwrap();
    /// ```
    pub fn import(&self, tenant: &str, input: &mut dyn BufRead) -> Result<Revision, DbError> {
        let mut lines = Lines::new(input);
        let rev = self.import_lines(tenant, &mut lines)?;
        if let Some((line, _)) = lines.peek()? {
            let line = *line;
            return Err(DbError::Import {
                line,
                reason: "a `tenant` line: this is a backup of several tenants; restore it with `pemba restore`".into(),
            });
        }
        Ok(rev)
    }

    /// Imports lines until the input ends or a backup's next `tenant` line (left unread).
    fn import_lines(&self, tenant: &str, lines: &mut Lines<'_>) -> Result<Revision, DbError> {
        let mut rev = self.revision(tenant)?;
        let chunk = self.limits.import_chunk.max(1);
        let mut batch = Vec::with_capacity(chunk.min(1 << 16));
        let flush = |batch: &mut Vec<Mutation>, rev: &mut Revision| -> Result<(), DbError> {
            if !batch.is_empty() {
                *rev = self.import_chunk(tenant, std::mem::take(batch))?;
            }
            Ok(())
        };
        loop {
            match lines.peek()? {
                None => break,
                Some((_, Line::Json(v))) if v.get("tenant").is_some() => break,
                Some(_) => {}
            }
            let Some((n, line)) = lines.next_value()? else { break };
            let bad = |reason: String| DbError::Import { line: n, reason };
            let relationship = |text: &str| Relationship::parse(text).map_err(|e| bad(e.to_string()));
            let mutation = match line {
                Line::Text(text) => Mutation::Touch(relationship(&text)?),
                Line::Json(v) => {
                    if let Some(schema) = v.get("schema") {
                        if let Some(text) = schema.as_str() {
                            flush(&mut batch, &mut rev)?;
                            rev = self.write_schema(tenant, text)?;
                        }
                        continue;
                    }
                    if let Some(r) = v.get("relationship").and_then(Value::as_str) {
                        Mutation::Touch(relationship(r)?)
                    } else if let (Some(o), Some(a)) =
                        (v.get("object").and_then(Value::as_str), v.get("attributes").and_then(Value::as_object))
                    {
                        Mutation::SetAttributes(ObjectRef::parse(o).map_err(|e| bad(e.to_string()))?, a.clone())
                    } else {
                        return Err(bad("expected a `schema`, `relationship` or `object` line".into()));
                    }
                }
            };
            batch.push(mutation);
            if batch.len() >= chunk {
                flush(&mut batch, &mut rev)?;
            }
        }
        flush(&mut batch, &mut rev)?;
        Ok(rev)
    }

    /// A backup of every tenant: for each, a `{"tenant": name}` line and then its export (read
    /// from one view of its head: consistent at that revision, and untouched by writes and
    /// garbage collection going on meanwhile). Returns each tenant's revision.
    pub fn backup(&self, out: &mut dyn Write) -> Result<Vec<(String, Revision)>, DbError> {
        let io = |e: std::io::Error| DbError::Io { what: "writing the backup".into(), message: e.to_string() };
        writeln!(out, "{}", json!({"pemba_backup": 1})).map_err(io)?;
        let mut revisions = Vec::new();
        for name in self.tenants()? {
            writeln!(out, "{}", json!({"tenant": name})).map_err(io)?;
            let rev = self.export(&name, out)?;
            revisions.push((name, rev));
        }
        out.flush().map_err(io)?;
        Ok(revisions)
    }

    /// Restores a backup into this database, which must hold none of its tenants: each is
    /// created and imported through [`Database::import`]'s path. Returns the tenants restored.
    pub fn restore(&self, input: &mut dyn BufRead) -> Result<Vec<String>, DbError> {
        let mut lines = Lines::new(input);
        match lines.next_value()? {
            Some((_, Line::Json(v))) if v.get("pemba_backup").and_then(Value::as_u64) == Some(1) => {}
            _ => return Err(DbError::Import { line: 1, reason: "not a Pemba backup (no `pemba_backup` line)".into() }),
        }
        let mut restored = Vec::new();
        while let Some((n, v)) = lines.next_value()? {
            let Some(name) = (match &v {
                Line::Json(v) => v.get("tenant").and_then(Value::as_str),
                Line::Text(_) => None,
            }) else {
                return Err(DbError::Import { line: n, reason: "expected a `tenant` line".into() });
            };
            self.create_tenant(name)?;
            self.import_lines(name, &mut lines)?;
            restored.push(name.to_string());
        }
        Ok(restored)
    }
}

/// The longest line an export, backup or import may hold (a relationship with its caveat
/// context, a schema, an object's attributes), in bytes.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// A line of an import: JSON, or a relationship in SpiceDB's text form.
enum Line {
    Json(Value),
    Text(String),
}

/// Import lines with their numbers, blank lines and comments skipped, one line of lookahead;
/// each line read within [`MAX_LINE_BYTES`].
struct Lines<'a> {
    input: crate::text::BoundedLines<&'a mut dyn BufRead>,
    peeked: Option<(usize, Line)>,
}

impl<'a> Lines<'a> {
    fn new(input: &'a mut dyn BufRead) -> Lines<'a> {
        Lines { input: crate::text::BoundedLines::new(input, "the input", MAX_LINE_BYTES), peeked: None }
    }

    fn next_value(&mut self) -> Result<Option<(usize, Line)>, DbError> {
        if let Some(p) = self.peeked.take() {
            return Ok(Some(p));
        }
        loop {
            let at = self.input.number() + 1;
            let line = self.input.next_line().map_err(|e| match e {
                crate::text::ReadError::Io { message, .. } => {
                    DbError::Io { what: format!("reading import line {at}"), message }
                }
                e => DbError::Import { line: at, reason: e.to_string() },
            })?;
            let n = self.input.number();
            let Some(line) = line else { return Ok(None) };
            let text = line.trim();
            if text.is_empty() || text.starts_with("//") || text.starts_with('#') {
                continue;
            }
            if !text.starts_with('{') {
                return Ok(Some((n, Line::Text(text.to_string()))));
            }
            let v = serde_json::from_str(text).map_err(|e| DbError::Import { line: n, reason: e.to_string() })?;
            return Ok(Some((n, Line::Json(v))));
        }
    }

    fn peek(&mut self) -> Result<Option<&(usize, Line)>, DbError> {
        if self.peeked.is_none() {
            self.peeked = self.next_value()?;
        }
        Ok(self.peeked.as_ref())
    }
}
