//! join, leave and the presence events that go with them.

use serde_json::Value;

use super::bus::members_room;
use super::presence::Order;
use super::session::{Flow, Joined, Login, Phase, Session};
use crate::client_log::Clipped;
use crate::cluster::Member;
use crate::logging::Chain;
use crate::protocol::{self, event, JoinError, JoinRequest, StatusReply, UidEvent};

impl Session {
    pub(super) async fn join(&mut self, data: Result<Value, String>) -> Flow {
        let request = match protocol::parse_join(&data.unwrap_or(Value::Null))
            .and_then(|r| self.granted(r))
        {
            Ok(r) => r,
            Err(e) => {
                let _ = self
                    .socket
                    .emit(event::JOIN, &StatusReply::fail(1, e.reason()));
                return Flow::Continue;
            }
        };
        let Some(uid) = self.phase.login().map(|l| l.uid.clone()) else {
            return Flow::Continue;
        };
        let rejoin = self.phase.joined().is_some_and(|j| j.room == request.room);
        if !rejoin && self.room_is_full(&request.room).await {
            self.refusals.refused(&self.sid, "join: room is full");
            self.state.metrics().refused("room_full");
            let _ = self.socket.emit(
                event::JOIN,
                &StatusReply::fail(1, protocol::reason::JOIN_ROOM_FULL),
            );
            return Flow::Continue;
        }
        // A socket is in at most one room: a second join moves it, after
        // its messages to the old room went out.
        self.pending_writes.wait_idle().await;
        if let Some(old) = self.take_room() {
            self.leave_room(&old, event::REMOTE_LEAVE).await;
        }
        // Listen for the room's events from other nodes before the join is
        // registered and confirmed: the client syncs after the ack, so
        // nothing falls in between.
        self.state.bus().watch(&request.room).await;
        // In the room's delivery set before the join is registered, so no
        // presence change after the join passes this connection by; the gate
        // holds the room's presence events until this join is numbered.
        let sio_room = members_room(&request.room);
        self.inbox.gate().joining(&request.room);
        self.socket.join(&sio_room);
        let member = Member {
            uid: uid.json.clone(),
            uid_key: uid.key.clone(),
            sid: self.sid.clone(),
            dummy: request.dummy,
        };
        let arrival = match self.state.cluster().join(&request.room, member).await {
            Ok(arrival) => arrival,
            Err(e) => {
                tracing::error!(error = %Chain(&e), "presence registry failed during join");
                self.inbox.gate().shut();
                self.socket.leave(&sio_room);
                self.state.bus().unwatch(&request.room).await;
                let _ = self.socket.emit(
                    event::JOIN,
                    &StatusReply::fail(1, protocol::reason::SERVER_ERROR),
                );
                return Flow::Continue;
            }
        };
        // A login that replaced an older connection of the same uid in this
        // room takes its place silently for the members that knew the older
        // one: all of them while it is still registered, the ones that
        // joined before it was taken out otherwise.
        let still_there = arrival
            .before
            .iter()
            .any(|m| !m.dummy && m.uid_key == uid.key);
        let taken_out = match &mut self.phase {
            Phase::Authenticated(login) | Phase::Joined(login, _) => {
                let replaced = std::mem::take(&mut login.replaced_rooms);
                replaced
                    .into_iter()
                    .find(|(room, _)| *room == request.room)
                    .map(|(_, seq)| seq)
            }
            Phase::Connected => None,
        };
        let announce = match taken_out {
            _ if still_there => None,
            None => Some(Order::at(arrival.seq)),
            Some(Some(since)) => Some(Order {
                seq: arrival.seq,
                since: Some(since),
            }),
            // Who joined after an unnumbered removal cannot be told apart.
            Some(None) => None,
        };
        self.deadline = None;
        tracing::info!(sid = %self.sid, room = ?Clipped(&request.room), dummy = request.dummy, "joined");

        if let Some(order) = announce.filter(|_| !request.dummy) {
            self.announce(&request.room, event::REMOTE_JOIN, order)
                .await;
        }
        let _ = self.socket.emit(
            event::JOIN,
            &StatusReply::ok(protocol::reason::JOIN_SUCCESS),
        );
        // The roster goes out as the client takes it, never more than
        // half its queue at once.
        let half_queue = self.state.config().client_queue_max_bytes / 2;
        for m in arrival
            .before
            .iter()
            .filter(|m| !m.dummy && m.uid_key != uid.key)
        {
            if self.socket.queued_bytes() > half_queue {
                self.socket.drained(half_queue / 2).await;
            }
            let _ = self
                .socket
                .emit(event::REMOTE_JOIN, &UidEvent { uid: &m.uid });
        }
        // The roster is out: now the changes that came after this join.
        let (bus, socket) = (&self.state.bus(), &self.socket);
        self.inbox.gate().open(arrival.seq, |ev, data| {
            bus.emit_to(socket, ev, data);
        });
        self.entered(Joined {
            room: request.room,
            sio_room,
            dummy: request.dummy,
        });
        Flow::Continue
    }

    /// Whether `room` holds `AO_MAX_ROOM_MEMBERS` already. Counted before
    /// the join, so joins racing on other nodes may pass it by a few; a
    /// registry that does not answer lets the join go on to fail there.
    async fn room_is_full(&self, room: &str) -> bool {
        match self.state.cluster().member_count(room).await {
            Ok(n) => n >= self.state.config().max_room_members,
            Err(_) => false,
        }
    }

    /// `request` if this connection's grant allows it: a room its token's
    /// `rooms` claim matches, and a dummy join only with `observer: true`
    /// when `AO_DUMMY_REQUIRES_GRANT` is on. Refused before anything
    /// changes, so a connection in a room stays there.
    fn granted(&self, request: JoinRequest) -> Result<JoinRequest, JoinError> {
        let refused = match self.phase.login().and_then(|l| l.grant.as_ref()) {
            Some(g) if !g.allows_room(&request.room) => Some(JoinError::RoomNotGranted),
            g if request.dummy
                && self.state.config().dummy_requires_grant
                && !g.as_ref().is_some_and(|g| g.observer) =>
            {
                Some(JoinError::ObserverNotGranted)
            }
            _ => None,
        };
        match refused {
            Some(e) => {
                self.refusals.refused(&self.sid, e.reason());
                Err(e)
            }
            None => Ok(request),
        }
    }

    pub(super) async fn leave(&mut self) -> Flow {
        // The room hears of the leave after the leaver's last messages.
        self.pending_writes.wait_idle().await;
        if let Some(joined) = self.take_room() {
            self.leave_room(&joined, event::REMOTE_LEAVE).await;
        }
        self.closed_by_server().await;
        Flow::Stop
    }

    /// Takes this connection out of `joined`'s room and, unless it is a
    /// dummy, tells the others with `announce` (remote_leave or remote_disconnect).
    pub(super) async fn leave_room(&mut self, joined: &Joined, announce: &str) {
        self.inbox.gate().shut();
        let departed = match self.state.cluster().leave(&joined.room, &self.sid).await {
            Ok(gone) => gone.map(|d| d.seq),
            Err(e) => {
                tracing::error!(error = %Chain(&e), "presence registry failed during leave");
                Some(None)
            }
        };
        if let Some(seq) = departed.filter(|_| !joined.dummy) {
            self.announce(&joined.room, announce, Order::at(seq)).await;
        }
        self.socket.leave(&joined.sio_room);
        self.state.bus().unwatch(&joined.room).await;
    }

    /// Tells the other members of `room`, on every node, of this member's
    /// presence change `ev` (remote_join, remote_leave, remote_disconnect),
    /// to the members `order` is for.
    async fn announce(&self, room: &str, ev: &str, order: Order) {
        let Some(Login { uid, .. }) = self.phase.login() else {
            return;
        };
        match serde_json::value::to_raw_value(&UidEvent { uid: &uid.json }) {
            Ok(raw) => {
                self.state
                    .bus()
                    .presence(room, ev, &raw, order, &self.sid)
                    .await
            }
            Err(e) => tracing::warn!(error = %Chain(&e), event = ev, "unencodable event"),
        }
    }

    /// Emits to every other member of `room`, on every node.
    pub(super) async fn to_room<T: serde::Serialize + ?Sized>(
        &self,
        room: &str,
        ev: &str,
        data: &T,
    ) {
        match serde_json::value::to_raw_value(data) {
            Ok(raw) => {
                self.state
                    .bus()
                    .to_room(room, ev, &raw, Some(&self.sid))
                    .await
            }
            Err(e) => tracing::warn!(error = %Chain(&e), event = ev, "unencodable event"),
        }
    }
}
