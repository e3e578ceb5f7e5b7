//! `authzed.api.v1.PermissionsService`: each handler converts the request, calls the database,
//! converts the answer. Checks run on the calling task (microseconds, no thread hop); lookups,
//! reads, writes, imports and exports run on the blocking pool, streaming results as they come,
//! so a long one never holds a task other requests need.

use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{self, invalid, status};
use super::deadline::Deadline;
use super::proto::authzed::api::v1::{self as api, permissions_service_server::PermissionsService};
use super::{blocking, tenant};
use crate::db::{Consistency, Database, Precondition, WriteRequest};
use crate::engine::lookup::{LookupResourcesRequest, LookupSubjectsRequest};
use crate::engine::{CheckRequest, EvalError};
use crate::store::Mutation;

pub struct Permissions {
    pub db: Arc<Database>,
    /// The deadline of a call whose client sets none (streams end with DEADLINE_EXCEEDED there).
    pub default_deadline: std::time::Duration,
}

/// Results a streaming call buffers ahead of a slow client.
pub(super) const STREAM_BUFFER: usize = 256;

type Stream<T> = ReceiverStream<Result<T, Status>>;

/// A lookup's or read's stream, ended at the call's deadline.
type Bounded<T> = super::deadline::Bounded<T>;

fn check_request(
    field: &str,
    resource: Option<&api::ObjectReference>,
    permission: &str,
    subject: Option<&api::SubjectReference>,
    context: Option<&prost_types::Struct>,
) -> Result<CheckRequest, Status> {
    Ok(CheckRequest {
        resource: convert::object(&format!("{field}resource"), resource, false)?,
        permission: convert::member(&format!("{field}permission"), permission)?,
        subject: convert::subject(&format!("{field}subject"), subject)?,
        context: convert::context(context),
    })
}

fn preconditions(ps: &[api::Precondition]) -> Result<Vec<Precondition>, Status> {
    use api::precondition::Operation;
    ps.iter()
        .enumerate()
        .map(|(i, p)| {
            let field = format!("optional_preconditions[{i}]");
            let filter = convert::filter(&format!("{field}.filter"), p.filter.as_ref())?;
            match Operation::try_from(p.operation) {
                Ok(Operation::MustMatch) => Ok(Precondition::MustMatch(filter)),
                Ok(Operation::MustNotMatch) => Ok(Precondition::MustNotMatch(filter)),
                _ => Err(invalid(&format!("{field}.operation"), "must be MUST_MATCH or MUST_NOT_MATCH")),
            }
        })
        .collect()
}

/// A `google.rpc.Status` for one CheckBulk item's error.
fn item_error(e: EvalError) -> super::proto::google::rpc::Status {
    super::convert::rpc_status(&e.into())
}

#[tonic::async_trait]
impl PermissionsService for Permissions {
    type ReadRelationshipsStream = Bounded<api::ReadRelationshipsResponse>;
    type LookupResourcesStream = Bounded<api::LookupResourcesResponse>;
    type LookupSubjectsStream = Bounded<api::LookupSubjectsResponse>;
    type ExportBulkRelationshipsStream = Stream<api::ExportBulkRelationshipsResponse>;

    async fn check_permission(
        &self,
        request: Request<api::CheckPermissionRequest>,
    ) -> Result<Response<api::CheckPermissionResponse>, Status> {
        let t = tenant(&request)?;
        let r = request.get_ref();
        let req = check_request("", r.resource.as_ref(), &r.permission, r.subject.as_ref(), r.context.as_ref())?;
        let consistency = convert::consistency(&self.db, &t.0, r.consistency.as_ref())?;
        let (decision, until, at) = self.db.check_until(&t.0, consistency, &req).map_err(status)?;
        let (permissionship, partial_caveat_info) = convert::permissionship(&decision);
        Ok(Response::new(api::CheckPermissionResponse {
            checked_at: Some(convert::zed_token(&self.db, &t.0, at)),
            permissionship: permissionship as i32,
            partial_caveat_info,
            debug_trace: None,
            optional_expires_at: until.map(convert::to_timestamp),
        }))
    }

    async fn check_bulk_permissions(
        &self,
        request: Request<api::CheckBulkPermissionsRequest>,
    ) -> Result<Response<api::CheckBulkPermissionsResponse>, Status> {
        let t = tenant(&request)?;
        let r = request.into_inner();
        let consistency = convert::consistency(&self.db, &t.0, r.consistency.as_ref())?;
        let mut reqs = Vec::with_capacity(r.items.len());
        for (i, item) in r.items.iter().enumerate() {
            let field = format!("items[{i}].");
            reqs.push(check_request(
                &field,
                item.resource.as_ref(),
                &item.permission,
                item.subject.as_ref(),
                item.context.as_ref(),
            )?);
        }
        let db = self.db.clone();
        let tenant = t.0.clone();
        let (answers, at) = blocking(move || db.check_bulk(&tenant, consistency, &reqs)).await?;
        let pairs = r
            .items
            .into_iter()
            .zip(answers)
            .map(|(item, answer)| {
                use api::check_bulk_permissions_pair::Response as R;
                let response = match answer {
                    Ok(d) => {
                        let (permissionship, partial_caveat_info) = convert::permissionship(&d);
                        R::Item(api::CheckBulkPermissionsResponseItem {
                            permissionship: permissionship as i32,
                            partial_caveat_info,
                            debug_trace: None,
                        })
                    }
                    Err(e) => R::Error(item_error(e)),
                };
                api::CheckBulkPermissionsPair { request: Some(item), response: Some(response) }
            })
            .collect();
        Ok(Response::new(api::CheckBulkPermissionsResponse {
            checked_at: Some(convert::zed_token(&self.db, &t.0, at)),
            pairs,
        }))
    }

    async fn expand_permission_tree(
        &self,
        request: Request<api::ExpandPermissionTreeRequest>,
    ) -> Result<Response<api::ExpandPermissionTreeResponse>, Status> {
        let t = tenant(&request)?;
        let r = request.get_ref();
        let object = convert::object("resource", r.resource.as_ref(), false)?;
        let permission = convert::member("permission", &r.permission)?;
        let consistency = convert::consistency(&self.db, &t.0, r.consistency.as_ref())?;
        let db = self.db.clone();
        let tenant = t.0.clone();
        let (tree, at) = blocking(move || db.expand(&tenant, consistency, &object, &permission)).await?;
        Ok(Response::new(api::ExpandPermissionTreeResponse {
            expanded_at: Some(convert::zed_token(&self.db, &t.0, at)),
            tree_root: Some(super::expand::tree(&tree)),
        }))
    }

    async fn lookup_resources(
        &self,
        request: Request<api::LookupResourcesRequest>,
    ) -> Result<Response<Self::LookupResourcesStream>, Status> {
        let t = tenant(&request)?;
        let deadline = Deadline::get(&request, self.default_deadline);
        let r = request.into_inner();
        let consistency = convert::consistency(&self.db, &t.0, r.consistency.as_ref())?;
        let req = LookupResourcesRequest {
            resource_type: convert::object(
                "resource_object_type",
                Some(&api::ObjectReference { object_type: r.resource_object_type.clone(), object_id: "x".into() }),
                false,
            )?
            .ty,
            permission: convert::member("permission", &r.permission)?,
            subject: convert::subject("subject", r.subject.as_ref())?,
            context: convert::context(r.context.as_ref()),
            limit: None,
            cursor: r.optional_cursor.as_ref().map(|c| c.token.clone()).filter(|c| !c.is_empty()),
        };
        let max = (r.optional_limit > 0).then_some(r.optional_limit as usize);
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            // The token of the revision the lookup reads, sealed once.
            let mut at: Option<api::ZedToken> = None;
            let result = db.lookup_resources_each(&t.0, consistency, &req, max, &mut |item, cursor, rev| {
                let (permissionship, partial_caveat_info) = convert::lookup_permissionship(&item.decision);
                let looked_up_at = at.get_or_insert_with(|| convert::zed_token(&db, &t.0, rev)).clone();
                tx.blocking_send(Ok(api::LookupResourcesResponse {
                    looked_up_at: Some(looked_up_at),
                    resource_object_id: item.id,
                    permissionship: permissionship as i32,
                    partial_caveat_info,
                    after_result_cursor: Some(api::Cursor { token: cursor }),
                }))
                .is_ok()
            });
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(status(e)));
            }
        });
        Ok(Response::new(Bounded::new(rx, deadline)))
    }

    async fn lookup_subjects(
        &self,
        request: Request<api::LookupSubjectsRequest>,
    ) -> Result<Response<Self::LookupSubjectsStream>, Status> {
        use api::lookup_subjects_request::WildcardOption;
        let t = tenant(&request)?;
        let deadline = Deadline::get(&request, self.default_deadline);
        let r = request.into_inner();
        let consistency = convert::consistency(&self.db, &t.0, r.consistency.as_ref())?;
        let resource = convert::object("resource", r.resource.as_ref(), false)?;
        let subject_type = convert::object(
            "subject_object_type",
            Some(&api::ObjectReference { object_type: r.subject_object_type.clone(), object_id: "x".into() }),
            false,
        )?
        .ty;
        let req = LookupSubjectsRequest {
            resource,
            permission: convert::member("permission", &r.permission)?,
            subject_type,
            subject_relation: match r.optional_subject_relation.as_str() {
                "" => None,
                rel => Some(convert::member("optional_subject_relation", rel)?),
            },
            context: convert::context(r.context.as_ref()),
            limit: None,
            cursor: r.optional_cursor.as_ref().map(|c| c.token.clone()).filter(|c| !c.is_empty()),
        };
        let exclude_wildcards = r.wildcard_option == WildcardOption::ExcludeWildcards as i32;
        // The concrete limit counts concrete subjects; a wildcard result does not use it up.
        let mut concrete_left = (r.optional_concrete_limit > 0).then_some(r.optional_concrete_limit as usize);
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut at: Option<api::ZedToken> = None;
            let result = db.lookup_subjects_each(&t.0, consistency, &req, None, &mut |item, cursor, rev| {
                let wildcard = item.subject.is_wildcard();
                if wildcard && exclude_wildcards {
                    return true;
                }
                if !wildcard {
                    match &mut concrete_left {
                        Some(0) => return false,
                        Some(n) => *n -= 1,
                        None => {}
                    }
                }
                let (permissionship, partial_caveat_info) = convert::lookup_permissionship(&item.decision);
                let excluded: Vec<api::ResolvedSubject> = item
                    .excluded
                    .iter()
                    .map(|(s, d)| {
                        let (p, info) = convert::lookup_permissionship(d);
                        let p = if matches!(d, crate::engine::Decision::No) {
                            api::LookupPermissionship::HasPermission
                        } else {
                            p
                        };
                        api::ResolvedSubject {
                            subject_object_id: s.object.id.clone(),
                            permissionship: p as i32,
                            partial_caveat_info: info,
                        }
                    })
                    .collect();
                #[allow(deprecated)]
                let response = api::LookupSubjectsResponse {
                    looked_up_at: Some(at.get_or_insert_with(|| convert::zed_token(&db, &t.0, rev)).clone()),
                    subject_object_id: item.subject.object.id.clone(),
                    excluded_subject_ids: excluded.iter().map(|s| s.subject_object_id.clone()).collect(),
                    permissionship: permissionship as i32,
                    partial_caveat_info: partial_caveat_info.clone(),
                    subject: Some(api::ResolvedSubject {
                        subject_object_id: item.subject.object.id.clone(),
                        permissionship: permissionship as i32,
                        partial_caveat_info,
                    }),
                    excluded_subjects: excluded,
                    after_result_cursor: Some(api::Cursor { token: cursor }),
                };
                tx.blocking_send(Ok(response)).is_ok()
            });
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(status(e)));
            }
        });
        Ok(Response::new(Bounded::new(rx, deadline)))
    }

    async fn read_relationships(
        &self,
        request: Request<api::ReadRelationshipsRequest>,
    ) -> Result<Response<Self::ReadRelationshipsStream>, Status> {
        let t = tenant(&request)?;
        let deadline = Deadline::get(&request, self.default_deadline);
        let r = request.into_inner();
        let consistency = convert::consistency(&self.db, &t.0, r.consistency.as_ref())?;
        let filter = convert::filter("relationship_filter", r.relationship_filter.as_ref())?;
        let max = (r.optional_limit > 0).then_some(r.optional_limit as usize);
        // A cursor pins the revision its first page read (as SpiceDB's does).
        let query = crate::db::read_query("relationships", &filter);
        let (consistency, after) = match r.optional_cursor.map(|c| c.token).filter(|c| !c.is_empty()) {
            Some(c) => {
                let (rev, after) = self.db.open_read_cursor(&t.0, query, &c).map_err(status)?;
                (Consistency::AtExactSnapshot(rev), Some(after))
            }
            None => (consistency, None),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let page_size = db.limits().max_page_size;
            let mut after = after;
            let mut left = max.unwrap_or(usize::MAX);
            let mut consistency = consistency;
            while left > 0 {
                let (rels, at) =
                    match db.read_relationships(&t.0, consistency, &filter, left.min(page_size), after.as_deref()) {
                        Ok(x) => x,
                        Err(e) => {
                            let _ = tx.blocking_send(Err(status(e)));
                            return;
                        }
                    };
                // Later pages read the first page's revision.
                consistency = Consistency::AtExactSnapshot(at);
                let full = rels.len() == left.min(page_size);
                let read_at = convert::zed_token(&db, &t.0, at);
                for rel in rels {
                    left -= 1;
                    let key = crate::store::relationship_key(&rel);
                    let response = api::ReadRelationshipsResponse {
                        read_at: Some(read_at.clone()),
                        relationship: Some(convert::to_relationship(&rel)),
                        after_result_cursor: Some(api::Cursor { token: db.read_cursor(&t.0, at, query, &key) }),
                    };
                    if tx.blocking_send(Ok(response)).is_err() {
                        return;
                    }
                    after = Some(key);
                }
                if !full {
                    break;
                }
            }
        });
        Ok(Response::new(Bounded::new(rx, deadline)))
    }

    async fn write_relationships(
        &self,
        request: Request<api::WriteRelationshipsRequest>,
    ) -> Result<Response<api::WriteRelationshipsResponse>, Status> {
        use api::relationship_update::Operation;
        let t = tenant(&request)?;
        let r = request.into_inner();
        let mut mutations = Vec::with_capacity(r.updates.len());
        for (i, u) in r.updates.iter().enumerate() {
            let rel = convert::relationship(&format!("updates[{i}].relationship"), u.relationship.as_ref())?;
            mutations.push(match Operation::try_from(u.operation) {
                Ok(Operation::Create) => Mutation::Create(rel),
                Ok(Operation::Touch) => Mutation::Touch(rel),
                Ok(Operation::Delete) => Mutation::Delete(rel),
                _ => return Err(invalid(&format!("updates[{i}].operation"), "must be CREATE, TOUCH or DELETE")),
            });
        }
        if let Some(m) = r.optional_transaction_metadata.as_ref() {
            mutations.push(Mutation::Metadata(convert::context(Some(m))));
        }
        let req = WriteRequest { mutations, preconditions: preconditions(&r.optional_preconditions)? };
        let db = self.db.clone();
        let tenant = t.0.clone();
        let rev = blocking(move || db.write(&tenant, req)).await?;
        Ok(Response::new(api::WriteRelationshipsResponse { written_at: Some(convert::zed_token(&self.db, &t.0, rev)) }))
    }

    async fn delete_relationships(
        &self,
        request: Request<api::DeleteRelationshipsRequest>,
    ) -> Result<Response<api::DeleteRelationshipsResponse>, Status> {
        use api::delete_relationships_response::DeletionProgress;
        let t = tenant(&request)?;
        let r = request.into_inner();
        let filter = convert::filter("relationship_filter", r.relationship_filter.as_ref())?;
        if filter.resource_type.is_none() {
            return Err(invalid("relationship_filter.resource_type", "is required"));
        }
        let preconditions = preconditions(&r.optional_preconditions)?;
        let limit = (r.optional_limit > 0).then_some(r.optional_limit as usize);
        let partial = r.optional_allow_partial_deletions;
        let metadata = convert::context(r.optional_transaction_metadata.as_ref());
        let db = self.db.clone();
        let tenant = t.0.clone();
        let (rev, deleted, progress) =
            blocking(move || db.delete_relationships(&tenant, &filter, preconditions, limit, partial, metadata))
                .await?;
        Ok(Response::new(api::DeleteRelationshipsResponse {
            deleted_at: Some(convert::zed_token(&self.db, &t.0, rev)),
            deletion_progress: if progress { DeletionProgress::Complete } else { DeletionProgress::Partial } as i32,
            relationships_deleted_count: deleted as u64,
        }))
    }

    async fn import_bulk_relationships(
        &self,
        request: Request<Streaming<api::ImportBulkRelationshipsRequest>>,
    ) -> Result<Response<api::ImportBulkRelationshipsResponse>, Status> {
        let t = tenant(&request)?;
        let mut stream = request.into_inner();
        // Chunks of `import_chunk` (memory bounded by it), each stored as revisions of at most
        // the write limit and made visible together, as `Database::import`.
        let limit = self.db.limits().import_chunk.max(1);
        let mut batch = Vec::with_capacity(limit.min(1 << 16));
        let mut loaded = 0u64;
        let mut n = 0usize;
        while let Some(msg) = stream.message().await? {
            for rel in &msg.relationships {
                batch.push(Mutation::Create(convert::relationship(&format!("relationships[{n}]"), Some(rel))?));
                n += 1;
                if batch.len() == limit {
                    let db = self.db.clone();
                    let tenant = t.0.clone();
                    let mutations = std::mem::take(&mut batch);
                    loaded += mutations.len() as u64;
                    blocking(move || db.import_chunk(&tenant, mutations)).await?;
                }
            }
        }
        if !batch.is_empty() {
            loaded += batch.len() as u64;
            let db = self.db.clone();
            let tenant = t.0.clone();
            blocking(move || db.import_chunk(&tenant, batch)).await?;
        }
        Ok(Response::new(api::ImportBulkRelationshipsResponse { num_loaded: loaded }))
    }

    async fn export_bulk_relationships(
        &self,
        request: Request<api::ExportBulkRelationshipsRequest>,
    ) -> Result<Response<Self::ExportBulkRelationshipsStream>, Status> {
        let t = tenant(&request)?;
        let r = request.into_inner();
        let consistency = convert::consistency(&self.db, &t.0, r.consistency.as_ref())?;
        let filter = match r.optional_relationship_filter.as_ref() {
            Some(f) => convert::filter("optional_relationship_filter", Some(f))?,
            None => crate::store::RelationshipFilter::default(),
        };
        let page = match r.optional_limit {
            0 => 1000,
            n => (n as usize).min(self.db.limits().max_page_size),
        };
        let query = crate::db::read_query("export", &filter);
        let (consistency, after) = match r.optional_cursor.map(|c| c.token).filter(|c| !c.is_empty()) {
            Some(c) => {
                let (rev, after) = self.db.open_read_cursor(&t.0, query, &c).map_err(status)?;
                (Consistency::AtExactSnapshot(rev), Some(after))
            }
            None => (consistency, None),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut after = after;
            let mut consistency = consistency;
            loop {
                let (rels, at) = match db.read_relationships(&t.0, consistency, &filter, page, after.as_deref()) {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(status(e)));
                        return;
                    }
                };
                consistency = Consistency::AtExactSnapshot(at);
                let Some(last) = rels.last() else { return };
                let key = crate::store::relationship_key(last);
                let full = rels.len() == page;
                let response = api::ExportBulkRelationshipsResponse {
                    after_result_cursor: Some(api::Cursor { token: db.read_cursor(&t.0, at, query, &key) }),
                    relationships: rels.iter().map(convert::to_relationship).collect(),
                };
                if tx.blocking_send(Ok(response)).is_err() || !full {
                    return;
                }
                after = Some(key);
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
