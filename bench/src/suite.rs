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

use crate::engineio::Eio;
use crate::scenarios::conns::{self, ConnsConfig, ConnsResult};
use crate::scenarios::fanout::{self, Criteria, FanoutConfig, FindMax, FindMaxResult, StepResult};
use crate::scenarios::sync::{self, median, SyncConfig, SyncResult};
use crate::{proc_stats, Result};

/// Settings of a suite run.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// The real server's binary (a release build).
    pub server_bin: PathBuf,
    /// Smaller numbers, about a minute and a half in all.
    pub quick: bool,
    /// Connections of the conns scenario.
    pub conns: usize,
    /// Stored messages of the sync scenario.
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
}

impl SuiteConfig {
    /// Defaults: full (10,000 connections, 50,000 messages, 19,000
    /// connections held 5 minutes, 30 minutes at most) or quick (2,000
    /// connections, 10,000 messages, 4,000 held 20 s, 4 minutes at most).
    pub fn new(server_bin: PathBuf, quick: bool) -> Self {
        Self {
            server_bin,
            quick,
            conns: if quick { 2_000 } else { 10_000 },
            sync_messages: if quick { 10_000 } else { 50_000 },
            rate: 2_000.0,
            eio: Eio::V4,
            max_time: Duration::from_secs(if quick { 240 } else { 1_800 }),
            redis_server: PathBuf::from("redis-server"),
            hold_conns: if quick { 4_000 } else { 19_000 },
            hold_time: Duration::from_secs(if quick { 20 } else { 300 }),
            rounds: if quick { 1 } else { 3 },
        }
    }

    fn fanout(&self, addr: &str, pid: u32) -> FanoutConfig {
        FanoutConfig {
            nodes: vec![addr.to_owned()],
            eio: self.eio,
            rooms: 100,
            members: 10,
            rate: self.rate,
            size: 200,
            storage: 2,
            warmup: secs(if self.quick { 1.0 } else { 3.0 }),
            duration: secs(if self.quick { 3.0 } else { 10.0 }),
            drain: secs(if self.quick { 1.0 } else { 2.0 }),
            server_pids: vec![pid],
            concurrency: 128,
        }
    }

    fn find_max(&self, addr: &str, pid: u32) -> (FanoutConfig, FindMax) {
        let mut cfg = self.fanout(addr, pid);
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

    fn sync(&self, addr: &str) -> SyncConfig {
        SyncConfig {
            addr: addr.to_owned(),
            eio: self.eio,
            messages: self.sync_messages,
            size: 200,
            repeat: if self.quick { 1 } else { 9 },
            window: 128,
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A child process (server or floor) killed when dropped.
struct Proc {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
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

fn scratch_dir(what: &str) -> Result<PathBuf> {
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
    let mut p = Proc { child, addr, dir };
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
async fn start_server(bin: &Path, redis: Option<&str>) -> Result<Proc> {
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
    .env("RUST_LOG", "warn");
    if let Some(redis) = redis {
        cmd.env("AO_REDIS_URL", format!("redis://{redis}"));
    }
    spawn(cmd, addr, dir, "the server").await
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

/// Starts the floor (this binary's `floor` subcommand) on a free port.
async fn start_floor() -> Result<Proc> {
    let dir = scratch_dir("floor")?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["floor", "--listen", &addr]);
    spawn(cmd, addr, dir, "the floor").await
}

/// Which side a figure was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Floor,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::Floor => "floor",
        }
    }
}

/// Everything measured so far (kept outside the run so that a suite
/// stopped by its time limit still prints what it has).
#[derive(Default)]
struct Figures {
    /// Every round's fixed-rate fanout, per side.
    fanout: [Vec<StepResult>; 2],
    find_max: [Option<FindMaxResult>; 2],
    /// find-max with members spread over 2 nodes on one Redis.
    cluster_find_max: Option<FindMaxResult>,
    /// Every round's conns, per side.
    conns: [Vec<ConnsResult>; 2],
    /// The long hold against the server.
    hold: Option<ConnsResult>,
    sync: Option<SyncResult>,
    notes: Vec<String>,
    /// Load average when the suite started.
    load_at_start: Option<String>,
}

fn slot(side: Side) -> usize {
    match side {
        Side::Server => 0,
        Side::Floor => 1,
    }
}

async fn start(cfg: &SuiteConfig, side: Side) -> Result<Proc> {
    match side {
        Side::Server => start_server(&cfg.server_bin, None).await,
        Side::Floor => start_floor().await,
    }
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

/// Runs a scenario `cfg.rounds` times per side, server and floor
/// alternating, each run against a fresh process; `keep` files each result.
async fn alternating_rounds<R>(
    cfg: &SuiteConfig,
    figs: &Mutex<Figures>,
    title: &str,
    run: impl AsyncFn(&Proc) -> Result<R>,
    summary: impl Fn(&R) -> String,
    keep: impl Fn(&mut Figures, Side, R),
) {
    for round in 1..=cfg.rounds {
        for side in [Side::Server, Side::Floor] {
            eprintln!(
                "== {title} against the {} (round {round} of {})",
                side.name(),
                cfg.rounds
            );
            let r = async { run(&start(cfg, side).await?).await }.await;
            match r {
                Ok(r) => {
                    eprintln!("{}: {}", side.name(), summary(&r));
                    with(figs, |f| keep(f, side, r));
                }
                Err(e) => note(figs, format!("{title} against the {}: {e}", side.name())),
            }
        }
    }
}

async fn run_all(cfg: &SuiteConfig, figs: &Mutex<Figures>) {
    let sides = [Side::Server, Side::Floor];
    let title = format!("fanout at {} msg/s", cfg.rate);
    alternating_rounds(
        cfg,
        figs,
        &title,
        async |p: &Proc| fanout::fanout(&cfg.fanout(&p.addr, p.pid())).await,
        StepResult::summary,
        |f, side, r| f.fanout[slot(side)].push(r),
    )
    .await;
    for side in sides {
        eprintln!("== find-max against the {}", side.name());
        let r = async {
            let p = start(cfg, side).await?;
            let (c, fm) = cfg.find_max(&p.addr, p.pid());
            fanout::find_max(&c, &fm).await
        }
        .await;
        match r {
            Ok(r) => with(figs, |f| f.find_max[slot(side)] = Some(r)),
            Err(e) => note(figs, format!("find-max against the {}: {e}", side.name())),
        }
    }
    eprintln!("== find-max against 2 nodes on Redis");
    let r = async {
        let redis = start_redis(&cfg.redis_server).await?;
        let nodes = start_nodes(&cfg.server_bin, &redis.addr, 2).await?;
        let (mut c, fm) = cfg.find_max(&nodes[0].addr, nodes[0].pid());
        c.nodes = nodes.iter().map(|n| n.addr.clone()).collect();
        c.server_pids = nodes.iter().map(Proc::pid).chain([redis.pid()]).collect();
        fanout::find_max(&c, &fm).await
    }
    .await;
    match r {
        Ok(r) => with(figs, |f| f.cluster_find_max = Some(r)),
        Err(e) => note(figs, format!("find-max against 2 nodes on Redis: {e}")),
    }
    let title = format!("conns ({})", cfg.conns);
    alternating_rounds(
        cfg,
        figs,
        &title,
        async |p: &Proc| conns::conns(&cfg.conns(&p.addr, p.pid())).await,
        ConnsResult::summary,
        |f, side, r| f.conns[slot(side)].push(r),
    )
    .await;
    eprintln!(
        "== sync of {} stored messages against the server",
        cfg.sync_messages
    );
    let r = async {
        let p = start(cfg, Side::Server).await?;
        sync::sync(&cfg.sync(&p.addr)).await
    }
    .await;
    match r {
        Ok(r) => {
            eprintln!("{}", r.summary());
            with(figs, |f| f.sync = Some(r));
        }
        Err(e) => note(figs, format!("sync against the server: {e}")),
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
}

#[derive(Clone, Copy)]
enum Check {
    /// server / floor ≥ x.
    RatioAtLeast(f64),
    /// server ≤ x.
    AtMost(f64),
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        match (self.server, self.floor) {
            (Some(s), Some(f)) if f != 0.0 => Some(s / f),
            _ => None,
        }
    }

    fn result(&self) -> &'static str {
        let Some(check) = self.check else {
            return "info";
        };
        let ok = match check {
            Check::RatioAtLeast(x) => self.ratio().map(|r| r >= x),
            Check::AtMost(x) => self.server.map(|s| s <= x),
        };
        match ok {
            Some(true) => "pass",
            Some(false) => "miss",
            None => "not run",
        }
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

fn rows(cfg: &SuiteConfig, f: &Figures) -> Vec<Row> {
    let rate = cfg.rate;
    // Each figure's median over the rounds.
    let fan = |i: usize, fig: &dyn Fn(&StepResult) -> Option<f64>| {
        median_of(f.fanout[i].iter().filter_map(fig))
    };
    let best = |i: usize| f.find_max[i].as_ref().and_then(|r| r.best.as_ref());
    let cn = |i: usize, fig: &dyn Fn(&ConnsResult) -> Option<f64>| {
        median_of(f.conns[i].iter().filter_map(fig))
    };
    let sync_ms = |gzip: bool| {
        f.sync
            .as_ref()
            .and_then(|s| median(if gzip { &s.gzip } else { &s.plain }))
            .map(|r| r.ms)
    };
    vec![
        Row {
            figure: "find-max sent rate (msg/s)".into(),
            server: best(0).map(StepResult::sent_rate),
            floor: best(1).map(StepResult::sent_rate),
            target: "≥ 0.7 × floor",
            check: Some(Check::RatioAtLeast(0.7)),
        },
        Row {
            figure: "2 nodes on Redis: find-max sent rate (msg/s)".into(),
            server: f
                .cluster_find_max
                .as_ref()
                .and_then(|r| r.best.as_ref())
                .map(StepResult::sent_rate),
            floor: best(1).map(StepResult::sent_rate),
            target: "≥ 0.4 × floor",
            check: Some(Check::RatioAtLeast(0.4)),
        },
        Row {
            figure: format!("deliveries per server CPU-s @ {rate:.0} msg/s"),
            server: fan(0, &StepResult::deliveries_per_cpu_s),
            floor: fan(1, &StepResult::deliveries_per_cpu_s),
            target: "≥ 0.8 × floor",
            check: Some(Check::RatioAtLeast(0.8)),
        },
        Row {
            figure: format!("p99 latency @ {rate:.0} msg/s (ms)"),
            server: fan(0, &|r| Some(r.latency_ms(0.99))),
            floor: fan(1, &|r| Some(r.latency_ms(0.99))),
            target: "≤ 5 ms",
            check: Some(Check::AtMost(5.0)),
        },
        Row {
            figure: format!("RSS per idle connection @ {} conns (KiB)", cfg.conns),
            server: cn(0, &|r| r.rss_per_conn().map(|b| b / 1024.0)),
            floor: cn(1, &|r| r.rss_per_conn().map(|b| b / 1024.0)),
            target: "≤ 10 KiB",
            check: Some(Check::AtMost(10.0)),
        },
        Row {
            figure: format!("set-ups/s @ {} conns", cfg.conns),
            server: cn(0, &|r| Some(r.setups_per_s())),
            floor: cn(1, &|r| Some(r.setups_per_s())),
            target: "≥ 0.7 × floor",
            check: Some(Check::RatioAtLeast(0.7)),
        },
        Row {
            figure: format!("sync of {} stored msgs, no gzip (ms)", cfg.sync_messages),
            server: sync_ms(false),
            floor: None,
            target: "≤ 100 ms",
            check: Some(Check::AtMost(100.0)),
        },
        Row {
            figure: format!("sync of {} stored msgs, gzip (ms)", cfg.sync_messages),
            server: sync_ms(true),
            floor: None,
            target: "—",
            check: None,
        },
        Row {
            figure: format!(
                "connections lost of {} held {} s",
                cfg.hold_conns,
                cfg.hold_time.as_secs()
            ),
            server: f.hold.as_ref().map(|r| r.lost as f64),
            floor: None,
            target: "0",
            check: Some(Check::AtMost(0.0)),
        },
        Row {
            figure: format!("delivered/s @ {rate:.0} msg/s"),
            server: fan(0, &|r| Some(r.delivered_rate())),
            floor: fan(1, &|r| Some(r.delivered_rate())),
            target: "—",
            check: None,
        },
        Row {
            figure: format!("deliveries received @ {rate:.0} msg/s (%)"),
            server: fan(0, &|r| Some(r.delivery_ratio() * 100.0)),
            floor: fan(1, &|r| Some(r.delivery_ratio() * 100.0)),
            target: "—",
            check: None,
        },
        Row {
            figure: format!("p50 latency @ {rate:.0} msg/s (ms)"),
            server: fan(0, &|r| Some(r.latency_ms(0.5))),
            floor: fan(1, &|r| Some(r.latency_ms(0.5))),
            target: "—",
            check: None,
        },
        Row {
            figure: "find-max p99 at the best step (ms)".into(),
            server: best(0).map(|r| r.latency_ms(0.99)),
            floor: best(1).map(|r| r.latency_ms(0.99)),
            target: "—",
            check: None,
        },
        Row {
            figure: format!("server CPU per set-up @ {} conns (µs)", cfg.conns),
            server: cn(0, &ConnsResult::cpu_per_setup_us),
            floor: cn(1, &ConnsResult::cpu_per_setup_us),
            target: "—",
            check: None,
        },
    ]
}

fn report(cfg: &SuiteConfig, f: &Figures, took: Duration) -> String {
    let (cpus, model) = proc_stats::machine_facts();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ao-bench suite{} — {} — {} CPUs, {} — engine.io {} — {:.0} s",
        if cfg.quick { " --quick" } else { "" },
        utc_now(),
        cpus,
        model,
        cfg.eio,
        took.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "load average (1/5/15 min) at start {}, at end {}",
        f.load_at_start.as_deref().unwrap_or("?"),
        proc_stats::load_average().as_deref().unwrap_or("?")
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
                r.result().to_owned(),
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
    for (i, side) in [Side::Server, Side::Floor].iter().enumerate() {
        for (round, r) in f.fanout[i].iter().enumerate() {
            let _ = writeln!(
                out,
                "fanout @ {:.0} msg/s, {}, round {}: {}",
                cfg.rate,
                side.name(),
                round + 1,
                r.summary()
            );
        }
        if let Some(fm) = &f.find_max[i] {
            for (step, verdict) in &fm.steps {
                let v = match verdict {
                    Ok(()) => "ok".to_owned(),
                    Err(why) => format!("fails: {why}"),
                };
                let _ = writeln!(out, "find-max {} step {:.0}/s: {v}", side.name(), step.rate);
            }
        }
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
        let _ = writeln!(out, "sync, server: {}", s.summary());
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
        let row = |server, floor, check| Row {
            figure: String::new(),
            server,
            floor,
            target: "",
            check,
        };
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
        assert_eq!(out.matches("not run").count(), 8);
    }
}
