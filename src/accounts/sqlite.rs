//! Accounts in the embedded SQLite database.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use super::{token, AccountError, AccountStore, Kind};
use crate::sqlite::{open, unix_now};

/// SQLite-backed [`AccountStore`]; safe to use from the CLI while a server runs.
#[derive(Clone)]
pub(crate) struct SqliteAccountStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteAccountStore {
    /// Opens the account tables in the database under `data_dir`.
    pub(crate) fn open(data_dir: &Path) -> Result<Self, AccountError> {
        let conn = open(data_dir).map_err(unavailable)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T, F>(&self, f: F) -> Result<T, AccountError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, AccountError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = crate::sync::lock(&conn);
            f(&mut guard)
        })
        .await?
    }
}

fn unavailable(e: rusqlite::Error) -> AccountError {
    AccountError::Sqlite(e)
}

#[async_trait::async_trait]
impl AccountStore for SqliteAccountStore {
    async fn create(&self, kind: Kind, uid: &str) -> Result<String, AccountError> {
        let uid = uid.to_owned();
        self.with(move |conn| {
            let token = token::generate();
            let now = unix_now();
            let sql = format!(
                "INSERT INTO {} (uid, token_hash, created, updated) VALUES (?1, ?2, ?3, ?3) ON CONFLICT (uid) DO NOTHING",
                kind.table()
            );
            let n = conn
                .execute(&sql, params![uid, token::hash(&token), now])
                .map_err(unavailable)?;
            if n == 0 {
                return Err(AccountError::Exists);
            }
            Ok(token)
        })
        .await
    }

    async fn refresh(&self, kind: Kind, uid: &str) -> Result<String, AccountError> {
        let uid = uid.to_owned();
        self.with(move |conn| {
            let token = token::generate();
            let sql = format!(
                "UPDATE {} SET token_hash = ?2, updated = ?3 WHERE uid = ?1",
                kind.table()
            );
            let n = conn
                .execute(&sql, params![uid, token::hash(&token), unix_now()])
                .map_err(unavailable)?;
            if n == 0 {
                return Err(AccountError::NotFound);
            }
            Ok(token)
        })
        .await
    }

    async fn ensure(&self, kind: Kind, uid: &str, token: &str) -> Result<(), AccountError> {
        let uid = uid.to_owned();
        let hash = token::hash(token);
        self.with(move |conn| {
            let sql = format!(
                "INSERT INTO {} (uid, token_hash, created, updated) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (uid) DO UPDATE SET token_hash = excluded.token_hash, updated = excluded.updated",
                kind.table()
            );
            conn.execute(&sql, params![uid, hash, unix_now()])
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn ping(&self) -> Result<(), AccountError> {
        self.with(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(unavailable)
        })
        .await
    }

    async fn verify(&self, kind: Kind, uid: &str, token: &str) -> Result<bool, AccountError> {
        let uid = uid.to_owned();
        let token = token.to_owned();
        self.with(move |conn| {
            let sql = format!("SELECT token_hash FROM {} WHERE uid = ?1", kind.table());
            let stored: Option<String> = conn
                .query_row(&sql, params![uid], |r| r.get(0))
                .optional()
                .map_err(unavailable)?;
            // Hash even for unknown uids so both paths cost the same.
            let stored = stored.unwrap_or_default();
            Ok(token::matches(&token, &stored) && !stored.is_empty())
        })
        .await
    }
}
