//! Private Redis servers for the integration tests: a single node with an
//! append-only file (so a restart, even after SIGKILL, reloads every
//! acknowledged write) and a three-master cluster without replicas.
//!
//! Everything is synchronous and built on `std::process`, like
//! [`super::BinServer`]: each `redis-server` runs as a child process on a
//! free port of 127.0.0.1 with its own temporary directory, which also holds
//! its log (`redis.log`). Dropping a launcher kills its processes (SIGKILL)
//! and deletes the directories.
//!
//! `redis-server` and `redis-cli` are looked up on the `PATH` (Debian's
//! `redis-server` package installs both).

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The server binary.
const REDIS_SERVER: &str = "redis-server";
/// The command-line client.
const REDIS_CLI: &str = "redis-cli";
/// How long a node may take to answer PONG after its start.
const READY_WAIT: Duration = Duration::from_secs(10);
/// How long a restart keeps retrying while its port is still busy.
const PORT_BUSY_WAIT: Duration = Duration::from_secs(5);
/// How long a cluster may take to reach `cluster_state:ok`.
const CLUSTER_WAIT: Duration = Duration::from_secs(20);
/// How long `redis-cli --cluster create` may run.
const CLUSTER_CREATE_WAIT: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM.
const STOP_WAIT: Duration = Duration::from_secs(30);
/// The log file inside each node's directory.
const LOG_FILE: &str = "redis.log";
/// A cluster node also listens on its port + 10000 (the cluster bus).
const CLUSTER_BUS_OFFSET: u16 = 10000;
/// How many times a fresh start picks another port when its port was taken
/// between picking it and redis binding it.
const START_ATTEMPTS: usize = 5;

// ---------------------------------------------------------------------------
// Single node
// ---------------------------------------------------------------------------

/// One `redis-server` with `appendonly yes` and `appendfsync always` on a
/// private port and directory. It survives [`RedisServer::restart`] with
/// its data (the AOF is reloaded from the same directory).
pub(crate) struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a node on a free port and waits until it answers PONG.
    pub(crate) fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Like [`RedisServer::start`], with `extra` flags after the usual ones
    /// (a later flag overrides an earlier one: `["--appendonly", "no"]`).
    pub(crate) fn start_with(extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("create a temporary dir for redis");
        let mut last = String::new();
        let mut args = single_args();
        args.extend_from_slice(extra);
        for _ in 0..START_ATTEMPTS {
            let port = free_port(false);
            match launch(port, dir.path(), &args) {
                Launch::Ready(child) => {
                    return RedisServer {
                        port,
                        child: Some(child),
                        dir,
                    }
                }
                Launch::PortBusy(log) => last = log,
                Launch::Failed(why) => panic!("redis-server on port {port}: {why}"),
            }
        }
        panic!("redis-server found its port taken {START_ATTEMPTS} times; last log:\n{last}");
    }

    /// The TCP port on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The process id (0 once stopped or killed).
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The node's working directory (AOF, log).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The node's log (every start appends to it).
    pub(crate) fn log(&self) -> String {
        read_log(self.dir.path())
    }

    /// Whether the process runs (it was neither stopped nor killed, nor died).
    pub(crate) fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM, then waits (at most 30 s) for the exit. Redis flushes the
    /// AOF on the way out. Does nothing when the node is not running.
    pub(crate) fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child, self.port);
        }
    }

    /// SIGKILL, then reaps the process. Does nothing when the node is not running.
    pub(crate) fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            kill(child, self.port);
        }
    }

    /// Starts the node again on the same port and directory, so it reloads
    /// its AOF, and waits until it answers PONG. A running node is first
    /// stopped with [`RedisServer::stop`]; call [`RedisServer::kill`] before
    /// to restart after a crash instead. Retries for a few seconds while the
    /// port is still busy.
    pub(crate) fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + PORT_BUSY_WAIT;
        loop {
            match launch(self.port, self.dir.path(), &single_args()) {
                Launch::Ready(child) => {
                    self.child = Some(child);
                    return;
                }
                Launch::PortBusy(log) => {
                    if Instant::now() > deadline {
                        panic!(
                            "redis-server restart: port {} still busy after {PORT_BUSY_WAIT:?}; \
                             log:\n{log}",
                            self.port
                        );
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Launch::Failed(why) => {
                    panic!("redis-server restart on port {}: {why}", self.port)
                }
            }
        }
    }

    /// Runs `redis-cli -p PORT args…` and returns its trimmed stdout (an
    /// error reply such as `ERR …` is returned too, not a panic).
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let port = self.port.to_string();
        let mut full = vec!["-p", port.as_str()];
        full.extend_from_slice(args);
        redis_cli(&full)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The flags of a standalone node beyond port, bind address and directory.
fn single_args() -> Vec<&'static str> {
    vec![
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ]
}

// ---------------------------------------------------------------------------
// Single node over TLS
// ---------------------------------------------------------------------------

/// One `redis-server` that speaks TLS only (`--port 0`, `--tls-port` on a
/// free port of 127.0.0.1), without persistence, presenting the given
/// certificate; clients need no certificate of their own.
pub(crate) struct RedisTlsServer {
    port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl RedisTlsServer {
    /// Starts the node with certificate `cert`, key `key` and CA file `ca`
    /// (PEM), and waits until it logs that it accepts connections.
    pub(crate) fn start(cert: &Path, key: &Path, ca: &Path) -> RedisTlsServer {
        let dir = tempfile::tempdir().expect("create a temporary dir for redis");
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port(false);
            let log_path = dir.path().join(LOG_FILE);
            let log = File::create(&log_path).expect("create the redis log");
            let log_err = log.try_clone().expect("clone the redis log handle");
            let mut child = Command::new(REDIS_SERVER)
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(ca)
                .args(["--tls-auth-clients", "no", "--bind", "127.0.0.1", "--dir"])
                .arg(dir.path())
                .args(["--protected-mode", "no", "--daemonize", "no", "--save", ""])
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {REDIS_SERVER}: {e}"));
            let deadline = Instant::now() + READY_WAIT;
            loop {
                let text = read_log(dir.path());
                if let Ok(Some(status)) = child.try_wait() {
                    if !text.contains("Address already in use") {
                        panic!(
                            "redis-server (TLS) exited early ({status}); log:\n{}",
                            tail(&text)
                        );
                    }
                    last = text;
                    break;
                }
                if text.contains("Ready to accept connections") {
                    return RedisTlsServer { port, child, dir };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "redis-server (TLS) not ready within {READY_WAIT:?}; log:\n{}",
                        tail(&text)
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("redis-server (TLS) found its port taken {START_ATTEMPTS} times; last log:\n{last}");
    }

    /// `rediss://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    /// The node's log.
    pub(crate) fn log(&self) -> String {
        read_log(self.dir.path())
    }
}

impl Drop for RedisTlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------

/// A Redis cluster of three masters without replicas, each node on its own
/// free port (with a free cluster-bus port, port + 10000) and directory,
/// without persistence.
pub(crate) struct RedisCluster {
    nodes: Vec<ClusterNode>,
}

/// One node of a [`RedisCluster`].
struct ClusterNode {
    port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts three nodes, joins them with `redis-cli --cluster create` and
    /// waits (at most 20 s) until every node reports `cluster_state:ok`.
    pub(crate) fn start() -> RedisCluster {
        let mut nodes = Vec::with_capacity(3);
        for _ in 0..3 {
            nodes.push(start_cluster_node());
        }
        let cluster = RedisCluster { nodes };
        cluster.create();
        cluster.wait_ok();
        cluster
    }

    /// The three nodes' ports; the first is the one [`RedisCluster::cli`] talks to.
    pub(crate) fn ports(&self) -> [u16; 3] {
        [self.nodes[0].port, self.nodes[1].port, self.nodes[2].port]
    }

    /// `redis-cluster://127.0.0.1:P1?node=127.0.0.1:P2&node=127.0.0.1:P3`,
    /// the form fred parses into a clustered configuration.
    pub(crate) fn url(&self) -> String {
        let [p1, p2, p3] = self.ports();
        format!("redis-cluster://127.0.0.1:{p1}?node=127.0.0.1:{p2}&node=127.0.0.1:{p3}")
    }

    /// Runs `redis-cli -c -p P1 args…` (following redirections) and returns
    /// its trimmed stdout.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let port = self.nodes[0].port.to_string();
        let mut full = vec!["-c", "-p", port.as_str()];
        full.extend_from_slice(args);
        redis_cli(&full)
    }

    /// Every node's log, for failure messages.
    pub(crate) fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- node {} ---\n{}", n.port, tail(&read_log(n.dir.path()))))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `redis-cli --cluster create … --cluster-replicas 0 --cluster-yes`,
    /// its output logged to the first node's directory.
    fn create(&self) {
        let out_path = self.nodes[0].dir.path().join("cluster-create.log");
        let out = File::create(&out_path).expect("create cluster-create.log");
        let err = out.try_clone().expect("clone cluster-create.log handle");
        let mut cmd = Command::new(REDIS_CLI);
        cmd.arg("--cluster").arg("create");
        for n in &self.nodes {
            cmd.arg(format!("127.0.0.1:{}", n.port));
        }
        cmd.args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {REDIS_CLI} --cluster create: {e}"));
        let deadline = Instant::now() + CLUSTER_CREATE_WAIT;
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .expect("wait for redis-cli --cluster create")
            {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "redis-cli --cluster create did not finish within {CLUSTER_CREATE_WAIT:?}; \
                     output:\n{}\n{}",
                    read_file(&out_path),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "redis-cli --cluster create failed ({status}); output:\n{}\n{}",
            read_file(&out_path),
            self.logs()
        );
    }

    /// Polls `cluster info` on every node until all say `cluster_state:ok`.
    fn wait_ok(&self) {
        let deadline = Instant::now() + CLUSTER_WAIT;
        loop {
            let states: Vec<String> = self
                .nodes
                .iter()
                .map(|n| redis_cli(&["-p", &n.port.to_string(), "cluster", "info"]))
                .collect();
            if states.iter().all(|s| s.contains("cluster_state:ok")) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "redis cluster not ok within {CLUSTER_WAIT:?}; cluster info of the first \
                     node:\n{}\n{}",
                    states[0],
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
    }
}

/// Starts one cluster-enabled node on a free port whose bus port is free too.
fn start_cluster_node() -> ClusterNode {
    let dir = tempfile::tempdir().expect("create a temporary dir for a redis cluster node");
    let args = [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "2000",
        "--appendonly",
        "no",
        "--save",
        "",
    ];
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port(true);
        match launch(port, dir.path(), &args) {
            Launch::Ready(child) => return ClusterNode { port, child, dir },
            Launch::PortBusy(log) => last = log,
            Launch::Failed(why) => panic!("redis cluster node on port {port}: {why}"),
        }
    }
    panic!("redis cluster node found its ports taken {START_ATTEMPTS} times; last log:\n{last}");
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// The outcome of one `redis-server` start.
enum Launch {
    /// It answers PONG (and is the process we started).
    Ready(Child),
    /// It exited because its port (or bus port) was in use; the new log lines.
    PortBusy(String),
    /// Anything else, with an explanation and the log's tail.
    Failed(String),
}

/// Spawns `redis-server --port PORT --bind 127.0.0.1 --dir DIR
/// --protected-mode no --daemonize no EXTRA…`, its output appended to
/// `DIR/redis.log`, and waits until it answers PONG.
fn launch(port: u16, dir: &Path, extra: &[&str]) -> Launch {
    let log_path = dir.join(LOG_FILE);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap_or_else(|e| panic!("open {}: {e}", log_path.display()));
    let log_start = log
        .metadata()
        .unwrap_or_else(|e| panic!("stat {}: {e}", log_path.display()))
        .len();
    let log_err = log.try_clone().expect("clone the redis log handle");
    let mut child = Command::new(REDIS_SERVER)
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--dir"])
        .arg(dir)
        .args(["--protected-mode", "no", "--daemonize", "no"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("spawn {REDIS_SERVER} (is the redis-server package installed?): {e}")
        });
    let pid_line = format!("process_id:{}", child.id());
    let deadline = Instant::now() + READY_WAIT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let new = read_log_from(&log_path, log_start);
                return if new.contains("Address already in use") {
                    Launch::PortBusy(tail(&new))
                } else {
                    Launch::Failed(format!("exited early ({status}); log:\n{}", tail(&new)))
                };
            }
            Ok(None) => {}
            Err(e) => panic!("wait for redis-server on port {port}: {e}"),
        }
        let port_s = port.to_string();
        if redis_cli(&["-p", &port_s, "ping"]) == "PONG" {
            // Make sure PONG came from our process, not from another
            // server that got the port first (ours then exits shortly).
            if redis_cli(&["-p", &port_s, "info", "server"])
                .lines()
                .any(|l| l.trim() == pid_line)
            {
                return Launch::Ready(child);
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let new = read_log_from(&log_path, log_start);
            return Launch::Failed(format!(
                "no PONG within {READY_WAIT:?}; log:\n{}",
                tail(&new)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, then waits at most 30 s for the exit (SIGKILL and panic after that).
fn terminate(mut child: Child, port: u16) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill -TERM");
    assert!(
        status.success(),
        "kill -TERM redis-server on port {port} failed"
    );
    let deadline = Instant::now() + STOP_WAIT;
    loop {
        if child
            .try_wait()
            .unwrap_or_else(|e| panic!("wait for redis-server on port {port}: {e}"))
            .is_some()
        {
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("redis-server on port {port} did not exit within {STOP_WAIT:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL, then reap.
fn kill(mut child: Child, port: u16) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    child
        .kill()
        .unwrap_or_else(|e| panic!("kill -9 redis-server on port {port}: {e}"));
    child
        .wait()
        .unwrap_or_else(|e| panic!("reap redis-server on port {port}: {e}"));
}

/// Runs `redis-cli args…` and returns its trimmed stdout (empty when it
/// could not connect; its complaint goes to stderr).
fn redis_cli(args: &[&str]) -> String {
    let out = Command::new(REDIS_CLI)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("run {REDIS_CLI} (is the redis-server package installed?): {e}")
        });
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

// ---------------------------------------------------------------------------
// Ports and logs
// ---------------------------------------------------------------------------

/// Ports handed out by this test process, never handed out twice (tests run
/// in parallel threads and redis binds the port only later).
static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A TCP port of 127.0.0.1 that was free a moment ago: bind port 0, read the
/// port, drop the listener. With `cluster_bus`, the port is below 55535 and
/// port + 10000 was free as well.
fn free_port(cluster_bus: bool) -> u16 {
    for _ in 0..1000 {
        let port = {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .expect("bind 127.0.0.1:0 to find a free port");
            listener
                .local_addr()
                .expect("local address of the port-0 listener")
                .port()
        };
        if cluster_bus {
            if port >= u16::MAX - CLUSTER_BUS_OFFSET {
                continue;
            }
            if TcpListener::bind((Ipv4Addr::LOCALHOST, port + CLUSTER_BUS_OFFSET)).is_err() {
                continue;
            }
        }
        let mut taken = TAKEN.lock().expect("free-port lock");
        let clashes = taken.contains(&port)
            || (cluster_bus && taken.contains(&(port + CLUSTER_BUS_OFFSET)))
            || (port > CLUSTER_BUS_OFFSET && taken.contains(&(port - CLUSTER_BUS_OFFSET)));
        if clashes {
            continue;
        }
        taken.insert(port);
        if cluster_bus {
            taken.insert(port + CLUSTER_BUS_OFFSET);
        }
        return port;
    }
    panic!("no free port found for redis after 1000 tries");
}

/// The whole log of the node in `dir` (empty when there is none yet).
fn read_log(dir: &Path) -> String {
    read_file(&dir.join(LOG_FILE))
}

/// A file's content, lossily decoded; empty when it cannot be read.
fn read_file(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// What was appended to the log at `path` since byte `from`.
fn read_log_from(path: &Path, from: u64) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = File::open(path) {
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let _ = f.read_to_end(&mut buf);
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The last 40 lines of a log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
