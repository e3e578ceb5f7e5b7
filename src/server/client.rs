//! A client of Pemba's gRPC API (SpiceDB's `authzed.api.v1` and `pemba.v1`) in the library's
//! own types, for the `pemba` client commands and the load benchmark. It lives beside the
//! generated code and the conversions the server uses, so both ends read the same `.proto`.

use std::path::PathBuf;

use serde_json::{Map, Value};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::{Request, Status};

use super::convert;
use super::proto::authzed::api::v1 as api;
use super::proto::pemba::v1 as pb;
use crate::engine::{CheckRequest, Decision};
use crate::model::{ObjectRef, Relationship, SubjectRef, Timestamp};
use crate::store::RelationshipFilter;

type Permissions = api::permissions_service_client::PermissionsServiceClient<Channel>;
type Schemas = api::schema_service_client::SchemaServiceClient<Channel>;
type Watches = api::watch_service_client::WatchServiceClient<Channel>;
type Tenants = pb::tenant_service_client::TenantServiceClient<Channel>;

/// How to reach a server.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:port`, or a URL (`http://…` is plaintext, `https://…` TLS).
    pub address: String,
    /// The bearer key: a tenant's key, or the admin key for the tenant service.
    pub token: String,
    pub tls: Tls,
}

/// Transport security of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// TLS unless the host is a loopback address (`localhost`, `127.0.0.1`, `[::1]`) or the
    /// address is an `http://` URL.
    Auto,
    /// No TLS (`--insecure`).
    Plaintext,
    /// TLS, trusting the system's roots.
    System,
    /// TLS, trusting this PEM CA certificate.
    CaFile(PathBuf),
}

/// The snapshot a read is answered at (SpiceDB's consistency).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadAt {
    MinimizeLatency,
    FullyConsistent,
    /// At least as fresh as this ZedToken.
    AtLeast(String),
    /// Exactly at this ZedToken's revision.
    Exact(String),
}

/// One update of a write.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    Create(Relationship),
    Touch(Relationship),
    Delete(Relationship),
}

/// What went wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to `{address}`: {reason}")]
    Connect { address: String, reason: String },
    /// The server answered with an error status.
    #[error("{code}: {message}")]
    Status { code: String, message: String },
    /// The server's answer does not make sense to this client.
    #[error("unexpected answer from the server: {0}")]
    Answer(String),
    #[error("{0}")]
    Invalid(String),
}

impl From<Status> for ClientError {
    fn from(s: Status) -> Self {
        ClientError::Status { code: format!("{:?}", s.code()), message: s.message().to_string() }
    }
}

/// A Check's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub decision: Decision,
    /// Until when the answer holds absent writes (the earliest expiration it read).
    pub expires_at: Option<Timestamp>,
    /// The ZedToken of the revision it was answered at.
    pub token: String,
}

/// One Watch response: the updates of one committed write.
#[derive(Debug, Clone, PartialEq)]
pub struct Watched {
    /// The ZedToken through which every change has now been reported.
    pub token: String,
    pub updates: Vec<Update>,
    pub schema_updated: bool,
    pub metadata: Map<String, Value>,
}

/// One line of a tenant's export.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportLine {
    /// The schema text (empty: the tenant has none).
    Schema(String),
    /// A relationship in SpiceDB's text form.
    Relationship(String),
    /// An object (`type:id`) and its attributes.
    Attributes(String, Map<String, Value>),
}

/// A tenant as listed by the tenant service.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantInfo {
    pub name: String,
    pub created_at: Option<Timestamp>,
    /// Its key ids (never the secrets).
    pub keys: Vec<String>,
}

/// A connection to a server, with its bearer key. Cheap to clone (one HTTP/2 connection).
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    auth: MetadataValue<Ascii>,
}

fn is_loopback(host: &str) -> bool {
    matches!(host, "localhost" | "[::1]" | "::1") || host.starts_with("127.")
}

impl Client {
    /// Connects (TLS as `endpoint.tls` says).
    pub async fn connect(endpoint: &Endpoint) -> Result<Client, ClientError> {
        let address = endpoint.address.trim();
        let fail = |reason: String| ClientError::Connect { address: address.to_string(), reason };
        let (scheme, rest) = match address.split_once("://") {
            Some((s, r)) => (Some(s), r),
            None => (None, address),
        };
        let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
        let tls = match (&endpoint.tls, scheme) {
            (Tls::Plaintext, _) => None,
            (Tls::Auto, Some("http")) => None,
            (Tls::Auto, Some("https")) => Some(ClientTlsConfig::new().with_native_roots()),
            (Tls::Auto, _) if is_loopback(host) => None,
            (Tls::Auto, _) | (Tls::System, _) => Some(ClientTlsConfig::new().with_native_roots()),
            (Tls::CaFile(path), _) => {
                let pem = crate::text::read_limited(path, 1 << 20)
                    .map_err(|e| fail(format!("the CA certificate: {e}")))?
                    .into_bytes();
                Some(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
            }
        };
        if matches!(scheme, Some(s) if s != "http" && s != "https") {
            return Err(fail("the address must be `host:port`, `http://host:port` or `https://host:port`".into()));
        }
        let uri = format!("{}://{rest}", if tls.is_some() { "https" } else { "http" });
        let mut ep = Channel::from_shared(uri).map_err(|e| fail(e.to_string()))?;
        if let Some(tls) = tls {
            let tls = if is_loopback(host) || host.parse::<std::net::IpAddr>().is_ok() {
                tls
            } else {
                tls.domain_name(host.to_string())
            };
            ep = ep.tls_config(tls).map_err(|e| fail(e.to_string()))?;
        }
        let channel = ep.connect().await.map_err(|e| fail(error_chain(&e)))?;
        let auth = format!("Bearer {}", endpoint.token)
            .parse()
            .map_err(|_| ClientError::Invalid("the token must be printable ASCII".into()))?;
        Ok(Client { channel, auth })
    }

    fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut().insert("authorization", self.auth.clone());
        r
    }

    fn permissions(&self) -> Permissions {
        Permissions::new(self.channel.clone()).max_decoding_message_size(64 << 20)
    }

    /// Writes a schema; returns its ZedToken.
    pub async fn write_schema(&self, text: &str) -> Result<String, ClientError> {
        let r = Schemas::new(self.channel.clone())
            .write_schema(self.req(api::WriteSchemaRequest { schema: text.to_string() }))
            .await?;
        token_of(r.into_inner().written_at)
    }

    /// The tenant's schema text.
    pub async fn read_schema(&self) -> Result<String, ClientError> {
        let r = Schemas::new(self.channel.clone()).read_schema(self.req(api::ReadSchemaRequest {})).await?;
        Ok(r.into_inner().schema_text)
    }

    /// Applies updates in one transaction, with optional transaction metadata; returns the
    /// ZedToken of the write.
    pub async fn write(
        &self,
        updates: &[Update],
        metadata: Option<&Map<String, Value>>,
    ) -> Result<String, ClientError> {
        use api::relationship_update::Operation;
        let updates = updates
            .iter()
            .map(|u| {
                let (op, r) = match u {
                    Update::Create(r) => (Operation::Create, r),
                    Update::Touch(r) => (Operation::Touch, r),
                    Update::Delete(r) => (Operation::Delete, r),
                };
                api::RelationshipUpdate { operation: op as i32, relationship: Some(convert::to_relationship(r)) }
            })
            .collect();
        let r = self
            .permissions()
            .write_relationships(self.req(api::WriteRelationshipsRequest {
                updates,
                optional_preconditions: Vec::new(),
                optional_transaction_metadata: metadata.map(convert::to_struct),
            }))
            .await?;
        token_of(r.into_inner().written_at)
    }

    /// Every relationship the filter matches, in order, handed to `each` as it arrives.
    pub async fn read(
        &self,
        filter: &RelationshipFilter,
        at: &ReadAt,
        each: &mut (dyn FnMut(Relationship) + Send),
    ) -> Result<(), ClientError> {
        let req = api::ReadRelationshipsRequest {
            consistency: Some(consistency(at)),
            relationship_filter: Some(to_filter(filter)),
            optional_limit: 0,
            optional_cursor: None,
        };
        let mut stream = self.permissions().read_relationships(self.req(req)).await?.into_inner();
        while let Some(r) = stream.message().await? {
            each(from_relationship(r.relationship.as_ref())?);
        }
        Ok(())
    }

    /// Deletes every relationship the filter matches (it must name a resource type); returns
    /// the ZedToken and how many were deleted.
    pub async fn delete(&self, filter: &RelationshipFilter) -> Result<(String, u64), ClientError> {
        let r = self
            .permissions()
            .delete_relationships(self.req(api::DeleteRelationshipsRequest {
                relationship_filter: Some(to_filter(filter)),
                ..Default::default()
            }))
            .await?
            .into_inner();
        Ok((token_of(r.deleted_at)?, r.relationships_deleted_count))
    }

    /// One Check.
    pub async fn check(&self, req: &CheckRequest, at: &ReadAt) -> Result<Checked, ClientError> {
        let r = self
            .permissions()
            .check_permission(self.req(api::CheckPermissionRequest {
                consistency: Some(consistency(at)),
                resource: Some(convert::object_ref(&req.resource)),
                permission: req.permission.clone(),
                subject: Some(convert::subject_ref(&req.subject)),
                context: (!req.context.is_empty()).then(|| convert::to_struct(&req.context)),
                with_tracing: false,
            }))
            .await?
            .into_inner();
        let missing = r.partial_caveat_info.map(|p| p.missing_required_context).unwrap_or_default();
        Ok(Checked {
            decision: decision(r.permissionship, missing)?,
            expires_at: r.optional_expires_at.as_ref().map(convert::timestamp),
            token: token_of(r.checked_at)?,
        })
    }

    /// The resources of a type on which the subject has the permission, handed to `each` (id
    /// and decision: HAS or CONDITIONAL) as they stream in.
    pub async fn lookup_resources(
        &self,
        resource_type: &str,
        permission: &str,
        subject: &SubjectRef,
        context: &Map<String, Value>,
        at: &ReadAt,
        each: &mut (dyn FnMut(String, Decision) + Send),
    ) -> Result<(), ClientError> {
        let req = api::LookupResourcesRequest {
            consistency: Some(consistency(at)),
            resource_object_type: resource_type.to_string(),
            permission: permission.to_string(),
            subject: Some(convert::subject_ref(subject)),
            context: (!context.is_empty()).then(|| convert::to_struct(context)),
            optional_limit: 0,
            optional_cursor: None,
            with_debug: false,
        };
        let mut stream = self.permissions().lookup_resources(self.req(req)).await?.into_inner();
        while let Some(r) = stream.message().await? {
            let missing = r.partial_caveat_info.map(|p| p.missing_required_context).unwrap_or_default();
            let d = lookup_decision(r.permissionship, missing)?;
            each(r.resource_object_id, d);
        }
        Ok(())
    }

    /// The subjects of a type (and optional relation) with the permission on the resource.
    #[allow(clippy::too_many_arguments)]
    pub async fn lookup_subjects(
        &self,
        resource: &ObjectRef,
        permission: &str,
        subject_type: &str,
        subject_relation: Option<&str>,
        context: &Map<String, Value>,
        at: &ReadAt,
        each: &mut (dyn FnMut(SubjectRef, Decision) + Send),
    ) -> Result<(), ClientError> {
        let req = api::LookupSubjectsRequest {
            consistency: Some(consistency(at)),
            resource: Some(convert::object_ref(resource)),
            permission: permission.to_string(),
            subject_object_type: subject_type.to_string(),
            optional_subject_relation: subject_relation.unwrap_or_default().to_string(),
            context: (!context.is_empty()).then(|| convert::to_struct(context)),
            ..Default::default()
        };
        let mut stream = self.permissions().lookup_subjects(self.req(req)).await?.into_inner();
        while let Some(r) = stream.message().await? {
            let Some(s) = r.subject else { return Err(ClientError::Answer("a result without a subject".into())) };
            let missing = s.partial_caveat_info.map(|p| p.missing_required_context).unwrap_or_default();
            let d = lookup_decision(s.permissionship, missing)?;
            let relation = subject_relation.map(str::to_string);
            each(SubjectRef::new(ObjectRef::new(subject_type, s.subject_object_id), relation), d);
        }
        Ok(())
    }

    /// Streams relationships to ImportBulkRelationships in the chunks the iterator yields;
    /// returns how many the server loaded. The iterator is read as the stream is sent (memory
    /// bounded by a chunk and the stream's buffer).
    pub async fn import(
        &self,
        chunks: impl Iterator<Item = Vec<Relationship>> + Send + 'static,
    ) -> Result<u64, ClientError> {
        let stream = tokio_stream::iter(chunks.map(|chunk| api::ImportBulkRelationshipsRequest {
            relationships: chunk.iter().map(convert::to_relationship).collect(),
        }));
        let r = self.permissions().import_bulk_relationships(self.req(stream)).await?;
        Ok(r.into_inner().num_loaded)
    }

    /// Every relationship of the tenant (ExportBulkRelationships), at one revision.
    pub async fn export(&self, each: &mut (dyn FnMut(Relationship) + Send)) -> Result<(), ClientError> {
        let req = api::ExportBulkRelationshipsRequest {
            consistency: Some(consistency(&ReadAt::FullyConsistent)),
            optional_limit: 0,
            optional_cursor: None,
            optional_relationship_filter: None,
        };
        let mut stream = self.permissions().export_bulk_relationships(self.req(req)).await?.into_inner();
        while let Some(r) = stream.message().await? {
            for rel in &r.relationships {
                each(from_relationship(Some(rel))?);
            }
        }
        Ok(())
    }

    /// Watches the tenant's writes from a ZedToken (or from now), optionally only some resource
    /// types, until `each` returns false or the server ends the stream.
    pub async fn watch(
        &self,
        types: &[String],
        from: Option<&str>,
        each: &mut (dyn FnMut(Watched) -> bool + Send),
    ) -> Result<(), ClientError> {
        use api::relationship_update::Operation;
        let req = api::WatchRequest {
            optional_object_types: types.to_vec(),
            optional_start_cursor: from.map(|t| api::ZedToken { token: t.to_string() }),
            optional_update_kinds: vec![
                api::WatchKind::IncludeRelationshipUpdates as i32,
                api::WatchKind::IncludeSchemaUpdates as i32,
            ],
            ..Default::default()
        };
        let mut stream = Watches::new(self.channel.clone()).watch(self.req(req)).await?.into_inner();
        while let Some(r) = stream.message().await? {
            let mut updates = Vec::with_capacity(r.updates.len());
            for u in &r.updates {
                let rel = from_relationship(u.relationship.as_ref())?;
                updates.push(match Operation::try_from(u.operation) {
                    Ok(Operation::Create) => Update::Create(rel),
                    Ok(Operation::Touch) => Update::Touch(rel),
                    Ok(Operation::Delete) => Update::Delete(rel),
                    _ => return Err(ClientError::Answer(format!("update operation {}", u.operation))),
                });
            }
            let watched = Watched {
                token: token_of(r.changes_through)?,
                updates,
                schema_updated: r.schema_updated,
                metadata: convert::context(r.optional_transaction_metadata.as_ref()),
            };
            if !each(watched) {
                break;
            }
        }
        Ok(())
    }

    fn tenants(&self) -> Tenants {
        Tenants::new(self.channel.clone())
    }

    /// Creates a tenant (admin key).
    pub async fn create_tenant(&self, name: &str) -> Result<(), ClientError> {
        self.tenants().create_tenant(self.req(pb::CreateTenantRequest { name: name.to_string() })).await?;
        Ok(())
    }

    /// Every tenant, by name (admin key).
    pub async fn list_tenants(&self) -> Result<Vec<TenantInfo>, ClientError> {
        let r = self.tenants().list_tenants(self.req(pb::ListTenantsRequest {})).await?.into_inner();
        Ok(r.tenants
            .into_iter()
            .map(|t| TenantInfo {
                name: t.name,
                created_at: t.created_at.as_ref().map(convert::timestamp),
                keys: t.keys.into_iter().map(|k| k.key_id).collect(),
            })
            .collect())
    }

    /// Drops a tenant and everything it holds (admin key).
    pub async fn drop_tenant(&self, name: &str) -> Result<(), ClientError> {
        self.tenants().drop_tenant(self.req(pb::DropTenantRequest { name: name.to_string() })).await?;
        Ok(())
    }

    /// Adds a key to a tenant (admin key); an empty id or key is chosen by the server. Returns
    /// the key's id and its secret (shown once).
    pub async fn add_key(&self, tenant: &str, key_id: &str, key: &str) -> Result<(String, String), ClientError> {
        let r = self
            .tenants()
            .add_key(self.req(pb::AddKeyRequest {
                tenant: tenant.to_string(),
                key_id: key_id.to_string(),
                key: key.to_string(),
            }))
            .await?
            .into_inner();
        let id = r.key_info.map(|k| k.key_id).unwrap_or_default();
        Ok((id, r.key))
    }

    /// A whole tenant (`pemba.v1.ExportService`) at one revision: its schema, relationships
    /// and attributes, handed to `each` line by line; returns the revision's ZedToken. With the
    /// admin key any tenant; with a tenant's key its own (`tenant` empty or its name).
    pub async fn export_tenant(&self, tenant: &str, each: &mut dyn FnMut(ExportLine)) -> Result<String, ClientError> {
        use pb::export_tenant_response::Line;
        let mut client = pb::export_service_client::ExportServiceClient::new(self.channel.clone())
            .max_decoding_message_size(64 << 20);
        let mut stream =
            client.export_tenant(self.req(pb::ExportTenantRequest { tenant: tenant.to_string() })).await?.into_inner();
        let mut token = String::new();
        while let Some(r) = stream.message().await? {
            if !r.revision.is_empty() {
                token = r.revision;
            }
            match r.line {
                Some(Line::Schema(s)) => each(ExportLine::Schema(s)),
                Some(Line::Relationship(s)) => each(ExportLine::Relationship(s)),
                Some(Line::Attributes(a)) => {
                    each(ExportLine::Attributes(a.object, convert::context(a.attributes.as_ref())))
                }
                None => return Err(ClientError::Answer("an export message without a line".into())),
            }
        }
        Ok(token)
    }

    /// Revokes one of a tenant's keys (admin key).
    pub async fn revoke_key(&self, tenant: &str, key_id: &str) -> Result<(), ClientError> {
        self.tenants()
            .revoke_key(self.req(pb::RevokeKeyRequest { tenant: tenant.to_string(), key_id: key_id.to_string() }))
            .await?;
        Ok(())
    }

    /// LookupResources streamed to its end, counting what arrives (the load benchmark): the
    /// results (all must be HAS or CONDITIONAL), their encoded bytes, and the last message (a
    /// template of a result's size for the floor).
    pub async fn lookup_resources_counted(
        &self,
        resource_type: &str,
        permission: &str,
        subject: &SubjectRef,
        at: &ReadAt,
    ) -> Result<Streamed, ClientError> {
        let req = api::LookupResourcesRequest {
            consistency: Some(consistency(at)),
            resource_object_type: resource_type.to_string(),
            permission: permission.to_string(),
            subject: Some(convert::subject_ref(subject)),
            context: None,
            optional_limit: 0,
            optional_cursor: None,
            with_debug: false,
        };
        let stream = self.permissions().lookup_resources(self.req(req)).await?.into_inner();
        counted(stream).await
    }

    /// The streaming floor (admin key): `count` copies of `template`, counted as
    /// [`Client::lookup_resources_counted`] counts a lookup.
    pub async fn stream_floor(&self, count: u32, template: &FloorTemplate) -> Result<Streamed, ClientError> {
        let mut floor =
            pb::floor_service_client::FloorServiceClient::new(self.channel.clone()).max_decoding_message_size(64 << 20);
        let req = pb::StreamFloorRequest { count, template: Some(template.0.clone()) };
        let stream = floor.stream_floor(self.req(req)).await?.into_inner();
        counted(stream).await
    }

    /// The health check's answer for the whole server (`true`: SERVING). The no-op floor of
    /// the load benchmark.
    pub async fn health(&self) -> Result<bool, ClientError> {
        use tonic_health::pb::health_check_response::ServingStatus;
        let mut h = tonic_health::pb::health_client::HealthClient::new(self.channel.clone());
        let r = h.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await?;
        Ok(r.into_inner().status == ServingStatus::Serving as i32)
    }
}

/// A LookupResources result as a template for the streaming floor.
#[derive(Debug, Clone, Default)]
pub struct FloorTemplate(api::LookupResourcesResponse);

impl FloorTemplate {
    /// Its encoded size in bytes.
    pub fn bytes(&self) -> usize {
        prost::Message::encoded_len(&self.0)
    }
}

/// What a counted stream delivered.
#[derive(Debug, Clone, Default)]
pub struct Streamed {
    pub messages: u64,
    /// The last message, as a template for the floor.
    pub last: Option<FloorTemplate>,
}

async fn counted(mut stream: tonic::Streaming<api::LookupResourcesResponse>) -> Result<Streamed, ClientError> {
    let mut out = Streamed::default();
    let mut last = None;
    while let Some(r) = stream.message().await? {
        out.messages += 1;
        if r.permissionship == api::LookupPermissionship::Unspecified as i32 {
            return Err(ClientError::Answer("a result without a permissionship".into()));
        }
        last = Some(r);
    }
    out.last = last.map(FloorTemplate);
    Ok(out)
}

/// An error and its sources on one line (tonic's transport errors say little at the top).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn token_of(t: Option<api::ZedToken>) -> Result<String, ClientError> {
    t.map(|t| t.token).ok_or_else(|| ClientError::Answer("no ZedToken".into()))
}

fn consistency(at: &ReadAt) -> api::Consistency {
    use api::consistency::Requirement;
    let requirement = match at {
        ReadAt::MinimizeLatency => Requirement::MinimizeLatency(true),
        ReadAt::FullyConsistent => Requirement::FullyConsistent(true),
        ReadAt::AtLeast(t) => Requirement::AtLeastAsFresh(api::ZedToken { token: t.clone() }),
        ReadAt::Exact(t) => Requirement::AtExactSnapshot(api::ZedToken { token: t.clone() }),
    };
    api::Consistency { requirement: Some(requirement) }
}

fn to_filter(f: &RelationshipFilter) -> api::RelationshipFilter {
    let subject = f.subject_type.as_ref().map(|ty| api::SubjectFilter {
        subject_type: ty.clone(),
        optional_subject_id: f.subject_id.clone().unwrap_or_default(),
        optional_relation: f
            .subject_relation
            .as_ref()
            .map(|r| api::subject_filter::RelationFilter { relation: r.clone().unwrap_or_default() }),
    });
    api::RelationshipFilter {
        resource_type: f.resource_type.clone().unwrap_or_default(),
        optional_resource_id: f.resource_id.clone().unwrap_or_default(),
        optional_resource_id_prefix: f.resource_id_prefix.clone().unwrap_or_default(),
        optional_relation: f.relation.clone().unwrap_or_default(),
        optional_subject_filter: subject,
    }
}

fn from_relationship(r: Option<&api::Relationship>) -> Result<Relationship, ClientError> {
    convert::relationship("relationship", r).map_err(|s| ClientError::Answer(s.message().to_string()))
}

fn decision(permissionship: i32, missing: Vec<String>) -> Result<Decision, ClientError> {
    use api::check_permission_response::Permissionship as P;
    match P::try_from(permissionship) {
        Ok(P::HasPermission) => Ok(Decision::Has),
        Ok(P::NoPermission) => Ok(Decision::No),
        Ok(P::ConditionalPermission) => Ok(Decision::Conditional(missing)),
        _ => Err(ClientError::Answer(format!("permissionship {permissionship}"))),
    }
}

fn lookup_decision(permissionship: i32, missing: Vec<String>) -> Result<Decision, ClientError> {
    use api::LookupPermissionship as P;
    match P::try_from(permissionship) {
        Ok(P::HasPermission) => Ok(Decision::Has),
        Ok(P::ConditionalPermission) => Ok(Decision::Conditional(missing)),
        _ => Err(ClientError::Answer(format!("lookup permissionship {permissionship}"))),
    }
}
