//! conns: C connections that authenticate and join rooms of M, held idle;
//! set-up rate, server CPU per set-up, server memory per connection.

use std::time::Duration;

use tokio::time::sleep;

use super::fleet::{Fleet, Layout};
use crate::engineio::Eio;
use crate::payload::MsgTemplate;
use crate::{proc_stats, Result};

/// Settings of a conns run.
#[derive(Debug, Clone)]
pub struct ConnsConfig {
    /// Server addresses; connections are spread round-robin.
    pub nodes: Vec<String>,
    /// Protocol generation.
    pub eio: Eio,
    /// Number of connections.
    pub conns: usize,
    /// Members per room.
    pub members: usize,
    /// Concurrent set-ups.
    pub concurrency: usize,
    /// How long to hold the connections idle before reading the server's memory.
    pub hold: Duration,
    /// Server processes whose CPU and memory to read.
    pub server_pids: Vec<u32>,
}

/// What a conns run measured.
#[derive(Debug, Clone)]
pub struct ConnsResult {
    /// Connections set up.
    pub conns: usize,
    /// Wall time of all set-ups.
    pub setup_s: f64,
    /// Server CPU seconds spent during the set-ups.
    pub server_cpu_s: Option<f64>,
    /// Server RSS before connecting, bytes.
    pub rss_before: Option<u64>,
    /// Server RSS with every connection held idle, bytes.
    pub rss_after: Option<u64>,
    /// Connections lost while held.
    pub lost: u64,
}

impl ConnsResult {
    /// Set-ups (connect, authenticate, join) per second.
    pub fn setups_per_s(&self) -> f64 {
        self.conns as f64 / self.setup_s.max(1e-9)
    }

    /// Server CPU per set-up, microseconds.
    pub fn cpu_per_setup_us(&self) -> Option<f64> {
        self.server_cpu_s
            .map(|c| c / self.conns.max(1) as f64 * 1e6)
    }

    /// Server RSS growth per connection, bytes.
    pub fn rss_per_conn(&self) -> Option<f64> {
        let (b, a) = (self.rss_before?, self.rss_after?);
        Some((a as f64 - b as f64) / self.conns.max(1) as f64)
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} connections set up in {:.2} s: {:.0} set-ups/s",
            self.conns,
            self.setup_s,
            self.setups_per_s()
        );
        if let Some(us) = self.cpu_per_setup_us() {
            s.push_str(&format!(", server CPU {us:.0} µs per set-up"));
        }
        if let (Some(b), Some(a), Some(per)) =
            (self.rss_before, self.rss_after, self.rss_per_conn())
        {
            s.push_str(&format!(
                ", server RSS {:.1} → {:.1} MiB = {:.2} KiB per connection",
                b as f64 / 1048576.0,
                a as f64 / 1048576.0,
                per / 1024.0
            ));
        }
        s.push_str(&format!(", {} lost while held", self.lost));
        s
    }
}

/// Runs the conns scenario.
pub async fn conns(cfg: &ConnsConfig) -> Result<ConnsResult> {
    let pids = &cfg.server_pids;
    let has_pids = !pids.is_empty();
    let rss_before = proc_stats::total_rss_bytes(pids).ok().filter(|_| has_pids);
    let cpu0 = proc_stats::total_cpu_seconds(pids).ok();
    let layout = Layout::new(cfg.nodes.clone(), cfg.conns, cfg.members);
    let fleet = Fleet::start(layout, cfg.eio, MsgTemplate::new(0, 2), cfg.concurrency).await?;
    let cpu1 = proc_stats::total_cpu_seconds(pids).ok();
    sleep(cfg.hold).await;
    let rss_after = proc_stats::total_rss_bytes(pids).ok().filter(|_| has_pids);
    let result = ConnsResult {
        conns: cfg.conns,
        setup_s: fleet.setup_time.as_secs_f64(),
        server_cpu_s: cpu0.zip(cpu1).filter(|_| has_pids).map(|(a, b)| b - a),
        rss_before,
        rss_after,
        lost: fleet.lost(),
    };
    if let Some(e) = fleet.last_error() {
        eprintln!("last connection error: {e}");
    }
    fleet.stop().await;
    Ok(result)
}
