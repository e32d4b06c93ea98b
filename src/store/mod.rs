//! Message history: the [`MessageStore`] trait and its implementations.

mod journal;
pub mod redis;
pub mod sqlite;
mod unapplied;

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::protocol::StampedMsg;

/// Why a store operation failed. Cloned to every write of a failed group,
/// so the sources are shared.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Redis failed.
    #[error("store backend error: {0}")]
    Redis(#[from] crate::redis::RedisError),
    /// The embedded database failed.
    #[error("database error: {0}")]
    Sqlite(#[source] Arc<rusqlite::Error>),
    /// The embedded store's commit log could not be written or read.
    #[error("commit log error: {0}")]
    Log(#[source] Arc<std::io::Error>),
    /// A thread or task of the store could not be started or ended early.
    #[error("store worker failed: {0}")]
    Worker(String),
    /// A message's text is not JSON (it was checked on the way in).
    #[error("message is not JSON: {0}")]
    Encode(#[source] Arc<serde_json::Error>),
    /// The store is shutting down and takes no more writes.
    #[error("store is closed")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(Arc::new(e))
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Log(Arc::new(e))
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Encode(Arc::new(e))
    }
}

impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        StoreError::Worker(e.to_string())
    }
}

/// What to do with a message.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Append to the room's history; the store assigns the next `seq`.
    Insert,
    /// Replace the room's earlier update with this msgId.
    Update { msg_id: String },
    /// Store nothing; complete in order with the writes submitted before it.
    Ignore,
}

/// A message after the store took it: its final JSON (with `seq` for inserts).
#[derive(Debug, Clone)]
pub struct Stored {
    /// The seq of an insert, `None` otherwise.
    pub seq: Option<u64>,
    /// Whether the message was written (inserts and updates), not just passed through.
    pub durable: bool,
    /// Whether the store already published the message to the room's
    /// members on every node (the clustered store does, atomically with the
    /// write); otherwise the caller relays it.
    pub published: bool,
    /// The message as relayed and as sync returns it.
    pub body: Arc<RawValue>,
}

/// A write that failed.
#[derive(Debug)]
pub struct NotStored {
    pub error: StoreError,
    /// The message as it would have been relayed, when the store wants
    /// this node's members to get it anyway (the clustered store does, so
    /// a node keeps its members talking while Redis is unreachable).
    pub relay_anyway: Option<Arc<RawValue>>,
}

impl From<StoreError> for NotStored {
    fn from(error: StoreError) -> Self {
        Self {
            error,
            relay_anyway: None,
        }
    }
}

/// Called once with the outcome of a write. Completions of one room run in
/// the order the writes were submitted, and only after the write is durable,
/// so relaying from the completion relays in `seq` order.
pub type Completion = Box<dyn FnOnce(Result<Stored, NotStored>) + Send>;

/// A message to write.
pub struct Write {
    /// The room's string form.
    pub room: String,
    pub op: WriteOp,
    /// The message, stamped with its sender (an insert's without `seq`).
    pub body: StampedMsg,
    /// The sender's socket id (not relayed back to it).
    pub sender: Option<String>,
    pub done: Completion,
}

/// A stored message with the Unix second it was stored at.
#[derive(Debug, Clone)]
pub struct Entry {
    pub body: Box<RawValue>,
    pub ts: i64,
}

/// One page of a room's inserted messages.
#[derive(Debug, Clone)]
pub struct Page {
    /// Where the page starts: the requested offset, clamped to the history's length.
    pub start: u64,
    pub items: Vec<Entry>,
    /// Whether more inserted messages follow this page.
    pub more: bool,
    /// The history generation.
    pub epoch: String,
}

/// One page of sync: the inserts of a [`Page`], followed on the last page by
/// every current update (the latest per msgId).
#[derive(Debug, Clone)]
pub struct SyncPage {
    pub entries: Vec<Entry>,
    /// Where the client resumes: the page's start plus the inserts returned.
    pub next_offset: u64,
    /// Whether more inserts follow.
    pub more: bool,
    pub epoch: String,
}

/// Reads the sync page of `room` at `offset`: what both `sync` and the
/// admin API's `room_msgs` return.
pub async fn sync_page(
    store: &dyn MessageStore,
    room: &str,
    offset: u64,
    limit: usize,
) -> Result<SyncPage, StoreError> {
    let page = store.page(room, offset, limit).await?;
    with_updates(store, room, page).await
}

/// Turns a page of inserts into a sync page: the last one is followed by
/// every current update of `room`.
pub async fn with_updates(
    store: &dyn MessageStore,
    room: &str,
    page: Page,
) -> Result<SyncPage, StoreError> {
    let next_offset = page.start + page.items.len() as u64;
    let mut entries = page.items;
    if !page.more {
        entries.extend(store.updates(room).await?);
    }
    Ok(SyncPage {
        entries,
        next_offset,
        more: page.more,
        epoch: page.epoch,
    })
}

/// A room's message history.
///
/// Contract: `seq` of inserts counts from 0 without gaps per room and per
/// epoch; `page(room, seq, _)` starts at the insert with that seq.
#[async_trait::async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Queues a write; `write.done` is called when it is durable (or failed).
    async fn submit(&self, write: Write);
    /// Up to `limit` inserts from `offset`, oldest first.
    async fn page(&self, room: &str, offset: u64, limit: usize) -> Result<Page, StoreError>;
    /// The latest message per msgId, in the order they were last updated.
    async fn updates(&self, room: &str) -> Result<Vec<Entry>, StoreError>;
    /// Deletes the room's whole history and starts a new epoch.
    async fn clear(&self, room: &str) -> Result<(), StoreError>;
    /// Whether the store answers (for readiness checks).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Waits until every write submitted before the call is durable.
    async fn flush(&self) -> Result<(), StoreError>;
}
