//! The server's configuration: defaults < TOML file (`--config`) < `AO_*`
//! environment < command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything the server is configured with, after layering. Its `Debug`
/// form hides the admin token and any password in the MongoDB URL.
#[derive(Clone)]
pub struct Config {
    /// socket.io, admin API and health (`AO_LISTEN`).
    pub listen: SocketAddr,
    /// Accounts API, reachable by the app's backend only (`AO_API_LISTEN`).
    pub api_listen: SocketAddr,
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
    /// Bytes of a connection's events that may wait for its session before
    /// the server stops reading from it (`AO_INBOUND_MAX_BYTES`).
    pub inbound_max_bytes: usize,
    /// How long the embedded store's writer gathers writes into one commit
    /// after the first arrives (`AO_COMMIT_WINDOW_US`).
    pub commit_window: Duration,
    /// Development mode: any token is accepted.
    pub dev: bool,
    /// An admin account that exists from start-up (uid, token).
    pub admin: Option<(String, String)>,
    pub log_format: LogFormat,
    /// How long a graceful shutdown may take (`AO_SHUTDOWN_GRACE_MS`).
    pub shutdown_grace: Duration,
    /// Serve the web demo at `/` (`AO_DEMO`, `--no-demo` turns it off).
    pub demo: bool,
    /// Where the built web demo is (`AO_WEB_DIR`).
    pub web_dir: PathBuf,
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
    /// Lifetime of a node's heartbeat in Redis (`AO_NODE_TTL_MS`).
    pub node_ttl: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("api_listen", &self.api_listen)
            .field("data_dir", &self.data_dir)
            .field("auth_timeout", &self.auth_timeout)
            .field("join_timeout", &self.join_timeout)
            .field("auth_rate_limit", &self.auth_rate_limit)
            .field("max_msg_bytes", &self.max_msg_bytes)
            .field("sync_page_size", &self.sync_page_size)
            .field("inbound_max_bytes", &self.inbound_max_bytes)
            .field("commit_window", &self.commit_window)
            .field("dev", &self.dev)
            .field(
                "admin",
                &self.admin.as_ref().map(|(uid, _)| (uid, "<redacted>")),
            )
            .field("log_format", &self.log_format)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("demo", &self.demo)
            .field("web_dir", &self.web_dir)
            .field("mongodb_url", &self.mongodb_url.as_deref().map(redact_url))
            .field("mongodb_db", &self.mongodb_db)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_prefix", &self.redis_prefix)
            .field("redis_cluster", &self.redis_cluster)
            .field("node_ttl", &self.node_ttl)
            .finish()
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

/// The smallest inbound budget: room for a few ordinary events.
const MIN_INBOUND_MAX_BYTES: usize = 64 * 1024;
/// The default commit window of the embedded store.
const DEFAULT_COMMIT_WINDOW_US: u64 = 2_000;

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 3000)),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 4000)),
            data_dir: PathBuf::from("./data"),
            auth_timeout: Duration::from_millis(10_000),
            join_timeout: Duration::from_millis(10_000),
            auth_rate_limit: 30,
            max_msg_bytes: 512_000,
            sync_page_size: 200,
            inbound_max_bytes: 4 << 20,
            commit_window: Duration::from_micros(DEFAULT_COMMIT_WINDOW_US),
            dev: false,
            admin: None,
            log_format: LogFormat::Text,
            shutdown_grace: Duration::from_millis(10_000),
            demo: true,
            web_dir: PathBuf::from("web/dist"),
            mongodb_url: None,
            mongodb_db: "account".into(),
            redis_url: None,
            redis_prefix: String::new(),
            redis_cluster: false,
            node_ttl: Duration::from_millis(10_000),
        }
    }
}

/// A configuration value that could not be used: names the key and the reason.
#[derive(Debug, thiserror::Error)]
#[error("config error: {key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self {
            key: key.into(),
            reason: reason.to_string(),
        }
    }
}

/// The keys a TOML config file may hold (all optional; unknown keys are errors).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    api_listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    auth_timeout_ms: Option<u64>,
    join_timeout_ms: Option<u64>,
    auth_rate_limit: Option<u32>,
    max_msg_bytes: Option<usize>,
    sync_page_size: Option<usize>,
    inbound_max_bytes: Option<usize>,
    commit_window_us: Option<u64>,
    dev: Option<bool>,
    admin_uid: Option<String>,
    admin_token: Option<String>,
    log_format: Option<LogFormat>,
    mongodb_url: Option<String>,
    mongodb_db: Option<String>,
    redis_url: Option<String>,
    redis_prefix: Option<String>,
    redis_cluster: Option<bool>,
    node_ttl_ms: Option<u64>,
    shutdown_grace_ms: Option<u64>,
    demo: Option<bool>,
    web_dir: Option<PathBuf>,
}

/// Values given as command-line flags (highest precedence).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Flags {
    /// TOML config file.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// socket.io, admin API and health listener [default: 0.0.0.0:3000].
    #[arg(long, global = true)]
    pub listen: Option<SocketAddr>,
    /// Accounts API listener [default: 127.0.0.1:4000].
    #[arg(long, global = true)]
    pub api_listen: Option<SocketAddr>,
    /// Data directory of the embedded store [default: ./data].
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Development mode: any token is accepted.
    #[arg(long, global = true)]
    pub dev: bool,
    /// Do not serve the web demo at `/`.
    #[arg(long, global = true)]
    pub no_demo: bool,
    /// Log format [default: text].
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Layers defaults, the file named by `flags.config`, the environment
    /// (read through `env`) and the flags.
    pub fn load(
        flags: &Flags,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        let file = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::new("config", format!("{}: {e}", path.display())))?;
                toml::from_str::<FileConfig>(&text).map_err(|e| file_error(&e, &text))?
            }
            None => FileConfig::default(),
        };
        let mut admin_uid = file.admin_uid;
        let mut admin_token = file.admin_token;
        set(&mut cfg.listen, file.listen);
        set(&mut cfg.api_listen, file.api_listen);
        set(&mut cfg.data_dir, file.data_dir);
        set(
            &mut cfg.auth_timeout,
            file.auth_timeout_ms.map(Duration::from_millis),
        );
        set(
            &mut cfg.join_timeout,
            file.join_timeout_ms.map(Duration::from_millis),
        );
        set(&mut cfg.auth_rate_limit, file.auth_rate_limit);
        set(&mut cfg.max_msg_bytes, file.max_msg_bytes);
        set(&mut cfg.sync_page_size, file.sync_page_size);
        set(&mut cfg.inbound_max_bytes, file.inbound_max_bytes);
        set(
            &mut cfg.commit_window,
            file.commit_window_us.map(Duration::from_micros),
        );
        set(&mut cfg.dev, file.dev);
        set(&mut cfg.log_format, file.log_format);
        if file.mongodb_url.is_some() {
            cfg.mongodb_url = file.mongodb_url;
        }
        set(&mut cfg.mongodb_db, file.mongodb_db);
        if file.redis_url.is_some() {
            cfg.redis_url = file.redis_url;
        }
        set(&mut cfg.redis_prefix, file.redis_prefix);
        set(&mut cfg.redis_cluster, file.redis_cluster);
        set(
            &mut cfg.node_ttl,
            file.node_ttl_ms.map(Duration::from_millis),
        );
        set(
            &mut cfg.shutdown_grace,
            file.shutdown_grace_ms.map(Duration::from_millis),
        );
        set(&mut cfg.demo, file.demo);
        set(&mut cfg.web_dir, file.web_dir);

        let var = |key: &str| env(key).filter(|v| !v.is_empty());
        set(&mut cfg.listen, parse_env(&var, "AO_LISTEN")?);
        set(&mut cfg.api_listen, parse_env(&var, "AO_API_LISTEN")?);
        set(&mut cfg.data_dir, var("AO_DATA_DIR").map(PathBuf::from));
        set(
            &mut cfg.auth_timeout,
            parse_env::<u64>(&var, "AO_AUTH_TIMEOUT_MS")?.map(Duration::from_millis),
        );
        set(
            &mut cfg.join_timeout,
            parse_env::<u64>(&var, "AO_JOIN_TIMEOUT_MS")?.map(Duration::from_millis),
        );
        set(
            &mut cfg.auth_rate_limit,
            parse_env(&var, "AO_AUTH_RATE_LIMIT")?,
        );
        set(&mut cfg.max_msg_bytes, parse_env(&var, "AO_MAX_MSG_BYTES")?);
        set(
            &mut cfg.sync_page_size,
            parse_env(&var, "AO_SYNC_PAGE_SIZE")?,
        );
        set(
            &mut cfg.inbound_max_bytes,
            parse_env(&var, "AO_INBOUND_MAX_BYTES")?,
        );
        set(
            &mut cfg.commit_window,
            parse_env::<u64>(&var, "AO_COMMIT_WINDOW_US")?.map(Duration::from_micros),
        );
        set(&mut cfg.dev, parse_bool_env(&var, "AO_DEV")?);
        set(&mut cfg.log_format, parse_log_format_env(&var)?);
        if let Some(v) = var("AO_MONGODB_URL") {
            cfg.mongodb_url = Some(v);
        }
        set(&mut cfg.mongodb_db, var("AO_MONGODB_DB"));
        if let Some(v) = var("AO_REDIS_URL") {
            cfg.redis_url = Some(v);
        }
        set(&mut cfg.redis_prefix, var("AO_REDIS_PREFIX"));
        set(
            &mut cfg.redis_cluster,
            parse_bool_env(&var, "AO_REDIS_CLUSTER")?,
        );
        set(
            &mut cfg.node_ttl,
            parse_env::<u64>(&var, "AO_NODE_TTL_MS")?.map(Duration::from_millis),
        );
        set(
            &mut cfg.shutdown_grace,
            parse_env::<u64>(&var, "AO_SHUTDOWN_GRACE_MS")?.map(Duration::from_millis),
        );
        set(&mut cfg.demo, parse_bool_env(&var, "AO_DEMO")?);
        set(&mut cfg.web_dir, var("AO_WEB_DIR").map(PathBuf::from));
        if let Some(v) = var("AO_ADMIN_UID") {
            admin_uid = Some(v);
        }
        if let Some(v) = var("AO_ADMIN_TOKEN") {
            admin_token = Some(v);
        }

        set(&mut cfg.listen, flags.listen);
        set(&mut cfg.api_listen, flags.api_listen);
        set(&mut cfg.data_dir, flags.data_dir.clone());
        if flags.dev {
            cfg.dev = true;
        }
        if flags.no_demo {
            cfg.demo = false;
        }
        set(&mut cfg.log_format, flags.log_format);

        cfg.admin = match (admin_uid, admin_token) {
            (Some(uid), Some(token)) => Some((uid, token)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "AO_ADMIN_TOKEN",
                    "must be set together with AO_ADMIN_UID",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "AO_ADMIN_UID",
                    "must be set together with AO_ADMIN_TOKEN",
                ))
            }
        };
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
        if self.max_msg_bytes == 0 {
            return Err(ConfigError::new("max_msg_bytes", "must be greater than 0"));
        }
        if self.sync_page_size == 0 {
            return Err(ConfigError::new("sync_page_size", "must be greater than 0"));
        }
        if self.inbound_max_bytes < MIN_INBOUND_MAX_BYTES {
            return Err(ConfigError::new(
                "inbound_max_bytes",
                format!("must be at least {MIN_INBOUND_MAX_BYTES}"),
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
        if self.auth_rate_limit == 0 {
            return Err(ConfigError::new(
                "auth_rate_limit",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
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

fn parse_env<T>(var: &impl Fn(&str) -> Option<String>, key: &str) -> Result<Option<T>, ConfigError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    var(key)
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|e| ConfigError::new(key, format!("{v:?}: {e}")))
        })
        .transpose()
}

fn parse_bool_env(
    var: &impl Fn(&str) -> Option<String>,
    key: &str,
) -> Result<Option<bool>, ConfigError> {
    var(key)
        .map(|v| match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::new(
                key,
                format!("{v:?}: expected 1/0 or true/false"),
            )),
        })
        .transpose()
}

fn parse_log_format_env(
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Option<LogFormat>, ConfigError> {
    var("AO_LOG_FORMAT")
        .map(|v| match v.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(ConfigError::new(
                "AO_LOG_FORMAT",
                format!("{v:?}: expected text or json"),
            )),
        })
        .transpose()
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
            listen: Some("127.0.0.1:3".parse().expect("addr")),
            ..Flags::default()
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
            ],
            Flags::default(),
        )
        .expect("load");
        let text = format!("{c:?}");
        assert!(!text.contains("s3cret") && !text.contains("pw@"), "{text}");
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
    }
}
