//! Shared harness of the integration tests: an in-process server on port 0,
//! the real binary as a child process, and a raw socket.io client.
//!
//! The client is written by hand over tokio-tungstenite instead of using a
//! maintained socket.io client library because the tests need what such
//! libraries deliberately hide: they must send malformed and truncated frames,
//! binary attachment packets and raw engine.io garbage, and they must observe
//! the exact order of every packet the server sends (events, acks, the
//! socket.io disconnect packet and the websocket close), including packets the
//! libraries swallow or reorder. It speaks engine.io 4 / socket.io 5 over a
//! websocket, which is all the tests need. Its frames are encoded and
//! decoded by the codec the project's raw clients share (`ao-testclient`).

#![allow(dead_code)]

pub(crate) mod certs;
pub(crate) mod cluster;
pub(crate) mod cut;
pub(crate) mod redis;

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use always_online::accounts::Kind;
use always_online::app::AppState;
use always_online::{App, Config};
use ao_testclient::frame::{self, Packet, SioPacket};
use ao_testclient::handshake::{self, HandshakeError};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long a test waits for something that must arrive.
pub(crate) const WAIT: Duration = Duration::from_secs(5);
/// How long a test listens to conclude that nothing arrives.
pub(crate) const QUIET: Duration = Duration::from_millis(400);
/// How long [`presence_view`] waits for the presence it expects.
const PRESENCE_DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// In-process server
// ---------------------------------------------------------------------------

/// A server running in the test's runtime on ephemeral ports, with its own
/// data directory (deleted when the `TestServer` is dropped).
pub(crate) struct TestServer {
    app: App,
    tokens: Mutex<HashMap<String, String>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// A server with the default configuration (short of the listeners and data dir).
    pub(crate) async fn start() -> TestServer {
        Self::with(|_| {}).await
    }

    /// A server whose configuration `tweak` adjusts.
    pub(crate) async fn with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        init_test_logging();
        let dir = tempfile::tempdir().expect("create a temporary data dir");
        let mut config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        tweak(&mut config);
        let app = App::start(config).await.expect("start the server");
        TestServer {
            app,
            tokens: Mutex::new(HashMap::new()),
            _dir: dir,
        }
    }

    /// The socket.io listener.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.app.addr()
    }

    /// The accounts API listener.
    pub(crate) fn api_addr(&self) -> SocketAddr {
        self.app.api_addr()
    }

    /// The admin listener, when `admin_listen` is configured.
    pub(crate) fn admin_addr(&self) -> Option<SocketAddr> {
        self.app.admin_addr()
    }

    /// The server's shared state (stores, cluster state, socket.io handle).
    pub(crate) fn state(&self) -> &Arc<AppState> {
        self.app.state()
    }

    /// The token of user `uid`, creating the account on first use.
    pub(crate) async fn token(&self, uid: &str) -> String {
        if let Some(t) = self.tokens.lock().expect("tokens lock").get(uid) {
            return t.clone();
        }
        let token = self
            .state()
            .accounts()
            .create(Kind::User, uid)
            .await
            .unwrap_or_else(|e| panic!("create user {uid}: {e}"));
        self.tokens
            .lock()
            .expect("tokens lock")
            .insert(uid.to_owned(), token.clone());
        token
    }

    /// A client of user `uid` (created if needed) authenticated and joined to `room`.
    pub(crate) async fn login(&self, uid: impl Into<Value>, room: impl Into<Value>) -> Client {
        let uid = uid.into();
        let token = self.token(&id_string(&uid)).await;
        login(self.addr(), uid, &token, room).await
    }

    /// A client of user `uid` that is authenticated but in no room.
    pub(crate) async fn authenticated(&self, uid: impl Into<Value>) -> Client {
        let uid = uid.into();
        let token = self.token(&id_string(&uid)).await;
        let mut c = Client::connect(self.addr()).await;
        c.authenticate(uid, &token).await;
        c
    }

    /// A dummy (observer) client of user `uid` joined to `room`.
    pub(crate) async fn dummy(&self, uid: impl Into<Value>, room: impl Into<Value>) -> Client {
        let mut c = self.authenticated(uid).await;
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

    /// Checks that the server still serves: two fresh users authenticate,
    /// join a fresh room and exchange a message.
    pub(crate) async fn assert_alive(&self) {
        let n = ALIVE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let room = format!("alive-room-{n}");
        let mut a = self.login(format!("alive-a-{n}"), room.as_str()).await;
        let mut b = self.login(format!("alive-b-{n}"), room.as_str()).await;
        assert_eq!(
            a.expect_event("remote_join").await,
            json!({"uid": format!("alive-b-{n}")})
        );
        assert_eq!(
            b.expect_event("remote_join").await,
            json!({"uid": format!("alive-a-{n}")})
        );
        a.emit("msg", json!({"data": "still alive", "s": 2})).await;
        let got = b.expect_event("msg").await;
        assert_eq!(got["data"], json!("still alive"));
    }
}

/// With `AO_TEST_LOG` set (a tracing filter such as `always_online=debug`),
/// the in-process servers log to the test output.
fn init_test_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("AO_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_ansi(false)
                .with_test_writer()
                .try_init();
        }
    });
}

static ALIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The string form of an id value (`"a"` → `a`, `12` → `12`).
pub(crate) fn id_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Connects, authenticates as `uid` with `token`, joins `room` and checks
/// both replies. The client has read nothing after the join ack.
pub(crate) async fn login(
    addr: SocketAddr,
    uid: impl Into<Value>,
    token: &str,
    room: impl Into<Value>,
) -> Client {
    let mut c = Client::connect(addr).await;
    c.authenticate(uid.into(), token).await;
    let ack = c.request("join", json!({"roomId": room.into()})).await;
    assert_eq!(ack, json!({"status": 0, "data": "join success"}), "join");
    c
}

// ---------------------------------------------------------------------------
// Raw socket.io client
// ---------------------------------------------------------------------------

/// What the server sent, as the tests care about it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Received {
    /// `42["name", payload]` (payload `null` when absent).
    Event(String, Value),
    /// The socket.io disconnect packet `41`.
    Disconnect,
    /// The websocket (or engine.io session) closed.
    Closed,
}

/// One decoded frame.
enum Frame {
    Received(Received),
    Ack(u64, Value),
    Ignored,
}

/// The byte stream under a test client's websocket: TCP, or TLS over TCP.
pub(crate) trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

type Ws = WebSocketStream<Box<dyn Conn>>;

/// A socket.io 5 client over a raw websocket; see the module docs.
pub(crate) struct Client {
    ws: Ws,
    /// Socket.io session id from the connect reply.
    pub sid: String,
    /// Things received while waiting for an ack, in arrival order.
    pending: VecDeque<Received>,
    acks: HashMap<u64, Value>,
    next_ack: u64,
    closed: bool,
}

impl Client {
    /// Opens the websocket, reads the engine.io handshake and connects to
    /// the default namespace.
    pub(crate) async fn connect(addr: SocketAddr) -> Client {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let tcp = match timeout(WAIT, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => panic!("connect to {addr}: {e}"),
            Err(_) => panic!("connect to {addr} timed out"),
        };
        Client::connect_over(&url, Box::new(tcp)).await
    }

    /// Like [`Client::connect`], over `stream` (already connected, TLS or
    /// not) to the server `url` names (`ws://` or `wss://`).
    pub(crate) async fn connect_over(url: &str, stream: Box<dyn Conn>) -> Client {
        match Client::connect_with_packet(url, stream, "40").await {
            Ok(c) => c,
            Err(refused) => panic!("connect refused: {refused}"),
        }
    }

    /// Connects with `auth` as the CONNECT payload (socket.io 3+/4
    /// `io(url, {auth})`); a refusal gives the connect error packet's JSON.
    pub(crate) async fn connect_with_auth(addr: SocketAddr, auth: Value) -> Result<Client, Value> {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let tcp = timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        Client::connect_with_packet(&url, Box::new(tcp), &format!("40{auth}"))
            .await
            .map_err(|text| {
                serde_json::from_str(text.strip_prefix("44").unwrap_or(&text))
                    .unwrap_or_else(|e| panic!("connect error {text:?}: {e}"))
            })
    }

    /// Opens the websocket, reads the handshake and sends `connect`; the
    /// connect error packet's text when refused.
    async fn connect_with_packet(
        url: &str,
        stream: Box<dyn Conn>,
        connect: &str,
    ) -> Result<Client, String> {
        let mut ws = match timeout(WAIT, tokio_tungstenite::client_async(url, stream)).await {
            Ok(Ok((ws, _response))) => ws,
            Ok(Err(e)) => panic!("websocket connect to {url}: {e}"),
            Err(_) => panic!("websocket connect to {url} timed out"),
        };
        // Two steps: the open packet, then the CONNECT answer.
        let connected = match timeout(2 * WAIT, handshake::connect(&mut ws, Some(connect))).await {
            Ok(Ok(connected)) => connected,
            Ok(Err(HandshakeError::Refused(error))) => return Err(error),
            Ok(Err(e)) => panic!("socket.io handshake with {url}: {e}"),
            Err(_) => panic!("socket.io handshake with {url} timed out"),
        };
        let sid = frame::connect_sid(&connected.answer).unwrap_or_else(|e| {
            panic!(
                "expected socket.io connect reply, got {:?}: {e}",
                connected.answer
            )
        });
        Ok(Client {
            ws,
            sid,
            pending: VecDeque::new(),
            acks: HashMap::new(),
            next_ack: 1,
            closed: false,
        })
    }

    /// Sends one raw text frame exactly as given.
    pub(crate) async fn emit_raw(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("send {}: {e}", preview(text)));
    }

    /// Sends one binary frame.
    pub(crate) async fn send_binary_frame(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::binary(bytes))
            .await
            .unwrap_or_else(|e| panic!("send binary frame: {e}"));
    }

    /// Emits `event` with one JSON argument.
    pub(crate) async fn emit(&mut self, event: &str, payload: Value) {
        self.emit_raw(&frame::event_frame(event, &payload.to_string()))
            .await;
    }

    /// Emits `event` without any argument (`42["event"]`).
    pub(crate) async fn emit_bare(&mut self, event: &str) {
        let packet = json!([event]);
        self.emit_raw(&format!("42{packet}")).await;
    }

    /// Emits `event` asking for an ack; returns the ack id (see [`Client::wait_ack`]).
    pub(crate) async fn emit_ack_id(&mut self, event: &str, payload: Value) -> u64 {
        let id = self.next_ack;
        self.next_ack += 1;
        self.emit_raw(&frame::event_frame_with_ack(
            event,
            Some(id),
            &payload.to_string(),
        ))
        .await;
        id
    }

    /// Emits `event` with an ack and waits for the ack's (first) argument.
    pub(crate) async fn emit_with_ack(&mut self, event: &str, payload: Value) -> Value {
        let id = self.emit_ack_id(event, payload).await;
        self.wait_ack(id).await
    }

    /// Waits for ack `id`; events that arrive meanwhile stay queued for `recv`.
    pub(crate) async fn wait_ack(&mut self, id: u64) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = self.acks.remove(&id) {
                return v;
            }
            match self.frame(deadline).await {
                Some(Frame::Received(r)) => {
                    let closed = r == Received::Closed;
                    self.pending.push_back(r);
                    assert!(!closed, "connection closed while waiting for ack {id}");
                }
                Some(Frame::Ack(n, v)) => {
                    self.acks.insert(n, v);
                }
                Some(Frame::Ignored) => {}
                None => panic!(
                    "no ack {id} within {WAIT:?}; queued meanwhile: {:?}",
                    self.pending
                ),
            }
        }
    }

    /// Emits a binary event: `451-["event",{"_placeholder":true,"num":0}]`
    /// followed by a binary frame with `bytes`.
    pub(crate) async fn emit_binary(&mut self, event: &str, bytes: Vec<u8>) {
        let packet = json!([event, {"_placeholder": true, "num": 0}]);
        self.emit_raw(&format!("451-{packet}")).await;
        self.send_binary_frame(bytes).await;
    }

    /// Emits `event` and returns the server's reply event of the same name
    /// (authenticate, join and sync answer with an event, not an ack).
    pub(crate) async fn request(&mut self, event: &str, payload: Value) -> Value {
        self.emit(event, payload).await;
        self.expect_event(event).await
    }

    /// Authenticates and checks the success reply.
    pub(crate) async fn authenticate(&mut self, uid: Value, token: &str) {
        let reply = self
            .request("authenticate", json!({"uid": uid, "token": token}))
            .await;
        assert_eq!(
            reply,
            json!({"status": 0, "data": "auth success"}),
            "authenticate as {uid}"
        );
    }

    /// Reads one frame before `deadline`; `None` on timeout.
    async fn frame(&mut self, deadline: Instant) -> Option<Frame> {
        if self.closed {
            return Some(Frame::Received(Received::Closed));
        }
        let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
            Err(_) => return None,
            Ok(None | Some(Err(_))) => {
                self.closed = true;
                return Some(Frame::Received(Received::Closed));
            }
            Ok(Some(Ok(msg))) => msg,
        };
        let text = match msg {
            Message::Text(t) => t.as_str().to_owned(),
            Message::Close(_) => {
                self.closed = true;
                return Some(Frame::Received(Received::Closed));
            }
            Message::Binary(b) => panic!("unexpected binary frame of {} bytes", b.len()),
            _ => return Some(Frame::Ignored),
        };
        Some(self.decode(&text).await)
    }

    async fn decode(&mut self, text: &str) -> Frame {
        match frame::decode(text) {
            // engine.io ping: answer pong.
            Ok(Packet::Ping("")) => {
                self.emit_raw("3").await;
                Frame::Ignored
            }
            // engine.io close.
            Ok(Packet::Close) if text == "1" => {
                self.closed = true;
                Frame::Received(Received::Closed)
            }
            Ok(Packet::Message(SioPacket::Disconnect { nsp: "/" })) if text == "41" => {
                Frame::Received(Received::Disconnect)
            }
            Ok(Packet::Message(SioPacket::Event { nsp: "/", data, .. })) => {
                let arr: Vec<Value> = serde_json::from_str(data)
                    .unwrap_or_else(|e| panic!("bad event packet {}: {e}", preview(text)));
                let mut it = arr.into_iter();
                let name = match it.next() {
                    Some(Value::String(s)) => s,
                    other => panic!("event without a name: {other:?}"),
                };
                let payload = it.next().unwrap_or(Value::Null);
                assert!(
                    it.next().is_none(),
                    "event {name} with more than one argument: {}",
                    preview(text)
                );
                Frame::Received(Received::Event(name, payload))
            }
            Ok(Packet::Message(SioPacket::Ack { nsp: "/", id, data })) => {
                let arr: Vec<Value> = serde_json::from_str(data)
                    .unwrap_or_else(|e| panic!("bad ack packet {}: {e}", preview(text)));
                Frame::Ack(id, arr.into_iter().next().unwrap_or(Value::Null))
            }
            Ok(Packet::Message(SioPacket::Error { .. })) => {
                panic!("socket.io connect error: {text}")
            }
            _ => panic!("unexpected frame from the server: {}", preview(text)),
        }
    }

    /// The next event, disconnect packet or close, waiting at most `wait`.
    pub(crate) async fn recv_within(&mut self, wait: Duration) -> Option<Received> {
        if let Some(r) = self.pending.pop_front() {
            return Some(r);
        }
        let deadline = Instant::now() + wait;
        loop {
            match self.frame(deadline).await? {
                Frame::Received(r) => return Some(r),
                Frame::Ack(id, v) => {
                    self.acks.insert(id, v);
                }
                Frame::Ignored => {}
            }
        }
    }

    /// The next event, disconnect packet or close (panics after 5 s).
    pub(crate) async fn recv(&mut self) -> Received {
        match self.recv_within(WAIT).await {
            Some(r) => r,
            None => panic!("client {}: nothing received within {WAIT:?}", self.sid),
        }
    }

    /// The next thing received must be event `name`; returns its payload.
    pub(crate) async fn expect_event(&mut self, name: &str) -> Value {
        match self.recv_within(WAIT).await {
            Some(Received::Event(n, v)) if n == name => v,
            Some(other) => panic!(
                "client {}: expected event {name:?}, got {other:?}",
                self.sid
            ),
            None => panic!(
                "client {}: expected event {name:?}, nothing received within {WAIT:?}",
                self.sid
            ),
        }
    }

    /// Nothing at all arrives for `wait`.
    pub(crate) async fn expect_no_event(&mut self, wait: Duration) {
        if let Some(r) = self.recv_within(wait).await {
            panic!("expected nothing, got {r:?}");
        }
    }

    /// The next thing received must be the socket.io disconnect packet.
    pub(crate) async fn expect_disconnect(&mut self) {
        match self.recv().await {
            Received::Disconnect => {}
            other => panic!("expected the disconnect packet 41, got {other:?}"),
        }
    }

    /// Whether the server closed this session: reads until the disconnect
    /// packet or the close, skipping any events (for bad-input tests where
    /// either outcome is fine).
    pub(crate) async fn drain_until_closed(&mut self) -> Vec<Received> {
        let mut seen = Vec::new();
        loop {
            let r = self.recv().await;
            let done = matches!(r, Received::Disconnect | Received::Closed);
            seen.push(r);
            if done {
                return seen;
            }
        }
    }

    /// Closes the websocket from the client side (a plain client disconnect).
    pub(crate) async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Let the close handshake finish so the server sees a clean close.
        let _ = timeout(WAIT, async { while self.ws.next().await.is_some() {} }).await;
    }

    /// Sends a msg with an ack and returns the ack.
    pub(crate) async fn send_msg(&mut self, msg: Value) -> Value {
        self.emit_with_ack("msg", msg).await
    }

    /// Requests one sync page.
    pub(crate) async fn sync(&mut self, request: Value) -> Value {
        self.request("sync", request).await
    }

    /// Syncs from `offset` page after page; returns every item and the replies.
    pub(crate) async fn sync_all(&mut self, offset: u64) -> (Vec<Value>, Vec<Value>) {
        let mut items = Vec::new();
        let mut replies = Vec::new();
        let mut offset = offset;
        loop {
            let reply = self.sync(json!({"offset": offset})).await;
            let data = reply["data"]
                .as_array()
                .unwrap_or_else(|| panic!("sync data is not an array: {reply}"))
                .clone();
            items.extend(data);
            let next = reply["next"].as_u64();
            offset = reply["offset"]
                .as_u64()
                .unwrap_or_else(|| panic!("sync offset is not a number: {reply}"));
            replies.push(reply);
            if next == Some(0) {
                return (items, replies);
            }
            assert!(replies.len() < 10_000, "sync never reached next: 0");
        }
    }
}

fn preview(s: &str) -> String {
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{:?}… ({} bytes)", &s[..end], s.len())
    } else {
        format!("{s:?}")
    }
}

// ---------------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------------

/// The `always-online` binary built for these tests.
pub(crate) fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_always-online"));
    for (key, _) in std::env::vars() {
        if key.starts_with("AO_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "info");
    cmd
}

/// The binary serving on ephemeral ports, its stderr drained by a thread.
pub(crate) struct BinServer {
    pub child: Child,
    pub addr: SocketAddr,
    /// The accounts API listener (`api_addr` of the same log line).
    pub api_addr: SocketAddr,
    /// The admin listener (`admin_addr`), when the server has one.
    pub admin_addr: Option<SocketAddr>,
    /// The stderr lines logged before the "listening" line.
    pub startup_lines: Vec<String>,
    stderr: std_mpsc::Receiver<String>,
}

impl BinServer {
    /// Starts `always-online` with JSON logs on `data_dir` (`--dev` when `dev`)
    /// and waits for its "listening" line to learn the port.
    pub(crate) fn start(data_dir: &Path, dev: bool) -> BinServer {
        Self::start_with(data_dir, dev, |_| {})
    }

    /// Like [`BinServer::start`], with `tweak` adding environment or flags.
    pub(crate) fn start_with(
        data_dir: &Path,
        dev: bool,
        tweak: impl FnOnce(&mut Command),
    ) -> BinServer {
        let mut cmd = binary();
        cmd.env("AO_LOG_FORMAT", "json")
            .args(["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if dev {
            cmd.arg("--dev");
        }
        tweak(&mut cmd);
        Self::spawn(cmd)
    }

    /// Runs `cmd` (the binary with JSON logs, its listeners and data dir
    /// set) and waits for its "listening" line to learn the ports.
    pub(crate) fn spawn(mut cmd: Command) -> BinServer {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn always-online");
        let stderr = child.stderr.take().expect("child stderr");
        let (tx, rx) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more; keep draining so the child never blocks.
                    continue;
                }
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        let (addr, api_addr, admin_addr) = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line) {
                        let api_addr = listening_field(&line, "api_addr").unwrap_or_else(|| {
                            let _ = child.kill();
                            panic!("no api_addr in the listening line {line:?}")
                        });
                        break (addr, api_addr, listening_field(&line, "admin_addr"));
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("always-online did not report its address; stderr: {seen:#?}");
                }
            }
        };
        BinServer {
            child,
            addr,
            api_addr,
            admin_addr,
            startup_lines: seen,
            stderr: rx,
        }
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill(mut self) {
        self.child.kill().expect("kill -9 always-online");
        self.child.wait().expect("reap always-online");
    }

    /// SIGTERM, then wait (at most 30 s) for the exit status.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM failed");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for always-online") {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("always-online did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// stderr lines logged so far (non-blocking).
    pub(crate) fn stderr_lines(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }
}

impl Drop for BinServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `addr` of the JSON "always-online listening" log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    listening_field(line, "addr")
}

/// The address in field `key` of a JSON log line (`"key":"host:port"`).
fn listening_field(line: &str, key: &str) -> Option<SocketAddr> {
    let pattern = format!("\"{key}\":\"");
    let start = line.find(&pattern)? + pattern.len();
    let end = line[start..].find('"')? + start;
    line[start..end].parse().ok()
}

/// A fresh temporary directory.
pub(crate) fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary dir")
}

/// A path inside `dir`.
pub(crate) fn path_in(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// Presence as `c` sees it: starting from `known`, every `remote_join` adds
/// a uid and every `remote_leave` / `remote_disconnect` removes one, until
/// it is `expected` (or [`PRESENCE_DEADLINE`] passed) and nothing more
/// arrives for [`QUIET`]. Panics on an announcement that contradicts
/// what the client was told before (a second join of a present uid, a
/// leave of an absent one) or that names the client itself.
pub(crate) async fn presence_view(
    me: &str,
    c: &mut Client,
    known: &[String],
    expected: &[String],
) -> Vec<String> {
    let mut view: Vec<String> = known.to_vec();
    let mut expected = expected.to_vec();
    expected.sort();
    // Until the view is the expected one (or a deadline a loaded machine
    // does not reach), then for a quiet spell that would show a stray or
    // repeated event.
    let deadline = Instant::now() + PRESENCE_DEADLINE;
    loop {
        let mut sorted = view.clone();
        sorted.sort();
        let wait = if sorted == expected {
            QUIET
        } else {
            deadline
                .saturating_duration_since(Instant::now())
                .max(QUIET)
        };
        let Some(r) = c.recv_within(wait).await else {
            break;
        };
        let Received::Event(name, payload) = r else {
            panic!("{me}: unexpected {r:?}");
        };
        let uid = id_string(&payload["uid"]);
        match name.as_str() {
            "join" => assert_eq!(payload["status"], json!(0), "{me}: join ack {payload}"),
            "remote_join" => {
                assert_ne!(uid, me, "{me} was announced to itself");
                assert!(
                    !view.contains(&uid),
                    "{me}: {uid} announced twice: {view:?}"
                );
                view.push(uid);
            }
            "remote_leave" | "remote_disconnect" => {
                assert!(
                    view.contains(&uid),
                    "{me}: {name} of {uid}, not present: {view:?}"
                );
                view.retain(|u| u != &uid);
            }
            other => panic!("{me}: unexpected event {other}"),
        }
    }
    view.sort();
    view
}

/// Each of `members` (uid, client) sends `join` to `room` at the same
/// moment; each must be told of every other exactly once.
pub(crate) async fn join_at_once(room: &str, members: &mut [(String, Client)], what: &str) {
    let uids: Vec<String> = members.iter().map(|(u, _)| u.clone()).collect();
    futures_util::future::join_all(
        members
            .iter_mut()
            .map(|(_, c)| c.emit("join", json!({ "roomId": room }))),
    )
    .await;
    let views = futures_util::future::join_all(members.iter_mut().map(|(uid, c)| {
        let others: Vec<String> = uids.iter().filter(|u| *u != uid).cloned().collect();
        async move { presence_view(uid, c, &[], &others).await }
    }))
    .await;
    for (uid, view) in uids.iter().zip(views) {
        let others: Vec<String> = uids.iter().filter(|u| *u != uid).cloned().collect();
        assert_eq!(view, others, "{what}: what {uid} was told");
    }
}

/// `going` send `leave` while `joining` send `join` to `room`, all at the
/// same moment; every member left in the room (`staying`, which knew of
/// `before`, and `joining`) must end up told of exactly the others in it.
pub(crate) async fn churn(
    room: &str,
    before: &[String],
    staying: &mut [(String, Client)],
    going: &mut [Client],
    joining: &mut [(String, Client)],
    what: &str,
) {
    let leaves = futures_util::future::join_all(going.iter_mut().map(|c| c.emit_bare("leave")));
    let joins = futures_util::future::join_all(
        joining
            .iter_mut()
            .map(|(_, c)| c.emit("join", json!({ "roomId": room }))),
    );
    tokio::join!(leaves, joins);
    let after: Vec<String> = staying
        .iter()
        .chain(joining.iter())
        .map(|(u, _)| u.clone())
        .collect();
    let others_of =
        |uid: &str| -> Vec<String> { after.iter().filter(|u| *u != uid).cloned().collect() };
    let staying_views = futures_util::future::join_all(staying.iter_mut().map(|(uid, c)| {
        let known: Vec<String> = before.iter().filter(|u| *u != uid).cloned().collect();
        let others = others_of(uid);
        async move { presence_view(uid, c, &known, &others).await }
    }));
    let joining_views = futures_util::future::join_all(joining.iter_mut().map(|(uid, c)| {
        let others = others_of(uid);
        async move { presence_view(uid, c, &[], &others).await }
    }));
    let (staying_views, joining_views) = tokio::join!(staying_views, joining_views);
    for (uid, view) in after
        .iter()
        .zip(staying_views.into_iter().chain(joining_views))
    {
        let mut others: Vec<String> = after.iter().filter(|u| *u != uid).cloned().collect();
        others.sort();
        assert_eq!(view, others, "{what}: what {uid} was told");
    }
}

/// The resident memory of process `pid`, in KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Polls `check` every 100 ms until it returns `Ok`, panicking after `limit`
/// with `what` and the last complaint.
pub(crate) async fn poll<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let started = tokio::time::Instant::now();
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => assert!(
                started.elapsed() < limit,
                "{what}: not within {limit:?}; last: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
