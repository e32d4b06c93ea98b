//! Rate limits: a token bucket, and a set of them keyed by room or client
//! address whose idle entries are evicted, so that what a stream of
//! distinct keys makes the server hold stays bounded.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `burst` tokens at most, refilled at `rate` per `per`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

/// How fast a [`Bucket`] refills and how much it holds.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Tokens added per second.
    pub per_second: f64,
    /// Tokens the bucket holds at most.
    pub burst: f64,
}

impl Limit {
    /// `rate` per second with `burst` at once (0: one second's worth);
    /// `None` when `rate` is 0 (no limit).
    pub fn per_second(rate: u32, burst: u32) -> Option<Limit> {
        (rate > 0).then(|| Limit {
            per_second: f64::from(rate),
            burst: f64::from(if burst == 0 { rate } else { burst }),
        })
    }

    /// `count` per minute, all of which may be used at once; `None` for 0.
    pub fn per_minute(count: u32) -> Option<Limit> {
        (count > 0).then(|| Limit {
            per_second: f64::from(count) / 60.0,
            burst: f64::from(count),
        })
    }

    /// How long an empty bucket takes to hold one token again.
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.per_second)
    }
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn full(limit: Limit, now: Instant) -> Bucket {
        Bucket {
            tokens: limit.burst,
            last: now,
        }
    }

    fn refill(&mut self, limit: Limit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.per_second).min(limit.burst);
        self.last = now;
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, limit: Limit, now: Instant) -> bool {
        self.refill(limit, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether a token is there, without taking it.
    pub(crate) fn has_token(&mut self, limit: Limit, now: Instant) -> bool {
        self.refill(limit, now);
        self.tokens >= 1.0
    }

    /// Whether the bucket refilled completely (it can be forgotten).
    fn is_full(&mut self, limit: Limit, now: Instant) -> bool {
        self.refill(limit, now);
        self.tokens >= limit.burst
    }
}

/// Buckets keyed by room or address. An entry whose bucket refilled
/// completely is the same as no entry, so such entries are swept out
/// whenever the map doubled since the last sweep: memory follows the keys
/// that were active within one refill time, not every key ever seen.
pub(crate) struct Keyed<K> {
    limit: Limit,
    state: Mutex<KeyedState<K>>,
}

struct KeyedState<K> {
    buckets: HashMap<K, Bucket>,
    /// Entries after the last sweep (the next sweep comes at twice as many).
    swept_to: usize,
}

/// Entries below which no sweep runs.
const SWEEP_FLOOR: usize = 1024;

impl<K: Hash + Eq + Clone> Keyed<K> {
    /// Buckets with `limit`.
    pub(crate) fn new(limit: Limit) -> Self {
        Keyed {
            limit,
            state: Mutex::new(KeyedState {
                buckets: HashMap::new(),
                swept_to: 0,
            }),
        }
    }

    /// The limit of every bucket.
    pub(crate) fn limit(&self) -> Limit {
        self.limit
    }

    /// Takes a token from `key`'s bucket if there is one.
    pub(crate) fn take(&self, key: &K) -> bool {
        self.with(key, |b, limit, now| b.take(limit, now))
    }

    /// Whether `key`'s bucket has a token, without taking it.
    pub(crate) fn allows(&self, key: &K) -> bool {
        let now = Instant::now();
        let mut state = crate::sync::lock(&self.state);
        match state.buckets.get_mut(key) {
            Some(b) => b.has_token(self.limit, now),
            None => true,
        }
    }

    /// Keys tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        crate::sync::lock(&self.state).buckets.len()
    }

    fn with<T>(&self, key: &K, f: impl FnOnce(&mut Bucket, Limit, Instant) -> T) -> T {
        let now = Instant::now();
        let limit = self.limit;
        let mut state = crate::sync::lock(&self.state);
        if state.buckets.len() >= SWEEP_FLOOR.max(state.swept_to.saturating_mul(2)) {
            state.buckets.retain(|_, b| !b.is_full(limit, now));
            state.swept_to = state.buckets.len();
        }
        let bucket = state
            .buckets
            .entry(key.clone())
            .or_insert_with(|| Bucket::full(limit, now));
        f(bucket, limit, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limit = Limit::per_second(10, 3).expect("limit");
        let t0 = Instant::now();
        let mut b = Bucket::full(limit, t0);
        assert!(b.take(limit, t0));
        assert!(b.take(limit, t0));
        assert!(b.take(limit, t0));
        assert!(!b.take(limit, t0), "burst used up");
        assert!(!b.take(limit, t0 + Duration::from_millis(50)));
        assert!(b.take(limit, t0 + Duration::from_millis(150)), "refilled");
        assert!(!b.take(limit, t0 + Duration::from_millis(150)));
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.take(limit, later));
        }
        assert!(!b.take(limit, later), "never more than the burst");
    }

    #[test]
    fn no_rate_is_no_limit_and_burst_defaults_to_one_second() {
        assert!(Limit::per_second(0, 5).is_none());
        assert_eq!(Limit::per_second(7, 0).map(|l| l.burst), Some(7.0));
        assert!(Limit::per_minute(0).is_none());
        let l = Limit::per_minute(6).expect("limit");
        assert_eq!(l.retry_after(), Duration::from_secs(10));
    }

    #[test]
    fn keyed_buckets_are_separate_and_idle_ones_are_swept() {
        let k = Keyed::new(Limit::per_second(1000, 1).expect("limit"));
        let key = |s: &str| s.to_owned();
        assert!(k.take(&key("a")));
        assert!(!k.take(&key("a")));
        assert!(k.take(&key("b")));
        assert!(!k.allows(&key("a")));
        assert!(k.allows(&key("c")), "an unknown key has its whole burst");
        std::thread::sleep(Duration::from_millis(5));
        for i in 0..(SWEEP_FLOOR * 4) {
            k.take(&i.to_string());
            std::thread::sleep(Duration::from_micros(2));
        }
        assert!(
            k.tracked() < SWEEP_FLOOR * 3,
            "refilled entries are swept: {}",
            k.tracked()
        );
    }
}
