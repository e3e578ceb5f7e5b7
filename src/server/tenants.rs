//! `pemba.v1.TenantService` (behind the admin key): create, list and drop tenants, add and revoke
//! their keys. `pemba.v1.ExportService` (a tenant's own key): Pemba's export, with attributes,
//! which SpiceDB's export does not carry.

use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::{self, status};
use super::keys::{self, Keys};
use super::proto::pemba::v1::{self as pb, export_service_server::ExportService, tenant_service_server::TenantService};
use super::{Admin, blocking, tenant};
use crate::db::Database;

pub struct Tenants {
    pub db: Arc<Database>,
    pub keys: Arc<Keys>,
}

fn admin<T>(request: &Request<T>) -> Result<(), Status> {
    request
        .extensions()
        .get::<Admin>()
        .map(|_| ())
        .ok_or_else(|| Status::permission_denied("the tenant service needs the admin key (`pemba serve --admin-key`)"))
}

fn key_info(k: &keys::StoredKey) -> pb::TenantKey {
    pb::TenantKey { key_id: k.id.clone(), created_at: Some(prost_types::Timestamp { seconds: k.created, nanos: 0 }) }
}

impl Tenants {
    fn tenant(&self, name: &str) -> pb::Tenant {
        pb::Tenant {
            name: name.to_string(),
            created_at: None,
            keys: self.keys.of_tenant(name).iter().map(key_info).collect(),
        }
    }
}

#[tonic::async_trait]
impl TenantService for Tenants {
    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::CreateTenantResponse>, Status> {
        admin(&request)?;
        let name = request.into_inner().name;
        let db = self.db.clone();
        let n = name.clone();
        blocking(move || db.create_tenant(&n)).await?;
        Ok(Response::new(pb::CreateTenantResponse { tenant: Some(self.tenant(&name)) }))
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        admin(&request)?;
        let names = self.db.tenants().map_err(status)?;
        Ok(Response::new(pb::ListTenantsResponse { tenants: names.iter().map(|n| self.tenant(n)).collect() }))
    }

    async fn drop_tenant(
        &self,
        request: Request<pb::DropTenantRequest>,
    ) -> Result<Response<pb::DropTenantResponse>, Status> {
        admin(&request)?;
        let name = request.into_inner().name;
        let db = self.db.clone();
        let n = name.clone();
        blocking(move || db.drop_tenant(&n)).await?;
        self.keys.drop_tenant(&name).map_err(status)?;
        Ok(Response::new(pb::DropTenantResponse {}))
    }

    async fn add_key(&self, request: Request<pb::AddKeyRequest>) -> Result<Response<pb::AddKeyResponse>, Status> {
        admin(&request)?;
        let r = request.into_inner();
        if !self.db.tenants().map_err(status)?.contains(&r.tenant) {
            return Err(Status::not_found(format!("tenant `{}` does not exist (TENANT_NOT_FOUND)", r.tenant)));
        }
        let key = if r.key.is_empty() { keys::generate() } else { r.key.clone() };
        let id = (!r.key_id.is_empty()).then_some(r.key_id.as_str());
        let id = self.keys.add_as(&r.tenant, &key, id).map_err(|e| match e {
            keys::KeyError::Db(e) => status(e),
            keys::KeyError::BadId(_) => convert::invalid("key_id", e),
            keys::KeyError::OtherTenant | keys::KeyError::Held(_) => Status::already_exists(format!("key: {e}")),
            keys::KeyError::IdTaken(_) => Status::already_exists(format!("key_id: {e}")),
        })?;
        let info = self.keys.of_tenant(&r.tenant).into_iter().find(|k| k.id == id);
        Ok(Response::new(pb::AddKeyResponse {
            tenant: r.tenant,
            key_info: info.as_ref().map(key_info),
            // The key is shown once: only its hash is stored.
            key,
        }))
    }

    async fn revoke_key(
        &self,
        request: Request<pb::RevokeKeyRequest>,
    ) -> Result<Response<pb::RevokeKeyResponse>, Status> {
        admin(&request)?;
        let r = request.into_inner();
        if !self.keys.revoke(&r.tenant, &r.key_id).map_err(status)? {
            return Err(Status::not_found(format!("tenant `{}` has no key `{}`", r.tenant, r.key_id)));
        }
        Ok(Response::new(pb::RevokeKeyResponse {}))
    }
}

pub struct Export {
    pub db: Arc<Database>,
}

#[tonic::async_trait]
impl ExportService for Export {
    type ExportTenantStream = ReceiverStream<Result<pb::ExportTenantResponse, Status>>;

    async fn export_tenant(
        &self,
        request: Request<pb::ExportTenantRequest>,
    ) -> Result<Response<Self::ExportTenantStream>, Status> {
        // A tenant's key exports its own tenant; the admin key exports the one it names.
        let t = match (request.extensions().get::<Admin>(), tenant(&request)) {
            (Some(_), _) if request.get_ref().tenant.is_empty() => {
                return Err(convert::invalid("tenant", "is required with the admin key"));
            }
            (Some(_), _) => super::Tenant(request.get_ref().tenant.clone()),
            (None, Ok(t)) if request.get_ref().tenant.is_empty() || request.get_ref().tenant == t.0 => t,
            (None, Ok(_)) => return Err(Status::permission_denied("a tenant's key exports only its own tenant")),
            (None, Err(e)) => return Err(e),
        };
        if !self.db.tenants().map_err(status)?.contains(&t.0) {
            return Err(Status::not_found(format!("tenant `{}` does not exist (TENANT_NOT_FOUND)", t.0)));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let rev = match db.export(&t.0, &mut out) {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.blocking_send(Err(status(e)));
                    return;
                }
            };
            let token = db.token(&t.0, rev);
            for (i, line) in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
                use pb::export_tenant_response::Line;
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
                let line = if let Some(s) = v.get("schema") {
                    Line::Schema(s.as_str().unwrap_or_default().to_string())
                } else if let Some(r) = v.get("relationship").and_then(|r| r.as_str()) {
                    Line::Relationship(r.to_string())
                } else {
                    let attributes = v.get("attributes").and_then(|a| a.as_object()).cloned().unwrap_or_default();
                    Line::Attributes(pb::ObjectAttributes {
                        object: v.get("object").and_then(|o| o.as_str()).unwrap_or_default().to_string(),
                        attributes: Some(convert::to_struct(&attributes)),
                    })
                };
                let response = pb::ExportTenantResponse {
                    revision: if i == 0 { token.clone() } else { String::new() },
                    line: Some(line),
                };
                if tx.blocking_send(Ok(response)).is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
