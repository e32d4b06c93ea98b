//! soak: a long run of everything at once at a moderate rate — steady
//! members sending acknowledged inserts, updates and relay-only msgs,
//! connection churn, periodic full syncs that check what they return, and
//! kickouts by second logins — while the servers' memory and open files are
//! sampled. At the end every room is synced from offset 0 on every node and
//! checked against every acknowledged msg: each acked insert exactly once,
//! each acked update in its latest acked version (or a newer one).

mod actors;
mod ledger;
mod report;
mod trend;

use crate::engineio::Eio;
use crate::scenarios::fleet::run_prefix;
use crate::{proc_stats, Result};
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{sleep, Instant};

use actors::*;
pub use ledger::{verify, Found, Ledger, Verdict};
use report::{mib, signed_mib};
pub use report::{write_markdown, SoakReport};
use trend::sample_all;
pub use trend::{trend, Sample, Trend};

/// Settings of a soak run.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// The nodes (host:port); every room's members are spread over them.
    pub nodes: Vec<String>,
    /// Protocol generation.
    pub eio: Eio,
    /// How long the load runs.
    pub duration: Duration,
    /// Server processes whose memory and open files are sampled.
    pub server_pids: Vec<u32>,
    /// Rooms.
    pub rooms: usize,
    /// Steady members per room.
    pub members: usize,
    /// msg/s of all steady members together.
    pub rate: f64,
    /// Frame size of a msg, bytes (about).
    pub size: usize,
    /// Short-lived connections started per second.
    pub churn: f64,
    /// Seconds between two full syncs (each of one room, in turn).
    pub sync_every: Duration,
    /// Seconds between two kickouts (a second login of a steady member).
    pub kickout_every: Duration,
    /// Seconds between two samples of the servers.
    pub sample_every: Duration,
}

impl SoakConfig {
    /// When the warm-up ends: 10 % of the run or 2 minutes, whichever is less.
    pub fn warmup(&self) -> Duration {
        (self.duration / 10).min(Duration::from_secs(120))
    }
}

/// Runs the soak and returns its report.
pub async fn soak(cfg: SoakConfig) -> Result<SoakReport> {
    if cfg.nodes.is_empty() {
        return Err("no nodes".into());
    }
    let cfg = SoakConfig {
        rooms: cfg.rooms.max(1),
        members: cfg.members.max(1),
        ..cfg
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let sh = Arc::new(Shared {
        prefix: run_prefix(),
        counters: Counters::default(),
        ledgers: (0..cfg.rooms).map(|_| Mutex::default()).collect(),
        errors: Mutex::default(),
        next_id: AtomicU64::new(1),
        periodic: Mutex::default(),
        stop: stop_rx,
        cfg,
    });
    let cfg = &sh.cfg;
    let started = Instant::now();
    let start_stamp = crate::suite::utc_now();
    let load_at_start = proc_stats::load_average();
    let mut tasks = Vec::new();
    for r in 0..cfg.rooms {
        for m in 0..cfg.members {
            tasks.push(tokio::spawn(member(sh.clone(), r, m)));
            // Spread the set-ups.
            sleep(Duration::from_millis(5)).await;
        }
    }
    tasks.push(tokio::spawn(syncer(sh.clone())));
    tasks.push(tokio::spawn(churner(sh.clone())));
    tasks.push(tokio::spawn(kicker(sh.clone())));

    // Sample until the end, with a progress line a minute.
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); cfg.server_pids.len()];
    let mut next_progress = Duration::from_secs(60);
    loop {
        let t = started.elapsed();
        for (i, s) in sample_all(&cfg.server_pids, t.as_secs_f64())
            .into_iter()
            .enumerate()
        {
            if let Some(s) = s {
                samples[i].push(s);
            }
        }
        if t >= next_progress {
            next_progress += Duration::from_secs(60);
            let c = &sh.counters;
            let mut line = format!(
                "soak {:.0} min: acked {}/{}/{} (ins/upd/relay), churned {}, kicked out {}, full syncs {}, errors {}",
                t.as_secs_f64() / 60.0,
                get(&c.acked[0]),
                get(&c.acked[1]),
                get(&c.acked[2]),
                get(&c.churned),
                get(&c.kicked_out),
                get(&c.full_syncs),
                get(&c.errors),
            );
            for (i, pid) in cfg.server_pids.iter().enumerate() {
                if let Some(s) = samples[i].last() {
                    let _ = write!(line, "; pid {pid} {} {} fds", mib(s.rss as f64), s.fds);
                }
            }
            println!("{line}");
        }
        if t >= cfg.duration {
            break;
        }
        sleep(cfg.sample_every.min(cfg.duration - t)).await;
    }
    let load_at_end = proc_stats::load_average();
    let run_s = started.elapsed().as_secs_f64();
    stop_tx.send(true).ok();
    for t in tasks {
        let _ = t.await;
    }
    let drained_s = started.elapsed().as_secs_f64() - run_s;
    let after_load = sample_all(&cfg.server_pids, started.elapsed().as_secs_f64());

    // The final check: every room, on every node.
    let mut fin = Verdict::default();
    let mut final_errors = 0u64;
    for room in 0..cfg.rooms {
        for node in 0..cfg.nodes.len() {
            let uid = format!("{}-verify{room}n{node}", sh.prefix);
            let mut last = None;
            for _ in 0..3 {
                match full_sync(&sh, room, node, &uid, true).await {
                    Ok((v, _)) => {
                        last = Some(v);
                        break;
                    }
                    Err(e) => {
                        sh.error("final sync", &e);
                        sleep(Duration::from_secs(2)).await;
                    }
                }
            }
            match last {
                Some(v) => fin.merge(&v),
                None => final_errors += 1,
            }
        }
    }

    // The report.
    let c = &sh.counters;
    let warm_s = cfg.warmup().as_secs_f64();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ao-bench soak — {start_stamp} — {:.1} min on {} ({} node{})",
        run_s / 60.0,
        cfg.nodes.join(", "),
        cfg.nodes.len(),
        if cfg.nodes.len() == 1 { "" } else { "s" }
    );
    let (cpus, model) = proc_stats::machine_facts();
    let _ = writeln!(
        out,
        "machine: {cpus} CPUs, {model}; load average at start {}, at end {}",
        load_at_start.as_deref().unwrap_or("?"),
        load_at_end.as_deref().unwrap_or("?")
    );
    let _ = writeln!(
        out,
        "workload: {} rooms × {} steady members at {} msg/s in all (70 % inserts, 15 % updates of 3 msgIds per connection, 15 % relay-only, every one acked, ~{} B), {} short-lived connections/s, a full sync every {} s, a kickout every {} s; samples every {} s, warm-up {:.0} s",
        cfg.rooms,
        cfg.members,
        cfg.rate,
        cfg.size,
        cfg.churn,
        cfg.sync_every.as_secs_f64(),
        cfg.kickout_every.as_secs_f64(),
        cfg.sample_every.as_secs_f64(),
        warm_s
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| server pid | RSS at warm-up | RSS at end | growth | per hour | slope/h | max | open files at warm-up | at end | growth | max |"
    );
    let _ = writeln!(
        out,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for (i, pid) in cfg.server_pids.iter().enumerate() {
        let rss = trend(&samples[i], warm_s, |s| s.rss as f64);
        let fds = trend(&samples[i], warm_s, |s| s.fds as f64);
        match (rss, fds) {
            (Some(r), Some(f)) => {
                let _ = writeln!(
                    out,
                    "| {pid} | {} | {} | {} | {}/h | {}/h | {} | {:.0} | {:.0} | {:+.0} | {:.0} |",
                    mib(r.warm),
                    mib(r.end),
                    signed_mib(r.growth),
                    signed_mib(r.per_hour),
                    signed_mib(r.slope_per_hour),
                    mib(r.max),
                    f.warm,
                    f.end,
                    f.growth,
                    f.max
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "| {pid} | no samples after the warm-up | | | | | | | | | |"
                );
            }
        }
    }
    let _ = writeln!(out);
    for (i, pid) in cfg.server_pids.iter().enumerate() {
        if let Some(Some(s)) = after_load.get(i) {
            let _ = writeln!(
                out,
                "pid {pid} right after the load stopped (its last connections may still be closing): RSS {}, {} open files",
                mib(s.rss as f64),
                s.fds
            );
        }
    }
    let sent: u64 = c.sent.iter().map(get).sum();
    let acked: u64 = c.acked.iter().map(get).sum();
    let periodic = sh.periodic.lock().expect("periodic").clone();
    let _ = writeln!(
        out,
        "msgs sent {sent}, acked {acked} (inserts {}, updates {}, relay-only {}), refused {}, in flight at a reconnect or the end {}; msgs received by steady members {}",
        get(&c.acked[INSERT]),
        get(&c.acked[UPDATE]),
        get(&c.acked[RELAY]),
        get(&c.refused),
        get(&c.unacked_at_reconnect),
        get(&c.received)
    );
    let _ = writeln!(
        out,
        "final check ({} rooms × {} nodes, full syncs from offset 0): {} acked inserts, {} acked update msgIds; LOST {} (inserts {}, updates {}), inserts returned twice {}{}",
        cfg.rooms,
        cfg.nodes.len(),
        fin.inserts / cfg.nodes.len() as u64,
        fin.updates / cfg.nodes.len() as u64,
        fin.lost(),
        fin.lost_inserts,
        fin.lost_updates,
        fin.duplicate_inserts,
        if final_errors > 0 {
            format!(", {final_errors} room syncs FAILED")
        } else {
            String::new()
        }
    );
    if !fin.examples.is_empty() {
        let _ = writeln!(out, "  missing: {}", fin.examples.join(", "));
    }
    let _ = writeln!(
        out,
        "periodic full syncs: {} ({} msgs returned), acked msgs checked {}, missing {}, returned twice {}",
        get(&c.full_syncs),
        get(&c.full_sync_msgs),
        periodic.inserts + periodic.updates,
        periodic.lost(),
        periodic.duplicate_inserts
    );
    let _ = writeln!(
        out,
        "connections: steady member (re)connects {}, kickouts started {}, members kicked out {}, churned {} (websocket close {}, leave {}, TCP reset {}), resuming syncs {}",
        get(&c.member_connects),
        get(&c.kickouts_started),
        get(&c.kicked_out),
        get(&c.churned),
        get(&c.churn_polite),
        get(&c.churn_leave),
        get(&c.churn_reset),
        get(&c.resume_syncs)
    );
    let _ = writeln!(
        out,
        "errors {} (drain after the load {:.1} s)",
        get(&c.errors),
        drained_s
    );
    let mut errs: Vec<(String, u64)> = sh
        .errors
        .lock()
        .expect("errors")
        .clone()
        .into_iter()
        .collect();
    errs.sort_by_key(|e| std::cmp::Reverse(e.1));
    for (e, n) in errs.iter().take(12) {
        let _ = writeln!(out, "  {n} × {e}");
    }
    let verdict = if fin.lost() == 0 && periodic.lost() == 0 && final_errors == 0 {
        "PASS: zero acknowledged msgs lost".to_owned()
    } else {
        format!(
            "FAIL: {} acked msgs lost in the final check, {} missing from periodic syncs, {} room syncs failed",
            fin.lost(),
            periodic.lost(),
            final_errors
        )
    };
    let _ = writeln!(out, "{verdict}");
    let _ = writeln!(out);
    let _ = writeln!(out, "samples (s: RSS MiB / open files per pid):");
    let n = samples.iter().map(Vec::len).max().unwrap_or(0);
    for k in 0..n {
        let mut line = String::new();
        for (i, s) in samples.iter().enumerate() {
            if let Some(s) = s.get(k) {
                if i == 0 {
                    let _ = write!(line, "{:>6.0}", s.t);
                }
                let _ = write!(line, "  {:.1}/{}", s.rss as f64 / 1048576.0, s.fds);
            }
        }
        let _ = writeln!(out, "{line}");
    }
    Ok(SoakReport {
        text: out,
        lost: fin.lost(),
        lost_periodic: periodic.lost(),
        failed_checks: final_errors,
    })
}
