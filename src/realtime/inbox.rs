//! Delivers a socket's events to its session task in arrival order.
//!
//! socketioxide runs every async message handler in a task of its own, so two
//! events of one socket may be handled out of order. [`Enqueue`] is a
//! handler that runs synchronously in arrival order and only moves the event
//! into the session's bounded queue. This is the one place that works around
//! that ordering.

use std::sync::Arc;

use serde_json::Value;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{AckSender, Event, TryData};
use socketioxide::handler::{FromMessageParts, MessageHandler};
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

/// The message handler of every socket: moves each event into the session's
/// queue, synchronously, in arrival order (see the module docs).
///
/// Implemented by hand rather than as a closure: socketioxide spawns a task
/// for every call of a closure handler, and this handler has nothing to await.
pub struct Enqueue {
    mailbox: Mailbox,
}

impl Enqueue {
    /// A handler that feeds `mailbox`.
    pub fn new(mailbox: Mailbox) -> Self {
        Self { mailbox }
    }
}

/// Marker for [`Enqueue`]'s `MessageHandler` implementation.
pub enum ViaQueue {}

impl MessageHandler<LocalAdapter, ViaQueue> for Enqueue {
    fn call(
        &self,
        s: Arc<Socket<LocalAdapter>>,
        mut v: socketioxide_core::Value,
        ack_id: Option<i64>,
    ) {
        let event = match Event::from_message_parts(&s, &mut v, &ack_id) {
            Ok(Event(name)) => name,
            Err(_) => return,
        };
        let data = match TryData::<Value>::from_message_parts(&s, &mut v, &ack_id) {
            Ok(TryData(Ok(v))) => Ok(v),
            Ok(TryData(Err(e))) => Err(e.to_string()),
            Err(never) => match never {},
        };
        let ack = match AckSender::from_message_parts(&s, &mut v, &ack_id) {
            Ok(ack) => ack,
            Err(never) => match never {},
        };
        if let Err(mpsc::error::TrySendError::Full(inbound)) = self
            .mailbox
            .events
            .try_send(Box::new(Inbound { event, data, ack }))
        {
            tracing::debug!(sid = %s.id, event = %inbound.event, "event queue full, dropping event");
            self.mailbox.metrics.dropped("queue_full");
            let _ = inbound.ack.send(&StatusReply::fail(
                ack_status::TOO_MANY_REQUESTS,
                reason::TOO_MANY_REQUESTS,
            ));
        }
    }
}
