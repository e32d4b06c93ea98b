//! Which backends run, decided once from the configuration: without a
//! Redis URL the embedded store and this process's shared state (one
//! node); with one the Redis store, Redis pub/sub and Redis shared state
//! (many nodes). Accounts live in MongoDB when its URL is set, else beside
//! the messages.

use std::sync::Arc;

use ao_socketio::Server;

use super::StartError;
use crate::accounts::AccountStore;
use crate::cluster::local::LocalState;
use crate::cluster::persistence::Persistence;
use crate::cluster::pubsub::PubSub;
use crate::cluster::redis::RedisState;
use crate::cluster::ClusterState;
use crate::config::Config;
use crate::data_dir::{DataDirError, DataDirLock};
use crate::metrics::Metrics;
use crate::realtime::bus::{self, Bus};
use crate::realtime::limits::Limits;
use crate::redis::Redis;
use crate::store::redis::RedisMessageStore;
use crate::store::sqlite::SqliteMessageStore;
use crate::store::MessageStore;

/// The stores and the shared state the configuration names, open.
pub(crate) struct Backends {
    pub(crate) messages: Arc<dyn MessageStore>,
    pub(crate) accounts: Arc<dyn AccountStore>,
    pub(crate) shared: Shared,
}

/// What the nodes share, and where.
pub(crate) enum Shared {
    /// One node: the state in this process, and the embedded store's data
    /// directory, locked while the server runs.
    Local {
        /// Held until the server stops.
        lock: DataDirLock,
    },
    /// Nodes on one Redis.
    Redis(Cluster),
}

/// This node's part of a cluster on Redis.
pub(crate) struct Cluster {
    redis: Redis,
    node: String,
    state: Arc<RedisState>,
    /// Whether Redis keeps what it acknowledged across a restart.
    persistence: Persistence,
}

impl Backends {
    /// Connects to (or opens) every backend the configuration names.
    pub(crate) async fn open(config: &Config) -> Result<Backends, StartError> {
        let data_dir = || config.data_dir.display().to_string();
        if config.redis_url.is_none() {
            // Before the store replays its commit log: one server per directory.
            let lock = lock_data_dir(config)?;
            let messages = SqliteMessageStore::open(&config.data_dir, config.commit_window)
                .map_err(|source| StartError::Store {
                    path: data_dir(),
                    source,
                })?;
            let accounts =
                crate::accounts::open(config, None)
                    .await
                    .map_err(|source| match config.mongodb_url {
                        Some(_) => StartError::Mongo(source),
                        None => StartError::Accounts {
                            path: data_dir(),
                            source,
                        },
                    })?;
            return Ok(Backends {
                messages: Arc::new(messages),
                accounts,
                shared: Shared::Local { lock },
            });
        }
        let redis = Redis::connect(config).await.map_err(StartError::Redis)?;
        let persistence = Persistence::check(&redis).await;
        persistence.log();
        let accounts =
            crate::accounts::open(config, Some(&redis))
                .await
                .map_err(|e| match config.mongodb_url {
                    Some(_) => StartError::Mongo(e),
                    None => StartError::RedisAccounts(e),
                })?;
        PubSub::listen(&redis).await.map_err(StartError::Redis)?;
        let node = hex::encode(rand::random::<[u8; 6]>());
        let state = RedisState::new(redis.clone(), node.clone(), config.node_ttl);
        tracing::info!(%node, prefix = %config.redis_prefix, cluster = config.redis_cluster, "joined the cluster through redis");
        Ok(Backends {
            messages: Arc::new(RedisMessageStore::new(redis.clone())),
            accounts,
            shared: Shared::Redis(Cluster {
                redis,
                node,
                state,
                persistence,
            }),
        })
    }

    /// The state the nodes share: this process's, or Redis's.
    pub(crate) fn cluster_state(&self) -> Arc<dyn ClusterState> {
        match &self.shared {
            Shared::Local { .. } => Arc::new(LocalState::new()),
            Shared::Redis(c) => c.state.clone(),
        }
    }

    /// Where room events go: this node's members, and in a cluster every
    /// node's (its tasks deliver what the other nodes publish).
    pub(crate) fn bus(&self, io: Server, metrics: Arc<Metrics>) -> Arc<Bus> {
        match &self.shared {
            Shared::Local { .. } => Bus::local(io, metrics),
            Shared::Redis(c) => Bus::redis(
                io,
                metrics,
                c.redis.clone(),
                self.messages.clone(),
                c.node.clone(),
            ),
        }
    }

    /// The node's limits (the room rate counted in Redis in a cluster).
    pub(crate) fn limits(&self, config: &Config) -> Limits {
        Limits::new(config, self.redis())
    }

    /// In a cluster: what the start-up check found of Redis's persistence.
    pub(crate) fn redis_persistence(&self) -> Option<Persistence> {
        match &self.shared {
            Shared::Local { .. } => None,
            Shared::Redis(c) => Some(c.persistence.clone()),
        }
    }

    fn redis(&self) -> Option<&Redis> {
        match &self.shared {
            Shared::Local { .. } => None,
            Shared::Redis(c) => Some(&c.redis),
        }
    }

    /// In a cluster: registers this node and starts its heartbeat, which
    /// reports `io`'s connections and kicks out the ones a newer login
    /// elsewhere replaced.
    pub(crate) async fn start(&self, io: &Server) -> Result<(), StartError> {
        let Shared::Redis(c) = &self.shared else {
            return Ok(());
        };
        let (counted, kicked) = (io.clone(), io.clone());
        c.state
            .start(
                move || counted.sockets().len(),
                move |sid| {
                    bus::kick_local(&kicked, sid);
                },
            )
            .await
            .map_err(|e| match e {
                crate::cluster::ClusterError::Redis(e) => StartError::Redis(e),
            })
    }

    /// The data directory's lock, held by the running server (one node).
    pub(crate) fn into_lock(self) -> Option<DataDirLock> {
        match self.shared {
            Shared::Local { lock } => Some(lock),
            Shared::Redis(_) => None,
        }
    }
}

/// Checks the data directory is writable and takes its lock.
fn lock_data_dir(config: &Config) -> Result<DataDirLock, StartError> {
    let err = |source: DataDirError| StartError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    };
    crate::data_dir::check_writable(&config.data_dir).map_err(err)?;
    DataDirLock::acquire(&config.data_dir).map_err(err)
}
