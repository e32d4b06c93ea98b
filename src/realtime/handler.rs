//! The message handler of every socket ([`Enqueue`]): moves each event
//! into the session's inbox, synchronously, in arrival order, or handles a
//! msg in place ([`super::direct`]).
//!
//! The socket.io layer calls it synchronously, in the order the client
//! sent its events; nothing here waits.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use ao_socketio::socket::packet::first_argument;
use ao_socketio::{DisconnectReason, Event, Socket};
use serde_json::value::RawValue;

use super::ack::AckSender;
use super::direct::handle_directly;
use super::inbox::{Control, Inbound, Inbox, Refused, PRE_AUTH_MAX_EVENT};
use crate::app::AppState;
use crate::client_log::Clipped;
use crate::protocol::{ack_status, event, reason, StatusReply};
use crate::rate::Bucket;

/// The message handler of every socket: moves each event into the session's
/// inbox, synchronously, in arrival order (see the module docs).
pub(super) struct Enqueue {
    inbox: Arc<Inbox>,
    state: Arc<AppState>,
    /// The connection's msg allowance, when `AO_MSG_RATE` is set.
    msgs: Option<Mutex<Bucket>>,
}

impl Enqueue {
    /// A handler that feeds `inbox`.
    pub(super) fn new(inbox: Arc<Inbox>, state: Arc<AppState>) -> Self {
        let msgs = state
            .limits()
            .msg()
            .map(|limit| Mutex::new(Bucket::full(limit, Instant::now())));
        Self { inbox, state, msgs }
    }

    /// Takes a msg from the connection's allowance; false when it is used up.
    fn msg_allowed(&self) -> bool {
        match (&self.msgs, self.state.limits().msg()) {
            (Some(bucket), Some(limit)) => crate::sync::lock(bucket).take(limit, Instant::now()),
            _ => true,
        }
    }

    /// Refuses an event before it is queued: counted, and answered when the
    /// client asked for an ack.
    fn refuse(&self, ack: AckSender, label: &'static str, status: u8, why: &'static str) {
        self.state.metrics().dropped(label);
        let _ = ack.send(&StatusReply::fail(status, why));
    }
}

/// Why an event with binary attachments has no payload: the protocol's
/// payloads are JSON.
const BINARY_REFUSED: &str = "binary payloads are not accepted";
/// Why an event without arguments has no payload.
const NO_ARGUMENT: &str = "first element not found";

impl ao_socketio::Handler for Enqueue {
    fn event(&self, s: &Socket, ev: Event<'_>) {
        // Only the first argument is read; the socket.io layer checked the
        // whole array.
        let first = if ev.attachments.is_empty() {
            first_argument(ev.args).ok_or(NO_ARGUMENT)
        } else {
            Err(BINARY_REFUSED)
        };
        let event = &*ev.name;
        let mut ack = AckSender::new(ev.ack);
        if !self.inbox.is_authenticated() {
            let weight = event.len() + first.map_or(0, str::len);
            if weight > PRE_AUTH_MAX_EVENT {
                // Before authentication a connection holds next to nothing,
                // and a client that sends more is not one of ours: it is
                // answered, logged once (clipped) and disconnected.
                tracing::info!(
                    sid = %s.id(),
                    event = ?Clipped(event),
                    bytes = weight,
                    "oversize event before authentication; disconnecting"
                );
                self.refuse(
                    ack,
                    "unauthenticated",
                    ack_status::NOT_JOINED,
                    reason::NOT_AUTHENTICATED,
                );
                self.state.metrics().disconnected("oversize_before_auth");
                if event == event::AUTHENTICATE {
                    self.state.metrics().auth_failed("wrong_credentials");
                    let _ = s.emit(
                        event::AUTHENTICATE,
                        &StatusReply::fail(1, reason::AUTH_FAILED),
                    );
                }
                s.disconnect();
                return;
            }
        }
        if event == event::MSG && !self.msg_allowed() {
            self.refuse(
                ack,
                "rate_limit",
                ack_status::TOO_MANY_REQUESTS,
                reason::TOO_MANY_REQUESTS,
            );
            return;
        }
        if event == event::MSG {
            if let (Some(direct), Ok(payload)) = (self.inbox.direct(), first) {
                match handle_directly(&self.state, s, &direct, payload, ack) {
                    Ok(()) => return,
                    Err(back) => ack = back,
                }
            }
        }
        let data = first
            .map_err(str::to_owned)
            .and_then(|text| RawValue::from_string(text.to_owned()).map_err(|e| e.to_string()));
        let inbound = Box::new(Inbound {
            event: event.to_owned(),
            data,
            ack,
        });
        let weight = inbound.weight();
        let state = &self.state;
        match self
            .inbox
            .push(inbound, weight, super::max_event_bytes(state.config()))
        {
            Ok(()) => {}
            Err(Refused::Overflow(inbound)) => {
                tracing::warn!(
                    sid = %s.id(),
                    queued_bytes = self.inbox.queued_bytes(),
                    budget = state.config().inbound_max_bytes,
                    "disconnecting a client that kept sending past its inbound budget"
                );
                state.metrics().dropped("inbound_overflow");
                state.metrics().disconnected("inbound_overflow");
                let _ = inbound.ack.send(&StatusReply::fail(
                    ack_status::TOO_MANY_REQUESTS,
                    reason::TOO_MANY_REQUESTS,
                ));
                s.disconnect();
            }
            Err(Refused::Overflowed(inbound)) => {
                // Counted, not logged again: the connection is being closed.
                state.metrics().dropped("inbound_overflow");
                let _ = inbound.ack.send(&StatusReply::fail(
                    ack_status::TOO_MANY_REQUESTS,
                    reason::TOO_MANY_REQUESTS,
                ));
            }
        }
    }

    fn disconnect(&self, s: &Socket, reason: DisconnectReason) {
        self.inbox.signal(Control::Closed);
        if reason == DisconnectReason::SlowClient {
            self.state.metrics().disconnected("slow_client");
        }
        tracing::info!(sid = %s.id(), %reason, "connection closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event's data as the socket.io layer checks and splits it, then
    /// as this handler reads it.
    fn split(text: &str) -> Option<(String, Result<String, String>)> {
        let (name, args) = ao_socketio::socket::packet::split_event(text).ok()?;
        let first = first_argument(args).map(str::to_owned).ok_or(NO_ARGUMENT);
        Some((name.into_owned(), first.map_err(str::to_owned)))
    }

    #[test]
    fn the_first_argument_is_split_off_as_sent() {
        assert_eq!(
            split(r#"["msg",{"data":[1, 2.50]},"extra",3]"#),
            Some(("msg".into(), Ok(r#"{"data":[1, 2.50]}"#.into())))
        );
        assert_eq!(
            split(r#"[ "join" , {"roomId":1} ]"#),
            Some(("join".into(), Ok(r#"{"roomId":1}"#.into())))
        );
        assert_eq!(
            split(r#"["m\u0073g",null]"#),
            Some(("msg".into(), Ok("null".into())))
        );
    }

    #[test]
    fn a_missing_argument_or_event_is_told_apart() {
        assert!(matches!(split(r#"["leave"]"#), Some((e, Err(_))) if e == "leave"));
        assert_eq!(split("[]"), None);
        assert_eq!(split("[1,{}]"), None);
        assert_eq!(split(r#"{"msg":1}"#), None);
        assert_eq!(split(r#"["msg",{}"#), None);
        assert_eq!(split(r#"["msg",{}] x"#), None);
    }
}
