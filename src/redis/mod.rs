//! What every Redis-backed part shares: the connections (fred, reconnecting
//! forever), the names of keys and channels, the frames nodes publish to
//! each other and the Lua script runner.

pub(crate) mod scripts;

use std::time::Duration;

use fred::clients::{SubscriberClient, WithOptions};
use fred::interfaces::PubsubInterface;
use fred::prelude::{Builder, Client, ClientLike, Config as FredConfig, ReconnectPolicy};
use fred::types::config::{ServerConfig, TlsConnector};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::config::Config;

/// How long one Redis command may take before it counts as failed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// How many presence events of a room its presence log keeps.
pub const PRESENCE_LOG_CAP: usize = 128;

/// How long a room's presence log is kept after its last event.
pub const PRESENCE_LOG_TTL: Duration = Duration::from_secs(300);

/// Command options for anything that must not be retried or wait for a
/// reconnect: sent once, failing at once while Redis is unreachable.
pub fn once() -> fred::types::config::Options {
    fred::types::config::Options {
        max_attempts: Some(1),
        timeout: Some(COMMAND_TIMEOUT),
        fail_fast: true,
        ..Default::default()
    }
}

/// Why Redis could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RedisError {
    /// The client or the server failed.
    #[error("Redis request failed")]
    Driver(#[from] fred::error::Error),
    /// A frame could not be encoded.
    #[error("cannot encode a frame for Redis")]
    Encode(#[source] std::sync::Arc<serde_json::Error>),
    /// No URL is configured.
    #[error("no Redis URL configured")]
    NoUrl,
    /// TLS was asked for (`rediss://`) and cannot be set up.
    #[error("cannot set up TLS to Redis")]
    Tls(#[from] crate::tls::TlsError),
}

impl From<serde_json::Error> for RedisError {
    fn from(e: serde_json::Error) -> Self {
        RedisError::Encode(std::sync::Arc::new(e))
    }
}

/// The connections of one node: commands, and a subscriber for the channels
/// of the rooms that have members here.
#[derive(Clone)]
pub struct Redis {
    pub(crate) client: Client,
    pub(crate) subscriber: SubscriberClient,
    pub(crate) keys: Keys,
}

impl Redis {
    /// The command connection with every command sent once and failing at
    /// once while Redis is unreachable ([`once`]), instead of waiting for a
    /// reconnect until its timeout.
    pub fn cmd(&self) -> WithOptions<Client> {
        self.client.with_options(&once())
    }

    /// Connects to the Redis (or Redis Cluster) the configuration names.
    /// Fails when the URL is invalid or the first connection is refused;
    /// after that, lost connections are re-established forever.
    pub async fn connect(config: &Config) -> Result<Redis, RedisError> {
        let url = config.redis_url.as_deref().ok_or(RedisError::NoUrl)?;
        // A `rediss://` URL connects over TLS or not at all, never in clear
        // text, with the trust of `crate::tls` (fred is handed the plain
        // scheme so that it does not set up TLS of its own).
        let tls = crate::tls::redis_url_uses_tls(url);
        let mut fred_config = FredConfig::from_url(&without_tls_scheme(url))?;
        fred_config.tls = if tls {
            crate::tls::install_provider();
            let client = crate::tls::redis_client_config(config.redis_ca.as_deref())?;
            Some(TlsConnector::from(client).into())
        } else {
            None
        };
        if config.redis_cluster {
            if let ServerConfig::Centralized { server } = &fred_config.server {
                fred_config.server = ServerConfig::Clustered {
                    hosts: vec![server.clone()],
                    policy: Default::default(),
                };
            }
        }
        let clustered = matches!(fred_config.server, ServerConfig::Clustered { .. });
        let build = |config: FredConfig| {
            let mut builder = Builder::from_config(config);
            builder
                // Reconnect forever, at most a second apart.
                .set_policy(ReconnectPolicy::new_exponential(0, 50, 1_000, 2))
                .with_connection_config(|c| {
                    c.connection_timeout = Duration::from_secs(2);
                    c.internal_command_timeout = Duration::from_secs(2);
                    // A write is sent once: a retried script could append twice.
                    c.max_command_attempts = 1;
                    c.tcp.nodelay = Some(true);
                })
                .with_performance_config(|p| {
                    p.default_command_timeout = COMMAND_TIMEOUT;
                    // Published frames wait here for the dispatcher; a
                    // lagging dispatcher loses frames, so leave ample room.
                    p.broadcast_channel_capacity = 65_536;
                });
            builder
        };
        let client = build(fred_config.clone()).build()?;
        let subscriber = build(fred_config).build_subscriber_client()?;
        client.init().await?;
        subscriber.init().await?;
        Ok(Redis {
            client,
            subscriber,
            keys: Keys {
                prefix: config.redis_prefix.clone(),
                clustered,
            },
        })
    }

    /// Waits at most `limit` for the command connection to be up; whether
    /// it is. The subscriber can be back before the connection a catch-up
    /// reads through, and commands fail at once while it is down.
    pub async fn commands_up(&self, limit: Duration) -> bool {
        // fred answers at once when connected, else with the outcome of
        // its next connection attempt (one at least every second).
        let connected = async { while self.client.wait_for_connect().await.is_err() {} };
        tokio::time::timeout(limit, connected).await.is_ok()
    }

    /// Publishes `event` with `data` (JSON) to the members of `room` on
    /// every node, as `tags` say. Sent once, on the command connection, so
    /// it stays in order with the scripts sent before it.
    ///
    /// A numbered presence event is also kept in the room's presence log
    /// (in the same step), for nodes that miss it.
    pub async fn publish_room(
        &self,
        room: &str,
        event: &str,
        data: &str,
        tags: FrameTags<'_>,
    ) -> Result<(), RedisError> {
        let frame = format!("{}{data}}}", room_frame_head(room, event, tags));
        let channel = self.keys.room_channel(room);
        let Some(seq) = tags.presence else {
            let _: i64 = self.cmd().spublish(channel, frame).await?;
            return Ok(());
        };
        let _: i64 = scripts::run(
            &self.client,
            scripts::PRESENCE,
            vec![self.keys.presence_log(room)],
            vec![
                seq.to_string(),
                frame,
                channel,
                PRESENCE_LOG_CAP.to_string(),
                PRESENCE_LOG_TTL.as_secs().to_string(),
            ],
        )
        .await?;
        Ok(())
    }

    /// The frames of `room`'s presence log numbered after `after`, in
    /// presence order.
    pub async fn presence_log(&self, room: &str, after: u64) -> Result<Vec<String>, RedisError> {
        scripts::run(
            &self.client,
            scripts::PRESENCE_AFTER,
            vec![self.keys.presence_log(room)],
            vec![after.to_string()],
        )
        .await
    }

    /// Publishes `frame` to every node's control channel.
    pub async fn publish_control(&self, frame: &ControlFrame) -> Result<(), RedisError> {
        let frame = serde_json::to_string(frame)?;
        let _: i64 = self
            .cmd()
            .spublish(self.keys.control_channel(), frame)
            .await?;
        Ok(())
    }
}

/// `rediss://…` → `redis://…` (`valkeys` → `valkey`, with any `-cluster`
/// suffix kept); other URLs unchanged.
fn without_tls_scheme(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let lower = scheme.to_ascii_lowercase();
    let plain = if let Some(tail) = lower.strip_prefix("rediss") {
        format!("redis{tail}")
    } else if let Some(tail) = lower.strip_prefix("valkeys") {
        format!("valkey{tail}")
    } else {
        return url.to_owned();
    };
    format!("{plain}://{rest}")
}

/// Names of every key and channel, in one place.
///
/// Message keys follow the original service's layout
/// (`msg_<room>_insert`, `msg_<room>_update`, `msg_<room>_update_backup`,
/// `msg_<room>_ignore`), so a history it wrote syncs unchanged; on a Redis
/// Cluster the room is wrapped in a hash tag (`msg_{<room>}_insert`) so all
/// keys and the channel of one room live in one slot. Cluster state lives
/// under the `{ao}` tag so its scripts can touch several keys atomically.
#[derive(Debug, Clone)]
pub struct Keys {
    pub(crate) prefix: String,
    pub(crate) clustered: bool,
}

impl Keys {
    /// The room as it appears in its keys. On a Redis Cluster it is a hash
    /// tag (`{room}`), so every key of the room lands in one slot. Redis
    /// takes a tag to end at the first `}`, so a room with a `}` in it (or
    /// none at all, an empty tag being no tag) gets
    /// a tag of its own instead: a digest of the room, followed by the room
    /// itself, which keeps its keys apart from every other room's.
    fn room_part(&self, room: &str) -> String {
        if !self.clustered {
            room.to_owned()
        } else if room.is_empty() || room.contains('}') {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(room.as_bytes());
            format!("{{~{}}}{room}", hex::encode(&digest[..8]))
        } else {
            format!("{{{room}}}")
        }
    }

    /// A key of the original layout: `msg_<room>_<kind>`.
    pub fn msg(&self, room: &str, kind: &str) -> String {
        format!("{}msg_{}_{kind}", self.prefix, self.room_part(room))
    }

    /// The channel a room's events are published on.
    pub fn room_channel(&self, room: &str) -> String {
        format!("{}ao:room:{}", self.prefix, self.room_part(room))
    }

    /// The log of a room's recent presence events (in the room's slot, so
    /// the script that publishes an event can keep it).
    pub fn presence_log(&self, room: &str) -> String {
        format!("{}ao:presence:{}", self.prefix, self.room_part(room))
    }

    /// The prefix of a room's msg-rate windows (`<this>:<unix second>`).
    pub fn room_rate(&self, room: &str) -> String {
        format!("{}ao:rate:{}", self.prefix, self.room_part(room))
    }

    /// The channel every node listens on for node-directed commands (kickout).
    pub fn control_channel(&self) -> String {
        format!("{}{{ao}}:control", self.prefix)
    }

    /// A cluster-state key.
    pub fn state(&self, name: &str) -> String {
        format!("{}{{ao}}:{name}", self.prefix)
    }
}

/// An event for the members of a room, as published between nodes.
#[derive(Debug, Serialize, Deserialize)]
pub struct RoomFrame<'a> {
    /// The room.
    #[serde(rename = "r", borrow)]
    pub room: std::borrow::Cow<'a, str>,
    /// The socket.io event name.
    #[serde(rename = "e", borrow)]
    pub event: std::borrow::Cow<'a, str>,
    /// A socket not to deliver to (the sender).
    #[serde(rename = "x", default, borrow)]
    pub except: Option<std::borrow::Cow<'a, str>>,
    /// A presence event's place in the order of presence changes
    /// ([`crate::cluster::PresenceSeq`]).
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<u64>,
    /// A presence event is only for members whose join came after this
    /// number ([`crate::realtime::presence::Order`]).
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// A node whose members are not told (the node a presence change is
    /// about, when that node decided it without Redis: its members were
    /// told, or are alive as far as it knows).
    #[serde(rename = "n", default, borrow, skip_serializing_if = "Option::is_none")]
    pub skip_node: Option<std::borrow::Cow<'a, str>>,
    /// The event's payload.
    #[serde(rename = "d", borrow)]
    pub data: &'a RawValue,
}

/// Who a [`RoomFrame`] is for, besides the members of its room.
#[derive(Debug, Default, Clone, Copy)]
pub struct FrameTags<'a> {
    /// A socket not to deliver to (the sender).
    pub except: Option<&'a str>,
    /// A presence event's place in the order of presence changes.
    pub presence: Option<u64>,
    /// A presence event is only for members whose join came after this.
    pub since: Option<u64>,
    /// A node whose members are not told.
    pub skip_node: Option<&'a str>,
}

impl<'a> FrameTags<'a> {
    /// For everyone in the room but socket `sid`, if any.
    pub fn except(sid: Option<&'a str>) -> Self {
        FrameTags {
            except: sid,
            ..Self::default()
        }
    }
}

/// The JSON of a [`RoomFrame`] up to its payload: the payload and a closing
/// `}` complete it (lets a Lua script publish what it just stored).
pub fn room_frame_head(room: &str, event: &str, tags: FrameTags<'_>) -> String {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let except = tags.except.map_or_else(|| "null".to_owned(), quote);
    let mut head = format!(
        "{{\"r\":{},\"e\":{},\"x\":{except},",
        quote(room),
        quote(event)
    );
    if let Some(seq) = tags.presence {
        head.push_str(&format!("\"p\":{seq},"));
    }
    if let Some(since) = tags.since {
        head.push_str(&format!("\"s\":{since},"));
    }
    if let Some(node) = tags.skip_node {
        head.push_str(&format!("\"n\":{},", quote(node)));
    }
    head.push_str("\"d\":");
    head
}

/// The internal room event a history clear publishes: nodes forget the
/// room's delivered seqs (never sent to clients).
pub const RESET_EVENT: &str = "\u{0}reset";

/// A command for the node that holds a connection.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ControlFrame {
    /// Send `kickout` to connection `sid` and close it.
    Kick {
        /// The connection's socket.io id.
        sid: String,
    },
    /// A readiness probe: the node that sent it waits to hear it back.
    Probe {
        /// Tells the probe's own frame from others'.
        nonce: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(head: String, data: &str) -> String {
        format!("{head}{data}}}")
    }

    #[test]
    fn fred_is_given_the_plain_scheme_of_a_tls_url() {
        assert_eq!(
            without_tls_scheme("rediss://:pw@h:1/2"),
            "redis://:pw@h:1/2"
        );
        assert_eq!(
            without_tls_scheme("rediss-cluster://h:1"),
            "redis-cluster://h:1"
        );
        assert_eq!(without_tls_scheme("valkeys://h:1"), "valkey://h:1");
        assert_eq!(without_tls_scheme("redis://h:1"), "redis://h:1");
    }

    /// The slot Redis Cluster computes for `key`: the CRC16 of its hash tag
    /// (from the first `{` to the first `}` after it, if not empty), or of
    /// the whole key.
    fn hash_tag(key: &str) -> &str {
        if let Some(open) = key.find('{') {
            if let Some(len) = key[open + 1..].find('}') {
                if len > 0 {
                    return &key[open + 1..open + 1 + len];
                }
            }
        }
        key
    }

    #[test]
    fn every_key_of_a_room_shares_one_hash_tag_whatever_its_id() {
        let keys = Keys {
            prefix: "p:".into(),
            clustered: true,
        };
        let rooms = [
            "plain", "}", "}x", "a}b", "{", "{}", "x{y}z", "r:1", "r_insert", "",
        ];
        let mut all = std::collections::HashSet::new();
        for room in rooms {
            let of_room = [
                keys.msg(room, "insert"),
                keys.msg(room, "update"),
                keys.msg(room, "update_backup"),
                keys.msg(room, "update_order"),
                keys.msg(room, "ignore"),
                keys.msg(room, "epoch"),
                keys.room_channel(room),
                keys.presence_log(room),
                keys.room_rate(room),
            ];
            let tag = hash_tag(&of_room[0]);
            assert_ne!(tag, of_room[0], "{room:?} has a tag");
            for k in &of_room {
                assert_eq!(hash_tag(k), tag, "{room:?}: {k}");
                assert!(all.insert(k.clone()), "{k} belongs to one room only");
            }
            assert_ne!(
                tag, "ao",
                "{room:?} is not in the cluster state's slot by name"
            );
        }
        assert!(!all.contains(&keys.state("members")));
    }

    #[test]
    fn a_frame_head_and_payload_read_back_as_the_room_frame() {
        let text = frame(
            room_frame_head("r \"1\"", "msg", FrameTags::except(Some("sid1"))),
            r#"{"data":[1,2],"2":"u"}"#,
        );
        let f: RoomFrame<'_> = serde_json::from_str(&text).expect("frame");
        assert_eq!((&*f.room, &*f.event), ("r \"1\"", "msg"));
        assert_eq!(f.except.as_deref(), Some("sid1"));
        assert_eq!((f.presence, f.since, f.skip_node), (None, None, None));
        assert_eq!(f.data.get(), r#"{"data":[1,2],"2":"u"}"#);
    }

    #[test]
    fn presence_tags_read_back() {
        let tags = FrameTags {
            except: None,
            presence: Some(1_795_000_000_000_123),
            since: Some(7),
            skip_node: Some("node-a"),
        };
        let text = frame(room_frame_head("r", "remote_join", tags), r#"{"uid":1}"#);
        let f: RoomFrame<'_> = serde_json::from_str(&text).expect("frame");
        assert_eq!(f.except, None);
        assert_eq!(f.presence, Some(1_795_000_000_000_123));
        assert_eq!(f.since, Some(7));
        assert_eq!(f.skip_node.as_deref(), Some("node-a"));
        assert_eq!(f.data.get(), r#"{"uid":1}"#);
    }
}
