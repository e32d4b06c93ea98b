//! Every payload shape, reason string and status code of the wire protocol.
//!
//! This is the one place the wire format lives (see `docs/PROTOCOL.md`):
//! handlers parse client payloads with the functions here and reply with the
//! types here, so a change to the protocol is a change to this module.

use serde::Serialize;
use serde_json::Value;

mod msg;

pub(crate) use msg::{parse_msg, SenderStamp, StampedMsg, Storage, SENDER_KEY, SEQ_KEY};

/// Longest uid or roomId (in bytes of its string form) the server accepts.
pub(crate) const MAX_ID_BYTES: usize = 256;

/// Event names, client → server and server → client.
pub(crate) mod event {
    pub(crate) const AUTHENTICATE: &str = "authenticate";
    pub(crate) const JOIN: &str = "join";
    pub(crate) const MSG: &str = "msg";
    pub(crate) const SYNC: &str = "sync";
    pub(crate) const LEAVE: &str = "leave";
    pub(crate) const REMOTE_JOIN: &str = "remote_join";
    pub(crate) const REMOTE_LEAVE: &str = "remote_leave";
    pub(crate) const REMOTE_DISCONNECT: &str = "remote_disconnect";
    pub(crate) const REMOTE_SYNC: &str = "remote_sync";
    pub(crate) const KICKOUT: &str = "kickout";
    pub(crate) const SYSTEM: &str = "system";

    /// Whether `event` announces a change of a room's members (told to each
    /// member according to join order, see `realtime::presence`).
    pub(crate) fn is_presence(event: &str) -> bool {
        matches!(event, REMOTE_JOIN | REMOTE_LEAVE | REMOTE_DISCONNECT)
    }
}

/// Reason strings sent in `data` of failed replies.
pub(crate) mod reason {
    pub(crate) const AUTH_SUCCESS: &str = "auth success";
    pub(crate) const AUTH_FAILED: &str = "auth failed, uid or token is wrong";
    pub(crate) const RATE_LIMIT: &str = "reach rate limit";
    pub(crate) const AUTH_TIMEOUT: &str = "authentication timeout";
    pub(crate) const SERVER_ERROR: &str = "server error";
    pub(crate) const ALREADY_AUTHENTICATED: &str = "already authenticated";
    pub(crate) const JOIN_SUCCESS: &str = "join success";
    pub(crate) const JOIN_REQUIRE_ROOM: &str = "join failed, require roomId";
    pub(crate) const JOIN_ROOM_TOO_LONG: &str = "join failed, roomId too long";
    pub(crate) const JOIN_ROOM_FULL: &str = "join failed, room is full";
    /// The connection's token grants other rooms (room grants).
    pub(crate) const JOIN_ROOM_NOT_GRANTED: &str = "join failed, room not granted";
    /// A dummy join without a token granting `observer` (`AO_DUMMY_REQUIRES_GRANT`).
    pub(crate) const JOIN_OBSERVER_NOT_GRANTED: &str = "join failed, observer not granted";
    pub(crate) const NOT_AUTHENTICATED: &str = "not authenticated";
    pub(crate) const NOT_JOINED: &str = "not joined";
    pub(crate) const DUMMY_CANNOT_SEND: &str = "dummy clients cannot send";
    pub(crate) const NOT_AN_OBJECT: &str = "payload must be an object";
    pub(crate) const TOO_LARGE: &str = "message too large";
    pub(crate) const UPDATE_NEEDS_MSG_ID: &str = "update requires msgId";
    pub(crate) const STORAGE_UNAVAILABLE: &str = "storage unavailable";
    pub(crate) const TOO_MANY_REQUESTS: &str = "too many requests";
    pub(crate) const MALFORMED: &str = "malformed payload";
}

/// Status codes of msg acks (Part 2). 0 is success.
pub(crate) mod ack_status {
    pub(crate) const BAD_REQUEST: u8 = 1;
    pub(crate) const NOT_JOINED: u8 = 2;
    pub(crate) const DUMMY: u8 = 3;
    pub(crate) const TOO_LARGE: u8 = 4;
    pub(crate) const STORAGE_UNAVAILABLE: u8 = 5;
    pub(crate) const TOO_MANY_REQUESTS: u8 = 6;
}

/// `{status, data}`: the reply to authenticate and join, and the ack of a refused msg.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct StatusReply<'a> {
    pub status: u8,
    pub data: &'a str,
}

impl<'a> StatusReply<'a> {
    /// A success reply (`status: 0`).
    pub(crate) fn ok(data: &'a str) -> Self {
        Self { status: 0, data }
    }
    /// A failure reply with the given status and reason.
    pub(crate) fn fail(status: u8, data: &'a str) -> Self {
        Self { status, data }
    }
}

/// `{status: 0, seq?}`: the ack of an accepted msg.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct MsgAck {
    pub status: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// `{uid}`: payload of remote_join, remote_leave, remote_disconnect and remote_sync.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UidEvent<'a> {
    pub uid: &'a Value,
}

/// A user id as the client sent it: the JSON value (echoed back with its
/// type) and its string form (the identity the server compares).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Uid {
    /// The value exactly as sent (a JSON string or number).
    pub json: Value,
    /// The string form, used as the account key.
    pub key: String,
}

/// A client's credentials from an `authenticate` payload.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    pub uid: Uid,
    /// `None` when the token is missing or not a string.
    pub token: Option<String>,
}

/// Reads `{uid, token}`. `None` for every shape that cannot be a credential
/// (the caller answers "uid or token is wrong").
pub(crate) fn parse_credentials(payload: &Value) -> Option<Credentials> {
    let obj = payload.as_object()?;
    let uid = parse_id(obj.get("uid")?)?;
    let token = obj.get("token").and_then(Value::as_str).map(str::to_owned);
    Some(Credentials { uid, token })
}

/// A uid or roomId: a non-empty string or a non-zero number, at most
/// [`MAX_ID_BYTES`] long in string form. Numbers and their string forms are
/// the same id.
/// Whether `id` is a uid or roomId the server accepts (not empty, at most
/// [`MAX_ID_BYTES`]): what the command checks before it writes an account
/// or signs a token.
pub fn is_valid_id(id: &str) -> bool {
    parse_id(&Value::String(id.to_owned())).is_some()
}

pub(crate) fn parse_id(v: &Value) -> Option<Uid> {
    let key = id_key(v)?;
    if key.len() > MAX_ID_BYTES {
        return None;
    }
    Some(Uid {
        json: v.clone(),
        key,
    })
}

/// The string form of an id value, or `None` when the value cannot be an id.
fn id_key(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => {
            if n.as_f64() == Some(0.0) {
                None
            } else {
                Some(n.to_string())
            }
        }
        _ => None,
    }
}

/// A `join` request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JoinRequest {
    /// The room's string form: `123` and `"123"` are the same room.
    pub room: String,
    pub dummy: bool,
}

/// Why a join was refused: its payload, or the connection's grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JoinError {
    #[error("join failed, require roomId")]
    RequireRoom,
    #[error("join failed, roomId too long")]
    RoomTooLong,
    /// The room is outside the `rooms` claim of the connection's token.
    #[error("join failed, room not granted")]
    RoomNotGranted,
    /// A dummy join needs `observer: true` in the connection's token.
    #[error("join failed, observer not granted")]
    ObserverNotGranted,
}

impl JoinError {
    /// The reason string sent to the client.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            JoinError::RequireRoom => reason::JOIN_REQUIRE_ROOM,
            JoinError::RoomTooLong => reason::JOIN_ROOM_TOO_LONG,
            JoinError::RoomNotGranted => reason::JOIN_ROOM_NOT_GRANTED,
            JoinError::ObserverNotGranted => reason::JOIN_OBSERVER_NOT_GRANTED,
        }
    }
}

/// Reads `{roomId, dummy?}`.
pub(crate) fn parse_join(payload: &Value) -> Result<JoinRequest, JoinError> {
    let obj = payload.as_object().ok_or(JoinError::RequireRoom)?;
    let room =
        id_key(obj.get("roomId").ok_or(JoinError::RequireRoom)?).ok_or(JoinError::RequireRoom)?;
    if room.len() > MAX_ID_BYTES {
        return Err(JoinError::RoomTooLong);
    }
    let dummy = obj.get("dummy").and_then(Value::as_bool).unwrap_or(false);
    Ok(JoinRequest { room, dummy })
}

/// A `sync` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SyncRequest {
    /// Requested offset; anything that is not a non-negative whole number is 0,
    /// and values past `u64` are clamped.
    pub offset: u64,
    pub gzip: bool,
}

/// Reads `{offset, encoding?}`; never fails.
pub(crate) fn parse_sync(payload: &Value) -> SyncRequest {
    let obj = payload.as_object();
    let offset = obj
        .and_then(|o| o.get("offset"))
        .map(clamp_offset)
        .unwrap_or(0);
    let gzip = obj
        .and_then(|o| o.get("encoding"))
        .and_then(Value::as_str)
        .is_some_and(|e| e.eq_ignore_ascii_case("gzip"));
    SyncRequest { offset, gzip }
}

/// An offset: a non-negative whole number, else 0; clamped to `u64`.
/// Strings of digits count too when `strings` is set (query strings).
pub(crate) fn parse_offset(v: &Value, strings: bool) -> u64 {
    match v {
        Value::String(s) if strings => s.trim().parse::<u64>().unwrap_or(0),
        other => clamp_offset(other),
    }
}

fn clamp_offset(v: &Value) -> u64 {
    let Value::Number(n) = v else { return 0 };
    if let Some(u) = n.as_u64() {
        return u;
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f >= 0.0 && f.fract() == 0.0 => {
            if f >= u64::MAX as f64 {
                u64::MAX
            } else {
                f as u64
            }
        }
        _ => 0,
    }
}

/// `{data, offset, next, epoch, encoding?}`: one page of history.
#[derive(Debug, Serialize)]
pub(crate) struct SyncReply<D: Serialize> {
    /// The messages (a JSON array), or base64 of their gzip when `encoding` is set.
    pub data: D,
    pub offset: u64,
    pub next: u8,
    pub epoch: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_accept_strings_and_numbers() {
        let c = parse_credentials(&json!({"uid": 1000, "token": "t"})).expect("valid");
        assert_eq!(c.uid.key, "1000");
        assert_eq!(c.uid.json, json!(1000));
        assert_eq!(c.token.as_deref(), Some("t"));
        assert!(parse_credentials(&json!({"uid": {"$ne": null}, "token": "t"})).is_none());
        assert!(parse_credentials(&json!({"uid": "", "token": "t"})).is_none());
        assert!(parse_credentials(&json!({"uid": 0, "token": "t"})).is_none());
        assert!(parse_credentials(&json!(null)).is_none());
        assert!(parse_credentials(&json!({"uid": "x".repeat(300)})).is_none());
        let c = parse_credentials(&json!({"uid": "a", "token": {"$ne": null}})).expect("shape");
        assert!(c.token.is_none());
    }

    #[test]
    fn join_rules() {
        assert_eq!(
            parse_join(&json!({"roomId": 123})).map(|j| j.room),
            Ok("123".into())
        );
        assert_eq!(
            parse_join(&json!({"roomId": "123"})).map(|j| j.room),
            Ok("123".into())
        );
        for bad in [
            json!({}),
            json!({"roomId": ""}),
            json!({"roomId": 0}),
            json!({"roomId": null}),
            json!({"roomId": []}),
            json!({"roomId": {}}),
            json!({"roomId": true}),
            json!("r"),
            json!(null),
        ] {
            assert_eq!(parse_join(&bad), Err(JoinError::RequireRoom), "{bad}");
        }
        assert_eq!(
            parse_join(&json!({"roomId": "r".repeat(300)})),
            Err(JoinError::RoomTooLong)
        );
        assert!(
            parse_join(&json!({"roomId": 1, "dummy": true}))
                .expect("ok")
                .dummy
        );
    }

    #[test]
    fn sync_offsets_are_clamped() {
        assert_eq!(parse_sync(&json!({"offset": 5})).offset, 5);
        assert_eq!(parse_sync(&json!({"offset": -5})).offset, 0);
        assert_eq!(parse_sync(&json!({"offset": 1.5})).offset, 0);
        assert_eq!(parse_sync(&json!({"offset": "5"})).offset, 0);
        assert_eq!(parse_sync(&json!({"offset": 1e300})).offset, u64::MAX);
        assert_eq!(parse_sync(&json!(null)).offset, 0);
        assert!(parse_sync(&json!({"offset": 0, "encoding": "gzip"})).gzip);
    }
}

/// The HTTP APIs' reply envelope and status codes (accounts and admin).
pub(crate) mod api {
    use serde::Serialize;
    use serde_json::Value;

    /// `meta.status` of an HTTP API reply, with its fixed `meta.msg`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum ApiStatus {
        Success = 0,
        RequirePermission = 1,
        UserExists = 2,
        OperationFailed = 3,
        ParamError = 5,
        UserNotExists = 6,
        RoomNotExists = 7,
    }

    impl ApiStatus {
        /// The `meta.msg` that goes with this status.
        pub(crate) fn msg(self) -> &'static str {
            match self {
                ApiStatus::Success => "success",
                ApiStatus::RequirePermission => "require permission",
                ApiStatus::UserExists => "user exists, please use refresh token api",
                ApiStatus::OperationFailed => "operation failed",
                ApiStatus::ParamError => "param error",
                ApiStatus::UserNotExists => "user not exists",
                ApiStatus::RoomNotExists => "room not exists",
            }
        }
    }

    /// `{status, msg}`.
    #[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
    pub(crate) struct Meta {
        pub status: u8,
        pub msg: &'static str,
    }

    /// `{meta: {status, msg}, data}`: every HTTP API reply.
    #[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
    pub(crate) struct Envelope {
        pub meta: Meta,
        #[schema(value_type = Object)]
        pub data: Value,
    }

    impl Envelope {
        /// A reply with `status` and `data`.
        pub(crate) fn new(status: ApiStatus, data: Value) -> Self {
            Self {
                meta: Meta {
                    status: status as u8,
                    msg: status.msg(),
                },
                data,
            }
        }
        /// A success reply.
        pub(crate) fn ok(data: Value) -> Self {
            Self::new(ApiStatus::Success, data)
        }
        /// A failure reply with empty `data`.
        pub(crate) fn fail(status: ApiStatus) -> Self {
            Self::new(status, Value::Object(Default::default()))
        }
    }

    /// The `forceUserAuth` value of a config call: a JSON boolean, or the
    /// form strings "true" / "false".
    pub(crate) fn parse_flag(v: &Value) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" => Some(true),
            Value::String(s) if s == "false" => Some(false),
            _ => None,
        }
    }
}

/// Which client generation a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtocolGeneration {
    /// engine.io 3 / socket.io 4: socket.io-client 2.x, WeChat mini programs.
    EngineIo3,
    /// engine.io 4 / socket.io 5: socket.io-client 3.x and 4.x.
    EngineIo4,
}

impl ProtocolGeneration {
    /// The generation of a socket.io protocol version.
    pub(crate) fn of(v: ao_socketio::socket::SocketVersion) -> Self {
        match v {
            ao_socketio::socket::SocketVersion::V4 => ProtocolGeneration::EngineIo3,
            ao_socketio::socket::SocketVersion::V5 => ProtocolGeneration::EngineIo4,
        }
    }
}
