//! The embedded message store: SQLite in WAL mode, one writer thread that
//! commits queued writes in batches (group commit) and read connections
//! for sync.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use super::{Entry, MessageStore, Page, StoreError, Stored, Write, WriteOp};
use crate::protocol::StampedMsg;
use crate::sqlite::{open, unix_now};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 2048;
/// Writes that may wait for the writer before submitters are held back.
const QUEUE_DEPTH: usize = 65_536;
/// Read connections kept open for sync.
const READERS: usize = 4;

enum Job {
    Write(Write),
    Clear(String, oneshot::Sender<Result<(), StoreError>>),
    Flush(oneshot::Sender<()>),
}

/// SQLite-backed [`MessageStore`].
pub struct SqliteMessageStore {
    jobs: mpsc::Sender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    data_dir: std::path::PathBuf,
    /// Epoch of rooms that have no row yet: this database's id.
    db_epoch: String,
}

impl SqliteMessageStore {
    /// Opens (or creates) the store under `data_dir` and starts its writer thread.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let conn = open(data_dir).map_err(backend)?;
        let db_epoch = database_id(&conn).map_err(backend)?;
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let writer = Writer {
            conn,
            counters: Counters {
                next_seq: HashMap::new(),
                next_ord: None,
                db_epoch: db_epoch.clone(),
            },
        };
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(Self {
            jobs: tx,
            readers: Arc::new(Mutex::new(Vec::new())),
            data_dir: data_dir.to_path_buf(),
            db_epoch,
        })
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
            let conn = match readers.lock().ok().and_then(|mut v| v.pop()) {
                Some(c) => c,
                None => open(&dir).map_err(backend)?,
            };
            let out = f(&conn).map_err(backend);
            if let Ok(mut pool) = readers.lock() {
                if pool.len() < READERS {
                    pool.push(conn);
                }
            }
            out
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The id of this database, made once when it is created.
fn database_id(conn: &Connection) -> Result<String, rusqlite::Error> {
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
fn entry(row: &rusqlite::Row<'_>) -> Result<Entry, rusqlite::Error> {
    let body = row.get_ref(0)?.as_str()?;
    let body = serde_json::from_str::<Box<RawValue>>(body).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Entry {
        body,
        ts: row.get(1)?,
    })
}

#[async_trait::async_trait]
impl MessageStore for SqliteMessageStore {
    async fn submit(&self, write: Write) {
        if let Err(mpsc::error::SendError(Job::Write(w))) = self.jobs.send(Job::Write(write)).await
        {
            (w.done)(Err(StoreError::Closed.into()));
        }
    }

    async fn page(&self, room: &str, offset: u64, limit: usize) -> Result<Page, StoreError> {
        let room = room.to_owned();
        let default_epoch = self.db_epoch.clone();
        self.read(move |conn| {
            let tx = conn.unchecked_transaction()?;
            let (epoch, len): (String, u64) = tx
                .prepare_cached("SELECT epoch, next_seq FROM rooms WHERE room = ?1")?
                .query_row(params![room], |r| {
                    Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
                })
                .optional()?
                .unwrap_or((default_epoch, 0));
            let start = offset.min(len);
            // The limit is part of the statement's text: bound as a parameter,
            // SQLite (built with STAT4) re-prepares the statement whenever
            // the offset changes, i.e. on every page.
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT body, ts FROM inserts WHERE room = ?1 AND seq >= ?2 ORDER BY seq LIMIT {limit}"
            ))?;
            let items = stmt
                .query_map(params![room, start as i64], entry)?
                .collect::<Result<Vec<_>, _>>()?;
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

    async fn updates(&self, room: &str) -> Result<Vec<Entry>, StoreError> {
        let room = room.to_owned();
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT body, ts FROM updates WHERE room = ?1 ORDER BY ord")?;
            let rows = stmt
                .query_map(params![room], entry)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
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
        rx.await.map_err(|_| StoreError::Closed)
    }
}

/// The writer thread's state: the only connection that writes messages.
struct Writer {
    conn: Connection,
    counters: Counters,
}

/// The writer's cached counters, rolled back when a batch fails.
#[derive(Clone)]
struct Counters {
    /// Cached next seq per room (loaded on first use).
    next_seq: HashMap<String, u64>,
    /// Next `ord` of an update (loaded on first use).
    next_ord: Option<i64>,
    db_epoch: String,
}

/// A write whose outcome is known once its batch commits.
struct Pending {
    done: super::Completion,
    result: Result<Stored, StoreError>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.run_batch(&mut batch);
        }
        tracing::debug!("store writer stopped");
    }

    /// Commits all writes up to the first non-write job in one transaction,
    /// completes them in order, then handles that job; repeats.
    fn run_batch(&mut self, batch: &mut Vec<Job>) {
        let mut writes = Vec::new();
        for job in batch.drain(..) {
            match job {
                Job::Write(w) => writes.push(w),
                Job::Clear(room, reply) => {
                    self.commit(std::mem::take(&mut writes));
                    let _ = reply.send(self.clear(&room));
                }
                Job::Flush(reply) => {
                    self.commit(std::mem::take(&mut writes));
                    let _ = reply.send(());
                }
            }
        }
        self.commit(writes);
    }

    fn commit(&mut self, writes: Vec<Write>) {
        if writes.is_empty() {
            return;
        }
        let before = self.counters.clone();
        let mut pending = Vec::with_capacity(writes.len());
        let mut queue = writes.into_iter();
        let outcome = write_all(&mut self.conn, &mut self.counters, &mut queue, &mut pending);
        // Writes not reached when the batch failed fail with it.
        pending.extend(queue.map(|w| Pending {
            done: w.done,
            result: Err(StoreError::Closed),
        }));
        if let Err(e) = outcome {
            tracing::error!(error = %e, "message batch failed to commit");
            self.counters = before;
            let err = backend(e);
            for p in pending {
                (p.done)(Err(err.clone().into()));
            }
            return;
        }
        for p in pending {
            (p.done)(p.result.map_err(Into::into));
        }
    }

    fn clear(&mut self, room: &str) -> Result<(), StoreError> {
        let run = |conn: &mut Connection| -> Result<(), rusqlite::Error> {
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
        };
        let res = run(&mut self.conn).map_err(backend);
        self.counters.next_seq.remove(room);
        res
    }
}

fn write_all(
    conn: &mut Connection,
    counters: &mut Counters,
    writes: &mut std::vec::IntoIter<Write>,
    pending: &mut Vec<Pending>,
) -> Result<(), rusqlite::Error> {
    let ts = unix_now();
    let tx = conn.transaction()?;
    let mut touched: HashMap<String, Option<u64>> = HashMap::new();
    for w in writes.by_ref() {
        let Write {
            room,
            op,
            body,
            done,
            ..
        } = w;
        match counters.write_one(&tx, room, op, body, ts, &mut touched) {
            Ok(result) => pending.push(Pending { done, result }),
            Err(e) => {
                pending.push(Pending {
                    done,
                    result: Err(StoreError::Closed),
                });
                return Err(e);
            }
        }
    }
    for (room, next) in touched {
        match next {
            Some(next) => tx
                .prepare_cached(
                    "INSERT INTO rooms (room, epoch, next_seq) VALUES (?1, ?2, ?3)
                         ON CONFLICT (room) DO UPDATE SET next_seq = excluded.next_seq",
                )?
                .execute(params![room, counters.db_epoch, next as i64])?,
            None => tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO rooms (room, epoch, next_seq) VALUES (?1, ?2, 0)",
                )?
                .execute(params![room, counters.db_epoch])?,
        };
    }
    tx.commit()
}

impl Counters {
    /// Writes one message inside the batch's transaction. The outer error
    /// fails the whole batch; the inner one fails only this message.
    fn write_one(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        room: String,
        op: WriteOp,
        body: StampedMsg,
        ts: i64,
        touched: &mut HashMap<String, Option<u64>>,
    ) -> Result<Result<Stored, StoreError>, rusqlite::Error> {
        match op {
            WriteOp::Ignore => Ok(encode(body.into_string()).map(|b| Stored {
                seq: None,
                durable: false,
                published: false,
                body: b,
            })),
            WriteOp::Insert => {
                let seq = match self.next_seq.get(&room) {
                    Some(s) => *s,
                    None => tx
                        .query_row(
                            "SELECT next_seq FROM rooms WHERE room = ?1",
                            params![room],
                            |r| r.get::<_, i64>(0),
                        )
                        .optional()?
                        .map(|s| s as u64)
                        .unwrap_or(0),
                };
                let raw = match encode(body.with_seq(seq)) {
                    Ok(raw) => raw,
                    Err(e) => return Ok(Err(e)),
                };
                tx.prepare_cached(
                    "INSERT INTO inserts (room, seq, ts, body) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![room, seq as i64, ts, raw.get()])?;
                self.next_seq.insert(room.clone(), seq + 1);
                touched.insert(room, Some(seq + 1));
                Ok(Ok(Stored {
                    seq: Some(seq),
                    durable: true,
                    published: false,
                    body: raw,
                }))
            }
            WriteOp::Update { msg_id } => {
                let raw = match encode(body.into_string()) {
                    Ok(raw) => raw,
                    Err(e) => return Ok(Err(e)),
                };
                let ord = match self.next_ord {
                    Some(o) => o,
                    None => {
                        tx.query_row("SELECT COALESCE(MAX(ord), -1) + 1 FROM updates", [], |r| {
                            r.get(0)
                        })?
                    }
                };
                self.next_ord = Some(ord + 1);
                tx.prepare_cached(
                    "INSERT INTO updates (room, msg_id, ord, ts, body) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (room, msg_id) DO UPDATE SET ord = excluded.ord, ts = excluded.ts, body = excluded.body",
                )?
                .execute(params![room, msg_id, ord, ts, raw.get()])?;
                touched.entry(room).or_insert(None);
                Ok(Ok(Stored {
                    seq: None,
                    durable: true,
                    published: false,
                    body: raw,
                }))
            }
        }
    }
}

/// A message's JSON text as a raw value, checked to be JSON.
fn encode(text: String) -> Result<Arc<RawValue>, StoreError> {
    RawValue::from_string(text).map(Arc::from).map_err(backend)
}
