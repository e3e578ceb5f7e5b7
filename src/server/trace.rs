//! A layer around every RPC: a call slower than a threshold is logged (`slow request`, at warn,
//! with its method and milliseconds), and so is a failure (warn for the server's own faults:
//! INTERNAL, UNKNOWN, UNAVAILABLE, DATA_LOSS; debug for the client's errors). For a streaming
//! call the time is until the response starts (its headers), not until the stream ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::codegen::http;

/// The layer: calls taking `threshold` or longer are logged.
#[derive(Clone, Copy, Debug)]
pub struct SlowLog {
    pub threshold: Duration,
}

impl<S> tower_layer::Layer<S> for SlowLog {
    type Service = Timed<S>;

    fn layer(&self, inner: S) -> Timed<S> {
        Timed { inner, threshold: self.threshold }
    }
}

#[derive(Clone, Debug)]
pub struct Timed<S> {
    inner: S,
    threshold: Duration,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for Timed<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_string();
        let started = Instant::now();
        let threshold = self.threshold;
        let call = self.inner.call(req);
        Box::pin(async move {
            let result = call.await;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            if started.elapsed() >= threshold {
                tracing::warn!(%method, ms, "slow request");
            }
            // A failed unary call answers "trailers only": its status is in the headers.
            if let Ok(response) = &result {
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map(tonic::Code::from);
                if let Some(code) = code.filter(|c| *c != tonic::Code::Ok) {
                    let message = response.headers().get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or("");
                    let server_fault = matches!(
                        code,
                        tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::Unavailable | tonic::Code::DataLoss
                    );
                    if server_fault {
                        tracing::warn!(%method, ?code, message, ms, "request failed");
                    } else {
                        tracing::debug!(%method, ?code, message, ms, "request refused");
                    }
                }
            }
            result
        })
    }
}
