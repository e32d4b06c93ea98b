//! Log output: human text by default, JSON lines with `--log-format json`;
//! the level comes from `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; logs go to stderr so stdout stays clean
/// for commands that print a token.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // The websocket libraries log whole frames at trace level, and frames
    // carry tokens: keep them quiet whatever RUST_LOG says.
    let filter = ["tungstenite=info", "tokio_tungstenite=info"]
        .iter()
        .filter_map(|d| d.parse().ok())
        .fold(filter, EnvFilter::add_directive);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
