//! SpiceDB's validation files (read from `../shared/conformance/spicedb`, never copied): every
//! schema compiles.

use pemba::conditions::Conditions;

#[test]
fn every_conformance_schema_compiles() {
    let files = super::conformance_files();
    if files.is_empty() {
        return;
    }
    assert_eq!(files.len(), 73, "expected SpiceDB's 73 validation files");
    let conditions = Conditions::new();
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let schema = doc.get("schema").and_then(|s| s.as_str()).unwrap();
        if let Err(diags) = pemba::schema::compile_text(schema, &conditions) {
            failures.push(pemba::schema::diagnostic::render_all(&diags, &path.display().to_string(), schema));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pemba_validate_passes_every_conformance_file() {
    let files = super::conformance_files();
    if files.is_empty() {
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pemba")).arg("validate").args(&files).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failures: Vec<&str> = stdout.lines().filter(|l| !l.contains(": ok (")).collect();
    assert!(out.status.success(), "{}\n{}", failures.join("\n"), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\nassertions: 411 passed, 0 failed\n"), "{stdout}");
    assert!(stdout.ends_with("\n73 passed, 0 failed\n"), "{stdout}");
}
