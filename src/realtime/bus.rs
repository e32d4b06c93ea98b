//! Where a session's room events go: this node's members ([`Fanout`]), and
//! in a cluster every node's, published on the room's Redis channel
//! ([`crate::cluster::pubsub`]), which delivers what arrives back through
//! this node's [`Fanout`]. When Redis cannot be reached, members on this
//! node still get every event.

use std::sync::Arc;

use ao_socketio::{Server, Socket};
use serde_json::value::RawValue;

pub(crate) use super::fanout::{kick_local, members_room, Fanout};
use super::presence::Order;
use crate::cluster::pubsub::{LocalRooms as _, PubSub};
use crate::logging::Chain;
use crate::metrics::Metrics;
use crate::redis::{FrameTags, Redis};
use crate::store::MessageStore;

/// Room events to this node's members, and in a cluster to every node's.
pub(crate) struct Bus {
    fanout: Arc<Fanout>,
    pubsub: Option<Arc<PubSub>>,
}

impl Bus {
    /// A bus for one node.
    pub(crate) fn local(io: Server, metrics: Arc<Metrics>) -> Arc<Bus> {
        Arc::new(Bus {
            fanout: Arc::new(Fanout::new(io, metrics)),
            pubsub: None,
        })
    }

    /// A bus over Redis; starts the tasks that deliver what other nodes
    /// publish (the subscriber [listens](PubSub::listen) already).
    pub(crate) fn redis(
        io: Server,
        metrics: Arc<Metrics>,
        redis: Redis,
        messages: Arc<dyn MessageStore>,
        node: String,
    ) -> Arc<Bus> {
        let fanout = Arc::new(Fanout::new(io, metrics.clone()));
        let pubsub = PubSub::start(redis, node, messages, metrics, fanout.clone());
        Arc::new(Bus {
            fanout,
            pubsub: Some(pubsub),
        })
    }

    /// Records that a room's history was cleared (here, or on another node).
    pub(crate) fn history_cleared(&self) {
        self.fanout.history_cleared();
    }

    /// How many room histories were cleared so far: a page read before the
    /// count changed may be of a cleared history.
    pub(crate) fn history_clears(&self) -> u64 {
        self.fanout.history_clears()
    }

    /// Emits `event` with `data` to every member of `room` on every node
    /// but `except`. When Redis cannot be reached, members on this node
    /// still get it.
    pub(crate) async fn to_room(
        &self,
        room: &str,
        ev: &str,
        data: &RawValue,
        except: Option<&str>,
    ) {
        if let Some(ps) = &self.pubsub {
            match ps.publish(room, ev, data, FrameTags::except(except)).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), event = ev, "publish failed, delivering on this node only");
                }
            }
        }
        self.fanout.emit_local(room, ev, data, except);
    }

    /// Tells the members of `room` on every node of a presence change
    /// (`remote_join`, `remote_leave`, `remote_disconnect`): each member
    /// `order` is for ([`super::presence`]), never `origin` (the member it
    /// is about). When Redis cannot be reached, members on this node are
    /// still told.
    pub(crate) async fn presence(
        &self,
        room: &str,
        ev: &str,
        data: &RawValue,
        order: Order,
        origin: &str,
    ) {
        if let Some(ps) = &self.pubsub {
            let tags = FrameTags {
                except: Some(origin),
                presence: order.seq,
                since: order.since,
                ..FrameTags::default()
            };
            match ps.publish(room, ev, data, tags).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), event = ev, "publish failed, telling members on this node only");
                }
            }
        }
        self.fanout
            .emit_presence_local(room, ev, data, order, Some(origin));
    }

    /// Emits to one socket ([`Fanout::emit_to`]).
    pub(crate) fn emit_to(&self, socket: &Socket, ev: &str, data: &RawValue) -> bool {
        self.fanout.emit_to(socket, ev, data)
    }

    /// Emits to this node's members of `room` but `sender` ([`Fanout::emit_from`]).
    pub(crate) fn emit_from(&self, sender: &Socket, room: &str, ev: &str, data: &RawValue) -> u64 {
        self.fanout.emit_from(sender, room, ev, data)
    }

    /// Whether room events stay on this node (no Redis): then emitting
    /// never waits.
    pub(crate) fn is_local_only(&self) -> bool {
        self.pubsub.is_none()
    }

    /// Tells connection `sid`, on whichever node holds it, to send
    /// `kickout` and close.
    pub(crate) async fn kick(&self, sid: &str) {
        if self.fanout.kick(sid) {
            return;
        }
        if let Some(ps) = &self.pubsub {
            ps.publish_kick(sid).await;
        }
    }

    /// A member of `room` joined on this node: in a cluster, listen on the
    /// room's channel (before the join is confirmed, so nothing published
    /// after it is missed).
    pub(crate) async fn watch(&self, room: &str) {
        let first = self.fanout.watch(room);
        if let (true, Some(ps)) = (first, &self.pubsub) {
            ps.subscribe(room).await;
        }
    }

    /// A member of `room` on this node left.
    pub(crate) async fn unwatch(&self, room: &str) {
        let last = self.fanout.unwatch(room);
        if let (true, Some(ps)) = (last, &self.pubsub) {
            ps.unsubscribe(room).await;
        }
    }

    /// Checks cross-node delivery end to end (always fine on one node).
    pub(crate) async fn probe(&self) -> Result<(), String> {
        match &self.pubsub {
            Some(ps) => ps.probe().await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Session handlers await these; every event's handler future is boxed
    /// and sized by the largest of them, so they must stay small.
    #[tokio::test]
    async fn the_futures_session_handlers_await_are_small() {
        let io = Server::new(
            ao_socketio::Config::default(),
            super::super::Sessions::new(std::sync::Weak::new()),
        );
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
