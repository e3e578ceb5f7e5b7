//! The embedded `Database` over an instrumented store: per-tenant state (a tenant being created
//! does not stall another's reads; one tenant's lookups do not evict another's cache), reads at
//! older revisions without rebuilding the index each time, and errors with stable codes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pemba::db::{Consistency, Database, DbError, ErrorClass, ErrorCode, Limits, WriteRequest};
use pemba::engine::lookup::LookupResourcesRequest;
use pemba::engine::{CheckRequest, Decision};
use pemba::model::{ObjectRef, Relationship, Revision, SubjectRef, Timestamp};
use pemba::store::{Commit, Datastore, MemoryStore, Mutation, RelationshipFilter, StoreError, TenantSnapshot};
use serde_json::Map;

/// A memory store that counts the whole-tenant reads (index builds) and can hold a
/// `create_tenant` call inside the store until the test lets it go.
#[derive(Default)]
struct Hooked {
    inner: MemoryStore,
    snapshots: AtomicUsize,
    hold_creates: AtomicBool,
    /// Told when a held `create_tenant` is inside the store; waits for the release.
    held: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
    /// The next write is applied but reported as of unknown outcome.
    unknown_next_write: AtomicBool,
    /// The next whole-tenant read fails (a reload after the unknown outcome, say).
    fail_next_snapshot: AtomicBool,
}

impl Datastore for Hooked {
    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.meta_get(key)
    }
    fn meta_set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.inner.meta_set(key, value)
    }
    fn create_tenant(&self, name: &str) -> Result<(), StoreError> {
        if self.hold_creates.load(Ordering::SeqCst) {
            let (inside, release) = self.held.lock().unwrap().take().unwrap();
            inside.send(()).unwrap();
            release.recv_timeout(Duration::from_secs(30)).unwrap();
        }
        self.inner.create_tenant(name)
    }
    fn drop_tenant(&self, name: &str) -> Result<(), StoreError> {
        self.inner.drop_tenant(name)
    }
    fn tenants(&self) -> Result<Vec<String>, StoreError> {
        self.inner.tenants()
    }
    fn head(&self, tenant: &str) -> Result<Revision, StoreError> {
        self.inner.head(tenant)
    }
    fn write(&self, tenant: &str, batch: &[Mutation], now: Timestamp) -> Result<Commit, StoreError> {
        let commit = self.inner.write(tenant, batch, now)?;
        if self.unknown_next_write.swap(false, Ordering::SeqCst) {
            return Err(StoreError::OutcomeUnknown("the test's flush failed".into()));
        }
        Ok(commit)
    }
    fn snapshot(&self, tenant: &str, revision: Revision) -> Result<TenantSnapshot, StoreError> {
        if self.fail_next_snapshot.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the test's disk is gone".into()));
        }
        self.snapshots.fetch_add(1, Ordering::SeqCst);
        self.inner.snapshot(tenant, revision)
    }
    fn read_relationships(
        &self,
        tenant: &str,
        revision: Revision,
        filter: &RelationshipFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Relationship>, StoreError> {
        self.inner.read_relationships(tenant, revision, filter, after, limit)
    }
    fn changes_after(&self, tenant: &str, after: Revision, limit: usize) -> Result<Vec<Commit>, StoreError> {
        self.inner.changes_after(tenant, after, limit)
    }
    fn collect_garbage(&self, tenant: &str, now: Timestamp, window: Duration) -> Result<Revision, StoreError> {
        self.inner.collect_garbage(tenant, now, window)
    }
    fn oldest_readable(&self, tenant: &str) -> Result<Revision, StoreError> {
        self.inner.oldest_readable(tenant)
    }
}

const SCHEMA: &str = "definition user {}\ndefinition doc {\n  relation viewer: user\n  permission view = viewer\n}";

fn open(limits: Limits) -> (Arc<Hooked>, Database) {
    let store = Arc::new(Hooked::default());
    let db = Database::with_store(store.clone(), limits).unwrap();
    (store, db)
}

fn tenant_with_docs(db: &Database, tenant: &str, docs: usize) -> Revision {
    db.create_tenant(tenant).unwrap();
    db.write_schema(tenant, SCHEMA).unwrap();
    let rels = (0..docs).map(|i| Mutation::Touch(Relationship::parse(&format!("doc:d{i}#viewer@user:ann")).unwrap()));
    db.write(tenant, WriteRequest::new(rels.collect())).unwrap()
}

fn view(doc: &str, user: &str) -> CheckRequest {
    CheckRequest {
        resource: ObjectRef::new("doc", doc),
        permission: "view".into(),
        subject: SubjectRef::parse(&format!("user:{user}")).unwrap(),
        context: Map::new(),
    }
}

fn lookup(user: &str, limit: usize) -> LookupResourcesRequest {
    LookupResourcesRequest {
        resource_type: "doc".into(),
        permission: "view".into(),
        subject: SubjectRef::parse(&format!("user:{user}")).unwrap(),
        context: Map::new(),
        limit: Some(limit),
        cursor: None,
    }
}

/// Creating a tenant waits on the store (an fsync in sled); meanwhile another tenant's Checks
/// complete. (Tenant creation held the lock of every tenant's map across the store call.)
#[test]
fn a_check_of_one_tenant_completes_while_another_tenant_is_created() {
    let (store, db) = open(Limits::default());
    tenant_with_docs(&db, "b", 1);
    let (inside_tx, inside_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    *store.held.lock().unwrap() = Some((inside_tx, release_rx));
    store.hold_creates.store(true, Ordering::SeqCst);
    std::thread::scope(|scope| {
        let creating = scope.spawn(|| db.create_tenant("a"));
        inside_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        // `create_tenant("a")` is now inside the store. A Check of `b` must not wait for it.
        let (done_tx, done_rx) = mpsc::channel();
        let db = &db;
        scope.spawn(move || done_tx.send(db.check("b", Consistency::FullyConsistent, &view("d0", "ann"))).unwrap());
        let answer = done_rx.recv_timeout(Duration::from_secs(10));
        release_tx.send(()).unwrap();
        assert_eq!(answer.expect("the Check of `b` waited for `a`'s creation").unwrap().0, Decision::Has);
        creating.join().unwrap().unwrap();
    });
    assert_eq!(db.tenants().unwrap(), ["a", "b"]);
}

/// Each tenant has its own lookup cache: a paged lookup of `b` finds its first page's
/// candidates after 100 lookups of `a`. (One 16-entry cache served every tenant.)
#[test]
fn a_tenants_cached_lookup_survives_100_lookups_of_another_tenant() {
    let (_, db) = open(Limits::default());
    tenant_with_docs(&db, "a", 3);
    tenant_with_docs(&db, "b", 3);
    let mut req = lookup("ann", 1);
    let first = db.lookup_resources("b", Consistency::FullyConsistent, &req).unwrap();
    for i in 0..100 {
        // Distinct queries (a new user each), each paged past its first page.
        let user = format!("u{i}");
        db.write(
            "a",
            WriteRequest::new(vec![
                Mutation::Touch(Relationship::parse(&format!("doc:d0#viewer@user:{user}")).unwrap()),
                Mutation::Touch(Relationship::parse(&format!("doc:d1#viewer@user:{user}")).unwrap()),
            ]),
        )
        .unwrap();
        let mut other = lookup(&user, 1);
        other.cursor = db.lookup_resources("a", Consistency::FullyConsistent, &other).unwrap().cursor;
        assert_eq!(db.lookup_resources("a", Consistency::FullyConsistent, &other).unwrap().items.len(), 1);
    }
    req.cursor = first.cursor;
    let second = db.lookup_resources("b", Consistency::FullyConsistent, &req).unwrap();
    assert_eq!(second.items.len(), 1);
    let stats = db.cache_stats("b").unwrap();
    assert_eq!((stats.entries, stats.hits, stats.misses), (1, 1, 0), "{stats:?}");
    let a = db.cache_stats("a").unwrap();
    assert!(a.entries <= pemba::query::LookupCache::ENTRIES && a.hits == 100, "{a:?}");
}

/// An exact-snapshot read at an older revision builds that revision's index from the store at
/// most once, even when asked by many threads at once; recent revisions and later pages of a
/// lookup need no build. (Every such read rebuilt the whole index.)
#[test]
fn an_older_revision_is_built_at_most_once() {
    let limits = Limits { recent_views: 2, ..Limits::default() };
    let (store, db) = open(limits);
    let old = tenant_with_docs(&db, "t", 3);
    let mut revs = vec![old];
    for i in 0..5 {
        let r = Relationship::parse(&format!("doc:e{i}#viewer@user:ann")).unwrap();
        revs.push(db.write("t", WriteRequest::new(vec![Mutation::Touch(r)])).unwrap());
    }
    let head = *revs.last().unwrap();
    let builds = || store.snapshots.load(Ordering::SeqCst);
    let before = builds();
    // The two revisions before the head are kept since their writes.
    for r in [head.back(1), head.back(2), head] {
        db.check("t", Consistency::AtExactSnapshot(r), &view("e3", "ann")).unwrap();
    }
    assert_eq!(builds(), before);
    // An older one is built once, by one of four threads asking together.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let (d, at) = db.check("t", Consistency::AtExactSnapshot(old), &view("e0", "ann")).unwrap();
                assert_eq!((d, at), (Decision::No, old));
            });
        }
    });
    for _ in 0..3 {
        assert_eq!(db.check("t", Consistency::AtExactSnapshot(old), &view("d0", "ann")).unwrap().0, Decision::Has);
    }
    assert_eq!(builds(), before + 1);
    // A lookup's later pages read the first page's revision after writes moved the head on,
    // from the view its cache entry keeps.
    let mut req = lookup("ann", 2);
    let first = db.lookup_resources("t", Consistency::FullyConsistent, &req).unwrap();
    for i in 0..5 {
        let r = Relationship::parse(&format!("doc:f{i}#viewer@user:ann")).unwrap();
        db.write("t", WriteRequest::new(vec![Mutation::Touch(r)])).unwrap();
    }
    let mut items = first.items.clone();
    req.cursor = first.cursor;
    while req.cursor.is_some() {
        let page = db.lookup_resources("t", Consistency::FullyConsistent, &req).unwrap();
        assert_eq!(page.revision, first.revision);
        items.extend(page.items);
        req.cursor = page.cursor;
    }
    assert_eq!(items.len(), 8);
    assert_eq!(builds(), before + 1);
}

/// A request context over the limit is named as such. (It was reported as "invalid page
/// size".)
#[test]
fn a_too_large_request_context_is_named_as_such() {
    let (_, db) = open(Limits::default());
    tenant_with_docs(&db, "t", 1);
    let mut req = view("d0", "ann");
    req.context.insert("blob".into(), serde_json::Value::String("x".repeat(70_000)));
    let err = db.check("t", Consistency::FullyConsistent, &req).unwrap_err();
    assert!(matches!(err, DbError::ContextTooLarge { limit: 65536, .. }), "{err:?}");
    assert_eq!(err.code(), ErrorCode::ContextTooLarge);
    assert_eq!(err.class(), ErrorClass::ResourceExhausted);
    assert_eq!(err.to_string(), "the request context is 70011 bytes of JSON; the limit is 65536");
    let mut page = lookup("ann", 1);
    page.context = req.context.clone();
    assert_eq!(
        db.lookup_resources("t", Consistency::FullyConsistent, &page).unwrap_err().code(),
        ErrorCode::ContextTooLarge
    );
}

/// The fast path keeps the evaluation limits: a Check reading more edges than `max_work` is a
/// work-limit error, and one past its deadline a deadline error (the point evaluator starts
/// its clock at its first deadline test, after 1,024 steps, so this one reaches it); within
/// them the same Check is answered.
#[test]
fn the_evaluation_limits_hold_on_the_fast_path() {
    use pemba::engine::{EvalError, Limits as EvalLimits};
    let schema = "definition user {}\ndefinition group {\n  relation member: user\n}\n\
                  definition doc {\n  relation viewer: group#member\n  permission view = viewer\n}";
    let limits = |evaluation: EvalLimits| Limits { evaluation, ..Limits::default() };
    let cases = [
        (EvalLimits { max_work: 1000, ..EvalLimits::default() }, Some(EvalError::WorkLimit(1000))),
        (EvalLimits { deadline: Duration::ZERO, ..EvalLimits::default() }, Some(EvalError::Deadline(Duration::ZERO))),
        (EvalLimits::default(), None),
    ];
    for (evaluation, want) in cases {
        let (_, db) = open(limits(evaluation));
        db.create_tenant("t").unwrap();
        db.write_schema("t", schema).unwrap();
        for part in 0..3 {
            let rels = (0..1000).map(|i| {
                let text = format!("doc:d#viewer@group:g{}#member", part * 1000 + i);
                Mutation::Touch(Relationship::parse(&text).unwrap())
            });
            db.write("t", WriteRequest::new(rels.collect())).unwrap();
        }
        db.write(
            "t",
            WriteRequest::new(vec![Mutation::Touch(Relationship::parse("group:g2999#member@user:ann").unwrap())]),
        )
        .unwrap();
        let got = db.check("t", Consistency::FullyConsistent, &view("d", "ann"));
        match want {
            Some(e) => assert!(matches!(&got, Err(DbError::Eval(x)) if *x == e), "{got:?}"),
            None => assert_eq!(got.unwrap().0, Decision::Has),
        }
    }
}

/// Every error kind has a stable code, each different, each documented in README.md, with the
/// class a transport maps to its status.
#[test]
fn every_error_code_is_distinct_and_documented() {
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for code in ErrorCode::ALL {
        assert!(seen.insert(code.as_str()), "{code} twice");
        assert!(readme.contains(&format!("`{code}`")), "README.md does not document `{code}`");
    }
    let (_, db) = open(Limits::default());
    let missing = db.check("nobody", Consistency::FullyConsistent, &view("d0", "ann")).unwrap_err();
    assert_eq!((missing.code(), missing.class()), (ErrorCode::TenantNotFound, ErrorClass::NotFound));
    tenant_with_docs(&db, "t", 1);
    let unknown = db
        .check("t", Consistency::FullyConsistent, &CheckRequest { permission: "edit".into(), ..view("d0", "ann") })
        .unwrap_err();
    assert_eq!((unknown.code(), unknown.class()), (ErrorCode::UnknownMember, ErrorClass::FailedPrecondition));
    let future = db.check("t", Consistency::AtLeastAsFresh(Revision(99)), &view("d0", "ann")).unwrap_err();
    assert_eq!((future.code(), future.class()), (ErrorCode::FutureRevision, ErrorClass::OutOfRange));
    let exists = db.create_tenant("t").unwrap_err();
    assert_eq!((exists.code(), exists.class()), (ErrorCode::TenantExists, ErrorClass::AlreadyExists));
    let r = Relationship::parse("doc:d0#viewer@user:ann").unwrap();
    let again = db.write("t", WriteRequest::new(vec![Mutation::Create(r)])).unwrap_err();
    assert_eq!((again.code(), again.class()), (ErrorCode::RelationshipExists, ErrorClass::AlreadyExists));
    assert!(!again.is_retryable());
    assert!(DbError::Store(StoreError::Unavailable("down".into())).is_retryable());
}

/// An import whose input fails is an I/O error naming what was being read. (`DbError::Io` also
/// carried poisoned locks, a failed index build and benchmark mismatches; those are `INTERNAL`
/// now, or the benchmark's own errors.)
#[test]
fn a_failing_import_reader_is_an_io_error_naming_the_line() {
    struct Failing;
    impl std::io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk gone"))
        }
    }
    let (_, db) = open(Limits::default());
    let before = tenant_with_docs(&db, "t", 1);
    let err = db.import("t", &mut std::io::BufReader::new(Failing)).unwrap_err();
    assert_eq!((err.code(), err.class()), (ErrorCode::Io, ErrorClass::Unavailable));
    assert_eq!(err.to_string(), "reading import line 1: disk gone");
    assert_eq!(db.revision("t").unwrap(), before);
}

/// The per-tenant relationship quota refuses a write that could pass it (QUOTA_EXCEEDED,
/// resource exhausted) and changes nothing; re-touching held relationships and deleting still
/// work, and another tenant has its own quota. The index-memory quota refuses growth once past.
#[test]
fn tenant_quotas_refuse_writes_past_them() {
    let rel = |s: &str| Relationship::parse(s).unwrap();
    let (_, db) = open(Limits { max_relationships_per_tenant: 5, ..Limits::default() });
    let rev = tenant_with_docs(&db, "acme", 5);
    let err = db.write("acme", WriteRequest::new(vec![Mutation::Touch(rel("doc:d9#viewer@user:bob"))])).unwrap_err();
    assert_eq!(err.code(), ErrorCode::QuotaExceeded);
    assert_eq!(err.class(), ErrorClass::ResourceExhausted);
    assert!(err.to_string().contains("acme") && err.to_string().contains("quota is 5"), "{err}");
    assert_eq!(db.revision("acme").unwrap(), rev, "nothing was written");
    // Touching what is held adds nothing; a delete frees room for a create.
    db.write("acme", WriteRequest::new(vec![Mutation::Touch(rel("doc:d0#viewer@user:ann"))])).unwrap();
    db.write("acme", WriteRequest::new(vec![Mutation::Delete(rel("doc:d0#viewer@user:ann"))])).unwrap();
    db.write("acme", WriteRequest::new(vec![Mutation::Create(rel("doc:d9#viewer@user:bob"))])).unwrap();
    let full = db.check("acme", Consistency::FullyConsistent, &view("d9", "bob")).unwrap().0;
    assert_eq!(full, Decision::Has);
    tenant_with_docs(&db, "globex", 5);

    let (_, db) = open(Limits { max_index_bytes_per_tenant: 1, ..Limits::default() });
    db.create_tenant("acme").unwrap();
    db.write_schema("acme", SCHEMA).unwrap();
    db.write("acme", WriteRequest::new(vec![Mutation::Touch(rel("doc:d0#viewer@user:ann"))])).unwrap();
    let err = db.write("acme", WriteRequest::new(vec![Mutation::Touch(rel("doc:d1#viewer@user:ann"))])).unwrap_err();
    assert_eq!(err.code(), ErrorCode::QuotaExceeded, "{err}");
    db.write("acme", WriteRequest::new(vec![Mutation::Delete(rel("doc:d0#viewer@user:ann"))])).unwrap();
}

/// A write of unknown outcome whose reload also failed leaves the head behind the store; the
/// next write must catch up first (the store skips its row lookups on the head's word, so a
/// stale head could also duplicate rows), and what the store holds becomes visible.
#[test]
fn a_failed_reload_after_an_unknown_outcome_is_repaired_by_the_next_write() {
    let (store, db) = open(Limits::default());
    tenant_with_docs(&db, "t", 1);
    store.unknown_next_write.store(true, Ordering::SeqCst);
    store.fail_next_snapshot.store(true, Ordering::SeqCst);
    let x = Relationship::parse("doc:x#viewer@user:bob").unwrap();
    assert!(db.write("t", WriteRequest::new(vec![Mutation::Touch(x.clone())])).is_err());
    // The store holds x; the head does not yet.
    assert_eq!(db.check("t", Consistency::MinimizeLatency, &view("x", "bob")).unwrap().0, Decision::No);
    let y = Relationship::parse("doc:y#viewer@user:bob").unwrap();
    let rev = db.write("t", WriteRequest::new(vec![Mutation::Touch(y)])).unwrap();
    assert_eq!(rev, db.revision("t").unwrap());
    assert_eq!(store.head("t").unwrap(), rev);
    for doc in ["x", "y"] {
        assert_eq!(db.check("t", Consistency::FullyConsistent, &view(doc, "bob")).unwrap().0, Decision::Has, "{doc}");
    }
}
