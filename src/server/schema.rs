//! `authzed.api.v1.SchemaService`: ReadSchema and WriteSchema. The reflection and diff methods
//! SpiceDB added later answer UNIMPLEMENTED.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{self, status};
use super::proto::authzed::api::v1::{self as api, schema_service_server::SchemaService};
use super::{blocking, tenant};
use crate::db::{Database, DbError};

pub struct Schema {
    pub db: Arc<Database>,
}

fn unimplemented(method: &str) -> Status {
    Status::unimplemented(format!("{method} is not implemented by Pemba; ReadSchema returns the schema text"))
}

#[tonic::async_trait]
impl SchemaService for Schema {
    async fn read_schema(
        &self,
        request: Request<api::ReadSchemaRequest>,
    ) -> Result<Response<api::ReadSchemaResponse>, Status> {
        let t = tenant(&request)?;
        let at = self.db.revision(&t.0).map_err(status)?;
        // No schema yet is NOT_FOUND here, as SpiceDB answers ReadSchema (elsewhere it is
        // FAILED_PRECONDITION).
        let text = self.db.schema_text(&t.0).map_err(status)?.ok_or_else(|| {
            let s = status(DbError::NoSchema(t.0.clone()));
            Status::with_details_and_metadata(
                tonic::Code::NotFound,
                s.message().to_string(),
                s.details().to_vec().into(),
                s.metadata().clone(),
            )
        })?;
        Ok(Response::new(api::ReadSchemaResponse {
            schema_text: text,
            read_at: Some(convert::zed_token(&self.db, &t.0, at)),
        }))
    }

    async fn write_schema(
        &self,
        request: Request<api::WriteSchemaRequest>,
    ) -> Result<Response<api::WriteSchemaResponse>, Status> {
        let t = tenant(&request)?;
        let text = request.into_inner().schema;
        let db = self.db.clone();
        let tenant = t.0.clone();
        let rev = blocking(move || db.write_schema(&tenant, &text)).await?;
        Ok(Response::new(api::WriteSchemaResponse { written_at: Some(convert::zed_token(&self.db, &t.0, rev)) }))
    }

    async fn reflect_schema(
        &self,
        _: Request<api::ReflectSchemaRequest>,
    ) -> Result<Response<api::ReflectSchemaResponse>, Status> {
        Err(unimplemented("ReflectSchema"))
    }

    async fn computable_permissions(
        &self,
        _: Request<api::ComputablePermissionsRequest>,
    ) -> Result<Response<api::ComputablePermissionsResponse>, Status> {
        Err(unimplemented("ComputablePermissions"))
    }

    async fn dependent_relations(
        &self,
        _: Request<api::DependentRelationsRequest>,
    ) -> Result<Response<api::DependentRelationsResponse>, Status> {
        Err(unimplemented("DependentRelations"))
    }

    async fn diff_schema(
        &self,
        _: Request<api::DiffSchemaRequest>,
    ) -> Result<Response<api::DiffSchemaResponse>, Status> {
        Err(unimplemented("DiffSchema"))
    }
}
