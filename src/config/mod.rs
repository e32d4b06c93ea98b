//! The server's configuration: defaults < TOML file (`--config`) < `AO_*`
//! environment < command-line flags. Every setting is declared once, in
//! [`settings::SETTINGS`].

mod settings;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use settings::{Flag, Flags, Setting, SETTINGS};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human text, one line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything the server is configured with, after layering. Its `Debug`
/// form hides the admin token, the JWT secret and any password in a
/// database URL.
#[derive(Clone)]
pub struct Config {
    /// socket.io, admin API and health (`AO_LISTEN`).
    pub listen: SocketAddr,
    /// Accounts API, reachable by the app's backend only (`AO_API_LISTEN`).
    pub api_listen: SocketAddr,
    /// When set, the admin API, `/metrics` and the admin API's
    /// `/openapi.json` are served here instead of on `listen`
    /// (`AO_ADMIN_LISTEN`).
    pub admin_listen: Option<SocketAddr>,
    /// Certificate chain (PEM) of both listeners (`AO_TLS_CERT`); with
    /// `tls_key`, they serve TLS.
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert` (`AO_TLS_KEY`).
    pub tls_key: Option<PathBuf>,
    /// Where the embedded store keeps its files (`AO_DATA_DIR`).
    pub data_dir: PathBuf,
    /// How long a new connection may take to authenticate.
    pub auth_timeout: Duration,
    /// How long an authenticated connection may take to join.
    pub join_timeout: Duration,
    /// Successful authentications per uid per 60 s window.
    pub auth_rate_limit: u32,
    /// Largest accepted msg, in bytes of its JSON encoding.
    pub max_msg_bytes: usize,
    /// Inserted messages per sync page.
    pub sync_page_size: usize,
    /// Bytes of messages one sync page holds at most (`AO_SYNC_PAGE_MAX_BYTES`).
    pub sync_page_max_bytes: usize,
    /// Msgs per second one connection may send, 0 for no limit (`AO_MSG_RATE`).
    pub msg_rate: u32,
    /// Msgs one connection may send at once above its rate (`AO_MSG_BURST`).
    pub msg_burst: u32,
    /// Msgs per second one room takes across the cluster, 0 for no limit
    /// (`AO_ROOM_MSG_RATE`).
    pub room_msg_rate: u32,
    /// Failed authentications one client address may make per minute before
    /// its further attempts are refused, 0 for no limit (`AO_AUTH_FAILURES_PER_IP`).
    pub auth_failures_per_ip: u32,
    /// Failed admin or accounts API logins one address may make per minute,
    /// 0 for no limit (`AO_API_LOGIN_FAILURES_PER_IP`).
    pub api_login_failures_per_ip: u32,
    /// Members one room holds at most, on all nodes (`AO_MAX_ROOM_MEMBERS`).
    pub max_room_members: usize,
    /// Bytes of msgs waiting to be stored on this node (`AO_STORE_QUEUE_MAX_BYTES`).
    pub store_queue_max_bytes: usize,
    /// Bytes of one connection's msgs waiting to be stored
    /// (`AO_SESSION_WRITES_MAX_BYTES`).
    pub session_writes_max_bytes: usize,
    /// Bytes of a connection's events that may wait for its session before
    /// the server stops reading from it (`AO_INBOUND_MAX_BYTES`).
    pub inbound_max_bytes: usize,
    /// Bytes that may wait for one client before it is disconnected as too
    /// slow (`AO_CLIENT_QUEUE_MAX_BYTES`).
    pub client_queue_max_bytes: usize,
    /// Connections this node holds at most, 0 for no limit (`AO_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Connections one client address may hold at most, 0 for no limit
    /// (`AO_MAX_CONNECTIONS_PER_IP`).
    pub max_connections_per_ip: usize,
    /// Handshakes one client address may make per second once its burst
    /// is used, 0 for no limit (`AO_HANDSHAKES_PER_IP`).
    pub handshakes_per_ip: u32,
    /// Handshakes one client address may make at once
    /// (`AO_HANDSHAKE_BURST_PER_IP`).
    pub handshake_burst_per_ip: u32,
    /// Page origins allowed to connect; empty for any (`AO_ALLOWED_ORIGINS`).
    pub allowed_origins: Vec<String>,
    /// How long a request's headers may take, and a connection may idle
    /// between requests (`AO_HEADER_TIMEOUT_MS`).
    pub header_timeout: Duration,
    /// How long a request's body may take to arrive whole
    /// (`AO_BODY_TIMEOUT_MS`).
    pub body_timeout: Duration,
    /// TCP connections with no request in progress held at most, 0 for a
    /// quarter of the open-files limit (`AO_MAX_PENDING_CONNECTIONS`).
    pub max_pending_connections: usize,
    /// The heartbeat interval (`AO_PING_INTERVAL_MS`).
    pub ping_interval: Duration,
    /// How long a heartbeat may go unanswered (`AO_PING_TIMEOUT_MS`).
    pub ping_timeout: Duration,
    /// How long the embedded store's writer gathers writes into one commit
    /// after the first arrives (`AO_COMMIT_WINDOW_US`).
    pub commit_window: Duration,
    /// Development mode: any token is accepted.
    pub dev: bool,
    /// Development mode may listen on a non-loopback address (`AO_DEV_PUBLIC`).
    pub dev_public: bool,
    /// An admin account that exists from start-up (uid, token).
    pub admin: Option<(String, String)>,
    /// The HMAC secret JSON Web Tokens are verified with (`AO_JWT_HMAC_SECRET`).
    pub jwt_hmac_secret: Option<String>,
    /// The PEM public key (or its file) JSON Web Tokens are verified with
    /// (`AO_JWT_PUBLIC_KEY`).
    pub jwt_public_key: Option<String>,
    /// A dummy join needs a token granting `observer` (`AO_DUMMY_REQUIRES_GRANT`).
    pub dummy_requires_grant: bool,
    /// How log lines are written (`--log-format`).
    pub log_format: LogFormat,
    /// How long a graceful shutdown may take (`AO_SHUTDOWN_GRACE_MS`).
    pub shutdown_grace: Duration,
    /// Serve the web demo at `/` (`AO_DEMO`, `--no-demo` turns it off).
    pub demo: bool,
    /// A directory to serve the web demo from instead of the embedded copy
    /// (`AO_WEB_DIR`).
    pub web_dir: Option<PathBuf>,
    /// MongoDB URL for accounts (`AO_MONGODB_URL`); embedded store when unset.
    pub mongodb_url: Option<String>,
    /// MongoDB database of the accounts (`AO_MONGODB_DB`).
    pub mongodb_db: String,
    /// Redis URL (`AO_REDIS_URL`): set, the node joins a cluster sharing
    /// messages, presence and (without MongoDB) accounts through Redis.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel (`AO_REDIS_PREFIX`).
    pub redis_prefix: String,
    /// Talk to a Redis Cluster (`AO_REDIS_CLUSTER`, or a `redis-cluster://` URL).
    pub redis_cluster: bool,
    /// Certificate authorities (PEM) trusted for a `rediss://` Redis, besides
    /// the system's (`AO_REDIS_CA`).
    pub redis_ca: Option<PathBuf>,
    /// Lifetime of a node's heartbeat in Redis (`AO_NODE_TTL_MS`).
    pub node_ttl: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Config");
        for s in SETTINGS {
            d.field(s.key, &(s.show)(self));
        }
        d.finish()
    }
}

/// `scheme://user:secret@host` → `scheme://user:<redacted>@host`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((auth, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = auth.split_once(':').map_or(auth, |(u, _)| u);
    format!("{scheme}://{user}:<redacted>@{host}")
}

impl Default for Config {
    /// Every setting at its declared default.
    fn default() -> Self {
        let mut c = Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            api_listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            admin_listen: None,
            tls_cert: None,
            tls_key: None,
            data_dir: PathBuf::new(),
            auth_timeout: Duration::ZERO,
            join_timeout: Duration::ZERO,
            auth_rate_limit: 0,
            max_msg_bytes: 0,
            sync_page_size: 0,
            sync_page_max_bytes: 0,
            msg_rate: 0,
            msg_burst: 0,
            room_msg_rate: 0,
            auth_failures_per_ip: 0,
            api_login_failures_per_ip: 0,
            max_room_members: 0,
            store_queue_max_bytes: 0,
            session_writes_max_bytes: 0,
            inbound_max_bytes: 0,
            client_queue_max_bytes: 0,
            max_connections: 0,
            max_connections_per_ip: 0,
            handshakes_per_ip: 0,
            handshake_burst_per_ip: 0,
            allowed_origins: Vec::new(),
            header_timeout: Duration::ZERO,
            body_timeout: Duration::ZERO,
            max_pending_connections: 0,
            ping_interval: Duration::ZERO,
            ping_timeout: Duration::ZERO,
            commit_window: Duration::ZERO,
            dev: false,
            dev_public: false,
            admin: None,
            jwt_hmac_secret: None,
            jwt_public_key: None,
            dummy_requires_grant: false,
            log_format: LogFormat::Text,
            shutdown_grace: Duration::ZERO,
            demo: false,
            web_dir: None,
            mongodb_url: None,
            mongodb_db: String::new(),
            redis_url: None,
            redis_prefix: String::new(),
            redis_cluster: false,
            redis_ca: None,
            node_ttl: Duration::ZERO,
        };
        for s in SETTINGS {
            // Every default is checked to read back by a unit test.
            let _ = (s.set)(&mut c, s.default);
        }
        c
    }
}

/// A configuration value that could not be used: names the key and the reason.
#[derive(Debug, thiserror::Error)]
#[error("config error: {key}: {reason}")]
pub struct ConfigError {
    /// The file key, variable or flag at fault.
    pub(crate) key: String,
    pub(crate) reason: String,
    /// The underlying error, when there is one (reading the config file).
    #[source]
    source: Option<std::io::Error>,
}

impl ConfigError {
    fn new(key: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self {
            key: key.into(),
            reason: reason.to_string(),
            source: None,
        }
    }
}

/// The smallest sync page budget.
const MIN_SYNC_PAGE_MAX_BYTES: usize = 16 * 1024;
/// The smallest inbound budget: room for a few ordinary events.
const MIN_INBOUND_MAX_BYTES: usize = 64 * 1024;
/// The smallest outbound queue: a few of the largest packets a sync page makes.
const MIN_CLIENT_QUEUE_MAX_BYTES: usize = 64 * 1024;

impl Config {
    /// Layers defaults, the file named by `flags.config`, the environment
    /// (read through `env`) and the flags.
    pub fn load(
        flags: &Flags,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        // Whether `listen` was given at all: development mode defaults to
        // the loopback address instead.
        let mut listen_given = false;
        if let Some(path) = &flags.config {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                source: Some(e),
                ..ConfigError::new("config", path.display())
            })?;
            let table = toml::from_str::<toml::Table>(&text).map_err(|e| file_error(&e, &text))?;
            for (key, value) in &table {
                let setting = settings::by_key(key)
                    .ok_or_else(|| ConfigError::new(key.as_str(), "unknown key"))?;
                let text = match value {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => {
                        return Err(ConfigError::new(
                            key.as_str(),
                            format!(
                                "expected a string, a number or a boolean, found {}",
                                other.type_str()
                            ),
                        ))
                    }
                };
                (setting.set)(&mut cfg, &text)
                    .map_err(|e| ConfigError::new(key.as_str(), format!("{value}: {e}")))?;
                listen_given |= setting.key == "listen";
            }
        }
        for s in SETTINGS {
            if let Some(v) = env(s.env).filter(|v| !v.is_empty()) {
                (s.set)(&mut cfg, &v)
                    .map_err(|e| ConfigError::new(s.env, format!("{v:?}: {e}")))?;
                listen_given |= s.key == "listen";
            }
        }
        for (key, v) in &flags.values {
            if let Some(s) = settings::by_key(key) {
                let flag = match s.flag {
                    Some(Flag::Value(name) | Flag::Sets(name, _)) => format!("--{name}"),
                    None => (*key).to_owned(),
                };
                (s.set)(&mut cfg, v).map_err(|e| ConfigError::new(flag, format!("{v:?}: {e}")))?;
                listen_given |= s.key == "listen";
            }
        }
        if cfg.dev && !cfg.dev_public && !listen_given {
            cfg.listen = SocketAddr::from(([127, 0, 0, 1], cfg.listen.port()));
        }
        // The URL form alone asks for a Redis Cluster.
        if cfg
            .redis_url
            .as_deref()
            .is_some_and(|u| u.contains("-cluster://"))
        {
            cfg.redis_cluster = true;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.dev && !self.dev_public && !self.listen.ip().is_loopback() {
            return Err(ConfigError::new(
                "AO_DEV",
                format!(
                    "development mode accepts any token and must not listen on {} (not a loopback address): \
                     listen on 127.0.0.1 (AO_LISTEN) or set AO_DEV_PUBLIC=1",
                    self.listen
                ),
            ));
        }
        if self
            .admin_listen
            .is_some_and(|a| a == self.listen && a.port() != 0)
        {
            return Err(ConfigError::new(
                "AO_ADMIN_LISTEN",
                "must differ from AO_LISTEN (leave it unset to serve the admin API there)",
            ));
        }
        match &self.admin {
            Some((_, token)) if token.is_empty() => {
                return Err(ConfigError::new(
                    "AO_ADMIN_TOKEN",
                    "must be set together with AO_ADMIN_UID",
                ))
            }
            Some((uid, _)) if uid.is_empty() => {
                return Err(ConfigError::new(
                    "AO_ADMIN_UID",
                    "must be set together with AO_ADMIN_TOKEN",
                ))
            }
            _ => {}
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "AO_TLS_KEY",
                    "must be set together with AO_TLS_CERT",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "AO_TLS_CERT",
                    "must be set together with AO_TLS_KEY",
                ))
            }
            _ => {}
        }
        if self.redis_ca.is_some()
            && !self
                .redis_url
                .as_deref()
                .is_some_and(crate::tls::redis_url_uses_tls)
        {
            return Err(ConfigError::new(
                "AO_REDIS_CA",
                "only used with a rediss:// AO_REDIS_URL",
            ));
        }
        if self.max_msg_bytes == 0 {
            return Err(ConfigError::new("max_msg_bytes", "must be greater than 0"));
        }
        if self.sync_page_size == 0 {
            return Err(ConfigError::new("sync_page_size", "must be greater than 0"));
        }
        if self.sync_page_max_bytes < MIN_SYNC_PAGE_MAX_BYTES {
            return Err(ConfigError::new(
                "sync_page_max_bytes",
                format!("must be at least {MIN_SYNC_PAGE_MAX_BYTES}"),
            ));
        }
        if self.max_room_members == 0 {
            return Err(ConfigError::new(
                "max_room_members",
                "must be greater than 0",
            ));
        }
        if self.session_writes_max_bytes < self.max_msg_bytes {
            return Err(ConfigError::new(
                "session_writes_max_bytes",
                "must be at least max_msg_bytes",
            ));
        }
        if self.store_queue_max_bytes < self.session_writes_max_bytes {
            return Err(ConfigError::new(
                "store_queue_max_bytes",
                "must be at least session_writes_max_bytes",
            ));
        }
        if self.inbound_max_bytes < MIN_INBOUND_MAX_BYTES {
            return Err(ConfigError::new(
                "inbound_max_bytes",
                format!("must be at least {MIN_INBOUND_MAX_BYTES}"),
            ));
        }
        if self.client_queue_max_bytes < MIN_CLIENT_QUEUE_MAX_BYTES {
            return Err(ConfigError::new(
                "client_queue_max_bytes",
                format!("must be at least {MIN_CLIENT_QUEUE_MAX_BYTES}"),
            ));
        }
        if self.header_timeout < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "header_timeout_ms",
                "must be at least 100",
            ));
        }
        if self.body_timeout < Duration::from_millis(100) {
            return Err(ConfigError::new("body_timeout_ms", "must be at least 100"));
        }
        if self.ping_interval < Duration::from_millis(50)
            || self.ping_timeout < Duration::from_millis(50)
        {
            return Err(ConfigError::new(
                "ping_interval_ms",
                "ping_interval_ms and ping_timeout_ms must be at least 50",
            ));
        }
        if self.commit_window > Duration::from_millis(100) {
            return Err(ConfigError::new(
                "commit_window_us",
                "must be at most 100000",
            ));
        }
        if self.node_ttl < Duration::from_millis(500) {
            return Err(ConfigError::new("node_ttl_ms", "must be at least 500"));
        }
        crate::grants::Verifier::from_config(self).map_err(|e| ConfigError::new(e.setting(), e))?;
        if self.auth_rate_limit == 0 {
            return Err(ConfigError::new(
                "auth_rate_limit",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}

/// A config file error naming the key at fault: the TOML parser reports
/// where the bad value is, and config files are flat `key = value` lines.
fn file_error(e: &toml::de::Error, text: &str) -> ConfigError {
    let reason = e.message().replace('\n', " ");
    let key = e
        .span()
        .and_then(|span| {
            let line_start = text.get(..span.start)?.rfind('\n').map_or(0, |i| i + 1);
            let line = text.get(line_start..)?.lines().next()?;
            let (key, _) = line.split_once('=')?;
            let key = key.trim().trim_matches('"');
            (!key.is_empty() && !key.starts_with('[')).then(|| key.to_owned())
        })
        .unwrap_or_else(|| "config file".to_owned());
    ConfigError::new(key, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(env: &[(&str, &str)], flags: Flags) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(&flags, |k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = load(&[], Flags::default()).expect("defaults load");
        assert_eq!(c.listen.to_string(), "0.0.0.0:3000");
        assert_eq!(c.api_listen.to_string(), "127.0.0.1:4000");
        assert_eq!(c.max_msg_bytes, 512_000);
        assert_eq!(c.sync_page_size, 200);
        assert_eq!(c.auth_rate_limit, 30);
        assert!(!c.dev);
    }

    #[test]
    fn layering_file_env_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "sync_page_size = 10\nmax_msg_bytes = 99\nlisten = \"127.0.0.1:1\"\n",
        )
        .expect("write");
        let flags = Flags {
            config: Some(path),
            ..Flags::with(&[("listen", "127.0.0.1:3")])
        };
        let c = load(
            &[("AO_MAX_MSG_BYTES", "77"), ("AO_LISTEN", "127.0.0.1:2")],
            flags,
        )
        .expect("load");
        assert_eq!(c.sync_page_size, 10);
        assert_eq!(c.max_msg_bytes, 77);
        assert_eq!(c.listen.to_string(), "127.0.0.1:3");
    }

    #[test]
    fn debug_hides_secrets() {
        let c = load(
            &[
                ("AO_ADMIN_UID", "root"),
                ("AO_ADMIN_TOKEN", "s3cret"),
                ("AO_MONGODB_URL", "mongodb://u:pw@h:1/db"),
                ("AO_JWT_HMAC_SECRET", "jwt-secret-of-at-least-32-bytes-long"),
            ],
            Flags::default(),
        )
        .expect("load");
        let text = format!("{c:?}");
        assert!(!text.contains("s3cret") && !text.contains("pw@"), "{text}");
        assert!(!text.contains("jwt-secret"), "{text}");
        assert_eq!(redact_url("mongodb://h:1"), "mongodb://h:1");
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = load(&[("AO_SYNC_PAGE_SIZE", "lots")], Flags::default()).expect_err("bad");
        assert_eq!(e.key, "AO_SYNC_PAGE_SIZE");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "no_such_key = 1\n").expect("write");
        let e = load(
            &[],
            Flags {
                config: Some(path.clone()),
                ..Flags::default()
            },
        )
        .expect_err("unknown key");
        assert!(e.to_string().contains("no_such_key"), "{e}");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\nsync_page_size = \"lots\"\n",
        )
        .expect("write");
        let e = load(
            &[],
            Flags {
                config: Some(path.clone()),
                ..Flags::default()
            },
        )
        .expect_err("bad type");
        assert_eq!(e.key, "sync_page_size", "{e}");
        let e = load(&[("AO_ADMIN_UID", "a")], Flags::default()).expect_err("half admin");
        assert_eq!(e.key, "AO_ADMIN_TOKEN");
        let e = load(&[("AO_TLS_CERT", "c.pem")], Flags::default()).expect_err("half TLS");
        assert_eq!(e.key, "AO_TLS_KEY");
        let e = load(&[("AO_TLS_KEY", "k.pem")], Flags::default()).expect_err("half TLS");
        assert_eq!(e.key, "AO_TLS_CERT");
        let e = load(
            &[("AO_REDIS_URL", "redis://h:1"), ("AO_REDIS_CA", "ca.pem")],
            Flags::default(),
        )
        .expect_err("a CA without TLS");
        assert_eq!(e.key, "AO_REDIS_CA");
        let c = load(
            &[("AO_REDIS_URL", "rediss://h:1"), ("AO_REDIS_CA", "ca.pem")],
            Flags::default(),
        )
        .expect("a CA for rediss");
        assert_eq!(c.redis_ca, Some(PathBuf::from("ca.pem")));
    }

    #[test]
    fn every_default_reads_back_and_every_name_is_unique() {
        let mut c = Config::default();
        for s in SETTINGS {
            assert_eq!((s.set)(&mut c, s.default), Ok(()), "{}", s.key);
        }
        let mut names: Vec<&str> = SETTINGS.iter().flat_map(|s| [s.key, s.env]).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a key or variable is declared twice");
        for s in SETTINGS {
            assert_eq!(s.env, format!("AO_{}", s.key.to_uppercase()), "{}", s.key);
        }
    }

    #[test]
    fn the_operations_guide_lists_every_setting_as_declared() {
        let doc = include_str!("../../docs/OPERATIONS.md");
        let table = settings::markdown_table();
        assert!(
            doc.contains(&table),
            "docs/OPERATIONS.md must hold the settings table exactly as declared:\n{table}"
        );
    }

    #[test]
    fn dev_mode_listens_on_loopback_unless_told_otherwise() {
        let dev = || Flags::with(&[("dev", "1")]);
        let c = load(&[], dev()).expect("dev alone");
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        let c = load(&[("AO_LISTEN", "127.0.0.1:4444")], dev()).expect("loopback");
        assert_eq!(c.listen.to_string(), "127.0.0.1:4444");
        let c = load(&[("AO_LISTEN", "[::1]:4444")], dev()).expect("IPv6 loopback");
        assert_eq!(c.listen.to_string(), "[::1]:4444");
        let e = load(&[("AO_LISTEN", "0.0.0.0:3000")], dev()).expect_err("public");
        assert_eq!(e.key, "AO_DEV");
        assert!(e.to_string().contains("AO_DEV_PUBLIC"), "{e}");
        let e = load(
            &[("AO_DEV", "1")],
            Flags::with(&[("listen", "10.0.0.1:3000")]),
        )
        .expect_err("public by flag");
        assert_eq!(e.key, "AO_DEV");
        let c = load(&[("AO_DEV_PUBLIC", "1")], dev()).expect("public allowed");
        assert_eq!(c.listen.to_string(), "0.0.0.0:3000");
        let c = load(&[("AO_LISTEN", "0.0.0.0:3000")], Flags::default()).expect("no dev");
        assert!(!c.dev);
    }

    #[test]
    fn admin_listener_is_optional_and_apart() {
        let c = load(&[], Flags::default()).expect("defaults");
        assert_eq!(c.admin_listen, None);
        let c = load(&[("AO_ADMIN_LISTEN", "127.0.0.1:9100")], Flags::default()).expect("set");
        assert_eq!(
            c.admin_listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9100")
        );
        let e = load(&[("AO_ADMIN_LISTEN", "0.0.0.0:3000")], Flags::default())
            .expect_err("the public address");
        assert_eq!(e.key, "AO_ADMIN_LISTEN");
        let e = load(&[("AO_ADMIN_LISTEN", "nowhere")], Flags::default()).expect_err("bad");
        assert_eq!(e.key, "AO_ADMIN_LISTEN");
    }

    #[test]
    fn flags_come_from_the_declarations() {
        use clap::{Args, FromArgMatches};
        let cmd = Flags::augment_args(clap::Command::new("t"));
        let m = cmd
            .try_get_matches_from([
                "t",
                "--listen",
                "127.0.0.1:9",
                "--no-demo",
                "--dev",
                "--config",
                "c.toml",
            ])
            .expect("parses");
        let flags = Flags::from_arg_matches(&m).expect("flags");
        assert_eq!(flags.config, Some(PathBuf::from("c.toml")));
        let c = load(
            &[],
            Flags {
                config: None,
                ..flags
            },
        )
        .expect("load");
        assert_eq!(c.listen.to_string(), "127.0.0.1:9");
        assert!(!c.demo && c.dev);
    }
}
