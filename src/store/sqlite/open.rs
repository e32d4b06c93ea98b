//! Opening the store: the database's id, the replay of what the commit
//! log holds, and the start of the writer and applier threads.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use super::applier::{apply, Applier, Unavailable};
use super::writer::{Counters, Writer};
use super::{Alive, SqliteMessageStore};
use crate::sqlite::open;
use crate::store::journal::{self, Journal};
use crate::store::log_fs::{LogFs, OsFs};
use crate::store::unapplied::Unapplied;
use crate::store::{RateLimited, StoreError};

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

        let (tx, rx) = std::sync::mpsc::channel();
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
}

/// Bytes the readiness probe writes while commits fail: about a group.
const PROBE_BYTES: usize = 64 * 1024;

/// Writes, syncs and removes a file in `dir`: whether the disk takes
/// writes again after commits failed.
pub(super) fn probe_write(dir: &Path) -> Result<(), StoreError> {
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

pub(super) fn new_epoch() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_keeps_its_id() {
        let dir = tempfile::tempdir().expect("dir");
        let id = database_id(&open(dir.path()).expect("db")).expect("id");
        assert_eq!(id.len(), 16);
        let again = database_id(&open(dir.path()).expect("db")).expect("id");
        assert_eq!(again, id);
    }

    #[test]
    fn the_write_probe_leaves_no_file() {
        let dir = tempfile::tempdir().expect("dir");
        probe_write(dir.path()).expect("probe");
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
        assert!(probe_write(&dir.path().join("missing")).is_err());
    }
}
