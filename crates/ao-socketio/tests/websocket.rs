//! Websocket connections over a real listener: heartbeats of engine.io 3
//! and 4, the read gate, slow consumers, binary attachments, garbage,
//! the server's disconnect and the order of events.

mod support;

use std::time::Duration;

use ao_socketio::engine::Frame;
use ao_socketio::{Config, DisconnectReason, Refusal};
use bytes::Bytes;
use futures_util::SinkExt;
use support::{Record, Ws};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

fn fast_heartbeat() -> Config {
    Config::builder()
        .ping_interval(Duration::from_millis(200))
        .ping_timeout(Duration::from_millis(200))
        .build()
}

/// Reads for `how_long`: answers the server's pings (engine.io 4) when
/// `pong`, sends pings every 150 ms and checks the answers (engine.io 3)
/// when `ping`. Gives the engine.io pings seen; the connection must stay.
async fn keep_alive(ws: &mut Ws, how_long: Duration, pong: bool, ping: bool) -> usize {
    let until = Instant::now() + how_long;
    let mut next_ping = Instant::now();
    let mut pings = 0;
    let mut pongs_due = 0usize;
    loop {
        if ping && Instant::now() >= next_ping {
            ws.send("2").await;
            pongs_due += 1;
            next_ping += Duration::from_millis(150);
        }
        let wake = if ping { next_ping.min(until) } else { until };
        let msg = match tokio::time::timeout_at(wake, ws.next_within(support::WAIT)).await {
            Err(_) if Instant::now() >= until => break,
            Err(_) => continue,
            Ok(None) => panic!("the server closed the connection"),
            Ok(Some(m)) => m,
        };
        match msg {
            Message::Text(t) if t == "2" => {
                pings += 1;
                if pong {
                    ws.send("3").await;
                }
            }
            Message::Text(t) if t == "3" => pongs_due = pongs_due.saturating_sub(1),
            other => panic!("unexpected {other:?}"),
        }
    }
    // At most the last ping's answer may be on its way.
    assert!(pongs_due <= 1, "{pongs_due} pings unanswered");
    pings
}

#[tokio::test]
async fn eio4_a_client_that_answers_pings_stays() {
    let mut server = support::start(fast_heartbeat()).await;
    let (mut ws, open, _) = Ws::connect_v4(&server).await;
    assert_eq!(open["pingInterval"], 200);
    assert_eq!(open["pingTimeout"], 200);
    let pings = keep_alive(&mut ws, Duration::from_millis(1500), true, false).await;
    assert!(pings >= 3, "only {pings} pings in 1.5 s");
    server.assert_no_disconnect();
    ws.send(r#"42["echo","alive"]"#).await;
    assert_eq!(ws.text().await, r#"42["echo","alive"]"#);
}

#[tokio::test]
async fn eio4_a_client_that_never_answers_times_out() {
    let mut server = support::start(fast_heartbeat()).await;
    let (mut ws, _, _) = Ws::connect_v4(&server).await;
    assert_eq!(ws.text().await, "2");
    assert_eq!(
        server.disconnect_reason().await,
        DisconnectReason::PingTimeout
    );
    assert!(ws.ends_within(support::WAIT).await);
    assert_eq!(server.io.connections(), 0);
}

#[tokio::test]
async fn eio3_a_client_that_pings_stays() {
    let mut server = support::start(fast_heartbeat()).await;
    let (mut ws, _) = Ws::connect_v3(&server).await;
    let pings = keep_alive(&mut ws, Duration::from_millis(1500), false, true).await;
    assert_eq!(pings, 0, "an engine.io 3 server does not ping");
    server.assert_no_disconnect();
    ws.send(r#"42["echo","alive"]"#).await;
    assert_eq!(ws.text().await, r#"42["echo","alive"]"#);
}

#[tokio::test]
async fn eio3_a_client_that_never_pings_times_out() {
    let mut server = support::start(fast_heartbeat()).await;
    let (mut ws, _) = Ws::connect_v3(&server).await;
    assert_eq!(
        server.disconnect_reason().await,
        DisconnectReason::PingTimeout
    );
    assert!(ws.ends_within(support::WAIT).await);
}

#[tokio::test]
async fn eio4_a_paused_client_is_not_timed_out() {
    let mut server = support::start(fast_heartbeat()).await;
    let (mut ws, _, _) = Ws::connect_v4(&server).await;
    let socket = server.only_socket().await;
    // The application pauses the client's reads: its pongs wait unread.
    socket.read_gate().close();
    keep_alive(&mut ws, Duration::from_millis(1500), true, false).await;
    server.assert_no_disconnect();
    socket.read_gate().open();
    keep_alive(&mut ws, Duration::from_millis(600), true, false).await;
    server.assert_no_disconnect();
    ws.send(r#"42["echo","alive"]"#).await;
    assert_eq!(ws.text().await, r#"42["echo","alive"]"#);
}

#[tokio::test]
async fn eio3_a_paused_client_is_not_timed_out() {
    let mut server = support::start(fast_heartbeat()).await;
    let (mut ws, _) = Ws::connect_v3(&server).await;
    let socket = server.only_socket().await;
    socket.read_gate().close();
    // Its pings wait unread (no answers come while paused).
    for _ in 0..8 {
        ws.send("2").await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    server.assert_no_disconnect();
    socket.read_gate().open();
    keep_alive(&mut ws, Duration::from_millis(600), false, true).await;
    server.assert_no_disconnect();
}

// ---------------------------------------------------------------------------
// slow consumers

#[tokio::test]
async fn a_client_that_does_not_read_is_cut_off() {
    slow_consumer(Config::default(), false).await;
}

/// The same with a heartbeat of 300 ms, which wakes the connection's task
/// in time even with the bug above: what a slow consumer leads to. (The
/// client, which reads nothing, keeps the heartbeat with blind pongs.)
#[tokio::test]
async fn a_client_that_does_not_read_is_cut_off_by_the_next_tick() {
    slow_consumer(
        Config::builder()
            .ping_interval(Duration::from_millis(300))
            .ping_timeout(Duration::from_millis(300))
            .build(),
        true,
    )
    .await;
}

/// A client that reads nothing, and writes nothing either but a pong every
/// 100 ms when `pongs`.
async fn slow_consumer(config: Config, pongs: bool) {
    let mut config = config;
    config.queue_max_bytes = 64 * 1024;
    let mut server = support::start(config).await;
    let (mut ws, _, _) = Ws::connect_v4(&server).await;
    let socket = server.only_socket().await;
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let client = tokio::spawn(async move {
        loop {
            if pongs && ws.inner.send(Message::text("3")).await.is_err() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = &mut stopped => break,
            }
        }
        ws
    });
    // 10 MB in 10 KB events, to a client that reads none of it.
    let chunk = "x".repeat(10 * 1024);
    let mut refused = false;
    for _ in 0..1024 {
        if socket.emit("big", &chunk).is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "10 MB were queued for a client that does not read");
    assert_eq!(
        server.disconnect_reason().await,
        DisconnectReason::SlowClient
    );
    assert_eq!(server.io.stats().slow_clients(), 1);
    assert!(socket.is_closed());
    server.wait_connections(0).await;

    // The server serves others.
    let (mut other, _, _) = Ws::connect_v4(&server).await;
    other.send(r#"42["echo","fine"]"#).await;
    assert_eq!(other.text().await, r#"42["echo","fine"]"#);
    assert_eq!(server.io.stats().slow_clients(), 1);
    assert_eq!(server.io.stats().refusals(Refusal::ServerFull), 0);
    let _ = stop.send(());
    drop(client.await.unwrap());
}

/// The application disconnects a client whose socket is full (it does not
/// read) while its queue still has room: the handler hears of it at once.
#[tokio::test]
async fn disconnecting_a_client_that_does_not_read() {
    let mut server = support::start(Config::builder().queue_max_bytes(1024 * 1024).build()).await;
    let (ws, _, _) = Ws::connect_v4(&server).await;
    let socket = server.only_socket().await;
    let chunk = "x".repeat(10 * 1024);
    // Until the writer is stuck: frames stay queued.
    let deadline = Instant::now() + support::WAIT;
    while socket.queued_bytes() < 256 * 1024 {
        assert!(Instant::now() < deadline, "the writer never blocked");
        socket.emit("big", &chunk).expect("room in the queue");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    socket.disconnect();
    assert_eq!(
        server.disconnect_reason().await,
        DisconnectReason::ServerDisconnect
    );
    server.wait_connections(0).await;
    drop(ws);
}

// ---------------------------------------------------------------------------
// binary

#[tokio::test]
async fn binary_attachments_from_the_client() {
    let mut server = support::start(Config::default()).await;
    let (mut ws, _, _) = Ws::connect_v4(&server).await;
    ws.send(r#"451-["up",{"_placeholder":true,"num":0}]"#).await;
    ws.send_binary(&[9, 8, 7]).await;
    let (name, data, attachments) = server.event().await;
    assert_eq!(name, "up");
    assert_eq!(data, r#"["up",{"_placeholder":true,"num":0}]"#);
    assert_eq!(attachments, vec![Bytes::from_static(&[9, 8, 7])]);

    // Two attachments, with an ack.
    ws.send(r#"452-3["two",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
        .await;
    ws.send_binary(&[1]).await;
    ws.send_binary(&[2, 2]).await;
    let (name, _, attachments) = server.event().await;
    assert_eq!(name, "two");
    assert_eq!(attachments.len(), 2);
    assert_eq!(ws.text().await, r#"433[{"_placeholder":true,"num":0}]"#);

    // A header whose attachments are cut short by a text packet: the
    // connection is closed, as the reference parser refuses it.
    ws.send(r#"451-["lost",{"_placeholder":true,"num":0}]"#)
        .await;
    ws.send(r#"42["echo","after"]"#).await;
    assert!(ws.ends_within(support::WAIT).await);
    assert_eq!(
        server.disconnect_reason().await,
        DisconnectReason::ProtocolError
    );
}

#[tokio::test]
async fn eio3_binary_attachments_carry_the_type_byte() {
    let mut server = support::start(Config::default()).await;
    let (mut ws, _) = Ws::connect_v3(&server).await;
    ws.send(r#"451-["up",{"_placeholder":true,"num":0}]"#).await;
    ws.send_binary(&[4, 9, 8, 7]).await;
    let (name, _, attachments) = server.event().await;
    assert_eq!(name, "up");
    assert_eq!(attachments, vec![Bytes::from_static(&[9, 8, 7])]);
}

#[tokio::test]
async fn binary_from_the_server_over_websockets() {
    let server = support::start(Config::default()).await;
    let (mut v4, _, _) = Ws::connect_v4(&server).await;
    let socket = server.only_socket().await;
    let header = r#"451-["bin",{"_placeholder":true,"num":0}]"#;
    socket
        .send_frame(Frame::Text(Bytes::from_static(header.as_bytes())))
        .unwrap();
    socket
        .send_frame(Frame::Binary(Bytes::from_static(&[1, 2, 3])))
        .unwrap();
    assert_eq!(v4.text().await, header);
    assert_eq!(v4.binary().await, vec![1, 2, 3]);

    // engine.io 3: the message type byte first.
    let (mut v3, _) = Ws::connect_v3(&server).await;
    let socket = server
        .io
        .sockets()
        .into_iter()
        .find(|s| s.protocol() == ao_socketio::socket::SocketVersion::V4)
        .unwrap();
    socket
        .send_frame(Frame::Text(Bytes::from_static(header.as_bytes())))
        .unwrap();
    socket
        .send_frame(Frame::Binary(Bytes::from_static(&[1, 2, 3])))
        .unwrap();
    assert_eq!(v3.text().await, header);
    assert_eq!(v3.binary().await, vec![4, 1, 2, 3]);
}

/// Packets that are not the protocol close the client's connection (as
/// the reference servers close it); the server goes on serving others.
#[tokio::test]
async fn garbage_closes_the_connection_and_never_breaks_the_server() {
    let mut server = support::start(Config::default()).await;
    let closing = [
        "",
        "9",
        "7",
        "x",
        "4",
        "42",
        "42[",
        "4{",
        "45",
        "45x-[]",
        "451[]",
        "4511-[]",
        "499999999999999999999999[]",
        "4299999999999999999999999[\"a\"]",
        "43",
        "4/admin",
        "44",
        "4\u{0}",
        "b4AQID",
        "42{}",
        "42[1,2]",
        "42abc[\"a\"]",
        "42[\"a\"] x",
        "43{}",
        "40[1]",
        "40\"x\"",
    ];
    for t in closing {
        let (mut ws, _, _) = Ws::connect_v4(&server).await;
        ws.send(t).await;
        assert!(ws.ends_within(support::WAIT).await, "{t:?} left it open");
        assert_eq!(
            server.disconnect_reason().await,
            DisconnectReason::ProtocolError,
            "{t:?}"
        );
    }
    // Binary frames that are no attachment; a header announcing too many.
    for binary in [&[][..], &[0xff; 64][..]] {
        let (mut ws, _, _) = Ws::connect_v4(&server).await;
        ws.send_binary(binary).await;
        assert!(ws.ends_within(support::WAIT).await);
    }
    let (mut ws, _, _) = Ws::connect_v4(&server).await;
    ws.send("4511-[\"many\"]").await;
    assert!(ws.ends_within(support::WAIT).await);
    assert!(server.io.stats().malformed_packets() >= closing.len() as u64);

    // What engine.io and socket.io ignore leaves the client connected.
    let (mut ws, _, _) = Ws::connect_v4(&server).await;
    server.drain();
    for t in [
        "40/",
        "41/admin,",
        "0",
        "0{}",
        "5",
        "6",
        "3",
        "3probe",
        "42/admin,[\"a\"]",
    ] {
        ws.send(t).await;
    }
    ws.send(r#"42["echo","survived"]"#).await;
    assert_eq!(ws.text().await, r#"42["echo","survived"]"#);
    for r in server.drain() {
        if let Record::Disconnect { reason, .. } = r {
            panic!("ignored packets disconnected the client: {reason:?}");
        }
    }
    // A fresh client is served too.
    let (mut other, _, _) = Ws::connect_v4(&server).await;
    other.send(r#"42["echo","fine"]"#).await;
    assert_eq!(other.text().await, r#"42["echo","fine"]"#);
}

// ---------------------------------------------------------------------------
// the server's disconnect

#[tokio::test]
async fn websocket_server_disconnect_sends_41_and_closes() {
    let mut server = support::start(Config::default()).await;
    let (mut ws, _, _) = Ws::connect_v4(&server).await;
    server.only_socket().await.disconnect();
    assert_eq!(ws.text().await, "41");
    match ws.recv().await {
        Message::Close(_) => {}
        other => panic!("expected the close frame, got {other:?}"),
    }
    // The TCP connection really ends.
    assert!(ws.ends_within(support::WAIT).await);
    assert_eq!(
        server.disconnect_reason().await,
        DisconnectReason::ServerDisconnect
    );
    server.wait_connections(0).await;
}

#[tokio::test]
async fn eio3_websocket_disconnect_from_an_event() {
    let mut server = support::start(Config::default()).await;
    let (mut ws, _) = Ws::connect_v3(&server).await;
    ws.send(r#"42["disconnect-me"]"#).await;
    assert_eq!(ws.text().await, "41");
    assert!(ws.ends_within(support::WAIT).await);
    assert_eq!(
        server.disconnect_reason().await,
        DisconnectReason::ServerDisconnect
    );
}

#[tokio::test]
async fn server_close_ends_every_connection() {
    let mut server = support::start(Config::default()).await;
    let (mut ws, _, _) = Ws::connect_v4(&server).await;
    let (mut v3, _) = Ws::connect_v3(&server).await;
    server.io.close().await;
    assert_eq!(server.io.connections(), 0);
    for ws in [&mut ws, &mut v3] {
        match ws.recv().await {
            Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1001),
            other => panic!("expected a close frame, got {other:?}"),
        }
        assert!(ws.ends_within(support::WAIT).await);
    }
    for _ in 0..2 {
        assert_eq!(
            server.disconnect_reason().await,
            DisconnectReason::ServerShutdown
        );
    }
    // And new ones are refused.
    let res = support::http()
        .get(server.url("EIO=4&transport=polling"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
}

// ---------------------------------------------------------------------------
// order

#[tokio::test]
async fn ten_thousand_events_arrive_in_order_once() {
    const N: usize = 10_000;
    let mut server = support::start(Config::default()).await;
    let (mut ws, _, _) = Ws::connect_v4(&server).await;
    for i in 0..N {
        ws.inner
            .feed(Message::text(format!(r#"42["seq",{i}]"#)))
            .await
            .unwrap();
    }
    ws.inner.flush().await.unwrap();
    for i in 0..N {
        let (name, data, _) = server.event().await;
        assert_eq!(name, "seq");
        assert_eq!(data, format!(r#"["seq",{i}]"#));
    }
    ws.send(r#"42["echo","end"]"#).await;
    assert_eq!(server.event().await.1, r#"["echo","end"]"#);
}
