//! socket.io above an engine.io session: one socket per namespace the
//! client connected to, the handle the application holds ([`Socket`]),
//! and what the layer does with each message the client sends.

use std::any::Any;
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::oneshot;

use super::namespace::Nsp;
use super::packet::{self as sio, Kind, SocketVersion};
use crate::engine::session::Session;
use crate::engine::{DisconnectReason, EngineVersion, Frame, Transport};
use crate::gate::ReadGate;
use crate::id::Id;
use crate::inner::lock;
use crate::outbox::QueueError;

/// Why a packet was not sent.
pub type SendError = QueueError;

/// An event from the client, handed to [`Handler::event`] in the order the
/// client sent it. Its data was checked: a JSON array whose first element
/// is the event's name.
#[derive(Debug)]
#[non_exhaustive]
pub struct Event<'a> {
    /// The packet's data: the JSON array `["name", arg, ...]` as sent
    /// (binary attachments stand in it as `{"_placeholder":true,"num":N}`).
    pub data: &'a str,
    /// The event's name.
    pub name: Cow<'a, str>,
    /// The arguments' JSON text as sent, comma-separated, without the
    /// array's brackets (`1,"2",{}`; empty when there are none): what
    /// [`Socket::emit_raw`] and [`AckSender::send_raw`] take.
    pub args: &'a str,
    /// The binary attachments, in order (empty for most events).
    pub attachments: Vec<Bytes>,
    /// The reply the client asked for, if it did.
    pub ack: Option<AckSender>,
}

/// What the application does with a socket's events.
pub trait Handler: Send + Sync + 'static {
    /// An event from the client. Called synchronously by the connection's
    /// reader, in arrival order; a slow handler delays that connection's
    /// reads only.
    fn event(&self, socket: &Socket, event: Event<'_>);

    /// The socket ended (called once).
    fn disconnect(&self, socket: &Socket, reason: DisconnectReason);
}

/// The application's answer to a client's connect to a namespace.
pub enum Connect {
    /// Connected: the client is told at once, before any packet the
    /// handler's side sends.
    Accept(Box<dyn Handler>),
    /// The handler is in place, and the application answers later with
    /// [`Socket::accept`] or [`Socket::refuse`] (e.g. after checking the
    /// connect's `auth` payload). Packets sent before the answer wait
    /// for it. A session none of whose connects was answered within
    /// `connect_timeout` is closed.
    Defer(Box<dyn Handler>),
    /// Refused now with this error.
    Refuse(ConnectError),
}

/// A refused connect, as the client's `connect_error` gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    /// The error's message.
    pub message: String,
    /// Details for the client (socket.io 3+/4 clients get them as the
    /// error's `data`).
    pub data: Option<serde_json::Value>,
}

/// The application's side of a namespace: makes the handler of each socket
/// that connects to it.
pub trait Connector: Send + Sync + 'static {
    /// A client connects to the namespace, with the `auth` payload a
    /// socket.io 3+/4 client sent (a JSON object's text; `None` when it
    /// sent none, and always for socket.io 2.x clients). Called before the
    /// client is told anything: no event can arrive before the handler is
    /// in place.
    fn connect(&self, socket: &Socket, auth: Option<&str>) -> Connect;
}

/// A client's answer to an event the server sent with an ack.
#[derive(Debug)]
pub struct AckReply {
    /// The ack's arguments: a JSON array as sent.
    pub data: String,
    /// The binary attachments, in order.
    pub attachments: Vec<Bytes>,
}

/// A handle to one socket (a client on one namespace). Cheap to clone.
#[derive(Clone)]
pub struct Socket(pub(crate) Arc<Conn>);

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.0.id)
            .field("nsp", &self.0.nsp.name)
            .finish()
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
    /// The ack id the client chose.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends `data` as the ack's one argument.
    pub fn send<T: Serialize + ?Sized>(self, data: &T) -> Result<(), SendError> {
        let frame = encoded(|text| {
            text.extend_from_slice(b"43");
            write_nsp(text, &self.socket.0.nsp.name);
            write_id(text, self.id);
            text.push(b'[');
            serde_json::to_writer(&mut *text, data).map_err(|_| QueueError::Closed)?;
            text.push(b']');
            Ok(())
        })?;
        self.socket.0.push(frame)
    }

    /// Sends the ack with any number of arguments: `args` is their JSON
    /// text, comma-separated (as [`Event::args`]), where binary
    /// `attachments` stand as [`placeholder`]s.
    pub fn send_raw(self, args: &str, attachments: Vec<Bytes>) -> Result<(), SendError> {
        let frames = packet_frames(
            Kind::Ack,
            &self.socket.0.nsp.name,
            Some(self.id),
            None,
            args,
            attachments,
        );
        self.socket.0.push_all(frames)
    }
}

/// The JSON that stands for binary attachment `num` in a packet's data.
pub fn placeholder(num: usize) -> serde_json::Value {
    serde_json::json!({"_placeholder": true, "num": num})
}

/// Builds the frame of event `name` with one argument on the default
/// namespace: encode it once and send it to many with
/// [`Socket::send_frame`] or a room broadcast.
pub fn event_frame<T: Serialize + ?Sized>(name: &str, data: &T) -> Frame {
    event_frame_in("/", name, data, None)
}

pub(crate) fn event_frame_in<T: Serialize + ?Sized>(
    nsp: &str,
    name: &str,
    data: &T,
    ack: Option<u64>,
) -> Frame {
    let built = encoded(|text| {
        text.extend_from_slice(b"42");
        write_nsp(text, nsp);
        if let Some(id) = ack {
            write_id(text, id);
        }
        text.push(b'[');
        // Serializing a &str or a caller's Serialize into a Vec only fails for
        // maps with non-string keys; such a value becomes null.
        if serde_json::to_writer(&mut *text, name).is_err() {
            text.extend_from_slice(b"\"\"");
        }
        text.push(b',');
        let mark = text.len();
        if serde_json::to_writer(&mut *text, data).is_err() {
            text.truncate(mark);
            text.extend_from_slice(b"null");
        }
        text.push(b']');
        Ok::<(), std::convert::Infallible>(())
    });
    match built {
        Ok(frame) => frame,
        Err(never) => match never {},
    }
}

/// Scratch space in which frames of unknown length are encoded; larger
/// than this, it is given back after use.
const SCRATCH_KEPT: usize = 64 * 1024;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A text frame written by `write`, in a buffer of exactly its length:
/// encoded in this thread's scratch space and copied once, instead of in
/// a buffer that grows (and is reallocated) as the encoder writes, which
/// also leaves the queued frame holding spare room.
fn encoded<E>(write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<Frame, E> {
    let with_scratch = |text: &mut Vec<u8>| {
        text.clear();
        let result = write(text).map(|()| Frame::Text(Bytes::copy_from_slice(text)));
        if text.capacity() > SCRATCH_KEPT {
            *text = Vec::new();
        }
        result
    };
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut text) => with_scratch(&mut text),
        // Only if a serializer emitted a frame while being encoded.
        Err(_) => with_scratch(&mut Vec::new()),
    })
}

/// The frames of an event or ack with `args` (JSON text, comma-separated)
/// and binary attachments.
fn packet_frames(
    kind: Kind,
    nsp: &str,
    id: Option<u64>,
    name: Option<&str>,
    args: &str,
    attachments: Vec<Bytes>,
) -> Vec<Frame> {
    use std::io::Write as _;
    let mut text = Vec::with_capacity(16 + nsp.len() + args.len());
    text.push(b'4');
    let binary = !attachments.is_empty();
    let kind = match (kind, binary) {
        (Kind::Event, true) => Kind::BinaryEvent,
        (Kind::Ack, true) => Kind::BinaryAck,
        (k, _) => k,
    };
    text.push(b'0' + kind as u8);
    if binary {
        // Writing to a Vec cannot fail.
        let _ = write!(text, "{}-", attachments.len());
    }
    write_nsp(&mut text, nsp);
    if let Some(id) = id {
        write_id(&mut text, id);
    }
    text.push(b'[');
    if let Some(name) = name {
        if serde_json::to_writer(&mut text, name).is_err() {
            text.extend_from_slice(b"\"\"");
        }
        if !args.is_empty() {
            text.push(b',');
        }
    }
    text.extend_from_slice(args.as_bytes());
    text.push(b']');
    let mut frames = Vec::with_capacity(1 + attachments.len());
    frames.push(Frame::Text(Bytes::from(text)));
    frames.extend(attachments.into_iter().map(Frame::Binary));
    frames
}

/// The namespace and its comma, unless it is the default one.
fn write_nsp(text: &mut Vec<u8>, nsp: &str) {
    if nsp != "/" {
        text.extend_from_slice(nsp.as_bytes());
        text.push(b',');
    }
}

/// Appends an ack id's decimal digits (no allocation: one ack per msg).
fn write_id(text: &mut Vec<u8>, id: u64) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = write!(text, "{id}");
}

/// A socket: a client on one namespace, over its engine.io session.
pub(crate) struct Conn {
    pub(crate) id: Id,
    pub(crate) session: Arc<Session>,
    pub(crate) nsp: Arc<Nsp>,
    /// The client was told it is connected: packets go straight out.
    answered: AtomicBool,
    state: Mutex<SockState>,
    handler: OnceLock<Box<dyn Handler>>,
    data: OnceLock<Box<dyn Any + Send + Sync>>,
    next_ack: AtomicU64,
}

/// The mutable part of a socket.
pub(crate) struct SockState {
    /// It left its namespace (or its session ended).
    pub(crate) gone: bool,
    /// The rooms it is in.
    pub(crate) rooms: Vec<Box<str>>,
    /// Acks the server asked for, by id (boxed: most sockets never have
    /// one, and every socket carries this state).
    #[allow(clippy::box_collection)]
    acks: Option<Box<HashMap<u64, oneshot::Sender<AckReply>>>>,
    /// Packets sent before the connect was answered, sent right after it.
    early: Vec<Vec<Frame>>,
}

/// A binary event or ack whose attachments are still arriving.
pub(crate) struct Partial {
    socket: Arc<Conn>,
    kind: Kind,
    id: Option<u64>,
    data: String,
    expected: usize,
    attachments: Vec<Bytes>,
    bytes: usize,
}

impl Conn {
    fn new(session: &Arc<Session>, nsp: &Arc<Nsp>) -> Arc<Conn> {
        Arc::new(Conn {
            id: Id::random(),
            session: session.clone(),
            nsp: nsp.clone(),
            answered: AtomicBool::new(false),
            state: Mutex::new(SockState {
                gone: false,
                rooms: Vec::new(),
                acks: None,
                early: Vec::new(),
            }),
            handler: OnceLock::new(),
            data: OnceLock::new(),
            next_ack: AtomicU64::new(0),
        })
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, SockState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn sio(&self) -> SocketVersion {
        match self.session.eio {
            EngineVersion::V3 => SocketVersion::V4,
            EngineVersion::V4 => SocketVersion::V5,
        }
    }

    /// The client was told it is connected.
    pub(crate) fn is_answered(&self) -> bool {
        self.answered.load(Ordering::Acquire)
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.answered.load(Ordering::Acquire) && !self.state().gone
    }

    /// Queues a frame: on the session once the connect was answered,
    /// until then after the answer.
    pub(crate) fn push(&self, frame: Frame) -> Result<(), QueueError> {
        if self.answered.load(Ordering::Acquire) {
            return self.session.push(frame);
        }
        self.push_early(vec![frame])
    }

    /// Queues frames that stay together, as [`Conn::push`].
    pub(crate) fn push_all(&self, frames: Vec<Frame>) -> Result<(), QueueError> {
        if self.answered.load(Ordering::Acquire) {
            return self.session.push_all(frames);
        }
        self.push_early(frames)
    }

    fn push_early(&self, frames: Vec<Frame>) -> Result<(), QueueError> {
        let mut state = self.state();
        if self.answered.load(Ordering::Acquire) {
            drop(state);
            return self.session.push_all(frames);
        }
        if state.gone || self.session.closing().is_some() {
            return Err(QueueError::Closed);
        }
        let held: usize = state.early.iter().flatten().map(Frame::len).sum();
        let limit = self
            .session
            .server
            .upgrade()
            .map_or(0, |s| s.config.queue_max_bytes);
        if held >= limit {
            drop(state);
            self.session.close(DisconnectReason::SlowClient);
            return Err(QueueError::Full);
        }
        state.early.push(frames);
        Ok(())
    }

    /// Tells the client it is connected, then sends what waited for that.
    fn answer(&self) {
        let mut state = self.state();
        if state.gone || self.answered.load(Ordering::Acquire) {
            return;
        }
        let reply = match self.sio() {
            SocketVersion::V4 if &*self.nsp.name == "/" => "40".to_owned(),
            SocketVersion::V4 => format!("40{},", self.nsp.name),
            SocketVersion::V5 if &*self.nsp.name == "/" => format!("40{{\"sid\":\"{}\"}}", self.id),
            SocketVersion::V5 => format!("40{},{{\"sid\":\"{}\"}}", self.nsp.name, self.id),
        };
        let mut frames = vec![Frame::Text(Bytes::from(reply))];
        for early in std::mem::take(&mut state.early) {
            frames.extend(early);
        }
        let _ = self.session.push_all(frames);
        self.answered.store(true, Ordering::Release);
    }

    /// Refuses the connect: the client gets a connect error, the socket
    /// ends.
    fn refuse(self: &Arc<Self>, error: &ConnectError) {
        if self.answered.load(Ordering::Acquire) {
            return;
        }
        let _ = self
            .session
            .push(connect_error(self.sio(), &self.nsp.name, error));
        self.leave(DisconnectReason::ConnectRefused);
    }

    /// The socket leaves its namespace (its session goes on).
    fn leave(self: &Arc<Self>, reason: DisconnectReason) {
        {
            let mut state = self.session.state();
            if state.main.as_ref().is_some_and(|m| Arc::ptr_eq(m, self)) {
                state.main = None;
            } else if let Some(others) = state.others.as_mut() {
                others.retain(|o| !Arc::ptr_eq(o, self));
            }
        }
        self.session.wake.notify_one();
        self.finish(reason);
    }

    /// Ends the socket (once): it leaves its rooms and namespace, and the
    /// handler is told.
    pub(crate) fn finish(self: &Arc<Self>, reason: DisconnectReason) {
        let rooms = {
            let mut state = self.state();
            if std::mem::replace(&mut state.gone, true) {
                return;
            }
            state.acks = None;
            state.early = Vec::new();
            std::mem::take(&mut state.rooms)
        };
        for room in rooms {
            self.nsp.remove_member(self, &room);
        }
        lock(&self.nsp.sockets).remove(&self.id);
        if let Some(handler) = self.handler.get() {
            handler.disconnect(&Socket(self.clone()), reason);
        }
    }

    /// An ack from the client to an event the server sent.
    fn ack(&self, id: Option<u64>, data: &str, attachments: Vec<Bytes>) {
        let Some(id) = id else { return };
        let waiter = self.state().acks.as_mut().and_then(|a| a.remove(&id));
        if let Some(tx) = waiter {
            let _ = tx.send(AckReply {
                data: data.to_owned(),
                attachments,
            });
        }
    }

    /// An event from the client, its data checked and split.
    fn event(
        self: &Arc<Self>,
        id: Option<u64>,
        data: &str,
        (name, args): (Cow<'_, str>, &str),
        attachments: Vec<Bytes>,
    ) {
        let Some(handler) = self.handler.get() else {
            return;
        };
        if self.state().gone {
            return;
        }
        let socket = Socket(self.clone());
        let ack = id.map(|id| AckSender {
            socket: socket.clone(),
            id,
        });
        handler.event(
            &socket,
            Event {
                data,
                name,
                args,
                attachments,
                ack,
            },
        );
    }
}

/// A connect error packet in the client's protocol.
fn connect_error(sio: SocketVersion, nsp: &str, error: &ConnectError) -> Frame {
    let mut text = b"44".to_vec();
    write_nsp(&mut text, nsp);
    let body = match sio {
        SocketVersion::V4 => serde_json::to_vec(&error.message),
        SocketVersion::V5 => {
            #[derive(Serialize)]
            struct Error<'a> {
                message: &'a str,
                #[serde(skip_serializing_if = "Option::is_none")]
                data: Option<&'a serde_json::Value>,
            }
            serde_json::to_vec(&Error {
                message: &error.message,
                data: error.data.as_ref(),
            })
        }
    };
    text.extend_from_slice(&body.unwrap_or_default());
    Frame::Text(Bytes::from(text))
}

/// A client connects `session` to namespace `name` with `auth`.
pub(crate) fn connect(session: &Arc<Session>, name: &str, auth: Option<&str>) {
    let Some(server) = session.server.upgrade() else {
        return;
    };
    let sio = match session.eio {
        EngineVersion::V3 => SocketVersion::V4,
        EngineVersion::V4 => SocketVersion::V5,
    };
    let Some(nsp) = server.namespace(name).cloned() else {
        let error = ConnectError {
            message: "Invalid namespace".to_owned(),
            data: None,
        };
        let _ = session.push(connect_error(sio, name, &error));
        return;
    };
    drop(server);
    let conn = {
        let mut state = session.state();
        if state.closing.is_some() || state.socket(name).is_some() {
            return;
        }
        let conn = Conn::new(session, &nsp);
        if name == "/" {
            state.main = Some(conn.clone());
        } else {
            state
                .others
                .get_or_insert_with(Box::default)
                .push(conn.clone());
        }
        conn
    };
    lock(&nsp.sockets).insert(conn.id, conn.clone());
    let socket = Socket(conn.clone());
    match nsp.connector.connect(&socket, auth) {
        Connect::Accept(handler) => {
            let _ = conn.handler.set(handler);
            conn.answer();
        }
        Connect::Defer(handler) => {
            let _ = conn.handler.set(handler);
        }
        Connect::Refuse(error) => conn.refuse(&error),
    }
}

/// Handles a socket.io packet from the client.
pub(crate) fn on_message(session: &Arc<Session>, text: Bytes) {
    let Ok(text) = std::str::from_utf8(&text) else {
        return session.malformed(&"not UTF-8");
    };
    if session.state().partial.take().is_some() {
        return session.malformed(&"a binary packet's attachments were cut short");
    }
    let packet = match sio::decode(text) {
        Ok(p) => p,
        Err(e) => return session.malformed(&e),
    };
    // Protocol 4 clients send a namespace's query after it (`/admin?x=1`).
    let nsp = packet.nsp.split('?').next().unwrap_or("/");
    if packet.kind == Kind::Connect {
        let auth = match session.eio {
            EngineVersion::V3 => None,
            EngineVersion::V4 => match sio::connect_payload(packet.data) {
                Ok(auth) => auth,
                Err(e) => return session.malformed(&e),
            },
        };
        return connect(session, nsp, auth);
    }
    if packet.kind == Kind::ConnectError {
        return session.malformed(&"an error packet from a client");
    }
    let socket = session.state().socket(nsp).cloned();
    // Packets for a namespace the client is not connected to are ignored,
    // as the reference server ignores them.
    let Some(socket) = socket else { return };
    match packet.kind {
        Kind::Disconnect => socket.leave(DisconnectReason::ClientDisconnect),
        Kind::Event => match sio::split_event(packet.data) {
            Ok(split) => socket.event(packet.id, packet.data, split, Vec::new()),
            Err(e) => session.malformed(&e),
        },
        Kind::Ack => match sio::ack_args(packet.data) {
            Ok(_) => socket.ack(packet.id, packet.data, Vec::new()),
            Err(e) => session.malformed(&e),
        },
        Kind::BinaryEvent | Kind::BinaryAck => {
            let kind = if packet.kind == Kind::BinaryEvent {
                Kind::Event
            } else {
                Kind::Ack
            };
            let checked = match kind {
                Kind::Event => sio::split_event(packet.data).map(|_| ()),
                _ => sio::ack_args(packet.data).map(|_| ()),
            };
            if let Err(e) = checked {
                return session.malformed(&e);
            }
            let partial = Partial {
                socket,
                kind,
                id: packet.id,
                data: packet.data.to_owned(),
                expected: packet.attachments,
                attachments: Vec::new(),
                bytes: 0,
            };
            if partial.expected == 0 {
                return partial.deliver();
            }
            session.state().partial = Some(Box::new(partial));
        }
        Kind::Connect | Kind::ConnectError => {}
    }
}

impl Partial {
    /// Hands on the packet, its attachments complete.
    fn deliver(self) {
        match self.kind {
            Kind::Ack => self.socket.ack(self.id, &self.data, self.attachments),
            _ => {
                // Checked when the packet came.
                if let Ok(split) = sio::split_event(&self.data) {
                    self.socket
                        .event(self.id, &self.data, split, self.attachments);
                }
            }
        }
    }
}

/// A binary message: the next attachment of the waiting binary packet.
pub(crate) fn on_attachment(session: &Arc<Session>, data: Bytes) {
    let max = session
        .server
        .upgrade()
        .map_or(0, |s| s.config.max_message_bytes);
    let done = {
        let mut state = session.state();
        let Some(partial) = state.partial.as_mut() else {
            drop(state);
            return session.malformed(&"a binary message without a packet");
        };
        partial.bytes += crate::held::entry::<Bytes>(&[data.len()]);
        if partial.bytes > max {
            state.partial = None;
            drop(state);
            return session.malformed(&"binary attachments over the message limit");
        }
        partial.attachments.push(data);
        if partial.attachments.len() == partial.expected {
            state.partial.take()
        } else {
            None
        }
    };
    if let Some(p) = done {
        p.deliver();
    }
}

impl Socket {
    /// The socket's id (not the engine.io session id, which a long-polling
    /// client uses as its credential).
    pub fn id(&self) -> &str {
        self.0.id.as_str()
    }

    /// The namespace the socket is on.
    pub fn namespace(&self) -> &str {
        &self.0.nsp.name
    }

    /// The socket.io protocol the client speaks.
    pub fn protocol(&self) -> SocketVersion {
        self.0.sio()
    }

    /// The transport in use now.
    pub fn transport(&self) -> Transport {
        self.0.session.state().transport
    }

    /// The client's address, when the listener provided it.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.0.session.peer
    }

    /// The gate the application closes to pause this client's reads (all
    /// of its session's namespaces).
    pub fn read_gate(&self) -> &Arc<ReadGate> {
        &self.0.session.gate
    }

    /// What waits in the session's outbound queue, counted as its bound counts it.
    pub fn queued_bytes(&self) -> usize {
        self.0.session.outbox.bytes()
    }

    /// Waits until at most `bytes` wait in the outbound queue (the
    /// transport took the rest), or the connection closed. For a producer
    /// that should not queue its next large emit before the client has
    /// taken the last one.
    pub async fn drained(&self, bytes: usize) {
        std::future::poll_fn(|cx| self.0.session.outbox.poll_drained(cx, bytes)).await
    }

    /// Whether the socket is closing or closed.
    pub fn is_closed(&self) -> bool {
        self.0.session.closing().is_some() || self.0.state().gone
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

    /// Answers a connect the connector deferred ([`Connect::Defer`]): the
    /// client is told it is connected, then gets what was sent meanwhile.
    pub fn accept(&self) {
        self.0.answer();
    }

    /// Refuses a connect the connector deferred: the client gets a
    /// connect error with `error`, and the socket ends
    /// ([`DisconnectReason::ConnectRefused`]).
    pub fn refuse(&self, error: &ConnectError) {
        self.0.refuse(error);
    }

    /// Sends event `name` with one argument.
    pub fn emit<T: Serialize + ?Sized>(&self, name: &str, data: &T) -> Result<(), SendError> {
        self.0
            .push(event_frame_in(&self.0.nsp.name, name, data, None))
    }

    /// Sends event `name` with any number of arguments: `args` is their
    /// JSON text, comma-separated (as [`Event::args`]), where binary
    /// `attachments` stand as [`placeholder`]s. The text is sent as given.
    pub fn emit_raw(
        &self,
        name: &str,
        args: &str,
        attachments: Vec<Bytes>,
    ) -> Result<(), SendError> {
        let frames = packet_frames(
            Kind::Event,
            &self.0.nsp.name,
            None,
            Some(name),
            args,
            attachments,
        );
        self.0.push_all(frames)
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
        if let Err(e) = self
            .0
            .push(event_frame_in(&self.0.nsp.name, name, data, Some(id)))
        {
            if let Some(acks) = self.0.state().acks.as_mut() {
                acks.remove(&id);
            }
            return Err(e);
        }
        rx.await.map_err(|_| QueueError::Closed)
    }

    /// Sends a frame built once for many sockets of this namespace
    /// ([`event_frame`], [`crate::Namespace::event_frame`]).
    pub fn send_frame(&self, frame: Frame) -> Result<(), SendError> {
        self.0.push(frame)
    }

    /// Joins `room` (of this namespace, on this server).
    pub fn join(&self, room: &str) {
        self.0.nsp.join(&self.0, room);
    }

    /// Leaves `room`.
    pub fn leave(&self, room: &str) {
        self.0.nsp.leave(&self.0, room);
    }

    /// Disconnects the client from the server's side: it is sent a
    /// socket.io disconnect packet, then its connection is closed.
    pub fn disconnect(&self) {
        let mut text = b"41".to_vec();
        write_nsp(&mut text, &self.0.nsp.name);
        let _ = self.0.push(Frame::Text(Bytes::from(text)));
        self.0.session.close(DisconnectReason::ServerDisconnect);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_frames_are_encoded_once_as_socket_io_events() {
        let f = event_frame("msg", &serde_json::json!({"a": 1}));
        assert_eq!(f, Frame::Text(Bytes::from_static(br#"42["msg",{"a":1}]"#)));
        let f = event_frame_in("/", "x\"y", &1, Some(7));
        assert_eq!(f, Frame::Text(Bytes::from_static(br#"427["x\"y",1]"#)));
        let f = event_frame_in("/chat", "m", &1, Some(7));
        assert_eq!(f, Frame::Text(Bytes::from_static(br#"42/chat,7["m",1]"#)));
    }

    #[test]
    fn packets_with_several_arguments_and_attachments() {
        let frames = packet_frames(
            Kind::Event,
            "/",
            None,
            Some("m"),
            r#"1,{"_placeholder":true,"num":0}"#,
            vec![Bytes::from_static(b"\x01")],
        );
        assert_eq!(
            frames,
            vec![
                Frame::Text(Bytes::from_static(
                    br#"451-["m",1,{"_placeholder":true,"num":0}]"#
                )),
                Frame::Binary(Bytes::from_static(b"\x01")),
            ]
        );
        let frames = packet_frames(Kind::Ack, "/c", Some(3), None, "", Vec::new());
        assert_eq!(frames, vec![Frame::Text(Bytes::from_static(b"43/c,3[]"))]);
    }
}
