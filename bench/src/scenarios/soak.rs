//! soak: a long run of everything at once at a moderate rate — steady
//! members sending acknowledged inserts, updates and relay-only msgs,
//! connection churn, periodic full syncs that check what they return, and
//! kickouts by second logins — while the servers' memory and open files are
//! sampled. At the end every room is synced from offset 0 on every node and
//! checked against every acknowledged msg: each acked insert exactly once,
//! each acked update in its latest acked version (or a newer one).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, timeout, Instant};

use super::fleet::run_prefix;
use crate::client::Conn;
use crate::engineio::{self, Eio, Packet, SioPacket};
use crate::{clock, proc_stats, Result};

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

/// Acknowledged msgs of one room: insert ids, and each update msgId's
/// latest acknowledged version.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// Ids of acked inserts.
    pub inserts: HashSet<u64>,
    /// msgId → latest acked version of acked updates.
    pub updates: HashMap<String, u64>,
}

impl Ledger {
    /// Records an acked update (versions of one msgId only grow).
    pub fn update(&mut self, msg_id: &str, version: u64) {
        let v = self.updates.entry(msg_id.to_owned()).or_insert(version);
        *v = (*v).max(version);
    }
}

/// What one full sync of a room returned: how often each insert id came
/// back, and the highest version of each update msgId.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// Insert id → times returned.
    pub inserts: HashMap<u64, u32>,
    /// Update msgId → highest version returned.
    pub updates: HashMap<String, u64>,
    /// Msgs returned in all.
    pub msgs: u64,
    /// Pages.
    pub pages: u64,
}

/// One stored msg as a sync page returns it (only what the check needs).
#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    data: Option<ItemData>,
    #[serde(default)]
    s: Option<i64>,
    #[serde(rename = "1", default)]
    msg_id: Option<String>,
}

#[derive(Deserialize)]
struct ItemData {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    v: Option<u64>,
}

impl Found {
    /// Adds the msgs of one page (its `data` array).
    pub fn add_page(&mut self, items: &[Box<serde_json::value::RawValue>]) {
        self.pages += 1;
        for raw in items {
            self.msgs += 1;
            let Ok(item) = serde_json::from_str::<Item>(raw.get()) else {
                continue;
            };
            let Some(data) = item.data else { continue };
            match (item.s, item.msg_id, data.v) {
                (Some(1), Some(msg_id), Some(v)) => {
                    let e = self.updates.entry(msg_id).or_insert(v);
                    *e = (*e).max(v);
                }
                _ => {
                    if let Some(id) = data.id {
                        *self.inserts.entry(id).or_default() += 1;
                    }
                }
            }
        }
    }
}

/// The check of one sync against the acks recorded before it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Acked inserts checked.
    pub inserts: u64,
    /// Acked update msgIds checked.
    pub updates: u64,
    /// Acked inserts missing.
    pub lost_inserts: u64,
    /// Acked inserts returned more than once.
    pub duplicate_inserts: u64,
    /// Acked updates missing, or only in an older version than acked.
    pub lost_updates: u64,
    /// A few of the missing ids, for the report.
    pub examples: Vec<String>,
}

impl Verdict {
    /// Acked msgs missing (inserts and updates).
    pub fn lost(&self) -> u64 {
        self.lost_inserts + self.lost_updates
    }

    /// Adds another verdict's counts.
    pub fn merge(&mut self, o: &Verdict) {
        self.inserts += o.inserts;
        self.updates += o.updates;
        self.lost_inserts += o.lost_inserts;
        self.duplicate_inserts += o.duplicate_inserts;
        self.lost_updates += o.lost_updates;
        for e in &o.examples {
            if self.examples.len() < 10 {
                self.examples.push(e.clone());
            }
        }
    }
}

/// Checks what a sync returned against what was acked before it started.
pub fn verify(acked: &Ledger, found: &Found) -> Verdict {
    let mut v = Verdict {
        inserts: acked.inserts.len() as u64,
        updates: acked.updates.len() as u64,
        ..Verdict::default()
    };
    let mut ids: Vec<u64> = acked.inserts.iter().copied().collect();
    ids.sort_unstable();
    for id in ids {
        match found.inserts.get(&id).copied().unwrap_or(0) {
            0 => {
                v.lost_inserts += 1;
                if v.examples.len() < 10 {
                    v.examples.push(format!("insert {id}"));
                }
            }
            1 => {}
            _ => v.duplicate_inserts += 1,
        }
    }
    let mut ups: Vec<(&String, &u64)> = acked.updates.iter().collect();
    ups.sort();
    for (msg_id, &version) in ups {
        let got = found.updates.get(msg_id).copied();
        if got.is_none_or(|g| g < version) {
            v.lost_updates += 1;
            if v.examples.len() < 10 {
                v.examples.push(format!(
                    "update {msg_id} v{version} (found {})",
                    got.map_or("none".into(), |g| format!("v{g}"))
                ));
            }
        }
    }
    v
}

/// Counters of the run.
#[derive(Debug, Default)]
struct Counters {
    sent: [AtomicU64; 3],
    acked: [AtomicU64; 3],
    refused: AtomicU64,
    unacked_at_reconnect: AtomicU64,
    received: AtomicU64,
    member_connects: AtomicU64,
    kicked_out: AtomicU64,
    kickouts_started: AtomicU64,
    churned: AtomicU64,
    churn_polite: AtomicU64,
    churn_leave: AtomicU64,
    churn_reset: AtomicU64,
    resume_syncs: AtomicU64,
    full_syncs: AtomicU64,
    full_sync_msgs: AtomicU64,
    errors: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// State shared by all tasks of a run.
struct Shared {
    cfg: SoakConfig,
    prefix: String,
    counters: Counters,
    ledgers: Vec<Mutex<Ledger>>,
    errors: Mutex<HashMap<String, u64>>,
    next_id: AtomicU64,
    periodic: Mutex<Verdict>,
    stop: watch::Receiver<bool>,
}

impl Shared {
    fn room(&self, r: usize) -> String {
        format!("{}-room{r}", self.prefix)
    }

    fn member_uid(&self, r: usize, m: usize) -> String {
        format!("{}-r{r}m{m}", self.prefix)
    }

    fn node(&self, i: usize) -> &str {
        &self.cfg.nodes[i % self.cfg.nodes.len()]
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    fn error(&self, what: &str, e: &dyn std::fmt::Display) {
        add(&self.counters.errors, 1);
        let mut key = format!("{what}: {e}");
        // Keep the kinds apart, not every number in them.
        key = key
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .take(100)
            .collect();
        *self.errors.lock().expect("errors").entry(key).or_default() += 1;
    }
}

/// Kinds of msg, by storage mode.
const INSERT: usize = 0;
const UPDATE: usize = 1;
const RELAY: usize = 2;

/// A small fast random generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The payload of a msg: `{"data":{"id":ID,"v":V,"p":"…"},"s":S[,"1":"MSGID"]}`.
fn msg_payload(id: u64, storage: usize, msg_id: Option<&str>, size: usize) -> String {
    let mut s = format!("{{\"data\":{{\"id\":{id},\"v\":{id},\"p\":\"");
    let pad = size.saturating_sub(s.len() + 40);
    for i in 0..pad {
        s.push((b'a' + ((id as usize + i * 7) % 26) as u8) as char);
    }
    let _ = write!(s, "\"}},\"s\":{storage}");
    if let Some(m) = msg_id {
        s.push_str(",\"1\":");
        engineio::push_json_str(&mut s, m);
    }
    s.push('}');
    s
}

/// A msg sent and waiting for its ack.
struct Pending {
    kind: usize,
    id: u64,
    msg_id: Option<String>,
    at: Instant,
}

/// Records an ack; returns whether it was `{status: 0}`.
fn record_ack(sh: &Shared, room: usize, p: &Pending, data: &str) -> bool {
    let status = serde_json::from_str::<(Box<serde_json::value::RawValue>,)>(data)
        .ok()
        .and_then(|(a,)| engineio::reply_status(Some(&a)));
    if status != Some(0) {
        add(&sh.counters.refused, 1);
        sh.error("msg refused", &format!("{data:.80}"));
        return false;
    }
    add(&sh.counters.acked[p.kind], 1);
    let mut l = sh.ledgers[room].lock().expect("ledger");
    match p.kind {
        INSERT => {
            l.inserts.insert(p.id);
        }
        UPDATE => l.update(p.msg_id.as_deref().unwrap_or_default(), p.id),
        _ => {}
    }
    true
}

/// What ended one connection of a steady member.
enum Ended {
    Stop,
    Kicked,
}

/// One connection of a steady member: sends at its rate until stopped,
/// kicked out or failed.
async fn member_conn(
    sh: &Shared,
    room: usize,
    member: usize,
    incarnation: u64,
    rng: &mut Rng,
) -> Result<Ended> {
    let cfg = &sh.cfg;
    let uid = sh.member_uid(room, member);
    let mut conn = Conn::connect(sh.node(room * cfg.members + member), cfg.eio).await?;
    conn.authenticate(&uid).await?;
    conn.join(&sh.room(room)).await?;
    add(&sh.counters.member_connects, 1);
    let per_member = cfg.rate / (cfg.rooms * cfg.members) as f64;
    let period = Duration::from_secs_f64(1.0 / per_member.max(0.001));
    let mut tick = tokio::time::interval_at(
        Instant::now() + period.mul_f64((rng.next() % 1000) as f64 / 1000.0),
        period,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut ack_id = 0u64;
    let mut stop = sh.stop.clone();
    let mut draining: Option<Instant> = None;
    let result = loop {
        if let Some(since) = draining {
            if pending.is_empty() || since.elapsed() > Duration::from_secs(30) {
                break Ok(Ended::Stop);
            }
        }
        tokio::select! {
            _ = tick.tick(), if draining.is_none() => {
                if let Some(oldest) = pending.values().map(|p| p.at).min() {
                    if oldest.elapsed() > Duration::from_secs(60) {
                        break Err("no ack for 60 s".into());
                    }
                }
                if pending.len() >= 64 {
                    continue;
                }
                let id = sh.id();
                let kind = match rng.below(20) {
                    0..=13 => INSERT,
                    14..=16 => UPDATE,
                    _ => RELAY,
                };
                let msg_id = (kind == UPDATE)
                    .then(|| format!("{uid}.{incarnation}.{}", rng.below(3)));
                ack_id += 1;
                let frame = engineio::event_frame_with_ack(
                    "msg",
                    Some(ack_id),
                    &msg_payload(id, kind, msg_id.as_deref(), cfg.size),
                );
                pending.insert(ack_id, Pending { kind, id, msg_id, at: Instant::now() });
                add(&sh.counters.sent[kind], 1);
                if let Err(e) = conn.send(frame).await {
                    break Err(e);
                }
            }
            _ = stop.changed(), if draining.is_none() => {
                draining = Some(Instant::now());
            }
            _ = sleep(Duration::from_millis(500)), if draining.is_some() => {}
            frame = conn.next_text() => {
                let frame = match frame {
                    Ok(f) => f,
                    Err(e) => break Err(e),
                };
                match conn.answer_ping(&frame).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => break Err(e),
                }
                match engineio::decode(&frame) {
                    Ok(Packet::Message(SioPacket::Ack { id, data, .. })) => {
                        if let Some(p) = pending.remove(&id) {
                            record_ack(sh, room, &p, data);
                        }
                    }
                    Ok(Packet::Message(SioPacket::Event { nsp: "/", data, .. })) => {
                        match engineio::event_args(data) {
                            Ok(a) if a.name == "kickout" => break Ok(Ended::Kicked),
                            Ok(a) if a.name == "msg" => add(&sh.counters.received, 1),
                            _ => {}
                        }
                    }
                    Ok(Packet::Message(SioPacket::Disconnect { .. }) | Packet::Close) => {
                        break Err("disconnected by the server".into());
                    }
                    _ => {}
                }
            }
        }
    };
    add(&sh.counters.unacked_at_reconnect, pending.len() as u64);
    if matches!(result, Ok(Ended::Stop)) {
        conn.close().await;
    }
    result
}

/// A steady member: reconnects after a kickout (after a pause, as a
/// client's back-off would) or an error, until the run stops.
async fn member(sh: Arc<Shared>, room: usize, member: usize) {
    let mut rng = Rng::new(clock::now_ns() ^ ((room * 1000 + member) as u64) << 20);
    let mut incarnation = 0u64;
    while !sh.stopped() {
        incarnation += 1;
        let pause = match member_conn(&sh, room, member, incarnation, &mut rng).await {
            Ok(Ended::Stop) => break,
            Ok(Ended::Kicked) => {
                add(&sh.counters.kicked_out, 1);
                Duration::from_millis(1000 + rng.below(2000) as u64)
            }
            Err(e) => {
                if sh.stopped() {
                    break;
                }
                sh.error("member", &e);
                Duration::from_secs(1)
            }
        };
        sleep(pause).await;
    }
}

/// Follows `next`/`offset` from `offset` until `next: 0` on `conn`, adding
/// every page's msgs to `found`.
async fn sync_all(conn: &mut Conn, mut offset: u64, found: &mut Found) -> Result<()> {
    #[derive(Deserialize)]
    struct Page {
        data: Vec<Box<serde_json::value::RawValue>>,
        offset: u64,
        next: u8,
    }
    loop {
        conn.send(engineio::event_frame(
            "sync",
            &format!("{{\"offset\":{offset}}}"),
        ))
        .await?;
        let page = loop {
            let frame = timeout(Duration::from_secs(60), conn.next_text())
                .await
                .map_err(|_| "no sync page for 60 s")??;
            if conn.answer_ping(&frame).await? {
                continue;
            }
            match engineio::decode(&frame) {
                Ok(Packet::Message(SioPacket::Event { nsp: "/", data, .. })) => {
                    if data.starts_with("[\"sync\",") {
                        let (_, page): (String, Page) = serde_json::from_str(data)
                            .map_err(|e| format!("bad sync page ({e}): {data:.120}"))?;
                        break page;
                    }
                    if data.starts_with("[\"kickout\"") {
                        return Err("kicked out while syncing".into());
                    }
                }
                Ok(Packet::Message(SioPacket::Disconnect { .. }) | Packet::Close) => {
                    return Err("disconnected by the server while syncing".into())
                }
                _ => {}
            }
        };
        found.add_page(&page.data);
        if page.next == 0 {
            return Ok(());
        }
        if page.offset <= offset {
            return Err(format!("sync offset did not advance from {offset}").into());
        }
        offset = page.offset;
    }
}

/// A fresh connection syncs room `room` from offset 0 on node `node` and
/// checks it against the acks recorded before it started.
/// Returns the check and the msgs returned.
async fn full_sync(
    sh: &Shared,
    room: usize,
    node: usize,
    uid: &str,
    dummy: bool,
) -> Result<(Verdict, u64)> {
    let mut conn = Conn::connect(sh.node(node), sh.cfg.eio).await?;
    conn.authenticate(uid).await?;
    let mut p = String::from("{\"roomId\":");
    engineio::push_json_str(&mut p, &sh.room(room));
    p.push_str(if dummy { ",\"dummy\":true}" } else { "}" });
    conn.request("join", &p).await?;
    let acked = sh.ledgers[room].lock().expect("ledger").clone();
    let mut found = Found::default();
    sync_all(&mut conn, 0, &mut found).await?;
    conn.close().await;
    Ok((verify(&acked, &found), found.msgs))
}

/// Every `sync_every`, a full sync of the next room (on the next node),
/// checked like the final one.
async fn syncer(sh: Arc<Shared>) {
    let mut n = 0usize;
    let mut stop = sh.stop.clone();
    loop {
        tokio::select! {
            _ = sleep(sh.cfg.sync_every) => {}
            _ = stop.changed() => return,
        }
        let room = n % sh.cfg.rooms;
        let uid = format!("{}-sync{n}", sh.prefix);
        match full_sync(&sh, room, n, &uid, false).await {
            Ok((v, msgs)) => {
                add(&sh.counters.full_syncs, 1);
                add(&sh.counters.full_sync_msgs, msgs);
                if v.lost() > 0 {
                    eprintln!(
                        "soak: a full sync of room {room} on {} missed {} acked msgs: {:?}",
                        sh.node(n),
                        v.lost(),
                        v.examples
                    );
                }
                sh.periodic.lock().expect("periodic").merge(&v);
            }
            Err(e) => sh.error("full sync", &e),
        }
        n += 1;
    }
}

/// One short-lived connection: connect, authenticate, join, a few acked
/// inserts, a resuming sync, and a disconnect of one of three kinds.
async fn churn_once(sh: &Shared, n: u64, rng: &mut Rng) -> Result<()> {
    let room = rng.below(sh.cfg.rooms);
    let uid = format!("{}-c{n}", sh.prefix);
    let mut conn = Conn::connect(sh.node(n as usize), sh.cfg.eio).await?;
    conn.authenticate(&uid).await?;
    conn.join(&sh.room(room)).await?;
    let mut last_seq = 0u64;
    for ack in 1..=3u64 {
        let id = sh.id();
        let frame = engineio::event_frame_with_ack(
            "msg",
            Some(ack),
            &msg_payload(id, INSERT, None, sh.cfg.size),
        );
        add(&sh.counters.sent[INSERT], 1);
        conn.send(frame).await?;
        let data = conn.wait_ack(ack).await?;
        let p = Pending {
            kind: INSERT,
            id,
            msg_id: None,
            at: Instant::now(),
        };
        if record_ack(sh, room, &p, &data) {
            #[derive(Deserialize)]
            struct Seq {
                seq: Option<u64>,
            }
            if let Ok((s,)) = serde_json::from_str::<(Seq,)>(&data) {
                last_seq = s.seq.unwrap_or(last_seq);
            }
        }
    }
    let mut found = Found::default();
    sync_all(&mut conn, last_seq.saturating_sub(20), &mut found).await?;
    add(&sh.counters.resume_syncs, 1);
    match n % 3 {
        0 => {
            conn.close().await;
            add(&sh.counters.churn_polite, 1);
        }
        1 => {
            conn.send(engineio::event_frame("leave", "{}")).await?;
            sleep(Duration::from_millis(50)).await;
            conn.close().await;
            add(&sh.counters.churn_leave, 1);
        }
        _ => {
            conn.abort();
            add(&sh.counters.churn_reset, 1);
        }
    }
    add(&sh.counters.churned, 1);
    Ok(())
}

/// Starts `churn` short-lived connections a second (at most 64 at once).
async fn churner(sh: Arc<Shared>) {
    let limit = Arc::new(Semaphore::new(64));
    let period = Duration::from_secs_f64(1.0 / sh.cfg.churn.max(0.001));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = sh.stop.clone();
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            sh.error("churn", &"64 short-lived connections still busy");
            continue;
        };
        n += 1;
        let sh = sh.clone();
        tokio::spawn(async move {
            let mut rng = Rng::new(clock::now_ns() ^ n << 32);
            if let Err(e) = timeout(Duration::from_secs(120), churn_once(&sh, n, &mut rng))
                .await
                .unwrap_or_else(|_| Err("took over 120 s".into()))
            {
                sh.error("churn", &e);
            }
            drop(permit);
        });
    }
    // Let the last ones finish.
    let _ = timeout(Duration::from_secs(130), limit.acquire_many(64)).await;
}

/// A second login of steady member `uid` on another node than its own:
/// the member is kicked out and reconnects (kicking this one out in turn).
async fn kick_once(sh: &Shared, n: usize, rng: &mut Rng) -> Result<()> {
    let (room, member) = (rng.below(sh.cfg.rooms), rng.below(sh.cfg.members));
    let uid = sh.member_uid(room, member);
    let node = room * sh.cfg.members + member + 1 + n;
    let mut conn = Conn::connect(sh.node(node), sh.cfg.eio).await?;
    conn.authenticate(&uid).await?;
    add(&sh.counters.kickouts_started, 1);
    // The member comes back after one to three seconds and kicks this
    // connection out; until then it is the member.
    let r = async {
        conn.join(&sh.room(room)).await?;
        let id = sh.id();
        let frame = engineio::event_frame_with_ack(
            "msg",
            Some(1),
            &msg_payload(id, INSERT, None, sh.cfg.size),
        );
        add(&sh.counters.sent[INSERT], 1);
        conn.send(frame).await?;
        let data = conn.wait_ack(1).await?;
        let p = Pending {
            kind: INSERT,
            id,
            msg_id: None,
            at: Instant::now(),
        };
        record_ack(sh, room, &p, &data);
        conn.wait_event("never").await?;
        Ok::<(), crate::BoxError>(())
    };
    match timeout(Duration::from_secs(20), r).await {
        // The member came back first: this connection was kicked out.
        Ok(Err(e))
            if [
                "kicked out",
                "connection closed",
                "disconnected by the server",
            ]
            .iter()
            .any(|k| e.to_string().contains(k)) =>
        {
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Every `kickout_every`, a second login of a random steady member.
async fn kicker(sh: Arc<Shared>) {
    let mut rng = Rng::new(clock::now_ns() ^ 0x5eed);
    let mut stop = sh.stop.clone();
    let mut n = 0usize;
    loop {
        tokio::select! {
            _ = sleep(sh.cfg.kickout_every) => {}
            _ = stop.changed() => return,
        }
        n += 1;
        let sh2 = sh.clone();
        let mut r = Rng::new(rng.next());
        tokio::spawn(async move {
            if let Err(e) = kick_once(&sh2, n, &mut r).await {
                sh2.error("kickout", &e);
            }
        });
    }
}

/// One sample of one server process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the start.
    pub t: f64,
    /// Resident memory, bytes.
    pub rss: u64,
    /// Open file descriptors.
    pub fds: u64,
}

/// How one figure of one process went over the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// At the end of the warm-up (the first sample at or after it).
    pub warm: f64,
    /// At the end (the last sample).
    pub end: f64,
    /// The highest sample.
    pub max: f64,
    /// end − warm.
    pub growth: f64,
    /// The growth per hour from warm to end.
    pub per_hour: f64,
    /// The least-squares slope per hour of the samples after the warm-up.
    pub slope_per_hour: f64,
}

/// The trend of `value` over `samples` from `warmup_s` on.
pub fn trend(samples: &[Sample], warmup_s: f64, value: impl Fn(&Sample) -> f64) -> Option<Trend> {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.t >= warmup_s).collect();
    let (first, last) = (after.first()?, after.last()?);
    let (warm, end) = (value(first), value(last));
    let hours = (last.t - first.t) / 3600.0;
    let max = samples.iter().map(&value).fold(f64::MIN, f64::max);
    let n = after.len() as f64;
    let mt = after.iter().map(|s| s.t).sum::<f64>() / n;
    let mv = after.iter().map(|s| value(s)).sum::<f64>() / n;
    let num: f64 = after.iter().map(|s| (s.t - mt) * (value(s) - mv)).sum();
    let den: f64 = after.iter().map(|s| (s.t - mt).powi(2)).sum();
    Some(Trend {
        warm,
        end,
        max,
        growth: end - warm,
        per_hour: if hours > 0.0 {
            (end - warm) / hours
        } else {
            0.0
        },
        slope_per_hour: if den > 0.0 { num / den * 3600.0 } else { 0.0 },
    })
}

/// What a soak run measured.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// The report text.
    pub text: String,
    /// Acked msgs missing from the final check.
    pub lost: u64,
    /// Acked msgs missing from a periodic full sync started after their ack.
    pub lost_periodic: u64,
    /// Rooms (× nodes) the final check could not sync.
    pub failed_checks: u64,
}

impl SoakReport {
    /// Whether every acked msg was found by every check.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.lost_periodic == 0 && self.failed_checks == 0
    }
}

fn mib(b: f64) -> String {
    format!("{:.1} MiB", b / (1024.0 * 1024.0))
}

fn signed_mib(b: f64) -> String {
    format!("{:+.1} MiB", b / (1024.0 * 1024.0))
}

fn sample_all(pids: &[u32], t: f64) -> Vec<Option<Sample>> {
    pids.iter()
        .map(|&pid| {
            Some(Sample {
                t,
                rss: proc_stats::rss_bytes(pid).ok()?,
                fds: proc_stats::open_files(pid).ok()?,
            })
        })
        .collect()
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

/// Writes the report as `<dir>/<date>-soak[-label].md` (with the time
/// when that file exists) and returns its path.
pub fn write_markdown(
    dir: &Path,
    report: &str,
    command: &str,
    label: Option<&str>,
) -> Result<PathBuf> {
    let stamp = report
        .lines()
        .next()
        .and_then(|l| l.split(" — ").nth(1))
        .map_or_else(crate::suite::utc_now, str::to_owned);
    let day = stamp.get(..10).unwrap_or("undated");
    let time = stamp.get(11..16).unwrap_or("0000").replace(':', "");
    let label = label.map_or(String::new(), |l| format!("-{l}"));
    std::fs::create_dir_all(dir)?;
    let mut path = dir.join(format!("{day}-soak{label}.md"));
    if path.exists() {
        path = dir.join(format!("{day}-{time}-soak{label}.md"));
    }
    let mut md = format!("# ao-bench soak, {stamp}\n\n`ao-bench {command}`\n\n");
    let mut in_table = false;
    let mut block = false;
    for line in report.lines().skip(1) {
        if line.starts_with('|') {
            if !in_table {
                md.push('\n');
            }
            in_table = true;
            md.push_str(line);
            md.push('\n');
        } else if line.starts_with("samples") {
            md.push_str("\n```\n");
            block = true;
            md.push_str(line);
            md.push('\n');
        } else if block {
            md.push_str(line);
            md.push('\n');
        } else if !line.trim().is_empty() {
            if in_table {
                md.push('\n');
                in_table = false;
            }
            md.push_str(line);
            md.push_str("  \n");
        }
    }
    if block {
        md.push_str("```\n");
    }
    std::fs::write(&path, md)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(items: &[&str]) -> Vec<Box<serde_json::value::RawValue>> {
        items
            .iter()
            .map(|s| serde_json::value::RawValue::from_string((*s).to_owned()).expect("json"))
            .collect()
    }

    #[test]
    fn payloads_parse_back_as_sync_items() {
        let mut found = Found::default();
        let ins = msg_payload(7, INSERT, None, 200);
        let upd = msg_payload(9, UPDATE, Some("u.1.2"), 200);
        let rel = msg_payload(11, RELAY, None, 10);
        assert!(ins.len() >= 150 && ins.len() <= 200, "{}", ins.len());
        // The server adds the sender under "2" and an insert's seq.
        let stored_ins = format!("{},\"2\":\"u\",\"seq\":0}}", &ins[..ins.len() - 1]);
        let stored_upd = format!("{},\"2\":\"u\"}}", &upd[..upd.len() - 1]);
        found.add_page(&page(&[&stored_ins, &stored_upd, &rel]));
        assert_eq!(found.inserts.get(&7), Some(&1));
        assert_eq!(found.updates.get("u.1.2"), Some(&9));
        assert_eq!(found.msgs, 3);
    }

    #[test]
    fn verify_finds_lost_duplicate_and_stale() {
        let mut acked = Ledger::default();
        acked.inserts.extend([1, 2, 3]);
        acked.update("a", 10);
        acked.update("a", 5); // an older ack does not lower the version
        acked.update("b", 4);
        acked.update("c", 4);
        let mut found = Found::default();
        found.add_page(&page(&[
            r#"{"data":{"id":1,"v":1},"s":0}"#,
            r#"{"data":{"id":3,"v":3},"s":0}"#,
            r#"{"data":{"id":3,"v":3},"s":0}"#,
            r#"{"data":{"id":99,"v":99},"s":0}"#,
            r#"{"data":{"id":12,"v":12},"s":1,"1":"a"}"#,
            r#"{"data":{"id":3,"v":3},"s":1,"1":"b"}"#,
        ]));
        let v = verify(&acked, &found);
        assert_eq!(v.inserts, 3);
        assert_eq!(v.updates, 3);
        assert_eq!(v.lost_inserts, 1, "2 is missing; 99 was never acked");
        assert_eq!(v.duplicate_inserts, 1);
        // a: newer than acked is fine; b: older than acked; c: missing.
        assert_eq!(v.lost_updates, 2);
        assert_eq!(v.lost(), 3);
        assert_eq!(v.examples[0], "insert 2");

        let all = {
            let mut f = Found::default();
            f.add_page(&page(&[
                r#"{"data":{"id":1,"v":1},"s":0}"#,
                r#"{"data":{"id":2,"v":2},"s":0}"#,
                r#"{"data":{"id":3,"v":3},"s":0}"#,
                r#"{"data":{"id":10,"v":10},"s":1,"1":"a"}"#,
                r#"{"data":{"id":4,"v":4},"s":1,"1":"b"}"#,
                r#"{"data":{"id":6,"v":6},"s":1,"1":"c"}"#,
            ]));
            f
        };
        assert_eq!(verify(&acked, &all).lost(), 0);
    }

    #[test]
    fn trend_after_warmup() {
        let s = |t: f64, rss: u64| Sample { t, rss, fds: 10 };
        let samples = [
            s(0.0, 50),
            s(10.0, 100),
            s(20.0, 100),
            s(1820.0, 110),
            s(3620.0, 120),
        ];
        let t = trend(&samples, 15.0, |x| x.rss as f64).expect("trend");
        assert_eq!(
            (t.warm, t.end, t.max, t.growth),
            (100.0, 120.0, 120.0, 20.0)
        );
        assert!((t.per_hour - 20.0).abs() < 1e-9);
        assert!((t.slope_per_hour - 20.0).abs() < 0.1);
        assert!(trend(&samples, 4000.0, |x| x.rss as f64).is_none());
    }
}
