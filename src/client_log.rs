//! What a client can put in the logs, kept small: the strings it chose
//! are clipped ([`Clipped`]) and its repeated refusals are summed up once
//! per interval ([`Refusals`]). Tokens are never logged at all.

use std::fmt::{self, Display, Write as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most bytes of a client's string a log line shows.
pub(crate) const MAX_LOGGED_BYTES: usize = 256;

/// How often a connection's refusals are logged at most.
pub(crate) const REFUSALS_INTERVAL: Duration = Duration::from_secs(10);

/// A value whose text a client chose (an event name, a uid, a room id,
/// the reason a token was refused), cut after [`MAX_LOGGED_BYTES`], marked
/// `…(+N bytes)`. Shown with `%` (Display) its control characters are
/// escaped (a newline as `\n`, so a text log line can never be broken or
/// forged); with `?` (Debug) it is also quoted, as a JSON-like string, so
/// that log readers can tell where it starts and ends.
pub(crate) struct Clipped<T>(pub T);

impl<T: Display> Clipped<T> {
    /// The value's text, and how many bytes of it are shown.
    fn clip(&self) -> (String, usize) {
        let text = self.0.to_string();
        let mut end = text.len().min(MAX_LOGGED_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        (text, end)
    }
}

fn write_cut(f: &mut fmt::Formatter<'_>, text: &str, end: usize) -> fmt::Result {
    if end < text.len() {
        write!(f, "…(+{} bytes)", text.len() - end)?;
    }
    Ok(())
}

impl<T: Display> Display for Clipped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (text, end) = self.clip();
        for c in text[..end].chars() {
            if c.is_control() {
                for e in c.escape_default() {
                    f.write_char(e)?;
                }
            } else {
                f.write_char(c)?;
            }
        }
        write_cut(f, &text, end)
    }
}

impl<T: Display> fmt::Debug for Clipped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (text, end) = self.clip();
        fmt::Debug::fmt(&text[..end], f)?;
        write_cut(f, &text, end)
    }
}

/// A connection's refusals, logged at most once per
/// [`REFUSALS_INTERVAL`]: the first at once, the ones after it counted and
/// logged with their count when a refusal comes after the interval, or
/// when the connection ends ([`Refusals::flush`]). Nothing is allocated
/// until the first refusal.
#[derive(Default)]
pub(crate) struct Refusals(Mutex<Option<Box<Window>>>);

struct Window {
    started: Instant,
    /// Refusals since `started` not logged yet.
    count: u64,
    last: &'static str,
}

impl Refusals {
    /// Records a refusal of connection `sid` for `why`.
    pub(crate) fn refused(&self, sid: &str, why: &'static str) {
        let now = Instant::now();
        let mut window = crate::sync::lock(&self.0);
        match window.as_mut() {
            None => {
                tracing::info!(%sid, reason = why, "refused");
                *window = Some(Box::new(Window {
                    started: now,
                    count: 0,
                    last: why,
                }));
            }
            Some(w) => {
                w.count += 1;
                w.last = why;
                if now.duration_since(w.started) >= REFUSALS_INTERVAL {
                    log(sid, w, now);
                    w.started = now;
                    w.count = 0;
                }
            }
        }
    }

    /// Logs the refusals not logged yet (the connection ends).
    pub(crate) fn flush(&self, sid: &str) {
        if let Some(w) = crate::sync::lock(&self.0).take() {
            if w.count > 0 {
                log(sid, &w, Instant::now());
            }
        }
    }
}

fn log(sid: &str, w: &Window, now: Instant) {
    let secs = now.duration_since(w.started).as_secs().max(1);
    tracing::info!(
        %sid,
        refused = w.count,
        seconds = secs,
        reason = w.last,
        "refused {} events in the last {} s: {}",
        w.count,
        secs,
        w.last
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipped_text_stays_short_and_on_one_line() {
        let shown = Clipped("bad\nINFO forged line\r\t\u{1b}[31m").to_string();
        assert_eq!(shown, "bad\\nINFO forged line\\r\\t\\u{1b}[31m");
        assert_eq!(
            Clipped("sub \"a\" is not 1").to_string(),
            "sub \"a\" is not 1"
        );
        let long = "x".repeat(1_000_000);
        assert_eq!(
            Clipped(&long).to_string(),
            format!("{}…(+{} bytes)", "x".repeat(256), 1_000_000 - 256)
        );
        // Cut on a character boundary.
        let wide = "é".repeat(200);
        let shown = Clipped(&wide).to_string();
        assert!(shown.starts_with(&"é".repeat(128)), "{shown}");
        assert!(shown.ends_with("…(+144 bytes)"), "{shown}");
    }

    #[test]
    fn clipped_values_are_quoted_when_debug_formatted() {
        assert_eq!(format!("{:?}", Clipped("a\"b\n")), r#""a\"b\n""#);
        let long = format!("{:?}", Clipped("x".repeat(300)));
        assert!(
            long.starts_with(&format!("\"{}\"", "x".repeat(256))),
            "{long}"
        );
        assert!(long.ends_with("…(+44 bytes)"), "{long}");
    }

    #[test]
    fn refusals_are_counted_between_log_lines() {
        let r = Refusals::default();
        r.refused("s", "a");
        for _ in 0..1000 {
            r.refused("s", "b");
        }
        let w = crate::sync::lock(&r.0);
        let w = w.as_ref().expect("a window");
        assert_eq!((w.count, w.last), (1000, "b"));
    }
}
