//! The commit-log figures the suite compares: how long each group commit's
//! write and `fdatasync` took (`ao_store_log_sync_seconds`, a histogram)
//! and how many groups the disk held back longer than [`STALL`]
//! (`ao_store_log_stalls_total`). The durable floor exposes them under the
//! same names ([`LogStats`], rendered by prometheus-client as the server's
//! metrics are); [`LogFigures::parse`] reads them from either `/metrics`
//! page, and a server that does not expose them reads as `None`.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// A group commit held back longer than this is a stall (the server logs
/// such a write as a slow commit log write).
pub const STALL: Duration = Duration::from_millis(50);
/// The histogram of group-commit write + sync durations, seconds.
pub const SYNC_SECONDS: &str = "ao_store_log_sync_seconds";
/// The counter of stalled group commits.
pub const STALLS_TOTAL: &str = "ao_store_log_stalls_total";

/// The durable floor's commit-log metrics.
pub struct LogStats {
    registry: Registry,
    syncs: Histogram,
    stalls: Counter,
}

impl Default for LogStats {
    fn default() -> Self {
        Self::new()
    }
}

impl LogStats {
    /// Registers both metrics under the server's names (0.1 ms to 3.3 s
    /// buckets, as the server's store histograms).
    pub fn new() -> Self {
        let mut root = Registry::default();
        let syncs = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let stalls = Counter::default();
        let registry = root.sub_registry_with_prefix("ao");
        registry.register_with_unit(
            "store_log_sync",
            "Durations of group commits (write and fdatasync)",
            Unit::Seconds,
            syncs.clone(),
        );
        registry.register(
            "store_log_stalls",
            "Group commits held back longer than 50 ms",
            stalls.clone(),
        );
        Self {
            registry: root,
            syncs,
            stalls,
        }
    }

    /// Counts one group commit that took `took`.
    pub fn record(&self, took: Duration) {
        self.syncs.observe(took.as_secs_f64());
        if took >= STALL {
            self.stalls.inc();
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// A histogram read from a `/metrics` page: cumulative counts per upper
/// bound (seconds), ascending, the last one `+Inf`.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
    /// (upper bound, observations at or below it).
    pub cumulative: Vec<(f64, u64)>,
}

impl Buckets {
    /// Observations counted.
    pub fn count(&self) -> u64 {
        self.cumulative.last().map_or(0, |b| b.1)
    }

    /// What was observed after `before` (same buckets).
    pub fn since(&self, before: &Buckets) -> Buckets {
        let cumulative = self
            .cumulative
            .iter()
            .map(|&(le, n)| {
                let earlier = before
                    .cumulative
                    .iter()
                    .find(|b| b.0 == le)
                    .map_or(0, |b| b.1);
                (le, n.saturating_sub(earlier))
            })
            .collect();
        Buckets { cumulative }
    }

    /// The `q` quantile in seconds, interpolated linearly within its bucket
    /// as Prometheus' `histogram_quantile` does; the highest finite bound
    /// when it falls in `+Inf`; `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut lower = (0.0, 0u64);
        for &(le, n) in &self.cumulative {
            if n as f64 >= rank && n > lower.1 {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let within = (rank - lower.1 as f64) / (n - lower.1) as f64;
                return Some(lower.0 + (le - lower.0) * within);
            }
            lower = (le, n);
        }
        Some(lower.0)
    }
}

/// The commit-log figures of one `/metrics` page, or of the difference
/// between two; `None` where the page does not have the metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogFigures {
    /// Stalled group commits.
    pub stalls: Option<u64>,
    /// Group commit durations.
    pub syncs: Option<Buckets>,
}

impl LogFigures {
    /// Reads both metrics from a Prometheus or OpenMetrics text page,
    /// summing over label sets. Hand-written: two metrics of a page this
    /// process or the server renders, where a parser of the whole format
    /// (and a dependency) would add nothing.
    pub fn parse(text: &str) -> LogFigures {
        let mut stalls = None;
        let mut buckets: Vec<(f64, u64)> = Vec::new();
        let bucket_name = format!("{SYNC_SECONDS}_bucket");
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            // OpenMetrics may add a timestamp after the value: not here.
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            let Ok(v) = value.trim().parse::<f64>() else {
                continue;
            };
            if name == STALLS_TOTAL {
                *stalls.get_or_insert(0) += v as u64;
            } else if name == bucket_name {
                let Some(le) = label(labels, "le").and_then(|s| match s {
                    "+Inf" | "Inf" => Some(f64::INFINITY),
                    s => s.parse::<f64>().ok(),
                }) else {
                    continue;
                };
                match buckets.iter_mut().find(|b| b.0 == le) {
                    Some(b) => b.1 += v as u64,
                    None => buckets.push((le, v as u64)),
                }
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        LogFigures {
            stalls,
            syncs: (!buckets.is_empty()).then_some(Buckets {
                cumulative: buckets,
            }),
        }
    }

    /// What happened after `before`.
    pub fn since(&self, before: &LogFigures) -> LogFigures {
        LogFigures {
            stalls: self
                .stalls
                .map(|n| n.saturating_sub(before.stalls.unwrap_or(0))),
            syncs: self.syncs.as_ref().map(|s| match &before.syncs {
                Some(b) => s.since(b),
                None => s.clone(),
            }),
        }
    }

    /// Group commit duration at quantile `q`, milliseconds.
    pub fn sync_ms(&self, q: f64) -> Option<f64> {
        self.syncs
            .as_ref()
            .and_then(|s| s.quantile(q))
            .map(|s| s * 1e3)
    }

    /// `stalls N, group commits p50 X ms p99 Y ms (G groups)`, with `n/a`
    /// for what the page did not have.
    pub fn summary(&self) -> String {
        let stalls = self
            .stalls
            .map_or_else(|| "n/a".to_owned(), |n| n.to_string());
        let syncs = match (&self.syncs, self.sync_ms(0.5), self.sync_ms(0.99)) {
            (Some(s), Some(p50), Some(p99)) => format!(
                "group commits p50 {p50:.2} ms p99 {p99:.2} ms ({} groups)",
                s.count()
            ),
            (Some(_), _, _) => "no group commits".to_owned(),
            (None, _, _) => "group commit durations n/a".to_owned(),
        };
        format!("commit stalls (> 50 ms) {stalls}, {syncs}")
    }
}

/// The value of label `key` in `a="1",le="0.5"`.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

/// Reads the commit-log figures from the `/metrics` page at `url`.
pub async fn fetch(client: &reqwest::Client, url: &str) -> crate::Result<LogFigures> {
    let text = client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(LogFigures::parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_page_reads_back() {
        let stats = LogStats::new();
        for ms in [1, 2, 2, 3, 60] {
            stats.record(Duration::from_millis(ms));
        }
        let text = stats.render();
        assert!(text.contains("ao_store_log_sync_seconds_bucket"), "{text}");
        assert!(text.contains("ao_store_log_stalls_total 1"), "{text}");
        let figs = LogFigures::parse(&text);
        assert_eq!(figs.stalls, Some(1));
        let syncs = figs.syncs.as_ref().expect("histogram");
        assert_eq!(syncs.count(), 5);
        let p50 = figs.sync_ms(0.5).expect("p50");
        assert!((1.6..=3.2).contains(&p50), "{p50}");
        let p99 = figs.sync_ms(0.99).expect("p99");
        assert!((51.2..=102.4).contains(&p99), "{p99}");
    }

    #[test]
    fn a_page_without_the_metrics_reads_as_not_available() {
        let figs = LogFigures::parse("# TYPE ao_messages counter\nao_messages_total 5\n");
        assert_eq!(figs, LogFigures::default());
        assert_eq!(
            figs.summary(),
            "commit stalls (> 50 ms) n/a, group commit durations n/a"
        );
    }

    #[test]
    fn differences_and_quantiles() {
        let page = |stalls: u64, b: [u64; 3]| {
            format!(
                "ao_store_log_stalls_total {stalls}\n\
                 ao_store_log_sync_seconds_bucket{{le=\"0.001\"}} {}\n\
                 ao_store_log_sync_seconds_bucket{{le=\"0.002\"}} {}\n\
                 ao_store_log_sync_seconds_bucket{{le=\"+Inf\"}} {}\n\
                 ao_store_log_sync_seconds_count {}\n",
                b[0], b[1], b[2], b[2]
            )
        };
        let before = LogFigures::parse(&page(2, [10, 10, 10]));
        let after = LogFigures::parse(&page(5, [10, 110, 111]));
        let d = after.since(&before);
        assert_eq!(d.stalls, Some(3));
        assert_eq!(d.syncs.as_ref().map(Buckets::count), Some(101));
        // 50 of 101 in (1 ms, 2 ms]: the median halfway through that bucket.
        let p50 = d.sync_ms(0.5).expect("p50");
        assert!((p50 - 1.505).abs() < 0.01, "{p50}");
        // The last observation is past every finite bound.
        assert_eq!(d.sync_ms(1.0), Some(2.0));
        assert_eq!(
            LogFigures::parse(&page(0, [0, 0, 0])).summary(),
            "commit stalls (> 50 ms) 0, no group commits"
        );
    }
}
