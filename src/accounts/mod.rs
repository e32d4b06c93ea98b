//! Accounts: users (who connect over socket.io) and admins (who call the
//! HTTP APIs). Tokens are stored hashed and compared in constant time.

pub(crate) mod mongo;
pub(crate) mod redis;
pub(crate) mod sqlite;

use std::sync::Arc;

use crate::config::Config;
pub(crate) mod token;

/// Which kind of account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A client that authenticates on a socket.
    User,
    /// A caller of the admin API.
    Admin,
}

impl Kind {
    /// The table / collection that holds this kind.
    pub fn table(self) -> &'static str {
        match self {
            Kind::User => "users",
            Kind::Admin => "admins",
        }
    }
}

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Creating an account whose uid is taken.
    #[error("account already exists")]
    Exists,
    /// Changing an account that does not exist.
    #[error("account does not exist")]
    NotFound,
    /// The embedded database failed.
    #[error("account store unavailable")]
    Sqlite(#[from] rusqlite::Error),
    /// MongoDB failed.
    #[error("account store unavailable")]
    Mongo(#[from] mongodb::error::Error),
    /// Redis failed.
    #[error("account store unavailable")]
    Redis(#[from] crate::redis::RedisError),
    /// The blocking task of a database call ended early.
    #[error("account store unavailable")]
    Worker(#[from] tokio::task::JoinError),
}

/// Where accounts live.
#[async_trait::async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Creates an account with a fresh token and returns the token.
    async fn create(&self, kind: Kind, uid: &str) -> Result<String, AccountError>;
    /// Replaces the token of an existing account; the old one stops working at once.
    async fn refresh(&self, kind: Kind, uid: &str) -> Result<String, AccountError>;
    /// Sets the account's token to `token`, creating the account if needed.
    async fn ensure(&self, kind: Kind, uid: &str, token: &str) -> Result<(), AccountError>;
    /// Whether `token` is the account's current token.
    async fn verify(&self, kind: Kind, uid: &str, token: &str) -> Result<bool, AccountError>;
    /// Whether the store answers.
    async fn ping(&self) -> Result<(), AccountError>;
    /// Replaces every clear-text token the original service stored with
    /// its hash; returns how many (users, admins) were. Only a store the
    /// original wrote (MongoDB) has any.
    async fn hash_clear_tokens(&self) -> Result<(u64, u64), AccountError> {
        Ok((0, 0))
    }
}

/// Opens the account store the configuration names: MongoDB when
/// `mongodb_url` is set, else Redis when the node is clustered (`redis`),
/// else the embedded database under `data_dir`.
pub async fn open(
    config: &Config,
    redis: Option<&crate::redis::Redis>,
) -> Result<Arc<dyn AccountStore>, AccountError> {
    match (&config.mongodb_url, redis) {
        (Some(url), _) => Ok(Arc::new(
            mongo::MongoAccountStore::connect(url, &config.mongodb_db).await?,
        )),
        (None, Some(redis)) => Ok(Arc::new(redis::RedisAccountStore::new(redis.clone()))),
        (None, None) => Ok(Arc::new(sqlite::SqliteAccountStore::open(
            &config.data_dir,
        )?)),
    }
}
