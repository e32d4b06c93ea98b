//! Room events across nodes, over Redis sharded pub/sub.
//!
//! Every room event is published on the room's Redis channel (stored
//! messages by the store's write script itself, in the same atomic step as
//! the write), and each node emits what arrives to its own members of the
//! room, through [`LocalRooms`]; a node listens on the channels of the rooms
//! it has members in. Publishing everything of a room through one channel
//! keeps one order for all nodes: a member's `remote_leave` comes after its
//! last messages everywhere.
//!
//! Pub/sub delivers at most once: a frame published while a node's
//! subscriber was reconnecting never reaches it. Each node therefore tracks
//! the seq of the next msg to deliver per room (from the room's length when
//! it starts listening) and, seeing a later one arrive or after a
//! reconnect, first delivers the ones in between from the store. Presence
//! changes are kept in a short log per room as they are published; after a
//! reconnect a node tells its members the ones it has not told yet.
//!
//! Nothing here publishes a msg: the store's script publishes it in the
//! same step that numbers it, so a room's channel carries its msgs in seq
//! order whichever nodes append to it; this side subscribes and delivers.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use serde_json::value::RawValue;

use crate::logging::Chain;
use crate::metrics::Metrics;
use crate::protocol::event;
use crate::redis::{
    ControlFrame, FrameTags, Redis, RedisError, RoomFrame, COMMAND_TIMEOUT, RESET_EVENT,
};
use crate::store::MessageStore;
use crate::sync::lock;

/// What the pub/sub side asks of this node's members of rooms (the
/// realtime side implements it).
pub(crate) trait LocalRooms: Send + Sync + 'static {
    /// Emits `ev` to this node's members of `room` but connection
    /// `except`; returns how many it was sent to.
    fn emit(&self, room: &str, ev: &str, data: &RawValue, except: Option<&str>) -> u64;
    /// Emits a msg read back from the store to this node's members of
    /// `room` but the sender's connections (`sender_uid`, a uid key).
    fn emit_recovered(&self, room: &str, data: &RawValue, sender_uid: Option<&str>) -> u64;
    /// Tells this node's members of `room` but `origin` of presence change
    /// number `seq` (numbered since `since`), unless they were told it
    /// already; `false` when they were.
    fn tell_presence(
        &self,
        room: &str,
        ev: &str,
        data: &RawValue,
        seq: Option<u64>,
        since: Option<u64>,
        origin: Option<&str>,
    ) -> bool;
    /// The rooms with members on this node.
    fn rooms(&self) -> Vec<String>;
    /// The rooms with members on this node, with what they were told.
    fn watched(&self) -> Vec<WatchedRoom>;
    /// Kicks out connection `sid` if it is on this node; `false` if not.
    fn kick(&self, sid: &str) -> bool;
    /// A room's history was cleared.
    fn history_cleared(&self);
}

/// A room with members on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WatchedRoom {
    pub room: String,
    /// The highest numbered presence change told here.
    pub told_up_to: u64,
    /// The lowest number of a numbered join among the members here.
    pub earliest_join: Option<u64>,
}

/// How long a join waits for its room's channel to be subscribed.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(1);

/// How long after a catch-up that could not read everything it is tried
/// again, and how many times.
const CATCH_UP_RETRY: Duration = Duration::from_millis(500);
const CATCH_UP_TRIES: u32 = 20;

/// How long a readiness probe waits to hear itself back.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// This node's end of the rooms' channels.
pub(crate) struct PubSub {
    redis: Redis,
    /// This node's id (frames may be for every node but one).
    node: String,
    messages: Arc<dyn MessageStore>,
    metrics: Arc<Metrics>,
    local: Arc<dyn LocalRooms>,
    /// Room → the seq of the next msg to deliver on this node (gaps are
    /// filled from the store).
    next_seq: Mutex<HashMap<String, u64>>,
    /// Signals the dispatcher that the subscriber is listening again.
    resubscribed: tokio::sync::Notify,
    /// Catch-ups tried again in a row since the last complete one.
    catch_up_retries: AtomicU32,
    /// Readiness probes waiting to hear themselves back.
    probes: Mutex<HashMap<u64, tokio::sync::oneshot::Sender<()>>>,
}

impl PubSub {
    /// Subscribes to the control channel (kicks and readiness probes for
    /// this node), before [`PubSub::start`].
    pub(crate) async fn listen(redis: &Redis) -> Result<(), RedisError> {
        redis
            .subscriber
            .ssubscribe(redis.keys.control_channel())
            .await?;
        Ok(())
    }

    /// Starts the tasks that deliver what other nodes publish to `local`
    /// (the subscriber [listens](PubSub::listen) already).
    pub(crate) fn start(
        redis: Redis,
        node: String,
        messages: Arc<dyn MessageStore>,
        metrics: Arc<Metrics>,
        local: Arc<dyn LocalRooms>,
    ) -> Arc<PubSub> {
        let pubsub = Arc::new(PubSub {
            redis,
            node,
            messages,
            metrics,
            local,
            next_seq: Mutex::new(HashMap::new()),
            resubscribed: tokio::sync::Notify::new(),
            catch_up_retries: AtomicU32::new(0),
            probes: Mutex::new(HashMap::new()),
        });
        tokio::spawn(dispatch(pubsub.clone()));
        tokio::spawn(resubscribe_on_reconnect(pubsub.clone()));
        pubsub
    }

    /// Publishes a room event for every node's members (the tags say which).
    ///
    /// The Redis client's futures are kilobytes: returned boxed (and boxed
    /// in kick, subscribe and unsubscribe) so that the session handlers
    /// awaiting these stay small, since a session boxes one handler future
    /// per event.
    pub(crate) fn publish<'a>(
        &'a self,
        room: &'a str,
        ev: &'a str,
        data: &'a RawValue,
        tags: FrameTags<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), RedisError>> + Send + 'a>> {
        Box::pin(self.redis.publish_room(room, ev, data.get(), tags))
    }

    /// Tells the node that holds connection `sid` to kick it out.
    pub(crate) async fn publish_kick(&self, sid: &str) {
        let kick = ControlFrame::Kick {
            sid: sid.to_owned(),
        };
        if let Err(e) = Box::pin(self.redis.publish_control(&kick)).await {
            tracing::warn!(error = %Chain(&e), %sid, "could not send kickout to another node");
        }
    }

    /// Listens on `room`'s channel (the room's first member here joined).
    /// While Redis is unreachable it does not wait: the channel is
    /// subscribed when Redis is back.
    pub(crate) async fn subscribe(&self, room: &str) {
        if !self.redis.subscriber.is_connected() {
            // Subscribed with every watched room when it reconnects.
            return;
        }
        // Sent on its first poll, right after the member count changed, so
        // subscribes and unsubscribes reach Redis in the counts' order.
        let subscribe = self
            .redis
            .subscriber
            .ssubscribe(self.redis.keys.room_channel(room));
        match Box::pin(tokio::time::timeout(SUBSCRIBE_WAIT, subscribe)).await {
            Ok(Ok(())) => Box::pin(self.start_listening(room)).await,
            Ok(Err(e)) => {
                tracing::warn!(error = %Chain(&e), ?room, "could not subscribe to the room's channel")
            }
            Err(_) => tracing::warn!(?room, "subscribing to the room's channel is taking long"),
        }
    }

    /// The room's channel is subscribed: msgs from its current length on
    /// are for this node to deliver (a catch-up after a reconnect starts
    /// there). The ones before are in the joiner's sync, which follows its
    /// join ack; a msg the dispatcher delivered meanwhile keeps its place.
    async fn start_listening(&self, room: &str) {
        match self.messages.page(room, u64::MAX, 0, 0).await {
            Ok(page) => {
                lock(&self.next_seq)
                    .entry(room.to_owned())
                    .or_insert(page.start);
            }
            Err(e) => tracing::warn!(error = %Chain(&e), ?room, "could not read the room's length"),
        }
    }

    /// Stops listening on `room`'s channel (its last member here left).
    pub(crate) async fn unsubscribe(&self, room: &str) {
        lock(&self.next_seq).remove(room);
        let unsubscribe = self
            .redis
            .subscriber
            .sunsubscribe(self.redis.keys.room_channel(room));
        if let Ok(Err(e)) = Box::pin(tokio::time::timeout(SUBSCRIBE_WAIT, unsubscribe)).await {
            tracing::debug!(error = %Chain(&e), ?room, "could not unsubscribe");
        }
    }

    /// Checks cross-node delivery end to end: publishes a probe on the
    /// control channel and waits to receive it back.
    pub(crate) async fn probe(&self) -> Result<(), String> {
        let nonce = rand::random::<u64>();
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(&self.probes).insert(nonce, tx);
        let outcome = async {
            self.redis
                .publish_control(&ControlFrame::Probe { nonce })
                .await
                .map_err(|e| e.to_string())?;
            tokio::time::timeout(PROBE_TIMEOUT, rx)
                .await
                .map_err(|_| "published probe not received back".to_owned())?
                .map_err(|e| e.to_string())
        }
        .await;
        lock(&self.probes).remove(&nonce);
        outcome
    }

    /// The room's seqs start again from 0.
    fn forget(&self, room: &str) {
        lock(&self.next_seq).remove(room);
    }
}

/// Delivers every frame published on a channel this node listens on, and
/// after a reconnect what the watched rooms stored meanwhile; one task, so
/// the record of delivered seqs has one writer (besides the start each
/// room's first member here sets, [`PubSub::subscribe`]).
async fn dispatch(ps: Arc<PubSub>) {
    let control = ps.redis.keys.control_channel();
    let mut rx = ps.redis.subscriber.message_rx();
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
            () = ps.resubscribed.notified() => {
                ps.redis.commands_up(COMMAND_TIMEOUT).await;
                let msgs = catch_up(&ps).await;
                let presence = catch_up_presence(&ps).await;
                if msgs && presence {
                    ps.catch_up_retries.store(0, Ordering::Relaxed);
                } else if ps.catch_up_retries.fetch_add(1, Ordering::Relaxed) < CATCH_UP_TRIES {
                    catch_up_later(&ps);
                } else {
                    tracing::error!("gave up catching up after a reconnect: redis stays unreadable");
                    ps.catch_up_retries.store(0, Ordering::Relaxed);
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
                    ps.local.kick(&sid);
                }
                Ok(ControlFrame::Probe { nonce }) => {
                    let waiter = lock(&ps.probes).remove(&nonce);
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(());
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), "unreadable frame on the control channel")
                }
            }
            continue;
        }
        match serde_json::from_str::<RoomFrame<'_>>(&text) {
            Ok(frame) if frame.skip_node.as_deref() == Some(ps.node.as_str()) => {}
            Ok(frame) if frame.event == RESET_EVENT => {
                ps.local.history_cleared();
                ps.forget(&frame.room);
            }
            Ok(frame) if frame.event == event::MSG => deliver_msg(&ps, &frame).await,
            Ok(frame) if event::is_presence(&frame.event) => {
                tell_presence(&ps, &frame);
            }
            Ok(frame) => {
                ps.local.emit(
                    &frame.room,
                    &frame.event,
                    frame.data,
                    frame.except.as_deref(),
                );
            }
            Err(e) => tracing::warn!(error = %Chain(&e), "unreadable frame on a room channel"),
        }
    }
}

/// Tells this node's members of a presence change, unless it was told
/// already (read back from the room's presence log after a gap, then
/// arriving late, or the other way round).
fn tell_presence(ps: &PubSub, frame: &RoomFrame<'_>) -> bool {
    ps.local.tell_presence(
        &frame.room,
        &frame.event,
        frame.data,
        frame.presence,
        frame.since,
        frame.except.as_deref(),
    )
}

/// After a reconnect, tells each watched room's members here the presence
/// changes published while the subscriber was away, from the rooms'
/// presence logs: the ones after the earliest numbered join of a member
/// here that were not told yet. Returns `false` if a room's log could not
/// be read.
async fn catch_up_presence(ps: &PubSub) -> bool {
    let mut complete = true;
    for watched in ps.local.watched() {
        // Changes before every member's join are in their rosters.
        let Some(first_join) = watched.earliest_join else {
            continue;
        };
        let room = watched.room;
        let after = watched.told_up_to.max(first_join);
        let frames = match ps.redis.presence_log(&room, after).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %Chain(&e), ?room, "could not read the room's presence log");
                complete = false;
                continue;
            }
        };
        let mut told = 0u64;
        for text in &frames {
            match serde_json::from_str::<RoomFrame<'_>>(text) {
                Ok(frame) if frame.skip_node.as_deref() == Some(ps.node.as_str()) => {}
                Ok(frame) => told += u64::from(tell_presence(ps, &frame)),
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), ?room, "unreadable frame in a presence log")
                }
            }
        }
        if told > 0 {
            ps.metrics.presence_recovered.inc_by(told);
            tracing::warn!(
                ?room,
                count = told,
                "told presence changes published while redis was unreachable"
            );
        }
    }
    complete
}

/// Delivers a published msg: first any stored ones this node missed before
/// it, and not at all if it was delivered already (from the store).
async fn deliver_msg(ps: &PubSub, frame: &RoomFrame<'_>) {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: Option<u64>,
    }
    let seq = serde_json::from_str::<Seq>(frame.data.get())
        .ok()
        .and_then(|s| s.seq);
    if let Some(seq) = seq {
        let next = lock(&ps.next_seq).get(&*frame.room).copied();
        match next {
            Some(next) if seq < next => return,
            Some(next) if seq > next => {
                let missing = (seq - next) as usize;
                tracing::warn!(room = ?frame.room, from = next, count = missing, "missed room events; delivering them from the store");
                ps.redis.commands_up(COMMAND_TIMEOUT).await;
                // Unreadable: those msgs are not relayed here (they are
                // stored; a sync returns them).
                let _ = deliver_stored(ps, &frame.room, next, missing).await;
            }
            _ => {}
        }
        lock(&ps.next_seq).insert(frame.room.to_string(), seq + 1);
    }
    ps.local
        .emit(&frame.room, event::MSG, frame.data, frame.except.as_deref());
}

/// Messages read from the store at once when delivering missed ones.
const STORED_PAGE: usize = 200;
/// Bytes read from the store at once when delivering missed ones.
const STORED_PAGE_BYTES: usize = 4 << 20;

/// Delivers up to `count` stored messages of `room` from seq `from` to
/// every member here but their senders, recording each as delivered, a
/// page at a time; returns how many there were, `None` if the store could
/// not be read.
async fn deliver_stored(ps: &PubSub, room: &str, from: u64, count: usize) -> Option<usize> {
    let mut delivered = 0;
    let mut next = from;
    while delivered < count {
        let want = STORED_PAGE.min(count - delivered);
        let page = match ps.messages.page(room, next, want, STORED_PAGE_BYTES).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "could not read the missed messages");
                return None;
            }
        };
        let n = page.items.len();
        for (i, entry) in page.items.into_iter().enumerate() {
            let sender = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(
                entry.body.get(),
            )
            .ok()
            .and_then(|m| m.get(crate::protocol::SENDER_KEY).cloned())
            .and_then(|v| crate::protocol::parse_id(&v).map(|u| u.key));
            let sent = ps
                .local
                .emit_recovered(room, &entry.body, sender.as_deref());
            ps.metrics.relay_recovered.inc_by(sent);
            lock(&ps.next_seq).insert(room.to_owned(), page.start + i as u64 + 1);
        }
        delivered += n;
        next = page.start + n as u64;
        if n == 0 || !page.more {
            break;
        }
    }
    Some(delivered)
}

/// After a reconnect, delivers what each watched room stored meanwhile.
/// Returns `false` if a room's store could not be read.
async fn catch_up(ps: &PubSub) -> bool {
    let known: Vec<(String, u64)> = lock(&ps.next_seq)
        .iter()
        .map(|(r, s)| (r.clone(), *s))
        .collect();
    let mut complete = true;
    for (room, next) in known {
        // A history shorter than what was delivered was cleared while this
        // node was not listening (its reset frame was missed): start over,
        // or the new history's first messages would count as delivered.
        match ps.messages.page(&room, next, 0, 0).await {
            Ok(page) if page.start < next => {
                tracing::warn!(
                    ?room,
                    "room history was cleared while redis was unreachable"
                );
                ps.local.history_cleared();
                ps.forget(&room);
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %Chain(&e), ?room, "could not read the room's history to catch up");
                complete = false;
                continue;
            }
        }
        match deliver_stored(ps, &room, next, 10_000).await {
            Some(0) => {}
            Some(n) => {
                tracing::warn!(
                    ?room,
                    count = n,
                    "delivered room events stored while redis was unreachable"
                )
            }
            None => complete = false,
        }
    }
    complete
}

/// Catches up again shortly: the subscriber can be back before the
/// command connection the catch-up reads through.
fn catch_up_later(ps: &Arc<PubSub>) {
    let ps = ps.clone();
    tokio::spawn(async move {
        tokio::time::sleep(CATCH_UP_RETRY).await;
        ps.resubscribed.notify_one();
    });
}

/// Subscribes again to every watched channel whenever the subscriber reconnects.
async fn resubscribe_on_reconnect(ps: Arc<PubSub>) {
    let mut reconnects = ps.redis.subscriber.reconnect_rx();
    while reconnects.recv().await.is_ok() {
        let mut channels = vec![ps.redis.keys.control_channel()];
        channels.extend(
            ps.local
                .rooms()
                .iter()
                .map(|room| ps.redis.keys.room_channel(room)),
        );
        tracing::info!(
            channels = channels.len(),
            "redis reconnected, subscribing again"
        );
        for channel in channels {
            if let Err(e) = ps.redis.subscriber.ssubscribe(channel).await {
                tracing::warn!(error = %Chain(&e), "could not subscribe again");
            }
        }
        ps.resubscribed.notify_one();
    }
}
