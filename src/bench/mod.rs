//! The load tool behind `pemba bench …`: runs fixed queries on generated data, keeps every
//! latency, and reports medians and tails from its own histogram as one JSON object. Each run
//! also checks that every probe gets its known answer, so a fast wrong answer cannot pass.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

#[cfg(feature = "server")]
pub mod grpc;
pub mod workload;

use std::sync::Arc;

use self::workload::DriveSize;
use crate::conditions::Conditions;
use crate::db::{Consistency, Database, DbError, WriteRequest};
use crate::engine::cursor::CursorKey;
use crate::engine::lookup::{LookupResourcesRequest, OneRevision, Page, Reader, ResourceResult, lookup_resources};
use crate::engine::{self, CheckRequest, Ctx, Decision, Env, History, Tuples};
use crate::model::{Relationship, SubjectRef, Timestamp};
use crate::schema::{self, CompiledSchema};
use crate::store::{Mutation, RelationshipFilter, SledStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("the benchmark schema does not compile: {0}")]
    Schema(String),
    #[error("probe `{name}` answered {got}, expected {expected}")]
    WrongAnswer { name: String, got: String, expected: String },
    #[error("{0}")]
    Mismatch(String),
    #[error(transparent)]
    Eval(#[from] engine::EvalError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Process(String),
}

/// Latency summary of many samples.
pub fn summarize(samples: &mut [Duration]) -> Value {
    samples.sort();
    let pick = |q: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    json!({
        "samples": samples.len(),
        "p50_us": pick(0.5),
        "p99_us": pick(0.99),
        "p999_us": pick(0.999),
        "min_us": pick(0.0),
        "max_us": pick(1.0),
    })
}

fn time<T>(iterations: usize, mut f: impl FnMut() -> T) -> (Vec<Duration>, Option<T>) {
    let mut samples = Vec::with_capacity(iterations);
    let mut last = None;
    for _ in 0..iterations {
        let t = Instant::now();
        let out = f();
        samples.push(t.elapsed());
        last = Some(out);
    }
    (samples, last)
}

/// LookupResources of `document#view` for `subject`, every page of 1000 through `page`: how
/// many documents it found.
pub fn lookup_all_pages<E>(
    subject: &SubjectRef,
    mut page: impl FnMut(&LookupResourcesRequest) -> Result<Page<ResourceResult>, E>,
) -> Result<usize, E> {
    let mut req = LookupResourcesRequest {
        resource_type: "document".into(),
        permission: "view".into(),
        subject: subject.clone(),
        context: Map::new(),
        limit: Some(1000),
        cursor: None,
    };
    let mut found = 0;
    loop {
        let p = page(&req)?;
        found += p.items.len();
        match p.cursor {
            Some(c) => req.cursor = Some(c),
            None => return Ok(found),
        }
    }
}

/// LookupResources of `document#view` for each user, all pages of 1000, `samples` times each:
/// the latency summary and how many documents the user sees.
fn lookup_figures<E>(
    users: &[(&'static str, SubjectRef)],
    samples_per_user: usize,
    mut page: impl FnMut(&LookupResourcesRequest) -> Result<Page<ResourceResult>, E>,
) -> Result<Map<String, Value>, E> {
    let mut lookups = Map::new();
    for (name, subject) in users {
        let mut found = 0;
        let mut samples = Vec::new();
        for _ in 0..samples_per_user {
            let t = Instant::now();
            found = lookup_all_pages(subject, &mut page)?;
            samples.push(t.elapsed());
        }
        let mut summary = summarize(&mut samples);
        if let Some(m) = summary.as_object_mut() {
            m.insert("documents".into(), json!(found));
        }
        lookups.insert((*name).into(), summary);
    }
    Ok(lookups)
}

/// `pemba bench reference`: the reference evaluator on the Drive data set.
pub fn reference(size_name: &str, size: DriveSize, iterations: usize) -> Result<Value, BenchError> {
    let conditions = Conditions::new();
    let schema = drive_schema(&conditions)?;
    let gen_start = Instant::now();
    let drive = workload::generate(size);
    let generate_ms = gen_start.elapsed().as_secs_f64() * 1e3;
    let load_start = Instant::now();
    let mut tuples = Tuples::new();
    for r in &drive.relationships {
        tuples.insert(r.clone());
    }
    let load_ms = load_start.elapsed().as_secs_f64() * 1e3;
    let now = Timestamp::now();
    let ctx = Ctx { schema: &schema, data: &tuples, conditions: &conditions, env: Env::new(now) };

    let mut checks = Map::new();
    for p in &drive.probes {
        let req = p.request();
        let (mut samples, last) = time(iterations, || engine::check(&ctx, &req));
        let got = last.transpose()?.unwrap_or(Decision::No);
        if (got == Decision::Has) != p.expected {
            return Err(BenchError::WrongAnswer {
                name: p.name.into(),
                got: got.to_string(),
                expected: p.expected.to_string(),
            });
        }
        checks.insert(p.name.into(), summarize(&mut samples));
    }

    let bulk = workload::bulk_requests(size);
    let (mut bulk_samples, _) = time(iterations.div_ceil(10).max(3), || engine::check_bulk(&ctx, &bulk));

    let history = History::new(tuples);
    let key = CursorKey::random();
    let reader = Reader { schema: &schema, conditions: &conditions, history: &history, key: &key, tenant: "" };
    let lookups = lookup_figures(&drive.lookup_users, 3, |req| lookup_resources(&reader, req, now))?;

    Ok(json!({
        "evaluator": "reference",
        "size": size_name,
        "relationships": drive.relationships.len(),
        "iterations": iterations,
        "generate_ms": generate_ms,
        "load_ms": load_ms,
        "check": checks,
        "check_bulk_100": summarize(&mut bulk_samples),
        "lookup_resources_all_pages_1000": lookups,
        "machine": machine(),
    }))
}

fn drive_schema(conditions: &Conditions) -> Result<CompiledSchema, BenchError> {
    schema::compile_text(workload::DRIVE_SCHEMA, conditions)
        .map_err(|d| BenchError::Schema(schema::diagnostic::render_all(&d, "drive.zed", workload::DRIVE_SCHEMA)))
}

/// What the figures were measured on, and how busy the machine was (its load averages over 1,
/// 5 and 15 minutes when the figures were taken).
pub fn machine() -> Value {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    let load: Vec<f64> = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default();
    json!({"cpus": cpus, "cpu": model, "os": std::env::consts::OS, "load_average": load})
}

/// `pemba bench store`: durable writes, batches, bulk import against raw sled, and reopen time,
/// in a scratch directory under `dir`.
pub fn store(dir: &std::path::Path, reopen_size: DriveSize, iterations: usize) -> Result<Value, BenchError> {
    let _ = std::fs::remove_dir_all(dir);
    let schema = workload::DRIVE_SCHEMA;
    let small = workload::generate(DriveSize::small()).relationships;

    // Durable writes through the Database (validation, store, flush, visibility), on two
    // databases in turn: the default (power-loss durable: fsync before the acknowledgement)
    // and `Durability::ProcessCrash` (sled's flush alone), so both see the same machine.
    let open = |name: &str, durability| -> Result<Database, BenchError> {
        let limits = crate::db::Limits { durability, ..crate::db::Limits::default() };
        let db = Database::open_with(&dir.join(name), limits)?;
        db.create_tenant("bench")?;
        db.write_schema("bench", schema)?;
        Ok(db)
    };
    let synced = open("writes", crate::store::Durability::PowerLoss)?;
    let unsynced = open("writes_unsynced", crate::store::Durability::ProcessCrash)?;
    let (mut single, mut single_unsynced) = (Vec::with_capacity(iterations), Vec::with_capacity(iterations));
    for r in small.iter().take(iterations) {
        for (db, out) in [(&synced, &mut single), (&unsynced, &mut single_unsynced)] {
            let t = Instant::now();
            db.write("bench", WriteRequest::new(vec![Mutation::Touch(r.clone())]))?;
            out.push(t.elapsed());
        }
    }
    let (mut batches, mut batches_unsynced) = (Vec::new(), Vec::new());
    let chunks: Vec<&[Relationship]> = small.chunks(1000).skip(1).take(20).collect();
    for chunk in &chunks {
        for (db, out) in [(&synced, &mut batches), (&unsynced, &mut batches_unsynced)] {
            let t = Instant::now();
            db.write("bench", WriteRequest::new(chunk.iter().cloned().map(Mutation::Touch).collect()))?;
            out.push(t.elapsed());
        }
    }
    let rate = |b: &[Duration]| {
        let total: f64 = b.iter().map(Duration::as_secs_f64).sum();
        (chunks.iter().map(|c| c.len()).sum::<usize>() as f64) / total
    };
    let (batch_rate, batch_rate_unsynced) = (rate(&batches), rate(&batches_unsynced));
    drop(synced);
    drop(unsynced);

    // Bulk import of the large data set, as SpiceDB relationship text, through the Database
    // (parsed, validated, chunked, durable at the end) against raw sled writing the same rows
    // in fresh stores of the same run: in `apply_batch`es of the rows per revision (before and
    // after the import, as the machine may change under a long run; the ratio is against the
    // faster), and in one `apply_batch` of everything (last: it holds gigabytes).
    let big = workload::generate(reopen_size).relationships;
    let text: String = big.iter().map(|r| format!("{r}\n")).collect();
    // The import stores revisions of at most the write limit: sled batches of that size.
    let chunk = crate::db::Limits::default().max_relationships_per_write;
    let raw_run = |name: &str, chunk: usize| -> Result<f64, BenchError> {
        let store = SledStore::open(&dir.join(name))?;
        let t = Instant::now();
        store.raw_batch_baseline(&big, chunk)?;
        let s = t.elapsed().as_secs_f64();
        drop(store);
        let _ = std::fs::remove_dir_all(dir.join(name));
        Ok(s)
    };
    let raw_before = raw_run("raw_before", chunk)?;
    let db = Database::open_with(&dir.join("import"), crate::db::Limits::default())?;
    db.create_tenant("bench")?;
    db.write_schema("bench", schema)?;
    let rss_before = status_mb("VmRSS:");
    // The peak during the import alone: Linux resets the high-water mark on this write.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let t = Instant::now();
    let imported_at = db.import("bench", &mut text.as_bytes())?;
    let import = t.elapsed().as_secs_f64();
    let (rss_after, peak) = (status_mb("VmRSS:"), status_mb("VmHWM:"));
    let imported = db.snapshot("bench", crate::db::Consistency::FullyConsistent)?.index().relationship_count();
    db.close()?;
    let _ = std::fs::remove_dir_all(dir.join("import"));
    let raw_after = raw_run("raw_after", chunk)?;
    let raw = raw_before.min(raw_after);
    let raw_one = raw_run("raw_one_batch", big.len())?;

    // Reopen with many relationships: load them through the import path (revisions of 1,000),
    // close, time the open in a fresh process and in this one.
    let reopen_dir = dir.join("reopen");
    load_store(&reopen_dir, &big)?;
    let fresh_ms = fresh_process_open_ms(&reopen_dir)?;
    let t = Instant::now();
    let db = open_retrying(&reopen_dir)?;
    let reopen_ms = t.elapsed().as_secs_f64() * 1e3;
    let loaded = db.revision("bench")?;
    drop(db);
    let _ = std::fs::remove_dir_all(dir);

    Ok(json!({
        "store": "sled",
        "single_durable_write": summarize(&mut single),
        "batch_1000_durable": summarize(&mut batches),
        "batch_1000_relationships_per_s": batch_rate,
        "process_crash_durability_only": {
            "single_write": summarize(&mut single_unsynced),
            "batch_1000": summarize(&mut batches_unsynced),
            "batch_1000_relationships_per_s": batch_rate_unsynced,
        },
        "bulk_import": {
            "relationships": big.len(),
            "imported": imported,
            "revisions": imported_at.0,
            "chunk": crate::db::Limits::default().import_chunk,
            "rows_per_revision": chunk,
            "import_s": import,
            "import_relationships_per_s": big.len() as f64 / import,
            "rss_mb_before_peak_after": [rss_before, peak, rss_after],
            "raw_sled_chunked_s": [raw_before, raw_after],
            "raw_sled_chunked_relationships_per_s": big.len() as f64 / raw,
            "import_to_raw_chunked_ratio": raw / import,
            "raw_sled_one_batch_s": raw_one,
            "import_to_raw_one_batch_ratio": raw_one / import,
        },
        "reopen": {
            "relationships": big.len(),
            "head_revision": loaded.0,
            "open_ms_fresh_process": fresh_ms,
            "open_ms_in_this_process": reopen_ms,
        },
        "machine": machine(),
    }))
}

/// A memory figure of this process from `/proc/self/status` (`VmRSS:`, `VmHWM:`) in MB;
/// `None` off Linux.
fn status_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb as f64 / 1024.0)
}

/// Creates tenant `bench` in a new database at `dir` with the Drive schema and `rels`, through
/// the import path ([`Database::import_chunk`]), and closes it.
pub fn load_store(dir: &std::path::Path, rels: &[Relationship]) -> Result<(), BenchError> {
    let db = Database::open(dir)?;
    db.create_tenant("bench")?;
    db.write_schema("bench", workload::DRIVE_SCHEMA)?;
    for chunk in rels.chunks(db.limits().import_chunk.max(1)) {
        db.import_chunk("bench", chunk.iter().cloned().map(Mutation::Touch).collect())?;
    }
    db.close()?;
    Ok(())
}

/// How long `pemba debug open` takes to open `dir` in a new process (the running executable
/// must be `pemba`, which it is for `pemba bench`).
fn fresh_process_open_ms(dir: &std::path::Path) -> Result<f64, BenchError> {
    fresh_process_open(dir, None)?
        .get("open_ms")
        .and_then(Value::as_f64)
        .ok_or_else(|| BenchError::Process("`pemba debug open` printed no open_ms".into()))
}

/// What `pemba debug open` reports from a fresh process: open and close times, index memory,
/// and the process's resident memory once open.
fn fresh_process_open(dir: &std::path::Path, store_cache_mb: Option<u64>) -> Result<Value, BenchError> {
    let fail = |e: String| BenchError::Process(e);
    let exe = std::env::current_exe().map_err(|e| fail(e.to_string()))?;
    // sled's threads may hold the directory's lock a moment after the import closed it.
    for _ in 0..200 {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["debug", "open", "--data-dir"]).arg(dir);
        if let Some(mb) = store_cache_mb {
            cmd.args(["--store-cache-mb", &mb.to_string()]);
        }
        let out = cmd.output().map_err(|e| fail(format!("running `{}`: {e}", exe.display())))?;
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).map_err(|e| fail(e.to_string()));
        }
        if !String::from_utf8_lossy(&out.stderr).contains("lock") {
            return Err(fail(format!("`pemba debug open` failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(fail(format!("{} stayed locked", dir.display())))
}

/// Opens a database just closed in this process (sled's threads may hold the lock a moment).
pub(crate) fn open_retrying(dir: &std::path::Path) -> Result<Database, BenchError> {
    let mut last = None;
    for _ in 0..200 {
        match Database::open(dir) {
            Ok(db) => return Ok(db),
            Err(e) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    Err(last.map_or_else(|| BenchError::Process(format!("could not open {}", dir.display())), BenchError::Db))
}

/// `pemba bench index`: building the index graph from generated data: time, heap bytes (counted
/// from capacities) and bytes per relationship, and the closures it keeps.
pub fn index(size_name: &str, size: DriveSize) -> Value {
    let drive = workload::generate(size);
    let t = Instant::now();
    let g = crate::index::IndexGraph::build(&drive.relationships);
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    let bytes = g.heap_bytes();
    let closures: Map<String, Value> = g
        .closures()
        .map(|(ty, rel, c)| (format!("{ty}#{rel}"), json!({"updates": c.updates, "heap_bytes": c.heap_bytes()})))
        .collect();
    json!({
        "size": size_name,
        "relationships": drive.relationships.len(),
        "build_ms": build_ms,
        "heap_bytes": bytes,
        "bytes_per_relationship": bytes as f64 / drive.relationships.len().max(1) as f64,
        "heap_bytes_by_part": g.memory().iter().map(|(k, v)| ((*k).to_string(), json!(v))).collect::<Map<String, Value>>(),
        "updates": g.updates,
        "side_table_edges": g.side_len(),
        "closures": closures,
        "machine": machine(),
    })
}

/// The reference evaluator's own relationship set of a tenant's head, read back from the store
/// (not from the index: the baseline shares nothing with the fast path but the data).
fn reference_set(db: &Database, tenant: &str) -> Result<(Tuples, crate::model::Revision), BenchError> {
    let mut rels = Vec::new();
    let mut after: Option<String> = None;
    let mut rev = db.revision(tenant)?;
    loop {
        let consistency = Consistency::AtExactSnapshot(rev);
        let (page, at) =
            db.read_relationships(tenant, consistency, &RelationshipFilter::default(), 10_000, after.as_deref())?;
        rev = at;
        let full = page.len() == 10_000;
        after = page.last().map(crate::store::relationship_key);
        rels.extend(page);
        if !full {
            return Ok((Tuples::from_relationships(rels), rev));
        }
    }
}

/// `pemba bench embedded`: the embedded `Database` (with its index) on the Drive data set, next
/// to the reference evaluator on the same data in the same run.
pub fn embedded(
    size_name: &str,
    size: DriveSize,
    iterations: usize,
    dir: &std::path::Path,
) -> Result<Value, BenchError> {
    let _ = std::fs::remove_dir_all(dir);
    let drive = workload::generate(size);
    load_store(dir, &drive.relationships)?;
    // Start-up to ready as after a restart: a fresh `pemba` process opens the directory (this
    // process still holds the generated data, and sled may still be settling from the import).
    // The first open after the bulk import also settles sled's log; a restart later opens the
    // settled store. Both are reported; `startup_ms` is the second.
    let first_open_after_import_ms = fresh_process_open_ms(dir)?;
    let startup = fresh_process_open(dir, None)?;
    // The same open with sled's own default cache (1 GiB) and with a small one: what the cache
    // setting does to resident memory.
    let sled_default_cache = fresh_process_open(dir, Some(1024))?;
    let small_cache = fresh_process_open(dir, Some(16))?;
    let memory_after_open: Vec<Value> = [&startup, &sled_default_cache, &small_cache]
        .iter()
        .map(|v| {
            json!({
                "store_cache_mb": v.get("store_cache_mb"),
                "rss_mb": v.get("rss_mb"),
                "rss_mb_settled": v.get("rss_mb_settled"),
                "index_mb": v.get("index_mb"),
                "open_ms": v.get("open_ms"),
                "close_ms": v.get("close_ms"),
            })
        })
        .collect();
    let startup_ms = startup.get("open_ms").and_then(Value::as_f64).unwrap_or(0.0);
    let t = Instant::now();
    let db = open_retrying(dir)?;
    let reopen_in_process_ms = t.elapsed().as_secs_f64() * 1e3;
    let latest = Consistency::MinimizeLatency;

    // The reference evaluator's own relationship set, read back from the store (the database
    // serves from the index alone).
    let conditions = Conditions::new();
    let schema = drive_schema(&conditions)?;
    let t = Instant::now();
    let (tuples, loaded_rev) = reference_set(&db, "bench")?;
    let reference_load_ms = t.elapsed().as_secs_f64() * 1e3;
    let tuples = Arc::new(tuples);

    let mut checks = Map::new();
    for p in &drive.probes {
        let req = p.request();
        let (mut fast, last) = time(iterations, || db.check("bench", latest, &req));
        let got = last.transpose()?.map(|(d, _)| d).unwrap_or(Decision::No);
        let ctx = Ctx { schema: &schema, data: &*tuples, conditions: &conditions, env: Env::new(Timestamp::now()) };
        let (mut slow, last_ref) = time(iterations, || engine::check(&ctx, &req));
        let want = last_ref.transpose()?.unwrap_or(Decision::No);
        if got != want || (got == Decision::Has) != p.expected {
            return Err(BenchError::Mismatch(format!(
                "probe `{}`: indexed {got}, reference {want}, expected {}",
                p.name, p.expected
            )));
        }
        let fast = summarize(&mut fast);
        let slow = summarize(&mut slow);
        let p50 = |v: &Value| v.get("p50_us").and_then(Value::as_f64);
        let ratio = p50(&slow).unwrap_or(0.0) / p50(&fast).unwrap_or(1.0).max(1e-9);
        checks.insert(p.name.into(), json!({"indexed": fast, "reference": slow, "speedup_p50": ratio}));
    }

    // Cold: distinct Checks in the Drive mix, each asked once (as traffic asks), beside the
    // repeated probes above; and Checks on documents the index has never seen.
    let stream = |reqs: Vec<CheckRequest>, unseen: bool| -> Result<Value, BenchError> {
        let mut samples = Vec::with_capacity(reqs.len());
        for req in &reqs {
            let t = Instant::now();
            let answer = db.check("bench", latest, req);
            samples.push(t.elapsed());
            let (d, _) = answer?;
            if unseen && d != Decision::No {
                return Err(BenchError::Mismatch(format!("an unseen document was allowed: {}", req.resource)));
            }
        }
        Ok(summarize(&mut samples))
    };
    let cold = stream(workload::cold_checks(size, 20_000), false)?;
    let unseen = stream(workload::unseen_checks(size, 5_000), true)?;

    let bulk = workload::bulk_requests(size);
    // As many samples as each Check probe: a bulk call is about a hundred Checks' work, and ten
    // samples left its median to the machine's noise.
    let (mut bulk_samples, _) = time(iterations, || db.check_bulk("bench", latest, &bulk));
    let ctx = Ctx { schema: &schema, data: &*tuples, conditions: &conditions, env: Env::new(Timestamp::now()) };
    let (mut bulk_reference, _) = time(iterations, || engine::check_bulk(&ctx, &bulk));

    // Eleven samples of the fast path (milliseconds each), three of the reference (seconds). The
    // reference keeps no candidates between pages, so it answers in one page: its baseline
    // computes the candidates once, as the fast path's cache does.
    let lookups = lookup_figures(&drive.lookup_users, 11, |req| db.lookup_resources("bench", latest, req))?;
    let key = CursorKey::random();
    let one = OneRevision(loaded_rev, tuples.clone());
    let reader = Reader { schema: &schema, conditions: &conditions, history: &one, key: &key, tenant: "bench" };
    let lookups_reference = lookup_figures(&drive.lookup_users, 3, |req| {
        let unpaged = LookupResourcesRequest { limit: None, ..req.clone() };
        lookup_resources(&reader, &unpaged, Timestamp::now())
    })?;
    for (name, fast) in &lookups {
        let found = |v: &Value| v.get("documents").and_then(Value::as_u64);
        if found(fast) != lookups_reference.get(name).and_then(found) {
            return Err(BenchError::Mismatch(format!(
                "LookupResources `{name}`: the fast path and the reference found different numbers of documents"
            )));
        }
    }
    drop(one);
    // At M the reference set is over a GB: let it go before timing writes.
    drop(tuples);

    // Write to visible: a write returns once durable and visible; the next Check sees it.
    let probe =
        Relationship::parse("document:visible#viewer@user:writer").map_err(|e| BenchError::Mismatch(e.to_string()))?;
    let req = CheckRequest {
        resource: probe.resource.clone(),
        permission: "view".into(),
        subject: probe.subject.clone(),
        context: Map::new(),
    };
    let toggle = |i: usize| {
        if i.is_multiple_of(2) { Mutation::Touch(probe.clone()) } else { Mutation::Delete(probe.clone()) }
    };
    let mut visible = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        let rev = db.write("bench", WriteRequest::new(vec![toggle(i)]))?;
        let (d, at) = db.check("bench", Consistency::AtLeastAsFresh(rev), &req)?;
        visible.push(t.elapsed());
        if at < rev || (d == Decision::Has) != (i % 2 == 0) {
            return Err(BenchError::Mismatch("a write was not visible after it was acknowledged".into()));
        }
    }
    // The same with a reader running Checks all the while.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut under_reads = Vec::new();
    let mut reads = 0u64;
    std::thread::scope(|scope| -> Result<(), BenchError> {
        let reader = scope.spawn(|| {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = db.check("bench", latest, &req);
                n += 1;
            }
            n
        });
        let mut result = Ok(());
        for i in 0..20 {
            let t = Instant::now();
            match db.write("bench", WriteRequest::new(vec![toggle(i)])) {
                Ok(_) => under_reads.push(t.elapsed()),
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reads = reader.join().unwrap_or(0);
        result
    })?;

    let older = older_revisions(&db, &drive, loaded_rev, iterations)?;
    let memory: Map<String, Value> =
        db.index_memory("bench")?.into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let index_bytes: usize = memory.values().filter_map(Value::as_u64).map(|v| v as usize).sum();
    drop(db);
    let _ = std::fs::remove_dir_all(dir);
    Ok(json!({
        "size": size_name,
        "relationships": drive.relationships.len(),
        "startup_ms": startup_ms,
        // A fresh process after opening: resident memory next to the index's heap and sled's
        // configured cache; and how long `close()` took there.
        "memory_after_open": memory_after_open,
        "cold_checks_20000_distinct": cold,
        "unseen_document_checks_5000": unseen,
        "first_open_after_import_ms": first_open_after_import_ms,
        "reopen_in_this_process_ms": reopen_in_process_ms,
        "reference_set_load_ms": reference_load_ms,
        "check": checks,
        "check_bulk_100_indexed": summarize(&mut bulk_samples),
        "check_bulk_100_reference": summarize(&mut bulk_reference),
        "lookup_resources_all_pages_1000": lookups,
        "lookup_resources_reference_unpaged": lookups_reference,
        "write_to_visible": summarize(&mut visible),
        "write_to_visible_under_reads": summarize(&mut under_reads),
        "checks_during_those_writes": reads,
        "older_revisions": older,
        "index_heap_bytes": memory,
        "index_bytes_per_relationship": index_bytes as f64 / drive.relationships.len().max(1) as f64,
        "machine": machine(),
    }))
}

/// Reads at revisions before the head: exact-snapshot Checks at a revision many writes old
/// (whose view a lookup cache entry keeps), at one nothing keeps (built from the store once,
/// then kept), at the revision just before the head (kept since its write) and at the head; and
/// the next page of a lookup after writes moved the head on, next to the same at the head.
fn older_revisions(
    db: &Database,
    drive: &workload::Drive,
    old: crate::model::Revision,
    iterations: usize,
) -> Result<Value, BenchError> {
    let probe = drive.probes.first().map(|p| p.request()).ok_or_else(|| BenchError::Mismatch("no probes".into()))?;
    let head = db.revision("bench")?;
    let exact = |rev| Consistency::AtExactSnapshot(rev);
    // `old` is the revision the lookups above read (their cache entries keep its view); the one
    // before it (before the last import batch) nothing keeps: it is built from the store.
    let (first, at) = db.check("bench", exact(old), &probe)?;
    if at != old {
        return Err(BenchError::Mismatch(format!("an exact-snapshot Check at {old} answered at {at}")));
    }
    let (mut old_samples, _) = time(iterations, || db.check("bench", exact(old), &probe));
    let built = old.back(1);
    let t = Instant::now();
    db.check("bench", exact(built), &probe)?;
    let built_first_ms = t.elapsed().as_secs_f64() * 1e3;
    let (mut built_samples, _) = time(iterations, || db.check("bench", exact(built), &probe));
    let (mut recent_samples, _) = time(iterations, || db.check("bench", exact(head.back(1)), &probe));
    let (mut head_samples, last) = time(iterations, || db.check("bench", exact(head), &probe));
    let now = last.transpose()?.map(|(d, _)| d);
    if now != Some(first.clone()) {
        return Err(BenchError::Mismatch(format!("the probe answered {first} at {old} and {now:?} at the head")));
    }
    // The second page of a lookup of 1000 a page: at the head, and after three writes.
    let staff =
        drive.lookup_users.first().map(|(_, s)| s.clone()).ok_or_else(|| BenchError::Mismatch("no users".into()))?;
    let first_page = |db: &Database| -> Result<LookupResourcesRequest, BenchError> {
        let mut req = LookupResourcesRequest {
            resource_type: "document".into(),
            permission: "view".into(),
            subject: staff.clone(),
            context: Map::new(),
            limit: Some(1000),
            cursor: None,
        };
        req.cursor = db.lookup_resources("bench", Consistency::MinimizeLatency, &req)?.cursor;
        Ok(req)
    };
    let mut page_at_head = Vec::new();
    let mut page_older = Vec::new();
    let extra = Relationship::parse("document:older-page#viewer@user:writer")
        .map_err(|e| BenchError::Mismatch(e.to_string()))?;
    for i in 0..iterations.clamp(3, 50) {
        let req = first_page(db)?;
        let t = Instant::now();
        let page = db.lookup_resources("bench", Consistency::MinimizeLatency, &req)?;
        page_at_head.push(t.elapsed());
        let req = first_page(db)?;
        for j in 0..3 {
            let m = if (i + j) % 2 == 0 { Mutation::Touch(extra.clone()) } else { Mutation::Delete(extra.clone()) };
            db.write("bench", WriteRequest::new(vec![m]))?;
        }
        let t = Instant::now();
        let later = db.lookup_resources("bench", Consistency::MinimizeLatency, &req)?;
        page_older.push(t.elapsed());
        if later.items != page.items || later.revision == db.revision("bench")? {
            return Err(BenchError::Mismatch("a later page at an older revision differed".into()));
        }
    }
    Ok(json!({
        "head": head.0,
        "exact_snapshot_check_kept_by_lookup_cache": {"revision": old.0, "latency": summarize(&mut old_samples)},
        "exact_snapshot_check_built_from_store": {"revision": built.0, "first_ms": built_first_ms, "then": summarize(&mut built_samples)},
        "exact_snapshot_check_one_write_old": summarize(&mut recent_samples),
        "exact_snapshot_check_at_head": summarize(&mut head_samples),
        "second_lookup_page_at_head": summarize(&mut page_at_head),
        "second_lookup_page_after_3_writes": summarize(&mut page_older),
    }))
}
