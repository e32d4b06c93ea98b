//! Helpers of the HTTP API tests: a FerretDB child process (the real
//! MongoDB-compatible server, never a mock), an in-process server on either
//! account backend, an HTTP client for the two listeners, and the real binary
//! with its whole stderr captured.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use always_online::app::AppState;
use always_online::{App, Config};
use serde_json::{json, Value};

use crate::support::{self, Client};

/// Uid of the admin every [`Server`] is started with.
pub(super) const ADMIN: &str = "root";

/// The `meta.msg` of each API status.
pub(super) const MSGS: [&str; 8] = [
    "success",
    "require permission",
    "user exists, please use refresh token api",
    "operation failed",
    "server errors",
    "param error",
    "user not exists",
    "room not exists",
];

/// The reason of a refused authenticate with wrong credentials.
pub(super) const AUTH_FAILED: &str = "auth failed, uid or token is wrong";

/// A random lowercase hex string of `bytes` random bytes.
pub(super) fn random_hex(bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(v)
}

/// A port nobody listens on right now (bound and released at once).
pub(super) fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// [`crate::support::poll`], with how long it took.
pub(super) async fn poll<T, F, Fut>(limit: Duration, what: &str, check: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    let v = crate::support::poll(limit, what, check).await;
    (v, started.elapsed())
}

// ---------------------------------------------------------------------------
// FerretDB
// ---------------------------------------------------------------------------

/// The `ferretdb-test` launcher: `$AO_FERRETDB_BIN`, else built once from
/// `tests/ferretdb` into the cargo target directory.
pub(super) fn ferret_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("AO_FERRETDB_BIN").filter(|v| !v.is_empty()) {
            let bin = PathBuf::from(bin);
            assert!(
                bin.is_file(),
                "AO_FERRETDB_BIN={} is not a file",
                bin.display()
            );
            return bin;
        }
        // CARGO_BIN_EXE_… is <target>/<profile>/always-online.
        let exe = Path::new(env!("CARGO_BIN_EXE_always-online"));
        let target = exe
            .parent()
            .and_then(Path::parent)
            .expect("the binary lies in <target>/<profile>/");
        let dest = target.join("ferretdb-test");
        // Build under a name of our own and rename: other test processes
        // building at the same time never see a half-written file.
        let tmp = target.join(format!("ferretdb-test.tmp-{}", std::process::id()));
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ferretdb");
        let out = Command::new("go")
            .arg("build")
            .arg("-o")
            .arg(&tmp)
            .arg(".")
            .current_dir(&src)
            .output()
            .expect("run `go build` in tests/ferretdb (is Go installed?)");
        assert!(
            out.status.success(),
            "go build of tests/ferretdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&tmp, &dest).expect("move ferretdb-test into place");
        dest
    })
    .clone()
}

/// The last lines a child wrote on one stream, kept for failure messages.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    fn push(&self, line: String) {
        let mut t = self.0.lock().expect("tail lock");
        if t.len() == 40 {
            t.pop_front();
        }
        t.push_back(line);
    }
    fn text(&self) -> String {
        let t = self.0.lock().expect("tail lock");
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// A FerretDB server on 127.0.0.1 with its data in a temporary directory.
pub(super) struct Ferret {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    log: Tail,
}

impl Ferret {
    /// Starts FerretDB on a free port (another one when the port was taken
    /// in between) and waits until it accepts TCP connections.
    pub(super) async fn start() -> Ferret {
        let bin = tokio::task::spawn_blocking(ferret_bin)
            .await
            .expect("build ferretdb-test");
        let dir = support::tempdir();
        let log = Tail::default();
        let mut last = String::new();
        for _ in 0..10 {
            let port = free_port();
            match spawn_ferret(&bin, port, dir.path(), &log).await {
                Ok(child) => {
                    return Ferret {
                        child: Some(child),
                        port,
                        dir,
                        log,
                    }
                }
                Err(e) => last = e,
            }
        }
        panic!("FerretDB did not start in 10 tries; last: {last}");
    }

    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// `mongodb://127.0.0.1:PORT`.
    pub(super) fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    /// The process id (0 once stopped).
    pub(super) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM, then waits for the process to exit (SIGKILL after 15 s).
    pub(super) async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The port is closed once the process is gone.
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_err(),
            "FerretDB's port still accepts after it stopped"
        );
    }

    /// Starts FerretDB again on the same port and data directory.
    pub(super) async fn start_again(&mut self) {
        assert!(self.child.is_none(), "FerretDB is still running");
        let bin = ferret_bin();
        let mut last = String::new();
        for _ in 0..50 {
            match spawn_ferret(&bin, self.port, self.dir.path(), &self.log).await {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("FerretDB did not start again on port {}: {last}", self.port);
    }
}

impl Drop for Ferret {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the launcher; `Ok` once it said it listens and the port accepts.
async fn spawn_ferret(bin: &Path, port: u16, dir: &Path, log: &Tail) -> Result<Child, String> {
    let mut child = Command::new(bin)
        .arg("-listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    let (tx, rx) = mpsc::channel::<()>();
    let stdout = child.stdout.take().expect("ferret stdout");
    let out_log = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("ferretdb listening on") {
                let _ = tx.send(());
            }
            out_log.push(line);
        }
    });
    let stderr = child.stderr.take().expect("ferret stderr");
    let err_log = log.clone();
    std::thread::spawn(move || {
        // Keep draining so the child never blocks on a full pipe.
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            err_log.push(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut announced = false;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "ferretdb-test exited with {status} on port {port}: {}",
                log.text()
            ));
        }
        if !announced && rx.try_recv().is_ok() {
            announced = true;
        }
        if announced
            && tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "ferretdb-test did not come up on port {port}: {}",
                log.text()
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---------------------------------------------------------------------------
// In-process server
// ---------------------------------------------------------------------------

/// Where the server keeps its accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Backend {
    /// The embedded SQLite store under the data directory.
    Embedded,
    /// MongoDB (a FerretDB started for the test).
    Mongo,
}

type Tweak = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// A server on ephemeral ports with admin `root` (token [`Server::admin_token`]),
/// its accounts on `backend`.
pub(super) struct Server {
    app: Option<App>,
    pub backend: Backend,
    pub ferret: Option<Ferret>,
    /// The MongoDB database of this test's accounts.
    pub db: String,
    pub admin_token: String,
    dir: tempfile::TempDir,
    tweak: Tweak,
}

impl Server {
    pub(super) async fn start(backend: Backend) -> Server {
        Self::with(backend, |_| {}).await
    }

    /// A server whose configuration `tweak` adjusts (also on restarts).
    pub(super) async fn with(
        backend: Backend,
        tweak: impl Fn(&mut Config) + Send + Sync + 'static,
    ) -> Server {
        let ferret = match backend {
            Backend::Embedded => None,
            Backend::Mongo => Some(Ferret::start().await),
        };
        let mut s = Server {
            app: None,
            backend,
            ferret,
            db: format!("ao_test_{}", random_hex(6)),
            admin_token: random_hex(24),
            dir: support::tempdir(),
            tweak: Arc::new(tweak),
        };
        s.app = Some(App::start(s.config()).await.expect("start the server"));
        s
    }

    /// The configuration this server is (re)started with.
    pub(super) fn config(&self) -> Config {
        let mut cfg = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: self.dir.path().to_path_buf(),
            admin: Some((ADMIN.into(), self.admin_token.clone())),
            ..Config::default()
        };
        if let Some(f) = &self.ferret {
            cfg.mongodb_url = Some(f.url());
            cfg.mongodb_db = self.db.clone();
        }
        (self.tweak)(&mut cfg);
        cfg
    }

    fn app(&self) -> &App {
        self.app.as_ref().expect("the server is running")
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.app().addr()
    }

    pub(super) fn api_addr(&self) -> SocketAddr {
        self.app().api_addr()
    }

    /// The admin listener, when `admin_listen` is configured.
    pub(super) fn admin_addr(&self) -> Option<SocketAddr> {
        self.app().admin_addr()
    }

    pub(super) fn state(&self) -> &Arc<AppState> {
        self.app().state()
    }

    /// `http://<main listener><path>`.
    pub(super) fn main_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// `http://<accounts listener><path>`.
    pub(super) fn api_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api_addr())
    }

    /// The admin's credentials as HTTP Basic auth.
    pub(super) fn basic(&self) -> Creds {
        Creds::Basic(ADMIN.into(), self.admin_token.clone())
    }

    /// The admin's credentials in the query string.
    pub(super) fn query(&self) -> Creds {
        Creds::Query(ADMIN.into(), self.admin_token.clone())
    }

    /// Gracefully stops the server.
    pub(super) async fn shutdown(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
    }

    /// Stops the server and starts a new one on the same account store;
    /// with `fresh_data_dir` the new one gets an empty data directory.
    pub(super) async fn restart(&mut self, fresh_data_dir: bool) {
        self.shutdown().await;
        if fresh_data_dir {
            self.dir = support::tempdir();
        }
        self.app = Some(App::start(self.config()).await.expect("restart the server"));
    }

    /// Creates user `uid` through the accounts API; returns its token.
    pub(super) async fn create_user(&self, uid: Value) -> String {
        let r = post(
            &self.api_url("/user/create_token"),
            &self.basic(),
            Body::Json(json!({ "uid": uid })),
        )
        .await;
        let v = r.envelope(0);
        v["data"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("create_token without a token: {v}"))
            .to_owned()
    }

    /// Refreshes user `uid`'s token through the accounts API.
    pub(super) async fn refresh_user(&self, uid: Value) -> String {
        let r = post(
            &self.api_url("/user/refresh_token"),
            &self.basic(),
            Body::Json(json!({ "uid": uid })),
        )
        .await;
        let v = r.envelope(0);
        v["data"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("refresh_token without a token: {v}"))
            .to_owned()
    }

    /// A new client of `uid`, authenticated with `token` and joined to `room`.
    pub(super) async fn login(
        &self,
        uid: impl Into<Value>,
        token: &str,
        room: impl Into<Value>,
    ) -> Client {
        support::login(self.addr(), uid, token, room).await
    }

    /// A new client of `uid` joined to `room` as a dummy.
    pub(super) async fn dummy(
        &self,
        uid: impl Into<Value>,
        token: &str,
        room: impl Into<Value>,
    ) -> Client {
        let mut c = Client::connect(self.addr()).await;
        c.authenticate(uid.into(), token).await;
        let ack = c
            .request("join", json!({"roomId": room.into(), "dummy": true}))
            .await;
        assert_eq!(
            ack,
            json!({"status": 0, "data": "join success"}),
            "dummy join"
        );
        c
    }

    /// GET on the main listener with the admin's Basic credentials.
    pub(super) async fn admin_get(&self, path_and_query: &str) -> Resp {
        get(&self.main_url(path_and_query), &self.basic()).await
    }

    /// POST on the main listener with the admin's Basic credentials.
    pub(super) async fn admin_post(&self, path_and_query: &str, body: Body) -> Resp {
        post(&self.main_url(path_and_query), &self.basic(), body).await
    }
}

/// What `authenticate {uid, token}` on a fresh connection is answered.
pub(super) async fn try_authenticate(
    addr: SocketAddr,
    uid: Value,
    token: &str,
    wait: Duration,
) -> Value {
    let mut c = Client::connect(addr).await;
    c.emit("authenticate", json!({"uid": uid, "token": token}))
        .await;
    match c.recv_within(wait).await {
        Some(support::Received::Event(name, v)) if name == "authenticate" => v,
        other => panic!("expected an authenticate reply within {wait:?}, got {other:?}"),
    }
}

/// Asserts that `uid` with `token` authenticates on a fresh connection.
pub(super) async fn assert_auth_ok(addr: SocketAddr, uid: Value, token: &str) {
    let r = try_authenticate(addr, uid.clone(), token, support::WAIT).await;
    assert_eq!(r, json!({"status": 0, "data": "auth success"}), "uid {uid}");
}

/// Asserts that `uid` with `token` is refused as wrong credentials.
pub(super) async fn assert_auth_refused(addr: SocketAddr, uid: Value, token: &str) {
    let r = try_authenticate(addr, uid.clone(), token, support::WAIT).await;
    assert_eq!(r, json!({"status": 1, "data": AUTH_FAILED}), "uid {uid}");
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

/// Admin (or other) credentials of a request.
#[derive(Debug, Clone)]
pub(super) enum Creds {
    None,
    /// `?uid=&token=`.
    Query(String, String),
    /// HTTP Basic `uid:token`.
    Basic(String, String),
    /// This `Authorization` header value, as is.
    Authorization(String),
}

/// A request body.
#[derive(Debug, Clone)]
pub(super) enum Body {
    Empty,
    /// JSON with `content-type: application/json`.
    Json(Value),
    /// Form data (`a=b&c=d`) with `content-type: application/x-www-form-urlencoded`.
    Form(String),
    /// Bytes with the given content type (`None`: no content-type header).
    Raw(Option<&'static str>, Vec<u8>),
}

/// An HTTP reply.
#[derive(Debug, Clone)]
pub(super) struct Resp {
    pub status: u16,
    pub content_type: String,
    pub text: String,
    /// What was asked, for failure messages.
    pub request: String,
}

impl Resp {
    /// The body as JSON (panics when it is not).
    pub(super) fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {}", self.request, self.text))
    }

    /// Asserts HTTP 200 and the envelope with `status` and its msg; returns the envelope.
    pub(super) fn envelope(&self, status: u64) -> Value {
        assert_eq!(
            self.status, 200,
            "{}: HTTP status; body {}",
            self.request, self.text
        );
        assert!(
            self.content_type.starts_with("application/json"),
            "{}: content type {:?}",
            self.request,
            self.content_type
        );
        let v = self.json();
        assert_eq!(
            v["meta"],
            json!({"status": status, "msg": MSGS[status as usize]}),
            "{}: envelope {v}",
            self.request
        );
        assert!(
            v.get("data").is_some(),
            "{}: envelope without data: {v}",
            self.request
        );
        v
    }

    /// Asserts the envelope with `status` and exactly `data`.
    pub(super) fn expect(&self, status: u64, data: Value) {
        let v = self.envelope(status);
        assert_eq!(v["data"], data, "{}: data of {v}", self.request);
    }
}

/// A client of its own for each request: no connection is reused, so a
/// request never races the server closing an idle keep-alive connection
/// (it closes one after refusing a body, for example), and no connection
/// outlives the runtime of the test that opened it.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build the HTTP client")
}

/// Sends one request and reads the whole reply.
pub(super) async fn call(method: reqwest::Method, url: &str, creds: &Creds, body: Body) -> Resp {
    match try_call(method, url, creds, body).await {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

/// Sends a request whose body the server refuses unread (HTTP 413). The
/// server may close the connection before the client has finished writing,
/// which can reset it before the reply is read; such a transport error is
/// retried (a few times), any HTTP reply is returned.
pub(super) async fn call_oversized(
    method: reqwest::Method,
    url: &str,
    creds: &Creds,
    body: Body,
) -> Resp {
    let mut errors = Vec::new();
    for _ in 0..5 {
        match try_call(method.clone(), url, creds, body.clone()).await {
            Ok(r) => return r,
            Err(e) => errors.push(e),
        }
    }
    panic!("no reply in 5 tries: {errors:#?}");
}

/// Sends one request and reads the whole reply; `Err` on a transport error.
pub(super) async fn try_call(
    method: reqwest::Method,
    url: &str,
    creds: &Creds,
    body: Body,
) -> Result<Resp, String> {
    let mut url = url.to_owned();
    if let Creds::Query(uid, token) = creds {
        let q =
            serde_urlencoded::to_string([("uid", uid), ("token", token)]).expect("encode query");
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&q);
    }
    let request = format!("{method} {url} {body:?}");
    let request = if request.len() > 300 {
        let mut end = 300;
        while !request.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &request[..end])
    } else {
        request
    };
    let mut rb = http().request(method, &url);
    match creds {
        Creds::Basic(uid, token) => rb = rb.basic_auth(uid, Some(token)),
        Creds::Authorization(value) => rb = rb.header("authorization", value),
        Creds::None | Creds::Query(..) => {}
    }
    rb = match body {
        Body::Empty => rb,
        Body::Json(v) => rb
            .header("content-type", "application/json")
            .body(v.to_string()),
        Body::Form(f) => rb
            .header("content-type", "application/x-www-form-urlencoded")
            .body(f),
        Body::Raw(Some(ct), bytes) => rb.header("content-type", ct).body(bytes),
        Body::Raw(None, bytes) => rb.body(bytes),
    };
    let resp = rb.send().await.map_err(|e| format!("{request}: {e:?}"))?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("{request}: reading the body: {e:?}"))?;
    Ok(Resp {
        status,
        content_type,
        text,
        request,
    })
}

pub(super) async fn get(url: &str, creds: &Creds) -> Resp {
    call(reqwest::Method::GET, url, creds, Body::Empty).await
}

pub(super) async fn post(url: &str, creds: &Creds, body: Body) -> Resp {
    call(reqwest::Method::POST, url, creds, body).await
}

// ---------------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------------

/// `always-online` as a child process on ephemeral ports, every stderr line kept.
pub(super) struct Bin {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// The admin listener (`admin_addr` of the listening line), if any.
    pub admin_addr: Option<SocketAddr>,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

/// Removes ANSI colour escapes.
pub(super) fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The value after `key` in a log line, JSON (`"key":"v"`) or text (` key=v`).
fn log_field(line: &str, key: &str) -> Option<String> {
    let json_key = format!("\"{key}\":\"");
    if let Some(i) = line.find(&json_key) {
        let rest = &line[i + json_key.len()..];
        return rest.find('"').map(|end| rest[..end].to_owned());
    }
    let text_key = format!(" {key}=");
    let i = line.find(&text_key)?;
    let rest = &line[i + text_key.len()..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

impl Bin {
    /// Starts `always-online` with `args` (after `--listen`/`--api-listen`
    /// on port 0) and `envs` (no other `AO_` variable is passed on), and
    /// waits for its "listening" log line.
    pub(super) fn start(args: &[&str], envs: &[(&str, &str)]) -> Bin {
        let mut cmd = support::binary();
        cmd.args(["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn always-online");
        let stderr = child.stderr.take().expect("child stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("lines lock").push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let (addr, api_addr, admin_addr) = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let line = strip_ansi(&line);
                    if !line.contains("always-online listening") {
                        continue;
                    }
                    let addr = log_field(&line, "addr").and_then(|a| a.parse().ok());
                    let api = log_field(&line, "api_addr").and_then(|a| a.parse().ok());
                    let admin = log_field(&line, "admin_addr").and_then(|a| a.parse().ok());
                    match (addr, api) {
                        (Some(a), Some(b)) => break (a, b, admin),
                        _ => panic!("cannot read the addresses from {line:?}"),
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "always-online did not report its addresses; stderr: {:#?}",
                        lines.lock().expect("lines lock")
                    );
                }
            }
        };
        Bin {
            child: Some(child),
            addr,
            api_addr,
            admin_addr,
            lines,
            reader: Some(reader),
        }
    }

    pub(super) fn main_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(super) fn api_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api_addr)
    }

    /// stderr so far, one entry per line.
    pub(super) fn stderr_lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }

    /// SIGTERM, waits (at most 30 s) for the exit, and returns the exit
    /// status with the whole stderr. Blocking: call it from `spawn_blocking`
    /// when clients of this runtime must go on reading.
    pub(super) fn terminate(mut self) -> (ExitStatus, Vec<String>) {
        let mut child = self.child.take().expect("running");
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(ok.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for always-online") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("always-online did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status, self.stderr_lines())
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the binary to completion with `args` and `envs`; returns
/// (exit status, stdout, stderr). Blocking.
pub(super) fn run_cli(args: &[&str], envs: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut cmd = support::binary();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn always-online");
    let mut out = String::new();
    let mut err = String::new();
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let _ = so.read_to_string(&mut out);
    err.push_str(&t.join().expect("stderr reader"));
    let status = child.wait().expect("wait for always-online");
    (status, out, err)
}

/// Writes one test per backend for each async fn `name(Backend)` listed.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::api::harness::Backend::Embedded).await;
                }
            )*
        }
        mod mongo {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::api::harness::Backend::Mongo).await;
                }
            )*
        }
    };
}
pub(crate) use backend_tests;

/// Reads until event `name` arrives, skipping other events (remote_join
/// and the like); panics on a disconnect or when nothing comes in 5 s.
pub(super) async fn wait_event(c: &mut Client, name: &str) -> Value {
    loop {
        match c.recv().await {
            support::Received::Event(n, v) if n == name => return v,
            support::Received::Event(..) => {}
            other => panic!("waiting for {name:?}: got {other:?}"),
        }
    }
}

/// Asserts that no event `name` arrives within `wait` (others are skipped).
pub(super) async fn assert_no_event(c: &mut Client, name: &str, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.recv_within(left).await {
            None | Some(support::Received::Closed) => return,
            Some(support::Received::Event(n, v)) if n == name => {
                panic!("unexpected {name:?} event: {v}")
            }
            Some(_) => {}
        }
    }
}
