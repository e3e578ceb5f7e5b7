//! What's measured: the durable store through the embedded `Database`: one relationship written
//! and flushed (the acknowledged-write latency), and a batch of 1000 written and flushed (compare
//! the two per relationship: the batch amortizes the flush). The raw-sled baseline for bulk
//! import is in `pemba bench store`, which runs both on the same rows in the same process.
//!
//! Run with: `cargo bench --bench store`

// A benchmark may unwrap and index: a failure there stops the benchmark, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

/// The allocator the `pemba` binary runs with (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pemba::bench::workload::{self, DriveSize};
use pemba::db::{Database, WriteRequest};
use pemba::store::Mutation;

fn bench(c: &mut Criterion) {
    let rels = workload::generate(DriveSize::small()).relationships;
    let dir = std::env::temp_dir().join(format!("pemba-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let durable = Database::open(&dir).unwrap();
    durable.create_tenant("bench").unwrap();
    durable.write_schema("bench", workload::DRIVE_SCHEMA).unwrap();
    let mut i = 0;
    c.bench_function("store/single_durable_write", |b| {
        b.iter(|| {
            i = (i + 1) % rels.len();
            black_box(durable.write("bench", WriteRequest::new(vec![Mutation::Touch(rels[i].clone())])).unwrap())
        })
    });
    let batch: Vec<Mutation> = rels.iter().take(1000).cloned().map(Mutation::Touch).collect();
    let mut group = c.benchmark_group("store/batch_1000");
    group.sample_size(20);
    group.bench_function("sled_durable", |b| {
        b.iter(|| black_box(durable.write("bench", WriteRequest::new(batch.clone())).unwrap()))
    });
    group.finish();
    drop(durable);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
