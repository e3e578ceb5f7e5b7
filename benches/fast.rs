//! What's measured: the fast path (a `query::Snapshot` of the index, what `Database` answers with) next to the
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
use pemba::bench::workload::{self, DriveSize};
use pemba::conditions::Conditions;
use pemba::engine::cursor::CursorKey;
use pemba::engine::lookup::{Reader, lookup_resources};
use pemba::engine::{self, Ctx, Env, History, Tuples};
use pemba::index::IndexGraph;
use pemba::model::Timestamp;
use pemba::query::Snapshot;

fn bench(c: &mut Criterion) {
    let conditions = Conditions::new();
    let schema = pemba::schema::compile_text(workload::DRIVE_SCHEMA, &conditions).unwrap();
    let size = DriveSize::small();
    let drive = workload::generate(size);
    let tuples = Tuples::from_relationships(drive.relationships.clone());
    // The fast path reads a snapshot of the index for everything, as `Database` does.
    let index = std::sync::Arc::new(IndexGraph::build(tuples.iter()));
    let env = Env::new(Timestamp::now());
    let snapshot = Snapshot::detached(schema.clone(), index, &conditions, env.now);
    let reference = Ctx { schema: &schema, data: &tuples, conditions: &conditions, env };
    for p in &drive.probes {
        let req = p.request();
        let mut group = c.benchmark_group(format!("check/{}", p.name));
        group.bench_function("fast", |b| b.iter(|| black_box(snapshot.check(&req).unwrap())));
        group.bench_function("reference", |b| b.iter(|| black_box(engine::check(&reference, &req).unwrap())));
        group.finish();
    }

    let bulk = workload::bulk_requests(size);
    let mut group = c.benchmark_group("check_bulk_100");
    group.bench_function("fast", |b| b.iter(|| black_box(snapshot.check_bulk(&bulk))));
    group.bench_function("reference", |b| b.iter(|| black_box(engine::check_bulk(&reference, &bulk))));
    group.finish();

    let history = History::new(tuples.clone());
    let key = CursorKey::random();
    let reader = Reader { schema: &schema, conditions: &conditions, history: &history, key: &key, tenant: "" };
    let (_, staff) = &drive.lookup_users[0];
    let mut group = c.benchmark_group("lookup_resources_all_pages/lr_staff");
    group.sample_size(10);
    // Later pages of one lookup reuse its first page's candidates (the snapshot's lookup
    // cache), as through `Database`; each run's first page computes them again.
    group.bench_function("fast", |b| {
        b.iter(|| black_box(pemba::bench::lookup_all_pages(staff, |req| snapshot.lookup_resources(req)).unwrap()))
    });
    group.bench_function("reference", |b| {
        b.iter(|| {
            black_box(pemba::bench::lookup_all_pages(staff, |req| lookup_resources(&reader, req, env.now)).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
