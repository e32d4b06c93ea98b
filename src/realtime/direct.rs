//! The msg fast path: on a node without Redis, a msg that arrives while
//! its session waits with nothing queued is handled by the socket's event
//! handler itself, without waking the session's task: an ignore msg is
//! relayed and acked, an insert or update is handed to the embedded store
//! (which relays and acks it once it is durable, as for any msg). It keeps
//! its place after every event before it.

use std::sync::Arc;

use ao_socketio::Socket;

use super::ack::AckSender;

use super::message::{reserved_write, write_op, write_weight, Reserved};
use super::pending::PendingWrites;
use crate::app::AppState;
use crate::protocol::{
    self, ack_status, event, reason, MsgAck, SenderStamp, StampedMsg, StatusReply, Storage,
};
use crate::store::{NotStored, StoreError};
use serde_json::value::RawValue;

/// The reply to a stamped text that is not JSON, which cannot happen: it
/// is built from a checked payload.
pub(super) fn unreachable_malformed() -> StatusReply<'static> {
    StatusReply::fail(ack_status::BAD_REQUEST, reason::MALFORMED)
}

/// What handling a session's msgs takes, published by the session while
/// it is in a room and has nothing else going on, so that the socket's
/// event handler handles a msg itself instead of waking the session's
/// task for it ([`handle_directly`]).
pub(super) struct DirectRelay {
    pub room: String,
    pub sender: SenderStamp,
    pub pending: Arc<PendingWrites>,
    /// Whether stored msgs are handed to the store here too (it takes a
    /// write without waiting: [`crate::store::MessageStore::submits_now`]).
    pub stores: bool,
}

/// Relays an ignore msg to this node's members of the room and acks it
/// (nothing of its sender waits for the store).
fn relay_ignored(state: &AppState, socket: &Socket, room: &str, body: StampedMsg, ack: AckSender) {
    match RawValue::from_string(body.into_string()) {
        Ok(body) => {
            state.bus().emit_from(socket, room, event::MSG, &body);
            let _ = ack.send(&MsgAck {
                status: 0,
                seq: None,
            });
        }
        Err(_) => {
            state.metrics().dropped("malformed");
            let _ = ack.send(&unreachable_malformed());
        }
    }
}

/// Handles a msg where the client's event arrives, as the session would:
/// relays and acks an ignore msg, or submits an insert or update to the
/// store. `payload` is the event's first argument as sent (checked to be
/// JSON). Gives the ack back for the session when the msg is anything
/// else: refused, behind writes of this sender not yet completed
/// (an ignore msg), or one that would have to wait for room in this
/// session's or the node's store queue. Only for a node without Redis:
/// there a relay is a publish to await.
pub(super) fn handle_directly(
    state: &Arc<AppState>,
    socket: &Socket,
    direct: &DirectRelay,
    payload: &str,
    ack: AckSender,
) -> Result<(), AckSender> {
    if state.limits().rooms_limited() {
        // The room's count is kept by the session.
        return Err(ack);
    }
    let Ok(msg) = protocol::parse_msg(payload, state.config().max_msg_bytes, &direct.sender) else {
        return Err(ack);
    };
    if msg.storage == Storage::Ignore {
        if !direct.pending.is_idle() {
            return Err(ack);
        }
        state.metrics().messages_received.inc();
        relay_ignored(state, socket, &direct.room, msg.body, ack);
        return Ok(());
    }
    if !direct.stores {
        return Err(ack);
    }
    let Some(op) = write_op(msg.storage, msg.msg_id) else {
        return Err(ack);
    };
    let bytes = write_weight(msg.body.as_str().len(), &direct.room, socket.id());
    if direct.pending.bytes() + bytes > state.config().session_writes_max_bytes
        || !state.limits().store_reserve(bytes)
    {
        // The session waits for room, or refuses.
        return Err(ack);
    }
    state.metrics().messages_received.inc();
    let write = reserved_write(
        state,
        socket,
        &direct.pending,
        Reserved {
            room: direct.room.clone(),
            sid: socket.id(),
            op,
            body: msg.body,
            ack,
            bytes,
        },
    );
    if let Some(write) = state.messages().submit_now(write) {
        // Not for a store that takes writes at once, the only kind `stores` is set for.
        (write.done)(Err(NotStored::from(StoreError::Closed)));
    }
    Ok(())
}
