//! One socket.io client connection over a WebSocket: connect, the
//! namespace handshake of either engine.io generation (the opening sequence
//! the tests' clients share, `ao_testclient::handshake`), authenticate, join.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use ao_testclient::handshake;

use crate::engineio::{self, Eio, Packet, SioPacket};
use crate::Result;

/// How long any one setup step (connect, handshake, a reply) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// WebSocket settings for many mostly idle connections with small frames:
/// a 4 KiB read buffer (tungstenite allocates it eagerly; its default is 128 KiB).
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(64 << 20))
}

/// A connected socket.io client on the default namespace.
pub struct Conn {
    ws: WebSocketStream<TcpStream>,
    eio: Eio,
    ping_interval: Duration,
    /// When this (engine.io 3) client last pinged.
    last_ping: Instant,
}

impl Conn {
    /// Opens a websocket to `addr` (`host:port`) and completes the engine.io
    /// and socket.io handshakes of generation `eio`.
    pub async fn connect(addr: &str, eio: Eio) -> Result<Conn> {
        let stream = timeout(STEP_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect to {addr} timed out"))??;
        stream.set_nodelay(true)?;
        let url = format!("ws://{addr}{}", eio.path());
        let (mut ws, _) = timeout(
            STEP_TIMEOUT,
            tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config())),
        )
        .await
        .map_err(|_| "websocket handshake timed out")??;
        // Two steps: the open packet, then the CONNECT answer.
        let connected = timeout(
            2 * STEP_TIMEOUT,
            handshake::connect(&mut ws, (eio == Eio::V4).then_some(engineio::CONNECT)),
        )
        .await
        .map_err(|_| "timed out waiting for the server")??;
        let hs = engineio::handshake(&connected.open)?;
        Ok(Conn {
            ws,
            eio,
            ping_interval: Duration::from_millis(hs.ping_interval.max(100)),
            last_ping: Instant::now(),
        })
    }

    /// The protocol generation of this connection.
    pub fn eio(&self) -> Eio {
        self.eio
    }

    /// The server's ping interval (engine.io 3 clients must ping this often).
    pub fn ping_interval(&self) -> Duration {
        self.ping_interval
    }

    /// Sends one text frame (and flushes it).
    pub async fn send(&mut self, text: impl Into<Utf8Bytes>) -> Result<()> {
        self.ping_if_due().await?;
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// Queues one text frame without flushing.
    pub async fn feed(&mut self, text: impl Into<Utf8Bytes>) -> Result<()> {
        self.ping_if_due().await?;
        self.ws.feed(Message::Text(text.into())).await?;
        Ok(())
    }

    /// An engine.io 3 client must ping every ping interval or the server
    /// drops it; busy connections ping from here, idle ones from their
    /// own timer ([`Conn::ping`]).
    async fn ping_if_due(&mut self) -> Result<()> {
        if self.eio.client_pings() && self.last_ping.elapsed() >= self.ping_interval {
            self.ping().await?;
        }
        Ok(())
    }

    /// Sends an engine.io ping (engine.io 3 clients).
    pub async fn ping(&mut self) -> Result<()> {
        self.last_ping = Instant::now();
        self.ws.feed(Message::Text(engineio::PING.into())).await?;
        Ok(())
    }

    /// Flushes frames queued with [`Conn::feed`].
    pub async fn flush(&mut self) -> Result<()> {
        self.ws.flush().await?;
        Ok(())
    }

    /// Closes the websocket politely (errors ignored: the peer may be gone).
    pub async fn close(mut self) {
        let _ = timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }

    /// Drops the connection without a websocket close: the TCP connection is
    /// reset (zero linger), as a client that loses its network or is killed.
    pub fn abort(self) {
        #[allow(deprecated)]
        let _ = self.ws.get_ref().set_linger(Some(Duration::ZERO));
        drop(self);
    }

    /// The next text frame; websocket pings are answered by tungstenite.
    /// Cancel-safe: usable as a `select!` branch.
    pub async fn next_text(&mut self) -> Result<Utf8Bytes> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => return Ok(t),
                Some(Ok(Message::Close(_))) | None => return Err("connection closed".into()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// [`Conn::next_text`] within [`STEP_TIMEOUT`].
    pub async fn next_text_timeout(&mut self) -> Result<Utf8Bytes> {
        timeout(STEP_TIMEOUT, self.next_text())
            .await
            .map_err(|_| "timed out waiting for the server")?
    }

    /// Answers an engine.io ping from the server (engine.io 4) with a pong;
    /// returns whether `frame` was such a ping.
    pub async fn answer_ping(&mut self, frame: &str) -> Result<bool> {
        if self.eio == Eio::V4 && frame == engineio::PING {
            self.send(engineio::PONG).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Waits for event `name` (answering pings, skipping other events) and
    /// returns its first argument's JSON text.
    pub async fn wait_event(&mut self, name: &str) -> Result<String> {
        loop {
            let frame = self.next_text_timeout().await?;
            if self.answer_ping(&frame).await? {
                continue;
            }
            match engineio::decode(&frame) {
                Ok(Packet::Message(SioPacket::Event { nsp: "/", data, .. })) => {
                    let args = engineio::event_args(data)?;
                    if args.name == name {
                        return Ok(args.arg.map(|a| a.get().to_owned()).unwrap_or_default());
                    }
                    if args.name == "kickout" {
                        return Err(format!("kicked out while waiting for {name}").into());
                    }
                }
                Ok(Packet::Message(SioPacket::Disconnect { .. }) | Packet::Close) => {
                    return Err(
                        format!("disconnected by the server while waiting for {name}").into(),
                    )
                }
                _ => {}
            }
        }
    }

    /// Waits for the ack `id` and returns its arguments' JSON array text.
    pub async fn wait_ack(&mut self, id: u64) -> Result<String> {
        loop {
            let frame = self.next_text_timeout().await?;
            if self.answer_ping(&frame).await? {
                continue;
            }
            if let Ok(Packet::Message(SioPacket::Ack { id: got, data, .. })) =
                engineio::decode(&frame)
            {
                if got == id {
                    return Ok(data.to_owned());
                }
            }
        }
    }

    /// Sends `event` with `payload` (JSON) and waits for the same event's
    /// `{status: 0}` reply, as the protocol's `authenticate` and `join` do.
    pub async fn request(&mut self, event: &str, payload: &str) -> Result<()> {
        self.send(engineio::event_frame(event, payload)).await?;
        let reply = self.wait_event(event).await?;
        let raw: Box<serde_json::value::RawValue> = serde_json::from_str(&reply)
            .map_err(|_| format!("{event} reply is not JSON: {reply:.120}"))?;
        match engineio::reply_status(Some(&raw)) {
            Some(0) => Ok(()),
            _ => Err(format!("{event} refused: {reply:.120}").into()),
        }
    }

    /// `authenticate {uid, token}` (any token passes a server in `--dev` mode).
    pub async fn authenticate(&mut self, uid: &str) -> Result<()> {
        let mut p = String::from("{\"uid\":");
        engineio::push_json_str(&mut p, uid);
        p.push_str(",\"token\":\"bench\"}");
        self.request("authenticate", &p).await
    }

    /// `join {roomId}`.
    pub async fn join(&mut self, room: &str) -> Result<()> {
        let mut p = String::from("{\"roomId\":");
        engineio::push_json_str(&mut p, room);
        p.push('}');
        self.request("join", &p).await
    }
}
