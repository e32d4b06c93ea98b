//! PROTOCOL.md Part 1, "join".

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{Received, TestServer, QUIET};

fn join_ok() -> Value {
    json!({"status": 0, "data": "join success"})
}

fn require_room() -> Value {
    json!({"status": 1, "data": "join failed, require roomId"})
}

/// An authenticated client sends `payload` as join: it is refused with
/// 'require roomId', the socket stays open, and a retry with a good roomId works.
async fn assert_join_refused_then_retry(payload: Value) {
    let ts = TestServer::start().await;
    let mut member = ts.login("bob", "r").await;
    let mut c = ts.authenticated("alice").await;
    let reply = c.request("join", payload.clone()).await;
    assert_eq!(reply, require_room(), "payload {payload}");
    c.expect_no_event(QUIET).await;
    member.expect_no_event(Duration::ZERO).await;
    let reply = c.request("join", json!({"roomId": "r"})).await;
    assert_eq!(reply, join_ok(), "retry after {payload}");
    assert_eq!(c.expect_event("remote_join").await, json!({"uid": "bob"}));
    assert_eq!(
        member.expect_event("remote_join").await,
        json!({"uid": "alice"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_replies_status_0_join_success() {
    let ts = TestServer::start().await;
    let mut c = ts.authenticated("alice").await;
    assert_eq!(c.request("join", json!({"roomId": "r"})).await, join_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_an_empty_room_brings_no_remote_join() {
    let ts = TestServer::start().await;
    let mut c = ts.login("alice", "r").await;
    c.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_room_id_is_refused() {
    assert_join_refused_then_retry(json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_string_room_id_is_refused() {
    assert_join_refused_then_retry(json!({"roomId": ""})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_room_id_is_refused() {
    assert_join_refused_then_retry(json!({"roomId": null})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_room_id_is_refused() {
    assert_join_refused_then_retry(json!({"roomId": 0})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_room_id_is_refused() {
    assert_join_refused_then_retry(json!({"roomId": {}})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_object_room_id_is_refused() {
    assert_join_refused_then_retry(json!({"roomId": {"$ne": null}})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn array_room_id_is_refused() {
    assert_join_refused_then_retry(json!({"roomId": []})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boolean_room_id_is_refused() {
    assert_join_refused_then_retry(json!({"roomId": true})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_join_payload_is_refused() {
    assert_join_refused_then_retry(Value::Null).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_join_payload_is_refused() {
    assert_join_refused_then_retry(json!("r")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_room_id_is_accepted() {
    let ts = TestServer::start().await;
    let mut c = ts.authenticated("alice").await;
    let room = "r".repeat(256);
    assert_eq!(c.request("join", json!({"roomId": room})).await, join_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_long_room_id_is_refused_and_the_socket_stays() {
    let ts = TestServer::start().await;
    let mut c = ts.authenticated("alice").await;
    let reply = c.request("join", json!({"roomId": "r".repeat(257)})).await;
    assert_eq!(
        reply,
        json!({"status": 1, "data": "join failed, roomId too long"})
    );
    assert_eq!(c.request("join", json!({"roomId": "r"})).await, join_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn number_and_string_room_ids_are_the_same_room() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", 123).await;
    let mut b = ts.login("bob", "123").await;
    assert_eq!(a.expect_event("remote_join").await, json!({"uid": "bob"}));
    assert_eq!(b.expect_event("remote_join").await, json!({"uid": "alice"}));
    b.emit("msg", json!({"data": "hi"})).await;
    assert_eq!(a.expect_event("msg").await["data"], json!("hi"));
    let pa = a.sync(json!({"offset": 0})).await;
    assert_eq!(pa["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_rooms_are_isolated() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r1").await;
    let mut b = ts.login("bob", "r2").await;
    a.emit("msg", json!({"data": "hi"})).await;
    b.expect_no_event(QUIET).await;
    a.expect_no_event(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn others_get_remote_join_with_the_joiners_uid() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut b = ts.login("bob", "r").await;
    assert_eq!(a.expect_event("remote_join").await, json!({"uid": "bob"}));
    a.expect_no_event(QUIET).await;
    assert_eq!(b.expect_event("remote_join").await, json!({"uid": "alice"}));
    b.expect_no_event(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiner_gets_ack_then_one_remote_join_per_member_in_join_order() {
    let ts = TestServer::start().await;
    let mut members: Vec<support::Client> = Vec::new();
    for uid in ["m1", "m2", "m3"] {
        let mut c = ts.login(uid, "r").await;
        for _ in 0..members.len() {
            c.expect_event("remote_join").await;
        }
        for m in members.iter_mut() {
            assert_eq!(m.expect_event("remote_join").await, json!({"uid": uid}));
        }
        members.push(c);
    }
    let mut d = ts.authenticated("dan").await;
    d.emit("join", json!({"roomId": "r"})).await;
    let expected = vec![
        Received::Event("join".into(), join_ok()),
        Received::Event("remote_join".into(), json!({"uid": "m1"})),
        Received::Event("remote_join".into(), json!({"uid": "m2"})),
        Received::Event("remote_join".into(), json!({"uid": "m3"})),
    ];
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        got.push(d.recv().await);
    }
    assert_eq!(got, expected);
    d.expect_no_event(QUIET).await;
    for m in members.iter_mut() {
        assert_eq!(m.expect_event("remote_join").await, json!({"uid": "dan"}));
        m.expect_no_event(Duration::ZERO).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_skips_members_that_left() {
    let ts = TestServer::start().await;
    let mut a = ts.login("a", "r").await;
    let mut b = ts.login("b", "r").await;
    b.expect_event("remote_join").await;
    a.expect_event("remote_join").await;
    let mut c = ts.login("c", "r").await;
    c.expect_event("remote_join").await;
    c.expect_event("remote_join").await;
    b.close().await;
    assert_eq!(
        a.expect_event("remote_join").await,
        json!({"uid": "c"}),
        "c's join"
    );
    assert_eq!(
        a.expect_event("remote_disconnect").await,
        json!({"uid": "b"})
    );
    let mut d = ts.login("d", "r").await;
    assert_eq!(d.expect_event("remote_join").await, json!({"uid": "a"}));
    assert_eq!(d.expect_event("remote_join").await, json!({"uid": "c"}));
    d.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_timeout_disconnects_without_an_event() {
    let ts = TestServer::with(|c| c.join_timeout = Duration::from_millis(300)).await;
    let mut c = ts.authenticated("alice").await;
    c.expect_disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_join_does_not_stop_the_join_timer() {
    let ts = TestServer::with(|c| c.join_timeout = Duration::from_millis(1000)).await;
    let mut c = ts.authenticated("alice").await;
    assert_eq!(
        c.request("join", json!({"roomId": ""})).await,
        require_room()
    );
    c.expect_disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_socket_is_not_hit_by_the_join_timeout() {
    let ts = TestServer::with(|c| c.join_timeout = Duration::from_millis(1000)).await;
    let mut c = ts.login("alice", "r").await;
    c.expect_no_event(Duration::from_millis(1500)).await;
    let reply = c.sync(json!({"offset": 0})).await;
    assert_eq!(reply["next"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_join_moves_the_socket_to_the_new_room() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r1").await;
    let mut b = ts.login("bob", "r1").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    let mut c = ts.login("carol", "r2").await;

    assert_eq!(a.request("join", json!({"roomId": "r2"})).await, join_ok());
    assert_eq!(a.expect_event("remote_join").await, json!({"uid": "carol"}));
    assert_eq!(
        b.expect_event("remote_leave").await,
        json!({"uid": "alice"})
    );
    assert_eq!(c.expect_event("remote_join").await, json!({"uid": "alice"}));

    a.emit("msg", json!({"data": "to r2"})).await;
    assert_eq!(c.expect_event("msg").await["data"], json!("to r2"));
    b.expect_no_event(QUIET).await;

    b.emit("msg", json!({"data": "to r1"})).await;
    a.expect_no_event(QUIET).await;
    c.expect_no_event(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_socket_is_gone_from_the_old_rooms_roster() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r1").await;
    assert_eq!(a.request("join", json!({"roomId": "r2"})).await, join_ok());
    let mut d = ts.login("dan", "r1").await;
    d.expect_no_event(QUIET).await;
    a.expect_no_event(Duration::ZERO).await;
}

/// Members joining one room at the same moment each learn of every other
/// exactly once, from the roster or from a `remote_join`, whichever of
/// the two joins registered first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_joins_announce_every_member_exactly_once() {
    let ts = TestServer::start().await;
    for round in 0..6 {
        let mut members = Vec::new();
        for i in 0..8 {
            let uid = format!("u{i}");
            members.push((uid.clone(), ts.authenticated(uid.as_str()).await));
        }
        let (room, what) = (format!("crowd-{round}"), format!("round {round}"));
        support::join_at_once(&room, &mut members, &what).await;
    }
}

/// Members leaving while others join: every member's picture of the room,
/// built from the roster and the announcements, ends up as the room is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaves_racing_joins_leave_every_member_with_the_true_room() {
    let ts = TestServer::start().await;
    for round in 0..6 {
        let room = format!("churn-{round}");
        let mut staying = Vec::new();
        for i in 0..2 {
            let uid = format!("stay{i}");
            staying.push((uid.clone(), ts.login(uid.as_str(), room.as_str()).await));
        }
        let mut going = Vec::new();
        let mut before: Vec<String> = staying.iter().map(|(u, _)| u.clone()).collect();
        for i in 0..3 {
            let uid = format!("go{i}");
            going.push(ts.login(uid.as_str(), room.as_str()).await);
            before.push(uid);
        }
        // The announcements of the set-up.
        for c in staying.iter_mut().map(|(_, c)| c).chain(&mut going) {
            while c.recv_within(QUIET).await.is_some() {}
        }
        let mut joining = Vec::new();
        for i in 0..4 {
            let uid = format!("new{i}");
            joining.push((uid.clone(), ts.authenticated(uid.as_str()).await));
        }
        let what = format!("round {round}");
        support::churn(
            &room,
            &before,
            &mut staying,
            &mut going,
            &mut joining,
            &what,
        )
        .await;
    }
}
