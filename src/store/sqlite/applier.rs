//! The applier thread: takes the commit log's sealed segments into SQLite,
//! one transaction each, then deletes them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use super::open::new_epoch;
use crate::logging::Chain;
use crate::store::journal::{self, Record};
use crate::store::log_fs::LogFs;
use crate::store::unapplied::Unapplied;
use crate::store::{StoreError, LOG_METRICS};
use crate::sync::lock as locked;

/// What the writer hands the applier, in order.
pub(super) enum ApplyJob {
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

/// The applier thread's state: the only connection that writes to SQLite.
pub(super) struct Applier {
    pub(super) conn: Connection,
    pub(super) fs: Arc<dyn LogFs>,
    pub(super) unavailable: Arc<Unavailable>,
    pub(super) dir: PathBuf,
    pub(super) db_epoch: String,
    pub(super) unapplied: Arc<Mutex<Unapplied>>,
    /// Applied segments whose files could not be deleted yet.
    pub(super) undeleted: Vec<u64>,
}

/// Applied records forgotten from memory per hold of its lock.
const REMOVE_SLICE: usize = 256;

/// How long the applier waits before trying a failed batch again.
const APPLY_RETRY: Duration = Duration::from_secs(1);
/// A failing batch is logged at most once per this.
const APPLY_REPORT: Duration = Duration::from_secs(30);

/// Why the store takes no writes, or cannot apply them, for now.
#[derive(Default)]
pub(super) struct Unavailable {
    log: Mutex<Option<String>>,
    apply: Mutex<Option<String>>,
}

impl Unavailable {
    pub(super) fn set_log(&self, e: &dyn std::fmt::Display) {
        *locked(&self.log) = Some(format!("the commit log is broken ({e}) and not mended yet"));
    }
    pub(super) fn clear_log(&self) {
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
    pub(super) fn reason(&self) -> Option<String> {
        locked(&self.log)
            .clone()
            .or_else(|| locked(&self.apply).clone())
    }
}

impl Applier {
    pub(super) fn run(mut self, rx: std::sync::mpsc::Receiver<ApplyJob>) {
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
                        tracing::warn!(error = %Chain(&e), "could not delete an applied commit log segment");
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
            self.unavailable.set_apply(&Chain(&e));
            if reported.is_none_or(|at| at.elapsed() >= APPLY_REPORT) {
                tracing::error!(error = %Chain(&e), records = records.len(), failures, "the database refuses the commit log's records; retrying (writes are held back once 64 MiB wait, and /readyz answers 503)");
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
    /// durable before the next; the last may be kept as the log's spare.
    fn delete_applied(&mut self) -> std::io::Result<()> {
        let done = journal::retire_segments(&*self.fs, &self.dir, &self.undeleted);
        if done.is_ok() {
            self.undeleted.clear();
        }
        done
    }
}

/// Lowers the calling thread's CPU priority: the applier's work is never
/// waited for by a client, so the threads that relay and acknowledge go
/// first when the cores are busy.
#[allow(unsafe_code)] // setpriority: no library sets a thread's nice value
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

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::super::open::database_id;
    use super::*;
    use crate::sqlite::open;

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

    fn insert(room: &str, seq: u64) -> Record {
        Record::Insert {
            room: room.into(),
            seq,
            ts: 1,
            body: Arc::from(RawValue::from_string(format!("{{\"seq\":{seq}}}")).expect("json")),
        }
    }

    fn update(msg_id: &str, ord: i64, text: &str) -> Record {
        Record::Update {
            room: "r".into(),
            msg_id: msg_id.into(),
            ord,
            ts: 1,
            body: Arc::from(RawValue::from_string(format!("\"{text}\"")).expect("json")),
        }
    }

    fn counts(conn: &Connection) -> (i64, i64, i64) {
        conn.query_row(
            "SELECT (SELECT COUNT(*) FROM inserts), (SELECT COUNT(*) FROM updates),
                    (SELECT next_seq FROM rooms WHERE room = 'r')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("counts")
    }

    #[test]
    fn a_repeated_batch_changes_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let mut conn = open(dir.path()).expect("db");
        let db_epoch = database_id(&conn).expect("id");
        let batch = [insert("r", 0), insert("r", 1), update("m", 0, "a")];
        apply(&mut conn, &batch, &db_epoch).expect("apply");
        let once = counts(&conn);
        // A replay after a crash applies the same segment again.
        apply(&mut conn, &batch, &db_epoch).expect("apply again");
        assert_eq!(counts(&conn), once);
        assert_eq!(once, (2, 1, 2));
    }

    #[test]
    fn an_update_replaces_only_an_older_one() {
        let dir = tempfile::tempdir().expect("dir");
        let mut conn = open(dir.path()).expect("db");
        let db_epoch = database_id(&conn).expect("id");
        let body = |conn: &Connection| -> (i64, String) {
            conn.query_row(
                "SELECT ord, body FROM updates WHERE room = 'r' AND msg_id = 'm'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("update")
        };
        apply(&mut conn, &[update("m", 5, "new")], &db_epoch).expect("apply");
        apply(&mut conn, &[update("m", 3, "old")], &db_epoch).expect("apply older");
        assert_eq!(body(&conn), (5, "\"new\"".to_owned()));
        apply(&mut conn, &[update("m", 7, "newer")], &db_epoch).expect("apply newer");
        assert_eq!(body(&conn), (7, "\"newer\"".to_owned()));
    }

    #[test]
    fn an_applied_batch_leaves_nothing_unapplied() {
        let dir = tempfile::tempdir().expect("dir");
        let conn = open(dir.path()).expect("db");
        let db_epoch = database_id(&conn).expect("id");
        // Several removal slices, over several rooms, with updates.
        let mut records: Vec<Record> = (0..REMOVE_SLICE as u64 * 3 + 5)
            .map(|i| insert(&format!("r{}", i % 3), i / 3))
            .collect();
        records.extend((0..10).map(|i| update(&format!("m{i}"), i, "u")));
        let unapplied = Arc::new(Mutex::new(Unapplied::default()));
        for r in &records {
            locked(&unapplied).add(r);
        }
        assert!(locked(&unapplied).bytes() > 0);
        let applier = Applier {
            conn,
            fs: crate::store::log_fs::OsFs::for_store(),
            unavailable: Arc::new(Unavailable::default()),
            dir: dir.path().to_path_buf(),
            db_epoch,
            unapplied: unapplied.clone(),
            undeleted: Vec::new(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || applier.run(rx));
        tx.send(ApplyJob::Apply {
            records,
            segments: Vec::new(),
        })
        .expect("send");
        let (done, flushed) = oneshot::channel();
        tx.send(ApplyJob::Flush(done)).expect("send");
        flushed.blocking_recv().expect("answer").expect("flush");
        drop(tx);
        thread.join().expect("applier");
        let unapplied = locked(&unapplied);
        assert_eq!(unapplied.bytes(), 0);
        for room in ["r0", "r1", "r2", "r"] {
            assert!(!unapplied.has_room(room), "{room} still unapplied");
        }
    }
}
