//! The in-memory model store: every revision is a complete copy of the tenant. Obviously correct
//! and O(size) per write, it is the model the sled store is tested against (and a store for tests
//! and small embedded uses), not a production backend.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::*;

#[derive(Debug, Default)]
struct Tenant {
    /// Retained revisions, oldest first; the last is the head.
    versions: Vec<TenantSnapshot>,
    times: BTreeMap<Revision, Timestamp>,
    changelog: BTreeMap<Revision, Vec<Change>>,
}

#[derive(Debug, Default)]
pub struct MemoryStore {
    tenants: Mutex<BTreeMap<String, Tenant>>,
    meta: Mutex<BTreeMap<String, Vec<u8>>>,
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Unavailable("the memory store's lock was poisoned by a panicking thread".into())
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn with<T>(&self, tenant: &str, f: impl FnOnce(&mut Tenant) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut all = self.tenants.lock().map_err(poisoned)?;
        let t = all.get_mut(tenant).ok_or_else(|| StoreError::NoSuchTenant(tenant.to_string()))?;
        f(t)
    }
}

impl Tenant {
    fn head(&self) -> &TenantSnapshot {
        // INVARIANT: a tenant always holds at least its revision-0 snapshot.
        static EMPTY: std::sync::LazyLock<TenantSnapshot> = std::sync::LazyLock::new(TenantSnapshot::default);
        self.versions.last().unwrap_or(&EMPTY)
    }

    fn at(&self, revision: Revision) -> Result<&TenantSnapshot, StoreError> {
        let head = self.head().revision;
        if revision > head {
            return Err(StoreError::FutureRevision { revision, head });
        }
        let oldest = self.versions.first().map_or(Revision::ZERO, |v| v.revision);
        if revision < oldest {
            return Err(StoreError::OutsideWindow { revision, oldest });
        }
        // The newest retained version at or before `revision`.
        self.versions
            .iter()
            .rev()
            .find(|v| v.revision <= revision)
            .ok_or(StoreError::OutsideWindow { revision, oldest })
    }
}

/// Applies a batch to a copy of the head, naively. Shared by nothing: the sled store resolves
/// the same mutations its own way, and the model test compares the two.
fn apply(head: &TenantSnapshot, batch: &[Mutation]) -> Result<(TenantSnapshot, Vec<Change>), StoreError> {
    let mut next = head.clone();
    next.revision = next.revision.next();
    let mut changes = Vec::new();
    for m in batch {
        match m {
            Mutation::Create(r) => {
                if next.relationships.iter().any(|x| same_row(x, r)) {
                    return Err(StoreError::AlreadyExists(r.to_string()));
                }
                next.relationships.push(r.clone());
                changes.push(Change::Upsert(r.clone()));
            }
            Mutation::Touch(r) => {
                next.relationships.retain(|x| !same_row(x, r));
                next.relationships.push(r.clone());
                changes.push(Change::Upsert(r.clone()));
            }
            Mutation::Delete(r) => {
                if let Some(old) = next.relationships.iter().find(|x| same_row(x, r)).cloned() {
                    next.relationships.retain(|x| !same_row(x, r));
                    changes.push(Change::Delete(old));
                }
            }
            Mutation::DeleteByFilter(f) => {
                let mut gone: Vec<Relationship> = next.relationships.iter().filter(|x| f.matches(x)).cloned().collect();
                gone.sort_by_key(relationship_key);
                next.relationships.retain(|x| !f.matches(x));
                changes.extend(gone.into_iter().map(Change::Delete));
            }
            Mutation::SetAttributes(o, a) => {
                next.attributes.insert(o.clone(), a.clone());
                changes.push(Change::SetAttributes { object: o.clone(), attributes: a.clone() });
            }
            Mutation::DeleteAttributes(o) => {
                if next.attributes.remove(o).is_some() {
                    changes.push(Change::DeleteAttributes { object: o.clone() });
                }
            }
            Mutation::SetSchema(s) => {
                next.schema = Some(s.clone());
                changes.push(Change::Schema(s.clone()));
            }
            Mutation::Metadata(m) => changes.push(Change::Metadata(m.clone())),
        }
    }
    next.relationships.sort_by_key(relationship_key);
    Ok((next, changes))
}

impl Datastore for MemoryStore {
    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.lock().map_err(poisoned)?.get(key).cloned())
    }

    fn meta_set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta.lock().map_err(poisoned)?.insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn create_tenant(&self, name: &str) -> Result<(), StoreError> {
        if !valid_tenant_name(name) {
            return Err(StoreError::InvalidTenantName(name.to_string()));
        }
        let mut all = self.tenants.lock().map_err(poisoned)?;
        if all.contains_key(name) {
            return Err(StoreError::TenantExists(name.to_string()));
        }
        all.insert(name.to_string(), Tenant { versions: vec![TenantSnapshot::default()], ..Tenant::default() });
        Ok(())
    }

    fn drop_tenant(&self, name: &str) -> Result<(), StoreError> {
        let mut all = self.tenants.lock().map_err(poisoned)?;
        all.remove(name).map(|_| ()).ok_or_else(|| StoreError::NoSuchTenant(name.to_string()))
    }

    fn tenants(&self) -> Result<Vec<String>, StoreError> {
        let all = self.tenants.lock().map_err(poisoned)?;
        Ok(all.keys().cloned().collect())
    }

    fn head(&self, tenant: &str) -> Result<Revision, StoreError> {
        self.with(tenant, |t| Ok(t.head().revision))
    }

    fn write(&self, tenant: &str, batch: &[Mutation], now: Timestamp) -> Result<Commit, StoreError> {
        self.with(tenant, |t| {
            let (next, changes) = apply(t.head(), batch)?;
            let revision = next.revision;
            t.versions.push(next);
            t.times.insert(revision, now);
            t.changelog.insert(revision, changes.clone());
            Ok(Commit { revision, changes })
        })
    }

    fn snapshot(&self, tenant: &str, revision: Revision) -> Result<TenantSnapshot, StoreError> {
        self.with(tenant, |t| {
            let mut s = t.at(revision)?.clone();
            s.revision = revision;
            Ok(s)
        })
    }

    fn read_relationships(
        &self,
        tenant: &str,
        revision: Revision,
        filter: &RelationshipFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Relationship>, StoreError> {
        self.with(tenant, |t| {
            let s = t.at(revision)?;
            Ok(s.relationships
                .iter()
                .filter(|r| after.is_none_or(|a| relationship_key(r).as_str() > a) && filter.matches(r))
                .take(limit)
                .cloned()
                .collect())
        })
    }

    fn changes_after(&self, tenant: &str, after: Revision, limit: usize) -> Result<Vec<Commit>, StoreError> {
        self.with(tenant, |t| {
            t.at(after)?;
            Ok(t.changelog
                .range(after.next()..)
                .take(limit)
                .map(|(r, c)| Commit { revision: *r, changes: c.clone() })
                .collect())
        })
    }

    fn collect_garbage(
        &self,
        tenant: &str,
        now: Timestamp,
        window: std::time::Duration,
    ) -> Result<Revision, StoreError> {
        self.with(tenant, |t| {
            let cutoff = Timestamp(now.0 - window.as_nanos() as i128);
            // The newest revision committed before the cutoff stays readable (it is the state at
            // the start of the window); everything older goes.
            let head = t.head().revision;
            let keep_from = t
                .times
                .iter()
                .filter(|(_, time)| **time <= cutoff)
                .map(|(r, _)| *r)
                .max()
                .unwrap_or_default()
                .min(head);
            let oldest = t.versions.first().map_or(Revision::ZERO, |v| v.revision).max(keep_from);
            t.versions.retain(|v| v.revision >= oldest);
            for v in &mut t.versions {
                v.relationships.retain(|r| r.expiration.is_none_or(|e| e > cutoff));
            }
            t.changelog.retain(|r, _| *r > oldest);
            t.times.retain(|r, _| *r >= oldest);
            Ok(oldest)
        })
    }

    fn oldest_readable(&self, tenant: &str) -> Result<Revision, StoreError> {
        self.with(tenant, |t| Ok(t.versions.first().map_or(Revision::ZERO, |v| v.revision)))
    }
}
