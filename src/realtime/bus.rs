//! Delivery of room events to members on every node.
//!
//! One node emits to its own sockets. In a cluster every room event is
//! published on the room's Redis channel (stored messages by the store's
//! write script itself, in the same atomic step as the write), and each
//! node emits what arrives to its own members of the room; a node listens
//! on the channels of the rooms it has members in. Publishing everything of
//! a room through one channel keeps one order for all nodes: a member's
//! `remote_leave` comes after its last messages everywhere.
//!
//! Pub/sub delivers at most once: a frame published while a node's
//! subscriber was reconnecting never reaches it. Each node therefore tracks
//! the seq of the next msg to deliver per room (from the room's length when
//! it starts listening) and, seeing a later one arrive or after a
//! reconnect, first delivers the ones in between from the store. Presence changes are kept
//! in a short log per room as they are published; after a reconnect a node
//! tells its members the ones it has not told yet (`presence::Told`).
//!
//! This is written on fred's sharded pub/sub directly rather than through
//! socketioxide-redis: that adapter publishes a broadcast after the store
//! returned, as a separate command, so two nodes appending to one room could
//! publish seq n+1 before seq n; here the store's script publishes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use futures_util::FutureExt;
use serde_json::value::RawValue;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::SocketRef;
use socketioxide::operators::BroadcastOperators;
use socketioxide::socket::Socket;
use socketioxide::SocketIo;

use super::inbox::{Control, Mailbox};
use super::presence::{Order, Told};
use crate::metrics::Metrics;
use crate::protocol::event;
use crate::redis::{ControlFrame, FrameTags, Redis, RoomFrame, COMMAND_TIMEOUT, RESET_EVENT};
use crate::store::MessageStore;
use crate::sync::lock;

/// How long a join waits for its room's channel to be subscribed.
const SUBSCRIBE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How long after a catch-up that could not read everything it is tried
/// again, and how many times.
const CATCH_UP_RETRY: std::time::Duration = std::time::Duration::from_millis(500);
const CATCH_UP_TRIES: u32 = 20;

/// How long a readiness probe waits to hear itself back.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The name of the socket.io room that holds this node's members of
/// protocol room `room` (not to be confused with the room's Redis channel).
pub fn members_room(room: &str) -> String {
    // Built once per relay: a plain concatenation, not the formatting machinery.
    let mut name = String::with_capacity(5 + room.len());
    name.push_str("room:");
    name.push_str(room);
    name
}

/// Where room events go: this node's sockets, or every node's.
pub struct Bus {
    io: SocketIo,
    metrics: Arc<Metrics>,
    /// Rooms with members on this node; in a cluster their channels are
    /// subscribed.
    watched: std::sync::Mutex<HashMap<String, Watch>>,
    /// Room histories cleared so far (any room, seen from this node).
    clears: AtomicU64,
    redis: Option<RedisBus>,
}

/// A room with members on this node.
#[derive(Default)]
struct Watch {
    /// How many (dummies included).
    members: u64,
    /// The numbered presence changes of the room told here (cluster only).
    told: Told,
}

struct RedisBus {
    redis: Redis,
    /// This node's id (frames may be for every node but one).
    node: String,
    messages: Arc<dyn MessageStore>,
    /// Room → the seq of the next msg to deliver on this node (gaps are
    /// filled from the store).
    next_seq: std::sync::Mutex<HashMap<String, u64>>,
    /// Signals the dispatcher that the subscriber is listening again.
    resubscribed: tokio::sync::Notify,
    /// Catch-ups tried again in a row since the last complete one.
    catch_up_retries: std::sync::atomic::AtomicU32,
    /// Readiness probes waiting to hear themselves back.
    probes: std::sync::Mutex<HashMap<u64, tokio::sync::oneshot::Sender<()>>>,
}

impl Bus {
    /// Records that a room's history was cleared (here, or on another node).
    pub fn history_cleared(&self) {
        self.clears.fetch_add(1, Ordering::AcqRel);
    }

    /// How many room histories were cleared so far: a page read before the
    /// count changed may be of a cleared history.
    pub fn history_clears(&self) -> u64 {
        self.clears.load(Ordering::Acquire)
    }

    /// A bus for one node.
    pub fn local(io: SocketIo, metrics: Arc<Metrics>) -> Arc<Bus> {
        Arc::new(Bus {
            io,
            metrics,
            watched: std::sync::Mutex::new(HashMap::new()),
            clears: AtomicU64::new(0),
            redis: None,
        })
    }

    /// A bus over Redis; starts the task that delivers what other nodes publish.
    pub async fn redis(
        io: SocketIo,
        metrics: Arc<Metrics>,
        redis: Redis,
        messages: Arc<dyn MessageStore>,
        node: String,
    ) -> Result<Arc<Bus>, crate::redis::RedisError> {
        redis
            .subscriber
            .ssubscribe(redis.keys.control_channel())
            .await?;
        let bus = Arc::new(Bus {
            io,
            metrics,
            watched: std::sync::Mutex::new(HashMap::new()),
            clears: AtomicU64::new(0),
            redis: Some(RedisBus {
                redis,
                node,
                messages,
                next_seq: std::sync::Mutex::new(HashMap::new()),
                resubscribed: tokio::sync::Notify::new(),
                catch_up_retries: std::sync::atomic::AtomicU32::new(0),
                probes: std::sync::Mutex::new(HashMap::new()),
            }),
        });
        tokio::spawn(dispatch(bus.clone()));
        tokio::spawn(resubscribe_on_reconnect(bus.clone()));
        Ok(bus)
    }

    /// Emits `event` with `data` to every member of `room` on every node
    /// but `except`. When Redis cannot be reached, members on this node
    /// still get it.
    pub async fn to_room(&self, room: &str, ev: &str, data: &RawValue, except: Option<&str>) {
        if let Some(rb) = &self.redis {
            // The Redis client's futures are kilobytes. Boxed here (and in
            // kick, watch and unwatch) so that the session handlers awaiting
            // these stay small: a session boxes one handler future per
            // event, which was 11.9 KiB for every msg, Redis or not.
            match Box::pin(
                rb.redis
                    .publish_room(room, ev, data.get(), FrameTags::except(except)),
            )
            .await
            {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, event = ev, "publish failed, delivering on this node only");
                }
            }
        }
        self.emit_local(room, ev, data, except);
    }

    /// Tells the members of `room` on every node of a presence change
    /// (`remote_join`, `remote_leave`, `remote_disconnect`): each member
    /// `order` is for ([`super::presence`]), never `origin` (the member it
    /// is about). When Redis cannot be reached, members on this node are
    /// still told.
    pub async fn presence(
        &self,
        room: &str,
        ev: &str,
        data: &RawValue,
        order: Order,
        origin: &str,
    ) {
        if let Some(rb) = &self.redis {
            match Box::pin(rb.redis.publish_room(
                room,
                ev,
                data.get(),
                FrameTags {
                    except: Some(origin),
                    presence: order.seq,
                    since: order.since,
                    ..FrameTags::default()
                },
            ))
            .await
            {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, event = ev, "publish failed, telling members on this node only");
                }
            }
        }
        self.emit_presence_local(room, ev, data, order, Some(origin));
    }

    /// Offers a presence change in `order` to the gate of each of this
    /// node's members of `room` but `origin` ([`super::presence::Gate::offer`]).
    fn emit_presence_local(
        &self,
        room: &str,
        ev: &str,
        data: &RawValue,
        order: Order,
        origin: Option<&str>,
    ) {
        let Some(ns) = self.io.of("/") else {
            return; // shutting down
        };
        for socket in ns.to(members_room(room)).sockets() {
            if origin.is_some_and(|sid| socket.id.as_str() == sid) {
                continue;
            }
            let deliver = |ev: &str, data: &RawValue| {
                self.emit_to(&socket, ev, data);
            };
            match socket.extensions.get::<Mailbox>() {
                Some(mailbox) => mailbox.inbox.gate().offer(room, order, ev, data, deliver),
                None => deliver(ev, data),
            }
        }
    }

    /// The lowest number of a numbered join among this node's members of `room`.
    fn earliest_join(&self, room: &str) -> Option<u64> {
        let ns = self.io.of("/")?;
        ns.to(members_room(room))
            .sockets()
            .iter()
            .filter_map(|s| s.extensions.get::<Mailbox>())
            .filter_map(|m| m.inbox.gate().joined_at(room))
            .min()
    }

    /// Emits to one socket; `false` when it was not sent (its send buffer
    /// is full, counted as a drop, or it is closing).
    pub fn emit_to(&self, socket: &Socket<LocalAdapter>, ev: &str, data: &RawValue) -> bool {
        match socket.emit(ev, data) {
            Ok(()) => true,
            Err(socketioxide::SendError::Socket(
                socketioxide::SocketError::InternalChannelFull,
            )) => {
                self.metrics.dropped("send_buffer_full");
                tracing::debug!(sid = %socket.id, "send buffer full, event dropped");
                false
            }
            Err(_) => false, // closing: its session announces it
        }
    }

    /// Emits to this node's members of `room` but `except`; returns how
    /// many were sent to, counting the ones dropped for a full send buffer.
    ///
    /// One broadcast through socketioxide's local adapter, which encodes
    /// the packet once for all recipients; the delivery count comes from
    /// this node's member count of the room.
    pub fn emit_local(&self, room: &str, ev: &str, data: &RawValue, except: Option<&str>) -> u64 {
        let Some(ns) = self.io.of("/") else {
            return 0; // shutting down
        };
        // The sender is one of this node's members only if it is connected
        // here; a broadcast from its socket leaves it out.
        let sender = except
            .and_then(|x| x.parse().ok())
            .and_then(|sid| ns.get_socket(sid));
        match sender {
            Some(socket) => self.emit_from(&socket, room, ev, data),
            None => self.broadcast(ns.to(members_room(room)), false, room, ev, data),
        }
    }

    /// Emits to this node's members of `room` but `sender`, whose socket
    /// is at hand; returns how many were sent to, as [`Bus::emit_local`].
    pub fn emit_from(
        &self,
        sender: &Socket<LocalAdapter>,
        room: &str,
        ev: &str,
        data: &RawValue,
    ) -> u64 {
        self.broadcast(sender.to(members_room(room)), true, room, ev, data)
    }

    /// Whether room events stay on this node (no Redis): then emitting
    /// never waits.
    pub fn is_local_only(&self) -> bool {
        self.redis.is_none()
    }

    fn broadcast(
        &self,
        op: BroadcastOperators<LocalAdapter>,
        excluded: bool,
        room: &str,
        ev: &str,
        data: &RawValue,
    ) -> u64 {
        // The local adapter broadcasts synchronously: the future is ready
        // on its first poll (now_or_never), so this works from the store's
        // completion callbacks, which are not async.
        let mut dropped = 0;
        match op.emit(ev, data).now_or_never() {
            Some(Ok(())) => {}
            Some(Err(socketioxide::BroadcastError::Socket(errors))) => {
                for e in errors {
                    if matches!(e, socketioxide::SocketError::InternalChannelFull) {
                        dropped += 1;
                        self.metrics.dropped("send_buffer_full");
                    }
                }
                if dropped > 0 {
                    tracing::debug!(%room, dropped, "send buffers full, event dropped");
                }
            }
            Some(Err(e)) => tracing::debug!(error = %e, %room, "broadcast failed"),
            None => tracing::warn!(%room, "local broadcast did not complete at once"),
        }
        let members = lock(&self.watched).get(room).map_or(0, |w| w.members);
        let sent = members
            .saturating_sub(u64::from(excluded))
            .saturating_sub(dropped);
        if ev == event::MSG {
            self.metrics.messages_relayed.inc_by(sent);
        }
        sent
    }

    fn emit_local_but(
        &self,
        room: &str,
        ev: &str,
        data: &RawValue,
        skip: impl Fn(&SocketRef) -> bool,
    ) -> u64 {
        let mut sent = 0;
        let Some(ns) = self.io.of("/") else {
            return 0; // shutting down
        };
        for socket in ns.to(members_room(room)).sockets() {
            if !skip(&socket) && self.emit_to(&socket, ev, data) {
                sent += 1;
            }
        }
        if ev == event::MSG {
            self.metrics.messages_relayed.inc_by(sent);
        }
        sent
    }

    /// Tells connection `sid`, on whichever node holds it, to send
    /// `kickout` and close.
    pub async fn kick(&self, sid: &str) {
        if kick_local(&self.io, sid) {
            return;
        }
        let Some(rb) = &self.redis else { return };
        let kick = ControlFrame::Kick {
            sid: sid.to_owned(),
        };
        if let Err(e) = Box::pin(rb.redis.publish_control(&kick)).await {
            tracing::warn!(error = %e, %sid, "could not send kickout to another node");
        }
    }

    /// A member of `room` joined on this node: listen on the room's channel
    /// (before the join is confirmed, so nothing published after it is
    /// missed). While Redis is unreachable it does not wait: the channel is
    /// subscribed when Redis is back.
    pub async fn watch(&self, room: &str) {
        let first = {
            let mut watched = lock(&self.watched);
            let watch = watched.entry(room.to_owned()).or_default();
            watch.members += 1;
            watch.members == 1
        };
        let Some(rb) = &self.redis else { return };
        if first {
            if !rb.redis.subscriber.is_connected() {
                // Subscribed with every watched room when it reconnects.
                return;
            }
            // Sent on its first poll, right after the count changed, so
            // subscribes and unsubscribes reach Redis in the counts' order.
            let subscribe = rb
                .redis
                .subscriber
                .ssubscribe(rb.redis.keys.room_channel(room));
            match Box::pin(tokio::time::timeout(SUBSCRIBE_WAIT, subscribe)).await {
                Ok(Ok(())) => Box::pin(self.start_listening(rb, room)).await,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, %room, "could not subscribe to the room's channel")
                }
                Err(_) => tracing::warn!(%room, "subscribing to the room's channel is taking long"),
            }
        }
    }

    /// The room's channel is subscribed: msgs from its current length on
    /// are for this node to deliver (a catch-up after a reconnect starts
    /// there). The ones before are in the joiner's sync, which follows its
    /// join ack; a msg the dispatcher delivered meanwhile keeps its place.
    async fn start_listening(&self, rb: &RedisBus, room: &str) {
        match rb.messages.page(room, u64::MAX, 0).await {
            Ok(page) => {
                let mut next = lock(&rb.next_seq);
                next.entry(room.to_owned()).or_insert(page.start);
            }
            Err(e) => tracing::warn!(error = %e, %room, "could not read the room's length"),
        }
    }

    /// A member of `room` on this node left.
    pub async fn unwatch(&self, room: &str) {
        let last = {
            let mut watched = lock(&self.watched);
            let Some(watch) = watched.get_mut(room) else {
                return;
            };
            watch.members = watch.members.saturating_sub(1);
            let last = watch.members == 0;
            if last {
                watched.remove(room);
            }
            last
        };
        let Some(rb) = &self.redis else { return };
        if last {
            {
                let mut next = lock(&rb.next_seq);
                next.remove(room);
            }
            let unsubscribe = rb
                .redis
                .subscriber
                .sunsubscribe(rb.redis.keys.room_channel(room));
            if let Ok(Err(e)) = Box::pin(tokio::time::timeout(SUBSCRIBE_WAIT, unsubscribe)).await {
                tracing::debug!(error = %e, %room, "could not unsubscribe");
            }
        }
    }

    /// Checks cross-node delivery end to end: publishes a probe on the
    /// control channel and waits to receive it back.
    pub async fn probe(&self) -> Result<(), String> {
        let Some(rb) = &self.redis else {
            return Ok(());
        };
        let nonce = rand::random::<u64>();
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut probes = lock(&rb.probes);
            probes.insert(nonce, tx);
        }
        let outcome = async {
            rb.redis
                .publish_control(&ControlFrame::Probe { nonce })
                .await
                .map_err(|e| e.to_string())?;
            tokio::time::timeout(PROBE_TIMEOUT, rx)
                .await
                .map_err(|_| "published probe not received back".to_owned())?
                .map_err(|e| e.to_string())
        }
        .await;
        {
            let mut probes = lock(&rb.probes);
            probes.remove(&nonce);
        }
        outcome
    }
}

/// Sends the kick to a session on this node; `false` if `sid` is not here.
pub fn kick_local(io: &SocketIo, sid: &str) -> bool {
    let Ok(parsed) = sid.parse() else {
        return false;
    };
    let Some(socket) = io.of("/").and_then(|ns| ns.get_socket(parsed)) else {
        return false;
    };
    if let Some(mailbox) = socket.extensions.get::<Mailbox>() {
        mailbox.inbox.signal(Control::Kick);
    }
    true
}

/// Delivers every frame published on a channel this node listens on, and
/// after a reconnect what the watched rooms stored meanwhile; one task, so
/// the record of delivered seqs has one writer (besides the start each
/// room's first member here sets, [`Bus::watch`]).
async fn dispatch(bus: Arc<Bus>) {
    let Some(rb) = &bus.redis else { return };
    let control = rb.redis.keys.control_channel();
    let mut rx = rb.redis.subscriber.message_rx();
    loop {
        let message = tokio::select! {
            m = rx.recv() => match m {
                Ok(m) => m,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::error!(lost = n, "room events arrived faster than they were delivered");
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            () = rb.resubscribed.notified() => {
                rb.redis.commands_up(COMMAND_TIMEOUT).await;
                let msgs = catch_up(&bus, rb).await;
                let presence = catch_up_presence(&bus, rb).await;
                if msgs && presence {
                    rb.catch_up_retries.store(0, Ordering::Relaxed);
                } else if rb.catch_up_retries.fetch_add(1, Ordering::Relaxed) < CATCH_UP_TRIES {
                    catch_up_later(&bus);
                } else {
                    tracing::error!("gave up catching up after a reconnect: redis stays unreadable");
                    rb.catch_up_retries.store(0, Ordering::Relaxed);
                }
                continue;
            }
        };
        let Some(text) = message.value.as_str() else {
            continue;
        };
        if *message.channel == *control {
            match serde_json::from_str(&text) {
                Ok(ControlFrame::Kick { sid }) => {
                    kick_local(&bus.io, &sid);
                }
                Ok(ControlFrame::Probe { nonce }) => {
                    let waiter = lock(&rb.probes).remove(&nonce);
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(());
                    }
                }
                Err(e) => tracing::warn!(error = %e, "unreadable frame on the control channel"),
            }
            continue;
        }
        match serde_json::from_str::<RoomFrame<'_>>(&text) {
            Ok(frame) if frame.skip_node.as_deref() == Some(rb.node.as_str()) => {}
            Ok(frame) if frame.event == RESET_EVENT => {
                bus.history_cleared();
                forget(rb, &frame.room);
            }
            Ok(frame) if frame.event == event::MSG => deliver_msg(&bus, rb, &frame).await,
            Ok(frame) if event::is_presence(&frame.event) => {
                tell_presence(&bus, &frame);
            }
            Ok(frame) => {
                bus.emit_local(
                    &frame.room,
                    &frame.event,
                    frame.data,
                    frame.except.as_deref(),
                );
            }
            Err(e) => tracing::warn!(error = %e, "unreadable frame on a room channel"),
        }
    }
}

/// Tells this node's members of a presence change, unless it was told
/// already (read back from the room's presence log after a gap, then
/// arriving late, or the other way round).
fn tell_presence(bus: &Bus, frame: &RoomFrame<'_>) -> bool {
    if let Some(seq) = frame.presence {
        let first = lock(&bus.watched)
            .get_mut(&*frame.room)
            .map(|w| w.told.first_time(seq));
        if first != Some(true) {
            return false; // told, or no member here any more
        }
    }
    bus.emit_presence_local(
        &frame.room,
        &frame.event,
        frame.data,
        Order {
            seq: frame.presence,
            since: frame.since,
        },
        frame.except.as_deref(),
    );
    true
}

/// After a reconnect, tells each watched room's members here the presence
/// changes published while the subscriber was away, from the rooms'
/// presence logs: the ones after the earliest numbered join of a member
/// here that were not told yet. Returns `false` if a room's log could not
/// be read.
async fn catch_up_presence(bus: &Bus, rb: &RedisBus) -> bool {
    let rooms: Vec<(String, u64)> = lock(&bus.watched)
        .iter()
        .map(|(room, watch)| (room.clone(), watch.told.told_up_to()))
        .collect();
    let mut complete = true;
    for (room, told_up_to) in rooms {
        // Changes before every member's join are in their rosters.
        let Some(first_join) = bus.earliest_join(&room) else {
            continue;
        };
        let after = told_up_to.max(first_join);
        let frames = match rb.redis.presence_log(&room, after).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, %room, "could not read the room's presence log");
                complete = false;
                continue;
            }
        };
        let mut told = 0u64;
        for text in &frames {
            match serde_json::from_str::<RoomFrame<'_>>(text) {
                Ok(frame) if frame.skip_node.as_deref() == Some(rb.node.as_str()) => {}
                Ok(frame) => told += u64::from(tell_presence(bus, &frame)),
                Err(e) => tracing::warn!(error = %e, %room, "unreadable frame in a presence log"),
            }
        }
        if told > 0 {
            bus.metrics.presence_recovered.inc_by(told);
            tracing::warn!(%room, count = told, "told presence changes published while redis was unreachable");
        }
    }
    complete
}

/// The room's seqs start again from 0.
fn forget(rb: &RedisBus, room: &str) {
    {
        let mut next = lock(&rb.next_seq);
        next.remove(room);
    }
}

/// Delivers a published msg: first any stored ones this node missed before
/// it, and not at all if it was delivered already (from the store).
async fn deliver_msg(bus: &Bus, rb: &RedisBus, frame: &RoomFrame<'_>) {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: Option<u64>,
    }
    let seq = serde_json::from_str::<Seq>(frame.data.get())
        .ok()
        .and_then(|s| s.seq);
    if let Some(seq) = seq {
        let next = lock(&rb.next_seq).get(&*frame.room).copied();
        match next {
            Some(next) if seq < next => return,
            Some(next) if seq > next => {
                let missing = (seq - next) as usize;
                tracing::warn!(room = %frame.room, from = next, count = missing, "missed room events; delivering them from the store");
                rb.redis.commands_up(COMMAND_TIMEOUT).await;
                // Unreadable: those msgs are not relayed here (they are
                // stored; a sync returns them).
                let _ = deliver_stored(bus, rb, &frame.room, next, missing).await;
            }
            _ => {}
        }
        {
            let mut d = lock(&rb.next_seq);
            d.insert(frame.room.to_string(), seq + 1);
        }
    }
    bus.emit_local(&frame.room, event::MSG, frame.data, frame.except.as_deref());
}

/// Delivers up to `count` stored messages of `room` from seq `from` to
/// every member here but their senders, recording each as delivered;
/// returns how many there were, `None` if the store could not be read.
async fn deliver_stored(
    bus: &Bus,
    rb: &RedisBus,
    room: &str,
    from: u64,
    count: usize,
) -> Option<usize> {
    let page = match rb.messages.page(room, from, count).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the missed messages");
            return None;
        }
    };
    let n = page.items.len();
    for (i, entry) in page.items.into_iter().enumerate() {
        let sender =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(entry.body.get())
                .ok()
                .and_then(|m| m.get(crate::protocol::SENDER_KEY).cloned())
                .and_then(|v| crate::protocol::parse_id(&v).map(|u| u.key));
        let sent = bus.emit_local_but(room, event::MSG, &entry.body, |s| {
            let uid = s.extensions.get::<Authenticated>();
            matches!((&sender, uid), (Some(from), Some(uid)) if *from == uid.0)
        });
        bus.metrics.relay_recovered.inc_by(sent);
        {
            let mut d = lock(&rb.next_seq);
            d.insert(room.to_owned(), page.start + i as u64 + 1);
        }
    }
    Some(n)
}

/// After a reconnect, delivers what each watched room stored meanwhile.
/// Returns `false` if a room's store could not be read.
async fn catch_up(bus: &Bus, rb: &RedisBus) -> bool {
    let known: Vec<(String, u64)> = lock(&rb.next_seq)
        .iter()
        .map(|(r, s)| (r.clone(), *s))
        .collect();
    let mut complete = true;
    for (room, next) in known {
        // A history shorter than what was delivered was cleared while this
        // node was not listening (its reset frame was missed): start over,
        // or the new history's first messages would count as delivered.
        match rb.messages.page(&room, next, 0).await {
            Ok(page) if page.start < next => {
                tracing::warn!(%room, "room history was cleared while redis was unreachable");
                bus.history_cleared();
                forget(rb, &room);
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, %room, "could not read the room's history to catch up");
                complete = false;
                continue;
            }
        }
        match deliver_stored(bus, rb, &room, next, 10_000).await {
            Some(0) => {}
            Some(n) => {
                tracing::warn!(%room, count = n, "delivered room events stored while redis was unreachable")
            }
            None => complete = false,
        }
    }
    complete
}

/// Catches up again shortly: the subscriber can be back before the
/// command connection the catch-up reads through.
fn catch_up_later(bus: &Arc<Bus>) {
    let bus = bus.clone();
    tokio::spawn(async move {
        tokio::time::sleep(CATCH_UP_RETRY).await;
        if let Some(rb) = &bus.redis {
            rb.resubscribed.notify_one();
        }
    });
}

/// The uid a connection authenticated as, kept in its socket's extensions.
#[derive(Clone)]
pub struct Authenticated(pub String);

/// Subscribes again to every watched channel whenever the subscriber reconnects.
async fn resubscribe_on_reconnect(bus: Arc<Bus>) {
    let Some(rb) = &bus.redis else { return };
    let mut reconnects = rb.redis.subscriber.reconnect_rx();
    while reconnects.recv().await.is_ok() {
        let mut channels = vec![rb.redis.keys.control_channel()];
        {
            let watched = lock(&bus.watched);
            channels.extend(watched.keys().map(|room| rb.redis.keys.room_channel(room)));
        }
        tracing::info!(
            channels = channels.len(),
            "redis reconnected, subscribing again"
        );
        for channel in channels {
            if let Err(e) = rb.redis.subscriber.ssubscribe(channel).await {
                tracing::warn!(error = %e, "could not subscribe again");
            }
        }
        rb.resubscribed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Session handlers await these; every event's handler future is boxed
    /// and sized by the largest of them, so they must stay small.
    #[tokio::test]
    async fn the_futures_session_handlers_await_are_small() {
        let (_layer, io) = SocketIo::new_layer();
        let bus = Bus::local(io, Arc::new(Metrics::new()));
        let raw = serde_json::value::to_raw_value(&1).expect("encodes");
        let sizes = [
            std::mem::size_of_val(&bus.to_room("r", "msg", &raw, Some("s"))),
            std::mem::size_of_val(&bus.kick("s")),
            std::mem::size_of_val(&bus.watch("r")),
            std::mem::size_of_val(&bus.unwatch("r")),
        ];
        assert!(sizes.iter().all(|&s| s <= 256), "{sizes:?}");
    }
}
