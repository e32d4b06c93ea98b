//! Hostile and malformed input: the server must neither crash nor stall, and
//! every test ends by checking that a fresh pair of clients still
//! authenticates, joins and exchanges a message.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::{Client, Received, TestServer, QUIET};

/// The payloads that are not an object, with `None` for "no argument at all".
fn non_objects() -> Vec<Option<Value>> {
    vec![
        None,
        Some(Value::Null),
        Some(json!("a string")),
        Some(json!(12)),
        Some(json!([{"uid": "alice", "roomId": "r"}])),
    ]
}

async fn emit_opt(c: &mut Client, event: &str, payload: &Option<Value>) {
    match payload {
        Some(p) => c.emit(event, p.clone()).await,
        None => c.emit_bare(event).await,
    }
}

/// `[[[…]]]` nested `depth` times.
fn deep_array(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

// --- non-object payloads per event ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_with_non_object_payloads_is_refused() {
    let ts = TestServer::start().await;
    for p in non_objects() {
        let mut c = Client::connect(ts.addr()).await;
        emit_opt(&mut c, "authenticate", &p).await;
        assert_eq!(
            c.expect_event("authenticate").await,
            json!({"status": 1, "data": "auth failed, uid or token is wrong"}),
            "payload {p:?}"
        );
        c.expect_disconnect().await;
    }
    ts.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_with_non_object_payloads_is_refused_and_the_socket_stays() {
    let ts = TestServer::start().await;
    let mut c = ts.authenticated("alice").await;
    for p in non_objects() {
        emit_opt(&mut c, "join", &p).await;
        assert_eq!(
            c.expect_event("join").await,
            json!({"status": 1, "data": "join failed, require roomId"}),
            "payload {p:?}"
        );
    }
    let reply = c.request("join", json!({"roomId": "r"})).await;
    assert_eq!(reply["status"], json!(0));
    ts.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msg_with_non_object_payloads_is_dropped() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut b = ts.login("bob", "r").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    for p in non_objects() {
        emit_opt(&mut a, "msg", &p).await;
    }
    a.emit("msg", json!({"data": "ok"})).await;
    assert_eq!(b.expect_event("msg").await["data"], json!("ok"));
    b.expect_no_event(QUIET).await;
    ts.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_with_non_object_payloads_answers_from_offset_0() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    a.send_msg(json!({"data": 0})).await;
    for p in non_objects() {
        emit_opt(&mut a, "sync", &p).await;
        let reply = a.expect_event("sync").await;
        assert_eq!(reply["data"][0]["data"], json!(0), "payload {p:?}");
        assert_eq!(reply["next"], json!(0), "payload {p:?}");
    }
    ts.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_with_non_object_payloads_still_leaves() {
    let ts = TestServer::start().await;
    for p in non_objects() {
        let mut b = ts.login("bob", "r").await;
        let mut a = ts.login("alice", "r").await;
        a.expect_event("remote_join").await;
        b.expect_event("remote_join").await;
        emit_opt(&mut a, "leave", &p).await;
        a.expect_disconnect().await;
        assert_eq!(
            b.expect_event("remote_leave").await,
            json!({"uid": "alice"})
        );
        b.close().await;
    }
    ts.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_with_several_arguments_use_the_first() {
    let ts = TestServer::start().await;
    let token = ts.token("alice").await;
    let mut c = Client::connect(ts.addr()).await;
    let packet = json!(["authenticate", {"uid": "alice", "token": token}, "extra", 1]);
    c.emit_raw(&format!("42{packet}")).await;
    let reply = c.expect_event("authenticate").await;
    assert_eq!(reply["status"], json!(0), "{reply}");
    ts.assert_alive().await;
}

// --- deep nesting ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_msg_payload_does_not_hurt_the_server() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut b = ts.login("bob", "r").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    a.emit_raw(&format!(r#"42["msg",{}]"#, deep_array(1000)))
        .await;
    a.emit_raw(&format!(r#"42["msg",{{"data":{}}}]"#, deep_array(1000)))
        .await;
    // Whatever happened to alice's connection, bob never sees a deep message.
    if let Some(r) = b.recv_within(QUIET).await {
        panic!("bob got {r:?}");
    }
    ts.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msg_nested_to_the_limit_passes_and_one_level_more_is_refused() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut b = ts.login("bob", "r").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    // The msg object is level 1; a client reading with serde_json can still
    // decode the deepest one that passes, relayed and in a sync page.
    let nested = |depth: usize| -> Value {
        serde_json::from_str(&format!(r#"{{"data":{}}}"#, deep_array(depth - 1))).expect("json")
    };
    let ack = a.emit_with_ack("msg", nested(120)).await;
    assert_eq!(ack, json!({"status": 0, "seq": 0}));
    assert_eq!(b.expect_event("msg").await["data"], nested(120)["data"]);
    let ack = a.emit_with_ack("msg", nested(121)).await;
    assert_eq!(ack, json!({"status": 1, "data": "malformed payload"}));
    b.expect_no_event(QUIET).await;
    let page = b.sync(json!({"offset": 0})).await;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(1), "{page}");
    ts.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_authenticate_payload_does_not_hurt_the_server() {
    let ts = TestServer::start().await;
    let mut c = Client::connect(ts.addr()).await;
    c.emit_raw(&format!(r#"42["authenticate",{}]"#, deep_array(1000)))
        .await;
    let mut d = Client::connect(ts.addr()).await;
    d.emit_raw(&format!(
        r#"42["authenticate",{{"uid":{},"token":"t"}}]"#,
        deep_array(1000)
    ))
    .await;
    for c in [&mut c, &mut d] {
        // Either refused (reply then disconnect) or the connection dropped.
        let seen = c.drain_until_closed().await;
        for r in &seen {
            if let Received::Event(name, v) = r {
                assert_eq!(name, "authenticate");
                assert_eq!(v["status"], json!(1), "{v}");
            }
        }
    }
    ts.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderately_nested_msg_is_relayed() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut b = ts.login("bob", "r").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    a.emit_raw(&format!(r#"42["msg",{{"data":{}}}]"#, deep_array(50)))
        .await;
    let got = b.expect_event("msg").await;
    let expected: Value = serde_json::from_str(&deep_array(50)).expect("parse");
    assert_eq!(got["data"], expected);
}

// --- binary packets ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_msg_does_not_hurt_the_server() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut b = ts.login("bob", "r").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    a.emit_binary("msg", vec![0, 1, 2, 255]).await;
    a.emit_binary("sync", vec![7; 10]).await;
    a.emit_binary("join", vec![]).await;
    // The connection may survive or not; either way the room is unharmed.
    ts.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_authenticate_is_refused() {
    let ts = TestServer::start().await;
    let mut c = Client::connect(ts.addr()).await;
    c.emit_binary("authenticate", b"alice".to_vec()).await;
    let seen = c.drain_until_closed().await;
    for r in &seen {
        if let Received::Event(name, v) = r {
            assert_eq!(name, "authenticate");
            assert_eq!(v["status"], json!(1), "{v}");
        }
    }
    ts.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_binary_frame_does_not_hurt_the_server() {
    let ts = TestServer::start().await;
    let mut c = ts.login("alice", "r").await;
    c.send_binary_frame(vec![4, 2, 0, 0]).await;
    ts.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_header_without_its_attachment_does_not_hurt_the_server() {
    let ts = TestServer::start().await;
    let mut c = ts.login("alice", "r").await;
    c.emit_raw(r#"451-["msg",{"_placeholder":true,"num":0}]"#)
        .await;
    c.emit_raw(r#"452-["msg",{"_placeholder":true,"num":5}]"#)
        .await;
    ts.assert_alive().await;
}

// --- unknown events and garbage frames -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_events_are_ignored() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut b = ts.login("bob", "r").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    for name in [
        "remote_join",
        "kickout",
        "system",
        "nope",
        "",
        "MSG",
        "__proto__",
    ] {
        a.emit(name, json!({"uid": "mallory", "data": 1})).await;
    }
    a.expect_no_event(QUIET).await;
    b.expect_no_event(Duration::ZERO).await;
    a.emit("msg", json!({"data": "still here"})).await;
    assert_eq!(b.expect_event("msg").await["data"], json!("still here"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_events_before_authenticate_are_ignored() {
    let ts = TestServer::start().await;
    let token = ts.token("alice").await;
    let mut c = Client::connect(ts.addr()).await;
    c.emit("hello", json!({})).await;
    c.expect_no_event(QUIET).await;
    c.authenticate(json!("alice"), &token).await;
}

/// Sends `frame` on a fresh authenticated, joined connection, then checks the
/// server still serves others.
async fn assert_garbage_harmless(frame: &str) {
    let ts = TestServer::start().await;
    let mut watcher = ts.login("watcher", "r").await;
    let mut c = ts.login("alice", "r").await;
    c.expect_event("remote_join").await;
    watcher.expect_event("remote_join").await;
    c.emit_raw(frame).await;
    // No event may reach the room because of the garbage (a
    // remote_disconnect, if the server dropped alice, is fine).
    if let Some(r) = watcher.recv_within(QUIET).await {
        assert_eq!(
            r,
            Received::Event("remote_disconnect".into(), json!({"uid": "alice"})),
            "after frame {frame:?}"
        );
    }
    ts.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_packet_with_invalid_json() {
    assert_garbage_harmless("42not json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_event_packet() {
    assert_garbage_harmless(r#"42["msg",{"data":"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_message_packet() {
    assert_garbage_harmless("4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_packet_type() {
    assert_garbage_harmless("99").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_frame() {
    assert_garbage_harmless("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_packet_without_arguments() {
    assert_garbage_harmless("42").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_packet_with_an_empty_array() {
    assert_garbage_harmless("42[]").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_packet_with_a_non_string_name() {
    assert_garbage_harmless(r#"42[1,{"data":1}]"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_packet_with_an_object_instead_of_an_array() {
    assert_garbage_harmless(r#"42{"msg":{"data":1}}"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_packet_with_an_absurd_ack_id() {
    let ts = TestServer::start().await;
    let mut watcher = ts.login("watcher", "r").await;
    let mut c = ts.login("alice", "r").await;
    c.expect_event("remote_join").await;
    watcher.expect_event("remote_join").await;
    c.emit_raw(r#"4299999999999999999999999["msg",{"data":1}]"#)
        .await;
    // Taking it as a msg (without a usable ack) or dropping the connection
    // are both fine; anything else is not.
    if let Some(r) = watcher.recv_within(QUIET).await {
        match r {
            Received::Event(name, v) if name == "msg" => assert_eq!(v["data"], json!(1)),
            other => assert_eq!(
                other,
                Received::Event("remote_disconnect".into(), json!({"uid": "alice"}))
            ),
        }
    }
    ts.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_packet_from_the_client_for_nothing() {
    assert_garbage_harmless("435[{}]").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_for_an_unknown_namespace() {
    assert_garbage_harmless(r#"42/admin,["msg",{"data":1}]"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connect_packet() {
    assert_garbage_harmless("40").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_io_upgrade_and_noop_packets() {
    assert_garbage_harmless("5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_junk() {
    assert_garbage_harmless("hello, server").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_before_the_socket_io_connect() {
    let ts = TestServer::start().await;
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", ts.addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("websocket connect");
    use futures_util::SinkExt;
    for frame in ["42[\"authenticate\",{}]", "garbage", "4"] {
        let _ = ws
            .send(tokio_tungstenite::tungstenite::Message::text(frame))
            .await;
    }
    drop(ws);
    ts.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_uid_is_refused_and_harmless() {
    let ts = TestServer::start().await;
    let mut c = Client::connect(ts.addr()).await;
    let reply = c
        .request(
            "authenticate",
            json!({"uid": "u".repeat(100_000), "token": "t".repeat(100_000)}),
        )
        .await;
    assert_eq!(
        reply,
        json!({"status": 1, "data": "auth failed, uid or token is wrong"})
    );
    c.expect_disconnect().await;
    ts.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_room_id_is_refused_and_the_socket_stays() {
    let ts = TestServer::start().await;
    let mut c = ts.authenticated("alice").await;
    let reply = c
        .request("join", json!({"roomId": "r".repeat(100_000)}))
        .await;
    assert_eq!(
        reply,
        json!({"status": 1, "data": "join failed, roomId too long"})
    );
    let reply = c.request("join", json!({"roomId": "r"})).await;
    assert_eq!(reply["status"], json!(0));
    ts.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_larger_than_the_transport_limit_is_harmless() {
    let ts = TestServer::with(|c| c.max_msg_bytes = 1000).await;
    let mut a = ts.login("alice", "r").await;
    let mut b = ts.login("bob", "r").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    // Far beyond max_msg_bytes and the frame limit derived from it.
    a.emit("msg", json!({"data": "x".repeat(400_000)})).await;
    if let Some(r) = b.recv_within(QUIET).await {
        assert_eq!(
            r,
            Received::Event("remote_disconnect".into(), json!({"uid": "alice"}))
        );
    }
    ts.assert_alive().await;
}

// --- flood -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flood_of_5000_msgs_is_taken_whole_and_in_order() {
    const N: usize = 5000;
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut b = ts.login("bob", "r").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;

    // bob reads concurrently until the end marker.
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            let m = b.expect_event("msg").await;
            if m["data"] == json!("end") {
                return (got, b);
            }
            got.push(m["data"].as_u64().expect("numeric data"));
        }
    });

    // Sent back to back: nothing is refused for arriving quickly.
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        ids.push(a.emit_ack_id("msg", json!({"data": i})).await);
    }
    for (i, id) in ids.into_iter().enumerate() {
        let ack = a.wait_ack(id).await;
        assert_eq!(ack["status"], json!(0), "msg {i}: {ack}");
    }
    let ack = a.send_msg(json!({"data": "end"})).await;
    assert_eq!(ack["status"], json!(0), "{ack}");
    let (got, mut b) = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("bob received the end marker")
        .expect("reader task");
    let all: Vec<u64> = (0..N as u64).collect();
    assert_eq!(got, all, "bob got every msg once, in send order");

    // Stored in order, every one.
    let (items, _) = b.sync_all(0).await;
    let stored: Vec<u64> = items.iter().filter_map(|m| m["data"].as_u64()).collect();
    assert_eq!(stored, all);
    let seqs: BTreeSet<u64> = items.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(seqs.len(), items.len());
    ts.assert_alive().await;
}
