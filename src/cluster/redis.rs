//! Shared state of a cluster, in Redis.
//!
//! Each node also keeps its own connections in a [`LocalState`]: the truth
//! it re-registers after Redis comes back (restarted or unreachable for a
//! while), and what it answers from while Redis cannot be reached.
//!
//! Every node refreshes a heartbeat key that lives `node_ttl`. A node whose
//! heartbeat expired is dead: the first surviving node to claim it removes
//! its members and connections and tells their rooms `remote_disconnect`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::EventInterface;
use fred::prelude::{HashesInterface, KeysInterface, SetsInterface, SortedSetsInterface};
use fred::types::{Expiration, SetOptions};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::local::{LocalState, RATE_WINDOW};
use super::{Arrival, ClusterError, ClusterState, Departure, Member, PresenceSeq};
use crate::logging::Chain;
use crate::protocol::event;
use crate::redis::{scripts, FrameTags, Redis, RedisError};

/// A member as stored in Redis.
#[derive(Debug, Serialize, Deserialize)]
struct StoredMember {
    #[serde(rename = "r")]
    room: String,
    #[serde(rename = "u")]
    uid: Value,
    #[serde(rename = "k")]
    uid_key: String,
    #[serde(rename = "s")]
    sid: String,
    #[serde(rename = "d")]
    dummy: bool,
    #[serde(rename = "n")]
    node: String,
}

impl StoredMember {
    fn member(self) -> Member {
        Member {
            uid: self.uid,
            uid_key: self.uid_key,
            sid: self.sid,
            dummy: self.dummy,
        }
    }
}

/// A connection as stored in Redis.
#[derive(Debug, Serialize, Deserialize)]
struct StoredConnection {
    #[serde(rename = "k")]
    uid_key: String,
    #[serde(rename = "n")]
    node: String,
}

fn cluster_err(e: RedisError) -> ClusterError {
    ClusterError::from(e)
}

fn fred_err(e: fred::error::Error) -> ClusterError {
    ClusterError::from(e)
}

/// Kicks out a connection of this node by its sid.
type KickHere = Box<dyn Fn(&str) + Send + Sync>;

/// Redis-backed [`ClusterState`].
pub(crate) struct RedisState {
    redis: Redis,
    local: LocalState,
    node: String,
    ttl: Duration,
    /// Redis missed a change (or restarted): re-register this node's truth.
    dirty: AtomicBool,
    /// Kicks out a connection on this node (set by [`RedisState::start`]).
    kick_here: std::sync::OnceLock<KickHere>,
}

impl RedisState {
    /// State for node `node` on `redis`; [`RedisState::start`] begins its heartbeat.
    pub(crate) fn new(redis: Redis, node: String, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            redis,
            local: LocalState::new(),
            node,
            ttl,
            dirty: AtomicBool::new(false),
            kick_here: std::sync::OnceLock::new(),
        })
    }

    /// Registers the node and starts its heartbeat, the watch for dead
    /// nodes and re-registration after Redis outages. `sockets` counts the
    /// node's open connections (reported to the admin API's stat);
    /// `kick_here` kicks out a connection of this node that a newer login
    /// elsewhere replaced while Redis could not tell this node.
    pub(crate) async fn start(
        self: &Arc<Self>,
        sockets: impl Fn() -> usize + Send + Sync + 'static,
        kick_here: impl Fn(&str) + Send + Sync + 'static,
    ) -> Result<(), ClusterError> {
        let _ = self.kick_here.set(Box::new(kick_here));
        self.heartbeat(sockets()).await?;
        let me = self.clone();
        let mut reconnects = self.redis.client.reconnect_rx();
        tokio::spawn(async move {
            while reconnects.recv().await.is_ok() {
                me.dirty.store(true, Ordering::Relaxed);
            }
        });
        let me = self.clone();
        tokio::spawn(async move { me.maintain(sockets).await });
        Ok(())
    }

    fn key(&self, name: &str) -> String {
        self.redis.keys.state(name)
    }

    fn node_key(&self, node: &str, what: &str) -> String {
        self.key(&format!("node:{node}:{what}"))
    }

    /// Writes the heartbeat; returns whether it had expired (this node was
    /// taken for dead or Redis lost it).
    async fn heartbeat(&self, sockets: usize) -> Result<bool, ClusterError> {
        let ttl_ms = self.ttl.as_millis() as i64;
        let old: Option<String> = self
            .redis
            .cmd()
            .set(
                self.node_key(&self.node, "alive"),
                sockets as i64,
                Some(Expiration::PX(ttl_ms)),
                None,
                true,
            )
            .await
            .map_err(fred_err)?;
        let _: i64 = self
            .redis
            .cmd()
            .sadd(self.key("nodes"), self.node.as_str())
            .await
            .map_err(fred_err)?;
        Ok(old.is_none())
    }

    async fn maintain(self: Arc<Self>, sockets: impl Fn() -> usize) {
        let tick = (self.ttl / 4).max(Duration::from_millis(100));
        let mut reap_after = Instant::now() + tick;
        loop {
            tokio::time::sleep(tick).await;
            match self.heartbeat(sockets()).await {
                Ok(expired) => {
                    if expired {
                        tracing::warn!(node = %self.node, "heartbeat had expired; registering this node again");
                        self.dirty.store(true, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %Chain(&e), "heartbeat failed");
                    self.dirty.store(true, Ordering::Relaxed);
                    continue;
                }
            }
            if self.dirty.swap(false, Ordering::Relaxed) {
                match self.resync().await {
                    Ok(()) => {
                        tracing::info!(node = %self.node, "presence registered again in redis");
                        // Give other nodes one TTL to register again before
                        // any of them is taken for dead.
                        reap_after = Instant::now() + self.ttl;
                    }
                    Err(e) => {
                        tracing::warn!(error = %Chain(&e), "could not register presence again");
                        self.dirty.store(true, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            if Instant::now() >= reap_after {
                if let Err(e) = self.reap().await {
                    tracing::warn!(error = %Chain(&e), "could not check for dead nodes");
                }
            }
        }
    }

    /// Makes Redis hold exactly this node's local truth. When another node
    /// took this one for dead meanwhile (and told the rooms its members
    /// were gone), the members registered again are announced again. A
    /// connection whose uid logged in again elsewhere meanwhile (its kick
    /// went out while this node was not listening) is not registered again
    /// but kicked out here.
    async fn resync(&self) -> Result<(), ClusterError> {
        let reaped_key = self.node_key(&self.node, "reaped");
        let reaped: bool = self
            .redis
            .cmd()
            .exists(&reaped_key)
            .await
            .map_err(fred_err)?;
        let members = self.local.member_snapshot();
        let connections = self.local.online_users().await?;
        let keep: HashSet<String> = members
            .iter()
            .map(|(_, m)| m.sid.clone())
            .chain(connections.iter().map(|(_, sid)| sid.clone()))
            .collect();
        self.purge(&self.node, &keep).await?;
        let mut superseded = HashSet::new();
        for (uid, sid) in &connections {
            if !self.redis_reregister(uid, sid).await? {
                superseded.insert(sid.as_str());
            }
        }
        for (room, member) in &members {
            if superseded.contains(member.sid.as_str()) {
                continue; // the newer login took its place
            }
            // A seq means the member was missing and is registered anew.
            let (_, seq) = self.redis_join(room, member, true).await?;
            if reaped && seq.is_some() && !member.dummy {
                self.announce_for(&self.node, room, event::REMOTE_JOIN, &member.uid, seq)
                    .await;
            }
        }
        if reaped {
            let _: i64 = self.redis.cmd().del(&reaped_key).await.map_err(fred_err)?;
        }
        if let Some(kick) = self.kick_here.get() {
            for sid in superseded {
                tracing::warn!(%sid, "replaced by a newer login while redis could not tell this node; kicking it out");
                kick(sid);
            }
        }
        Ok(())
    }

    /// Cleans up after every node whose heartbeat expired.
    async fn reap(&self) -> Result<(), ClusterError> {
        let nodes: Vec<String> = self
            .redis
            .cmd()
            .smembers(self.key("nodes"))
            .await
            .map_err(fred_err)?;
        for node in nodes.into_iter().filter(|n| *n != self.node) {
            let claimed: i64 = scripts::run(
                &self.redis.client,
                scripts::CLAIM,
                vec![
                    self.node_key(&node, "alive"),
                    self.key("nodes"),
                    self.node_key(&node, "reaped"),
                ],
                vec![node.clone()],
            )
            .await
            .map_err(cluster_err)?;
            if claimed == 1 {
                tracing::warn!(dead = %node, "node stopped sending heartbeats; removing its connections");
                self.purge(&node, &HashSet::new()).await?;
            }
        }
        Ok(())
    }

    /// Removes every member and connection of `node` not in `keep`,
    /// telling the rooms of removed members `remote_disconnect`.
    async fn purge(&self, node: &str, keep: &HashSet<String>) -> Result<(), ClusterError> {
        let client = self.redis.cmd();
        let member_set = self.node_key(node, "members");
        let sids: Vec<String> = client.smembers(&member_set).await.map_err(fred_err)?;
        for sid in sids.iter().filter(|s| !keep.contains(*s)) {
            let stored: Option<String> = client
                .hget(self.key("members"), sid.as_str())
                .await
                .map_err(fred_err)?;
            let Some(stored) = stored.and_then(|s| serde_json::from_str::<StoredMember>(&s).ok())
            else {
                let _: i64 = client
                    .srem(&member_set, sid.as_str())
                    .await
                    .map_err(fred_err)?;
                continue;
            };
            let removed = self.redis_leave(&stored.room, sid, node).await?;
            if let Some(gone) = removed.filter(|d| !d.member.dummy) {
                let (room, uid) = (&stored.room, &gone.member.uid);
                self.announce_for(node, room, event::REMOTE_DISCONNECT, uid, gone.seq)
                    .await;
            }
        }
        let conn_set = self.node_key(node, "conns");
        let sids: Vec<String> = client.smembers(&conn_set).await.map_err(fred_err)?;
        for sid in sids.iter().filter(|s| !keep.contains(*s)) {
            let stored: Option<String> = client
                .hget(self.key("conns"), sid.as_str())
                .await
                .map_err(fred_err)?;
            match stored.and_then(|s| serde_json::from_str::<StoredConnection>(&s).ok()) {
                Some(c) => self.redis_unregister(&c.uid_key, sid, node).await?,
                None => {
                    let _: i64 = client
                        .srem(&conn_set, sid.as_str())
                        .await
                        .map_err(fred_err)?;
                }
            }
        }
        Ok(())
    }

    /// Tells a room on every node but `node` (whose members it was) that a
    /// member of `node` is gone (`remote_disconnect {uid}`) or back
    /// (`remote_join {uid}`): a change that node's own members were told of
    /// when it happened, or that never happened as far as they know.
    async fn announce_for(&self, node: &str, room: &str, ev: &str, uid: &Value, seq: PresenceSeq) {
        let payload = serde_json::json!({ "uid": uid }).to_string();
        let sent = self
            .redis
            .publish_room(
                room,
                ev,
                &payload,
                FrameTags {
                    presence: seq,
                    skip_node: Some(node),
                    ..FrameTags::default()
                },
            )
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %Chain(&e), ?room, %node, event = ev, "could not announce a presence change for a node's member");
        }
    }

    async fn redis_join(
        &self,
        room: &str,
        member: &Member,
        keep_existing: bool,
    ) -> Result<(Vec<Member>, PresenceSeq), ClusterError> {
        let stored = StoredMember {
            room: room.to_owned(),
            uid: member.uid.clone(),
            uid_key: member.uid_key.clone(),
            sid: member.sid.clone(),
            dummy: member.dummy,
            node: self.node.clone(),
        };
        let json = serde_json::to_string(&stored)?;
        let reply: Vec<String> = scripts::run(
            &self.redis.client,
            scripts::JOIN,
            vec![
                self.key(&format!("room:{room}")),
                self.key("members"),
                self.key("rooms"),
                self.node_key(&self.node, "members"),
                self.key("joinseq"),
            ],
            vec![
                room.to_owned(),
                member.sid.clone(),
                json,
                if keep_existing { "1" } else { "0" }.to_owned(),
            ],
        )
        .await
        .map_err(cluster_err)?;
        let Some((seq, before)) = reply.split_first() else {
            return Ok((Vec::new(), None));
        };
        Ok((parse_members(before), seq.parse().ok()))
    }

    async fn redis_leave(
        &self,
        room: &str,
        sid: &str,
        node: &str,
    ) -> Result<Option<Departure>, ClusterError> {
        let removed: Option<Vec<String>> = scripts::run(
            &self.redis.client,
            scripts::LEAVE,
            vec![
                self.key(&format!("room:{room}")),
                self.key("members"),
                self.key("rooms"),
                self.node_key(node, "members"),
                self.key("joinseq"),
            ],
            vec![room.to_owned(), sid.to_owned()],
        )
        .await
        .map_err(cluster_err)?;
        let Some([member, seq]) = removed.as_deref() else {
            return Ok(None);
        };
        Ok(serde_json::from_str::<StoredMember>(member)
            .ok()
            .map(|m| Departure {
                member: m.member(),
                seq: seq.parse().ok(),
            }))
    }

    /// Runs `script` (REGISTER or REREGISTER) for connection `sid` of `uid` on this node.
    async fn redis_connection<R: fred::prelude::FromValue>(
        &self,
        script: &str,
        uid: &str,
        sid: &str,
    ) -> Result<R, ClusterError> {
        let json = serde_json::to_string(&StoredConnection {
            uid_key: uid.to_owned(),
            node: self.node.clone(),
        })
        .map_err(ClusterError::from)?;
        scripts::run(
            &self.redis.client,
            script,
            vec![
                self.key(&format!("conn:{uid}")),
                self.key("conns"),
                self.node_key(&self.node, "conns"),
            ],
            vec![sid.to_owned(), json],
        )
        .await
        .map_err(cluster_err)
    }

    /// Makes `sid` the connection of `uid`; returns the ones it replaces.
    async fn redis_register(&self, uid: &str, sid: &str) -> Result<Vec<String>, ClusterError> {
        self.redis_connection(scripts::REGISTER, uid, sid).await
    }

    /// Registers `sid` again; `false` if a newer login of `uid` replaced it.
    async fn redis_reregister(&self, uid: &str, sid: &str) -> Result<bool, ClusterError> {
        let registered: i64 = self.redis_connection(scripts::REREGISTER, uid, sid).await?;
        Ok(registered == 1)
    }

    async fn redis_unregister(&self, uid: &str, sid: &str, node: &str) -> Result<(), ClusterError> {
        let _: i64 = scripts::run(
            &self.redis.client,
            scripts::UNREGISTER,
            vec![
                self.key(&format!("conn:{uid}")),
                self.key("conns"),
                self.node_key(node, "conns"),
            ],
            vec![sid.to_owned()],
        )
        .await
        .map_err(cluster_err)?;
        Ok(())
    }

    /// Notes a failed Redis write: the local truth is re-registered later.
    fn missed(&self, what: &str, e: &ClusterError) {
        tracing::warn!(error = %Chain(e), "redis unreachable during {what}; using this node's state");
        self.dirty.store(true, Ordering::Relaxed);
    }
}

fn parse_members(raw: &[String]) -> Vec<Member> {
    raw.iter()
        .filter_map(|s| serde_json::from_str::<StoredMember>(s).ok())
        .map(StoredMember::member)
        .collect()
}

#[async_trait::async_trait]
impl ClusterState for RedisState {
    async fn auth_allowed(&self, uid: &str, limit: u32) -> Result<bool, ClusterError> {
        let allowed: Result<i64, _> = scripts::run(
            &self.redis.client,
            scripts::RATE,
            vec![self.key(&format!("rate:{uid}"))],
            vec![limit.to_string(), RATE_WINDOW.as_secs().to_string()],
        )
        .await;
        match allowed {
            Ok(n) => Ok(n == 1),
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "rate limit window unreachable; counting on this node");
                self.local.auth_allowed(uid, limit).await
            }
        }
    }

    async fn register_connection(&self, uid: &str, sid: &str) -> Result<Vec<String>, ClusterError> {
        let local = self.local.register_connection(uid, sid).await?;
        match self.redis_register(uid, sid).await {
            Ok(older) => {
                let mut all: Vec<String> = local;
                all.extend(older.into_iter().filter(|s| s != sid));
                all.sort();
                all.dedup();
                Ok(all)
            }
            Err(e) => {
                self.missed("login", &e);
                Ok(local)
            }
        }
    }

    async fn unregister_connection(&self, uid: &str, sid: &str) -> Result<(), ClusterError> {
        self.local.unregister_connection(uid, sid).await?;
        if let Err(e) = self.redis_unregister(uid, sid, &self.node).await {
            self.missed("logout", &e);
        }
        Ok(())
    }

    async fn join(&self, room: &str, member: Member) -> Result<Arrival, ClusterError> {
        let local = self.local.join(room, member.clone()).await?;
        match self.redis_join(room, &member, false).await {
            Ok((before, seq)) => Ok(Arrival {
                before: before.into_iter().map(Arc::new).collect(),
                seq,
            }),
            Err(e) => {
                self.missed("join", &e);
                // This node's numbers are not the cluster's: unordered.
                Ok(Arrival { seq: None, ..local })
            }
        }
    }

    async fn leave(&self, room: &str, sid: &str) -> Result<Option<Departure>, ClusterError> {
        let local = self.local.leave(room, sid).await?;
        match self.redis_leave(room, sid, &self.node).await {
            Ok(removed) => Ok(removed),
            Err(e) => {
                self.missed("leave", &e);
                Ok(local.map(|d| Departure { seq: None, ..d }))
            }
        }
    }

    async fn room_of(&self, sid: &str) -> Result<Option<String>, ClusterError> {
        let stored: Result<Option<String>, _> =
            self.redis.cmd().hget(self.key("members"), sid).await;
        match stored {
            Ok(s) => Ok(s
                .and_then(|s| serde_json::from_str::<StoredMember>(&s).ok())
                .map(|m| m.room)),
            Err(_) => self.local.room_of(sid).await,
        }
    }

    async fn member_count(&self, room: &str) -> Result<usize, ClusterError> {
        let counted: Result<usize, _> = self
            .redis
            .cmd()
            .zcard(self.key(&format!("room:{room}")))
            .await;
        match counted {
            Ok(n) => Ok(n),
            Err(_) => self.local.member_count(room).await,
        }
    }

    async fn members(&self, room: &str) -> Result<Vec<Member>, ClusterError> {
        let raw: Result<Vec<String>, _> = scripts::run(
            &self.redis.client,
            scripts::MEMBERS,
            vec![self.key(&format!("room:{room}")), self.key("members")],
            Vec::<String>::new(),
        )
        .await;
        match raw {
            Ok(raw) => Ok(parse_members(&raw)),
            Err(_) => self.local.members(room).await,
        }
    }

    async fn online_users(&self) -> Result<Vec<(String, String)>, ClusterError> {
        let all: std::collections::HashMap<String, String> = self
            .redis
            .cmd()
            .hgetall(self.key("conns"))
            .await
            .map_err(fred_err)?;
        let mut users: Vec<(String, String)> = all
            .into_iter()
            .filter_map(|(sid, c)| {
                serde_json::from_str::<StoredConnection>(&c)
                    .ok()
                    .map(|c| (c.uid_key, sid))
            })
            .collect();
        users.sort();
        Ok(users)
    }

    async fn rooms(&self) -> Result<Vec<String>, ClusterError> {
        let mut rooms: Vec<String> = self
            .redis
            .cmd()
            .smembers(self.key("rooms"))
            .await
            .map_err(fred_err)?;
        rooms.sort();
        Ok(rooms)
    }

    async fn counts(&self) -> Result<(usize, usize), ClusterError> {
        let cmd = self.redis.cmd();
        let users: usize = cmd.hlen(self.key("conns")).await.map_err(fred_err)?;
        let rooms: usize = cmd.scard(self.key("rooms")).await.map_err(fred_err)?;
        Ok((users, rooms))
    }

    async fn force_user_auth(&self) -> Result<bool, ClusterError> {
        let v: Option<String> = self
            .redis
            .cmd()
            .get(self.key("force_user_auth"))
            .await
            .map_err(fred_err)?;
        Ok(v.as_deref() == Some("1"))
    }

    async fn set_force_user_auth(&self, on: bool) -> Result<(), ClusterError> {
        let _: () = self
            .redis
            .cmd()
            .set(
                self.key("force_user_auth"),
                if on { "1" } else { "0" },
                None,
                None::<SetOptions>,
                false,
            )
            .await
            .map_err(fred_err)?;
        Ok(())
    }

    async fn leave_cluster(&self) {
        if let Err(e) = self.purge(&self.node, &HashSet::new()).await {
            tracing::warn!(error = %Chain(&e), "could not remove this node's connections from redis");
        }
        let _: Result<i64, _> = self
            .redis
            .cmd()
            .del(self.node_key(&self.node, "alive"))
            .await;
        let _: Result<i64, _> = self
            .redis
            .cmd()
            .srem(self.key("nodes"), self.node.as_str())
            .await;
    }

    async fn socket_count(&self, local: usize) -> Result<usize, ClusterError> {
        let nodes: Vec<String> = self
            .redis
            .cmd()
            .smembers(self.key("nodes"))
            .await
            .map_err(fred_err)?;
        let others: Vec<String> = nodes
            .iter()
            .filter(|n| **n != self.node)
            .map(|n| self.node_key(n, "alive"))
            .collect();
        if others.is_empty() {
            return Ok(local);
        }
        let counts: Vec<Option<i64>> = self.redis.cmd().mget(others).await.map_err(fred_err)?;
        Ok(local
            + counts
                .into_iter()
                .flatten()
                .map(|n| n.max(0) as usize)
                .sum::<usize>())
    }
}
