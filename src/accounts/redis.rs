//! Accounts in Redis, for a cluster without MongoDB: one hash per account
//! (`token_hash`, `created`, `updated`) under the deployment's prefix, so a
//! token made through any node works on every node at once.

use fred::prelude::HashesInterface;

use super::{token, AccountError, AccountStore, Kind};
use crate::redis::{scripts, Redis, RedisError};

fn unavailable(e: impl Into<RedisError>) -> AccountError {
    AccountError::Redis(e.into())
}

fn now() -> String {
    crate::sqlite::unix_now().to_string()
}

/// Redis-backed [`AccountStore`].
pub(crate) struct RedisAccountStore {
    redis: Redis,
}

impl RedisAccountStore {
    /// Accounts on `redis`.
    pub(crate) fn new(redis: Redis) -> Self {
        Self { redis }
    }

    fn key(&self, kind: Kind, uid: &str) -> String {
        self.redis.keys.state(&format!("{}:{uid}", kind.table()))
    }

    async fn set_token(
        &self,
        script: &str,
        kind: Kind,
        uid: &str,
        token: &str,
    ) -> Result<bool, AccountError> {
        let done: i64 = scripts::run(
            &self.redis.client,
            script,
            vec![self.key(kind, uid)],
            vec![token::hash(token), now()],
        )
        .await
        .map_err(|e: RedisError| unavailable(e))?;
        Ok(done == 1)
    }
}

#[async_trait::async_trait]
impl AccountStore for RedisAccountStore {
    async fn create(&self, kind: Kind, uid: &str) -> Result<String, AccountError> {
        let token = token::generate();
        if self
            .set_token(scripts::ACCOUNT_CREATE, kind, uid, &token)
            .await?
        {
            Ok(token)
        } else {
            Err(AccountError::Exists)
        }
    }

    async fn refresh(&self, kind: Kind, uid: &str) -> Result<String, AccountError> {
        let token = token::generate();
        if self
            .set_token(scripts::ACCOUNT_REFRESH, kind, uid, &token)
            .await?
        {
            Ok(token)
        } else {
            Err(AccountError::NotFound)
        }
    }

    async fn ensure(&self, kind: Kind, uid: &str, token: &str) -> Result<(), AccountError> {
        self.set_token(scripts::ACCOUNT_ENSURE, kind, uid, token)
            .await
            .map(|_| ())
    }

    async fn verify(&self, kind: Kind, uid: &str, token: &str) -> Result<bool, AccountError> {
        let stored: Option<String> = self
            .redis
            .cmd()
            .hget(self.key(kind, uid), "token_hash")
            .await
            .map_err(unavailable)?;
        Ok(stored.is_some_and(|h| token::matches(token, &h)))
    }

    async fn ping(&self) -> Result<(), AccountError> {
        use fred::interfaces::ClientLike;
        let _: String = self.redis.cmd().ping(None).await.map_err(unavailable)?;
        Ok(())
    }
}
