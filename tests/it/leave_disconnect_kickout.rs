//! PROTOCOL.md Part 1, "leave, disconnect, kickout".

use crate::support;

use std::time::Duration;

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

/// The kicked-out connection gets `kickout` with payload 0, then the disconnect packet.
async fn assert_kicked_out(c: &mut Client) {
    assert_eq!(
        c.recv().await,
        Received::Event("kickout".into(), json!(0)),
        "kickout event"
    );
    c.expect_disconnect().await;
}

// --- leave -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_sends_remote_leave_to_others_and_disconnects_the_leaver() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit("leave", json!({})).await;
    a.expect_disconnect().await;
    assert_eq!(
        b.expect_event("remote_leave").await,
        json!({"uid": "alice"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_may_only_be_followed_by_remote_disconnect() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit("leave", json!({})).await;
    a.expect_disconnect().await;
    assert_eq!(
        b.expect_event("remote_leave").await,
        json!({"uid": "alice"})
    );
    if let Some(r) = b.recv_within(QUIET).await {
        assert_eq!(
            r,
            Received::Event("remote_disconnect".into(), json!({"uid": "alice"}))
        );
        b.expect_no_event(QUIET).await;
    }
}

async fn assert_leave_with_payload(payload: Option<Value>) {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    match payload {
        Some(p) => a.emit("leave", p).await,
        None => a.emit_bare("leave").await,
    }
    a.expect_disconnect().await;
    assert_eq!(
        b.expect_event("remote_leave").await,
        json!({"uid": "alice"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_without_payload_works() {
    assert_leave_with_payload(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_payload_is_ignored() {
    assert_leave_with_payload(Some(json!({"roomId": "elsewhere", "uid": "bob"}))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_with_null_payload_works() {
    assert_leave_with_payload(Some(Value::Null)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_with_string_payload_works() {
    assert_leave_with_payload(Some(json!("bye"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_remote_leave_carries_a_numeric_uid_as_a_number() {
    let ts = TestServer::start().await;
    let mut a = ts.login(99, "r").await;
    let mut b = ts.login("bob", "r").await;
    a.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    a.emit("leave", json!({})).await;
    assert_eq!(b.expect_event("remote_leave").await, json!({"uid": 99}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_before_join_disconnects_silently() {
    let ts = TestServer::start().await;
    let mut b = ts.login("bob", "r").await;
    let mut a = ts.authenticated("alice").await;
    a.emit("leave", json!({})).await;
    a.expect_disconnect().await;
    b.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_that_left_is_not_in_the_roster() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit("leave", json!({})).await;
    a.expect_disconnect().await;
    b.expect_event("remote_leave").await;
    let mut c = ts.login("carol", "r").await;
    assert_eq!(c.expect_event("remote_join").await, json!({"uid": "bob"}));
    c.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_that_left_gets_no_more_msgs() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit("leave", json!({})).await;
    a.expect_disconnect().await;
    b.expect_event("remote_leave").await;
    b.emit("msg", json!({"data": "after"})).await;
    if let Some(r) = a.recv_within(QUIET).await {
        assert_eq!(r, Received::Closed, "only the close may follow");
    }
}

/// Reads `b` until it has `n` msgs and the `presence` event about alice (or
/// nothing more arrives); returns the number of msgs received and how many
/// of them came before the presence event.
async fn msgs_around(b: &mut Client, n: usize, presence: &str) -> (usize, Option<usize>) {
    let mut msgs = 0;
    let mut presence_at = None;
    while msgs < n || presence_at.is_none() {
        match b.recv_within(support::WAIT).await {
            Some(Received::Event(name, _)) if name == "msg" => msgs += 1,
            Some(Received::Event(name, v)) if name == presence && presence_at.is_none() => {
                assert_eq!(v, json!({"uid": "alice"}));
                presence_at = Some(msgs);
            }
            Some(Received::Event(name, _)) if name == "remote_disconnect" => {}
            Some(other) => panic!("unexpected {other:?}"),
            None => break,
        }
    }
    (msgs, presence_at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_leave_comes_after_the_leavers_earlier_msgs() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    // A burst (below the session's queue depth) and then leave.
    for i in 0..200 {
        a.emit("msg", json!({"data": i})).await;
    }
    a.emit("leave", json!({})).await;
    let (msgs, at) = msgs_around(&mut b, 200, "remote_leave").await;
    assert_eq!(
        (msgs, at),
        (200, Some(200)),
        "bob got {msgs} of alice's 200 msgs, remote_leave after {at:?} of them"
    );
}

// --- disconnect --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_joined_socket_sends_remote_disconnect() {
    let ts = TestServer::start().await;
    let (a, mut b) = pair(&ts).await;
    a.close().await;
    assert_eq!(
        b.expect_event("remote_disconnect").await,
        json!({"uid": "alice"})
    );
    b.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_disconnect_comes_after_the_members_earlier_msgs() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    for i in 0..200 {
        a.emit("msg", json!({"data": i})).await;
    }
    a.close().await;
    let (msgs, at) = msgs_around(&mut b, 200, "remote_disconnect").await;
    assert_eq!(
        (msgs, at),
        (200, Some(200)),
        "bob got {msgs} of alice's 200 msgs, remote_disconnect after {at:?} of them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_tcp_connection_sends_remote_disconnect() {
    let ts = TestServer::start().await;
    let (a, mut b) = pair(&ts).await;
    drop(a);
    assert_eq!(
        b.expect_event("remote_disconnect").await,
        json!({"uid": "alice"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_disconnect_packet_from_the_client_sends_remote_disconnect() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    a.emit_raw("41").await;
    assert_eq!(
        b.expect_event("remote_disconnect").await,
        json!({"uid": "alice"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnected_member_is_not_in_the_roster() {
    let ts = TestServer::start().await;
    let (a, mut b) = pair(&ts).await;
    a.close().await;
    b.expect_event("remote_disconnect").await;
    let mut c = ts.login("carol", "r").await;
    assert_eq!(c.expect_event("remote_join").await, json!({"uid": "bob"}));
    c.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_an_unjoined_socket_announces_nothing() {
    let ts = TestServer::start().await;
    let mut b = ts.login("bob", "r").await;
    let a = ts.authenticated("alice").await;
    a.close().await;
    b.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_can_log_in_again_after_disconnecting() {
    let ts = TestServer::start().await;
    let (a, mut b) = pair(&ts).await;
    a.close().await;
    b.expect_event("remote_disconnect").await;
    let mut a = ts.login("alice", "r").await;
    assert_eq!(a.expect_event("remote_join").await, json!({"uid": "bob"}));
    assert_eq!(b.expect_event("remote_join").await, json!({"uid": "alice"}));
}

// --- dummies -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_leave_is_silent() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut d = ts.dummy("watcher", "r").await;
    d.expect_event("remote_join").await;
    d.emit("leave", json!({})).await;
    d.expect_disconnect().await;
    a.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_disconnect_is_silent() {
    let ts = TestServer::start().await;
    let mut a = ts.login("alice", "r").await;
    let mut d = ts.dummy("watcher", "r").await;
    d.expect_event("remote_join").await;
    d.close().await;
    a.expect_no_event(QUIET).await;
}

// --- kickout -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_login_kicks_out_the_first_with_kickout_0_then_disconnect() {
    let ts = TestServer::start().await;
    let (mut a, _b) = pair(&ts).await;
    let _a2 = ts.authenticated("alice").await;
    assert_kicked_out(&mut a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kickout_is_silent_for_the_room() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    let _a2 = ts.authenticated("alice").await;
    assert_kicked_out(&mut a).await;
    b.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_login_replacing_a_dummy_is_announced() {
    let ts = TestServer::start().await;
    let mut b = ts.login("bob", "r").await;
    let mut d = ts.dummy("alice", "r").await;
    assert_eq!(d.expect_event("remote_join").await, json!({"uid": "bob"}));
    b.expect_no_event(QUIET).await;
    let mut a2 = ts.authenticated("alice").await;
    assert_kicked_out(&mut d).await;
    let reply = a2.request("join", json!({"roomId": "r"})).await;
    assert_eq!(reply, json!({"status": 0, "data": "join success"}));
    // The room never knew of the observer, so the member's arrival is news.
    assert_eq!(b.expect_event("remote_join").await, json!({"uid": "alice"}));
    assert_eq!(a2.expect_event("remote_join").await, json!({"uid": "bob"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejoin_after_kickout_is_not_announced() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    let mut a2 = ts.authenticated("alice").await;
    assert_kicked_out(&mut a).await;
    let reply = a2.request("join", json!({"roomId": "r"})).await;
    assert_eq!(reply, json!({"status": 0, "data": "join success"}));
    assert_eq!(a2.expect_event("remote_join").await, json!({"uid": "bob"}));
    a2.expect_no_event(QUIET).await;
    b.expect_no_event(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connection_works_normally_after_kickout() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    let mut a2 = ts.login("alice", "r").await;
    assert_kicked_out(&mut a).await;
    assert_eq!(a2.expect_event("remote_join").await, json!({"uid": "bob"}));
    a2.emit("msg", json!({"data": "from new"})).await;
    assert_eq!(b.expect_event("msg").await["data"], json!("from new"));
    b.emit("msg", json!({"data": "to new"})).await;
    assert_eq!(a2.expect_event("msg").await["data"], json!("to new"));
    let reply = a2.sync(json!({"offset": 1})).await;
    assert_eq!(reply["data"][0]["data"], json!("to new"));
    // The new connection leaves like any member.
    a2.emit("leave", json!({})).await;
    a2.expect_disconnect().await;
    assert_eq!(
        b.expect_event("remote_leave").await,
        json!({"uid": "alice"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicked_out_connection_gets_no_more_msgs() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    let _a2 = ts.authenticated("alice").await;
    assert_kicked_out(&mut a).await;
    b.emit("msg", json!({"data": "after"})).await;
    if let Some(r) = a.recv_within(QUIET).await {
        assert_eq!(r, Received::Closed, "only the close may follow");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kickout_of_an_unjoined_connection() {
    let ts = TestServer::start().await;
    let mut a = ts.authenticated("alice").await;
    let _a2 = ts.authenticated("alice").await;
    assert_kicked_out(&mut a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_and_string_uid_are_the_same_login() {
    let ts = TestServer::start().await;
    let mut a = ts.authenticated(1000).await;
    let _a2 = ts.authenticated("1000").await;
    assert_kicked_out(&mut a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_new_login_kicks_out_the_previous_one() {
    let ts = TestServer::start().await;
    let mut b = ts.login("bob", "r").await;
    let mut a1 = ts.login("alice", "r").await;
    a1.expect_event("remote_join").await;
    b.expect_event("remote_join").await;
    let mut a2 = ts.login("alice", "r").await;
    assert_kicked_out(&mut a1).await;
    a2.expect_event("remote_join").await;
    let mut a3 = ts.login("alice", "r").await;
    assert_kicked_out(&mut a2).await;
    assert_eq!(a3.expect_event("remote_join").await, json!({"uid": "bob"}));
    b.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kickout_later_joiners_see_the_uid_once() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    let _a2 = ts.login("alice", "r").await;
    assert_kicked_out(&mut a).await;
    let mut c = ts.login("carol", "r").await;
    assert_eq!(c.expect_event("remote_join").await, json!({"uid": "bob"}));
    assert_eq!(c.expect_event("remote_join").await, json!({"uid": "alice"}));
    c.expect_no_event(QUIET).await;
    assert_eq!(b.expect_event("remote_join").await, json!({"uid": "carol"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kickout_removes_the_old_connection_from_the_roster_before_a_rejoin() {
    let ts = TestServer::start().await;
    let (mut a, _b) = pair(&ts).await;
    let _a2 = ts.authenticated("alice").await;
    assert_kicked_out(&mut a).await;
    let mut c = ts.login("carol", "r").await;
    assert_eq!(c.expect_event("remote_join").await, json!({"uid": "bob"}));
    c.expect_no_event(QUIET).await;
}

/// A member that joined between a kickout and the new login's join never
/// knew of that uid: the rejoin is announced to it, and only to it (the
/// members from before the kickout still know the uid).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejoin_after_kickout_is_announced_to_members_who_joined_in_between() {
    let ts = TestServer::start().await;
    let (mut a, mut b) = pair(&ts).await;
    let mut a2 = ts.authenticated("alice").await;
    assert_kicked_out(&mut a).await;
    let mut c = ts.login("carol", "r").await;
    assert_eq!(c.expect_event("remote_join").await, json!({"uid": "bob"}));
    assert_eq!(b.expect_event("remote_join").await, json!({"uid": "carol"}));

    let reply = a2.request("join", json!({"roomId": "r"})).await;
    assert_eq!(reply, json!({"status": 0, "data": "join success"}));
    assert_eq!(a2.expect_event("remote_join").await, json!({"uid": "bob"}));
    assert_eq!(
        a2.expect_event("remote_join").await,
        json!({"uid": "carol"})
    );
    assert_eq!(c.expect_event("remote_join").await, json!({"uid": "alice"}));
    c.expect_no_event(QUIET).await;
    b.expect_no_event(Duration::ZERO).await;
    a2.expect_no_event(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_login_does_not_kick_out() {
    let ts = TestServer::start().await;
    let (mut a, _b) = pair(&ts).await;
    let mut bad = Client::connect(ts.addr()).await;
    let reply = bad
        .request("authenticate", json!({"uid": "alice", "token": "wrong"}))
        .await;
    assert_eq!(reply["status"], json!(1));
    a.expect_no_event(QUIET).await;
}
