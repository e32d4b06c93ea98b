//! The embedded message store: SQLite in WAL mode behind a commit log.
//!
//! Three parts, each on its own thread or pool:
//! - the **writer** gathers the writes that arrive within the commit window
//!   (`AO_COMMIT_WINDOW_US`) after the first, numbers them, appends them to
//!   the commit log ([`super::journal`]) with one `fdatasync`, makes them
//!   visible to readers ([`super::unapplied`]) and only then completes them
//!   (relay and ack): an acknowledged message survives a crash;
//! - the **applier** takes the log's sealed segments (every
//!   [`writer::APPLY_INTERVAL`], or sooner once [`writer::APPLY_BYTES`] are waiting) into
//!   SQLite, one transaction each, then deletes the segment: SQLite pages
//!   are written once per batch, not once per message;
//! - **readers** (sync, admin) look at the unapplied writes first and at
//!   SQLite second, on connections of their own.
//!
//! At start-up the segments a previous run left are replayed into SQLite
//! (idempotently: an insert is keyed by room and seq, an update applies
//! only over an older one).

mod applier;
mod open;
mod read;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use std::sync::mpsc;
use tokio::sync::oneshot;

use super::unapplied::Unapplied;
use super::{MessageStore, Page, StoreError, UpdatePage, Write};
use applier::Unavailable;
use writer::Job;

pub(crate) use applier::{apply, renew_epoch};
pub(crate) use open::database_id;

/// How long the writer may take to answer a readiness ping.
const WRITER_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// SQLite-backed [`MessageStore`].
pub(crate) struct SqliteMessageStore {
    /// Unbounded in slots: every write a session submits holds a
    /// reservation of its bytes (`AO_STORE_QUEUE_MAX_BYTES`), and the
    /// other jobs come one per admin request or readiness probe.
    jobs: mpsc::Sender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    unapplied: Arc<Mutex<Unapplied>>,
    data_dir: PathBuf,
    /// Epoch of rooms that have no row yet: this database's id.
    db_epoch: String,
    /// The writer's last group failed to commit (a full disk, an I/O
    /// error); cleared by the next group that commits.
    failing: Arc<AtomicBool>,
    /// Why the store takes no writes until it mends itself: the commit
    /// log is broken, or SQLite refuses the log's records.
    unavailable: Arc<Unavailable>,
    /// Whether the writer and the applier threads still run.
    writer_alive: Arc<AtomicBool>,
    applier_alive: Arc<AtomicBool>,
}

/// Marks a store thread alive for as long as it runs: dropped when the
/// thread ends, by returning or by a panic, it clears the flag.
pub(super) struct Alive {
    flag: Arc<AtomicBool>,
    thread: &'static str,
}

impl Alive {
    pub(super) fn new(thread: &'static str) -> (Self, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(true));
        (
            Self {
                flag: flag.clone(),
                thread,
            },
            flag,
        )
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.flag.store(false, Ordering::SeqCst);
        if std::thread::panicking() {
            tracing::error!(
                thread = self.thread,
                "a store thread panicked; the store takes no more writes and /readyz answers 503"
            );
        }
    }
}

impl SqliteMessageStore {
    /// The flags the writer and applier threads clear as they end (the
    /// model test waits for a "crashed" store's threads to be gone).
    #[cfg(test)]
    pub(crate) fn thread_flags(&self) -> [Arc<AtomicBool>; 2] {
        [self.writer_alive.clone(), self.applier_alive.clone()]
    }

    /// Whether the writer and applier threads run, the writer answering a
    /// ping within [`WRITER_PING_TIMEOUT`].
    async fn threads_alive(&self) -> Result<(), StoreError> {
        let stopped = |thread: &str| StoreError::Worker(format!("the {thread} thread stopped"));
        if !self.writer_alive.load(Ordering::SeqCst) {
            return Err(stopped("writer"));
        }
        if !self.applier_alive.load(Ordering::SeqCst) {
            return Err(stopped("applier"));
        }
        let (tx, rx) = oneshot::channel();
        let answered = tokio::time::timeout(WRITER_PING_TIMEOUT, async {
            self.jobs.send(Job::Ping(tx)).ok()?;
            rx.await.ok()
        })
        .await;
        match answered {
            Ok(Some(())) => Ok(()),
            Ok(None) => Err(stopped("writer")),
            Err(_) => Err(StoreError::Worker(format!(
                "the writer did not answer within {} ms",
                WRITER_PING_TIMEOUT.as_millis()
            ))),
        }
    }
}

#[async_trait::async_trait]
impl MessageStore for SqliteMessageStore {
    async fn submit(&self, write: Write) {
        let _ = self.submit_now(write);
    }

    fn submit_now(&self, write: Write) -> Option<Write> {
        let job = Job::Write(write, Instant::now());
        if let Err(mpsc::SendError(Job::Write(w, _))) = self.jobs.send(job) {
            (w.done)(Err(StoreError::Closed.into()));
        }
        None
    }

    fn submits_now(&self) -> bool {
        true
    }

    async fn page(
        &self,
        room: &str,
        offset: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page, StoreError> {
        self.read_page(room, offset, limit, max_bytes).await
    }

    async fn updates(
        &self,
        room: &str,
        after: i64,
        max_bytes: usize,
    ) -> Result<UpdatePage, StoreError> {
        self.read_updates(room, after, max_bytes).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.threads_alive().await?;
        if let Some(reason) = self.unavailable.reason() {
            return Err(StoreError::Unavailable(reason));
        }
        if self.failing.load(Ordering::Acquire) {
            // Ready again once the disk takes a write (the next group then
            // commits and clears the flag).
            let dir = self.data_dir.clone();
            tokio::task::spawn_blocking(move || open::probe_write(&dir)).await??;
        }
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }

    async fn crash_writer_for_tests(&self) {
        let _ = self.jobs.send(Job::CrashForTests);
        // The flag is cleared as the thread unwinds.
        while self.writer_alive.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn clear(&self, room: &str) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Clear(room.to_owned(), tx))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Flush(tx))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}
