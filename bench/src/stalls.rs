//! `suite --stall-minutes N`: the commit tail over minutes rather than
//! seconds. The server and the durable floor run side by side on the same
//! disk, each with its fleet of 100 rooms × 10 members connected all along;
//! the fixed-rate fanout with every msg stored runs in short windows,
//! server and durable floor in turn, until N minutes have passed. Each
//! window reports its latency and the commit stalls (group commits held
//! back over 50 ms) and group commit durations the side's `/metrics`
//! counted meanwhile, so a rare stall of the disk shows on both sides
//! while one of the server's own shows on one.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::disk_probe::DiskSync;
use crate::engineio::Eio;
use crate::log_metrics::{LogFigures, STALLS_TOTAL};
use crate::scenarios::fanout::{self, FanoutConfig, StepResult};
use crate::scenarios::fleet::Fleet;
use crate::suite::{self, Proc, SuiteConfig};
use crate::{proc_stats, Result};

/// Settings of a stall comparison.
#[derive(Debug, Clone)]
pub struct StallConfig {
    /// The real server's binary.
    pub server_bin: PathBuf,
    /// Protocol generation.
    pub eio: Eio,
    /// Aggregate rate, msg/s, every msg stored.
    pub rate: f64,
    /// Sending time of both sides together.
    pub total: Duration,
    /// The measured part of each window.
    pub window: Duration,
    /// Sending before each window's measured part.
    pub warmup: Duration,
    /// How long the disk's own `fdatasync` latency is measured first.
    pub probe_time: Duration,
    /// After each server window, the least wait before the durable
    /// floor's: the server hands what it logged to SQLite within 5 s
    /// (`APPLY_INTERVAL`), and that write belongs to the server's window,
    /// not to the floor's. Either side also waits until its process has
    /// written nothing for [`QUIET`].
    pub settle: Duration,
}

/// How long a side's process must have written nothing before the other
/// side's window starts.
const QUIET: Duration = Duration::from_secs(1);
/// The longest wait for that.
const MAX_SETTLE: Duration = Duration::from_secs(30);

impl StallConfig {
    /// `minutes` in all, in windows of 5 s (each after a 1 s warm-up), at
    /// 2,000 msg/s.
    pub fn new(server_bin: PathBuf, minutes: f64) -> Self {
        Self {
            server_bin,
            eio: Eio::V4,
            rate: 2_000.0,
            total: Duration::from_secs_f64(minutes.max(0.0) * 60.0),
            window: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            probe_time: Duration::from_secs(5),
            settle: Duration::from_secs(6),
        }
    }
}

/// Which side a window ran against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallSide {
    /// The real server, inserts.
    Server,
    /// The durable floor.
    DurableFloor,
}

impl StallSide {
    fn name(self) -> &'static str {
        match self {
            StallSide::Server => "server",
            StallSide::DurableFloor => "durable floor",
        }
    }
}

/// One measured window.
#[derive(Debug, Clone)]
pub struct Window {
    /// Pairs are numbered from 1: the server's window, then the floor's.
    pub pair: usize,
    /// Where it ran.
    pub side: StallSide,
    /// The fanout's figures.
    pub step: StepResult,
    /// The commit-log figures counted from the window's warm-up to its drain.
    pub log: LogFigures,
}

impl Window {
    fn p99_ms(&self) -> f64 {
        self.step.latency_ms(0.99)
    }

    fn line(&self) -> String {
        format!(
            "window {}, {}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, delivered {:.3} %, sent {:.0}/s; {}",
            self.pair,
            self.side.name(),
            self.step.latency_ms(0.5),
            self.p99_ms(),
            self.step.latency.max() as f64 / 1e6,
            self.step.delivery_ratio() * 100.0,
            self.step.sent_rate(),
            self.log.summary()
        )
    }
}

/// What the comparison measured (kept outside the run so that one stopped
/// early still reports).
#[derive(Default)]
struct Measured {
    windows: Vec<Window>,
    disk: Option<DiskSync>,
    notes: Vec<String>,
    load_at_start: Option<String>,
}

fn fanout_config(cfg: &StallConfig, p: &Proc) -> FanoutConfig {
    let mut suite_cfg = SuiteConfig::new(cfg.server_bin.clone(), false);
    suite_cfg.eio = cfg.eio;
    suite_cfg.rate = cfg.rate;
    let mut c = suite_cfg.fanout(&p.addr, p.pid(), 0);
    c.warmup = cfg.warmup;
    c.duration = cfg.window;
    c.drain = Duration::from_secs(1);
    c
}

fn with(m: &Mutex<Measured>, f: impl FnOnce(&mut Measured)) {
    if let Ok(mut g) = m.lock() {
        f(&mut g);
    }
}

fn note(m: &Mutex<Measured>, line: String) {
    eprintln!("{line}");
    with(m, |g| g.notes.push(line));
}

async fn run_windows(cfg: &StallConfig, m: &Mutex<Measured>) -> Result<()> {
    eprintln!("== the disk's fdatasync latency");
    match suite::probe_disk(cfg.probe_time).await {
        Ok(d) => {
            eprintln!("{}", d.summary());
            with(m, |g| g.disk = Some(d));
        }
        Err(e) => note(m, format!("disk probe: {e}")),
    }
    eprintln!("== the server and the durable floor, fleets of 100 × 10 each");
    let server = suite::start_server(&cfg.server_bin, None).await?;
    let floor = suite::start_floor(true).await?;
    let sides: [(StallSide, &Proc, FanoutConfig); 2] = [
        (StallSide::Server, &server, fanout_config(cfg, &server)),
        (StallSide::DurableFloor, &floor, fanout_config(cfg, &floor)),
    ];
    let mut fleets: Vec<Fleet> = Vec::with_capacity(2);
    for (_, _, c) in &sides {
        fleets.push(fanout::connect(c).await?);
    }
    let client = reqwest::Client::new();
    let figures = async |p: &Proc| -> LogFigures {
        let Some(url) = &p.metrics else {
            return LogFigures::default();
        };
        match crate::log_metrics::fetch(&client, url).await {
            Ok(f) => f,
            Err(e) => {
                eprintln!("{url}: {e}");
                LogFigures::default()
            }
        }
    };
    let end = Instant::now() + cfg.total;
    let mut pair = 0;
    while Instant::now() < end {
        pair += 1;
        for ((side, p, c), fleet) in sides.iter().zip(&fleets) {
            let before = figures(p).await;
            let step = fanout::run_step(fleet, c, cfg.rate).await;
            let log = figures(p).await.since(&before);
            let w = Window {
                pair,
                side: *side,
                step,
                log,
            };
            eprintln!("{}", w.line());
            with(m, |g| g.windows.push(w));
            let least = match side {
                StallSide::Server => cfg.settle,
                StallSide::DurableFloor => Duration::ZERO,
            };
            settle(p.pid(), least).await;
        }
    }
    for fleet in fleets {
        fleet.stop().await;
    }
    Ok(())
}

/// Waits at least `least`, then until process `pid` has written nothing to
/// storage for [`QUIET`] (at most [`MAX_SETTLE`] in all).
async fn settle(pid: u32, least: Duration) {
    let start = Instant::now();
    let mut last = proc_stats::write_bytes(pid).ok();
    let mut since = Instant::now();
    while start.elapsed() < MAX_SETTLE {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = proc_stats::write_bytes(pid).ok();
        if now != last {
            last = now;
            since = Instant::now();
        } else if start.elapsed() >= least && since.elapsed() >= QUIET {
            return;
        }
    }
}

/// Runs the comparison, prints its report and returns it.
pub async fn run(cfg: StallConfig) -> Result<String> {
    if !cfg.server_bin.is_file() {
        return Err(format!(
            "server binary {} not found (cargo build --release first)",
            cfg.server_bin.display()
        )
        .into());
    }
    let m = Arc::new(Mutex::new(Measured {
        load_at_start: proc_stats::load_average(),
        ..Measured::default()
    }));
    let started = Instant::now();
    // Set-up, the probe and the last pair's settling come on top.
    let limit = cfg.total * 2 + Duration::from_secs(300);
    let stopped = tokio::select! {
        r = run_windows(&cfg, &m) => r.err().map(|e| format!("the comparison stopped: {e}")),
        _ = tokio::time::sleep(limit) => Some(format!("the comparison stopped at its time limit of {} s", limit.as_secs())),
        _ = tokio::signal::ctrl_c() => Some("the comparison was interrupted".to_owned()),
    };
    if let Some(why) = stopped {
        note(&m, why);
    }
    let m = m.lock().map_err(|_| "figures lock poisoned")?;
    let out = report(&cfg, &m, started.elapsed());
    println!("{out}");
    Ok(out)
}

/// The median of `v` (`None` when empty).
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[mid]),
        _ => Some((v[mid - 1] + v[mid]) / 2.0),
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:.2}"))
}

fn report(cfg: &StallConfig, m: &Measured, took: Duration) -> String {
    let mut out = String::new();
    let command = format!(
        "ao-bench suite --stall-minutes {}",
        (cfg.total.as_secs_f64() / 6.0).round() / 10.0
    );
    suite::report_header(
        &mut out,
        &command,
        cfg.eio,
        took,
        m.load_at_start.as_deref(),
        m.disk.as_ref(),
    );
    let _ = writeln!(
        out,
        "inserts (s: 0) at {:.0} msg/s, 100 rooms × 10, windows of {:.0} s after {:.0} s of warm-up, server and durable floor in turn; after a server window {:.0} s at least and until it wrote nothing for {:.0} s",
        cfg.rate,
        cfg.window.as_secs_f64(),
        cfg.warmup.as_secs_f64(),
        cfg.settle.as_secs_f64(),
        QUIET.as_secs_f64()
    );
    let _ = writeln!(out);
    let of =
        |side: StallSide| -> Vec<&Window> { m.windows.iter().filter(|w| w.side == side).collect() };
    let (server, floor) = (of(StallSide::Server), of(StallSide::DurableFloor));
    let stalls = |ws: &[&Window]| -> Option<u64> { ws.iter().map(|w| w.log.stalls).sum() };
    // "—" without windows; "n/a" when the side has no stall counter.
    let count = |ws: &[&Window]| match stalls(ws) {
        _ if ws.is_empty() => "—".to_owned(),
        Some(n) => n.to_string(),
        None => format!("n/a (no {STALLS_TOTAL})"),
    };
    let stalled_windows = |ws: &[&Window]| match stalls(ws) {
        _ if ws.is_empty() => "—".to_owned(),
        Some(_) => ws
            .iter()
            .filter(|w| w.log.stalls > Some(0))
            .count()
            .to_string(),
        None => "n/a".to_owned(),
    };
    let p99s = |ws: &[&Window]| ws.iter().map(|w| w.p99_ms()).collect::<Vec<_>>();
    let max_of = |v: Vec<f64>| v.into_iter().reduce(f64::max);
    let sync_p99 = |ws: &[&Window]| median(ws.iter().filter_map(|w| w.log.sync_ms(0.99)).collect());
    // Pairs where both sides ran.
    let pairs: Vec<(&Window, &Window)> = server
        .iter()
        .filter_map(|s| floor.iter().find(|f| f.pair == s.pair).map(|f| (*s, *f)))
        .collect();
    let within = pairs
        .iter()
        .filter(|(s, f)| s.p99_ms() <= f.p99_ms() + 1.0)
        .count();
    let rows: [(&str, String, String); 7] = [
        ("windows", server.len().to_string(), floor.len().to_string()),
        (
            "p99 latency, median of the windows (ms)",
            ms(median(p99s(&server))),
            ms(median(p99s(&floor))),
        ),
        (
            "p99 latency, highest window (ms)",
            ms(max_of(p99s(&server))),
            ms(max_of(p99s(&floor))),
        ),
        (
            "windows whose p99 is within the durable floor's of the same pair + 1 ms",
            format!("{within} of {}", pairs.len()),
            "—".to_owned(),
        ),
        (
            "commit stalls (groups held back > 50 ms)",
            count(&server),
            count(&floor),
        ),
        (
            "windows with a commit stall",
            stalled_windows(&server),
            stalled_windows(&floor),
        ),
        (
            "group commit p99, median of the windows (ms)",
            ms(sync_p99(&server)),
            ms(sync_p99(&floor)),
        ),
    ];
    let _ = writeln!(out, "| figure | server | durable floor |");
    let _ = writeln!(out, "| --- | --- | --- |");
    for (figure, s, f) in rows {
        let _ = writeln!(out, "| {figure} | {s} | {f} |");
    }
    for w in &m.windows {
        let _ = writeln!(out, "{}", w.line());
    }
    for n in &m.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::Histogram;

    fn window(pair: usize, side: StallSide, p99_us: u64, stalls: Option<u64>) -> Window {
        let mut latency = Histogram::new();
        for _ in 0..100 {
            latency.record(p99_us * 1_000);
        }
        Window {
            pair,
            side,
            step: StepResult {
                rate: 2_000.0,
                storage: 0,
                window_s: 5.0,
                sent: 10_000,
                expected: 90_000,
                received: 90_000,
                latency,
                send_lag: Histogram::new(),
                server_cpu_s: None,
                server_write_bytes: None,
                server_rss: None,
                loadgen_cpu_s: None,
                others_cpu_s: None,
                lost_conns: 0,
            },
            log: LogFigures {
                stalls,
                syncs: None,
            },
        }
    }

    fn measured(windows: Vec<Window>) -> Measured {
        Measured {
            windows,
            ..Measured::default()
        }
    }

    #[test]
    fn pairs_stalls_and_tails_are_compared() {
        use StallSide::{DurableFloor, Server};
        let cfg = StallConfig::new(PathBuf::from("/nonexistent"), 1.0);
        let m = measured(vec![
            window(1, Server, 5_500, Some(0)),
            window(1, DurableFloor, 5_000, Some(0)),
            window(2, Server, 111_000, Some(2)),
            window(2, DurableFloor, 6_000, Some(0)),
            window(3, Server, 6_000, Some(0)),
            window(3, DurableFloor, 328_000, Some(1)),
            // The server's last window with no floor window after it.
            window(4, Server, 5_000, Some(0)),
        ]);
        let out = report(&cfg, &m, Duration::from_secs(60));
        assert!(out.contains("| windows | 4 | 3 |"), "{out}");
        assert!(
            out.contains("| windows whose p99 is within the durable floor's of the same pair + 1 ms | 2 of 3 | — |"),
            "{out}"
        );
        assert!(
            out.contains("| commit stalls (groups held back > 50 ms) | 2 | 1 |"),
            "{out}"
        );
        assert!(
            out.contains("| windows with a commit stall | 1 | 1 |"),
            "{out}"
        );
        assert!(out.contains("disk fdatasync: not measured"), "{out}");
        assert_eq!(out.matches("\nwindow ").count(), 7, "{out}");
        assert!(
            out.starts_with("ao-bench suite --stall-minutes 1 — "),
            "{out}"
        );
    }

    #[test]
    fn a_server_without_the_metric_reads_not_available() {
        use StallSide::{DurableFloor, Server};
        let cfg = StallConfig::new(PathBuf::from("/nonexistent"), 1.0);
        let m = measured(vec![
            window(1, Server, 5_500, None),
            window(1, DurableFloor, 5_000, Some(0)),
        ]);
        let out = report(&cfg, &m, Duration::from_secs(60));
        assert!(
            out.contains("| commit stalls (groups held back > 50 ms) | n/a (no ao_store_log_stalls_total) | 0 |"),
            "{out}"
        );
        assert!(
            out.contains("| windows with a commit stall | n/a | 0 |"),
            "{out}"
        );
    }

    #[test]
    fn a_comparison_stopped_before_its_first_window_shows_no_figures() {
        let cfg = StallConfig::new(PathBuf::from("/nonexistent"), 0.2);
        let out = report(&cfg, &measured(Vec::new()), Duration::from_secs(5));
        assert!(
            out.starts_with("ao-bench suite --stall-minutes 0.2 — "),
            "{out}"
        );
        assert!(
            out.contains("| commit stalls (groups held back > 50 ms) | — | — |"),
            "{out}"
        );
        assert!(
            out.contains("| windows with a commit stall | — | — |"),
            "{out}"
        );
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
    }
}
