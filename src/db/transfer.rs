//! Export and import as JSON lines: a line with the revision and schema, then one per
//! relationship and one per object with attributes.

use std::io::{BufRead, Write};

use serde_json::{Value, json};

use super::error::DbError;
use super::{Database, WriteRequest};
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
    /// batches of the write limit); returns the last revision written.
    pub fn import(&self, tenant: &str, input: &mut dyn BufRead) -> Result<Revision, DbError> {
        let mut rev = self.revision(tenant)?;
        let mut batch = Vec::new();
        let flush = |batch: &mut Vec<Mutation>, rev: &mut Revision| -> Result<(), DbError> {
            if !batch.is_empty() {
                *rev = self.write(tenant, WriteRequest::new(std::mem::take(batch)))?;
            }
            Ok(())
        };
        for (i, line) in input.lines().enumerate() {
            let line = line
                .map_err(|e| DbError::Io { what: format!("reading import line {}", i + 1), message: e.to_string() })?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |reason: String| DbError::Import { line: i + 1, reason };
            let v: Value = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
            if let Some(schema) = v.get("schema") {
                if let Some(text) = schema.as_str() {
                    flush(&mut batch, &mut rev)?;
                    rev = self.write_schema(tenant, text)?;
                }
            } else if let Some(r) = v.get("relationship").and_then(Value::as_str) {
                batch.push(Mutation::Touch(Relationship::parse(r).map_err(|e| bad(e.to_string()))?));
            } else if let (Some(o), Some(a)) =
                (v.get("object").and_then(Value::as_str), v.get("attributes").and_then(Value::as_object))
            {
                batch.push(Mutation::SetAttributes(
                    ObjectRef::parse(o, false).map_err(|e| bad(e.to_string()))?,
                    a.clone(),
                ));
            } else {
                return Err(bad("expected a `schema`, `relationship` or `object` line".into()));
            }
            if batch.len() >= self.limits.max_relationships_per_write {
                flush(&mut batch, &mut rev)?;
            }
        }
        flush(&mut batch, &mut rev)?;
        Ok(rev)
    }
}
