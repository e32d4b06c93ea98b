//! A connection's session: its protocol state and the task that runs its
//! events one at a time, with the authentication and join deadlines.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::Value;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::SocketRef;
use socketioxide::handler::{ConnectHandler, DisconnectHandler};
use socketioxide::socket::{DisconnectReason, Socket};
use tokio::time::{sleep_until, Instant};

use axum::extract::ConnectInfo;
use socketioxide::TransportType;

use super::direct::DirectRelay;
use super::handler::Enqueue;
use super::inbox::{Control, Inbound, Inbox, InboxReceiver, Mailbox, Next};
use super::pending::PendingWrites;
use super::read_ahead::ReadAhead;
use super::AppState;
use crate::cluster::PresenceSeq;
use crate::protocol::{ack_status, event, reason, StatusReply, Uid};
use crate::valve::{Peer, ReadValve};

/// Where a session is in the protocol.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Phase {
    /// Connected, not yet authenticated.
    Connected,
    /// Authenticated, not in a room.
    Authenticated,
    /// In a room.
    Joined(Joined),
}

/// The room a session is in.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Joined {
    /// The room's string form.
    pub room: String,
    /// The socket.io room of its members on this node ([`super::bus::members_room`]).
    pub sio_room: String,
    pub dummy: bool,
}

/// What the session loop does after an event.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    /// The session closed its connection; stop without announcing anything more.
    Stop,
}

/// One connection's protocol state.
pub(super) struct Session {
    pub state: Arc<AppState>,
    pub socket: SocketRef,
    /// The connection's inbox (its presence gate, for the room handlers).
    pub inbox: Arc<Inbox>,
    pub sid: String,
    pub phase: Phase,
    pub uid: Option<Uid>,
    /// Rooms whose presence this login took over from the connection it
    /// kicked out, with the number of that connection's removal.
    pub replaced_rooms: Vec<(String, PresenceSeq)>,
    /// Writes submitted and not yet completed (keeps ignore messages in send order).
    pub pending_writes: Arc<PendingWrites>,
    /// When the current phase times out.
    pub deadline: Option<Instant>,
    /// The next sync page, read while the client receives the current one.
    pub read_ahead: Option<Box<ReadAhead>>,
    /// What this session published to let msgs bypass its task.
    direct: Option<Arc<DirectRelay>>,
    /// The client sent an ignore msg: later ones may bypass this task.
    pub sends_ignore: bool,
}

/// The namespace's connect handler: sets up each connection's session and
/// lets it answer once socket.io marked the socket connected.
///
/// Implemented by hand rather than as an async closure with a middleware:
/// socketioxide spawns a task for every call of an async connect handler,
/// and both steps here are synchronous.
#[derive(Clone)]
pub(super) struct OnConnect {
    state: Arc<AppState>,
}

impl OnConnect {
    pub(super) fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

/// Marker for the hand-written handlers' implementations ([`OnConnect`],
/// [`OnDisconnect`]).
pub(super) enum Inline {}

/// What a connect middleware returns (socketioxide's own alias is private).
type MiddlewareFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(), Box<dyn fmt::Display + Send>>> + Send + 'a>>;

impl ConnectHandler<LocalAdapter, Inline> for OnConnect {
    /// Runs after socket.io marked the socket connected: from now on emits
    /// reach the client, so the session may start answering.
    fn call(&self, s: Arc<Socket<LocalAdapter>>, _: Option<socketioxide_core::Value>) {
        if let Some(mailbox) = s.extensions.get::<Mailbox>() {
            mailbox.inbox.signal(Control::Ready);
        }
    }

    /// Runs before the client is told it is connected, so the session's
    /// queue is in place before any event can arrive.
    fn call_middleware<'a>(
        &'a self,
        s: Arc<Socket<LocalAdapter>>,
        _: &'a Option<socketioxide_core::Value>,
    ) -> MiddlewareFuture<'a> {
        start(self.state.clone(), SocketRef::from(s));
        Box::pin(std::future::ready(Ok(())))
    }
}

/// A connection's disconnect handler: tells its session the connection closed.
///
/// By hand for the same reason as [`OnConnect`]: socketioxide spawns a task
/// for every call of an async disconnect handler.
struct OnDisconnect {
    inbox: Arc<Inbox>,
}

impl DisconnectHandler<LocalAdapter, Inline> for OnDisconnect {
    fn call_with_defer(
        &self,
        s: Arc<Socket<LocalAdapter>>,
        reason: DisconnectReason,
        defer: fn(Arc<Socket<LocalAdapter>>),
    ) {
        self.inbox.signal(Control::Closed);
        tracing::info!(sid = %s.id, %reason, "connection closed");
        defer(s);
    }
}

/// Sets up the session of a new connection and starts its task.
fn start(state: Arc<AppState>, socket: SocketRef) {
    let (inbox, receiver) = Inbox::new(state.config.inbound_max_bytes);
    inbox.set_valve(reads_valve(&socket));
    socket.on_fallback(Enqueue::new(inbox.clone(), state.clone()));
    socket.extensions.insert(Mailbox {
        inbox: inbox.clone(),
    });
    socket.on_disconnect(OnDisconnect {
        inbox: inbox.clone(),
    });
    let sid = socket.id.to_string();
    tracing::info!(%sid, protocol = ?socket.protocol(), transport = ?socket.transport_type(), "connected");
    let deadline = Some(Instant::now() + state.config.auth_timeout);
    let session = Session {
        state,
        socket,
        inbox,
        sid,
        phase: Phase::Connected,
        uid: None,
        replaced_rooms: Vec::new(),
        pending_writes: Arc::new(PendingWrites::default()),
        deadline,
        read_ahead: None,
        direct: None,
        sends_ignore: false,
    };
    tokio::spawn(session.run(receiver));
}

/// The valve that pauses this connection's reads: its TCP connection's for
/// a websocket; for long-polling one of its own that the session's POSTs
/// wait on (`http::inbound`), until an upgrade brings the websocket's.
fn reads_valve(socket: &SocketRef) -> Arc<ReadValve> {
    if socket.transport_type() != TransportType::Websocket {
        return ReadValve::new();
    }
    match socket.req_parts().extensions.get::<ConnectInfo<Peer>>() {
        Some(ConnectInfo(peer)) => peer.valve.clone(),
        None => ReadValve::new(),
    }
}

impl Session {
    /// The connection's event loop. Every handler future is boxed: the loop
    /// lives as long as the connection, and inlined handlers would make
    /// every idle connection carry the largest handler's state (kilobytes).
    async fn run(mut self, inbox: InboxReceiver) {
        loop {
            self.publish_direct(&inbox);
            let deadline = self.deadline;
            let flow = tokio::select! {
                biased;
                next = inbox.next() => match next {
                    Next::Event(ev) => Box::pin(self.handle(ev)).await,
                    Next::Kick => Box::pin(self.kicked_out()).await,
                    Next::Closed => {
                        // Events the client sent before it went away still count.
                        while let Some(ev) = inbox.try_event() {
                            if Box::pin(self.handle(ev)).await == Flow::Stop {
                                return;
                            }
                        }
                        Box::pin(self.closed()).await;
                        Flow::Stop
                    }
                },
                _ = wait_until(deadline), if deadline.is_some() => {
                    Box::pin(self.timed_out()).await
                }
            };
            if flow == Flow::Stop {
                break;
            }
        }
    }

    /// Lets the socket's handler relay this session's ignore msgs itself
    /// ([`super::direct::relay_directly`]) while the session is in a room
    /// as a sender and no sync is under way, on a node without Redis; stops
    /// it otherwise. Only once the client sent an ignore msg: an idle
    /// connection does not carry what it would need. The handler only does
    /// so while this task waits with nothing queued, so every msg still
    /// comes after the events before it.
    fn publish_direct(&mut self, inbox: &InboxReceiver) {
        let wanted = match (&self.phase, &self.uid) {
            (Phase::Joined(joined), Some(uid))
                if self.sends_ignore
                    && !joined.dummy
                    && self.read_ahead.is_none()
                    && self.state.bus.is_local_only() =>
            {
                Some((&joined.room, &uid.json))
            }
            _ => None,
        };
        let published = self.direct.as_deref().map(|d| (&d.room, &d.sender));
        if wanted == published {
            return;
        }
        self.direct = wanted.map(|(room, sender)| {
            Arc::new(DirectRelay {
                room: room.clone(),
                sender: sender.clone(),
                pending: self.pending_writes.clone(),
            })
        });
        inbox.publish(self.direct.clone());
    }

    async fn handle(&mut self, ev: Box<Inbound>) -> Flow {
        let Inbound { event, data, ack } = *ev;
        if self.phase == Phase::Connected && event != event::AUTHENTICATE {
            // Before authenticate every other event is ignored.
            let _ = ack.send(&StatusReply::fail(
                ack_status::NOT_JOINED,
                reason::NOT_AUTHENTICATED,
            ));
            return Flow::Continue;
        }
        if event != event::SYNC {
            // Any other event ends a sync in progress.
            self.read_ahead = None;
        }
        match event.as_str() {
            event::AUTHENTICATE => self.authenticate(decoded(data)).await,
            event::JOIN => self.join(decoded(data)).await,
            event::MSG => self.msg(data, ack).await,
            event::SYNC => self.sync(decoded(data), ack).await,
            event::LEAVE => self.leave().await,
            _ => Flow::Continue,
        }
    }

    async fn timed_out(&mut self) -> Flow {
        self.deadline = None;
        match self.phase {
            Phase::Connected => {
                tracing::info!(sid = %self.sid, "authentication timeout");
                self.state.metrics.auth_failed("timeout");
                self.state.metrics.disconnected("auth_timeout");
                let _ = self.socket.emit(
                    event::AUTHENTICATE,
                    &StatusReply::fail(1, reason::AUTH_TIMEOUT),
                );
                self.disconnect();
                Flow::Stop
            }
            Phase::Authenticated => {
                tracing::info!(sid = %self.sid, "join timeout");
                self.state.metrics.disconnected("join_timeout");
                self.closed_by_server().await;
                Flow::Stop
            }
            Phase::Joined(_) => Flow::Continue,
        }
    }

    /// Closes the connection from the server side (a socket.io disconnect packet).
    pub(super) fn disconnect(&self) {
        if let Err(e) = self.socket.clone().disconnect() {
            tracing::debug!(sid = %self.sid, error = %e, "disconnect failed");
        }
    }

    /// Forgets this session and closes its connection from the server side.
    pub(super) async fn closed_by_server(&mut self) {
        self.closed().await;
        self.disconnect();
    }

    /// The connection is gone: announce it to the room (after its last
    /// messages) and forget it.
    async fn closed(&mut self) {
        self.pending_writes.wait_idle().await;
        if let Phase::Joined(joined) = std::mem::replace(&mut self.phase, Phase::Connected) {
            self.leave_room(&joined, event::REMOTE_DISCONNECT).await;
        }
        if let Some(uid) = self.uid.take() {
            if let Err(e) = self
                .state
                .cluster
                .unregister_connection(&uid.key, &self.sid)
                .await
            {
                tracing::warn!(error = %e, "could not unregister connection");
            }
        }
        tracing::debug!(sid = %self.sid, "session ended");
    }
}

/// Waits until `deadline`, or forever without one. The timer is made on the
/// first poll: the session loop builds this future on every turn, and only
/// polls it while a deadline is set.
async fn wait_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// An event's payload decoded, for the events that read more than a few keys.
fn decoded(data: Result<Box<RawValue>, String>) -> Result<Value, String> {
    serde_json::from_str(data?.get()).map_err(|e| e.to_string())
}
