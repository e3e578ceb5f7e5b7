//! The versioned store and the embedded `Database`: sled against the in-memory model on random
//! operation sequences (with reopen and garbage collection), kill -9 durability, tenant
//! isolation, and the conformance suite loaded through `Database`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use pemba::db::{Consistency, Database, DbError, ErrorCode, Limits, Precondition, WriteRequest};
use pemba::engine::lookup::LookupResourcesRequest;
use pemba::engine::{CheckRequest, Decision};
use pemba::model::{ObjectRef, Relationship, Revision, SubjectRef, Timestamp};
use pemba::store::{Datastore, MemoryStore, Mutation, RelationshipFilter, SledStore, StoreError, relationship_key};
use proptest::prelude::*;
use serde_json::Map;

pub(crate) fn temp_dir(name: &str) -> TempDir {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("pemba-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    TempDir(dir)
}

/// A test's scratch directory, removed when the test ends, whether it passes or fails (a
/// failing proptest case returns early; a panicking test unwinds).
pub(crate) struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

/// A child process a test started, killed and reaped when the test ends (a failing test would
/// otherwise leave it running).
pub(crate) struct Reaped(pub std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Some tests use the path for a file.
        if std::fs::remove_dir_all(&self.0).is_err() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<Mutation>),
    /// Read everything at `head - back`.
    Read(u64),
    /// Garbage-collect with the clock at this many seconds after the first write.
    Gc(u64),
    Reopen,
    /// `SledStore::reopened`: sled closed and opened again in place (its cache emptied).
    Reopened,
}

fn relationship() -> impl Strategy<Value = Relationship> {
    (0..3u8, prop::sample::select(vec!["viewer", "editor"]), 0..3u8, any::<bool>(), 0..3u8).prop_map(
        |(d, rel, u, caveat, exp)| {
            let mut text = format!("doc:d{d}#{rel}@user:u{u}");
            if caveat {
                text.push_str("[cav:{\"x\":1}]");
            }
            // Expirations: none, long past (collected), far future.
            text.push_str(["", "[expiration:2000-01-01T00:00:00Z]", "[expiration:2999-01-01T00:00:00Z]"][exp as usize]);
            Relationship::parse(&text).unwrap()
        },
    )
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => relationship().prop_map(Mutation::Touch),
        2 => relationship().prop_map(Mutation::Create),
        2 => relationship().prop_map(Mutation::Delete),
        1 => (prop::option::of(0..3u8), prop::option::of(prop::sample::select(vec!["viewer", "editor"]))).prop_map(|(d, r)| {
            Mutation::DeleteByFilter(RelationshipFilter { resource_type: Some("doc".into()), resource_id: d.map(|d| format!("d{d}")), relation: r.map(String::from), ..Default::default() })
        }),
        1 => (0..3u8, 0..100i64).prop_map(|(u, age)| {
            Mutation::SetAttributes(ObjectRef::new("user", format!("u{u}")), serde_json::json!({"age": age}).as_object().unwrap().clone())
        }),
        1 => (0..3u8).prop_map(|u| Mutation::DeleteAttributes(ObjectRef::new("user", format!("u{u}")))),
        1 => (0..3u8).prop_map(|v| Mutation::SetSchema(format!("definition user {{}} // v{v}"))),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            6 => prop::collection::vec(mutation(), 1..6).prop_map(Op::Write),
            2 => (0..4u64).prop_map(Op::Read),
            1 => (0..40u64).prop_map(Op::Gc),
            1 => Just(Op::Reopen),
            1 => Just(Op::Reopened),
        ],
        1..30,
    )
}

/// Opens a store just closed: sled's internal threads may hold its file lock a moment longer.
fn reopen(dir: &std::path::Path) -> SledStore {
    for _ in 0..200 {
        match SledStore::open(dir) {
            Ok(s) => return s,
            Err(StoreError::Unavailable(e)) if e.contains("could not acquire lock") => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("{} stayed locked", dir.display());
}

/// Both stores' answers, errors included, in a comparable form.
fn sorted(mut rels: Vec<Relationship>) -> Vec<String> {
    rels.sort_by_key(relationship_key);
    rels.iter().map(|r| r.to_string()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn sled_store_matches_the_in_memory_model(ops in ops()) {
        let dir = temp_dir("model");
        let model = MemoryStore::new();
        let mut sled = SledStore::open(&dir).unwrap();
        model.create_tenant("t").unwrap();
        sled.create_tenant("t").unwrap();
        let start = Timestamp::parse("2020-01-01T00:00:00Z").unwrap().0;
        let mut clock = 0i128;
        for op in ops {
            match op {
                Op::Write(batch) => {
                    // Each write happens 10 s after the previous one.
                    clock += 10;
                    let now = Timestamp(start + clock * 1_000_000_000);
                    let a = model.write("t", &batch, now);
                    let b = sled.write("t", &batch, now);
                    prop_assert_eq!(&a, &b, "batch {:?}", batch);
                }
                Op::Read(back) => {
                    let head = model.head("t").unwrap();
                    prop_assert_eq!(head, sled.head("t").unwrap());
                    let rev = head.back(back);
                    let a = model.snapshot("t", rev);
                    let b = sled.snapshot("t", rev);
                    match (a, b) {
                        (Ok(a), Ok(b)) => {
                            prop_assert_eq!(sorted(a.relationships), sorted(b.relationships));
                            prop_assert_eq!(a.attributes, b.attributes);
                            prop_assert_eq!(a.schema, b.schema);
                        }
                        (a, b) => prop_assert_eq!(a.err(), b.err()),
                    }
                    // Paged reads in key order.
                    let filter = RelationshipFilter::default();
                    let mut after: Option<String> = None;
                    loop {
                        let a = model.read_relationships("t", rev, &filter, after.as_deref(), 2);
                        let b = sled.read_relationships("t", rev, &filter, after.as_deref(), 2);
                        prop_assert_eq!(&a, &b);
                        let Ok(page) = a else { break };
                        match page.last() {
                            Some(last) if page.len() == 2 => after = Some(relationship_key(last)),
                            _ => break,
                        }
                    }
                    prop_assert_eq!(model.changes_after("t", rev, usize::MAX), sled.changes_after("t", rev, usize::MAX));
                    prop_assert_eq!(model.changes_after("t", rev, 1), sled.changes_after("t", rev, 1));
                }
                Op::Gc(secs) => {
                    let now = Timestamp(start + (clock + secs as i128) * 1_000_000_000);
                    let window = Duration::from_secs(30);
                    prop_assert_eq!(model.collect_garbage("t", now, window), sled.collect_garbage("t", now, window));
                    prop_assert_eq!(model.oldest_readable("t"), sled.oldest_readable("t"));
                }
                Op::Reopen => {
                    drop(sled);
                    sled = reopen(&dir);
                }
                Op::Reopened => sled = sled.reopened().unwrap(),
            }
        }
        // What the store says it holds (its integrity record) is what it holds: after a last
        // open, reading the head counts its rows against the record (a mismatch is damage).
        drop(sled);
        let sled = reopen(&dir);
        let head = model.head("t").unwrap();
        prop_assert_eq!(head, sled.head("t").unwrap());
        match (model.snapshot("t", head), sled.snapshot("t", head)) {
            (Ok(a), Ok(b)) => prop_assert_eq!(sorted(a.relationships), sorted(b.relationships)),
            (a, b) => prop_assert_eq!(a.err(), b.err()),
        }
        drop(sled);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_read_older_than_the_window_names_the_window() {
    let store = MemoryStore::new();
    store.create_tenant("t").unwrap();
    let old = Timestamp::parse("2020-01-01T00:00:00Z").unwrap();
    for _ in 0..3 {
        store.write("t", &[Mutation::SetSchema("definition user {}".into())], old).unwrap();
    }
    let oldest = store.collect_garbage("t", Timestamp::now(), Duration::from_secs(3600)).unwrap();
    assert_eq!(oldest, Revision(3));
    assert_eq!(
        store.snapshot("t", Revision(1)).unwrap_err().to_string(),
        "revision 1 is older than the oldest readable revision 3"
    );
}

/// The database names its own window, not the default one (it named "3600s" whatever the
/// configured window was).
#[test]
fn outside_window_names_the_configured_window() {
    let limits = pemba::db::Limits { window: Duration::from_millis(1), ..Default::default() };
    let db = Database::with_store(std::sync::Arc::new(MemoryStore::new()), limits).unwrap();
    db.create_tenant("t").unwrap();
    let first = db.write_schema("t", SCHEMA).unwrap();
    db.write("t", touch(&["doc:1#viewer@user:ann"])).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let last = db.write("t", touch(&["doc:2#viewer@user:ann"])).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(db.collect_garbage("t").unwrap(), last);
    let req = CheckRequest {
        resource: ObjectRef::new("doc", "1"),
        permission: "view".into(),
        subject: SubjectRef::parse("user:ann").unwrap(),
        context: Map::new(),
    };
    let err = db.check("t", Consistency::AtExactSnapshot(first), &req).unwrap_err();
    assert_eq!(err.code(), ErrorCode::OutsideWindow);
    assert_eq!(
        err.to_string(),
        format!("revision {first} is outside the retention window of 1ms: the oldest readable revision is {last}")
    );
}

#[test]
fn an_unknown_format_version_is_a_clear_error() {
    let dir = temp_dir("format");
    {
        let s = SledStore::open(&dir).unwrap();
        s.meta_set("format", b"99").unwrap();
    }
    assert_eq!(SledStore::open(&dir).unwrap_err(), StoreError::UnknownFormat { found: "99".into() });
    std::fs::remove_dir_all(&dir).unwrap();
}

const SCHEMA: &str = "definition user {\n  attribute age: int\n}\ncaveat adult(age int) {\n  age >= 18\n}\ndefinition doc {\n  relation viewer: user | user with adult\n  relation parent: doc\n  permission view = viewer + parent->view\n}";

fn check(db: &Database, tenant: &str, text: &str) -> Decision {
    let (res, perm_sub) = text.split_once('#').unwrap();
    let (perm, sub) = perm_sub.split_once('@').unwrap();
    let req = CheckRequest {
        resource: ObjectRef::parse(res).unwrap(),
        permission: perm.into(),
        subject: SubjectRef::parse(sub).unwrap(),
        context: Map::new(),
    };
    db.check(tenant, Consistency::FullyConsistent, &req).unwrap().0
}

fn touch(texts: &[&str]) -> WriteRequest {
    WriteRequest::new(texts.iter().map(|t| Mutation::Touch(Relationship::parse(t).unwrap())).collect())
}

/// Ids are 32-bit (one value marks the wildcard): the limit on objects per type, lowered here,
/// refuses a write that would name one more, and nothing of it is written.
#[test]
fn a_write_naming_more_objects_of_a_type_than_the_index_can_is_refused() {
    let limits = Limits { max_objects_per_type: 3, ..Limits::default() };
    let db = Database::with_store(std::sync::Arc::new(MemoryStore::new()), limits).unwrap();
    db.create_tenant("acme").unwrap();
    db.write_schema("acme", SCHEMA).unwrap();
    db.write("acme", touch(&["doc:1#viewer@user:a", "doc:1#viewer@user:b", "doc:2#viewer@user:c"])).unwrap();
    let before = db.revision("acme").unwrap();
    let err = db.write("acme", touch(&["doc:3#viewer@user:a", "doc:3#viewer@user:d"])).unwrap_err();
    assert_eq!(err.code(), ErrorCode::QuotaExceeded);
    assert!(
        err.to_string()
            .contains("names 3 objects of type `user` and this write names 1 more; one type may have at most 3"),
        "{err}"
    );
    assert_eq!(db.revision("acme").unwrap(), before);
    assert_eq!(check(&db, "acme", "doc:3#view@user:a"), Decision::No);
    // Objects already named, and one more document (three in all), fit.
    db.write("acme", touch(&["doc:3#viewer@user:a", "doc:3#viewer@user:c", "doc:2#parent@doc:1"])).unwrap();
    assert_eq!(check(&db, "acme", "doc:3#view@user:a"), Decision::Has);
    // The same through an import, chunk by chunk.
    let err = db.import("acme", &mut "doc:4#viewer@user:a\n".as_bytes()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::QuotaExceeded, "{err}");
}

#[test]
fn an_open_that_empties_the_cache_keeps_every_tenant_and_takes_writes() {
    // The process's release hook runs at the end of such an open (the binary's gives mimalloc's
    // freed memory back); no other test sets one.
    static RELEASED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    fn count_release() {
        RELEASED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    assert!(pemba::db::set_release_hook(count_release));
    assert!(!pemba::db::set_release_hook(count_release), "one hook per process");
    let dir = temp_dir("reopened");
    let db = Database::open(&dir).unwrap();
    // Not at an open of fewer rows (none here). No other test opens 10,000 rows.
    assert_eq!(RELEASED.load(std::sync::atomic::Ordering::SeqCst), 0);
    db.create_tenant("acme").unwrap();
    db.create_tenant("other").unwrap();
    db.write_schema("acme", SCHEMA).unwrap();
    db.write_schema("other", SCHEMA).unwrap();
    // Past the rows after which an open lets sled's cache go (sled opened a second time).
    let text: String = (0..12_000).map(|i| format!("doc:{i}#viewer@user:u{}\n", i % 97)).collect();
    let head = db.import("acme", &mut text.as_bytes()).unwrap();
    db.write("other", touch(&["doc:1#viewer@user:ann"])).unwrap();
    db.close().unwrap();
    assert_eq!(RELEASED.load(std::sync::atomic::Ordering::SeqCst), 0);

    let db = Database::open(&dir).unwrap();
    assert_eq!(RELEASED.load(std::sync::atomic::Ordering::SeqCst), 1, "the release hook ran once");
    assert_eq!(db.revision("acme").unwrap(), head);
    assert_eq!(check(&db, "acme", "doc:11999#view@user:u68"), Decision::Has);
    assert_eq!(check(&db, "acme", "doc:11999#view@user:u1"), Decision::No);
    assert_eq!(check(&db, "other", "doc:1#view@user:ann"), Decision::Has);
    // Read from the store as sled holds it after the second open (Checks read the index).
    let filter = RelationshipFilter { resource_id: Some("11999".into()), ..Default::default() };
    let (rows, _) = db.read_relationships("acme", Consistency::FullyConsistent, &filter, 10, None).unwrap();
    assert_eq!(rows.iter().map(|r| r.to_string()).collect::<Vec<_>>(), ["doc:11999#viewer@user:u68"]);
    // Writes after it land, are counted in the integrity record (the next open checks every
    // tenant's rows against it) and survive.
    let after = db.write("acme", touch(&["doc:new#viewer@user:ann"])).unwrap();
    assert!(after > head);
    db.write("other", touch(&["doc:2#viewer@user:bob"])).unwrap();
    db.close().unwrap();

    let db = Database::open(&dir).unwrap();
    assert_eq!(db.revision("acme").unwrap(), after);
    assert_eq!(check(&db, "acme", "doc:new#view@user:ann"), Decision::Has);
    assert_eq!(check(&db, "other", "doc:2#view@user:bob"), Decision::Has);
    assert_eq!(db.tenants().unwrap(), ["acme", "other"]);
}

#[test]
fn database_writes_are_validated_and_read_back_at_revisions() {
    let dir = temp_dir("db");
    let db = Database::open(&dir).unwrap();
    db.create_tenant("acme").unwrap();
    let err = db.write("acme", touch(&["doc:1#viewer@user:ann"])).unwrap_err();
    assert_eq!(err.to_string(), "tenant `acme` has no schema yet: write one first");
    let r1 = db.write_schema("acme", SCHEMA).unwrap();
    let r2 = db.write("acme", touch(&["doc:1#viewer@user:ann", "doc:2#parent@doc:1"])).unwrap();
    assert!(r2 > r1);
    assert_eq!(check(&db, "acme", "doc:2#view@user:ann"), Decision::Has);

    // Rejected whole, naming the first offender.
    let err = db.write("acme", touch(&["doc:3#viewer@user:bob", "doc:3#owner@user:bob"])).unwrap_err();
    assert_eq!(err.to_string(), "mutation 1 (`doc:3#owner@user:bob`): type `doc` has no relation `owner`");
    assert_eq!(check(&db, "acme", "doc:3#view@user:bob"), Decision::No);
    let err = db
        .write(
            "acme",
            WriteRequest::new(vec![Mutation::SetAttributes(
                ObjectRef::new("user", "ann"),
                serde_json::json!({"age": "old"}).as_object().unwrap().clone(),
            )]),
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "mutation 0 (`user:ann`): attribute `age` is not a valid int: got `\"old\"`");
    let too_many: Vec<String> = (0..1001).map(|i| format!("doc:{i}#viewer@user:ann")).collect();
    let err = db.write("acme", touch(&too_many.iter().map(String::as_str).collect::<Vec<_>>())).unwrap_err();
    assert_eq!(err.to_string(), "the write has 1001 mutations; the limit is 1000");

    // Preconditions.
    let filter =
        RelationshipFilter { resource_type: Some("doc".into()), resource_id: Some("9".into()), ..Default::default() };
    let mut req = touch(&["doc:9#viewer@user:cy"]);
    req.preconditions.push(Precondition::MustMatch(filter.clone()));
    let err = db.write("acme", req).unwrap_err();
    assert!(matches!(err, DbError::PreconditionFailed { index: 0, .. }));
    // Named in the API's field names, not a Rust debug form.
    assert_eq!(
        err.to_string(),
        "precondition 0 failed: it requires a relationship matching resource_type=doc, resource_id=9, and none does"
    );
    let mut req = touch(&["doc:9#viewer@user:cy"]);
    req.preconditions.push(Precondition::MustNotMatch(filter));
    let r3 = db.write("acme", req).unwrap();

    // A schema change that would orphan stored relationships is refused with what blocks it.
    let err = db.write_schema("acme", "definition user {}\ndefinition doc {\n  relation viewer: user\n}").unwrap_err();
    assert_eq!(
        err.to_string(),
        "schema change refused: 1 stored item(s) would no longer fit, first: relationship `doc:2#parent@doc:1`: type `doc` has no relation `parent`"
    );

    // Deletes, and reads at an exact older revision.
    let r4 = db
        .write("acme", WriteRequest::new(vec![Mutation::Delete(Relationship::parse("doc:1#viewer@user:ann").unwrap())]))
        .unwrap();
    assert_eq!(check(&db, "acme", "doc:2#view@user:ann"), Decision::No);
    let req = CheckRequest {
        resource: ObjectRef::new("doc", "2"),
        permission: "view".into(),
        subject: SubjectRef::parse("user:ann").unwrap(),
        context: Map::new(),
    };
    assert_eq!(db.check("acme", Consistency::AtExactSnapshot(r3), &req).unwrap(), (Decision::Has, r3));
    assert_eq!(db.check("acme", Consistency::AtExactSnapshot(r4), &req).unwrap(), (Decision::No, r4));
    assert!(matches!(
        db.check("acme", Consistency::AtLeastAsFresh(Revision(r4.0 + 5)), &req).unwrap_err(),
        DbError::FutureRevision { .. }
    ));

    // Reopen: the exact state at the last acknowledged revision.
    drop(db);
    let db = Database::open(&dir).unwrap();
    assert_eq!(db.revision("acme").unwrap(), r4);
    assert_eq!(check(&db, "acme", "doc:9#view@user:cy"), Decision::Has);
    assert_eq!(check(&db, "acme", "doc:2#view@user:ann"), Decision::No);
    let (rels, _) =
        db.read_relationships("acme", Consistency::FullyConsistent, &RelationshipFilter::default(), 100, None).unwrap();
    assert_eq!(rels.iter().map(|r| r.to_string()).collect::<Vec<_>>(), ["doc:2#parent@doc:1", "doc:9#viewer@user:cy"]);

    // Export and import into a new tenant give the same answers.
    let mut out = Vec::new();
    db.export("acme", &mut out).unwrap();
    db.create_tenant("copy").unwrap();
    db.import("copy", &mut std::io::Cursor::new(out)).unwrap();
    assert_eq!(check(&db, "copy", "doc:9#view@user:cy"), Decision::Has);
    assert_eq!(db.schema_text("copy").unwrap(), db.schema_text("acme").unwrap());
    drop(db);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tenants_share_nothing_observable() {
    let db = Database::in_memory();
    for t in ["acme", "globex"] {
        db.create_tenant(t).unwrap();
        db.write_schema(t, SCHEMA).unwrap();
    }
    db.write("acme", touch(&["doc:1#viewer@user:ann", "doc:2#viewer@user:ann", "doc:3#viewer@user:ann"])).unwrap();
    assert_eq!(check(&db, "acme", "doc:1#view@user:ann"), Decision::Has);
    assert_eq!(check(&db, "globex", "doc:1#view@user:ann"), Decision::No);
    let (rels, _) = db
        .read_relationships("globex", Consistency::FullyConsistent, &RelationshipFilter::default(), 100, None)
        .unwrap();
    assert!(rels.is_empty());
    let req = LookupResourcesRequest {
        resource_type: "doc".into(),
        permission: "view".into(),
        subject: SubjectRef::parse("user:ann").unwrap(),
        context: Map::new(),
        limit: Some(1),
        cursor: None,
    };
    assert!(db.lookup_resources("globex", Consistency::FullyConsistent, &req).unwrap().items.is_empty());
    let page = db.lookup_resources("acme", Consistency::FullyConsistent, &req).unwrap();
    let stolen = LookupResourcesRequest { cursor: page.cursor.clone(), ..req.clone() };
    assert_eq!(
        db.lookup_resources("globex", Consistency::FullyConsistent, &stolen).unwrap_err().to_string(),
        "cursor belongs to a different tenant"
    );
    assert_eq!(db.changes_after("globex", Revision::ZERO, 100).unwrap().len(), 1);
    db.drop_tenant("acme").unwrap();
    assert_eq!(db.tenants().unwrap(), ["globex"]);
    assert_eq!(
        db.write("acme", touch(&["doc:1#viewer@user:ann"])).unwrap_err().to_string(),
        "tenant `acme` does not exist"
    );
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = temp_dir("crash");
    let mut acked: u64 = 0;
    let mut seed: u64 = 0x5eed;
    for round in 0..20 {
        let mut child = Reaped(
            Command::new(env!("CARGO_BIN_EXE_pemba"))
                .args(["debug", "crash-writer", "--data-dir"])
                .arg(&dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Kill after a pseudo-random number of acknowledgements (1 to 40).
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let wanted = 1 + (seed >> 33) % 40;
        let mut seen = 0;
        while seen < wanted {
            let Some(Ok(line)) = lines.next() else { break };
            let rev: u64 = line.strip_prefix("ack ").unwrap().parse().unwrap();
            acked = acked.max(rev);
            seen += 1;
        }
        // Give the writer a moment in the middle of its next batch, then kill it without warning.
        std::thread::sleep(Duration::from_micros((seed >> 40) % 3000));
        child.kill().unwrap();
        for line in lines.map_while(Result::ok) {
            if let Some(rev) = line.strip_prefix("ack ") {
                acked = acked.max(rev.parse().unwrap());
            }
        }
        child.wait().unwrap();
        assert!(
            seen > 0,
            "round {round}: the writer acknowledged nothing: {:?}",
            child.stderr.take().map(|e| std::io::read_to_string(e).unwrap())
        );

        let db = Database::open(&dir).unwrap();
        let head = db.revision("t").unwrap();
        assert!(head.0 >= acked, "round {round}: head {head} is behind acknowledged revision {acked}");
        let (rels, _) = db
            .read_relationships("t", Consistency::FullyConsistent, &RelationshipFilter::default(), 10_000, None)
            .unwrap();
        let mut per_batch = std::collections::BTreeMap::<u64, usize>::new();
        for r in &rels {
            let b: u64 = r.resource.id.trim_start_matches('b').split('_').next().unwrap().parse().unwrap();
            *per_batch.entry(b).or_default() += 1;
        }
        for (b, n) in &per_batch {
            assert_eq!(*n, 5, "round {round}: batch {b} is half-applied");
        }
        // Revision 1 is the schema; every later one is a batch.
        for b in 2..=acked {
            assert!(per_batch.contains_key(&b), "round {round}: acknowledged batch {b} is missing");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn conformance_suite_passes_through_database() {
    let files = super::conformance_files();
    if files.is_empty() {
        return;
    }
    let dir = temp_dir("conformance");
    let db = Database::open(&dir).unwrap();
    let conditions = pemba::conditions::Conditions::new();
    let mut passed = 0;
    for (i, path) in files.iter().enumerate() {
        let file = pemba::validation::load(path, &conditions).unwrap();
        let tenant = format!("f{i}");
        db.create_tenant(&tenant).unwrap();
        db.write_schema(&tenant, &file.schema_text).unwrap();
        let rels: Vec<Mutation> = file.tuples.iter().cloned().map(Mutation::Create).collect();
        for chunk in rels.chunks(1000) {
            db.write(&tenant, WriteRequest::new(chunk.to_vec())).unwrap();
        }
        for a in &file.assertions {
            let (d, _) = db.check(&tenant, Consistency::FullyConsistent, &a.request).unwrap();
            let ok = match a.kind {
                pemba::validation::AssertKind::True => d == Decision::Has,
                pemba::validation::AssertKind::False => d == Decision::No,
                pemba::validation::AssertKind::Caveated => matches!(d, Decision::Conditional(_)),
            };
            assert!(ok, "{}: {} `{}` got {d}", path.display(), a.kind.name(), a.text);
            passed += 1;
        }
    }
    assert_eq!(passed, 411);
    drop(db);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The contract every `Datastore` keeps, as the database relies on it: settings, tenants, the
/// revision sequence, reads at a revision, paged relationship reads, the changelog in bounded
/// pages, and error kinds that tell a caller what to do.
fn datastore_contract(store: &dyn Datastore) {
    use pemba::store::{Change, StoreErrorKind};
    assert_eq!(store.meta_get("k").unwrap(), None);
    store.meta_set("k", b"v").unwrap();
    assert_eq!(store.meta_get("k").unwrap().as_deref(), Some(&b"v"[..]));

    assert_eq!(store.create_tenant("Bad Name").unwrap_err().kind(), StoreErrorKind::Invalid);
    store.create_tenant("t").unwrap();
    store.create_tenant("u").unwrap();
    assert_eq!(store.create_tenant("t").unwrap_err().kind(), StoreErrorKind::AlreadyExists);
    assert_eq!(store.tenants().unwrap(), ["t", "u"]);
    assert_eq!(store.head("t").unwrap(), Revision::ZERO);
    assert_eq!(store.head("nope").unwrap_err().kind(), StoreErrorKind::NotFound);

    let now = Timestamp::now();
    let rel = |s: &str| Relationship::parse(s).unwrap();
    let r1 = store.write("t", &[Mutation::SetSchema("definition user {}".into())], now).unwrap();
    assert_eq!((r1.revision, r1.changes.clone()), (Revision(1), vec![Change::Schema("definition user {}".into())]));
    let r2 = store
        .write(
            "t",
            &[
                Mutation::Create(rel("doc:a#viewer@user:ann")),
                Mutation::Create(rel("doc:b#viewer@user:ann")),
                Mutation::Touch(rel("doc:c#viewer@user:bob")),
            ],
            now,
        )
        .unwrap();
    assert_eq!(r2.revision, Revision(2));
    assert_eq!(r2.changes.len(), 3);
    // A create of a live row fails the whole batch, as a conflict the caller can name.
    let err = store
        .write(
            "t",
            &[Mutation::Touch(rel("doc:d#viewer@user:cy")), Mutation::Create(rel("doc:a#viewer@user:ann"))],
            now,
        )
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::AlreadyExists);
    assert_eq!(store.head("t").unwrap(), Revision(2));
    let r3 = store.write("t", &[Mutation::Delete(rel("doc:a#viewer@user:ann"))], now).unwrap();
    assert_eq!(r3.changes, vec![Change::Delete(rel("doc:a#viewer@user:ann"))]);
    // Tenants share nothing.
    assert_eq!(store.head("u").unwrap(), Revision::ZERO);

    // Reads at each revision.
    let at = |r: u64| sorted(store.snapshot("t", Revision(r)).unwrap().relationships);
    assert!(at(1).is_empty());
    assert_eq!(at(2), ["doc:a#viewer@user:ann", "doc:b#viewer@user:ann", "doc:c#viewer@user:bob"]);
    assert_eq!(at(3), ["doc:b#viewer@user:ann", "doc:c#viewer@user:bob"]);
    assert_eq!(store.snapshot("t", Revision(3)).unwrap().schema.as_deref(), Some("definition user {}"));
    assert_eq!(store.snapshot("t", Revision(4)).unwrap_err().kind(), StoreErrorKind::Invalid);
    let page = store.read_relationships("t", Revision(2), &RelationshipFilter::default(), None, 2).unwrap();
    assert_eq!(sorted(page.clone()), ["doc:a#viewer@user:ann", "doc:b#viewer@user:ann"]);
    let after = relationship_key(page.last().unwrap());
    let rest = store.read_relationships("t", Revision(2), &RelationshipFilter::default(), Some(&after), 2).unwrap();
    assert_eq!(sorted(rest), ["doc:c#viewer@user:bob"]);

    // The changelog in pages.
    let all = store.changes_after("t", Revision::ZERO, usize::MAX).unwrap();
    assert_eq!(all.iter().map(|c| c.revision.0).collect::<Vec<_>>(), [1, 2, 3]);
    let one = store.changes_after("t", Revision(1), 1).unwrap();
    assert_eq!(one, all[1..2]);
    assert!(store.changes_after("t", Revision(3), 10).unwrap().is_empty());
    assert_eq!(store.changes_after("t", Revision(9), 10).unwrap_err().kind(), StoreErrorKind::Invalid);

    // Garbage collection keeps the state at the start of the window readable.
    let later = Timestamp(now.0 + 7_200_000_000_000);
    assert_eq!(store.collect_garbage("t", later, Duration::from_secs(3600)).unwrap(), Revision(3));
    assert_eq!(store.oldest_readable("t").unwrap(), Revision(3));
    assert_eq!(store.snapshot("t", Revision(2)).unwrap_err().kind(), StoreErrorKind::Invalid);
    assert_eq!(at(3), ["doc:b#viewer@user:ann", "doc:c#viewer@user:bob"]);

    store.drop_tenant("u").unwrap();
    assert_eq!(store.tenants().unwrap(), ["t"]);
    assert_eq!(store.drop_tenant("u").unwrap_err().kind(), StoreErrorKind::NotFound);
}

#[test]
fn the_store_contract_holds_for_every_backend() {
    datastore_contract(&MemoryStore::new());
    let dir = temp_dir("contract");
    datastore_contract(&SledStore::open(&dir).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The schema the database-level model test writes under: both relations take every form the
/// random relationships have (caveated, expiring, both).
const MODEL_SCHEMA: &str = "use expiration\ncaveat cav(x int) { x == 1 }\ndefinition user {}\ndefinition doc {\n  relation viewer: user | user with cav | user with expiration | user with cav and expiration\n  relation editor: user | user with cav | user with expiration | user with cav and expiration\n}";

#[derive(Debug, Clone)]
enum DbOp {
    Write(Vec<Mutation>),
    /// `Database::import_chunk`: several revisions (of at most 3 mutations) made visible at once.
    Import(Vec<Mutation>),
    /// Garbage collection with a zero window: old versions and expired rows leave the store
    /// (the index keeps expired ones until a reopen rebuilds it).
    Gc,
    Reopen,
}

fn db_ops() -> impl Strategy<Value = Vec<DbOp>> {
    let rel_mutation = prop_oneof![
        3 => relationship().prop_map(Mutation::Touch),
        2 => relationship().prop_map(Mutation::Create),
        2 => relationship().prop_map(Mutation::Delete),
        1 => (prop::option::of(0..3u8)).prop_map(|d| Mutation::DeleteByFilter(RelationshipFilter {
            resource_type: Some("doc".into()),
            resource_id: d.map(|d| format!("d{d}")),
            ..Default::default()
        })),
    ];
    prop::collection::vec(
        prop_oneof![
            4 => prop::collection::vec(rel_mutation.clone(), 0..3).prop_map(DbOp::Write),
            4 => prop::collection::vec(rel_mutation, 0..10).prop_map(DbOp::Import),
            1 => Just(DbOp::Gc),
            1 => Just(DbOp::Reopen),
        ],
        1..25,
    )
}

/// What the database holds, in a comparable form: its head index's relationships (export; the
/// long-expired ones left out, as garbage collection and a reopen drop them from the index at
/// different times) and the store's rows (`read_relationships`, which reads them, so a second
/// live row shows at once).
fn held(db: &Database) -> (Vec<String>, Vec<String>) {
    let mut out = Vec::new();
    db.export("t", &mut out).unwrap();
    let mut index: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.contains("2000-01-01"))
        .map(String::from)
        .collect();
    index.sort();
    let (rows, _) =
        db.read_relationships("t", Consistency::FullyConsistent, &RelationshipFilter::default(), 100, None).unwrap();
    let mut rows: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    rows.sort();
    (index, rows)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// The database over sled skips the store's row lookups for relationships its head index
    /// does not hold (`Datastore::write_hinted`) and writes an import chunk's revisions before
    /// one wait for durability (`write_deferred`); over the in-memory store it does neither.
    /// Both must agree after every write, and after a reopen rebuilds the index from sled's
    /// rows (a wrong hint leaves a second live row, which outlives a later delete).
    #[test]
    fn the_database_on_sled_matches_the_database_in_memory(ops in db_ops()) {
        let dir = temp_dir("dbmodel");
        let limits = Limits {
            max_relationships_per_write: 3,
            import_chunk: 10,
            window: Duration::ZERO,
            ..Limits::default()
        };
        let model = Database::with_store(std::sync::Arc::new(MemoryStore::new()), limits).unwrap();
        let mut db = Database::open_with(&dir, limits).unwrap();
        for d in [&model, &db] {
            d.create_tenant("t").unwrap();
            d.write_schema("t", MODEL_SCHEMA).unwrap();
        }
        for op in ops {
            let (a, b) = match &op {
                DbOp::Write(m) => (
                    model.write("t", WriteRequest::new(m.clone())),
                    db.write("t", WriteRequest::new(m.clone())),
                ),
                DbOp::Import(m) => (model.import_chunk("t", m.clone()), db.import_chunk("t", m.clone())),
                DbOp::Gc => (model.collect_garbage("t"), db.collect_garbage("t")),
                DbOp::Reopen => {
                    db.close().unwrap();
                    db = loop {
                        match Database::open_with(&dir, limits) {
                            Ok(d) => break d,
                            Err(e) if e.to_string().contains("lock") => std::thread::sleep(Duration::from_millis(10)),
                            Err(e) => panic!("{e}"),
                        }
                    };
                    (Ok(model.revision("t").unwrap()), Ok(db.revision("t").unwrap()))
                }
            };
            prop_assert_eq!(a.map_err(|e| e.to_string()), b.map_err(|e| e.to_string()), "{:?}", op);
            prop_assert_eq!(model.revision("t").unwrap(), db.revision("t").unwrap());
            prop_assert_eq!(held(&model), held(&db), "after {:?}", op);
        }
        db.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
