//! A connection: one engine.io session carrying one socket.io socket on
//! the default namespace, the handle the application holds ([`Socket`]),
//! and what it does with each packet the client sends.

use std::any::Any;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::oneshot;

use super::packet::{self as sio, Kind, SocketVersion};
use crate::engine::{EngineVersion, Frame, Packet};
use crate::gate::ReadGate;
use crate::id::Id;
use crate::outbox::{Outbox, QueueError};
use crate::server::Inner;

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client left the namespace (a socket.io disconnect packet).
    ClientDisconnect,
    /// The client closed the engine.io session (a close packet).
    ClientClose,
    /// The transport closed or failed (connection lost).
    TransportClose,
    /// The heartbeat went unanswered.
    PingTimeout,
    /// The application disconnected it ([`Socket::disconnect`]).
    ServerDisconnect,
    /// Its outbound queue reached its byte limit: the client does not read.
    SlowClient,
    /// The server is shutting down.
    ServerShutdown,
    /// The client broke the protocol (e.g. two long-polls at once).
    ProtocolError,
    /// A socket.io 3.x/4.x client did not connect to the namespace in time.
    ConnectTimeout,
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
        }
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// The transport a connection uses now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Polling,
    Websocket,
}

/// Why a packet was not sent.
pub type SendError = QueueError;

/// An event from the client, handed to [`Handler::event`] in the order the
/// client sent it.
#[derive(Debug)]
pub struct Event<'a> {
    /// The packet's data: the JSON array `["name", arg, ...]` as sent
    /// (binary attachments stand in it as `{"_placeholder":true,"num":N}`).
    pub data: &'a str,
    /// The binary attachments, in order (empty for most events).
    pub attachments: Vec<Bytes>,
    /// The reply the client asked for, if it did.
    pub ack: Option<AckSender>,
}

/// What the application does with a connection's events.
pub trait Handler: Send + Sync + 'static {
    /// An event from the client. Called synchronously by the connection's
    /// reader, in arrival order; a slow handler delays that connection's
    /// reads only.
    fn event(&self, socket: &Socket, event: Event<'_>);

    /// The connection ended (called once).
    fn disconnect(&self, socket: &Socket, reason: DisconnectReason);
}

/// The application's side: makes the handler of each new connection.
pub trait Service: Send + Sync + 'static {
    /// A client connected to the namespace. Called before the client is
    /// told so: no event can arrive before the handler is in place.
    fn connect(&self, socket: &Socket) -> Box<dyn Handler>;
}

/// A client's answer to an event the server sent with an ack.
#[derive(Debug)]
pub struct AckReply {
    /// The ack's arguments: a JSON array as sent.
    pub data: String,
    pub attachments: Vec<Bytes>,
}

/// A handle to one connection. Cheap to clone.
#[derive(Clone)]
pub struct Socket(pub(crate) Arc<Conn>);

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("id", &self.0.id).finish()
    }
}

impl PartialEq for Socket {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The answer to an event the client sent with an ack id.
#[derive(Debug)]
pub struct AckSender {
    socket: Socket,
    id: u64,
}

impl AckSender {
    /// Sends `data` as the ack's one argument.
    pub fn send<T: Serialize + ?Sized>(self, data: &T) -> Result<(), SendError> {
        let mut text = Vec::with_capacity(64);
        text.extend_from_slice(b"43");
        write_id(&mut text, self.id);
        text.push(b'[');
        serde_json::to_writer(&mut text, data).map_err(|_| QueueError::Closed)?;
        text.push(b']');
        self.socket.send_frame(Frame::Text(Bytes::from(text)))
    }
}

/// Builds the frame of event `name` with one argument: encode it once and
/// send it to many with [`Socket::send_frame`] or a room broadcast.
pub fn event_frame<T: Serialize + ?Sized>(name: &str, data: &T) -> Frame {
    event_frame_with(name, data, None)
}

fn event_frame_with<T: Serialize + ?Sized>(name: &str, data: &T, ack: Option<u64>) -> Frame {
    let mut text = Vec::with_capacity(32 + name.len());
    text.extend_from_slice(b"42");
    if let Some(id) = ack {
        write_id(&mut text, id);
    }
    text.push(b'[');
    // Serializing a &str or a caller's Serialize into a Vec only fails for
    // maps with non-string keys; such a value becomes null.
    if serde_json::to_writer(&mut text, name).is_err() {
        text.extend_from_slice(b"\"\"");
    }
    text.push(b',');
    let mark = text.len();
    if serde_json::to_writer(&mut text, data).is_err() {
        text.truncate(mark);
        text.extend_from_slice(b"null");
    }
    text.push(b']');
    Frame::Text(Bytes::from(text))
}

/// Appends an ack id's decimal digits (no allocation: one ack per msg).
fn write_id(text: &mut Vec<u8>, id: u64) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = write!(text, "{id}");
}

/// A connection's state, shared by its task, its HTTP requests and the
/// application's handles.
pub(crate) struct Conn {
    pub(crate) id: Id,
    pub(crate) sid: Id,
    pub(crate) eio: EngineVersion,
    /// An engine.io 3 client that asked for binary as base64 (`b64=1`).
    pub(crate) b64: bool,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) outbox: Outbox,
    pub(crate) gate: Arc<ReadGate>,
    pub(crate) server: Weak<Inner>,
    pub(crate) state: Mutex<State>,
    handler: OnceLock<Box<dyn Handler>>,
    data: OnceLock<Box<dyn Any + Send + Sync>>,
    next_ack: AtomicU64,
    /// Wakes the connection's task (a close, an upgrade).
    pub(crate) wake: tokio::sync::Notify,
    pub(crate) created: Instant,
}

/// The mutable part of a connection.
pub(crate) struct State {
    pub(crate) transport: Transport,
    /// Connected to the namespace (socket.io level).
    pub(crate) connected: bool,
    /// Set once: why it is closing.
    pub(crate) closing: Option<DisconnectReason>,
    /// The rooms it is in.
    pub(crate) rooms: Vec<Box<str>>,
    /// A websocket probed this polling session: polls answer at once.
    pub(crate) upgrading: bool,
    /// A long-poll GET is waiting.
    pub(crate) polling: bool,
    /// A POST is being read.
    pub(crate) posting: bool,
    /// The POST being read, woken when the connection closes (its body is
    /// no longer read).
    pub(crate) post_waker: Option<std::task::Waker>,
    /// The last sign of life for the heartbeat (engine.io 3: any packet;
    /// engine.io 4: a pong).
    pub(crate) last_heard: Instant,
    /// A binary packet waiting for its attachments.
    pub(crate) partial: Option<Box<Partial>>,
    /// Acks the server asked for, by id (boxed: most connections never
    /// have one, and every connection carries this state; an empty map
    /// inline is 48 bytes, the box 8).
    #[allow(clippy::box_collection)]
    pub(crate) acks: Option<Box<HashMap<u64, oneshot::Sender<AckReply>>>>,
    /// A websocket that wants to take over this polling session.
    pub(crate) upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// [`Conn::finish`] ran.
    pub(crate) finished: bool,
    /// A disconnect packet held back from a long-poll answer waits until
    /// then (see `polling::poll`).
    pub(crate) disconnect_after: Option<Instant>,
}

/// A binary event or ack whose attachments are still arriving.
pub(crate) struct Partial {
    kind: Kind,
    id: Option<u64>,
    data: String,
    expected: usize,
    attachments: Vec<Bytes>,
    bytes: usize,
}

impl Conn {
    pub(crate) fn new(
        server: &Arc<Inner>,
        eio: EngineVersion,
        b64: bool,
        transport: Transport,
        peer: Option<SocketAddr>,
    ) -> Arc<Conn> {
        Arc::new(Conn {
            id: Id::random(),
            sid: Id::random(),
            eio,
            b64,
            peer,
            outbox: Outbox::new(server.config.queue_max_bytes),
            gate: Arc::new(ReadGate::default()),
            server: Arc::downgrade(server),
            state: Mutex::new(State {
                transport,
                connected: false,
                closing: None,
                rooms: Vec::new(),
                upgrading: false,
                polling: false,
                posting: false,
                post_waker: None,
                last_heard: Instant::now(),
                partial: None,
                acks: None,
                upgrade: None,
                finished: false,
                disconnect_after: None,
            }),
            handler: OnceLock::new(),
            data: OnceLock::new(),
            next_ack: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
            created: Instant::now(),
        })
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn sio(&self) -> SocketVersion {
        match self.eio {
            EngineVersion::V3 => SocketVersion::V4,
            EngineVersion::V4 => SocketVersion::V5,
        }
    }

    pub(crate) fn closing(&self) -> Option<DisconnectReason> {
        self.state().closing
    }

    /// Starts closing for `reason` (the first reason wins): nothing more is
    /// queued, and the connection's task finishes it.
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

    /// Queues a frame; a full queue closes the connection as too slow.
    pub(crate) fn push(self: &Arc<Self>, frame: Frame) -> Result<(), QueueError> {
        match self.outbox.push(frame) {
            Err(QueueError::Full) => {
                tracing::debug!(sid = %self.id, "outbound queue full, disconnecting a slow client");
                self.close(DisconnectReason::SlowClient);
                Err(QueueError::Full)
            }
            other => other,
        }
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

    /// Right after the handshake: a socket.io 2.x client is connected to
    /// the namespace at once, as socket.io 2.x servers did.
    pub(crate) fn opened(self: &Arc<Self>) {
        if self.sio() == SocketVersion::V4 {
            self.connect();
        }
    }

    /// Connects the socket to the namespace: the handler first, then the
    /// client is told.
    fn connect(self: &Arc<Self>) {
        {
            let mut state = self.state();
            if state.connected || state.closing.is_some() {
                return;
            }
            state.connected = true;
        }
        let Some(server) = self.server.upgrade() else {
            return;
        };
        let socket = Socket(self.clone());
        let handler = server.service.connect(&socket);
        let _ = self.handler.set(handler);
        let reply = match self.sio() {
            SocketVersion::V4 => "40".to_owned(),
            SocketVersion::V5 => format!("40{{\"sid\":\"{}\"}}", self.id),
        };
        let _ = self.push(Frame::Text(Bytes::from(reply)));
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
                self.on_message(text);
            }
            Packet::Binary(data) => {
                if self.eio == EngineVersion::V3 {
                    self.heard();
                }
                self.on_attachment(data);
            }
            Packet::Close => self.close(DisconnectReason::ClientClose),
            Packet::Open(_) | Packet::Upgrade | Packet::Noop => {}
        }
    }

    fn heard(&self) {
        self.state().last_heard = Instant::now();
    }

    /// A packet or frame that does not decode: ignored and counted.
    pub(crate) fn malformed(&self, why: &dyn std::fmt::Display) {
        tracing::debug!(sid = %self.id, error = %why, "malformed packet ignored");
        if let Some(server) = self.server.upgrade() {
            server.stats.malformed();
        }
    }

    fn on_message(self: &Arc<Self>, text: Bytes) {
        let Ok(text) = std::str::from_utf8(&text) else {
            return self.malformed(&"not UTF-8");
        };
        if self.state().partial.take().is_some() {
            self.malformed(&"a binary packet's attachments were cut short");
        }
        let packet = match sio::decode(text) {
            Ok(p) => p,
            Err(e) => return self.malformed(&e),
        };
        if packet.nsp != "/" {
            if packet.kind == Kind::Connect {
                self.refuse_namespace(packet.nsp);
            }
            return;
        }
        match packet.kind {
            Kind::Connect => self.connect(),
            Kind::Disconnect => self.close(DisconnectReason::ClientDisconnect),
            Kind::Event | Kind::Ack => {
                self.deliver(packet.kind, packet.id, packet.data, Vec::new())
            }
            Kind::BinaryEvent | Kind::BinaryAck => {
                let partial = Partial {
                    kind: if packet.kind == Kind::BinaryEvent {
                        Kind::Event
                    } else {
                        Kind::Ack
                    },
                    id: packet.id,
                    data: packet.data.to_owned(),
                    expected: packet.attachments,
                    attachments: Vec::new(),
                    bytes: 0,
                };
                if partial.expected == 0 {
                    return self.deliver(partial.kind, partial.id, &partial.data, Vec::new());
                }
                self.state().partial = Some(Box::new(partial));
            }
            Kind::ConnectError => self.malformed(&"an error packet from a client"),
        }
    }

    fn on_attachment(self: &Arc<Self>, data: Bytes) {
        let max = self
            .server
            .upgrade()
            .map_or(0, |s| s.config.max_message_bytes);
        let done = {
            let mut state = self.state();
            let Some(partial) = state.partial.as_mut() else {
                drop(state);
                return self.malformed(&"a binary message without a packet");
            };
            partial.bytes += crate::held::entry::<Bytes>(&[data.len()]);
            if partial.bytes > max {
                state.partial = None;
                drop(state);
                return self.malformed(&"binary attachments over the message limit");
            }
            partial.attachments.push(data);
            if partial.attachments.len() == partial.expected {
                state.partial.take()
            } else {
                None
            }
        };
        if let Some(p) = done {
            self.deliver(p.kind, p.id, &p.data, p.attachments);
        }
    }

    fn deliver(self: &Arc<Self>, kind: Kind, id: Option<u64>, data: &str, attachments: Vec<Bytes>) {
        if !self.state().connected {
            return;
        }
        match kind {
            Kind::Ack => {
                let Some(id) = id else { return };
                let waiter = self.state().acks.as_mut().and_then(|a| a.remove(&id));
                if let Some(tx) = waiter {
                    let _ = tx.send(AckReply {
                        data: data.to_owned(),
                        attachments,
                    });
                }
            }
            _ => {
                let Some(handler) = self.handler.get() else {
                    return;
                };
                let socket = Socket(self.clone());
                let ack = id.map(|id| AckSender {
                    socket: socket.clone(),
                    id,
                });
                handler.event(
                    &socket,
                    Event {
                        data,
                        attachments,
                        ack,
                    },
                );
            }
        }
    }

    fn refuse_namespace(self: &Arc<Self>, nsp: &str) {
        let text = match self.sio() {
            SocketVersion::V4 => format!("44{nsp},\"Invalid namespace\""),
            SocketVersion::V5 => format!("44{nsp},{{\"message\":\"Invalid namespace\"}}"),
        };
        let _ = self.push(Frame::Text(Bytes::from(text)));
    }

    /// Tells the handler the connection ended (once), leaves its rooms and
    /// forgets it.
    pub(crate) fn finish(self: &Arc<Self>) {
        let (reason, post) = {
            let mut state = self.state();
            if std::mem::replace(&mut state.finished, true) {
                return;
            }
            let reason = *state
                .closing
                .get_or_insert(DisconnectReason::TransportClose);
            state.acks = None;
            state.partial = None;
            state.upgrade = None;
            (reason, state.post_waker.take())
        };
        if let Some(post) = post {
            post.wake();
        }
        self.outbox.close();
        if let Some(server) = self.server.upgrade() {
            server.forget(self);
        }
        if let Some(handler) = self.handler.get() {
            handler.disconnect(&Socket(self.clone()), reason);
        }
    }
}

impl Socket {
    /// The socket's id (not the engine.io session id, which a long-polling
    /// client uses as its credential).
    pub fn id(&self) -> &str {
        self.0.id.as_str()
    }

    /// The socket.io protocol the client speaks.
    pub fn protocol(&self) -> SocketVersion {
        self.0.sio()
    }

    /// The transport in use now.
    pub fn transport(&self) -> Transport {
        self.0.state().transport
    }

    /// The client's address, when the listener provided it.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.0.peer
    }

    /// The gate the application closes to pause this client's reads.
    pub fn read_gate(&self) -> &Arc<ReadGate> {
        &self.0.gate
    }

    /// What waits in the outbound queue, counted as its bound counts it.
    pub fn queued_bytes(&self) -> usize {
        self.0.outbox.bytes()
    }

    /// Waits until at most `bytes` wait in the outbound queue (the
    /// transport took the rest), or the connection closed. For a producer
    /// that should not queue its next large emit before the client has
    /// taken the last one.
    pub async fn drained(&self, bytes: usize) {
        std::future::poll_fn(|cx| self.0.outbox.poll_drained(cx, bytes)).await
    }

    /// Whether the connection is closing or closed.
    pub fn is_closed(&self) -> bool {
        self.0.closing().is_some()
    }

    /// Attaches the application's data to the socket (once; `false` if
    /// data was attached before).
    pub fn set_data<T: Any + Send + Sync>(&self, data: T) -> bool {
        self.0.data.set(Box::new(data)).is_ok()
    }

    /// The application's data, if it is a `T`.
    pub fn data<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0.data.get()?.downcast_ref()
    }

    /// Sends event `name` with one argument.
    pub fn emit<T: Serialize + ?Sized>(&self, name: &str, data: &T) -> Result<(), SendError> {
        self.send_frame(event_frame(name, data))
    }

    /// Sends event `name` with one argument and waits for the client's ack.
    pub async fn emit_with_ack<T: Serialize + ?Sized>(
        &self,
        name: &str,
        data: &T,
    ) -> Result<AckReply, SendError> {
        let id = self.0.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.0
            .state()
            .acks
            .get_or_insert_with(Box::default)
            .insert(id, tx);
        if let Err(e) = self.send_frame(event_frame_with(name, data, Some(id))) {
            if let Some(acks) = self.0.state().acks.as_mut() {
                acks.remove(&id);
            }
            return Err(e);
        }
        rx.await.map_err(|_| QueueError::Closed)
    }

    /// Sends a frame built once for many connections ([`event_frame`]).
    pub fn send_frame(&self, frame: Frame) -> Result<(), SendError> {
        self.0.push(frame)
    }

    /// Joins `room` (on this server).
    pub fn join(&self, room: &str) {
        if let Some(server) = self.0.server.upgrade() {
            server.join(&self.0, room);
        }
    }

    /// Leaves `room`.
    pub fn leave(&self, room: &str) {
        if let Some(server) = self.0.server.upgrade() {
            server.leave(&self.0, room);
        }
    }

    /// Disconnects the client from the server's side: it is sent a
    /// socket.io disconnect packet, then its transport is closed.
    pub fn disconnect(&self) {
        let _ = self.0.push(Frame::Text(Bytes::from_static(b"41")));
        self.0.close(DisconnectReason::ServerDisconnect);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_frames_are_encoded_once_as_socket_io_events() {
        let f = event_frame("msg", &serde_json::json!({"a": 1}));
        assert_eq!(f, Frame::Text(Bytes::from_static(br#"42["msg",{"a":1}]"#)));
        let f = event_frame_with("x\"y", &1, Some(7));
        assert_eq!(f, Frame::Text(Bytes::from_static(br#"427["x\"y",1]"#)));
    }
}
