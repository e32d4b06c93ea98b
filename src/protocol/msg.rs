//! The `msg` payload: how it is read, checked and stamped.
//!
//! A message stays JSON text from the client's frame to the relay and the
//! store: the server reads the few keys it needs from the text and adds the
//! sender stamp by splicing it in, instead of decoding the whole object and
//! encoding it again. What the client sent is relayed and stored as sent
//! (numbers, escapes and key order included), apart from the keys the server
//! sets itself.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use super::{ack_status, reason, StatusReply};

/// Key of the sender stamp in relayed messages.
pub(crate) const SENDER_KEY: &str = "2";
/// Key of the sequence number in relayed inserts (Part 2).
pub(crate) const SEQ_KEY: &str = "seq";

/// Deepest nesting of arrays and objects a msg may have, the object itself
/// counting as 1. Every envelope the server puts messages in (at most 5
/// levels: the admin API's `room_msgs`; a sync page's event packet adds 3)
/// stays within the recursion limit of common JSON decoders (serde_json's
/// is 128), so a stored message can always be read back.
pub(super) const MAX_DEPTH: usize = 120;

/// How a message is kept: the `s` / `storage` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Storage {
    /// 0: appended to the room's history.
    Insert,
    /// 1: replaces the earlier update with the same msgId.
    Update,
    /// 2: relayed only.
    Ignore,
}

/// A `msg` payload, checked and stamped with its sender.
#[derive(Debug, Clone)]
pub(crate) struct IncomingMsg {
    /// The message as it is relayed and stored.
    pub body: StampedMsg,
    pub storage: Storage,
    /// The string form of `"1"` / `msgId`, when present and usable.
    pub msg_id: Option<String>,
}

/// Why a msg was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MsgError {
    #[error("payload must be an object")]
    NotAnObject,
    #[error("message too large")]
    TooLarge,
    #[error("update requires msgId")]
    UpdateNeedsMsgId,
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("malformed payload")]
    TooDeep,
}

impl MsgError {
    /// The `reason` label of the dropped-messages metric.
    pub(crate) fn metric_label(self) -> &'static str {
        match self {
            MsgError::NotAnObject => "not_an_object",
            MsgError::TooLarge => "too_large",
            MsgError::UpdateNeedsMsgId => "missing_msg_id",
            MsgError::TooDeep => "malformed",
        }
    }

    /// The ack `{status, data}` for this refusal.
    pub(crate) fn reply(self) -> StatusReply<'static> {
        match self {
            MsgError::NotAnObject => {
                StatusReply::fail(ack_status::BAD_REQUEST, reason::NOT_AN_OBJECT)
            }
            MsgError::TooLarge => StatusReply::fail(ack_status::TOO_LARGE, reason::TOO_LARGE),
            MsgError::UpdateNeedsMsgId => {
                StatusReply::fail(ack_status::BAD_REQUEST, reason::UPDATE_NEEDS_MSG_ID)
            }
            MsgError::TooDeep => StatusReply::fail(ack_status::BAD_REQUEST, reason::MALFORMED),
        }
    }
}

/// A message as the server relays and stores it: the client's object with
/// the sender stamp `"2"` as its last key, as JSON text. Never `{}`, and
/// an insert carries no `seq` (the store adds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampedMsg(String);

impl StampedMsg {
    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The JSON text with `"seq": seq` added as the last key.
    pub fn with_seq(&self, seq: u64) -> String {
        use std::fmt::Write as _;
        let open = &self.0[..self.0.len() - 1];
        let digits = seq.checked_ilog10().map_or(1, |d| d as usize + 1);
        // Exactly sized: the text is boxed as is, never copied to shrink it.
        let mut out = String::with_capacity(open.len() + SEQ_KEY.len() + 5 + digits);
        out.push_str(open);
        out.push_str(",\"");
        out.push_str(SEQ_KEY);
        out.push_str("\":");
        let _ = write!(out, "{seq}");
        out.push('}');
        out
    }

    /// The JSON text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// The sender stamp of a login's msgs: its uid as the client sent it,
/// encoded once as JSON for every msg it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SenderStamp(Box<str>);

impl SenderStamp {
    /// The stamp of `uid` (a JSON string or number).
    pub(crate) fn of(uid: &Value) -> SenderStamp {
        SenderStamp(uid.to_string().into_boxed_str())
    }
}

/// Reads a `msg` payload and stamps it with `sender`. `text` is the
/// payload's JSON text as the client sent it (checked to be JSON); its
/// length is checked against `max_bytes` (exactly the limit passes).
pub(crate) fn parse_msg(
    text: &str,
    max_bytes: usize,
    sender: &SenderStamp,
) -> Result<IncomingMsg, MsgError> {
    // A raw value's text starts at its first character: an object starts with `{`.
    if !text.starts_with('{') {
        return Err(MsgError::NotAnObject);
    }
    if text.len() > max_bytes {
        return Err(MsgError::TooLarge);
    }
    // Each level takes two bytes, so only a longer text can be too deep.
    if text.len() > 2 * MAX_DEPTH && nested_deeper_than(text, MAX_DEPTH) {
        return Err(MsgError::TooDeep);
    }
    let keys: Keys<'_> = serde_json::from_str(text).map_err(|_| MsgError::NotAnObject)?;
    // The compact key wins when both forms are present.
    let storage = match keys.s.or(keys.storage).map(number) {
        Some(Some(1.0)) => Storage::Update,
        Some(Some(2.0)) => Storage::Ignore,
        _ => Storage::Insert,
    };
    let msg_id = match keys.id.or(keys.msg_id).map(scalar) {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    if storage == Storage::Update && msg_id.is_none() {
        return Err(MsgError::UpdateNeedsMsgId);
    }
    // The client's own `"2"` never passes; nor does its `seq` on an insert.
    let drop_seq = storage == Storage::Insert && keys.seq;
    let members: Cow<'_, str> = if keys.sender || drop_seq {
        without_keys(text, |k| k == SENDER_KEY || (drop_seq && k == SEQ_KEY))
            .map_err(|_| MsgError::NotAnObject)?
            .into()
    } else {
        text[1..text.len() - 1].trim().into()
    };
    let mut body = String::with_capacity(members.len() + sender.0.len() + STAMP_BYTES);
    body.push('{');
    if !members.is_empty() {
        body.push_str(&members);
        body.push(',');
    }
    body.push('"');
    body.push_str(SENDER_KEY);
    body.push_str("\":");
    body.push_str(&sender.0);
    body.push('}');
    Ok(IncomingMsg {
        body: StampedMsg(body),
        storage,
        msg_id,
    })
}

/// The bytes of a stamped body besides the client's members and the uid:
/// the braces, the comma and `"2":`.
const STAMP_BYTES: usize = 3 + SENDER_KEY.len() + 3;

/// Whether the JSON text `text` nests arrays and objects deeper than `max`.
/// A scan of the bytes: the raw value does not track depth as it is read.
fn nested_deeper_than(text: &str, max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// A key's value as a number, if it is one.
fn number(raw: &RawValue) -> Option<f64> {
    serde_json::from_str(raw.get()).ok()
}

/// A key's value as a [`Value`]; `Null` if it does not decode (a number
/// out of `f64`'s range), which reads as absent.
fn scalar(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}

/// The keys of a msg object the server reads, borrowed from its text.
/// With duplicate keys the last one counts, as in `JSON.parse`.
#[derive(Default)]
struct Keys<'a> {
    s: Option<&'a RawValue>,
    storage: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    msg_id: Option<&'a RawValue>,
    /// Whether the client sent a `"2"` of its own.
    sender: bool,
    /// Whether the client sent a `seq` of its own.
    seq: bool,
}

/// A key of a msg object, told apart without allocating.
enum Key {
    S,
    Storage,
    Id,
    MsgId,
    Sender,
    Seq,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, k: &str) -> Result<Key, E> {
                Ok(match k {
                    "s" => Key::S,
                    "storage" => Key::Storage,
                    "1" => Key::Id,
                    "msgId" => Key::MsgId,
                    SENDER_KEY => Key::Sender,
                    SEQ_KEY => Key::Seq,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Keys<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeysVisitor;
        impl<'de> Visitor<'de> for KeysVisitor {
            type Value = Keys<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a msg object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys<'de>, A::Error> {
                let mut keys = Keys::default();
                while let Some(key) = map.next_key::<Key>()? {
                    let slot = match key {
                        Key::S => &mut keys.s,
                        Key::Storage => &mut keys.storage,
                        Key::Id => &mut keys.id,
                        Key::MsgId => &mut keys.msg_id,
                        Key::Sender | Key::Seq | Key::Other => {
                            keys.sender |= matches!(key, Key::Sender);
                            keys.seq |= matches!(key, Key::Seq);
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value()?);
                }
                Ok(keys)
            }
        }
        d.deserialize_map(KeysVisitor)
    }
}

/// The members of the object `text` (without its braces) minus every key
/// `drop` picks, each kept member as it was sent.
fn without_keys(text: &str, drop: impl Fn(&str) -> bool) -> serde_json::Result<String> {
    struct Members<F>(F);
    impl<'de, F: Fn(&str) -> bool> Visitor<'de> for Members<F> {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
            let mut out = String::new();
            while let Some(key) = map.next_key::<String>()? {
                let value: &'de RawValue = map.next_value()?;
                if (self.0)(&key) {
                    continue;
                }
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(&key).map_err(de::Error::custom)?);
                out.push(':');
                out.push_str(value.get());
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(Members(drop))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        serde_json::from_str(text).expect("valid JSON")
    }

    fn parse(text: &str, max: usize) -> Result<IncomingMsg, MsgError> {
        parse_msg(raw(text).get(), max, &SenderStamp::of(&Value::from("u")))
    }

    #[test]
    fn compact_form_wins() {
        let m = parse(r#"{"s": 2, "storage": 1, "msgId": "a"}"#, 100).expect("ok");
        assert_eq!(m.storage, Storage::Ignore);
        let m = parse(r#"{"storage": 1, "1": 7, "msgId": "a"}"#, 100).expect("ok");
        assert_eq!(m.storage, Storage::Update);
        assert_eq!(m.msg_id.as_deref(), Some("7"));
        let m = parse(r#"{"s": "x"}"#, 100).expect("ok");
        assert_eq!(m.storage, Storage::Insert);
        let m = parse(r#"{"s": null, "storage": 2}"#, 100).expect("ok");
        assert_eq!(
            m.storage,
            Storage::Insert,
            "a present compact key wins even as null"
        );
        let m = parse(r#"{"s": 1.0, "1": 2.5}"#, 100).expect("ok");
        assert_eq!(
            (m.storage, m.msg_id.as_deref()),
            (Storage::Update, Some("2.5"))
        );
        assert_eq!(
            parse(r#"{"s": 1}"#, 100).err(),
            Some(MsgError::UpdateNeedsMsgId)
        );
        assert_eq!(
            parse(r#"{"s": 1, "1": {"a": 1}}"#, 100).err(),
            Some(MsgError::UpdateNeedsMsgId)
        );
    }

    #[test]
    fn only_objects_within_the_limit_pass() {
        for bad in ["[1]", "1", "\"x\"", "null", "true"] {
            assert_eq!(parse(bad, 100).err(), Some(MsgError::NotAnObject), "{bad}");
        }
        assert!(parse("{}", 2).is_ok());
        assert_eq!(parse("{}", 1).err(), Some(MsgError::TooLarge));
        let text = r#"{"data":"abc"}"#;
        assert!(parse(text, text.len()).is_ok());
        assert_eq!(parse(text, text.len() - 1).err(), Some(MsgError::TooLarge));
    }

    #[test]
    fn the_stamp_is_spliced_in_and_the_rest_kept_as_sent() {
        let m = parse(r#"{"data":{"n":[1,2.50,1e2]},"s":0}"#, 100).expect("ok");
        assert_eq!(
            m.body.as_str(),
            r#"{"data":{"n":[1,2.50,1e2]},"s":0,"2":"u"}"#
        );
        assert_eq!(
            m.body.with_seq(7),
            r#"{"data":{"n":[1,2.50,1e2]},"s":0,"2":"u","seq":7}"#
        );
        let m = parse(" { } ".trim(), 100).expect("ok");
        assert_eq!(m.body.as_str(), r#"{"2":"u"}"#);
        assert_eq!(m.body.with_seq(0), r#"{"2":"u","seq":0}"#);
        for seq in [0, 9, 10, 99, 100, 12_345, u64::MAX] {
            let text = m.body.with_seq(seq);
            assert_eq!(text, format!(r#"{{"2":"u","seq":{seq}}}"#));
            assert_eq!(text.capacity(), text.len(), "exactly sized for {seq}");
        }
        let m = parse_msg(
            r#"{"a":"é\u00e9"}"#,
            100,
            &SenderStamp::of(&Value::from(1000)),
        )
        .expect("ok");
        assert_eq!(m.body.as_str(), r#"{"a":"é\u00e9","2":1000}"#);
    }

    #[test]
    fn keys_the_server_sets_are_replaced() {
        let m = parse(r#"{"2":"mallory","a":1,"seq":9}"#, 100).expect("ok");
        assert_eq!(m.body.as_str(), r#"{"a":1,"2":"u"}"#);
        // Only an insert gets a seq from the store; other kinds keep the client's.
        let m = parse(r#"{"s":2,"seq":9,"2":"x"}"#, 100).expect("ok");
        assert_eq!(m.body.as_str(), r#"{"s":2,"seq":9,"2":"u"}"#);
        let m = parse(r#"{"seq":9,"s":2}"#, 100).expect("ok");
        assert_eq!(m.body.as_str(), r#"{"seq":9,"s":2,"2":"u"}"#);
        // Escaped keys are keys all the same.
        let m = parse(r#"{"\u0032":"mallory","\"q":1}"#, 100).expect("ok");
        assert_eq!(m.body.as_str(), r#"{"\"q":1,"2":"u"}"#);
        for m in [
            parse(r#"{"2":"a","2":"b"}"#, 100).expect("ok"),
            parse(r#"{"seq":1,"x":[],"seq":2}"#, 100).expect("ok"),
        ] {
            let v: Value = serde_json::from_str(m.body.as_str()).expect("valid JSON");
            assert_eq!(v.get("2"), Some(&Value::from("u")));
            assert_eq!(v.get("seq"), None);
        }
    }

    #[test]
    fn nesting_is_limited() {
        let nested = |depth: usize| {
            let inner = "[".repeat(depth - 1) + &"]".repeat(depth - 1);
            format!(r#"{{"d":{inner}}}"#)
        };
        assert!(parse(&nested(MAX_DEPTH), 10_000).is_ok());
        assert_eq!(
            parse(&nested(MAX_DEPTH + 1), 10_000).err(),
            Some(MsgError::TooDeep)
        );
        // Brackets inside strings are text.
        let text = format!(r#"{{"d":"{}\\\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(parse(&text, 10_000).is_ok());
        // serde_json reads the deepest one that passes in the deepest envelope.
        let deepest = parse(&nested(MAX_DEPTH), 10_000).expect("ok");
        let admin = format!(
            r#"{{"meta":{{}},"data":{{"msgs":{{"data":[{{"data":{},"ts":1}}]}}}}}}"#,
            deepest.body.as_str()
        );
        assert!(serde_json::from_str::<Value>(&admin).is_ok());
    }

    #[test]
    fn duplicate_keys_count_last() {
        let m = parse(r#"{"s":2,"s":0}"#, 100).expect("ok");
        assert_eq!(m.storage, Storage::Insert);
    }
}
