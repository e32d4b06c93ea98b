//! The whole benchmark set against the real server and the floor, each
//! started as a child process on free 127.0.0.1 ports, with a table of
//! figures, ratios and targets. Bounded in time: it stops itself.

mod markdown;
mod procs;
mod table;

pub use markdown::{utc_now, write_markdown};
pub(crate) use procs::{scratch_dir, start_floor, start_server, Proc};
use procs::{start_nodes, start_redis};
use table::report;
pub(crate) use table::report_header;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::disk_probe::{self, DiskSync};
use crate::engineio::Eio;
use crate::log_metrics::LogFigures;
use crate::scenarios::conns::{self, ConnsConfig, ConnsResult};
use crate::scenarios::fanout::{self, Criteria, FanoutConfig, FindMax, FindMaxResult, StepResult};
use crate::scenarios::sync::{self, Preload, SyncConfig, SyncResult};
use crate::{proc_stats, Result};

/// Settings of a suite run.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// The real server's binary (a release build).
    pub server_bin: PathBuf,
    /// Smaller numbers, about two minutes in all.
    pub quick: bool,
    /// Connections of the conns scenario.
    pub conns: usize,
    /// Stored messages of the sync scenarios.
    pub sync_messages: usize,
    /// Aggregate rate of the fixed-rate fanout, msg/s.
    pub rate: f64,
    /// Protocol generation.
    pub eio: Eio,
    /// The suite stops itself after this long.
    pub max_time: Duration,
    /// redis-server for the 2-node cluster row (skipped when it cannot start).
    pub redis_server: PathBuf,
    /// Connections of the long hold (none lost is the target).
    pub hold_conns: usize,
    /// How long the long hold keeps them.
    pub hold_time: Duration,
    /// Runs of the fixed-rate fanout and of conns per side, server and floor
    /// alternating, so that a slow spell of the machine hits both; the table
    /// shows each figure's median over them.
    pub rounds: usize,
    /// How long the disk's own `fdatasync` latency is measured.
    pub probe_time: Duration,
}

impl SuiteConfig {
    /// Defaults: full (10,000 connections, 50,000 messages, 19,000
    /// connections held 5 minutes, 30 minutes at most) or quick (2,000
    /// connections, 10,000 messages, 4,000 held 20 s, 5 minutes at most).
    pub fn new(server_bin: PathBuf, quick: bool) -> Self {
        Self {
            server_bin,
            quick,
            conns: if quick { 2_000 } else { 10_000 },
            sync_messages: if quick { 10_000 } else { 50_000 },
            rate: 2_000.0,
            eio: Eio::V4,
            max_time: Duration::from_secs(if quick { 300 } else { 1_800 }),
            redis_server: PathBuf::from("redis-server"),
            hold_conns: if quick { 4_000 } else { 19_000 },
            hold_time: Duration::from_secs(if quick { 20 } else { 300 }),
            rounds: if quick { 1 } else { 3 },
            probe_time: Duration::from_secs(if quick { 2 } else { 5 }),
        }
    }

    pub(crate) fn fanout(&self, addr: &str, pid: u32, storage: u8) -> FanoutConfig {
        FanoutConfig {
            nodes: vec![addr.to_owned()],
            eio: self.eio,
            rooms: 100,
            members: 10,
            rate: self.rate,
            size: 200,
            storage,
            warmup: secs(if self.quick { 1.0 } else { 3.0 }),
            duration: secs(if self.quick { 3.0 } else { 10.0 }),
            drain: secs(if self.quick { 1.0 } else { 2.0 }),
            server_pids: vec![pid],
            concurrency: 128,
        }
    }

    fn find_max(&self, addr: &str, pid: u32, storage: u8) -> (FanoutConfig, FindMax) {
        let mut cfg = self.fanout(addr, pid, storage);
        cfg.warmup = secs(if self.quick { 0.5 } else { 2.0 });
        cfg.duration = secs(if self.quick { 1.5 } else { 5.0 });
        cfg.drain = secs(1.0);
        let fm = FindMax {
            factor: if self.quick { 2.0 } else { 1.5 },
            refine: if self.quick { 1 } else { 3 },
            max_steps: if self.quick { 7 } else { 14 },
            retries: 1,
            criteria: Criteria::default(),
        };
        (cfg, fm)
    }

    fn conns(&self, addr: &str, pid: u32) -> ConnsConfig {
        ConnsConfig {
            nodes: vec![addr.to_owned()],
            eio: self.eio,
            conns: self.conns,
            members: 10,
            concurrency: 128,
            hold: secs(if self.quick { 2.0 } else { 5.0 }),
            server_pids: vec![pid],
        }
    }

    fn hold(&self, addr: &str, pid: u32) -> ConnsConfig {
        ConnsConfig {
            conns: self.hold_conns,
            hold: self.hold_time,
            ..self.conns(addr, pid)
        }
    }

    fn sync(&self, addr: &str, preload: Preload) -> SyncConfig {
        SyncConfig {
            addr: addr.to_owned(),
            eio: self.eio,
            messages: self.sync_messages,
            size: 200,
            repeat: if self.quick { 1 } else { 9 },
            preload,
            window: 128,
            // The gzip figure is information only: measured after the acked inserts alone.
            gzip: preload == Preload::Acked,
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Which side a figure was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Floor,
    /// The floor with a group commit in front of the relay.
    DurableFloor,
}

/// What a message scenario (fanout, find-max) runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Against {
    /// The server with every msg stored (`s: 0`), as clients send them.
    Inserts,
    /// The durable floor, storing the same msgs: the reference of `Inserts`.
    Durable,
    /// The server relaying only (`s: 2`).
    Relay,
    /// The floor relaying only: the reference of `Relay`.
    Floor,
}

impl Against {
    /// In the order the rounds run them.
    const ALL: [Against; 4] = [
        Against::Inserts,
        Against::Durable,
        Against::Relay,
        Against::Floor,
    ];

    fn slot(self) -> usize {
        match self {
            Against::Inserts => 0,
            Against::Durable => 1,
            Against::Relay => 2,
            Against::Floor => 3,
        }
    }

    fn storage(self) -> u8 {
        match self {
            Against::Inserts | Against::Durable => 0,
            Against::Relay | Against::Floor => 2,
        }
    }

    /// The floor a server figure is compared with.
    fn reference(self) -> Against {
        match self {
            Against::Inserts | Against::Durable => Against::Durable,
            Against::Relay | Against::Floor => Against::Floor,
        }
    }
}

/// A side, or a side with a storage mode, that a scenario runs against.
trait Variant: Copy {
    fn side(self) -> Side;
    fn name(self) -> &'static str;
}

impl Variant for Side {
    fn side(self) -> Side {
        self
    }

    fn name(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::Floor => "floor",
            Side::DurableFloor => "durable floor",
        }
    }
}

impl Variant for Against {
    fn side(self) -> Side {
        match self {
            Against::Inserts | Against::Relay => Side::Server,
            Against::Durable => Side::DurableFloor,
            Against::Floor => Side::Floor,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Against::Inserts => "server, inserts (s: 0)",
            Against::Durable => "durable floor, inserts (s: 0)",
            Against::Relay => "server, relay only (s: 2)",
            Against::Floor => "floor, relay only (s: 2)",
        }
    }
}

/// Everything measured so far (kept outside the run so that a suite
/// stopped by its time limit still prints what it has).
#[derive(Default)]
struct Figures {
    /// Every round's fixed-rate fanout, per [`Against`].
    fanout: [Vec<StepResult>; 4],
    /// The commit-log figures of each of those runs (n/a without them).
    log: [Vec<LogFigures>; 4],
    /// Per [`Against`].
    find_max: [Option<FindMaxResult>; 4],
    /// find-max with members spread over 2 nodes on one Redis: relay
    /// only, then inserts.
    cluster_find_max: [Option<FindMaxResult>; 2],
    /// Every round's conns, per side.
    conns: [Vec<ConnsResult>; 2],
    /// The long hold against the server.
    hold: Option<ConnsResult>,
    /// Sync after acknowledged inserts.
    sync: Option<SyncResult>,
    /// Sync after one client's inserts sent back to back without acks.
    sync_unacked: Option<SyncResult>,
    notes: Vec<String>,
    /// Load average when the suite started.
    load_at_start: Option<String>,
    /// The disk's own `fdatasync` latency, measured first.
    disk: Option<DiskSync>,
}

/// The conns figures' slot: server or (plain) floor.
fn slot(side: Side) -> usize {
    match side {
        Side::Server => 0,
        Side::Floor | Side::DurableFloor => 1,
    }
}

async fn start(cfg: &SuiteConfig, side: Side) -> Result<Proc> {
    match side {
        Side::Server => start_server(&cfg.server_bin, None).await,
        Side::Floor => start_floor(false).await,
        Side::DurableFloor => start_floor(true).await,
    }
}

/// Measures the disk's `fdatasync` latency in a scratch directory beside
/// the servers' data directories.
pub(crate) async fn probe_disk(time: Duration) -> Result<DiskSync> {
    let dir = scratch_dir("fsync")?;
    let probe_dir = dir.clone();
    let r = tokio::task::spawn_blocking(move || disk_probe::measure(&probe_dir, time)).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(r.map_err(|e| format!("the disk probe failed: {e}"))??)
}

fn note(figs: &Mutex<Figures>, line: String) {
    eprintln!("{line}");
    if let Ok(mut f) = figs.lock() {
        f.notes.push(line);
    }
}

fn with<F: FnOnce(&mut Figures)>(figs: &Mutex<Figures>, f: F) {
    if let Ok(mut g) = figs.lock() {
        f(&mut g);
    }
}

/// The storage mode of a 2-node find-max, as its lines name it.
fn cluster_mode(a: Against) -> &'static str {
    if a.storage() == 0 {
        "inserts (s: 0)"
    } else {
        "relay only (s: 2)"
    }
}

/// Runs a scenario `cfg.rounds` times against each of `variants`, in turn
/// within each round, each run against a fresh process; `keep` files each result.
async fn alternating_rounds<V: Variant, R>(
    cfg: &SuiteConfig,
    figs: &Mutex<Figures>,
    title: &str,
    variants: &[V],
    run: impl AsyncFn(&Proc, V) -> Result<R>,
    summary: impl Fn(&R) -> String,
    keep: impl Fn(&mut Figures, V, R),
) {
    for round in 1..=cfg.rounds {
        for &v in variants {
            eprintln!(
                "== {title} against the {} (round {round} of {})",
                v.name(),
                cfg.rounds
            );
            let r = async { run(&start(cfg, v.side()).await?, v).await }.await;
            match r {
                Ok(r) => {
                    eprintln!("{}: {}", v.name(), summary(&r));
                    with(figs, |f| keep(f, v, r));
                }
                Err(e) => note(figs, format!("{title} against the {}: {e}", v.name())),
            }
        }
    }
}

async fn run_all(cfg: &SuiteConfig, figs: &Mutex<Figures>) {
    eprintln!("== the disk's fdatasync latency");
    match probe_disk(cfg.probe_time).await {
        Ok(d) => {
            eprintln!("{}", d.summary());
            with(figs, |f| f.disk = Some(d));
        }
        Err(e) => note(figs, format!("disk probe: {e}")),
    }
    let title = format!("fanout at {} msg/s", cfg.rate);
    alternating_rounds(
        cfg,
        figs,
        &title,
        &Against::ALL,
        async |p: &Proc, a: Against| {
            let r = fanout::fanout(&cfg.fanout(&p.addr, p.pid(), a.storage())).await?;
            // A fresh process per run: its counters are the run's.
            let log = match p.log_figures().await {
                Ok(log) => log.unwrap_or_default(),
                Err(e) => {
                    note(figs, format!("commit-log metrics of the {}: {e}", a.name()));
                    LogFigures::default()
                }
            };
            Ok((r, log))
        },
        |(r, log): &(StepResult, LogFigures)| {
            if r.storage == 0 {
                format!("{}; {}", r.summary(), log.summary())
            } else {
                r.summary()
            }
        },
        |f, a, (r, log)| {
            f.fanout[a.slot()].push(r);
            f.log[a.slot()].push(log);
        },
    )
    .await;
    for a in Against::ALL {
        eprintln!("== find-max against the {}", a.name());
        let r = async {
            let p = start(cfg, a.side()).await?;
            let (c, fm) = cfg.find_max(&p.addr, p.pid(), a.storage());
            fanout::find_max(&c, &fm).await
        }
        .await;
        match r {
            Ok(r) => with(figs, |f| f.find_max[a.slot()] = Some(r)),
            Err(e) => note(figs, format!("find-max against the {}: {e}", a.name())),
        }
    }
    for (i, a) in [Against::Relay, Against::Inserts].into_iter().enumerate() {
        let what = cluster_mode(a);
        eprintln!("== find-max against 2 nodes on Redis, {what}");
        let r = async {
            let redis = start_redis(&cfg.redis_server).await?;
            let nodes = start_nodes(&cfg.server_bin, &redis.addr, 2).await?;
            let (mut c, fm) = cfg.find_max(&nodes[0].addr, nodes[0].pid(), a.storage());
            c.nodes = nodes.iter().map(|n| n.addr.clone()).collect();
            c.server_pids = nodes.iter().map(Proc::pid).chain([redis.pid()]).collect();
            fanout::find_max(&c, &fm).await
        }
        .await;
        match r {
            Ok(r) => with(figs, |f| f.cluster_find_max[i] = Some(r)),
            Err(e) => note(
                figs,
                format!("find-max against 2 nodes on Redis, {what}: {e}"),
            ),
        }
    }
    let title = format!("conns ({})", cfg.conns);
    alternating_rounds(
        cfg,
        figs,
        &title,
        &[Side::Server, Side::Floor],
        async |p: &Proc, _| conns::conns(&cfg.conns(&p.addr, p.pid())).await,
        ConnsResult::summary,
        |f, side, r| f.conns[slot(side)].push(r),
    )
    .await;
    for (preload, what) in [
        (Preload::Acked, "stored with acks"),
        (Preload::Unacked, "preloaded without acks"),
    ] {
        eprintln!(
            "== sync of {} messages {what} against the server",
            cfg.sync_messages
        );
        let r = async {
            let p = start(cfg, Side::Server).await?;
            sync::sync(&cfg.sync(&p.addr, preload)).await
        }
        .await;
        match r {
            Ok(r) => {
                eprintln!("{}", r.summary());
                with(figs, |f| match preload {
                    Preload::Acked => f.sync = Some(r),
                    Preload::Unacked => f.sync_unacked = Some(r),
                });
            }
            Err(e) => note(figs, format!("sync ({what}) against the server: {e}")),
        }
    }
    eprintln!(
        "== {} connections held {} s against the server",
        cfg.hold_conns,
        cfg.hold_time.as_secs()
    );
    let r = async {
        let p = start(cfg, Side::Server).await?;
        conns::conns(&cfg.hold(&p.addr, p.pid())).await
    }
    .await;
    match r {
        Ok(r) => {
            eprintln!("{}", r.summary());
            with(figs, |f| f.hold = Some(r));
        }
        Err(e) => note(figs, format!("hold against the server: {e}")),
    }
}

/// Runs the suite and prints its table; the table is returned too.
pub async fn run(cfg: SuiteConfig) -> Result<String> {
    if !cfg.server_bin.is_file() {
        return Err(format!(
            "server binary {} not found (cargo build --release first)",
            cfg.server_bin.display()
        )
        .into());
    }
    let figs = Arc::new(Mutex::new(Figures {
        load_at_start: proc_stats::load_average(),
        ..Figures::default()
    }));
    let started = Instant::now();
    let stopped = tokio::select! {
        () = run_all(&cfg, &figs) => None,
        _ = tokio::time::sleep(cfg.max_time) => Some(format!(
            "the suite stopped at its time limit of {} s; figures not measured are shown as —",
            cfg.max_time.as_secs()
        )),
        _ = tokio::signal::ctrl_c() => Some("the suite was interrupted; figures not measured are shown as —".to_owned()),
    };
    if let Some(why) = stopped {
        note(&figs, why);
    }
    let figs = figs.lock().map_err(|_| "figures lock poisoned")?;
    let out = report(&cfg, &figs, started.elapsed());
    println!("{out}");
    Ok(out)
}
