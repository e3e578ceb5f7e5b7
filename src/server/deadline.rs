//! Deadlines of streaming calls. tonic's server timeout ends a call that has not answered yet;
//! a stream that has started answering would otherwise run past it. `Bounded` ends such a
//! stream with DEADLINE_EXCEEDED at the call's deadline (the client's `grpc-timeout` or the
//! server's default, whichever comes first); dropping the receiver then stops the producer, whose
//! next send fails.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status};

/// When a call must end, set on each request by the authentication interceptor.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// The earlier of the client's `grpc-timeout` and `default` from now.
    pub fn of<T>(request: &Request<T>, default: Duration) -> Deadline {
        let client = request.metadata().get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(parse_timeout);
        let within = client.map_or(default, |c| c.min(default));
        Deadline(Instant::now() + within)
    }

    /// The deadline an interceptor set (a request that passed none has `default` from now).
    pub fn get<T>(request: &Request<T>, default: Duration) -> Deadline {
        request.extensions().get::<Deadline>().copied().unwrap_or_else(|| Deadline::of(request, default))
    }
}

/// gRPC's timeout header: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
fn parse_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A response stream that ends with DEADLINE_EXCEEDED at its deadline.
pub struct Bounded<T> {
    inner: ReceiverStream<Result<T, Status>>,
    timer: Pin<Box<Sleep>>,
    done: bool,
}

impl<T> Bounded<T> {
    pub fn new(rx: tokio::sync::mpsc::Receiver<Result<T, Status>>, deadline: Deadline) -> Bounded<T> {
        Bounded { inner: ReceiverStream::new(rx), timer: Box::pin(tokio::time::sleep_until(deadline.0)), done: false }
    }
}

impl<T> Stream for Bounded<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        // What is ready before the deadline is sent; past it, the stream ends.
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(None) => {
                self.done = true;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(item)) if !self.timer.is_elapsed() => return Poll::Ready(Some(item)),
            Poll::Ready(Some(_)) | Poll::Pending => {}
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.done = true;
                self.inner.close();
                Poll::Ready(Some(Err(Status::deadline_exceeded(
                    "the call's deadline passed while it was streaming (the client's `grpc-timeout` or the server's \
                     `--default-deadline-secs`)",
                ))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        assert_eq!(parse_timeout("123456789S"), None, "more than 8 digits");
        assert_eq!(parse_timeout("m"), None);
        assert_eq!(parse_timeout("5x"), None);
        assert_eq!(parse_timeout(""), None);
    }
}
