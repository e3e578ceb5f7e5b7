//! Fault injection on data directories, as an operator's accidents and a failing disk would
//! do them: truncations at many points, bit flips in every file, deleted files, a foreign file,
//! a directory whose creation was interrupted. Every case must end in a clear error naming the
//! directory, or in exactly the acknowledged state; never a panic, and never a different state.
//! The table of outcomes is printed (`cargo test faults -- --nocapture`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pemba::db::{Consistency, Database, WriteRequest};
use pemba::model::Relationship;
use pemba::store::{Mutation, RelationshipFilter};

const SCHEMA: &str = "definition user {}\ndefinition doc {\n  relation viewer: user\n  relation editor: user\n  permission view = viewer + editor\n}";

/// What a tenant holds, as compared after a fault.
#[derive(Debug, PartialEq)]
struct State {
    tenants: Vec<String>,
    schema: Option<String>,
    relationships: Vec<String>,
}

fn state(db: &Database) -> State {
    let tenants = db.tenants().unwrap();
    let mut relationships = Vec::new();
    let mut schema = None;
    if tenants.contains(&"t".to_string()) {
        schema = db.schema_text("t").unwrap();
        let filter = RelationshipFilter::default();
        let mut after: Option<String> = None;
        loop {
            let (page, _) =
                db.read_relationships("t", Consistency::FullyConsistent, &filter, 1000, after.as_deref()).unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().map(pemba::store::relationship_key);
            relationships.extend(page.iter().map(ToString::to_string));
        }
    }
    State { tenants, schema, relationships }
}

/// A store with several revisions: creates, replacements, deletes.
fn build(dir: &Path) -> State {
    let db = Database::open(dir).unwrap();
    db.create_tenant("t").unwrap();
    db.create_tenant("u").unwrap();
    db.write_schema("t", SCHEMA).unwrap();
    for b in 0..40 {
        let batch = (0..100)
            .map(|i| Mutation::Touch(Relationship::parse(&format!("doc:d{b}_{i}#viewer@user:u{}", i % 13)).unwrap()))
            .collect();
        db.write("t", WriteRequest::new(batch)).unwrap();
    }
    for b in 0..10 {
        let batch = (0..50)
            .map(|i| Mutation::Delete(Relationship::parse(&format!("doc:d{b}_{i}#viewer@user:u{}", i % 13)).unwrap()))
            .collect();
        db.write("t", WriteRequest::new(batch)).unwrap();
    }
    let s = state(&db);
    drop(db);
    s
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// Opened with exactly the acknowledged state.
    Exact,
    /// Refused with an error naming the directory.
    ClearError,
    /// Bad: opened with another state, an error without the directory, or a panic.
    Silent,
    Unnamed,
    Panic,
}

fn open_outcome(dir: &Path, want: &State) -> (Outcome, String) {
    let opened = std::panic::catch_unwind(|| Database::open(dir));
    match opened {
        Err(_) => (Outcome::Panic, "panicked".into()),
        Ok(Ok(db)) => {
            let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state(&db)));
            match got {
                Ok(got) if &got == want => (Outcome::Exact, String::new()),
                Ok(got) => (
                    Outcome::Silent,
                    format!("{} tenants, {} relationships", got.tenants.len(), got.relationships.len()),
                ),
                Err(_) => (Outcome::Panic, "panicked reading".into()),
            }
        }
        Ok(Err(e)) => {
            let text = e.to_string();
            let name = dir.display().to_string();
            if text.contains(&name) { (Outcome::ClearError, text) } else { (Outcome::Unnamed, text) }
        }
    }
}

#[test]
fn damaged_directories_are_clear_errors_or_the_exact_state() {
    let root = super::store::temp_dir("faults");
    let base = root.join("base");
    let want = build(&base);
    assert_eq!(want.relationships.len(), 3500);
    let mut table: BTreeMap<String, BTreeMap<Outcome, usize>> = BTreeMap::new();
    let mut bad = Vec::new();
    let mut n = 0;
    let mut trial = |fault: &str, what: String, damage: &dyn Fn(&Path)| {
        n += 1;
        let dir = root.join(format!("case{n}"));
        copy_dir(&base, &dir);
        damage(&dir);
        let (outcome, detail) = open_outcome(&dir, &want);
        *table.entry(fault.to_string()).or_default().entry(outcome).or_default() += 1;
        if outcome > Outcome::ClearError {
            bad.push(format!("{fault} {what}: {outcome:?} {detail}"));
        }
        let _ = std::fs::remove_dir_all(&dir);
    };
    let all = files(&base);
    // More trials on sled's log, where the data is; `PEMBA_FAULT_TRIALS` multiplies them.
    let scale: u64 = std::env::var("PEMBA_FAULT_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let points = |f: &Path| if f == Path::new("db") { 40 * scale } else { 10 * scale };
    // Truncations at many points of every file.
    for f in &all {
        let len = std::fs::metadata(base.join(f)).unwrap().len();
        let n = points(f);
        for i in 0..n {
            let (pct, cut) = (i * 100 / n, len * i / n);
            trial("truncate", format!("{} to {pct}% ({cut} bytes)", f.display()), &|d: &Path| {
                let file = std::fs::OpenOptions::new().write(true).open(d.join(f)).unwrap();
                file.set_len(cut).unwrap();
            });
        }
    }
    // Bit flips spread over every file.
    for f in &all {
        let len = std::fs::metadata(base.join(f)).unwrap().len();
        let n = 2 * points(f);
        for k in 0..n {
            let at = (len * (2 * k + 1) / (2 * n)) as usize;
            trial("bit flip", format!("{} at {at}", f.display()), &|d: &Path| {
                let p = d.join(f);
                let mut bytes = std::fs::read(&p).unwrap();
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= 1 << (k % 8);
                }
                std::fs::write(&p, bytes).unwrap();
            });
        }
    }
    // Deleted files.
    for f in &all {
        trial("deleted file", f.display().to_string(), &|d: &Path| std::fs::remove_file(d.join(f)).unwrap());
    }
    print_table(&table);
    assert!(bad.is_empty(), "{} bad outcomes:\n{}", bad.len(), bad.join("\n"));

    // A foreign directory: refused, and left exactly as it was.
    let foreign = root.join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("db"), b"my own database, not sled's").unwrap();
    let err = Database::open(&foreign).unwrap_err().to_string();
    assert!(err.contains("is not a Pemba data directory") && err.contains(&foreign.display().to_string()), "{err}");
    assert_eq!(std::fs::read(foreign.join("db")).unwrap(), b"my own database, not sled's");
    assert_eq!(files(&foreign), [PathBuf::from("db")], "nothing was added");

    // A creation interrupted before the format was written: sled's files, no marker, no format.
    let half = root.join("half");
    {
        let db = sled::Config::new().path(&half).open().unwrap();
        db.flush().unwrap();
    }
    let err = Database::open(&half).unwrap_err().to_string();
    assert!(err.contains("creation was interrupted"), "{err}");

    // A store of a build before the marker and the record (neither file, and sled's meta tree
    // not marked) opens, counted row by row, and is marked.
    let unmarked = root.join("unmarked");
    copy_dir(&base, &unmarked);
    std::fs::remove_file(unmarked.join("PEMBA")).unwrap();
    std::fs::remove_file(unmarked.join("pemba.state")).unwrap();
    {
        let db = sled::Config::new().path(&unmarked).open().unwrap();
        db.open_tree("__pemba_meta").unwrap().remove("marked").unwrap().unwrap();
        db.flush().unwrap();
    }
    let db = Database::open(&unmarked).unwrap();
    assert_eq!(state(&db), want);
    drop(db);
    assert!(unmarked.join("PEMBA").exists() && unmarked.join("pemba.state").exists());

    // A marked store that lost both its marker and its record (so nothing outside sled says
    // what was acknowledged) is damage, not a store of an earlier build.
    let lost = root.join("lost");
    copy_dir(&base, &lost);
    std::fs::remove_file(lost.join("PEMBA")).unwrap();
    std::fs::remove_file(lost.join("pemba.state")).unwrap();
    let err = Database::open(&lost).unwrap_err().to_string();
    assert!(err.contains("marker `PEMBA` is missing") && err.contains(&lost.display().to_string()), "{err}");

    // A creation interrupted after sled was marked but before the marker file: no tenant yet,
    // so the creation finishes.
    let late = root.join("late");
    drop(Database::open(&late).unwrap());
    std::fs::remove_file(late.join("PEMBA")).unwrap();
    let db = Database::open(&late).unwrap();
    assert!(db.tenants().unwrap().is_empty());
    drop(db);
    assert!(late.join("PEMBA").exists());
    let _ = std::fs::remove_dir_all(&root);
}

/// A read-only data directory (a mount gone read-only, wrong ownership): opening it is a clear
/// error naming the directory, nothing in it changes, and it opens with its state once writable.
/// Root ignores file modes, so as root the opening process runs as `nobody` (setpriv).
#[test]
fn a_read_only_directory_is_a_clear_error_and_is_left_unchanged() {
    use std::os::unix::fs::PermissionsExt;
    let root = super::store::temp_dir("readonly");
    let dir = root.join("data");
    let want = build(&dir);
    let snapshot = |d: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        files(d).into_iter().map(|f| (f.clone(), std::fs::read(d.join(&f)).unwrap())).collect()
    };
    let before = snapshot(&dir);
    let set_mode = |writable: bool| {
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p.clone());
                }
                let mode = match (p.is_dir(), writable) {
                    (true, true) => 0o755,
                    (true, false) => 0o555,
                    (false, true) => 0o644,
                    (false, false) => 0o444,
                };
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
        let mode = if writable { 0o755 } else { 0o555 };
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    set_mode(false);
    let is_root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    let pemba = env!("CARGO_BIN_EXE_pemba");
    let mut cmd = if is_root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", pemba]);
        c
    } else {
        std::process::Command::new(pemba)
    };
    let out = cmd.args(["debug", "open", "--data-dir"]).arg(&dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a clear error, not a panic: {stderr}");
    assert!(
        stderr.contains(&dir.display().to_string()) && stderr.to_lowercase().contains("permission denied"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    set_mode(true);
    assert_eq!(snapshot(&dir), before, "nothing in the directory changed");
    let db = Database::open(&dir).unwrap();
    assert_eq!(state(&db), want);
    drop(db);
    let _ = std::fs::remove_dir_all(&root);
}

fn print_table(table: &BTreeMap<String, BTreeMap<Outcome, usize>>) {
    eprintln!("| fault | trials | exact state | clear error | other |");
    eprintln!("|---|---|---|---|---|");
    for (fault, outcomes) in table {
        let get = |o: Outcome| outcomes.get(&o).copied().unwrap_or(0);
        let total: usize = outcomes.values().sum();
        let other = total - get(Outcome::Exact) - get(Outcome::ClearError);
        eprintln!("| {fault} | {total} | {} | {} | {other} |", get(Outcome::Exact), get(Outcome::ClearError));
    }
}

/// Power-loss durability: before a write is acknowledged, sled's log file and the directory are
/// synced (a power loss cannot be simulated here, so a hook watches the calls and their order);
/// with `Durability::ProcessCrash` they are not.
#[test]
fn writes_are_synced_before_they_are_acknowledged() {
    use pemba::store::{Datastore, Durability, SledStore};
    use std::sync::{Arc, Mutex};
    for durability in [Durability::PowerLoss, Durability::ProcessCrash] {
        let dir = super::store::temp_dir("synced");
        let store = SledStore::open_with(&dir, durability).unwrap();
        store.create_tenant("t").unwrap();
        let events = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = events.clone();
        store.on_sync(Some(Arc::new(move |p: &Path| seen.lock().unwrap().push(p.display().to_string()))));
        let r = Relationship::parse("doc:1#viewer@user:ann").unwrap();
        store.write("t", &[Mutation::Touch(r)], pemba::model::Timestamp::now()).unwrap();
        events.lock().unwrap().push("acknowledged".into());
        let got = events.lock().unwrap().clone();
        let log = dir.join("db").display().to_string();
        let folder = dir.display().to_string();
        match durability {
            Durability::PowerLoss => {
                let at = |name: &str| got.iter().position(|e| e == name).unwrap_or(usize::MAX);
                assert!(at(&log) < at(&folder) && at(&folder) < at("acknowledged"), "{got:?}");
            }
            Durability::ProcessCrash => assert_eq!(got, ["acknowledged"]),
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A crash at any point of a garbage collection (which removes rows, so the record's count
/// changes under it) leaves a store that opens: the directory is copied at each flush the
/// collection makes (what a crash after that flush leaves), and each copy opens with the rows
/// before or after the collection, never an integrity error.
#[test]
fn a_crash_during_garbage_collection_leaves_a_store_that_opens() {
    use pemba::model::Timestamp;
    use pemba::store::{Datastore, SledStore};
    use std::sync::{Arc, Mutex};
    let root = super::store::temp_dir("gc-crash");
    let dir = root.join("data");
    let store = SledStore::open(&dir).unwrap();
    store.create_tenant("t").unwrap();
    let now = Timestamp::now();
    // Live rows, rows that expire in 2030 (removed by a collection dated 2031) and rows
    // deleted (old versions removed).
    let rels: Vec<Mutation> = (0..300)
        .map(|i| {
            let exp = if i % 3 == 0 { "[expiration:2030-01-01T00:00:00Z]" } else { "" };
            Mutation::Touch(Relationship::parse(&format!("doc:{i}#viewer@user:u{}{exp}", i % 7)).unwrap())
        })
        .collect();
    store.write("t", &rels, now).unwrap();
    let deletes: Vec<Mutation> = (0..50)
        .map(|i| {
            Mutation::Delete(
                Relationship::parse(&format!("doc:{}#viewer@user:u{}", 3 * i + 1, (3 * i + 1) % 7)).unwrap(),
            )
        })
        .collect();
    store.write("t", &deletes, now).unwrap();
    let live = |s: &SledStore| {
        let head = s.head("t").unwrap();
        let filter = RelationshipFilter::default();
        let mut got: Vec<String> =
            s.read_relationships("t", head, &filter, None, 10_000).unwrap().iter().map(ToString::to_string).collect();
        got.sort();
        got
    };
    let before = live(&store);
    let copies = Arc::new(Mutex::new(Vec::<PathBuf>::new()));
    let (seen, log, root2) = (copies.clone(), dir.join("db"), root.to_path_buf());
    let from = dir.clone();
    store.on_sync(Some(Arc::new(move |p: &Path| {
        if p == log {
            let mut seen = seen.lock().unwrap();
            let copy = root2.join(format!("crash{}", seen.len()));
            copy_dir(&from, &copy);
            seen.push(copy);
        }
    })));
    // Dated 2031 with a window of a day: every expired row and old version goes.
    let in_2031 = Timestamp(1_925_000_000 * 1_000_000_000);
    store.collect_garbage("t", in_2031, std::time::Duration::from_secs(86_400)).unwrap();
    store.on_sync(None);
    let after = live(&store);
    assert!(after.len() < before.len(), "the collection removed rows");
    drop(store);
    let copies = copies.lock().unwrap().clone();
    assert!(copies.len() >= 2, "a flush before and after applying the collection: {copies:?}");
    for copy in copies {
        // Opened as a database: loading counts every row, which the record checks.
        let db = Database::open(&copy).unwrap_or_else(|e| panic!("{}: {e}", copy.display()));
        let mut got = state(&db).relationships;
        got.sort();
        assert!(got == before || got == after, "{}: {} rows", copy.display(), got.len());
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// What the integrity record catches that sled cannot: a store that opens cleanly but holds
/// less than was acknowledged (made here by editing sled's trees directly).
#[test]
fn a_store_holding_less_than_was_acknowledged_is_refused() {
    let root = super::store::temp_dir("rollback");
    let base = root.join("base");
    build(&base);
    let edit = |name: &str, f: &dyn Fn(&sled::Db)| -> String {
        let dir = root.join(name);
        copy_dir(&base, &dir);
        {
            let db = sled::Config::new().path(&dir).open().unwrap();
            f(&db);
            db.flush().unwrap();
        }
        let err = Database::open(&dir).unwrap_err().to_string();
        assert!(err.contains(&dir.display().to_string()) && err.contains("damaged"), "{err}");
        err
    };
    // A relationship row lost, the head unchanged.
    let err = edit("row", &|db| {
        let t = db.open_tree("tenant/t").unwrap();
        let live =
            t.scan_prefix(b"r").map(Result::unwrap).find(|(_, v)| v.windows(14).any(|w| w == b"\"deleted\":null"));
        t.remove(live.unwrap().0).unwrap();
    });
    assert!(err.contains("do not match"), "{err}");
    // The head rolled back.
    let err = edit("head", &|db| {
        let t = db.open_tree("tenant/t").unwrap();
        t.insert(b"mhead", 3u64.to_be_bytes().to_vec()).unwrap();
    });
    assert!(err.contains("is at revision 3 but revision 51 was acknowledged"), "{err}");
    // A tenant gone.
    let err = edit("tenant", &|db| {
        db.open_tree("__pemba_meta").unwrap().remove("tenant/u").unwrap();
    });
    assert!(err.contains("tenant `u`"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}

/// A backup taken while a writer goes on holds each tenant at one revision; a damaged store is
/// then restored from it into a new directory with every write up to that revision.
#[test]
fn a_backup_taken_during_writes_restores_a_damaged_store() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let root = super::store::temp_dir("backup");
    let dir = root.join("data");
    let db = Arc::new(Database::open(&dir).unwrap());
    db.create_tenant("t").unwrap();
    db.create_tenant("empty").unwrap();
    db.write_schema("t", SCHEMA).unwrap();
    let batch = |b: usize| -> WriteRequest {
        WriteRequest::new(
            (0..50)
                .map(|i| Mutation::Touch(Relationship::parse(&format!("doc:w{b}_{i}#viewer@user:u{}", i % 7)).unwrap()))
                .collect(),
        )
    };
    for b in 0..20 {
        db.write("t", batch(b)).unwrap();
    }
    /// Stops the writer when the test ends, passed or failed.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut b = 1000;
            while !stop.load(Ordering::Relaxed) {
                db.write("t", batch(b)).unwrap();
                b += 1;
            }
        })
    };
    while db.revision("t").unwrap().0 < 25 {
        assert!(!writer.is_finished(), "the writer stopped (a write failed)");
        std::thread::yield_now();
    }
    let mut backup = Vec::new();
    let revisions = db.backup(&mut backup).unwrap();
    let at = revisions.iter().find(|(t, _)| t == "t").unwrap().1;
    // What the tenant held at the backup's revision, read back at exactly that revision.
    let mut want = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let filter = RelationshipFilter::default();
        let (page, _) =
            db.read_relationships("t", Consistency::AtExactSnapshot(at), &filter, 1000, after.as_deref()).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(pemba::store::relationship_key);
        want.extend(page.iter().map(ToString::to_string));
    }
    while db.revision("t").unwrap() <= at {
        assert!(!writer.is_finished(), "the writer stopped (a write failed)");
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(db.revision("t").unwrap() > at, "writes went on during the backup");
    drop(db);

    // Damage: the store is refused.
    let log = dir.join("db");
    let len = std::fs::metadata(&log).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(len / 2).unwrap();
    assert!(Database::open(&dir).is_err());

    // Restore into a new directory: every write up to the backup's revision.
    let restored = Database::open(&root.join("restored")).unwrap();
    let tenants = restored.restore(&mut backup.as_slice()).unwrap();
    assert_eq!(tenants, ["empty", "t"]);
    let got = state(&restored);
    assert_eq!(got.tenants, ["empty", "t"]);
    assert_eq!(got.schema.as_deref(), Some(SCHEMA));
    assert_eq!(got.relationships, want);
    // Restoring over tenants that exist is refused.
    assert!(restored.restore(&mut backup.as_slice()).is_err());
    drop(restored);
    let _ = std::fs::remove_dir_all(&root);
}

/// A full file system (here a file size limit: `ulimit -f`, with SIGXFSZ ignored so writes fail
/// with EFBIG as on a full disk): the writer stops with a clear error, no panic, and the
/// directory then opens with every acknowledged write.
#[test]
fn a_full_file_system_stops_writes_and_keeps_what_was_acknowledged() {
    use std::io::BufRead;
    let dir = super::store::temp_dir("full");
    let script = format!(
        "trap '' XFSZ; ulimit -f 8192; exec '{}' debug crash-writer --data-dir '{}'",
        env!("CARGO_BIN_EXE_pemba"),
        dir.display()
    );
    let out = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "the writer ends with an error: {stderr}");
    assert!(
        stderr.to_lowercase().contains("file too large") && !stderr.contains("panicked") && !stderr.contains("Os {"),
        "a clear error in the system's words: {stderr}"
    );
    let acked: u64 = out
        .stdout
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.strip_prefix("ack ").and_then(|r| r.parse().ok()))
        .max()
        .unwrap();
    assert!(acked > 10, "it wrote for a while before the limit");
    let db = Database::open(&dir).unwrap();
    assert!(db.revision("t").unwrap().0 >= acked);
    let mut rels = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let filter = RelationshipFilter::default();
        let (page, _) =
            db.read_relationships("t", Consistency::FullyConsistent, &filter, 10_000, after.as_deref()).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(pemba::store::relationship_key);
        rels.extend(page);
    }
    for b in 2..=acked {
        let n = rels.iter().filter(|r| r.resource.id.starts_with(&format!("b{b}_"))).count();
        assert_eq!(n, 5, "acknowledged batch {b}");
    }
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}
