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

/// Shows a value's text with its control characters escaped (a newline
/// as `\n`), for log fields that may carry what a client chose (such as
/// the reason a token was refused): a text log line can then never be
/// broken into two, nor a line forged. Plain strings a client sends (uid,
/// roomId, event names) are logged with `?` (quoted and escaped) instead.
pub struct Escaped<T>(pub T);

impl<T: std::fmt::Display> std::fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        for c in self.0.to_string().chars() {
            if c.is_control() {
                for e in c.escape_default() {
                    f.write_char(e)?;
                }
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Escaped;

    #[test]
    fn escaped_text_stays_on_one_line() {
        let shown = Escaped("bad\nINFO forged line\r\t\u{1b}[31m").to_string();
        assert_eq!(shown, "bad\\nINFO forged line\\r\\t\\u{1b}[31m");
        assert_eq!(
            Escaped("sub \"a\" is not 1").to_string(),
            "sub \"a\" is not 1"
        );
    }
}
