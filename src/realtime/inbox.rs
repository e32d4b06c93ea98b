//! Delivers a socket's events to its session task in arrival order.
//!
//! socketioxide runs every async message handler in a task of its own, so two
//! events of one socket may be handled out of order. Extractors, however, run
//! synchronously in arrival order; [`Enqueued`] is an extractor that moves
//! the event into the session's bounded queue, and the handler it feeds does
//! nothing else. This is the one place that works around that ordering.

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::Value;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{AckSender, Event, TryData};
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::Socket;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::protocol::{ack_status, reason, StatusReply};

/// Events a session may have queued before the client is refused more.
pub const QUEUE_DEPTH: usize = 256;

/// One client event.
pub struct Inbound {
    pub event: String,
    /// The payload, or why it could not be decoded.
    pub data: Result<Value, String>,
    pub ack: AckSender,
}

/// Signals to a session from outside its socket's event stream.
#[derive(Debug)]
pub enum Control {
    /// socketioxide marked the socket connected: emits reach the client from now on.
    Ready,
    /// Another login of the same uid replaced this connection.
    Kick,
    /// The connection closed.
    Closed,
}

/// The sending ends of a session's queues, kept in the socket's extensions.
#[derive(Clone)]
pub struct Mailbox {
    /// Boxed: a queue allocates room for 32 entries up front, and every
    /// connection has one, so entries are kept pointer-sized.
    pub events: mpsc::Sender<Box<Inbound>>,
    pub control: mpsc::UnboundedSender<Control>,
    pub metrics: Arc<Metrics>,
}

/// Extractor that enqueues the event; see the module docs.
pub struct Enqueued;

impl FromMessageParts<LocalAdapter> for Enqueued {
    type Error = Infallible;

    fn from_message_parts(
        s: &Arc<Socket<LocalAdapter>>,
        v: &mut socketioxide_core::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        let event = match Event::from_message_parts(s, v, ack_id) {
            Ok(Event(name)) => name,
            Err(_) => return Ok(Enqueued),
        };
        let data = match TryData::<Value>::from_message_parts(s, v, ack_id) {
            Ok(TryData(Ok(v))) => Ok(v),
            Ok(TryData(Err(e))) => Err(e.to_string()),
            Err(never) => match never {},
        };
        let ack = match AckSender::from_message_parts(s, v, ack_id) {
            Ok(ack) => ack,
            Err(never) => match never {},
        };
        let Some(mailbox) = s.extensions.get::<Mailbox>() else {
            return Ok(Enqueued);
        };
        if let Err(mpsc::error::TrySendError::Full(inbound)) = mailbox
            .events
            .try_send(Box::new(Inbound { event, data, ack }))
        {
            tracing::debug!(sid = %s.id, event = %inbound.event, "event queue full, dropping event");
            mailbox.metrics.dropped("queue_full");
            let _ = inbound.ack.send(&StatusReply::fail(
                ack_status::TOO_MANY_REQUESTS,
                reason::TOO_MANY_REQUESTS,
            ));
        }
        Ok(Enqueued)
    }
}

/// The handler fed by [`Enqueued`].
pub async fn enqueue(_: Enqueued) {}
