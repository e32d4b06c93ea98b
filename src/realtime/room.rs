//! join, leave and the presence events that go with them.

use serde_json::Value;

use super::room_channel;
use super::session::{Flow, Joined, Phase, Session};
use crate::cluster::Member;
use crate::protocol::{self, event, StatusReply, UidEvent};

impl Session {
    pub(super) async fn join(&mut self, data: Result<Value, String>) -> Flow {
        let request = match protocol::parse_join(&data.unwrap_or(Value::Null)) {
            Ok(r) => r,
            Err(e) => {
                let _ = self
                    .socket
                    .emit(event::JOIN, &StatusReply::fail(1, e.reason()));
                return Flow::Continue;
            }
        };
        let Some(uid) = self.uid.clone() else {
            return Flow::Continue;
        };
        // A socket is in at most one room: a second join moves it, after
        // its messages to the old room went out.
        self.pending_writes.wait_idle().await;
        if let Phase::Joined(old) = std::mem::replace(&mut self.phase, Phase::Authenticated) {
            self.leave_room(&old, event::REMOTE_LEAVE).await;
        }
        let member = Member {
            uid: uid.json.clone(),
            uid_key: uid.key.clone(),
            sid: self.sid.clone(),
            dummy: request.dummy,
        };
        let before = match self.hub.cluster.join(&request.room, member).await {
            Ok(before) => before,
            Err(e) => {
                tracing::error!(error = %e, "presence registry failed during join");
                let _ = self.socket.emit(
                    event::JOIN,
                    &StatusReply::fail(1, protocol::reason::SERVER_ERROR),
                );
                return Flow::Continue;
            }
        };
        let channel = room_channel(&request.room);
        self.socket.join(channel.clone());
        // Listen for the room's events from other nodes before the join is
        // confirmed: the client syncs after it, so nothing falls in between.
        self.hub.bus.watch(&request.room).await;
        // A login that replaced an older connection of the same uid in this
        // room takes its place silently.
        let replaces = self.replaced_rooms.contains(&request.room)
            || before.iter().any(|m| !m.dummy && m.uid_key == uid.key);
        self.replaced_rooms.clear();
        self.deadline = None;
        tracing::info!(sid = %self.sid, room = %request.room, dummy = request.dummy, "joined");

        // The room hears of the joiner before the joiner's ack goes out
        // (the joiner cannot tell: it never gets its own remote_join). A
        // member that joins once this ack is out has the joiner in its
        // roster, and must not get the announcement as well.
        if !request.dummy && !replaces {
            self.to_room(
                &request.room,
                event::REMOTE_JOIN,
                &UidEvent { uid: &uid.json },
            )
            .await;
        }
        let _ = self.socket.emit(
            event::JOIN,
            &StatusReply::ok(protocol::reason::JOIN_SUCCESS),
        );
        for m in before.iter().filter(|m| !m.dummy && m.uid_key != uid.key) {
            let _ = self
                .socket
                .emit(event::REMOTE_JOIN, &UidEvent { uid: &m.uid });
        }
        self.phase = Phase::Joined(Joined {
            room: request.room,
            channel,
            dummy: request.dummy,
        });
        Flow::Continue
    }

    pub(super) async fn leave(&mut self) -> Flow {
        // The room hears of the leave after the leaver's last messages.
        self.pending_writes.wait_idle().await;
        if let Phase::Joined(joined) = std::mem::replace(&mut self.phase, Phase::Authenticated) {
            self.leave_room(&joined, event::REMOTE_LEAVE).await;
        }
        self.closed_by_server().await;
        Flow::Stop
    }

    /// Takes this connection out of `joined`'s room and, unless it is a
    /// dummy, tells the others with `announce` (remote_leave or remote_disconnect).
    pub(super) async fn leave_room(&mut self, joined: &Joined, announce: &str) {
        let was_present = match self.hub.cluster.leave(&joined.room, &self.sid).await {
            Ok(m) => m.is_some(),
            Err(e) => {
                tracing::error!(error = %e, "presence registry failed during leave");
                true
            }
        };
        if was_present && !joined.dummy {
            if let Some(uid) = &self.uid {
                let uid = uid.json.clone();
                self.to_room(&joined.room, announce, &UidEvent { uid: &uid })
                    .await;
            }
        }
        self.socket.leave(joined.channel.clone());
        self.hub.bus.unwatch(&joined.room).await;
    }

    /// Emits to every other member of `room`, on every node.
    pub(super) async fn to_room<T: serde::Serialize + ?Sized>(
        &self,
        room: &str,
        ev: &str,
        data: &T,
    ) {
        match serde_json::value::to_raw_value(data) {
            Ok(raw) => self.hub.bus.to_room(room, ev, &raw, Some(&self.sid)).await,
            Err(e) => tracing::warn!(error = %e, event = ev, "unencodable event"),
        }
    }
}
