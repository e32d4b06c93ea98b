//! Shared state of a cluster, in Redis.
//!
//! Each node also keeps its own connections in a [`LocalState`]: the truth
//! it re-registers after Redis comes back (restarted or unreachable for a
//! while), and what it answers from while Redis cannot be reached.
//!
//! Every node refreshes a heartbeat key that lives `node_ttl`. A node whose
//! heartbeat expired is dead: the first surviving node to claim it removes
//! its members and connections and tells their rooms `remote_disconnect`.

mod liveness;
mod registry;

use crate::cluster::local::LocalState;
use crate::cluster::ClusterError;
use crate::redis::{Redis, RedisError};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

fn cluster_err(e: RedisError) -> ClusterError {
    ClusterError::from(e)
}

fn fred_err(e: fred::error::Error) -> ClusterError {
    ClusterError::from(e)
}

/// Kicks out a connection of this node by its sid.
type KickHere = Box<dyn Fn(&str) + Send + Sync>;

/// Redis-backed [`ClusterState`].
pub(crate) struct RedisState {
    redis: Redis,
    local: LocalState,
    node: String,
    ttl: Duration,
    /// Redis missed a change (or restarted): re-register this node's truth.
    dirty: AtomicBool,
    /// Kicks out a connection on this node (set by [`RedisState::start`]).
    kick_here: std::sync::OnceLock<KickHere>,
}

impl RedisState {
    /// State for node `node` on `redis`; [`RedisState::start`] begins its heartbeat.
    pub(crate) fn new(redis: Redis, node: String, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            redis,
            local: LocalState::new(),
            node,
            ttl,
            dirty: AtomicBool::new(false),
            kick_here: std::sync::OnceLock::new(),
        })
    }

    pub(super) fn key(&self, name: &str) -> String {
        self.redis.keys.state(name)
    }

    pub(super) fn node_key(&self, node: &str, what: &str) -> String {
        self.key(&format!("node:{node}:{what}"))
    }
}

/// A private `redis-server` for this module's unit tests (real Redis, as
/// every storage test), stopped when dropped.
#[cfg(test)]
pub(super) mod test_redis {
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    use crate::config::Config;
    use crate::redis::Redis;

    /// The server and a connection to it.
    pub(crate) struct TestRedis {
        child: Child,
        _dir: tempfile::TempDir,
        pub(crate) redis: Redis,
    }

    impl Drop for TestRedis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Starts `redis-server` on a free port and connects to it.
    pub(crate) async fn start() -> TestRedis {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (tests need Redis)");
        let config = Config {
            redis_url: Some(format!("redis://127.0.0.1:{port}")),
            ..Config::default()
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let redis = Redis::connect(&config).await.expect("connect to redis");
        TestRedis {
            child,
            _dir: dir,
            redis,
        }
    }
}
