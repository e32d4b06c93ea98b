//! msg: validation, the sender stamp, storage and the relay to the room.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::Value;
use socketioxide::extract::AckSender;
use socketioxide::SocketIo;

use super::session::{Flow, Phase, Session};
use crate::protocol::{self, ack_status, event, reason, MsgAck, StatusReply, Storage, SENDER_KEY};
use crate::store::{StoreError, Stored, Write, WriteOp};

impl Session {
    pub(super) async fn msg(&mut self, data: Result<Value, String>, ack: AckSender) -> Flow {
        let refuse = |ack: AckSender, status, why| {
            let _ = ack.send(&StatusReply::fail(status, why));
            Flow::Continue
        };
        let Phase::Joined(joined) = &self.phase else {
            return refuse(ack, ack_status::NOT_JOINED, reason::NOT_JOINED);
        };
        if joined.dummy {
            return refuse(ack, ack_status::DUMMY, reason::DUMMY_CANNOT_SEND);
        }
        let Ok(payload) = data else {
            return refuse(ack, ack_status::BAD_REQUEST, reason::MALFORMED);
        };
        let size = encoded_len(&payload);
        let mut msg = match protocol::parse_msg(payload, size, self.hub.config.max_msg_bytes) {
            Ok(m) => m,
            Err(e) => {
                let _ = ack.send(&e.reply());
                return Flow::Continue;
            }
        };
        let Some(uid) = &self.uid else {
            return Flow::Continue;
        };
        msg.body.insert(SENDER_KEY.to_owned(), uid.json.clone());

        let op = match msg.storage {
            Storage::Insert => WriteOp::Insert,
            Storage::Update => match msg.msg_id {
                Some(msg_id) => WriteOp::Update { msg_id },
                None => return Flow::Continue,
            },
            Storage::Ignore => {
                if self.pending_writes.load(Ordering::Acquire) == 0 {
                    // Nothing of this sender is still being stored: relay at once.
                    self.to_room(&joined.channel, event::MSG, &msg.body).await;
                    let _ = ack.send(&MsgAck {
                        status: 0,
                        seq: None,
                    });
                    return Flow::Continue;
                }
                // Wait behind this sender's earlier writes to keep send order.
                WriteOp::Ignore
            }
        };
        let relay = Relay {
            io: self.hub.io.clone(),
            channel: joined.channel.clone(),
            sender: self.socket.id,
            ack,
            pending: self.pending_writes.clone(),
        };
        self.pending_writes.fetch_add(1, Ordering::AcqRel);
        self.hub
            .messages
            .submit(Write {
                room: joined.room.clone(),
                op,
                body: msg.body,
                done: Box::new(move |res| relay.complete(res)),
            })
            .await;
        Flow::Continue
    }
}

/// What to do once the store has taken a message: relay it and ack the sender.
struct Relay {
    io: SocketIo,
    channel: String,
    sender: socketioxide::socket::Sid,
    ack: AckSender,
    pending: Arc<AtomicUsize>,
}

impl Relay {
    /// Runs in the store's completion order, so relays of one room go out in seq order.
    fn complete(self, res: Result<Stored, StoreError>) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
        match res {
            Ok(stored) => {
                relay_local(&self.io, &self.channel, self.sender, &stored.body);
                let _ = self.ack.send(&MsgAck {
                    status: 0,
                    seq: stored.seq,
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "message not stored");
                let _ = self.ack.send(&StatusReply::fail(
                    ack_status::STORAGE_UNAVAILABLE,
                    reason::STORAGE_UNAVAILABLE,
                ));
            }
        }
    }
}

/// Emits `body` as `msg` to every socket of `channel` on this node but `except`.
fn relay_local(io: &SocketIo, channel: &str, except: socketioxide::socket::Sid, body: &RawValue) {
    for socket in io.to(channel.to_owned()).sockets() {
        if socket.id == except {
            continue;
        }
        if let Err(e) = socket.emit(event::MSG, body) {
            tracing::debug!(sid = %socket.id, error = %e, "relay dropped");
        }
    }
}

/// Length in bytes of `v`'s compact JSON encoding, without building it.
fn encoded_len(v: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter(0);
    match serde_json::to_writer(&mut c, v) {
        Ok(()) => c.0,
        Err(_) => usize::MAX,
    }
}
