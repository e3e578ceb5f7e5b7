//! What's measured: the reference evaluator (the correctness oracle, not the fast path) on the
//! generated Drive data set at size S (about 50k relationships): Check for each probe (direct
//! grant, 6 levels of groups, 8 levels of folders, a denial, a rhai caveat), CheckBulk of 100
//! items, and LookupResources (all pages of 1000) for a user who sees about 1,000 documents.
//! These are the baseline the fast evaluator's figures are compared with.
//!
//! Run with: `cargo bench --bench reference`

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
use pemba::model::Timestamp;

fn bench(c: &mut Criterion) {
    let conditions = Conditions::new();
    let schema = pemba::schema::compile_text(workload::DRIVE_SCHEMA, &conditions).unwrap();
    let size = DriveSize::small();
    let drive = workload::generate(size);
    let mut tuples = Tuples::new();
    for r in &drive.relationships {
        tuples.insert(r.clone());
    }
    let env = Env::new(Timestamp::now());
    let ctx = Ctx { schema: &schema, data: &tuples, conditions: &conditions, env };
    let mut group = c.benchmark_group("reference/check");
    for p in &drive.probes {
        let req = p.request();
        group.bench_function(p.name, |b| b.iter(|| black_box(engine::check(&ctx, &req).unwrap())));
    }
    group.finish();

    let bulk = workload::bulk_requests(size);
    c.bench_function("reference/check_bulk_100", |b| b.iter(|| black_box(engine::check_bulk(&ctx, &bulk))));

    let history = History::new(tuples);
    let key = CursorKey::random();
    let reader = Reader { schema: &schema, conditions: &conditions, history: &history, key: &key, tenant: "" };
    let (_, staff) = &drive.lookup_users[0];
    let mut group = c.benchmark_group("reference/lookup_resources");
    group.sample_size(10);
    group.bench_function("lr_staff_all_pages", |b| {
        b.iter(|| {
            black_box(pemba::bench::lookup_all_pages(staff, |req| lookup_resources(&reader, req, env.now)).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
