//! `authzed.api.v1.WatchService`: the tenant's changelog from a ZedToken (or from now), in
//! revision order, one response per committed write, without gaps or duplicates. New writes are
//! found by polling the changelog in bounded pages.

use std::sync::Arc;
use std::time::Duration;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::{self, status};
use super::proto::authzed::api::v1::{self as api, watch_service_server::WatchService};
use super::tenant;
use crate::db::Database;
use crate::model::Revision;
use crate::store::{Change, RelationshipFilter};

pub struct Watch {
    pub db: Arc<Database>,
    /// Turns true when the server shuts down: every watch then ends its stream, so the graceful
    /// shutdown (which waits for calls in flight) is not held by streams that never end.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// How often a watch that has caught up looks at the head's revision (in memory) for new writes.
const POLL: Duration = Duration::from_millis(20);

/// Batches one changelog read returns.
const PAGE: usize = 100;

#[tonic::async_trait]
impl WatchService for Watch {
    type WatchStream = ReceiverStream<Result<api::WatchResponse, Status>>;

    async fn watch(&self, request: Request<api::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let t = tenant(&request)?;
        let r = request.into_inner();
        let mut after = match &r.optional_start_cursor {
            Some(token) if !token.token.is_empty() => {
                self.db.token_revision(&t.0, &token.token).map_err(|e| convert::invalid("optional_start_cursor", e))?
            }
            _ => self.db.revision(&t.0).map_err(status)?,
        };
        let what = Selection::of(&r)?;
        // Fail at once on a token outside the window, not after the stream opened.
        self.db.changes_after(&t.0, after, 1).map_err(status)?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let db = self.db.clone();
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            // The revision the client last learned it has seen everything through.
            let mut told: Option<Revision> = None;
            loop {
                if *stopping.borrow() {
                    return;
                }
                let page = {
                    let db = db.clone();
                    let tenant = t.0.clone();
                    tokio::task::spawn_blocking(move || db.changes_after(&tenant, after, PAGE)).await
                };
                let commits = match page {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(status(e))).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                        return;
                    }
                };
                if commits.is_empty() {
                    // Caught up: a checkpoint if the client asked for them and has not been told
                    // (writes it filtered out still move its position).
                    if what.checkpoints && told != Some(after) {
                        told = Some(after);
                        let checkpoint = api::WatchResponse {
                            changes_through: Some(convert::zed_token(&db, &t.0, after)),
                            is_checkpoint: true,
                            ..Default::default()
                        };
                        if tx.send(Ok(checkpoint)).await.is_err() {
                            return;
                        }
                    }
                    // Wait for the head to move past `after`, looking at the head's revision in
                    // memory (no store read, no thread hop) every POLL.
                    loop {
                        if tx.is_closed() {
                            return;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(POLL) => {}
                            _ = stopping.changed() => return,
                        }
                        match db.revision(&t.0) {
                            Ok(head) if head > after => break,
                            Ok(_) => {}
                            Err(e) => {
                                let _ = tx.send(Err(status(e))).await;
                                return;
                            }
                        }
                    }
                    continue;
                }
                for c in commits {
                    after = c.revision;
                    let Some(mut response) = what.response(&c.changes) else { continue };
                    response.changes_through = Some(convert::zed_token(&db, &t.0, c.revision));
                    told = Some(after);
                    if tx.send(Ok(response)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// What a watch reports: SpiceDB's `optional_update_kinds` (none: relationship updates only),
/// `optional_object_types` or `optional_relationship_filters` (not both).
struct Selection {
    relationships: bool,
    schema: bool,
    checkpoints: bool,
    types: Vec<String>,
    filters: Vec<RelationshipFilter>,
}

impl Selection {
    fn of(r: &api::WatchRequest) -> Result<Selection, Status> {
        use api::WatchKind;
        let mut kinds = Vec::new();
        for (i, k) in r.optional_update_kinds.iter().enumerate() {
            kinds.push(
                WatchKind::try_from(*k)
                    .map_err(|_| convert::invalid(&format!("optional_update_kinds[{i}]"), "is not a WatchKind"))?,
            );
        }
        if !r.optional_object_types.is_empty() && !r.optional_relationship_filters.is_empty() {
            return Err(convert::invalid(
                "optional_relationship_filters",
                "cannot be given with `optional_object_types`: use one or the other",
            ));
        }
        for (i, ty) in r.optional_object_types.iter().enumerate() {
            convert::object(
                &format!("optional_object_types[{i}]"),
                Some(&api::ObjectReference { object_type: ty.clone(), object_id: "x".into() }),
                false,
            )?;
        }
        let filters = r
            .optional_relationship_filters
            .iter()
            .enumerate()
            .map(|(i, f)| convert::filter(&format!("optional_relationship_filters[{i}]"), Some(f)))
            .collect::<Result<Vec<_>, _>>()?;
        let has = |k: WatchKind| kinds.contains(&k);
        Ok(Selection {
            relationships: kinds.is_empty()
                || has(WatchKind::Unspecified)
                || has(WatchKind::IncludeRelationshipUpdates),
            schema: has(WatchKind::IncludeSchemaUpdates),
            checkpoints: has(WatchKind::IncludeCheckpoints),
            types: r.optional_object_types.clone(),
            filters,
        })
    }

    fn wants(&self, r: &crate::model::Relationship) -> bool {
        (self.types.is_empty() || self.types.contains(&r.resource.ty))
            && (self.filters.is_empty() || self.filters.iter().any(|f| f.matches(r)))
    }

    /// One commit's response (its token not yet set), or `None` if nothing in it is selected.
    fn response(&self, changes: &[Change]) -> Option<api::WatchResponse> {
        use api::relationship_update::Operation;
        let mut schema_updated = false;
        let mut metadata = None;
        let mut updates = Vec::new();
        for change in changes {
            let (op, rel) = match change {
                Change::Upsert(r) => (Operation::Touch, r),
                Change::Delete(r) => (Operation::Delete, r),
                Change::Schema(_) => {
                    schema_updated = self.schema;
                    continue;
                }
                Change::Metadata(m) => {
                    metadata = Some(convert::to_struct(m));
                    continue;
                }
                Change::SetAttributes { .. } | Change::DeleteAttributes { .. } => continue,
            };
            if self.relationships && self.wants(rel) {
                updates.push(api::RelationshipUpdate {
                    operation: op as i32,
                    relationship: Some(convert::to_relationship(rel)),
                });
            }
        }
        if updates.is_empty() && !schema_updated {
            return None;
        }
        Some(api::WatchResponse {
            updates,
            changes_through: None,
            full_revision_metadata: metadata.iter().cloned().collect(),
            optional_transaction_metadata: metadata,
            schema_updated,
            is_checkpoint: false,
        })
    }
}
