//! The durable store on sled. One sled tree per tenant holds, under one-byte prefixes:
//! - `m` meta: `head` and `oldest` revisions (big-endian u64);
//! - `r` relationship versions: `key 0x00 created(be u64)` → {deleted, text};
//! - `a` attribute versions: `object 0x00 created(be u64)` → {deleted, attributes};
//! - `s` schema versions: `revision(be u64)` → text;
//! - `c` changelog: `revision(be u64)` → the batch's changes;
//! - `t` commit times: `revision(be u64)` → nanoseconds since the epoch.
//!
//! A read at revision R sees a version when `created <= R < deleted`. A batch becomes one
//! `sled::Batch` on the tenant's tree, so it is applied atomically; it is acknowledged after
//! `flush`, and concurrent writers share flushes (group commit).
//!
//! Architecture invariant: the only file that knows sled.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use serde::{Deserialize, Serialize};

use super::*;

const META_TREE: &str = "__pemba_meta";
const TENANT_PREFIX: &str = "tenant/";

#[derive(Debug, Serialize, Deserialize)]
struct RelRow {
    deleted: Option<u64>,
    text: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct AttrRow {
    deleted: Option<u64>,
    attributes: Map<String, Value>,
}

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn read_be(b: &[u8]) -> Result<u64, StoreError> {
    b.try_into().map(u64::from_be_bytes).map_err(|_| corrupt("bad revision bytes"))
}

fn versioned_key(prefix: u8, key: &str, created: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 10);
    k.push(prefix);
    k.extend_from_slice(key.as_bytes());
    k.push(0);
    k.extend_from_slice(&be(created));
    k
}

fn row_prefix(prefix: u8, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 2);
    k.push(prefix);
    k.extend_from_slice(key.as_bytes());
    k.push(0);
    k
}

/// Splits `prefix key 0x00 created` into the key and the created revision.
fn split_versioned(k: &[u8]) -> Result<(&str, u64), StoreError> {
    if k.len() < 10 {
        return Err(corrupt("short versioned key"));
    }
    let (head, created) = k.split_at(k.len() - 8);
    let key = head.get(1..head.len() - 1).ok_or_else(|| corrupt("short versioned key"))?;
    Ok((std::str::from_utf8(key).map_err(|_| corrupt("key is not UTF-8"))?, read_be(created)?))
}

fn visible(created: u64, deleted: Option<u64>, at: u64) -> bool {
    created <= at && deleted.is_none_or(|d| d > at)
}

/// Flushes shared by concurrent writers: a writer takes a ticket after applying its batch and
/// waits until a flush that started after its apply has finished.
#[derive(Default)]
struct GroupFlush {
    state: Mutex<(u64, u64, bool)>,
    done: Condvar,
}

impl GroupFlush {
    fn ticket(&self) -> u64 {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 += 1;
        s.0
    }

    fn wait(&self, db: &sled::Db, ticket: u64) -> Result<(), StoreError> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if s.1 >= ticket {
                return Ok(());
            }
            if !s.2 {
                s.2 = true;
                let target = s.0;
                drop(s);
                let result = db.flush().map(|_| ()).map_err(io);
                s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                s.2 = false;
                if result.is_ok() {
                    s.1 = s.1.max(target);
                }
                self.done.notify_all();
                result?;
            } else {
                s = self.done.wait(s).unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}

pub struct SledStore {
    db: sled::Db,
    /// One writer per tenant: a batch reads, resolves and applies under its tenant's lock.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    flush: GroupFlush,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SledStore")
    }
}

impl SledStore {
    /// Opens (or creates) a store in `dir`, checking its format version.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        // Every write is flushed by its writer (group commit), so sled's periodic background
        // flush would only add I/O; without its thread, dropping the store also releases the
        // directory's lock at once.
        let db = sled::Config::new().path(dir).flush_every_ms(None).open().map_err(io)?;
        let meta = db.open_tree(META_TREE).map_err(io)?;
        match meta.get("format").map_err(io)? {
            None => {
                meta.insert("format", FORMAT_VERSION.to_string().as_bytes()).map_err(io)?;
                db.flush().map_err(io)?;
            }
            Some(v) if v.as_ref() == FORMAT_VERSION.to_string().as_bytes() => {}
            Some(v) => return Err(StoreError::UnknownFormat { found: String::from_utf8_lossy(&v).into_owned() }),
        }
        Ok(SledStore { db, locks: Mutex::new(HashMap::new()), flush: GroupFlush::default() })
    }

    /// The database-wide metadata tree (for the cursor key and similar settings).
    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let meta = self.db.open_tree(META_TREE).map_err(io)?;
        Ok(meta.get(key).map_err(io)?.map(|v| v.to_vec()))
    }

    pub fn meta_set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let meta = self.db.open_tree(META_TREE).map_err(io)?;
        meta.insert(key, value).map_err(io)?;
        self.db.flush().map_err(io)?;
        Ok(())
    }

    fn tree(&self, tenant: &str) -> Result<sled::Tree, StoreError> {
        let meta = self.db.open_tree(META_TREE).map_err(io)?;
        if meta.get(format!("{TENANT_PREFIX}{tenant}")).map_err(io)?.is_none() {
            return Err(StoreError::NoSuchTenant(tenant.to_string()));
        }
        self.db.open_tree(format!("{TENANT_PREFIX}{tenant}")).map_err(io)
    }

    fn lock(&self, tenant: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(tenant.to_string()).or_default().clone()
    }

    fn meta_u64(tree: &sled::Tree, key: &[u8]) -> Result<u64, StoreError> {
        match tree.get(key).map_err(io)? {
            Some(v) => read_be(&v),
            None => Ok(0),
        }
    }

    fn check_readable(tree: &sled::Tree, revision: u64) -> Result<(), StoreError> {
        let head = Self::meta_u64(tree, b"mhead")?;
        if revision > head {
            return Err(StoreError::FutureRevision { revision, head });
        }
        let oldest = Self::meta_u64(tree, b"moldest")?;
        if revision < oldest {
            return Err(StoreError::OutsideWindow { revision, oldest, window: DEFAULT_WINDOW });
        }
        Ok(())
    }

    /// Applies a batch without waiting for the flush; returns the revision, the changes and the
    /// flush ticket to wait on.
    pub fn apply(
        &self,
        tenant: &str,
        batch: &[Mutation],
        now: Timestamp,
    ) -> Result<(u64, Vec<Change>, u64), StoreError> {
        let lock = self.lock(tenant);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let tree = self.tree(tenant)?;
        let rev = Self::meta_u64(&tree, b"mhead")? + 1;
        // A tenant without relationship rows (a fresh restore) needs no per-row lookups in the
        // tree: only the batch's own earlier writes can match.
        let fresh = tree.scan_prefix([b'r']).next().is_none();
        let mut w = Writer { tree: &tree, fresh, rev, overlay: BTreeMap::new(), changes: Vec::new() };
        for m in batch {
            w.mutation(m)?;
        }
        let Writer { overlay, changes, .. } = w;
        let mut b = sled::Batch::default();
        for (k, v) in overlay {
            b.insert(k, v);
        }
        b.insert(b"mhead".to_vec(), be(rev).to_vec());
        let mut ck = vec![b'c'];
        ck.extend_from_slice(&be(rev));
        b.insert(ck, serde_json::to_vec(&changes).map_err(corrupt)?);
        let mut tk = vec![b't'];
        tk.extend_from_slice(&be(rev));
        b.insert(tk, now.0.to_be_bytes().to_vec());
        tree.apply_batch(b).map_err(io)?;
        Ok((rev, changes, self.flush.ticket()))
    }

    /// Waits until the batch with this ticket is on disk.
    pub fn wait_durable(&self, ticket: u64) -> Result<(), StoreError> {
        self.flush.wait(&self.db, ticket)
    }

    /// Writes many relationships as one revision without per-row checks beyond duplicates in the
    /// input: the bulk import path (callers validate against the schema first).
    pub fn import(&self, tenant: &str, rels: &[Relationship], now: Timestamp) -> Result<u64, StoreError> {
        let batch: Vec<Mutation> = rels.iter().cloned().map(Mutation::Touch).collect();
        let (rev, _, ticket) = self.apply(tenant, &batch, now)?;
        self.wait_durable(ticket)?;
        Ok(rev)
    }

    /// Raw sled: one `apply_batch` of the rows an import of `rels` would write, into a scratch
    /// tree, then a flush. The baseline the import benchmark compares with.
    pub fn raw_batch_baseline(&self, rels: &[Relationship]) -> Result<(), StoreError> {
        let tree = self.db.open_tree("__bench_raw").map_err(io)?;
        let mut b = sled::Batch::default();
        for r in rels {
            let row = RelRow { deleted: None, text: r.to_string() };
            b.insert(versioned_key(b'r', &relationship_key(r), 1), serde_json::to_vec(&row).map_err(corrupt)?);
        }
        tree.apply_batch(b).map_err(io)?;
        self.db.flush().map_err(io)?;
        self.db.drop_tree("__bench_raw").map_err(io)?;
        Ok(())
    }
}

/// A raw row: full key and value.
type Row = (Vec<u8>, Vec<u8>);

/// Resolves one batch against the tree plus the batch's own earlier writes.
struct Writer<'a> {
    tree: &'a sled::Tree,
    /// The tree has no relationship rows: skip tree lookups for them.
    fresh: bool,
    rev: u64,
    overlay: BTreeMap<Vec<u8>, Vec<u8>>,
    changes: Vec<Change>,
}

impl Writer<'_> {
    /// Every version of a row (tree merged with this batch's writes), as (full key, value).
    fn versions(&self, prefix: &[u8]) -> Result<Vec<Row>, StoreError> {
        let mut out: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        if !(self.fresh && prefix.first() == Some(&b'r')) {
            for item in self.tree.scan_prefix(prefix) {
                let (k, v) = item.map_err(io)?;
                out.insert(k.to_vec(), v.to_vec());
            }
        }
        for (k, v) in self.overlay.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) {
                break;
            }
            out.insert(k.clone(), v.clone());
        }
        Ok(out.into_iter().collect())
    }

    /// The live version of a relationship row, if any.
    fn live_rel(&self, key: &str) -> Result<Option<(Vec<u8>, RelRow)>, StoreError> {
        for (k, v) in self.versions(&row_prefix(b'r', key))?.into_iter().rev() {
            let row: RelRow = serde_json::from_slice(&v).map_err(corrupt)?;
            if row.deleted.is_none() {
                return Ok(Some((k, row)));
            }
        }
        Ok(None)
    }

    fn delete_rel(&mut self, key: Vec<u8>, mut row: RelRow) -> Result<(), StoreError> {
        row.deleted = Some(self.rev);
        let (_, created) = split_versioned(&key)?;
        if created == self.rev {
            // Created and deleted in the same batch: never visible, drop it.
            self.overlay.remove(&key);
        } else {
            self.overlay.insert(key, serde_json::to_vec(&row).map_err(corrupt)?);
        }
        self.changes.push(Change::Delete(StoredRelationship(row.text)));
        Ok(())
    }

    fn put_rel(&mut self, r: &Relationship) -> Result<(), StoreError> {
        let row = RelRow { deleted: None, text: r.to_string() };
        self.overlay
            .insert(versioned_key(b'r', &relationship_key(r), self.rev), serde_json::to_vec(&row).map_err(corrupt)?);
        self.changes.push(Change::Upsert(StoredRelationship(row.text)));
        Ok(())
    }

    fn mutation(&mut self, m: &Mutation) -> Result<(), StoreError> {
        match m {
            Mutation::Create(r) => {
                if self.live_rel(&relationship_key(r))?.is_some() {
                    return Err(StoreError::AlreadyExists(r.to_string()));
                }
                self.put_rel(r)
            }
            Mutation::Touch(r) => {
                if let Some((k, row)) = self.live_rel(&relationship_key(r))? {
                    self.delete_rel(k, row)?;
                    self.changes.pop();
                }
                self.put_rel(r)
            }
            Mutation::Delete(r) => match self.live_rel(&relationship_key(r))? {
                Some((k, row)) => self.delete_rel(k, row),
                None => Ok(()),
            },
            Mutation::DeleteByFilter(f) => {
                // Narrow the scan by the leading key parts the filter fixes.
                let mut prefix = vec![b'r'];
                if let Some(t) = &f.resource_type {
                    prefix.extend_from_slice(t.as_bytes());
                    prefix.push(1);
                    if let Some(id) = &f.resource_id {
                        prefix.extend_from_slice(id.as_bytes());
                        prefix.push(1);
                    }
                }
                let mut hits = Vec::new();
                for (k, v) in self.versions(&prefix)? {
                    let row: RelRow = serde_json::from_slice(&v).map_err(corrupt)?;
                    if row.deleted.is_none() {
                        let r = Relationship::parse(&row.text).map_err(corrupt)?;
                        if f.matches(&r) {
                            hits.push((k, row));
                        }
                    }
                }
                for (k, row) in hits {
                    self.delete_rel(k, row)?;
                }
                Ok(())
            }
            Mutation::SetAttributes(o, attrs) => {
                self.delete_attrs(o, false)?;
                let row = AttrRow { deleted: None, attributes: attrs.clone() };
                self.overlay
                    .insert(versioned_key(b'a', &object_key(o), self.rev), serde_json::to_vec(&row).map_err(corrupt)?);
                self.changes.push(Change::SetAttributes { object: object_key(o), attributes: attrs.clone() });
                Ok(())
            }
            Mutation::DeleteAttributes(o) => self.delete_attrs(o, true),
            Mutation::SetSchema(s) => {
                let mut k = vec![b's'];
                k.extend_from_slice(&be(self.rev));
                self.overlay.insert(k, s.as_bytes().to_vec());
                self.changes.push(Change::Schema(s.clone()));
                Ok(())
            }
        }
    }

    fn delete_attrs(&mut self, o: &ObjectRef, record: bool) -> Result<(), StoreError> {
        for (k, v) in self.versions(&row_prefix(b'a', &object_key(o)))? {
            let mut row: AttrRow = serde_json::from_slice(&v).map_err(corrupt)?;
            if row.deleted.is_none() {
                let (_, created) = split_versioned(&k)?;
                if created == self.rev {
                    self.overlay.remove(&k);
                } else {
                    row.deleted = Some(self.rev);
                    self.overlay.insert(k, serde_json::to_vec(&row).map_err(corrupt)?);
                }
                if record {
                    self.changes.push(Change::DeleteAttributes { object: object_key(o) });
                }
            }
        }
        Ok(())
    }
}

impl Datastore for SledStore {
    fn create_tenant(&self, name: &str) -> Result<(), StoreError> {
        if !valid_tenant_name(name) {
            return Err(StoreError::InvalidTenantName(name.to_string()));
        }
        let meta = self.db.open_tree(META_TREE).map_err(io)?;
        let key = format!("{TENANT_PREFIX}{name}");
        if meta.get(&key).map_err(io)?.is_some() {
            return Err(StoreError::TenantExists(name.to_string()));
        }
        // A tree left by an interrupted drop is cleared before the tenant is registered.
        let tree = self.db.open_tree(&key).map_err(io)?;
        tree.clear().map_err(io)?;
        meta.insert(key, b"".to_vec()).map_err(io)?;
        self.db.flush().map_err(io)?;
        Ok(())
    }

    fn drop_tenant(&self, name: &str) -> Result<(), StoreError> {
        let meta = self.db.open_tree(META_TREE).map_err(io)?;
        let key = format!("{TENANT_PREFIX}{name}");
        if meta.remove(&key).map_err(io)?.is_none() {
            return Err(StoreError::NoSuchTenant(name.to_string()));
        }
        self.db.flush().map_err(io)?;
        self.db.drop_tree(key).map_err(io)?;
        self.db.flush().map_err(io)?;
        Ok(())
    }

    fn tenants(&self) -> Result<Vec<String>, StoreError> {
        let meta = self.db.open_tree(META_TREE).map_err(io)?;
        meta.scan_prefix(TENANT_PREFIX)
            .map(|item| {
                let (k, _) = item.map_err(io)?;
                let k = std::str::from_utf8(&k).map_err(|_| corrupt("tenant key is not UTF-8"))?;
                Ok(k.trim_start_matches(TENANT_PREFIX).to_string())
            })
            .collect()
    }

    fn head(&self, tenant: &str) -> Result<u64, StoreError> {
        Self::meta_u64(&self.tree(tenant)?, b"mhead")
    }

    fn write(&self, tenant: &str, batch: &[Mutation], now: Timestamp) -> Result<(u64, Vec<Change>), StoreError> {
        let (rev, changes, ticket) = self.apply(tenant, batch, now)?;
        self.wait_durable(ticket)?;
        Ok((rev, changes))
    }

    fn snapshot(&self, tenant: &str, revision: u64) -> Result<TenantSnapshot, StoreError> {
        let mut relationships = Vec::new();
        let mut snap = self.snapshot_streamed(tenant, revision, &mut |batch| relationships.extend(batch))?;
        snap.relationships = relationships;
        Ok(snap)
    }

    fn snapshot_streamed(
        &self,
        tenant: &str,
        revision: u64,
        sink: &mut dyn FnMut(Vec<Relationship>),
    ) -> Result<TenantSnapshot, StoreError> {
        const BATCH: usize = 8192;
        let tree = self.tree(tenant)?;
        Self::check_readable(&tree, revision)?;
        let mut batch = Vec::with_capacity(BATCH);
        for item in tree.scan_prefix([b'r']) {
            let (k, v) = item.map_err(io)?;
            let (_, created) = split_versioned(&k)?;
            let row: RelRow = serde_json::from_slice(&v).map_err(corrupt)?;
            if visible(created, row.deleted, revision) {
                batch.push(Relationship::parse(&row.text).map_err(corrupt)?);
                if batch.len() == BATCH {
                    sink(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                }
            }
        }
        if !batch.is_empty() {
            sink(batch);
        }
        let relationships = Vec::new();
        let mut attributes = BTreeMap::new();
        for item in tree.scan_prefix([b'a']) {
            let (k, v) = item.map_err(io)?;
            let (key, created) = split_versioned(&k)?;
            let row: AttrRow = serde_json::from_slice(&v).map_err(corrupt)?;
            if visible(created, row.deleted, revision) {
                attributes.insert(parse_object_key(key)?, row.attributes);
            }
        }
        let mut schema = None;
        let mut upto = vec![b's'];
        upto.extend_from_slice(&be(revision));
        if let Some(item) = tree.range(vec![b's']..=upto).next_back() {
            let (_, v) = item.map_err(io)?;
            schema = Some(String::from_utf8(v.to_vec()).map_err(|_| corrupt("schema is not UTF-8"))?);
        }
        // Garbage collection may have run during the scan (sled iterators are not snapshots):
        // if the revision fell out of the window meanwhile, the scan may have missed rows.
        Self::check_readable(&tree, revision)?;
        Ok(TenantSnapshot { revision, schema, relationships, attributes })
    }

    fn read_relationships(
        &self,
        tenant: &str,
        revision: u64,
        filter: &RelationshipFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Relationship>, StoreError> {
        let tree = self.tree(tenant)?;
        Self::check_readable(&tree, revision)?;
        // Rows sort by resource type first: a filter that fixes it reads only that type's rows.
        let mut prefix = vec![b'r'];
        if let Some(t) = &filter.resource_type {
            prefix.extend_from_slice(t.as_bytes());
            prefix.push(1);
        }
        let start = match after {
            // Every version of the row `after` sorts before `after 0x01`.
            Some(a) => {
                let mut k = vec![b'r'];
                k.extend_from_slice(a.as_bytes());
                k.push(1);
                k.max(prefix.clone())
            }
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        for item in tree.range(start..) {
            let (k, v) = item.map_err(io)?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let (_, created) = split_versioned(&k)?;
            let row: RelRow = serde_json::from_slice(&v).map_err(corrupt)?;
            if visible(created, row.deleted, revision) {
                let r = Relationship::parse(&row.text).map_err(corrupt)?;
                if filter.matches(&r) {
                    out.push(r);
                }
            }
        }
        Self::check_readable(&tree, revision)?;
        Ok(out)
    }

    fn changes_since(&self, tenant: &str, revision: u64) -> Result<Vec<(u64, Vec<Change>)>, StoreError> {
        let tree = self.tree(tenant)?;
        Self::check_readable(&tree, revision)?;
        let mut start = vec![b'c'];
        start.extend_from_slice(&be(revision.saturating_add(1)));
        let mut out = Vec::new();
        for item in tree.range(start..) {
            let (k, v) = item.map_err(io)?;
            if k.first() != Some(&b'c') {
                break;
            }
            let rev = read_be(k.get(1..).unwrap_or(&[]))?;
            out.push((rev, serde_json::from_slice(&v).map_err(corrupt)?));
        }
        Self::check_readable(&tree, revision)?;
        Ok(out)
    }

    fn collect_garbage(&self, tenant: &str, now: Timestamp, window: std::time::Duration) -> Result<u64, StoreError> {
        let lock = self.lock(tenant);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let tree = self.tree(tenant)?;
        let cutoff = Timestamp(now.0 - window.as_nanos() as i128);
        let head = Self::meta_u64(&tree, b"mhead")?;
        let mut keep_from = 0;
        for item in tree.scan_prefix([b't']) {
            let (k, v) = item.map_err(io)?;
            let rev = read_be(k.get(1..).unwrap_or(&[]))?;
            let time = i128::from_be_bytes(v.as_ref().try_into().map_err(|_| corrupt("bad commit time"))?);
            if time <= cutoff.0 {
                keep_from = keep_from.max(rev);
            }
        }
        let oldest = Self::meta_u64(&tree, b"moldest")?.max(keep_from.min(head));
        let mut b = sled::Batch::default();
        for item in tree.scan_prefix([b'r']) {
            let (k, v) = item.map_err(io)?;
            let row: RelRow = serde_json::from_slice(&v).map_err(corrupt)?;
            let gone = row.deleted.is_some_and(|d| d <= oldest)
                || Relationship::parse(&row.text).map_err(corrupt)?.expiration.is_some_and(|e| e <= cutoff);
            if gone {
                b.remove(k);
            }
        }
        for item in tree.scan_prefix([b'a']) {
            let (k, v) = item.map_err(io)?;
            let row: AttrRow = serde_json::from_slice(&v).map_err(corrupt)?;
            if row.deleted.is_some_and(|d| d <= oldest) {
                b.remove(k);
            }
        }
        // Schema versions: keep the one in force at `oldest` and every later one.
        let mut schema_keys: Vec<(u64, sled::IVec)> = Vec::new();
        for item in tree.scan_prefix([b's']) {
            let (k, _) = item.map_err(io)?;
            schema_keys.push((read_be(k.get(1..).unwrap_or(&[]))?, k));
        }
        if let Some(in_force) = schema_keys.iter().filter(|(r, _)| *r <= oldest).map(|(r, _)| *r).max() {
            for (r, k) in &schema_keys {
                if *r < in_force {
                    b.remove(k.clone());
                }
            }
        }
        for (prefix, keep) in [(b'c', oldest.saturating_add(1)), (b't', oldest)] {
            for item in tree.scan_prefix([prefix]) {
                let (k, _) = item.map_err(io)?;
                if read_be(k.get(1..).unwrap_or(&[]))? < keep {
                    b.remove(k);
                }
            }
        }
        b.insert(b"moldest".to_vec(), be(oldest).to_vec());
        tree.apply_batch(b).map_err(io)?;
        self.db.flush().map_err(io)?;
        Ok(oldest)
    }

    fn oldest_readable(&self, tenant: &str) -> Result<u64, StoreError> {
        Self::meta_u64(&self.tree(tenant)?, b"moldest")
    }
}
