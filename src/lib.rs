//! Always Online: a realtime message-sync server speaking socket.io,
//! compatible with clients of the original Node.js service.

pub mod accounts;
pub mod app;
pub mod client_log;
pub mod cluster;
pub mod config;
pub mod data_dir;
pub mod grants;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod process_metrics;
pub mod protocol;
pub mod rate;
pub mod realtime;
pub mod redis;
pub mod sqlite;
pub mod store;
pub mod sync;
pub mod tls;

pub use app::App;
pub use config::Config;

/// The version and the commit it was built from: `0.1.0 (1a2b3c4d5e6f)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("AO_COMMIT"), ")");
