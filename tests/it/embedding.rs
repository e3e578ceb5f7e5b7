//! Embedding Pemba in a Rust program (issue 17): a lean library, SpiceDB's text forms in the
//! API, import of SpiceDB relationship text, `close()`.

use pemba::db::{Consistency, Database};
use pemba::engine::{CheckRequest, Decision};
use pemba::model::{ModelError, ObjectRef};

/// With `default-features = false` the library needs neither the command line's crates
/// (clap, anyhow), nor YAML, nor the server's (tokio, tonic, prost): the dependency tree says
/// so, and the library checks without them.
#[test]
fn the_library_builds_without_the_cli_yaml_and_server_crates() {
    let cargo = env!("CARGO");
    let root = env!("CARGO_MANIFEST_DIR");
    let tree = std::process::Command::new(cargo)
        .args(["tree", "-e", "normal", "--no-default-features", "--prefix", "none", "--offline"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(tree.status.success(), "{}", String::from_utf8_lossy(&tree.stderr));
    let tree = String::from_utf8_lossy(&tree.stdout);
    let crates: Vec<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(crates.contains(&"sled") && crates.contains(&"rhai"), "{crates:?}");
    for heavy in ["clap", "anyhow", "serde_yaml_ng", "tokio", "tonic", "prost", "mimalloc"] {
        assert!(!crates.contains(&heavy), "`{heavy}` is in the lean library's dependencies");
    }
    let check = std::process::Command::new(cargo)
        .args(["check", "--lib", "--no-default-features", "--offline", "--quiet", "--target-dir"])
        .arg(std::path::Path::new(root).join("target/lean"))
        .current_dir(root)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
}

#[test]
fn checks_and_objects_parse_from_spicedbs_text_with_typed_errors() {
    let c = CheckRequest::parse("document:1#view@group:eng#member").unwrap();
    assert_eq!(c.subject.to_string(), "group:eng#member");
    let c = CheckRequest::parse(r#"document:1#view@user:ann with {"ip": "10.0.0.1"}"#).unwrap();
    assert_eq!(c.context.get("ip").and_then(|v| v.as_str()), Some("10.0.0.1"));
    assert!(matches!(CheckRequest::parse("document:1@user:ann"), Err(ModelError::InvalidCheck(_))));
    assert!(matches!(CheckRequest::parse("document:1#Vi ew@user:ann"), Err(ModelError::InvalidPermissionName(_))));
    assert!(matches!(CheckRequest::parse("document:#view@user:ann"), Err(ModelError::InvalidId(_))));
    assert!(matches!(CheckRequest::parse("document:1#view@user:ann with {"), Err(ModelError::InvalidContext { .. })));
    assert_eq!(ObjectRef::parse("document:*"), Err(ModelError::WildcardResource));
    assert!(ObjectRef::parse_allowing_wildcard("user:*").unwrap().is_wildcard());
    let built = CheckRequest::new(ObjectRef::parse("document:1").unwrap(), "view", "user:ann".parse().unwrap());
    assert_eq!(built.permission, "view");
}

/// `Database::import` takes SpiceDB's relationship text, one per line (caveats, expiration,
/// comments), as well as Pemba's export lines, mixed.
#[test]
fn import_takes_spicedb_relationship_text() {
    let db = Database::in_memory();
    db.create_tenant("t").unwrap();
    db.write_schema(
        "t",
        "use expiration\ndefinition user {}\ncaveat on_net(ip string) { ip == \"10.0.0.1\" }\ndefinition doc {\n  relation viewer: user | user with on_net | user with expiration\n  permission view = viewer\n}",
    )
    .unwrap();
    let text = "// exported by zed\n\ndoc:1#viewer@user:ann\n# a comment\ndoc:2#viewer@user:bob[on_net]\ndoc:3#viewer@user:cy[expiration:2999-01-01T00:00:00Z]\n{\"relationship\": \"doc:4#viewer@user:dee\"}\n";
    db.import("t", &mut text.as_bytes()).unwrap();
    let check =
        |text: &str| db.check("t", Consistency::FullyConsistent, &CheckRequest::parse(text).unwrap()).unwrap().0;
    assert_eq!(check("doc:1#view@user:ann"), Decision::Has);
    assert!(matches!(check("doc:2#view@user:bob"), Decision::Conditional(_)));
    assert_eq!(check(r#"doc:2#view@user:bob with {"ip": "10.0.0.1"}"#), Decision::Has);
    assert_eq!(check("doc:3#view@user:cy"), Decision::Has);
    assert_eq!(check("doc:4#view@user:dee"), Decision::Has);
    let err = db.import("t", &mut "doc:5#viewer@user:eve\ndoc:6#viewer@\n".as_bytes()).unwrap_err().to_string();
    assert!(err.contains("line 2"), "{err}");
}

/// `close()` leaves the directory free at once and every write in it.
#[test]
fn close_releases_the_directory_with_every_write_in_it() {
    let dir = super::store::temp_dir("close");
    for round in 0..3 {
        let db = Database::open(&dir).unwrap();
        if round == 0 {
            db.create_tenant("t").unwrap();
            db.write_schema("t", "definition user {}\ndefinition doc { relation viewer: user }").unwrap();
        }
        let text = format!("doc:{round}#viewer@user:ann\n");
        db.import("t", &mut text.as_bytes()).unwrap();
        db.close().unwrap();
    }
    let db = Database::open(&dir).unwrap();
    for round in 0..3 {
        let req = CheckRequest::parse(&format!("doc:{round}#viewer@user:ann")).unwrap();
        assert_eq!(db.check("t", Consistency::FullyConsistent, &req).unwrap().0, Decision::Has);
    }
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}
