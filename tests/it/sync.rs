//! PROTOCOL.md Part 1, "sync".

use crate::support;

use std::io::Read;

use base64::Engine as _;
use serde_json::{json, Value};
use support::{Client, TestServer, QUIET};

/// Stores `n` inserts `{"data": i}` from `c`, checking each ack.
async fn insert(c: &mut Client, n: usize) {
    for i in 0..n {
        let ack = c.send_msg(json!({"data": i})).await;
        assert_eq!(ack["status"], json!(0), "insert {i}: {ack}");
    }
}

/// Stores an update `{"data": data, "s": 1, "1": id}` from `c`.
async fn update(c: &mut Client, id: &str, data: &str) {
    let ack = c.send_msg(json!({"data": data, "s": 1, "1": id})).await;
    assert_eq!(ack, json!({"status": 0}), "update {id}");
}

fn datas(reply: &Value) -> Vec<Value> {
    reply["data"]
        .as_array()
        .unwrap_or_else(|| panic!("sync data is not an array: {reply}"))
        .iter()
        .map(|m| m["data"].clone())
        .collect()
}

fn nums(range: std::ops::Range<usize>) -> Vec<Value> {
    range.map(|i| json!(i)).collect()
}

fn gunzip_base64(data: &Value) -> Value {
    let b64 = data
        .as_str()
        .unwrap_or_else(|| panic!("gzip data is not a string: {data}"));
    let gz = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("data is base64");
    let mut json = String::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_string(&mut json)
        .expect("data is gzip");
    serde_json::from_str(&json).expect("gzip holds JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_room_sync_is_an_empty_last_page() {
    let ts = TestServer::start().await;
    let mut c = ts.login("alice", "r").await;
    let reply = c.sync(json!({"offset": 0})).await;
    let mut keys: Vec<&str> = reply
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, vec!["data", "epoch", "next", "offset"]);
    assert_eq!(reply["data"], json!([]));
    assert_eq!(reply["offset"], json!(0));
    assert_eq!(reply["next"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_pages_by_sync_page_size_with_updates_on_the_last_page() {
    let ts = TestServer::with(|c| c.sync_page_size = 5).await;
    let mut c = ts.login("alice", "r").await;
    update(&mut c, "a", "ua").await;
    insert(&mut c, 12).await;
    update(&mut c, "b", "ub").await;

    let p1 = c.sync(json!({"offset": 0})).await;
    assert_eq!(datas(&p1), nums(0..5));
    assert_eq!(
        (p1["offset"].clone(), p1["next"].clone()),
        (json!(5), json!(1))
    );

    let p2 = c.sync(json!({"offset": 5})).await;
    assert_eq!(datas(&p2), nums(5..10));
    assert_eq!(
        (p2["offset"].clone(), p2["next"].clone()),
        (json!(10), json!(1))
    );

    let p3 = c.sync(json!({"offset": 10})).await;
    let mut expected = nums(10..12);
    expected.extend([json!("ua"), json!("ub")]);
    assert_eq!(datas(&p3), expected);
    assert_eq!(
        (p3["offset"].clone(), p3["next"].clone()),
        (json!(12), json!(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_that_ends_exactly_at_the_end_is_the_last_page() {
    let ts = TestServer::with(|c| c.sync_page_size = 5).await;
    let mut c = ts.login("alice", "r").await;
    insert(&mut c, 10).await;
    update(&mut c, "a", "ua").await;
    let p1 = c.sync(json!({"offset": 0})).await;
    assert_eq!(p1["next"], json!(1));
    let p2 = c.sync(json!({"offset": 5})).await;
    let mut expected = nums(5..10);
    expected.push(json!("ua"));
    assert_eq!(datas(&p2), expected);
    assert_eq!(
        (p2["offset"].clone(), p2["next"].clone()),
        (json!(10), json!(0))
    );
}

/// The server reads the next page while the client receives one; asking for
/// another offset, or after the history grew, still gets exactly the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_read_ahead_match_what_is_asked() {
    let ts = TestServer::with(|c| c.sync_page_size = 5).await;
    let mut other = ts.login("bob", "r").await;
    let mut c = ts.login("alice", "r").await;
    // The roster: bob was there first.
    assert_eq!(c.expect_event("remote_join").await["uid"], json!("bob"));
    insert(&mut c, 12).await;

    // Read ahead at 5, asked at 3.
    let p = c.sync(json!({"offset": 0})).await;
    assert_eq!(datas(&p), nums(0..5));
    let p = c.sync(json!({"offset": 3})).await;
    assert_eq!(datas(&p), nums(3..8));

    // Read ahead at 8 (a short page: 8..12), then the history grows.
    insert(&mut other, 3).await;
    for i in 0..3 {
        assert_eq!(c.expect_event("msg").await["data"], json!(i));
    }
    let p = c.sync(json!({"offset": 8})).await;
    assert_eq!(
        datas(&p),
        nums(8..12)
            .into_iter()
            .chain(nums(0..1))
            .collect::<Vec<_>>()
    );
    assert_eq!(p["next"], json!(1), "{p}");
    let p = c.sync(json!({"offset": 13})).await;
    assert_eq!(datas(&p), nums(1..3));
    assert_eq!(p["next"], json!(0), "{p}");

    // A msg between pages ends the read-ahead; the last page has its update.
    let p = c.sync(json!({"offset": 0})).await;
    assert_eq!(p["next"], json!(1), "{p}");
    update(&mut c, "u", "late").await;
    let (items, _) = c.sync_all(5).await;
    let tail: Vec<Value> = items.iter().map(|m| m["data"].clone()).collect();
    let mut expected = nums(5..12);
    expected.extend(nums(0..3));
    expected.push(json!("late"));
    assert_eq!(tail, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_from_a_middle_offset_starts_there() {
    let ts = TestServer::with(|c| c.sync_page_size = 5).await;
    let mut c = ts.login("alice", "r").await;
    insert(&mut c, 12).await;
    let p = c.sync(json!({"offset": 3})).await;
    assert_eq!(datas(&p), nums(3..8));
    assert_eq!(
        (p["offset"].clone(), p["next"].clone()),
        (json!(8), json!(1))
    );
    let p = c.sync(json!({"offset": 8})).await;
    assert_eq!(datas(&p), nums(8..12));
    assert_eq!(
        (p["offset"].clone(), p["next"].clone()),
        (json!(12), json!(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_messages_are_exactly_the_relayed_objects() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut b = ts.login("bob", "r").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    let sent = [
        json!({"data": {"k": [1, 2]}, "s": 0, "x": "y"}),
        json!({"data": "u", "s": 1, "1": "m", "2": "spoof"}),
        json!({"data": "plain"}),
    ];
    let mut relayed = Vec::new();
    for m in &sent {
        a.emit("msg", m.clone()).await;
        relayed.push(b.expect_event("msg").await);
    }
    let reply = b.sync(json!({"offset": 0})).await;
    // Inserts in order, then the update.
    assert_eq!(
        reply["data"],
        json!([relayed[0].clone(), relayed[2].clone(), relayed[1].clone()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_sync_is_base64_of_gzip_of_the_json_array() {
    let ts = TestServer::with(|c| c.sync_page_size = 5).await;
    let mut c = ts.login("alice", "r").await;
    insert(&mut c, 7).await;
    update(&mut c, "a", "ua").await;
    for offset in [0, 5] {
        let plain = c.sync(json!({"offset": offset})).await;
        let gz = c.sync(json!({"offset": offset, "encoding": "gzip"})).await;
        assert_eq!(gz["encoding"], json!("gzip"));
        assert_eq!(gunzip_base64(&gz["data"]), plain["data"], "offset {offset}");
        assert_eq!(gz["offset"], plain["offset"]);
        assert_eq!(gz["next"], plain["next"]);
        assert_eq!(gz["epoch"], plain["epoch"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_sync_of_an_empty_room_is_an_empty_array() {
    let ts = TestServer::start().await;
    let mut c = ts.login("alice", "r").await;
    let gz = c.sync(json!({"offset": 0, "encoding": "gzip"})).await;
    assert_eq!(gz["encoding"], json!("gzip"));
    assert_eq!(gunzip_base64(&gz["data"]), json!([]));
    assert_eq!(gz["next"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_sync_has_no_encoding_key() {
    let ts = TestServer::start().await;
    let mut c = ts.login("alice", "r").await;
    insert(&mut c, 1).await;
    let reply = c.sync(json!({"offset": 0})).await;
    assert!(reply.get("encoding").is_none(), "{reply}");
    assert!(reply["data"].is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_encoding_gives_a_plain_page() {
    let ts = TestServer::start().await;
    let mut c = ts.login("alice", "r").await;
    insert(&mut c, 1).await;
    let reply = c.sync(json!({"offset": 0, "encoding": "br"})).await;
    assert_eq!(datas(&reply), nums(0..1));
    assert!(reply.get("encoding").is_none(), "{reply}");
}

/// A sync with `offset` answers a full first page (treated as 0).
async fn assert_offset_treated_as_zero(request: Value) {
    let ts = TestServer::with(|c| c.sync_page_size = 5).await;
    let mut c = ts.login("alice", "r").await;
    insert(&mut c, 7).await;
    let reply = c.sync(request.clone()).await;
    assert_eq!(datas(&reply), nums(0..5), "request {request}");
    assert_eq!(reply["offset"], json!(5), "request {request}");
    assert_eq!(reply["next"], json!(1), "request {request}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_offset_is_zero() {
    assert_offset_treated_as_zero(json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_offset_is_zero() {
    assert_offset_treated_as_zero(json!({"offset": "5"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_offset_is_zero() {
    assert_offset_treated_as_zero(json!({"offset": -5})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fractional_offset_is_zero() {
    assert_offset_treated_as_zero(json!({"offset": 2.5})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_offset_is_zero() {
    assert_offset_treated_as_zero(json!({"offset": null})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_offset_is_zero() {
    assert_offset_treated_as_zero(json!({"offset": {"$gt": 0}})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_sync_payload_is_offset_zero() {
    assert_offset_treated_as_zero(Value::Null).await;
}

/// A sync with an absurdly large `offset` answers an empty last page.
async fn assert_offset_past_the_end(request: Value) {
    let ts = TestServer::start().await;
    let mut c = ts.login("alice", "r").await;
    insert(&mut c, 3).await;
    let reply = c.sync(request.clone()).await;
    assert_eq!(reply["data"], json!([]), "request {request}");
    assert_eq!(reply["next"], json!(0), "request {request}");
    // The socket still works.
    let reply = c.sync(json!({"offset": 0})).await;
    assert_eq!(datas(&reply), nums(0..3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_float_offset_is_clamped() {
    assert_offset_past_the_end(json!({"offset": 1e300})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u64_max_offset_is_past_the_end() {
    assert_offset_past_the_end(json!({"offset": u64::MAX})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_integer_literal_offset_is_clamped() {
    let ts = TestServer::start().await;
    let mut c = ts.login("alice", "r").await;
    insert(&mut c, 3).await;
    // 10^40 does not fit any integer type.
    c.emit_raw(&format!(r#"42["sync",{{"offset":1{}}}]"#, "0".repeat(40)))
        .await;
    let reply = c.expect_event("sync").await;
    assert_eq!(reply["data"], json!([]));
    assert_eq!(reply["next"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_just_past_the_end_is_an_empty_last_page() {
    assert_offset_past_the_end(json!({"offset": 3})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_far_past_the_end_is_an_empty_last_page() {
    assert_offset_past_the_end(json!({"offset": 1000})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_returns_only_this_rooms_history() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r1").await;
    let mut b = ts.login("bob", "r2").await;
    insert(&mut a, 3).await;
    let reply = b.sync(json!({"offset": 0})).await;
    assert_eq!(reply["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_from_zero_sends_remote_sync_to_the_others() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut b = ts.login("bob", "r").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    let reply = a.sync(json!({"offset": 0})).await;
    assert_eq!(reply["next"], json!(0));
    assert_eq!(b.expect_event("remote_sync").await, json!({"uid": "alice"}));
    a.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_treated_as_zero_also_sends_remote_sync() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut b = ts.login("bob", "r").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    a.sync(json!({})).await;
    assert_eq!(b.expect_event("remote_sync").await, json!({"uid": "alice"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_sync_carries_a_numeric_uid_as_a_number() {
    let ts = TestServer::start().await;
    let mut a = ts.login(7, "r").await;
    let mut b = ts.login("bob", "r").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    a.sync(json!({"offset": 0})).await;
    assert_eq!(b.expect_event("remote_sync").await, json!({"uid": 7}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_from_a_later_offset_sends_no_remote_sync() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut b = ts.login("bob", "r").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    insert(&mut a, 2).await;
    b.expect_event("msg").await;
    b.expect_event("msg").await;
    a.sync(json!({"offset": 1})).await;
    b.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_sync_from_zero_sends_no_remote_sync() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut d = ts.dummy("watcher", "r").await;
    d.expect_event("remote_join").await;
    let reply = d.sync(json!({"offset": 0})).await;
    assert_eq!(reply["next"], json!(0));
    a.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_sync_reaches_dummies() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut d = ts.dummy("watcher", "r").await;
    d.expect_event("remote_join").await;
    a.sync(json!({"offset": 0})).await;
    assert_eq!(d.expect_event("remote_sync").await, json!({"uid": "alice"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_before_join_gets_no_sync_reply() {
    let ts = TestServer::start().await;
    let mut c = ts.authenticated("alice").await;
    c.emit("sync", json!({"offset": 0})).await;
    c.expect_no_event(QUIET).await;
    assert_eq!(c.request("join", json!({"roomId": "r"})).await["status"], 0);
    assert_eq!(c.sync(json!({"offset": 0})).await["next"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_includes_the_clients_own_earlier_msgs() {
    let ts = TestServer::start().await;
    let mut c = ts.login("alice", "r").await;
    // Sent without waiting for acks; the session handles events in order,
    // so the sync that follows must see them.
    for i in 0..100 {
        c.emit("msg", json!({"data": i})).await;
    }
    let reply = c.sync(json!({"offset": 0})).await;
    assert_eq!(
        datas(&reply),
        nums(0..100),
        "a sync sent after 100 msgs saw {} of them",
        reply["data"].as_array().map_or(0, Vec::len)
    );
}
