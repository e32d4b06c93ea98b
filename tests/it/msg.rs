//! PROTOCOL.md Part 1, "msg".

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{Client, TestServer, QUIET};

/// Two members of room "r": alice (first) and bob, presence events consumed.
async fn pair(ts: &TestServer) -> (Client, Client) {
    let mut a = ts.login("alice", "r").await;
    let mut b = ts.login("bob", "r").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    (a, b)
}

/// The inserted and update messages a full sync from 0 returns.
async fn synced(c: &mut Client) -> Vec<Value> {
    c.sync_all(0).await.0
}

/// `{"data": "xxx…"}` whose compact JSON encoding is exactly `len` bytes.
fn sized(len: usize) -> Value {
    let overhead = r#"{"data":""}"#.len();
    let v = json!({"data": "x".repeat(len - overhead)});
    assert_eq!(
        serde_json::to_string(&v).expect("encode").len(),
        len,
        "test payload size"
    );
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msg_is_relayed_to_every_other_member_not_the_sender() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    let mut c = ts.login("carol", "r").await;
    c.expect_event("remote_join").await;
    c.expect_event("remote_join").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    a.emit("msg", json!({"data": "hello"})).await;
    assert_eq!(b.expect_event("msg").await["data"], json!("hello"));
    assert_eq!(c.expect_event("msg").await["data"], json!("hello"));
    a.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_insert_is_the_whole_object_stamped_with_sender_and_seq() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit(
        "msg",
        json!({"data": {"text": "hi", "n": [1, 2.5, null]}, "extra": true, "s": 0}),
    )
    .await;
    assert_eq!(
        b.expect_event("msg").await,
        json!({"data": {"text": "hi", "n": [1, 2.5, null]}, "extra": true, "s": 0, "2": "alice", "seq": 0})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_ignore_msg_is_the_object_stamped_with_sender_only() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit("msg", json!({"data": "typing", "s": 2})).await;
    assert_eq!(
        b.expect_event("msg").await,
        json!({"data": "typing", "s": 2, "2": "alice"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_update_msg_is_the_object_stamped_with_sender_only() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit("msg", json!({"data": "v1", "s": 1, "1": "m"})).await;
    assert_eq!(
        b.expect_event("msg").await,
        json!({"data": "v1", "s": 1, "1": "m", "2": "alice"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_object_is_a_valid_msg() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit("msg", json!({})).await;
    assert_eq!(b.expect_event("msg").await, json!({"2": "alice", "seq": 0}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_stamp_overwrites_a_spoofed_one() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit("msg", json!({"data": "x", "2": "mallory", "s": 2}))
        .await;
    assert_eq!(b.expect_event("msg").await["2"], json!("alice"));
    a.emit("msg", json!({"data": "y", "2": "mallory"})).await;
    assert_eq!(b.expect_event("msg").await["2"], json!("alice"));
    let items = synced(&mut b).await;
    assert_eq!(items[0]["2"], json!("alice"), "stored stamp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_gets_the_stored_seq_not_the_one_it_was_sent_with() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    let ack = a.send_msg(json!({"data": "x", "seq": 41})).await;
    assert_eq!(ack, json!({"status": 0, "seq": 0}));
    assert_eq!(
        b.expect_event("msg").await,
        json!({"data": "x", "2": "alice", "seq": 0})
    );
    // Only inserts are numbered by the server: the others carry what was sent.
    a.emit("msg", json!({"data": "y", "seq": 41, "s": 2})).await;
    assert_eq!(b.expect_event("msg").await["seq"], json!(41));
    let items = synced(&mut b).await;
    assert_eq!(items, vec![json!({"data": "x", "2": "alice", "seq": 0})]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_msg_is_relayed_and_stored_with_its_keys_in_the_order_sent() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit_raw(r#"42["msg",{"z":1,"data":{"b":[1,{"y":null}],"a":"\u00e9"},"m":true}]"#)
        .await;
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    let got = b.expect_event("msg").await;
    assert_eq!(
        keys(&got),
        keys(&json!({"z": 0, "data": 0, "m": 0, "2": 0, "seq": 0}))
    );
    assert_eq!(got["data"], json!({"b": [1, {"y": null}], "a": "é"}));
    let items = synced(&mut b).await;
    assert_eq!(items, vec![got]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_stamp_keeps_a_numeric_uid_a_number() {
    let ts = TestServer::start().await;
    let mut a = ts.login(1000, "r").await;
    let mut b = ts.login("bob", "r").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    a.emit("msg", json!({"data": "x", "2": "1000"})).await;
    assert_eq!(b.expect_event("msg").await["2"], json!(1000));
    let items = synced(&mut b).await;
    assert_eq!(items[0]["2"], json!(1000), "stored stamp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_storage_key_wins_over_long_form() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit("msg", json!({"data": "relay only", "s": 2, "storage": 0}))
        .await;
    a.emit("msg", json!({"data": "stored", "s": 0, "storage": 2}))
        .await;
    b.expect_event("msg").await;
    b.expect_event("msg").await;
    let items = synced(&mut b).await;
    let data: Vec<&Value> = items.iter().map(|m| &m["data"]).collect();
    assert_eq!(data, vec![&json!("stored")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_storage_key_is_used_without_the_compact_one() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit("msg", json!({"data": "relay only", "storage": 2}))
        .await;
    a.emit("msg", json!({"data": "u", "storage": 1, "msgId": "m"}))
        .await;
    a.emit("msg", json!({"data": "stored", "storage": 0})).await;
    for _ in 0..3 {
        b.expect_event("msg").await;
    }
    let items = synced(&mut b).await;
    let data: Vec<&Value> = items.iter().map(|m| &m["data"]).collect();
    assert_eq!(data, vec![&json!("stored"), &json!("u")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_msg_id_key_wins_over_long_form() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit("msg", json!({"data": "v1", "s": 1, "1": "x", "msgId": "a"}))
        .await;
    a.emit("msg", json!({"data": "v2", "s": 1, "1": "x", "msgId": "b"}))
        .await;
    b.expect_event("msg").await;
    b.expect_event("msg").await;
    let items = synced(&mut b).await;
    let data: Vec<&Value> = items.iter().map(|m| &m["data"]).collect();
    assert_eq!(data, vec![&json!("v2")], "both updates share \"1\": \"x\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_invalid_storage_means_insert() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    let msgs = [
        json!({"data": 0}),
        json!({"data": 1, "s": "1"}),
        json!({"data": 2, "s": 7}),
        json!({"data": 3, "s": null}),
        json!({"data": 4, "storage": -1}),
        json!({"data": 5, "s": [1]}),
    ];
    for m in &msgs {
        a.emit("msg", m.clone()).await;
    }
    for i in 0..msgs.len() {
        assert_eq!(b.expect_event("msg").await["seq"], json!(i));
    }
    let items = synced(&mut b).await;
    let data: Vec<Value> = items.iter().map(|m| m["data"].clone()).collect();
    assert_eq!(data, (0..6).map(|i| json!(i)).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_appears_in_sync() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit("msg", json!({"data": "kept", "s": 0})).await;
    let relayed = b.expect_event("msg").await;
    let items = synced(&mut b).await;
    assert_eq!(items, vec![relayed]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_replaces_the_earlier_update_with_the_same_msg_id() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit("msg", json!({"data": "m v1", "s": 1, "1": "m"}))
        .await;
    a.emit("msg", json!({"data": "n v1", "s": 1, "1": "n"}))
        .await;
    a.emit("msg", json!({"data": "m v2", "s": 1, "1": "m"}))
        .await;
    for _ in 0..3 {
        b.expect_event("msg").await;
    }
    let items = synced(&mut b).await;
    let mut data: Vec<String> = items
        .iter()
        .map(|m| m["data"].as_str().unwrap_or_default().to_owned())
        .collect();
    data.sort();
    assert_eq!(data, vec!["m v2".to_owned(), "n v1".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_come_after_the_inserts_on_the_last_page() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit("msg", json!({"data": "u", "s": 1, "1": "m"})).await;
    a.emit("msg", json!({"data": "i0"})).await;
    a.emit("msg", json!({"data": "i1"})).await;
    for _ in 0..3 {
        b.expect_event("msg").await;
    }
    let reply = b.sync(json!({"offset": 0})).await;
    assert_eq!(reply["next"], json!(0));
    let data: Vec<&Value> = reply["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|m| &m["data"])
        .collect();
    assert_eq!(data, vec![&json!("i0"), &json!("i1"), &json!("u")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_msg_never_appears_in_sync() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit("msg", json!({"data": "typing", "s": 2})).await;
    a.emit("msg", json!({"data": "typing", "s": 2, "1": "t"}))
        .await;
    b.expect_event("msg").await;
    b.expect_event("msg").await;
    assert_eq!(synced(&mut b).await, Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_without_msg_id_is_refused() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    let ack = a.send_msg(json!({"data": "u", "s": 1})).await;
    assert_eq!(ack, json!({"status": 1, "data": "update requires msgId"}));
    b.expect_no_event(QUIET).await;
    assert_eq!(synced(&mut b).await, Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msg_of_exactly_max_msg_bytes_passes() {
    let ts = TestServer::with(|c| c.max_msg_bytes = 200).await;
    let (mut a, mut b) = pair(&ts).await;
    let msg = sized(200);
    let ack = a.send_msg(msg.clone()).await;
    assert_eq!(ack, json!({"status": 0, "seq": 0}));
    let got = b.expect_event("msg").await;
    assert_eq!(got["data"], msg["data"]);
    assert_eq!(synced(&mut b).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msg_one_byte_over_max_msg_bytes_is_dropped() {
    let ts = TestServer::with(|c| c.max_msg_bytes = 200).await;
    let (mut a, mut b) = pair(&ts).await;
    let ack = a.send_msg(sized(201)).await;
    assert_eq!(ack, json!({"status": 4, "data": "message too large"}));
    b.expect_no_event(QUIET).await;
    assert_eq!(synced(&mut b).await, Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_ignore_msg_is_not_relayed_either() {
    let ts = TestServer::with(|c| c.max_msg_bytes = 200).await;
    let (mut a, mut b) = pair(&ts).await;
    let mut msg = sized(201 - r#","s":2"#.len());
    msg["s"] = json!(2);
    assert_eq!(serde_json::to_string(&msg).expect("encode").len(), 201);
    a.emit("msg", msg).await;
    b.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_msg_does_not_disturb_the_next_one() {
    let ts = TestServer::with(|c| c.max_msg_bytes = 200).await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit("msg", sized(5000)).await;
    a.emit("msg", json!({"data": "small"})).await;
    let got = b.expect_event("msg").await;
    assert_eq!(got, json!({"data": "small", "2": "alice", "seq": 0}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_order_is_preserved_across_storage_kinds() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    for i in 0..200 {
        let msg = match i % 3 {
            0 => json!({"data": i}),
            1 => json!({"data": i, "s": 1, "1": format!("m{i}")}),
            _ => json!({"data": i, "s": 2}),
        };
        a.emit("msg", msg).await;
    }
    for i in 0..200 {
        assert_eq!(b.expect_event("msg").await["data"], json!(i));
    }
    b.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_two_senders_each_keep_their_order() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    let mut c = ts.login("carol", "r").await;
    c.expect_event("remote_join").await;
    c.expect_event("remote_join").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    for i in 0..50 {
        a.emit("msg", json!({"data": i})).await;
        b.emit("msg", json!({"data": i, "s": 2})).await;
    }
    let (mut from_a, mut from_b) = (0, 0);
    for _ in 0..100 {
        let m = c.expect_event("msg").await;
        if m["2"] == json!("alice") {
            assert_eq!(m["data"], json!(from_a));
            from_a += 1;
        } else {
            assert_eq!(m["data"], json!(from_b));
            from_b += 1;
        }
    }
    assert_eq!((from_a, from_b), (50, 50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msg_before_join_is_dropped() {
    let ts = TestServer::start().await;
    let mut b = ts.login("bob", "r").await;
    let mut a = ts.authenticated("alice").await;
    a.emit("msg", json!({"data": "early"})).await;
    a.emit("msg", json!({"data": "early", "s": 2})).await;
    a.expect_no_event(QUIET).await;
    assert_eq!(a.request("join", json!({"roomId": "r"})).await["status"], 0);
    assert_eq!(b.expect_event("remote_join").await, json!({"uid": "alice"}));
    b.expect_no_event(QUIET).await;
    assert_eq!(synced(&mut b).await, Vec::<Value>::new());
}

async fn assert_non_object_dropped(payload: Value) {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit("msg", payload.clone()).await;
    b.expect_no_event(QUIET).await;
    a.expect_no_event(Duration::ZERO).await;
    assert_eq!(synced(&mut b).await, Vec::<Value>::new(), "{payload}");
    a.emit("msg", json!({"data": "next"})).await;
    assert_eq!(b.expect_event("msg").await["data"], json!("next"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_msg_is_dropped() {
    assert_non_object_dropped(json!("hello")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn number_msg_is_dropped() {
    assert_non_object_dropped(json!(42)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn array_msg_is_dropped() {
    assert_non_object_dropped(json!([{"data": 1}])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_msg_is_dropped() {
    assert_non_object_dropped(Value::Null).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boolean_msg_is_dropped() {
    assert_non_object_dropped(json!(true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_receives_msgs() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut d = ts.dummy("watcher", "r").await;
    assert_eq!(d.expect_event("remote_join").await, json!({"uid": "alice"}));
    a.emit("msg", json!({"data": "for all"})).await;
    assert_eq!(
        d.expect_event("msg").await,
        json!({"data": "for all", "2": "alice", "seq": 0})
    );
    a.emit("msg", json!({"data": "ephemeral", "s": 2})).await;
    assert_eq!(d.expect_event("msg").await["data"], json!("ephemeral"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msg_from_a_dummy_is_dropped() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut d = ts.dummy("watcher", "r").await;
    d.expect_event("remote_join").await;
    d.emit("msg", json!({"data": "from dummy"})).await;
    d.emit("msg", json!({"data": "from dummy", "s": 2})).await;
    a.expect_no_event(QUIET).await;
    assert_eq!(synced(&mut a).await, Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msg_data_of_any_json_type_is_relayed_unchanged() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    let values = [
        json!(null),
        json!(false),
        json!(-1.25),
        json!("héllo 🌍 \"quoted\" \\ \u{0}"),
        json!([1, [2, [3]]]),
        json!({"nested": {"k": "v"}}),
        json!(u64::MAX),
    ];
    for v in &values {
        a.emit("msg", json!({"data": v, "s": 2})).await;
    }
    for v in &values {
        assert_eq!(&b.expect_event("msg").await["data"], v);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignore_msg_sent_right_after_leave_is_not_relayed() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    // Relayed while alice is in the room and her session waits.
    a.emit("msg", json!({"data": "before", "s": 2})).await;
    assert_eq!(b.expect_event("msg").await["data"], json!("before"));
    a.emit("leave", json!({})).await;
    a.emit("msg", json!({"data": "after", "s": 2})).await;
    assert_eq!(
        b.expect_event("remote_leave").await,
        json!({"uid": "alice"})
    );
    b.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_msgs_between_sync_pages_are_relayed_in_order() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    for i in 0..120 {
        a.emit("msg", json!({"data": i})).await;
    }
    for i in 0..120 {
        assert_eq!(b.expect_event("msg").await["data"], json!(i));
    }
    // A sync (several pages) with ignore msgs sent around it.
    a.emit("msg", json!({"data": "x0", "s": 2})).await;
    let (items, _) = a.sync_all(0).await;
    assert_eq!(items.len(), 120);
    a.emit("msg", json!({"data": "x1", "s": 2})).await;
    a.emit("msg", json!({"data": 120})).await;
    a.emit("msg", json!({"data": "x2", "s": 2})).await;
    assert_eq!(b.expect_event("msg").await["data"], json!("x0"));
    assert_eq!(b.expect_event("remote_sync").await, json!({"uid": "alice"}));
    for want in [json!("x1"), json!(120), json!("x2")] {
        assert_eq!(b.expect_event("msg").await["data"], want);
    }
    b.expect_no_event(QUIET).await;
}
