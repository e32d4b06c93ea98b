//! An in-memory connection: a client that talks to the server's handlers
//! without a transport, for unit tests of an application's handlers. It
//! goes through the same socket.io packet handling as a network client.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::engine::session::Session;
use crate::engine::{DisconnectReason, EngineVersion, Frame, Packet, Transport};
use crate::server::Server;
use crate::socket::conn::Socket;

/// The client end of an in-memory connection ([`Server::connect_in_memory`]).
pub struct MemoryClient {
    session: Arc<Session>,
    next_ack: u64,
}

impl Server {
    /// Connects an in-memory client speaking `eio`'s socket.io protocol to
    /// the default namespace: the application's handler is made and the
    /// socket connected, as for a network client. No heartbeat runs.
    pub fn connect_in_memory(&self, eio: EngineVersion) -> MemoryClient {
        let session = self.inner.open(eio, false, Transport::Polling, None);
        session.opened();
        if eio == EngineVersion::V4 {
            session.on_packet(Packet::Message(Bytes::from_static(b"0")));
        }
        MemoryClient {
            session,
            next_ack: 0,
        }
    }
}

impl MemoryClient {
    /// The server's handle on this connection's socket on `/`, while it
    /// is connected.
    pub fn socket(&self) -> Option<Socket> {
        self.session.state().main.clone().map(Socket)
    }

    /// Sends a raw socket.io packet (`2["event",{}]`).
    pub fn send_packet(&self, text: &str) {
        self.session
            .on_packet(Packet::Message(Bytes::copy_from_slice(text.as_bytes())));
    }

    /// Emits `event` with one argument; with `ack`, asks for an ack and
    /// returns its id.
    pub fn emit<T: Serialize + ?Sized>(&mut self, event: &str, data: &T, ack: bool) -> Option<u64> {
        let id = ack.then(|| {
            self.next_ack += 1;
            self.next_ack
        });
        let args = serde_json::json!([event, data]);
        let text = match id {
            Some(id) => format!("2{id}{args}"),
            None => format!("2{args}"),
        };
        self.send_packet(&text);
        id
    }

    /// The next packet the server sent, as its engine.io text (`42[...]`),
    /// waiting for it; `None` once the connection is closed and drained.
    pub async fn recv(&self) -> Option<String> {
        let mut one = Vec::with_capacity(1);
        loop {
            let next = std::future::poll_fn(|cx| {
                if self.session.outbox.poll_take(cx, &mut one, 1).is_ready() {
                    return std::task::Poll::Ready(true);
                }
                if self.session.closing().is_some() {
                    return std::task::Poll::Ready(false);
                }
                std::task::Poll::Pending
            })
            .await;
            if !next {
                // Nothing drives an in-memory connection: end it here.
                self.session.finish();
                return None;
            }
            match one.pop() {
                Some(Frame::Text(text)) => {
                    return Some(String::from_utf8_lossy(&text).into_owned())
                }
                Some(Frame::Binary(_)) | None => continue,
            }
        }
    }

    /// Why the server closed the connection, if it did.
    pub fn closed(&self) -> Option<DisconnectReason> {
        self.session.closing()
    }

    /// Closes the connection from the client's side (the transport is gone).
    pub fn close(self) {
        self.session.close(DisconnectReason::TransportClose);
        self.session.finish();
    }
}
