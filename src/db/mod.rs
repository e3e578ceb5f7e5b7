//! The embedded database API: open a directory, create and drop tenants, write validated batches,
//! read relationships, and evaluate Check, CheckBulk, LookupResources, LookupSubjects and Expand
//! at a consistency level. The server and the CLI use only this.
//!
//! ```
//! use pemba::db::{Consistency, Database, WriteRequest};
//! use pemba::engine::{CheckRequest, Decision};
//! use pemba::model::{Relationship, SubjectRef, ObjectRef};
//! use pemba::store::Mutation;
//!
//! let dir = std::env::temp_dir().join(format!("pemba-doc-{}", std::process::id()));
//! let db = Database::open(&dir)?;
//! db.create_tenant("acme")?;
//! db.write_schema("acme", "definition user {}\ndefinition doc {\n  relation viewer: user\n  permission view = viewer\n}")?;
//! let rev = db.write("acme", WriteRequest::new(vec![Mutation::Touch(Relationship::parse("doc:readme#viewer@user:ann")?)]))?;
//! let req = CheckRequest {
//!     resource: ObjectRef::new("doc", "readme"),
//!     permission: "view".into(),
//!     subject: SubjectRef::parse("user:ann")?,
//!     context: Default::default(),
//! };
//! let (answer, at) = db.check("acme", Consistency::AtLeastAsFresh(rev), &req)?;
//! assert_eq!(answer, Decision::Has);
//! assert_eq!(at, rev);
//! # drop(db);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Architecture invariant: every write is validated against the schema here before it reaches
//! the store; evaluation reads an immutable `Arc<IndexGraph>` (the head's relationships and
//! attributes) taken under a short read lock, so a long evaluation never blocks a writer.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Map, Value, json};

use crate::conditions::Conditions;
use crate::engine::cursor::CursorKey;
use crate::engine::expand::{self, ExpandTree};
use crate::engine::lookup::{
    self, LookupResourcesRequest, LookupSubjectsRequest, Page, Reader, ResourceResult, ResultCache, Snapshots,
    SubjectResult,
};
use crate::engine::{self, CheckRequest, Decision, Env, EvalError, Relations, Tuples};
use crate::index::IndexGraph;
use crate::model::{MAX_CONTEXT_LEN, ObjectRef, Relationship, Timestamp};
use crate::schema::{self, CompiledSchema};
use crate::store::{self, Change, Datastore, MemoryStore, Mutation, RelationshipFilter, SledStore, StoreError};

/// Explicit limits of one database.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Mutations in one write (relationship creates, touches and deletes, deletes by filter,
    /// attribute sets and deletes).
    pub max_relationships_per_write: usize,
    /// Bytes of caveat context on one relationship (and in one request).
    pub max_context_bytes: usize,
    /// Largest page for lookups and relationship reads.
    pub max_page_size: usize,
    pub max_tenants: usize,
    /// Items in one CheckBulk.
    pub max_bulk_checks: usize,
    /// How long old revisions, expired relationships and the changelog are kept.
    pub window: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_relationships_per_write: 1000,
            max_context_bytes: MAX_CONTEXT_LEN,
            max_page_size: lookup::MAX_PAGE_SIZE,
            max_tenants: 1000,
            max_bulk_checks: 1000,
            window: store::DEFAULT_WINDOW,
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
    AtLeastAsFresh(u64),
    /// Exactly this revision, if it is inside the retention window.
    AtExactSnapshot(u64),
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
    pub mutations: Vec<Mutation>,
    pub preconditions: Vec<Precondition>,
}

impl WriteRequest {
    pub fn new(mutations: Vec<Mutation>) -> WriteRequest {
        WriteRequest { mutations, preconditions: Vec::new() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error("schema does not compile:\n{0}")]
    InvalidSchema(String),
    #[error("tenant `{0}` has no schema yet: write one first")]
    NoSchema(String),
    #[error("mutation {index} (`{item}`): {reason}")]
    InvalidMutation { index: usize, item: String, reason: String },
    #[error("the write has {count} mutations; the limit is {limit}")]
    TooManyMutations { count: usize, limit: usize },
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    #[error("schema change refused: {count} stored item(s) would no longer fit, first: {}", blockers.join("; "))]
    SchemaChangeBlocked { count: usize, blockers: Vec<String> },
    #[error("a schema change must be written alone, not with other mutations")]
    SchemaNotAlone,
    #[error("the database already holds {0} tenants, its limit")]
    TooManyTenants(usize),
    #[error("revision {requested} is newer than the head revision {head}")]
    FutureRevision { requested: u64, head: u64 },
    #[error("invalid page size {size}: pages hold 1 to {limit} items")]
    InvalidPageSize { size: usize, limit: usize },
    #[error("import line {line}: {reason}")]
    Import { line: usize, reason: String },
    #[error("i/o error: {0}")]
    Io(String),
    #[error("the write reached the store but its durability is unknown ({0}); read it back before retrying")]
    OutcomeUnknown(String),
    #[error("a bulk check holds {count} items; the limit is {limit}")]
    TooManyChecks { count: usize, limit: usize },
}

/// The state of a tenant that evaluation reads.
#[derive(Debug, Clone)]
struct State {
    revision: u64,
    schema: Option<CompiledSchema>,
    schema_text: Option<String>,
    /// Every relationship and attribute at `revision`: the fast evaluator's index, and the data
    /// the reference evaluator reads when the fast path hands it a Check.
    index: Arc<IndexGraph>,
    /// The reference evaluator's own relationship set at `revision`, built from the store on
    /// first use by the `*_reference` baselines (never by the serving path).
    reference: Arc<std::sync::OnceLock<Arc<Tuples>>>,
}

#[derive(Debug)]
struct Tenant {
    /// Held for the whole of a write: one writer per tenant.
    writer: Mutex<()>,
    state: RwLock<State>,
}

enum Backend {
    Sled(Arc<SledStore>),
    Memory(Arc<MemoryStore>),
}

impl Backend {
    fn store(&self) -> &dyn Datastore {
        match self {
            Backend::Sled(s) => s.as_ref(),
            Backend::Memory(m) => m.as_ref(),
        }
    }
}

pub struct Database {
    backend: Backend,
    conditions: Conditions,
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
    key: CursorKey,
    limits: Limits,
    /// LookupResources result sets, so later pages slice the first page's answer.
    lookups: ResultCache,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Database")
    }
}

fn lock_err<T>(_: T) -> DbError {
    DbError::Io("a lock was poisoned by a panicking thread".into())
}

impl Database {
    /// Opens (or creates) a durable database in `dir` and loads every tenant's head state.
    pub fn open(dir: &Path) -> Result<Database, DbError> {
        Self::open_with(dir, Limits::default())
    }

    pub fn open_with(dir: &Path, limits: Limits) -> Result<Database, DbError> {
        let sled = Arc::new(SledStore::open(dir)?);
        let key = match sled.meta_get("cursor_key")? {
            Some(bytes) if bytes.len() == 32 => {
                let mut k = [0u8; 32];
                k.copy_from_slice(&bytes);
                CursorKey::from_bytes(k)
            }
            _ => {
                let k = CursorKey::random();
                sled.meta_set("cursor_key", &k.bytes())?;
                k
            }
        };
        Self::load(Backend::Sled(sled), key, limits)
    }

    /// A database that lives only in memory (tests, ephemeral uses).
    pub fn in_memory() -> Database {
        Database {
            backend: Backend::Memory(Arc::new(MemoryStore::new())),
            conditions: Conditions::new(),
            tenants: RwLock::new(HashMap::new()),
            key: CursorKey::random(),
            limits: Limits::default(),
            lookups: ResultCache::default(),
        }
    }

    fn load(backend: Backend, key: CursorKey, limits: Limits) -> Result<Database, DbError> {
        let db = Database {
            backend,
            conditions: Conditions::new(),
            tenants: RwLock::new(HashMap::new()),
            key,
            limits,
            lookups: ResultCache::default(),
        };
        for name in db.store().tenants()? {
            let head = db.store().head(&name)?;
            let state = db.state_at(&name, head)?;
            db.tenants
                .write()
                .map_err(lock_err)?
                .insert(name, Arc::new(Tenant { writer: Mutex::new(()), state: RwLock::new(state) }));
        }
        Ok(db)
    }

    fn store(&self) -> &dyn Datastore {
        self.backend.store()
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn conditions(&self) -> &Conditions {
        &self.conditions
    }

    /// A tenant's state at a revision, from the store. The store reads and decodes rows on
    /// this thread while a second one builds the index from them, batch by batch; the batches
    /// come back to be freed by the thread that allocated them (freeing across threads makes
    /// the allocator the bottleneck: the build took about 1.6x as long).
    fn state_at(&self, tenant: &str, revision: u64) -> Result<State, DbError> {
        let (snap, index) = std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Relationship>>(16);
            let (done_tx, done_rx) = std::sync::mpsc::channel::<Vec<Relationship>>();
            let builder = scope.spawn(move || {
                let mut index = IndexGraph::new();
                for batch in rx {
                    for r in &batch {
                        index.insert(r);
                    }
                    // The reader may be gone (it only stops early on an error): then drop here.
                    let _ = done_tx.send(batch);
                }
                index
            });
            let snap = self.store().snapshot_streamed(tenant, revision, &mut |batch| {
                done_rx.try_iter().for_each(drop);
                // The builder only stops early by panicking; join reports that below.
                let _ = tx.send(batch);
            });
            drop(tx);
            let index = builder.join().map_err(|_| DbError::Io("building the index failed".into()));
            done_rx.try_iter().for_each(drop);
            (snap, index)
        });
        let snap = snap?;
        let mut index = index?;
        let schema = match &snap.schema {
            Some(text) => Some(self.compile(text)?),
            None => None,
        };
        for (o, a) in snap.attributes {
            index.set_attributes(o, a);
        }
        Ok(State {
            revision: snap.revision,
            schema,
            schema_text: snap.schema,
            index: Arc::new(index),
            reference: Arc::default(),
        })
    }

    fn compile(&self, text: &str) -> Result<CompiledSchema, DbError> {
        schema::compile_text(text, &self.conditions).map_err(|d| {
            DbError::InvalidSchema(schema::diagnostic::render_all(&d, "schema", text).trim_end().to_string())
        })
    }

    fn tenant(&self, name: &str) -> Result<Arc<Tenant>, DbError> {
        self.tenants
            .read()
            .map_err(lock_err)?
            .get(name)
            .cloned()
            .ok_or_else(|| DbError::Store(StoreError::NoSuchTenant(name.to_string())))
    }

    pub fn create_tenant(&self, name: &str) -> Result<(), DbError> {
        let mut tenants = self.tenants.write().map_err(lock_err)?;
        if tenants.len() >= self.limits.max_tenants {
            return Err(DbError::TooManyTenants(self.limits.max_tenants));
        }
        self.store().create_tenant(name)?;
        let state = State {
            revision: 0,
            schema: None,
            schema_text: None,
            index: Arc::new(IndexGraph::new()),
            reference: Arc::default(),
        };
        tenants.insert(name.to_string(), Arc::new(Tenant { writer: Mutex::new(()), state: RwLock::new(state) }));
        Ok(())
    }

    pub fn drop_tenant(&self, name: &str) -> Result<(), DbError> {
        // Wait for a write in flight to finish, so it cannot land in a dropped (or re-created)
        // tenant.
        let t = self.tenant(name)?;
        let _writer = t.writer.lock().map_err(lock_err)?;
        let mut tenants = self.tenants.write().map_err(lock_err)?;
        self.store().drop_tenant(name)?;
        tenants.remove(name);
        Ok(())
    }

    pub fn tenants(&self) -> Result<Vec<String>, DbError> {
        let mut names: Vec<String> = self.tenants.read().map_err(lock_err)?.keys().cloned().collect();
        names.sort();
        Ok(names)
    }

    /// The head revision of a tenant.
    pub fn revision(&self, tenant: &str) -> Result<u64, DbError> {
        Ok(self.tenant(tenant)?.state.read().map_err(lock_err)?.revision)
    }

    /// The schema text in force at the head, if any.
    pub fn schema_text(&self, tenant: &str) -> Result<Option<String>, DbError> {
        Ok(self.tenant(tenant)?.state.read().map_err(lock_err)?.schema_text.clone())
    }

    /// Replaces the schema; refused if a stored relationship or attribute would no longer fit.
    pub fn write_schema(&self, tenant: &str, text: &str) -> Result<u64, DbError> {
        self.write(tenant, WriteRequest::new(vec![Mutation::SetSchema(text.to_string())]))
    }

    /// Validates and commits a batch; returns its revision once it is durable and visible.
    pub fn write(&self, tenant: &str, req: WriteRequest) -> Result<u64, DbError> {
        let t = self.tenant(tenant)?;
        let _writer = t.writer.lock().map_err(lock_err)?;
        let (schema, index) = {
            let s = t.state.read().map_err(lock_err)?;
            (s.schema.clone(), s.index.clone())
        };
        let new_schema = self.validate(tenant, &req, schema.as_ref(), &index)?;
        drop(index);
        let now = Timestamp::now();
        let (rev, changes) = match &self.backend {
            Backend::Sled(s) => {
                let (rev, changes, ticket) = s.apply(tenant, &req.mutations, now)?;
                if let Err(e) = s.wait_durable(ticket) {
                    // The batch is in the store but its durability is unknown: make memory agree
                    // with the store again before anything else reads or writes this tenant.
                    self.reload(tenant, &t)?;
                    return Err(DbError::OutcomeUnknown(e.to_string()));
                }
                (rev, changes)
            }
            Backend::Memory(m) => m.write(tenant, &req.mutations, now)?,
        };
        // The batch is durable: make it visible. When no reader holds the current index it is
        // changed in place; otherwise the next index is built from it by structural sharing (a
        // clone copies pointers to its parts; changing it copies only the tables and chunks
        // the batch touches), outside the lock. Either way the index, the revision and the
        // schema change together under one write lock, so no reader sees new data under an old
        // revision. Readers keep the old revision meanwhile; no other writer can run, this one
        // holds the writer lock.
        let publish = |s: &mut State, index: Option<Arc<IndexGraph>>, new_schema: Option<(CompiledSchema, String)>| {
            if let Some(index) = index {
                s.index = index;
            }
            s.revision = rev;
            if let Some((compiled, text)) = new_schema {
                s.schema = Some(compiled);
                s.schema_text = Some(text);
            }
            std::mem::take(&mut s.reference)
        };
        let mut new_schema = new_schema;
        let stale = {
            let mut s = t.state.write().map_err(lock_err)?;
            let schema_changes = new_schema.is_some();
            let in_place = Arc::get_mut(&mut s.index).map(|index| {
                if schema_changes {
                    // The evaluator's plan is for the old schema.
                    index.forget_plan();
                }
                apply_changes(index, &changes)
            });
            match in_place {
                Some(Ok(())) => Some(publish(&mut s, None, new_schema.take())),
                Some(Err(e)) => {
                    // The index is half changed: replace it from the store before any reader
                    // can see it (still under the lock).
                    let head = self.store().head(tenant)?;
                    *s = self.state_at(tenant, head)?;
                    return Err(e);
                }
                None => None,
            }
        };
        let stale = match stale {
            Some(stale) => stale,
            None => {
                let base = t.state.read().map_err(lock_err)?.index.clone();
                let mut index = (*base).clone();
                drop(base);
                if let Err(e) = apply_changes(&mut index, &changes) {
                    self.reload(tenant, &t)?;
                    return Err(e);
                }
                let mut s = t.state.write().map_err(lock_err)?;
                publish(&mut s, Some(Arc::new(index)), new_schema.take())
            }
        };
        // A reference set built for a baseline can hold millions of rows: free it off the
        // write path.
        if stale.get().is_some() {
            std::thread::spawn(move || drop(stale));
        }
        Ok(rev)
    }

    /// Replaces a tenant's in-memory state with the store's head.
    fn reload(&self, tenant: &str, t: &Tenant) -> Result<(), DbError> {
        let head = self.store().head(tenant)?;
        let state = self.state_at(tenant, head)?;
        *t.state.write().map_err(lock_err)? = state;
        Ok(())
    }

    /// Checks a batch against the head: limits, schema fit, preconditions. Returns the compiled
    /// new schema if the batch changes it.
    fn validate(
        &self,
        tenant: &str,
        req: &WriteRequest,
        schema: Option<&CompiledSchema>,
        index: &IndexGraph,
    ) -> Result<Option<(CompiledSchema, String)>, DbError> {
        let count = req.mutations.len();
        if count > self.limits.max_relationships_per_write {
            return Err(DbError::TooManyMutations { count, limit: self.limits.max_relationships_per_write });
        }
        if let Some(text) =
            req.mutations.iter().find_map(|m| if let Mutation::SetSchema(s) = m { Some(s) } else { None })
        {
            if req.mutations.len() != 1 || !req.preconditions.is_empty() {
                return Err(DbError::SchemaNotAlone);
            }
            let compiled = self.compile(text)?;
            let mut blockers = Vec::new();
            let mut count = 0;
            for r in index.relationships(None, None, None) {
                if let Err(e) = compiled.check_relationship(&r) {
                    count += 1;
                    if blockers.len() < 10 {
                        blockers.push(format!("relationship `{r}`: {e}"));
                    }
                }
            }
            for (o, attrs) in index.all_attributes() {
                if let Err(e) = check_attributes(&compiled, o, attrs) {
                    count += 1;
                    if blockers.len() < 10 {
                        blockers.push(format!("attributes of `{o}`: {e}"));
                    }
                }
            }
            if count > 0 {
                return Err(DbError::SchemaChangeBlocked { count, blockers });
            }
            return Ok(Some((compiled, text.clone())));
        }
        let schema = schema.ok_or_else(|| DbError::NoSchema(tenant.to_string()))?;
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
            }
        }
        for p in &req.preconditions {
            let (filter, must) = match p {
                Precondition::MustMatch(f) => (f, true),
                Precondition::MustNotMatch(f) => (f, false),
            };
            let now = Timestamp::now();
            let found = index
                .relationships(
                    filter.resource_type.as_deref(),
                    filter.resource_id.as_deref(),
                    filter.relation.as_deref(),
                )
                .any(|r| filter.matches(&r) && r.expiration.is_none_or(|e| e > now));
            if found != must {
                let word = if must { "no relationship matches" } else { "a relationship matches" };
                return Err(DbError::PreconditionFailed(format!("{word} {filter:?}")));
            }
        }
        Ok(None)
    }

    /// The reference evaluator's relationship set for a read at `consistency`: built from the
    /// store's rows at that revision (not from the index, so the baselines and the tests that
    /// compare against them share nothing with the fast path), kept with the head's state
    /// until the next write.
    fn read_reference(
        &self,
        tenant: &str,
        consistency: Consistency,
    ) -> Result<(u64, CompiledSchema, Arc<Tuples>), DbError> {
        let t = self.tenant(tenant)?;
        let (rev, schema, cell) = {
            let s = t.state.read().map_err(lock_err)?;
            (s.revision, s.schema.clone(), s.reference.clone())
        };
        let (rev, schema, cell) = match consistency {
            Consistency::AtLeastAsFresh(r) if r > rev => {
                return Err(DbError::FutureRevision { requested: r, head: rev });
            }
            Consistency::AtExactSnapshot(r) if r > rev => {
                return Err(DbError::FutureRevision { requested: r, head: rev });
            }
            Consistency::AtExactSnapshot(r) if r != rev => {
                let snap = self.store().snapshot(tenant, r)?;
                let schema = match &snap.schema {
                    Some(text) => self.compile(text)?,
                    None => return Err(DbError::NoSchema(tenant.to_string())),
                };
                (r, Some(schema), Arc::default())
            }
            _ => (rev, schema, cell),
        };
        let schema = schema.ok_or_else(|| DbError::NoSchema(tenant.to_string()))?;
        if let Some(t) = cell.get() {
            return Ok((rev, schema, t.clone()));
        }
        let tuples = Arc::new(self.tuples_at(tenant, rev)?);
        Ok((rev, schema, cell.get_or_init(|| tuples).clone()))
    }

    /// The reference evaluator's relationship set at a revision, from the store.
    fn tuples_at(&self, tenant: &str, revision: u64) -> Result<Tuples, DbError> {
        let snap = self.store().snapshot(tenant, revision)?;
        let mut tuples = Tuples::from_relationships(snap.relationships);
        for (o, a) in snap.attributes {
            tuples.set_attributes(o, a);
        }
        Ok(tuples)
    }

    fn read_state_indexed(
        &self,
        tenant: &str,
        consistency: Consistency,
    ) -> Result<(u64, CompiledSchema, Arc<IndexGraph>), DbError> {
        let t = self.tenant(tenant)?;
        let (rev, schema, index) = {
            let s = t.state.read().map_err(lock_err)?;
            (s.revision, s.schema.clone(), s.index.clone())
        };
        match consistency {
            Consistency::AtLeastAsFresh(r) if r > rev => Err(DbError::FutureRevision { requested: r, head: rev }),
            Consistency::AtExactSnapshot(r) if r != rev => {
                if r > rev {
                    return Err(DbError::FutureRevision { requested: r, head: rev });
                }
                let state = self.state_at(tenant, r)?;
                let schema = state.schema.ok_or_else(|| DbError::NoSchema(tenant.to_string()))?;
                Ok((r, schema, state.index))
            }
            _ => Ok((rev, schema.ok_or_else(|| DbError::NoSchema(tenant.to_string()))?, index)),
        }
    }

    pub fn check(
        &self,
        tenant: &str,
        consistency: Consistency,
        req: &CheckRequest,
    ) -> Result<(Decision, u64), DbError> {
        self.check_context(req)?;
        let (rev, schema, index) = self.read_state_indexed(tenant, consistency)?;
        let d = engine::check_fast(&schema, &*index, &index, &self.conditions, req, Env::new(Timestamp::now()))?;
        Ok((d, rev))
    }

    /// Check by the reference evaluator alone, without the index (the baseline the indexed
    /// Check is measured and tested against).
    pub fn check_reference(
        &self,
        tenant: &str,
        consistency: Consistency,
        req: &CheckRequest,
    ) -> Result<(Decision, u64), DbError> {
        self.check_context(req)?;
        let (rev, schema, tuples) = self.read_reference(tenant, consistency)?;
        Ok((engine::check(&schema, &*tuples, &self.conditions, req, Env::new(Timestamp::now()))?, rev))
    }

    /// Heap bytes of a tenant's index, by part.
    pub fn index_memory(&self, tenant: &str) -> Result<Vec<(&'static str, usize)>, DbError> {
        Ok(self.tenant(tenant)?.state.read().map_err(lock_err)?.index.memory().to_vec())
    }

    pub fn check_bulk(
        &self,
        tenant: &str,
        consistency: Consistency,
        reqs: &[CheckRequest],
    ) -> Result<(Vec<Result<Decision, EvalError>>, u64), DbError> {
        if reqs.len() > self.limits.max_bulk_checks {
            return Err(DbError::TooManyChecks { count: reqs.len(), limit: self.limits.max_bulk_checks });
        }
        for r in reqs {
            self.check_context(r)?;
        }
        let (rev, schema, index) = self.read_state_indexed(tenant, consistency)?;
        // One `now` for the whole batch.
        let env = Env::new(Timestamp::now());
        Ok((engine::check_bulk_fast(&schema, &*index, &index, &self.conditions, reqs, env), rev))
    }

    fn check_context(&self, req: &CheckRequest) -> Result<(), DbError> {
        self.context_size(&req.context)
    }

    fn context_size(&self, context: &Map<String, Value>) -> Result<(), DbError> {
        if context.is_empty() {
            return Ok(());
        }
        let size = Value::Object(context.clone()).to_string().len();
        if size > self.limits.max_context_bytes {
            return Err(DbError::Eval(EvalError::InvalidLimit(format!(
                "request context is {size} bytes; the limit is {}",
                self.limits.max_context_bytes
            ))));
        }
        Ok(())
    }

    fn page_size(&self, limit: Option<usize>) -> Result<(), DbError> {
        match limit {
            Some(n) if n == 0 || n > self.limits.max_page_size => {
                Err(DbError::InvalidPageSize { size: n, limit: self.limits.max_page_size })
            }
            _ => Ok(()),
        }
    }

    pub fn lookup_resources(
        &self,
        tenant: &str,
        consistency: Consistency,
        req: &LookupResourcesRequest,
    ) -> Result<Page<ResourceResult>, DbError> {
        let paged = req.cursor.is_some();
        self.with_lookup_reader(tenant, consistency, req.limit, &req.context, paged, true, |r| {
            lookup::lookup_resources(r, req, Timestamp::now())
        })
    }

    /// LookupResources by the reference evaluator alone, without the index (the baseline the
    /// fast path is measured and tested against).
    pub fn lookup_resources_reference(
        &self,
        tenant: &str,
        consistency: Consistency,
        req: &LookupResourcesRequest,
    ) -> Result<Page<ResourceResult>, DbError> {
        let paged = req.cursor.is_some();
        self.with_lookup_reader(tenant, consistency, req.limit, &req.context, paged, false, |r| {
            lookup::lookup_resources(r, req, Timestamp::now())
        })
    }

    pub fn lookup_subjects(
        &self,
        tenant: &str,
        consistency: Consistency,
        req: &LookupSubjectsRequest,
    ) -> Result<Page<SubjectResult>, DbError> {
        let paged = req.cursor.is_some();
        self.with_lookup_reader(tenant, consistency, req.limit, &req.context, paged, true, |r| {
            lookup::lookup_subjects(r, req, Timestamp::now())
        })
    }

    /// Checks a lookup's page size and context, and runs it on the tenant's head (a cursor then
    /// picks the revision it pinned; older revisions come from the store).
    #[allow(clippy::too_many_arguments)]
    fn with_lookup_reader<T>(
        &self,
        tenant: &str,
        consistency: Consistency,
        limit: Option<usize>,
        context: &Map<String, Value>,
        paged: bool,
        use_index: bool,
        run: impl FnOnce(&Reader<'_>) -> Result<T, EvalError>,
    ) -> Result<T, DbError> {
        self.page_size(limit)?;
        self.context_size(context)?;
        let consistency = if paged { Consistency::MinimizeLatency } else { consistency };
        let (rev, schema, head, index): (u64, CompiledSchema, Arc<dyn Relations>, _) = if use_index {
            let (rev, schema, index) = self.read_state_indexed(tenant, consistency)?;
            (rev, schema, index.clone(), Some(index))
        } else {
            let (rev, schema, tuples) = self.read_reference(tenant, consistency)?;
            (rev, schema, tuples, None)
        };
        let snaps = TenantSnapshots { db: self, tenant, head: (rev, head), reference: !use_index };
        let reader = Reader {
            schema: &schema,
            conditions: &self.conditions,
            history: &snaps,
            key: &self.key,
            tenant,
            cache: Some(&self.lookups),
            index: index.as_deref().map(|ix| (rev, ix)),
        };
        Ok(run(&reader)?)
    }

    pub fn expand(
        &self,
        tenant: &str,
        consistency: Consistency,
        object: &ObjectRef,
        permission: &str,
    ) -> Result<(ExpandTree, u64), DbError> {
        let (rev, schema, index) = self.read_state_indexed(tenant, consistency)?;
        Ok((expand::expand(&schema, &*index, object, permission, Env::new(Timestamp::now()))?, rev))
    }

    /// Relationships matching a filter, in key order, a page at a time: pass back the returned
    /// key of the last one as `after`.
    pub fn read_relationships(
        &self,
        tenant: &str,
        consistency: Consistency,
        filter: &RelationshipFilter,
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<Relationship>, u64), DbError> {
        self.page_size(Some(limit))?;
        let t = self.tenant(tenant)?;
        let head = t.state.read().map_err(lock_err)?.revision;
        let rev = match consistency {
            Consistency::AtExactSnapshot(r) | Consistency::AtLeastAsFresh(r) if r > head => {
                return Err(DbError::FutureRevision { requested: r, head });
            }
            Consistency::AtExactSnapshot(r) => r,
            _ => head,
        };
        // Expired relationships do not exist for readers, even before garbage collection removes
        // them: skip them and keep reading until the page is full or the data ends.
        let now = Timestamp::now();
        let mut out = Vec::new();
        let mut cursor = after.map(str::to_string);
        loop {
            let page = self.store().read_relationships(tenant, rev, filter, cursor.as_deref(), limit)?;
            let full = page.len() == limit;
            cursor = page.last().map(store::relationship_key);
            out.extend(page.into_iter().filter(|r| r.expiration.is_none_or(|e| e > now)));
            if out.len() >= limit || !full {
                out.truncate(limit);
                return Ok((out, rev));
            }
        }
    }

    /// Committed batches after `revision` (for Watch and for following replicas).
    pub fn changes_since(&self, tenant: &str, revision: u64) -> Result<Vec<(u64, Vec<Change>)>, DbError> {
        // Only what is visible: a batch applied to the store but not yet flushed is not reported.
        let head = self.revision(tenant)?;
        let mut changes = self.store().changes_since(tenant, revision)?;
        changes.retain(|(r, _)| *r <= head);
        Ok(changes)
    }

    /// Drops what fell out of the retention window; returns the oldest readable revision.
    pub fn collect_garbage(&self, tenant: &str) -> Result<u64, DbError> {
        let t = self.tenant(tenant)?;
        let _writer = t.writer.lock().map_err(lock_err)?;
        Ok(self.store().collect_garbage(tenant, Timestamp::now(), self.limits.window)?)
    }

    /// Writes the tenant's schema, relationships and attributes at the head as JSON lines.
    pub fn export(&self, tenant: &str, out: &mut dyn Write) -> Result<u64, DbError> {
        let t = self.tenant(tenant)?;
        let (rev, text, index) = {
            let s = t.state.read().map_err(lock_err)?;
            (s.revision, s.schema_text.clone(), s.index.clone())
        };
        let io = |e: std::io::Error| DbError::Io(e.to_string());
        writeln!(out, "{}", json!({"revision": rev, "schema": text})).map_err(io)?;
        for r in index.relationships(None, None, None) {
            writeln!(out, "{}", json!({"relationship": r.to_string()})).map_err(io)?;
        }
        for (o, a) in index.all_attributes() {
            writeln!(out, "{}", json!({"object": o.to_string(), "attributes": a})).map_err(io)?;
        }
        Ok(rev)
    }

    /// Reads an export into a tenant (schema first, then relationships and attributes in
    /// batches of the write limit); returns the last revision written.
    pub fn import(&self, tenant: &str, input: &mut dyn BufRead) -> Result<u64, DbError> {
        let mut rev = self.revision(tenant)?;
        let mut batch = Vec::new();
        let flush = |batch: &mut Vec<Mutation>, rev: &mut u64| -> Result<(), DbError> {
            if !batch.is_empty() {
                *rev = self.write(tenant, WriteRequest::new(std::mem::take(batch)))?;
            }
            Ok(())
        };
        for (i, line) in input.lines().enumerate() {
            let line = line.map_err(|e| DbError::Io(e.to_string()))?;
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

/// Checks attribute values against the type's declarations.
fn check_attributes(schema: &CompiledSchema, o: &ObjectRef, attrs: &Map<String, Value>) -> Result<(), String> {
    let def = schema.definition(&o.ty).ok_or_else(|| format!("unknown object type `{}`", o.ty))?;
    for (k, v) in attrs {
        let ty = def.attributes.get(k).ok_or_else(|| format!("type `{}` declares no attribute `{k}`", o.ty))?;
        Conditions::check_value(v, ty).map_err(|e| format!("attribute `{k}` is not a valid {ty}: {e}"))?;
    }
    Ok(())
}

fn apply_changes(index: &mut IndexGraph, changes: &[Change]) -> Result<(), DbError> {
    for c in changes {
        match c {
            Change::Upsert(r) => {
                index.upsert(&r.to_relationship()?);
            }
            Change::Delete(r) => {
                index.remove(&r.to_relationship()?);
            }
            Change::SetAttributes { object, attributes } => {
                index.set_attributes(store::parse_object_key(object)?, attributes.clone())
            }
            Change::DeleteAttributes { object } => {
                index.remove_attributes(&store::parse_object_key(object)?);
            }
            Change::Schema(_) => {}
        }
    }
    Ok(())
}

/// A tenant's revisions as lookups see them: the head in memory, older ones from the store.
struct TenantSnapshots<'a> {
    db: &'a Database,
    tenant: &'a str,
    head: (u64, Arc<dyn Relations>),
    /// Older revisions as the reference's relationship set (the baselines) rather than an index.
    reference: bool,
}

impl Snapshots for TenantSnapshots<'_> {
    fn head(&self) -> (u64, Arc<dyn Relations>) {
        self.head.clone()
    }

    fn at(&self, revision: u64) -> Result<Arc<dyn Relations>, EvalError> {
        if revision == self.head.0 {
            return Ok(self.head.1.clone());
        }
        if self.reference {
            let tuples = self.db.tuples_at(self.tenant, revision).map_err(|_| EvalError::RevisionGone(revision))?;
            return Ok(Arc::new(tuples));
        }
        let state = self.db.state_at(self.tenant, revision).map_err(|_| EvalError::RevisionGone(revision))?;
        Ok(state.index)
    }
}
