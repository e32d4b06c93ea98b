//! What the transport tests share: a real server on 127.0.0.1:0 with a
//! small test application, and raw clients (websocket, HTTP long-polling,
//! bare TCP) that speak engine.io and socket.io by hand, on the codec the
//! project's raw test clients share (`ao-testclient`).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use ao_socketio::serve::HttpLimits;
use ao_socketio::{Config, Connect, Connector, DisconnectReason, Event, Handler, Server, Socket};
pub(crate) use ao_testclient::payload::Item;
use ao_testclient::{frame, handshake, payload, Eio};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something that should happen at once.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// What the test application saw.
#[derive(Debug)]
pub(crate) enum Record {
    Connect {
        id: String,
    },
    Event {
        id: String,
        /// The event's name (the first element of its data).
        name: String,
        /// The data as the handler got it.
        data: String,
        attachments: Vec<Bytes>,
    },
    Disconnect {
        id: String,
        reason: DisconnectReason,
    },
}

/// The test application. Every event is recorded; then, by name:
/// - `echo`: its argument comes back as an ack when one is asked for,
///   else as an `echo` event;
/// - `join`: joins the room named by its argument;
/// - `disconnect-me`: the server disconnects the client;
/// - anything else with an ack: the argument comes back as the ack.
struct App {
    records: mpsc::UnboundedSender<Record>,
}

struct AppHandler {
    records: mpsc::UnboundedSender<Record>,
}

impl Connector for App {
    fn connect(&self, socket: &Socket, _: Option<&str>) -> Connect {
        let _ = self.records.send(Record::Connect {
            id: socket.id().to_owned(),
        });
        Connect::Accept(Box::new(AppHandler {
            records: self.records.clone(),
        }))
    }
}

impl Handler for AppHandler {
    fn event(&self, socket: &Socket, event: Event<'_>) {
        // Garbage from a client must not make the test handler panic.
        let parsed: Option<Value> = serde_json::from_str(event.data).ok();
        let name = parsed
            .as_ref()
            .and_then(|v| v.get(0))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let arg = parsed
            .as_ref()
            .and_then(|v| v.get(1))
            .cloned()
            .unwrap_or(Value::Null);
        let _ = self.records.send(Record::Event {
            id: socket.id().to_owned(),
            name: name.clone(),
            data: event.data.to_owned(),
            attachments: event.attachments,
        });
        match (name.as_str(), event.ack) {
            (_, Some(ack)) => {
                let _ = ack.send(&arg);
            }
            ("echo", None) => {
                let _ = socket.emit("echo", &arg);
            }
            ("join", None) => socket.join(arg.as_str().unwrap_or("")),
            ("disconnect-me", None) => socket.disconnect(),
            _ => {}
        }
    }

    fn disconnect(&self, socket: &Socket, reason: DisconnectReason) {
        let _ = self.records.send(Record::Disconnect {
            id: socket.id().to_owned(),
            reason,
        });
    }
}

/// A server listening on 127.0.0.1 for the length of a test.
pub(crate) struct TestServer {
    pub addr: SocketAddr,
    pub io: Server,
    records: mpsc::UnboundedReceiver<Record>,
    _stop: oneshot::Sender<()>,
}

pub(crate) async fn start(config: Config) -> TestServer {
    start_with(config, HttpLimits::default()).await
}

pub(crate) async fn start_with(config: Config, limits: HttpLimits) -> TestServer {
    let (tx, records) = mpsc::unbounded_channel();
    let io = Server::new(config, App { records: tx });
    let router = axum::Router::new().route_service("/socket.io/", io.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(ao_socketio::serve::serve(
        listener,
        router,
        limits,
        async move {
            let _ = stopped.await;
        },
    ));
    TestServer {
        addr,
        io,
        records,
        _stop: stop,
    }
}

impl TestServer {
    /// `http://…/socket.io/?<query>`
    pub(crate) fn url(&self, query: &str) -> String {
        format!("http://{}/socket.io/?{}", self.addr, query)
    }

    /// `ws://…/socket.io/?<query>`
    pub(crate) fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/socket.io/?{}", self.addr, query)
    }

    /// The next thing the application saw.
    pub(crate) async fn record(&mut self) -> Record {
        tokio::time::timeout(WAIT, self.records.recv())
            .await
            .expect("the application saw nothing in time")
            .expect("the application is gone")
    }

    /// The next event the application got (connects are skipped; a
    /// disconnect fails the test).
    pub(crate) async fn event(&mut self) -> (String, String, Vec<Bytes>) {
        loop {
            match self.record().await {
                Record::Connect { .. } => {}
                Record::Event {
                    name,
                    data,
                    attachments,
                    ..
                } => return (name, data, attachments),
                Record::Disconnect { reason, .. } => {
                    panic!("disconnected ({reason:?}) while waiting for an event")
                }
            }
        }
    }

    /// The reason of the next disconnect (connects and events are skipped).
    pub(crate) async fn disconnect_reason(&mut self) -> DisconnectReason {
        loop {
            if let Record::Disconnect { reason, .. } = self.record().await {
                return reason;
            }
        }
    }

    /// Everything recorded so far, without waiting.
    pub(crate) fn drain(&mut self) -> Vec<Record> {
        let mut out = Vec::new();
        while let Ok(r) = self.records.try_recv() {
            out.push(r);
        }
        out
    }

    /// Fails the test if any connection ended so far.
    pub(crate) fn assert_no_disconnect(&mut self) {
        for r in self.drain() {
            if let Record::Disconnect { reason, .. } = r {
                panic!("a connection ended: {reason:?}");
            }
        }
    }

    /// The one socket connected to the namespace (waits for it).
    pub(crate) async fn only_socket(&self) -> Socket {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut all = self.io.sockets();
            if all.len() == 1 {
                return all.pop().unwrap();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected exactly one socket, have {}",
                all.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the server holds `n` connections.
    pub(crate) async fn wait_connections(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.io.connections() != n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {n} connections, have {}",
                self.io.connections()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

// ---------------------------------------------------------------------------
// websocket client

pub(crate) type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A raw websocket client.
pub(crate) struct Ws {
    pub inner: WsStream,
}

impl Ws {
    pub(crate) async fn connect(url: &str) -> Ws {
        Ws::try_connect(url, None)
            .await
            .expect("websocket handshake")
    }

    /// The handshake, with an `Origin` header when given; the server's
    /// refusal comes back as `tungstenite::Error::Http`.
    pub(crate) async fn try_connect(
        url: &str,
        origin: Option<&str>,
    ) -> Result<Ws, tungstenite::Error> {
        let mut req = url.into_client_request()?;
        if let Some(origin) = origin {
            req.headers_mut()
                .insert("Origin", origin.parse().expect("origin header"));
        }
        let (inner, _res) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .expect("websocket handshake in time")?;
        Ok(Ws { inner })
    }

    /// engine.io 4: the open packet, `40` sent and `40{"sid"}` read.
    /// Gives the open packet's JSON and the socket id.
    pub(crate) async fn connect_v4(server: &TestServer) -> (Ws, Value, String) {
        let mut ws = Ws::connect(&server.ws_url("EIO=4&transport=websocket")).await;
        let connected = ws.handshake(Some("40")).await;
        let open = serde_json::from_str(&connected.open).expect("open packet JSON");
        (ws, open, connect_sid(&connected.answer))
    }

    /// engine.io 3: the open packet and the `40` the server sends unasked.
    pub(crate) async fn connect_v3(server: &TestServer) -> (Ws, Value) {
        let mut ws = Ws::connect(&server.ws_url("EIO=3&transport=websocket")).await;
        let connected = ws.handshake(None).await;
        assert_eq!(connected.answer, "40");
        let open = serde_json::from_str(&connected.open).expect("open packet JSON");
        (ws, open)
    }

    /// The opening sequence the project's raw clients share: the open
    /// packet, `connect` sent when given, the CONNECT answer read.
    pub(crate) async fn handshake(&mut self, connect: Option<&str>) -> handshake::Connected {
        tokio::time::timeout(2 * WAIT, handshake::connect(&mut self.inner, connect))
            .await
            .expect("socket.io handshake in time")
            .expect("socket.io handshake")
    }

    /// Reads the open packet `0{...}`.
    pub(crate) async fn open_packet(&mut self) -> Value {
        let text = self.text().await;
        let json = text
            .strip_prefix('0')
            .unwrap_or_else(|| panic!("not an open packet: {text:?}"));
        serde_json::from_str(json).expect("open packet JSON")
    }

    /// Reads `40{"sid":"..."}` and gives the sid.
    pub(crate) async fn connected_v5(&mut self) -> String {
        let text = self.text().await;
        connect_sid(&text)
    }

    pub(crate) async fn send(&mut self, text: &str) {
        self.inner
            .send(Message::text(text))
            .await
            .expect("websocket send");
    }

    pub(crate) async fn send_binary(&mut self, data: &[u8]) {
        self.inner
            .send(Message::binary(data.to_vec()))
            .await
            .expect("websocket send");
    }

    /// The next engine.io frame (websocket pings and pongs skipped), or
    /// `None` when the connection ended.
    pub(crate) async fn next_within(&mut self, within: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.inner.next())
                .await
                .expect("nothing came from the server in time");
            match msg {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(m)) => return Some(m),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The next frame; the connection must still be open.
    pub(crate) async fn recv(&mut self) -> Message {
        self.next_within(WAIT).await.expect("the connection ended")
    }

    /// The next frame, which must be text.
    pub(crate) async fn text(&mut self) -> String {
        match self.recv().await {
            Message::Text(t) => t.to_string(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next frame, which must be binary.
    pub(crate) async fn binary(&mut self) -> Vec<u8> {
        match self.recv().await {
            Message::Binary(b) => b.to_vec(),
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    /// Reads until the TCP connection ends (a close frame is read past);
    /// `true` if it ended within `within`, `false` if it was still open.
    pub(crate) async fn ends_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.inner.next()).await {
                Err(_) => return false,
                Ok(None | Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

/// The socket id of a protocol 5 connect packet `40{"sid":"..."}`.
pub(crate) fn connect_sid(text: &str) -> String {
    frame::connect_sid(text).unwrap_or_else(|e| panic!("not a connect packet {text:?}: {e}"))
}

// ---------------------------------------------------------------------------
// long-polling client

/// An HTTP client that uses no proxy.
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// A long-polling session.
pub(crate) struct Polling {
    pub http: reqwest::Client,
    pub addr: SocketAddr,
    /// 3 or 4.
    pub eio: u8,
    /// `EIO=...&transport=polling[&b64=1]`
    pub query: String,
    /// The engine.io session id.
    pub sid: String,
}

impl Polling {
    /// The handshake GET with `query` (`EIO=4`, `EIO=3&b64=1`, ...); gives
    /// the session, the open packet's JSON and the packets after it.
    pub(crate) async fn handshake(server: &TestServer, query: &str) -> (Polling, Value, Vec<Item>) {
        let http = http();
        let query = format!("{query}&transport=polling");
        let eio = if query.contains("EIO=4") { 4 } else { 3 };
        let res = http
            .get(server.url(&query))
            .send()
            .await
            .expect("handshake GET");
        assert_eq!(res.status(), 200, "handshake refused");
        let mut items = decode_response(eio, res).await;
        assert!(!items.is_empty(), "empty handshake answer");
        let open = items.remove(0);
        let json = open
            .text()
            .strip_prefix('0')
            .unwrap_or_else(|| panic!("not an open packet: {open:?}"));
        let open: Value = serde_json::from_str(json).expect("open packet JSON");
        let sid = open["sid"].as_str().expect("sid").to_owned();
        (
            Polling {
                http,
                addr: server.addr,
                eio,
                query,
                sid,
            },
            open,
            items,
        )
    }

    /// engine.io 4: the handshake, `40` posted and `40{"sid"}` polled.
    /// Gives the session and the socket id.
    pub(crate) async fn connect_v4(server: &TestServer) -> (Polling, String) {
        let (p, _, rest) = Polling::handshake(server, "EIO=4").await;
        assert!(rest.is_empty(), "more than the open packet: {rest:?}");
        p.post(&["40"]).await;
        let items = p.get().await;
        assert_eq!(items.len(), 1, "{items:?}");
        let sid = connect_sid(items[0].text());
        (p, sid)
    }

    /// engine.io 3: the handshake, whose answer carries `40` too.
    pub(crate) async fn connect_v3(server: &TestServer, query: &str) -> Polling {
        let (p, _, rest) = Polling::handshake(server, query).await;
        assert_eq!(rest, vec![Item::Text("40".into())]);
        p
    }

    pub(crate) fn url(&self) -> String {
        format!(
            "http://{}/socket.io/?{}&sid={}",
            self.addr, self.query, self.sid
        )
    }

    /// The websocket URL that upgrades this session.
    pub(crate) fn ws_url(&self) -> String {
        format!(
            "ws://{}/socket.io/?EIO={}&transport=websocket&sid={}",
            self.addr, self.eio, self.sid
        )
    }

    pub(crate) async fn get_raw(&self) -> reqwest::Response {
        self.http.get(self.url()).send().await.expect("GET")
    }

    /// A long-poll; it must succeed.
    pub(crate) async fn get(&self) -> Vec<Item> {
        let res = self.get_raw().await;
        assert_eq!(res.status(), 200, "poll refused");
        decode_response(self.eio, res).await
    }

    /// Posts `packets` as one payload; it must succeed.
    pub(crate) async fn post(&self, packets: &[&str]) {
        let res = self.post_raw(encode_payload(self.eio, packets)).await;
        assert_eq!(res.status(), 200, "POST refused");
        assert_eq!(res.text().await.unwrap(), "ok");
    }

    pub(crate) async fn post_raw(&self, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(self.url())
            .header("Content-Type", "text/plain;charset=UTF-8")
            .body(body)
            .send()
            .await
            .expect("POST")
    }
}

/// The packets of a polling answer.
pub(crate) async fn decode_response(eio: u8, res: reqwest::Response) -> Vec<Item> {
    let binary = res
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/octet-stream"));
    let body = res.bytes().await.expect("polling body");
    payload::decode(generation(eio), binary, &body)
        .unwrap_or_else(|e| panic!("polling payload {body:?}: {e}"))
}

/// `\x1e`-separated packets, binary ones as `b<base64>`.
pub(crate) fn decode_v4(body: &[u8]) -> Vec<Item> {
    payload::decode_v4(body).unwrap_or_else(|e| panic!("engine.io 4 payload {body:?}: {e}"))
}

/// `<length>:<packet>`, lengths in UTF-16 code units; binary packets as
/// `b4<base64>`.
pub(crate) fn decode_v3_text(body: &[u8]) -> Vec<Item> {
    payload::decode_v3_text(body)
        .unwrap_or_else(|e| panic!("engine.io 3 text payload {body:?}: {e}"))
}

/// engine.io 3 binary payload: kind byte (0 text, 1 binary), the length's
/// decimal digits as byte values, 255, the packet (binary as 4 + bytes).
pub(crate) fn decode_v3_binary(body: &[u8]) -> Vec<Item> {
    payload::decode_v3_binary(body)
        .unwrap_or_else(|e| panic!("engine.io 3 binary payload {body:?}: {e}"))
}

/// A text payload of `packets` for a POST.
pub(crate) fn encode_payload(eio: u8, packets: &[&str]) -> Vec<u8> {
    payload::encode_text(generation(eio), packets)
}

/// The generation of `EIO=eio` (3 or 4).
fn generation(eio: u8) -> Eio {
    if eio == 4 {
        Eio::V4
    } else {
        Eio::V3
    }
}

/// The JSON of an engine.io error answer.
pub(crate) async fn error_body(res: reqwest::Response) -> Value {
    let text = res.text().await.expect("error body");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not a JSON error: {text:?}"))
}
