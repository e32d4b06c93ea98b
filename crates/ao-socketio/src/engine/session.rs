//! An engine.io session: its transport, outbound queue, heartbeat state and
//! what it does with each engine.io packet. Messages go up to the layer
//! the server was built with: socket.io ([`crate::socket`]) or the
//! application's [`super::EngineHandler`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;

use super::socket::{EngineSocket, Message};
use super::{EngineVersion, Frame, Packet};
use crate::gate::ReadGate;
use crate::id::Id;
use crate::inner::{Inner, Layer};
use crate::outbox::{Outbox, QueueError};
use crate::socket::conn::{self, Conn, Partial};

/// Why a connection (or one namespace's socket) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client left the namespace (a socket.io disconnect packet).
    ClientDisconnect,
    /// The client closed the engine.io session (a close packet).
    ClientClose,
    /// The transport closed or failed (connection lost).
    TransportClose,
    /// The heartbeat went unanswered.
    PingTimeout,
    /// The application disconnected it ([`crate::Socket::disconnect`]).
    ServerDisconnect,
    /// Its outbound queue reached its byte limit: the client does not read.
    SlowClient,
    /// The server is shutting down.
    ServerShutdown,
    /// The client broke the protocol (a malformed packet, two long-polls
    /// at once).
    ProtocolError,
    /// A socket.io 3.x/4.x client did not connect to a namespace in time.
    ConnectTimeout,
    /// The application refused the client's connect to the namespace
    /// ([`crate::Socket::refuse`]).
    ConnectRefused,
}

impl DisconnectReason {
    /// A label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            DisconnectReason::ClientDisconnect => "client namespace disconnect",
            DisconnectReason::ClientClose => "client close",
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ServerDisconnect => "server namespace disconnect",
            DisconnectReason::SlowClient => "slow client",
            DisconnectReason::ServerShutdown => "server shutting down",
            DisconnectReason::ProtocolError => "protocol error",
            DisconnectReason::ConnectTimeout => "connect timeout",
            DisconnectReason::ConnectRefused => "connect refused",
        }
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// The transport a session uses now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP long-polling.
    Polling,
    /// A websocket.
    Websocket,
}

/// A session's state, shared by its task, its HTTP requests and the
/// application's handles.
pub(crate) struct Session {
    pub(crate) sid: Id,
    pub(crate) eio: EngineVersion,
    /// An engine.io 3 client that asked for binary as base64 (`b64=1`).
    pub(crate) b64: bool,
    pub(crate) peer: Option<SocketAddr>,
    /// Whether messages go to socket.io (else to an [`super::EngineHandler`]).
    pub(crate) socket_io: bool,
    pub(crate) outbox: Outbox,
    pub(crate) gate: Arc<ReadGate>,
    pub(crate) server: Weak<Inner>,
    pub(crate) state: Mutex<State>,
    /// Wakes the session's task (a close, an upgrade).
    pub(crate) wake: tokio::sync::Notify,
    pub(crate) created: Instant,
}

/// The mutable part of a session.
pub(crate) struct State {
    pub(crate) transport: Transport,
    /// Set once: why it is closing.
    pub(crate) closing: Option<DisconnectReason>,
    /// A websocket probed this polling session: polls answer at once.
    pub(crate) upgrading: bool,
    /// A websocket for this polling session is open and its probe not in
    /// yet: a poll made now crossed the upgrade.
    pub(crate) probing: bool,
    /// A long-poll GET is waiting.
    pub(crate) polling: bool,
    /// A POST is being read.
    pub(crate) posting: bool,
    /// The POST being read, woken when the session closes (its body is
    /// no longer read).
    pub(crate) post_waker: Option<std::task::Waker>,
    /// The last sign of life for the heartbeat (engine.io 3: any packet;
    /// engine.io 4: a pong).
    pub(crate) last_heard: Instant,
    /// A websocket that wants to take over this polling session.
    pub(crate) upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// [`Session::finish`] ran.
    pub(crate) finished: bool,
    /// A disconnect packet held back from a long-poll answer waits until
    /// then (see `polling::poll`).
    pub(crate) disconnect_after: Option<Instant>,
    /// socket.io: a binary packet waiting for its attachments.
    pub(crate) partial: Option<Box<Partial>>,
    /// socket.io: the socket on the default namespace `/`.
    pub(crate) main: Option<Arc<Conn>>,
    /// socket.io: sockets on other namespaces (boxed: most sessions have
    /// none, and every session carries this state).
    #[allow(clippy::box_collection)]
    pub(crate) others: Option<Box<Vec<Arc<Conn>>>>,
}

impl State {
    /// Whether a socket.io socket is connected on this session (its
    /// connect answered: a deferred connect counts once accepted).
    pub(crate) fn has_socket(&self) -> bool {
        self.main.as_ref().is_some_and(|m| m.is_answered())
            || self
                .others
                .as_ref()
                .is_some_and(|o| o.iter().any(|c| c.is_answered()))
    }

    /// The session's socket on namespace `nsp`.
    pub(crate) fn socket(&self, nsp: &str) -> Option<&Arc<Conn>> {
        if nsp == "/" {
            return self.main.as_ref();
        }
        self.others.as_ref()?.iter().find(|c| &*c.nsp.name == nsp)
    }
}

impl Session {
    pub(crate) fn new(
        server: &Arc<Inner>,
        eio: EngineVersion,
        b64: bool,
        transport: Transport,
        peer: Option<SocketAddr>,
    ) -> Arc<Session> {
        Arc::new(Session {
            sid: Id::random(),
            eio,
            b64,
            peer,
            socket_io: matches!(server.layer, Layer::SocketIo(_)),
            outbox: Outbox::new(server.config.queue_max_bytes),
            gate: Arc::new(ReadGate::default()),
            server: Arc::downgrade(server),
            state: Mutex::new(State {
                transport,
                closing: None,
                upgrading: false,
                probing: false,
                polling: false,
                posting: false,
                post_waker: None,
                last_heard: Instant::now(),
                upgrade: None,
                finished: false,
                disconnect_after: None,
                partial: None,
                main: None,
                others: None,
            }),
            wake: tokio::sync::Notify::new(),
            created: Instant::now(),
        })
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn closing(&self) -> Option<DisconnectReason> {
        self.state().closing
    }

    /// Starts closing for `reason` (the first reason wins): nothing more is
    /// queued, and the session's task finishes it.
    pub(crate) fn close(&self, reason: DisconnectReason) {
        let post = {
            let mut state = self.state();
            if state.closing.is_some() {
                return;
            }
            state.closing = Some(reason);
            state.post_waker.take()
        };
        if let Some(post) = post {
            post.wake();
        }
        if reason == DisconnectReason::SlowClient {
            if let Some(server) = self.server.upgrade() {
                server.stats.slow_client();
            }
        }
        self.outbox.close();
        self.gate.open();
        self.wake.notify_one();
    }

    /// Queues a frame; a full queue closes the session as too slow.
    pub(crate) fn push(&self, frame: Frame) -> Result<(), QueueError> {
        let pushed = self.outbox.push(frame);
        self.pushed(pushed)
    }

    /// Queues frames that must stay together (a packet and its
    /// attachments), as [`Session::push`].
    pub(crate) fn push_all(&self, frames: Vec<Frame>) -> Result<(), QueueError> {
        let pushed = self.outbox.push_all(frames);
        self.pushed(pushed)
    }

    fn pushed(&self, result: Result<(), QueueError>) -> Result<(), QueueError> {
        if let Err(QueueError::Full) = result {
            tracing::debug!(sid = %self.sid, "outbound queue full, disconnecting a slow client");
            self.close(DisconnectReason::SlowClient);
        }
        result
    }

    /// The open packet of the handshake.
    pub(crate) fn open_packet(&self, upgrades: bool, config: &crate::Config) -> Frame {
        let upgrades: &[&str] = if upgrades { &["websocket"] } else { &[] };
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Open<'a> {
            sid: &'a str,
            upgrades: &'a [&'a str],
            ping_interval: u128,
            ping_timeout: u128,
            #[serde(skip_serializing_if = "Option::is_none")]
            max_payload: Option<usize>,
        }
        let open = Open {
            sid: self.sid.as_str(),
            upgrades,
            ping_interval: config.ping_interval.as_millis(),
            ping_timeout: config.ping_timeout.as_millis(),
            max_payload: (self.eio == EngineVersion::V4).then_some(config.max_payload_bytes),
        };
        let json = serde_json::to_vec(&open).unwrap_or_default();
        Packet::Open(Bytes::from(json)).encode()
    }

    /// Right after the handshake: the layer above learns of the session
    /// (a socket.io 2.x client is connected to `/` at once, as socket.io
    /// 2.x servers did).
    pub(crate) fn opened(self: &Arc<Self>) {
        if !self.socket_io {
            if let Some(server) = self.server.upgrade() {
                if let Layer::Engine(handler) = &server.layer {
                    handler.open(&EngineSocket(self.clone()));
                }
            }
        } else if self.eio == EngineVersion::V3 {
            conn::connect(self, "/", None);
        }
    }

    /// Handles one engine.io packet from the client.
    pub(crate) fn on_packet(self: &Arc<Self>, packet: Packet) {
        match packet {
            Packet::Ping(data) => {
                self.heard();
                let _ = self.push(Packet::Pong(data).encode());
            }
            Packet::Pong(_) => self.heard(),
            Packet::Message(text) => {
                if self.eio == EngineVersion::V3 {
                    self.heard();
                }
                if self.socket_io {
                    conn::on_message(self, text);
                } else {
                    self.to_engine_handler(Message::Text(text));
                }
            }
            Packet::Binary(data) => {
                if self.eio == EngineVersion::V3 {
                    self.heard();
                }
                if self.socket_io {
                    conn::on_attachment(self, data);
                } else {
                    self.to_engine_handler(Message::Binary(data));
                }
            }
            Packet::Close => self.close(DisconnectReason::ClientClose),
            Packet::Open(_) | Packet::Upgrade | Packet::Noop => {}
        }
    }

    fn to_engine_handler(self: &Arc<Self>, message: Message) {
        if let Some(server) = self.server.upgrade() {
            if let Layer::Engine(handler) = &server.layer {
                handler.message(&EngineSocket(self.clone()), message);
            }
        }
    }

    fn heard(&self) {
        self.state().last_heard = Instant::now();
    }

    /// A packet or frame that does not decode: the session is closed, as
    /// the reference servers close it, and the packet counted.
    pub(crate) fn malformed(&self, why: &dyn std::fmt::Display) {
        tracing::debug!(sid = %self.sid, error = %why, "malformed packet, closing");
        if let Some(server) = self.server.upgrade() {
            server.stats.malformed();
        }
        self.close(DisconnectReason::ProtocolError);
    }

    /// Ends the session (once): the layer above is told, the server
    /// forgets it.
    pub(crate) fn finish(self: &Arc<Self>) {
        let (reason, main, others, post) = {
            let mut state = self.state();
            if std::mem::replace(&mut state.finished, true) {
                return;
            }
            let reason = *state
                .closing
                .get_or_insert(DisconnectReason::TransportClose);
            state.partial = None;
            state.upgrade = None;
            (
                reason,
                state.main.take(),
                state.others.take(),
                state.post_waker.take(),
            )
        };
        if let Some(post) = post {
            post.wake();
        }
        self.outbox.close();
        let server = self.server.upgrade();
        if let Some(server) = &server {
            server.forget(self);
        }
        for socket in main.into_iter().chain(others.into_iter().flat_map(|o| *o)) {
            socket.finish(reason);
        }
        if let Some(server) = &server {
            if let Layer::Engine(handler) = &server.layer {
                handler.close(&EngineSocket(self.clone()), reason);
            }
        }
    }
}
