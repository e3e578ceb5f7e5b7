//! Mutation fuzzing of every text input, seeded from SpiceDB's validation files (the
//! conformance corpus) and this repository's example schemas: schema text, relationship text,
//! validation files, caveat context and rhai bodies. Each mutant must be handled without a
//! panic or a hang, and where a property is known it is checked (schema `fmt` keeps the tree,
//! the comments and the verdict and is idempotent; a relationship's text round-trips; a context
//! value refused for its type never evaluates to true).
//!
//! Cases per target: `PEMBA_FUZZ_CASES` (default 1,500, what CI runs); `PEMBA_FUZZ_SEED` picks
//! another sequence. A failing mutant is written under `target/fuzz-failures/`.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use pemba::conditions::{Conditions, Env, Outcome};
use pemba::model::{ParamType, Relationship, Timestamp};
use pemba::schema::syntax::SyntaxTree;

use pemba::bench::workload::Rng;

/// One of `items`, chosen by `rng`.
fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.below(items.len())]
}

/// Fragments a mutation inserts: the languages' own punctuation and keywords, and what broke
/// parsers before (a no-break space, a byte-order mark, unbalanced quotes and comments).
const DICTIONARY: &[&str] = &[
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    "<",
    ">",
    ":",
    "#",
    "@",
    "|",
    "+",
    "&",
    "-",
    "->",
    ".",
    ",",
    "=",
    "*",
    ";",
    "\"",
    "'",
    "`",
    "${",
    "\\",
    "/*",
    "*/",
    "//",
    "\n",
    "\r\n",
    "\t",
    " ",
    "\u{a0}",
    "\u{feff}",
    "\u{200b}",
    "é",
    "nil",
    "definition",
    "relation",
    "permission",
    "caveat",
    "attribute",
    "use",
    "expiration",
    "with",
    "and",
    "any(",
    "all(",
    "user:*",
    "#member",
    "1e309",
    "-9223372036854775808",
    "18446744073709551616",
    "NaN",
    "true",
    "null",
    "{\"a\": [",
    "2025-13-40T25:61:00Z",
    "- ",
    ": |",
    "&anchor",
    "*anchor",
    "!!binary",
    "? ",
    "---",
    "...",
];

/// One mutation of `text`: a byte flipped, a fragment inserted, a range deleted or repeated, a
/// piece of another seed spliced in, or the text cut.
fn mutate(rng: &mut Rng, text: &str, seeds: &[String]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let rounds = 1 + rng.below(2);
    for _ in 0..rounds {
        let at = rng.below(bytes.len() + 1);
        // Weighted: inserts most, cuts least (a cut text mostly stops at the first stage).
        match rng.below(20) {
            0..=3 if !bytes.is_empty() => {
                let i = at.min(bytes.len() - 1);
                bytes[i] ^= 1 << rng.below(8);
            }
            4..=10 => {
                let piece = pick(rng, DICTIONARY).as_bytes().to_vec();
                bytes.splice(at..at, piece);
            }
            11..=13 => {
                let end = (at + 1 + rng.below(40)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            14..=15 => {
                let end = (at + 1 + rng.below(30)).min(bytes.len());
                let piece = bytes[at.min(end)..end].to_vec();
                for _ in 0..1 + rng.below(50) {
                    bytes.splice(at..at, piece.iter().copied());
                }
            }
            16 => {
                // White space or a comment where there was white space: text that parsed
                // still parses (what `fmt` must keep).
                let spaces: Vec<usize> = (0..bytes.len()).filter(|i| bytes[*i].is_ascii_whitespace()).collect();
                if !spaces.is_empty() {
                    let i = *pick(rng, &spaces);
                    let trivia = *pick(rng, &[" /* c */ ", "\n// c\n", "\n\n", "\t", " //\n", "\n   /*\n * d\n */\n"]);
                    bytes.splice(i..i, trivia.bytes());
                }
            }
            17 => {
                // A word replaced by another word of the seeds (names, keywords, values).
                let words: Vec<(usize, usize)> = word_spans(&bytes);
                let other = pick(rng, seeds).as_bytes().to_vec();
                let others = word_spans(&other);
                if !words.is_empty() && !others.is_empty() {
                    let (a, b) = *pick(rng, &words);
                    let (c, d) = *pick(rng, &others);
                    bytes.splice(a..b, other[c..d].iter().copied());
                }
            }
            18 => {
                let other = pick(rng, seeds).as_bytes();
                let from = rng.below(other.len() + 1);
                let end = (from + rng.below(200)).min(other.len());
                bytes.splice(at..at, other[from..end].iter().copied());
            }
            _ => bytes.truncate(at),
        }
        bytes.truncate(256 * 1024);
    }
    // Mostly text (the readers reject invalid UTF-8 before the parsers see it; that is tested
    // on its own), sometimes repaired lossily so odd characters reach the parsers.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The spans of runs of letters, digits and `_`.
fn word_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, b) in bytes.iter().chain(std::iter::once(&b' ')).enumerate() {
        match (start, b.is_ascii_alphanumeric() || *b == b'_') {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    out
}

struct Corpus {
    files: Vec<String>,
    schemas: Vec<String>,
    relationships: Vec<String>,
    checks: Vec<String>,
    bodies: Vec<(Vec<(String, ParamType)>, String)>,
}

fn corpus() -> Corpus {
    let mut files: Vec<String> =
        super::conformance_files().iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    let mut schemas = Vec::new();
    for e in std::fs::read_dir(examples).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        if p.extension().is_some_and(|x| x == "zed") {
            schemas.push(text);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            files.push(text);
        }
    }
    let (mut relationships, mut checks, mut bodies) = (Vec::new(), Vec::new(), Vec::new());
    let conditions = Conditions::new();
    for f in &files {
        let Ok(v) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(f) else { continue };
        if let Some(s) = v.get("schema").and_then(|s| s.as_str()) {
            schemas.push(s.to_string());
        }
        if let Some(r) = v.get("relationships").and_then(|s| s.as_str()) {
            relationships.extend(r.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from));
        }
        if let Some(a) = v.get("assertions") {
            for kind in ["assertTrue", "assertFalse", "assertCaveated"] {
                for c in a.get(kind).and_then(|l| l.as_sequence()).into_iter().flatten() {
                    checks.extend(c.as_str().map(String::from));
                }
            }
        }
    }
    for s in &schemas {
        if let Ok(compiled) = pemba::schema::compile_text(s, &conditions) {
            let (ast, _) = pemba::schema::parser::parse(s);
            for item in &ast.items {
                if let pemba::schema::ast::Item::Caveat(c) = item {
                    let params = c.params.iter().map(|(n, t)| (n.text.clone(), t.ty.clone())).collect();
                    bodies.push((params, c.body.clone()));
                }
            }
            let _ = compiled;
        }
    }
    assert!(!schemas.is_empty() && !relationships.is_empty() && !bodies.is_empty());
    Corpus { files, schemas, relationships, checks, bodies }
}

fn cases() -> usize {
    std::env::var("PEMBA_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1500)
}

fn seed() -> u64 {
    std::env::var("PEMBA_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5EED)
}

/// Runs `check` on `cases` mutants of the seeds; a panic, a property failure or a case slower
/// than a hang's bound fails the test after writing the input out.
fn fuzz(target: &str, seeds: &[String], salt: u64, check: &dyn Fn(&str, usize) -> Result<bool, String>) {
    let mut rng = Rng(seed() ^ salt);
    let (mut slowest, mut slowest_len, mut accepted) = (Duration::ZERO, 0, 0);
    let n = cases();
    for case in 0..n {
        let from = rng.below(seeds.len());
        let input = mutate(&mut rng, &seeds[from], seeds);
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| check(&input, from)));
        let took = started.elapsed();
        if took > slowest {
            (slowest, slowest_len) = (took, input.len());
        }
        let problem = match outcome {
            Err(_) => Some("panicked".to_string()),
            Ok(Err(why)) => Some(why),
            // A hang detector, not a speed claim: each input is a few KiB.
            Ok(Ok(_)) if took > Duration::from_secs(20) => Some(format!("took {took:?}")),
            Ok(Ok(deep)) => {
                accepted += usize::from(deep);
                None
            }
        };
        if let Some(why) = problem {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("{target}-{case}.txt"));
            std::fs::write(&path, &input).unwrap();
            panic!("{target} case {case}: {why}; input written to {}", path.display());
        }
    }
    eprintln!(
        "fuzz {target}: {n} cases, {accepted} accepted by the first stage, slowest {slowest:?} ({slowest_len} bytes)"
    );
}

#[test]
fn fuzz_schema_text() {
    let c = corpus();
    let conditions = Conditions::new();
    fuzz("schema", &c.schemas, 1, &|text, _| {
        let verdict = pemba::schema::compile_text(text, &conditions)
            .map(|_| ())
            .map_err(|d| d.into_iter().map(|d| d.message).collect::<Vec<_>>());
        let Ok((tree, ast)) = SyntaxTree::parse(text) else { return Ok(false) };
        if tree.full_text() != text {
            return Err("the syntax tree is not lossless".into());
        }
        let formatted = match pemba::schema::format_text(text) {
            Ok(f) => f,
            Err(d) if d[0].message.contains("over the limit") => return Ok(false),
            Err(d) => return Err(format!("fmt failed on text that parses: {:?}", d[0].message)),
        };
        let Ok((again_tree, again)) = SyntaxTree::parse(&formatted) else {
            return Err(format!("fmt output does not parse:\n{formatted}"));
        };
        let strip = |mut a: pemba::schema::ast::SchemaAst| {
            for item in &mut a.items {
                if let pemba::schema::ast::Item::Caveat(c) = item {
                    c.body = String::new();
                }
            }
            a.without_spans()
        };
        if strip(ast) != strip(again) {
            return Err(format!("fmt changed the tree:\n{formatted}"));
        }
        if tree.comments() != again_tree.comments() {
            return Err("fmt lost or moved a comment".into());
        }
        let after = pemba::schema::compile_text(&formatted, &conditions)
            .map(|_| ())
            .map_err(|d| d.into_iter().map(|d| d.message).collect::<Vec<_>>());
        if after.is_ok() != verdict.is_ok() {
            return Err(format!("fmt changed check's verdict: {verdict:?} → {after:?}"));
        }
        if pemba::schema::format_text(&formatted).ok().as_deref() != Some(formatted.as_str()) {
            return Err("fmt is not idempotent".into());
        }
        Ok(true)
    });
}

#[test]
fn fuzz_relationship_text() {
    let c = corpus();
    let mut seeds = c.relationships.clone();
    seeds.extend(c.checks.iter().cloned());
    fuzz("relationship", &seeds, 2, &|text, _| {
        let _ = pemba::validation::parse_check(text);
        let Ok(r) = Relationship::parse(text) else { return Ok(false) };
        let shown = r.to_string();
        match Relationship::parse(&shown) {
            Ok(again) if again == r => Ok(true),
            other => Err(format!("`{shown}` does not round-trip: {other:?}")),
        }
    });
}

#[test]
fn fuzz_validation_files() {
    let c = corpus();
    let conditions = Conditions::new();
    let now = Timestamp::now();
    let counter = std::cell::Cell::new(0usize);
    fuzz("validation", &c.files, 3, &|text, _| {
        counter.set(counter.get() + 1);
        let Ok(file) = pemba::validation::load_text(text, std::path::Path::new("."), "fuzz", &conditions) else {
            return Ok(false);
        };
        // The agreement checks on one case in ten, within a small budget.
        let agreement = counter.get().is_multiple_of(10).then_some(Duration::from_millis(500));
        let _ = pemba::validation::run_with(&file, &conditions, now, agreement);
        Ok(true)
    });
}

#[test]
fn fuzz_caveat_context_and_bodies() {
    let c = corpus();
    let conditions = Conditions::new();
    let empty = serde_json::Map::new();
    let env = Env { now: Timestamp::now(), resource: &empty, subject: &empty };
    // Contexts: JSON objects naming each body's parameters with values of every kind.
    let values = ["1", "-1", "1.5", "1e309", "\"1\"", "\"10.0.0.0/8\"", "true", "null", "[]", "{}", "[1,\"a\"]"];
    let mut rng = Rng(seed());
    let mut contexts = Vec::new();
    for (params, _) in &c.bodies {
        let fields: Vec<String> = params.iter().map(|(p, _)| format!("\"{p}\": {}", pick(&mut rng, &values))).collect();
        contexts.push(format!("{{{}}}", fields.join(", ")));
    }
    // The seed's index names the body a mutated context goes to.
    fuzz("context", &contexts, 4, &|ctx, i| {
        let (params, body) = &c.bodies[i];
        let Ok(serde_json::Value::Object(ctx)) = serde_json::from_str::<serde_json::Value>(ctx) else {
            return Ok(false);
        };
        let Ok(compiled) = conditions.compile("c", params, body) else { return Ok(false) };
        let refused = params.iter().any(|(p, ty)| ctx.get(p).is_some_and(|v| Conditions::check_value(v, ty).is_err()));
        match conditions.evaluate(&compiled, &ctx, &empty, env) {
            Ok(Outcome::True) if refused => Err("a context value refused for its type evaluated to true".into()),
            _ => Ok(true),
        }
    });
    let bodies: Vec<String> = c.bodies.iter().map(|(_, b)| b.clone()).collect();
    fuzz("rhai", &bodies, 5, &|body, i| {
        let params = &c.bodies[i].0;
        let Ok(serde_json::Value::Object(ctx)) = serde_json::from_str::<serde_json::Value>(&contexts[i]) else {
            return Ok(false);
        };
        let Ok(compiled) = conditions.compile("c", params, body) else { return Ok(false) };
        let _ = conditions.evaluate(&compiled, &ctx, &empty, env);
        Ok(true)
    });
}
