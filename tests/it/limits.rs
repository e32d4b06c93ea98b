//! What one client may make the server do: msg rates per connection and
//! per room, events before authentication, failed authentications per
//! address, the room member cap and the store queue's byte bound
//! (PROTOCOL.md Part 2; docs/OPERATIONS.md "Limits").

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{Client, Received, TestServer, WAIT};
use tokio::time::Instant;

const TOO_MANY: &str = "too many requests";

/// Sends `n` ignore msgs with acks as fast as the socket takes them and
/// returns the acks in order.
async fn burst(c: &mut Client, n: usize) -> Vec<Value> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(c.emit_ack_id("msg", json!({"data": i, "s": 2})).await);
    }
    let mut acks = Vec::with_capacity(n);
    for id in ids {
        acks.push(c.wait_ack(id).await);
    }
    acks
}

/// The payloads of the msg events `c` receives within `wait`.
async fn received_msgs(c: &mut Client, wait: Duration) -> Vec<Value> {
    let mut got = Vec::new();
    while let Some(r) = c.recv_within(wait).await {
        if let Received::Event(name, payload) = r {
            if name == "msg" {
                got.push(payload["data"].clone());
            }
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_its_burst_gets_status_6_and_nothing_is_relayed() {
    let ts = TestServer::with(|c| {
        c.msg_rate = 5;
        c.msg_burst = 10;
    })
    .await;
    let mut a = ts.login("alice", "rate-room").await;
    let mut b = ts.login("bob", "rate-room").await;
    a.expect_event("remote_join").await;
    let acks = burst(&mut a, 30).await;
    let ok = acks.iter().filter(|a| a["status"] == json!(0)).count();
    let refused: Vec<&Value> = acks.iter().filter(|a| a["status"] == json!(6)).collect();
    assert!(
        (10..=13).contains(&ok),
        "the burst passes, then the rate: {acks:?}"
    );
    assert_eq!(ok + refused.len(), 30, "{acks:?}");
    assert!(refused.iter().all(|a| a["data"] == json!(TOO_MANY)));
    let relayed = received_msgs(&mut b, Duration::from_millis(500)).await;
    assert_eq!(relayed.len(), ok, "only accepted msgs are relayed");

    // The allowance comes back at the rate.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let ack = a.send_msg(json!({"data": "later", "s": 0})).await;
    assert_eq!(ack["status"], json!(0), "{ack}");
    let metrics = metrics_text(&ts).await;
    assert!(
        metrics.contains(&format!(
            "ao_messages_dropped_total{{reason=\"rate_limit\"}} {}",
            refused.len()
        )),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_sender_is_refused_while_a_reader_stays_and_a_newcomer_joins() {
    let ts = TestServer::with(|c| {
        c.msg_rate = 50;
        c.msg_burst = 50;
    })
    .await;
    let mut flood = ts.login("flood", "busy").await;
    let mut reader = ts.login("reader", "busy").await;
    flood.expect_event("remote_join").await;
    // Stored inserts of 1 kB, sent as fast as the socket takes them.
    let body = "x".repeat(1000);
    let mut ids = Vec::new();
    for i in 0..2000 {
        ids.push(
            flood
                .emit_ack_id("msg", json!({"data": i, "pad": body, "s": 0}))
                .await,
        );
    }
    let started = Instant::now();
    let mut newcomer = ts.login("newcomer", "busy").await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a fresh client joins within a second during the flood"
    );
    let mut refused = 0;
    for id in ids {
        let ack = flood.wait_ack(id).await;
        if ack["status"] == json!(6) {
            refused += 1;
        }
    }
    assert!(refused > 1000, "most of the flood is refused: {refused}");
    // The reader got every accepted msg and is still connected.
    let got = received_msgs(&mut reader, Duration::from_millis(500)).await;
    assert_eq!(got.len(), 2000 - refused);
    reader
        .emit("msg", json!({"data": "still here", "s": 2}))
        .await;
    loop {
        match newcomer.recv().await {
            Received::Event(name, p) if name == "msg" && p["data"] == json!("still here") => break,
            Received::Event(..) => continue,
            other => panic!("newcomer: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rooms_rate_counts_every_sender_and_other_rooms_are_untouched() {
    let ts = TestServer::with(|c| c.room_msg_rate = 10).await;
    let mut a = ts.login("a", "limited").await;
    let mut b = ts.login("b", "limited").await;
    let mut c = ts.login("c", "elsewhere").await;
    a.expect_event("remote_join").await;
    let from_a = burst(&mut a, 8).await;
    let from_b = burst(&mut b, 8).await;
    let ok = from_a
        .iter()
        .chain(&from_b)
        .filter(|x| x["status"] == json!(0))
        .count();
    assert!(
        (10..=13).contains(&ok),
        "10 a second for the room: {from_a:?} {from_b:?}"
    );
    assert!(from_b
        .iter()
        .any(|x| x == &json!({"status": 6, "data": TOO_MANY})));
    let other = burst(&mut c, 8).await;
    assert!(other.iter().all(|x| x["status"] == json!(0)), "{other:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_authentication_only_small_events_are_taken() {
    let ts = TestServer::start().await;
    let token = ts.token("small").await;
    let mut c = Client::connect(ts.addr()).await;
    let big = "y".repeat(20 * 1024);
    // An oversize event is answered, and the connection closed.
    let ack = c.emit_with_ack("msg", json!({"data": big})).await;
    assert_eq!(ack, json!({"status": 2, "data": "not authenticated"}));
    c.expect_disconnect().await;
    let mut c = Client::connect(ts.addr()).await;
    c.authenticate(json!("small"), &token).await;
    // After authentication the full limits apply.
    let ack = c.emit_with_ack("msg", json!({"data": big})).await;
    assert_eq!(ack, json!({"status": 2, "data": "not joined"}));

    // An oversize authenticate is refused and the connection closed.
    let mut d = Client::connect(ts.addr()).await;
    d.emit("authenticate", json!({"uid": "small", "token": big}))
        .await;
    assert_eq!(
        d.expect_event("authenticate").await,
        json!({"status": 1, "data": "auth failed, uid or token is wrong"})
    );
    d.expect_disconnect().await;
    let metrics = metrics_text(&ts).await;
    assert!(
        metrics.contains("ao_messages_dropped_total{reason=\"unauthenticated\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_past_its_failed_authentications_is_refused_unchecked() {
    let ts = TestServer::with(|c| c.auth_failures_per_ip = 3).await;
    let token = ts.token("victim").await;
    for _ in 0..3 {
        let mut c = Client::connect(ts.addr()).await;
        let reply = c
            .request("authenticate", json!({"uid": "victim", "token": "guess"}))
            .await;
        assert_eq!(reply["data"], json!("auth failed, uid or token is wrong"));
    }
    // The right token no longer helps from this address, for now.
    let mut c = Client::connect(ts.addr()).await;
    let reply = c
        .request("authenticate", json!({"uid": "victim", "token": token}))
        .await;
    assert_eq!(reply, json!({"status": 1, "data": "reach rate limit"}));
    let metrics = metrics_text(&ts).await;
    assert!(
        metrics.contains("ao_auth_failures_total{reason=\"too_many_failures\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_room_refuses_the_next_join_and_the_joiner_stays_where_it_was() {
    let ts = TestServer::with(|c| c.max_room_members = 2).await;
    let _a = ts.login("a", "small-room").await;
    let _b = ts.dummy("b", "small-room").await;
    let mut c = ts.login("c", "other-room").await;
    let reply = c.request("join", json!({"roomId": "small-room"})).await;
    assert_eq!(
        reply,
        json!({"status": 1, "data": "join failed, room is full"})
    );
    // Still a member of its room: its msgs are taken.
    let ack = c.send_msg(json!({"data": 1, "s": 2})).await;
    assert_eq!(ack["status"], json!(0), "{ack}");
    let metrics = metrics_text(&ts).await;
    assert!(
        metrics.contains("ao_requests_refused_total{reason=\"room_full\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_roster_goes_out_without_overflowing_the_joiners_queue() {
    // 300 members with 200-byte uids: about 70 kB of remote_join events for
    // a joiner whose queue holds 64 KiB.
    let ts = TestServer::with(|c| c.client_queue_max_bytes = 64 * 1024).await;
    let mut members = Vec::new();
    for i in 0..300 {
        let uid = format!("{i:0>200}");
        let mut m = ts.authenticated(uid.as_str()).await;
        let ack = m.request("join", json!({"roomId": "crowd"})).await;
        assert_eq!(ack["status"], json!(0));
        members.push(m);
    }
    let mut joiner = ts.authenticated("late").await;
    let ack = joiner.request("join", json!({"roomId": "crowd"})).await;
    assert_eq!(ack["status"], json!(0));
    let mut seen = 0;
    let deadline = Instant::now() + WAIT;
    while seen < 300 && Instant::now() < deadline {
        match joiner.recv().await {
            Received::Event(name, _) if name == "remote_join" => seen += 1,
            other => panic!("joiner: {other:?}"),
        }
    }
    assert_eq!(seen, 300, "the whole roster arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_queue_refuses_with_status_5() {
    // The smallest queue the settings allow: one largest msg.
    let ts = TestServer::with(|c| {
        c.max_msg_bytes = 2000;
        c.session_writes_max_bytes = 2000;
        c.store_queue_max_bytes = 2000;
    })
    .await;
    let state = ts.state().clone();
    // Another session's write holds the whole queue.
    assert!(state.limits().store_reserve(2000));
    let mut a = ts.login("a", "q").await;
    let ack = a.send_msg(json!({"data": 1})).await;
    assert_eq!(ack, json!({"status": 5, "data": "storage unavailable"}));
    state.limits().store_release(2000);
    let ack = a.send_msg(json!({"data": 2})).await;
    assert_eq!(ack["status"], json!(0), "{ack}");
    assert_eq!(state.limits().store_queued(), 0, "released once stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_queue_refuses_a_sender_already_sending_with_status_5() {
    // A sender that already sent has its msgs handed to the store where
    // they arrive; a full queue still refuses them as the session does.
    let ts = TestServer::with(|c| {
        c.max_msg_bytes = 2000;
        c.session_writes_max_bytes = 2000;
        c.store_queue_max_bytes = 2000;
    })
    .await;
    let state = ts.state().clone();
    let mut a = ts.login("a", "q").await;
    for n in 0..3 {
        let ack = a.send_msg(json!({"data": n})).await;
        assert_eq!(ack, json!({"status": 0, "seq": n}));
    }
    assert!(state.limits().store_reserve(2000));
    let ack = a.send_msg(json!({"data": 3})).await;
    assert_eq!(ack, json!({"status": 5, "data": "storage unavailable"}));
    state.limits().store_release(2000);
    let ack = a.send_msg(json!({"data": 4})).await;
    assert_eq!(
        ack,
        json!({"status": 0, "seq": 3}),
        "the refused msg took no seq"
    );
    assert_eq!(state.limits().store_queued(), 0, "released once stored");
}

/// The server's `/metrics` text.
pub(crate) async fn metrics_text(ts: &TestServer) -> String {
    reqwest::get(format!("http://{}/metrics", ts.addr()))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_admin_logins_are_throttled_per_address_with_retry_after() {
    let ts = TestServer::with(|c| {
        c.api_login_failures_per_ip = 2;
        c.admin = Some(("root".into(), "right".into()));
    })
    .await;
    let http = reqwest::Client::new();
    let stat = |token: &str| {
        http.get(format!(
            "http://{}/admin/monitor/stat?uid=root&token={token}",
            ts.addr()
        ))
        .send()
    };
    for _ in 0..2 {
        let r = stat("wrong").await.expect("GET stat");
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["meta"]["status"], json!(1));
    }
    let r = stat("right").await.expect("GET stat");
    assert_eq!(r.status(), 429, "even the right token waits");
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After seconds");
    assert!((1..=30).contains(&retry), "{retry}");
    // The accounts API counts the same address.
    let r = http
        .post(format!(
            "http://{}/user/create_token?uid=root&token=right",
            ts.api_addr()
        ))
        .json(&json!({"uid": "someone"}))
        .send()
        .await
        .expect("POST create_token");
    assert_eq!(r.status(), 429);
    let metrics = metrics_text(&ts).await;
    assert!(
        metrics.contains("ao_requests_refused_total{reason=\"api_login_throttled\"} 2"),
        "{metrics}"
    );
}
