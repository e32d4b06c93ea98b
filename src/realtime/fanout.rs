//! This node's side of room events: emits to this node's members of a room
//! (one broadcast, the packet encoded once for all of them), counts the
//! members per room, and keeps which numbered presence changes each room
//! was told. In a cluster, what other nodes publish arrives through
//! [`LocalRooms`], which [`Fanout`] implements for the pub/sub side
//! (`cluster::pubsub`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ao_socketio::{Server, Socket};
use serde_json::value::RawValue;

use super::inbox::{Control, Mailbox};
use super::presence::{Order, Told};
use crate::cluster::pubsub::{LocalRooms, WatchedRoom};
use crate::metrics::Metrics;
use crate::protocol::event;
use crate::sync::lock;

/// The name of the socket.io room that holds this node's members of
/// protocol room `room` (not to be confused with the room's Redis channel).
pub(crate) fn members_room(room: &str) -> String {
    let mut name = String::with_capacity(MEMBERS_ROOM_PREFIX.len() + room.len());
    push_members_room(&mut name, room);
    name
}

const MEMBERS_ROOM_PREFIX: &str = "room:";

/// Appends [`members_room`] of `room` to `name`: a plain concatenation, not
/// the formatting machinery.
fn push_members_room(name: &mut String, room: &str) {
    name.push_str(MEMBERS_ROOM_PREFIX);
    name.push_str(room);
}

/// Calls `f` with the name of the socket.io room of protocol room `room`
/// ([`members_room`]), built in this thread's scratch space: a relay looks
/// the room up once per msg and need not allocate its name to do so.
fn with_members_room<R>(room: &str, f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static NAME: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    NAME.with(|name| match name.try_borrow_mut() {
        Ok(mut name) => {
            name.clear();
            push_members_room(&mut name, room);
            let out = f(&name);
            if name.capacity() > 1024 {
                *name = String::new();
            }
            out
        }
        // Only if `f` relayed again from within.
        Err(_) => f(&members_room(room)),
    })
}

/// Room events to this node's members.
pub(crate) struct Fanout {
    io: Server,
    metrics: Arc<Metrics>,
    /// Rooms with members on this node.
    watched: Mutex<HashMap<String, Watch>>,
    /// Room histories cleared so far (any room, seen from this node).
    clears: AtomicU64,
}

/// A room with members on this node.
#[derive(Default)]
struct Watch {
    /// How many (dummies included).
    members: u64,
    /// The numbered presence changes of the room told here (cluster only).
    told: Told,
}

impl Fanout {
    /// Fan-out to the sockets of `io`.
    pub(crate) fn new(io: Server, metrics: Arc<Metrics>) -> Self {
        Fanout {
            io,
            metrics,
            watched: Mutex::new(HashMap::new()),
            clears: AtomicU64::new(0),
        }
    }

    /// Records that a room's history was cleared (here, or on another node).
    pub(crate) fn history_cleared(&self) {
        self.clears.fetch_add(1, Ordering::AcqRel);
    }

    /// How many room histories were cleared so far: a page read before the
    /// count changed may be of a cleared history.
    pub(crate) fn history_clears(&self) -> u64 {
        self.clears.load(Ordering::Acquire)
    }

    /// Counts a member of `room` on this node; `true` for the first.
    pub(crate) fn watch(&self, room: &str) -> bool {
        let mut watched = lock(&self.watched);
        let watch = watched.entry(room.to_owned()).or_default();
        watch.members += 1;
        watch.members == 1
    }

    /// Counts a member of `room` gone; `true` when it was the last.
    pub(crate) fn unwatch(&self, room: &str) -> bool {
        let mut watched = lock(&self.watched);
        let Some(watch) = watched.get_mut(room) else {
            return false;
        };
        watch.members = watch.members.saturating_sub(1);
        let last = watch.members == 0;
        if last {
            watched.remove(room);
        }
        last
    }

    /// Offers a presence change in `order` to the gate of each of this
    /// node's members of `room` but `origin` ([`super::presence::Gate::offer`]).
    pub(crate) fn emit_presence_local(
        &self,
        room: &str,
        ev: &str,
        data: &RawValue,
        order: Order,
        origin: Option<&str>,
    ) {
        for socket in self.io.room(&members_room(room)) {
            if origin.is_some_and(|sid| socket.id() == sid) {
                continue;
            }
            let deliver = |ev: &str, data: &RawValue| {
                self.emit_to(&socket, ev, data);
            };
            match socket.data::<Mailbox>() {
                Some(mailbox) => mailbox.inbox.gate().offer(room, order, ev, data, deliver),
                None => deliver(ev, data),
            }
        }
    }

    /// The lowest number of a numbered join among this node's members of `room`.
    fn earliest_join(&self, room: &str) -> Option<u64> {
        self.io
            .room(&members_room(room))
            .iter()
            .filter_map(|s| s.data::<Mailbox>())
            .filter_map(|m| m.inbox.gate().joined_at(room))
            .min()
    }

    /// Emits to one socket; `false` when it was not sent (its queue is
    /// full: it is disconnected as a slow client, and the event counted as
    /// dropped; or it is closing).
    pub(crate) fn emit_to(&self, socket: &Socket, ev: &str, data: &RawValue) -> bool {
        match socket.emit(ev, data) {
            Ok(()) => true,
            Err(ao_socketio::QueueError::Full) => {
                self.metrics.dropped("slow_client");
                false
            }
            Err(ao_socketio::QueueError::Closed) => false, // its session announces it
        }
    }

    /// Emits to this node's members of `room` but `except`; returns how
    /// many were sent to.
    ///
    /// The packet is encoded once and the same bytes are queued for every
    /// member.
    pub(crate) fn emit_local(
        &self,
        room: &str,
        ev: &str,
        data: &RawValue,
        except: Option<&str>,
    ) -> u64 {
        let sender = except.and_then(|sid| self.io.socket(sid));
        self.broadcast(room, ev, data, sender.as_ref())
    }

    /// Emits to this node's members of `room` but `sender`, whose socket
    /// is at hand; returns how many were sent to, as [`Fanout::emit_local`].
    pub(crate) fn emit_from(&self, sender: &Socket, room: &str, ev: &str, data: &RawValue) -> u64 {
        self.broadcast(room, ev, data, Some(sender))
    }

    fn broadcast(&self, room: &str, ev: &str, data: &RawValue, except: Option<&Socket>) -> u64 {
        let frame = ao_socketio::event_frame(ev, data);
        let delivery = with_members_room(room, |name| self.io.broadcast(name, &frame, except));
        if delivery.dropped > 0 {
            self.metrics.dropped_by("slow_client", delivery.dropped);
            tracing::debug!(
                ?room,
                dropped = delivery.dropped,
                "slow clients disconnected, event dropped for them"
            );
        }
        if ev == event::MSG {
            self.metrics.messages_relayed.inc_by(delivery.sent);
        }
        delivery.sent
    }

    fn emit_local_but(
        &self,
        room: &str,
        ev: &str,
        data: &RawValue,
        skip: impl Fn(&Socket) -> bool,
    ) -> u64 {
        let mut sent = 0;
        for socket in self.io.room(&members_room(room)) {
            if !skip(&socket) && self.emit_to(&socket, ev, data) {
                sent += 1;
            }
        }
        if ev == event::MSG {
            self.metrics.messages_relayed.inc_by(sent);
        }
        sent
    }
}

impl LocalRooms for Fanout {
    fn emit(&self, room: &str, ev: &str, data: &RawValue, except: Option<&str>) -> u64 {
        self.emit_local(room, ev, data, except)
    }

    fn emit_recovered(&self, room: &str, data: &RawValue, sender_uid: Option<&str>) -> u64 {
        self.emit_local_but(room, event::MSG, data, |s| {
            let uid = s.data::<Mailbox>().and_then(|m| m.uid.get());
            matches!((sender_uid, uid), (Some(from), Some(uid)) if from == uid)
        })
    }

    fn tell_presence(
        &self,
        room: &str,
        ev: &str,
        data: &RawValue,
        seq: Option<u64>,
        since: Option<u64>,
        origin: Option<&str>,
    ) -> bool {
        if let Some(seq) = seq {
            let first = lock(&self.watched)
                .get_mut(room)
                .map(|w| w.told.first_time(seq));
            if first != Some(true) {
                return false; // told, or no member here any more
            }
        }
        self.emit_presence_local(room, ev, data, Order { seq, since }, origin);
        true
    }

    fn rooms(&self) -> Vec<String> {
        lock(&self.watched).keys().cloned().collect()
    }

    fn watched(&self) -> Vec<WatchedRoom> {
        let rooms: Vec<(String, u64)> = lock(&self.watched)
            .iter()
            .map(|(room, watch)| (room.clone(), watch.told.told_up_to()))
            .collect();
        rooms
            .into_iter()
            .map(|(room, told_up_to)| WatchedRoom {
                earliest_join: self.earliest_join(&room),
                room,
                told_up_to,
            })
            .collect()
    }

    fn kick(&self, sid: &str) -> bool {
        kick_local(&self.io, sid)
    }

    fn history_cleared(&self) {
        Fanout::history_cleared(self);
    }
}

/// Sends the kick to a session on this node; `false` if `sid` is not here.
pub(crate) fn kick_local(io: &Server, sid: &str) -> bool {
    let Some(socket) = io.socket(sid) else {
        return false;
    };
    if let Some(mailbox) = socket.data::<Mailbox>() {
        mailbox.inbox.signal(Control::Kick);
    }
    true
}
