//! House rules checked by grep: each foreign crate is used only in its home module, every
//! source file opens with a `//!` paragraph, and the layers depend one way (the order
//! ARCHITECTURE.md states).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (crate, the paths under `src/` allowed to use it)
const HOMES: &[(&str, &[&str])] = &[
    ("rhai", &["src/conditions.rs"]),
    ("petgraph", &["src/scc.rs"]),
    ("clap", &["src/cli/"]),
    ("anyhow", &["src/cli/"]),
    ("serde_yaml_ng", &["src/validation/"]),
    ("sled", &["src/store/sled_store/"]),
    ("roaring", &["src/index/"]),
    ("tonic", &["src/server/"]),
    ("prost", &["src/server/"]),
    ("prost_types", &["src/server/"]),
    ("tower_layer", &["src/server/"]),
    ("tower_service", &["src/server/"]),
    ("tokio", &["src/server/", "src/cli/", "src/bench/grpc.rs"]),
    ("tracing", &["src/server/", "src/cli/"]),
    ("mimalloc", &["src/main.rs"]),
];

#[test]
fn foreign_crates_stay_in_their_home_module() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut offences = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(root()).unwrap().to_string_lossy().replace('\\', "/");
        let text = std::fs::read_to_string(file).unwrap();
        for (krate, homes) in HOMES {
            if homes.iter().any(|h| rel.starts_with(h)) {
                continue;
            }
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                let path_use = code
                    .match_indices(&format!("{krate}::"))
                    .any(|(i, _)| !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'));
                if path_use || code.contains(&format!("use {krate};")) {
                    offences.push(format!("{rel}:{}: uses `{krate}` outside {homes:?}", n + 1));
                }
            }
        }
    }
    assert!(offences.is_empty(), "{}", offences.join("\n"));
}

#[test]
fn every_source_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches"] {
        if root().join(dir).is_dir() {
            rust_files(&root().join(dir), &mut files);
        }
    }
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .map(|f| f.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a `//!` paragraph:\n{}", missing.join("\n"));
}

/// The layers, bottom first, as ARCHITECTURE.md states them: a module may use only itself and
/// the modules before it.
const LAYERS: &[&str] = &[
    "text",
    "model",
    "scc",
    "conditions",
    "schema",
    "store",
    "engine",
    "index",
    "query",
    "db",
    "server",
    "validation",
    "bench",
    "cli",
];

/// The crate modules a line of code names (`crate::x`, or `super::x` at the crate's top level).
fn named_modules(code: &str, top_level: bool) -> Vec<&'static str> {
    let mut out = Vec::new();
    for layer in LAYERS {
        for prefix in ["crate::", if top_level { "super::" } else { "crate::" }] {
            let needle = format!("{prefix}{layer}");
            for (i, _) in code.match_indices(&needle) {
                let before_ok = !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_');
                let after = &code[i + needle.len()..];
                let after_ok = !after.starts_with(|c: char| c.is_alphanumeric() || c == '_');
                if before_ok && after_ok {
                    out.push(*layer);
                }
            }
        }
    }
    out
}

#[test]
fn layers_depend_one_way() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut offences = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        let (module, top_level) = match rel.split_once('/') {
            Some((dir, _)) => (dir.to_string(), false),
            None => (rel.trim_end_matches(".rs").to_string(), true),
        };
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(own) = LAYERS.iter().position(|l| *l == module) else {
            offences.push(format!("src/{rel}: module `{module}` is in no layer: add it to LAYERS and ARCHITECTURE.md"));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for used in named_modules(code, top_level) {
                let theirs = LAYERS.iter().position(|l| *l == used).unwrap();
                if theirs > own {
                    offences.push(format!("src/{rel}:{}: `{module}` uses `{used}`, a layer above it", n + 1));
                }
            }
        }
    }
    assert!(offences.is_empty(), "{}", offences.join("\n"));
    // ARCHITECTURE.md states the same order.
    let order = LAYERS.join(" → ");
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    assert!(doc.contains(&order), "ARCHITECTURE.md does not state the layer order `{order}`");
}
