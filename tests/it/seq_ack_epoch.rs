//! PROTOCOL.md Part 2: sequence numbers, acknowledged messages, history epoch.

use crate::support;

use serde_json::{json, Value};
use support::{Client, Received, TestServer, QUIET};

/// Alice and bob in room "r", presence events consumed.
async fn pair(ts: &TestServer) -> (Client, Client) {
    let mut a = ts.login("alice", "r").await;
    let mut b = ts.login("bob", "r").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    (a, b)
}

fn epoch(reply: &Value) -> String {
    let e = reply["epoch"]
        .as_str()
        .unwrap_or_else(|| panic!("sync reply without a string epoch: {reply}"));
    assert!(!e.is_empty(), "empty epoch");
    e.to_owned()
}

// --- seq ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_inserts_carry_their_sync_position_as_seq() {
    let ts = TestServer::with(|c| c.sync_page_size = 4).await;
    let (mut a, mut b) = pair(&ts).await;
    let mut relayed = Vec::new();
    for i in 0..10 {
        a.emit("msg", json!({"data": i})).await;
        // Updates and ignores in between take no seq.
        a.emit("msg", json!({"data": "u", "s": 1, "1": "m"})).await;
        a.emit("msg", json!({"data": "t", "s": 2})).await;
        let insert = b.expect_event("msg").await;
        assert_eq!(insert["seq"], json!(i), "{insert}");
        relayed.push(insert);
        for _ in 0..2 {
            let other = b.expect_event("msg").await;
            assert!(other.get("seq").is_none(), "non-insert with seq: {other}");
        }
    }
    let (items, _) = b.sync_all(0).await;
    assert_eq!(&items[..10], &relayed[..]);
    for (i, item) in items[..10].iter().enumerate() {
        assert_eq!(item["seq"], json!(i));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_counts_inserts_of_all_senders() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    let mut seqs = Vec::new();
    for _ in 0..5 {
        seqs.push(a.send_msg(json!({"data": "a"})).await["seq"].clone());
        seqs.push(b.send_msg(json!({"data": "b"})).await["seq"].clone());
    }
    assert_eq!(seqs, (0..10).map(|i| json!(i)).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_is_per_room() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r1").await;
    let mut b = ts.login("bob", "r2").await;
    assert_eq!(a.send_msg(json!({})).await, json!({"status": 0, "seq": 0}));
    assert_eq!(a.send_msg(json!({})).await, json!({"status": 0, "seq": 1}));
    assert_eq!(b.send_msg(json!({})).await, json!({"status": 0, "seq": 0}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_last_seq_plus_one_has_no_gap_and_no_duplicate() {
    let ts = TestServer::with(|c| c.sync_page_size = 3).await;
    let (mut a, mut b) = pair(&ts).await;
    for i in 0..4 {
        a.send_msg(json!({"data": i})).await;
    }
    let mut last_seq = 0;
    for _ in 0..4 {
        last_seq = b.expect_event("msg").await["seq"].as_u64().expect("seq");
    }
    b.close().await;
    for i in 4..9 {
        a.send_msg(json!({"data": i})).await;
    }
    let mut b = ts.login("bob", "r").await;
    b.expect_event("remote_join").await;
    let (items, _) = b.sync_all(last_seq + 1).await;
    let data: Vec<Value> = items.iter().map(|m| m["data"].clone()).collect();
    assert_eq!(data, (4..9).map(|i| json!(i)).collect::<Vec<_>>());
}

// --- acks --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_ack_is_status_0_with_seq() {
    let ts = TestServer::start().await;
    let (mut a, _b) = pair(&ts).await;
    assert_eq!(
        a.send_msg(json!({"data": 1})).await,
        json!({"status": 0, "seq": 0})
    );
    assert_eq!(
        a.send_msg(json!({"data": 2, "s": 0})).await,
        json!({"status": 0, "seq": 1})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_ack_seq_matches_the_relayed_seq() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    for _ in 0..3 {
        let ack = a.send_msg(json!({"data": "x"})).await;
        let relayed = b.expect_event("msg").await;
        assert_eq!(ack["seq"], relayed["seq"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_ack_is_status_0_without_seq() {
    let ts = TestServer::start().await;
    let (mut a, _b) = pair(&ts).await;
    assert_eq!(
        a.send_msg(json!({"data": 1, "s": 1, "1": "m"})).await,
        json!({"status": 0})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_ack_is_status_0_without_seq() {
    let ts = TestServer::start().await;
    let (mut a, _b) = pair(&ts).await;
    assert_eq!(
        a.send_msg(json!({"data": 1, "s": 2})).await,
        json!({"status": 0})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_insert_is_in_a_sync_made_right_after_the_ack() {
    let ts = TestServer::start().await;
    let (mut a, _b) = pair(&ts).await;
    let ack = a.send_msg(json!({"data": "durable"})).await;
    assert_eq!(ack["status"], json!(0));
    let reply = a.sync(json!({"offset": 0})).await;
    assert_eq!(reply["data"][0]["data"], json!("durable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_update_is_in_a_sync_made_right_after_the_ack() {
    let ts = TestServer::start().await;
    let (mut a, _b) = pair(&ts).await;
    let ack = a.send_msg(json!({"data": "u", "s": 1, "1": "m"})).await;
    assert_eq!(ack, json!({"status": 0}));
    let reply = a.sync(json!({"offset": 0})).await;
    assert_eq!(reply["data"][0]["data"], json!("u"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_msg_ack_is_status_4() {
    let ts = TestServer::with(|c| c.max_msg_bytes = 50).await;
    let (mut a, mut b) = pair(&ts).await;
    let ack = a.send_msg(json!({"data": "x".repeat(100)})).await;
    assert_eq!(ack, json!({"status": 4, "data": "message too large"}));
    b.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_joined_msg_ack_is_status_2() {
    let ts = TestServer::start().await;
    let mut a = ts.authenticated("alice").await;
    let ack = a.send_msg(json!({"data": 1})).await;
    assert_eq!(ack, json!({"status": 2, "data": "not joined"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msg_before_authenticate_is_refused_if_acked() {
    let ts = TestServer::start().await;
    let mut b = ts.login("bob", "r").await;
    let mut a = Client::connect(ts.addr()).await;
    let ack = a.send_msg(json!({"data": 1})).await;
    assert_ne!(ack["status"], json!(0), "{ack}");
    assert!(ack["data"].is_string(), "{ack}");
    b.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_msg_ack_is_status_3() {
    let ts = TestServer::start().await;
    let mut d = ts.dummy("watcher", "r").await;
    let ack = d.send_msg(json!({"data": 1})).await;
    assert_eq!(
        ack,
        json!({"status": 3, "data": "dummy clients cannot send"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_object_msg_ack_is_status_1() {
    let ts = TestServer::start().await;
    let (mut a, _b) = pair(&ts).await;
    for payload in [json!("s"), json!(1), json!([1]), Value::Null, json!(false)] {
        let ack = a.send_msg(payload.clone()).await;
        assert_eq!(
            ack,
            json!({"status": 1, "data": "payload must be an object"}),
            "payload {payload}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msg_without_payload_ack_is_status_1() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit_raw(r#"427["msg"]"#).await;
    let ack = a.wait_ack(7).await;
    assert_eq!(ack["status"], json!(1), "{ack}");
    assert!(
        ack["data"] == json!("payload must be an object")
            || ack["data"] == json!("malformed payload"),
        "{ack}"
    );
    b.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_msg_does_not_consume_a_seq() {
    let ts = TestServer::with(|c| c.max_msg_bytes = 50).await;
    let (mut a, _b) = pair(&ts).await;
    assert_eq!(a.send_msg(json!({})).await, json!({"status": 0, "seq": 0}));
    assert_eq!(
        a.send_msg(json!({"data": "x".repeat(100)})).await["status"],
        4
    );
    assert_eq!(a.send_msg(json!("x")).await["status"], 1);
    assert_eq!(a.send_msg(json!({"s": 1})).await["status"], 1);
    assert_eq!(a.send_msg(json!({})).await, json!({"status": 0, "seq": 1}));
}

// --- epoch -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_replies_carry_a_stable_epoch() {
    let ts = TestServer::with(|c| c.sync_page_size = 2).await;
    let (mut a, _b) = pair(&ts).await;
    for _ in 0..5 {
        a.send_msg(json!({})).await;
    }
    let (_, replies) = a.sync_all(0).await;
    assert_eq!(replies.len(), 3);
    let first = epoch(&replies[0]);
    for r in &replies {
        assert_eq!(epoch(r), first);
    }
    let gz = a.sync(json!({"offset": 0, "encoding": "gzip"})).await;
    assert_eq!(epoch(&gz), first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_room_sync_carries_an_epoch() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    epoch(&a.sync(json!({"offset": 0})).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epoch_stays_when_messages_are_added() {
    let ts = TestServer::start().await;
    let (mut a, _b) = pair(&ts).await;
    let before = epoch(&a.sync(json!({"offset": 0})).await);
    a.send_msg(json!({})).await;
    let after = epoch(&a.sync(json!({"offset": 0})).await);
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_a_room_changes_its_epoch_and_restarts_seq_at_0() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    for _ in 0..3 {
        a.send_msg(json!({"data": "old"})).await;
    }
    a.send_msg(json!({"data": "old update", "s": 1, "1": "m"}))
        .await;
    let before = epoch(&a.sync(json!({"offset": 0})).await);
    ts.state().messages().clear("r").await.expect("clear room");
    let cleared = a.sync(json!({"offset": 0})).await;
    assert_eq!(cleared["data"], json!([]), "history and updates are gone");
    assert_ne!(epoch(&cleared), before);
    assert_eq!(
        a.send_msg(json!({"data": "new"})).await,
        json!({"status": 0, "seq": 0})
    );
    let reply = a.sync(json!({"offset": 0})).await;
    assert_eq!(
        reply["data"],
        json!([{"data": "new", "2": "alice", "seq": 0}])
    );
    assert_eq!(epoch(&reply), epoch(&cleared));
    // The relayed copy restarts at 0 too (b also hears a's remote_sync).
    let mut msgs = Vec::new();
    while msgs.len() < 5 {
        match b.recv().await {
            Received::Event(name, v) if name == "msg" => msgs.push(v),
            Received::Event(name, _) if name == "remote_sync" => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(msgs[4], json!({"data": "new", "2": "alice", "seq": 0}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_one_room_leaves_another_alone() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r1").await;
    let mut b = ts.login("bob", "r2").await;
    b.send_msg(json!({"data": "kept"})).await;
    a.send_msg(json!({"data": "gone"})).await;
    let before = epoch(&b.sync(json!({"offset": 0})).await);
    ts.state().messages().clear("r1").await.expect("clear room");
    let reply = b.sync(json!({"offset": 0})).await;
    assert_eq!(epoch(&reply), before);
    assert_eq!(reply["data"][0]["data"], json!("kept"));
    assert_eq!(b.send_msg(json!({})).await, json!({"status": 0, "seq": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_twice_changes_the_epoch_each_time() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let e0 = epoch(&a.sync(json!({"offset": 0})).await);
    ts.state().messages().clear("r").await.expect("clear room");
    let e1 = epoch(&a.sync(json!({"offset": 0})).await);
    ts.state().messages().clear("r").await.expect("clear room");
    let e2 = epoch(&a.sync(json!({"offset": 0})).await);
    assert_ne!(e0, e1);
    assert_ne!(e1, e2);
    assert_ne!(e0, e2);
}
