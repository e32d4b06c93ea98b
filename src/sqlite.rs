//! The embedded database file shared by the message store and the account
//! store: opening it, its pragmas and its schema.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

/// File name of the embedded database inside the data directory.
pub(crate) const DB_FILE: &str = "always-online.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rooms (
    room TEXT PRIMARY KEY,
    epoch TEXT NOT NULL,
    next_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS inserts (
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS updates (
    room TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    ord INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (room, msg_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (
    uid TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS admins (
    uid TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
";

/// Path of the database file under `data_dir`.
pub(crate) fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DB_FILE)
}

/// Creates the data directory if needed and opens a connection with WAL,
/// full fsync on commit and the schema in place.
pub(crate) fn open(data_dir: &Path) -> Result<Connection, rusqlite::Error> {
    if let Err(e) = std::fs::create_dir_all(data_dir) {
        return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e)));
    }
    let conn = Connection::open(db_path(data_dir))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// Current time in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
