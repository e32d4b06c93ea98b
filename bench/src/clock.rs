//! Wall-clock timestamps in nanoseconds since the Unix epoch, read from a
//! monotonic clock so that they never go backwards within the process.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn base() -> &'static (Instant, u64) {
    static BASE: OnceLock<(Instant, u64)> = OnceLock::new();
    BASE.get_or_init(|| {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        (Instant::now(), unix)
    })
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> u64 {
    at_ns(Instant::now())
}

/// Nanoseconds since the Unix epoch at `at`.
pub fn at_ns(at: Instant) -> u64 {
    let (i0, u0) = *base();
    match at.checked_duration_since(i0) {
        Some(d) => u0 + d.as_nanos() as u64,
        None => u0.saturating_sub(i0.duration_since(at).as_nanos() as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn is_monotonic_and_unix_based() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        // Unix time in ns has 19 digits from 2001 to 2286.
        assert_eq!(a.to_string().len(), 19);
        let later = Instant::now() + Duration::from_millis(5);
        assert!(at_ns(later) >= b + 4_000_000);
    }
}
