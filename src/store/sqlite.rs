//! The embedded message store: SQLite in WAL mode behind a commit log.
//!
//! Three parts, each on its own thread or pool:
//! - the **writer** gathers the writes that arrive within the commit window
//!   (`AO_COMMIT_WINDOW_US`) after the first, numbers them, appends them to
//!   the commit log ([`super::journal`]) with one `fdatasync`, makes them
//!   visible to readers ([`super::unapplied`]) and only then completes them
//!   (relay and ack): an acknowledged message survives a crash;
//! - the **applier** takes the log's sealed segments (every
//!   [`APPLY_INTERVAL`], or sooner once [`APPLY_BYTES`] are waiting) into
//!   SQLite, one transaction each, then deletes the segment: SQLite pages
//!   are written once per batch, not once per message;
//! - **readers** (sync, admin) look at the unapplied writes first and at
//!   SQLite second, on connections of their own.
//!
//! At start-up the segments a previous run left are replayed into SQLite
//! (idempotently: an insert is keyed by room and seq, an update applies
//! only over an older one).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use super::journal::{self, Journal, Record};
use super::log_fs::{LogFs, OsFs};
use super::unapplied::{self, Unapplied, UpdateEntry};
use super::{Entry, MessageStore, Page, StoreError, Stored, UpdatePage, Write, WriteOp};
use super::{RateLimited, LOG_METRICS};
use crate::protocol::StampedMsg;
use crate::sqlite::{open, unix_now};
use crate::sync::lock as locked;

/// Most writes committed in one group.
const MAX_BATCH: usize = 4096;
/// Writes that may wait for the writer before submitters are held back.
const QUEUE_DEPTH: usize = 65_536;
/// Read connections kept open for sync.
const READERS: usize = 4;
/// A commit log write that takes longer is logged.
const SLOW_SYNC: Duration = Duration::from_millis(50);
/// How long durable writes may wait for SQLite.
const APPLY_INTERVAL: Duration = Duration::from_secs(5);
/// Unapplied bytes that make the writer hand its segment to SQLite early.
const APPLY_BYTES: usize = 8 << 20;
/// Unapplied bytes past which the writer waits for SQLite to catch up
/// (holding submitters back, and so the clients behind them).
const MAX_UNAPPLIED_BYTES: usize = 64 << 20;
/// How often the writer tries to mend a broken log while no write comes.
const MEND_RETRY: Duration = Duration::from_secs(1);
/// How long the writer may take to answer a readiness ping.
const WRITER_PING_TIMEOUT: Duration = Duration::from_secs(2);

enum Job {
    /// A write, with when it was submitted (its commit window starts then).
    Write(Write, Instant),
    Clear(String, oneshot::Sender<Result<(), StoreError>>),
    Flush(oneshot::Sender<Result<(), StoreError>>),
    /// Answered as soon as the writer takes it: the writer is alive and
    /// taking jobs (readiness).
    Ping(oneshot::Sender<()>),
    /// Makes the writer thread panic, as a bug in it would (tests of
    /// readiness only; see [`MessageStore::crash_writer_for_tests`]).
    CrashForTests,
}

/// What the writer hands the applier, in order.
enum ApplyJob {
    /// The records of the sealed log `segments`, deleted (in order) once
    /// SQLite has them.
    Apply {
        records: Vec<Record>,
        segments: Vec<u64>,
    },
    /// Deletes a room's history, after everything before it was applied.
    Clear(String, oneshot::Sender<Result<(), StoreError>>),
    /// Answers once everything before it was applied.
    Flush(oneshot::Sender<Result<(), StoreError>>),
}

/// SQLite-backed [`MessageStore`].
pub(crate) struct SqliteMessageStore {
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
struct Alive {
    flag: Arc<AtomicBool>,
    thread: &'static str,
}

impl Alive {
    fn new(thread: &'static str) -> (Self, Arc<AtomicBool>) {
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
    /// Opens (or creates) the store under `data_dir`, replays what the
    /// commit log holds, and starts the writer and applier threads; the
    /// writer gathers the writes of `commit_window` into one commit.
    pub(crate) fn open(data_dir: &Path, commit_window: Duration) -> Result<Self, StoreError> {
        Self::open_on(OsFs::for_store(), data_dir, commit_window)
    }

    /// [`SqliteMessageStore::open`] with the commit log on `fs`.
    pub(crate) fn open_on(
        fs: Arc<dyn LogFs>,
        data_dir: &Path,
        commit_window: Duration,
    ) -> Result<Self, StoreError> {
        let mut conn = open(data_dir)?;
        let db_epoch = database_id(&conn)?;
        // Replayed into SQLite and deleted before the first new segment is
        // made: a crash at any step leaves the same log to replay again.
        let leftover = journal::replay(&*fs, data_dir)?;
        if !leftover.records.is_empty() {
            apply(&mut conn, &leftover.records, &db_epoch)?;
            tracing::info!(
                records = leftover.records.len(),
                "replayed the commit log into the database"
            );
        }
        journal::remove_segments(&*fs, data_dir, &leftover.segments)?;
        let log = Journal::create(fs.clone(), data_dir, leftover.next)?;
        let unavailable = Arc::new(Unavailable::default());

        let unapplied = Arc::new(Mutex::new(Unapplied::default()));
        let (apply_tx, apply_rx) = std::sync::mpsc::channel();
        let applier = Applier {
            conn,
            fs,
            unavailable: unavailable.clone(),
            dir: data_dir.to_path_buf(),
            db_epoch: db_epoch.clone(),
            unapplied: unapplied.clone(),
            undeleted: Vec::new(),
        };
        let (applier_life, applier_alive) = Alive::new("store-applier");
        std::thread::Builder::new()
            .name("store-applier".into())
            .spawn(move || {
                let _alive = applier_life;
                applier.run(apply_rx)
            })?;

        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let failing = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            failing: failing.clone(),
            unavailable: unavailable.clone(),
            refused: RateLimited::default(),
            write_failed: RateLimited::default(),
            slow: RateLimited::default(),
            rotate_failed: RateLimited::default(),
            log,
            read: open(data_dir)?,
            counters: Counters::default(),
            unapplied: unapplied.clone(),
            applier: apply_tx,
            pending: Vec::new(),
            pending_bytes: 0,
            segment_started: Instant::now(),
            window: commit_window,
            last_submitted: Instant::now(),
            mean_gap: Duration::MAX,
        };
        let (writer_life, writer_alive) = Alive::new("store-writer");
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                let _alive = writer_life;
                writer.run(rx)
            })?;
        Ok(Self {
            jobs: tx,
            readers: Arc::new(Mutex::new(Vec::new())),
            unapplied,
            data_dir: data_dir.to_path_buf(),
            db_epoch,
            failing,
            unavailable,
            writer_alive,
            applier_alive,
        })
    }

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
            self.jobs.send(Job::Ping(tx)).await.ok()?;
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

    /// Runs `f` on a read connection in the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let readers = self.readers.clone();
        let dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match locked(&readers).pop() {
                Some(c) => c,
                None => open(&dir)?,
            };
            let out = f(&conn).map_err(StoreError::from);
            let mut pool = locked(&readers);
            if pool.len() < READERS {
                pool.push(conn);
            }
            out
        })
        .await?
    }
}

/// Bytes the readiness probe writes while commits fail: about a group.
const PROBE_BYTES: usize = 64 * 1024;

/// Writes, syncs and removes a file in `dir`: whether the disk takes
/// writes again after commits failed.
fn probe_write(dir: &Path) -> Result<(), StoreError> {
    use std::io::Write as _;
    let path = dir.join("write-probe");
    let written = (|| {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&[0u8; PROBE_BYTES])?;
        f.sync_all()
    })();
    let _ = std::fs::remove_file(&path);
    written.map_err(StoreError::from)
}

/// The id of this database, made once when it is created.
pub(crate) fn database_id(conn: &Connection) -> Result<String, rusqlite::Error> {
    let existing: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'db_id'", [], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let id = new_epoch();
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('db_id', ?1)",
        params![id],
    )?;
    conn.query_row("SELECT value FROM meta WHERE key = 'db_id'", [], |r| {
        r.get(0)
    })
}

fn new_epoch() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// A stored message from its row (body, ts). The body is checked to be JSON
/// and copied once, straight out of SQLite's row buffer.
fn entry(row: &rusqlite::Row<'_>, first: usize) -> Result<Entry, rusqlite::Error> {
    let body = row.get_ref(first)?.as_str()?;
    let body = serde_json::from_str::<Box<RawValue>>(body).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(first, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Entry {
        body,
        ts: row.get(first + 1)?,
    })
}

#[async_trait::async_trait]
impl MessageStore for SqliteMessageStore {
    async fn submit(&self, write: Write) {
        let job = Job::Write(write, Instant::now());
        if let Err(mpsc::error::SendError(Job::Write(w, _))) = self.jobs.send(job).await {
            (w.done)(Err(StoreError::Closed.into()));
        }
    }

    async fn page(
        &self,
        room: &str,
        offset: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page, StoreError> {
        let max_bytes = if max_bytes == 0 {
            usize::MAX
        } else {
            max_bytes
        };
        let room = room.to_owned();
        let default_epoch = self.db_epoch.clone();
        let unapplied = self.unapplied.clone();
        self.read(move |conn| {
            // Unapplied writes first, SQLite second (see `unapplied`).
            let tail = locked(&unapplied).inserts(&room, offset, limit);
            let tx = conn.unchecked_transaction()?;
            let (epoch, stored): (String, u64) = tx
                .prepare_cached("SELECT epoch, next_seq FROM rooms WHERE room = ?1")?
                .query_row(params![room], |r| {
                    Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
                })
                .optional()?
                .unwrap_or((default_epoch, 0));
            let (first_unapplied, len) = tail
                .as_ref()
                .map_or((stored, stored), |t| (t.first_seq, t.len));
            let start = offset.min(len);
            let mut items = Vec::new();
            let (mut bytes, mut full) = (0usize, false);
            if start < first_unapplied {
                // The limit is part of the statement's text: bound as a
                // parameter, SQLite (built with STAT4) re-prepares the
                // statement whenever the offset changes, i.e. on every page.
                let mut stmt = tx.prepare_cached(&format!(
                    "SELECT body, ts FROM inserts WHERE room = ?1 AND seq >= ?2 AND seq < ?3 ORDER BY seq LIMIT {limit}"
                ))?;
                let rows = stmt.query_map(
                    params![room, start as i64, first_unapplied as i64],
                    |r| entry(r, 0),
                )?;
                // Rows are read only while the page has room for them.
                for row in rows {
                    let e = row?;
                    if !items.is_empty() && bytes + super::entry_bytes(&e) > max_bytes {
                        full = true;
                        break;
                    }
                    bytes += super::entry_bytes(&e);
                    items.push(e);
                }
            }
            if let (Some(tail), false) = (tail, full) {
                let room_left = limit.saturating_sub(items.len());
                for e in tail.items.into_iter().take(room_left) {
                    if !items.is_empty() && bytes + super::entry_bytes(&e) > max_bytes {
                        break;
                    }
                    bytes += super::entry_bytes(&e);
                    items.push(e);
                }
            }
            let more = start + (items.len() as u64) < len;
            Ok(Page {
                start,
                items,
                more,
                epoch,
            })
        })
        .await
    }

    async fn updates(
        &self,
        room: &str,
        after: i64,
        max_bytes: usize,
    ) -> Result<UpdatePage, StoreError> {
        let room = room.to_owned();
        let unapplied = self.unapplied.clone();
        self.read(move |conn| {
            let pending = locked(&unapplied).updates(&room);
            let mut stmt = conn.prepare_cached(
                "SELECT msg_id, ord, body, ts FROM updates WHERE room = ?1 AND ord > ?2 ORDER BY ord",
            )?;
            let rows = stmt.query_map(params![room, after], |r| {
                Ok(UpdateEntry {
                    msg_id: r.get(0)?,
                    ord: r.get(1)?,
                    entry: entry(r, 2)?,
                })
            })?;
            unapplied::page_updates(rows, pending, after, max_bytes)
        })
        .await
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
            tokio::task::spawn_blocking(move || probe_write(&dir)).await??;
        }
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }

    async fn crash_writer_for_tests(&self) {
        let _ = self.jobs.send(Job::CrashForTests).await;
        // The flag is cleared as the thread unwinds.
        while self.writer_alive.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn clear(&self, room: &str) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Clear(room.to_owned(), tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Flush(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// The writer thread's state: the commit log and the numbering of writes.
struct Writer {
    log: Journal,
    unavailable: Arc<Unavailable>,
    /// Log lines of refused groups, failed writes, slow groups and failed
    /// rotations.
    refused: RateLimited,
    write_failed: RateLimited,
    slow: RateLimited,
    rotate_failed: RateLimited,
    /// Set while groups fail to commit ([`SqliteMessageStore::ping`]).
    failing: Arc<AtomicBool>,
    /// Reads the counters of rooms it has not written yet.
    read: Connection,
    counters: Counters,
    unapplied: Arc<Mutex<Unapplied>>,
    applier: std::sync::mpsc::Sender<ApplyJob>,
    /// Records of the segment being written, for the applier.
    pending: Vec<Record>,
    pending_bytes: usize,
    segment_started: Instant,
    window: Duration,
    /// When the last write was submitted, and the running mean of the
    /// gaps between writes: the window is waited only while writes come
    /// closer together than it (a lone write gains nothing from waiting).
    last_submitted: Instant,
    mean_gap: Duration,
}

/// The writer's numbering of rooms' inserts and of updates, loaded from
/// SQLite on first use and rolled back when a group fails. A room's entry
/// is dropped once the room has nothing unapplied (SQLite's count is then
/// current) and the cache holds [`CACHED_ROOMS`]: it follows the rooms
/// being written, not every room written since start-up.
#[derive(Default)]
struct Counters {
    next_seq: HashMap<String, u64>,
    next_ord: Option<i64>,
    /// What the current group changed: (room, its entry before), and the
    /// update counter before.
    undo: Vec<(String, Option<u64>)>,
    undo_ord: Option<Option<i64>>,
}

/// Rooms whose next seq the writer keeps before it drops the settled ones.
const CACHED_ROOMS: usize = 4096;

impl Counters {
    /// Starts a group: its changes can be rolled back.
    fn begin(&mut self) {
        self.undo.clear();
        self.undo_ord = None;
    }

    /// Undoes the current group's changes.
    fn rollback(&mut self) {
        for (room, before) in self.undo.drain(..).rev() {
            match before {
                Some(seq) => self.next_seq.insert(room, seq),
                None => self.next_seq.remove(&room),
            };
        }
        if let Some(ord) = self.undo_ord.take() {
            self.next_ord = ord;
        }
    }

    fn set_seq(&mut self, room: &str, next: u64) {
        let before = self.next_seq.insert(room.to_owned(), next);
        self.undo.push((room.to_owned(), before));
    }

    fn set_ord(&mut self, next: i64) {
        if self.undo_ord.is_none() {
            self.undo_ord = Some(self.next_ord);
        }
        self.next_ord = Some(next);
    }

    /// Drops the rooms with nothing unapplied once the cache is full.
    fn evict(&mut self, unapplied: &Mutex<Unapplied>) {
        if self.next_seq.len() < CACHED_ROOMS {
            return;
        }
        let unapplied = locked(unapplied);
        self.next_seq.retain(|room, _| unapplied.has_room(room));
    }

    fn next_seq(&mut self, read: &Connection, room: &str) -> Result<u64, rusqlite::Error> {
        if let Some(seq) = self.next_seq.get(room) {
            return Ok(*seq);
        }
        // A room this writer has not written since start-up has nothing
        // unapplied: SQLite's count is current.
        let seq = read
            .prepare_cached("SELECT next_seq FROM rooms WHERE room = ?1")?
            .query_row(params![room], |r| r.get::<_, i64>(0))
            .optional()?
            .map_or(0, |s| s as u64);
        Ok(seq)
    }

    fn next_ord(&mut self, read: &Connection) -> Result<i64, rusqlite::Error> {
        if let Some(ord) = self.next_ord {
            return Ok(ord);
        }
        read.query_row("SELECT COALESCE(MAX(ord), -1) + 1 FROM updates", [], |r| {
            r.get(0)
        })
    }
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        // Only for a receive with a timeout: the writer itself blocks on the
        // disk, never on the runtime.
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "the store writer could not start");
                return;
            }
        };
        let mut batch = Vec::new();
        loop {
            let first = if self.pending.is_empty() && !self.log.is_broken() {
                rx.blocking_recv()
            } else {
                // Durable writes wait for SQLite at most APPLY_INTERVAL; a
                // broken log is mended as soon as it can be.
                let due = if self.log.is_broken() {
                    Instant::now() + MEND_RETRY
                } else {
                    self.segment_started + APPLY_INTERVAL
                };
                match recv_until(&rt, &mut rx, due) {
                    Received::Job(job) => Some(job),
                    Received::TimedOut => {
                        let _ = self.hand_over();
                        continue;
                    }
                    Received::Closed => None,
                }
            };
            let Some(first) = first else { break };
            if let Job::Write(_, submitted) = &first {
                self.note_submitted(*submitted);
                if self.mean_gap < self.window {
                    // The commit window: what arrives shortly after the
                    // first write shares its fsync.
                    let until = *submitted + self.window;
                    let now = Instant::now();
                    if until > now {
                        std::thread::sleep(until - now);
                    }
                }
            }
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => {
                        if let Job::Write(_, submitted) = &job {
                            self.note_submitted(*submitted);
                        }
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.run_batch(&mut batch);
            if self.pending_bytes >= APPLY_BYTES || self.segment_started.elapsed() >= APPLY_INTERVAL
            {
                let _ = self.hand_over();
            }
        }
        let _ = self.hand_over();
        tracing::debug!("store writer stopped");
    }

    /// Updates the running mean of the gaps between writes (weight 1/8).
    fn note_submitted(&mut self, submitted: Instant) {
        let gap = submitted.saturating_duration_since(self.last_submitted);
        self.last_submitted = self.last_submitted.max(submitted);
        self.mean_gap = if self.mean_gap == Duration::MAX {
            gap
        } else {
            (self.mean_gap * 7 + gap) / 8
        };
    }

    /// Commits the writes up to the first other job as one group, then
    /// handles that job; repeats.
    fn run_batch(&mut self, batch: &mut Vec<Job>) {
        let mut writes = Vec::new();
        for job in batch.drain(..) {
            match job {
                Job::Write(w, _) => writes.push(w),
                Job::Clear(room, reply) => {
                    self.commit(std::mem::take(&mut writes));
                    let _ = reply.send(self.clear(room));
                }
                Job::Flush(reply) => {
                    self.commit(std::mem::take(&mut writes));
                    let _ = reply.send(self.applied());
                }
                Job::Ping(reply) => {
                    let _ = reply.send(());
                }
                Job::CrashForTests => {
                    self.commit(std::mem::take(&mut writes));
                    panic!("store writer crashed on request (a test of readiness)");
                }
            }
        }
        self.commit(writes);
    }

    /// Numbers the group's writes, makes them durable in the log, then
    /// completes them in order.
    fn commit(&mut self, writes: Vec<Write>) {
        if writes.is_empty() {
            return;
        }
        if let Err(error) = self.mend_log() {
            self.refuse(writes, error);
            return;
        }
        self.wait_for_applier();
        self.counters.begin();
        let ts = unix_now();
        let mut records = Vec::new();
        let mut outcomes = Vec::with_capacity(writes.len());
        let mut failed = None;
        for w in writes {
            let Write {
                room,
                op,
                body,
                done,
                ..
            } = w;
            if failed.is_some() {
                // The group fails as a whole; the rest is not numbered.
                outcomes.push((done, Err(StoreError::Closed)));
                continue;
            }
            let result = match self.number(room, op, body, ts) {
                Ok((result, record)) => {
                    records.extend(record);
                    result
                }
                Err(e) => {
                    failed = Some(StoreError::from(e));
                    Err(StoreError::Closed)
                }
            };
            outcomes.push((done, result));
        }
        if failed.is_none() {
            let started = Instant::now();
            let appended = self.log.append(&records);
            let took = started.elapsed();
            LOG_METRICS.sync_seconds.observe(took.as_secs_f64());
            if took >= SLOW_SYNC {
                LOG_METRICS.stalls.inc();
                self.slow.note(|count| {
                    tracing::warn!(
                        ms = took.as_millis() as u64,
                        records = records.len(),
                        groups = count,
                        "slow commit log write: the disk held group commits back over 50 ms (this one and the others counted since the last such line)"
                    );
                });
            }
            if let Err(e) = appended {
                LOG_METRICS.failures.inc();
                let segment = self.log.segment();
                self.write_failed.note(|count| {
                    tracing::error!(error = %e, segment, failures = count, "a commit log write failed: the segment is not trusted again; the acknowledged records are rewritten into a new one before the next group (failures counted since the last such line)");
                });
                self.unavailable.set_log(&e);
                failed = Some(StoreError::from(e));
            }
        }
        self.failing.store(failed.is_some(), Ordering::Release);
        if let Some(error) = failed {
            self.counters.rollback();
            let writes = outcomes.len();
            self.refused.note(|count| {
                tracing::error!(%error, writes, groups = count, "message groups failed to commit (this one and the others counted since the last such line)");
            });
            for (done, _) in outcomes {
                done(Err(error.clone().into()));
            }
            return;
        }
        {
            let mut unapplied = locked(&self.unapplied);
            for r in &records {
                unapplied.add(r);
            }
        }
        self.pending_bytes += records.iter().map(Record::size).sum::<usize>();
        self.pending.append(&mut records);
        self.counters.evict(&self.unapplied);
        for (done, result) in outcomes {
            done(result.map_err(Into::into));
        }
    }

    /// Refuses `writes` (the log is broken and could not be mended).
    fn refuse(&mut self, writes: Vec<Write>, error: StoreError) {
        self.failing.store(true, Ordering::Release);
        let count = writes.len();
        self.refused.note(|groups| {
            tracing::error!(%error, writes = count, groups, "message groups refused: the commit log is broken and could not be mended yet (this one and the others counted since the last such line)");
        });
        for w in writes {
            (w.done)(Err(error.clone().into()));
        }
    }

    /// Mends a broken log (see [`Journal::recover`]).
    fn mend_log(&mut self) -> Result<(), StoreError> {
        if !self.log.is_broken() {
            return Ok(());
        }
        match self.log.recover(&self.pending) {
            Ok(()) => {
                tracing::info!(
                    segment = self.log.segment(),
                    records = self.pending.len(),
                    "commit log mended: the acknowledged records were rewritten into a new segment; writes are taken again"
                );
                self.unavailable.clear_log();
                Ok(())
            }
            Err(e) => {
                self.unavailable.set_log(&e);
                Err(StoreError::from(e))
            }
        }
    }

    /// Gives one write its seq or ord and its final text; the record to log
    /// for inserts and updates. The outer error fails the whole group.
    #[allow(clippy::type_complexity)]
    fn number(
        &mut self,
        room: String,
        op: WriteOp,
        body: StampedMsg,
        ts: i64,
    ) -> Result<(Result<Stored, StoreError>, Option<Record>), rusqlite::Error> {
        match op {
            WriteOp::Ignore => Ok((
                encode(body.into_string()).map(|b| Stored {
                    seq: None,
                    durable: false,
                    published: false,
                    body: b,
                }),
                None,
            )),
            WriteOp::Insert => {
                let seq = self.counters.next_seq(&self.read, &room)?;
                let body = match encode(body.with_seq(seq)) {
                    Ok(body) => body,
                    Err(e) => return Ok((Err(e), None)),
                };
                self.counters.set_seq(&room, seq + 1);
                let stored = Stored {
                    seq: Some(seq),
                    durable: true,
                    published: false,
                    body: body.clone(),
                };
                let record = Record::Insert {
                    room,
                    seq,
                    ts,
                    body,
                };
                Ok((Ok(stored), Some(record)))
            }
            WriteOp::Update { msg_id } => {
                let body = match encode(body.into_string()) {
                    Ok(body) => body,
                    Err(e) => return Ok((Err(e), None)),
                };
                let ord = self.counters.next_ord(&self.read)?;
                self.counters.set_ord(ord + 1);
                let stored = Stored {
                    seq: None,
                    durable: true,
                    published: false,
                    body: body.clone(),
                };
                let record = Record::Update {
                    room,
                    msg_id,
                    ord,
                    ts,
                    body,
                };
                Ok((Ok(stored), Some(record)))
            }
        }
    }

    /// Seals the log segment being written and hands its records to
    /// SQLite. Fails when the log is broken or no new segment could be
    /// started: the records stay with the writer (and in memory for
    /// readers) until a later hand-over.
    fn hand_over(&mut self) -> Result<(), StoreError> {
        self.segment_started = Instant::now();
        self.mend_log()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let rotated = self.log.rotate();
        let took = started.elapsed();
        if took >= SLOW_SYNC {
            // The next group waited for it as for a slow sync.
            LOG_METRICS.stalls.inc();
            self.slow.note(|count| {
                tracing::warn!(
                    ms = took.as_millis() as u64,
                    groups = count,
                    "slow commit log rotation: creating the next segment and syncing the directory held group commits back over 50 ms (counted with the slow writes since the last such line)"
                );
            });
        }
        let segments = match rotated {
            Ok(sealed) => sealed,
            Err(e) => {
                self.rotate_failed.note(|count| {
                    tracing::error!(error = %e, failures = count, "could not start a new commit log segment; the records stay in the current one");
                });
                return Err(StoreError::from(e));
            }
        };
        let records = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        if self
            .applier
            .send(ApplyJob::Apply { records, segments })
            .is_err()
        {
            tracing::error!("the store's applier stopped; writes stay in the commit log");
        }
        Ok(())
    }

    /// Holds new groups back while SQLite is far behind.
    fn wait_for_applier(&mut self) {
        let mut warned = false;
        while locked(&self.unapplied).bytes() > MAX_UNAPPLIED_BYTES {
            if !warned {
                tracing::warn!("the database is behind the commit log; holding writes back");
                warned = true;
            }
            let _ = self.hand_over();
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until everything durable so far is in SQLite.
    fn applied(&mut self) -> Result<(), StoreError> {
        self.hand_over()?;
        let (tx, rx) = oneshot::channel();
        self.applier
            .send(ApplyJob::Flush(tx))
            .map_err(|_| StoreError::Closed)?;
        rx.blocking_recv().map_err(|_| StoreError::Closed)?
    }

    /// Deletes a room's history once everything before is in SQLite; the
    /// room's next insert starts at seq 0 of a new epoch.
    fn clear(&mut self, room: String) -> Result<(), StoreError> {
        // Every record of the room must be in a sealed segment, deleted
        // durably before SQLite clears the room (else a replay would bring
        // them back into the new epoch).
        self.hand_over()?;
        let (tx, rx) = oneshot::channel();
        self.applier
            .send(ApplyJob::Clear(room.clone(), tx))
            .map_err(|_| StoreError::Closed)?;
        let res = rx.blocking_recv().map_err(|_| StoreError::Closed)?;
        self.counters.next_seq.remove(&room);
        locked(&self.unapplied).clear_room(&room);
        res
    }
}

enum Received {
    Job(Job),
    TimedOut,
    Closed,
}

/// The next job, waiting at most until `due`.
fn recv_until(
    rt: &tokio::runtime::Runtime,
    rx: &mut mpsc::Receiver<Job>,
    due: Instant,
) -> Received {
    let due = tokio::time::Instant::from_std(due);
    rt.block_on(async {
        match tokio::time::timeout_at(due, rx.recv()).await {
            Ok(Some(job)) => Received::Job(job),
            Ok(None) => Received::Closed,
            Err(_) => Received::TimedOut,
        }
    })
}

/// The applier thread's state: the only connection that writes to SQLite.
struct Applier {
    conn: Connection,
    fs: Arc<dyn LogFs>,
    unavailable: Arc<Unavailable>,
    dir: PathBuf,
    db_epoch: String,
    unapplied: Arc<Mutex<Unapplied>>,
    /// Applied segments whose files could not be deleted yet.
    undeleted: Vec<u64>,
}

/// Applied records forgotten from memory per hold of its lock.
const REMOVE_SLICE: usize = 256;

/// How long the applier waits before trying a failed batch again.
const APPLY_RETRY: Duration = Duration::from_secs(1);
/// A failing batch is logged at most once per this.
const APPLY_REPORT: Duration = Duration::from_secs(30);

/// Why the store takes no writes, or cannot apply them, for now.
#[derive(Default)]
struct Unavailable {
    log: Mutex<Option<String>>,
    apply: Mutex<Option<String>>,
}

impl Unavailable {
    fn set_log(&self, e: &dyn std::fmt::Display) {
        *locked(&self.log) = Some(format!("the commit log is broken ({e}) and not mended yet"));
    }
    fn clear_log(&self) {
        *locked(&self.log) = None;
    }
    fn set_apply(&self, e: &dyn std::fmt::Display) {
        *locked(&self.apply) = Some(format!(
            "the database refuses the commit log's records ({e})"
        ));
    }
    fn clear_apply(&self) {
        *locked(&self.apply) = None;
    }
    fn reason(&self) -> Option<String> {
        locked(&self.log)
            .clone()
            .or_else(|| locked(&self.apply).clone())
    }
}

impl Applier {
    fn run(mut self, rx: std::sync::mpsc::Receiver<ApplyJob>) {
        lower_priority();
        while let Ok(job) = rx.recv() {
            match job {
                ApplyJob::Apply { records, segments } => {
                    self.apply_until_taken(&records);
                    // In slices, so the writer (which adds to the same
                    // map for every group) never waits long for this
                    // lower-priority thread to let go of the lock.
                    for slice in records.chunks(REMOVE_SLICE) {
                        locked(&self.unapplied).remove_applied(slice);
                    }
                    self.undeleted.extend(segments);
                    if let Err(e) = self.delete_applied() {
                        tracing::warn!(error = %e, "could not delete an applied commit log segment");
                    }
                }
                ApplyJob::Clear(room, reply) => {
                    // A segment left behind would be replayed into the new
                    // epoch after a restart: the clear waits for its deletion.
                    let cleared = self
                        .delete_applied()
                        .map_err(StoreError::from)
                        .and_then(|()| clear(&mut self.conn, &room).map_err(Into::into));
                    let _ = reply.send(cleared);
                }
                ApplyJob::Flush(reply) => {
                    let _ = reply.send(Ok(()));
                }
            }
        }
        tracing::debug!("store applier stopped");
    }

    /// Applies `records`, retrying until SQLite takes them: they are
    /// durable in the log and served from memory meanwhile. While SQLite
    /// refuses them (a full disk, a damaged database) the store is not
    /// ready, each failure is counted and logged once per
    /// [`APPLY_REPORT`].
    fn apply_until_taken(&mut self, records: &[Record]) {
        let mut failures = 0u64;
        let mut reported: Option<Instant> = None;
        while let Err(e) = apply(&mut self.conn, records, &self.db_epoch) {
            failures += 1;
            LOG_METRICS.apply_failures.inc();
            self.unavailable.set_apply(&e);
            if reported.is_none_or(|at| at.elapsed() >= APPLY_REPORT) {
                tracing::error!(error = %e, records = records.len(), failures, "the database refuses the commit log's records; retrying (writes are held back once 64 MiB wait, and /readyz answers 503)");
                reported = Some(Instant::now());
            }
            std::thread::sleep(APPLY_RETRY);
        }
        if failures > 0 {
            tracing::info!(
                failures,
                "the database takes the commit log's records again"
            );
            self.unavailable.clear_apply();
        }
    }

    /// Deletes the applied segments' files, in order, each deletion
    /// durable before the next.
    fn delete_applied(&mut self) -> std::io::Result<()> {
        let done = journal::remove_segments(&*self.fs, &self.dir, &self.undeleted);
        if done.is_ok() {
            self.undeleted.clear();
        }
        done
    }
}

/// Lowers the calling thread's CPU priority: the applier's work is never
/// waited for by a client, so the threads that relay and acknowledge go
/// first when the cores are busy.
fn lower_priority() {
    // SAFETY: plain system calls on the calling thread, no memory passed.
    let failed = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, APPLIER_NICE) != 0
    };
    if failed {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the applier's priority");
    }
}

/// The applier thread's nice value.
const APPLIER_NICE: libc::c_int = 10;

/// Writes `records` into SQLite in one transaction. Safe to repeat: an
/// insert is keyed by its room and seq, and an update replaces only an
/// older one.
pub(crate) fn apply(
    conn: &mut Connection,
    records: &[Record],
    db_epoch: &str,
) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    let mut next_seq: HashMap<&str, u64> = HashMap::new();
    for record in records {
        match record {
            Record::Insert {
                room,
                seq,
                ts,
                body,
            } => {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO inserts (room, seq, ts, body) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![room, *seq as i64, ts, body.get()])?;
                let next = next_seq.entry(room).or_default();
                *next = (*next).max(seq + 1);
            }
            Record::Update {
                room,
                msg_id,
                ord,
                ts,
                body,
            } => {
                tx.prepare_cached(
                    "INSERT INTO updates (room, msg_id, ord, ts, body) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (room, msg_id) DO UPDATE
                     SET ord = excluded.ord, ts = excluded.ts, body = excluded.body
                     WHERE excluded.ord > updates.ord",
                )?
                .execute(params![room, msg_id, ord, ts, body.get()])?;
                next_seq.entry(room).or_default();
            }
        }
    }
    for (room, next) in next_seq {
        tx.prepare_cached(
            "INSERT INTO rooms (room, epoch, next_seq) VALUES (?1, ?2, ?3)
             ON CONFLICT (room) DO UPDATE SET next_seq = MAX(next_seq, excluded.next_seq)",
        )?
        .execute(params![room, db_epoch, next as i64])?;
    }
    tx.commit()
}

/// Deletes a room's history and starts a new epoch.
fn clear(conn: &mut Connection, room: &str) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM inserts WHERE room = ?1", params![room])?;
    tx.execute("DELETE FROM updates WHERE room = ?1", params![room])?;
    let epoch = new_epoch();
    tx.execute(
        "INSERT INTO rooms (room, epoch, next_seq) VALUES (?1, ?2, 0)
         ON CONFLICT (room) DO UPDATE SET epoch = excluded.epoch, next_seq = 0",
        params![room, epoch],
    )?;
    tx.commit()
}

/// Gives `room` a new epoch after `store repair` found that its history
/// may have lost msgs, keeping what it has: its inserts are renumbered
/// from 0 (each msg's `seq` with them) if a seq is missing, so sync has
/// no hole; resuming clients see the new epoch and sync again.
pub(crate) fn renew_epoch(conn: &mut Connection, room: &str) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    let rows: Vec<(i64, i64, String)> = tx
        .prepare("SELECT seq, ts, body FROM inserts WHERE room = ?1 ORDER BY seq")?
        .query_map(params![room], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let whole = rows
        .iter()
        .enumerate()
        .all(|(i, (seq, _, _))| *seq == i as i64);
    if !whole {
        tx.execute("DELETE FROM inserts WHERE room = ?1", params![room])?;
        for (i, (_, ts, body)) in rows.iter().enumerate() {
            let body = match serde_json::from_str::<serde_json::Value>(body) {
                Ok(serde_json::Value::Object(mut m)) => {
                    m.insert("seq".into(), serde_json::Value::from(i));
                    serde_json::Value::Object(m).to_string()
                }
                _ => body.clone(),
            };
            tx.execute(
                "INSERT INTO inserts (room, seq, ts, body) VALUES (?1, ?2, ?3, ?4)",
                params![room, i as i64, ts, body],
            )?;
        }
    }
    tx.execute(
        "INSERT INTO rooms (room, epoch, next_seq) VALUES (?1, ?2, ?3)
         ON CONFLICT (room) DO UPDATE SET epoch = excluded.epoch, next_seq = excluded.next_seq",
        params![room, new_epoch(), rows.len() as i64],
    )?;
    tx.commit()
}

/// A message's JSON text as a raw value, checked to be JSON.
fn encode(text: String) -> Result<Arc<RawValue>, StoreError> {
    RawValue::from_string(text)
        .map(Arc::from)
        .map_err(StoreError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_group_rolls_back_only_its_own_numbers() {
        let mut c = Counters::default();
        c.begin();
        c.set_seq("a", 5);
        c.set_ord(10);
        c.begin();
        c.set_seq("a", 6);
        c.set_seq("b", 1);
        c.set_seq("a", 7);
        c.set_ord(11);
        c.set_ord(12);
        c.rollback();
        assert_eq!(c.next_seq.get("a"), Some(&5));
        assert_eq!(c.next_seq.get("b"), None);
        assert_eq!(c.next_ord, Some(10));
    }

    #[test]
    fn a_renewed_epoch_closes_the_holes_of_a_salvaged_history() {
        let dir = tempfile::tempdir().expect("dir");
        let mut conn = open(dir.path()).expect("db");
        let db_epoch = database_id(&conn).expect("id");
        let insert = |seq: u64| Record::Insert {
            room: "r".into(),
            seq,
            ts: 1,
            body: Arc::from(
                RawValue::from_string(format!("{{\"data\":{seq},\"seq\":{seq}}}")).expect("json"),
            ),
        };
        // Seq 2 was lost with a damaged segment.
        apply(&mut conn, &[insert(0), insert(1), insert(3)], &db_epoch).expect("apply");
        renew_epoch(&mut conn, "r").expect("renew");
        let rows: Vec<(i64, String)> = conn
            .prepare("SELECT seq, body FROM inserts WHERE room = 'r' ORDER BY seq")
            .expect("select")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            rows,
            [
                (0, r#"{"data":0,"seq":0}"#.to_owned()),
                (1, r#"{"data":1,"seq":1}"#.to_owned()),
                (2, r#"{"data":3,"seq":2}"#.to_owned()),
            ]
        );
        let (epoch, next): (String, i64) = conn
            .query_row(
                "SELECT epoch, next_seq FROM rooms WHERE room = 'r'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("room");
        assert_ne!(epoch, db_epoch, "a new epoch");
        assert_eq!(next, 3);
    }

    #[test]
    fn settled_rooms_leave_a_full_cache() {
        let mut c = Counters::default();
        for i in 0..CACHED_ROOMS {
            c.set_seq(&format!("r{i}"), 1);
        }
        let unapplied = Mutex::new(Unapplied::default());
        locked(&unapplied).add(&Record::Insert {
            room: "r7".into(),
            seq: 0,
            ts: 1,
            body: Arc::from(RawValue::from_string("{}".into()).expect("json")),
        });
        c.evict(&unapplied);
        assert_eq!(
            c.next_seq.len(),
            1,
            "only the room with unapplied writes stays"
        );
        assert_eq!(c.next_seq.get("r7"), Some(&1));
    }
}
