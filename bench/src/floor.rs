//! The floor: a minimal relay server to compare the real one against.
//!
//! Raw WebSocket (tokio-tungstenite), just enough engine.io 3/4 and
//! socket.io to answer the handshake, `authenticate` (any credentials),
//! `join`, and relay `msg` to the room's other members with the sender's uid
//! under `"2"`. No storage, no acks, no validation, no timeouts. What the
//! real server does beyond this is its cost; the floor is what the same
//! machine can do with the same transport and the least work.
//!
//! One task per connection owns its websocket; other connections hand it
//! frames through a bounded channel (full → dropped, as the real server's
//! per-socket buffer), and it writes everything queued before one flush.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::client::ws_config;
use crate::engineio::{self, Eio, Packet, SioPacket};
use crate::Result;

/// Frames a connection may have queued before more are dropped.
const QUEUE: usize = 4096;
/// engine.io ping interval the floor announces, ms.
const PING_INTERVAL_MS: u64 = 25_000;
/// Frames written before one flush, at most.
const BATCH: usize = 64;

/// A member of a room: how to reach its connection.
struct Member {
    id: u64,
    uid: Arc<str>,
    tx: mpsc::Sender<Utf8Bytes>,
}

#[derive(Default)]
struct Room {
    members: RwLock<Vec<Member>>,
}

#[derive(Default)]
struct State {
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    next_id: AtomicU64,
    dropped: AtomicU64,
}

impl State {
    fn room(&self, key: &str) -> Arc<Room> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        rooms.entry(key.to_owned()).or_default().clone()
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
pub async fn serve(listen: SocketAddr, nodelay: bool) -> Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("floor listening on {}", listener.local_addr()?);
    serve_listener(listener, nodelay).await;
    Ok(())
}

/// Serves the floor on a bound listener, forever.
pub async fn serve_listener(listener: TcpListener, nodelay: bool) {
    let state = Arc::new(State::default());
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

/// `{...}` with `"2": uid` added at the end; `None` when not an object.
/// (An existing `"2"` is not removed: the benchmark never sends one.)
pub fn stamp_sender(obj: &str, uid_json: &str) -> Option<String> {
    let obj = obj.trim();
    let inner = obj.strip_prefix('{')?.strip_suffix('}')?;
    let mut out = String::with_capacity(obj.len() + uid_json.len() + 16);
    out.push_str("42[\"msg\",{");
    out.push_str(inner);
    if !inner.trim().is_empty() {
        out.push(',');
    }
    out.push_str("\"2\":");
    out.push_str(uid_json);
    out.push_str("}]");
    Some(out)
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

    /// Relays a msg to the room's other members.
    fn msg(&self, arg: Option<&serde_json::value::RawValue>) {
        let (Some(uid), Some((_, room)), Some(arg)) = (&self.uid, &self.room, arg) else {
            return;
        };
        let Some(frame) = stamp_sender(arg.get(), uid) else {
            return;
        };
        let frame = Utf8Bytes::from(frame);
        let members = room.members.read().unwrap_or_else(|p| p.into_inner());
        for m in members.iter().filter(|m| m.id != self.id) {
            if m.tx.try_send(frame.clone()).is_err() {
                self.state.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
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
        Some(ws_config()),
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
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
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
                    Ok(Packet::Message(SioPacket::Event { nsp: "/", data, .. })) => {
                        let Ok(args) = engineio::event_args(data) else { continue };
                        match args.name.as_ref() {
                            "msg" => session.msg(args.arg),
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
                for _ in 1..BATCH {
                    match rx.try_recv() {
                        Ok(more) => ws.feed(Message::Text(more)).await?,
                        Err(_) => break,
                    }
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
            stamp_sender(r#"{"data":{"t":1},"s":2}"#, r#""alice""#).as_deref(),
            Some(r#"42["msg",{"data":{"t":1},"s":2,"2":"alice"}]"#)
        );
        assert_eq!(
            stamp_sender("{ }", "7").as_deref(),
            Some(r#"42["msg",{ "2":7}]"#)
        );
        assert_eq!(stamp_sender("[1]", "7"), None);
        assert_eq!(stamp_sender("\"x\"", "7"), None);
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
