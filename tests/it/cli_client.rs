//! The `pemba` client commands, run as a user runs them (the binary, with `PEMBA_ENDPOINT` and
//! `PEMBA_TOKEN` or flags) against a server in this process: schema, relationships, check with
//! its exit codes, lookups, import and export, watch, tenants; errors name what is wrong.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::server::{SCHEMA, start};

struct Cli {
    endpoint: String,
    dir: PathBuf,
}

impl Cli {
    fn run(&self, key: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_pemba"))
            .args(args)
            .env("PEMBA_ENDPOINT", &self.endpoint)
            .env("PEMBA_TOKEN", key)
            .env_remove("PEMBA_ADMIN_KEY")
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed; returns its standard output.
    fn ok(&self, key: &str, args: &[&str]) -> String {
        let out = self.run(key, args);
        assert!(out.status.success(), "pemba {args:?}: {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command; returns (exit code, stdout, stderr).
    fn code(&self, key: &str, args: &[&str]) -> (i32, String, String) {
        let out = self.run(key, args);
        (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_commands_work_against_a_server() {
    let dir = super::store::temp_dir("cli-client");
    let running = start(&dir.join("data")).await;
    let cli = Cli { endpoint: running.addr.to_string(), dir: dir.to_path_buf() };
    tokio::task::spawn_blocking(move || script(&cli)).await.unwrap();
    let _ = running.stop.send(());
    running.done.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

fn script(cli: &Cli) {
    let acme = "key-acme";
    // Schema.
    let schema = cli.file("schema.zed", SCHEMA);
    let token = cli.ok(acme, &["schema", "write", &schema]);
    assert!(!token.trim().is_empty());
    assert_eq!(cli.ok(acme, &["schema", "read"]).trim_end(), SCHEMA.trim_end());

    // Relationships from arguments and from a file (comments skipped); a bad line is located.
    let first = cli.ok(
        acme,
        &[
            "relationship",
            "write",
            "document:1#viewer@user:ann",
            r#"document:2#viewer@user:bob[on_network:{"net":"10.0.0.0/8"}]"#,
            "--metadata",
            r#"{"ticket":"T-1"}"#,
        ],
    );
    let first = first.trim().to_string();
    let rels = cli.file("rels.txt", "# docs\ndocument:3#viewer@user:ann\n\n// more\ndocument:4#viewer@user:cy\n");
    cli.ok(acme, &["relationship", "write", "--file", &rels]);
    let bad = cli.file("bad.txt", "document:5#viewer@user:ann\ndocument:6#viewer@\n");
    let (code, _, err) = cli.code(acme, &["relationship", "write", "--file", &bad]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.txt:2:"), "{err}");

    // Watch from the first write's token sees the next write, with its place in the log.
    let watched = cli.ok(acme, &["watch", "--from", &first, "--count", "1"]);
    let watched = lines(&watched);
    assert_eq!(watched[..2], ["TOUCH document:3#viewer@user:ann", "TOUCH document:4#viewer@user:cy"], "{watched:?}");
    assert!(watched[2].starts_with("# through "), "{watched:?}");
    // …and the first write's metadata when started before it.
    let all = cli.ok(acme, &["watch", "--from", token.trim(), "--count", "1"]);
    assert!(all.contains(r#"{"ticket":"T-1"}"#), "{all}");

    // Check: exit codes 0 allowed, 1 denied, 3 conditional, 2 error.
    assert_eq!(cli.code(acme, &["check", "document:1", "view", "user:ann"]), (0, "allowed\n".into(), String::new()));
    assert_eq!(cli.code(acme, &["check", "document:1#view@user:bob"]).0, 1);
    let (code, out, _) = cli.code(acme, &["check", "document:2", "view", "user:bob"]);
    assert_eq!((code, out.as_str()), (3, "conditional (missing context: ip)\n"));
    let with_ip = ["check", "document:2", "view", "user:bob", "--context", r#"{"ip":"10.1.2.3"}"#];
    assert_eq!(cli.code(acme, &with_ip).0, 0);
    let json = cli.ok(acme, &["check", "document:1", "view", "user:ann", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["answer"], "allowed");
    assert!(v["checked_at"].as_str().is_some_and(|t| !t.is_empty()));
    let (code, _, err) = cli.code(acme, &["check", "document:1", "nosuch", "user:ann"]);
    assert_eq!(code, 2);
    assert!(err.contains("FailedPrecondition") && err.contains("nosuch"), "{err}");
    let (code, _, err) = cli.code(acme, &["check", "document:1", "view", "user:ann", "--context", "[1]"]);
    assert_eq!(code, 2);
    assert!(err.contains("`--context` must be a JSON object"), "{err}");

    // Lookups.
    let docs = cli.ok(acme, &["lookup", "resources", "document", "view", "user:ann"]);
    assert_eq!(lines(&docs), ["document:1", "document:3"]);
    let docs = cli.ok(acme, &["lookup", "resources", "document", "view", "user:bob"]);
    assert_eq!(lines(&docs), ["document:2 (conditional, missing context: ip)"]);
    let who = cli.ok(acme, &["lookup", "subjects", "document:3", "view", "user"]);
    assert_eq!(lines(&who), ["user:ann"]);

    // Read by filter, delete one, delete by filter.
    let read = cli.ok(acme, &["relationship", "read", "document", "viewer", "user:ann"]);
    assert_eq!(lines(&read), ["document:1#viewer@user:ann", "document:3#viewer@user:ann"]);
    cli.ok(acme, &["relationship", "delete", "document:1#viewer@user:ann"]);
    assert_eq!(cli.code(acme, &["check", "document:1", "view", "user:ann"]).0, 1);
    let (code, _, err) = cli.code(acme, &["relationship", "delete", "--filter", "document:3"]);
    assert_eq!(code, 0);
    assert!(err.contains("deleted 1 relationship"), "{err}");

    // Import to the server (streamed), then export.
    let many: String = (0..2500).map(|i| format!("document:bulk{i:04}#viewer@user:u{}\n", i % 7)).collect();
    let bulk = cli.file("bulk.txt", &many);
    let (code, _, err) = cli.code(acme, &["import", &bulk, "--chunk", "300"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("imported 2500 relationships"), "{err}");
    let exported = cli.ok(acme, &["export"]);
    assert_eq!(exported.lines().filter(|l| l.starts_with("document:bulk")).count(), 2500);
    // Importing them again fails (they exist, as in SpiceDB's import).
    let (code, _, err) = cli.code(acme, &["import", &bulk]);
    assert_eq!(code, 2);
    assert!(err.contains("AlreadyExists"), "{err}");

    // An online backup of every tenant (admin key), restored into a new data directory.
    let backup = cli.dir.join("backup.jsonl").to_string_lossy().into_owned();
    let (code, _, err) = cli.code(acme, &["backup", &backup, "--endpoint", &cli.endpoint]);
    assert_eq!(code, 2, "a tenant's key cannot back up the server: {err}");
    let (code, _, err) = cli.code("key-admin", &["backup", &backup, "--endpoint", &cli.endpoint]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("tenant `acme` at ") && err.contains("tenant `globex` at "), "{err}");
    let restored = cli.dir.join("restored");
    let out = Command::new(env!("CARGO_BIN_EXE_pemba"))
        .args(["restore", &backup, "--data-dir"])
        .arg(&restored)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let db = pemba::db::Database::open(&restored).unwrap();
    let filter = pemba::store::RelationshipFilter::default();
    let (page, _) =
        db.read_relationships("acme", pemba::db::Consistency::FullyConsistent, &filter, 10_000, None).unwrap();
    let mut got: Vec<String> = page.iter().map(ToString::to_string).collect();
    let mut want: Vec<String> = exported.lines().map(str::to_string).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(db.schema_text("acme").unwrap().as_deref(), Some(SCHEMA));
    drop(db);
    // A backup cut off in its second tenant restores nothing: no half-restored directory.
    let text = std::fs::read_to_string(&backup).unwrap();
    let second = text.match_indices("{\"tenant\"").nth(1).expect("two tenants").0;
    let cut = cli.dir.join("cut.jsonl");
    let end = second + text[second..].find('\n').unwrap() + 1;
    std::fs::write(&cut, format!("{}{{\"relationship\": ", &text[..end])).unwrap();
    let partial = cli.dir.join("partial");
    let out = Command::new(env!("CARGO_BIN_EXE_pemba"))
        .arg("restore")
        .arg(&cut)
        .arg("--data-dir")
        .arg(&partial)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("nothing was made at"), "{err}");
    assert!(!partial.exists(), "a failed restore leaves no data directory");

    // Tenants, with the admin key only.
    let (code, _, err) = cli.code(acme, &["tenant", "list"]);
    assert_eq!(code, 2);
    assert!(err.contains("PermissionDenied"), "{err}");
    let admin = "key-admin";
    cli.ok(admin, &["tenant", "create", "initech"]);
    let listed = cli.ok(admin, &["tenant", "list"]);
    assert!(listed.lines().any(|l| l.starts_with("initech\t")), "{listed}");
    let added = cli.ok(admin, &["tenant", "add-key", "initech", "--id", "k1"]);
    let (id, secret) = added.trim().split_once('\t').unwrap();
    assert_eq!(id, "k1");
    // A key maps to one tenant: acme's key cannot be added to another; ids are unique.
    let (code, _, err) = cli.code(admin, &["tenant", "add-key", "initech", "--key", acme]);
    assert_eq!(code, 2);
    assert!(err.contains("AlreadyExists") && err.contains("another tenant"), "{err}");
    let (code, _, err) = cli.code(admin, &["tenant", "add-key", "initech", "--id", "k1"]);
    assert_eq!(code, 2);
    assert!(err.contains("key_id"), "{err}");
    // The new key reaches the new tenant, which has no schema and sees nothing of acme's.
    let (code, _, err) = cli.code(secret, &["schema", "read"]);
    assert_eq!(code, 2);
    assert!(err.contains("NotFound"), "{err}");
    assert_eq!(cli.ok(secret, &["export"]), "");
    cli.ok(admin, &["tenant", "revoke-key", "initech", "k1"]);
    let (code, _, err) = cli.code(secret, &["export"]);
    assert_eq!(code, 2);
    assert!(err.contains("Unauthenticated"), "{err}");
    cli.ok(admin, &["tenant", "drop", "initech"]);
    assert!(!cli.ok(admin, &["tenant", "list"]).contains("initech"));

    // A wrong key and an unreachable server are clear errors.
    let (code, _, err) = cli.code("nope", &["schema", "read"]);
    assert_eq!(code, 2);
    assert!(err.contains("Unauthenticated"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_pemba"))
        .args(["schema", "read", "--endpoint", "127.0.0.1:1", "--token", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect to `127.0.0.1:1`"));
}

/// `pemba import FILE --data-dir D`: into a data directory, schema first, in one tenant.
#[test]
fn import_into_a_data_directory() {
    let dir = super::store::temp_dir("cli-import-local");
    let data = dir.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let schema = dir.join("schema.zed");
    std::fs::write(&schema, SCHEMA).unwrap();
    let rels = dir.join("rels.txt");
    let text: String = (0..1500).map(|i| format!("document:d{i}#viewer@user:u{}\n", i % 3)).collect();
    std::fs::write(&rels, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pemba"))
        .args(["import"])
        .arg(&rels)
        .arg("--data-dir")
        .arg(&data)
        .args(["--tenant", "acme", "--schema"])
        .arg(&schema)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let db = pemba::db::Database::open(&data).unwrap();
    let filter = pemba::store::RelationshipFilter::default();
    let (page, _) =
        db.read_relationships("acme", pemba::db::Consistency::FullyConsistent, &filter, 10_000, None).unwrap();
    assert_eq!(page.len(), 1500);
    drop(db);

    // A relationship that exists fails its part of the chunk (revisions of 1,000): what was
    // stored before it stays, and the error says how much that is.
    let again = dir.join("again");
    let text: String = (0..1500)
        .map(|i| match i {
            0 | 1200 => "document:d0#viewer@user:u0\n".to_string(),
            i => format!("document:e{i}#viewer@user:u1\n"),
        })
        .collect();
    std::fs::write(&rels, text).unwrap();
    let first = Command::new(env!("CARGO_BIN_EXE_pemba"))
        .arg("import")
        .arg(&rels)
        .arg("--data-dir")
        .arg(&again)
        .args(["--tenant", "acme", "--schema"])
        .arg(&schema)
        .output()
        .unwrap();
    assert_eq!(first.status.code(), Some(2), "{}", String::from_utf8_lossy(&first.stdout));
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(err.contains("1000 relationships were loaded") && err.contains("already exists"), "{err}");
    let db = pemba::db::Database::open(&again).unwrap();
    let (page, _) =
        db.read_relationships("acme", pemba::db::Consistency::FullyConsistent, &filter, 10_000, None).unwrap();
    assert_eq!(page.len(), 1000);
    drop(db);
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}

/// `pemba debug drive` prints the benchmarks' data set as relationship text, ready to import.
#[test]
fn debug_drive_prints_the_data_set_as_relationship_text() {
    let out = Command::new(env!("CARGO_BIN_EXE_pemba")).args(["debug", "drive", "--size", "s"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let rels: Vec<pemba::model::Relationship> = text.lines().map(|l| l.parse().unwrap()).collect();
    assert!((40_000..60_000).contains(&rels.len()), "{}", rels.len());
    let conditions = pemba::conditions::Conditions::new();
    let schema = pemba::schema::compile_text(pemba::bench::workload::DRIVE_SCHEMA, &conditions).unwrap();
    for r in &rels {
        schema.check_relationship(r).unwrap();
    }
}
