//! The gRPC server: SpiceDB's `authzed.api.v1` services (permissions, schema, watch) and Pemba's
//! `pemba.v1` (tenants, export), with `grpc.health.v1` and server reflection, over the embedded
//! `Database`.
//!
//! A bearer key names the tenant (`keys.rs`): an interceptor resolves it before any handler runs
//! and hands the handler the tenant, so no handler can read another tenant's data. Handlers
//! convert (`convert.rs`: validation naming the field, the one mapping of errors to statuses),
//! call the database, convert back.
//!
//! Architecture invariant: the only module that knows tonic, prost and gRPC codes; nothing below
//! it knows gRPC.

pub mod client;
pub mod convert;
pub mod deadline;
mod expand;
pub mod floor;
pub mod keys;
pub mod permissions;
pub mod proto;
pub mod schema;
pub mod tenants;
pub mod trace;
pub mod watch;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Status};

use self::keys::Keys;
use self::proto::authzed::api::v1::{
    permissions_service_server::PermissionsServiceServer, schema_service_server::SchemaServiceServer,
    watch_service_server::WatchServiceServer,
};
use self::proto::pemba::v1::{
    export_service_server::ExportServiceServer, floor_service_server::FloorServiceServer,
    tenant_service_server::TenantServiceServer,
};
use crate::db::{Database, DbError};

/// The tenant a request's key names (set by the interceptor, read by every handler).
#[derive(Debug, Clone)]
pub struct Tenant(pub String);

/// Set on requests that carry the admin key.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

/// The tenant of an authenticated request.
pub fn tenant<T>(request: &Request<T>) -> Result<Tenant, Status> {
    request.extensions().get::<Tenant>().cloned().ok_or_else(|| Status::unauthenticated("no tenant key"))
}

/// Runs database work on the blocking pool (writes wait for an fsync; lookups may take long), so
/// no async task waits on it.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, DbError> + Send + 'static) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(convert::status),
        Err(e) => Err(Status::internal(format!("a task failed: {e}"))),
    }
}

/// The bearer key of a request.
fn bearer<T>(request: &Request<T>) -> Result<String, Status> {
    let value = request
        .metadata()
        .get("authorization")
        .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer <key>` metadata"))?;
    let text = value.to_str().map_err(|_| Status::unauthenticated("the authorization metadata is not text"))?;
    let key = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .ok_or_else(|| Status::unauthenticated("the authorization metadata must be `Bearer <key>`"))?;
    Ok(key.trim().to_string())
}

/// Resolves a tenant key to its tenant.
#[derive(Clone)]
pub struct TenantAuth(Arc<Keys>, Duration);

impl tonic::service::Interceptor for TenantAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let key = bearer(&request)?;
        let tenant = self.0.tenant_of(&key).ok_or_else(|| Status::unauthenticated("unknown key"))?;
        let deadline = deadline::Deadline::of(&request, self.1);
        request.extensions_mut().insert(Tenant(tenant));
        request.extensions_mut().insert(deadline);
        Ok(request)
    }
}

/// Admits a tenant key (the request acts on its tenant) or the admin key (the request names
/// the tenant): the export service, which backups use.
#[derive(Clone)]
pub struct TenantOrAdminAuth(Arc<Keys>, Duration);

impl tonic::service::Interceptor for TenantOrAdminAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let key = bearer(&request)?;
        if self.0.is_admin(&key) {
            request.extensions_mut().insert(Admin);
            return Ok(request);
        }
        TenantAuth(self.0.clone(), self.1).call(request)
    }
}

/// Admits the admin key only.
#[derive(Clone)]
pub struct AdminAuth(Arc<Keys>);

impl tonic::service::Interceptor for AdminAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let key = bearer(&request)?;
        if !self.0.is_admin(&key) {
            return Err(Status::permission_denied("the tenant service needs the admin key"));
        }
        request.extensions_mut().insert(Admin);
        Ok(request)
    }
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    /// Keys given at start: (tenant, key). A tenant named here is created if missing.
    pub keys: Vec<(String, String)>,
    pub admin_key: Option<String>,
    /// PEM certificate chain and private key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The deadline of a request whose client sets none.
    pub default_deadline: Duration,
    /// Calls taking this long or longer are logged as slow.
    pub slow_request: Duration,
    /// The database's limits and per-tenant quotas.
    pub limits: crate::db::Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("tenant `{tenant}`: {error}")]
    Key { tenant: String, error: keys::KeyError },
    #[error("cannot listen on `{addr}`: {message}")]
    Listen { addr: String, message: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the server failed: {0}")]
    Transport(String),
}

/// Connections accepted on a listener, as a server's incoming stream.
type Incoming = tokio_stream::wrappers::ReceiverStream<std::io::Result<tokio::net::TcpStream>>;

/// Accepts on `listener` (no delay set on each connection) and hands each connection to the
/// `opening` stream until `opened` is set, then to the `open` stream. Ends when the stream it
/// would hand to is gone.
fn accept(
    listener: tokio::net::TcpListener,
    opened: Arc<std::sync::atomic::AtomicBool>,
) -> (Incoming, Incoming, tokio::task::JoinHandle<()>) {
    let (opening_tx, opening_rx) = tokio::sync::mpsc::channel(64);
    let (open_tx, open_rx) = tokio::sync::mpsc::channel(64);
    let task = tokio::spawn(async move {
        loop {
            let conn = match listener.accept().await {
                Ok((conn, _)) => conn,
                Err(e) => {
                    // Out of descriptors and the like: wait, do not stop serving.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = conn.set_nodelay(true);
            let to = if opened.load(std::sync::atomic::Ordering::Acquire) { &open_tx } else { &opening_tx };
            if to.send(Ok(conn)).await.is_err() && opened.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
        }
    });
    (Incoming::new(opening_rx), Incoming::new(open_rx), task)
}

/// Serves `db` on `listener` until `shutdown` completes: in-flight calls finish, then it returns.
pub async fn serve(
    db: Arc<Database>,
    keys: Arc<Keys>,
    listener: tokio::net::TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
    default_deadline: Duration,
    slow_request: Duration,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let (_, incoming, acceptor) = accept(listener, Arc::new(std::sync::atomic::AtomicBool::new(true)));
    let r = serve_incoming(db, keys, incoming, tls, default_deadline, slow_request, shutdown).await;
    acceptor.abort();
    r
}

/// Listens at once, while `open` opens the database (building every tenant's index): until it
/// has, `grpc.health.v1` answers NOT_SERVING (for the server and each service) and nothing else
/// is served. Then the opening server says GOAWAY to its connections (clients reconnect) and the
/// full server takes over the listener until `shutdown`. A failed open is returned.
pub async fn serve_opening(
    open: impl Future<Output = Result<Prepared, ServerError>> + Send,
    listener: tokio::net::TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
    default_deadline: Duration,
    slow_request: Duration,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Option<Prepared>, ServerError> {
    let opened = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (opening, incoming, acceptor) = accept(listener, opened.clone());
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_not_serving::<PermissionsServiceServer<permissions::Permissions>>().await;
    reporter.set_not_serving::<SchemaServiceServer<schema::Schema>>().await;
    reporter.set_not_serving::<WatchServiceServer<watch::Watch>>().await;
    reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
    let (stop_opening, opening_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls.clone() {
        builder = builder.tls_config(tls).map_err(|e| ServerError::Tls(e.to_string()))?;
    }
    let early = tokio::spawn(builder.add_service(health).serve_with_incoming_shutdown(opening, async {
        let _ = opening_stopped.await;
    }));
    let mut shutdown = std::pin::pin!(shutdown);
    let prepared = tokio::select! {
        p = open => p,
        () = &mut shutdown => {
            let _ = stop_opening.send(());
            let _ = early.await;
            acceptor.abort();
            return Ok(None);
        }
    };
    opened.store(true, std::sync::atomic::Ordering::Release);
    let _ = stop_opening.send(());
    let _ = early.await;
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            acceptor.abort();
            return Err(e);
        }
    };
    let (db, keys) = (prepared.db.clone(), prepared.keys.clone());
    let r = serve_incoming(db, keys, incoming, tls, default_deadline, slow_request, shutdown).await;
    acceptor.abort();
    r.map(|()| Some(prepared))
}

async fn serve_incoming(
    db: Arc<Database>,
    keys: Arc<Keys>,
    incoming: Incoming,
    tls: Option<tonic::transport::ServerTlsConfig>,
    default_deadline: Duration,
    slow_request: Duration,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Transport(e.to_string()))?;
    let auth = TenantAuth(keys.clone(), default_deadline);
    let permissions = PermissionsServiceServer::new(permissions::Permissions { db: db.clone(), default_deadline });
    let schema = SchemaServiceServer::new(schema::Schema { db: db.clone() });
    let (stop_watches, stopping) = tokio::sync::watch::channel(false);
    let watch = WatchServiceServer::new(watch::Watch { db: db.clone(), stopping });
    let export = ExportServiceServer::new(tenants::Export { db: db.clone() });
    let tenants = TenantServiceServer::new(tenants::Tenants { db: db.clone(), keys: keys.clone() });
    let floor = FloorServiceServer::new(floor::Floor { default_deadline });
    // Every tenant's index was built when the database opened: the services serve from now on.
    health_reporter.set_serving::<PermissionsServiceServer<permissions::Permissions>>().await;
    health_reporter.set_serving::<SchemaServiceServer<schema::Schema>>().await;
    health_reporter.set_serving::<WatchServiceServer<watch::Watch>>().await;
    health_reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
    let mut builder = tonic::transport::Server::builder().timeout(default_deadline);
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).map_err(|e| ServerError::Tls(e.to_string()))?;
    }
    let mut builder = builder.layer(trace::SlowLog { threshold: slow_request });
    builder
        .add_service(health)
        .add_service(reflection)
        .add_service(InterceptedService::new(permissions, auth.clone()))
        .add_service(InterceptedService::new(schema, auth.clone()))
        .add_service(InterceptedService::new(watch, auth.clone()))
        .add_service(InterceptedService::new(export, TenantOrAdminAuth(keys.clone(), default_deadline)))
        .add_service(InterceptedService::new(tenants, AdminAuth(keys.clone())))
        .add_service(InterceptedService::new(floor, AdminAuth(keys)))
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            // Watches never end by themselves: end them, so the calls in flight can finish.
            let _ = stop_watches.send(true);
        })
        .await
        .map_err(|e| ServerError::Transport(e.to_string()))
}

/// What `start` prepared: the database, its keys, and a key it generated (shown once).
pub struct Prepared {
    pub db: Arc<Database>,
    pub keys: Arc<Keys>,
    pub generated: Option<String>,
}

/// Opens the database, creates the tenants the configured keys name and adds those keys; with no
/// tenant key at all, creates tenant `default` and generates a key for it (returned once: only
/// its hash is stored).
pub fn prepare(config: &Config) -> Result<Prepared, ServerError> {
    let db = Arc::new(Database::open_with(&config.data_dir, config.limits)?);
    let keys = Arc::new(Keys::load(db.clone(), config.admin_key.as_deref())?);
    for (tenant, key) in &config.keys {
        if !db.tenants()?.contains(tenant) {
            db.create_tenant(tenant)?;
        }
        keys.add(tenant, key).map_err(|error| ServerError::Key { tenant: tenant.clone(), error })?;
    }
    let mut generated = None;
    if keys.is_empty() {
        if !db.tenants()?.contains(&"default".to_string()) {
            db.create_tenant("default")?;
        }
        let key = keys::generate();
        keys.add("default", &key).map_err(|error| ServerError::Key { tenant: "default".into(), error })?;
        generated = Some(key);
    }
    Ok(Prepared { db, keys, generated })
}

/// TLS from PEM files.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tonic::transport::ServerTlsConfig, ServerError> {
    let read = |p: &std::path::Path| {
        // A PEM file: text of a few KiB, read no further than 1 MiB.
        crate::text::read_limited(p, 1 << 20).map(String::into_bytes).map_err(|e| ServerError::Tls(e.to_string()))
    };
    let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
    Ok(tonic::transport::ServerTlsConfig::new().identity(identity))
}
