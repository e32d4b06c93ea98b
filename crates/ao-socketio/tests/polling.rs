//! HTTP long-polling over a real listener: payloads of engine.io 3 and 4
//! both ways, acks, binary, the upgrade to a websocket, and the server's
//! disconnect.

mod support;

use std::time::Duration;

use ao_socketio::engine::Frame;
use ao_socketio::{Config, DisconnectReason};
use bytes::Bytes;
use support::{error_body, Item, Polling, TestServer, Ws};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn eio4_polling_handshake_connect_events_and_acks() {
    let mut server = support::start(Config::default()).await;
    let (p, open, rest) = Polling::handshake(&server, "EIO=4").await;
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(open["maxPayload"], 1_000_000);
    p.post(&["40"]).await;
    let items = p.get().await;
    assert_eq!(items.len(), 1, "{items:?}");
    let socket_id = support::connect_sid(items[0].text());
    assert_ne!(socket_id, p.sid);

    // Two events in one payload, handed on in order, echoed back.
    p.post(&[r#"42["echo","a"]"#, r#"42["echo","b"]"#]).await;
    assert_eq!(server.event().await.1, r#"["echo","a"]"#);
    assert_eq!(server.event().await.1, r#"["echo","b"]"#);
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(p.get().await);
    }
    assert_eq!(
        got,
        vec![
            Item::Text(r#"42["echo","a"]"#.into()),
            Item::Text(r#"42["echo","b"]"#.into())
        ]
    );

    // The server answers the client's ack.
    p.post(&[r#"427["echo",{"x":1}]"#]).await;
    assert_eq!(p.get().await, vec![Item::Text(r#"437[{"x":1}]"#.into())]);

    // The client answers the server's.
    let socket = server.only_socket().await;
    let asking = tokio::spawn(async move { socket.emit_with_ack("ask", &5).await });
    let items = p.get().await;
    assert_eq!(items.len(), 1, "{items:?}");
    let text = items[0].text();
    let id: String = text
        .strip_prefix("42")
        .unwrap()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert_eq!(text, format!(r#"42{id}["ask",5]"#));
    p.post(&[&format!(r#"43{id}["yes"]"#)]).await;
    let reply = tokio::time::timeout(support::WAIT, asking)
        .await
        .unwrap()
        .unwrap()
        .expect("the ack");
    assert_eq!(reply.data, r#"["yes"]"#);
}

#[tokio::test]
async fn eio3_polling_lengths_count_utf16_units() {
    let mut server = support::start(Config::default()).await;
    let p = Polling::connect_v3(&server, "EIO=3").await;
    // "é😀": 2 UTF-16 units where UTF-8 has 6 bytes... 3 with é.
    let packet = r#"42["echo","é😀"]"#;
    assert_ne!(packet.encode_utf16().count(), packet.len());
    let other = r#"42["echo","plain"]"#;
    p.post(&[packet, other]).await;
    assert_eq!(server.event().await.1, r#"["echo","é😀"]"#);
    assert_eq!(server.event().await.1, r#"["echo","plain"]"#);
    let mut got = Vec::new();
    while got.len() < 2 {
        let res = p.get_raw().await;
        assert_eq!(res.status(), 200);
        let body = res.bytes().await.unwrap();
        // Exactly the UTF-16 lengths the reference client reads.
        let text = std::str::from_utf8(&body).unwrap();
        if text.contains("é😀") {
            assert!(
                text.starts_with(&format!("{}:", packet.encode_utf16().count())),
                "{text:?}"
            );
        }
        got.extend(support::decode_v3_text(&body));
    }
    assert_eq!(
        got,
        vec![Item::Text(packet.into()), Item::Text(other.into())]
    );
}

/// A binary event from the server: the header, then the attachment.
fn send_binary_event(socket: &ao_socketio::Socket, data: &'static [u8]) {
    socket
        .send_frame(Frame::Text(Bytes::from_static(
            br#"451-["bin",{"_placeholder":true,"num":0}]"#,
        )))
        .unwrap();
    socket
        .send_frame(Frame::Binary(Bytes::from_static(data)))
        .unwrap();
}

#[tokio::test]
async fn eio3_polling_b64_gets_binary_as_base64() {
    let server = support::start(Config::default()).await;
    let p = Polling::connect_v3(&server, "EIO=3&b64=1").await;
    let socket = server.only_socket().await;
    send_binary_event(&socket, &[1, 2, 3, 255]);
    let mut got = Vec::new();
    while got.len() < 2 {
        let res = p.get_raw().await;
        assert_eq!(res.status(), 200);
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/plain"), "{ct}");
        let body = res.bytes().await.unwrap();
        if got.is_empty() {
            let text = std::str::from_utf8(&body).unwrap();
            assert!(text.contains(":b4AQID/w=="), "{text:?}");
        }
        got.extend(support::decode_v3_text(&body));
    }
    assert_eq!(
        got,
        vec![
            Item::Text(r#"451-["bin",{"_placeholder":true,"num":0}]"#.into()),
            Item::Binary(vec![1, 2, 3, 255]),
        ]
    );
}

#[tokio::test]
async fn eio3_polling_without_b64_gets_a_binary_payload() {
    let server = support::start(Config::default()).await;
    let p = Polling::connect_v3(&server, "EIO=3").await;
    let socket = server.only_socket().await;
    send_binary_event(&socket, &[0, 1, 2, 3, 255]);
    let mut got = Vec::new();
    let mut saw_octets = false;
    while got.len() < 2 {
        let res = p.get_raw().await;
        assert_eq!(res.status(), 200);
        saw_octets |= res.headers()["content-type"] == "application/octet-stream";
        got.extend(support::decode_response(3, res).await);
    }
    assert!(saw_octets, "the binary packet was not in a binary payload");
    assert_eq!(
        got,
        vec![
            Item::Text(r#"451-["bin",{"_placeholder":true,"num":0}]"#.into()),
            Item::Binary(vec![0, 1, 2, 3, 255]),
        ]
    );
}

#[tokio::test]
async fn eio4_polling_binary_is_base64_in_the_text_payload() {
    let server = support::start(Config::default()).await;
    let (p, _) = Polling::connect_v4(&server).await;
    let socket = server.only_socket().await;
    send_binary_event(&socket, &[1, 2, 3, 255]);
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(p.get().await);
    }
    assert_eq!(
        got,
        vec![
            Item::Text(r#"451-["bin",{"_placeholder":true,"num":0}]"#.into()),
            Item::Binary(vec![1, 2, 3, 255]),
        ]
    );
}

#[tokio::test]
async fn eio3_polling_binary_post_with_an_attachment() {
    let mut server = support::start(Config::default()).await;
    let p = Polling::connect_v3(&server, "EIO=3").await;
    // A client without b64: its binary payload, a header and its attachment.
    let header = r#"451-["up",{"_placeholder":true,"num":0}]"#;
    let mut body = vec![0u8];
    body.extend(header.len().to_string().bytes().map(|d| d - b'0'));
    body.push(255);
    body.extend_from_slice(header.as_bytes());
    body.extend_from_slice(&[1, 4, 255, 4, 7, 8, 9]);
    let res = p
        .http
        .post(p.url())
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (name, _, attachments) = server.event().await;
    assert_eq!(name, "up");
    assert_eq!(attachments, vec![Bytes::from_static(&[7, 8, 9])]);
    // And with b64=1 framing in a text payload.
    p.post(&[header, "b4AQID"]).await;
    let (name, _, attachments) = server.event().await;
    assert_eq!(name, "up");
    assert_eq!(attachments, vec![Bytes::from_static(&[1, 2, 3])]);
}

// ---------------------------------------------------------------------------
// heartbeats over polling

fn fast_heartbeat() -> Config {
    Config::builder()
        .ping_interval(Duration::from_millis(200))
        .ping_timeout(Duration::from_millis(200))
        .build()
}

#[tokio::test]
async fn eio4_a_polling_client_that_answers_pings_stays() {
    let mut server = support::start(fast_heartbeat()).await;
    let (p, _) = Polling::connect_v4(&server).await;
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    let mut pings = 0;
    while tokio::time::Instant::now() < until {
        for item in p.get().await {
            assert_eq!(item.text(), "2");
            pings += 1;
            p.post(&["3"]).await;
        }
    }
    assert!(pings >= 3, "only {pings} pings in 1.5 s");
    server.assert_no_disconnect();
    p.post(&[r#"42["echo","alive"]"#]).await;
    let mut items = p.get().await;
    while items == vec![Item::Text("2".into())] {
        p.post(&["3"]).await;
        items = p.get().await;
    }
    assert!(
        items.contains(&Item::Text(r#"42["echo","alive"]"#.into())),
        "{items:?}"
    );
}

#[tokio::test]
async fn eio4_a_polling_client_that_never_answers_times_out() {
    let mut server = support::start(fast_heartbeat()).await;
    let (p, _) = Polling::connect_v4(&server).await;
    assert_eq!(p.get().await, vec![Item::Text("2".into())]);
    assert_eq!(
        server.disconnect_reason().await,
        DisconnectReason::PingTimeout
    );
    gone(&p).await;
}

#[tokio::test]
async fn eio3_a_polling_client_that_pings_stays() {
    let mut server = support::start(fast_heartbeat()).await;
    let p = Polling::connect_v3(&server, "EIO=3").await;
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < until {
        p.post(&["2"]).await;
        assert_eq!(p.get().await, vec![Item::Text("3".into())]);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    server.assert_no_disconnect();
}

#[tokio::test]
async fn eio3_a_polling_client_that_never_pings_times_out() {
    let mut server = support::start(fast_heartbeat()).await;
    let p = Polling::connect_v3(&server, "EIO=3").await;
    assert_eq!(
        server.disconnect_reason().await,
        DisconnectReason::PingTimeout
    );
    gone(&p).await;
}

// ---------------------------------------------------------------------------
// the upgrade

/// Polling, then the upgrade of a real client: the probe while a poll is
/// pending (answered with a noop), polling paused, `5`. The server emits
/// `n` events all along: each must arrive once, in order, over one
/// transport or the other.
async fn upgrade(eio: u8) {
    const N: u64 = 100;
    let mut server = support::start(Config::default()).await;
    let p = match eio {
        4 => Polling::connect_v4(&server).await.0,
        _ => Polling::connect_v3(&server, "EIO=3").await,
    };
    let socket = server.only_socket().await;
    let mut received: Vec<String> = Vec::new();

    // A poll waits; the probe makes it answer with a noop.
    let pending = {
        let url = p.url();
        let http = p.http.clone();
        tokio::spawn(async move { http.get(url).send().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut ws = Ws::connect(&p.ws_url()).await;
    ws.send("2probe").await;
    assert_eq!(ws.text().await, "3probe");
    let res = tokio::time::timeout(support::WAIT, pending)
        .await
        .expect("the pending poll answered")
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        support::decode_response(eio, res).await,
        vec![Item::Text("6".into())]
    );

    // The server emits all through the rest of the upgrade.
    let emitter = {
        let socket = socket.clone();
        tokio::spawn(async move {
            for i in 0..N {
                socket.emit("n", &i).unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    // One more poll during the probe: it answers at once.
    for item in p.get().await {
        received.push(item.text().to_owned());
    }
    ws.send("5").await;
    // Over the websocket from now on.
    let count = |received: &Vec<String>| received.iter().filter(|t| *t != "6").count() as u64;
    while count(&received) < N {
        match ws.recv().await {
            Message::Text(t) => received.push(t.to_string()),
            other => panic!("unexpected {other:?}"),
        }
    }
    emitter.await.unwrap();
    let events: Vec<&String> = received.iter().filter(|t| *t != "6").collect();
    let expected: Vec<String> = (0..N).map(|i| format!(r#"42["n",{i}]"#)).collect();
    assert_eq!(events, expected.iter().collect::<Vec<_>>());
    // Nothing more (no duplicates) arrives.
    socket.emit("last", &0).unwrap();
    assert_eq!(ws.text().await, r#"42["last",0]"#);

    // The session is the websocket's now.
    let res = p.get_raw().await;
    assert_eq!(res.status(), 400);
    assert_eq!(socket.transport(), ao_socketio::Transport::Websocket);
    ws.send(r#"42["echo","up"]"#).await;
    assert_eq!(ws.text().await, r#"42["echo","up"]"#);
    assert_eq!(server.event().await.1, r#"["echo","up"]"#);
    server.assert_no_disconnect();
}

#[tokio::test]
async fn eio4_upgrade_loses_and_duplicates_nothing() {
    upgrade(4).await;
}

#[tokio::test]
async fn eio3_upgrade_loses_and_duplicates_nothing() {
    upgrade(3).await;
}

/// A websocket that probes and goes away: the session goes on polling.
#[tokio::test]
async fn an_abandoned_upgrade_leaves_the_session_polling() {
    let mut server = support::start(Config::default()).await;
    let (p, _) = Polling::connect_v4(&server).await;
    let mut ws = Ws::connect(&p.ws_url()).await;
    ws.send("2probe").await;
    assert_eq!(ws.text().await, "3probe");
    drop(ws);
    let socket = server.only_socket().await;
    // Polls may answer noops while the server notices; then events come.
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        socket.emit("still", &1).unwrap();
        let items = p.get().await;
        if items.contains(&Item::Text(r#"42["still",1]"#.into())) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{items:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(socket.transport(), ao_socketio::Transport::Polling);
    // A pending poll waits again (no more noops).
    let pending = {
        let url = p.url();
        let http = p.http.clone();
        tokio::spawn(async move { http.get(url).send().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut early = Vec::new();
    if pending.is_finished() {
        let res = pending.await.unwrap().unwrap();
        early = support::decode_response(4, res).await;
    } else {
        socket.emit("later", &2).unwrap();
        let res = pending.await.unwrap().unwrap();
        assert_eq!(
            support::decode_response(4, res).await,
            vec![Item::Text(r#"42["later",2]"#.into())]
        );
    }
    // Events emitted in the loop above may come late, never a noop.
    assert!(!early.contains(&Item::Text("6".into())), "{early:?}");
    // And the session can still upgrade.
    let mut ws = Ws::connect(&p.ws_url()).await;
    ws.send("2probe").await;
    assert_eq!(ws.text().await, "3probe");
    ws.send("5").await;
    ws.send(r#"42["echo","up"]"#).await;
    loop {
        let t = ws.text().await;
        if t == r#"42["echo","up"]"# {
            break;
        }
        assert!(t.starts_with(r#"42["still""#), "{t}");
    }
    server.assert_no_disconnect();
}

/// The application disconnects the client between its probe and its
/// upgrade packet: the disconnect reaches it over the websocket.
#[tokio::test]
async fn a_disconnect_during_the_upgrade_goes_over_the_websocket() {
    let mut server = support::start(Config::default()).await;
    let (p, _) = Polling::connect_v4(&server).await;
    let socket = server.only_socket().await;
    let mut ws = Ws::connect(&p.ws_url()).await;
    ws.send("2probe").await;
    assert_eq!(ws.text().await, "3probe");
    // The client pauses polling: its last poll ends with a noop.
    assert_eq!(p.get().await, vec![Item::Text("6".into())]);
    socket.disconnect();
    ws.send("5").await;
    assert_eq!(ws.text().await, "41");
    assert!(ws.ends_within(support::WAIT).await);
    assert_eq!(
        server.disconnect_reason().await,
        DisconnectReason::ServerDisconnect
    );
    server.wait_connections(0).await;
}

// ---------------------------------------------------------------------------
// the server's disconnect

/// Polls until the session is gone: 400 with code 1.
async fn gone(p: &Polling) {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let res = p.get_raw().await;
        if res.status() == 400 {
            assert_eq!(error_body(res).await["code"], 1);
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session outlived its disconnect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until the close packet: what came, the close included.
async fn until_close(p: &Polling) -> Vec<Item> {
    let mut items = Vec::new();
    while !items.contains(&Item::Text("1".into())) {
        assert!(items.len() < 10, "no close packet: {items:?}");
        items.extend(p.get().await);
    }
    items
}

async fn polling_disconnect(server: &mut TestServer, p: &Polling) {
    let socket = server.only_socket().await;
    socket.disconnect();
    assert_eq!(
        until_close(p).await,
        vec![Item::Text("41".into()), Item::Text("1".into())]
    );
    assert_eq!(
        server.disconnect_reason().await,
        DisconnectReason::ServerDisconnect
    );
    gone(p).await;
    let res = p
        .post_raw(support::encode_payload(p.eio, &["42[\"x\"]"]))
        .await;
    assert_eq!(res.status(), 400);
    assert_eq!(error_body(res).await["code"], 1);
}

#[tokio::test]
async fn eio4_polling_server_disconnect() {
    let mut server = support::start(Config::default()).await;
    let (p, _) = Polling::connect_v4(&server).await;
    polling_disconnect(&mut server, &p).await;
}

#[tokio::test]
async fn eio3_polling_server_disconnect() {
    let mut server = support::start(Config::default()).await;
    let p = Polling::connect_v3(&server, "EIO=3").await;
    polling_disconnect(&mut server, &p).await;
}

#[tokio::test]
async fn a_pending_poll_gets_the_disconnect() {
    let mut server = support::start(Config::default()).await;
    let (p, _) = Polling::connect_v4(&server).await;
    let pending = {
        let url = p.url();
        let http = p.http.clone();
        tokio::spawn(async move { http.get(url).send().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The application disconnects from inside an event.
    p.post(&[r#"42["disconnect-me"]"#]).await;
    let res = tokio::time::timeout(support::WAIT, pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut items = support::decode_response(4, res).await;
    if items.last() != Some(&Item::Text("1".into())) {
        // The 41 went out alone; the close comes with a next poll.
        items.extend(until_close(&p).await);
    }
    assert_eq!(items, vec![Item::Text("41".into()), Item::Text("1".into())]);
    assert_eq!(
        server.disconnect_reason().await,
        DisconnectReason::ServerDisconnect
    );
    gone(&p).await;
}
