//! Builds the whole server from a [`Config`] and runs it until shutdown.
//! Tests build the very same [`App`] on port 0.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use socketioxide::SocketIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::accounts::Kind;
use crate::cluster::local::LocalState;
use crate::cluster::redis::RedisState;
use crate::cluster::ClusterState;
use crate::config::Config;
use crate::realtime::bus::Bus;
use crate::realtime::{self, AppState};
use crate::redis::Redis;
use crate::store::redis::RedisMessageStore;
use crate::store::sqlite::SqliteMessageStore;
use crate::store::MessageStore;
use crate::valve::{Peer, ValvedListener};

/// Why the server could not start; each names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("config error: data_dir: {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("config error: {key}: cannot listen on {addr}: {reason}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        reason: String,
    },
    #[error("config error: AO_MONGODB_URL: cannot use MongoDB: {0}")]
    Mongo(#[source] crate::accounts::AccountError),
    #[error("config error: AO_REDIS_URL: cannot use Redis: {0}")]
    Redis(#[source] crate::redis::RedisError),
    #[error("config error: AO_REDIS_URL: cannot use Redis: {0}")]
    RedisAccounts(#[source] crate::accounts::AccountError),
    #[error("config error: AO_ADMIN_UID: cannot create the admin account: {0}")]
    Admin(String),
}

/// A running server.
pub struct App {
    state: Arc<AppState>,
    addr: SocketAddr,
    api_addr: SocketAddr,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
}

/// The most packets that may wait for one client before the next are
/// dropped (and counted as `send_buffer_full`).
const OUTBOUND_PACKETS: usize = 32_768;

/// How long listeners may take to finish in-flight requests at shutdown.
const LISTENER_DRAIN: std::time::Duration = std::time::Duration::from_millis(500);

impl App {
    /// Opens the stores, binds both listeners and starts serving.
    pub async fn start(config: Config) -> Result<App, StartError> {
        let config = Arc::new(config);
        let redis = match &config.redis_url {
            Some(_) => Some(Redis::connect(&config).await.map_err(StartError::Redis)?),
            None => None,
        };
        let data_dir_err = |e: &dyn std::fmt::Display| StartError::DataDir {
            path: config.data_dir.display().to_string(),
            reason: e.to_string(),
        };
        let messages: Arc<dyn MessageStore> = match &redis {
            Some(redis) => Arc::new(RedisMessageStore::new(redis.clone())),
            None => {
                check_data_dir(&config)?;
                Arc::new(
                    SqliteMessageStore::open(&config.data_dir, config.commit_window)
                        .map_err(|e| data_dir_err(&e))?,
                )
            }
        };
        let accounts = crate::accounts::open(&config, redis.as_ref())
            .await
            .map_err(|e| {
                if config.mongodb_url.is_some() {
                    StartError::Mongo(e)
                } else if redis.is_some() {
                    StartError::RedisAccounts(e)
                } else {
                    data_dir_err(&e)
                }
            })?;
        if let Some((uid, token)) = &config.admin {
            accounts
                .ensure(Kind::Admin, uid, token)
                .await
                .map_err(|e| StartError::Admin(e.to_string()))?;
        }
        if config.dev {
            tracing::warn!("DEVELOPMENT MODE: any token is accepted for any uid. Never run this in production.");
        }

        let event_limit = realtime::max_event_bytes(&config);
        let (layer, io) = SocketIo::builder()
            .max_payload(realtime::max_polling_body(&config) as u64)
            .ws_max_message_size(event_limit)
            .ws_max_frame_size(event_limit)
            // Packets waiting for one client. A sender's burst is relayed as
            // fast as the store takes it, so a member reading at normal speed
            // may fall a burst behind: room for the largest burst a sender's
            // inbound budget holds. The queue grows only while used (tokio's
            // channel allocates its blocks on demand).
            .max_buffer_size(OUTBOUND_PACKETS)
            // Read chunk of every websocket (4 KiB by default), held for the
            // connection's life: client frames are small (a msg is typically
            // well under 1 KiB), so 1 KiB keeps idle connections lighter.
            .ws_read_buffer_size(1024)
            .build_layer();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let mut redis_state = None;
        let (cluster, bus): (Arc<dyn ClusterState>, Arc<Bus>) = match &redis {
            Some(redis) => {
                let node = hex::encode(rand::random::<[u8; 6]>());
                let shared = RedisState::new(redis.clone(), node.clone(), config.node_ttl);
                redis_state = Some(shared.clone());
                let bus = Bus::redis(
                    io.clone(),
                    metrics.clone(),
                    redis.clone(),
                    messages.clone(),
                    node.clone(),
                )
                .await
                .map_err(StartError::Redis)?;
                tracing::info!(%node, prefix = %config.redis_prefix, cluster = config.redis_cluster, "joined the cluster through redis");
                (shared, bus)
            }
            None => (
                Arc::new(LocalState::new()),
                Bus::local(io.clone(), metrics.clone()),
            ),
        };
        let state = Arc::new(AppState {
            config: config.clone(),
            io,
            messages,
            accounts,
            cluster,
            bus,
            metrics,
            read_ahead: realtime::read_ahead_limit(),
        });
        realtime::register(state.clone());
        if let Some(shared) = redis_state {
            let (counted, kicked) = (state.io.clone(), state.io.clone());
            shared
                .start(
                    move || realtime::local_sockets(&counted).len(),
                    move |sid| {
                        realtime::bus::kick_local(&kicked, sid);
                    },
                )
                .await
                .map_err(|e| match e {
                    crate::cluster::ClusterError::Redis(e) => StartError::Redis(e),
                })?;
        }

        let main_router = crate::http::main_router(state.clone())
            .layer(layer)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::http::inbound::tie_to_session,
            ))
            .layer(axum::middleware::map_request(
                crate::http::compat::default_engineio_version,
            ))
            .layer(axum::middleware::map_request(
                crate::http::compat::detach_session_request,
            ))
            .layer(axum::middleware::from_fn(crate::http::cors::socket_io_cors));
        let api_router = crate::http::api_router(state.clone());

        let main = bind("listen", config.listen).await?;
        let api = bind("api_listen", config.api_listen).await?;
        let addr = main
            .local_addr()
            .map_err(|e| bind_err("listen", config.listen, e))?;
        let api_addr = api
            .local_addr()
            .map_err(|e| bind_err("api_listen", config.api_listen, e))?;
        let (stop, stopped) = watch::channel(false);
        let servers = vec![
            serve(main, main_router, stopped.clone()),
            serve(api, api_router, stopped),
        ];
        tracing::info!(%addr, %api_addr, data_dir = %config.data_dir.display(), "always-online listening");
        Ok(App {
            state,
            addr,
            api_addr,
            stop,
            servers,
        })
    }

    /// The main listener's address (socket.io, admin API, health).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The accounts API listener's address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The shared state of the running server.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Stops accepting, closes every client connection (clients reconnect,
    /// to another node behind a load balancer), makes every accepted message
    /// durable and waits for the listeners to close, within the configured
    /// grace period.
    pub async fn shutdown(self) {
        let grace = self.state.config.shutdown_grace;
        let _ = self.stop.send(true);
        let drain = async {
            self.state.io.close().await;
            // Members whose sessions have not announced their leave yet are
            // announced and removed now, so other nodes need not wait for
            // this node's heartbeat to expire.
            self.state.cluster.leave_cluster().await;
            if let Err(e) = self.state.messages.flush().await {
                tracing::error!(error = %e, "store flush failed during shutdown");
            }
            // Clients and messages are done with. What may remain is a long-poll
            // of an engine.io session whose socket.io connection already ended
            // (socketioxide cannot close those); it gets a short while, not the
            // whole grace period.
            let listeners = futures_util::future::join_all(self.servers);
            let _ = tokio::time::timeout(LISTENER_DRAIN, listeners).await;
        };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!("shutdown grace period elapsed");
        }
    }
}

fn check_data_dir(config: &Config) -> Result<(), StartError> {
    let err = |reason: String| StartError::DataDir {
        path: config.data_dir.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(&config.data_dir).map_err(|e| err(e.to_string()))?;
    let probe = config.data_dir.join(".write-check");
    std::fs::write(&probe, b"ok").map_err(|e| err(format!("not writable: {e}")))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

fn bind_err(key: &'static str, addr: SocketAddr, e: std::io::Error) -> StartError {
    StartError::Bind {
        key,
        addr,
        reason: e.to_string(),
    }
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| bind_err(key, addr, e))
}

fn serve(
    listener: TcpListener,
    router: Router,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let listener = ValvedListener(listener);
        // `into_make_service` turns the routes into services once; serving
        // the `Router` itself rebuilds its whole route table for every
        // accepted connection (`Router::with_state` per connection), which
        // was about a sixth of the CPU of a connection set-up.
        if let Err(e) = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<Peer>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        {
            tracing::error!(error = %e, "listener failed");
        }
    })
}
