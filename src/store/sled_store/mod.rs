//! The durable store on sled: one tree per tenant (its key layout in `keys.rs`), a batch resolved
//! against the tree (`writer.rs`) and applied as one `sled::Batch`, so atomically; acknowledged
//! after `flush`, which concurrent writers share (`flush.rs`, group commit).
//!
//! Architecture invariant: the only module that knows sled.

mod flush;
mod integrity;
mod keys;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use self::flush::GroupFlush;
use self::integrity::{Fingerprint, Found, Record, TenantRecord, damaged};
use self::keys::*;
use self::writer::Writer;
use super::*;

fn io(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { .. } => StoreError::Corrupt(e.to_string()),
        // The operating system's words ("No space left on device (os error 28)"), not sled's
        // debug form of them.
        sled::Error::Io(e) => StoreError::Unavailable(match e.raw_os_error() {
            Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
            // sled re-wraps some errors with their debug text: their kind says it plainly.
            None if e.kind() != std::io::ErrorKind::Other => e.kind().to_string(),
            None => e.to_string(),
        }),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// [`io`] naming the data directory (errors that reach an operator).
fn io_in(dir: &Path, e: sled::Error) -> StoreError {
    let at = |text: String| format!("in `{}`: {text}", dir.display());
    match io(e) {
        StoreError::Corrupt(text) => StoreError::Corrupt(at(text)),
        StoreError::Unavailable(text) => StoreError::Unavailable(at(text)),
        other => other,
    }
}

/// One tenant's tree and its writer lock.
struct TenantTree {
    tree: sled::Tree,
    /// One writer per tenant: a batch reads, resolves and applies under it.
    lock: Mutex<()>,
    /// The head and live rows sled holds (applied; durable after the next flush).
    state: Mutex<TenantState>,
}

/// A tenant's head and live rows, as sled holds them.
#[derive(Debug, Clone, Copy)]
struct TenantState {
    head: u64,
    /// Live rows at `head`: `None` until counted (by the load of the head at open, which reads
    /// every row anyway, or else by the first write).
    rows: Option<Fingerprint>,
    /// The integrity record's entry the count must equal (at `head`), until it is checked.
    expected: Option<TenantRecord>,
    /// The rows a garbage collection in progress leaves.
    after_gc: Option<Fingerprint>,
}

impl TenantTree {
    fn new(tree: sled::Tree, state: TenantState) -> TenantTree {
        TenantTree { tree, lock: Mutex::new(()), state: Mutex::new(state) }
    }

    /// The live rows at the head, counted now if they were not (and checked against the
    /// record).
    fn rows(&self, dir: &Path) -> Result<TenantRecord, StoreError> {
        let mut s = self.state.lock().map_err(poisoned)?;
        if let Some(rows) = s.rows {
            return Ok(TenantRecord { head: s.head, rows, after_gc: s.after_gc });
        }
        let rows = fingerprint(&self.tree, None)?;
        check(dir, &self.name(), s.expected, s.head, rows)?;
        s.rows = Some(rows);
        s.expected = None;
        Ok(TenantRecord { head: s.head, rows, after_gc: None })
    }

    fn name(&self) -> String {
        String::from_utf8_lossy(&self.tree.name()).trim_start_matches(TENANT_PREFIX).to_string()
    }
}

/// Whether rows counted at `head` agree with the record's entry (when it is for that head).
fn check(
    dir: &Path,
    name: &str,
    expected: Option<TenantRecord>,
    head: u64,
    rows: Fingerprint,
) -> Result<(), StoreError> {
    match expected {
        Some(acked) if acked.head == head && !acked.accepts(rows) => Err(damaged(
            dir,
            format!(
                "tenant `{name}` at revision {head} holds {} relationship rows that do not match the {} recorded",
                rows.live, acked.rows.live
            ),
        )),
        _ => Ok(()),
    }
}

pub struct SledStore {
    db: sled::Db,
    meta: sled::Tree,
    /// Every tenant's tree, from the meta tree at open; a dropped tenant's entry goes with it.
    tenants: RwLock<HashMap<String, Arc<TenantTree>>>,
    /// Serializes creating and dropping tenants (never held by reads or writes).
    admin: Mutex<()>,
    flush: GroupFlush,
    dir: PathBuf,
    /// The record file; its lock serializes the record's updates: the state is read, sled
    /// flushed, the record written.
    record_io: Mutex<integrity::RecordFile>,
    durability: Durability,
    /// Blob files already synced (sled writes a large value to its own file and never syncs it).
    synced_blobs: Mutex<std::collections::HashSet<std::ffi::OsString>>,
    /// Called with each path synced on the acknowledgement path (tests watch the order).
    on_sync: RwLock<Option<SyncHook>>,
    /// Bytes of sled's page cache it was opened with.
    cache_bytes: u64,
}

/// A hook told of each file or directory synced before a write is acknowledged.
pub type SyncHook = Arc<dyn Fn(&Path) + Send + Sync>;

/// The default size of sled's page cache: 64 MiB (sled's own is 1 GiB; Pemba serves reads from
/// its index, so the store's pages are read mostly at open).
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// How a sled store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SledOptions {
    pub durability: Durability,
    /// Bytes of sled's page cache (sled's own default is 1 GiB).
    pub cache_bytes: u64,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions { durability: Durability::default(), cache_bytes: DEFAULT_CACHE_BYTES }
    }
}

/// What an acknowledged write survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// A power loss or a kernel crash: after sled's flush (which on Linux uses
    /// `sync_file_range`, durable against a process crash only), `fsync` of sled's log file, of
    /// new blob files, and of the directories, before the acknowledgement.
    #[default]
    PowerLoss,
    /// A crash of the process (kill -9) but not necessarily a power loss: sled's flush alone.
    ProcessCrash,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SledStore")
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Unavailable("a lock of the sled store was poisoned by a panicking thread".into())
}

impl SledStore {
    /// Opens (or creates) a store in `dir`, checking its format version and that it holds
    /// every acknowledged write (the integrity record). Never panics: a panic inside sled while
    /// reading a damaged directory is reported as damage.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        Self::open_with(dir, Durability::default())
    }

    /// [`SledStore::open`] with a durability setting.
    pub fn open_with(dir: &Path, durability: Durability) -> Result<SledStore, StoreError> {
        Self::open_with_options(dir, SledOptions { durability, ..SledOptions::default() })
    }

    /// [`SledStore::open`] with its options.
    pub fn open_with_options(dir: &Path, options: SledOptions) -> Result<SledStore, StoreError> {
        let opened = quiet_panics(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::open_checked(dir, options)))
        });
        opened
            .unwrap_or_else(|panic| Err(damaged(dir, format!("sled failed while reading it ({})", panic_text(&panic)))))
    }

    fn open_checked(dir: &Path, options: SledOptions) -> Result<SledStore, StoreError> {
        let durability = options.durability;
        let found = integrity::inspect(dir)?;
        let at_open = |e: sled::Error| open_error(dir, e);
        let db = open_sled(dir, options.cache_bytes).map_err(at_open)?;
        let meta = db.open_tree(META_TREE).map_err(at_open)?;
        match (meta.get(FORMAT_KEY).map_err(at_open)?, &found) {
            (None, Found::New) => {
                meta.insert(FORMAT_KEY, FORMAT_VERSION.to_string().as_bytes()).map_err(at_open)?;
                db.flush().map_err(at_open)?;
            }
            (None, Found::Unmarked) => {
                return Err(StoreError::NotAStore {
                    dir: dir.display().to_string(),
                    detail: "it holds sled's files but no Pemba store: its creation was interrupted; remove it and \
                             start again"
                        .into(),
                });
            }
            (None, Found::Store) => return Err(damaged(dir, "its format version is missing")),
            (Some(v), _) if v.as_ref() == FORMAT_VERSION.to_string().as_bytes() => {}
            (Some(v), _) => return Err(StoreError::UnknownFormat { found: String::from_utf8_lossy(&v).into_owned() }),
        }
        let marked = meta.get(MARKED_KEY).map_err(at_open)?.is_some();
        let mut tenants = HashMap::new();
        for item in meta.scan_prefix(TENANT_PREFIX) {
            let (k, _) = item.map_err(at_open)?;
            let key = std::str::from_utf8(&k).map_err(|_| damaged(dir, "a tenant key is not UTF-8"))?;
            let name = key.trim_start_matches(TENANT_PREFIX).to_string();
            let tree = db.open_tree(key).map_err(at_open)?;
            let head = Self::meta_u64(&tree, HEAD_KEY).map_err(|e| damaged(dir, e))?;
            let state = TenantState { head: head.0, rows: None, expected: None, after_gc: None };
            tenants.insert(name, Arc::new(TenantTree::new(tree, state)));
        }
        let found = match found {
            // Marked in sled but the marker is gone: a creation interrupted just before its
            // marker was written (nothing in it yet) finishes now; a store with tenants lost files.
            Found::Unmarked if marked && tenants.is_empty() => Found::New,
            Found::Unmarked if marked => {
                return Err(damaged(
                    dir,
                    format!(
                        "its marker `{}` is missing although the store was marked: files were deleted or replaced",
                        integrity::MARKER
                    ),
                ));
            }
            found => found,
        };
        let last = match (integrity::load(dir)?, &found) {
            (integrity::Loaded::Record(record, seq), _) => {
                verify(dir, &record, &tenants)?;
                seq
            }
            (integrity::Loaded::Missing | integrity::Loaded::Unreadable, Found::Store) => {
                return Err(damaged(
                    dir,
                    format!("its integrity record `{}` is missing or unreadable", integrity::RECORD),
                ));
            }
            (_, Found::Unmarked) => {
                // A store of a build before the record (or one whose first record was torn before
                // its marker was written): count every tenant's rows now.
                for t in tenants.values() {
                    t.rows(dir).map_err(|e| damaged(dir, e))?;
                }
                0
            }
            // A new store: the record starts now.
            (_, Found::New) => 0,
        };
        let store = SledStore {
            db,
            meta,
            tenants: RwLock::new(tenants),
            admin: Mutex::new(()),
            flush: GroupFlush::default(),
            dir: dir.to_path_buf(),
            record_io: Mutex::new(integrity::RecordFile::open(dir, last)?),
            durability,
            synced_blobs: Mutex::new(Default::default()),
            on_sync: RwLock::new(None),
            cache_bytes: options.cache_bytes,
        };
        if !marked {
            store.meta.insert(MARKED_KEY, b"1".to_vec()).map_err(at_open)?;
        }
        store.durable()?;
        if !matches!(found, Found::Store) {
            // Last: a directory without the marker was never a complete store.
            integrity::write_marker(dir)
                .map_err(|e| StoreError::Unavailable(format!("cannot write the marker in `{}`: {e}", dir.display())))?;
        }
        Ok(store)
    }

    /// Flushes sled and then records every tenant's state as of before the flush (so the record
    /// never claims more than sled made durable): the acknowledgement path of every write.
    fn durable(&self) -> Result<(), StoreError> {
        let mut file = self.record_io.lock().map_err(poisoned)?;
        let mut record = Record::default();
        for (name, t) in self.tenants.read().map_err(poisoned)?.iter() {
            let s = *t.state.lock().map_err(poisoned)?;
            let entry = match (s.rows, s.expected) {
                (Some(rows), _) => TenantRecord { head: s.head, rows, after_gc: s.after_gc },
                // Not counted yet, and nothing written since the record said so.
                (None, Some(acked)) if acked.head == s.head => acked,
                (None, _) => t.rows(&self.dir)?,
            };
            record.tenants.insert(name.clone(), entry);
        }
        self.db.flush().map_err(self.io())?;
        if self.durability == Durability::PowerLoss {
            self.sync_files()?;
        }
        file.save(&self.dir, &record, self.durability == Durability::PowerLoss)
    }

    /// `fsync` of what sled's flush left in the page cache: its log file, blob files not
    /// synced yet, and the directories that name them.
    fn sync_files(&self) -> Result<(), StoreError> {
        let fail = |p: &Path, e: std::io::Error| StoreError::Unavailable(format!("cannot sync `{}`: {e}", p.display()));
        let hook = self.on_sync.read().map_err(poisoned)?.clone();
        let synced = |p: &Path| {
            if let Some(h) = &hook {
                h(p);
            }
        };
        let log = self.dir.join("db");
        std::fs::File::open(&log).and_then(|f| f.sync_all()).map_err(|e| fail(&log, e))?;
        synced(&log);
        let blobs = self.dir.join("blobs");
        if let Ok(entries) = std::fs::read_dir(&blobs) {
            let mut known = self.synced_blobs.lock().map_err(poisoned)?;
            let mut new = false;
            for e in entries.flatten() {
                if known.contains(&e.file_name()) {
                    continue;
                }
                let p = e.path();
                // A blob sled removed meanwhile needs no sync.
                match std::fs::File::open(&p).and_then(|f| f.sync_all()) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(fail(&p, err)),
                }
                synced(&p);
                known.insert(e.file_name());
                new = true;
            }
            if new {
                integrity::sync_dir(&blobs).map_err(|e| fail(&blobs, e))?;
                synced(&blobs);
            }
        }
        integrity::sync_dir(&self.dir).map_err(|e| fail(&self.dir, e))?;
        synced(&self.dir);
        Ok(())
    }

    /// Sets the hook told of each path synced on the acknowledgement path (tests).
    pub fn on_sync(&self, hook: Option<SyncHook>) {
        if let Ok(mut h) = self.on_sync.write() {
            *h = hook;
        }
    }

    /// The same store with sled's page cache empty: sled is flushed, closed and opened again
    /// (no rows are read: sled reads its snapshot and the log written since). Loading every
    /// tenant at open reads every row through the cache once, and the index answers reads after
    /// that, so [`crate::db::Database::open`] calls this once it has loaded many: the process
    /// then keeps the index, not the pages (at M, about 40 MB resident with a 16 MiB cache;
    /// sled cannot be told to empty its cache otherwise). Each tenant keeps its state (head, row
    /// count). Nothing else may hold the store: it is taken by value. As at the first open, a
    /// panic inside sled (a directory damaged meanwhile) is reported as damage.
    pub fn reopened(self) -> Result<SledStore, StoreError> {
        let dir = self.dir.clone();
        let reopened =
            quiet_panics(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.reopen_checked())));
        reopened.unwrap_or_else(|panic| {
            Err(damaged(&dir, format!("sled failed while it was opened again ({})", panic_text(&panic))))
        })
    }

    fn reopen_checked(self) -> Result<SledStore, StoreError> {
        self.db.flush().map_err(self.io())?;
        // The handles move out (the rest of the store stays, and goes into the new one).
        let SledStore { db, meta, tenants, .. } = self;
        let mut states = Vec::new();
        for (name, t) in tenants.into_inner().map_err(poisoned)? {
            states.push((name, *t.state.lock().map_err(poisoned)?));
        }
        // Every handle goes before sled is opened again (its lock and its pages with them).
        drop(meta);
        drop(db);
        let reopen = |e: sled::Error| open_error(&self.dir, e);
        let db = open_sled(&self.dir, self.cache_bytes).map_err(reopen)?;
        let meta = db.open_tree(META_TREE).map_err(reopen)?;
        let mut tenants = HashMap::new();
        for (name, state) in states {
            let tree = db.open_tree(format!("{TENANT_PREFIX}{name}")).map_err(reopen)?;
            tenants.insert(name, Arc::new(TenantTree::new(tree, state)));
        }
        Ok(SledStore { db, meta, tenants: RwLock::new(tenants), ..self })
    }

    /// Maps sled's errors naming this store's directory.
    fn io(&self) -> impl Fn(sled::Error) -> StoreError + '_ {
        |e| io_in(&self.dir, e)
    }

    /// Names the directory in an error that does not.
    fn in_dir(&self) -> impl Fn(StoreError) -> StoreError + '_ {
        |e| match e {
            StoreError::Unavailable(m) => StoreError::Unavailable(format!("`{}`: {m}", self.dir.display())),
            e => e,
        }
    }

    fn tenant(&self, tenant: &str) -> Result<Arc<TenantTree>, StoreError> {
        let tenants = self.tenants.read().map_err(poisoned)?;
        tenants.get(tenant).cloned().ok_or_else(|| StoreError::NoSuchTenant(tenant.to_string()))
    }

    fn meta_u64(tree: &sled::Tree, key: &[u8]) -> Result<Revision, StoreError> {
        match tree.get(key).map_err(io)? {
            Some(v) => read_be(&v).map(Revision),
            None => Ok(Revision::ZERO),
        }
    }

    fn check_readable(tree: &sled::Tree, revision: Revision) -> Result<(), StoreError> {
        let head = Self::meta_u64(tree, HEAD_KEY)?;
        if revision > head {
            return Err(StoreError::FutureRevision { revision, head });
        }
        let oldest = Self::meta_u64(tree, OLDEST_KEY)?;
        if revision < oldest {
            return Err(StoreError::OutsideWindow { revision, oldest });
        }
        Ok(())
    }

    /// Applies a batch without waiting for the flush; returns what it committed and the flush
    /// ticket to wait on.
    fn apply(
        &self,
        tenant: &str,
        batch: &[Mutation],
        now: Timestamp,
        absent: &[bool],
    ) -> Result<(Commit, u64), StoreError> {
        let t = self.tenant(tenant)?;
        let _guard = t.lock.lock().map_err(poisoned)?;
        let tree = &t.tree;
        let rev = Self::meta_u64(tree, HEAD_KEY)?.next();
        // A tenant without relationship rows (a fresh restore) needs no per-row lookups in the
        // tree: only the batch's own earlier writes can match.
        let fresh = tree.scan_prefix([RELATIONSHIPS]).next().is_none();
        let rows = t.rows(&self.dir)?.rows;
        let mut w = Writer { tree, fresh, rev, overlay: BTreeMap::new(), changes: Vec::new(), rows };
        for (i, m) in batch.iter().enumerate() {
            match m {
                // Vouched absent (`Datastore::write_hinted`): no lookup.
                Mutation::Create(r) | Mutation::Touch(r) if absent.get(i) == Some(&true) => w.put_rel(r)?,
                m => w.mutation(m)?,
            }
        }
        let Writer { overlay, changes, rows: live, .. } = w;
        let mut b = sled::Batch::default();
        for (k, v) in overlay {
            b.insert(k, v);
        }
        b.insert(HEAD_KEY.to_vec(), be(rev.0).to_vec());
        let rows: Vec<ChangeRow> = changes.iter().map(ChangeRow::from_change).collect();
        b.insert(revision_key(CHANGELOG, rev), serde_json::to_vec(&rows).map_err(corrupt)?);
        b.insert(revision_key(COMMIT_TIMES, rev), now.0.to_be_bytes().to_vec());
        tree.apply_batch(b).map_err(self.io())?;
        // The batch is applied: its state must be recorded even if another thread panicked
        // holding the lock (plain numbers, consistent after any panic).
        *t.state.lock().unwrap_or_else(|p| p.into_inner()) =
            TenantState { head: rev.0, rows: Some(live), expected: None, after_gc: None };
        Ok((Commit { revision: rev, changes }, self.flush.ticket()))
    }

    /// Raw sled: the rows an import of `rels` would write (as new versions at revision 1), in
    /// `apply_batch`es of `chunk` rows into a scratch tree, then a flush. The baseline the
    /// import benchmark compares with (`chunk` = all rows: one batch).
    pub fn raw_batch_baseline(&self, rels: &[Relationship], chunk: usize) -> Result<(), StoreError> {
        let tree = self.db.open_tree("__bench_raw").map_err(self.io())?;
        for part in rels.chunks(chunk.max(1)) {
            let mut b = sled::Batch::default();
            for r in part {
                let row = RelRow { deleted: None, text: r.to_string() };
                b.insert(
                    versioned_key(RELATIONSHIPS, &relationship_key(r), 1),
                    serde_json::to_vec(&row).map_err(corrupt)?,
                );
            }
            tree.apply_batch(b).map_err(self.io())?;
        }
        self.db.flush().map_err(self.io())?;
        self.db.drop_tree("__bench_raw").map_err(self.io())?;
        Ok(())
    }
}

impl Datastore for SledStore {
    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(key).map_err(self.io())?.map(|v| v.to_vec()))
    }

    fn meta_set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(key, value).map_err(self.io())?;
        self.durable()
    }

    fn close(&self) -> Result<(), StoreError> {
        self.durable()
    }

    fn create_tenant(&self, name: &str) -> Result<(), StoreError> {
        if !valid_tenant_name(name) {
            return Err(StoreError::InvalidTenantName(name.to_string()));
        }
        let _admin = self.admin.lock().map_err(poisoned)?;
        let key = format!("{TENANT_PREFIX}{name}");
        if self.tenants.read().map_err(poisoned)?.contains_key(name)
            || self.meta.get(&key).map_err(self.io())?.is_some()
        {
            return Err(StoreError::TenantExists(name.to_string()));
        }
        // A tree left by an interrupted drop is cleared before the tenant is registered.
        let tree = self.db.open_tree(&key).map_err(self.io())?;
        tree.clear().map_err(self.io())?;
        self.meta.insert(key, b"".to_vec()).map_err(self.io())?;
        let t = Arc::new(TenantTree::new(
            tree,
            TenantState { head: 0, rows: Some(Fingerprint::default()), expected: None, after_gc: None },
        ));
        self.tenants.write().map_err(poisoned)?.insert(name.to_string(), t);
        self.durable()
    }

    fn drop_tenant(&self, name: &str) -> Result<(), StoreError> {
        let _admin = self.admin.lock().map_err(poisoned)?;
        let t = self.tenants.write().map_err(poisoned)?.remove(name);
        let Some(t) = t else { return Err(StoreError::NoSuchTenant(name.to_string())) };
        // Writes that found the tenant before it left the map finish first.
        let _writer = t.lock.lock().map_err(poisoned)?;
        let key = format!("{TENANT_PREFIX}{name}");
        self.meta.remove(&key).map_err(self.io())?;
        self.durable()?;
        self.db.drop_tree(key).map_err(self.io())?;
        self.db.flush().map_err(self.io())?;
        Ok(())
    }

    fn tenants(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self.tenants.read().map_err(poisoned)?.keys().cloned().collect();
        names.sort();
        Ok(names)
    }

    fn head(&self, tenant: &str) -> Result<Revision, StoreError> {
        Self::meta_u64(&self.tenant(tenant)?.tree, HEAD_KEY)
    }

    fn write(&self, tenant: &str, batch: &[Mutation], now: Timestamp) -> Result<Commit, StoreError> {
        self.write_hinted(tenant, batch, now, &[])
    }

    fn write_hinted(
        &self,
        tenant: &str,
        batch: &[Mutation],
        now: Timestamp,
        absent: &[bool],
    ) -> Result<Commit, StoreError> {
        let (commit, ticket) = self.apply(tenant, batch, now, absent).map_err(self.in_dir())?;
        // The batch is in sled's memory; until the flush confirms it, its outcome after a crash
        // is unknown.
        self.flush
            .wait(ticket, &|| self.durable())
            .map_err(|e| StoreError::OutcomeUnknown(format!("`{}`: {e}", self.dir.display())))?;
        Ok(commit)
    }

    fn write_deferred(
        &self,
        tenant: &str,
        batch: &[Mutation],
        now: Timestamp,
        absent: &[bool],
    ) -> Result<Commit, StoreError> {
        Ok(self.apply(tenant, batch, now, absent).map_err(self.in_dir())?.0)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.flush
            .wait(self.flush.ticket(), &|| self.durable())
            .map_err(|e| StoreError::OutcomeUnknown(format!("`{}`: {e}", self.dir.display())))
    }

    fn snapshot(&self, tenant: &str, revision: Revision) -> Result<TenantSnapshot, StoreError> {
        let mut relationships = Vec::new();
        let mut snap = self.snapshot_streamed(tenant, revision, &mut |batch| relationships.extend(batch))?;
        snap.relationships = relationships;
        Ok(snap)
    }

    fn snapshot_streamed(
        &self,
        tenant: &str,
        revision: Revision,
        sink: &mut dyn FnMut(Vec<Relationship>),
    ) -> Result<TenantSnapshot, StoreError> {
        const BATCH: usize = 8192;
        let t = self.tenant(tenant)?;
        let tree = &t.tree;
        Self::check_readable(tree, revision)?;
        // Reading the head before its rows were counted (the load at open): count them here.
        let counting = {
            let s = t.state.lock().map_err(poisoned)?;
            s.rows.is_none() && s.head == revision.0
        };
        let mut fp = Fingerprint::default();
        let mut batch = Vec::with_capacity(BATCH);
        for item in tree.scan_prefix([RELATIONSHIPS]) {
            let (k, v) = item.map_err(self.io())?;
            let (identity, created) = split_versioned(&k)?;
            let row: RelRow = serde_json::from_slice(&v).map_err(corrupt)?;
            if visible(created, row.deleted, revision) {
                if counting {
                    fp.add(identity.as_bytes(), &row.text);
                }
                batch.push(parse_relationship(&row.text)?);
                if batch.len() == BATCH {
                    sink(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                }
            }
        }
        if !batch.is_empty() {
            sink(batch);
        }
        let mut attributes = BTreeMap::new();
        for item in tree.scan_prefix([ATTRIBUTES]) {
            let (k, v) = item.map_err(self.io())?;
            let (key, created) = split_versioned(&k)?;
            let row: AttrRow = serde_json::from_slice(&v).map_err(corrupt)?;
            if visible(created, row.deleted, revision) {
                attributes.insert(parse_object_key(key)?, row.attributes);
            }
        }
        let mut schema = None;
        if let Some(item) = tree.range(vec![SCHEMAS]..=revision_key(SCHEMAS, revision)).next_back() {
            let (_, v) = item.map_err(self.io())?;
            schema = Some(String::from_utf8(v.to_vec()).map_err(|_| corrupt("schema is not UTF-8"))?);
        }
        // Garbage collection may have run during the scan (sled iterators are not snapshots):
        // if the revision fell out of the window meanwhile, the scan may have missed rows.
        Self::check_readable(tree, revision)?;
        if counting {
            let mut s = t.state.lock().map_err(poisoned)?;
            // A write meanwhile counted the rows itself.
            if s.rows.is_none() && s.head == revision.0 {
                check(&self.dir, tenant, s.expected, s.head, fp)?;
                s.rows = Some(fp);
                s.expected = None;
            }
        }
        Ok(TenantSnapshot { revision, schema, relationships: Vec::new(), attributes })
    }

    fn read_relationships(
        &self,
        tenant: &str,
        revision: Revision,
        filter: &RelationshipFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Relationship>, StoreError> {
        let t = self.tenant(tenant)?;
        let tree = &t.tree;
        Self::check_readable(tree, revision)?;
        // Rows sort by resource type first: a filter that fixes it reads only that type's rows.
        let mut prefix = vec![RELATIONSHIPS];
        if let Some(t) = &filter.resource_type {
            prefix.extend_from_slice(t.as_bytes());
            prefix.push(1);
        }
        let start = match after {
            // Every version of the row `after` sorts before `after 0x01`.
            Some(a) => {
                let mut k = vec![RELATIONSHIPS];
                k.extend_from_slice(a.as_bytes());
                k.push(1);
                k.max(prefix.clone())
            }
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        for item in tree.range(start..) {
            let (k, v) = item.map_err(self.io())?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let (_, created) = split_versioned(&k)?;
            let row: RelRow = serde_json::from_slice(&v).map_err(corrupt)?;
            if visible(created, row.deleted, revision) {
                let r = parse_relationship(&row.text)?;
                if filter.matches(&r) {
                    out.push(r);
                }
            }
        }
        Self::check_readable(tree, revision)?;
        Ok(out)
    }

    fn changes_after(&self, tenant: &str, after: Revision, limit: usize) -> Result<Vec<Commit>, StoreError> {
        let t = self.tenant(tenant)?;
        let tree = &t.tree;
        Self::check_readable(tree, after)?;
        let mut out = Vec::new();
        for item in tree.range(revision_key(CHANGELOG, after.next())..) {
            let (k, v) = item.map_err(self.io())?;
            if k.first() != Some(&CHANGELOG) || out.len() >= limit {
                break;
            }
            let rows: Vec<ChangeRow> = serde_json::from_slice(&v).map_err(corrupt)?;
            let changes = rows.into_iter().map(ChangeRow::into_change).collect::<Result<_, _>>()?;
            out.push(Commit { revision: key_revision(&k)?, changes });
        }
        Self::check_readable(tree, after)?;
        Ok(out)
    }

    fn collect_garbage(
        &self,
        tenant: &str,
        now: Timestamp,
        window: std::time::Duration,
    ) -> Result<Revision, StoreError> {
        let t = self.tenant(tenant)?;
        let _guard = t.lock.lock().map_err(poisoned)?;
        let tree = &t.tree;
        let cutoff = Timestamp(now.0 - window.as_nanos() as i128);
        let head = Self::meta_u64(tree, HEAD_KEY)?;
        let mut keep_from = Revision::ZERO;
        for item in tree.scan_prefix([COMMIT_TIMES]) {
            let (k, v) = item.map_err(self.io())?;
            let rev = key_revision(&k)?;
            let time = i128::from_be_bytes(v.as_ref().try_into().map_err(|_| corrupt("bad commit time"))?);
            if time <= cutoff.0 {
                keep_from = keep_from.max(rev);
            }
        }
        let oldest = Self::meta_u64(tree, OLDEST_KEY)?.max(keep_from.min(head));
        let mut b = sled::Batch::default();
        let mut state = t.rows(&self.dir)?;
        for item in tree.scan_prefix([RELATIONSHIPS]) {
            let (k, v) = item.map_err(self.io())?;
            let row: RelRow = serde_json::from_slice(&v).map_err(corrupt)?;
            let gone = row.deleted.is_some_and(|d| d <= oldest.0)
                || parse_relationship(&row.text)?.expiration.is_some_and(|e| e <= cutoff);
            if gone {
                if row.deleted.is_none() {
                    state.rows.remove(split_versioned(&k)?.0.as_bytes(), &row.text);
                }
                b.remove(k);
            }
        }
        for item in tree.scan_prefix([ATTRIBUTES]) {
            let (k, v) = item.map_err(self.io())?;
            let row: AttrRow = serde_json::from_slice(&v).map_err(corrupt)?;
            if row.deleted.is_some_and(|d| d <= oldest.0) {
                b.remove(k);
            }
        }
        // Schema versions: keep the one in force at `oldest` and every later one.
        let mut schema_keys: Vec<(Revision, sled::IVec)> = Vec::new();
        for item in tree.scan_prefix([SCHEMAS]) {
            let (k, _) = item.map_err(self.io())?;
            schema_keys.push((key_revision(&k)?, k));
        }
        if let Some(in_force) = schema_keys.iter().filter(|(r, _)| *r <= oldest).map(|(r, _)| *r).max() {
            for (r, k) in &schema_keys {
                if *r < in_force {
                    b.remove(k.clone());
                }
            }
        }
        for (prefix, keep) in [(CHANGELOG, oldest.next()), (COMMIT_TIMES, oldest)] {
            for item in tree.scan_prefix([prefix]) {
                let (k, _) = item.map_err(self.io())?;
                if key_revision(&k)? < keep {
                    b.remove(k);
                }
            }
        }
        b.insert(OLDEST_KEY.to_vec(), be(oldest.0).to_vec());
        // The record accepts the rows after this collection before sled may hold them: a crash
        // at any point leaves a count the record accepts.
        t.state.lock().map_err(poisoned)?.after_gc = Some(state.rows);
        self.durable()?;
        tree.apply_batch(b).map_err(self.io())?;
        *t.state.lock().map_err(poisoned)? =
            TenantState { head: state.head, rows: Some(state.rows), expected: None, after_gc: None };
        self.durable()?;
        Ok(oldest)
    }

    fn oldest_readable(&self, tenant: &str) -> Result<Revision, StoreError> {
        Self::meta_u64(&self.tenant(tenant)?.tree, OLDEST_KEY)
    }
}

/// A tenant tree's live relationship rows at `at` (`None`: the head, rows not deleted).
fn fingerprint(tree: &sled::Tree, at: Option<Revision>) -> Result<Fingerprint, StoreError> {
    let mut fp = Fingerprint::default();
    for item in tree.scan_prefix([RELATIONSHIPS]) {
        let (k, v) = item.map_err(io)?;
        let (identity, created) = split_versioned(&k)?;
        let row: RelRow = serde_json::from_slice(&v).map_err(corrupt)?;
        let live = match at {
            None => row.deleted.is_none(),
            Some(r) => visible(created, row.deleted, r),
        };
        if live {
            fp.add(identity.as_bytes(), &row.text);
        }
    }
    Ok(fp)
}

/// Compares what sled holds with the integrity record: every recorded tenant is there and not
/// behind its acknowledged head. The rows are compared when the head is first read (the load
/// reads them all anyway), or here when the head moved past the record (writes flushed but not
/// acknowledged before a crash: the acknowledged revision is still readable).
fn verify(dir: &Path, record: &Record, tenants: &HashMap<String, Arc<TenantTree>>) -> Result<(), StoreError> {
    for (name, acked) in &record.tenants {
        let Some(t) = tenants.get(name) else {
            return Err(damaged(
                dir,
                format!("tenant `{name}`, acknowledged up to revision {}, is missing", acked.head),
            ));
        };
        let mut s = t.state.lock().map_err(poisoned)?;
        if s.head < acked.head {
            return Err(damaged(
                dir,
                format!("tenant `{name}` is at revision {} but revision {} was acknowledged", s.head, acked.head),
            ));
        }
        let oldest = SledStore::meta_u64(&t.tree, OLDEST_KEY).map_err(|e| damaged(dir, e))?;
        if s.head == acked.head {
            s.expected = Some(*acked);
        } else if oldest.0 <= acked.head {
            let rows = fingerprint(&t.tree, Some(Revision(acked.head))).map_err(|e| damaged(dir, e))?;
            check(dir, name, Some(*acked), acked.head, rows)?;
        }
        // Otherwise garbage collection after unacknowledged writes moved the oldest readable
        // revision past the acknowledged one: its rows can no longer be counted; the head check
        // above is what remains.
    }
    Ok(())
}

thread_local! {
    /// Set while this thread opens a store: a panic inside sled is then reported as damage, so
    /// the panic hook stays silent for it.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with panics on this thread kept off standard error (they are caught and reported
/// by the caller). The hook installed once delegates every other panic to the previous hook.
pub(crate) fn quiet_panics<T>(f: impl FnOnce() -> T) -> T {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let out = f();
    QUIET.with(|q| q.set(false));
    out
}

/// What a failure to open sled in `dir` is: damage, a permission the store lacks, or sled's
/// own words.
fn open_error(dir: &Path, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { .. } => damaged(dir, e),
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => StoreError::Unavailable(format!(
            "cannot open `{}`: {io}; the store needs to read and write in it",
            dir.display()
        )),
        e => StoreError::Unavailable(format!("cannot open `{}`: {e}", dir.display())),
    }
}

/// A caught panic's message (empty when it is not text).
fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Opens sled in `dir`. sled's I/O threads may hold the directory's lock a moment after a
/// store in this process was dropped: a lock held briefly is waited for (up to half a second);
/// one held longer (another process serving the directory) is an error saying so.
fn open_sled(dir: &Path, cache_bytes: u64) -> Result<sled::Db, sled::Error> {
    let started = std::time::Instant::now();
    loop {
        // Every write is flushed by its writer (group commit), so sled's periodic background
        // flush would only add I/O; without its thread, dropping the store also releases the
        // directory's lock sooner.
        match sled::Config::new().path(dir).flush_every_ms(None).cache_capacity(cache_bytes).open() {
            // sled says so only in words: "could not acquire lock on …".
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if started.elapsed() > std::time::Duration::from_millis(500) {
                    return Err(sled::Error::Io(std::io::Error::new(
                        e.kind(),
                        "the directory is in use by another process (a running `pemba serve`?)",
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}
