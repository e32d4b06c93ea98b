//! The servers' memory and open files over a soak run: samples, and the
//! trend fitted to them after the warm-up.

use crate::proc_stats;

/// One sample of one server process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the start.
    pub t: f64,
    /// Resident memory, bytes.
    pub rss: u64,
    /// Open file descriptors.
    pub fds: u64,
}

/// How one figure of one process went over the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// At the end of the warm-up (the first sample at or after it).
    pub warm: f64,
    /// At the end (the last sample).
    pub end: f64,
    /// The highest sample.
    pub max: f64,
    /// end − warm.
    pub growth: f64,
    /// The growth per hour from warm to end.
    pub per_hour: f64,
    /// The least-squares slope per hour of the samples after the warm-up.
    pub slope_per_hour: f64,
}

/// The trend of `value` over `samples` from `warmup_s` on.
pub fn trend(samples: &[Sample], warmup_s: f64, value: impl Fn(&Sample) -> f64) -> Option<Trend> {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.t >= warmup_s).collect();
    let (first, last) = (after.first()?, after.last()?);
    let (warm, end) = (value(first), value(last));
    let hours = (last.t - first.t) / 3600.0;
    let max = samples.iter().map(&value).fold(f64::MIN, f64::max);
    let n = after.len() as f64;
    let mt = after.iter().map(|s| s.t).sum::<f64>() / n;
    let mv = after.iter().map(|s| value(s)).sum::<f64>() / n;
    let num: f64 = after.iter().map(|s| (s.t - mt) * (value(s) - mv)).sum();
    let den: f64 = after.iter().map(|s| (s.t - mt).powi(2)).sum();
    Some(Trend {
        warm,
        end,
        max,
        growth: end - warm,
        per_hour: if hours > 0.0 {
            (end - warm) / hours
        } else {
            0.0
        },
        slope_per_hour: if den > 0.0 { num / den * 3600.0 } else { 0.0 },
    })
}

pub(super) fn sample_all(pids: &[u32], t: f64) -> Vec<Option<Sample>> {
    pids.iter()
        .map(|&pid| {
            Some(Sample {
                t,
                rss: proc_stats::rss_bytes(pid).ok()?,
                fds: proc_stats::open_files(pid).ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trend_after_warmup() {
        let s = |t: f64, rss: u64| Sample { t, rss, fds: 10 };
        let samples = [
            s(0.0, 50),
            s(10.0, 100),
            s(20.0, 100),
            s(1820.0, 110),
            s(3620.0, 120),
        ];
        let t = trend(&samples, 15.0, |x| x.rss as f64).expect("trend");
        assert_eq!(
            (t.warm, t.end, t.max, t.growth),
            (100.0, 120.0, 120.0, 20.0)
        );
        assert!((t.per_hour - 20.0).abs() < 1e-9);
        assert!((t.slope_per_hour - 20.0).abs() < 0.1);
        assert!(trend(&samples, 4000.0, |x| x.rss as f64).is_none());
    }
}
