//! What the server keeps per client address while it holds connections:
//! their number and its handshake allowance (a token bucket).
//!
//! An entry lives as long as its address holds a connection, so the table
//! is bounded by the connections. An address whose connections all ended
//! starts again with a full burst, which keeps the bound: whatever the
//! address holds at any moment was admitted since its entry was made, and
//! within the last session lifetime, so it is at most the burst and the
//! rate over one lifetime.

use std::time::{Duration, Instant};

/// A per-address handshake rate: `per_second` once `burst` is used.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HandshakeRate {
    per_second: f64,
    burst: f64,
}

impl HandshakeRate {
    /// `rate` per second after `burst` at once (0: one second's worth);
    /// `None` for a rate of 0 (no limit).
    pub(crate) fn new(rate: u32, burst: u32) -> Option<HandshakeRate> {
        (rate > 0).then(|| HandshakeRate {
            per_second: f64::from(rate),
            burst: f64::from(if burst == 0 { rate } else { burst }),
        })
    }
}

/// One client address.
#[derive(Debug)]
pub(crate) struct Address {
    /// Connections it holds (admitted and not yet released).
    pub(crate) connections: usize,
    tokens: f64,
    last: Instant,
}

impl Address {
    /// An address that holds nothing yet, with its whole burst.
    pub(crate) fn new(rate: Option<HandshakeRate>, now: Instant) -> Address {
        Address {
            connections: 0,
            tokens: rate.map_or(0.0, |r| r.burst),
            last: now,
        }
    }

    /// Takes one handshake from the allowance, or tells how long until
    /// there is one.
    pub(crate) fn take(&mut self, rate: HandshakeRate, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / rate.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_has_its_burst_then_its_rate() {
        let rate = HandshakeRate::new(10, 3).expect("a rate");
        let t0 = Instant::now();
        let mut a = Address::new(Some(rate), t0);
        for _ in 0..3 {
            assert_eq!(a.take(rate, t0), Ok(()));
        }
        let wait = a.take(rate, t0).expect_err("burst used");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert_eq!(a.take(rate, t0 + Duration::from_millis(101)), Ok(()));
        assert!(a.take(rate, t0 + Duration::from_millis(101)).is_err());
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(a.take(rate, later), Ok(()));
        }
        assert!(a.take(rate, later).is_err(), "never more than the burst");
        assert!(HandshakeRate::new(0, 5).is_none());
        assert_eq!(HandshakeRate::new(7, 0).map(|r| r.burst), Some(7.0));
    }
}
