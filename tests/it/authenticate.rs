//! PROTOCOL.md Part 1, "authenticate".

use crate::support;

use std::time::Duration;

use always_online::accounts::Kind;
use serde_json::{json, Value};
use support::{Client, TestServer, QUIET};

const AUTH_FAILED: &str = "auth failed, uid or token is wrong";

fn failed(reason: &str) -> Value {
    json!({"status": 1, "data": reason})
}

/// Sends `payload` as authenticate on a fresh connection and checks that it
/// is refused as wrong credentials, the reply arriving before the disconnect packet.
async fn assert_refused(ts: &TestServer, payload: Value) {
    let mut c = Client::connect(ts.addr()).await;
    let reply = c.request("authenticate", payload.clone()).await;
    assert_eq!(reply, failed(AUTH_FAILED), "payload {payload}");
    c.expect_disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_reply_is_status_0_auth_success() {
    let ts = TestServer::start().await;
    let token = ts.token("alice").await;
    let mut c = Client::connect(ts.addr()).await;
    let reply = c
        .request("authenticate", json!({"uid": "alice", "token": token}))
        .await;
    assert_eq!(reply, json!({"status": 0, "data": "auth success"}));
    c.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_refused_then_disconnected() {
    let ts = TestServer::start().await;
    ts.token("alice").await;
    assert_refused(&ts, json!({"uid": "alice", "token": "0".repeat(64)})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_uid_is_refused() {
    let ts = TestServer::start().await;
    let token = ts.token("alice").await;
    assert_refused(&ts, json!({"uid": "nobody", "token": token})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_token_is_refused() {
    let ts = TestServer::start().await;
    ts.token("alice").await;
    let bob_token = ts.token("bob").await;
    assert_refused(&ts, json!({"uid": "alice", "token": bob_token})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uid_as_object_is_refused() {
    let ts = TestServer::start().await;
    let token = ts.token("alice").await;
    assert_refused(&ts, json!({"uid": {"id": "alice"}, "token": token})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uid_as_array_is_refused() {
    let ts = TestServer::start().await;
    let token = ts.token("alice").await;
    assert_refused(&ts, json!({"uid": ["alice"], "token": token})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_object_uid_is_refused() {
    let ts = TestServer::start().await;
    let token = ts.token("alice").await;
    assert_refused(&ts, json!({"uid": {"$ne": null}, "token": token})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_object_token_is_refused() {
    let ts = TestServer::start().await;
    ts.token("alice").await;
    assert_refused(&ts, json!({"uid": "alice", "token": {"$ne": null}})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_as_array_is_refused() {
    let ts = TestServer::start().await;
    let token = ts.token("alice").await;
    assert_refused(&ts, json!({"uid": "alice", "token": [token]})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_as_number_is_refused() {
    let ts = TestServer::start().await;
    ts.token("alice").await;
    assert_refused(&ts, json!({"uid": "alice", "token": 12345})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_token_is_refused() {
    let ts = TestServer::start().await;
    ts.token("alice").await;
    assert_refused(&ts, json!({"uid": "alice"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_uid_is_refused() {
    let ts = TestServer::start().await;
    let token = ts.token("alice").await;
    assert_refused(&ts, json!({"token": token})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_object_is_refused() {
    let ts = TestServer::start().await;
    assert_refused(&ts, json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_payload_is_refused() {
    let ts = TestServer::start().await;
    assert_refused(&ts, Value::Null).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_string_uid_is_refused() {
    let ts = TestServer::start().await;
    assert_refused(&ts, json!({"uid": "", "token": "t"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_uid_is_refused() {
    let ts = TestServer::start().await;
    assert_refused(&ts, json!({"uid": 0, "token": "t"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boolean_uid_is_refused() {
    let ts = TestServer::start().await;
    assert_refused(&ts, json!({"uid": true, "token": "t"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_uid_is_refused() {
    let ts = TestServer::start().await;
    assert_refused(&ts, json!({"uid": "u".repeat(100_000), "token": "t"})).await;
    ts.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_uid_authenticates_as_its_string_form() {
    let ts = TestServer::start().await;
    let token = ts.token("1000").await;
    let mut c = Client::connect(ts.addr()).await;
    c.authenticate(json!(1000), &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_uid_is_echoed_as_a_number_in_remote_join() {
    let ts = TestServer::start().await;
    let mut bob = ts.login("bob", "r").await;
    let mut num = ts.login(1000, "r").await;
    assert_eq!(bob.expect_event("remote_join").await, json!({"uid": 1000}));
    assert_eq!(num.expect_event("remote_join").await, json!({"uid": "bob"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_uid_is_echoed_as_a_string_in_remote_join() {
    let ts = TestServer::start().await;
    let mut bob = ts.login("bob", "r").await;
    let _num = ts.login("1000", "r").await;
    assert_eq!(
        bob.expect_event("remote_join").await,
        json!({"uid": "1000"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_reply_arrives_before_the_disconnect_packet() {
    let ts = TestServer::start().await;
    let mut c = Client::connect(ts.addr()).await;
    c.emit("authenticate", json!({"uid": "x", "token": "y"}))
        .await;
    assert_eq!(
        c.recv().await,
        support::Received::Event("authenticate".into(), failed(AUTH_FAILED))
    );
    assert_eq!(c.recv().await, support::Received::Disconnect);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_timeout_replies_then_disconnects() {
    let ts = TestServer::with(|c| c.auth_timeout = Duration::from_millis(300)).await;
    let mut c = Client::connect(ts.addr()).await;
    assert_eq!(
        c.expect_event("authenticate").await,
        failed("authentication timeout")
    );
    c.expect_disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_timeout_does_not_hit_an_authenticated_socket() {
    let ts = TestServer::with(|c| c.auth_timeout = Duration::from_millis(1000)).await;
    let mut c = ts.login("alice", "r").await;
    c.expect_no_event(Duration::from_millis(1500)).await;
    let reply = c.sync(json!({"offset": 0})).await;
    assert_eq!(reply["next"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_refuses_the_success_after_the_limit() {
    let ts = TestServer::with(|c| c.auth_rate_limit = 2).await;
    let token = ts.token("alice").await;
    for _ in 0..2 {
        let mut c = Client::connect(ts.addr()).await;
        c.authenticate(json!("alice"), &token).await;
        c.close().await;
    }
    let mut c = Client::connect(ts.addr()).await;
    let reply = c
        .request("authenticate", json!({"uid": "alice", "token": token}))
        .await;
    assert_eq!(reply, failed("reach rate limit"));
    c.expect_disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_per_uid() {
    let ts = TestServer::with(|c| c.auth_rate_limit = 1).await;
    let alice = ts.token("alice").await;
    let bob = ts.token("bob").await;
    let mut a = Client::connect(ts.addr()).await;
    a.authenticate(json!("alice"), &alice).await;
    let mut b = Client::connect(ts.addr()).await;
    b.authenticate(json!("bob"), &bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_credentials_do_not_count_toward_the_rate_limit() {
    let ts = TestServer::with(|c| c.auth_rate_limit = 2).await;
    let token = ts.token("alice").await;
    for _ in 0..3 {
        assert_refused(&ts, json!({"uid": "alice", "token": "wrong"})).await;
    }
    for _ in 0..2 {
        let mut c = Client::connect(ts.addr()).await;
        c.authenticate(json!("alice"), &token).await;
        c.close().await;
    }
    let mut c = Client::connect(ts.addr()).await;
    let reply = c
        .request("authenticate", json!({"uid": "alice", "token": token}))
        .await;
    assert_eq!(reply, failed("reach rate limit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_authenticate_is_already_authenticated_and_changes_nothing() {
    let ts = TestServer::start().await;
    let token = ts.token("alice").await;
    let bob_token = ts.token("bob").await;
    let mut c = Client::connect(ts.addr()).await;
    c.authenticate(json!("alice"), &token).await;
    let reply = c
        .request("authenticate", json!({"uid": "bob", "token": bob_token}))
        .await;
    assert_eq!(reply, failed("already authenticated"));
    // Still usable, still alice.
    let mut other = ts.login("carol", "r").await;
    let ack = c.request("join", json!({"roomId": "r"})).await;
    assert_eq!(ack, json!({"status": 0, "data": "join success"}));
    assert_eq!(c.expect_event("remote_join").await, json!({"uid": "carol"}));
    assert_eq!(
        other.expect_event("remote_join").await,
        json!({"uid": "alice"})
    );
    c.emit("msg", json!({"data": 1})).await;
    assert_eq!(other.expect_event("msg").await["2"], json!("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_authenticate_with_bad_credentials_does_not_disconnect() {
    let ts = TestServer::start().await;
    let token = ts.token("alice").await;
    let mut c = Client::connect(ts.addr()).await;
    c.authenticate(json!("alice"), &token).await;
    let reply = c
        .request("authenticate", json!({"uid": "alice", "token": "wrong"}))
        .await;
    assert_eq!(reply, failed("already authenticated"));
    let ack = c.request("join", json!({"roomId": "r"})).await;
    assert_eq!(ack, json!({"status": 0, "data": "join success"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_authenticate_does_not_count_toward_the_rate_limit() {
    let ts = TestServer::with(|c| c.auth_rate_limit = 2).await;
    let token = ts.token("alice").await;
    let mut c = Client::connect(ts.addr()).await;
    c.authenticate(json!("alice"), &token).await;
    for _ in 0..3 {
        let reply = c
            .request("authenticate", json!({"uid": "alice", "token": token}))
            .await;
        assert_eq!(reply, failed("already authenticated"));
    }
    c.close().await;
    let mut c = Client::connect(ts.addr()).await;
    c.authenticate(json!("alice"), &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_before_authenticate_are_ignored() {
    let ts = TestServer::start().await;
    let token = ts.token("alice").await;
    let mut member = ts.login("bob", "r").await;
    let mut c = Client::connect(ts.addr()).await;
    c.emit("join", json!({"roomId": "r"})).await;
    c.emit("msg", json!({"data": "early"})).await;
    c.emit("sync", json!({"offset": 0})).await;
    c.emit("leave", json!({})).await;
    c.expect_no_event(QUIET).await;
    member.expect_no_event(QUIET).await;
    c.authenticate(json!("alice"), &token).await;
    let ack = c.request("join", json!({"roomId": "r"})).await;
    assert_eq!(ack, json!({"status": 0, "data": "join success"}));
    assert_eq!(c.expect_event("remote_join").await, json!({"uid": "bob"}));
    assert_eq!(
        member.expect_event("remote_join").await,
        json!({"uid": "alice"})
    );
    let reply = c.sync(json!({"offset": 0})).await;
    assert_eq!(reply["data"], json!([]), "the early msg was not stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_accepts_any_token() {
    let ts = TestServer::with(|c| c.dev = true).await;
    let mut c = Client::connect(ts.addr()).await;
    c.authenticate(json!("someone"), "anything").await;
    let mut d = Client::connect(ts.addr()).await;
    let reply = d
        .request("authenticate", json!({"uid": 42, "token": 7}))
        .await;
    assert_eq!(reply, json!({"status": 0, "data": "auth success"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_still_requires_a_uid() {
    let ts = TestServer::with(|c| c.dev = true).await;
    assert_refused(&ts, json!({"uid": "", "token": "x"})).await;
    assert_refused(&ts, json!({"token": "x"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_with_force_user_auth_checks_tokens() {
    let ts = TestServer::with(|c| c.dev = true).await;
    let token = ts.token("alice").await;
    ts.state()
        .cluster()
        .set_force_user_auth(true)
        .await
        .expect("set forceUserAuth");
    assert_refused(&ts, json!({"uid": "alice", "token": "anything"})).await;
    let mut c = Client::connect(ts.addr()).await;
    c.authenticate(json!("alice"), &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_user_auth_off_again_restores_dev_mode() {
    let ts = TestServer::with(|c| c.dev = true).await;
    let cluster = &ts.state().cluster();
    cluster.set_force_user_auth(true).await.expect("on");
    assert_refused(&ts, json!({"uid": "alice", "token": "anything"})).await;
    cluster.set_force_user_auth(false).await.expect("off");
    let mut c = Client::connect(ts.addr()).await;
    c.authenticate(json!("alice"), "anything").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshed_token_invalidates_the_old_one() {
    let ts = TestServer::start().await;
    let old = ts.token("alice").await;
    let new = ts
        .state()
        .accounts()
        .refresh(Kind::User, "alice")
        .await
        .expect("refresh");
    assert_ne!(old, new);
    assert_refused(&ts, json!({"uid": "alice", "token": old})).await;
    let mut c = Client::connect(ts.addr()).await;
    c.authenticate(json!("alice"), &new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_does_not_authenticate_a_user() {
    let ts = TestServer::start().await;
    let admin = ts
        .state()
        .accounts()
        .create(Kind::Admin, "root")
        .await
        .expect("create admin");
    assert_refused(&ts, json!({"uid": "root", "token": admin})).await;
}

// --- authenticate at connect (PROTOCOL.md Part 2) ----------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_connect_payload_authenticate_and_reply_after_the_connect() {
    let ts = TestServer::start().await;
    let token = ts.token("alice").await;
    let mut c = Client::connect_with_auth(ts.addr(), json!({"uid": "alice", "token": token}))
        .await
        .expect("connected");
    assert!(!c.sid.is_empty());
    assert_eq!(
        c.expect_event("authenticate").await,
        json!({"status": 0, "data": "auth success"})
    );
    // Authenticated: it may join, and a second authenticate is refused.
    let ack = c.request("join", json!({"roomId": "r"})).await;
    assert_eq!(ack, json!({"status": 0, "data": "join success"}));
    let again = c
        .request("authenticate", json!({"uid": "alice", "token": token}))
        .await;
    assert_eq!(again, failed("already authenticated"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_in_the_connect_payload_get_a_connect_error() {
    let ts = TestServer::start().await;
    ts.token("alice").await;
    for auth in [
        json!({"uid": "alice", "token": "0".repeat(64)}),
        json!({"uid": "alice"}),
        json!({"uid": 5, "token": "x"}),
    ] {
        let refused = Client::connect_with_auth(ts.addr(), auth.clone())
            .await
            .err()
            .unwrap_or_else(|| panic!("{auth} was accepted"));
        assert_eq!(
            refused,
            json!({"message": AUTH_FAILED, "data": failed(AUTH_FAILED)}),
            "{auth}"
        );
    }
    // The server goes on serving.
    let token = ts.token("bob").await;
    let mut c = Client::connect(ts.addr()).await;
    let reply = c
        .request("authenticate", json!({"uid": "bob", "token": token}))
        .await;
    assert_eq!(reply, json!({"status": 0, "data": "auth success"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_payload_without_a_uid_connects_for_the_authenticate_event() {
    let ts = TestServer::start().await;
    let token = ts.token("alice").await;
    let mut c = Client::connect_with_auth(ts.addr(), json!({"lang": "en"}))
        .await
        .expect("connected");
    c.expect_no_event(QUIET).await;
    let reply = c
        .request("authenticate", json!({"uid": "alice", "token": token}))
        .await;
    assert_eq!(reply, json!({"status": 0, "data": "auth success"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_at_connect_kicks_out_the_older_login() {
    let ts = TestServer::start().await;
    let token = ts.token("alice").await;
    let mut first = ts.authenticated("alice").await;
    let mut second = Client::connect_with_auth(ts.addr(), json!({"uid": "alice", "token": token}))
        .await
        .expect("connected");
    second.expect_event("authenticate").await;
    assert_eq!(
        first.recv().await,
        support::Received::Event("kickout".into(), json!(0))
    );
    first.expect_disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_logins_at_connect_count_toward_the_address_limit() {
    let ts = TestServer::with(|c| c.auth_failures_per_ip = 2).await;
    ts.token("alice").await;
    let wrong = json!({"uid": "alice", "token": "0".repeat(64)});
    for _ in 0..2 {
        let refused = Client::connect_with_auth(ts.addr(), wrong.clone())
            .await
            .err();
        assert_eq!(refused.unwrap()["message"], AUTH_FAILED);
    }
    let refused = Client::connect_with_auth(ts.addr(), wrong).await.err();
    assert_eq!(refused.unwrap()["message"], "reach rate limit");
}
