//! PROTOCOL.md Part 1, "dummy" (observers).

use crate::support;

use serde_json::json;
use support::{Received, TestServer, QUIET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_join_gets_the_normal_ack() {
    let ts = TestServer::start().await;
    let mut d = ts.authenticated("watcher").await;
    let reply = d
        .request("join", json!({"roomId": "r", "dummy": true}))
        .await;
    assert_eq!(reply, json!({"status": 0, "data": "join success"}));
    d.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_join_is_not_announced() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let _d = ts.dummy("watcher", "r").await;
    a.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_false_is_a_normal_member() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut b = ts.authenticated("bob").await;
    let reply = b
        .request("join", json!({"roomId": "r", "dummy": false}))
        .await;
    assert_eq!(reply["status"], json!(0));
    assert_eq!(a.expect_event("remote_join").await, json!({"uid": "bob"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_is_invisible_to_later_joiners() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut d = ts.dummy("watcher", "r").await;
    d.expect_event("remote_join").await;
    let mut b = ts.login("bob", "r").await;
    assert_eq!(b.expect_event("remote_join").await, json!({"uid": "alice"}));
    b.expect_no_event(QUIET).await;
    assert_eq!(a.expect_event("remote_join").await, json!({"uid": "bob"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_gets_the_roster_of_members_in_join_order() {
    let ts = TestServer::start().await;
    let _a = ts.login("alice", "r").await;
    let _b = ts.login("bob", "r").await;
    let mut d = ts.dummy("watcher", "r").await;
    assert_eq!(d.expect_event("remote_join").await, json!({"uid": "alice"}));
    assert_eq!(d.expect_event("remote_join").await, json!({"uid": "bob"}));
    d.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_roster_skips_other_dummies() {
    let ts = TestServer::start().await;
    let _d1 = ts.dummy("watcher1", "r").await;
    let _a = ts.login("alice", "r").await;
    let mut d2 = ts.dummy("watcher2", "r").await;
    assert_eq!(
        d2.expect_event("remote_join").await,
        json!({"uid": "alice"})
    );
    d2.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_receives_remote_join_of_later_members() {
    let ts = TestServer::start().await;
    let mut d = ts.dummy("watcher", "r").await;
    let _a = ts.login("alice", "r").await;
    assert_eq!(d.expect_event("remote_join").await, json!({"uid": "alice"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_receives_remote_leave_and_remote_disconnect_of_members() {
    let ts = TestServer::start().await;
    let mut d = ts.dummy("watcher", "r").await;
    let mut a = ts.login("alice", "r").await;
    let b = ts.login("bob", "r").await;
    assert_eq!(d.expect_event("remote_join").await, json!({"uid": "alice"}));
    assert_eq!(d.expect_event("remote_join").await, json!({"uid": "bob"}));
    a.expect_event("remote_join").await;
    a.emit("leave", json!({})).await;
    a.expect_disconnect().await;
    b.close().await;
    let bob_gone = Received::Event("remote_disconnect".into(), json!({"uid": "bob"}));
    let mut seen = Vec::new();
    while seen.last() != Some(&bob_gone) {
        seen.push(d.recv().await);
    }
    let alice_left = Received::Event("remote_leave".into(), json!({"uid": "alice"}));
    let alice_gone = Received::Event("remote_disconnect".into(), json!({"uid": "alice"}));
    assert!(
        seen == vec![alice_left.clone(), bob_gone.clone()]
            || seen == vec![alice_left, alice_gone, bob_gone],
        "dummy saw {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_can_sync() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    for i in 0..3 {
        let ack = a.send_msg(json!({"data": i})).await;
        assert_eq!(ack["status"], json!(0));
    }
    let mut d = ts.dummy("watcher", "r").await;
    d.expect_event("remote_join").await;
    let reply = d.sync(json!({"offset": 0})).await;
    assert_eq!(
        reply["data"],
        json!([
            {"data": 0, "2": "alice", "seq": 0},
            {"data": 1, "2": "alice", "seq": 1},
            {"data": 2, "2": "alice", "seq": 2},
        ])
    );
    assert_eq!(reply["next"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_msgs_are_dropped_with_status_3() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut d = ts.dummy("watcher", "r").await;
    d.expect_event("remote_join").await;
    for msg in [
        json!({"data": "x"}),
        json!({"data": "x", "s": 1, "1": "m"}),
        json!({"data": "x", "s": 2}),
    ] {
        let ack = d.send_msg(msg).await;
        assert_eq!(
            ack,
            json!({"status": 3, "data": "dummy clients cannot send"})
        );
    }
    a.expect_no_event(QUIET).await;
    assert_eq!(a.sync(json!({"offset": 0})).await["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_gets_no_remote_join_for_itself() {
    let ts = TestServer::start().await;
    let mut d = ts.dummy("watcher", "r").await;
    d.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_can_become_a_dummy_by_joining_again() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r1").await;
    let mut b = ts.login("bob", "r1").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    let reply = a
        .request("join", json!({"roomId": "r2", "dummy": true}))
        .await;
    assert_eq!(reply["status"], json!(0));
    assert_eq!(
        b.expect_event("remote_leave").await,
        json!({"uid": "alice"})
    );
    let mut c = ts.login("carol", "r2").await;
    c.expect_no_event(QUIET).await;
    assert_eq!(a.expect_event("remote_join").await, json!({"uid": "carol"}));
}
