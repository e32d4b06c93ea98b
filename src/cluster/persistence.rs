//! Whether the cluster's Redis keeps what it acknowledged across a restart:
//! checked once at start-up with `CONFIG GET appendonly`.
//!
//! Without the append-only file, a message the server acknowledged lives
//! only in Redis's memory (and its last snapshot): a Redis restart loses
//! it. That is a deployment choice the server cannot fix, so it warns, in
//! the log and in `/readyz` on the internal listeners, and stays ready.
//! Managed Redis services often disable or rename `CONFIG`; then the
//! persistence could not be checked, which is logged and nothing more.

use fred::prelude::ClientLike;
use fred::types::{ClusterHash, CustomCommand, Value};

use crate::redis::Redis;

/// What the start-up check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Persistence {
    /// `appendonly yes`.
    AppendOnly,
    /// `appendonly no`: acknowledged messages do not survive a Redis restart.
    NoAppendOnly,
    /// `CONFIG GET` was refused (disabled, renamed, not permitted) or gave
    /// no answer; the reason.
    Unknown(String),
}

impl Persistence {
    /// Asks Redis (on a Redis Cluster, one of its nodes).
    pub(crate) async fn check(redis: &Redis) -> Persistence {
        let reply: Result<Value, _> = redis
            .client
            .with_options(&crate::redis::once())
            .custom(
                CustomCommand::new_static("CONFIG", ClusterHash::Random, false),
                vec!["GET", "appendonly"],
            )
            .await;
        match reply {
            Ok(value) => Self::from_reply(&value),
            Err(e) => Persistence::Unknown(format!("CONFIG GET appendonly: {e}")),
        }
    }

    /// Reads a `CONFIG GET appendonly` reply: `["appendonly", "yes"]`
    /// (RESP2) or `{"appendonly": "yes"}` (RESP3).
    fn from_reply(value: &Value) -> Persistence {
        let setting = match value {
            Value::Array(items) => items.get(1).and_then(Value::as_string),
            Value::Map(map) => map.values().next().and_then(Value::as_string),
            _ => None,
        };
        match setting.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("yes") => Persistence::AppendOnly,
            Some("no") => Persistence::NoAppendOnly,
            Some(other) => Persistence::Unknown(format!("appendonly is {other:?}")),
            None => Persistence::Unknown(format!("CONFIG GET appendonly answered {value:?}")),
        }
    }

    /// Logs what was found: a warning when acknowledged messages would not
    /// survive a Redis restart.
    pub(crate) fn log(&self) {
        match self {
            Persistence::AppendOnly => tracing::info!("redis persistence: appendonly yes"),
            Persistence::NoAppendOnly => tracing::warn!(
                "redis persistence: appendonly is no; acknowledged messages are lost when Redis restarts (set appendonly yes, see docs/CLUSTER.md)"
            ),
            Persistence::Unknown(reason) => tracing::info!(
                %reason,
                "redis persistence could not be checked; make sure appendonly is yes"
            ),
        }
    }

    /// The warning `/readyz` gives on the internal listeners, if any.
    pub(crate) fn warning(&self) -> Option<&'static str> {
        match self {
            Persistence::NoAppendOnly => {
                Some("redis appendonly is no: acknowledged messages are lost when Redis restarts")
            }
            Persistence::AppendOnly | Persistence::Unknown(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_resp2_and_resp3_replies() {
        let resp2 = |v: &str| Value::Array(vec!["appendonly".into(), v.into()]);
        assert_eq!(
            Persistence::from_reply(&resp2("yes")),
            Persistence::AppendOnly
        );
        assert_eq!(
            Persistence::from_reply(&resp2("no")),
            Persistence::NoAppendOnly
        );
        assert!(matches!(
            Persistence::from_reply(&Value::Array(vec![])),
            Persistence::Unknown(_)
        ));
        let mut map = fred::types::Map::new();
        map.insert("appendonly".into(), "no".into());
        assert_eq!(
            Persistence::from_reply(&Value::Map(map)),
            Persistence::NoAppendOnly
        );
    }
}
