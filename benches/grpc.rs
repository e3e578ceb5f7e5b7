//! What's measured: the gRPC front door over loopback, in one process (server and client share
//! the tokio runtime; two worker threads, as on the 2-core machine). The generated Drive data
//! set at size S (about 50k relationships) is served as tenant `bench`.
//!
//! - `grpc/health`: `grpc.health.v1.Health/Check`, the floor: a round trip with no database work.
//! - `grpc/check_warm/<probe>`: CheckPermission of one probe, repeated.
//! - `grpc/check_cold`: CheckPermission cycling through 100 distinct requests (the CheckBulk set).
//! - `inprocess/check_inline` and `inprocess/check_spawn_blocking`: the same cold Checks called on
//!   the database directly, on a runtime thread and through `spawn_blocking`, which prices the
//!   thread hop a Check does not take (Check runs inline; lookups, reads and writes hop).
//!
//! Run with: `cargo bench --bench grpc`

// A benchmark may unwrap and index: a failure there stops the benchmark, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

/// The allocator the `pemba` binary runs with (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use pemba::bench::workload::{self, DriveSize};
use pemba::db::Consistency;
use pemba::engine::CheckRequest;
use pemba::server::proto::authzed::api::v1 as api;
use pemba::server::{self, Config};
use tonic::Request;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

fn to_wire(r: &CheckRequest) -> api::CheckPermissionRequest {
    let object =
        |o: &pemba::model::ObjectRef| api::ObjectReference { object_type: o.ty.clone(), object_id: o.id.clone() };
    let context = (!r.context.is_empty()).then(|| prost_types::Struct {
        fields: r
            .context
            .iter()
            .map(|(k, v)| {
                let kind = match v {
                    serde_json::Value::String(s) => prost_types::value::Kind::StringValue(s.clone()),
                    serde_json::Value::Number(n) => prost_types::value::Kind::NumberValue(n.as_f64().unwrap()),
                    serde_json::Value::Bool(b) => prost_types::value::Kind::BoolValue(*b),
                    other => panic!("context value {other} is not used by the probes"),
                };
                (k.clone(), prost_types::Value { kind: Some(kind) })
            })
            .collect(),
    });
    api::CheckPermissionRequest {
        consistency: Some(api::Consistency { requirement: Some(api::consistency::Requirement::MinimizeLatency(true)) }),
        resource: Some(object(&r.resource)),
        permission: r.permission.clone(),
        subject: Some(api::SubjectReference {
            object: Some(object(&r.subject.object)),
            optional_relation: r.subject.relation.clone().unwrap_or_default(),
        }),
        context,
        with_tracing: false,
    }
}

fn keyed<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("authorization", "Bearer key-bench".parse().unwrap());
    r
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("pemba-bench-grpc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let size = DriveSize::small();
    let drive = workload::generate(size);
    pemba::bench::load_store(&dir, &drive.relationships).unwrap();
    let config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.clone(),
        keys: vec![("bench".into(), "key-bench".into())],
        admin_key: None,
        tls: None,
        default_deadline: Duration::from_secs(10),
        slow_request: Duration::from_secs(1),
        limits: Default::default(),
    };
    // sled's threads may hold the directory's lock a moment after the import closed it.
    let prepared = (0..200)
        .find_map(|_| match server::prepare(&config) {
            Ok(p) => Some(p),
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                None
            }
        })
        .expect("the store opens");
    let db = prepared.db.clone();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = rt.spawn(server::serve(
        prepared.db,
        prepared.keys,
        listener,
        None,
        Duration::from_secs(10),
        Duration::from_secs(1),
        async {
            let _ = stopped.await;
        },
    ));
    let channel = rt.block_on(async {
        for _ in 0..100 {
            if let Ok(c) = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the server did not come up")
    });
    let mut health = HealthClient::new(channel.clone());
    let mut perms = api::permissions_service_client::PermissionsServiceClient::new(channel);

    c.bench_function("grpc/health", |b| {
        b.iter(|| {
            rt.block_on(health.check(HealthCheckRequest { service: String::new() })).unwrap();
        })
    });

    let mut group = c.benchmark_group("grpc/check_warm");
    for p in &drive.probes {
        let wire = to_wire(&p.request());
        use api::check_permission_response::Permissionship as P;
        let want = if p.expected { P::HasPermission } else { P::NoPermission } as i32;
        let got = rt.block_on(perms.check_permission(keyed(wire.clone()))).unwrap().into_inner().permissionship;
        assert_eq!(got, want, "probe {}", p.name);
        group.bench_function(p.name, |b| {
            b.iter(|| black_box(rt.block_on(perms.check_permission(keyed(wire.clone()))).unwrap()))
        });
    }
    group.finish();

    let bulk = workload::bulk_requests(size);
    let wire: Vec<_> = bulk.iter().map(to_wire).collect();
    let mut i = 0;
    c.bench_function("grpc/check_cold", |b| {
        b.iter(|| {
            i = (i + 1) % wire.len();
            black_box(rt.block_on(perms.check_permission(keyed(wire[i].clone()))).unwrap())
        })
    });

    let latest = Consistency::MinimizeLatency;
    let mut group = c.benchmark_group("inprocess");
    let mut i = 0;
    group.bench_function("check_inline", |b| {
        b.iter(|| {
            i = (i + 1) % bulk.len();
            let (db, req) = (db.clone(), bulk[i].clone());
            rt.block_on(async move { black_box(db.check("bench", latest, &req).unwrap()) })
        })
    });
    let mut i = 0;
    group.bench_function("check_spawn_blocking", |b| {
        b.iter(|| {
            i = (i + 1) % bulk.len();
            let (db, req) = (db.clone(), bulk[i].clone());
            rt.block_on(async move {
                black_box(tokio::task::spawn_blocking(move || db.check("bench", latest, &req).unwrap()).await.unwrap())
            })
        })
    });
    group.finish();

    let _ = stop.send(());
    rt.block_on(done).unwrap().unwrap();
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
