//! The message handler of every socket ([`Enqueue`]): moves each event
//! into the session's inbox, synchronously, in arrival order, or relays an
//! ignore msg in place ([`super::direct`]).
//!
//! socketioxide runs every async message handler in a task of its own, so
//! two events of one socket may be handled out of order; this handler runs
//! synchronously instead. This is the one place that works around that
//! ordering.

use std::fmt;
use std::sync::Arc;

use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::Deserializer as _;
use serde_json::value::RawValue;
use serde_json::Value;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{AckSender, Event, TryData};
use socketioxide::handler::{FromMessageParts, MessageHandler};
use socketioxide::socket::Socket;

use super::direct::relay_directly;
use super::inbox::{Inbound, Inbox, Refused};
use super::AppState;
use crate::protocol::{ack_status, event, reason, StatusReply};

/// The message handler of every socket: moves each event into the session's
/// inbox, synchronously, in arrival order (see the module docs).
///
/// Implemented by hand rather than as a closure: socketioxide spawns a task
/// for every call of a closure handler, and this handler has nothing to await.
pub struct Enqueue {
    inbox: Arc<Inbox>,
    state: Arc<AppState>,
}

impl Enqueue {
    /// A handler that feeds `inbox`.
    pub fn new(inbox: Arc<Inbox>, state: Arc<AppState>) -> Self {
        Self { inbox, state }
    }
}

/// Marker for [`Enqueue`]'s `MessageHandler` implementation.
pub enum ViaQueue {}

impl MessageHandler<LocalAdapter, ViaQueue> for Enqueue {
    fn call(
        &self,
        s: Arc<Socket<LocalAdapter>>,
        mut v: socketioxide_core::Value,
        ack_id: Option<i64>,
    ) {
        let Some((event, data)) = event_and_payload(&s, &mut v, &ack_id) else {
            return;
        };
        let ack = match AckSender::from_message_parts(&s, &mut v, &ack_id) {
            Ok(ack) => ack,
            Err(never) => match never {},
        };
        let direct = if event == event::MSG {
            self.inbox.direct()
        } else {
            None
        };
        let (data, ack) = match direct {
            Some(direct) => match relay_directly(&self.state, &s, &direct, data, ack) {
                Ok(()) => return,
                Err(back) => back,
            },
            None => (data, ack),
        };
        let inbound = Box::new(Inbound { event, data, ack });
        let weight = inbound.weight();
        let state = &self.state;
        match self
            .inbox
            .push(inbound, weight, super::max_event_bytes(&state.config))
        {
            Ok(()) => {}
            Err(Refused::Overflow(inbound)) => {
                tracing::warn!(
                    sid = %s.id,
                    queued_bytes = self.inbox.queued_bytes(),
                    budget = state.config.inbound_max_bytes,
                    "disconnecting a client that kept sending past its inbound budget"
                );
                state.metrics.dropped("inbound_overflow");
                state.metrics.disconnected("inbound_overflow");
                let _ = inbound.ack.send(&StatusReply::fail(
                    ack_status::TOO_MANY_REQUESTS,
                    reason::TOO_MANY_REQUESTS,
                ));
                if let Err(e) = s.disconnect() {
                    tracing::debug!(error = %e, "disconnect failed");
                }
            }
            Err(Refused::Overflowed(inbound)) => {
                // Counted, not logged again: the connection is being closed.
                state.metrics.dropped("inbound_overflow");
                let _ = inbound.ack.send(&StatusReply::fail(
                    ack_status::TOO_MANY_REQUESTS,
                    reason::TOO_MANY_REQUESTS,
                ));
            }
        }
    }
}

/// The event name and first argument of an event packet, or `None` if it is
/// not an event.
///
/// The argument is kept as JSON text: a `msg` is relayed as sent, and other
/// events decode what they read. An event with binary attachments goes
/// through socketioxide's decoder, which puts the attachments in place.
fn event_and_payload(
    s: &Arc<Socket<LocalAdapter>>,
    v: &mut socketioxide_core::Value,
    ack_id: &Option<i64>,
) -> Option<(String, Result<Box<RawValue>, String>)> {
    match v {
        socketioxide_core::Value::Str(text, bins) if bins.as_ref().is_none_or(|b| b.is_empty()) => {
            split_event(text.as_str()).ok()
        }
        _ => {
            let Event(event) = Event::from_message_parts(s, v, ack_id).ok()?;
            let data = match TryData::<Value>::from_message_parts(s, v, ack_id) {
                Ok(TryData(Ok(v))) => {
                    serde_json::value::to_raw_value(&v).map_err(|e| e.to_string())
                }
                Ok(TryData(Err(e))) => Err(e.to_string()),
                Err(never) => match never {},
            };
            Some((event, data))
        }
    }
}

/// Splits an event packet's `["event", arg, ...]` into the event name and
/// the first argument's text, in one pass. Done here rather than with
/// socketioxide's `TryData<Box<RawValue>>`, which returns the whole array
/// instead of the argument (socketioxide-parser-common 0.17).
fn split_event(text: &str) -> serde_json::Result<(String, Result<Box<RawValue>, String>)> {
    struct Args;
    impl<'de> Visitor<'de> for Args {
        type Value = (String, Result<Box<RawValue>, String>);
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an event array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            use serde::de::Error;
            let event: String = seq
                .next_element()?
                .ok_or_else(|| A::Error::custom("event name not found"))?;
            let data = seq
                .next_element::<Box<RawValue>>()?
                .ok_or_else(|| "first element not found".to_owned());
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok((event, data))
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let args = (&mut de).deserialize_seq(Args)?;
    de.end()?;
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Option<(String, Result<String, String>)> {
        split_event(text)
            .ok()
            .map(|(e, d)| (e, d.map(|r| r.get().to_owned())))
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
