//! `ao-bench`: load generator, floor relay and benchmark suite for Always Online.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ao_bench::engineio::Eio;
use ao_bench::scenarios::conns::{self, ConnsConfig};
use ao_bench::scenarios::fanout::{self, Criteria, FanoutConfig, FindMax};
use ao_bench::scenarios::soak::{self, SoakConfig};
use ao_bench::scenarios::sync::{self, Preload, SyncConfig};
use ao_bench::stalls::{self, StallConfig};
use ao_bench::suite::{self, SuiteConfig};
use ao_bench::{floor, proc_stats, Result};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ao-bench",
    version,
    about = "Load generator, floor relay and benchmark suite for Always Online"
)]
struct Cli {
    /// engine.io protocol generation of the client connections (3 or 4).
    #[arg(long, value_enum, default_value = "4", global = true)]
    eio: Eio,
    /// Worker threads of this process [default: one per CPU].
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// R rooms × M members sending msg at a fixed aggregate rate.
    Fanout {
        /// The server (host:port).
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: String,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// fanout with members spread round-robin over several nodes.
    Cluster {
        /// The nodes (host:port,host:port,...).
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<String>,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// C connections that authenticate and join, held idle.
    Conns {
        /// The server (host:port).
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: String,
        /// Connections.
        #[arg(long, default_value_t = 10_000)]
        conns: usize,
        /// Members per room.
        #[arg(long, default_value_t = 10)]
        members: usize,
        /// Concurrent set-ups.
        #[arg(long, default_value_t = 128)]
        concurrency: usize,
        /// Seconds to hold the connections idle before reading the server's memory.
        #[arg(long, default_value_t = 5.0)]
        hold: f64,
        /// Server process ids (comma separated) for CPU and memory figures.
        #[arg(long, value_delimiter = ',')]
        server_pid: Vec<u32>,
    },
    /// N stored messages in one room, then a fresh client syncs every page.
    Sync {
        /// The server (host:port).
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: String,
        /// Messages to store first.
        #[arg(long, default_value_t = 50_000)]
        messages: usize,
        /// Frame size of each stored msg, bytes.
        #[arg(long, default_value_t = 200)]
        size: usize,
        /// Timed syncs per encoding (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// How the messages are stored: acked (acknowledged, --window in
        /// flight) or unacked (one client sends them all back to back
        /// without acks; only the last one asks for an ack).
        #[arg(long, value_enum, default_value = "acked")]
        preload: Preload,
        /// Acknowledged inserts in flight (--preload acked).
        #[arg(long, default_value_t = 128)]
        window: usize,
        /// Time syncs without encoding only, not with gzip.
        #[arg(long)]
        no_gzip: bool,
    },
    /// A long run of everything at once (steady members, churn, syncs,
    /// kickouts) sampling the servers' memory and open files; checks that
    /// no acknowledged msg is lost.
    Soak {
        /// The nodes (host:port,...); every room's members are spread over them.
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:3000")]
        nodes: Vec<String>,
        /// Minutes to run [default: 60].
        #[arg(long, conflicts_with = "seconds")]
        minutes: Option<f64>,
        /// Seconds to run (for short trials).
        #[arg(long)]
        seconds: Option<f64>,
        /// Server process ids (comma separated) to sample RSS and open files of.
        #[arg(long, value_delimiter = ',')]
        server_pid: Vec<u32>,
        /// Rooms.
        #[arg(long, default_value_t = 20)]
        rooms: usize,
        /// Steady members per room.
        #[arg(long, default_value_t = 5)]
        members: usize,
        /// msg/s of all steady members together (70 % inserts, 15 % updates, 15 % relay-only).
        #[arg(long, default_value_t = 150.0)]
        rate: f64,
        /// Frame size of a msg, bytes (about).
        #[arg(long, default_value_t = 200)]
        size: usize,
        /// Short-lived connections started per second.
        #[arg(long, default_value_t = 4.0)]
        churn: f64,
        /// Seconds between two full syncs (one room each, in turn).
        #[arg(long, default_value_t = 15.0)]
        sync_every: f64,
        /// Seconds between two kickouts.
        #[arg(long, default_value_t = 20.0)]
        kickout_every: f64,
        /// Seconds between two samples of the servers.
        #[arg(long, default_value_t = 10.0)]
        sample_every: f64,
        /// Also write the report as `<DIR>/<date>-soak[-LABEL].md`
        /// [DIR default: bench/results].
        #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "bench/results")]
        markdown: Option<PathBuf>,
        /// A label for the report's file name (e.g. 1node).
        #[arg(long)]
        label: Option<String>,
    },
    /// A minimal relay server (engine.io 3/4, authenticate, join, msg) to compare against.
    Floor {
        /// Address to listen on (port 0 picks one and prints it).
        #[arg(long, default_value = "127.0.0.1:3100")]
        listen: SocketAddr,
        /// Leave Nagle's algorithm on (no TCP_NODELAY), to see what that costs in latency.
        #[arg(long)]
        no_nodelay: bool,
        /// The durable floor: msgs the server would store (all but `s: 2`)
        /// are appended to a log file in DIR, made durable with one
        /// fdatasync per group commit, then relayed and acknowledged.
        #[arg(long, value_name = "DIR")]
        durable: Option<PathBuf>,
        /// The durable floor's commit window, ms (the server's default).
        #[arg(long, default_value_t = 2.0)]
        commit_window_ms: f64,
        /// Serve the durable floor's commit-log metrics at http://ADDR/metrics.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<SocketAddr>,
    },
    /// Splits a perf profile by crate and layer: reads
    /// `perf script -F ip,sym,dso` on stdin (record with `--call-graph dwarf`).
    ByCrate {
        /// CPU µs per unit of work (a delivery, a set-up) to split over the layers.
        #[arg(long)]
        cost_us: Option<f64>,
    },
    /// Everything against the real server and the floor, with the table of targets.
    Suite {
        /// The real server's binary (cargo build --release).
        #[arg(long, default_value = "target/release/always-online")]
        server_bin: PathBuf,
        /// Smaller numbers, about two minutes in all.
        #[arg(long)]
        quick: bool,
        /// Connections of the conns scenario [default: 10000, quick 2000].
        #[arg(long)]
        conns: Option<usize>,
        /// Stored messages of the sync scenarios [default: 50000, quick 10000].
        #[arg(long)]
        sync_messages: Option<usize>,
        /// Aggregate rate of the fixed-rate fanout, msg/s.
        #[arg(long, default_value_t = 2_000.0)]
        rate: f64,
        /// Connections held idle to check none is lost [default: 19000, quick 4000].
        #[arg(long)]
        hold_conns: Option<usize>,
        /// Seconds they are held [default: 300, quick 20].
        #[arg(long)]
        hold_seconds: Option<u64>,
        /// Stop after this many seconds [default: 1800, quick 300].
        #[arg(long)]
        max_seconds: Option<u64>,
        /// Runs of the fixed-rate fanout and of conns per side, server and
        /// floor alternating; the table shows the medians [default: 3, quick 1].
        #[arg(long)]
        rounds: Option<usize>,
        /// Also write the report as `<DIR>/<date>.md` (a run kept for the
        /// record) [DIR default: bench/results].
        #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "bench/results")]
        markdown: Option<PathBuf>,
        /// redis-server for the 2-node cluster figure.
        #[arg(long, default_value = "redis-server")]
        redis_server: PathBuf,
        /// Instead of the suite: the server and the durable floor on the
        /// same disk for N minutes in all, inserts at --rate in windows,
        /// each side in turn; per-window p99 and commit stalls.
        #[arg(long, value_name = "N")]
        stall_minutes: Option<f64>,
        /// The measured part of each window of --stall-minutes, seconds.
        #[arg(long, default_value_t = 5.0)]
        stall_window_seconds: f64,
    },
}

/// Settings shared by fanout and cluster.
#[derive(Args)]
struct LoadArgs {
    /// Rooms.
    #[arg(long, default_value_t = 100)]
    rooms: usize,
    /// Members per room.
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Aggregate msg/s over all members (the start rate of --find-max).
    #[arg(long, default_value_t = 2_000.0)]
    rate: f64,
    /// Frame size of a sent msg, bytes.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Storage mode of the messages: 2 ignore (relay only), 0 insert
    /// (stored; the report adds disk bytes written and server CPU per
    /// stored msg), 1 update.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=2))]
    storage: u8,
    /// Seconds of sending before the measured window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds of the measured window.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds to wait for late deliveries after the window.
    #[arg(long, default_value_t = 2.0)]
    drain: f64,
    /// Server process ids (comma separated) for CPU and memory figures.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Concurrent connection set-ups.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Raise the rate step by step until p99 > --max-p99-ms or deliveries
    /// < --min-delivery; report the last good step.
    #[arg(long)]
    find_max: bool,
    /// find-max: highest acceptable p99, ms.
    #[arg(long, default_value_t = 100.0)]
    max_p99_ms: f64,
    /// find-max: lowest acceptable share of expected deliveries, %.
    #[arg(long, default_value_t = 99.9)]
    min_delivery: f64,
    /// find-max: rate multiplier between steps until one fails.
    #[arg(long, default_value_t = 1.5)]
    step_factor: f64,
    /// find-max: bisection steps after the first failure.
    #[arg(long, default_value_t = 3)]
    refine: usize,
    /// find-max: at most this many steps.
    #[arg(long, default_value_t = 14)]
    max_steps: usize,
    /// find-max: runs of a failing step again before it counts as failed
    /// (a stall of the shared machine fails one run, not two).
    #[arg(long, default_value_t = 1)]
    retries: usize,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

impl LoadArgs {
    fn config(&self, nodes: Vec<String>, eio: Eio) -> FanoutConfig {
        FanoutConfig {
            nodes,
            eio,
            rooms: self.rooms.max(1),
            members: self.members.max(1),
            rate: self.rate.max(0.001),
            size: self.size,
            storage: self.storage,
            warmup: secs(self.warmup),
            duration: secs(self.duration.max(0.1)),
            drain: secs(self.drain),
            server_pids: self.server_pid.clone(),
            concurrency: self.concurrency,
        }
    }

    async fn run(&self, nodes: Vec<String>, eio: Eio) -> Result<()> {
        let cfg = self.config(nodes, eio);
        if !self.find_max {
            let r = fanout::fanout(&cfg).await?;
            println!("{}", r.summary());
            return Ok(());
        }
        let fm = FindMax {
            factor: self.step_factor.max(1.01),
            refine: self.refine,
            max_steps: self.max_steps.max(1),
            retries: self.retries,
            criteria: Criteria {
                max_p99: Duration::from_secs_f64(self.max_p99_ms.max(0.0) / 1e3),
                min_delivery: self.min_delivery / 100.0,
                ..Criteria::default()
            },
        };
        let r = fanout::find_max(&cfg, &fm).await?;
        match r.best {
            Some(best) => println!("find-max: last good step: {}", best.summary()),
            None => println!("find-max: no step passed"),
        }
        Ok(())
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Fanout { addr, load } => load.run(vec![addr], cli.eio).await,
        Cmd::Cluster { nodes, load } => load.run(nodes, cli.eio).await,
        Cmd::Conns {
            addr,
            conns,
            members,
            concurrency,
            hold,
            server_pid,
        } => {
            let r = conns::conns(&ConnsConfig {
                nodes: vec![addr],
                eio: cli.eio,
                conns,
                members,
                concurrency,
                hold: secs(hold),
                server_pids: server_pid,
            })
            .await?;
            println!("{}", r.summary());
            Ok(())
        }
        Cmd::Sync {
            addr,
            messages,
            size,
            repeat,
            preload,
            window,
            no_gzip,
        } => {
            let r = sync::sync(&SyncConfig {
                addr,
                eio: cli.eio,
                messages,
                size,
                repeat,
                preload,
                window,
                gzip: !no_gzip,
            })
            .await?;
            println!("{}", r.summary());
            if r.not_completed.is_some() {
                Err("the preload did not complete".into())
            } else if !r.all_returned() {
                Err("not every message sent was stored and returned".into())
            } else {
                Ok(())
            }
        }
        Cmd::Soak {
            nodes,
            minutes,
            seconds,
            server_pid,
            rooms,
            members,
            rate,
            size,
            churn,
            sync_every,
            kickout_every,
            sample_every,
            markdown,
            label,
        } => {
            let duration = seconds.unwrap_or(minutes.unwrap_or(60.0) * 60.0);
            let report = soak::soak(SoakConfig {
                nodes,
                eio: cli.eio,
                duration: secs(duration.max(1.0)),
                server_pids: server_pid,
                rooms,
                members,
                rate: rate.max(0.001),
                size,
                churn: churn.max(0.001),
                sync_every: secs(sync_every.max(0.1)),
                kickout_every: secs(kickout_every.max(0.1)),
                sample_every: secs(sample_every.max(0.1)),
            })
            .await?;
            print!("{}", report.text);
            if let Some(dir) = markdown {
                let command: Vec<String> = std::env::args().skip(1).collect();
                let path =
                    soak::write_markdown(&dir, &report.text, &command.join(" "), label.as_deref())?;
                eprintln!("report written to {}", path.display());
            }
            if report.passed() {
                Ok(())
            } else {
                Err("acknowledged msgs were lost (or could not be checked)".into())
            }
        }
        Cmd::Floor {
            listen,
            no_nodelay,
            durable,
            commit_window_ms,
            metrics_listen,
        } => {
            let durable = durable.map(|dir| floor::Durable {
                dir,
                window: Duration::from_secs_f64(commit_window_ms.max(0.0) / 1e3),
                metrics_listen,
            });
            tokio::select! {
                r = floor::serve(listen, !no_nodelay, durable) => r,
                _ = tokio::signal::ctrl_c() => Ok(()),
            }
        }
        Cmd::ByCrate { cost_us } => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
            let split = ao_bench::by_crate::Split::from_perf_script(&text);
            if split.total() == 0 {
                return Err("no samples on stdin (perf script -F ip,sym,dso)".into());
            }
            print!("{}", split.report(cost_us));
            Ok(())
        }
        Cmd::Suite {
            server_bin,
            quick,
            conns,
            sync_messages,
            rate,
            max_seconds,
            redis_server,
            hold_conns,
            hold_seconds,
            rounds,
            markdown,
            stall_minutes,
            stall_window_seconds,
        } => {
            if let Some(minutes) = stall_minutes {
                let mut cfg = StallConfig::new(server_bin, minutes);
                cfg.eio = cli.eio;
                cfg.rate = rate;
                cfg.window = Duration::from_secs_f64(stall_window_seconds.max(0.5));
                let report = stalls::run(cfg).await?;
                if let Some(dir) = markdown {
                    let command: Vec<String> = std::env::args().skip(1).collect();
                    let path =
                        suite::write_markdown(&dir, &report, &command.join(" "), Some("stalls"))?;
                    eprintln!("report written to {}", path.display());
                }
                return Ok(());
            }
            let mut cfg = SuiteConfig::new(server_bin, quick);
            cfg.eio = cli.eio;
            cfg.redis_server = redis_server;
            cfg.rate = rate;
            if let Some(c) = conns {
                cfg.conns = c;
            }
            if let Some(n) = sync_messages {
                cfg.sync_messages = n;
            }
            if let Some(n) = hold_conns {
                cfg.hold_conns = n;
            }
            if let Some(s) = hold_seconds {
                cfg.hold_time = Duration::from_secs(s);
            }
            if let Some(s) = max_seconds {
                cfg.max_time = Duration::from_secs(s);
            }
            if let Some(n) = rounds {
                cfg.rounds = n.max(1);
            }
            let report = suite::run(cfg).await?;
            if let Some(dir) = markdown {
                let command: Vec<String> = std::env::args().skip(1).collect();
                let path = suite::write_markdown(&dir, &report, &command.join(" "), None)?;
                eprintln!("report written to {}", path.display());
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = proc_stats::raise_nofile_limit() {
        eprintln!("ao-bench: cannot raise the open files limit: {e}");
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ao-bench: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // The suite runs on this (main) thread: its child processes are tied to it.
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ao-bench: {e}");
            ExitCode::from(1)
        }
    }
}
