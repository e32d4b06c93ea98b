//! The writer thread: gathers the writes of a commit window, numbers
//! them, makes them durable in the commit log with one `fdatasync`, and
//! hands sealed segments to the applier.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::value::RawValue;
use std::sync::mpsc;
use tokio::sync::oneshot;

use super::applier::{ApplyJob, Unavailable};
use crate::logging::Chain;
use crate::protocol::StampedMsg;
use crate::sqlite::unix_now;
use crate::store::journal::{Journal, Record};
use crate::store::unapplied::Unapplied;
use crate::store::{RateLimited, StoreError, Stored, Write, WriteOp, LOG_METRICS};
use crate::sync::lock as locked;

/// Most writes committed in one group.
const MAX_BATCH: usize = 4096;
/// A commit log write that takes longer is logged.
const SLOW_SYNC: Duration = Duration::from_millis(50);
/// How long durable writes may wait for SQLite.
pub(super) const APPLY_INTERVAL: Duration = Duration::from_secs(5);
/// Unapplied bytes that make the writer hand its segment to SQLite early.
pub(super) const APPLY_BYTES: usize = 8 << 20;
/// Unapplied bytes past which the writer waits for SQLite to catch up
/// (holding submitters back, and so the clients behind them).
const MAX_UNAPPLIED_BYTES: usize = 64 << 20;
/// How often the writer tries to mend a broken log while no write comes.
const MEND_RETRY: Duration = Duration::from_secs(1);

pub(super) enum Job {
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

/// The writer thread's state: the commit log and the numbering of writes.
pub(super) struct Writer {
    pub(super) log: Journal,
    pub(super) unavailable: Arc<Unavailable>,
    /// Log lines of refused groups, failed writes, slow groups and failed
    /// rotations.
    pub(super) refused: RateLimited,
    pub(super) write_failed: RateLimited,
    pub(super) slow: RateLimited,
    pub(super) rotate_failed: RateLimited,
    /// Set while groups fail to commit ([`SqliteMessageStore::ping`]).
    pub(super) failing: Arc<AtomicBool>,
    /// Reads the counters of rooms it has not written yet.
    pub(super) read: Connection,
    pub(super) counters: Counters,
    pub(super) unapplied: Arc<Mutex<Unapplied>>,
    pub(super) applier: std::sync::mpsc::Sender<ApplyJob>,
    /// Records of the segment being written, for the applier.
    pub(super) pending: Vec<Record>,
    pub(super) pending_bytes: usize,
    pub(super) segment_started: Instant,
    pub(super) window: Duration,
    /// When the last write was submitted, and the running mean of the
    /// gaps between writes: the window is waited only while writes come
    /// closer together than it (a lone write gains nothing from waiting).
    pub(super) last_submitted: Instant,
    pub(super) mean_gap: Duration,
}

/// The writer's numbering of rooms' inserts and of updates, loaded from
/// SQLite on first use and rolled back when a group fails. A room's entry
/// is dropped once the room has nothing unapplied (SQLite's count is then
/// current) and the cache holds [`CACHED_ROOMS`]: it follows the rooms
/// being written, not every room written since start-up.
#[derive(Default)]
pub(super) struct Counters {
    next_seq: HashMap<String, u64>,
    next_ord: Option<i64>,
    /// The rooms the current group added to the cache, and the update
    /// counter before it. A cached room's count before the group is its
    /// first insert's seq in the group: a rollback reads it from the
    /// group's records instead of a copy of the room's name per insert.
    added: Vec<String>,
    undo_ord: Option<Option<i64>>,
}

/// Rooms whose next seq the writer keeps before it drops the settled ones.
const CACHED_ROOMS: usize = 4096;

impl Counters {
    /// Starts a group: its changes can be rolled back.
    fn begin(&mut self) {
        self.added.clear();
        self.undo_ord = None;
    }

    /// Undoes the current group's changes; `numbered` are the records it
    /// numbered, in order.
    fn rollback(&mut self, numbered: &[Record]) {
        for record in numbered.iter().rev() {
            if let Record::Insert { room, seq, .. } = record {
                if let Some(next) = self.next_seq.get_mut(room.as_str()) {
                    *next = *seq;
                }
            }
        }
        for room in self.added.drain(..) {
            self.next_seq.remove(&room);
        }
        if let Some(ord) = self.undo_ord.take() {
            self.next_ord = ord;
        }
    }

    fn set_seq(&mut self, room: &str, next: u64) {
        match self.next_seq.get_mut(room) {
            Some(seq) => *seq = next,
            None => {
                self.next_seq.insert(room.to_owned(), next);
                self.added.push(room.to_owned());
            }
        }
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
    pub(super) fn run(mut self, rx: mpsc::Receiver<Job>) {
        let mut batch = Vec::new();
        loop {
            let first = if self.pending.is_empty() && !self.log.is_broken() {
                rx.recv().ok()
            } else {
                // Durable writes wait for SQLite at most APPLY_INTERVAL; a
                // broken log is mended as soon as it can be.
                let due = if self.log.is_broken() {
                    Instant::now() + MEND_RETRY
                } else {
                    self.segment_started + APPLY_INTERVAL
                };
                match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
                    Ok(job) => Some(job),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        let _ = self.hand_over();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => None,
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
        let mut writes = Vec::with_capacity(batch.len());
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
        let mut records = Vec::with_capacity(writes.len());
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
                    tracing::error!(error = %Chain(&e), segment, failures = count, "a commit log write failed: the segment is not trusted again; the acknowledged records are rewritten into a new one before the next group (failures counted since the last such line)");
                });
                self.unavailable.set_log(&Chain(&e));
                failed = Some(StoreError::from(e));
            }
        }
        self.failing.store(failed.is_some(), Ordering::Release);
        if let Some(error) = failed {
            self.counters.rollback(&records);
            let writes = outcomes.len();
            self.refused.note(|count| {
                tracing::error!(error = %Chain(&error), writes, groups = count, "message groups failed to commit (this one and the others counted since the last such line)");
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
            tracing::error!(error = %Chain(&error), writes = count, groups, "message groups refused: the commit log is broken and could not be mended yet (this one and the others counted since the last such line)");
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
                self.unavailable.set_log(&Chain(&e));
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
                    tracing::error!(error = %Chain(&e), failures = count, "could not start a new commit log segment; the records stay in the current one");
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

/// A message's JSON text as a raw value, checked to be JSON.
fn encode(text: String) -> Result<Arc<RawValue>, StoreError> {
    RawValue::from_string(text)
        .map(Arc::from)
        .map_err(StoreError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An insert record of `room` numbered `seq`.
    fn insert(room: &str, seq: u64) -> Record {
        Record::Insert {
            room: room.into(),
            seq,
            ts: 1,
            body: Arc::from(RawValue::from_string("{}".into()).expect("json")),
        }
    }

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
        c.rollback(&[insert("a", 5), insert("b", 0), insert("a", 6)]);
        assert_eq!(c.next_seq.get("a"), Some(&5));
        assert_eq!(c.next_seq.get("b"), None);
        assert_eq!(c.next_ord, Some(10));
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

    #[test]
    fn a_failed_first_group_forgets_the_rooms_it_numbered() {
        let mut c = Counters::default();
        c.begin();
        c.set_seq("a", 1);
        c.set_ord(1);
        c.rollback(&[insert("a", 0)]);
        assert!(c.next_seq.is_empty());
        assert_eq!(c.next_ord, None, "read from SQLite again");
        // A group that committed is not rolled back by the next begin.
        c.begin();
        c.set_seq("a", 1);
        c.begin();
        c.rollback(&[]);
        assert_eq!(c.next_seq.get("a"), Some(&1));
    }

    #[test]
    fn a_room_not_written_yet_is_numbered_from_sqlite() {
        let dir = tempfile::tempdir().expect("dir");
        let conn = crate::sqlite::open(dir.path()).expect("db");
        conn.execute(
            "INSERT INTO rooms (room, epoch, next_seq) VALUES ('r', 'e', 4)",
            [],
        )
        .expect("room");
        let mut c = Counters::default();
        assert_eq!(c.next_seq(&conn, "r").expect("seq"), 4);
        assert_eq!(c.next_seq(&conn, "new").expect("seq"), 0);
        assert_eq!(c.next_ord(&conn).expect("ord"), 0);
        c.set_seq("r", 9);
        assert_eq!(c.next_seq(&conn, "r").expect("seq"), 9, "the cache first");
    }
}
