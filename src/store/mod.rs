//! The versioned store: tenants, each with relationships, object attributes, schema versions and
//! a changelog, all versioned by revision (MVCC). Behind the [`Datastore`] trait with two
//! implementations: [`SledStore`] (durable, embedded) and [`MemoryStore`] (a plain in-memory
//! model the sled store is tested against). The trait is what a network database (PostgreSQL)
//! could implement as well: synchronous calls, typed changes, bounded reads, and error kinds
//! that say whether to retry.
//!
//! Architecture invariant: the store knows nothing about schemas or evaluation; callers validate
//! writes before handing them over. Only `sled_store/` knows sled.

pub mod memory;
pub mod sled_store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{ObjectRef, Relationship, SubjectRef, Timestamp};

pub use crate::model::Revision;
pub use memory::MemoryStore;
pub use sled_store::{DEFAULT_CACHE_BYTES, Durability, SledOptions, SledStore};

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u64 = 1;
/// Default retention window for old revisions, expired relationships and the changelog.
pub const DEFAULT_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("tenant `{0}` does not exist")]
    NoSuchTenant(String),
    #[error("tenant `{0}` already exists")]
    TenantExists(String),
    #[error("invalid tenant name `{0}`: use 1 to 64 characters of `a-z 0-9 _ -`")]
    InvalidTenantName(String),
    #[error("relationship `{0}` already exists")]
    AlreadyExists(String),
    #[error("revision {revision} is older than the oldest readable revision {oldest}")]
    OutsideWindow { revision: Revision, oldest: Revision },
    #[error("revision {revision} is in the future; the head is {head}")]
    FutureRevision { revision: Revision, head: Revision },
    #[error("unknown on-disk format version {found}; this build reads version {FORMAT_VERSION}")]
    UnknownFormat { found: String },
    #[error("corrupt record in the store: {0}")]
    Corrupt(String),
    #[error("the data directory `{dir}` is damaged: {detail}. Pemba will not serve from it; restore it from a backup")]
    Damaged { dir: String, detail: String },
    #[error("`{dir}` is not a Pemba data directory: {detail}")]
    NotAStore { dir: String, detail: String },
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("the store could not confirm that the write is durable: {0}")]
    OutcomeUnknown(String),
    #[error("a concurrent write conflicted: {0}")]
    Conflict(String),
}

/// What a caller may do about a [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The request names something that does not exist.
    NotFound,
    /// The request would create something that exists.
    AlreadyExists,
    /// The request is malformed or out of range; retrying it unchanged fails again.
    Invalid,
    /// The store cannot serve now; the same request may succeed later.
    Retryable,
    /// The write may or may not have been committed: read before retrying.
    OutcomeUnknown,
    /// The stored data is damaged or from another version: an operator must act.
    DataLoss,
}

impl StoreError {
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::NoSuchTenant(_) => StoreErrorKind::NotFound,
            StoreError::TenantExists(_) | StoreError::AlreadyExists(_) => StoreErrorKind::AlreadyExists,
            StoreError::InvalidTenantName(_) | StoreError::OutsideWindow { .. } | StoreError::FutureRevision { .. } => {
                StoreErrorKind::Invalid
            }
            StoreError::Unavailable(_) | StoreError::Conflict(_) => StoreErrorKind::Retryable,
            StoreError::OutcomeUnknown(_) => StoreErrorKind::OutcomeUnknown,
            StoreError::UnknownFormat { .. } | StoreError::Corrupt(_) | StoreError::Damaged { .. } => {
                StoreErrorKind::DataLoss
            }
            StoreError::NotAStore { .. } => StoreErrorKind::Invalid,
        }
    }

    /// Whether the same request may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        self.kind() == StoreErrorKind::Retryable
    }
}

/// Selects relationships; every field left `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationshipFilter {
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// Resource ids that start with this (SpiceDB's `optional_resource_id_prefix`).
    #[serde(default)]
    pub resource_id_prefix: Option<String>,
    pub relation: Option<String>,
    pub subject_type: Option<String>,
    pub subject_id: Option<String>,
    /// `Some(None)` matches terminal subjects only; `Some(Some(r))` subject sets with relation `r`.
    pub subject_relation: Option<Option<String>>,
}

impl RelationshipFilter {
    pub fn matches(&self, r: &Relationship) -> bool {
        let eq = |want: &Option<String>, got: &str| want.as_deref().is_none_or(|w| w == got);
        eq(&self.resource_type, &r.resource.ty)
            && eq(&self.resource_id, &r.resource.id)
            && self.resource_id_prefix.as_deref().is_none_or(|p| r.resource.id.starts_with(p))
            && eq(&self.relation, &r.relation)
            && eq(&self.subject_type, &r.subject.object.ty)
            && eq(&self.subject_id, &r.subject.object.id)
            && self.subject_relation.as_ref().is_none_or(|want| want == &r.subject.relation)
    }
}

impl std::fmt::Display for RelationshipFilter {
    /// The fields the filter fixes, as `name=value` pairs (`subject_relation=` empty for
    /// terminal subjects), or `any relationship`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fields = [
            ("resource_type", self.resource_type.as_deref()),
            ("resource_id", self.resource_id.as_deref()),
            ("resource_id_prefix", self.resource_id_prefix.as_deref()),
            ("relation", self.relation.as_deref()),
            ("subject_type", self.subject_type.as_deref()),
            ("subject_id", self.subject_id.as_deref()),
            ("subject_relation", self.subject_relation.as_ref().map(|r| r.as_deref().unwrap_or(""))),
        ];
        let set: Vec<String> = fields.iter().filter_map(|(k, v)| v.map(|v| format!("{k}={v}"))).collect();
        if set.is_empty() { f.write_str("any relationship") } else { f.write_str(&set.join(", ")) }
    }
}

/// One change in a write batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Adds a relationship; the batch fails if it already exists.
    Create(Relationship),
    /// Adds or replaces a relationship (caveat and expiration included).
    Touch(Relationship),
    /// Removes the relationship with this resource, relation and subject, if present.
    Delete(Relationship),
    /// Removes every relationship the filter matches.
    DeleteByFilter(RelationshipFilter),
    /// Replaces an object's attributes.
    SetAttributes(ObjectRef, Map<String, Value>),
    DeleteAttributes(ObjectRef),
    /// Stores a new schema text.
    SetSchema(String),
    /// Transaction metadata (SpiceDB's `optional_transaction_metadata`): kept with the commit in
    /// the changelog, where Watch reports it; changes no data.
    Metadata(Map<String, Value>),
}

/// What a committed batch changed, resolved to single rows (the changelog's entries, and what
/// an in-memory copy applies to stay equal to the store).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A relationship written (created, or replacing the row with its resource, relation and
    /// subject).
    Upsert(Relationship),
    /// A relationship removed (as it was stored).
    Delete(Relationship),
    SetAttributes {
        object: ObjectRef,
        attributes: Map<String, Value>,
    },
    DeleteAttributes {
        object: ObjectRef,
    },
    Schema(String),
    /// The batch's transaction metadata.
    Metadata(Map<String, Value>),
}

/// One committed batch: its revision and what it changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    pub revision: Revision,
    pub changes: Vec<Change>,
}

/// Everything a tenant holds at one revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantSnapshot {
    pub revision: Revision,
    pub schema: Option<String>,
    pub relationships: Vec<Relationship>,
    pub attributes: BTreeMap<ObjectRef, Map<String, Value>>,
}

/// The storage contract. Implementations are atomic per batch and, where durable, acknowledge a
/// batch only once it is on disk. Every read names the revision it reads, and a read at a
/// revision sees exactly the batches up to it.
pub trait Datastore: Send + Sync {
    /// A database-wide setting (the cursor signing key, say), if set.
    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets a database-wide setting, durably.
    fn meta_set(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Makes everything written durable before the store is dropped (`Database::close`).
    fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn create_tenant(&self, name: &str) -> Result<(), StoreError>;
    fn drop_tenant(&self, name: &str) -> Result<(), StoreError>;
    fn tenants(&self) -> Result<Vec<String>, StoreError>;
    /// The newest committed revision (0 for a new tenant).
    fn head(&self, tenant: &str) -> Result<Revision, StoreError>;
    /// Applies a batch atomically as the next revision and returns once it is durable, with
    /// the changes it resolved to. [`StoreError::OutcomeUnknown`]: the batch reached the store
    /// but its durability could not be confirmed.
    fn write(&self, tenant: &str, batch: &[Mutation], now: Timestamp) -> Result<Commit, StoreError>;
    /// [`Datastore::write`] where the caller vouches, for each `Create` and `Touch` at an index
    /// `i` with `absent[i]` true, that no live version of that relationship exists before the
    /// batch and that no earlier mutation of the batch touches it (the database knows this from
    /// its head index, under the tenant's writer lock). A store may then skip looking the row
    /// up; a wrong hint would leave two live versions, so callers pass only what they checked.
    /// Missing entries mean "not known".
    fn write_hinted(
        &self,
        tenant: &str,
        batch: &[Mutation],
        now: Timestamp,
        absent: &[bool],
    ) -> Result<Commit, StoreError> {
        let _ = absent;
        self.write(tenant, batch, now)
    }
    /// [`Datastore::write_hinted`] that may return before the batch is durable: it is not
    /// acknowledged until a later [`Datastore::write_hinted`] or [`Datastore::sync`] returns
    /// (a store makes its batches durable in order). For a chunk of an import, which is
    /// acknowledged as a whole. By default as durable as `write_hinted`.
    fn write_deferred(
        &self,
        tenant: &str,
        batch: &[Mutation],
        now: Timestamp,
        absent: &[bool],
    ) -> Result<Commit, StoreError> {
        self.write_hinted(tenant, batch, now, absent)
    }
    /// Makes every batch written before it durable.
    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// The whole tenant as of `revision`.
    fn snapshot(&self, tenant: &str, revision: Revision) -> Result<TenantSnapshot, StoreError>;
    /// [`Datastore::snapshot`], handing the relationships to `sink` in batches as they are read
    /// (so the caller can index them while the store reads on); the snapshot returned holds
    /// none. If it returns an error, what `sink` received must be discarded.
    fn snapshot_streamed(
        &self,
        tenant: &str,
        revision: Revision,
        sink: &mut dyn FnMut(Vec<Relationship>),
    ) -> Result<TenantSnapshot, StoreError> {
        let mut snap = self.snapshot(tenant, revision)?;
        sink(std::mem::take(&mut snap.relationships));
        Ok(snap)
    }
    /// Relationships matching a filter as of `revision`, in key order, after `after` (the key of
    /// the last relationship of the previous page, [`relationship_key`]), at most `limit`.
    fn read_relationships(
        &self,
        tenant: &str,
        revision: Revision,
        filter: &RelationshipFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Relationship>, StoreError>;
    /// The committed batches after `after`, oldest first, at most `limit` of them.
    fn changes_after(&self, tenant: &str, after: Revision, limit: usize) -> Result<Vec<Commit>, StoreError>;
    /// Removes versions, expired relationships and changelog entries that fell out of the
    /// window; returns the oldest revision still readable.
    fn collect_garbage(
        &self,
        tenant: &str,
        now: Timestamp,
        window: std::time::Duration,
    ) -> Result<Revision, StoreError>;
    /// The oldest revision still readable.
    fn oldest_readable(&self, tenant: &str) -> Result<Revision, StoreError>;
}

/// Tenant names: 1 to 64 characters of `a-z 0-9 _ -`.
pub fn valid_tenant_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Sort key of a relationship: resource, relation, subject (what identifies a row).
pub fn relationship_key(r: &Relationship) -> String {
    let srel = r.subject.relation.as_deref().unwrap_or("...");
    format!(
        "{}\u{1}{}\u{1}{}\u{1}{}\u{1}{}\u{1}{}",
        r.resource.ty, r.resource.id, r.relation, r.subject.object.ty, r.subject.object.id, srel
    )
}

/// The identity of a subject in an attribute row.
pub fn object_key(o: &ObjectRef) -> String {
    format!("{}:{}", o.ty, o.id)
}

/// The object an attribute row's key names.
pub fn parse_object_key(k: &str) -> Result<ObjectRef, StoreError> {
    ObjectRef::parse(k).map_err(|e| StoreError::Corrupt(format!("object `{k}`: {e}")))
}

/// Whether two relationships are the same row (same resource, relation and subject).
pub fn same_row(a: &Relationship, b: &Relationship) -> bool {
    a.resource == b.resource && a.relation == b.relation && a.subject == b.subject
}

/// Subject equality helper for filters built from subjects.
pub fn subject_filter(s: &SubjectRef) -> RelationshipFilter {
    RelationshipFilter {
        subject_type: Some(s.object.ty.clone()),
        subject_id: Some(s.object.id.clone()),
        subject_relation: Some(s.relation.clone()),
        ..RelationshipFilter::default()
    }
}
