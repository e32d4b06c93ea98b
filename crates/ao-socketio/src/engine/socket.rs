//! The engine.io layer's own API, for an application that speaks its own
//! messages over engine.io instead of socket.io ([`crate::Server::engine`]).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::session::{DisconnectReason, Session, Transport};
use super::{EngineVersion, Frame};
use crate::outbox::QueueError;

/// One engine.io message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (valid UTF-8).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
}

/// What an engine.io application does with its sessions.
pub trait EngineHandler: Send + Sync + 'static {
    /// A session opened (after its handshake was answered).
    fn open(&self, socket: &EngineSocket) {
        let _ = socket;
    }

    /// A message from the client. Called synchronously by the session's
    /// reader, in arrival order.
    fn message(&self, socket: &EngineSocket, message: Message);

    /// The session ended (called once).
    fn close(&self, socket: &EngineSocket, reason: DisconnectReason) {
        let _ = (socket, reason);
    }
}

/// A handle to one engine.io session. Cheap to clone.
#[derive(Clone)]
pub struct EngineSocket(pub(crate) Arc<Session>);

impl std::fmt::Debug for EngineSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSocket")
            .field("sid", &self.0.sid)
            .finish()
    }
}

impl EngineSocket {
    /// The session id.
    pub fn id(&self) -> &str {
        self.0.sid.as_str()
    }

    /// The engine.io revision the client speaks.
    pub fn protocol(&self) -> EngineVersion {
        self.0.eio
    }

    /// The transport in use now.
    pub fn transport(&self) -> Transport {
        self.0.state().transport
    }

    /// The client's address, when the listener provided it.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.0.peer
    }

    /// Sends a message.
    pub fn send(&self, message: Message) -> Result<(), QueueError> {
        self.0.push(match message {
            Message::Text(text) => {
                let mut out = Vec::with_capacity(1 + text.len());
                out.push(b'4');
                out.extend_from_slice(&text);
                Frame::Text(Bytes::from(out))
            }
            Message::Binary(data) => Frame::Binary(data),
        })
    }

    /// Closes the session from the server's side.
    pub fn close(&self) {
        self.0.close(DisconnectReason::ServerDisconnect);
    }

    /// Whether the session is closing or closed.
    pub fn is_closed(&self) -> bool {
        self.0.closing().is_some()
    }
}
