//! Fixtures of the cluster tests: nodes of the real binary on one Redis,
//! members and observers, the admin API over HTTP, polling, and the
//! traffic of the Redis-restart test.

use crate::support::redis::RedisServer;
use crate::support::{login, poll, BinServer, Client, Received};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The admin every node is started with.
pub(crate) const ADMIN_UID: &str = "root";

pub(crate) const ADMIN_TOKEN: &str = "cluster-admin-secret";

/// The reason of a refused authenticate with wrong credentials.
pub(crate) const AUTH_FAILED: &str = "auth failed, uid or token is wrong";

/// `n` nodes in development mode on one Redis, each with its own data dir.
pub(crate) struct Cluster {
    pub(crate) redis: RedisServer,
    pub(crate) nodes: Vec<BinServer>,
    pub(crate) _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    /// `n` nodes on a fresh private Redis.
    pub(crate) fn start(n: usize) -> Cluster {
        Self::start_with(n, |_| {})
    }

    /// Like [`Cluster::start`], `tweak` adding environment to every node.
    pub(crate) fn start_with(n: usize, tweak: impl Fn(&mut Command)) -> Cluster {
        Self::on(RedisServer::start(), n, tweak)
    }

    /// `n` nodes on `redis`, which may already hold data.
    pub(crate) fn on(redis: RedisServer, n: usize, tweak: impl Fn(&mut Command)) -> Cluster {
        let (nodes, dirs) = start_nodes(&redis.url(), n, &tweak);
        Cluster {
            redis,
            nodes,
            _dirs: dirs,
        }
    }

    /// The socket.io / admin listener of node `i`.
    pub(crate) fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].addr
    }
}

/// Starts `n` nodes with `AO_REDIS_URL=url`, the admin, `--dev`.
pub(crate) fn start_nodes(
    url: &str,
    n: usize,
    tweak: &dyn Fn(&mut Command),
) -> (Vec<BinServer>, Vec<tempfile::TempDir>) {
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..n {
        let dir = crate::support::tempdir();
        let node = BinServer::start_with(dir.path(), true, |cmd| {
            cmd.env("AO_REDIS_URL", url)
                .env("AO_ADMIN_UID", ADMIN_UID)
                .env("AO_ADMIN_TOKEN", ADMIN_TOKEN);
            tweak(cmd);
        });
        nodes.push(node);
        dirs.push(dir);
    }
    (nodes, dirs)
}

/// `uid` (any token: dev mode) joined to `room` on `addr`.
pub(crate) async fn member(addr: SocketAddr, uid: &str, room: &str) -> Client {
    login(addr, uid, "any", room).await
}

/// A dummy of `uid` joined to `room` on `addr`.
pub(crate) async fn dummy(addr: SocketAddr, uid: &str, room: &str) -> Client {
    let mut c = Client::connect(addr).await;
    c.authenticate(json!(uid), "any").await;
    let ack = c
        .request("join", json!({"roomId": room, "dummy": true}))
        .await;
    assert_eq!(
        ack,
        json!({"status": 0, "data": "join success"}),
        "dummy join"
    );
    c
}

/// The next thing `c` receives is `event {uid}`.
pub(crate) async fn expect_presence(c: &mut Client, event: &str, uid: &str) {
    assert_eq!(
        c.expect_event(event).await,
        json!({ "uid": uid }),
        "{event} for {uid}"
    );
}

/// Joins `who` (node address, uid) to `room` one after the other, checking
/// and consuming every `remote_join`: the k-th joiner hears the earlier ones
/// in join order, each earlier one hears the k-th.
pub(crate) async fn room_of(who: &[(SocketAddr, &str)], room: &str) -> Vec<Client> {
    let mut clients: Vec<Client> = Vec::new();
    for (k, &(addr, uid)) in who.iter().enumerate() {
        let mut c = member(addr, uid, room).await;
        for &(_, earlier) in &who[..k] {
            expect_presence(&mut c, "remote_join", earlier).await;
        }
        for earlier in clients.iter_mut() {
            expect_presence(earlier, "remote_join", uid).await;
        }
        clients.push(c);
    }
    clients
}

/// Receives until `count` msg events arrived (at most `limit` overall);
/// any other event fails the test.
pub(crate) async fn recv_msgs(c: &mut Client, count: usize, limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.recv_within(left).await {
            Some(Received::Event(name, v)) if name == "msg" => got.push(v),
            Some(other) => panic!(
                "expected msg events, got {other:?} after {} of {count} msgs",
                got.len()
            ),
            None => panic!(
                "only {} of {count} msgs within {limit:?}; last: {:?}",
                got.len(),
                got.last()
            ),
        }
    }
    got
}

/// Sends the inserts `{"data": {"from": uid, "i": i}}` for `0..n` in windows
/// of 25 with acks; returns each `(i, seq)`, all of which must succeed.
pub(crate) async fn send_inserts(c: &mut Client, uid: &str, n: u64) -> Vec<(u64, u64)> {
    let mut acked = Vec::new();
    let all: Vec<u64> = (0..n).collect();
    for window in all.chunks(25) {
        let mut ids = Vec::new();
        for &i in window {
            let msg = json!({"data": {"from": uid, "i": i}});
            ids.push((i, c.emit_ack_id("msg", msg).await));
        }
        for (i, id) in ids {
            let ack = c.wait_ack(id).await;
            assert_eq!(ack["status"], json!(0), "{uid} msg {i}: {ack}");
            let seq = ack["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("{uid} msg {i}: insert ack without seq: {ack}"));
            acked.push((i, seq));
        }
    }
    acked
}

/// The whole history of `room` as synced from offset 0 by a fresh dummy
/// on `addr` (a dummy's sync is not announced to the members); presence
/// events the dummy hears meanwhile are skipped.
pub(crate) async fn history(addr: SocketAddr, room: &str) -> Vec<Value> {
    let mut d = Client::connect(addr).await;
    d.authenticate(json!(format!("reader-{}", rand::random::<u32>())), "any")
        .await;
    let ack = d
        .request("join", json!({"roomId": room, "dummy": true}))
        .await;
    assert_eq!(
        ack,
        json!({"status": 0, "data": "join success"}),
        "reader join"
    );
    let mut items = Vec::new();
    let mut offset = 0u64;
    for _ in 0..10_000 {
        d.emit("sync", json!({ "offset": offset })).await;
        let reply = loop {
            match d.recv().await {
                Received::Event(name, v) if name == "sync" => break v,
                Received::Event(name, _) if name == "remote_join" || name == "msg" => {}
                other => panic!("reader of {room}: unexpected {other:?}"),
            }
        };
        items.extend(
            reply["data"]
                .as_array()
                .unwrap_or_else(|| panic!("sync data is not an array: {reply}"))
                .iter()
                .cloned(),
        );
        if reply["next"] == json!(0) {
            return items;
        }
        offset = reply["offset"]
            .as_u64()
            .unwrap_or_else(|| panic!("sync offset is not a number: {reply}"));
    }
    panic!("sync of {room} never reached next: 0");
}

/// The `seq` of a relayed or synced insert.
pub(crate) fn seq_of(m: &Value) -> u64 {
    m["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("insert without a numeric seq: {m}"))
}

/// Checks a sync result: `items[k]` has seq `k` for every k.
pub(crate) fn assert_dense(items: &[Value]) {
    for (k, m) in items.iter().enumerate() {
        assert_eq!(seq_of(m), k as u64, "sync item {k}: {m}");
    }
}

/// Checks what one member received from the others: every sender's
/// `0..n` exactly once and in order, stamped with its uid, seqs strictly
/// increasing in arrival order.
pub(crate) fn assert_received_all(me: &str, got: &[Value], senders: &[&str], n: u64) {
    let mut per: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut last: Option<u64> = None;
    for m in got {
        let from = m["data"]["from"]
            .as_str()
            .unwrap_or_else(|| panic!("{me}: unexpected msg {m}"));
        assert_eq!(m["2"], json!(from), "{me}: sender stamp of {m}");
        assert_ne!(from, me, "{me}: got its own msg back: {m}");
        let seq = seq_of(m);
        if let Some(l) = last {
            assert!(seq > l, "{me}: seq {seq} after {l} ({m})");
        }
        last = Some(seq);
        per.entry(from.to_owned())
            .or_default()
            .push(m["data"]["i"].as_u64().expect("i"));
    }
    for s in senders {
        assert_eq!(
            per.remove(*s).unwrap_or_default(),
            (0..n).collect::<Vec<_>>(),
            "{me}: msgs from {s}"
        );
    }
    assert!(per.is_empty(), "{me}: msgs from unknown senders {per:?}");
}

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(15))
        .build()
        .expect("build the HTTP client")
}

/// An admin call on `addr` (Basic credentials); returns the envelope
/// after checking HTTP 200.
pub(crate) async fn admin(
    method: reqwest::Method,
    addr: SocketAddr,
    path: &str,
    body: Option<Value>,
) -> Value {
    let url = format!("http://{addr}{path}");
    let mut rb = http()
        .request(method, &url)
        .basic_auth(ADMIN_UID, Some(ADMIN_TOKEN));
    if let Some(b) = body {
        rb = rb
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = rb.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(status, 200, "{url}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}"))
}

/// An admin call that must succeed (`meta.status` 0); returns `data`.
pub(crate) async fn admin_ok(
    method: reqwest::Method,
    addr: SocketAddr,
    path: &str,
    body: Option<Value>,
) -> Value {
    let v = admin(method, addr, path, body).await;
    assert_eq!(v["meta"]["status"], json!(0), "{path}: {v}");
    v["data"].clone()
}

pub(crate) async fn stat(addr: SocketAddr) -> Value {
    admin_ok(reqwest::Method::GET, addr, "/admin/monitor/stat", None).await
}

/// The uids of `room_users` on `addr`, in the order listed.
pub(crate) async fn room_users(addr: SocketAddr, room: &str) -> Vec<String> {
    let data = admin_ok(
        reqwest::Method::GET,
        addr,
        &format!("/admin/monitor/room_users?roomId={room}"),
        None,
    )
    .await;
    data["users"]
        .as_array()
        .unwrap_or_else(|| panic!("room_users without users: {data}"))
        .iter()
        .map(|u| crate::support::id_string(&u["uid"]))
        .collect()
}

/// HTTP status of a plain GET (`None` when the request itself failed).
pub(crate) async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let url = format!("http://{addr}{path}");
    http()
        .get(&url)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// What a fresh connection to `addr` is answered to `authenticate`.
pub(crate) async fn try_authenticate(addr: SocketAddr, uid: &str, token: &str) -> Value {
    let mut c = Client::connect(addr).await;
    c.request("authenticate", json!({"uid": uid, "token": token}))
        .await
}

/// Polls node `addr`'s `/readyz` until it answers `status`.
pub(crate) async fn await_readiness(addr: SocketAddr, status: u16) {
    poll(Duration::from_secs(10), "readyz", || async {
        match http_status(addr, "/readyz").await {
            Some(s) if s == status => Ok(()),
            other => Err(format!("{other:?}, waiting for {status}")),
        }
    })
    .await;
}

/// Sends `signal` (STOP, CONT) to node `i`'s process.
pub(crate) fn signal_node(cl: &Cluster, i: usize, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &cl.nodes[i].child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal}");
}

/// Redis state as the traffic tasks see it.
pub(crate) const UP: u8 = 0;

pub(crate) const DOWN: u8 = 1;

pub(crate) const RESTARTING: u8 = 2;

/// One ack of the traffic test.
#[derive(Debug)]
pub(crate) struct Acked {
    pub(crate) key: String,
    pub(crate) ack: Value,
    /// Redis state when the msg was sent and when its ack arrived.
    pub(crate) sent: u8,
    pub(crate) answered: u8,
}

/// What one traffic task did.
pub(crate) struct Traffic {
    pub(crate) uid: String,
    /// Every key sent, with the Redis state at the time.
    pub(crate) sent: Vec<(String, u8)>,
    pub(crate) acks: Vec<Acked>,
    pub(crate) received: Vec<Value>,
}

/// Moves every queued event of `c` into `into`, without waiting.
pub(crate) async fn drain(c: &mut Client, into: &mut Vec<Value>) {
    while let Some(r) = c.recv_within(Duration::from_millis(1)).await {
        match r {
            Received::Event(name, v) if name == "msg" => into.push(v),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Sends `{"data": {"k": "<uid>-<i>"}}` with an ack, one at a time, until `stop`.
pub(crate) async fn traffic(
    mut c: Client,
    uid: String,
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
) -> (Client, Traffic) {
    let mut t = Traffic {
        uid: uid.clone(),
        sent: Vec::new(),
        acks: Vec::new(),
        received: Vec::new(),
    };
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let key = format!("{uid}-{i}");
        let sent = phase.load(Ordering::SeqCst);
        let id = c.emit_ack_id("msg", json!({"data": {"k": key}})).await;
        t.sent.push((key.clone(), sent));
        let ack = c.wait_ack(id).await;
        let answered = phase.load(Ordering::SeqCst);
        t.acks.push(Acked {
            key,
            ack,
            sent,
            answered,
        });
        drain(&mut c, &mut t.received).await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (c, t)
}
