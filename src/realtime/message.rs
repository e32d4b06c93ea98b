//! msg: validation, the sender stamp, storage and the relay to the room.

use std::sync::Arc;

use super::ack::AckSender;
use serde_json::value::RawValue;
use std::time::Instant;

use super::direct::unreachable_malformed;
use super::pending::PendingWrites;
use super::session::{Flow, Login, Phase, Session};
use crate::app::AppState;
use crate::logging::Chain;
use crate::protocol::{self, ack_status, event, reason, MsgAck, StampedMsg, StatusReply, Storage};
use crate::store::{NotStored, Stored, Write, WriteOp};

impl Session {
    pub(super) async fn msg(
        &mut self,
        data: Result<Box<RawValue>, String>,
        ack: AckSender,
    ) -> Flow {
        let metrics = self.state.metrics().clone();
        metrics.messages_received.inc();
        let refuse = |ack: AckSender, label: &'static str, reply: StatusReply<'_>| {
            metrics.dropped(label);
            let _ = ack.send(&reply);
            Flow::Continue
        };
        let Phase::Joined(Login { stamp, .. }, joined) = &self.phase else {
            return refuse(
                ack,
                "not_joined",
                StatusReply::fail(ack_status::NOT_JOINED, reason::NOT_JOINED),
            );
        };
        if joined.dummy {
            return refuse(
                ack,
                "dummy",
                StatusReply::fail(ack_status::DUMMY, reason::DUMMY_CANNOT_SEND),
            );
        }
        let Ok(payload) = data else {
            return refuse(
                ack,
                "malformed",
                StatusReply::fail(ack_status::BAD_REQUEST, reason::MALFORMED),
            );
        };
        let msg = match protocol::parse_msg(payload.get(), self.state.config().max_msg_bytes, stamp)
        {
            Ok(m) => m,
            Err(e) => return refuse(ack, e.metric_label(), e.reply()),
        };
        if !self.state.limits().room_takes(&joined.room).await {
            return refuse(
                ack,
                "room_rate_limit",
                StatusReply::fail(ack_status::TOO_MANY_REQUESTS, reason::TOO_MANY_REQUESTS),
            );
        }

        self.sends_msgs = true;
        let op = match msg.storage {
            Storage::Ignore if self.pending_writes.is_idle() => {
                // Nothing of this sender is still being stored: relay at
                // once, to every node's members.
                match RawValue::from_string(msg.body.into_string()) {
                    Ok(body) => {
                        self.state
                            .bus()
                            .to_room(&joined.room, event::MSG, &body, Some(&self.sid))
                            .await;
                        let _ = ack.send(&MsgAck {
                            status: 0,
                            seq: None,
                        });
                    }
                    Err(_) => return refuse(ack, "malformed", unreachable_malformed()),
                }
                return Flow::Continue;
            }
            // Waits behind this sender's earlier writes to keep send order.
            Storage::Ignore => WriteOp::Ignore,
            storage => match write_op(storage, msg.msg_id) {
                Some(op) => op,
                None => return Flow::Continue,
            },
        };
        // What waits for the store is bounded in bytes: this session's
        // writes (it waits, and so its reads pause) and the node's (a full
        // queue refuses).
        let bytes = write_weight(msg.body.as_str().len(), &joined.room, &self.sid);
        let session_max = self.state.config().session_writes_max_bytes;
        if self.pending_writes.bytes() + bytes > session_max {
            self.pending_writes
                .wait_bytes_below(session_max.saturating_sub(bytes))
                .await;
        }
        if !self.state.limits().store_reserve(bytes) {
            self.refusals.refused(&self.sid, "msg: store queue full");
            return refuse(
                ack,
                "store_queue_full",
                StatusReply::fail(ack_status::STORAGE_UNAVAILABLE, reason::STORAGE_UNAVAILABLE),
            );
        }
        let write = reserved_write(
            &self.state,
            &self.socket,
            &self.pending_writes,
            Reserved {
                room: joined.room.clone(),
                sid: &self.sid,
                op,
                body: msg.body,
                ack,
                bytes,
            },
        );
        if let Some(write) = self.state.messages().submit_now(write) {
            self.state.messages().submit(write).await;
        }
        Flow::Continue
    }
}

/// How a msg of `storage` is written; `None` for an update without a
/// msgId, which [`protocol::parse_msg`] refuses before.
pub(super) fn write_op(storage: Storage, msg_id: Option<String>) -> Option<WriteOp> {
    match (storage, msg_id) {
        (Storage::Insert, _) => Some(WriteOp::Insert),
        (Storage::Update, Some(msg_id)) => Some(WriteOp::Update { msg_id }),
        (Storage::Update, None) => None,
        (Storage::Ignore, _) => Some(WriteOp::Ignore),
    }
}

/// A msg whose bytes are reserved in the node's store queue, ready to be
/// written.
pub(super) struct Reserved<'a> {
    pub room: String,
    pub sid: &'a str,
    pub op: WriteOp,
    pub body: StampedMsg,
    pub ack: AckSender,
    /// [`write_weight`], reserved with [`crate::realtime::limits::Limits::store_reserve`].
    pub bytes: usize,
}

/// The store write of a reserved msg, counted as pending for its session
/// from now until its relay and ack went out.
pub(super) fn reserved_write(
    state: &Arc<AppState>,
    socket: &ao_socketio::Socket,
    pending: &Arc<PendingWrites>,
    msg: Reserved<'_>,
) -> Write {
    let relay = Relay {
        state: state.clone(),
        room: msg.room.clone(),
        sender: socket.clone(),
        ack: msg.ack,
        pending: pending.clone(),
        bytes: msg.bytes,
        started: Instant::now(),
    };
    pending.started(msg.bytes);
    Write {
        room: msg.room,
        op: msg.op,
        body: msg.body,
        sender: Some(msg.sid.to_owned()),
        done: Box::new(move |res| relay.complete(res)),
    }
}

/// What a msg waiting for the store holds, as the store queue's and the
/// session's byte bounds count it (`AO_STORE_QUEUE_MAX_BYTES`,
/// `AO_SESSION_WRITES_MAX_BYTES`): its stamped body, the write's record and
/// the boxed relay that waits for its completion, each carrying a copy of
/// the room id and the sender's id, and an allocation overhead for each of
/// those allocations ([`ao_socketio::held`]). An empty msg counts hundreds
/// of bytes, not none.
pub(super) fn write_weight(body: usize, room: &str, sender: &str) -> usize {
    ao_socketio::held::entry::<Write>(&[
        body,
        room.len(),
        sender.len(),
        std::mem::size_of::<Relay>(),
        room.len(),
        sender.len(),
    ])
}

/// What to do once the store has taken a message: relay it and ack the sender.
struct Relay {
    state: Arc<AppState>,
    room: String,
    /// The sender's socket (not relayed to).
    sender: ao_socketio::Socket,
    ack: AckSender,
    pending: Arc<PendingWrites>,
    /// The msg's bytes, reserved in the store's queue and the session's.
    bytes: usize,
    started: Instant,
}

/// The log lines of msgs the store refused.
static NOT_STORED: std::sync::Mutex<crate::store::RateLimited> =
    std::sync::Mutex::new(crate::store::RateLimited::new());

impl Relay {
    /// Runs in the store's completion order, so relays of one room go out in seq order.
    /// The write counts as pending until its relay and ack went out, so
    /// whatever waits for it (a leave, a sync, an ignore msg) comes after them.
    fn complete(self, res: Result<Stored, NotStored>) {
        // Released before the ack: once a client has its ack, the node's
        // store queue no longer counts the msg.
        self.state.limits().store_release(self.bytes);
        let bus = &self.state.bus();
        let metrics = &self.state.metrics();
        metrics.store_op("write", self.started);
        match res {
            Ok(stored) => {
                if stored.durable {
                    metrics.messages_stored.inc();
                }
                if !stored.published {
                    bus.emit_from(&self.sender, &self.room, event::MSG, &stored.body);
                }
                let _ = self.ack.send(&MsgAck {
                    status: 0,
                    seq: stored.seq,
                });
            }
            Err(failed) => {
                // One line per interval, however many msgs a failing store refuses.
                crate::sync::lock(&NOT_STORED).note(|msgs| {
                    tracing::error!(error = %Chain(&failed.error), msgs, "msgs not stored (this one and the others counted since the last such line)");
                });
                metrics.dropped("storage");
                if let Some(body) = &failed.relay_anyway {
                    bus.emit_from(&self.sender, &self.room, event::MSG, body);
                }
                let _ = self.ack.send(&StatusReply::fail(
                    ack_status::STORAGE_UNAVAILABLE,
                    reason::STORAGE_UNAVAILABLE,
                ));
            }
        }
        self.pending.finished(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_msg_waiting_for_the_store_weighs_what_it_holds() {
        let empty = write_weight(0, "r", "s");
        assert!(empty >= 250, "an empty msg counts {empty} bytes");
        assert_eq!(write_weight(1000, "r", "s"), empty + 1000 + 32);
    }
}
