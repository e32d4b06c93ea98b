//! The floor: a minimal relay server to compare the real one against.
//!
//! Raw WebSocket (tokio-tungstenite), just enough engine.io 3/4 and
//! socket.io to answer the handshake, `authenticate` (any credentials),
//! `join`, and relay `msg` to the room's other members with the sender's uid
//! under `"2"`, answering `{status: 0}` when asked. No storage, no
//! validation, no timeouts. What the real server does beyond this is its
//! cost; the floor is what the same machine can do with the same transport
//! and the least work.
//!
//! The *durable* floor ([`Durable`]) stores what the server stores (every
//! msg but `s: 2`) the least way that keeps an ack's promise: a group
//! commit to a log file ([`durable`]), relayed with its `seq` and
//! acknowledged only after the `fdatasync`.
//!
//! One task per connection owns its websocket; other connections hand it
//! frames through a bounded channel (full → dropped, as the real server's
//! per-socket buffer), and it writes everything queued with one flush, as
//! the server's connection task does.

mod durable;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::client::ws_config;
use crate::engineio::{self, Eio, Packet, SioPacket};
use crate::log_metrics::LogStats;
use crate::Result;

/// Frames a connection may have queued before more are dropped.
const QUEUE: usize = 4096;
/// engine.io ping interval the floor announces, ms.
const PING_INTERVAL_MS: u64 = 25_000;
/// Bytes of frames gathered before they are written to the socket: the
/// server's websocket write batch (`WRITE_BATCH_BYTES` in
/// crates/ao-socketio/src/websocket.rs). Whatever a connection has queued
/// is taken at once and flushed once, in writes of about this size.
const WRITE_BATCH_BYTES: usize = 16 * 1024;

/// The durable floor's settings.
#[derive(Debug, Clone)]
pub struct Durable {
    /// Where the log file goes (on the disk under test).
    pub dir: PathBuf,
    /// The commit window (the server's default is 2 ms).
    pub window: Duration,
    /// Where `/metrics` (group commit durations and stalls) is served.
    pub metrics_listen: Option<SocketAddr>,
}

/// A member of a room: how to reach its connection.
struct Member {
    id: u64,
    uid: Arc<str>,
    tx: mpsc::Sender<Utf8Bytes>,
}

struct Room {
    key: String,
    members: RwLock<Vec<Member>>,
    /// The next insert's seq (the durable floor numbers its msgs).
    next_seq: AtomicU64,
}

impl Room {
    /// Hands `frame` to every member but `from`; a full queue drops it.
    fn relay(&self, from: u64, frame: Utf8Bytes, dropped: &AtomicU64) {
        let members = self.members.read().unwrap_or_else(|p| p.into_inner());
        for m in members.iter().filter(|m| m.id != from) {
            if m.tx.try_send(frame.clone()).is_err() {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[derive(Default)]
struct State {
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    next_id: AtomicU64,
    dropped: AtomicU64,
    /// The durable floor's group commit.
    committer: std::sync::OnceLock<durable::Committer>,
}

impl State {
    fn room(&self, key: &str) -> Arc<Room> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        rooms
            .entry(key.to_owned())
            .or_insert_with(|| {
                Arc::new(Room {
                    key: key.to_owned(),
                    members: RwLock::default(),
                    next_seq: AtomicU64::new(0),
                })
            })
            .clone()
    }

    fn forget_if_empty(&self, key: &str) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = rooms.get(key) {
            if r.members.read().map(|m| m.is_empty()).unwrap_or(false) {
                rooms.remove(key);
            }
        }
    }
}

/// Serves the floor on `listen` until the process is stopped; prints
/// `floor listening on ADDR` once bound (port 0 picks a free port).
/// `nodelay` sets TCP_NODELAY on accepted connections (the floor's normal
/// behaviour; without it, Nagle's algorithm delays small writes).
/// With `durable`, stored msgs go through a group commit first.
pub async fn serve(listen: SocketAddr, nodelay: bool, durable: Option<Durable>) -> Result<()> {
    let listener = TcpListener::bind(listen).await?;
    serve_listener(listener, nodelay, durable).await
}

/// Serves the floor on a bound listener (printing its address), forever;
/// fails only when the durable floor's log or metrics cannot be set up.
pub async fn serve_listener(
    listener: TcpListener,
    nodelay: bool,
    durable: Option<Durable>,
) -> Result<()> {
    let state = Arc::new(State::default());
    if let Some(d) = durable {
        let stats = Arc::new(LogStats::new());
        let committer = durable::start(&d.dir, d.window, state.clone(), stats.clone())
            .map_err(|e| format!("cannot open the floor's log in {}: {e}", d.dir.display()))?;
        let _ = state.committer.set(committer);
        if let Some(at) = d.metrics_listen {
            let metrics = TcpListener::bind(at).await?;
            println!("floor metrics on http://{}/metrics", metrics.local_addr()?);
            tokio::spawn(serve_metrics(metrics, stats));
        }
    }
    println!("floor listening on {}", listener.local_addr()?);
    accept(listener, nodelay, state).await;
    Ok(())
}

/// `GET /metrics`: the durable floor's commit-log metrics.
async fn serve_metrics(listener: TcpListener, stats: Arc<LogStats>) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let stats = stats.clone();
            async move { stats.render() }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("floor: metrics server failed: {e}");
    }
}

/// Accepts connections, forever.
async fn accept(listener: TcpListener, nodelay: bool, state: Arc<State>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                eprintln!("floor: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(nodelay);
            let _ = connection(stream, state).await;
        });
    }
}

/// The JSON text of an id (uid or roomId) as a room key: a string's
/// contents, or a number's digits, so `123` and `"123"` are the same room.
fn id_key(raw: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(raw).ok()?;
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The relayed `msg` frame of `{...}`: the object with `"2": uid` and, for
/// a stored msg, `"seq": n` added at the end; `None` when not an object.
/// (An existing `"2"` is not removed: the benchmark never sends one.)
fn stamp(obj: &str, uid_json: &str, seq: Option<u64>) -> Option<String> {
    let obj = obj.trim();
    let inner = obj.strip_prefix('{')?.strip_suffix('}')?;
    let mut out = String::with_capacity(obj.len() + uid_json.len() + 32);
    out.push_str("42[\"msg\",{");
    out.push_str(inner);
    if !inner.trim().is_empty() {
        out.push(',');
    }
    out.push_str("\"2\":");
    out.push_str(uid_json);
    if let Some(seq) = seq {
        out.push_str(",\"seq\":");
        out.push_str(&seq.to_string());
    }
    out.push_str("}]");
    Some(out)
}

/// Whether the server would store this msg object: its storage mode
/// (`s`, else `storage`; missing or invalid means 0) is not 2.
fn is_stored(obj: &serde_json::value::RawValue) -> bool {
    #[derive(serde::Deserialize)]
    struct Mode<'a> {
        #[serde(borrow)]
        s: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow)]
        storage: Option<&'a serde_json::value::RawValue>,
    }
    let Ok(mode) = serde_json::from_str::<Mode<'_>>(obj.get()) else {
        return true;
    };
    mode.s.or(mode.storage).is_none_or(|m| m.get() != "2")
}

fn uid_event(name: &str, uid_json: &str) -> Utf8Bytes {
    engineio::event_frame(name, &format!("{{\"uid\":{uid_json}}}")).into()
}

struct Session {
    id: u64,
    state: Arc<State>,
    tx: mpsc::Sender<Utf8Bytes>,
    uid: Option<Arc<str>>,
    room: Option<(String, Arc<Room>)>,
}

impl Session {
    fn authenticate(&mut self, arg: Option<&serde_json::value::RawValue>) -> Utf8Bytes {
        #[derive(serde::Deserialize)]
        struct Creds<'a> {
            #[serde(borrow)]
            uid: &'a serde_json::value::RawValue,
        }
        let uid = arg
            .and_then(|a| serde_json::from_str::<Creds<'_>>(a.get()).ok())
            .filter(|c| id_key(c.uid.get()).is_some());
        match (uid, &self.uid) {
            (Some(c), None) => {
                self.uid = Some(Arc::from(c.uid.get()));
                engineio::event_frame("authenticate", r#"{"status":0,"data":"auth success"}"#)
                    .into()
            }
            _ => engineio::event_frame(
                "authenticate",
                r#"{"status":1,"data":"auth failed, uid or token is wrong"}"#,
            )
            .into(),
        }
    }

    /// Joins; returns the frames for this connection (reply, then the
    /// members already there).
    fn join(&mut self, arg: Option<&serde_json::value::RawValue>) -> Vec<Utf8Bytes> {
        #[derive(serde::Deserialize)]
        struct Join<'a> {
            #[serde(borrow, rename = "roomId")]
            room_id: &'a serde_json::value::RawValue,
        }
        let Some(uid) = self.uid.clone() else {
            return Vec::new();
        };
        let key = arg
            .and_then(|a| serde_json::from_str::<Join<'_>>(a.get()).ok())
            .and_then(|j| id_key(j.room_id.get()));
        let Some(key) = key else {
            return vec![engineio::event_frame(
                "join",
                r#"{"status":1,"data":"join failed, require roomId"}"#,
            )
            .into()];
        };
        self.leave("remote_leave");
        let room = self.state.room(&key);
        let mut out = vec![Utf8Bytes::from(engineio::event_frame(
            "join",
            r#"{"status":0,"data":"join success"}"#,
        ))];
        {
            let mut members = room.members.write().unwrap_or_else(|p| p.into_inner());
            let announce = uid_event("remote_join", &uid);
            for m in members.iter() {
                let _ = m.tx.try_send(announce.clone());
                out.push(uid_event("remote_join", &m.uid));
            }
            members.push(Member {
                id: self.id,
                uid,
                tx: self.tx.clone(),
            });
        }
        self.room = Some((key, room));
        out
    }

    /// Relays a msg to the room's other members and answers its ack; a
    /// msg to store on the durable floor is returned for its group commit.
    fn msg(
        &self,
        arg: Option<&serde_json::value::RawValue>,
        ack: Option<u64>,
    ) -> Option<durable::Job> {
        let (Some(uid), Some((_, room)), Some(arg)) = (&self.uid, &self.room, arg) else {
            return None;
        };
        if self.state.committer.get().is_some() && is_stored(arg) {
            return Some(durable::Job {
                room: room.clone(),
                from: self.id,
                uid: uid.clone(),
                body: arg.get().into(),
                ack: ack.map(|id| (self.tx.clone(), id)),
                submitted: Instant::now(),
            });
        }
        let frame = stamp(arg.get(), uid, None)?;
        room.relay(self.id, Utf8Bytes::from(frame), &self.state.dropped);
        if let Some(id) = ack {
            let _ = self
                .tx
                .try_send(engineio::ack_frame(id, r#"{"status":0}"#).into());
        }
        None
    }

    /// Leaves the current room, announcing `event` to the others.
    fn leave(&mut self, event: &str) {
        let Some((key, room)) = self.room.take() else {
            return;
        };
        {
            let mut members = room.members.write().unwrap_or_else(|p| p.into_inner());
            members.retain(|m| m.id != self.id);
            if let Some(uid) = &self.uid {
                let f = uid_event(event, uid);
                for m in members.iter() {
                    let _ = m.tx.try_send(f.clone());
                }
            }
        }
        self.state.forget_if_empty(&key);
    }
}

// The handshake callback's error type is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
async fn connection(stream: TcpStream, state: Arc<State>) -> Result<()> {
    let mut eio = Eio::V4;
    let ws = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        |req: &Request, resp: Response| {
            eio = Eio::from_query(req.uri().query());
            Ok(resp)
        },
        Some(ws_config().write_buffer_size(WRITE_BATCH_BYTES)),
    )
    .await?;
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(QUEUE);
    let mut session = Session {
        id,
        state,
        tx,
        uid: None,
        room: None,
    };
    let r = run(ws, eio, &mut session, rx).await;
    session.leave("remote_disconnect");
    r
}

async fn run(
    mut ws: WebSocketStream<TcpStream>,
    eio: Eio,
    session: &mut Session,
    mut rx: mpsc::Receiver<Utf8Bytes>,
) -> Result<()> {
    let sid = format!("floor{}", session.id);
    ws.send(Message::Text(
        engineio::open_frame(&sid, PING_INTERVAL_MS, 20_000).into(),
    ))
    .await?;
    if eio == Eio::V3 {
        ws.send(Message::Text(engineio::CONNECT.into())).await?;
    }
    let ping_every = Duration::from_millis(PING_INTERVAL_MS);
    let ping = tokio::time::sleep(ping_every);
    tokio::pin!(ping);
    loop {
        tokio::select! {
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return Ok(()),
                    Some(Ok(_)) => continue,
                };
                let mut replies: Vec<Utf8Bytes> = Vec::new();
                match engineio::decode(&text) {
                    Ok(Packet::Ping(p)) => replies.push(format!("3{p}").into()),
                    Ok(Packet::Close) => return Ok(()),
                    Ok(Packet::Message(SioPacket::Connect { nsp: "/", .. })) if eio == Eio::V4 => {
                        replies.push(engineio::connect_reply_v4(&sid).into());
                    }
                    Ok(Packet::Message(SioPacket::Disconnect { nsp: "/" })) => return Ok(()),
                    Ok(Packet::Message(SioPacket::Event { nsp: "/", data, ack })) => {
                        let Ok(args) = engineio::event_args(data) else { continue };
                        match args.name.as_ref() {
                            "msg" => {
                                if let Some(job) = session.msg(args.arg, ack) {
                                    if let Some(c) = session.state.committer.get() {
                                        // A full queue holds this connection back.
                                        if c.send(job).await.is_err() {
                                            return Ok(());
                                        }
                                    }
                                }
                            }
                            "authenticate" => replies.push(session.authenticate(args.arg)),
                            "join" if session.uid.is_some() => replies.extend(session.join(args.arg)),
                            "sync" if session.room.is_some() => replies.push(
                                engineio::event_frame("sync", r#"{"data":[],"offset":0,"next":0}"#).into(),
                            ),
                            "leave" if session.room.is_some() => {
                                session.leave("remote_leave");
                                ws.send(Message::Text("41".into())).await?;
                                return Ok(());
                            }
                            _ => {}
                        }
                    }
                    _ => {}
                }
                for r in replies {
                    ws.feed(Message::Text(r)).await?;
                }
                ws.flush().await?;
            }
            out = rx.recv() => {
                let Some(first) = out else { return Ok(()) };
                ws.feed(Message::Text(first)).await?;
                while let Ok(more) = rx.try_recv() {
                    ws.feed(Message::Text(more)).await?;
                }
                ws.flush().await?;
            }
            () = &mut ping, if eio == Eio::V4 => {
                ws.send(Message::Text(engineio::PING.into())).await?;
                ping.as_mut().reset(tokio::time::Instant::now() + ping_every);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_the_sender() {
        assert_eq!(
            stamp(r#"{"data":{"t":1},"s":2}"#, r#""alice""#, None).as_deref(),
            Some(r#"42["msg",{"data":{"t":1},"s":2,"2":"alice"}]"#)
        );
        assert_eq!(
            stamp(r#"{"data":1,"s":0}"#, "7", Some(12)).as_deref(),
            Some(r#"42["msg",{"data":1,"s":0,"2":7,"seq":12}]"#)
        );
        assert_eq!(
            stamp("{ }", "7", None).as_deref(),
            Some(r#"42["msg",{ "2":7}]"#)
        );
        assert_eq!(stamp("[1]", "7", None), None);
        assert_eq!(stamp("\"x\"", "7", None), None);
    }

    #[test]
    fn stores_what_the_server_stores() {
        let raw = |s: &str| serde_json::value::RawValue::from_string(s.to_owned()).expect("json");
        assert!(is_stored(&raw(r#"{"data":1,"s":0}"#)));
        assert!(is_stored(&raw(r#"{"data":1}"#)));
        assert!(is_stored(&raw(r#"{"data":1,"s":1}"#)));
        assert!(is_stored(&raw(r#"{"data":1,"s":"x"}"#)));
        assert!(!is_stored(&raw(r#"{"data":{"s":0},"s":2}"#)));
        assert!(!is_stored(&raw(r#"{"data":1,"storage":2}"#)));
        assert!(is_stored(&raw(r#"{"data":1,"s":0,"storage":2}"#)));
    }

    #[test]
    fn room_keys() {
        assert_eq!(id_key("123").as_deref(), Some("123"));
        assert_eq!(id_key("\"123\"").as_deref(), Some("123"));
        assert_eq!(id_key("\"\""), None);
        assert_eq!(id_key("null"), None);
        assert_eq!(id_key("{}"), None);
    }
}
