//! The write path: a batch is checked against the head (limits, schema fit, preconditions),
//! committed by the store (durable before it is acknowledged: each write, or an import chunk's
//! revisions together), and made visible as the next view, built from the head's index by
//! structural sharing.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::error::{DbError, poisoned};
use super::tenant::Tenant;
use super::{Database, Precondition, WriteRequest};
use crate::conditions::Conditions;
use crate::index::IndexGraph;
use crate::model::{ObjectRef, Revision, Timestamp};
use crate::query::View;
use crate::schema::CompiledSchema;
use crate::store::{Change, Mutation, StoreError};

/// Most schema-change blockers an error lists.
const BLOCKERS_SHOWN: usize = 10;

impl Database {
    /// Replaces the schema; refused if a stored relationship or attribute would no longer fit.
    pub fn write_schema(&self, tenant: &str, text: &str) -> Result<Revision, DbError> {
        self.write(tenant, WriteRequest::new(vec![Mutation::SetSchema(text.to_string())]))
    }

    /// Validates and commits a batch; returns its revision once it is durable and visible.
    pub fn write(&self, tenant: &str, req: WriteRequest) -> Result<Revision, DbError> {
        self.commit(tenant, req, self.limits.max_relationships_per_write).map(|(rev, _)| rev)
    }

    /// Commits one chunk of an import: like [`Database::write`] (validated first, as a whole),
    /// with up to [`super::Limits::import_chunk`] mutations, stored as revisions of at most
    /// [`super::Limits::max_relationships_per_write`] (Watch shows each as an ordinary batch)
    /// and made visible together when the last is durable. Returns the last revision. If a
    /// part fails (a `Create` of a relationship that exists, say), the parts before it stay
    /// committed and visible. Readers go on throughout; other writers wait for the chunk.
    pub fn import_chunk(&self, tenant: &str, mutations: Vec<Mutation>) -> Result<Revision, DbError> {
        let limit = self.limits.import_chunk.max(self.limits.max_relationships_per_write);
        self.commit(tenant, WriteRequest::new(mutations), limit).map(|(rev, _)| rev)
    }

    /// Deletes the relationships a filter matches (after the preconditions hold). With a limit,
    /// at most that many (the first in key order): more matching is an error unless
    /// `allow_partial`. Returns the revision, how many were deleted, and whether that was all.
    pub fn delete_relationships(
        &self,
        tenant: &str,
        filter: &crate::store::RelationshipFilter,
        preconditions: Vec<Precondition>,
        limit: Option<usize>,
        allow_partial: bool,
        metadata: Map<String, Value>,
    ) -> Result<(Revision, usize, bool), DbError> {
        let with_metadata = |mut mutations: Vec<Mutation>| {
            if !metadata.is_empty() {
                mutations.push(Mutation::Metadata(metadata.clone()));
            }
            mutations
        };
        let Some(limit) = limit else {
            let mutations = with_metadata(vec![Mutation::DeleteByFilter(filter.clone())]);
            let req = WriteRequest { mutations, preconditions };
            let (rev, changes) = self.commit(tenant, req, self.limits.max_relationships_per_write)?;
            return Ok((rev, changes, true));
        };
        let head = self.tenant(tenant)?.head()?;
        let mut rows: Vec<crate::model::Relationship> = head
            .index()
            .relationships(filter.resource_type.as_deref(), filter.resource_id.as_deref(), filter.relation.as_deref())
            .filter(|r| filter.matches(r))
            .collect();
        rows.sort_by_key(crate::store::relationship_key);
        let complete = rows.len() <= limit;
        if !complete && !allow_partial {
            return Err(DbError::PreconditionFailed {
                index: preconditions.len(),
                reason: format!(
                    "more than {limit} relationships match {filter}; allow partial deletions or raise the limit"
                ),
            });
        }
        rows.truncate(limit);
        let count = rows.len();
        let req =
            WriteRequest { mutations: with_metadata(rows.into_iter().map(Mutation::Delete).collect()), preconditions };
        let (rev, _) = self.commit(tenant, req, self.limits.max_relationships_per_write)?;
        Ok((rev, count, complete))
    }

    /// [`Database::write`] with at most `limit` mutations, committed as revisions of at most
    /// [`super::Limits::max_relationships_per_write`] each (one for an ordinary write), made
    /// visible together once all are durable; also returns how many changes were made (their
    /// transaction metadata not counted). The writer lock is held throughout, so each part is
    /// checked against the state the parts before it left.
    fn commit(&self, tenant: &str, req: WriteRequest, limit: usize) -> Result<(Revision, usize), DbError> {
        let t = self.tenant(tenant)?;
        let _writer = t.writer.lock().map_err(poisoned)?;
        // A writer that waited while the tenant was dropped (and perhaps created again) must
        // not write into its successor with the old state.
        if !Arc::ptr_eq(&t, &self.tenant(tenant)?) {
            return Err(StoreError::NoSuchTenant(tenant.to_string()).into());
        }
        let mut head = t.head()?;
        // The head must be the store's: the store's row lookups are skipped on the index's word
        // (`vouched_absent`). Only a failed reload after an unknown outcome leaves it behind.
        if self.store.head(tenant)? != head.revision() {
            self.reload(tenant, &t)?;
            head = t.head()?;
        }
        let new_schema = self.validate(tenant, &req, &head, limit)?;
        // The next index is built from the head's by structural sharing (a clone copies
        // pointers to its parts; changing it copies only the tables and chunks the batch
        // touches), while readers keep the head; index, revision and schema then change
        // together in one swap.
        let mut index = (**head.index()).clone();
        let (start, mut revision, mut changes) = (head.revision(), head.revision(), 0);
        let (schema, text) = match new_schema {
            Some((compiled, text)) => (Some(compiled), Some(Arc::from(text))),
            None => (head.schema().cloned(), head.schema_text().cloned()),
        };
        drop(head);
        let per_revision = self.limits.max_relationships_per_write.max(1);
        // An empty write still commits a revision.
        let mut parts: Vec<&[Mutation]> = req.mutations.chunks(per_revision).collect();
        if parts.is_empty() {
            parts.push(&[]);
        }
        let count = parts.len();
        let mut failed = None;
        for (i, part) in parts.into_iter().enumerate() {
            // The whole request passed the quota against the head; later parts of an import
            // chunk are checked again against what the parts before them added.
            if i > 0
                && let Err(e) = self.check_quota(tenant, part, &index)
            {
                failed = Some(e);
                break;
            }
            let absent = vouched_absent(part, &index);
            // Only the last part waits for durability (which covers the parts before it).
            let written = if i + 1 < count {
                self.store.write_deferred(tenant, part, Timestamp::now(), &absent)
            } else {
                self.store.write_hinted(tenant, part, Timestamp::now(), &absent)
            };
            match written {
                Ok(commit) => {
                    apply_changes(&mut index, &commit.changes);
                    revision = commit.revision;
                    changes += commit.changes.iter().filter(|c| !matches!(c, Change::Metadata(_))).count();
                }
                Err(StoreError::OutcomeUnknown(e)) => {
                    // The part may be in the store: make memory agree with the store again
                    // before anything else reads or writes this tenant.
                    self.reload(tenant, &t)?;
                    return Err(DbError::OutcomeUnknown(e));
                }
                Err(e) => {
                    failed = Some(e.into());
                    break;
                }
            }
        }
        // What is committed becomes visible once durable, also when a later part failed.
        if failed.is_some()
            && revision != start
            && let Err(e) = self.store.sync()
        {
            self.reload(tenant, &t)?;
            return Err(e.into());
        }
        if revision != start || failed.is_none() {
            t.publish(Arc::new(View::new(revision, schema, text, Arc::new(index))), changes, &self.limits)?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok((revision, changes)),
        }
    }

    /// The tenant's quotas ([`super::Limits::max_relationships_per_tenant`] and
    /// [`super::Limits::max_index_bytes_per_tenant`]) against a write that may add.
    fn check_quota(
        &self,
        tenant: &str,
        mutations: &[Mutation],
        index: &crate::index::IndexGraph,
    ) -> Result<(), DbError> {
        self.check_names(tenant, mutations, index)?;
        let (max_rels, max_bytes) = (self.limits.max_relationships_per_tenant, self.limits.max_index_bytes_per_tenant);
        if max_rels == usize::MAX && max_bytes == usize::MAX {
            return Ok(());
        }
        let new = |r: &crate::model::Relationship| !index.has_edge(&r.resource, &r.relation, &r.subject);
        let adds = mutations
            .iter()
            .filter(|m| match m {
                Mutation::Create(r) | Mutation::Touch(r) => new(r),
                _ => false,
            })
            .count();
        let grows = adds > 0 || mutations.iter().any(|m| matches!(m, Mutation::SetAttributes(..)));
        if !grows {
            return Ok(());
        }
        let quota = |reason: String| Err(DbError::QuotaExceeded { tenant: tenant.to_string(), reason });
        let held = index.relationship_count();
        if held.saturating_add(adds) > max_rels {
            return quota(format!(
                "it holds {held} relationships and this write may add {adds}; the quota is {max_rels} (delete some, or raise `--max-relationships-per-tenant`)"
            ));
        }
        let bytes = index.heap_bytes();
        if bytes > max_bytes {
            return quota(format!(
                "its index holds {bytes} bytes, past the quota of {max_bytes}; only deletes are accepted (raise `--max-index-bytes-per-tenant`)"
            ));
        }
        Ok(())
    }

    /// [`super::Limits::max_objects_per_type`] against the objects a write's creates and touches
    /// name: bounds first (each names at most two objects; by the largest type, then by type),
    /// the objects themselves only for a type the bounds put past the limit.
    fn check_names(&self, tenant: &str, mutations: &[Mutation], index: &IndexGraph) -> Result<(), DbError> {
        let limit = self.limits.max_objects_per_type.min(super::MAX_OBJECTS_PER_TYPE);
        // Far from the limit (every write but one near it): no object is looked at.
        let most = index.types.values().map(|i| i.len()).max().unwrap_or(0);
        if most.saturating_add(mutations.len().saturating_mul(2)) <= limit {
            return Ok(());
        }
        let named = || {
            mutations.iter().flat_map(|m| match m {
                Mutation::Create(r) | Mutation::Touch(r) => {
                    [Some(&r.resource), (!r.subject.is_wildcard()).then_some(&r.subject.object)]
                }
                _ => [None, None],
            })
        };
        let mut bound: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for o in named().flatten() {
            *bound.entry(o.ty.as_str()).or_default() += 1;
        }
        for (ty, adds) in bound {
            let interner = index.types.get(ty);
            let held = interner.map_or(0, |i| i.len());
            if held.saturating_add(adds) <= limit {
                continue;
            }
            let new: std::collections::HashSet<&str> = named()
                .flatten()
                .filter(|o| o.ty == ty && interner.and_then(|i| i.get(&o.id)).is_none())
                .map(|o| o.id.as_str())
                .collect();
            if held.saturating_add(new.len()) > limit {
                return Err(DbError::QuotaExceeded {
                    tenant: tenant.to_string(),
                    reason: format!(
                        "its index names {held} objects of type `{ty}` and this write names {} more; one type may have at most {limit}",
                        new.len()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Replaces a tenant's head with the store's.
    fn reload(&self, tenant: &str, t: &Tenant) -> Result<(), DbError> {
        let head = self.store.head(tenant)?;
        t.replace_head(Arc::new(self.build_view(tenant, head)?))
    }

    /// Checks a batch against the head: limits, schema fit, preconditions. Returns the compiled
    /// new schema and its text if the batch changes it.
    fn validate(
        &self,
        tenant: &str,
        req: &WriteRequest,
        head: &View,
        limit: usize,
    ) -> Result<Option<(CompiledSchema, String)>, DbError> {
        let count = req.mutations.len();
        if count > limit {
            return Err(DbError::TooManyMutations { count, limit });
        }
        let index = head.index();
        self.check_quota(tenant, &req.mutations, index)?;
        if let Some(text) =
            req.mutations.iter().find_map(|m| if let Mutation::SetSchema(s) = m { Some(s) } else { None })
        {
            if req.mutations.len() != 1 || !req.preconditions.is_empty() {
                return Err(DbError::SchemaNotAlone);
            }
            let compiled = self.compile(text)?;
            let mut blockers = Vec::new();
            let mut count = 0;
            let mut block = |what: String| {
                count += 1;
                if blockers.len() < BLOCKERS_SHOWN {
                    blockers.push(what);
                }
            };
            for r in index.relationships(None, None, None) {
                if let Err(e) = compiled.check_relationship(&r) {
                    block(format!("relationship `{r}`: {e}"));
                }
            }
            for (o, attrs) in index.all_attributes() {
                if let Err(e) = check_attributes(&compiled, o, attrs) {
                    block(format!("attributes of `{o}`: {e}"));
                }
            }
            if count > 0 {
                return Err(DbError::SchemaChangeBlocked { count, blockers });
            }
            return Ok(Some((compiled, text.clone())));
        }
        let schema = head.schema().ok_or_else(|| DbError::NoSchema(tenant.to_string()))?;
        for (index, m) in req.mutations.iter().enumerate() {
            let invalid = |item: String, reason: String| DbError::InvalidMutation { index, item, reason };
            match m {
                Mutation::Create(r) | Mutation::Touch(r) => {
                    schema.check_relationship(r).map_err(|e| invalid(r.to_string(), e.to_string()))?;
                    if let Some(c) = &r.caveat {
                        let size = Value::Object(c.context.clone()).to_string().len();
                        if size > self.limits.max_context_bytes {
                            return Err(invalid(
                                r.to_string(),
                                format!(
                                    "caveat context is {size} bytes; the limit is {}",
                                    self.limits.max_context_bytes
                                ),
                            ));
                        }
                    }
                }
                Mutation::Delete(_) | Mutation::DeleteByFilter(_) | Mutation::DeleteAttributes(_) => {}
                Mutation::SetAttributes(o, attrs) => {
                    check_attributes(schema, o, attrs).map_err(|e| invalid(o.to_string(), e))?
                }
                Mutation::SetSchema(_) => {}
                Mutation::Metadata(m) => {
                    let size = Value::Object(m.clone()).to_string().len();
                    if size > self.limits.max_context_bytes {
                        return Err(invalid(
                            "transaction metadata".into(),
                            format!("{size} bytes; the limit is {}", self.limits.max_context_bytes),
                        ));
                    }
                }
            }
        }
        let now = Timestamp::now();
        for (i, p) in req.preconditions.iter().enumerate() {
            let (filter, must) = match p {
                Precondition::MustMatch(f) => (f, true),
                Precondition::MustNotMatch(f) => (f, false),
            };
            let found = index
                .relationships(
                    filter.resource_type.as_deref(),
                    filter.resource_id.as_deref(),
                    filter.relation.as_deref(),
                )
                .any(|r| filter.matches(&r) && r.expiration.is_none_or(|e| e > now));
            if found != must {
                let reason = if must {
                    format!("it requires a relationship matching {filter}, and none does")
                } else {
                    format!("it requires that no relationship match {filter}, and one does")
                };
                return Err(DbError::PreconditionFailed { index: i, reason });
            }
        }
        Ok(None)
    }

    /// Drops what fell out of the retention window; returns the oldest readable revision.
    pub fn collect_garbage(&self, tenant: &str) -> Result<Revision, DbError> {
        let t = self.tenant(tenant)?;
        let _writer = t.writer.lock().map_err(poisoned)?;
        let oldest = self.store.collect_garbage(tenant, Timestamp::now(), self.limits.window)?;
        t.set_oldest(oldest);
        Ok(oldest)
    }
}

/// Checks attribute values against the type's declarations.
fn check_attributes(schema: &CompiledSchema, o: &ObjectRef, attrs: &Map<String, Value>) -> Result<(), String> {
    let def = schema.definition(&o.ty).ok_or_else(|| format!("unknown object type `{}`", o.ty))?;
    for (k, v) in attrs {
        let ty = def.attributes.get(k).ok_or_else(|| format!("type `{}` declares no attribute `{k}`", o.ty))?;
        Conditions::check_value(v, ty).map_err(|e| format!("attribute `{k}` is not a valid {ty}: {e}"))?;
    }
    Ok(())
}

/// For each mutation, whether it creates or touches a relationship that the head (`index`,
/// read under the tenant's writer lock, so the store's head too) does not hold and no earlier
/// mutation of the batch may touch: the store need not look it up
/// ([`crate::store::Datastore::write_hinted`]). The index holds every live row of the store's
/// head (it is built from them and follows every commit; garbage collection only removes rows
/// from the store), so "not held" means "no live row".
fn vouched_absent(mutations: &[Mutation], index: &IndexGraph) -> Vec<bool> {
    // A delete by filter may match anything; later creates are then looked up as usual.
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut broad = false;
    mutations
        .iter()
        .map(|m| match m {
            Mutation::Create(r) | Mutation::Touch(r) => {
                let first = seen.insert(crate::store::relationship_key(r));
                first && !broad && !index.holds(r)
            }
            Mutation::Delete(r) => {
                seen.insert(crate::store::relationship_key(r));
                false
            }
            Mutation::DeleteByFilter(_) => {
                broad = true;
                false
            }
            _ => false,
        })
        .collect()
}

/// Applies a committed batch's changes to an index.
fn apply_changes(index: &mut IndexGraph, changes: &[Change]) {
    for c in changes {
        match c {
            Change::Upsert(r) => {
                index.upsert(r);
            }
            Change::Delete(r) => {
                index.remove(r);
            }
            Change::SetAttributes { object, attributes } => index.set_attributes(object.clone(), attributes.clone()),
            Change::DeleteAttributes { object } => {
                index.remove_attributes(object);
            }
            Change::Schema(_) | Change::Metadata(_) => {}
        }
    }
}
