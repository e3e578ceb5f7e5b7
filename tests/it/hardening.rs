//! Input hardening (issue 16): each finding of the hostile probe, as a test that failed before
//! its fix.

use pemba::conditions::Conditions;
use pemba::schema::{compile_text, format_text};

fn verdict(text: &str) -> Result<(), Vec<String>> {
    compile_text(text, &Conditions::new()).map(|_| ()).map_err(|d| d.into_iter().map(|d| d.message).collect())
}

/// `fmt` re-indented the lines of a multi-line string in a caveat body: the string's value
/// changed, and an assertion flipped.
#[test]
fn fmt_keeps_multi_line_strings_in_caveats_byte_for_byte() {
    let text = "caveat banner(text string) {\n        text == `Welcome\n  to the\n        team`\n}\n";
    let out = format_text(text).unwrap();
    assert!(out.contains("`Welcome\n  to the\n        team`"), "{out}");
    // A `"…"` string continued with `\`: rhai skips the next line's white space up to the
    // string's opening column, so the line where it opens keeps its column.
    let text = "caveat c(s string) {\n            s == \"a\\\n               b\"\n}\n";
    let out = format_text(text).unwrap();
    assert!(out.contains("            s == \"a\\\n               b\""), "{out}");
}

/// `fmt` dropped comments inside statements (4 of 5 in a small file).
#[test]
fn fmt_keeps_every_comment_in_place() {
    let text = "definition user {}\ndefinition doc {\n  relation viewer: user /* who reads */ | user:*\n  permission view = viewer // direct\n    + /* or */ viewer\n  permission edit = viewer /* only */\n}\ncaveat c(x int /* count */) {\n  x > 1 // more than one\n}\n";
    let out = format_text(text).unwrap();
    for c in ["/* who reads */", "// direct", "/* or */", "/* only */", "/* count */", "// more than one"] {
        assert!(out.contains(c), "{c} lost:\n{out}");
    }
    assert_eq!(format_text(&out).unwrap(), out, "idempotent");
}

/// A trailing non-breaking space in a caveat body fails `check` (rhai rejects it); `fmt`
/// trimmed it, so a failing schema passed after formatting.
#[test]
fn fmt_keeps_the_check_verdict() {
    let text = "caveat c(x int) {\n  x == 1\u{a0}\n}\n";
    assert!(verdict(text).is_err());
    let out = format_text(text).unwrap();
    assert!(out.contains("x == 1\u{a0}"), "{out:?}");
    assert_eq!(verdict(&out), verdict(text));
}

/// `fmt` adds indentation: input under the 4 MiB limit could come out over it.
#[test]
fn fmt_never_turns_a_schema_within_the_limit_into_one_beyond_it() {
    let limit = pemba::schema::parser::MAX_SCHEMA_BYTES;
    let mut text = String::new();
    let mut i = 0;
    while text.len() + 64 < limit {
        text.push_str(&format!("definition d{i} {{relation r: d{i}}}\n"));
        i += 1;
    }
    assert!(text.len() <= limit);
    let err = format_text(&text).unwrap_err();
    assert!(err[0].message.contains("over the limit"), "{:?}", err[0].message);
    // Text that stays within the limit when formatted is formatted.
    let small = "definition a {relation r: a}";
    assert_eq!(format_text(small).unwrap(), "definition a {\n    relation r: a\n}\n");
}

fn pemba(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pemba")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// `schema check /dev/zero` read until memory ran out: limits applied after reading the whole
/// input. Reading stops at the limit now.
#[test]
fn inputs_are_read_within_their_limit() {
    let (code, err) = pemba(&["schema", "check", "/dev/zero"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`/dev/zero` is larger than the limit of 4194304 bytes"), "{err}");
    let (code, err) = pemba(&["validate", "/dev/zero"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("`/dev/zero` is larger than the limit"), "{err}");
    // An import line without end.
    let mut zero = std::io::BufReader::new(std::io::Read::take(std::fs::File::open("/dev/zero").unwrap(), 64 << 20));
    let dir = super::store::temp_dir("import-zero");
    let db = pemba::db::Database::open(&dir).unwrap();
    db.create_tenant("t").unwrap();
    let err = db.import("t", &mut zero).unwrap_err().to_string();
    assert!(err.contains("line 1") && err.contains("larger than the limit"), "{err}");
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

fn chain(documents: usize) -> String {
    let mut rels = String::new();
    for i in 1..documents {
        rels.push_str(&format!("  document:d{i}#parent@document:d{}\n", i - 1));
    }
    rels.push_str("  document:d0#viewer@user:ann\n");
    format!(
        "schema: |\n  definition user {{}}\n  definition document {{\n    relation parent: document\n    relation viewer: user\n    permission view = viewer + parent->view\n  }}\nrelationships: |\n{rels}assertions:\n  assertTrue:\n    - document:d{}#view@user:ann\n",
        documents - 1
    )
}

/// A chain of 500 documents ran the agreement checks for 73 s before failing on the triple
/// limit, which could be known up front; 5,000 ran past 10 minutes.
#[test]
fn agreement_checks_are_sized_before_they_start_and_run_within_a_budget() {
    use pemba::validation;
    let conditions = Conditions::new();
    let now = pemba::model::Timestamp::now();
    for documents in [500, 5000] {
        let file = validation::load_text(&chain(documents), std::path::Path::new("."), "chain", &conditions).unwrap();
        let report = validation::run_with(&file, &conditions, now, Some(validation::agreement::DEFAULT_BUDGET));
        assert_eq!(report.agreement_checks, 0, "refused before any check");
        let detail = &report.failures.last().unwrap().detail;
        assert!(detail.contains("would generate") && detail.contains("the limit is 200000"), "{detail}");
        assert_eq!(report.assertions_passed, 1, "the assertions still run");
    }
    // Under the triple limit, the time budget stops the checks and says so.
    let file = validation::load_text(&chain(40), std::path::Path::new("."), "chain", &conditions).unwrap();
    let report = validation::run_with(&file, &conditions, now, Some(std::time::Duration::ZERO));
    let detail = &report.failures.last().unwrap().detail;
    assert!(detail.contains("the time budget of 0 s ran out (`--agreement-budget-secs`)"), "{detail}");
    let report = validation::run_with(&file, &conditions, now, Some(validation::agreement::DEFAULT_BUDGET));
    assert!(report.passed() && report.agreement_checks > 0, "{:?}", report.failures);
}

/// YAML nested 100,000 deep took 40 s before its error.
#[test]
fn deep_yaml_is_refused_before_it_is_parsed() {
    let conditions = Conditions::new();
    let text = format!("schema: {}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = pemba::validation::load_text(&text, std::path::Path::new("."), "deep", &conditions).unwrap_err();
    assert!(err[0].contains("deep:1: the YAML is nested deeper than 64 levels"), "{err:?}");
    let mut block = String::from("a:\n");
    for i in 1..100 {
        block.push_str(&format!("{}a:\n", " ".repeat(i)));
    }
    let err = pemba::validation::load_text(&block, std::path::Path::new("."), "deep", &conditions).unwrap_err();
    assert!(err[0].contains("deep:65: the YAML is nested deeper"), "{err:?}");
}

/// 32 nested parentheses were refused as "deeper than the limit of 128" (each level counted
/// four times); the limit is 128 levels of parentheses or chained operators, as documented.
#[test]
fn the_nesting_limit_is_the_documented_one() {
    let with = |expr: String| {
        format!("definition user {{}}\ndefinition doc {{\n  relation a: user\n  permission p = {expr}\n}}")
    };
    assert_eq!(verdict(&with(format!("{}a{}", "(".repeat(128), ")".repeat(128)))), Ok(()));
    assert_eq!(verdict(&with(vec!["a"; 128].join(" + "))), Ok(()));
    for deep in [format!("{}a{}", "(".repeat(129), ")".repeat(129)), vec!["a"; 130].join(" + ")] {
        let err = verdict(&with(deep)).unwrap_err();
        assert!(err[0].contains("nested deeper than the limit of 128"), "{err:?}");
    }
}

/// Messages: a no-break space in a caveat was "Unexpected ' '"; a byte-order mark was an
/// error; non-UTF-8 input had no position; a 1 MB name gave 3 MB of stderr; unreadable files
/// were not always named.
#[test]
fn errors_are_readable() {
    let err = verdict("caveat c(x int) {\n  x ==\u{a0}1\n}").unwrap_err();
    assert!(err[0].contains("U+00A0 (a no-break space)"), "{err:?}");
    let dir = super::store::temp_dir("messages");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    let bom = write("bom.zed", b"\xEF\xBB\xBFdefinition user {}\n");
    assert_eq!(pemba(&["schema", "check", &bom]).0, Some(0));
    let bom_yaml = write("bom.yaml", b"\xEF\xBB\xBFschema: |\n  definition user {}\n");
    let (code, err) = pemba(&["validate", &bom_yaml]);
    assert_eq!(code, Some(0), "{err}");
    let latin1 = write("latin1.zed", b"definition user {}\n// caf\xe9\n");
    let (code, err) = pemba(&["schema", "check", &latin1]);
    assert_eq!(code, Some(2));
    assert!(err.contains(&format!("`{latin1}` is not UTF-8 text: byte 0xe9 at line 2, column 7")), "{err}");
    let big = write("big.zed", format!("definition {} {{}}\n", "a".repeat(1 << 20)).as_bytes());
    let (code, err) = pemba(&["schema", "check", &big]);
    assert_eq!(code, Some(1));
    assert!(err.len() < 2000 && err.contains("bytes]…"), "{} bytes of stderr", err.len());
    let big_yaml = write(
        "big.yaml",
        format!("schema: |\n  definition user {{}}\nrelationships: |\n  user:{}#x@user:b\n", "a".repeat(1 << 20))
            .as_bytes(),
    );
    let (_, out) = {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_pemba")).args(["validate", &big_yaml]).output().unwrap();
        (o.status.code(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    };
    assert!(out.len() < 2000, "{} bytes of output", out.len());
    let missing = dir.join("missing.zed").display().to_string();
    let (_, err) = pemba(&["schema", "check", &missing]);
    assert!(err.contains(&format!("cannot read `{missing}`")), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Found by review: rhai continues a `"…"` string after `\` and CRLF too (the opening line's
/// column then matters as with LF), and `\${` in a back-tick string is a literal `${`, not an
/// interpolation (the body was refused as unclosed, or a later string re-indented).
#[test]
fn the_rhai_scan_follows_crlf_continuations_and_escaped_interpolations() {
    let text = "caveat c(s string) {\r\n  s == \"ab\\\r\n          cd\"\r\n}\r\n";
    let out = format_text(text).unwrap();
    assert!(out.contains("\n  s == \"ab\\\r\n          cd\""), "{out:?}");
    assert_eq!(format_text(&out).unwrap(), out);
    let escaped = "caveat c(s string) {\n  s.starts_with(`\\${`)\n}\n";
    assert_eq!(verdict(escaped), Ok(()));
    let text = "caveat c(s string) {\n        s == `\\${` || s == `a\n      b}`\n}\n";
    let out = format_text(text).unwrap();
    assert!(out.contains("`a\n      b}`"), "{out}");
}

/// Found by review: the YAML depth scan must not take a quote inside a scalar for the start of
/// one, nor miss escaped quotes, `? ` entries or block headers such as `|2`.
#[test]
fn the_yaml_depth_scan_reads_quotes_and_headers_as_yaml_does() {
    let conditions = Conditions::new();
    let load = |text: &str| pemba::validation::load_text(text, std::path::Path::new("."), "f", &conditions);
    // Brackets in double-quoted assertions with escaped quotes: fine however many.
    let mut ok = String::from(
        "schema: |2\n  definition user {}\n  caveat c(s string) { s == \"[x\" }\n  definition doc {\n    relation viewer: user with c\n  }\nrelationships: |-\n  doc:1#viewer@user:ann[c]\nassertions:\n  assertCaveated:\n",
    );
    for _ in 0..80 {
        ok.push_str("    - \"doc:1#viewer@user:ann with {\\\"s\\\": \\\"[x\\\"}\"\n");
    }
    let err = load(&ok).err().unwrap_or_default();
    assert!(!err.iter().any(|e| e.contains("nested deeper")), "{err:?}");
    // Deep nesting hidden behind an escaped quote or an apostrophe in a plain scalar: refused.
    for hidden in [format!("k: [\"a\\\"\", {}", "[".repeat(100)), format!("k: [a'b, {}", "[".repeat(100))] {
        let err = load(&hidden).unwrap_err();
        assert!(err[0].contains("nested deeper"), "{err:?}");
    }
    let keys = format!("{}x: 1\n", "? ".repeat(100));
    assert!(load(&keys).unwrap_err()[0].contains("nested deeper"));
}
