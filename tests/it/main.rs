//! The integration tests, one binary with a module per area. Each test
//! starts the real server (in process on ephemeral ports, or the real
//! binary as a child process) with a temporary data directory and talks to
//! it over the network; the cluster tests start private `redis-server`s,
//! the MongoDB account tests a real FerretDB.
//!
//! One area at a time: `cargo test --test it msg::` (or `sync::`,
//! `cluster::`, `api::`...).

// The shared socket.io client trips clippy's result_large_err on
// tungstenite's error type.
#[allow(clippy::result_large_err)]
mod support;

/// The HTTP APIs and the MongoDB account store.
mod api;
/// authenticate: credentials, rate limit, timeouts, kickout on a new login.
mod authenticate;
/// Malformed, oversized and out-of-order input, floods.
mod bad_input;
/// The command line: account commands and configuration errors.
mod cli_config;
/// Several nodes sharing one Redis.
mod cluster;
/// The embedded store's commit log under faults and corruption.
mod commit_log;
/// The embedded store on a disk that fills up.
mod disk_full;
/// Observer (dummy) members.
mod dummy;
/// Acknowledged messages across kill -9, SIGTERM and restarts.
mod durability;
/// Connections that never become useful: deadlines, the pending cap,
/// never-ending bodies.
mod hostile_connections;
/// One attacker against the real binary: what it makes the server hold,
/// and log, while a well-behaved client is served.
mod hostile_memory;
/// join and the presence events around it.
mod join;
/// leave, disconnect and kickout.
mod leave_disconnect_kickout;
/// Rate limits, the room member cap and the byte bounds on what a client
/// makes the server hold.
mod limits;
/// The dashboard and alerting rules against the real /metrics.
mod monitoring;
/// msg: validation, stamping, storage and relay.
mod msg;
/// The private Redis launchers the cluster tests use.
mod redis_launchers;
/// Room grants: JSON Web Tokens, their refusals, rooms and observer claims.
mod room_grants;
/// Sequence numbers, acks and the history epoch.
mod seq_ack_epoch;
/// sync: paging, updates, gzip, read-ahead.
mod sync;
/// Sync pages bounded in bytes, the updates paged.
mod sync_bounds;
/// TLS on both listeners, the certificate reload on SIGHUP, Redis over rediss://.
mod tls;
