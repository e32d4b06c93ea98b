//! Message history: the [`MessageStore`] trait and its implementations.

#[doc(hidden)]
pub mod journal;
pub mod log_check;
mod log_fs;
#[cfg(test)]
mod model_tests;
pub(crate) mod redis;
#[cfg(test)]
mod sim_disk;
#[cfg(any(test, debug_assertions))]
mod sim_fs;
pub(crate) mod sqlite;
mod unapplied;

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use serde_json::value::RawValue;

use crate::protocol::StampedMsg;

/// Why a store operation failed. Cloned to every write of a failed group,
/// so the sources are shared.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Redis failed.
    #[error("message store backend failed")]
    Redis(#[from] crate::redis::RedisError),
    /// The embedded database failed.
    #[error("database request failed")]
    Sqlite(#[source] Arc<rusqlite::Error>),
    /// The embedded store's commit log could not be written or read.
    #[error("commit log read or write failed")]
    Log(#[source] Arc<std::io::Error>),
    /// The embedded store's commit log holds a corrupt segment.
    #[error("the commit log holds a corrupt segment")]
    LogCorrupt(#[source] Arc<journal::LogError>),
    /// The embedded store takes no writes until it mends itself.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A thread or task of the store could not be started or ended early.
    #[error("store worker failed: {0}")]
    Worker(String),
    /// A task of the store ended early (panicked or was cancelled).
    #[error("a store task ended early")]
    Join(#[source] Arc<tokio::task::JoinError>),
    /// A message's text is not JSON (it was checked on the way in).
    #[error("message is not JSON")]
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

impl From<journal::LogError> for StoreError {
    fn from(e: journal::LogError) -> Self {
        match e {
            journal::LogError::Io(e) => e.into(),
            corrupt => StoreError::LogCorrupt(Arc::new(corrupt)),
        }
    }
}

/// The embedded store's commit log metrics, registered by
/// [`crate::metrics::Metrics`] (one set per process).
pub struct LogMetrics {
    /// Seconds each group commit's write and `fdatasync` took.
    pub sync_seconds: Histogram,
    /// Group commits the disk held back over 50 ms: a write and
    /// `fdatasync`, or a segment rotation, that took longer.
    pub stalls: Counter,
    /// Group commits whose write or `fdatasync` failed.
    pub failures: Counter,
    /// Batches of the log SQLite refused (each retry counts).
    pub apply_failures: Counter,
}

/// The process's [`LogMetrics`].
pub static LOG_METRICS: LazyLock<LogMetrics> = LazyLock::new(|| LogMetrics {
    sync_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 15)),
    stalls: Counter::default(),
    failures: Counter::default(),
    apply_failures: Counter::default(),
});

/// A repeated event logged once per [`LOG_INTERVAL`], with how many
/// happened since the last line.
#[derive(Default)]
pub(crate) struct RateLimited {
    last: Option<Instant>,
    count: u64,
}

/// The least time between two log lines of one repeated event.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

impl RateLimited {
    /// Nothing counted yet.
    pub(crate) const fn new() -> Self {
        Self {
            last: None,
            count: 0,
        }
    }

    /// Counts the event; calls `line` with the count when a line is due.
    pub(crate) fn note(&mut self, line: impl FnOnce(u64)) {
        self.count += 1;
        if self.last.is_none_or(|at| at.elapsed() >= LOG_INTERVAL) {
            line(self.count);
            self.count = 0;
            self.last = Some(Instant::now());
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Encode(Arc::new(e))
    }
}

impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        StoreError::Join(Arc::new(e))
    }
}

/// What to do with a message.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Append to the room's history; the store assigns the next `seq`.
    Insert,
    /// Replace the room's earlier update with this msgId.
    Update {
        /// The msgId the update replaces.
        msg_id: String,
    },
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
    pub(crate) error: StoreError,
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
    pub(crate) op: WriteOp,
    /// The message, stamped with its sender (an insert's without `seq`).
    pub body: StampedMsg,
    /// The sender's socket id (not relayed back to it).
    pub sender: Option<String>,
    pub(crate) done: Completion,
}

/// A stored message with the Unix second it was stored at.
#[derive(Debug, Clone)]
pub struct Entry {
    pub(crate) body: Box<RawValue>,
    pub(crate) ts: i64,
}

/// One page of a room's inserted messages.
#[derive(Debug, Clone)]
pub struct Page {
    /// Where the page starts: the requested offset, clamped to the history's length.
    pub start: u64,
    pub(crate) items: Vec<Entry>,
    /// Whether more inserted messages follow this page.
    pub more: bool,
    /// The history generation.
    pub epoch: String,
}

/// One page of a room's current updates (the latest per msgId), in the
/// order they were last updated, each with its order key.
#[derive(Debug, Clone, Default)]
pub struct UpdatePage {
    pub(crate) entries: Vec<(i64, Entry)>,
    /// Whether more updates follow.
    pub more: bool,
}

/// Sync offsets from this one on continue a room's updates rather than its
/// inserts: `UPDATES_BASE + CURSOR_BIAS + key`, where the key is the order
/// key of the last update sent. Below 2^53, so a JavaScript client echoes
/// it exactly.
pub const UPDATES_BASE: u64 = 1 << 52;
/// Lets an update's order key be negative (updates of the original
/// service, ordered before every later one).
const CURSOR_BIAS: i64 = 1 << 40;
/// The order key before every update.
pub const UPDATES_START: i64 = -CURSOR_BIAS;

/// The sync offset that continues the updates after order key `key`.
pub fn updates_offset(key: i64) -> u64 {
    UPDATES_BASE + key.saturating_add(CURSOR_BIAS).max(0) as u64
}

/// The order key a sync offset continues the updates after, if it is one.
pub fn updates_cursor(offset: u64) -> Option<i64> {
    let past = offset.checked_sub(UPDATES_BASE)?;
    Some(
        i64::try_from(past)
            .unwrap_or(i64::MAX)
            .saturating_sub(CURSOR_BIAS),
    )
}

/// One page of sync: inserts, then, once they are all out, the current
/// updates, all within a byte budget (at least one message).
#[derive(Debug, Clone)]
pub struct SyncPage {
    pub(crate) entries: Vec<Entry>,
    /// Where the client resumes: past the inserts returned, or (while the
    /// updates are paged) an offset from [`UPDATES_BASE`] on.
    pub next_offset: u64,
    /// Whether more follows.
    pub more: bool,
    pub(crate) epoch: String,
}

/// The bytes an entry counts against a page's budget.
pub fn entry_bytes(e: &Entry) -> usize {
    e.body.get().len()
}

/// How many of `sizes` fit in `max_bytes` from the start (at least one
/// when `at_least_one`), and their bytes.
pub fn fitting(
    sizes: impl Iterator<Item = usize>,
    max_bytes: usize,
    at_least_one: bool,
) -> (usize, usize) {
    let (mut total, mut keep) = (0usize, 0usize);
    for n in sizes {
        if total.saturating_add(n) > max_bytes && (keep > 0 || !at_least_one) {
            break;
        }
        total += n;
        keep += 1;
    }
    (keep, total)
}

/// Reads the sync page of `room` at `offset`: what both `sync` and the
/// admin API's `room_msgs` return. The rule (docs/PROTOCOL.md): up to
/// `limit` inserts from `offset` within `max_bytes`; the page that ends
/// the inserts carries as many updates as still fit; updates that do not
/// fit follow on pages whose offsets start at [`UPDATES_BASE`]; the last
/// page (`more: false`) gives the history's length as its offset.
pub async fn sync_page(
    store: &dyn MessageStore,
    room: &str,
    offset: u64,
    limit: usize,
    max_bytes: usize,
) -> Result<SyncPage, StoreError> {
    match updates_cursor(offset) {
        Some(after) => {
            let updates = store.updates(room, after, max_bytes).await?;
            // The history's length and epoch.
            let end = store.page(room, u64::MAX, 0, 0).await?;
            Ok(finish(
                Vec::new(),
                0,
                updates,
                after,
                end.start,
                end.epoch,
                max_bytes,
            ))
        }
        None => {
            let page = store.page(room, offset, limit, max_bytes).await?;
            with_updates(store, room, page, max_bytes).await
        }
    }
}

/// Turns a page of inserts into a sync page: the one that ends the inserts
/// is followed by the updates that fit.
pub async fn with_updates(
    store: &dyn MessageStore,
    room: &str,
    page: Page,
    max_bytes: usize,
) -> Result<SyncPage, StoreError> {
    let mut items = page.items;
    let read = items.len();
    let (keep, used) = fitting(items.iter().map(entry_bytes), max_bytes, true);
    items.truncate(keep);
    let next_offset = page.start + keep as u64;
    if page.more || keep < read {
        return Ok(SyncPage {
            entries: items,
            next_offset,
            more: true,
            epoch: page.epoch,
        });
    }
    let left = max_bytes.saturating_sub(used);
    let updates = store.updates(room, UPDATES_START, left.max(1)).await?;
    Ok(finish(
        items,
        used,
        updates,
        UPDATES_START,
        next_offset,
        page.epoch,
        max_bytes,
    ))
}

/// The sync page of `entries` (inserts, `used` bytes of them) followed
/// by the updates that fit the rest of `max_bytes` (at least one when
/// there are no inserts); `after` is the order key the updates began after.
fn finish(
    mut entries: Vec<Entry>,
    used: usize,
    mut updates: UpdatePage,
    after: i64,
    history_len: u64,
    epoch: String,
    max_bytes: usize,
) -> SyncPage {
    let (keep, _) = fitting(
        updates.entries.iter().map(|(_, e)| entry_bytes(e)),
        max_bytes.saturating_sub(used),
        entries.is_empty(),
    );
    let more = updates.more || keep < updates.entries.len();
    updates.entries.truncate(keep);
    let last = updates.entries.last().map_or(after, |(key, _)| *key);
    entries.extend(updates.entries.into_iter().map(|(_, e)| e));
    SyncPage {
        entries,
        next_offset: if more {
            updates_offset(last)
        } else {
            history_len
        },
        more,
        epoch,
    }
}

/// A room's message history.
///
/// Contract: `seq` of inserts counts from 0 without gaps per room and per
/// epoch; `page(room, seq, _)` starts at the insert with that seq.
#[async_trait::async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Queues a write; `write.done` is called when it is durable (or failed).
    async fn submit(&self, write: Write);
    /// Queues a write as [`MessageStore::submit`] does, without waiting,
    /// when this store can; gives it back when it cannot (it must be
    /// submitted). The embedded store always can: what waits for it is
    /// bounded by the submitters' byte reservations
    /// (`AO_STORE_QUEUE_MAX_BYTES`), not by a queue that could be full.
    fn submit_now(&self, write: Write) -> Option<Write> {
        Some(write)
    }
    /// Whether [`MessageStore::submit_now`] always takes the write.
    fn submits_now(&self) -> bool {
        false
    }
    /// Up to `limit` inserts from `offset`, oldest first, within
    /// `max_bytes` (at least one; 0 means no byte limit).
    async fn page(
        &self,
        room: &str,
        offset: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page, StoreError>;
    /// The latest message per msgId, in the order they were last updated,
    /// from the one after order key `after` ([`UPDATES_START`]: from the
    /// first), within `max_bytes` (at least one).
    async fn updates(
        &self,
        room: &str,
        after: i64,
        max_bytes: usize,
    ) -> Result<UpdatePage, StoreError>;
    /// Deletes the room's whole history and starts a new epoch.
    async fn clear(&self, room: &str) -> Result<(), StoreError>;
    /// Whether the store answers (for readiness checks).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Waits until every write submitted before the call is durable.
    async fn flush(&self) -> Result<(), StoreError>;
    /// Tests only: makes the embedded store's writer thread die as a bug
    /// in it would (a panic), and returns once it has. Other stores have
    /// no such thread and do nothing.
    #[doc(hidden)]
    async fn crash_writer_for_tests(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::Chain;

    #[test]
    fn a_store_error_leaves_its_cause_to_the_chain() {
        let io = || std::io::Error::other("disk on fire");
        let e = StoreError::from(journal::LogError::Io(io()));
        assert_eq!(e.to_string(), "commit log read or write failed");
        assert_eq!(
            Chain(&e).to_string(),
            "commit log read or write failed: disk on fire"
        );
        let e = journal::LogError::Io(io());
        assert_eq!(Chain(&e).to_string(), "commit log I/O failed: disk on fire");
        let e = StoreError::from(rusqlite::Error::InvalidQuery);
        assert!(!e.to_string().contains("Query is not read-only"), "{e}");
        assert!(Chain(&e)
            .to_string()
            .starts_with("database request failed: "));
    }
}
