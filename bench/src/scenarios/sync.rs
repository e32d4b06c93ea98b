//! sync: N stored messages in one room (inserted first, `s: 0`: acknowledged,
//! a window in flight, or sent back to back by one client without acks),
//! then fresh clients sync every page, with and without `encoding: 'gzip'`,
//! and count what comes back.

use std::borrow::Cow;
use std::io::Read as _;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::{sleep, timeout, Instant};

use super::fleet::run_prefix;
use crate::client::Conn;
use crate::engineio::{self, Eio, Packet, SioPacket};
use crate::payload::MsgTemplate;
use crate::{clock, Result};

/// Settings of a sync run.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Server address.
    pub addr: String,
    /// Protocol generation.
    pub eio: Eio,
    /// Messages to store.
    pub messages: usize,
    /// Frame size of each stored `msg`, bytes.
    pub size: usize,
    /// Timed syncs per encoding (the median is reported).
    pub repeat: usize,
    /// How the messages are stored.
    pub preload: Preload,
    /// Acknowledged inserts in flight (the server queues at most 256 events
    /// per connection); [`Preload::Acked`] only.
    pub window: usize,
    /// Time syncs with `encoding: 'gzip'` too.
    pub gzip: bool,
}

/// How the messages are stored before the syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preload {
    /// Acknowledged inserts, a window of them in flight.
    Acked,
    /// One client sends every insert back to back, as fast as its
    /// connection takes them, without acks; only the last one asks for an
    /// ack, to know when the server has handled them all.
    Unacked,
}

/// Frames fed between two flushes (and two looks at what the server sent)
/// while preloading without acks.
const PRELOAD_BATCH: u64 = 64;

/// Pause before the last insert of a preload without acks is sent again
/// after the server refused it as too many requests.
const RESEND_PAUSE: Duration = Duration::from_millis(20);

/// The longest a preload of `n` messages without acks may take before it
/// counts as not completed: generous, a stuck preload should not pass for
/// a slow one.
pub fn preload_limit(n: usize) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(n as u64)
}

/// One timed sync of the whole room.
#[derive(Debug, Clone)]
pub struct SyncRun {
    /// Wall time from the first request to the last page, ms.
    pub ms: f64,
    /// Pages received.
    pub pages: usize,
    /// Messages in them.
    pub messages: u64,
    /// Frame bytes received.
    pub bytes: u64,
}

impl SyncRun {
    /// Messages per second.
    pub fn messages_per_s(&self) -> f64 {
        self.messages as f64 / (self.ms / 1e3).max(1e-9)
    }
}

/// What a sync run measured.
#[derive(Debug, Clone)]
pub struct SyncResult {
    /// How the messages were stored.
    pub preload: Preload,
    /// Messages sent to be stored.
    pub inserted: usize,
    /// Time to store them (or until the preload gave up), seconds.
    pub insert_s: f64,
    /// Times the last insert of a preload without acks was refused as too
    /// many requests and sent again.
    pub resends: u64,
    /// Why the preload did not complete (then nothing was synced).
    pub not_completed: Option<String>,
    /// Timed syncs without encoding.
    pub plain: Vec<SyncRun>,
    /// Timed syncs with `encoding: 'gzip'`.
    pub gzip: Vec<SyncRun>,
}

/// The run with the median time.
pub fn median(runs: &[SyncRun]) -> Option<&SyncRun> {
    let mut sorted: Vec<&SyncRun> = runs.iter().collect();
    sorted.sort_by(|a, b| a.ms.total_cmp(&b.ms));
    sorted.get(sorted.len() / 2).copied()
}

impl SyncResult {
    /// The fewest messages any timed sync returned.
    pub fn returned(&self) -> Option<u64> {
        self.plain
            .iter()
            .chain(&self.gzip)
            .map(|r| r.messages)
            .min()
    }

    /// Whether the preload completed and every timed sync returned every
    /// message sent.
    pub fn all_returned(&self) -> bool {
        self.not_completed.is_none() && self.returned() == Some(self.inserted as u64)
    }

    /// A multi-line summary.
    pub fn summary(&self) -> String {
        let rate = self.inserted as f64 / self.insert_s.max(1e-9);
        let mut s = match (self.preload, &self.not_completed) {
            (Preload::Acked, None) => format!(
                "stored {} messages in {:.2} s ({rate:.0} inserts/s)",
                self.inserted, self.insert_s
            ),
            (Preload::Unacked, None) => {
                let mut s = format!(
                    "preloaded {} messages without acks in {:.2} s ({rate:.0} inserts/s)",
                    self.inserted, self.insert_s
                );
                if self.resends > 0 {
                    s.push_str(&format!(
                        ", the last one sent again {} times after too many requests",
                        self.resends
                    ));
                }
                s
            }
            (_, Some(why)) => format!("preload of {} messages not completed: {why}", self.inserted),
        };
        if let Some(r) = self.returned() {
            if r != self.inserted as u64 {
                s.push_str(&format!(
                    "\nsync returned {r} of {} messages",
                    self.inserted
                ));
            }
        }
        for (name, runs) in [("plain", &self.plain), ("gzip", &self.gzip)] {
            if let Some(m) = median(runs) {
                let all: Vec<String> = runs.iter().map(|r| format!("{:.1}", r.ms)).collect();
                s.push_str(&format!(
                    "\nsync {name}: median {:.1} ms ({} ms), {} pages, {} messages, {:.0} messages/s, {:.1} KiB received",
                    m.ms,
                    all.join(", "),
                    m.pages,
                    m.messages,
                    m.messages_per_s(),
                    m.bytes as f64 / 1024.0
                ));
            }
        }
        s
    }
}

async fn member(addr: &str, eio: Eio, uid: &str, room: &str) -> Result<Conn> {
    let mut c = Conn::connect(addr, eio).await?;
    c.authenticate(uid).await?;
    c.join(room).await?;
    Ok(c)
}

#[derive(Deserialize)]
struct Status {
    status: i64,
}

/// Stores `n` messages in `room`, `window` acknowledged inserts in flight.
async fn insert(cfg: &SyncConfig, uid: &str, room: &str) -> Result<f64> {
    let mut conn = member(&cfg.addr, cfg.eio, uid, room).await?;
    let template = MsgTemplate::new(cfg.size, 0);
    let started = Instant::now();
    let (mut sent, mut acked) = (0u64, 0u64);
    let n = cfg.messages as u64;
    let window = cfg.window.max(1) as u64;
    while acked < n {
        if sent < n && sent - acked < window {
            while sent < n && sent - acked < window {
                sent += 1;
                conn.feed(template.render(clock::now_ns(), Some(sent)))
                    .await?;
            }
            conn.flush().await?;
        }
        let frame = tokio::time::timeout(Duration::from_secs(30), conn.next_text())
            .await
            .map_err(|_| format!("no ack for 30 s after {acked} of {n} inserts"))??;
        if conn.answer_ping(&frame).await? {
            continue;
        }
        if let Ok(Packet::Message(SioPacket::Ack { data, .. })) = engineio::decode(&frame) {
            let (st,): (Status,) = serde_json::from_str(data)
                .map_err(|_| format!("unexpected msg ack {data:.120}"))?;
            if st.status != 0 {
                return Err(format!("insert refused: {data:.120}").into());
            }
            acked += 1;
        }
    }
    let took = started.elapsed().as_secs_f64();
    conn.close().await;
    Ok(took)
}

/// How a preload without acks ended.
struct Preloaded {
    /// Until the last insert's ack, or until it gave up, seconds.
    secs: f64,
    /// Times the last insert was sent again.
    resends: u64,
    /// Why it did not complete.
    not_completed: Option<String>,
}

/// Handles one frame arriving during a preload without acks: answers
/// pings, fails when the server ends the connection, and returns the
/// status and data of ack `want`.
async fn preload_frame(
    conn: &mut Conn,
    frame: &str,
    want: Option<u64>,
) -> std::result::Result<Option<(i64, String)>, String> {
    if conn
        .answer_ping(frame)
        .await
        .map_err(|e| format!("connection failed: {e}"))?
    {
        return Ok(None);
    }
    match engineio::decode(frame) {
        Ok(Packet::Message(SioPacket::Disconnect { .. }) | Packet::Close) => {
            Err("disconnected by the server".into())
        }
        Ok(Packet::Message(SioPacket::Event { nsp: "/", data, .. })) => {
            match engineio::event_args(data) {
                Ok(args) if args.name == "kickout" => Err("kicked out".into()),
                _ => Ok(None),
            }
        }
        Ok(Packet::Message(SioPacket::Ack { id, data, .. })) if Some(id) == want => {
            let (st,): (Status,) = serde_json::from_str(data)
                .map_err(|_| format!("unexpected msg ack {data:.120}"))?;
            Ok(Some((st.status, data.to_owned())))
        }
        _ => Ok(None),
    }
}

/// Stores `n` messages in `room` from one connection as fast as it takes
/// them, without acks: every insert but the last is fed back to back; the
/// last asks for an ack, and since the server handles a connection's events
/// in order, its ack means every earlier insert was handled. Whether the
/// server kept them all is for the syncs to tell.
async fn preload_unacked(cfg: &SyncConfig, uid: &str, room: &str) -> Result<Preloaded> {
    let mut conn = member(&cfg.addr, cfg.eio, uid, room).await?;
    let template = MsgTemplate::new(cfg.size, 0);
    let n = cfg.messages.max(1) as u64;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut resends = 0u64;
    let run = async {
        let failed = |e: crate::BoxError| format!("connection failed: {e}");
        while sent + 1 < n {
            let end = (sent + PRELOAD_BATCH).min(n - 1);
            while sent < end {
                conn.feed(template.render(clock::now_ns(), None))
                    .await
                    .map_err(failed)?;
                sent += 1;
            }
            conn.flush().await.map_err(failed)?;
            // Whatever the server sent meanwhile, without waiting for more.
            while let Ok(frame) = timeout(Duration::ZERO, conn.next_text()).await {
                let frame = frame.map_err(failed)?;
                preload_frame(&mut conn, &frame, None).await?;
            }
        }
        let mut id = 1u64;
        loop {
            conn.send(template.render(clock::now_ns(), Some(id)))
                .await
                .map_err(failed)?;
            if id == 1 {
                sent += 1;
            }
            let (status, data) = loop {
                let frame = conn.next_text().await.map_err(failed)?;
                if let Some(ack) = preload_frame(&mut conn, &frame, Some(id)).await? {
                    break ack;
                }
            };
            match status {
                0 => return Ok(()),
                // Too many requests: the connection's queue was full.
                6 => {
                    resends += 1;
                    id += 1;
                    sleep(RESEND_PAUSE).await;
                }
                _ => return Err(format!("the last insert was refused: {data:.120}")),
            }
        }
    };
    let limit = preload_limit(cfg.messages);
    let outcome = timeout(limit, run).await;
    let secs = started.elapsed().as_secs_f64();
    let not_completed = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(why)) => Some(format!("{why} after {sent} of {n} sent")),
        Err(_) => Some(format!(
            "no ack of the last insert within {} s ({sent} of {n} sent)",
            limit.as_secs()
        )),
    };
    conn.close().await;
    Ok(Preloaded {
        secs,
        resends,
        not_completed,
    })
}

/// A sync reply; `D` is what `data` is decoded into.
#[derive(Deserialize)]
struct Page<D> {
    data: D,
    offset: u64,
    next: u8,
}

/// Decodes a `sync` event's array (`["sync", page]`) in one pass over the
/// page, as a client's `JSON.parse` does; `None` for any other event.
fn sync_page<'a, D: Deserialize<'a>>(frame: &'a str) -> Option<Result<Page<D>>> {
    let Ok(Packet::Message(SioPacket::Event { nsp: "/", data, .. })) = engineio::decode(frame)
    else {
        return None;
    };
    if !data.starts_with("[\"sync\",") {
        return None;
    }
    Some(
        serde_json::from_str::<(&'a str, Page<D>)>(data)
            .map(|(_, page)| page)
            .map_err(|_| format!("unexpected sync reply {data:.160}").into()),
    )
}

/// One fresh client syncing the whole room; the gzip pages are decoded
/// after the clock stops, to check their content.
async fn sync_once(cfg: &SyncConfig, uid: &str, room: &str, gzip: bool) -> Result<SyncRun> {
    let mut conn = member(&cfg.addr, cfg.eio, uid, room).await?;
    let started = Instant::now();
    let (mut offset, mut pages, mut messages, mut bytes) = (0u64, 0usize, 0u64, 0u64);
    let mut compressed: Vec<String> = Vec::new();
    loop {
        let req = if gzip {
            format!("{{\"offset\":{offset},\"encoding\":\"gzip\"}}")
        } else {
            format!("{{\"offset\":{offset}}}")
        };
        conn.send(engineio::event_frame("sync", &req)).await?;
        let page_next = loop {
            let frame = conn.next_text_timeout().await?;
            if conn.answer_ping(&frame).await? {
                continue;
            }
            let page = if gzip {
                let Some(page) = sync_page::<&RawValue>(&frame) else {
                    continue;
                };
                let page = page?;
                compressed.push(page.data.get().to_owned());
                Page {
                    data: (),
                    offset: page.offset,
                    next: page.next,
                }
            } else {
                let Some(page) = sync_page::<Vec<&RawValue>>(&frame) else {
                    continue;
                };
                let page = page?;
                messages += page.data.len() as u64;
                Page {
                    data: (),
                    offset: page.offset,
                    next: page.next,
                }
            };
            bytes += frame.len() as u64;
            pages += 1;
            if page.next != 0 && page.offset <= offset {
                return Err(format!("sync offset did not advance from {offset}").into());
            }
            offset = page.offset;
            break page.next;
        };
        if page_next == 0 {
            break;
        }
    }
    let ms = started.elapsed().as_secs_f64() * 1e3;
    conn.close().await;
    for data in &compressed {
        messages += gunzip_count(data)?;
    }
    Ok(SyncRun {
        ms,
        pages,
        messages,
        bytes,
    })
}

/// Number of items in a gzip page's `data` (a JSON string of base64 of gzip of a JSON array).
pub fn gunzip_count(data_json: &str) -> Result<u64> {
    let b64: Cow<'_, str> = serde_json::from_str(data_json)?;
    let gz = base64::engine::general_purpose::STANDARD.decode(b64.as_bytes())?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice()).read_to_end(&mut json)?;
    let items: Vec<&RawValue> = serde_json::from_slice(&json)?;
    Ok(items.len() as u64)
}

/// Runs the sync scenario. A preload that did not complete, or syncs that
/// return fewer messages than were sent, are in the result, not errors.
pub async fn sync(cfg: &SyncConfig) -> Result<SyncResult> {
    let prefix = run_prefix();
    let room = format!("{prefix}-sync");
    let writer = format!("{prefix}-writer");
    let preloaded = match cfg.preload {
        Preload::Acked => Preloaded {
            secs: insert(cfg, &writer, &room).await?,
            resends: 0,
            not_completed: None,
        },
        Preload::Unacked => preload_unacked(cfg, &writer, &room).await?,
    };
    let mut result = SyncResult {
        preload: cfg.preload,
        inserted: cfg.messages,
        insert_s: preloaded.secs,
        resends: preloaded.resends,
        not_completed: preloaded.not_completed,
        plain: Vec::new(),
        gzip: Vec::new(),
    };
    if result.not_completed.is_some() {
        return Ok(result);
    }
    let encodings: &[bool] = if cfg.gzip { &[false, true] } else { &[false] };
    for i in 0..cfg.repeat.max(1) {
        for &gzip in encodings {
            let uid = format!("{prefix}-reader{i}{}", if gzip { "z" } else { "" });
            let run = sync_once(cfg, &uid, &room, gzip).await?;
            if gzip {
                result.gzip.push(run);
            } else {
                result.plain.push(run);
            }
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn sync_pages_decode_in_one_pass_and_other_events_are_skipped() {
        let frame = r#"42["sync",{"data":[{"a":1},{"b":[2,3]}],"offset":2,"next":1,"epoch":"e"}]"#;
        let page = sync_page::<Vec<&RawValue>>(frame)
            .expect("a sync event")
            .expect("a page");
        assert_eq!(page.data.len(), 2);
        assert_eq!(page.data[1].get(), r#"{"b":[2,3]}"#);
        assert_eq!((page.offset, page.next), (2, 1));

        let frame = r#"42["sync",{"data":"H4sI","offset":200,"next":0,"encoding":"gzip"}]"#;
        let page = sync_page::<&RawValue>(frame)
            .expect("a sync event")
            .expect("a page");
        assert_eq!(page.data.get(), r#""H4sI""#);

        assert!(sync_page::<&RawValue>(r#"42["remote_join",{"uid":"1"}]"#).is_none());
        assert!(sync_page::<&RawValue>("3").is_none());
        assert!(sync_page::<Vec<&RawValue>>(r#"42["sync",{"data":"x"}]"#)
            .expect("a sync event")
            .is_err());
    }

    #[test]
    fn counts_gzip_pages() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(br#"[{"a":1},{"b":2},3]"#).expect("gzip");
        let gz = enc.finish().expect("gzip");
        let b64 = base64::engine::general_purpose::STANDARD.encode(gz);
        assert_eq!(gunzip_count(&format!("\"{b64}\"")).expect("decode"), 3);
        assert!(gunzip_count("\"not base64!\"").is_err());
    }

    #[test]
    fn median_of_runs() {
        let run = |ms| SyncRun {
            ms,
            pages: 1,
            messages: 1,
            bytes: 1,
        };
        let runs = [run(30.0), run(10.0), run(20.0)];
        assert_eq!(median(&runs).map(|r| r.ms), Some(20.0));
        assert!(median(&[]).is_none());
    }
}
