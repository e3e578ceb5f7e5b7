//! `pemba bench grpc`: a load generator against `pemba serve` (a child process on loopback),
//! where every figure is a ratio to a floor measured in the same run, since client and server
//! share the machine:
//! - closed loop (`--concurrency N`: N callers, each sending its next request when the last
//!   answered): the health check (the no-op floor) and CheckPermission on distinct requests
//!   (cold) over the Drive data; throughput and latency tails;
//! - open loop (`--rate R`): requests sent on a fixed schedule whatever the answers do, each
//!   timed from when it was due (no coordinated omission), for the floor and for Check;
//! - LookupResources for the user who sees the most documents, streamed to the end, against a
//!   floor that streams as many messages of the same size;
//! - WriteRelationships in batches of 1000 and ImportBulkRelationships, against the same work
//!   done on an embedded `Database` in this process.

use std::io::BufRead;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::workload::{self, DriveSize};
use super::{BenchError, load_store, machine};
use crate::db::{Database, WriteRequest};
use crate::engine::{CheckRequest, Decision};
use crate::model::{ObjectRef, Relationship, SubjectRef};
use crate::server::client::{Client, Endpoint, ReadAt, Tls, Update};
use crate::store::Mutation;

/// What to run.
#[derive(Debug, Clone)]
pub struct GrpcOptions {
    pub size_name: String,
    pub size: DriveSize,
    /// Scratch directory (removed afterwards).
    pub dir: std::path::PathBuf,
    /// Closed-loop concurrencies.
    pub concurrency: Vec<usize>,
    /// Open-loop rate; `None`: 10,000/s if the floor sustains it, else 70% of the floor's best.
    pub rate: Option<f64>,
    /// Seconds per closed- or open-loop measurement.
    pub seconds: f64,
    /// HTTP/2 connections the callers share.
    pub connections: usize,
}

const TENANT_KEY: &str = "key-bench";
const ADMIN_KEY: &str = "key-bench-admin";

fn fail(e: impl std::fmt::Display) -> BenchError {
    BenchError::Process(e.to_string())
}

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut v = v;
    for p in path {
        match v.get(p) {
            Some(x) => v = x,
            None => return 0.0,
        }
    }
    v.as_f64().unwrap_or(0.0)
}

/// `pemba serve` on the data directory, in a child process; ended with SIGTERM on drop.
struct Server {
    child: std::process::Child,
    addr: String,
    log: Option<std::thread::JoinHandle<String>>,
}

impl Server {
    fn start(data: &std::path::Path) -> Result<Server, BenchError> {
        let exe = std::env::current_exe().map_err(fail)?;
        let mut child = std::process::Command::new(exe)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(["--tenant", &format!("bench={TENANT_KEY}"), "--admin-key", ADMIN_KEY])
            .args(["--slow-request-ms", "3600000"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot start `pemba serve`: {e}")))?;
        let stderr = child.stderr.take().ok_or_else(|| fail("no stderr"))?;
        let mut log = std::io::BufReader::new(stderr);
        let mut seen = String::new();
        let addr = loop {
            let mut line = String::new();
            if log.read_line(&mut line).map_err(fail)? == 0 {
                let _ = child.kill();
                return Err(fail(format!("`pemba serve` exited before serving:\n{seen}")));
            }
            seen.push_str(&line);
            if line.contains(" serving")
                && let Some(rest) = line.split("addr=").nth(1)
            {
                break rest.split_whitespace().next().unwrap_or_default().to_string();
            }
        };
        let drain = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut log, &mut rest);
            rest
        });
        Ok(Server { child, addr, log: Some(drain) })
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> Result<(), BenchError> {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().map_err(fail)?;
        let log = self.log.take().and_then(|h| h.join().ok()).unwrap_or_default();
        if !status.success() {
            return Err(fail(format!("`pemba serve` exited with {status}:\n{log}")));
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.log.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Distinct Checks spread over the data set: each is asked once per pass (cold), never the
/// same one twice in a row.
fn cold_checks(size: DriveSize, n: usize) -> Vec<CheckRequest> {
    (0..n)
        .map(|i| CheckRequest {
            resource: ObjectRef::new("document", format!("d{}", (i * 7919 + 13) % size.documents.max(1))),
            permission: "view".into(),
            subject: SubjectRef::new(
                ObjectRef::new("user", format!("u{}", (i * 104_729 + 7) % size.users.max(1))),
                None,
            ),
            context: Map::new(),
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Call {
    Health,
    Check,
}

struct Load {
    clients: Vec<Client>,
    checks: Arc<Vec<CheckRequest>>,
}

impl Load {
    async fn one(&self, call: Call, i: usize) -> Result<(), BenchError> {
        let client = self.clients.get(i % self.clients.len().max(1)).ok_or_else(|| fail("no client"))?;
        match call {
            Call::Health => {
                if !client.health().await.map_err(fail)? {
                    return Err(fail("the server is not serving"));
                }
            }
            Call::Check => {
                let req = self.checks.get(i % self.checks.len().max(1)).ok_or_else(|| fail("no checks"))?;
                client.check(req, &ReadAt::MinimizeLatency).await.map_err(fail)?;
            }
        }
        Ok(())
    }

    /// N callers for `seconds`: throughput and latency tails.
    async fn closed(self: &Arc<Self>, call: Call, n: usize, seconds: f64) -> Result<Value, BenchError> {
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let started = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let load = self.clone();
            let next = next.clone();
            tasks.push(tokio::spawn(async move {
                let mut samples = Vec::new();
                while Instant::now() < until {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let t = Instant::now();
                    load.one(call, i).await?;
                    samples.push(t.elapsed());
                }
                Ok::<_, BenchError>(samples)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.map_err(fail)??);
        }
        let elapsed = started.elapsed().as_secs_f64();
        let mut v = super::summarize(&mut all);
        if let Value::Object(m) = &mut v {
            m.insert("requests".into(), json!(all.len()));
            m.insert("per_s".into(), json!(all.len() as f64 / elapsed));
        }
        Ok(v)
    }

    /// Requests due every 1/rate s for `seconds`, each timed from when it was due (a thread
    /// that sleeps to each due time sends them: tokio's timer would add up to a millisecond);
    /// at most `max_in_flight` outstanding (past that a due request is counted as not sent).
    async fn open(self: &Arc<Self>, call: Call, rate: f64, seconds: f64) -> Result<Value, BenchError> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let total = (rate * seconds) as usize;
        let max_in_flight = 20_000usize;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<Duration, BenchError>>();
        let handle = tokio::runtime::Handle::current();
        let load = self.clone();
        let start = Instant::now();
        let scheduler = std::thread::spawn(move || {
            let mut not_sent = 0usize;
            for i in 0..total {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if in_flight.load(Ordering::Relaxed) >= max_in_flight {
                    not_sent += 1;
                    continue;
                }
                in_flight.fetch_add(1, Ordering::Relaxed);
                let (load, tx, in_flight) = (load.clone(), tx.clone(), in_flight.clone());
                handle.spawn(async move {
                    let r = load.one(call, i).await.map(|()| due.elapsed());
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                    let _ = tx.send(r);
                });
            }
            not_sent
        });
        let mut samples = Vec::with_capacity(total);
        while let Some(r) = rx.recv().await {
            samples.push(r?);
        }
        let elapsed = start.elapsed().as_secs_f64();
        let not_sent = scheduler.join().map_err(|_| fail("the scheduler thread failed"))?;
        let mut v = super::summarize(&mut samples);
        if let Value::Object(m) = &mut v {
            m.insert("rate_per_s".into(), json!(rate));
            m.insert("answered".into(), json!(samples.len()));
            m.insert("not_sent_over_max_in_flight".into(), json!(not_sent));
            m.insert("answered_per_s".into(), json!(samples.len() as f64 / elapsed));
        }
        Ok(v)
    }
}

/// The embedded `Database` the server's writes are compared with: the same data, in this
/// process.
fn embedded_database(dir: &std::path::Path, data: &[Relationship]) -> Result<Database, BenchError> {
    load_store(dir, data)?;
    super::open_retrying(dir)
}

/// Relationships no generated data set holds: `document:{prefix}{i}#viewer@user:u{i % 97}`.
fn new_relationships(prefix: &str, n: usize) -> Vec<Relationship> {
    (0..n)
        .map(|i| Relationship {
            resource: ObjectRef::new("document", format!("{prefix}{i}")),
            relation: "viewer".into(),
            subject: SubjectRef::new(ObjectRef::new("user", format!("u{}", i % 97)), None),
            caveat: None,
            expiration: None,
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs the whole benchmark; one JSON object.
pub fn grpc(opts: &GrpcOptions) -> Result<Value, BenchError> {
    let dir = &opts.dir;
    let _ = std::fs::remove_dir_all(dir);
    let drive = workload::generate(opts.size);
    let data = dir.join("data");
    load_store(&data, &drive.relationships)?;
    let embedded = embedded_database(&dir.join("embedded"), &drive.relationships)?;

    let server = Server::start(&data)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(fail)?;
    let result = rt.block_on(run(opts, &drive, &server.addr, &embedded));
    drop(rt);
    server.stop()?;
    drop(embedded);
    let _ = std::fs::remove_dir_all(dir);
    let mut v = result?;
    if let Value::Object(m) = &mut v {
        m.insert("size".into(), json!(opts.size_name));
        m.insert("relationships".into(), json!(drive.relationships.len()));
        m.insert("machine".into(), machine());
    }
    Ok(v)
}

async fn run(
    opts: &GrpcOptions,
    drive: &workload::Drive,
    addr: &str,
    embedded: &Database,
) -> Result<Value, BenchError> {
    let endpoint = |token: &str| Endpoint { address: addr.to_string(), token: token.to_string(), tls: Tls::Plaintext };
    let mut clients = Vec::new();
    for _ in 0..opts.connections.max(1) {
        clients.push(Client::connect(&endpoint(TENANT_KEY)).await.map_err(fail)?);
    }
    let admin = Client::connect(&endpoint(ADMIN_KEY)).await.map_err(fail)?;
    let first = clients.first().cloned().ok_or_else(|| fail("no client"))?;
    // Known answers first: a fast wrong answer must not pass.
    for p in &drive.probes {
        let got = first.check(&p.request(), &ReadAt::FullyConsistent).await.map_err(fail)?;
        if (got.decision == Decision::Has) != p.expected {
            return Err(BenchError::WrongAnswer {
                name: p.name.into(),
                got: got.decision.to_string(),
                expected: p.expected.to_string(),
            });
        }
    }
    let load = Arc::new(Load { clients, checks: Arc::new(cold_checks(opts.size, 100_000)) });

    // Closed loop.
    let mut closed = Map::new();
    let mut best_floor = 0.0f64;
    for &n in &opts.concurrency {
        let floor = load.closed(Call::Health, n, opts.seconds).await?;
        let check = load.closed(Call::Check, n, opts.seconds).await?;
        best_floor = best_floor.max(num(&floor, &["per_s"]));
        let ratio = num(&check, &["per_s"]) / num(&floor, &["per_s"]).max(1e-9);
        closed.insert(
            format!("concurrency_{n}"),
            json!({"health_floor": floor, "check_cold": check, "check_to_floor_throughput": ratio, "target": 0.7, "met": ratio >= 0.7}),
        );
    }

    // Open loop at a rate the floor sustains.
    let rate = opts.rate.unwrap_or(if best_floor >= 10_000.0 / 0.7 { 10_000.0 } else { (best_floor * 0.7).floor() });
    let floor = load.open(Call::Health, rate, opts.seconds).await?;
    let check = load.open(Call::Check, rate, opts.seconds).await?;
    let p99_ratio = num(&check, &["p99_us"]) / num(&floor, &["p99_us"]).max(1e-9);
    let open = json!({
        "rate_per_s": rate,
        "health_floor": floor,
        "check_cold": check,
        "check_p99_to_floor_p99": p99_ratio,
        "target": 2.0,
        "met": p99_ratio <= 2.0,
    });

    // LookupResources for the user who sees the most documents, against the streaming floor.
    let mut lookup = Value::Null;
    let mut most = (0u64, None);
    for (name, who) in &drive.lookup_users {
        let s =
            first.lookup_resources_counted("document", "view", who, &ReadAt::MinimizeLatency).await.map_err(fail)?;
        if s.messages > most.0 {
            most = (s.messages, Some((*name, who.clone(), s)));
        }
    }
    if let (n, Some((name, who, sample))) = most {
        let template = sample.last.clone().unwrap_or_default();
        let (mut lookups, mut floors) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let t = Instant::now();
            let s = first
                .lookup_resources_counted("document", "view", &who, &ReadAt::MinimizeLatency)
                .await
                .map_err(fail)?;
            let secs = t.elapsed().as_secs_f64();
            if s.messages != n {
                return Err(fail(format!("LookupResources found {} documents, then {n}", s.messages)));
            }
            lookups.push(secs);
            let t = Instant::now();
            let f = admin.stream_floor(n as u32, &template).await.map_err(fail)?;
            floors.push(t.elapsed().as_secs_f64());
            if f.messages != n {
                return Err(fail("the floor streamed a different number of messages"));
            }
        }
        let (l, f) = (median(lookups), median(floors));
        let ratio = (n as f64 / l) / (n as f64 / f).max(1e-9);
        lookup = json!({
            "user": name,
            "results": n,
            "bytes_per_result": template.bytes(),
            "lookup_median_s": l,
            "lookup_results_per_s": n as f64 / l,
            "floor_median_s": f,
            "floor_results_per_s": n as f64 / f,
            "lookup_to_floor": ratio,
            "target": 0.5,
            "met": ratio >= 0.5,
        });
    }

    // Writes in batches of 1000, and ImportBulkRelationships, over the wire.
    // Writes and imports of batches of 1000, each over the wire and on the embedded database in
    // turn (so the machine's noise falls on both alike): 1000 / the median time of a batch.
    let batches = 30;
    let (mut wire_write, mut wire_import, mut local_write, mut local_import) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (gt, gi) = (new_relationships("gt", batches * 1000), new_relationships("gi", batches * 1000));
    let (et, ei) = (new_relationships("et", batches * 1000), new_relationships("ei", batches * 1000));
    for b in 0..batches {
        let range = b * 1000..(b + 1) * 1000;
        let (Some(gt), Some(gi), Some(et), Some(ei)) =
            (gt.get(range.clone()), gi.get(range.clone()), et.get(range.clone()), ei.get(range))
        else {
            break;
        };
        let updates: Vec<Update> = gt.iter().cloned().map(Update::Touch).collect();
        let t = Instant::now();
        first.write(&updates, None).await.map_err(fail)?;
        wire_write.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        embedded.write("bench", WriteRequest::new(et.iter().cloned().map(Mutation::Touch).collect()))?;
        local_write.push(t.elapsed().as_secs_f64());
        let chunk = gi.to_vec();
        let t = Instant::now();
        let loaded = first.import(std::iter::once(chunk)).await.map_err(fail)?;
        wire_import.push(t.elapsed().as_secs_f64());
        if loaded != 1000 {
            return Err(fail(format!("the import loaded {loaded} of 1000")));
        }
        let t = Instant::now();
        embedded.write("bench", WriteRequest::new(ei.iter().cloned().map(Mutation::Create).collect()))?;
        local_import.push(t.elapsed().as_secs_f64());
    }
    let per_s = |v: Vec<f64>| 1000.0 / median(v).max(1e-9);
    let (write, import) = (per_s(wire_write), per_s(wire_import));
    let (local_write, local_import) = (per_s(local_write), per_s(local_import));
    let write_ratio = write / local_write;
    let import_ratio = import / local_import;
    let writes = json!({
        "batches": batches,
        "write_batch_1000_relationships_per_s": write,
        "embedded_write_batch_1000_relationships_per_s": local_write,
        "write_to_embedded": write_ratio,
        "import_relationships_per_s": import,
        "embedded_import_creates_relationships_per_s": local_import,
        "import_to_embedded": import_ratio,
        "how": "1000 / the median time of a batch of 1000; wire and embedded batches alternate",
        "target": 0.7,
        "met": write_ratio >= 0.7 && import_ratio >= 0.7,
    });
    Ok(json!({
        "connections": opts.connections,
        "seconds_per_measurement": opts.seconds,
        "closed_loop": closed,
        "open_loop": open,
        "lookup_resources_streamed": lookup,
        "writes": writes,
    }))
}
