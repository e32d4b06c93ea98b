//! The read side: sync and admin read the unapplied writes first and
//! SQLite second, on a small pool of connections of their own.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::value::RawValue;

use super::SqliteMessageStore;
use crate::sqlite::open;
use crate::store::unapplied::{self, UpdateEntry};
use crate::store::{Entry, Page, StoreError, UpdatePage};
use crate::sync::lock as locked;

/// Read connections kept open for sync.
const READERS: usize = 4;

impl SqliteMessageStore {
    /// Runs `f` on a read connection in the blocking pool.
    pub(super) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
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

    /// A page of `room`'s inserts from `offset` (see [`MessageStore::page`]).
    pub(super) async fn read_page(
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
                    if !items.is_empty() && bytes + crate::store::entry_bytes(&e) > max_bytes {
                        full = true;
                        break;
                    }
                    bytes += crate::store::entry_bytes(&e);
                    items.push(e);
                }
            }
            if let (Some(tail), false) = (tail, full) {
                let room_left = limit.saturating_sub(items.len());
                for e in tail.items.into_iter().take(room_left) {
                    if !items.is_empty() && bytes + crate::store::entry_bytes(&e) > max_bytes {
                        break;
                    }
                    bytes += crate::store::entry_bytes(&e);
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

    /// `room`'s updates after `after` (see [`MessageStore::updates`]).
    pub(super) async fn read_updates(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_whose_body_is_not_json_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        let conn = open(dir.path()).expect("db");
        let read = |sql: &str| conn.query_row(sql, [], |r| entry(r, 0));
        let e = read(r#"SELECT '{"a":1}', 7"#).expect("entry");
        assert_eq!((e.body.get(), e.ts), (r#"{"a":1}"#, 7));
        assert!(read("SELECT '{not json', 7").is_err());
    }
}
