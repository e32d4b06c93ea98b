//! What a client can make the server hold: floods of tiny packets fill
//! the byte bounds by the memory they hold, an attachment does not keep
//! its request body alive, and one address cannot open sessions faster
//! than its handshake rate.

mod support;

use std::time::Duration;

use ao_socketio::{Config, DisconnectReason, Refusal};
use ao_testclient::payload::push_v3_binary_packet as v3_binary_packet;
use futures_util::SinkExt;
use support::{http, Polling, Record, Ws, WAIT};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_ping_flood_fills_the_outbound_queue_by_what_the_pongs_hold() {
    let queue = 64 * 1024;
    let mut server = support::start(
        Config::builder()
            .queue_max_bytes(queue)
            .max_payload_bytes(4 << 20)
            .build(),
    )
    .await;
    let (p, _) = Polling::connect_v4(&server).await;
    // 1 MiB of one-byte pings in one POST, and no poll to take the pongs:
    // counted by payload alone they would be 512 KiB of pongs in a 64 KiB
    // queue... but each pong holds far more than its byte.
    let body = vec!["2"; 512 * 1024].join("\u{1e}");
    let res = p.post_raw(body.into_bytes()).await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(
        server.disconnect_reason().await,
        DisconnectReason::SlowClient
    );
    assert_eq!(server.io.stats().slow_clients(), 1);
}

#[tokio::test]
async fn a_one_byte_attachment_does_not_keep_its_request_body_alive() {
    let mut server = support::start(Config::builder().max_payload_bytes(4 << 20).build()).await;
    let p = Polling::connect_v3(&server, "EIO=3").await;
    let mut body = Vec::new();
    v3_binary_packet(&mut body, 0, br#"451-["up",{"_placeholder":true,"num":0}]"#);
    v3_binary_packet(&mut body, 1, &[4, 42]);
    // A large noop after it: the body is megabytes, the attachment one byte.
    let mut noop = vec![b'6'];
    noop.resize(2 << 20, b'x');
    v3_binary_packet(&mut body, 0, &noop);
    let res = p
        .http
        .post(p.url())
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 200);
    let (name, _, attachments) = server.event().await;
    assert_eq!(name, "up");
    assert_eq!(attachments.len(), 1);
    let Ok(own) = attachments
        .into_iter()
        .next()
        .map(|a| a.try_into_mut())
        .expect("one attachment")
    else {
        panic!("the attachment shares its request body's buffer");
    };
    assert_eq!(&own[..], &[42]);
    assert!(own.capacity() <= 2, "kept {} bytes", own.capacity());
}

#[tokio::test]
async fn empty_attachments_count_against_the_message_limit() {
    let mut server = support::start(Config::builder().max_message_bytes(10_000).build()).await;
    let (mut ws, _, _) = Ws::connect_v4(&server).await;
    // A packet announcing a thousand attachments, then a thousand empty
    // binary frames: no payload at all, but each one held is a record.
    // A packet over the limit breaks the protocol: the connection closes.
    ws.send(r#"451000-["up"]"#).await;
    for _ in 0..1000 {
        if ws.inner.send(Message::binary(Vec::new())).await.is_err() {
            break;
        }
    }
    assert!(ws.ends_within(WAIT).await, "the connection was closed");
    assert!(server.io.stats().malformed_packets() >= 1);
    assert_eq!(
        server.disconnect_reason().await,
        DisconnectReason::ProtocolError
    );
}

#[tokio::test]
async fn handshakes_past_an_address_rate_are_refused_with_429() {
    let mut server = support::start(
        Config::builder()
            .handshake_rate_per_ip(1)
            .handshake_burst_per_ip(5)
            .build(),
    )
    .await;
    let mut sessions = Vec::new();
    for _ in 0..5 {
        sessions.push(Polling::handshake(&server, "EIO=4").await.0);
    }
    let res = http()
        .get(server.url("EIO=4&transport=polling"))
        .send()
        .await
        .expect("handshake GET");
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "retry after {retry}");
    let body: serde_json::Value =
        serde_json::from_slice(&res.bytes().await.expect("body")).expect("JSON");
    assert_eq!(body["message"], "too many handshakes from this address");
    assert_eq!(server.io.stats().refusals(Refusal::HandshakeRate), 1);
    assert_eq!(server.io.connections(), 5);
    // The allowance refills at its rate.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (mut ws, _, _) = Ws::connect_v4(&server).await;
    ws.send(r#"42["echo",1]"#).await;
    assert_eq!(ws.text().await, r#"42["echo",1]"#);
    assert!(matches!(server.record().await, Record::Connect { .. }));
}
