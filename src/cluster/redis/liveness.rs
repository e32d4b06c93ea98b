//! A node's liveness in the cluster: its heartbeat, the watch for dead
//! nodes and the cleanup of their members, and re-registration of this
//! node's truth after Redis missed changes.

use super::registry::{StoredConnection, StoredMember};
use super::*;
use crate::cluster::{ClusterError, ClusterState, PresenceSeq};
use crate::logging::Chain;
use crate::protocol::event;
use crate::redis::{scripts, FrameTags};
use fred::interfaces::EventInterface;
use fred::prelude::{HashesInterface, KeysInterface, SetsInterface};
use fred::types::Expiration;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

impl RedisState {
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

    /// Writes the heartbeat; returns whether it had expired (this node was
    /// taken for dead or Redis lost it).
    pub(super) async fn heartbeat(&self, sockets: usize) -> Result<bool, ClusterError> {
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

    pub(super) async fn maintain(self: Arc<Self>, sockets: impl Fn() -> usize) {
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
    pub(super) async fn resync(&self) -> Result<(), ClusterError> {
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
    pub(super) async fn reap(&self) -> Result<(), ClusterError> {
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
    pub(super) async fn purge(
        &self,
        node: &str,
        keep: &HashSet<String>,
    ) -> Result<(), ClusterError> {
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
    pub(super) async fn announce_for(
        &self,
        node: &str,
        room: &str,
        ev: &str,
        uid: &Value,
        seq: PresenceSeq,
    ) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterState, Member};
    use serde_json::Value;

    #[tokio::test]
    async fn a_heartbeat_reports_when_the_last_one_had_expired() {
        let server = super::super::test_redis::start().await;
        let ttl = Duration::from_millis(300);
        let node = RedisState::new(server.redis.clone(), "n1".into(), ttl);
        assert!(
            node.heartbeat(0).await.expect("first beat"),
            "no beat before"
        );
        assert!(!node.heartbeat(0).await.expect("second beat"), "alive");
        tokio::time::sleep(ttl * 2).await;
        assert!(
            node.heartbeat(0).await.expect("late beat"),
            "taken for dead"
        );
    }

    #[tokio::test]
    async fn a_node_whose_heartbeat_expired_is_reaped_with_its_members() {
        let server = super::super::test_redis::start().await;
        let ttl = Duration::from_millis(300);
        let gone = RedisState::new(server.redis.clone(), "gone".into(), ttl);
        let alive = RedisState::new(server.redis.clone(), "alive".into(), ttl);
        gone.heartbeat(1).await.expect("beat");
        let member = Member {
            uid: Value::String("u".into()),
            uid_key: "u".into(),
            sid: "s1".into(),
            dummy: false,
        };
        gone.join("r", member).await.expect("join");
        assert_eq!(alive.member_count("r").await.expect("count"), 1);
        tokio::time::sleep(ttl * 2).await;
        alive.heartbeat(0).await.expect("beat");
        alive.reap().await.expect("reap");
        assert_eq!(alive.member_count("r").await.expect("count"), 0);
    }
}
