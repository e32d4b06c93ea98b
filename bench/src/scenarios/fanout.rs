//! fanout (and cluster): R rooms × M members all sending `msg` at a fixed
//! aggregate rate; deliveries, latency, and the server's CPU, memory and,
//! for stored messages, disk writes.
//! `--find-max` raises the rate until the server falls behind.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep, sleep_until, Instant};

use super::fleet::{Command, Fleet, Layout, Step, StepStats};
use crate::engineio::Eio;
use crate::histogram::Histogram;
use crate::payload::MsgTemplate;
use crate::{clock, proc_stats, Result};

/// Settings of a fanout run.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    /// Server addresses; members are spread round-robin (one for fanout).
    pub nodes: Vec<String>,
    /// Protocol generation.
    pub eio: Eio,
    /// Number of rooms.
    pub rooms: usize,
    /// Members per room (each one sends, each one receives the others').
    pub members: usize,
    /// Aggregate messages per second.
    pub rate: f64,
    /// Frame size of a sent `msg`, bytes.
    pub size: usize,
    /// Storage mode of the messages (2 ignore, 0 insert, 1 update).
    pub storage: u8,
    /// Sending before the measured window.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// How long to wait for late deliveries after the window.
    pub drain: Duration,
    /// Server processes whose CPU and memory to read.
    pub server_pids: Vec<u32>,
    /// Concurrent connection set-ups.
    pub concurrency: usize,
}

/// The pass criteria of a find-max step.
#[derive(Debug, Clone, Copy)]
pub struct Criteria {
    /// Highest acceptable p99 latency.
    pub max_p99: Duration,
    /// Lowest acceptable fraction of expected deliveries.
    pub min_delivery: f64,
    /// Lowest acceptable fraction of the target rate actually sent.
    pub min_sent: f64,
}

impl Default for Criteria {
    fn default() -> Self {
        Self {
            max_p99: Duration::from_millis(100),
            min_delivery: 0.999,
            min_sent: 0.97,
        }
    }
}

/// How find-max searches.
#[derive(Debug, Clone, Copy)]
pub struct FindMax {
    /// Multiply the rate by this after a good step, until a step fails.
    pub factor: f64,
    /// Bisection steps between the last good and the first bad rate.
    pub refine: usize,
    /// At most this many steps in all.
    pub max_steps: usize,
    /// Runs of a failing step again before it counts as failed (unless it
    /// lost connections).
    pub retries: usize,
    /// Pass criteria.
    pub criteria: Criteria,
}

/// What one step measured.
#[derive(Debug, Clone)]
pub struct StepResult {
    /// Target aggregate rate, msg/s.
    pub rate: f64,
    /// Storage mode of the messages sent (2 ignore, 0 insert, 1 update).
    pub storage: u8,
    /// Measured window, seconds.
    pub window_s: f64,
    /// Messages sent in the window.
    pub sent: u64,
    /// Deliveries expected: sent × (members − 1).
    pub expected: u64,
    /// Deliveries received (of messages sent in the window).
    pub received: u64,
    /// Receive latency, ns.
    pub latency: Histogram,
    /// Lateness of sends against the schedule, ns.
    pub send_lag: Histogram,
    /// Server CPU seconds during the window (all `server_pids`).
    pub server_cpu_s: Option<f64>,
    /// Bytes the server processes caused to be written to storage during
    /// the window (`write_bytes` of `/proc/PID/io`).
    pub server_write_bytes: Option<u64>,
    /// Server RSS at the end of the window, bytes.
    pub server_rss: Option<u64>,
    /// This load generator's CPU seconds during the window.
    pub loadgen_cpu_s: Option<f64>,
    /// CPU seconds every other process on the machine used during the
    /// window: on a shared machine, what the figures competed with.
    pub others_cpu_s: Option<f64>,
    /// Connections lost so far.
    pub lost_conns: u64,
}

impl StepResult {
    /// Messages actually sent per second in the window.
    pub fn sent_rate(&self) -> f64 {
        self.sent as f64 / self.window_s
    }

    /// Deliveries per second.
    pub fn delivered_rate(&self) -> f64 {
        self.received as f64 / self.window_s
    }

    /// Fraction of expected deliveries received (1 when nothing was expected).
    pub fn delivery_ratio(&self) -> f64 {
        if self.expected == 0 {
            1.0
        } else {
            self.received as f64 / self.expected as f64
        }
    }

    /// Deliveries per server CPU-second.
    pub fn deliveries_per_cpu_s(&self) -> Option<f64> {
        self.server_cpu_s
            .filter(|&c| c > 0.0)
            .map(|c| self.received as f64 / c)
    }

    /// Messages the server was asked to store in the window: those sent
    /// with `s: 0` (other modes store nothing new).
    pub fn stored(&self) -> u64 {
        if self.storage == 0 {
            self.sent
        } else {
            0
        }
    }

    /// Bytes written to storage per stored message.
    pub fn disk_bytes_per_stored(&self) -> Option<f64> {
        let stored = self.stored();
        self.server_write_bytes
            .filter(|_| stored > 0)
            .map(|b| b as f64 / stored as f64)
    }

    /// Server CPU per stored message, microseconds (all the server's work
    /// in the window, relaying included, over the messages stored).
    pub fn cpu_us_per_stored(&self) -> Option<f64> {
        let stored = self.stored();
        self.server_cpu_s
            .filter(|_| stored > 0)
            .map(|c| c / stored as f64 * 1e6)
    }

    /// Latency at quantile `q`, milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        self.latency.quantile(q) as f64 / 1e6
    }

    /// Whether the step meets `c`; otherwise why not.
    pub fn verdict(&self, c: &Criteria) -> std::result::Result<(), String> {
        let p99 = self.latency.quantile(0.99);
        if self.sent_rate() < c.min_sent * self.rate {
            return Err(format!(
                "sent {:.0}/s of {:.0}/s",
                self.sent_rate(),
                self.rate
            ));
        }
        if self.delivery_ratio() < c.min_delivery {
            return Err(format!("delivered {:.3} %", self.delivery_ratio() * 100.0));
        }
        if p99 > c.max_p99.as_nanos() as u64 {
            return Err(format!("p99 {:.1} ms", p99 as f64 / 1e6));
        }
        if self.lost_conns > 0 {
            return Err(format!("{} connections lost", self.lost_conns));
        }
        Ok(())
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "rate {:>7.0}/s, s: {}: sent {:>7.0}/s, delivered {:>8.0}/s ({}/{} = {:.3} %), latency p50 {:.2} ms p90 {:.2} ms p99 {:.2} ms max {:.2} ms",
            self.rate,
            self.storage,
            self.sent_rate(),
            self.delivered_rate(),
            self.received,
            self.expected,
            self.delivery_ratio() * 100.0,
            self.latency_ms(0.5),
            self.latency_ms(0.9),
            self.latency_ms(0.99),
            self.latency.max() as f64 / 1e6,
        );
        if let Some(cpu) = self.server_cpu_s {
            s.push_str(&format!(
                ", server CPU {:.2} s ({:.0} % of a core)",
                cpu,
                cpu / self.window_s * 100.0
            ));
        }
        if let Some(d) = self.deliveries_per_cpu_s() {
            s.push_str(&format!(", {d:.0} deliveries/CPU-s"));
        }
        if let Some(us) = self.cpu_us_per_stored() {
            s.push_str(&format!(", {us:.1} µs server CPU per stored msg"));
        }
        if let Some(b) = self.disk_bytes_per_stored() {
            s.push_str(&format!(", {b:.0} disk bytes written per stored msg"));
        }
        if let Some(rss) = self.server_rss {
            s.push_str(&format!(", server RSS {:.1} MiB", rss as f64 / 1048576.0));
        }
        if let Some(cpu) = self.loadgen_cpu_s {
            s.push_str(&format!(
                ", load generator CPU {:.0} % of a core",
                cpu / self.window_s * 100.0
            ));
        }
        if let Some(cpu) = self.others_cpu_s {
            s.push_str(&format!(
                ", other processes {:.0} % of a core",
                cpu / self.window_s * 100.0
            ));
        }
        s.push_str(&format!(
            ", send lag p99 {:.2} ms",
            self.send_lag.quantile(0.99) as f64 / 1e6
        ));
        if self.lost_conns > 0 {
            s.push_str(&format!(", {} connections lost", self.lost_conns));
        }
        s
    }
}

/// Result of a find-max search.
#[derive(Debug, Clone)]
pub struct FindMaxResult {
    /// Every step, in order, with its verdict.
    pub steps: Vec<(StepResult, std::result::Result<(), String>)>,
    /// The highest-rate step that passed.
    pub best: Option<StepResult>,
}

/// Sets up the fleet of a fanout run.
pub async fn connect(cfg: &FanoutConfig) -> Result<Fleet> {
    let layout = Layout::new(cfg.nodes.clone(), cfg.rooms * cfg.members, cfg.members);
    let template = MsgTemplate::new(cfg.size, cfg.storage);
    let fleet = Fleet::start(layout, cfg.eio, template, cfg.concurrency).await?;
    // Let the presence events of the joins (M² per room) go by.
    fleet
        .settle(Duration::from_millis(300), Duration::from_secs(5))
        .await;
    sleep(Duration::from_millis(300)).await;
    Ok(fleet)
}

/// Runs one step at `rate` on an established fleet.
pub async fn run_step(fleet: &Fleet, cfg: &FanoutConfig, rate: f64) -> StepResult {
    let stats = Arc::new(StepStats::default());
    let start = Instant::now() + Duration::from_millis(50);
    let window_start = start + cfg.warmup;
    let window_end = window_start + cfg.duration;
    let senders = fleet.layout.conns;
    fleet.command(Command::Run(Step {
        stats: stats.clone(),
        start,
        window_start_ns: clock::at_ns(window_start.into_std()),
        window_end_ns: clock::at_ns(window_end.into_std()),
        send_end: window_end,
        rate,
        senders,
    }));
    let me = std::process::id();
    sleep_until(window_start).await;
    let t0 = Instant::now();
    let cpu0 = proc_stats::total_cpu_seconds(&cfg.server_pids).ok();
    let written0 = proc_stats::total_write_bytes(&cfg.server_pids).ok();
    let self0 = proc_stats::cpu_seconds(me).ok();
    let busy0 = proc_stats::machine_busy_seconds().ok();
    sleep_until(window_end).await;
    let cpu1 = proc_stats::total_cpu_seconds(&cfg.server_pids).ok();
    let written1 = proc_stats::total_write_bytes(&cfg.server_pids).ok();
    let self1 = proc_stats::cpu_seconds(me).ok();
    let busy1 = proc_stats::machine_busy_seconds().ok();
    let window_s = t0.elapsed().as_secs_f64().max(1e-3);
    let server_rss = proc_stats::total_rss_bytes(&cfg.server_pids).ok();
    // Wait for the last deliveries.
    let fanout = (cfg.members.saturating_sub(1)) as u64;
    let drain_end = window_end + cfg.drain;
    while Instant::now() < drain_end {
        let sent = stats.sent.load(Ordering::Relaxed);
        if stats.received.load(Ordering::Relaxed) >= sent * fanout {
            break;
        }
        sleep(Duration::from_millis(10)).await;
    }
    fleet.command(Command::Idle);
    let sent = stats.sent.load(Ordering::Relaxed);
    let has_pids = !cfg.server_pids.is_empty();
    let server_cpu_s = cpu0.zip(cpu1).filter(|_| has_pids).map(|(a, b)| b - a);
    let server_write_bytes = written0
        .zip(written1)
        .filter(|_| has_pids)
        .map(|(a, b)| b.saturating_sub(a));
    let loadgen_cpu_s = self0.zip(self1).map(|(a, b)| b - a);
    let others_cpu_s = busy0
        .zip(busy1)
        .zip(loadgen_cpu_s)
        .map(|((a, b), me)| (b - a - me - server_cpu_s.unwrap_or(0.0)).max(0.0));
    StepResult {
        rate,
        storage: cfg.storage,
        window_s,
        sent,
        expected: sent * fanout,
        received: stats.received.load(Ordering::Relaxed),
        latency: stats.latency.snapshot(),
        send_lag: stats.send_lag.snapshot(),
        server_cpu_s,
        server_write_bytes,
        server_rss: server_rss.filter(|_| has_pids),
        loadgen_cpu_s,
        others_cpu_s,
        lost_conns: fleet.lost(),
    }
}

/// fanout: one step at `cfg.rate`.
pub async fn fanout(cfg: &FanoutConfig) -> Result<StepResult> {
    let fleet = connect(cfg).await?;
    eprintln!(
        "{} connections set up in {:.2} s",
        fleet.layout.conns,
        fleet.setup_time.as_secs_f64()
    );
    let r = run_step(&fleet, cfg, cfg.rate).await;
    let lost = fleet.last_error();
    fleet.stop().await;
    if let Some(e) = lost {
        eprintln!("last connection error: {e}");
    }
    Ok(r)
}

/// find-max: raise the rate by `fm.factor` from `cfg.rate` until a step
/// fails the criteria, then bisect `fm.refine` times; the best passing step wins.
pub async fn find_max(cfg: &FanoutConfig, fm: &FindMax) -> Result<FindMaxResult> {
    let fleet = connect(cfg).await?;
    let mut steps = Vec::new();
    let mut good: Option<StepResult> = None;
    let mut bad: Option<f64> = None;
    let mut refined = 0usize;
    let mut rate = cfg.rate;
    for _ in 0..fm.max_steps {
        let mut tries = 0;
        let (r, verdict) = loop {
            let r = run_step(&fleet, cfg, rate).await;
            let verdict = r.verdict(&fm.criteria);
            eprintln!(
                "find-max step: {} → {}",
                r.summary(),
                match &verdict {
                    Ok(()) => "ok".to_owned(),
                    Err(why) => format!("fails ({why})"),
                }
            );
            if verdict.is_ok() || r.lost_conns > 0 || tries >= fm.retries {
                break (r, verdict);
            }
            tries += 1;
            steps.push((r, verdict));
            fleet
                .settle(Duration::from_millis(500), Duration::from_secs(15))
                .await;
        };
        let lost = r.lost_conns > 0;
        if verdict.is_ok() {
            if good.as_ref().is_none_or(|g| r.rate > g.rate) {
                good = Some(r.clone());
            }
        } else {
            bad = Some(bad.map_or(rate, |b: f64| b.min(rate)));
        }
        steps.push((r, verdict));
        if lost {
            break;
        }
        let next = match (good.as_ref().map(|g| g.rate), bad) {
            (Some(_), None) => rate * fm.factor,
            (None, Some(b)) => b / fm.factor,
            (Some(g), Some(b)) => {
                if refined >= fm.refine {
                    break;
                }
                refined += 1;
                (g + b) / 2.0
            }
            (None, None) => break,
        };
        rate = next.round().max(1.0);
        // Let a backlog of a failed step drain before the next one.
        fleet
            .settle(Duration::from_millis(500), Duration::from_secs(15))
            .await;
    }
    fleet.stop().await;
    Ok(FindMaxResult { steps, best: good })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(storage: u8, sent: u64, cpu: Option<f64>, written: Option<u64>) -> StepResult {
        StepResult {
            rate: 2_000.0,
            storage,
            window_s: 10.0,
            sent,
            expected: sent * 9,
            received: sent * 9,
            latency: Histogram::new(),
            send_lag: Histogram::new(),
            server_cpu_s: cpu,
            server_write_bytes: written,
            server_rss: None,
            loadgen_cpu_s: None,
            others_cpu_s: None,
            lost_conns: 0,
        }
    }

    #[test]
    fn per_stored_figures_count_inserts_only() {
        let r = step(0, 20_000, Some(2.0), Some(40_960_000));
        assert_eq!(r.stored(), 20_000);
        assert_eq!(r.disk_bytes_per_stored(), Some(2_048.0));
        assert_eq!(r.cpu_us_per_stored(), Some(100.0));
        assert_eq!(r.deliveries_per_cpu_s(), Some(90_000.0));
        assert!(r
            .summary()
            .contains("2048 disk bytes written per stored msg"));

        let relay = step(2, 20_000, Some(2.0), Some(4_096));
        assert_eq!(relay.stored(), 0);
        assert_eq!(relay.disk_bytes_per_stored(), None);
        assert_eq!(relay.cpu_us_per_stored(), None);
        assert!(!relay.summary().contains("per stored msg"));

        let unread = step(0, 20_000, None, None);
        assert_eq!(unread.disk_bytes_per_stored(), None);
        assert_eq!(unread.cpu_us_per_stored(), None);
        assert_eq!(step(0, 0, Some(1.0), Some(1)).disk_bytes_per_stored(), None);
    }
}
