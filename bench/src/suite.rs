//! The whole benchmark set against the real server and the floor, each
//! started as a child process on free 127.0.0.1 ports, with a table of
//! figures, ratios and targets. Bounded in time: it stops itself.

use std::fmt::Write as _;
use std::net::TcpStream as StdTcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::disk_probe::{self, DiskSync};
use crate::engineio::Eio;
use crate::log_metrics::{self, LogFigures};
use crate::scenarios::conns::{self, ConnsConfig, ConnsResult};
use crate::scenarios::fanout::{self, Criteria, FanoutConfig, FindMax, FindMaxResult, StepResult};
use crate::scenarios::sync::{self, median, Preload, SyncConfig, SyncResult};
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

/// A child process (server or floor) killed when dropped.
pub(crate) struct Proc {
    child: Child,
    pub(crate) addr: String,
    dir: PathBuf,
    /// Its `/metrics` page, if it has one.
    pub(crate) metrics: Option<String>,
}

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its commit-log figures so far: `None` without a metrics page or
    /// when the page could not be read (the reason is noted in `figs`).
    async fn log_figures(&self) -> std::result::Result<Option<LogFigures>, String> {
        let Some(url) = &self.metrics else {
            return Ok(None);
        };
        log_metrics::fetch(&reqwest::Client::new(), url)
            .await
            .map(Some)
            .map_err(|e| format!("{url}: {e}"))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free TCP port on 127.0.0.1 (bound and released).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A fresh directory under the temporary directory, where the servers'
/// data directories go too (on the disk under test).
pub(crate) fn scratch_dir(what: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "ao-bench-{}-{what}-{}",
        std::process::id(),
        crate::clock::now_ns() % 1_000_000_000
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Spawns `cmd` logging to `dir/log`, dying with this process, and waits
/// until it accepts connections on `addr`.
async fn spawn(mut cmd: Command, addr: String, dir: PathBuf, what: &str) -> Result<Proc> {
    let log = std::fs::File::create(dir.join("log"))?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: prctl is async-signal-safe; the closure allocates nothing.
        // The child gets SIGKILL when the thread that forked it (this
        // process's main thread, which runs the suite) ends.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let mut p = Proc {
        child,
        addr,
        dir,
        metrics: None,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = p.child.try_wait() {
            return Err(format!("{what} exited at start ({status}):\n{}", p.log_tail()).into());
        }
        if StdTcpStream::connect(&p.addr).is_ok() {
            return Ok(p);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what} did not listen on {} within 30 s:\n{}",
                p.addr,
                p.log_tail()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts the real server in development mode on free ports with a fresh
/// data dir; `redis`, when given, makes it a node of the cluster on that Redis.
pub(crate) async fn start_server(bin: &Path, redis: Option<&str>) -> Result<Proc> {
    let dir = scratch_dir("server")?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let api = format!("127.0.0.1:{}", free_port()?);
    let mut cmd = Command::new(bin);
    cmd.args([
        "--dev",
        "--listen",
        &addr,
        "--api-listen",
        &api,
        "--data-dir",
    ])
    .arg(dir.join("data"))
    .env("RUST_LOG", "warn")
    // Every simulated client comes from 127.0.0.1: one address opening
    // thousands of connections, which the default handshake rate refuses.
    .env("AO_HANDSHAKES_PER_IP", "0");
    if let Some(redis) = redis {
        cmd.env("AO_REDIS_URL", format!("redis://{redis}"));
    }
    let metrics = format!("http://{addr}/metrics");
    let mut p = spawn(cmd, addr, dir, "the server").await?;
    p.metrics = Some(metrics);
    Ok(p)
}

/// Starts a private Redis on a free port, durable as the README asks of a
/// production one (append-only file, fsync before each reply).
async fn start_redis(bin: &Path) -> Result<Proc> {
    let dir = scratch_dir("redis")?;
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
        .arg("--dir")
        .arg(&dir);
    spawn(cmd, format!("127.0.0.1:{port}"), dir, "redis-server").await
}

/// Starts `n` server nodes sharing the Redis at `redis`.
async fn start_nodes(bin: &Path, redis: &str, n: usize) -> Result<Vec<Proc>> {
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(start_server(bin, Some(redis)).await?);
    }
    Ok(nodes)
}

/// Starts the floor (this binary's `floor` subcommand) on a free port;
/// `durable`: the durable floor, its log in its own scratch directory
/// (beside the servers' data directories) and its metrics on another port.
pub(crate) async fn start_floor(durable: bool) -> Result<Proc> {
    let dir = scratch_dir(if durable { "durable-floor" } else { "floor" })?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["floor", "--listen", &addr]);
    let mut metrics = None;
    if durable {
        let at = format!("127.0.0.1:{}", free_port()?);
        cmd.arg("--durable")
            .arg(dir.join("data"))
            .args(["--metrics-listen", &at]);
        metrics = Some(format!("http://{at}/metrics"));
    }
    let mut p = spawn(cmd, addr, dir, "the floor").await?;
    p.metrics = metrics;
    Ok(p)
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

/// One row of the table.
struct Row {
    figure: String,
    server: Option<f64>,
    floor: Option<f64>,
    target: &'static str,
    /// Whether the figure meets its target; `None` for information only.
    check: Option<Check>,
    /// The verdict whatever the figure says: a miss for another reason
    /// (messages not returned), or why the figure was not measured.
    verdict: Option<String>,
}

#[derive(Clone, Copy)]
enum Check {
    /// server / floor ≥ x.
    RatioAtLeast(f64),
    /// server ≤ x.
    AtMost(f64),
    /// server ≤ floor + x.
    AtMostFloorPlus(f64),
}

impl Row {
    fn new(
        figure: String,
        server: Option<f64>,
        floor: Option<f64>,
        target: &'static str,
        check: Option<Check>,
    ) -> Self {
        Self {
            figure,
            server,
            floor,
            target,
            check,
            verdict: None,
        }
    }

    fn ratio(&self) -> Option<f64> {
        match (self.server, self.floor) {
            (Some(s), Some(f)) if f != 0.0 => Some(s / f),
            _ => None,
        }
    }

    fn result(&self) -> String {
        if let Some(v) = &self.verdict {
            return v.clone();
        }
        let Some(check) = self.check else {
            return "info".into();
        };
        let ok = match check {
            Check::RatioAtLeast(x) => self.ratio().map(|r| r >= x),
            Check::AtMost(x) => self.server.map(|s| s <= x),
            Check::AtMostFloorPlus(x) => self.server.zip(self.floor).map(|(s, f)| s <= f + x),
        };
        match ok {
            Some(true) => "pass",
            Some(false) => "miss",
            None => "not run",
        }
        .into()
    }
}

/// A number with a precision fit for its size.
fn num(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(v) if !v.is_finite() => "—".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// The median of `values` (the mean of the middle two for an even count).
fn median_of(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// A sync row: the median ms of one encoding; with a target, it misses
/// when the preload did not complete or a sync returned fewer messages
/// than were sent.
fn sync_row(figure: String, r: Option<&SyncResult>, gzip: bool, check: Option<Check>) -> Row {
    let ms = r
        .and_then(|s| median(if gzip { &s.gzip } else { &s.plain }))
        .map(|m| m.ms);
    let target = if check.is_some() {
        "≤ 100 ms, all returned"
    } else {
        "—"
    };
    let mut row = Row::new(figure, ms, None, target, check);
    if let (Some(s), Some(_)) = (r, check) {
        row.verdict = match (&s.not_completed, s.returned()) {
            (Some(why), _) => Some(format!("not completed: {why}")),
            (None, Some(n)) if n != s.inserted as u64 => {
                Some(format!("miss: {n} of {} returned", s.inserted))
            }
            _ => None,
        };
    }
    row
}

/// The sum of a count over every run, `None` unless every run has it.
fn total_of(values: impl Iterator<Item = Option<u64>>) -> Option<f64> {
    let mut sum = 0u64;
    let mut any = false;
    for v in values {
        sum += v?;
        any = true;
    }
    any.then_some(sum as f64)
}

fn rows(cfg: &SuiteConfig, f: &Figures) -> Vec<Row> {
    use Against::{Durable, Floor, Inserts, Relay};
    let rate = cfg.rate;
    // Each figure's median over the rounds.
    let fan = |a: Against, fig: &dyn Fn(&StepResult) -> Option<f64>| {
        median_of(f.fanout[a.slot()].iter().filter_map(fig))
    };
    let best = |a: Against| f.find_max[a.slot()].as_ref().and_then(|r| r.best.as_ref());
    let cluster_best = |i: usize| f.cluster_find_max[i].as_ref().and_then(|r| r.best.as_ref());
    let cn = |i: usize, fig: &dyn Fn(&ConnsResult) -> Option<f64>| {
        median_of(f.conns[i].iter().filter_map(fig))
    };
    // What the server did, and against which floor.
    let mode = |a: Against| match a {
        Inserts | Durable => "inserts vs durable floor",
        Relay | Floor => "relay only",
    };
    // A fanout figure of the server storing or relaying only, against its
    // floor's; `unit` follows the mode.
    let fan_row = |a: Against,
                   (figure, unit): (&str, &str),
                   fig: &dyn Fn(&StepResult) -> Option<f64>,
                   target: &'static str,
                   check: Option<Check>| {
        Row::new(
            format!("{figure}, {}{unit}", mode(a)),
            fan(a, fig),
            fan(a.reference(), fig),
            target,
            check,
        )
    };
    let find_max_row = |a: Against, target: &'static str, check: Option<Check>| {
        Row::new(
            format!("find-max sent rate, {} (msg/s)", mode(a)),
            best(a).map(StepResult::sent_rate),
            best(a.reference()).map(StepResult::sent_rate),
            target,
            check,
        )
    };
    let stalls = |a: Against| total_of(f.log[a.slot()].iter().map(|l| l.stalls));
    let mut stall_row = Row::new(
        format!(
            "commit stalls (group > 50 ms) in {} fanout run(s) @ {rate:.0} msg/s, inserts vs durable floor",
            f.log[Inserts.slot()].len()
        ),
        stalls(Inserts),
        stalls(Durable),
        "≤ durable floor",
        Some(Check::AtMostFloorPlus(0.0)),
    );
    if stall_row.server.is_none() && !f.log[Inserts.slot()].is_empty() {
        stall_row.verdict = Some(format!(
            "n/a: the server has no {}",
            log_metrics::STALLS_TOTAL
        ));
    }
    let at = format!("@ {rate:.0} msg/s");
    let deliveries = format!("deliveries per server CPU-s {at}");
    let p99 = format!("p99 latency {at}");
    let p99_of = |r: &StepResult| Some(r.latency_ms(0.99));
    let mut rows = vec![
        find_max_row(
            Inserts,
            "≥ 0.85 × durable floor",
            Some(Check::RatioAtLeast(0.85)),
        ),
        find_max_row(Relay, "≥ 0.85 × floor", Some(Check::RatioAtLeast(0.85))),
        Row::new(
            "2 nodes on Redis, relay only: find-max sent rate (msg/s)".into(),
            cluster_best(0).map(StepResult::sent_rate),
            best(Floor).map(StepResult::sent_rate),
            "≥ 0.4 × floor",
            Some(Check::RatioAtLeast(0.4)),
        ),
        Row::new(
            "2 nodes on Redis, inserts vs 1-node durable floor: find-max sent rate (msg/s)".into(),
            cluster_best(1).map(StepResult::sent_rate),
            best(Durable).map(StepResult::sent_rate),
            "≥ 0.5 × durable floor",
            Some(Check::RatioAtLeast(0.5)),
        ),
        fan_row(
            Inserts,
            (&deliveries, ""),
            &StepResult::deliveries_per_cpu_s,
            "≥ 1.0 × durable floor",
            Some(Check::RatioAtLeast(1.0)),
        ),
        fan_row(
            Relay,
            (&deliveries, ""),
            &StepResult::deliveries_per_cpu_s,
            "≥ 1.0 × floor",
            Some(Check::RatioAtLeast(1.0)),
        ),
        fan_row(
            Inserts,
            (&p99, " (ms)"),
            &p99_of,
            "≤ durable floor + 1 ms",
            Some(Check::AtMostFloorPlus(1.0)),
        ),
        fan_row(
            Relay,
            (&p99, " (ms)"),
            &p99_of,
            "≤ 1 ms",
            Some(Check::AtMost(1.0)),
        ),
        stall_row,
        fan_row(
            Inserts,
            (&format!("disk bytes written per stored msg {at}"), ""),
            &StepResult::disk_bytes_per_stored,
            "≤ 2 KiB",
            Some(Check::AtMost(2048.0)),
        ),
        Row::new(
            format!("RSS per idle connection @ {} conns (KiB)", cfg.conns),
            cn(0, &|r| r.rss_per_conn().map(|b| b / 1024.0)),
            cn(1, &|r| r.rss_per_conn().map(|b| b / 1024.0)),
            "≤ 4 KiB",
            Some(Check::AtMost(4.0)),
        ),
        Row::new(
            format!("set-ups/s @ {} conns", cfg.conns),
            cn(0, &|r| Some(r.setups_per_s())),
            cn(1, &|r| Some(r.setups_per_s())),
            "≥ 1.0 × floor",
            Some(Check::RatioAtLeast(1.0)),
        ),
        sync_row(
            format!(
                "sync of {} msgs stored with acks, no gzip (ms)",
                cfg.sync_messages
            ),
            f.sync.as_ref(),
            false,
            Some(Check::AtMost(100.0)),
        ),
        sync_row(
            format!(
                "sync of {} msgs preloaded without acks, no gzip (ms)",
                cfg.sync_messages
            ),
            f.sync_unacked.as_ref(),
            false,
            Some(Check::AtMost(100.0)),
        ),
        Row::new(
            format!(
                "connections lost of {} held {} s",
                cfg.hold_conns,
                cfg.hold_time.as_secs()
            ),
            f.hold.as_ref().map(|r| r.lost as f64),
            None,
            "0",
            Some(Check::AtMost(0.0)),
        ),
        fan_row(
            Inserts,
            (&format!("CPU per stored msg {at}"), " (µs)"),
            &StepResult::cpu_us_per_stored,
            "—",
            None,
        ),
        Row::new(
            format!("group commit p99 {at}, inserts vs durable floor (ms)"),
            median_of(f.log[Inserts.slot()].iter().filter_map(|l| l.sync_ms(0.99))),
            median_of(f.log[Durable.slot()].iter().filter_map(|l| l.sync_ms(0.99))),
            "—",
            None,
        ),
        sync_row(
            format!(
                "sync of {} msgs stored with acks, gzip (ms)",
                cfg.sync_messages
            ),
            f.sync.as_ref(),
            true,
            None,
        ),
    ];
    for a in [Inserts, Relay] {
        rows.push(fan_row(
            a,
            (&format!("delivered/s {at}"), ""),
            &|r| Some(r.delivered_rate()),
            "—",
            None,
        ));
    }
    for a in [Inserts, Relay] {
        rows.push(fan_row(
            a,
            (&format!("deliveries received {at}"), " (%)"),
            &|r| Some(r.delivery_ratio() * 100.0),
            "—",
            None,
        ));
    }
    for a in [Inserts, Relay] {
        rows.push(fan_row(
            a,
            (&format!("p50 latency {at}"), " (ms)"),
            &|r| Some(r.latency_ms(0.5)),
            "—",
            None,
        ));
    }
    for a in [Inserts, Relay] {
        rows.push(Row::new(
            format!("find-max p99 at the best step, {} (ms)", mode(a)),
            best(a).map(|r| r.latency_ms(0.99)),
            best(a.reference()).map(|r| r.latency_ms(0.99)),
            "—",
            None,
        ));
    }
    rows.push(Row::new(
        format!("server CPU per set-up @ {} conns (µs)", cfg.conns),
        cn(0, &ConnsResult::cpu_per_setup_us),
        cn(1, &ConnsResult::cpu_per_setup_us),
        "—",
        None,
    ));
    rows
}

/// A report's first lines: the command, when, on what machine, how long,
/// the load average at start and end, and the disk's own `fdatasync`.
pub(crate) fn report_header(
    out: &mut String,
    command: &str,
    eio: impl std::fmt::Display,
    took: Duration,
    load_at_start: Option<&str>,
    disk: Option<&DiskSync>,
) {
    let (cpus, model) = proc_stats::machine_facts();
    let _ = writeln!(
        out,
        "{command} — {} — {cpus} CPUs, {model} — engine.io {eio} — {:.0} s",
        utc_now(),
        took.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "load average (1/5/15 min) at start {}, at end {}",
        load_at_start.unwrap_or("?"),
        proc_stats::load_average().as_deref().unwrap_or("?")
    );
    let _ = writeln!(
        out,
        "{}",
        disk.map_or_else(
            || "disk fdatasync: not measured".to_owned(),
            DiskSync::summary
        )
    );
}

fn report(cfg: &SuiteConfig, f: &Figures, took: Duration) -> String {
    let mut out = String::new();
    let command = format!("ao-bench suite{}", if cfg.quick { " --quick" } else { "" });
    report_header(
        &mut out,
        &command,
        cfg.eio,
        took,
        f.load_at_start.as_deref(),
        f.disk.as_ref(),
    );
    let rows = rows(cfg, f);
    let header = ["figure", "server", "floor", "ratio", "target", "pass/miss"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.figure.clone(),
                num(r.server),
                num(r.floor),
                num(r.ratio()),
                r.target.to_owned(),
                r.result(),
            ]
        })
        .collect();
    let mut width = header.map(|h| h.chars().count());
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c.iter()) {
            *w = (*w).max(s.chars().count());
        }
    }
    let line = |cols: [&str; 6]| {
        let mut l = String::from("|");
        for (i, (c, w)) in cols.iter().zip(width).enumerate() {
            let pad = w - c.chars().count();
            // Figures left-aligned, numbers right-aligned.
            if (1..=3).contains(&i) {
                l.push_str(&format!(" {}{} |", " ".repeat(pad), c));
            } else {
                l.push_str(&format!(" {}{} |", c, " ".repeat(pad)));
            }
        }
        l
    };
    let _ = writeln!(out, "{}", line(header));
    let sep: Vec<String> = width.iter().map(|&w| "-".repeat(w)).collect();
    let _ = writeln!(out, "|-{}-|", sep.join("-|-"));
    for c in &cells {
        let _ = writeln!(out, "{}", line([&c[0], &c[1], &c[2], &c[3], &c[4], &c[5]]));
    }
    let find_max_steps = |out: &mut String, name: &str, fm: &FindMaxResult| {
        for (step, verdict) in &fm.steps {
            let v = match verdict {
                Ok(()) => "ok".to_owned(),
                Err(why) => format!("fails: {why}"),
            };
            let _ = writeln!(out, "find-max {name} step {:.0}/s: {v}", step.rate);
        }
    };
    for a in Against::ALL {
        for (round, r) in f.fanout[a.slot()].iter().enumerate() {
            let log = match f.log[a.slot()].get(round) {
                Some(log) if a.storage() == 0 => format!("; {}", log.summary()),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "fanout @ {:.0} msg/s, {}, round {}: {}{log}",
                cfg.rate,
                a.name(),
                round + 1,
                r.summary()
            );
        }
        if let Some(fm) = &f.find_max[a.slot()] {
            find_max_steps(&mut out, a.name(), fm);
        }
    }
    for (fm, a) in f
        .cluster_find_max
        .iter()
        .zip([Against::Relay, Against::Inserts])
    {
        if let Some(fm) = fm {
            let name = format!("2 nodes on Redis, {},", cluster_mode(a));
            find_max_steps(&mut out, &name, fm);
        }
    }
    for side in [Side::Server, Side::Floor] {
        let i = slot(side);
        for (round, r) in f.conns[i].iter().enumerate() {
            let _ = writeln!(
                out,
                "conns, {}, round {}: {}",
                side.name(),
                round + 1,
                r.summary()
            );
        }
    }
    if let Some(s) = &f.sync {
        let _ = writeln!(out, "sync with acks, server: {}", s.summary());
    }
    if let Some(s) = &f.sync_unacked {
        let _ = writeln!(out, "sync without acks, server: {}", s.summary());
    }
    for n in &f.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

/// The current UTC date and time, `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        s / 3600,
        s / 60 % 60
    )
}

/// Writes `report` (as [`run`] returns it) as a Markdown file in `dir`,
/// named by the run's date and `suffix` (`2026-12-05.md`,
/// `2026-12-05-stalls.md`, or with the time added when that name is taken
/// already); returns its path.
pub fn write_markdown(
    dir: &std::path::Path,
    report: &str,
    command: &str,
    suffix: Option<&str>,
) -> Result<PathBuf> {
    let stamp = report
        .lines()
        .next()
        .and_then(|l| l.split(" — ").nth(1))
        .map_or_else(utc_now, str::to_owned);
    let day = stamp.get(..10).unwrap_or("undated").to_owned();
    let time = stamp.get(11..16).unwrap_or("0000").replace(':', "");
    std::fs::create_dir_all(dir)?;
    let suffix = suffix.map(|s| format!("-{s}")).unwrap_or_default();
    let mut path = dir.join(format!("{day}{suffix}.md"));
    if path.exists() {
        path = dir.join(format!("{day}-{time}{suffix}.md"));
    }
    std::fs::write(&path, markdown(report, command, &stamp))?;
    Ok(path)
}

/// The report as Markdown: its header lines, the table as a table, and the
/// lines under it (every round and step) as a block.
fn markdown(report: &str, command: &str, stamp: &str) -> String {
    let mut head = Vec::new();
    let mut table = Vec::new();
    let mut rest = Vec::new();
    for line in report.lines() {
        if line.starts_with('|') && rest.is_empty() {
            table.push(line);
        } else if table.is_empty() {
            head.push(line);
        } else {
            rest.push(line);
        }
    }
    let mut out = format!("# ao-bench suite, {stamp}\n\n`ao-bench {command}`\n\n");
    for line in head.iter().filter(|l| !l.trim().is_empty()) {
        out.push_str(line.trim());
        out.push_str("  \n");
    }
    out.push('\n');
    for line in &table {
        out.push_str(line);
        out.push('\n');
    }
    if !rest.is_empty() {
        out.push_str("\nEvery round and step:\n\n```text\n");
        for line in &rest {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("```\n");
    }
    out
}

/// Year, month, day of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_over_rounds() {
        assert_eq!(median_of([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median_of([4.0, 1.0].into_iter()), Some(2.5));
        assert_eq!(median_of([f64::NAN, 5.0].into_iter()), Some(5.0));
        assert_eq!(median_of(std::iter::empty()), None);
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn verdicts() {
        let row = |server, floor, check| Row::new(String::new(), server, floor, "", check);
        assert_eq!(
            row(Some(8.0), Some(10.0), Some(Check::RatioAtLeast(0.7))).result(),
            "pass"
        );
        assert_eq!(
            row(Some(6.0), Some(10.0), Some(Check::RatioAtLeast(0.7))).result(),
            "miss"
        );
        assert_eq!(
            row(None, Some(10.0), Some(Check::RatioAtLeast(0.7))).result(),
            "not run"
        );
        assert_eq!(
            row(Some(4.0), None, Some(Check::AtMost(5.0))).result(),
            "pass"
        );
        assert_eq!(
            row(Some(6.0), None, Some(Check::AtMost(5.0))).result(),
            "miss"
        );
        assert_eq!(row(Some(6.0), None, None).result(), "info");
        assert_eq!(num(Some(1234.4)), "1234");
        assert_eq!(num(Some(12.34)), "12.3");
        assert_eq!(num(Some(1.234)), "1.23");
        assert_eq!(num(None), "—");
    }

    #[test]
    fn empty_report_lists_every_figure_as_not_run() {
        let cfg = SuiteConfig::new(PathBuf::from("/nonexistent"), true);
        let out = report(&cfg, &Figures::default(), Duration::from_secs(1));
        assert!(out.contains("| figure"));
        // The commit stalls too: no run, so not "n/a".
        assert_eq!(out.matches("not run").count(), 15);
        assert!(out.contains("disk fdatasync: not measured"), "{out}");
    }

    fn sync_result(not_completed: Option<&str>, returned: &[u64]) -> SyncResult {
        let run = |messages| sync::SyncRun {
            ms: 50.0,
            pages: 50,
            messages,
            bytes: 1,
        };
        SyncResult {
            preload: Preload::Unacked,
            inserted: 10_000,
            insert_s: 1.0,
            resends: 0,
            not_completed: not_completed.map(str::to_owned),
            plain: returned.iter().map(|&n| run(n)).collect(),
            gzip: Vec::new(),
        }
    }

    #[test]
    fn sync_rows_miss_when_messages_are_missing_or_the_preload_failed() {
        let check = Some(Check::AtMost(100.0));
        let all = sync_result(None, &[10_000, 10_000]);
        assert_eq!(
            sync_row(String::new(), Some(&all), false, check).result(),
            "pass"
        );
        let short = sync_result(None, &[10_000, 9_744]);
        assert_eq!(
            sync_row(String::new(), Some(&short), false, check).result(),
            "miss: 9744 of 10000 returned"
        );
        let failed = sync_result(
            Some("disconnected by the server after 300 of 10000 sent"),
            &[],
        );
        let row = sync_row(String::new(), Some(&failed), false, check);
        assert_eq!(row.server, None);
        assert_eq!(
            row.result(),
            "not completed: disconnected by the server after 300 of 10000 sent"
        );
        assert_eq!(
            sync_row(String::new(), None, false, check).result(),
            "not run"
        );
        assert_eq!(
            sync_row(String::new(), Some(&short), true, None).result(),
            "info"
        );
    }

    #[test]
    fn report_lists_inserts_relay_and_floor_figures() {
        let cfg = SuiteConfig::new(PathBuf::from("/nonexistent"), true);
        let out = report(&cfg, &Figures::default(), Duration::from_secs(1));
        for figure in [
            "find-max sent rate, inserts",
            "find-max sent rate, relay only",
            "2 nodes on Redis, relay only",
            "2 nodes on Redis, inserts vs 1-node durable floor",
            "deliveries per server CPU-s @ 2000 msg/s, inserts vs durable floor",
            "deliveries per server CPU-s @ 2000 msg/s, relay only",
            "p99 latency @ 2000 msg/s, inserts vs durable floor",
            "commit stalls (group > 50 ms)",
            "disk bytes written per stored msg @ 2000 msg/s, inserts vs durable floor",
            "CPU per stored msg @ 2000 msg/s, inserts vs durable floor",
            "group commit p99",
            "sync of 10000 msgs preloaded without acks",
        ] {
            assert!(out.contains(figure), "{figure} missing from\n{out}");
        }
    }

    fn fan_step(storage: u8, p99_us: u64, cpu_s: f64, written: u64) -> StepResult {
        let mut latency = crate::histogram::Histogram::new();
        for _ in 0..100 {
            latency.record(p99_us * 1_000);
        }
        StepResult {
            rate: 2_000.0,
            storage,
            window_s: 10.0,
            sent: 20_000,
            expected: 180_000,
            received: 180_000,
            latency,
            send_lag: crate::histogram::Histogram::new(),
            server_cpu_s: Some(cpu_s),
            server_write_bytes: Some(written),
            server_rss: None,
            loadgen_cpu_s: None,
            others_cpu_s: None,
            lost_conns: 0,
        }
    }

    fn row<'a>(rows: &'a [Row], starts: &str) -> &'a Row {
        rows.iter()
            .find(|r| r.figure.starts_with(starts))
            .unwrap_or_else(|| panic!("no row {starts}"))
    }

    fn log(stalls: Option<u64>) -> LogFigures {
        LogFigures {
            stalls,
            syncs: None,
        }
    }

    #[test]
    fn inserts_are_compared_with_the_durable_floor_and_relays_with_the_floor() {
        let cfg = SuiteConfig::new(PathBuf::from("/nonexistent"), true);
        let mut f = Figures::default();
        // Inserts: 2.5 ms p99, 2 s CPU, 1 KiB a msg; the durable floor 2 ms,
        // 1.6 s, 2 KiB; relay only 1 s CPU against the floor's 2 s.
        f.fanout[Against::Inserts.slot()].push(fan_step(0, 2_500, 2.0, 20_000 * 1024));
        f.fanout[Against::Durable.slot()].push(fan_step(0, 2_000, 1.6, 20_000 * 2048));
        f.fanout[Against::Relay.slot()].push(fan_step(2, 500, 1.0, 0));
        f.fanout[Against::Floor.slot()].push(fan_step(2, 500, 2.0, 0));
        f.log[Against::Inserts.slot()].push(log(Some(2)));
        f.log[Against::Durable.slot()].push(log(Some(1)));
        let rows = rows(&cfg, &f);
        let deliveries = row(&rows, "deliveries per server CPU-s @ 2000 msg/s, inserts");
        assert_eq!(deliveries.ratio(), Some(0.8));
        assert_eq!(deliveries.result(), "miss");
        let relay = row(
            &rows,
            "deliveries per server CPU-s @ 2000 msg/s, relay only",
        );
        assert_eq!(relay.ratio(), Some(2.0));
        assert_eq!(relay.result(), "pass");
        let bytes = row(&rows, "disk bytes written per stored msg");
        assert_eq!((bytes.server, bytes.floor), (Some(1024.0), Some(2048.0)));
        assert_eq!(bytes.result(), "pass");
        let p99 = row(&rows, "p99 latency @ 2000 msg/s, inserts");
        let (server, floor) = (p99.server.expect("p99"), p99.floor.expect("p99"));
        assert!(server > floor && server <= floor + 1.0, "{server} {floor}");
        assert_eq!(p99.result(), "pass");
        let stalls = row(&rows, "commit stalls");
        assert_eq!((stalls.server, stalls.floor), (Some(2.0), Some(1.0)));
        assert_eq!(stalls.result(), "miss");
        assert!(
            stalls.figure.contains("in 1 fanout run(s)"),
            "{}",
            stalls.figure
        );
    }

    #[test]
    fn stalls_are_not_available_from_a_server_without_the_metric() {
        let cfg = SuiteConfig::new(PathBuf::from("/nonexistent"), true);
        let mut f = Figures::default();
        f.log[Against::Inserts.slot()].push(log(Some(0)));
        f.log[Against::Inserts.slot()].push(log(None));
        f.log[Against::Durable.slot()].push(log(Some(0)));
        let rows = rows(&cfg, &f);
        let stalls = row(&rows, "commit stalls");
        assert_eq!(stalls.server, None);
        assert_eq!(
            stalls.result(),
            "n/a: the server has no ao_store_log_stalls_total"
        );
        f.log[Against::Inserts.slot()].pop();
        f.log[Against::Durable.slot()].push(log(Some(3)));
        let rows = super::rows(&cfg, &f);
        let stalls = row(&rows, "commit stalls");
        assert_eq!((stalls.server, stalls.floor), (Some(0.0), Some(3.0)));
        assert_eq!(stalls.result(), "pass");
    }

    #[test]
    fn counts_add_up_only_when_every_run_has_them() {
        assert_eq!(total_of([Some(1), Some(2)].into_iter()), Some(3.0));
        assert_eq!(total_of([Some(1), None].into_iter()), None);
        assert_eq!(total_of(std::iter::empty()), None);
        let row = |server, floor| {
            Row::new(
                String::new(),
                server,
                floor,
                "",
                Some(Check::AtMostFloorPlus(1.0)),
            )
        };
        assert_eq!(row(Some(6.0), Some(5.0)).result(), "pass");
        assert_eq!(row(Some(6.1), Some(5.0)).result(), "miss");
        assert_eq!(row(Some(6.0), None).result(), "not run");
    }

    #[test]
    fn the_header_shows_what_the_disk_allows() {
        let cfg = SuiteConfig::new(PathBuf::from("/nonexistent"), true);
        let dir = tempfile::tempdir().expect("dir");
        let disk = disk_probe::measure(dir.path(), Duration::from_millis(20)).expect("probe");
        let f = Figures {
            disk: Some(disk),
            ..Figures::default()
        };
        let out = report(&cfg, &f, Duration::from_secs(1));
        let header: Vec<&str> = out.lines().take(3).collect();
        assert!(
            header[2].starts_with("disk fdatasync after 4 KiB appends: p50 "),
            "{out}"
        );
    }

    #[test]
    fn the_markdown_report_keeps_the_table_as_a_table() {
        let report = "ao-bench suite — 2026-12-05 15:45 UTC — 2 CPUs, X — engine.io 4 — 898 s\nload average 1 2 3\n\n| figure | server |\n| --- | --- |\n| a | 1 |\nround 1: ok\n";
        let md = markdown(report, "suite", "2026-12-05 15:45 UTC");
        assert!(
            md.starts_with("# ao-bench suite, 2026-12-05 15:45 UTC\n"),
            "{md}"
        );
        assert!(
            md.contains("\n| figure | server |\n| --- | --- |\n| a | 1 |\n"),
            "{md}"
        );
        assert!(md.contains("```text\nround 1: ok\n```"), "{md}");
        let dir = tempfile::tempdir().expect("dir");
        let first = write_markdown(dir.path(), report, "suite", None).expect("write");
        assert!(first.ends_with("2026-12-05.md"));
        let second = write_markdown(dir.path(), report, "suite", None).expect("write again");
        assert!(second.ends_with("2026-12-05-1545.md"));
        let stalls = write_markdown(dir.path(), report, "suite", Some("stalls")).expect("write");
        assert!(stalls.ends_with("2026-12-05-stalls.md"));
    }
}
