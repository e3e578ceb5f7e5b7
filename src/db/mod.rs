//! The embedded database API: open a directory, create and drop tenants, write validated batches,
//! read relationships, and answer Check, CheckBulk, LookupResources, LookupSubjects and Expand at
//! a consistency level. The server and the CLI use only this.
//!
//! Embedding: depend on `pemba = { version = "0.1", default-features = false }` (no command
//! line, YAML or server crates; a test checks the lean build). This example uses only that:
//!
//! ```
//! use pemba::db::{Consistency, Database, Limits, WriteRequest};
//! use pemba::engine::{CheckRequest, Decision};
//! use pemba::model::Relationship;
//! use pemba::store::Mutation;
//!
//! let dir = std::env::temp_dir().join(format!("pemba-doc-{}", std::process::id()));
//! // sled's page cache is sized here (64 MiB by default); the index serves the reads.
//! let db = Database::open_with(&dir, Limits { store_cache_bytes: 32 << 20, ..Limits::default() })?;
//! db.create_tenant("acme")?;
//! db.write_schema("acme", "definition user {}\ndefinition doc {\n  relation viewer: user\n  permission view = viewer\n}")?;
//! let rev = db.write("acme", WriteRequest::new(vec![Mutation::Touch(Relationship::parse("doc:readme#viewer@user:ann")?)]))?;
//! // SpiceDB's text forms: relationships (also in bulk, one per line) and checks.
//! db.import("acme", &mut "doc:guide#viewer@user:bob\ndoc:faq#viewer@user:bob\n".as_bytes())?;
//! let req: CheckRequest = "doc:readme#view@user:ann".parse()?;
//! let (answer, at) = db.check("acme", Consistency::AtLeastAsFresh(rev), &req)?;
//! assert_eq!(answer, Decision::Has);
//! assert!(at >= rev);
//! // A snapshot answers many queries at one revision and one instant.
//! let snapshot = db.snapshot("acme", Consistency::FullyConsistent)?;
//! assert_eq!(snapshot.check(&CheckRequest::parse("doc:faq#view@user:bob")?)?, Decision::Has);
//! // Flushes, releases the directory at once, frees the index in the background.
//! db.close()?;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The parts: `tenant.rs` (one tenant's state: its head view, recent and older views, its
//! writer lock and lookup cache), `write.rs` (validation, preconditions, the write path),
//! `read.rs` (consistency to snapshot, reads of relationships and the changelog, queries),
//! `transfer.rs` (export and import), `error.rs` (the error type and its stable codes).
//!
//! Architecture invariant: every write is validated against the schema here before it reaches
//! the store; a write is visible only once durable; readers hold immutable views (`query::View`)
//! taken under a short read lock, so a long evaluation never blocks a writer; each tenant has its
//! own locks and caches, and no lock shared by tenants is held across the store's I/O.

mod error;
mod read;
mod tenant;
mod transfer;
mod write;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

pub use self::error::{DbError, ErrorClass, ErrorCode};
pub use self::read::BulkAnswers;
pub use crate::query::{CacheStats, Snapshot};

use self::error::poisoned;
use self::tenant::Tenant;
use crate::conditions::Conditions;
use crate::engine::cursor::CursorKey;
use crate::engine::lookup;
use crate::model::{MAX_CONTEXT_LEN, Revision};
use crate::schema::{self, CompiledSchema};
use crate::store::{self, Datastore, MemoryStore, RelationshipFilter, SledStore, StoreError};

/// Explicit limits of one database.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Mutations in one write (relationship creates, touches and deletes, deletes by filter,
    /// attribute sets and deletes).
    pub max_relationships_per_write: usize,
    /// Mutations in one chunk of an import ([`Database::import`], [`Database::import_chunk`]):
    /// validated together, stored as revisions of at most `max_relationships_per_write`, and
    /// made visible together. The memory an import holds at once is bounded by this many rows.
    pub import_chunk: usize,
    /// Bytes of caveat context on one relationship (and in one request).
    pub max_context_bytes: usize,
    /// Largest page for lookups and relationship reads.
    pub max_page_size: usize,
    pub max_tenants: usize,
    /// Items in one CheckBulk.
    pub max_bulk_checks: usize,
    /// How long old revisions, expired relationships and the changelog are kept.
    pub window: std::time::Duration,
    /// Work and time one evaluation may take.
    pub evaluation: crate::engine::Limits,
    /// Views of the revisions before the head kept per tenant (each holds only what the writes
    /// after it changed), for exact-snapshot reads and later pages of lookups.
    pub recent_views: usize,
    /// Relationship and attribute changes those recent views may span per tenant: a bulk load
    /// keeps fewer of them.
    pub recent_view_changes: usize,
    /// Bytes of index a tenant may keep for older revisions built from the store.
    pub older_view_bytes: usize,
    /// Per-tenant quota: relationships a tenant may hold. A write that could pass it (counting
    /// each create and each touch of a relationship not yet held; deletes in the same write are
    /// not subtracted) is refused with `QUOTA_EXCEEDED`. Unlimited by default.
    pub max_relationships_per_tenant: usize,
    /// Per-tenant quota: bytes of heap the tenant's index (its head) may hold. Once past it, writes
    /// that add relationships or attributes are refused with `QUOTA_EXCEEDED`; deletes still
    /// succeed. Unlimited by default.
    pub max_index_bytes_per_tenant: usize,
    /// Objects of one type a tenant's index may name (its ids are 32-bit, one value marks the
    /// wildcard): [`MAX_OBJECTS_PER_TYPE`], the default, is also the most it may be set to.
    /// A write whose relationships would name more is refused with `QUOTA_EXCEEDED`. Names stay
    /// in the index until the next open, their relationships deleted or not.
    pub max_objects_per_type: usize,
    /// What an acknowledged write survives on the sled store (`Database::open_with`): a power
    /// loss (the default: files and directories `fsync`ed before the acknowledgement) or only a
    /// crash of the process.
    pub durability: store::Durability,
    /// Bytes of sled's page cache (the store's rows in memory besides the index, which serves
    /// reads). sled's own default is 1 GiB; Pemba's is 64 MiB, since Checks and lookups read
    /// the index, not the store. sled counts a page at its size on disk; held in memory the
    /// same pages take about twice that and more (at M, a full 16 MiB cache held about 40 MB).
    /// When [`Database::open_with`] has loaded 10,000 relationships or more, the pages it read
    /// are let go (sled is opened again), so the cache then fills only with what later writes
    /// and reads of the store touch.
    pub store_cache_bytes: u64,
}

/// The default [`Limits::import_chunk`].
pub const DEFAULT_IMPORT_CHUNK: usize = 10_000;

/// Relationships loaded at open (live ones, all tenants) from which sled is opened again to
/// empty its cache (about 160 bytes each in sled: some megabytes of pages).
const REOPEN_AFTER_ROWS: usize = 10_000;

/// What the process runs after an open has freed much memory ([`set_release_hook`]).
static RELEASE_HOOK: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Registers `f` to run at the end of an open that loaded 10,000 relationships or more, once the load's buffers and the store's cache have been freed (tens of megabytes at 1M
/// relationships). An allocator that keeps freed memory for reuse can give it back to the
/// system there: mimalloc holds it for its purge delay, and longer while nothing else is freed,
/// so a process just opened would otherwise hold the load's memory as well as the index. The
/// `pemba` binary forces a mimalloc collection. One hook per process: returns `false` (and keeps
/// the first) when one is already set.
pub fn set_release_hook(f: fn()) -> bool {
    RELEASE_HOOK.set(f).is_ok()
}

/// The most objects of one type a tenant's index can name ([`Limits::max_objects_per_type`]):
/// ids are `u32` and `u32::MAX` marks the wildcard (4,294,967,294).
pub const MAX_OBJECTS_PER_TYPE: usize = u32::MAX as usize - 1;

/// The default size of sled's page cache ([`Limits::store_cache_bytes`]).
pub const DEFAULT_STORE_CACHE_BYTES: u64 = store::DEFAULT_CACHE_BYTES;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_relationships_per_write: 1000,
            import_chunk: DEFAULT_IMPORT_CHUNK,
            max_context_bytes: MAX_CONTEXT_LEN,
            max_page_size: lookup::MAX_PAGE_SIZE,
            max_tenants: 1000,
            max_bulk_checks: 1000,
            window: store::DEFAULT_WINDOW,
            evaluation: crate::engine::Limits::default(),
            recent_views: 16,
            recent_view_changes: 4096,
            older_view_bytes: 256 << 20,
            max_relationships_per_tenant: usize::MAX,
            max_index_bytes_per_tenant: usize::MAX,
            max_objects_per_type: MAX_OBJECTS_PER_TYPE,
            durability: store::Durability::PowerLoss,
            store_cache_bytes: DEFAULT_STORE_CACHE_BYTES,
        }
    }
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// The newest state this process has (the head: one node has nothing fresher).
    MinimizeLatency,
    FullyConsistent,
    /// At least this revision (a ZedToken from an earlier write).
    AtLeastAsFresh(Revision),
    /// Exactly this revision, if it is inside the retention window.
    AtExactSnapshot(Revision),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Precondition {
    /// The batch applies only if some relationship matches.
    MustMatch(RelationshipFilter),
    /// The batch applies only if no relationship matches.
    MustNotMatch(RelationshipFilter),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteRequest {
    pub mutations: Vec<store::Mutation>,
    pub preconditions: Vec<Precondition>,
}

impl WriteRequest {
    pub fn new(mutations: Vec<store::Mutation>) -> WriteRequest {
        WriteRequest { mutations, preconditions: Vec::new() }
    }
}

pub struct Database {
    store: Arc<dyn Datastore>,
    conditions: Conditions,
    key: CursorKey,
    limits: Limits,
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
    /// Serializes creating and dropping tenants. Not the `tenants` lock: that one is held only
    /// to look up or insert an entry, never across the store's I/O, so queries and writes of
    /// other tenants go on while a tenant is created.
    admin: Mutex<()>,
    /// The last token sealed per tenant. Sealing is deterministic (a tenant and a revision always
    /// give the same text), so this only spares each Check's answer a MAC.
    tokens: RwLock<HashMap<String, (Revision, Arc<str>)>>,
}

/// What a relationship-read cursor continues: the kind of read (`what`: "relationships",
/// "export") and its filter.
pub fn read_query(what: &str, filter: &crate::store::RelationshipFilter) -> [u8; 16] {
    crate::engine::cursor::query_digest(&["read", what, &filter.to_string()])
}

/// The query digest tokens carry: no lookup's digest equals it, so a cursor is never a token.
fn token_query() -> [u8; 16] {
    static DIGEST: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
    *DIGEST.get_or_init(|| crate::engine::cursor::query_digest(&["zedtoken"]))
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Database")
    }
}

/// Dropping a database releases its store (and the directory's lock) before returning; the
/// index's memory, a few hundred milliseconds of freeing at a million relationships, is freed
/// on a background thread.
impl Drop for Database {
    fn drop(&mut self) {
        let tenants = std::mem::take(self.tenants.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner));
        if !tenants.is_empty() {
            // Without a thread to spare, `spawn` drops the closure, and the index with it, here.
            let _ = std::thread::Builder::new().name("pemba-free".into()).spawn(move || drop(tenants));
        }
    }
}

impl Database {
    /// Opens (or creates) a durable database in `dir` and loads every tenant's head state.
    pub fn open(dir: &Path) -> Result<Database, DbError> {
        Self::open_with(dir, Limits::default())
    }

    pub fn open_with(dir: &Path, limits: Limits) -> Result<Database, DbError> {
        let options = store::SledOptions { durability: limits.durability, cache_bytes: limits.store_cache_bytes };
        let sled = Arc::new(SledStore::open_with_options(dir, options)?);
        // Loading reads every row: a panic inside sled on a damaged directory is damage, not a
        // crash of the caller.
        let loaded = crate::store::sled_store::quiet_panics(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::with_store(sled.clone(), limits)))
        });
        let mut db = loaded.unwrap_or_else(|_| {
            Err(StoreError::Damaged {
                dir: dir.display().to_string(),
                detail: "sled failed while its rows were loaded".into(),
            }
            .into())
        })?;
        // The load filled sled's cache with every row's pages, which the index now answers for:
        // from 10,000 relationships loaded (a few megabytes of pages), sled is opened again,
        // empty (an empty in-memory store stands in for the moment).
        let mut loaded_rows = 0;
        for t in db.tenants.read().map_err(poisoned)?.values() {
            loaded_rows += t.head()?.index().relationship_count();
        }
        if loaded_rows >= REOPEN_AFTER_ROWS {
            drop(std::mem::replace(&mut db.store, Arc::new(MemoryStore::new())));
            // Nothing else holds the store after the load (its threads are scoped); were that to
            // change, the cache would only stay full: tests (debug builds) say so.
            debug_assert_eq!(Arc::strong_count(&sled), 1, "the store is still shared after the load");
            db.store = match Arc::try_unwrap(sled) {
                Ok(sled) => Arc::new(sled.reopened()?),
                Err(shared) => shared,
            };
            if let Some(release) = RELEASE_HOOK.get() {
                release();
            }
        }
        Ok(db)
    }

    /// A database that lives only in memory (tests, ephemeral uses).
    pub fn in_memory() -> Database {
        Database {
            store: Arc::new(MemoryStore::new()),
            conditions: Conditions::new(),
            key: CursorKey::random(),
            limits: Limits::default(),
            tenants: RwLock::new(HashMap::new()),
            admin: Mutex::new(()),
            tokens: RwLock::new(HashMap::new()),
        }
    }

    /// A database over any store: loads every tenant's head state from it. The cursor signing
    /// key is kept in the store, so cursors stay valid across restarts.
    pub fn with_store(store: Arc<dyn Datastore>, limits: Limits) -> Result<Database, DbError> {
        let key = match store.meta_get("cursor_key")? {
            Some(bytes) if bytes.len() == 32 => {
                let mut k = [0u8; 32];
                k.copy_from_slice(&bytes);
                CursorKey::from_bytes(k)
            }
            _ => {
                let k = CursorKey::random();
                store.meta_set("cursor_key", &k.bytes())?;
                k
            }
        };
        let db = Database {
            store,
            conditions: Conditions::new(),
            key,
            limits,
            tenants: RwLock::new(HashMap::new()),
            admin: Mutex::new(()),
            tokens: RwLock::new(HashMap::new()),
        };
        let mut loaded = HashMap::new();
        for name in db.store.tenants()? {
            let head = db.store.head(&name)?;
            let oldest = db.store.oldest_readable(&name)?;
            let view = db.build_view(&name, head)?;
            loaded.insert(name.clone(), Arc::new(Tenant::new(&name, view, oldest, &db.conditions, &db.key)));
        }
        *db.tenants.write().map_err(poisoned)? = loaded;
        Ok(db)
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn conditions(&self) -> &Conditions {
        &self.conditions
    }

    fn compile(&self, text: &str) -> Result<CompiledSchema, DbError> {
        schema::compile_text(text, &self.conditions).map_err(|d| {
            DbError::InvalidSchema(schema::diagnostic::render_all(&d, "schema", text).trim_end().to_string())
        })
    }

    fn tenant(&self, name: &str) -> Result<Arc<Tenant>, DbError> {
        self.tenants
            .read()
            .map_err(poisoned)?
            .get(name)
            .cloned()
            .ok_or_else(|| DbError::Store(StoreError::NoSuchTenant(name.to_string())))
    }

    pub fn create_tenant(&self, name: &str) -> Result<(), DbError> {
        let _admin = self.admin.lock().map_err(poisoned)?;
        if self.tenants.read().map_err(poisoned)?.len() >= self.limits.max_tenants {
            return Err(DbError::TooManyTenants(self.limits.max_tenants));
        }
        self.store.create_tenant(name)?;
        let view = self.empty_view();
        let tenant = Arc::new(Tenant::new(name, view, Revision::ZERO, &self.conditions, &self.key));
        self.tenants.write().map_err(poisoned)?.insert(name.to_string(), tenant);
        Ok(())
    }

    pub fn drop_tenant(&self, name: &str) -> Result<(), DbError> {
        let _admin = self.admin.lock().map_err(poisoned)?;
        // Wait for a write in flight to finish, so it cannot land in a dropped (or re-created)
        // tenant.
        let t = self.tenant(name)?;
        let _writer = t.writer.lock().map_err(poisoned)?;
        self.store.drop_tenant(name)?;
        self.tenants.write().map_err(poisoned)?.remove(name);
        self.tokens.write().map_err(poisoned)?.remove(name);
        Ok(())
    }

    pub fn tenants(&self) -> Result<Vec<String>, DbError> {
        let mut names: Vec<String> = self.tenants.read().map_err(poisoned)?.keys().cloned().collect();
        names.sort();
        Ok(names)
    }

    /// The head revision of a tenant.
    pub fn revision(&self, tenant: &str) -> Result<Revision, DbError> {
        Ok(self.tenant(tenant)?.head()?.revision())
    }

    /// The schema text in force at the head, if any.
    pub fn schema_text(&self, tenant: &str) -> Result<Option<String>, DbError> {
        Ok(self.tenant(tenant)?.head()?.schema_text().map(|t| t.to_string()))
    }

    /// Heap bytes of a tenant's index at the head, by part.
    pub fn index_memory(&self, tenant: &str) -> Result<Vec<(&'static str, usize)>, DbError> {
        Ok(self.tenant(tenant)?.head()?.index().memory().to_vec())
    }

    /// A database-wide setting (kept in the store, beside the data).
    pub fn setting(&self, key: &str) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self.store.meta_get(key)?)
    }

    /// Sets a database-wide setting, durably.
    pub fn set_setting(&self, key: &str, value: &[u8]) -> Result<(), DbError> {
        Ok(self.store.meta_set(key, value)?)
    }

    /// An opaque, signed consistency token for `revision` of `tenant` (a ZedToken).
    pub fn token(&self, tenant: &str, revision: Revision) -> String {
        if let Ok(tokens) = self.tokens.read()
            && let Some((r, text)) = tokens.get(tenant)
            && *r == revision
        {
            return text.to_string();
        }
        let text = self.key.seal(&crate::engine::cursor::Cursor {
            revision,
            now: crate::model::Timestamp(0),
            tenant: tenant.to_string(),
            query: token_query(),
            after: String::new(),
        });
        // Only a newer revision replaces an entry (readers at older ones do not thrash it); the
        // map holds one entry per tenant that ever asked (at most `max_tenants` and the dropped).
        if let Ok(mut tokens) = self.tokens.write() {
            match tokens.get_mut(tenant) {
                Some(e) if e.0 >= revision => {}
                Some(e) => *e = (revision, Arc::from(text.as_str())),
                None => {
                    tokens.insert(tenant.to_string(), (revision, Arc::from(text.as_str())));
                }
            }
        }
        text
    }

    /// The revision a token of [`Database::token`] names; an altered token, or one of another
    /// tenant, is `INVALID_ZEDTOKEN`.
    pub fn token_revision(&self, tenant: &str, token: &str) -> Result<Revision, DbError> {
        self.key
            .open(token, token_query(), tenant)
            .map(|c| c.revision)
            .map_err(|e| DbError::InvalidToken(e.to_string()))
    }

    /// A cursor continuing a relationship read (ReadRelationships, export) after the
    /// relationship with store key `after`: sealed like a lookup cursor, it names the tenant, the
    /// revision the read is pinned to, and the read's `query` ([`read_query`]).
    pub fn read_cursor(&self, tenant: &str, revision: Revision, query: [u8; 16], after: &str) -> String {
        self.key.seal(&crate::engine::cursor::Cursor {
            revision,
            now: crate::model::Timestamp(0),
            tenant: tenant.to_string(),
            query,
            after: after.to_string(),
        })
    }

    /// The revision and store key a cursor of [`Database::read_cursor`] continues from; one that
    /// was altered, belongs to another tenant or continues another query is `INVALID_CURSOR`.
    pub fn open_read_cursor(&self, tenant: &str, query: [u8; 16], cursor: &str) -> Result<(Revision, String), DbError> {
        let c = self.key.open(cursor, query, tenant).map_err(crate::engine::EvalError::Cursor)?;
        Ok((c.revision, c.after))
    }

    /// Counters of a tenant's lookup cache.
    pub fn cache_stats(&self, tenant: &str) -> Result<CacheStats, DbError> {
        Ok(self.tenant(tenant)?.scope.cache().stats())
    }

    /// Bytes of heap the tenant's index holds at its head (what serves Checks and lookups).
    pub fn index_bytes(&self, tenant: &str) -> Result<usize, DbError> {
        Ok(self.tenant(tenant)?.head()?.index().heap_bytes())
    }

    /// Closes the database: every acknowledged write is already durable; this flushes the store
    /// once more (reporting a failure, which a drop cannot) and drops the database, which
    /// releases the directory (sled's lock) before returning, so it can be opened again at
    /// once.
    pub fn close(self) -> Result<(), DbError> {
        self.store.close()?;
        drop(self);
        Ok(())
    }
}
