//! The presence registry in Redis: rooms' members, the per-user connection
//! registry (kickout), the rate-limit window and `forceUserAuth`, as
//! [`ClusterState`]; answered from this node's state while Redis cannot be
//! reached.

use super::*;
use crate::cluster::local::RATE_WINDOW;
use crate::cluster::{Arrival, ClusterError, ClusterState, Departure, Member, PresenceSeq};
use crate::logging::Chain;
use crate::redis::scripts;
use fred::prelude::{HashesInterface, KeysInterface, SetsInterface, SortedSetsInterface};
use fred::types::SetOptions;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A member as stored in Redis.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoredMember {
    #[serde(rename = "r")]
    pub(super) room: String,
    #[serde(rename = "u")]
    pub(super) uid: Value,
    #[serde(rename = "k")]
    pub(super) uid_key: String,
    #[serde(rename = "s")]
    pub(super) sid: String,
    #[serde(rename = "d")]
    pub(super) dummy: bool,
    #[serde(rename = "n")]
    pub(super) node: String,
}

impl StoredMember {
    pub(super) fn member(self) -> Member {
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
pub(super) struct StoredConnection {
    #[serde(rename = "k")]
    pub(super) uid_key: String,
    #[serde(rename = "n")]
    pub(super) node: String,
}

impl RedisState {
    pub(super) async fn redis_join(
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

    pub(super) async fn redis_leave(
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
    pub(super) async fn redis_connection<R: fred::prelude::FromValue>(
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
    pub(super) async fn redis_register(
        &self,
        uid: &str,
        sid: &str,
    ) -> Result<Vec<String>, ClusterError> {
        self.redis_connection(scripts::REGISTER, uid, sid).await
    }

    /// Registers `sid` again; `false` if a newer login of `uid` replaced it.
    pub(super) async fn redis_reregister(
        &self,
        uid: &str,
        sid: &str,
    ) -> Result<bool, ClusterError> {
        let registered: i64 = self.redis_connection(scripts::REREGISTER, uid, sid).await?;
        Ok(registered == 1)
    }

    pub(super) async fn redis_unregister(
        &self,
        uid: &str,
        sid: &str,
        node: &str,
    ) -> Result<(), ClusterError> {
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
    pub(super) fn missed(&self, what: &str, e: &ClusterError) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn member(uid: &str, sid: &str) -> Member {
        Member {
            uid: Value::String(uid.into()),
            uid_key: uid.into(),
            sid: sid.into(),
            dummy: false,
        }
    }

    #[test]
    fn unreadable_stored_members_are_skipped() {
        let stored = serde_json::json!({
            "r": "room", "u": 7, "k": "7", "s": "s1", "d": true, "n": "node"
        })
        .to_string();
        let members = parse_members(&[stored, "not json".into()]);
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].uid, serde_json::json!(7));
        assert!(members[0].dummy);
    }

    #[tokio::test]
    async fn members_and_connections_are_shared_between_nodes() {
        let server = super::super::test_redis::start().await;
        let ttl = Duration::from_secs(10);
        let a = RedisState::new(server.redis.clone(), "a".into(), ttl);
        let b = RedisState::new(server.redis.clone(), "b".into(), ttl);
        a.join("r", member("u1", "s1")).await.expect("join on a");
        b.join("r", member("u2", "s2")).await.expect("join on b");
        let mut uids: Vec<_> = a
            .members("r")
            .await
            .expect("members")
            .into_iter()
            .map(|m| m.uid_key)
            .collect();
        uids.sort();
        assert_eq!(uids, ["u1", "u2"]);
        assert_eq!(b.room_of("s1").await.expect("room_of"), Some("r".into()));
        // A second login of u1 on b finds the older connection on a.
        assert!(a
            .register_connection("u1", "s1")
            .await
            .expect("reg")
            .is_empty());
        assert_eq!(
            b.register_connection("u1", "s3").await.expect("reg"),
            ["s1"]
        );
        let left = a.leave("r", "s1").await.expect("leave");
        assert!(left.is_some());
        assert_eq!(b.member_count("r").await.expect("count"), 1);
    }
}
