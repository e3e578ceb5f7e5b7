//! Check and `pemba validate` on bad and hostile input: each gets a clear error or the
//! documented answer, and none panics or hangs.

use std::path::Path;

use pemba::conditions::Conditions;
use pemba::engine::{self, CheckRequest, Decision, Env, EvalError, Limits, Tuples};
use pemba::model::{Relationship, Timestamp};
use pemba::validation;

/// The reference evaluator's answer on a validation file's relationships.
fn reference(file: &pemba::validation::ValidationFile, req: &CheckRequest, env: Env) -> Result<Decision, EvalError> {
    let conditions = Conditions::new();
    engine::check(&engine::Ctx { schema: &file.schema, data: &file.tuples, conditions: &conditions, env }, req)
}

fn load(text: &str) -> Result<validation::ValidationFile, Vec<String>> {
    validation::load_text(text, Path::new("."), "test.yaml", &Conditions::new())
}

fn check(file: &validation::ValidationFile, text: &str) -> Result<Decision, EvalError> {
    let req = validation::parse_check(text).unwrap();
    reference(file, &req, Env::new(Timestamp::now()))
}

const GROUPS: &str =
    "schema: |\n  definition user {}\n  definition group {\n    relation member: user | group#member\n  }\n";

#[test]
fn malformed_relationship_lines_are_named() {
    let text = format!(
        "{GROUPS}relationships: |\n  group:a#member@user:tom\n  group:a#member\n  group:a#member@user:tom[broken\n  group:*#member@user:tom\n  group:a#member@user:tom[expiration:yesterday]\n"
    );
    let errors = load(&text).unwrap_err();
    expect_test::expect![[r#"
        [
            "relationship line 2: `group:a#member` is not a relationship: expected `type:id#relation@type:id[#relation]`",
            "relationship line 3: `group:a#member@user:tom[broken` is not a relationship: expected `type:id#relation@type:id[#relation]`",
            "relationship line 4: a wildcard `*` may only be a subject id",
            "relationship line 5: invalid timestamp `yesterday`: expected RFC 3339, such as `2025-01-01T00:00:00Z`",
        ]
    "#]]
    .assert_debug_eq(&errors);
}

#[test]
fn relationships_that_break_the_schema_are_rejected() {
    let text = format!(
        "{GROUPS}relationships: |\n  group:a#owner@user:tom\n  group:a#member@group:b\n  group:a#member@user:tom[nocaveat]\n  group:a#member@group:b#owner\n  group:a#member@user:*\n  group:a#member@user:tom\n  group:a#member@user:tom\n"
    );
    let errors = load(&text).unwrap_err();
    expect_test::expect![[r#"
        [
            "relationship line 1: `group:a#owner@user:tom`: type `group` has no relation `owner`",
            "relationship line 2: `group:a#member@group:b`: relation `group#member` does not allow subject `group`; it allows `user`, `group#member`",
            "relationship line 3: `group:a#member@user:tom[nocaveat]`: relation `group#member` does not allow subject `user with nocaveat`; it allows `user`, `group#member`",
            "relationship line 4: `group:a#member@group:b#owner`: type `group` has no relation `owner`",
            "relationship line 5: `group:a#member@user:*`: relation `group#member` does not allow subject `user:*`; it allows `user`, `group#member`",
            "relationship line 7: `group:a#member@user:tom` is a duplicate of an earlier relationship",
        ]
    "#]]
    .assert_debug_eq(&errors);
}

const CAVEATED: &str = "schema: |\n  definition user {}\n  caveat c(n int, m map<int>) {\n    n == 1\n  }\n  caveat spin(l list<int>, m list<int>) {\n    l.map(|x| m.reduce(|a, b| a + b, 0)).len() > 0\n  }\n  caveat grow(s string) {\n    (s + s + s + s + s + s + s + s).len() > 0\n  }\n  definition doc {\n    relation viewer: user with c | user with spin | user with grow\n    permission view = viewer\n  }\n";

#[test]
fn mistyped_context_is_an_error_naming_the_parameter() {
    let text = format!("{CAVEATED}relationships: |\n  doc:1#viewer@user:tom[c:{{\"n\":\"one\"}}]\n");
    let errors = load(&text).unwrap_err();
    assert_eq!(
        errors,
        [
            "relationship line 1: `doc:1#viewer@user:tom[c:{\"n\":\"one\"}]`: context value for parameter `n` of caveat `c` is not a valid int: got `\"one\"`"
        ]
    );

    let file = load(&format!("{CAVEATED}relationships: |\n  doc:1#viewer@user:tom[c]\n")).unwrap();
    let err = check(&file, r#"doc:1#view@user:tom with {"n": 1.5, "m": {}}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "context value for parameter `n` of caveat `c` is not a valid int: `1.5` is not an integer"
    );
    // An integral number is an int however JSON spells it (a `google.protobuf.Struct` carries
    // `1` as `1.0`), in the request context and stored on a relationship alike. (`1.0` was
    // refused as "not a valid int".)
    assert_eq!(check(&file, r#"doc:1#view@user:tom with {"n": 1.0, "m": {"a": 2.0}}"#), Ok(Decision::Has));
    let stored =
        load(&format!("{CAVEATED}relationships: |\n  doc:1#viewer@user:tom[c:{{\"n\":1.0,\"m\":{{}}}}]\n")).unwrap();
    assert_eq!(check(&stored, "doc:1#view@user:tom"), Ok(Decision::Has));
    let err = check(&file, r#"doc:1#view@user:tom with {"n": 1, "m": {"a": "b"}}"#).unwrap_err();
    assert_eq!(err.to_string(), "context value for parameter `m` of caveat `c` is not a valid map<int>: got `\"b\"`");
    assert_eq!(check(&file, r#"doc:1#view@user:tom with {"n": 1}"#), Ok(Decision::Conditional(vec!["m".into()])));
    assert_eq!(check(&file, r#"doc:1#view@user:tom with {"n": 1, "m": {}}"#), Ok(Decision::Has));
    assert_eq!(check(&file, "doc:1#view@user:tom"), Ok(Decision::Conditional(vec!["m".into(), "n".into()])));
}

#[test]
fn conditions_that_loop_or_allocate_without_bound_are_stopped() {
    let file =
        load(&format!("{CAVEATED}relationships: |\n  doc:1#viewer@user:tom[spin]\n  doc:2#viewer@user:tom[grow]\n"))
            .unwrap();
    let list: Vec<u32> = (0..3_000).collect();
    let err = check(&file, &format!("doc:1#view@user:tom with {{\"l\": {list:?}, \"m\": {list:?}}}")).unwrap_err();
    assert_eq!(err.to_string(), "caveat `spin` failed: exceeded the limit of 100000 operations");
    let long = "x".repeat(10_000);
    let err = check(&file, &format!("doc:2#view@user:tom with {{\"s\": \"{long}\"}}")).unwrap_err();
    assert!(err.to_string().contains("Length of string too large"), "{err}");
}

#[test]
fn cyclic_data_terminates_and_adds_nothing() {
    let text = format!(
        "{GROUPS}relationships: |\n  group:a#member@group:b#member\n  group:b#member@group:c#member\n  group:c#member@group:a#member\n  group:b#member@user:tom\n"
    );
    let file = load(&text).unwrap();
    for g in ["a", "b", "c"] {
        assert_eq!(check(&file, &format!("group:{g}#member@user:tom")), Ok(Decision::Has));
        assert_eq!(check(&file, &format!("group:{g}#member@user:jill")), Ok(Decision::No));
    }
}

fn deep_chain(depth: usize) -> validation::ValidationFile {
    let mut file = load(&format!("{GROUPS}relationships: |\n  group:g0#member@user:tom\n")).unwrap();
    let mut tuples = Tuples::new();
    for i in 1..depth {
        tuples.insert(Relationship::parse(&format!("group:g{i}#member@group:g{}#member", i - 1)).unwrap());
    }
    tuples.insert(Relationship::parse("group:g0#member@user:tom").unwrap());
    file.tuples = tuples;
    file
}

#[test]
fn deep_nesting_is_not_an_error_and_does_not_overflow_the_stack() {
    let file = deep_chain(100_000);
    assert_eq!(check(&file, "group:g99999#member@user:tom"), Ok(Decision::Has));
    assert_eq!(check(&file, "group:g99999#member@user:jill"), Ok(Decision::No));
}

#[test]
fn work_limit_is_an_error() {
    let file = deep_chain(10_000);
    let req: CheckRequest = validation::parse_check("group:g9999#member@user:tom").unwrap();
    let env = Env { now: Timestamp::now(), limits: Limits { max_work: 1000, ..Limits::default() } };
    let err = reference(&file, &req, env).unwrap_err();
    assert_eq!(err, EvalError::WorkLimit(1000));
    let env =
        Env { now: Timestamp::now(), limits: Limits { deadline: std::time::Duration::ZERO, ..Limits::default() } };
    let err = reference(&file, &req, env).unwrap_err();
    assert!(matches!(err, EvalError::Deadline(_)), "{err}");
}

#[test]
fn unknown_names_in_a_check_are_errors() {
    let file = load(GROUPS).unwrap();
    assert_eq!(check(&file, "doc:1#member@user:tom").unwrap_err().to_string(), "unknown object type `doc`");
    assert_eq!(
        check(&file, "group:1#view@user:tom").unwrap_err().to_string(),
        "type `group` has no relation or permission `view`"
    );
    assert_eq!(
        check(&file, "group:1#member@group:2#owner").unwrap_err().to_string(),
        "type `group` has no relation or permission `owner`"
    );
}

#[test]
fn project_fixtures_validate() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pemba"))
        .args(["validate", "schema/drive.yaml", "schema/caveats.yaml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.ends_with("2 passed, 0 failed\n"), "{stdout}");
}

#[test]
fn validate_fails_with_a_diff_and_exit_status_1() {
    let dir = std::env::temp_dir().join(format!("pemba-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("wrong.yaml");
    std::fs::write(&path, format!("{GROUPS}relationships: |\n  group:a#member@user:tom\nassertions:\n  assertFalse:\n    - group:a#member@user:tom\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pemba")).arg("validate").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout).replace(&path.display().to_string(), "wrong.yaml");
    expect_test::expect![[r#"
        wrong.yaml: FAILED
          assertFalse `group:a#member@user:tom`
            got HAS_PERMISSION
        assertions: 0 passed, 1 failed
        0 passed, 1 failed
    "#]]
    .assert_eq(&stdout);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn expected_relations_report_each_kind_of_mismatch() {
    let text = r#"schema: |
  definition user {}
  caveat c(x int) {
    x == 1
  }
  definition doc {
    relation viewer: user | user:* | user with c
    relation banned: user
    permission view = viewer - banned
  }
relationships: |
  doc:1#viewer@user:*
  doc:1#viewer@user:tom
  doc:1#viewer@user:ann[c]
  doc:1#banned@user:bob
validation:
  doc:1#view:
    - "[user:*[...] - {user:carl}] is <doc:1#viewer>"
    - "[user:tom] is <doc:1#banned>"
    - "[user:ann] is <doc:1#viewer>"
    - "[user:zed] is <doc:1#viewer>"
    - "user:nobody"
"#;
    let file = load(text).unwrap();
    let report = validation::run(&file, &Conditions::new(), Timestamp::now());
    expect_test::expect![[r#"
        test.yaml: FAILED
          validation `doc:1#view`
            For object and permission/relation `doc:1#view`, found different excluded subjects for subject `user:*`: Specified: `user:carl`, Computed: `user:bob`
            For object and permission/relation `doc:1#view`, found caveat mismatch for subject `user:*`
            For object and permission/relation `doc:1#view`, found different relationships for subject `user:tom`: Specified: `<doc:1#banned>`, Computed: `<doc:1#viewer>`
            For object and permission/relation `doc:1#view`, missing expected subject `user:zed`
            no expected subject specified in `user:nobody`
    "#]]
    .assert_eq(&report.render("test.yaml"));
}

/// Regression: rhai's language core holds `sleep` (blocks past every limit) and `exit` (ends the
/// evaluation with any value); neither may be reachable from a caveat.
#[test]
fn regression_sleep_and_exit_are_not_available_to_conditions() {
    let text = "schema: |\n  definition user {}\n  caveat slow(n int) {\n    sleep(n) || true\n  }\n  caveat out(n int) {\n    exit(true) && n == 0\n  }\n  definition doc {\n    relation viewer: user with slow | user with out\n  }\nrelationships: |\n  doc:1#viewer@user:a[slow]\n  doc:2#viewer@user:a[out]\n";
    let file = load(text).unwrap();
    for d in ["doc:1", "doc:2"] {
        let err = check(&file, &format!("{d}#viewer@user:a with {{\"n\": 5}}")).unwrap_err();
        assert!(err.to_string().contains("Function not found"), "{err}");
    }
}

/// Regression: one big cycle of groups used to take quadratic work (every sweep of the cycle
/// moved a value one hop) and hit the work limit; the worklist makes it linear.
#[test]
fn regression_a_ring_of_thousands_of_groups_is_solved_in_linear_work() {
    let n = 5000;
    let mut file = load(GROUPS).unwrap();
    let mut tuples = Tuples::new();
    for i in 0..n {
        tuples.insert(Relationship::parse(&format!("group:g{i}#member@group:g{}#member", (i + 1) % n)).unwrap());
    }
    tuples.insert(Relationship::parse(&format!("group:g{}#member@user:ann", n - 1)).unwrap());
    file.tuples = tuples;
    let req = validation::parse_check("group:g0#member@user:ann").unwrap();
    let env = Env { now: Timestamp::now(), limits: Limits { max_work: 20 * n, ..Limits::default() } };
    assert_eq!(reference(&file, &req, env), Ok(Decision::Has));
}

const RESTRICTED: &str = "definition user {}\ndefinition document {\n  relation viewer_direct: user\n  relation restricted: user | document#viewer\n  permission viewer = viewer_direct - restricted\n}";

/// Recursion through the right-hand side of `-` compiles (with a warning), as SpiceDB and
/// OpenFGA accept it. On acyclic data it answers as SpiceDB does; a Check that does not need the
/// cycle answers too (no `viewer_direct`: false, whatever `restricted` is); one that needs it is
/// an error naming the cycle, on every path: the reference, the fast path, CheckBulk,
/// LookupResources and LookupSubjects. (Such a schema did not compile.)
#[test]
fn recursion_through_an_exclusion_answers_or_names_its_cycle() {
    use pemba::db::{Consistency, Database, ErrorCode, WriteRequest};
    use pemba::engine::lookup::{LookupResourcesRequest, LookupSubjectsRequest};
    use pemba::store::Mutation;
    let conditions = Conditions::new();
    let schema = pemba::schema::compile_text(RESTRICTED, &conditions).unwrap();
    assert_eq!(schema.warnings().len(), 1);
    let db = Database::in_memory();
    db.create_tenant("t").unwrap();
    db.write_schema("t", RESTRICTED).unwrap();
    let rels = [
        // Acyclic: document 1 is restricted to the viewers of document 2.
        "document:1#viewer_direct@user:ann",
        "document:1#viewer_direct@user:cy",
        "document:1#restricted@document:2#viewer",
        "document:2#viewer_direct@user:ann",
        // A cycle: document 3 is restricted to its own viewers.
        "document:3#viewer_direct@user:ann",
        "document:3#restricted@document:3#viewer",
    ];
    db.write("t", WriteRequest::new(rels.iter().map(|r| Mutation::Touch(Relationship::parse(r).unwrap())).collect()))
        .unwrap();
    let mut tuples = Tuples::new();
    for r in rels {
        tuples.insert(Relationship::parse(r).unwrap());
    }
    let env = Env::new(Timestamp::now());
    let reference = engine::Ctx { schema: &schema, data: &tuples, conditions: &conditions, env };
    let ask = |text: &str| {
        let req = validation::parse_check(text).unwrap();
        let slow = engine::check(&reference, &req);
        let fast = db.check("t", Consistency::FullyConsistent, &req).map(|(d, _)| d);
        let (bulk, _) = db.check_bulk("t", Consistency::FullyConsistent, std::slice::from_ref(&req)).unwrap();
        (slow, fast, bulk.into_iter().next().unwrap())
    };
    for (text, want) in [
        ("document:1#viewer@user:ann", Decision::No),
        ("document:1#viewer@user:cy", Decision::Has),
        ("document:2#viewer@user:ann", Decision::Has),
        ("document:3#viewer@user:bob", Decision::No),
        ("document:3#restricted@user:bob", Decision::No),
    ] {
        let (slow, fast, bulk) = ask(text);
        assert_eq!((slow, fast.unwrap(), bulk), (Ok(want.clone()), want.clone(), Ok(want)), "{text}");
    }
    let cycle = "the answer depends on itself through the right-hand side of an exclusion, so it has none: `document:3#viewer` → `document:3#restricted` → `document:3#viewer`";
    let (slow, fast, bulk) = ask("document:3#viewer@user:ann");
    assert_eq!(slow.unwrap_err().to_string(), cycle);
    let fast = fast.unwrap_err();
    assert_eq!((fast.code(), fast.to_string()), (ErrorCode::ExclusionCycle, cycle.to_string()));
    assert_eq!(bulk.unwrap_err().to_string(), cycle);
    // Lookups that need the cycle fail; those that do not answer.
    let resources = |user: &str| LookupResourcesRequest {
        resource_type: "document".into(),
        permission: "viewer".into(),
        subject: pemba::model::SubjectRef::parse(user).unwrap(),
        context: Default::default(),
        limit: None,
        cursor: None,
    };
    let err = db.lookup_resources("t", Consistency::FullyConsistent, &resources("user:ann")).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ExclusionCycle);
    let cy = db.lookup_resources("t", Consistency::FullyConsistent, &resources("user:cy")).unwrap();
    assert_eq!(cy.items.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["1"]);
    let subjects = |doc: &str| LookupSubjectsRequest {
        resource: pemba::model::ObjectRef::new("document", doc),
        permission: "viewer".into(),
        subject_type: "user".into(),
        subject_relation: None,
        context: Default::default(),
        limit: None,
        cursor: None,
    };
    let one = db.lookup_subjects("t", Consistency::FullyConsistent, &subjects("1")).unwrap();
    assert_eq!(one.items.iter().map(|s| s.subject.to_string()).collect::<Vec<_>>(), ["user:cy"]);
    let err = db.lookup_subjects("t", Consistency::FullyConsistent, &subjects("3")).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ExclusionCycle);
    // Expand shows the tree: it decides nothing.
    let (tree, _) =
        db.expand("t", Consistency::FullyConsistent, &pemba::model::ObjectRef::new("document", "3"), "viewer").unwrap();
    assert!(matches!(tree, pemba::engine::expand::ExpandTree::Exclusion { .. }), "{tree:?}");
}
