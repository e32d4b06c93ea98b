//! The soak run's load: members sending msgs, the syncer, the churner and
//! the kicker, and the counters and ledger they share.

use super::*;
use crate::client::Conn;
use crate::engineio::{self, Packet, SioPacket};
use crate::{clock, Result};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, timeout, Instant};

/// Counters of the run.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) sent: [AtomicU64; 3],
    pub(super) acked: [AtomicU64; 3],
    pub(super) refused: AtomicU64,
    pub(super) unacked_at_reconnect: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) member_connects: AtomicU64,
    pub(super) kicked_out: AtomicU64,
    pub(super) kickouts_started: AtomicU64,
    pub(super) churned: AtomicU64,
    pub(super) churn_polite: AtomicU64,
    pub(super) churn_leave: AtomicU64,
    pub(super) churn_reset: AtomicU64,
    pub(super) resume_syncs: AtomicU64,
    pub(super) full_syncs: AtomicU64,
    pub(super) full_sync_msgs: AtomicU64,
    pub(super) errors: AtomicU64,
}

pub(super) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

pub(super) fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// State shared by all tasks of a run.
pub(super) struct Shared {
    pub(super) cfg: SoakConfig,
    pub(super) prefix: String,
    pub(super) counters: Counters,
    pub(super) ledgers: Vec<Mutex<Ledger>>,
    pub(super) errors: Mutex<HashMap<String, u64>>,
    pub(super) next_id: AtomicU64,
    pub(super) periodic: Mutex<Verdict>,
    pub(super) stop: watch::Receiver<bool>,
}

impl Shared {
    pub(super) fn room(&self, r: usize) -> String {
        format!("{}-room{r}", self.prefix)
    }

    pub(super) fn member_uid(&self, r: usize, m: usize) -> String {
        format!("{}-r{r}m{m}", self.prefix)
    }

    pub(super) fn node(&self, i: usize) -> &str {
        &self.cfg.nodes[i % self.cfg.nodes.len()]
    }

    pub(super) fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    pub(super) fn error(&self, what: &str, e: &dyn std::fmt::Display) {
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
pub(super) const INSERT: usize = 0;

pub(super) const UPDATE: usize = 1;

pub(super) const RELAY: usize = 2;

/// A small fast random generator (xorshift64*).
pub(super) struct Rng(u64);

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
pub(super) fn msg_payload(id: u64, storage: usize, msg_id: Option<&str>, size: usize) -> String {
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
pub(super) struct Pending {
    kind: usize,
    id: u64,
    msg_id: Option<String>,
    at: Instant,
}

/// Records an ack; returns whether it was `{status: 0}`.
pub(super) fn record_ack(sh: &Shared, room: usize, p: &Pending, data: &str) -> bool {
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
pub(super) enum Ended {
    Stop,
    Kicked,
}

/// One connection of a steady member: sends at its rate until stopped,
/// kicked out or failed.
pub(super) async fn member_conn(
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
pub(super) async fn member(sh: Arc<Shared>, room: usize, member: usize) {
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
pub(super) async fn sync_all(conn: &mut Conn, mut offset: u64, found: &mut Found) -> Result<()> {
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
pub(super) async fn full_sync(
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
pub(super) async fn syncer(sh: Arc<Shared>) {
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
pub(super) async fn churn_once(sh: &Shared, n: u64, rng: &mut Rng) -> Result<()> {
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
pub(super) async fn churner(sh: Arc<Shared>) {
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
pub(super) async fn kick_once(sh: &Shared, n: usize, rng: &mut Rng) -> Result<()> {
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
pub(super) async fn kicker(sh: Arc<Shared>) {
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
