//! The ignore-msg fast path: on a node without Redis, an ignore msg that
//! arrives while its session waits with nothing queued is relayed and
//! acked by the socket's event handler itself, without waking the session's
//! task; it keeps its place after every event before it.

use std::sync::Arc;

use ao_socketio::Socket;
use serde_json::value::RawValue;
use serde_json::Value;

use super::ack::AckSender;

use super::pending::PendingWrites;
use crate::app::AppState;
use crate::protocol::{self, ack_status, event, reason, MsgAck, StatusReply, Storage};

/// The reply to a stamped text that is not JSON, which cannot happen: it
/// is built from a checked payload.
pub(super) fn unreachable_malformed() -> StatusReply<'static> {
    StatusReply::fail(ack_status::BAD_REQUEST, reason::MALFORMED)
}

/// What relaying a session's msgs takes, published by the session while
/// it is in a room and has nothing else going on, so that the socket's
/// event handler relays an ignore msg itself instead of waking the
/// session's task for it ([`relay_directly`]).
pub(super) struct DirectRelay {
    pub room: String,
    /// The sender stamp: the uid as the client sent it.
    pub sender: Value,
    pub pending: Arc<PendingWrites>,
}

/// Relays an ignore msg and acks it, where the client's event arrives, as
/// the session would. Gives the payload and ack back for the session when
/// the msg is anything else: stored, refused, or behind writes of this
/// sender not yet completed. Only for a node without Redis: there a relay
/// is a publish to await.
pub(super) fn relay_directly(
    state: &AppState,
    socket: &Socket,
    direct: &DirectRelay,
    data: Result<Box<RawValue>, String>,
    ack: AckSender,
) -> Result<(), (Result<Box<RawValue>, String>, AckSender)> {
    let Ok(payload) = &data else {
        return Err((data, ack));
    };
    if state.limits().rooms_limited() {
        // The room's count is kept by the session.
        return Err((data, ack));
    }
    let msg = match protocol::parse_msg(payload, state.config().max_msg_bytes, &direct.sender) {
        Ok(msg) if msg.storage == Storage::Ignore && direct.pending.is_idle() => msg,
        _ => return Err((data, ack)),
    };
    state.metrics().messages_received.inc();
    match RawValue::from_string(msg.body.into_string()) {
        Ok(body) => {
            state
                .bus()
                .emit_from(socket, &direct.room, event::MSG, &body);
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
    Ok(())
}
