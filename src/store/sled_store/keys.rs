//! The on-disk layout. The database-wide tree `__pemba_meta` holds `format` (the format
//! version), `tenant/<name>` (one per tenant) and settings such as `cursor_key`. One tree per
//! tenant, `tenant/<name>`, holds under one-byte prefixes:
//! - `m` meta: `mhead` and `moldest` revisions (big-endian u64);
//! - `r` relationship versions: `key 0x00 created(be u64)` → {deleted, text};
//! - `a` attribute versions: `object 0x00 created(be u64)` → {deleted, attributes};
//! - `s` schema versions: `revision(be u64)` → text;
//! - `c` changelog: `revision(be u64)` → the batch's changes (JSON);
//! - `t` commit times: `revision(be u64)` → nanoseconds since the epoch.
//!
//! A read at revision R sees a version when `created <= R < deleted`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::Relationship;
use crate::store::{Change, Revision, StoreError, object_key, parse_object_key};

pub(super) const META_TREE: &str = "__pemba_meta";
pub(super) const TENANT_PREFIX: &str = "tenant/";
pub(super) const FORMAT_KEY: &str = "format";
/// Set in the meta tree when the store is marked (its `PEMBA` marker and integrity record
/// exist from then on): a store holding it without its marker lost files.
pub(super) const MARKED_KEY: &str = "marked";

pub(super) const HEAD_KEY: &[u8] = b"mhead";
pub(super) const OLDEST_KEY: &[u8] = b"moldest";
pub(super) const RELATIONSHIPS: u8 = b'r';
pub(super) const ATTRIBUTES: u8 = b'a';
pub(super) const SCHEMAS: u8 = b's';
pub(super) const CHANGELOG: u8 = b'c';
pub(super) const COMMIT_TIMES: u8 = b't';

/// The value of a relationship version.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RelRow {
    pub(super) deleted: Option<u64>,
    pub(super) text: String,
}

/// The value of an attribute version.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct AttrRow {
    pub(super) deleted: Option<u64>,
    pub(super) attributes: Map<String, Value>,
}

/// A changelog entry as stored (relationships and objects in their text forms).
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum ChangeRow {
    Upsert(String),
    Delete(String),
    SetAttributes { object: String, attributes: Map<String, Value> },
    DeleteAttributes { object: String },
    Schema(String),
    Metadata(Map<String, Value>),
}

impl ChangeRow {
    pub(super) fn from_change(c: &Change) -> ChangeRow {
        match c {
            Change::Upsert(r) => ChangeRow::Upsert(r.to_string()),
            Change::Delete(r) => ChangeRow::Delete(r.to_string()),
            Change::SetAttributes { object, attributes } => {
                ChangeRow::SetAttributes { object: object_key(object), attributes: attributes.clone() }
            }
            Change::DeleteAttributes { object } => ChangeRow::DeleteAttributes { object: object_key(object) },
            Change::Schema(s) => ChangeRow::Schema(s.clone()),
            Change::Metadata(m) => ChangeRow::Metadata(m.clone()),
        }
    }

    pub(super) fn into_change(self) -> Result<Change, StoreError> {
        Ok(match self {
            ChangeRow::Upsert(r) => Change::Upsert(parse_relationship(&r)?),
            ChangeRow::Delete(r) => Change::Delete(parse_relationship(&r)?),
            ChangeRow::SetAttributes { object, attributes } => {
                Change::SetAttributes { object: parse_object_key(&object)?, attributes }
            }
            ChangeRow::DeleteAttributes { object } => Change::DeleteAttributes { object: parse_object_key(&object)? },
            ChangeRow::Schema(s) => Change::Schema(s),
            ChangeRow::Metadata(m) => Change::Metadata(m),
        })
    }
}

pub(super) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(super) fn parse_relationship(text: &str) -> Result<Relationship, StoreError> {
    Relationship::parse(text).map_err(|e| corrupt(format!("relationship `{text}`: {e}")))
}

pub(super) fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

pub(super) fn read_be(b: &[u8]) -> Result<u64, StoreError> {
    b.try_into().map(u64::from_be_bytes).map_err(|_| corrupt("bad revision bytes"))
}

/// `prefix revision`: the key of a schema version, a changelog entry or a commit time.
pub(super) fn revision_key(prefix: u8, revision: Revision) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(prefix);
    k.extend_from_slice(&be(revision.0));
    k
}

/// The revision in a `prefix revision` key.
pub(super) fn key_revision(k: &[u8]) -> Result<Revision, StoreError> {
    read_be(k.get(1..).unwrap_or(&[])).map(Revision)
}

pub(super) fn versioned_key(prefix: u8, key: &str, created: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 10);
    k.push(prefix);
    k.extend_from_slice(key.as_bytes());
    k.push(0);
    k.extend_from_slice(&be(created));
    k
}

pub(super) fn row_prefix(prefix: u8, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 2);
    k.push(prefix);
    k.extend_from_slice(key.as_bytes());
    k.push(0);
    k
}

/// Splits `prefix key 0x00 created` into the key and the created revision.
pub(super) fn split_versioned(k: &[u8]) -> Result<(&str, u64), StoreError> {
    if k.len() < 10 {
        return Err(corrupt("short versioned key"));
    }
    let (head, created) = k.split_at(k.len() - 8);
    let key = head.get(1..head.len() - 1).ok_or_else(|| corrupt("short versioned key"))?;
    Ok((std::str::from_utf8(key).map_err(|_| corrupt("key is not UTF-8"))?, read_be(created)?))
}

pub(super) fn visible(created: u64, deleted: Option<u64>, at: Revision) -> bool {
    created <= at.0 && deleted.is_none_or(|d| d > at.0)
}
