//! `pemba.v1.FloorService`: the load benchmark's streaming floor. It sends copies of a message
//! through the same path a lookup's results take (a producer on the blocking pool, the same
//! channel and buffer, the same deadline-bounded stream), so a lookup's results per second can
//! be compared with the transport's.

use tonic::{Request, Response, Status};

use super::deadline::{Bounded, Deadline};
use super::permissions::STREAM_BUFFER;
use super::proto::authzed::api::v1 as api;
use super::proto::pemba::v1::{self as pb, floor_service_server::FloorService};

/// Most messages one floor stream sends.
const MAX_COUNT: u32 = 10_000_000;

pub struct Floor {
    pub default_deadline: std::time::Duration,
}

#[tonic::async_trait]
impl FloorService for Floor {
    type StreamFloorStream = Bounded<api::LookupResourcesResponse>;

    async fn stream_floor(
        &self,
        request: Request<pb::StreamFloorRequest>,
    ) -> Result<Response<Self::StreamFloorStream>, Status> {
        let deadline = Deadline::get(&request, self.default_deadline);
        let r = request.into_inner();
        if r.count > MAX_COUNT {
            return Err(super::convert::invalid("count", format!("is more than {MAX_COUNT}")));
        }
        let template = r.template.unwrap_or_default();
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        tokio::task::spawn_blocking(move || {
            for _ in 0..r.count {
                if tx.blocking_send(Ok(template.clone())).is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Bounded::new(rx, deadline)))
    }
}
