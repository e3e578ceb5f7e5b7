//! The gRPC server in-process on `127.0.0.1:0`, used through tonic clients built from `proto/`:
//! the RPCs a SpiceDB client makes, tenants kept apart, keys, tokens and cursors that belong to
//! one tenant, errors with their codes, and a restart on the same directory.

use std::time::Duration;

use pemba::server::proto::authzed::api::v1 as api;
use pemba::server::proto::pemba::v1 as pb;
use pemba::server::{self, Config};
use tonic::transport::Channel;
use tonic::{Code, Request};

pub const SCHEMA: &str = "use expiration\ndefinition user {}\ncaveat on_network(ip ipaddress, net string) {\n  ip.in_cidr(net)\n}\ndefinition document {\n  relation viewer: user | user with on_network | user with expiration\n  permission view = viewer\n}";

pub struct Running {
    pub addr: std::net::SocketAddr,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub done: tokio::task::JoinHandle<Result<(), server::ServerError>>,
}

pub async fn start(dir: &std::path::Path) -> Running {
    start_with(dir, Duration::from_secs(10), None).await
}

/// [`start`] with a default deadline and TLS.
async fn start_with(
    dir: &std::path::Path,
    default_deadline: Duration,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> Running {
    let config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        keys: vec![("acme".into(), "key-acme".into()), ("globex".into(), "key-globex".into())],
        admin_key: Some("key-admin".into()),
        tls: None,
        default_deadline,
        slow_request: Duration::from_secs(1),
        limits: Default::default(),
    };
    let prepared = tokio::task::spawn_blocking(move || server::prepare(&config)).await.unwrap().unwrap();
    assert!(prepared.generated.is_none());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(server::serve(
        prepared.db,
        prepared.keys,
        listener,
        tls,
        default_deadline,
        Duration::from_secs(1),
        async {
            let _ = stopped.await;
        },
    ));
    Running { addr, stop, done }
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    for _ in 0..100 {
        if let Ok(c) = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the server at {addr} did not come up");
}

fn with_key<T>(key: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    r
}

fn obj(t: &str, id: &str) -> Option<api::ObjectReference> {
    Some(api::ObjectReference { object_type: t.into(), object_id: id.into() })
}

fn user(id: &str) -> Option<api::SubjectReference> {
    Some(api::SubjectReference { object: obj("user", id), optional_relation: String::new() })
}

fn fully() -> Option<api::Consistency> {
    Some(api::Consistency { requirement: Some(api::consistency::Requirement::FullyConsistent(true)) })
}

fn at_least(token: &api::ZedToken) -> Option<api::Consistency> {
    Some(api::Consistency { requirement: Some(api::consistency::Requirement::AtLeastAsFresh(token.clone())) })
}

fn context(pairs: &[(&str, &str)]) -> Option<prost_types::Struct> {
    Some(prost_types::Struct {
        fields: pairs
            .iter()
            .map(|(k, v)| {
                (k.to_string(), prost_types::Value { kind: Some(prost_types::value::Kind::StringValue(v.to_string())) })
            })
            .collect(),
    })
}

/// The `google.rpc.ErrorInfo` reason among a status's details.
fn error_reason(details: &[prost_types::Any]) -> String {
    use pemba::server::proto::google::rpc::ErrorInfo;
    let any = details.iter().find(|a| a.type_url == "type.googleapis.com/google.rpc.ErrorInfo").expect("an ErrorInfo");
    let info: ErrorInfo = prost::Message::decode(any.value.as_slice()).unwrap();
    assert_eq!(info.domain, "authzed.com");
    info.reason
}

trait IntoCheck {
    fn into_check(self) -> api::CheckPermissionRequest;
}

impl IntoCheck for api::CheckBulkPermissionsRequestItem {
    fn into_check(self) -> api::CheckPermissionRequest {
        api::CheckPermissionRequest {
            consistency: None,
            resource: self.resource,
            permission: self.permission,
            subject: self.subject,
            context: self.context,
            with_tracing: false,
        }
    }
}

fn rel(doc: &str, who: &str) -> api::Relationship {
    api::Relationship {
        resource: obj("document", doc),
        relation: "viewer".into(),
        subject: user(who),
        optional_caveat: None,
        optional_expires_at: None,
    }
}

fn touch(r: api::Relationship) -> api::RelationshipUpdate {
    api::RelationshipUpdate { operation: api::relationship_update::Operation::Touch as i32, relationship: Some(r) }
}

fn check(
    key: &str,
    doc: &str,
    who: &str,
    ctx: Option<prost_types::Struct>,
    token: &api::ZedToken,
) -> Request<api::CheckPermissionRequest> {
    with_key(
        key,
        api::CheckPermissionRequest {
            consistency: at_least(token),
            resource: obj("document", doc),
            permission: "view".into(),
            subject: user(who),
            context: ctx,
            with_tracing: false,
        },
    )
}

type Perms = api::permissions_service_client::PermissionsServiceClient<Channel>;

async fn lookup_all(perms: &mut Perms, key: &str, who: &str, limit: u32) -> Result<Vec<String>, tonic::Status> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let req = api::LookupResourcesRequest {
            consistency: fully(),
            resource_object_type: "document".into(),
            permission: "view".into(),
            subject: user(who),
            context: None,
            optional_limit: limit,
            optional_cursor: cursor.clone(),
            with_debug: false,
        };
        let mut stream = perms.lookup_resources(with_key(key, req)).await?.into_inner();
        let mut got = 0;
        while let Some(r) = stream.message().await? {
            got += 1;
            ids.push(r.resource_object_id);
            cursor = r.after_result_cursor;
        }
        if limit == 0 || got < limit as usize {
            return Ok(ids);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spicedb_clients_are_served_per_tenant() {
    let dir = super::store::temp_dir("server");
    let running = start(&dir).await;
    let ch = channel(running.addr).await;
    let mut schema = api::schema_service_client::SchemaServiceClient::new(ch.clone());
    let mut perms = api::permissions_service_client::PermissionsServiceClient::new(ch.clone());

    // No key, a wrong key: UNAUTHENTICATED.
    let err = schema.read_schema(Request::new(api::ReadSchemaRequest {})).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = schema.read_schema(with_key("nope", api::ReadSchemaRequest {})).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // No schema yet: NOT_FOUND (as SpiceDB answers ReadSchema) naming the code.
    let err = schema.read_schema(with_key("key-acme", api::ReadSchemaRequest {})).await.unwrap_err();
    assert_eq!(
        (err.code(), err.metadata().get("pemba-error-code").unwrap().to_str().unwrap()),
        (Code::NotFound, "NO_SCHEMA")
    );
    // A schema that does not compile: INVALID_ARGUMENT with line and column.
    let err = schema
        .write_schema(with_key("key-acme", api::WriteSchemaRequest { schema: "definition {".into() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("schema:1:12"), "{}", err.message());
    for key in ["key-acme", "key-globex"] {
        schema.write_schema(with_key(key, api::WriteSchemaRequest { schema: SCHEMA.into() })).await.unwrap();
    }
    let read = schema.read_schema(with_key("key-acme", api::ReadSchemaRequest {})).await.unwrap().into_inner();
    assert_eq!(read.schema_text, SCHEMA);

    // Writes: plain, caveated, expiring (one long expired).
    let mut caveated = rel("2", "bob");
    caveated.optional_caveat = Some(api::ContextualizedCaveat {
        caveat_name: "on_network".into(),
        context: context(&[("net", "10.0.0.0/8")]),
    });
    let mut expired = rel("3", "ann");
    expired.optional_expires_at = Some(prost_types::Timestamp { seconds: 946684800, nanos: 0 });
    let mut expiring = rel("4", "ann");
    let until = prost_types::Timestamp { seconds: 32503680000, nanos: 0 }; // 3000-01-01
    expiring.optional_expires_at = Some(until);
    let mut updates = vec![touch(rel("1", "ann")), touch(caveated), touch(expired), touch(expiring)];
    updates.extend((10..15).map(|i| touch(rel(&format!("d{i}"), "ann"))));
    let written = perms
        .write_relationships(with_key("key-acme", api::WriteRelationshipsRequest { updates, ..Default::default() }))
        .await
        .unwrap()
        .into_inner()
        .written_at
        .unwrap();

    use api::check_permission_response::Permissionship as P;
    let answer = |r: api::CheckPermissionResponse| {
        (P::try_from(r.permissionship).unwrap(), r.partial_caveat_info.map(|p| p.missing_required_context))
    };
    let r = perms.check_permission(check("key-acme", "1", "ann", None, &written)).await.unwrap().into_inner();
    assert_eq!(r.optional_expires_at, None, "no expiring relationship decided it");
    assert_eq!(answer(r), (P::HasPermission, None));
    let r = perms.check_permission(check("key-acme", "4", "ann", None, &written)).await.unwrap().into_inner();
    assert_eq!(r.optional_expires_at, Some(until), "the grant's expiration bounds the answer");
    assert_eq!(answer(r), (P::HasPermission, None));
    let r = perms.check_permission(check("key-acme", "1", "bob", None, &written)).await.unwrap().into_inner();
    assert_eq!(answer(r), (P::NoPermission, None));
    let r = perms.check_permission(check("key-acme", "3", "ann", None, &written)).await.unwrap().into_inner();
    assert_eq!(answer(r), (P::NoPermission, None), "an expired relationship does not exist");
    let r = perms.check_permission(check("key-acme", "2", "bob", None, &written)).await.unwrap().into_inner();
    assert_eq!(answer(r), (P::ConditionalPermission, Some(vec!["ip".to_string()])));
    let r = perms
        .check_permission(check("key-acme", "2", "bob", context(&[("ip", "10.1.2.3")]), &written))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer(r), (P::HasPermission, None));
    // A bad field is INVALID_ARGUMENT naming it.
    let mut bad = check("key-acme", "1", "ann", None, &written);
    bad.get_mut().resource = obj("Document", "1");
    let err = perms.check_permission(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("`resource.object_type`"), "{}", err.message());

    // CheckBulk, with a per-item error.
    let item = |doc: &str, perm: &str| api::CheckBulkPermissionsRequestItem {
        resource: obj("document", doc),
        permission: perm.into(),
        subject: user("ann"),
        context: None,
    };
    let bulk = perms
        .check_bulk_permissions(with_key(
            "key-acme",
            api::CheckBulkPermissionsRequest {
                consistency: fully(),
                items: vec![item("1", "view"), item("1", "nosuch")],
                with_tracing: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    use api::check_bulk_permissions_pair::Response as R;
    assert!(matches!(&bulk.pairs[0].response, Some(R::Item(i)) if i.permissionship == P::HasPermission as i32));
    let Some(R::Error(e)) = &bulk.pairs[1].response else { panic!("{:?}", bulk.pairs[1]) };
    assert_eq!(e.code, Code::FailedPrecondition as i32, "an unknown name is FAILED_PRECONDITION, as in SpiceDB");
    assert_eq!(error_reason(&e.details), "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION");
    // A failed call carries the same in its details.
    let err = perms
        .check_permission(with_key(
            "key-acme",
            api::CheckPermissionRequest { consistency: fully(), ..item("1", "nosuch").into_check() },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let details: pemba::server::proto::google::rpc::Status = prost::Message::decode(err.details()).unwrap();
    assert_eq!(error_reason(&details.details), "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION");

    // LookupResources: unpaged, and in pages of 2 resumed from each page's last cursor.
    let all = lookup_all(&mut perms, "key-acme", "ann", 0).await.unwrap();
    assert_eq!(all, ["1", "4", "d10", "d11", "d12", "d13", "d14"]);
    assert_eq!(lookup_all(&mut perms, "key-acme", "ann", 2).await.unwrap(), all);

    // LookupSubjects and Expand.
    let mut subjects = perms
        .lookup_subjects(with_key(
            "key-acme",
            api::LookupSubjectsRequest {
                consistency: fully(),
                resource: obj("document", "1"),
                permission: "view".into(),
                subject_object_type: "user".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut found = Vec::new();
    while let Some(s) = subjects.message().await.unwrap() {
        found.push(s.subject.unwrap().subject_object_id);
    }
    assert_eq!(found, ["ann"]);
    let tree = perms
        .expand_permission_tree(with_key(
            "key-acme",
            api::ExpandPermissionTreeRequest {
                consistency: fully(),
                resource: obj("document", "1"),
                permission: "view".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    // `view = viewer`: the tree is the relation's leaf, naming ann.
    let root = tree.tree_root.unwrap();
    assert_eq!(root.expanded_object, obj("document", "1"));
    assert!(
        matches!(root.tree_type, Some(api::permission_relationship_tree::TreeType::Leaf(l)) if l.subjects == vec![user("ann").unwrap()])
    );

    // ReadRelationships with a prefix filter.
    let filter = |prefix: &str| api::RelationshipFilter {
        resource_type: "document".into(),
        optional_resource_id_prefix: prefix.into(),
        ..Default::default()
    };
    let mut read = perms
        .read_relationships(with_key(
            "key-acme",
            api::ReadRelationshipsRequest {
                consistency: fully(),
                relationship_filter: Some(filter("d1")),
                optional_limit: 0,
                optional_cursor: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while read.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 5);
    // In pages of 2, each resumed from the last cursor: the same 5, in order. The cursor is
    // sealed: altered, or given with another filter or by another tenant, it is INVALID_ARGUMENT.
    let read_page = |key: &str, prefix: &str, cursor: Option<api::Cursor>| {
        with_key(
            key,
            api::ReadRelationshipsRequest {
                consistency: fully(),
                relationship_filter: Some(filter(prefix)),
                optional_limit: 2,
                optional_cursor: cursor,
            },
        )
    };
    let (mut seen, mut cursor) = (Vec::new(), None);
    loop {
        let mut page =
            perms.read_relationships(read_page("key-acme", "d1", cursor.clone())).await.unwrap().into_inner();
        let mut got = 0;
        while let Some(r) = page.message().await.unwrap() {
            got += 1;
            let rel = r.relationship.unwrap();
            seen.push((rel.resource.unwrap().object_id, rel.subject.unwrap().object.unwrap().object_id));
            cursor = r.after_result_cursor;
        }
        if got < 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    let cursor = cursor.unwrap();
    let mut altered = cursor.clone();
    altered.token.replace_range(10..11, if &altered.token[10..11] == "0" { "1" } else { "0" });
    for (key, prefix, c) in
        [("key-acme", "d1", altered), ("key-acme", "d", cursor.clone()), ("key-globex", "d1", cursor.clone())]
    {
        let err = match perms.read_relationships(read_page(key, prefix, Some(c))).await {
            Err(e) => e,
            Ok(s) => s.into_inner().message().await.expect_err("the cursor is refused"),
        };
        assert_eq!(err.code(), Code::InvalidArgument, "{key} {prefix}: {err:?}");
    }

    // The other tenant sees nothing, and the first tenant's token and cursor mean nothing to it.
    let r =
        perms.check_permission(check("key-globex", "1", "ann", None, &api::ZedToken { token: String::new() })).await;
    assert_eq!(r.unwrap_err().code(), Code::InvalidArgument, "an empty token is no token");
    let mut req = check("key-globex", "1", "ann", None, &written);
    let err = perms.check_permission(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("consistency.at_least_as_fresh"), "{}", err.message());
    req = check("key-globex", "1", "ann", None, &written);
    req.get_mut().consistency = fully();
    let r = perms.check_permission(req).await.unwrap().into_inner();
    assert_eq!(answer(r), (P::NoPermission, None));
    assert!(lookup_all(&mut perms, "key-globex", "ann", 0).await.unwrap().is_empty());
    // A lookup cursor of the first tenant is refused by the second, naming the field; so is its
    // token as a Watch's start.
    let lookup = |key: &str, cursor: Option<api::Cursor>| {
        with_key(
            key,
            api::LookupResourcesRequest {
                consistency: fully(),
                resource_object_type: "document".into(),
                permission: "view".into(),
                subject: user("ann"),
                context: None,
                optional_limit: 1,
                optional_cursor: cursor,
                with_debug: false,
            },
        )
    };
    let first = perms.lookup_resources(lookup("key-acme", None)).await.unwrap().into_inner().message().await;
    let foreign = first.unwrap().unwrap().after_result_cursor;
    assert!(foreign.is_some());
    let err = match perms.lookup_resources(lookup("key-globex", foreign)).await {
        Err(e) => e,
        Ok(stream) => stream.into_inner().message().await.expect_err("another tenant's cursor is refused"),
    };
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("cursor"), "{}", err.message());
    let mut watch = api::watch_service_client::WatchServiceClient::new(ch.clone());
    let err = match watch
        .watch(with_key(
            "key-globex",
            api::WatchRequest { optional_start_cursor: Some(written.clone()), ..Default::default() },
        ))
        .await
    {
        Err(e) => e,
        Ok(stream) => stream.into_inner().message().await.expect_err("another tenant's token is refused"),
    };
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // DeleteRelationships, then Watch sees a write made after it started.
    let deleted = perms
        .delete_relationships(with_key(
            "key-acme",
            api::DeleteRelationshipsRequest { relationship_filter: Some(filter("d1")), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.relationships_deleted_count, 5);
    let mut watch = api::watch_service_client::WatchServiceClient::new(ch.clone());
    let mut updates = watch
        .watch(with_key(
            "key-acme",
            api::WatchRequest { optional_start_cursor: deleted.deleted_at.clone(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner();
    let later = perms
        .write_relationships(with_key(
            "key-acme",
            api::WriteRelationshipsRequest { updates: vec![touch(rel("9", "cy"))], ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .written_at
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), updates.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(seen.updates.len(), 1);
    assert_eq!(seen.changes_through.unwrap().token, later.token);
    // A lookup at an older revision says it looked up at that revision, not at the head.
    let mut old = perms
        .lookup_resources(with_key(
            "key-acme",
            api::LookupResourcesRequest {
                consistency: Some(api::Consistency {
                    requirement: Some(api::consistency::Requirement::AtExactSnapshot(written.clone())),
                }),
                resource_object_type: "document".into(),
                permission: "view".into(),
                subject: user("ann"),
                context: None,
                optional_limit: 0,
                optional_cursor: None,
                with_debug: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let first = old.message().await.unwrap().expect("ann saw documents at that revision");
    assert_eq!(first.looked_up_at.unwrap().token, written.token);

    // The tenant service needs the admin key.
    let mut tenants = pb::tenant_service_client::TenantServiceClient::new(ch.clone());
    let err = tenants.list_tenants(with_key("key-acme", pb::ListTenantsRequest {})).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let list = tenants.list_tenants(with_key("key-admin", pb::ListTenantsRequest {})).await.unwrap().into_inner();
    assert_eq!(list.tenants.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["acme", "globex"]);
    let added = tenants
        .add_key(with_key(
            "key-admin",
            pb::AddKeyRequest { tenant: "globex".into(), key_id: String::new(), key: String::new() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(added.key.starts_with("pmb_"));
    schema.read_schema(with_key(&added.key, api::ReadSchemaRequest {})).await.unwrap();

    // Graceful stop, then a restart on the same directory keeps data, keys and tokens.
    running.stop.send(()).unwrap();
    running.done.await.unwrap().unwrap();
    let running = start(&dir).await;
    let ch = channel(running.addr).await;
    let mut perms = api::permissions_service_client::PermissionsServiceClient::new(ch.clone());
    let r = perms.check_permission(check("key-acme", "9", "cy", None, &later)).await.unwrap().into_inner();
    assert_eq!(answer(r), (P::HasPermission, None));
    let mut schema = api::schema_service_client::SchemaServiceClient::new(ch);
    schema.read_schema(with_key(&added.key, api::ReadSchemaRequest {})).await.unwrap();
    running.stop.send(()).unwrap();
    running.done.await.unwrap().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The Python interpreter of the virtualenv `.ci/run` makes under `target/py` (with the official
/// `authzed` client), if present. Under `CI` it must be.
pub fn python() -> Option<std::path::PathBuf> {
    let py = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py/bin/python");
    if py.exists() {
        return Some(py);
    }
    if std::env::var_os("CI").is_some() {
        panic!("{} is missing and CI is set: .ci/run installs the official Python client there", py.display());
    }
    eprintln!("note: {} not found; the Python client tests are skipped outside CI", py.display());
    None
}

/// Every service, method, message, field and enum Pemba declares in `authzed.api.v1` has the
/// names, numbers, types, labels and streaming of the descriptors in the official Python
/// `authzed` package.
#[test]
fn declared_api_matches_the_official_python_package() {
    let Some(py) = python() else { return };
    let file = super::store::temp_dir("descriptors");
    std::fs::write(&file, pemba::server::proto::FILE_DESCRIPTOR_SET).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/compare_descriptors.py");
    let out = std::process::Command::new(py).arg(script).arg(&file).output().unwrap();
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(" 0 differences"), "{text}");
}

/// `pemba serve` as a child process, used by the official Python client (tests/py/client_e2e.py):
/// the README's path for a SpiceDB user. Then SIGTERM stops it with exit status 0.
#[test]
fn the_official_python_client_works_against_pemba_serve() {
    use std::io::BufRead;
    let Some(py) = python() else { return };
    let dir = super::store::temp_dir("serve-python");
    let mut child = super::store::Reaped(
        std::process::Command::new(env!("CARGO_BIN_EXE_pemba"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .args(["--tenant", "acme=key-acme", "--tenant", "globex=key-globex", "--slow-request-ms", "0"])
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The log line `... serving addr=127.0.0.1:PORT tls=false` says where it serves, once open.
    let mut log = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let addr = loop {
        let mut line = String::new();
        if log.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            panic!("pemba serve exited before listening:\n{seen}");
        }
        seen.push_str(&line);
        if !line.contains(" serving") {
            continue;
        }
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    let drain = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut log, &mut rest);
        rest
    });
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/client_e2e.py");
    let out = std::process::Command::new(py).arg(script).arg(&addr).output().unwrap();
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let rest = drain.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("all steps passed"),
        "{text}{}\nserver log:\n{seen}{rest}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(exit.success(), "pemba serve exited with {exit:?} on SIGTERM:\n{seen}{rest}");
    assert!(rest.contains("stopped"), "{rest}");
    // With a threshold of 0 ms every call is a slow request in the log, named by its method.
    assert!(
        rest.contains("slow request") && rest.contains("/authzed.api.v1.PermissionsService/CheckPermission"),
        "{rest}"
    );
}

/// The server listens before the database is open: health says NOT_SERVING (and nothing else is
/// served) until it is, then SERVING, and the API answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_until_the_database_is_open() {
    use tonic_health::ServingStatus;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let dir = super::store::temp_dir("serve-opening");
    let config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        keys: vec![("acme".into(), "key-acme".into())],
        admin_key: None,
        tls: None,
        default_deadline: Duration::from_secs(10),
        slow_request: Duration::from_secs(1),
        limits: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let open = async move {
        let _ = released.await;
        tokio::task::spawn_blocking(move || server::prepare(&config)).await.unwrap()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(server::serve_opening(
        open,
        listener,
        None,
        Duration::from_secs(10),
        Duration::from_secs(1),
        async {
            let _ = stopped.await;
        },
    ));
    let status = |service: &str| {
        let service = service.to_string();
        async move {
            let mut health = HealthClient::new(channel(addr).await);
            health.check(HealthCheckRequest { service }).await.map(|r| r.into_inner().status)
        }
    };
    let permissions = "authzed.api.v1.PermissionsService";
    assert_eq!(status("").await.unwrap(), ServingStatus::NotServing as i32);
    assert_eq!(status(permissions).await.unwrap(), ServingStatus::NotServing as i32);
    let mut schema = api::schema_service_client::SchemaServiceClient::new(channel(addr).await);
    let early = schema.read_schema(with_key("key-acme", api::ReadSchemaRequest {})).await.unwrap_err();
    assert_eq!(early.code(), Code::Unimplemented, "{early:?}");

    release.send(()).unwrap();
    let mut serving = None;
    for _ in 0..250 {
        if let Ok(s) = status(permissions).await
            && s == ServingStatus::Serving as i32
        {
            serving = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(serving.is_some(), "health never said SERVING");
    assert_eq!(status("").await.unwrap(), ServingStatus::Serving as i32);
    let mut schema = api::schema_service_client::SchemaServiceClient::new(channel(addr).await);
    let err = schema.read_schema(with_key("key-acme", api::ReadSchemaRequest {})).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "a tenant with no schema yet: {err:?}");
    stop.send(()).unwrap();
    assert!(done.await.unwrap().unwrap().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stream that has started answering still ends at the server's default deadline (tonic's
/// timeout only bounds the wait for the first answer); the lookup behind it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_at_the_default_deadline() {
    let dir = super::store::temp_dir("serve-deadline");
    let total = 30_000;
    // The data, written with the usual deadline.
    let running = start(&dir).await;
    let ch = channel(running.addr).await;
    let mut schema = api::schema_service_client::SchemaServiceClient::new(ch.clone());
    let mut perms = api::permissions_service_client::PermissionsServiceClient::new(ch);
    schema.write_schema(with_key("key-acme", api::WriteSchemaRequest { schema: SCHEMA.into() })).await.unwrap();
    for chunk in 0..total / 1000 {
        let updates = (0..1000).map(|i| touch(rel(&format!("d{:05}", chunk * 1000 + i), "ann"))).collect();
        let req = api::WriteRelationshipsRequest { updates, ..Default::default() };
        perms.write_relationships(with_key("key-acme", req)).await.unwrap();
    }
    let _ = running.stop.send(());
    running.done.await.unwrap().unwrap();
    // Served again with a short default deadline.
    let running = start_with(&dir, Duration::from_millis(500), None).await;
    let mut perms = api::permissions_service_client::PermissionsServiceClient::new(channel(running.addr).await);
    // A client that reads one result and then stalls past the deadline gets DEADLINE_EXCEEDED
    // (after what was already in flight), not the rest.
    let req = api::LookupResourcesRequest {
        consistency: fully(),
        resource_object_type: "document".into(),
        permission: "view".into(),
        subject: user("ann"),
        context: None,
        optional_limit: 0,
        optional_cursor: None,
        with_debug: false,
    };
    let mut stream = perms.lookup_resources(with_key("key-acme", req)).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut got = 1;
    let end = loop {
        match stream.message().await {
            Ok(Some(_)) => got += 1,
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    let err = end.unwrap_or_else(|| panic!("the stream ended without an error after {got} results"));
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(got < total, "{got} results arrived");
    let _ = running.stop.send(());
    running.done.await.unwrap().unwrap();
}

/// `--tls-cert` / `--tls-key`: a client trusting the certificate's CA is served over TLS; a
/// plaintext client is not. (The files under tests/it/tls are a test CA and a `localhost`
/// certificate it signed, valid until 2126; the CA's key was not kept.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_served_with_the_configured_certificate() {
    use tonic::transport::{Certificate, ClientTlsConfig};
    let tls_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/tls");
    let tls = server::tls_config(&tls_dir.join("server.crt"), &tls_dir.join("server.key")).unwrap();
    let dir = super::store::temp_dir("serve-tls");
    let Running { addr, stop, done } = start_with(&dir, Duration::from_secs(10), Some(tls)).await;
    let ca = Certificate::from_pem(std::fs::read(tls_dir.join("ca.crt")).unwrap());
    let client_tls = ClientTlsConfig::new().ca_certificate(ca).domain_name("localhost");
    let endpoint =
        Channel::from_shared(format!("https://localhost:{}", addr.port())).unwrap().tls_config(client_tls).unwrap();
    let mut ch = None;
    for _ in 0..100 {
        if let Ok(c) = endpoint.connect().await {
            ch = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut schema = api::schema_service_client::SchemaServiceClient::new(ch.expect("a TLS connection"));
    schema.write_schema(with_key("key-acme", api::WriteSchemaRequest { schema: SCHEMA.into() })).await.unwrap();
    let read = schema.read_schema(with_key("key-acme", api::ReadSchemaRequest {})).await.unwrap().into_inner();
    assert_eq!(read.schema_text, SCHEMA);
    // The client commands over TLS: trusting the CA, then refused without it (`https://` with
    // the system's roots, which do not hold the test CA).
    let endpoint = format!("localhost:{}", addr.port());
    let ca = tls_dir.join("ca.crt");
    let (trusted, untrusted) = tokio::task::spawn_blocking(move || {
        let run = |extra: &[&str]| {
            std::process::Command::new(env!("CARGO_BIN_EXE_pemba"))
                .args(["schema", "read", "--endpoint", &endpoint, "--token", "key-acme"])
                .args(extra)
                .output()
                .unwrap()
        };
        (run(&["--ca-cert", ca.to_str().unwrap()]), run(&["--tls"]))
    })
    .await
    .unwrap();
    assert!(trusted.status.success(), "{}", String::from_utf8_lossy(&trusted.stderr));
    assert_eq!(String::from_utf8_lossy(&trusted.stdout).trim_end(), SCHEMA);
    assert_eq!(untrusted.status.code(), Some(2));
    // Plaintext to the TLS port: no answer.
    let plain = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await;
    if let Ok(plain) = plain {
        let mut schema = api::schema_service_client::SchemaServiceClient::new(plain);
        assert!(schema.read_schema(with_key("key-acme", api::ReadSchemaRequest {})).await.is_err());
    }
    let _ = stop.send(());
    done.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Watch's options, as SpiceDB's: update kinds (relationship updates by default; schema updates
/// and checkpoints on request), relationship filters or object types (not both), and each
/// write's transaction metadata on its response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_selects_kinds_and_filters_and_carries_transaction_metadata() {
    use api::WatchKind;
    let dir = super::store::temp_dir("serve-watch");
    let running = start(&dir).await;
    let ch = channel(running.addr).await;
    let mut schema = api::schema_service_client::SchemaServiceClient::new(ch.clone());
    let mut perms = api::permissions_service_client::PermissionsServiceClient::new(ch.clone());
    let mut watch = api::watch_service_client::WatchServiceClient::new(ch);
    let start_at =
        schema.write_schema(with_key("key-acme", api::WriteSchemaRequest { schema: SCHEMA.into() })).await.unwrap();
    let start_at = start_at.into_inner().written_at;
    let open = |req: api::WatchRequest| {
        with_key("key-acme", api::WatchRequest { optional_start_cursor: start_at.clone(), ..req })
    };
    let ann_only = api::RelationshipFilter {
        resource_type: "document".into(),
        optional_subject_filter: Some(api::SubjectFilter {
            subject_type: "user".into(),
            optional_subject_id: "ann".into(),
            optional_relation: None,
        }),
        ..Default::default()
    };
    // Refused at once: both selections, or an unknown kind.
    let both = api::WatchRequest {
        optional_object_types: vec!["document".into()],
        optional_relationship_filters: vec![ann_only.clone()],
        ..Default::default()
    };
    let err = watch.watch(open(both)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("optional_relationship_filters"), "{}", err.message());
    let err = watch
        .watch(open(api::WatchRequest { optional_update_kinds: vec![99], ..Default::default() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("optional_update_kinds[0]"), "{}", err.message());

    let mut plain = watch.watch(open(api::WatchRequest::default())).await.unwrap().into_inner();
    let mut selective = watch
        .watch(open(api::WatchRequest {
            optional_relationship_filters: vec![ann_only],
            optional_update_kinds: vec![
                WatchKind::IncludeRelationshipUpdates as i32,
                WatchKind::IncludeSchemaUpdates as i32,
                WatchKind::IncludeCheckpoints as i32,
            ],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let metadata = |k: &str, v: &str| context(&[(k, v)]);
    let write = |updates: Vec<api::RelationshipUpdate>, meta: Option<prost_types::Struct>| {
        with_key(
            "key-acme",
            api::WriteRelationshipsRequest { updates, optional_transaction_metadata: meta, ..Default::default() },
        )
    };
    perms.write_relationships(write(vec![touch(rel("1", "ann"))], metadata("ticket", "T-1"))).await.unwrap();
    perms.write_relationships(write(vec![touch(rel("2", "bob"))], None)).await.unwrap();
    let deleted = perms
        .delete_relationships(with_key(
            "key-acme",
            api::DeleteRelationshipsRequest {
                relationship_filter: Some(api::RelationshipFilter {
                    resource_type: "document".into(),
                    optional_resource_id: "2".into(),
                    ..Default::default()
                }),
                optional_transaction_metadata: metadata("reason", "cleanup"),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.relationships_deleted_count, 1, "the metadata is not a deleted relationship");
    let last =
        schema.write_schema(with_key("key-acme", api::WriteSchemaRequest { schema: SCHEMA.into() })).await.unwrap();
    let last = last.into_inner().written_at.unwrap();

    let described = |r: &api::WatchResponse| {
        let ups: Vec<String> = r
            .updates
            .iter()
            .map(|u| {
                let rel = u.relationship.as_ref().unwrap();
                format!("{}:{}", u.operation, rel.resource.as_ref().unwrap().object_id)
            })
            .collect();
        let meta = r.optional_transaction_metadata.as_ref().map(|m| m.fields.keys().cloned().collect::<Vec<_>>());
        (ups, meta, r.schema_updated, r.is_checkpoint)
    };
    let (touch_op, delete_op) =
        (api::relationship_update::Operation::Touch as i32, api::relationship_update::Operation::Delete as i32);
    // By default: the three relationship changes, each with its metadata; no schema update.
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(described(&next_watched(&mut plain).await));
    }
    assert_eq!(
        seen,
        vec![
            (vec![format!("{touch_op}:1")], Some(vec!["ticket".to_string()]), false, false),
            (vec![format!("{touch_op}:2")], None, false, false),
            (vec![format!("{delete_op}:2")], Some(vec!["reason".to_string()]), false, false),
        ]
    );
    // Selected: ann's write and the schema update, with checkpoints whenever it caught up.
    let mut changes = Vec::new();
    let mut checkpoints = 0;
    loop {
        let r = next_watched(&mut selective).await;
        if r.is_checkpoint {
            assert!(r.updates.is_empty() && !r.schema_updated);
            checkpoints += 1;
            continue;
        }
        let done = r.schema_updated;
        let through = r.changes_through.clone().unwrap();
        changes.push(described(&r));
        if done {
            assert_eq!(through.token, last.token);
            break;
        }
    }
    assert_eq!(
        changes,
        vec![
            (vec![format!("{touch_op}:1")], Some(vec!["ticket".to_string()]), false, false),
            (vec![], None, true, false),
        ]
    );
    assert!(checkpoints >= 1, "a checkpoint once caught up at the start");
    let _ = running.stop.send(());
    running.done.await.unwrap().unwrap();
}

async fn next_watched(s: &mut tonic::Streaming<api::WatchResponse>) -> api::WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), s.message()).await.unwrap().unwrap().unwrap()
}

/// The load benchmark's streaming floor: the admin key only; `count` copies of the template;
/// a count past the limit is INVALID_ARGUMENT naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streaming_floor_is_for_the_admin_and_sends_what_was_asked() {
    let dir = super::store::temp_dir("serve-floor");
    let running = start(&dir).await;
    let mut floor = pb::floor_service_client::FloorServiceClient::new(channel(running.addr).await);
    let template = api::LookupResourcesResponse { resource_object_id: "doc-1".into(), ..Default::default() };
    let req = |n: u32| pb::StreamFloorRequest { count: n, template: Some(template.clone()) };
    let err = floor.stream_floor(with_key("key-acme", req(3))).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let mut stream = floor.stream_floor(with_key("key-admin", req(1000))).await.unwrap().into_inner();
    let mut n = 0;
    while let Some(m) = stream.message().await.unwrap() {
        assert_eq!(m, template);
        n += 1;
    }
    assert_eq!(n, 1000);
    let err = floor.stream_floor(with_key("key-admin", req(u32::MAX))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("count"), "{}", err.message());
    let _ = running.stop.send(());
    running.done.await.unwrap().unwrap();
}
