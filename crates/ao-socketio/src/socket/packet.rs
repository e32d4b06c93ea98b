//! socket.io packets (protocols 4 and 5): the text of an engine.io message.
//!
//! `<type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]`, e.g.
//! `2["msg",{}]`, `21["msg",{}]`, `3/chat,5[{"ok":1}]`,
//! `51-["file",{"_placeholder":true,"num":0}]`.

use std::fmt::Write as _;

/// The socket.io protocol revision a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketVersion {
    /// Protocol 4 (socket.io-client 2.x, over engine.io 3).
    V4,
    /// Protocol 5 (socket.io-client 3.x and 4.x, over engine.io 4).
    V5,
}

/// A socket.io packet type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `0`: connect to a namespace.
    Connect = 0,
    /// `1`: leave a namespace.
    Disconnect = 1,
    /// `2`: an event.
    Event = 2,
    /// `3`: an ack.
    Ack = 3,
    /// `ERROR` in protocol 4, `CONNECT_ERROR` in protocol 5.
    ConnectError = 4,
    /// `5`: an event with binary attachments.
    BinaryEvent = 5,
    /// `6`: an ack with binary attachments.
    BinaryAck = 6,
}

/// A decoded packet, borrowing from the text it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The packet's type.
    pub kind: Kind,
    /// Binary attachments that follow (binary packets only; else 0).
    pub attachments: usize,
    /// The namespace, `/` when the packet names none.
    pub nsp: &'a str,
    /// The ack id, when the packet has one.
    pub id: Option<u64>,
    /// The JSON data as sent (not validated here), empty when absent.
    pub data: &'a str,
}

/// Why text is not a socket.io packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No text at all.
    #[error("empty packet")]
    Empty,
    /// A type digit socket.io does not have.
    #[error("unknown packet type")]
    UnknownType,
    /// A binary packet's attachment count is missing or too high.
    #[error("malformed attachment count")]
    Attachments,
    /// A namespace without its comma before data.
    #[error("malformed namespace")]
    Namespace,
    /// An ack id above 2^53.
    #[error("malformed ack id")]
    AckId,
}

/// The most binary attachments one packet may announce.
pub const MAX_ATTACHMENTS: usize = 10;

/// Decodes a packet. Only the header is checked: the data is left for the
/// caller to parse as JSON. An attachment count above [`MAX_ATTACHMENTS`]
/// or on a non-binary packet, an ack id above 2^53, or a namespace without
/// its comma is an error.
pub fn decode(text: &str) -> Result<Parsed<'_>, DecodeError> {
    let bytes = text.as_bytes();
    let kind = match bytes.first() {
        None => return Err(DecodeError::Empty),
        Some(b'0') => Kind::Connect,
        Some(b'1') => Kind::Disconnect,
        Some(b'2') => Kind::Event,
        Some(b'3') => Kind::Ack,
        Some(b'4') => Kind::ConnectError,
        Some(b'5') => Kind::BinaryEvent,
        Some(b'6') => Kind::BinaryAck,
        Some(_) => return Err(DecodeError::UnknownType),
    };
    // Every index below is just past an ASCII byte or at a `,` found in
    // `text`, so slicing there is on a character boundary.
    let mut i = 1;

    let mut attachments = 0;
    if kind.is_binary() {
        let digits = count_digits(&bytes[i..]);
        if digits == 0 || digits > MAX_ATTACHMENT_DIGITS || bytes.get(i + digits) != Some(&b'-') {
            return Err(DecodeError::Attachments);
        }
        attachments = parse_digits(&bytes[i..i + digits]);
        if attachments > MAX_ATTACHMENTS as u64 {
            return Err(DecodeError::Attachments);
        }
        i += digits + 1;
    }

    let mut nsp = "/";
    if bytes.get(i) == Some(&b'/') {
        match text[i..].find(',') {
            Some(comma) => {
                nsp = &text[i..i + comma];
                i += comma + 1;
            }
            None => {
                // Clients send `0/admin` (and protocol 4 clients
                // `0/admin?query`) with nothing after the namespace. JSON
                // there means data whose comma is missing.
                nsp = &text[i..];
                if nsp.contains(['[', '{', '"']) {
                    return Err(DecodeError::Namespace);
                }
                i = text.len();
            }
        }
    }

    let mut id = None;
    let digits = count_digits(&bytes[i..]);
    if digits > 0 {
        if digits > MAX_ACK_ID_DIGITS {
            return Err(DecodeError::AckId);
        }
        let n = parse_digits(&bytes[i..i + digits]);
        if n > MAX_ACK_ID {
            return Err(DecodeError::AckId);
        }
        id = Some(n);
        i += digits;
    }

    Ok(Parsed {
        kind,
        attachments: attachments as usize,
        nsp,
        id,
        data: &text[i..],
    })
}

/// Encodes a packet's text (without the engine.io type digit): the inverse
/// of [`decode`]. `nsp` `/` is left out.
pub fn encode(kind: Kind, attachments: usize, nsp: &str, id: Option<u64>, data: &str) -> String {
    let mut out = String::with_capacity(1 + 4 + nsp.len() + 1 + 20 + data.len());
    out.push(char::from(b'0' + kind as u8));
    if kind.is_binary() {
        // Written even when 0, as the reference encoder does: the decoder
        // requires the count on binary packets.
        // Writing to a String cannot fail.
        let _ = write!(out, "{attachments}-");
    }
    let nsp = if nsp.is_empty() { "/" } else { nsp };
    // Data starting with `/` right after the type would read as a
    // namespace: `/,` keeps it data.
    if nsp != "/" || (id.is_none() && data.starts_with('/')) {
        out.push_str(nsp);
        out.push(',');
    }
    if let Some(id) = id {
        let _ = write!(out, "{id}");
    }
    out.push_str(data);
    out
}

/// Why a packet's data is not what its type carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// Not one JSON value.
    #[error("data is not JSON")]
    NotJson,
    /// An event's data is not an array starting with the event's name.
    #[error("event data is not an array starting with a name")]
    NotEvent,
    /// An ack's data is not an array.
    #[error("ack data is not an array")]
    NotAck,
    /// A connect's data is neither absent nor a JSON object.
    #[error("connect data is not an object")]
    NotObject,
}

/// Checks an event's data, `["name", arg, ...]`, and splits it into the
/// name (unescaped) and the arguments' text as sent (`arg, ...`, without
/// the brackets; empty when there are none).
pub fn split_event(data: &str) -> Result<(std::borrow::Cow<'_, str>, &str), DataError> {
    if serde_json::from_str::<serde::de::IgnoredAny>(data).is_err() {
        return Err(DataError::NotJson);
    }
    // Valid JSON from here on: the scan below only finds token boundaries.
    let inner = data
        .trim()
        .strip_prefix('[')
        .and_then(|d| d.strip_suffix(']'))
        .ok_or(DataError::NotEvent)?
        .trim_start();
    if !inner.starts_with('"') {
        return Err(DataError::NotEvent);
    }
    let bytes = inner.as_bytes();
    let mut end = 1;
    while end < bytes.len() {
        match bytes[end] {
            b'\\' => end += 2,
            b'"' => break,
            _ => end += 1,
        }
    }
    // `end` is at the closing quote (an ASCII byte): a character boundary.
    let quoted = inner.get(..=end).ok_or(DataError::NotEvent)?;
    let name = if quoted.contains('\\') {
        std::borrow::Cow::Owned(
            serde_json::from_str::<String>(quoted).map_err(|_| DataError::NotEvent)?,
        )
    } else {
        std::borrow::Cow::Borrowed(&quoted[1..quoted.len() - 1])
    };
    let rest = inner[end + 1..].trim();
    let args = match rest.strip_prefix(',') {
        Some(args) => args.trim(),
        None if rest.is_empty() => "",
        None => return Err(DataError::NotEvent),
    };
    Ok((name, args))
}

/// The first of an event's arguments as sent (`args` as [`split_event`]
/// gives them, checked to be JSON); `None` when there are none. A scan of
/// token boundaries, not a second parse: the text is known to be JSON.
pub fn first_argument(args: &str) -> Option<&str> {
    let bytes = args.as_bytes();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => {
                    in_string = false;
                    if depth == 0 {
                        return args.get(..=i);
                    }
                }
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return args.get(..=i);
                }
            }
            b',' if depth == 0 => return args.get(..i).map(str::trim_end),
            _ => {}
        }
    }
    let all = args.trim_end();
    (!all.is_empty()).then_some(all)
}

/// Checks an ack's data, `[arg, ...]`, and gives the arguments' text as
/// sent (without the brackets).
pub fn ack_args(data: &str) -> Result<&str, DataError> {
    if serde_json::from_str::<serde::de::IgnoredAny>(data).is_err() {
        return Err(DataError::NotJson);
    }
    data.trim()
        .strip_prefix('[')
        .and_then(|d| d.strip_suffix(']'))
        .map(str::trim)
        .ok_or(DataError::NotAck)
}

/// Checks a connect's data: absent, or a JSON object (socket.io 3+/4
/// clients send their `auth` there). Gives the object's text.
pub fn connect_payload(data: &str) -> Result<Option<&str>, DataError> {
    let data = data.trim();
    if data.is_empty() {
        return Ok(None);
    }
    if !data.starts_with('{') {
        return Err(DataError::NotObject);
    }
    match serde_json::from_str::<serde::de::IgnoredAny>(data) {
        Ok(_) => Ok(Some(data)),
        Err(_) => Err(DataError::NotJson),
    }
}

impl Kind {
    /// Whether binary attachments follow packets of this type.
    pub fn is_binary(self) -> bool {
        matches!(self, Kind::BinaryEvent | Kind::BinaryAck)
    }
}

/// The largest ack id: JavaScript's `Number.MAX_SAFE_INTEGER`, above which
/// a client could not have counted exactly.
pub const MAX_ACK_ID: u64 = (1 << 53) - 1;
/// The digits of [`MAX_ACK_ID`].
const MAX_ACK_ID_DIGITS: usize = 16;
/// More digits than any count up to [`MAX_ATTACHMENTS`] needs, leading
/// zeros allowed.
const MAX_ATTACHMENT_DIGITS: usize = 4;

/// How many ASCII digits `bytes` starts with.
fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// ASCII digits as a number; the callers bound their count so that it
/// cannot overflow.
fn parse_digits(digits: &[u8]) -> u64 {
    digits.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parsed<'a>(
        kind: Kind,
        attachments: usize,
        nsp: &'a str,
        id: Option<u64>,
        data: &'a str,
    ) -> Parsed<'a> {
        Parsed {
            kind,
            attachments,
            nsp,
            id,
            data,
        }
    }

    /// Decodes `text`, checks it is `expected`, and that encoding the
    /// parts gives `text` back.
    fn both_ways(text: &str, expected: Parsed<'_>) {
        assert_eq!(decode(text), Ok(expected.clone()), "decoding {text:?}");
        let Parsed {
            kind,
            attachments,
            nsp,
            id,
            data,
        } = expected;
        assert_eq!(encode(kind, attachments, nsp, id, data), text);
    }

    #[test]
    fn reference_vectors() {
        both_ways(
            r#"0/woot,{"token":"123"}"#,
            parsed(Kind::Connect, 0, "/woot", None, r#"{"token":"123"}"#),
        );
        both_ways("1/woot,", parsed(Kind::Disconnect, 0, "/woot", None, ""));
        both_ways(
            r#"2["a",1,{}]"#,
            parsed(Kind::Event, 0, "/", None, r#"["a",1,{}]"#),
        );
        both_ways(
            r#"2[1,"a",{}]"#,
            parsed(Kind::Event, 0, "/", None, r#"[1,"a",{}]"#),
        );
        both_ways(
            r#"2/test,1["a",1,{}]"#,
            parsed(Kind::Event, 0, "/test", Some(1), r#"["a",1,{}]"#),
        );
        both_ways(
            r#"3123["a",1,{}]"#,
            parsed(Kind::Ack, 0, "/", Some(123), r#"["a",1,{}]"#),
        );
        both_ways(
            r#"4"Unauthorized""#,
            parsed(Kind::ConnectError, 0, "/", None, r#""Unauthorized""#),
        );
        both_ways(
            r#"4{"message":"Unauthorized"}"#,
            parsed(
                Kind::ConnectError,
                0,
                "/",
                None,
                r#"{"message":"Unauthorized"}"#,
            ),
        );
        both_ways(
            r#"51-/cool,23["a",{"_placeholder":true,"num":0}]"#,
            parsed(
                Kind::BinaryEvent,
                1,
                "/cool",
                Some(23),
                r#"["a",{"_placeholder":true,"num":0}]"#,
            ),
        );
        both_ways(
            r#"61-/back,127["a",{"_placeholder":true,"num":0},{}]"#,
            parsed(
                Kind::BinaryAck,
                1,
                "/back",
                Some(127),
                r#"["a",{"_placeholder":true,"num":0},{}]"#,
            ),
        );
        both_ways(
            r#"51-["hello",{"_placeholder":true,"num":0}]"#,
            parsed(
                Kind::BinaryEvent,
                1,
                "/",
                None,
                r#"["hello",{"_placeholder":true,"num":0}]"#,
            ),
        );
        both_ways(
            r#"2["msg",{}]"#,
            parsed(Kind::Event, 0, "/", None, r#"["msg",{}]"#),
        );
        both_ways(
            r#"21["msg",{}]"#,
            parsed(Kind::Event, 0, "/", Some(1), r#"["msg",{}]"#),
        );
        both_ways(
            r#"3/chat,5[{"ok":1}]"#,
            parsed(Kind::Ack, 0, "/chat", Some(5), r#"[{"ok":1}]"#),
        );
    }

    #[test]
    fn connects() {
        // Protocol 4's connect to `/`, and to a namespace with and without
        // its comma; protocol 5's with auth data.
        both_ways("0", parsed(Kind::Connect, 0, "/", None, ""));
        both_ways("0/chat,", parsed(Kind::Connect, 0, "/chat", None, ""));
        assert_eq!(
            decode("0/admin"),
            Ok(parsed(Kind::Connect, 0, "/admin", None, ""))
        );
        assert_eq!(
            decode("0/chat?token=abc"),
            Ok(parsed(Kind::Connect, 0, "/chat?token=abc", None, ""))
        );
        both_ways(
            r#"0/admin,{"token":1}"#,
            parsed(Kind::Connect, 0, "/admin", None, r#"{"token":1}"#),
        );
        both_ways(
            r#"0{"token":1}"#,
            parsed(Kind::Connect, 0, "/", None, r#"{"token":1}"#),
        );
        both_ways("1", parsed(Kind::Disconnect, 0, "/", None, ""));
    }

    #[test]
    fn headers_in_between() {
        assert_eq!(
            decode(r#"2/,["a"]"#),
            Ok(parsed(Kind::Event, 0, "/", None, r#"["a"]"#))
        );
        both_ways(
            r#"2/ñ😀,["a"]"#,
            parsed(Kind::Event, 0, "/ñ😀", None, r#"["a"]"#),
        );
        both_ways("3/chat,5", parsed(Kind::Ack, 0, "/chat", Some(5), ""));
        both_ways("35", parsed(Kind::Ack, 0, "/", Some(5), ""));
        assert_eq!(
            decode(r#"2007["a"]"#),
            Ok(parsed(Kind::Event, 0, "/", Some(7), r#"["a"]"#))
        );
        both_ways(
            r#"50-["a"]"#,
            parsed(Kind::BinaryEvent, 0, "/", None, r#"["a"]"#),
        );
        both_ways(
            r#"510-["a"]"#,
            parsed(Kind::BinaryEvent, 10, "/", None, r#"["a"]"#),
        );
        assert_eq!(
            decode(r#"501-["a"]"#),
            Ok(parsed(Kind::BinaryEvent, 1, "/", None, r#"["a"]"#))
        );
        both_ways(
            "29007199254740991[\"a\"]",
            parsed(Kind::Event, 0, "/", Some(MAX_ACK_ID), "[\"a\"]"),
        );
        both_ways("2/,/x", parsed(Kind::Event, 0, "/", None, "/x"));
        // Data not checked here.
        both_ways("2abc", parsed(Kind::Event, 0, "/", None, "abc"));
    }

    #[test]
    fn encodes() {
        assert_eq!(
            encode(Kind::Event, 0, "/", None, r#"["msg"]"#),
            r#"2["msg"]"#
        );
        assert_eq!(
            encode(Kind::Event, 0, "", None, r#"["msg"]"#),
            r#"2["msg"]"#
        );
        // A count on a packet that has no attachments is left out.
        assert_eq!(encode(Kind::Event, 3, "/", Some(4), "[]"), "24[]");
        assert_eq!(encode(Kind::BinaryAck, 2, "/", Some(4), "[]"), "62-4[]");
        assert_eq!(encode(Kind::Connect, 0, "/", None, ""), "0");
        assert_eq!(encode(Kind::Connect, 0, "/a", None, ""), "0/a,");
        assert_eq!(encode(Kind::Disconnect, 0, "", None, "/x"), "1/,/x");
        assert!(Kind::BinaryEvent.is_binary());
        assert!(!Kind::Event.is_binary());
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(decode(""), Err(DecodeError::Empty));
        assert_eq!(decode("999"), Err(DecodeError::UnknownType));
        assert_eq!(decode("7"), Err(DecodeError::UnknownType));
        assert_eq!(decode("a"), Err(DecodeError::UnknownType));
        assert_eq!(decode("ñ"), Err(DecodeError::UnknownType));
        // Binary packets need `<n>-`, n at most MAX_ATTACHMENTS.
        assert_eq!(decode("5"), Err(DecodeError::Attachments));
        assert_eq!(decode("6"), Err(DecodeError::Attachments));
        assert_eq!(decode(r#"5-["a"]"#), Err(DecodeError::Attachments));
        assert_eq!(decode(r#"51["a"]"#), Err(DecodeError::Attachments));
        assert_eq!(decode(r#"5a-["a"]"#), Err(DecodeError::Attachments));
        assert_eq!(decode(r#"511-["a"]"#), Err(DecodeError::Attachments));
        assert_eq!(
            decode(r#"599999999999999999999999-["a"]"#),
            Err(DecodeError::Attachments)
        );
        assert_eq!(decode("51"), Err(DecodeError::Attachments));
        // A namespace with data but no comma.
        assert_eq!(decode(r#"0/admin{"token":1}"#), Err(DecodeError::Namespace));
        assert_eq!(decode(r#"2/admin["a"]"#), Err(DecodeError::Namespace));
        assert_eq!(decode(r#"4/admin"no""#), Err(DecodeError::Namespace));
        // Ack ids JavaScript could not count to, or too many digits.
        assert_eq!(decode(r#"29007199254740992["a"]"#), Err(DecodeError::AckId));
        assert_eq!(
            decode(r#"200000000000000001["a"]"#),
            Err(DecodeError::AckId)
        );
        assert_eq!(
            decode(r#"399999999999999999999999999["a"]"#),
            Err(DecodeError::AckId)
        );
    }

    fn any_kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            Just(Kind::Connect),
            Just(Kind::Disconnect),
            Just(Kind::Event),
            Just(Kind::Ack),
            Just(Kind::ConnectError),
            Just(Kind::BinaryEvent),
            Just(Kind::BinaryAck),
        ]
    }

    /// Re-encoding what decoded decodes the same.
    fn check_reencode(text: &str) -> Result<(), TestCaseError> {
        if let Ok(p) = decode(text) {
            let again = encode(p.kind, p.attachments, p.nsp, p.id, p.data);
            prop_assert_eq!(decode(&again), Ok(p));
        }
        Ok(())
    }

    #[test]
    fn event_data_is_checked_and_split() {
        let split = |t| split_event(t).map(|(n, a)| (n.into_owned(), a));
        assert_eq!(
            split(r#"["message",1,"2",{"3":[true]}]"#),
            Ok(("message".into(), r#"1,"2",{"3":[true]}"#))
        );
        assert_eq!(
            split(r#" [ "m\u0073g\"" , 1 ] "#),
            Ok(("msg\"".into(), "1"))
        );
        assert_eq!(split(r#"["leave"]"#), Ok(("leave".into(), "")));
        for bad in [
            "{}",
            "[]",
            "[1]",
            r#"["a""#,
            r#"abc["a"]"#,
            r#"["a"] x"#,
            "",
            "null",
        ] {
            assert!(split_event(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ack_args(r#"[1, "2"]"#), Ok(r#"1, "2""#));
        assert_eq!(ack_args("[]"), Ok(""));
        assert!(ack_args("{}").is_err());
        assert!(ack_args("").is_err());
        assert_eq!(connect_payload(""), Ok(None));
        assert_eq!(
            connect_payload(r#"{"token":"1"}"#),
            Ok(Some(r#"{"token":"1"}"#))
        );
        assert!(connect_payload("[1]").is_err());
        assert!(connect_payload(r#"{"a":"#).is_err());
    }

    fn check_split(text: &str) -> Result<(), TestCaseError> {
        if let Ok((name, args)) = split_event(text) {
            let name_json = serde_json::to_string(&name).expect("a string encodes");
            let rebuilt = if args.is_empty() {
                format!("[{name_json}]")
            } else {
                format!("[{name_json},{args}]")
            };
            let again = split_event(&rebuilt).map(|(n, a)| (n.into_owned(), a.to_owned()));
            prop_assert_eq!(again, Ok((name.into_owned(), args.to_owned())));
        }
        Ok(())
    }

    /// The first argument as a JSON parser reads it.
    fn parsed_first(args: &str) -> Option<String> {
        let mut de = serde_json::Deserializer::from_str(args);
        let raw = <Box<serde_json::value::RawValue> as serde::Deserialize>::deserialize(&mut de);
        raw.ok().map(|r| r.get().to_owned())
    }

    #[test]
    fn the_first_argument_is_found_as_sent() {
        for (data, first) in [
            (
                r#"["msg",{"data":[1, 2.50]},"extra",3]"#,
                Some(r#"{"data":[1, 2.50]}"#),
            ),
            (r#"[ "join" , {"roomId":1} ]"#, Some(r#"{"roomId":1}"#)),
            (r#"["m",null]"#, Some("null")),
            (r#"["m", 12 , 3]"#, Some("12")),
            (r#"["m","a,\"]}",1]"#, Some(r#""a,\"]}""#)),
            (r#"["m",[[],{"a":"]"}],1]"#, Some(r#"[[],{"a":"]"}]"#)),
            (r#"["m",-1.5e3]"#, Some("-1.5e3")),
            (r#"["leave"]"#, None),
        ] {
            let (_, args) = split_event(data).expect("an event");
            assert_eq!(first_argument(args), first, "{data}");
        }
    }

    /// Any JSON value, strings with quotes, escapes and brackets included.
    fn any_json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            r#"([a-z,\]\}\[{:"\\]|\PC){0,8}"#.prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(r#"[a-z,\]}"]{0,4}"#, inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn check_first(text: &str) -> Result<(), TestCaseError> {
        if let Ok((_, args)) = split_event(text) {
            prop_assert_eq!(first_argument(args).map(str::to_owned), parsed_first(args));
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn the_first_argument_is_what_a_parser_reads(
            args in proptest::collection::vec(any_json(), 0..4),
            pretty in any::<bool>(),
        ) {
            let encode = |v: &serde_json::Value| if pretty {
                serde_json::to_string_pretty(v).expect("encodes")
            } else {
                serde_json::to_string(v).expect("encodes")
            };
            let mut text = String::from(r#"["m""#);
            for arg in &args {
                text.push_str(if pretty { " ,\n " } else { "," });
                text.push_str(&encode(arg));
            }
            text.push(']');
            check_first(&text)?;
            let (_, split) = split_event(&text).expect("an event");
            prop_assert_eq!(first_argument(split).is_some(), !args.is_empty());
        }

        #[test]
        fn event_data_splits_without_panicking(text in r#"\s?\[\s?("([^"\\]|\\["\\nu])*"|[0-9]{1,3})\s?(,\s?(\{\}|[0-9]|"x"|\[\]))*\s?\]?"#) {
            check_split(&text)?;
        }

        #[test]
        fn any_data_splits_without_panicking(text in any::<String>()) {
            check_split(&text)?;
            check_first(&text)?;
            let _ = ack_args(&text);
            let _ = connect_payload(&text);
        }

        #[test]
        fn decode_never_panics_and_reencodes(text in any::<String>()) {
            check_reencode(&text)?;
        }

        #[test]
        fn likely_headers_reencode(text in "[0-7][0-9-]{0,3}(/[^,]{0,4},?)?[0-9]{0,3}[\\[{\"/0-9a]?.{0,4}") {
            check_reencode(&text)?;
        }

        #[test]
        fn decodes_what_it_encodes(
            kind in any_kind(),
            attachments in 0..=MAX_ATTACHMENTS,
            nsp in prop_oneof![Just(String::from("/")), "/[^,]*"],
            id in proptest::option::of(0..=MAX_ACK_ID),
            data in prop_oneof![Just(String::new()), "[\\[{\"/].*"],
        ) {
            let attachments = if kind.is_binary() { attachments } else { 0 };
            let text = encode(kind, attachments, &nsp, id, &data);
            prop_assert_eq!(decode(&text), Ok(parsed(kind, attachments, &nsp, id, &data)));
        }
    }
}
