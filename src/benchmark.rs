//! The load tool behind `pemba bench …`: runs fixed queries on generated data, keeps every
//! latency, and reports medians and tails from its own histogram as one JSON object. Each run
//! also checks that every probe gets its known answer, so a fast wrong answer cannot pass.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::conditions::Conditions;
use crate::engine::cursor::CursorKey;
use crate::engine::lookup::{LookupResourcesRequest, Reader, lookup_resources};
use crate::engine::{self, CheckRequest, Decision, Env, History, Tuples};
use crate::model::{ObjectRef, SubjectRef, Timestamp};
use crate::schema;
use crate::workload::{self, DriveSize};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("the benchmark schema does not compile: {0}")]
    Schema(String),
    #[error("probe `{name}` answered {got}, expected {expected}")]
    WrongAnswer { name: String, got: String, expected: String },
    #[error(transparent)]
    Eval(#[from] engine::EvalError),
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
    json!({"samples": samples.len(), "p50_us": pick(0.5), "p99_us": pick(0.99), "min_us": pick(0.0), "max_us": pick(1.0)})
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

/// `pemba bench reference`: the reference evaluator on the Drive data set.
pub fn reference(size_name: &str, size: DriveSize, iterations: usize) -> Result<Value, BenchError> {
    let conditions = Conditions::new();
    let schema = schema::compile_text(workload::DRIVE_SCHEMA, &conditions).map_err(|d| BenchError::Schema(format!("{d:?}")))?;
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
    let env = Env::new(now);

    let mut checks = Map::new();
    for p in &drive.probes {
        let context = crate::model::parse_context(p.context).unwrap_or_default();
        let req = CheckRequest { resource: p.resource.clone(), permission: p.permission.into(), subject: p.subject.clone(), context };
        let (mut samples, last) = time(iterations, || engine::check(&schema, &tuples, &conditions, &req, env));
        let got = last.transpose()?.unwrap_or(Decision::No);
        if (got == Decision::Has) != p.expected {
            return Err(BenchError::WrongAnswer { name: p.name.into(), got: got.to_string(), expected: p.expected.to_string() });
        }
        checks.insert(p.name.into(), summarize(&mut samples));
    }

    // CheckBulk of 100 items: documents and users spread over the data set.
    let bulk: Vec<CheckRequest> = (0..100)
        .map(|i| CheckRequest {
            resource: ObjectRef::new("document", format!("d{}", (i * 7919) % size.documents.max(1))),
            permission: "view".into(),
            subject: SubjectRef::new(ObjectRef::new("user", format!("u{}", (i * 104_729) % size.users.max(1))), None),
            context: Map::new(),
        })
        .collect();
    let (mut bulk_samples, _) = time(iterations.div_ceil(10).max(3), || engine::check_bulk(&schema, &tuples, &conditions, &bulk, env));

    let history = History::new(tuples);
    let key = CursorKey::random();
    let reader = Reader { schema: &schema, conditions: &conditions, history: &history, key: &key, tenant: "" };
    let mut lookups = Map::new();
    for (name, subject) in &drive.lookup_users {
        let mut found = 0;
        let (mut samples, _) = time(3, || -> Result<(), BenchError> {
            let mut req = LookupResourcesRequest {
                resource_type: "document".into(),
                permission: "view".into(),
                subject: subject.clone(),
                context: Map::new(),
                limit: Some(1000),
                cursor: None,
            };
            found = 0;
            loop {
                let page = lookup_resources(&reader, &req, now)?;
                found += page.items.len();
                match page.cursor {
                    Some(c) => req.cursor = Some(c),
                    None => return Ok(()),
                }
            }
        });
        let mut summary = summarize(&mut samples);
        summary["documents"] = json!(found);
        lookups.insert((*name).into(), summary);
    }

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

/// What the figures were measured on.
pub fn machine() -> Value {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|m| m.trim().to_string()))
        .unwrap_or_default();
    json!({"cpus": cpus, "cpu": model, "os": std::env::consts::OS})
}
