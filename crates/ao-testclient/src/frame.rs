//! engine.io text frames and the socket.io packets they carry, both
//! directions: what the websocket transport sends, one packet per frame.
//!
//! An engine.io text frame is one type digit and a payload: `0` open (JSON
//! handshake), `1` close, `2` ping, `3` pong, `4` message, `5` upgrade, `6`
//! noop. A message carries a socket.io packet: type digit, optional namespace
//! (`/chat,`), optional ack id (digits), then JSON; `42["name",{..}]` is an
//! event, `43<id>[..]` an ack, `40` connect, `41` disconnect, `44` an error.
//!
//! The functions the load generator calls for every frame are `#[inline]`:
//! without link-time optimisation a function of another crate is not inlined
//! otherwise, and its hot loop must not pay for the codec living here.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// engine.io protocol generation, chosen with `EIO=` in the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Eio {
    /// engine.io 3 (socket.io-client 2.x): the server connects the default
    /// namespace by itself (`40`); the client pings (`2`), the server answers `3`.
    #[cfg_attr(feature = "clap", value(name = "3"))]
    V3,
    /// engine.io 4 (socket.io-client 3.x/4.x): the client sends `40`, the
    /// server answers `40{"sid":..}`; the server pings, the client answers `3`.
    #[cfg_attr(feature = "clap", value(name = "4"))]
    V4,
}

impl Eio {
    /// The request path and query of a websocket connection of this generation.
    pub fn path(self) -> &'static str {
        match self {
            Eio::V3 => "/socket.io/?EIO=3&transport=websocket",
            Eio::V4 => "/socket.io/?EIO=4&transport=websocket",
        }
    }

    /// The generation named by a request's query string (`EIO=3`); 4 when absent.
    pub fn from_query(query: Option<&str>) -> Eio {
        let eio3 = query.unwrap_or("").split('&').any(|kv| kv == "EIO=3");
        if eio3 {
            Eio::V3
        } else {
            Eio::V4
        }
    }

    /// Whether the client sends the pings (engine.io 3) rather than the server.
    pub fn client_pings(self) -> bool {
        self == Eio::V3
    }
}

impl fmt::Display for Eio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Eio::V3 => "3",
            Eio::V4 => "4",
        })
    }
}

/// engine.io ping frame.
pub const PING: &str = "2";
/// engine.io pong frame.
pub const PONG: &str = "3";
/// socket.io connect to the default namespace (client → server, and the
/// server's reply under engine.io 3).
pub const CONNECT: &str = "40";

/// A decoded engine.io text frame, borrowing from the frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0{...}`: the handshake JSON.
    Open(&'a str),
    /// `1`.
    Close,
    /// `2` (the payload is usually empty, `probe` during upgrades).
    Ping(&'a str),
    /// `3`.
    Pong(&'a str),
    /// `4...`: a socket.io packet.
    Message(SioPacket<'a>),
    /// `5`.
    Upgrade,
    /// `6`.
    Noop,
}

/// A decoded socket.io packet.
#[derive(Debug, PartialEq, Eq)]
pub enum SioPacket<'a> {
    /// `0`: connect; `data` is the JSON after it (`{"sid":..}`), possibly empty.
    Connect {
        /// Namespace (`/` when absent).
        nsp: &'a str,
        /// Connect payload, possibly empty.
        data: &'a str,
    },
    /// `1`: disconnect.
    Disconnect {
        /// Namespace.
        nsp: &'a str,
    },
    /// `2`: event; `data` is the JSON array `["name", args..]`.
    Event {
        /// Namespace.
        nsp: &'a str,
        /// Ack id the sender asks to be answered with.
        ack: Option<u64>,
        /// The JSON array.
        data: &'a str,
    },
    /// `3`: ack; `data` is the JSON array of the reply's arguments.
    Ack {
        /// Namespace.
        nsp: &'a str,
        /// The ack id being answered.
        id: u64,
        /// The JSON array.
        data: &'a str,
    },
    /// `4`: connect error (engine.io 4) or error (engine.io 3).
    Error {
        /// Namespace.
        nsp: &'a str,
        /// The error payload.
        data: &'a str,
    },
    /// `5` or `6`: binary event or ack (its attachments follow in binary
    /// frames); not decoded further.
    Binary,
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad engine.io frame: {0}")]
pub struct FrameError(pub &'static str);

/// Decodes one engine.io text frame.
#[inline]
pub fn decode(frame: &str) -> Result<Packet<'_>, FrameError> {
    let mut chars = frame.char_indices();
    let Some((_, kind)) = chars.next() else {
        return Err(FrameError("empty frame"));
    };
    let rest = &frame[kind.len_utf8()..];
    match kind {
        '0' => Ok(Packet::Open(rest)),
        '1' => Ok(Packet::Close),
        '2' => Ok(Packet::Ping(rest)),
        '3' => Ok(Packet::Pong(rest)),
        '4' => decode_sio(rest).map(Packet::Message),
        '5' => Ok(Packet::Upgrade),
        '6' => Ok(Packet::Noop),
        _ => Err(FrameError("unknown engine.io packet type")),
    }
}

#[inline]
fn decode_sio(s: &str) -> Result<SioPacket<'_>, FrameError> {
    let bytes = s.as_bytes();
    let Some(&kind) = bytes.first() else {
        return Err(FrameError("empty socket.io packet"));
    };
    let mut rest = &s[1..];
    // Binary packets carry an attachment count and '-' before anything else.
    if kind == b'5' || kind == b'6' {
        return Ok(SioPacket::Binary);
    }
    let mut nsp = "/";
    if rest.starts_with('/') {
        match rest.find(',') {
            Some(comma) => {
                nsp = &rest[..comma];
                rest = &rest[comma + 1..];
            }
            None => {
                nsp = rest;
                rest = "";
            }
        }
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ack = if digits > 0 {
        let id = rest[..digits]
            .parse::<u64>()
            .map_err(|_| FrameError("ack id out of range"))?;
        rest = &rest[digits..];
        Some(id)
    } else {
        None
    };
    match kind {
        b'0' => Ok(SioPacket::Connect { nsp, data: rest }),
        b'1' => Ok(SioPacket::Disconnect { nsp }),
        b'2' => Ok(SioPacket::Event {
            nsp,
            ack,
            data: rest,
        }),
        b'3' => match ack {
            Some(id) => Ok(SioPacket::Ack {
                nsp,
                id,
                data: rest,
            }),
            None => Err(FrameError("ack without id")),
        },
        b'4' => Ok(SioPacket::Error { nsp, data: rest }),
        _ => Err(FrameError("unknown socket.io packet type")),
    }
}

/// An event's name and first argument, borrowed from the event's JSON array.
#[derive(Debug)]
pub struct EventArgs<'a> {
    /// The event name (owned only when it contains escapes).
    pub name: Cow<'a, str>,
    /// The first argument, if any; further arguments are skipped.
    pub arg: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for EventArgs<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EventArgs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a socket.io event array [\"name\", args..]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                #[derive(Deserialize)]
                struct Name<'a>(#[serde(borrow)] Cow<'a, str>);
                let Some(Name(name)) = seq.next_element::<Name<'de>>()? else {
                    return Err(serde::de::Error::invalid_length(0, &self));
                };
                let arg = seq.next_element::<&'de RawValue>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(EventArgs { name, arg })
            }
        }
        d.deserialize_seq(V)
    }
}

/// Splits an event's JSON array (`["name", arg, ..]`) without copying.
#[inline]
pub fn event_args(data: &str) -> Result<EventArgs<'_>, FrameError> {
    serde_json::from_str(data).map_err(|_| FrameError("event is not [\"name\", ..]"))
}

/// Decodes a frame that should be an event on the default namespace; `None`
/// for anything else (pings, acks, other namespaces, malformed frames).
#[inline]
pub fn as_event(frame: &str) -> Option<(EventArgs<'_>, Option<u64>)> {
    match decode(frame) {
        Ok(Packet::Message(SioPacket::Event {
            nsp: "/",
            ack,
            data,
        })) => event_args(data).ok().map(|a| (a, ack)),
        _ => None,
    }
}

/// Encodes an event frame `42["name",payload]`; `payload` must be JSON.
#[inline]
pub fn event_frame(name: &str, payload: &str) -> String {
    event_frame_with_ack(name, None, payload)
}

/// Encodes an event frame asking for an ack: `42<id>["name",payload]`.
#[inline]
pub fn event_frame_with_ack(name: &str, ack: Option<u64>, payload: &str) -> String {
    let mut s = String::with_capacity(name.len() + payload.len() + 16);
    s.push_str("42");
    if let Some(id) = ack {
        s.push_str(&id.to_string());
    }
    s.push('[');
    push_json_str(&mut s, name);
    s.push(',');
    s.push_str(payload);
    s.push(']');
    s
}

/// Encodes an ack frame `43<id>[payload]`; `payload` must be JSON.
#[inline]
pub fn ack_frame(id: u64, payload: &str) -> String {
    format!("43{id}[{payload}]")
}

/// Appends `v` as a JSON string literal.
#[inline]
pub fn push_json_str(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The engine.io handshake (`0{...}`), as far as the benchmarks need it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Handshake {
    /// The engine.io session id.
    pub sid: String,
    /// Milliseconds between pings.
    #[serde(rename = "pingInterval")]
    pub ping_interval: u64,
    /// Milliseconds a ping may go unanswered.
    #[serde(rename = "pingTimeout")]
    pub ping_timeout: u64,
}

/// Parses the handshake JSON of an open packet.
pub fn handshake(open: &str) -> Result<Handshake, FrameError> {
    serde_json::from_str(open).map_err(|_| FrameError("bad open packet"))
}

/// The server's open packet.
pub fn open_frame(sid: &str, ping_interval_ms: u64, ping_timeout_ms: u64) -> String {
    let mut s = String::from("0{\"sid\":");
    push_json_str(&mut s, sid);
    s.push_str(&format!(
        ",\"upgrades\":[],\"pingInterval\":{ping_interval_ms},\"pingTimeout\":{ping_timeout_ms},\"maxPayload\":1000000}}"
    ));
    s
}

/// The server's reply to an engine.io 4 client's `40`.
pub fn connect_reply_v4(sid: &str) -> String {
    let mut s = String::from("40{\"sid\":");
    push_json_str(&mut s, sid);
    s.push('}');
    s
}

/// The socket id of the server's CONNECT answer on the default namespace
/// under socket.io 5: `40{"sid":"..."}`.
pub fn connect_sid(frame: &str) -> Result<String, FrameError> {
    #[derive(Deserialize)]
    struct Connected {
        sid: String,
    }
    match decode(frame)? {
        Packet::Message(SioPacket::Connect { nsp: "/", data }) => {
            serde_json::from_str::<Connected>(data)
                .map(|c| c.sid)
                .map_err(|_| FrameError("connect answer without a sid"))
        }
        _ => Err(FrameError("not a connect answer on the default namespace")),
    }
}

/// `status` of a `{status, ...}` reply payload, if it has one.
#[inline]
pub fn reply_status(arg: Option<&RawValue>) -> Option<i64> {
    #[derive(Deserialize)]
    struct Reply {
        status: i64,
    }
    let arg = arg?;
    serde_json::from_str::<Reply>(arg.get())
        .ok()
        .map(|r| r.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_engineio_control_frames() {
        assert_eq!(decode("2"), Ok(Packet::Ping("")));
        assert_eq!(decode("2probe"), Ok(Packet::Ping("probe")));
        assert_eq!(decode("3"), Ok(Packet::Pong("")));
        assert_eq!(decode("1"), Ok(Packet::Close));
        assert_eq!(decode("6"), Ok(Packet::Noop));
        assert!(decode("").is_err());
        assert!(decode("9").is_err());
        assert!(decode("4").is_err());
    }

    #[test]
    fn decodes_open_packet_of_both_generations() {
        // engine.io 4 and engine.io 3 (no maxPayload).
        for frame in [
            r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":100000}"#,
            r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000}"#,
        ] {
            let Ok(Packet::Open(json)) = decode(frame) else {
                panic!("not an open packet: {frame}");
            };
            let h = handshake(json).expect("handshake");
            assert_eq!(h.sid, "abc");
            assert_eq!(h.ping_interval, 25000);
        }
        assert!(handshake("{}").is_err());
    }

    #[test]
    fn decodes_connect_packets() {
        // engine.io 3: the server's bare 40; engine.io 4: 40 with the sid.
        assert_eq!(
            decode("40"),
            Ok(Packet::Message(SioPacket::Connect { nsp: "/", data: "" }))
        );
        assert_eq!(
            decode(r#"40{"sid":"x1"}"#),
            Ok(Packet::Message(SioPacket::Connect {
                nsp: "/",
                data: r#"{"sid":"x1"}"#
            }))
        );
        assert_eq!(
            decode("40/chat,"),
            Ok(Packet::Message(SioPacket::Connect {
                nsp: "/chat",
                data: ""
            }))
        );
        assert_eq!(
            decode("41"),
            Ok(Packet::Message(SioPacket::Disconnect { nsp: "/" }))
        );
    }

    #[test]
    fn decodes_events_and_acks() {
        let frame = r#"42["msg",{"data":{"t":1,"p":"x"},"s":2,"2":"u1"}]"#;
        let (args, ack) = as_event(frame).expect("event");
        assert_eq!(args.name, "msg");
        assert_eq!(ack, None);
        assert_eq!(
            args.arg.map(RawValue::get),
            Some(r#"{"data":{"t":1,"p":"x"},"s":2,"2":"u1"}"#)
        );

        let (args, ack) = as_event(r#"4217["sync",{"offset":0},"extra"]"#).expect("event");
        assert_eq!((args.name.as_ref(), ack), ("sync", Some(17)));

        let (args, _) = as_event(r#"42["leave"]"#).expect("event without argument");
        assert_eq!((args.name.as_ref(), args.arg.is_none()), ("leave", true));

        assert_eq!(
            decode(r#"4312[{"status":0,"seq":3}]"#),
            Ok(Packet::Message(SioPacket::Ack {
                nsp: "/",
                id: 12,
                data: r#"[{"status":0,"seq":3}]"#
            }))
        );
        assert!(decode("43[]").is_err());
        assert!(as_event(r#"42/chat,["msg",{}]"#).is_none());
        assert!(as_event(r#"42{"not":"an array"}"#).is_none());
        assert!(as_event(r#"42[]"#).is_none());
        assert!(as_event(r#"42["unterminated"#).is_none());
        assert!(as_event("2").is_none());
        assert_eq!(
            decode(r#"451-["x",{"_placeholder":true,"num":0}]"#),
            Ok(Packet::Message(SioPacket::Binary))
        );
    }

    #[test]
    fn escaped_event_names_are_decoded() {
        let (args, _) = as_event(r#"42["a\"b",1]"#).expect("event");
        assert_eq!(args.name, "a\"b");
    }

    #[test]
    fn encodes_frames() {
        assert_eq!(
            event_frame("authenticate", r#"{"uid":"u","token":"t"}"#),
            r#"42["authenticate",{"uid":"u","token":"t"}]"#
        );
        assert_eq!(
            event_frame_with_ack("msg", Some(5), "{}"),
            r#"425["msg",{}]"#
        );
        assert_eq!(ack_frame(7, r#"{"status":0}"#), r#"437[{"status":0}]"#);
        assert_eq!(connect_reply_v4("s\"1"), r#"40{"sid":"s\"1"}"#);
        let open = open_frame("abc", 25000, 20000);
        let Ok(Packet::Open(json)) = decode(&open) else {
            panic!("open frame does not decode: {open}");
        };
        assert_eq!(handshake(json).map(|h| h.ping_interval), Ok(25000));
    }

    #[test]
    fn encoded_events_round_trip() {
        let frame = event_frame("we\"ird\n", r#"{"k":[1,2]}"#);
        let (args, ack) = as_event(&frame).expect("round trip");
        assert_eq!(args.name, "we\"ird\n");
        assert_eq!(ack, None);
        assert_eq!(args.arg.map(RawValue::get), Some(r#"{"k":[1,2]}"#));
    }

    #[test]
    fn reply_status_reads_status() {
        let (args, _) =
            as_event(r#"42["join",{"status":0,"data":"join success"}]"#).expect("event");
        assert_eq!(reply_status(args.arg), Some(0));
        let (args, _) = as_event(r#"42["kickout",0]"#).expect("event");
        assert_eq!(reply_status(args.arg), None);
    }

    #[test]
    fn connect_sid_reads_the_connect_answer() {
        assert_eq!(connect_sid(r#"40{"sid":"x1"}"#), Ok("x1".to_owned()));
        assert_eq!(
            connect_sid(&connect_reply_v4("s\"2")),
            Ok("s\"2".to_owned())
        );
        assert!(connect_sid("40").is_err());
        assert!(connect_sid(r#"40/chat,{"sid":"x1"}"#).is_err());
        assert!(connect_sid(r#"44{"message":"no"}"#).is_err());
        assert!(connect_sid(r#"0{"sid":"x1"}"#).is_err());
    }

    #[test]
    fn generation_from_query() {
        assert_eq!(Eio::from_query(Some("EIO=3&transport=websocket")), Eio::V3);
        assert_eq!(Eio::from_query(Some("transport=websocket&EIO=4")), Eio::V4);
        assert_eq!(Eio::from_query(None), Eio::V4);
        assert!(Eio::V3.client_pings());
        assert!(!Eio::V4.client_pings());
    }
}
