//! Builds the whole server from a [`Config`] and runs it until shutdown.
//! Tests build the very same [`App`] on port 0.

mod backends;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use backends::Backends;
pub use state::{AppState, Limits};

use crate::accounts::Kind;
use crate::config::Config;
use crate::data_dir::{DataDirError, DataDirLock};
use crate::logging::Chain;
use crate::realtime;
use crate::tls::{ServerCert, TlsError};

/// Why the server could not start; each names the setting at fault and
/// keeps the cause as its [`source`](std::error::Error::source) (print it
/// with [`crate::logging::Chain`]).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory is unusable or held by another process.
    #[error("config error: data_dir: {path}")]
    DataDir {
        /// The data directory.
        path: String,
        /// What is wrong with it.
        #[source]
        source: DataDirError,
    },
    /// The embedded message store cannot open its database or commit log.
    #[error("config error: data_dir: {path}: cannot open the message store")]
    Store {
        /// The data directory.
        path: String,
        /// Why the store cannot open.
        #[source]
        source: crate::store::StoreError,
    },
    /// The embedded account store cannot open.
    #[error("config error: data_dir: {path}: cannot open the account store")]
    Accounts {
        /// The data directory.
        path: String,
        /// Why the account store cannot open.
        #[source]
        source: crate::accounts::AccountError,
    },
    /// A listener cannot bind its address.
    #[error("config error: {key}: cannot listen on {addr}")]
    Bind {
        /// The setting naming the address.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why it cannot be bound.
        #[source]
        source: std::io::Error,
    },
    /// MongoDB (the account store) is unreachable or refuses.
    #[error("config error: AO_MONGODB_URL: cannot use MongoDB")]
    Mongo(#[source] crate::accounts::AccountError),
    /// Redis is unreachable or refuses.
    #[error("config error: AO_REDIS_URL: cannot use Redis")]
    Redis(#[source] crate::redis::RedisError),
    /// Redis refuses the account store's requests.
    #[error("config error: AO_REDIS_URL: cannot use Redis")]
    RedisAccounts(#[source] crate::accounts::AccountError),
    /// The configured admin cannot be written to the account store.
    #[error("config error: AO_ADMIN_UID: cannot create the admin account")]
    Admin(#[source] crate::accounts::AccountError),
    /// The JWT key is unusable.
    #[error("config error: {key}", key = .0.setting())]
    Jwt(#[source] crate::grants::jwt::KeyError),
    /// The TLS certificate or key is unusable.
    #[error("config error")]
    Tls(#[source] TlsError),
}

/// A running server.
pub struct App {
    state: Arc<AppState>,
    addr: SocketAddr,
    api_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    /// The listeners' certificate, when they serve TLS.
    cert: Option<Arc<ServerCert>>,
    /// The embedded store's data directory, held while the server runs.
    _data_dir_lock: Option<DataDirLock>,
}

/// How long listeners may take to finish in-flight requests at shutdown.
const LISTENER_DRAIN: std::time::Duration = std::time::Duration::from_millis(500);

/// Opens the files the configuration names (the TLS certificate and key,
/// the JWT public key) as start-up would, without starting anything:
/// `always-online config --check`.
pub fn check_files(config: &Config) -> Result<(), StartError> {
    crate::tls::install_provider();
    crate::grants::Verifier::from_config(config).map_err(StartError::Jwt)?;
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        let cert = ServerCert::load(cert, key).map_err(StartError::Tls)?;
        cert.server_config().map_err(StartError::Tls)?;
    }
    Ok(())
}

impl App {
    /// Opens the stores, binds both listeners and starts serving.
    pub async fn start(config: Config) -> Result<App, StartError> {
        crate::tls::install_provider();
        let config = Arc::new(config);
        let jwt = crate::grants::Verifier::from_config(&config).map_err(StartError::Jwt)?;
        if let Some(v) = &jwt {
            tracing::info!(algorithms = %v.algorithms(), "room grants: JSON Web Tokens accepted");
        }
        let cert = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(ServerCert::load(cert, key).map_err(StartError::Tls)?),
            _ => None,
        };
        let tls = match &cert {
            Some(cert) => Some(cert.server_config().map_err(StartError::Tls)?),
            None => None,
        };
        let backends = Backends::open(&config).await?;
        if let Some((uid, token)) = &config.admin {
            backends
                .accounts
                .ensure(Kind::Admin, uid, token)
                .await
                .map_err(StartError::Admin)?;
        }
        if config.dev {
            tracing::warn!("DEVELOPMENT MODE: any token is accepted for any uid. Never run this in production.");
        }

        let limits = http_limits(&config);
        let http = ao_socketio::serve::HttpServer::new(limits);
        let state = AppState::new(config.clone(), &backends, jwt, http.clone());
        backends.start(state.io()).await?;
        let data_dir_lock = backends.into_lock();

        let admin_apart = config.admin_listen.is_some();
        let main_router = crate::http::main_router(state.clone(), !admin_apart);
        let api_router = crate::http::api_router(state.clone());

        let main = bind("listen", config.listen).await?;
        let api = bind("api_listen", config.api_listen).await?;
        let admin = match config.admin_listen {
            Some(at) => Some((bind("admin_listen", at).await?, at)),
            None => None,
        };
        let addr = main
            .local_addr()
            .map_err(|e| bind_err("listen", config.listen, e))?;
        let api_addr = api
            .local_addr()
            .map_err(|e| bind_err("api_listen", config.api_listen, e))?;
        let admin_addr = match &admin {
            Some((listener, at)) => Some(
                listener
                    .local_addr()
                    .map_err(|e| bind_err("admin_listen", *at, e))?,
            ),
            None => None,
        };
        let (stop, stopped) = watch::channel(false);
        let mut servers = vec![
            serve(&http, main, main_router, tls.clone(), stopped.clone()),
            serve(&http, api, api_router, tls.clone(), stopped.clone()),
        ];
        if let Some((listener, _)) = admin {
            let router = crate::http::admin_router(state.clone());
            servers.push(serve(&http, listener, router, tls, stopped));
        }
        let (tls_on, data_dir) = (cert.is_some(), config.data_dir.display());
        let pending_cap = limits.max_pending_connections;
        match admin_addr {
            Some(admin_addr) => {
                tracing::info!(%addr, %api_addr, %admin_addr, tls = tls_on, %data_dir, max_pending_connections = pending_cap, "always-online listening")
            }
            None => {
                tracing::info!(%addr, %api_addr, tls = tls_on, %data_dir, max_pending_connections = pending_cap, "always-online listening")
            }
        }
        Ok(App {
            state,
            addr,
            api_addr,
            admin_addr,
            stop,
            servers,
            cert,
            _data_dir_lock: data_dir_lock,
        })
    }

    /// Re-reads the TLS certificate and key files (on SIGHUP): new
    /// connections get the new certificate, open ones keep theirs. When
    /// the files cannot be used the error is logged and returned, and the
    /// old certificate stays. Without TLS there is nothing to do.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        let Some(cert) = &self.cert else {
            tracing::info!("no TLS certificate to reload");
            return Ok(());
        };
        match cert.reload() {
            Ok(()) => {
                tracing::info!("TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %Chain(&e), "TLS certificate reload failed; keeping the old certificate");
                Err(e)
            }
        }
    }

    /// The main listener's address (socket.io, health, and the admin API
    /// unless it has a listener of its own).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address, when `AO_ADMIN_LISTEN` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
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
        let grace = self.state.config().shutdown_grace;
        let _ = self.stop.send(true);
        let drain = async {
            self.state.io().close().await;
            // Members whose sessions have not announced their leave yet are
            // announced and removed now, so other nodes need not wait for
            // this node's heartbeat to expire.
            self.state.cluster().leave_cluster().await;
            if let Err(e) = self.state.messages().flush().await {
                tracing::error!(error = %Chain(&e), "store flush failed during shutdown");
            }
            // Clients and messages are done with; requests still in flight
            // get a short while, not the whole grace period.
            let listeners = futures_util::future::join_all(self.servers);
            let _ = tokio::time::timeout(LISTENER_DRAIN, listeners).await;
        };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!("shutdown grace period elapsed");
        }
    }
}

fn bind_err(key: &'static str, addr: SocketAddr, source: std::io::Error) -> StartError {
    StartError::Bind { key, addr, source }
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| bind_err(key, addr, e))
}

/// The socket.io layer's settings.
fn socket_io_config(config: &Config) -> ao_socketio::Config {
    let event_limit = realtime::max_event_bytes(config);
    ao_socketio::Config::builder()
        .ping_interval(config.ping_interval)
        .ping_timeout(config.ping_timeout)
        // A session that never connects to the namespace holds its place
        // no longer than one that never authenticates.
        .connect_timeout(config.auth_timeout)
        .max_message_bytes(event_limit)
        .max_payload_bytes(realtime::max_polling_body(config))
        .queue_max_bytes(config.client_queue_max_bytes)
        .max_connections(config.max_connections)
        .max_connections_per_ip(config.max_connections_per_ip)
        .handshake_rate_per_ip(config.handshakes_per_ip)
        .handshake_burst_per_ip(config.handshake_burst_per_ip)
        .origins(if config.allowed_origins.is_empty() {
            ao_socketio::Origins::Any
        } else {
            ao_socketio::Origins::List(config.allowed_origins.clone())
        })
        // Client frames are small (a msg is typically well under 1 KiB):
        // a small read buffer keeps idle connections light; a larger frame
        // grows it while it is read.
        .ws_read_buffer_bytes(256)
        .build()
}

/// The HTTP limits of every listener.
fn http_limits(config: &Config) -> ao_socketio::serve::HttpLimits {
    ao_socketio::serve::HttpLimits {
        header_timeout: config.header_timeout,
        body_timeout: config.body_timeout,
        max_pending_connections: max_pending_connections(config),
    }
}

/// `AO_MAX_PENDING_CONNECTIONS`, or a quarter of the open-files limit
/// when it is 0: the rest stays for sessions, the stores and the
/// process's own files.
fn max_pending_connections(config: &Config) -> usize {
    if config.max_pending_connections > 0 {
        return config.max_pending_connections;
    }
    crate::process_metrics::max_fds()
        .and_then(|fds| usize::try_from(fds / 4).ok())
        .unwrap_or(1024)
        .clamp(64, 1 << 20)
}

/// Serves `router` on `listener` with `http`, over TLS when `tls` is given.
fn serve(
    http: &ao_socketio::serve::HttpServer,
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let http = http.clone();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        match tls {
            Some(tls) => http.serve_tls(listener, router, tls, shutdown).await,
            None => http.serve(listener, router, shutdown).await,
        }
    })
}
