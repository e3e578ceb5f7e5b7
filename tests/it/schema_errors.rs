//! The bad-input corpus for schema text: each case's rendered diagnostics (message, line, column,
//! source line and caret) are pinned in `golden/schema_errors.txt`. `UPDATE_EXPECT=1 cargo test`
//! rewrites the golden file after a deliberate change.

use expect_test::expect_file;
use pemba::conditions::Conditions;

const CASES: &[(&str, &str)] = &[
    // Syntax.
    ("garbage at top level", "defintion user {}"),
    ("missing definition name", "definition {}"),
    ("unclosed definition", "definition user {\n  relation viewer: user\n"),
    ("missing colon in relation", "definition user {}\ndefinition doc {\n  relation viewer user\n}"),
    ("missing type after pipe", "definition user {}\ndefinition doc {\n  relation viewer: user |\n}"),
    ("missing equals in permission", "definition doc {\n  relation r: doc\n  permission view r\n}"),
    ("dangling operator", "definition doc {\n  relation r: doc\n  permission view = r +\n}"),
    ("unbalanced parenthesis", "definition doc {\n  relation r: doc\n  permission view = (r + r\n}"),
    ("unknown token", "definition doc {\n  relation r: doc\n  permission view = r ^ r\n}"),
    ("wildcard without star", "definition user {}\ndefinition doc {\n  relation r: user:\n}"),
    ("unknown arrow function", "definition doc {\n  relation p: doc\n  permission v = p.some(v)\n}"),
    ("chained arrows", "definition doc {\n  relation p: doc\n  permission v = p->p->v\n}"),
    (
        "with and without expiration",
        "use expiration\ncaveat c(x int) { x == 1 }\ndefinition user {}\ndefinition doc {\n  relation r: user with c and wat\n}",
    ),
    ("unterminated block comment", "definition user {}\n/* never closed"),
    ("unclosed caveat body", "caveat c(x int) {\n  x == 1\n"),
    ("empty caveat body", "caveat c(x int) { }"),
    ("caveat missing parameter type", "caveat c(x) { x }"),
    ("unknown parameter type", "caveat c(x integer) { x == 1 }"),
    ("list without element type", "caveat c(x list) { x.len() == 1 }"),
    ("simple type with parameter", "caveat c(x int<string>) { true }"),
    ("attribute with unknown type", "definition user {\n  attribute age: number\n}"),
    (
        "recovers and reports several errors",
        "definition a {\n  relation: a\n  relation ok: a\n  permission = ok\n}\ndefinition b {\n  relation x y\n}",
    ),
    ("member keyword missing", "definition doc {\n  viewer: doc\n}"),
    // Names and types.
    ("duplicate definition", "definition user {}\ndefinition user {}"),
    ("duplicate relation", "definition user {}\ndefinition doc {\n  relation r: user\n  relation r: user\n}"),
    (
        "permission named like relation",
        "definition user {}\ndefinition doc {\n  relation r: user\n  permission r = r\n}",
    ),
    ("unknown subject type", "definition doc {\n  relation viewer: usr\n}"),
    ("unknown subject relation", "definition group {}\ndefinition doc {\n  relation viewer: group#member\n}"),
    ("unknown name in permission", "definition doc {\n  relation viewer: doc\n  permission view = viewer + editor\n}"),
    ("arrow left side unknown", "definition doc {\n  permission view = parent->view\n}"),
    (
        "arrow left side is a permission",
        "definition doc {\n  relation r: doc\n  permission p = r\n  permission view = p->view\n}",
    ),
    (
        "arrow target missing on subject types",
        "definition user {}\ndefinition doc {\n  relation parent: user\n  permission view = parent->view\n}",
    ),
    (
        "arrow over wildcard",
        "definition user {\n  permission view = nil\n}\ndefinition doc {\n  relation parent: user:*\n  permission view = parent->view\n}",
    ),
    ("unknown caveat", "definition user {}\ndefinition doc {\n  relation viewer: user with nosuch\n}"),
    ("expiration without use", "definition user {}\ndefinition doc {\n  relation viewer: user with expiration\n}"),
    ("unknown use feature", "use typechecking\ndefinition user {}"),
    ("duplicate allowed type", "definition user {}\ndefinition doc {\n  relation viewer: user | user\n}"),
    ("uppercase definition name", "definition User {}"),
    ("uppercase relation name", "definition user {}\ndefinition doc {\n  relation Viewer: user\n}"),
    ("duplicate caveat", "caveat c(x int) { x == 1 }\ncaveat c(x int) { x == 2 }"),
    ("duplicate caveat parameter", "caveat c(x int, x string) { true }"),
    ("reserved caveat parameter", "caveat c(resource int) { resource == 1 }"),
    ("duplicate attribute", "definition user {\n  attribute age: int\n  attribute age: string\n}"),
    // rhai bodies.
    ("rhai syntax error", "caveat c(x int) {\n  x == == 1\n}"),
    ("rhai unknown variable", "caveat c(x int) {\n  x == y\n}"),
    ("rhai statement not expression", "caveat c(x int) {\n  let y = 1; x == y\n}"),
    ("rhai eval disabled", "caveat c(x string) {\n  eval(x)\n}"),
    ("rhai switch refused", "caveat c(x int) {\n  switch x { \"1\" => false, _ => true }\n}"),
    ("rhai coalescing refused", "caveat c(x int) {\n  (x ?? 0) == 1\n}"),
    (
        "rhai nesting too deep",
        "caveat c(x int) {\n  ((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((x))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))) == 1\n}",
    ),
    // Size limits.
    (
        "expression nested too deeply",
        "definition doc {\n  relation r: doc\n  permission p = (((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((r)))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))\n}",
    ),
];

/// Schemas that compile with warnings (pinned in the same golden file).
const WARNING_CASES: &[(&str, &str)] = &[
    (
        "recursion through exclusion",
        "definition user {}\ndefinition group {\n  relation member: user | group#allowed\n  relation banned: user\n  permission allowed = member - allowed\n}",
    ),
    (
        "indirect recursion through exclusion",
        "definition user {}\ndefinition folder {\n  relation parent: folder\n  relation viewer: user\n  permission view = viewer - parent->view\n}",
    ),
    (
        "recursion through exclusion by a subject set",
        "definition user {}\ndefinition document {\n  relation viewer_direct: user\n  relation restricted: user | document#viewer\n  permission viewer = viewer_direct - restricted\n}",
    ),
];

fn render(conditions: &Conditions, name: &str, source: &str) -> String {
    match pemba::schema::compile_text(source, conditions) {
        Ok(s) if s.warnings().is_empty() => format!("=== {name}\n(compiled without errors)\n"),
        Ok(s) => format!(
            "=== {name}\n(compiled, with warnings)\n{}",
            pemba::schema::diagnostic::render_all(s.warnings(), "schema.zed", source)
        ),
        Err(diags) => format!("=== {name}\n{}", pemba::schema::diagnostic::render_all(&diags, "schema.zed", source)),
    }
}

#[test]
fn schema_error_corpus() {
    assert!(CASES.len() >= 40);
    let conditions = Conditions::new();
    let out: String =
        CASES.iter().chain(WARNING_CASES).map(|(name, source)| render(&conditions, name, source) + "\n").collect();
    expect_file!["golden/schema_errors.txt"].assert_eq(&out);
}

#[test]
fn every_corpus_case_fails() {
    let conditions = Conditions::new();
    for (name, source) in CASES {
        assert!(pemba::schema::compile_text(source, &conditions).is_err(), "case `{name}` compiled");
    }
    for (name, source) in WARNING_CASES {
        let schema = pemba::schema::compile_text(source, &conditions).unwrap();
        assert!(!schema.warnings().is_empty(), "case `{name}` compiled without a warning");
    }
}

#[test]
fn oversized_schema_is_rejected() {
    let big = format!("definition user {{}}\n{}", "// padding\n".repeat(500_000));
    let diags = pemba::schema::compile_text(&big, &Conditions::new()).unwrap_err();
    assert_eq!(diags[0].message, "schema is 5500019 bytes; the limit is 4194304");
}

#[test]
fn long_operator_chains_hit_the_depth_limit() {
    let terms = vec!["r"; 1000].join(" + ");
    let source = format!("definition doc {{\n  relation r: doc\n  permission p = {terms}\n}}");
    let diags = pemba::schema::compile_text(&source, &Conditions::new()).unwrap_err();
    assert!(diags[0].message.contains("nested deeper than the limit of 128"), "{diags:?}");
}

/// Regression: each operator chain was bounded, but a chain whose first operand is a
/// parenthesized chain (and so on) built trees thousands of levels deep.
#[test]
fn regression_nested_chains_are_bounded_as_a_whole_tree() {
    let mut e = "r".to_string();
    for _ in 0..20 {
        e = format!("({e}{})", " + r".repeat(100));
    }
    let source = format!("definition doc {{\n  relation r: doc\n  permission p = {e}\n}}");
    let diags = pemba::schema::compile_text(&source, &Conditions::new()).unwrap_err();
    assert!(diags.iter().any(|d| d.message.contains("nested deeper than the limit of 128")), "{diags:?}");
}
