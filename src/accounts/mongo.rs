//! Accounts in MongoDB (collections `users` and `admins`, unique index on
//! `uid`, token hashes only), for deployments that share accounts between
//! nodes. The driver reconnects by itself when the server comes back.
//!
//! The original service's documents (`{uid, token, createTime, updateTime}`,
//! written by mongoose, the token in clear text) work as they are: a clear
//! token is checked like a hash, and replaced by its hash at its first
//! successful check, by one update conditional on the clear token still
//! being there (so a refresh that happened meanwhile, on any node, is
//! kept). `always-online accounts migrate` hashes all that remain at once.
//! Refresh and create write only hashes and remove a clear token.

use std::time::Duration;

use mongodb::bson::{doc, DateTime, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};

use super::{token, AccountError, AccountStore, Kind};
use crate::logging::Chain;

/// MongoDB's duplicate key error code.
const DUPLICATE_KEY: i32 = 11000;
/// How long an operation waits for a reachable server before failing.
const SERVER_TIMEOUT: Duration = Duration::from_secs(3);

/// MongoDB-backed [`AccountStore`].
#[derive(Clone)]
pub(crate) struct MongoAccountStore {
    db: Database,
}

fn unavailable(e: mongodb::error::Error) -> AccountError {
    AccountError::Mongo(e)
}

impl MongoAccountStore {
    /// Connects, checks the server answers and makes sure the unique
    /// indexes exist. Fails when the server cannot be reached.
    pub(crate) async fn connect(url: &str, database: &str) -> Result<Self, AccountError> {
        let mut options = ClientOptions::parse(url).await.map_err(unavailable)?;
        options.app_name = Some("always-online".into());
        options.server_selection_timeout = Some(SERVER_TIMEOUT);
        options.connect_timeout = Some(SERVER_TIMEOUT);
        let client = Client::with_options(options).map_err(unavailable)?;
        let store = Self {
            db: client.database(database),
        };
        store.ping().await?;
        for kind in [Kind::User, Kind::Admin] {
            let index = IndexModel::builder()
                .keys(doc! {"uid": 1})
                .options(IndexOptions::builder().unique(true).build())
                .build();
            store
                .collection(kind)
                .create_index(index)
                .await
                .map_err(unavailable)?;
        }
        Ok(store)
    }

    fn collection(&self, kind: Kind) -> Collection<Document> {
        self.db.collection(kind.table())
    }
}

/// The field in which the original service kept a token in clear text.
const CLEAR_TOKEN: &str = "token";

impl MongoAccountStore {
    /// Replaces the clear-text token of document `found` with its hash,
    /// unless it changed meanwhile; `true` if this call replaced it.
    async fn hash_clear_token(
        &self,
        kind: Kind,
        found: &Document,
        clear: &str,
    ) -> Result<bool, AccountError> {
        let Some(id) = found.get("_id") else {
            return Ok(false);
        };
        let res = self
            .collection(kind)
            .update_one(
                doc! {"_id": id.clone(), CLEAR_TOKEN: clear},
                doc! {
                    "$set": {"token_hash": token::hash(clear), "updated": DateTime::now()},
                    "$unset": {CLEAR_TOKEN: ""},
                },
            )
            .await
            .map_err(unavailable)?;
        Ok(res.modified_count == 1)
    }
}

fn is_duplicate(e: &mongodb::error::Error) -> bool {
    matches!(e.kind.as_ref(), ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == DUPLICATE_KEY)
}

#[async_trait::async_trait]
impl AccountStore for MongoAccountStore {
    async fn create(&self, kind: Kind, uid: &str) -> Result<String, AccountError> {
        let token = token::generate();
        let now = DateTime::now();
        let doc =
            doc! {"uid": uid, "token_hash": token::hash(&token), "created": now, "updated": now};
        match self.collection(kind).insert_one(doc).await {
            Ok(_) => Ok(token),
            Err(e) if is_duplicate(&e) => Err(AccountError::Exists),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn refresh(&self, kind: Kind, uid: &str) -> Result<String, AccountError> {
        let token = token::generate();
        let update = doc! {
            "$set": {"token_hash": token::hash(&token), "updated": DateTime::now()},
            "$unset": {CLEAR_TOKEN: ""},
        };
        let res = self
            .collection(kind)
            .update_one(doc! {"uid": uid}, update)
            .await
            .map_err(unavailable)?;
        if res.matched_count == 0 {
            return Err(AccountError::NotFound);
        }
        Ok(token)
    }

    async fn ensure(&self, kind: Kind, uid: &str, token: &str) -> Result<(), AccountError> {
        let now = DateTime::now();
        let update = doc! {
            "$set": {"token_hash": token::hash(token), "updated": now},
            "$setOnInsert": {"created": now},
            "$unset": {CLEAR_TOKEN: ""},
        };
        self.collection(kind)
            .update_one(doc! {"uid": uid}, update)
            .upsert(true)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn verify(&self, kind: Kind, uid: &str, token: &str) -> Result<bool, AccountError> {
        let found = self
            .collection(kind)
            .find_one(doc! {"uid": uid})
            .await
            .map_err(unavailable)?;
        let Some(found) = found else {
            return Ok(false);
        };
        // A clear token is the newest: this server removes it whenever it
        // writes a hash, so one beside a hash was written by the original
        // service (after a rollback) and replaces that hash.
        let Ok(clear) = found.get_str(CLEAR_TOKEN) else {
            let stored = found.get_str("token_hash").unwrap_or_default();
            return Ok(!stored.is_empty() && token::matches(token, stored));
        };
        if clear.is_empty() || !token::matches(token, &token::hash(clear)) {
            return Ok(false);
        }
        if let Err(e) = self.hash_clear_token(kind, &found, clear).await {
            // The token was right: the hash is written next time.
            tracing::warn!(error = %Chain(&e), "could not replace a clear-text token with its hash");
        }
        Ok(true)
    }

    async fn hash_clear_tokens(&self) -> Result<(u64, u64), AccountError> {
        let mut counts = [0u64; 2];
        for (kind, count) in [Kind::User, Kind::Admin].into_iter().zip(&mut counts) {
            let mut cursor = self
                .collection(kind)
                .find(doc! {CLEAR_TOKEN: {"$exists": true}})
                .await
                .map_err(unavailable)?;
            while cursor.advance().await.map_err(unavailable)? {
                let found = cursor.deserialize_current().map_err(unavailable)?;
                let Ok(clear) = found.get_str(CLEAR_TOKEN) else {
                    continue;
                };
                if self.hash_clear_token(kind, &found, clear).await? {
                    *count += 1;
                }
            }
        }
        Ok((counts[0], counts[1]))
    }

    async fn ping(&self) -> Result<(), AccountError> {
        self.db
            .run_command(doc! {"ping": 1})
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}
