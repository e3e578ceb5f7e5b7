//! What's measured: the fast evaluator (`index::eval`, what `Database` answers with) next to the
//! reference evaluator in the same process, on the generated Drive data set at size S (about
//! 50k relationships): Check for each probe (direct grant, 6 levels of groups, 8 levels of
//! folders, a denial, a rhai caveat), CheckBulk of 100 items, and LookupResources (all pages of
//! 1000) for a user who sees about 1,000 documents. Each group holds a `fast` and a `reference`
//! function, so the ratio comes from one run.
//!
//! Run with: `cargo bench --bench fast`

// A benchmark may unwrap and index: a failure there stops the benchmark, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

/// The allocator the `pemba` binary runs with (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pemba::conditions::Conditions;
use pemba::engine::cursor::CursorKey;
use pemba::engine::lookup::{Reader, ResultCache, lookup_resources};
use pemba::engine::{self, Env, History, Tuples};
use pemba::index::IndexGraph;
use pemba::model::{SubjectRef, Timestamp};
use pemba::workload::{self, DriveSize};

fn all_pages(reader: &Reader<'_>, subject: &SubjectRef, now: Timestamp) -> usize {
    pemba::benchmark::lookup_all_pages(subject, |req| lookup_resources(reader, req, now)).unwrap()
}

fn bench(c: &mut Criterion) {
    let conditions = Conditions::new();
    let schema = pemba::schema::compile_text(workload::DRIVE_SCHEMA, &conditions).unwrap();
    let size = DriveSize::small();
    let drive = workload::generate(size);
    let tuples = Tuples::from_relationships(drive.relationships.clone());
    // The fast path reads the index for everything, as `Database` does.
    let index = std::sync::Arc::new(IndexGraph::build(tuples.iter()));
    let env = Env::new(Timestamp::now());
    for p in &drive.probes {
        let req = p.request();
        let mut group = c.benchmark_group(format!("check/{}", p.name));
        group.bench_function("fast", |b| {
            b.iter(|| black_box(engine::check_fast(&schema, &*index, &index, &conditions, &req, env).unwrap()))
        });
        group.bench_function("reference", |b| {
            b.iter(|| black_box(engine::check(&schema, &tuples, &conditions, &req, env).unwrap()))
        });
        group.finish();
    }

    let bulk = workload::bulk_requests(size);
    let mut group = c.benchmark_group("check_bulk_100");
    group.bench_function("fast", |b| {
        b.iter(|| black_box(engine::check_bulk_fast(&schema, &*index, &index, &conditions, &bulk, env)))
    });
    group.bench_function("reference", |b| {
        b.iter(|| black_box(engine::check_bulk(&schema, &tuples, &conditions, &bulk, env)))
    });
    group.finish();

    let history = History::new(tuples.clone());
    let key = CursorKey::random();
    let cache = ResultCache::default();
    let reference = Reader {
        schema: &schema,
        conditions: &conditions,
        history: &history,
        key: &key,
        tenant: "",
        cache: None,
        index: None,
    };
    // The fast path pages through a result cache, as `Database` does.
    let indexed = pemba::engine::lookup::OneRevision(history.head().0, index.clone());
    let fast = Reader { history: &indexed, cache: Some(&cache), index: Some((history.head().0, &index)), ..reference };
    let (_, staff) = &drive.lookup_users[0];
    let mut group = c.benchmark_group("lookup_resources_all_pages/lr_staff");
    group.sample_size(10);
    // A fresh `now` per run, so no run reuses another's cached result.
    group.bench_function("fast", |b| b.iter(|| black_box(all_pages(&fast, staff, Timestamp::now()))));
    group.bench_function("reference", |b| b.iter(|| black_box(all_pages(&reference, staff, env.now))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
