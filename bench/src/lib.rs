//! `ao-bench`: the load generator, the floor relay and the benchmark suite
//! of Always Online. See `bench/README.md`.

pub mod by_crate;
pub mod client;
pub mod clock;
pub mod disk_probe;
pub mod engineio;
pub mod floor;
pub mod histogram;
pub mod log_metrics;
pub mod payload;
pub mod proc_stats;
pub mod scenarios;
pub mod stalls;
pub mod suite;

/// Any error, with a message fit to print.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Result with [`BoxError`].
pub type Result<T> = std::result::Result<T, BoxError>;
