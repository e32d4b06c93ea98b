//! The suite's child processes: the server, the floor and Redis on free
//! ports, killed when dropped.

use crate::log_metrics::{self, LogFigures};
use crate::Result;
use std::net::TcpStream as StdTcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

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
    pub(super) async fn log_figures(&self) -> std::result::Result<Option<LogFigures>, String> {
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
pub(super) fn free_port() -> Result<u16> {
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
pub(super) async fn spawn(
    mut cmd: Command,
    addr: String,
    dir: PathBuf,
    what: &str,
) -> Result<Proc> {
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
pub(super) async fn start_redis(bin: &Path) -> Result<Proc> {
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
pub(super) async fn start_nodes(bin: &Path, redis: &str, n: usize) -> Result<Vec<Proc>> {
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
