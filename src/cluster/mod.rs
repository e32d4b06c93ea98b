//! State that every node of a deployment must share: room presence, the
//! per-user connection registry (for kickout), the authentication rate limit
//! window and the `forceUserAuth` switch. One node uses [`local::LocalState`].

pub(crate) mod local;
pub(crate) mod persistence;
pub(crate) mod pubsub;
pub(crate) mod redis;

use std::sync::Arc;

use serde_json::Value;

/// A connection present in a room.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The uid as its owner sent it (echoed in presence events).
    pub uid: Value,
    /// The uid's string form.
    pub uid_key: String,
    /// The socket id of the connection.
    pub sid: String,
    /// Observers are never announced.
    pub dummy: bool,
}

/// A presence change's place in the deployment's one order of presence
/// changes (every join and leave of every room takes the next number).
/// A member is told of a change to its room only if the change comes after
/// its own join: the changes before it are in the roster it got. `None`
/// when the change could not be ordered (the shared registry was
/// unreachable); such changes reach every member.
pub type PresenceSeq = Option<u64>;

/// A member added to a room.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// The members that were there before, in join order.
    pub before: Vec<Arc<Member>>,
    /// The join's place in the order of presence changes.
    pub seq: PresenceSeq,
}

/// A member taken out of a room.
#[derive(Debug, Clone, PartialEq)]
pub struct Departure {
    pub(crate) member: Member,
    /// The leave's place in the order of presence changes.
    pub seq: PresenceSeq,
}

/// Why shared state could not be read or written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    /// Redis failed.
    #[error("cluster state unavailable")]
    Redis(#[from] crate::redis::RedisError),
}

impl From<fred::error::Error> for ClusterError {
    fn from(e: fred::error::Error) -> Self {
        ClusterError::Redis(e.into())
    }
}

impl From<serde_json::Error> for ClusterError {
    fn from(e: serde_json::Error) -> Self {
        ClusterError::Redis(e.into())
    }
}

/// Shared state of a deployment.
#[async_trait::async_trait]
pub trait ClusterState: Send + Sync + 'static {
    /// Counts one successful authentication of `uid` in its fixed 60 s
    /// window; `false` when the window already holds `limit` of them.
    async fn auth_allowed(&self, uid: &str, limit: u32) -> Result<bool, ClusterError>;
    /// Records `sid` as the connection of `uid` and returns the connections
    /// it replaces (the ones to kick out), removing them from the registry.
    async fn register_connection(&self, uid: &str, sid: &str) -> Result<Vec<String>, ClusterError>;
    /// Forgets `sid` as a connection of `uid` (no-op if it was replaced).
    async fn unregister_connection(&self, uid: &str, sid: &str) -> Result<(), ClusterError>;
    /// Adds `member` to `room`; returns the members that were there before,
    /// in join order (shared rather than copied: every join reads the whole
    /// room), and the join's [`PresenceSeq`].
    async fn join(&self, room: &str, member: Member) -> Result<Arrival, ClusterError>;
    /// Removes connection `sid` from `room`; returns it, with the leave's
    /// [`PresenceSeq`], if it was there.
    async fn leave(&self, room: &str, sid: &str) -> Result<Option<Departure>, ClusterError>;
    /// The room a connection is in, if any.
    async fn room_of(&self, sid: &str) -> Result<Option<String>, ClusterError>;
    /// The members of `room` in join order.
    async fn members(&self, room: &str) -> Result<Vec<Member>, ClusterError>;
    /// How many members `room` has (dummies included).
    async fn member_count(&self, room: &str) -> Result<usize, ClusterError>;
    /// Every authenticated connection: (uid's string form, sid).
    async fn online_users(&self) -> Result<Vec<(String, String)>, ClusterError>;
    /// Every room with at least one member.
    async fn rooms(&self) -> Result<Vec<String>, ClusterError>;
    /// How many authenticated connections and rooms there are, counted
    /// without listing them (for `/metrics`).
    async fn counts(&self) -> Result<(usize, usize), ClusterError> {
        Ok((self.online_users().await?.len(), self.rooms().await?.len()))
    }
    /// Whether real token checks are forced while in development mode.
    async fn force_user_auth(&self) -> Result<bool, ClusterError>;
    /// Sets the `forceUserAuth` switch.
    async fn set_force_user_auth(&self, on: bool) -> Result<(), ClusterError>;
    /// This node stops: removes what it still holds from shared state.
    async fn leave_cluster(&self) {}
    /// Open socket.io connections on every node, given this node's count.
    async fn socket_count(&self, local: usize) -> Result<usize, ClusterError> {
        Ok(local)
    }
}
