//! A log-linear histogram of `u64` values (latencies in nanoseconds).
//!
//! Values below 64 are counted exactly; above, every power of two is split
//! into 64 equal sub-buckets, so a reported percentile is at most 1/64
//! (≈ 1.6 %) above the true value, over the whole `u64` range, in 3,776
//! counters. [`AtomicHistogram`] is the lock-free recording side shared by
//! many connection tasks; [`Histogram`] is a snapshot to query and merge.
//! Hand-written rather than the hdrhistogram crate: recording from many
//! tasks needs an atomic variant, and this is all of it in a page.

use std::sync::atomic::{AtomicU64, Ordering};

const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// Number of counters: 64 exact values, then 64 sub-buckets for each of the
/// 58 remaining powers of two.
pub const BUCKETS: usize = SUB + (64 - SUB_BITS as usize) * SUB;

/// The counter a value falls in.
fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = exp - SUB_BITS;
    let sub = (v >> shift) as usize - SUB;
    SUB + shift as usize * SUB + sub
}

/// The largest value that falls in counter `idx`.
fn highest_in(idx: usize) -> u64 {
    if idx < SUB {
        return idx as u64;
    }
    let shift = ((idx - SUB) / SUB) as u32;
    let sub = ((idx - SUB) % SUB) as u64;
    let low = (SUB as u64 + sub) << shift;
    low + ((1u64 << shift) - 1)
}

/// A histogram snapshot: counts, exact min, max and mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    /// Counts one value.
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    /// Adds every value counted by `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// How many values were counted.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The smallest value counted (0 when empty).
    pub fn min(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            self.min
        }
    }

    /// The largest value counted (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The mean (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at quantile `q` (0.99 for p99): the smallest recorded
    /// bucket bound such that at least `q` of the values are at or below it,
    /// clamped to the exact min and max. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (idx, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return highest_in(idx).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

/// The recording side: lock-free, shared by reference between tasks.
#[derive(Debug)]
pub struct AtomicHistogram {
    counts: Box<[AtomicU64]>,
    total: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    sum: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl AtomicHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts one value.
    pub fn record(&self, v: u64) {
        self.counts[index(v)].fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        self.min.fetch_min(v, Ordering::Relaxed);
        self.max.fetch_max(v, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
    }

    /// A copy of the current counts (not atomic as a whole; take it once
    /// recording has stopped).
    pub fn snapshot(&self) -> Histogram {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        Histogram {
            total: counts.iter().sum(),
            counts,
            min: self.min.load(Ordering::Relaxed),
            max: self.max.load(Ordering::Relaxed),
            sum: u128::from(self.sum.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_bounded() {
        let mut prev = 0usize;
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS, "{v} -> {i}");
            assert!(i >= prev || v > 100_000, "index not monotonic at {v}");
            assert!(highest_in(i) >= v, "bucket bound below value {v}");
            if v >= SUB as u64 {
                let err = (highest_in(i) - v) as f64 / v as f64;
                assert!(err <= 1.0 / SUB as f64, "error {err} at {v}");
            }
            prev = i;
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        assert_eq!(highest_in(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 1..=10 {
            h.record(v);
        }
        assert_eq!(h.count(), 10);
        assert_eq!(h.quantile(0.5), 5);
        assert_eq!(h.quantile(0.9), 9);
        assert_eq!(h.quantile(0.99), 10);
        assert_eq!(h.quantile(1.0), 10);
        assert_eq!(h.quantile(0.0), 1);
        assert_eq!((h.min(), h.max()), (1, 10));
        assert!((h.mean() - 5.5).abs() < 1e-9);
    }

    #[test]
    fn percentiles_of_a_uniform_spread_are_within_the_error_bound() {
        // 1..=100_000 µs in ns: p50 = 50 ms, p90 = 90 ms, p99 = 99 ms.
        let mut h = Histogram::new();
        for us in 1..=100_000u64 {
            h.record(us * 1_000);
        }
        for (q, exact) in [(0.5, 50_000_000u64), (0.9, 90_000_000), (0.99, 99_000_000)] {
            let got = h.quantile(q);
            assert!(got >= exact, "p{q}: {got} < {exact}");
            assert!(
                (got - exact) as f64 / exact as f64 <= 1.0 / 64.0,
                "p{q}: {got} too far from {exact}"
            );
        }
        assert_eq!(h.quantile(1.0), 100_000_000);
        assert_eq!(h.max(), 100_000_000);
    }

    #[test]
    fn a_tail_shows_in_p99_not_p50() {
        let mut h = Histogram::new();
        for _ in 0..985 {
            h.record(1_000_000); // 1 ms
        }
        for _ in 0..15 {
            h.record(250_000_000); // 250 ms
        }
        assert!(h.quantile(0.5) < 1_020_000);
        assert!(h.quantile(0.98) < 1_020_000);
        assert!(h.quantile(0.99) >= 250_000_000);
        assert_eq!(h.max(), 250_000_000);
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let h = Histogram::new();
        assert_eq!(
            (h.count(), h.quantile(0.99), h.min(), h.max()),
            (0, 0, 0, 0)
        );
        assert_eq!(h.mean(), 0.0);
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record(10);
        b.record(1_000_000);
        b.record(5);
        a.merge(&b);
        assert_eq!((a.count(), a.min(), a.max()), (3, 5, 1_000_000));
        assert_eq!(a.quantile(0.5), 10);
    }

    #[test]
    fn atomic_snapshot_matches_plain_recording() {
        let atomic = AtomicHistogram::new();
        let mut plain = Histogram::new();
        for v in [0u64, 3, 64, 65, 1_000, 123_456_789, 7] {
            atomic.record(v);
            plain.record(v);
        }
        assert_eq!(atomic.snapshot(), plain);
    }

    #[test]
    fn atomic_recording_from_threads() {
        let h = std::sync::Arc::new(AtomicHistogram::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for v in 0..1_000u64 {
                        h.record(v + t);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let s = h.snapshot();
        assert_eq!((s.count(), s.min(), s.max()), (4_000, 0, 1_002));
    }
}
