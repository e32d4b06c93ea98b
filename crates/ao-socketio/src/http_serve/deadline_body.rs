//! A request body that must arrive whole by a deadline.
//!
//! Hand-written because tower-http's `TimeoutBody` restarts its timer at
//! every frame: a client trickling a byte every few seconds would never
//! be cut.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

/// The error a request body gives when it did not arrive whole within
/// [`HttpLimits::body_timeout`](super::HttpLimits::body_timeout) of its
/// request's head. A handler that finds it in a body error's source
/// chain ([`BodyTimeout::caused`]) may answer 408; the connection is
/// closed after the answer.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("request body timed out")]
pub struct BodyTimeout;

impl BodyTimeout {
    /// Whether `error`, or an error in its source chain, is a
    /// [`BodyTimeout`].
    pub fn caused(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut at = Some(error);
        while let Some(e) = at {
            if e.is::<BodyTimeout>() {
                return true;
            }
            at = e.source();
        }
        false
    }
}

/// `Incoming`, cut with [`BodyTimeout`] once `deadline` passed. The timer
/// is made only when the body has to be waited for (a GET's empty body
/// never makes one).
pub(super) struct DeadlineBody {
    body: Incoming,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Counts the bodies cut.
    cut: Arc<AtomicU64>,
    timed_out: bool,
}

impl DeadlineBody {
    pub(super) fn new(body: Incoming, deadline: Instant, cut: Arc<AtomicU64>) -> DeadlineBody {
        DeadlineBody {
            body,
            deadline,
            sleep: None,
            cut,
            timed_out: false,
        }
    }

    fn time_out(&mut self) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if !self.timed_out {
            self.timed_out = true;
            self.cut.fetch_add(1, Ordering::Relaxed);
        }
        Poll::Ready(Some(Err(Box::new(BodyTimeout))))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.timed_out || this.sleep.as_ref().is_some_and(|s| s.is_elapsed()) {
            return this.time_out();
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            return this.time_out();
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        !self.timed_out && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
