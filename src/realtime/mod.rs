//! The socket.io side: one [`session::Session`] task per connection runs the
//! protocol's events in the order the client sent them.

mod ack;
mod auth;
pub(crate) mod bus;
mod direct;
mod fanout;
mod handler;
mod inbox;
pub(crate) mod limits;
mod message;
mod pending;
mod presence;
mod read_ahead;
mod room;
mod session;
mod sync;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::config::Config;

/// The bound on sync pages read ahead at once, for [`AppState::read_ahead`](crate::app::AppState::read_ahead).
pub(crate) fn read_ahead_limit() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(read_ahead::MAX_PAGES))
}

/// Extra bytes allowed on top of `max_msg_bytes` for framing and escaping.
const FRAME_SLACK: usize = 64 * 1024;

/// The largest websocket message, and so the largest single event, a
/// client may send: a msg of `max_msg_bytes` with its framing, escaped.
pub(crate) fn max_event_bytes(config: &Config) -> usize {
    config
        .max_msg_bytes
        .saturating_mul(2)
        .saturating_add(FRAME_SLACK)
}

/// The largest long-polling request body: four times the inbound budget
/// (or one largest message, if that is more). socket.io-client 2.x sends
/// every packet it buffered while offline in one POST (engine.io 3 servers
/// took up to 100 MB); 3.x and 4.x split their POSTs to the size the
/// handshake tells them. A body is held while its packets are handed to
/// the session one at a time, as fast as it takes them.
pub(crate) fn max_polling_body(config: &Config) -> usize {
    max_event_bytes(config).max(config.inbound_max_bytes.saturating_mul(4))
}

pub(crate) use session::Sessions;
