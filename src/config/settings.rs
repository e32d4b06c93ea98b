//! Every setting, declared once: its file key, environment variable, flag,
//! default and meaning, and how its text is read into [`Config`] and shown.
//! The file, the environment, the flags, `--help`, `Config::default()`,
//! the `Debug` form and the table in docs/OPERATIONS.md all come from
//! [`SETTINGS`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{redact_url, Config, LogFormat};

/// A command-line flag of a setting.
#[derive(Debug, Clone, Copy)]
pub enum Flag {
    /// `--name VALUE`.
    Value(&'static str),
    /// `--name` alone, which sets the setting to the given text.
    Sets(&'static str, &'static str),
}

/// One setting.
pub struct Setting {
    /// Its key in the TOML file.
    pub key: &'static str,
    /// Its environment variable.
    pub env: &'static str,
    /// Its flag, if it has one.
    pub flag: Option<Flag>,
    /// Its default, as text (`""`: unset).
    pub default: &'static str,
    /// What it means (the docs table and `--help`).
    pub meaning: &'static str,
    /// Reads the setting's text into the configuration.
    pub set: fn(&mut Config, &str) -> Result<(), String>,
    /// The setting's value as text, secrets hidden.
    pub show: fn(&Config) -> String,
}

/// Reads a number, an address, a path.
fn parse<T: std::str::FromStr>(v: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    v.trim().parse::<T>().map_err(|e| e.to_string())
}

/// Reads a boolean: 1/0, true/false, yes/no, on/off.
fn boolean(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected 1/0 or true/false".into()),
    }
}

/// Reads a comma-separated origin list; `*` (or nothing) is any origin.
fn origins(v: &str) -> Vec<String> {
    v.split(',')
        .map(|o| o.trim().trim_end_matches('/'))
        .filter(|o| !o.is_empty() && *o != "*")
        .map(str::to_owned)
        .collect()
}

fn show_origins(list: &[String]) -> String {
    if list.is_empty() {
        "*".to_owned()
    } else {
        list.join(",")
    }
}

fn log_format(v: &str) -> Result<LogFormat, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected text or json".into()),
    }
}

/// Sets half of the admin account; `Config::validate` requires both halves.
fn set_admin(c: &mut Config, uid: Option<&str>, token: Option<&str>) {
    let (old_uid, old_token) = c.admin.take().unwrap_or_default();
    let uid = uid.map_or(old_uid, str::to_owned);
    let token = token.map_or(old_token, str::to_owned);
    c.admin = (!uid.is_empty() || !token.is_empty()).then_some((uid, token));
}

/// An optional text: empty means unset.
fn optional(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_owned())
}

/// A public key setting as shown: its path, or `<PEM>` for the key itself.
fn show_key(v: &str) -> String {
    if v.trim_start().starts_with("-----BEGIN") {
        "<PEM>".to_owned()
    } else {
        v.to_owned()
    }
}

/// An optional address: empty means unset.
fn optional_addr(v: &str) -> Result<Option<SocketAddr>, String> {
    if v.trim().is_empty() {
        Ok(None)
    } else {
        parse::<SocketAddr>(v).map(Some)
    }
}

/// An optional path: empty means unset.
fn optional_path(v: &str) -> Option<PathBuf> {
    (!v.is_empty()).then(|| PathBuf::from(v))
}

fn show_path(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn millis(v: &str) -> Result<Duration, String> {
    parse::<u64>(v).map(Duration::from_millis)
}

fn micros(v: &str) -> Result<Duration, String> {
    parse::<u64>(v).map(Duration::from_micros)
}

/// Declares a setting whose field takes `$read`'s value and shows as `$show`.
macro_rules! setting {
    ($key:literal, $env:literal, $flag:expr, $default:literal, $meaning:literal,
     |$c:ident, $v:ident| $set:expr, |$s:ident| $show:expr) => {
        Setting {
            key: $key,
            env: $env,
            flag: $flag,
            default: $default,
            meaning: $meaning,
            set: |$c: &mut Config, $v: &str| -> Result<(), String> {
                $set;
                Ok(())
            },
            show: |$s: &Config| -> String { $show },
        }
    };
}

/// Every setting, in the order the docs list them.
pub static SETTINGS: &[Setting] = &[
    setting!("listen", "AO_LISTEN", Some(Flag::Value("listen")), "0.0.0.0:3000",
        "socket.io, admin API, health, metrics; with `dev`, 127.0.0.1:3000 unless given",
        |c, v| c.listen = parse::<SocketAddr>(v)?, |c| c.listen.to_string()),
    setting!("api_listen", "AO_API_LISTEN", Some(Flag::Value("api-listen")), "127.0.0.1:4000",
        "accounts API (internal)",
        |c, v| c.api_listen = parse::<SocketAddr>(v)?, |c| c.api_listen.to_string()),
    setting!("admin_listen", "AO_ADMIN_LISTEN", Some(Flag::Value("admin-listen")), "",
        "when set: the admin API, `/metrics` and its `/openapi.json` are served here (with `/healthz` and `/readyz`) and no longer on `listen` (see Admin listener)",
        |c, v| c.admin_listen = optional_addr(v)?, |c| c.admin_listen.map(|a| a.to_string()).unwrap_or_default()),
    setting!("tls_cert", "AO_TLS_CERT", None, "",
        "with `tls_key`: every listener serves TLS (HTTPS, WSS) with this certificate chain (PEM, leaf first); re-read with the key on SIGHUP",
        |c, v| c.tls_cert = optional_path(v), |c| show_path(&c.tls_cert)),
    setting!("tls_key", "AO_TLS_KEY", None, "",
        "the private key of `tls_cert` (PEM: PKCS#8, PKCS#1 or SEC1)",
        |c, v| c.tls_key = optional_path(v), |c| show_path(&c.tls_key)),
    setting!("data_dir", "AO_DATA_DIR", Some(Flag::Value("data-dir")), "./data",
        "embedded store (`always-online.db`, SQLite, and its commit log `commit-log.*`, with at most one retired segment `commit-log.spare` kept to be written again)",
        |c, v| c.data_dir = PathBuf::from(v), |c| c.data_dir.display().to_string()),
    setting!("auth_timeout_ms", "AO_AUTH_TIMEOUT_MS", None, "10000",
        "time to authenticate after connecting",
        |c, v| c.auth_timeout = millis(v)?, |c| c.auth_timeout.as_millis().to_string()),
    setting!("join_timeout_ms", "AO_JOIN_TIMEOUT_MS", None, "10000",
        "time to join after authenticating",
        |c, v| c.join_timeout = millis(v)?, |c| c.join_timeout.as_millis().to_string()),
    setting!("auth_rate_limit", "AO_AUTH_RATE_LIMIT", None, "30",
        "successful authentications per uid per 60 s window",
        |c, v| c.auth_rate_limit = parse(v)?, |c| c.auth_rate_limit.to_string()),
    setting!("max_msg_bytes", "AO_MAX_MSG_BYTES", None, "512000",
        "largest msg (its JSON encoding); exactly the limit passes",
        |c, v| c.max_msg_bytes = parse(v)?, |c| c.max_msg_bytes.to_string()),
    setting!("sync_page_size", "AO_SYNC_PAGE_SIZE", None, "200",
        "inserted messages per sync page",
        |c, v| c.sync_page_size = parse(v)?, |c| c.sync_page_size.to_string()),
    setting!("sync_page_max_bytes", "AO_SYNC_PAGE_MAX_BYTES", None, "4194304",
        "bytes of messages one sync page holds at most (at least one message per page); the updates are paged too when they do not all fit (docs/PROTOCOL.md)",
        |c, v| c.sync_page_max_bytes = parse(v)?, |c| c.sync_page_max_bytes.to_string()),
    setting!("msg_rate", "AO_MSG_RATE", None, "0",
        "msgs per second one connection may send (0: no limit); past its burst a msg is refused with status 6 `too many requests`, not relayed or stored, and counted in `ao_messages_dropped_total{reason=\"rate_limit\"}`",
        |c, v| c.msg_rate = parse(v)?, |c| c.msg_rate.to_string()),
    setting!("msg_burst", "AO_MSG_BURST", None, "0",
        "msgs one connection may send at once before `msg_rate` applies (0: one second's worth)",
        |c, v| c.msg_burst = parse(v)?, |c| c.msg_burst.to_string()),
    setting!("room_msg_rate", "AO_ROOM_MSG_RATE", None, "0",
        "msgs per second one room takes from all its senders on all nodes (0: no limit); more are refused with status 6 and counted in `ao_messages_dropped_total{reason=\"room_rate_limit\"}`",
        |c, v| c.room_msg_rate = parse(v)?, |c| c.room_msg_rate.to_string()),
    setting!("auth_failures_per_ip", "AO_AUTH_FAILURES_PER_IP", None, "0",
        "failed authentications one client address may make per minute (0: no limit); past it its authentications are refused with `reach rate limit` until the minute is over",
        |c, v| c.auth_failures_per_ip = parse(v)?, |c| c.auth_failures_per_ip.to_string()),
    setting!("api_login_failures_per_ip", "AO_API_LOGIN_FAILURES_PER_IP", None, "0",
        "failed admin and accounts API logins one address may make per minute (0: no limit); past it requests get HTTP 429 with `Retry-After`",
        |c, v| c.api_login_failures_per_ip = parse(v)?, |c| c.api_login_failures_per_ip.to_string()),
    setting!("max_room_members", "AO_MAX_ROOM_MEMBERS", None, "10000",
        "members (dummies included) one room holds at most, counted on this node; a join beyond it is refused with `join failed, room is full`",
        |c, v| c.max_room_members = parse(v)?, |c| c.max_room_members.to_string()),
    setting!("store_queue_max_bytes", "AO_STORE_QUEUE_MAX_BYTES", None, "67108864",
        "bytes of msgs waiting to be stored on this node, each counted as what it holds in memory (its body and about 400 bytes of records and allocations); past it a msg is refused with status 5 `storage unavailable` (counted as `store_queue_full`)",
        |c, v| c.store_queue_max_bytes = parse(v)?, |c| c.store_queue_max_bytes.to_string()),
    setting!("session_writes_max_bytes", "AO_SESSION_WRITES_MAX_BYTES", None, "1048576",
        "bytes of one connection's msgs waiting to be stored, counted as for `store_queue_max_bytes`; past it the connection's next msg waits for the store (and its reads pause), at least `max_msg_bytes`",
        |c, v| c.session_writes_max_bytes = parse(v)?, |c| c.session_writes_max_bytes.to_string()),
    setting!("inbound_max_bytes", "AO_INBOUND_MAX_BYTES", None, "4194304",
        "bytes of a connection's events that may wait for its session, each counted as what it holds in memory (its name and payload and about 190 bytes of records and allocations); past it the server stops reading from that client until half is handled (back-pressure), so a burst waits instead of being dropped",
        |c, v| c.inbound_max_bytes = parse(v)?, |c| c.inbound_max_bytes.to_string()),
    setting!("client_queue_max_bytes", "AO_CLIENT_QUEUE_MAX_BYTES", None, "4194304",
        "bytes that may wait to be sent to one client, each packet counted as its bytes and 192 bytes of overhead; a client that lets more pile up (it stopped reading) is disconnected and counted in `ao_slow_clients_total`",
        |c, v| c.client_queue_max_bytes = parse(v)?, |c| c.client_queue_max_bytes.to_string()),
    setting!("max_connections", "AO_MAX_CONNECTIONS", None, "0",
        "connections this node holds at most (0: no limit); a handshake beyond it is refused with HTTP 503 and counted in `ao_connections_refused_total{reason=\"server_full\"}`",
        |c, v| c.max_connections = parse(v)?, |c| c.max_connections.to_string()),
    setting!("max_connections_per_ip", "AO_MAX_CONNECTIONS_PER_IP", None, "0",
        "connections one client address may hold at most (0: no limit); refused with HTTP 503 (`reason=\"too_many_from_address\"`). Behind a proxy every client has the proxy's address",
        |c, v| c.max_connections_per_ip = parse(v)?, |c| c.max_connections_per_ip.to_string()),
    setting!("handshakes_per_ip", "AO_HANDSHAKES_PER_IP", None, "50",
        "engine.io handshakes one client address may make per second once its burst is used (0: no limit); more are refused with HTTP 429 and counted in `ao_connections_refused_total{reason=\"handshake_rate\"}`. It bounds the sessions that never authenticate one address can hold. Behind a proxy every client has the proxy's address: raise it or set 0 and limit at the proxy",
        |c, v| c.handshakes_per_ip = parse(v)?, |c| c.handshakes_per_ip.to_string()),
    setting!("handshake_burst_per_ip", "AO_HANDSHAKE_BURST_PER_IP", None, "500",
        "engine.io handshakes one client address may make at once before `handshakes_per_ip` applies (0: as many as the rate)",
        |c, v| c.handshake_burst_per_ip = parse(v)?, |c| c.handshake_burst_per_ip.to_string()),
    setting!("allowed_origins", "AO_ALLOWED_ORIGINS", None, "*",
        "page origins allowed to connect, comma-separated (`https://app.example,https://admin.example`), or `*` for any (with the CORS answers socket.io 2.x gave); other origins get HTTP 403 on polling and websocket alike; requests without `Origin` (native clients) are always accepted",
        |c, v| c.allowed_origins = origins(v), |c| show_origins(&c.allowed_origins)),
    setting!("header_timeout_ms", "AO_HEADER_TIMEOUT_MS", None, "10000",
        "how long a request's headers may take to arrive, on every listener: from the connection's accept for its first request (over TLS, the handshake included), from the previous answer for the next (a keep-alive connection idle this long is closed); counted in `ao_http_connections_closed_total{reason=\"header_timeout\"}`",
        |c, v| c.header_timeout = millis(v)?, |c| c.header_timeout.as_millis().to_string()),
    setting!("body_timeout_ms", "AO_BODY_TIMEOUT_MS", None, "10000",
        "how long a request's body may take to arrive whole after its headers, on every listener (long-polling POSTs, the admin and accounts APIs); a slower one is cut, answered HTTP 408, its connection closed, and counted in `ao_http_connections_closed_total{reason=\"body_timeout\"}`; an answer the client takes nothing of for this long closes its connection too (websockets excepted)",
        |c, v| c.body_timeout = millis(v)?, |c| c.body_timeout.as_millis().to_string()),
    setting!("max_pending_connections", "AO_MAX_PENDING_CONNECTIONS", None, "0",
        "TCP connections with no request in progress (just accepted, in their TLS handshake, or idle between requests) held at most across every listener (0: a quarter of the process's open-files limit); at the cap the oldest of them is closed to make room for the new one, and counted in `ao_http_connections_closed_total{reason=\"pending_cap\"}` (see Connection deadlines)",
        |c, v| c.max_pending_connections = parse(v)?, |c| c.max_pending_connections.to_string()),
    setting!("ping_interval_ms", "AO_PING_INTERVAL_MS", None, "25000",
        "the heartbeat: engine.io 4 clients are pinged this often, engine.io 3 clients told to ping this often",
        |c, v| c.ping_interval = millis(v)?, |c| c.ping_interval.as_millis().to_string()),
    setting!("ping_timeout_ms", "AO_PING_TIMEOUT_MS", None, "20000",
        "how long a heartbeat may go unanswered before the connection is closed",
        |c, v| c.ping_timeout = millis(v)?, |c| c.ping_timeout.as_millis().to_string()),
    setting!("commit_window_us", "AO_COMMIT_WINDOW_US", None, "2000",
        "how long the embedded store gathers writes into one commit (one `fdatasync`) after the first arrives, while writes come closer together than this; 0 commits each at once; at most 100000",
        |c, v| c.commit_window = micros(v)?, |c| c.commit_window.as_micros().to_string()),
    setting!("dev", "AO_DEV", Some(Flag::Sets("dev", "1")), "0",
        "development mode: any token accepted (the original's `ignoreUserAuth`)",
        |c, v| c.dev = boolean(v)?, |c| c.dev.to_string()),
    setting!("dev_public", "AO_DEV_PUBLIC", None, "0",
        "development mode may listen on an address other than loopback; without it `dev` refuses to start there, and listens on 127.0.0.1 when `listen` is not given",
        |c, v| c.dev_public = boolean(v)?, |c| c.dev_public.to_string()),
    setting!("admin_uid", "AO_ADMIN_UID", None, "",
        "with `admin_token`: this admin account exists from start-up",
        |c, v| set_admin(c, Some(v), None), |c| c.admin.as_ref().map(|a| a.0.clone()).unwrap_or_default()),
    setting!("admin_token", "AO_ADMIN_TOKEN", None, "",
        "the token of `admin_uid`",
        |c, v| set_admin(c, None, Some(v)), |c| c.admin.as_ref().filter(|a| !a.1.is_empty()).map_or(String::new(), |_| "<redacted>".into())),
    setting!("jwt_hmac_secret", "AO_JWT_HMAC_SECRET", None, "",
        "room grants: accept JSON Web Tokens (HS256/384/512) signed with this secret, at least 32 bytes, besides stored tokens (see Room grants)",
        |c, v| c.jwt_hmac_secret = optional(v), |c| c.jwt_hmac_secret.as_ref().map_or(String::new(), |_| "<redacted>".into())),
    setting!("jwt_public_key", "AO_JWT_PUBLIC_KEY", None, "",
        "room grants: accept JSON Web Tokens signed by this key's private half: a PEM public key (RSA: RS256, P-256: ES256, Ed25519: EdDSA), or the path of its file; not together with `jwt_hmac_secret`",
        |c, v| c.jwt_public_key = optional(v), |c| c.jwt_public_key.as_deref().map_or(String::new(), show_key)),
    setting!("dummy_requires_grant", "AO_DUMMY_REQUIRES_GRANT", None, "0",
        "a dummy (observer) join needs a JSON Web Token with `observer: true`; stored-token logins cannot join as dummy",
        |c, v| c.dummy_requires_grant = boolean(v)?, |c| c.dummy_requires_grant.to_string()),
    setting!("log_format", "AO_LOG_FORMAT", Some(Flag::Value("log-format")), "text",
        "`text` or `json`; level from `RUST_LOG` (default `info`)",
        |c, v| c.log_format = log_format(v)?, |c| format!("{:?}", c.log_format).to_lowercase()),
    setting!("shutdown_grace_ms", "AO_SHUTDOWN_GRACE_MS", None, "10000",
        "how long a graceful shutdown may take",
        |c, v| c.shutdown_grace = millis(v)?, |c| c.shutdown_grace.as_millis().to_string()),
    setting!("demo", "AO_DEMO", Some(Flag::Sets("no-demo", "0")), "1",
        "serve the web demo at `/`",
        |c, v| c.demo = boolean(v)?, |c| c.demo.to_string()),
    setting!("web_dir", "AO_WEB_DIR", None, "",
        "serve the web demo from this directory (a build of `web/`) instead of the copy built into the binary",
        |c, v| c.web_dir = optional_path(v), |c| show_path(&c.web_dir)),
    setting!("mongodb_url", "AO_MONGODB_URL", None, "",
        "keep accounts in MongoDB",
        |c, v| c.mongodb_url = optional(v), |c| c.mongodb_url.as_deref().map(redact_url).unwrap_or_default()),
    setting!("mongodb_db", "AO_MONGODB_DB", None, "account",
        "MongoDB database of the accounts",
        |c, v| c.mongodb_db = v.to_owned(), |c| c.mongodb_db.clone()),
    setting!("redis_url", "AO_REDIS_URL", None, "",
        "run as one node of a cluster sharing this Redis (see docs/CLUSTER.md)",
        |c, v| c.redis_url = optional(v), |c| c.redis_url.as_deref().map(redact_url).unwrap_or_default()),
    setting!("redis_prefix", "AO_REDIS_PREFIX", None, "",
        "prefix of every Redis key and channel (several deployments on one Redis)",
        |c, v| c.redis_prefix = v.to_owned(), |c| c.redis_prefix.clone()),
    setting!("redis_cluster", "AO_REDIS_CLUSTER", None, "0",
        "the URL names a Redis Cluster node (also implied by `redis-cluster://`)",
        |c, v| c.redis_cluster = boolean(v)?, |c| c.redis_cluster.to_string()),
    setting!("redis_ca", "AO_REDIS_CA", None, "",
        "with a `rediss://` URL: PEM file of the certificate authorities to trust for Redis's certificate, besides the system's",
        |c, v| c.redis_ca = optional_path(v), |c| show_path(&c.redis_ca)),
    setting!("node_ttl_ms", "AO_NODE_TTL_MS", None, "10000",
        "lifetime of a node's heartbeat; a dead node's members are removed within 2 × this; at least 500",
        |c, v| c.node_ttl = millis(v)?, |c| c.node_ttl.as_millis().to_string()),
];

/// The setting with file key `key`.
pub(super) fn by_key(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// The Markdown table of every setting, as docs/OPERATIONS.md holds it.
#[cfg(test)]
pub(super) fn markdown_table() -> String {
    let mut out = String::from(
        "| environment | file key | flag | default | meaning |\n| --- | --- | --- | --- | --- |\n",
    );
    for s in SETTINGS {
        let flag = match s.flag {
            Some(Flag::Value(name) | Flag::Sets(name, _)) => format!("`--{name}`"),
            None => String::new(),
        };
        let default = if s.default.is_empty() {
            "none".to_owned()
        } else {
            format!("`{}`", s.default)
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {flag} | {default} | {} |\n",
            s.env, s.key, s.meaning
        ));
    }
    out
}

/// Values given as command-line flags (highest precedence), and the
/// config file named by `--config`.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    /// The TOML config file.
    pub config: Option<PathBuf>,
    /// (file key, text) of each setting given as a flag.
    pub values: Vec<(&'static str, String)>,
}

impl Flags {
    /// Flags with these (file key, text) values (for tests and embedders).
    pub fn with(values: &[(&'static str, &str)]) -> Self {
        Flags {
            config: None,
            values: values.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        }
    }
}

impl clap::FromArgMatches for Flags {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = Flags {
            config: m.get_one::<PathBuf>("config").cloned(),
            values: Vec::new(),
        };
        for s in SETTINGS {
            match s.flag {
                Some(Flag::Value(_)) => {
                    if let Some(v) = m.get_one::<String>(s.key) {
                        flags.values.push((s.key, v.clone()));
                    }
                }
                Some(Flag::Sets(_, text)) if m.get_flag(s.key) => {
                    flags.values.push((s.key, text.to_owned()));
                }
                Some(Flag::Sets(..)) | None => {}
            }
        }
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for Flags {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let mut cmd = cmd.arg(
            clap::Arg::new("config")
                .long("config")
                .global(true)
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("TOML config file (keys: the environment names without AO_, in lower case)"),
        );
        for s in SETTINGS {
            let help = if s.default.is_empty() {
                format!("{} [{}]", s.meaning, s.env)
            } else {
                format!("{} [{}; default: {}]", s.meaning, s.env, s.default)
            };
            cmd = match s.flag {
                Some(Flag::Value(name)) => cmd.arg(
                    clap::Arg::new(s.key)
                        .long(name)
                        .global(true)
                        .value_name(s.env.trim_start_matches("AO_"))
                        .help(help),
                ),
                Some(Flag::Sets(name, text)) => cmd.arg(
                    clap::Arg::new(s.key)
                        .long(name)
                        .global(true)
                        .action(clap::ArgAction::SetTrue)
                        .help(format!(
                            "turns {}: {} [{}={text}]",
                            if text == "0" { "off" } else { "on" },
                            s.meaning,
                            s.env
                        )),
                ),
                None => cmd,
            };
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}
