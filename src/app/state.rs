//! What the whole server shares: the configuration, the socket.io server,
//! the stores, the shared state, the bus, the metrics and the limits. Built
//! once by [`AppState::new`] from the opened [`Backends`]; the HTTP routes
//! and the sessions reach their parts through its methods.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::backends::Backends;
use crate::accounts::AccountStore;
use crate::cluster::persistence::Persistence;
use crate::cluster::ClusterState;
use crate::config::Config;
use crate::grants::Verifier;
use crate::metrics::Metrics;
use crate::realtime::bus::Bus;
pub use crate::realtime::limits::Limits;
use crate::realtime::{self, Sessions};
use crate::store::MessageStore;

/// Everything the routes and the sessions share.
pub struct AppState {
    config: Arc<Config>,
    /// The socket.io server (this node's connections and their rooms).
    io: ao_socketio::Server,
    messages: Arc<dyn MessageStore>,
    accounts: Arc<dyn AccountStore>,
    cluster: Arc<dyn ClusterState>,
    bus: Arc<Bus>,
    metrics: Arc<Metrics>,
    limits: Limits,
    /// Sync pages read ahead on this node.
    read_ahead: Arc<Semaphore>,
    jwt: Option<Verifier>,
    redis_persistence: Option<Persistence>,
    http: ao_socketio::serve::HttpServer,
}

impl AppState {
    /// The state over `backends`; its socket.io server sets up a session
    /// for each new connection on this state.
    pub(crate) fn new(
        config: Arc<Config>,
        backends: &Backends,
        jwt: Option<Verifier>,
        http: ao_socketio::serve::HttpServer,
    ) -> Arc<AppState> {
        Arc::new_cyclic(|state| {
            let io = ao_socketio::Server::new(
                super::socket_io_config(&config),
                Sessions::new(state.clone()),
            );
            let metrics = Arc::new(Metrics::new());
            AppState {
                bus: backends.bus(io.clone(), metrics.clone()),
                io,
                messages: backends.messages.clone(),
                accounts: backends.accounts.clone(),
                cluster: backends.cluster_state(),
                metrics,
                limits: backends.limits(&config),
                read_ahead: realtime::read_ahead_limit(),
                jwt,
                redis_persistence: backends.redis_persistence(),
                http,
                config,
            }
        })
    }

    /// The configuration the server started with.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The socket.io server: this node's connections and their rooms.
    pub(crate) fn io(&self) -> &ao_socketio::Server {
        &self.io
    }

    /// The rooms' history.
    pub fn messages(&self) -> &Arc<dyn MessageStore> {
        &self.messages
    }

    /// Users and admins.
    pub fn accounts(&self) -> &Arc<dyn AccountStore> {
        &self.accounts
    }

    /// What the nodes share: presence, connections, rate windows.
    pub fn cluster(&self) -> &Arc<dyn ClusterState> {
        &self.cluster
    }

    /// Delivers room events to members on every node.
    pub(crate) fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    /// The Prometheus metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Rate limits and the store queue's byte budget.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The bound on sync pages read ahead at once on this node.
    pub(crate) fn read_ahead(&self) -> &Arc<Semaphore> {
        &self.read_ahead
    }

    /// Verifies JSON Web Tokens when a JWT key is configured (room grants).
    pub(crate) fn jwt(&self) -> Option<&Verifier> {
        self.jwt.as_ref()
    }

    /// In a cluster: whether Redis keeps what it acknowledged across a
    /// restart, as checked at start-up (reported by `/readyz`).
    pub(crate) fn redis_persistence(&self) -> Option<&Persistence> {
        self.redis_persistence.as_ref()
    }

    /// The HTTP server of every listener (its counters, for `/metrics`).
    pub(crate) fn http(&self) -> &ao_socketio::serve::HttpServer {
        &self.http
    }
}
