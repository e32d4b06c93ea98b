//! A connection's session: its protocol state and the task that runs its
//! events one at a time, with the authentication and join deadlines.

use std::sync::{Arc, OnceLock, Weak};

use ao_socketio::Socket;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::time::{sleep_until, Instant};

use super::direct::DirectRelay;
use super::handler::Enqueue;
use super::inbox::{Control, Inbound, Inbox, InboxReceiver, Mailbox, Next};
use super::pending::PendingWrites;
use super::read_ahead::ReadAhead;
use crate::app::AppState;
use crate::client_log::Refusals;
use crate::cluster::PresenceSeq;
use crate::logging::Chain;
use crate::protocol::{ack_status, event, reason, SenderStamp, StatusReply, Uid};

/// Where a session is in the protocol, with what it has in that phase: a
/// login once authenticated, and a room once joined.
pub(super) enum Phase {
    /// Connected, not yet authenticated.
    Connected,
    /// Authenticated, not in a room.
    Authenticated(Login),
    /// In a room.
    Joined(Login, Joined),
}

impl Phase {
    /// Who the connection logged in as, once authenticated.
    pub(super) fn login(&self) -> Option<&Login> {
        match self {
            Phase::Connected => None,
            Phase::Authenticated(login) | Phase::Joined(login, _) => Some(login),
        }
    }

    /// The room the connection is in, if any.
    pub(super) fn joined(&self) -> Option<&Joined> {
        match self {
            Phase::Joined(_, joined) => Some(joined),
            _ => None,
        }
    }

    /// Out of its room, if it was in one: the room it left.
    fn take_room(&mut self) -> Option<Joined> {
        match std::mem::replace(self, Phase::Connected) {
            Phase::Joined(login, joined) => {
                *self = Phase::Authenticated(login);
                Some(joined)
            }
            other => {
                *self = other;
                None
            }
        }
    }
}

/// Who a connection logged in as.
pub(super) struct Login {
    pub(super) uid: Uid,
    /// Its msgs' sender stamp.
    pub(super) stamp: SenderStamp,
    /// What the JSON Web Token it logged in with grants; `None` for a
    /// stored-token login (any room, no observer grant).
    pub(super) grant: Option<crate::grants::Grant>,
    /// Rooms whose presence this login took over from the connection it
    /// kicked out, with the number of that connection's removal (used by
    /// the first join).
    pub(super) replaced_rooms: Vec<(String, PresenceSeq)>,
}

/// The room a session is in.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Joined {
    /// The room's string form.
    pub(super) room: String,
    /// The socket.io room of its members on this node ([`super::bus::members_room`]).
    pub(super) sio_room: String,
    /// Joined as an observer: receives, sends nothing, is not announced.
    pub(super) dummy: bool,
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
    pub(super) state: Arc<AppState>,
    pub(super) socket: Socket,
    /// The connection's inbox (its presence gate, for the room handlers).
    pub(super) inbox: Arc<Inbox>,
    pub(super) sid: String,
    /// Where it is in the protocol; changed by [`Session::logged_in`],
    /// [`Session::entered`], [`Session::take_room`] and
    /// [`Session::log_out`].
    pub(super) phase: Phase,
    /// Writes submitted and not yet completed (keeps ignore messages in send order).
    pub(super) pending_writes: Arc<PendingWrites>,
    /// When the current phase times out.
    pub(super) deadline: Option<Instant>,
    /// The next sync page, read while the client receives the current one.
    pub(super) read_ahead: Option<Box<ReadAhead>>,
    /// What this session published to let msgs bypass its task.
    direct: Option<Arc<DirectRelay>>,
    /// The client sent a msg: later ones may bypass this task.
    pub(super) sends_msgs: bool,
    /// The requests refused to this client, for the log.
    pub(super) refusals: Refusals,
}

/// What the socket.io server calls for each new connection: sets up its
/// session. Holds the application state weakly: the state holds the
/// server, and is built around it ([`AppState::new`]).
#[derive(Clone)]
pub(crate) struct Sessions(Weak<AppState>);

impl Sessions {
    /// Sessions on `state`.
    pub(crate) fn new(state: Weak<AppState>) -> Self {
        Self(state)
    }
}

impl ao_socketio::Connector for Sessions {
    fn connect(&self, socket: &Socket, auth: Option<&str>) -> ao_socketio::Connect {
        match self.0.upgrade() {
            Some(state) => {
                let credentials = auth.and_then(connect_credentials);
                let at_connect = credentials.is_some();
                let handler = Box::new(start(state, socket.clone(), credentials));
                if at_connect {
                    // Answered once the credentials were checked.
                    ao_socketio::Connect::Defer(handler)
                } else {
                    ao_socketio::Connect::Accept(handler)
                }
            }
            // Shutting down: the connection is closed with the server.
            None => {
                socket.disconnect();
                ao_socketio::Connect::Accept(Box::new(Closing))
            }
        }
    }
}

/// The credentials of a CONNECT payload: an object with a `uid` (a payload
/// without one connects unauthenticated, for the `authenticate` event).
fn connect_credentials(auth: &str) -> Option<Value> {
    match serde_json::from_str::<Value>(auth) {
        Ok(v) if v.get("uid").is_some() => Some(v),
        _ => None,
    }
}

/// The handler of a connection that arrived while the server shut down.
struct Closing;

impl ao_socketio::Handler for Closing {
    fn event(&self, _: &Socket, _: ao_socketio::Event<'_>) {}
    fn disconnect(&self, _: &Socket, _: ao_socketio::DisconnectReason) {}
}

/// Sets up the session of a new connection, starts its task and returns
/// the handler that feeds it. Runs before the client is told it is
/// connected, so the session's queue is in place before any event.
fn start(state: Arc<AppState>, socket: Socket, credentials: Option<Value>) -> Enqueue {
    let (inbox, receiver) = Inbox::new(state.config().inbound_max_bytes);
    inbox.set_read_gate(socket.read_gate().clone());
    socket.set_data(Mailbox {
        inbox: inbox.clone(),
        uid: OnceLock::new(),
    });
    inbox.signal(Control::Ready);
    let sid = socket.id().to_owned();
    tracing::info!(%sid, protocol = ?socket.protocol(), transport = ?socket.transport(), "connected");
    let deadline = Some(Instant::now() + state.config().auth_timeout);
    let handler = Enqueue::new(inbox.clone(), state.clone());
    let session = Session {
        state,
        socket,
        inbox,
        sid,
        phase: Phase::Connected,
        pending_writes: Arc::new(PendingWrites::default()),
        deadline,
        read_ahead: None,
        direct: None,
        sends_msgs: false,
        refusals: Refusals::default(),
    };
    tokio::spawn(session.run(receiver, credentials));
    handler
}

impl Session {
    /// The connection's event loop. Every handler future is boxed: the loop
    /// lives as long as the connection, and inlined handlers would make
    /// every idle connection carry the largest handler's state (kilobytes).
    async fn run(mut self, inbox: InboxReceiver, credentials: Option<Value>) {
        if let Some(credentials) = credentials {
            if Box::pin(self.authenticate_at_connect(credentials)).await == Flow::Stop {
                return;
            }
        }
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

    /// Lets the socket's handler handle this session's msgs itself
    /// ([`super::direct::handle_directly`]) while the session is in a room
    /// as a sender and no sync is under way, on a node without Redis; stops
    /// it otherwise. Only once the client sent a msg: an idle connection
    /// does not carry what it would need. The handler only does so while
    /// this task waits with nothing queued, so every msg still comes after
    /// the events before it.
    fn publish_direct(&mut self, inbox: &InboxReceiver) {
        let wanted = match &self.phase {
            Phase::Joined(Login { stamp, .. }, joined)
                if self.sends_msgs
                    && !joined.dummy
                    && self.read_ahead.is_none()
                    && self.state.bus().is_local_only() =>
            {
                Some((&joined.room, stamp))
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
                stores: self.state.messages().submits_now(),
            })
        });
        inbox.publish(self.direct.clone());
    }

    async fn handle(&mut self, ev: Box<Inbound>) -> Flow {
        let Inbound { event, data, ack } = *ev;
        if matches!(self.phase, Phase::Connected) && event != event::AUTHENTICATE {
            // Before authenticate every other event is ignored.
            self.state.metrics().dropped("unauthenticated");
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
                self.state.metrics().auth_failed("timeout");
                self.state.metrics().disconnected("auth_timeout");
                let _ = self.socket.emit(
                    event::AUTHENTICATE,
                    &StatusReply::fail(1, reason::AUTH_TIMEOUT),
                );
                self.disconnect();
                Flow::Stop
            }
            Phase::Authenticated(_) => {
                tracing::info!(sid = %self.sid, "join timeout");
                self.state.metrics().disconnected("join_timeout");
                self.closed_by_server().await;
                Flow::Stop
            }
            Phase::Joined(..) => Flow::Continue,
        }
    }

    /// Authenticated as `login` (from [`Phase::Connected`]).
    pub(super) fn logged_in(&mut self, login: Login) {
        debug_assert!(matches!(self.phase, Phase::Connected));
        self.phase = Phase::Authenticated(login);
    }

    /// In `joined`'s room (after leaving the one it was in, if any).
    pub(super) fn entered(&mut self, joined: Joined) {
        self.phase = match std::mem::replace(&mut self.phase, Phase::Connected) {
            Phase::Authenticated(login) | Phase::Joined(login, _) => Phase::Joined(login, joined),
            Phase::Connected => Phase::Connected,
        };
    }

    /// Out of its room, if it was in one: the room it left.
    pub(super) fn take_room(&mut self) -> Option<Joined> {
        self.phase.take_room()
    }

    /// Back to [`Phase::Connected`] (out of its room already, see
    /// [`Session::take_room`]): who it was logged in as.
    pub(super) fn log_out(&mut self) -> Option<Uid> {
        match std::mem::replace(&mut self.phase, Phase::Connected) {
            Phase::Connected => None,
            Phase::Authenticated(login) | Phase::Joined(login, _) => Some(login.uid),
        }
    }

    /// Closes the connection from the server side (a socket.io disconnect
    /// packet, then the transport closes).
    pub(super) fn disconnect(&self) {
        self.socket.disconnect();
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
        // The room is told who left while the login is still known.
        if let Some(joined) = self.take_room() {
            self.leave_room(&joined, event::REMOTE_DISCONNECT).await;
        }
        if let Some(uid) = self.log_out() {
            if let Err(e) = self
                .state
                .cluster()
                .unregister_connection(&uid.key, &self.sid)
                .await
            {
                tracing::warn!(error = %Chain(&e), "could not unregister connection");
            }
        }
        self.refusals.flush(&self.sid);
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
