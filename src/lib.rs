//! Always Online: a realtime message-sync server speaking socket.io,
//! compatible with clients of the original Node.js service.
//!
//! # Layout
//!
//! The crate is the `always-online` command's server, laid out by concern
//! (docs/ARCHITECTURE.md has the whole module map and one message's path):
//!
//! - [`app`] builds everything from a [`Config`] and runs it until
//!   shutdown; [`config`] reads the settings (defaults < file < environment
//!   < flags), each declared once.
//! - `realtime` is the socket.io side: one session task per connection
//!   runs the client's events (`authenticate`, `join`, `msg`, `sync`,
//!   `leave`) in the order sent; `protocol` is the wire format.
//! - [`store`] keeps each room's history: the embedded store (a commit log
//!   in front of SQLite) on one node, the original service's Redis layout
//!   in a cluster; [`accounts`] keeps users and admins (SQLite, MongoDB or
//!   Redis); [`grants`] reads the room grants of JSON Web Tokens.
//! - [`cluster`] is what nodes share (presence, the connection registry,
//!   rate-limit windows) in this process or in Redis, and room events
//!   across nodes over Redis pub/sub; [`redis`] holds the connections.
//! - `http` serves the admin, accounts, health, metrics and demo routes;
//!   [`tls`], [`logging`] and [`data_dir`] are the process's plumbing.
//!
//! What is public is what the command (`src/main.rs`), the integration
//! tests and the fuzz targets use; everything else is crate-private.

#![deny(unsafe_code)]

pub mod accounts;
pub mod app;
mod client_log;
pub mod cluster;
pub mod config;
pub mod data_dir;
pub mod grants;
mod http;
pub mod logging;
pub mod metrics;
#[allow(unsafe_code)] // sysconf and getrlimit: what /proc does not say
mod process_metrics;
mod protocol;
mod rate;
mod realtime;
pub mod redis;
mod sqlite;
pub mod store;
mod sync;
pub mod tls;

pub use app::App;
pub use config::Config;
pub use protocol::is_valid_id;

/// The version and the commit it was built from: `0.1.0 (1a2b3c4d5e6f)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("AO_COMMIT"), ")");
