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
use crate::store::Change;

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
        use api::relationship_update::Operation;
        let t = tenant(&request)?;
        let r = request.into_inner();
        let mut after = match &r.optional_start_cursor {
            Some(token) if !token.token.is_empty() => {
                self.db.token_revision(&t.0, &token.token).map_err(|e| convert::invalid("optional_start_cursor", e))?
            }
            _ => self.db.revision(&t.0).map_err(status)?,
        };
        // Fail at once on a token outside the window, not after the stream opened.
        self.db.changes_after(&t.0, after, 1).map_err(status)?;
        let types = r.optional_object_types;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let db = self.db.clone();
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
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
                    // Caught up: wait for the head to move past `after`, looking at the head's
                    // revision in memory (no store read, no thread hop) every POLL.
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
                    let mut schema_updated = false;
                    let mut updates = Vec::new();
                    for change in &c.changes {
                        let (op, rel) = match change {
                            Change::Upsert(r) => (Operation::Touch, r),
                            Change::Delete(r) => (Operation::Delete, r),
                            Change::Schema(_) => {
                                schema_updated = true;
                                continue;
                            }
                            Change::SetAttributes { .. } | Change::DeleteAttributes { .. } => continue,
                        };
                        if !types.is_empty() && !types.contains(&rel.resource.ty) {
                            continue;
                        }
                        updates.push(api::RelationshipUpdate {
                            operation: op as i32,
                            relationship: Some(convert::to_relationship(rel)),
                        });
                    }
                    if updates.is_empty() && !schema_updated {
                        continue;
                    }
                    let response = api::WatchResponse {
                        updates,
                        changes_through: Some(convert::zed_token(&db, &t.0, c.revision)),
                        optional_transaction_metadata: None,
                        schema_updated,
                        is_checkpoint: false,
                        full_revision_metadata: Vec::new(),
                    };
                    if tx.send(Ok(response)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
