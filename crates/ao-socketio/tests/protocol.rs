//! The behaviours the official engine.io and socket.io protocol suites
//! check (conformance/run runs the suites themselves where they are
//! available), written here from the protocol documents for engine.io 4 /
//! socket.io 5 and their engine.io 3 / socket.io 4 equivalents, against a
//! server like examples/conformance.rs: an engine.io echo server and a
//! socket.io server with the namespaces `/` and `/custom`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use ao_socketio::engine::Message as EngineMessage;
use ao_socketio::serve::HttpLimits;
use ao_socketio::{
    Config, Connect, Connector, DisconnectReason, EngineHandler, EngineSocket, Event, Handler,
    Server, Socket,
};
use support::{decode_response, encode_payload, http, Item, Ws};
use tokio_tungstenite::tungstenite::Message;

struct Echo;

impl EngineHandler for Echo {
    fn message(&self, socket: &EngineSocket, message: EngineMessage) {
        let _ = socket.send(message);
    }
}

struct Suite;

impl Connector for Suite {
    fn connect(&self, socket: &Socket, auth: Option<&str>) -> Connect {
        // Sent before the connect is answered: it must follow the answer.
        let _ = socket.emit_raw("auth", auth.unwrap_or("{}"), Vec::new());
        Connect::Accept(Box::new(Suite))
    }
}

impl Handler for Suite {
    fn event(&self, socket: &Socket, event: Event<'_>) {
        match (&*event.name, event.ack) {
            ("message", _) => {
                let _ = socket.emit_raw("message-back", event.args, event.attachments);
            }
            ("message-with-ack", Some(ack)) => {
                let _ = ack.send_raw(event.args, event.attachments);
            }
            _ => {}
        }
    }

    fn disconnect(&self, _: &Socket, _: DisconnectReason) {}
}

/// Starts the suites' server on 127.0.0.1:0; gives its address.
async fn start() -> SocketAddr {
    let config = Config::builder()
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(1000))
        .build();
    let engine = Server::engine(config.clone(), Echo);
    let io = Server::builder(config)
        .namespace("/", Suite)
        .namespace("/custom", Suite)
        .build();
    let app = axum::Router::new()
        .route_service("/engine.io/", engine)
        .route_service("/socket.io/", io);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(ao_socketio::serve::serve(
        listener,
        app,
        HttpLimits::default(),
        std::future::pending(),
    ));
    addr
}

fn url(addr: SocketAddr, path: &str, query: &str) -> String {
    format!("http://{addr}/{path}/?{query}")
}

fn ws_url(addr: SocketAddr, path: &str, query: &str) -> String {
    format!("ws://{addr}/{path}/?{query}")
}

/// Opens a polling session; gives its sid.
async fn polling_session(addr: SocketAddr, path: &str, eio: u8) -> String {
    let res = http()
        .get(url(addr, path, &format!("EIO={eio}&transport=polling")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let items = decode_response(eio, res).await;
    let open: serde_json::Value =
        serde_json::from_str(items[0].text().strip_prefix('0').unwrap()).unwrap();
    open["sid"].as_str().unwrap().to_owned()
}

async fn poll(addr: SocketAddr, path: &str, eio: u8, sid: &str) -> reqwest::Response {
    http()
        .get(url(
            addr,
            path,
            &format!("EIO={eio}&transport=polling&sid={sid}"),
        ))
        .send()
        .await
        .unwrap()
}

async fn post(
    addr: SocketAddr,
    path: &str,
    eio: u8,
    sid: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    http()
        .post(url(
            addr,
            path,
            &format!("EIO={eio}&transport=polling&sid={sid}"),
        ))
        .header("Content-Type", "text/plain;charset=UTF-8")
        .body(body)
        .send()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------
// engine.io: handshake

#[tokio::test]
async fn handshakes_are_refused_without_a_known_revision_or_transport() {
    let addr = start().await;
    for query in [
        "EIO=abc&transport=polling",
        "EIO=5&transport=polling",
        "EIO=4",
        "EIO=4&transport=abc",
        "EIO=3&transport=abc",
    ] {
        let res = http()
            .get(url(addr, "engine.io", query))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{query}");
    }
    for method in [reqwest::Method::POST, reqwest::Method::PUT] {
        for eio in [3, 4] {
            let res = http()
                .request(
                    method.clone(),
                    url(addr, "engine.io", &format!("EIO={eio}&transport=polling")),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 400, "{method} EIO={eio}");
        }
    }
    // No EIO: engine.io 3 unless the server refuses it (`allow_eio3`).
    let res = http()
        .get(url(addr, "engine.io", "transport=polling"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let strict = Server::engine(Config::builder().allow_eio3(false).build(), Echo);
    let req = ::http::Request::get("/engine.io/?transport=polling")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(strict.handle(req).await.status(), 400);
}

#[tokio::test]
async fn the_open_packet_tells_the_heartbeat_and_upgrades() {
    let addr = start().await;
    for eio in [3, 4] {
        let mut ws = Ws::connect(&ws_url(
            addr,
            "engine.io",
            &format!("EIO={eio}&transport=websocket"),
        ))
        .await;
        let open = ws.open_packet().await;
        assert_eq!(open["upgrades"], serde_json::json!([]));
        assert_eq!(open["pingInterval"], 300);
        assert_eq!(open["pingTimeout"], 200);
        assert_eq!(open.get("maxPayload").is_some(), eio == 4);
        let res = http()
            .get(url(
                addr,
                "engine.io",
                &format!("EIO={eio}&transport=polling"),
            ))
            .send()
            .await
            .unwrap();
        let items = decode_response(eio, res).await;
        let open: serde_json::Value =
            serde_json::from_str(items[0].text().strip_prefix('0').unwrap()).unwrap();
        assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
    }
}

// ---------------------------------------------------------------------------
// engine.io: messages

#[tokio::test]
async fn engine_messages_echo_over_polling() {
    let addr = start().await;
    let sid = polling_session(addr, "engine.io", 4).await;
    let res = post(
        addr,
        "engine.io",
        4,
        &sid,
        b"4hello\x1e4test2\x1ebAQIDBA==".to_vec(),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "ok");
    let res = poll(addr, "engine.io", 4, &sid).await;
    assert_eq!(res.text().await.unwrap(), "4hello\x1e4test2\x1ebAQIDBA==");

    let sid = polling_session(addr, "engine.io", 3).await;
    let res = post(
        addr,
        "engine.io",
        3,
        &sid,
        encode_payload(3, &["4hello", "4é"]),
    )
    .await;
    assert_eq!(res.status(), 200);
    let items = decode_response(3, poll(addr, "engine.io", 3, &sid).await).await;
    assert_eq!(
        items,
        vec![Item::Text("4hello".into()), Item::Text("4é".into())]
    );
}

#[tokio::test]
async fn engine_messages_echo_over_websockets() {
    let addr = start().await;
    let mut ws = Ws::connect(&ws_url(addr, "engine.io", "EIO=4&transport=websocket")).await;
    ws.open_packet().await;
    ws.send("4hello").await;
    assert_eq!(ws.text().await, "4hello");
    ws.send_binary(&[1, 2, 3, 4]).await;
    assert_eq!(ws.binary().await, vec![1, 2, 3, 4]);

    // engine.io 3: binary messages carry the message type byte.
    let mut ws = Ws::connect(&ws_url(addr, "engine.io", "EIO=3&transport=websocket")).await;
    ws.open_packet().await;
    ws.send("4hello").await;
    assert_eq!(ws.text().await, "4hello");
    ws.send_binary(&[4, 1, 2, 3]).await;
    assert_eq!(ws.binary().await, vec![4, 1, 2, 3]);
}

#[tokio::test]
async fn an_invalid_packet_closes_the_session() {
    let addr = start().await;
    for eio in [3, 4] {
        let sid = polling_session(addr, "engine.io", eio).await;
        let res = post(addr, "engine.io", eio, &sid, b"abc".to_vec()).await;
        assert_eq!(res.status(), 400);
        assert_eq!(poll(addr, "engine.io", eio, &sid).await.status(), 400);

        let mut ws = Ws::connect(&ws_url(
            addr,
            "engine.io",
            &format!("EIO={eio}&transport=websocket"),
        ))
        .await;
        ws.open_packet().await;
        ws.send("abc").await;
        assert!(ws.ends_within(support::WAIT).await);
    }
}

#[tokio::test]
async fn two_polls_at_once_close_the_session() {
    let addr = start().await;
    let sid = polling_session(addr, "engine.io", 4).await;
    let waiting = {
        let sid = sid.clone();
        tokio::spawn(async move { poll(addr, "engine.io", 4, &sid).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(poll(addr, "engine.io", 4, &sid).await.status(), 400);
    let first = waiting.await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.text().await.unwrap(), "1");
    assert_eq!(poll(addr, "engine.io", 4, &sid).await.status(), 400);
}

// ---------------------------------------------------------------------------
// engine.io: heartbeat and close

#[tokio::test]
async fn eio4_pings_and_closes_on_a_missing_pong() {
    let addr = start().await;
    let sid = polling_session(addr, "engine.io", 4).await;
    for _ in 0..3 {
        let res = poll(addr, "engine.io", 4, &sid).await;
        assert_eq!(res.text().await.unwrap(), "2");
        assert_eq!(
            post(addr, "engine.io", 4, &sid, b"3".to_vec())
                .await
                .status(),
            200
        );
    }
    let sid = polling_session(addr, "engine.io", 4).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(poll(addr, "engine.io", 4, &sid).await.status(), 400);

    let mut ws = Ws::connect(&ws_url(addr, "engine.io", "EIO=4&transport=websocket")).await;
    ws.open_packet().await;
    for _ in 0..3 {
        assert_eq!(ws.text().await, "2");
        ws.send("3").await;
    }
    assert!(ws.ends_within(Duration::from_secs(2)).await);
}

#[tokio::test]
async fn eio3_answers_pings_and_closes_on_silence() {
    let addr = start().await;
    let mut ws = Ws::connect(&ws_url(addr, "engine.io", "EIO=3&transport=websocket")).await;
    ws.open_packet().await;
    for _ in 0..3 {
        ws.send("2").await;
        assert_eq!(ws.text().await, "3");
    }
    // Silent past interval + timeout: closed.
    assert!(ws.ends_within(Duration::from_secs(2)).await);
}

#[tokio::test]
async fn a_close_over_polling_answers_the_waiting_poll_with_a_noop() {
    let addr = start().await;
    for eio in [3, 4] {
        let sid = polling_session(addr, "engine.io", eio).await;
        let waiting = {
            let sid = sid.clone();
            tokio::spawn(async move { poll(addr, "engine.io", eio, &sid).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let res = post(addr, "engine.io", eio, &sid, encode_payload(eio, &["1"])).await;
        assert_eq!(res.status(), 200);
        let items = decode_response(eio, waiting.await.unwrap()).await;
        assert_eq!(items, vec![Item::Text("6".into())], "EIO={eio}");
        assert_eq!(poll(addr, "engine.io", eio, &sid).await.status(), 400);

        let mut ws = Ws::connect(&ws_url(
            addr,
            "engine.io",
            &format!("EIO={eio}&transport=websocket"),
        ))
        .await;
        ws.open_packet().await;
        ws.send("1").await;
        assert!(ws.ends_within(support::WAIT).await);
    }
}

#[tokio::test]
async fn a_poll_that_crosses_the_close_over_polling_is_answered_with_a_noop() {
    let addr = start().await;
    for eio in [3, 4] {
        // The close reaches the server before the poll sent with it.
        let sid = polling_session(addr, "engine.io", eio).await;
        let res = post(addr, "engine.io", eio, &sid, encode_payload(eio, &["1"])).await;
        assert_eq!(res.status(), 200);
        let items = decode_response(eio, poll(addr, "engine.io", eio, &sid).await).await;
        assert_eq!(items, vec![Item::Text("6".into())], "EIO={eio}");
        assert_eq!(poll(addr, "engine.io", eio, &sid).await.status(), 400);

        // No poll comes: the session is gone shortly after the close.
        let sid = polling_session(addr, "engine.io", eio).await;
        let res = post(addr, "engine.io", eio, &sid, encode_payload(eio, &["1"])).await;
        assert_eq!(res.status(), 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            poll(addr, "engine.io", eio, &sid).await.status(),
            400,
            "EIO={eio}"
        );
    }
}

// ---------------------------------------------------------------------------
// engine.io: upgrade

#[tokio::test]
async fn a_poll_made_after_the_websocket_opened_crosses_the_upgrade() {
    let addr = start().await;
    for eio in [3, 4] {
        // The poll reaches the server before the probe sent ahead of it:
        // it is not a poll waiting at the probe (answered with a noop) but
        // one crossing the upgrade, refused once the upgrade is in.
        let sid = polling_session(addr, "engine.io", eio).await;
        let query = format!("EIO={eio}&transport=websocket&sid={sid}");
        let mut ws = Ws::connect(&ws_url(addr, "engine.io", &query)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let crossing = {
            let sid = sid.clone();
            tokio::spawn(async move { poll(addr, "engine.io", eio, &sid).await.status() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        ws.send("2probe").await;
        assert_eq!(ws.text().await, "3probe");
        ws.send("5").await;
        assert_eq!(crossing.await.unwrap(), 400, "EIO={eio}");
        ws.send("4hello").await;
        assert_eq!(ws.text().await, "4hello");
    }
}

#[tokio::test]
async fn an_upgraded_session_refuses_polls_and_other_websockets() {
    let addr = start().await;
    for eio in [3, 4] {
        let sid = polling_session(addr, "engine.io", eio).await;
        let query = format!("EIO={eio}&transport=websocket&sid={sid}");
        let mut ws = Ws::connect(&ws_url(addr, "engine.io", &query)).await;
        ws.send("2probe").await;
        assert_eq!(ws.text().await, "3probe");
        let items = decode_response(eio, poll(addr, "engine.io", eio, &sid).await).await;
        assert_eq!(items, vec![Item::Text("6".into())]);
        ws.send("5").await;
        ws.send("4hello").await;
        assert_eq!(ws.text().await, "4hello");

        assert_eq!(poll(addr, "engine.io", eio, &sid).await.status(), 400);
        // A second websocket completes its handshake and is closed.
        let mut second = Ws::connect(&ws_url(addr, "engine.io", &query)).await;
        assert!(second.ends_within(support::WAIT).await);
        ws.send("4still").await;
        assert_eq!(ws.text().await, "4still");
    }
}

// ---------------------------------------------------------------------------
// socket.io: connect

async fn sio_v5() -> (SocketAddr, Ws) {
    let addr = start().await;
    let mut ws = Ws::connect(&ws_url(addr, "socket.io", "EIO=4&transport=websocket")).await;
    ws.open_packet().await;
    (addr, ws)
}

#[tokio::test]
async fn v5_connects_to_namespaces_with_their_payload_before_any_emit() {
    let (_, mut ws) = sio_v5().await;
    ws.send(r#"40{"token":"123"}"#).await;
    support::connect_sid(&ws.text().await);
    assert_eq!(ws.text().await, r#"42["auth",{"token":"123"}]"#);

    ws.send("40/custom,").await;
    let text = ws.text().await;
    let json = text.strip_prefix("40/custom,").expect("the custom connect");
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert!(v["sid"].is_string());
    assert_eq!(ws.text().await, r#"42/custom,["auth",{}]"#);

    ws.send("40/random").await;
    assert_eq!(
        ws.text().await,
        r#"44/random,{"message":"Invalid namespace"}"#
    );

    // Leaving /custom leaves / connected.
    ws.send("41/custom").await;
    ws.send(r#"42["message","to main"]"#).await;
    assert_eq!(ws.text().await, r#"42["message-back","to main"]"#);
    // Leaving / keeps the session: the next frame is the server's ping.
    ws.send("41").await;
    assert_eq!(ws.text().await, "2");
}

#[tokio::test]
async fn v4_connects_to_slash_at_once_and_to_other_namespaces_when_asked() {
    let addr = start().await;
    let mut ws = Ws::connect(&ws_url(addr, "socket.io", "EIO=3&transport=websocket")).await;
    ws.open_packet().await;
    assert_eq!(ws.text().await, "40");
    assert_eq!(ws.text().await, r#"42["auth",{}]"#);
    ws.send("40/custom?x=1").await;
    assert_eq!(ws.text().await, "40/custom,");
    assert_eq!(ws.text().await, r#"42/custom,["auth",{}]"#);
    ws.send("40/random").await;
    assert_eq!(ws.text().await, r#"44/random,"Invalid namespace""#);
    ws.send(r#"42/custom,["message",1]"#).await;
    assert_eq!(ws.text().await, r#"42/custom,["message-back",1]"#);
}

#[tokio::test]
async fn no_connect_within_the_timeout_closes_the_session() {
    let (_, mut ws) = sio_v5().await;
    // The client answers pings, so only the connect timeout ends it.
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match ws.next_within(Duration::from_secs(3)).await {
                Some(Message::Text(t)) if t.as_str() == "2" => ws.send("3").await,
                Some(_) => {}
                None => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "still open after the connect timeout");
}

#[tokio::test]
async fn an_invalid_connect_closes_the_session() {
    for bad in ["4abc", "40[1]", r#"40"x""#] {
        let (_, mut ws) = sio_v5().await;
        ws.send(bad).await;
        assert!(ws.ends_within(support::WAIT).await, "{bad:?}");
    }
}

// ---------------------------------------------------------------------------
// socket.io: events and acks

#[tokio::test]
async fn events_and_acks_carry_every_argument_and_attachment() {
    for eio in [3u8, 4] {
        let addr = start().await;
        let mut ws = Ws::connect(&ws_url(
            addr,
            "socket.io",
            &format!("EIO={eio}&transport=websocket"),
        ))
        .await;
        ws.open_packet().await;
        if eio == 4 {
            ws.send("40").await;
        }
        ws.text().await;
        assert_eq!(ws.text().await, r#"42["auth",{}]"#);
        let typed = |data: &[u8]| -> Vec<u8> {
            if eio == 3 {
                [&[4u8][..], data].concat()
            } else {
                data.to_vec()
            }
        };

        ws.send(r#"42["message",1,"2",{"3":[true]}]"#).await;
        assert_eq!(ws.text().await, r#"42["message-back",1,"2",{"3":[true]}]"#);
        ws.send(r#"42456["message-with-ack",1,"2",{"3":[false]}]"#)
            .await;
        assert_eq!(ws.text().await, r#"43456[1,"2",{"3":[false]}]"#);

        ws.send(r#"452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
            .await;
        ws.send_binary(&typed(&[1, 2, 3])).await;
        ws.send_binary(&typed(&[4, 5, 6])).await;
        assert_eq!(
            ws.text().await,
            r#"452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );
        assert_eq!(ws.binary().await, typed(&[1, 2, 3]));
        assert_eq!(ws.binary().await, typed(&[4, 5, 6]));

        ws.send(r#"452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
            .await;
        ws.send_binary(&typed(&[1, 2, 3])).await;
        ws.send_binary(&typed(&[4, 5, 6])).await;
        assert_eq!(
            ws.text().await,
            r#"462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );
        assert_eq!(ws.binary().await, typed(&[1, 2, 3]));
        assert_eq!(ws.binary().await, typed(&[4, 5, 6]));
    }
}

#[tokio::test]
async fn malformed_event_data_closes_the_connection() {
    for eio in [3u8, 4] {
        for bad in [
            "42{}",
            r#"42abc["message-with-ack",1]"#,
            "42[1]",
            "43{}",
            "4abc",
        ] {
            let addr = start().await;
            let mut ws = Ws::connect(&ws_url(
                addr,
                "socket.io",
                &format!("EIO={eio}&transport=websocket"),
            ))
            .await;
            ws.open_packet().await;
            if eio == 4 {
                ws.send("40").await;
            }
            ws.text().await;
            ws.text().await;
            ws.send(bad).await;
            assert!(ws.ends_within(support::WAIT).await, "EIO={eio} {bad:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// deferred connects

/// Defers every connect; answers by the `auth` payload's `answer`:
/// `accept`, `refuse`, or nothing.
struct Deferring;

impl Connector for Deferring {
    fn connect(&self, socket: &Socket, auth: Option<&str>) -> Connect {
        let _ = socket.emit("early", &1);
        let auth: serde_json::Value = auth
            .and_then(|a| serde_json::from_str(a).ok())
            .unwrap_or_default();
        let socket = socket.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            match auth["answer"].as_str() {
                Some("accept") => socket.accept(),
                Some("refuse") => socket.refuse(&ao_socketio::ConnectError {
                    message: "no".into(),
                    data: Some(serde_json::json!({"why": 1})),
                }),
                _ => {}
            }
        });
        Connect::Defer(Box::new(Suite))
    }
}

async fn start_deferring() -> SocketAddr {
    let config = Config::builder()
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(700))
        .build();
    let io = Server::new(config, Deferring);
    let app = axum::Router::new().route_service("/socket.io/", io);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(ao_socketio::serve::serve(
        listener,
        app,
        HttpLimits::default(),
        std::future::pending(),
    ));
    addr
}

#[tokio::test]
async fn a_deferred_connect_is_answered_later_and_what_was_sent_follows_it() {
    let addr = start_deferring().await;
    let mut ws = Ws::connect(&ws_url(addr, "socket.io", "EIO=4&transport=websocket")).await;
    ws.open_packet().await;
    ws.send(r#"40{"answer":"accept"}"#).await;
    support::connect_sid(&ws.text().await);
    assert_eq!(ws.text().await, r#"42["early",1]"#);

    let mut ws = Ws::connect(&ws_url(addr, "socket.io", "EIO=4&transport=websocket")).await;
    ws.open_packet().await;
    ws.send(r#"40{"answer":"refuse"}"#).await;
    assert_eq!(ws.text().await, r#"44{"message":"no","data":{"why":1}}"#);
}

#[tokio::test]
async fn a_connect_never_answered_closes_at_the_connect_timeout() {
    let addr = start_deferring().await;
    let mut ws = Ws::connect(&ws_url(addr, "socket.io", "EIO=4&transport=websocket")).await;
    ws.open_packet().await;
    ws.send("40").await;
    // The client answers pings: only the connect timeout ends it.
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match ws.next_within(Duration::from_secs(3)).await {
                Some(Message::Text(t)) if t.as_str() == "2" => ws.send("3").await,
                Some(Message::Text(t)) => panic!("unexpected {t}"),
                Some(_) => {}
                None => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "still open after the connect timeout");
}
