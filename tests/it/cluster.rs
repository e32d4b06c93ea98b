//! The server as a cluster: several `always-online` processes sharing one
//! Redis (a private `redis-server`, or a three-master Redis Cluster), tested
//! from the outside only — sockets, the admin and accounts HTTP APIs and
//! `redis-cli`.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::redis::{RedisCluster, RedisServer};
use support::{poll, Client, Received, QUIET, WAIT};
use tokio::time::Instant;

use support::cluster::*;

// ---------------------------------------------------------------------------
// 1. relay and seq
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_across_three_nodes_in_seq_order() {
    const N: u64 = 50;
    let cl = Cluster::start(3);
    let uids = ["a", "b", "c"];
    let clients = room_of(
        &[(cl.addr(0), "a"), (cl.addr(1), "b"), (cl.addr(2), "c")],
        "relay",
    )
    .await;

    let mut tasks = Vec::new();
    for (c, uid) in clients.into_iter().zip(uids) {
        tasks.push(tokio::spawn(async move {
            let mut c = c;
            let acked = send_inserts(&mut c, uid, N).await;
            let got = recv_msgs(&mut c, 2 * N as usize, Duration::from_secs(30)).await;
            (c, uid, acked, got)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("member task"));
    }

    let mut all_acked: HashMap<u64, (String, u64)> = HashMap::new();
    for (_, uid, acked, got) in &results {
        let others: Vec<&str> = uids.iter().copied().filter(|u| u != uid).collect();
        assert_received_all(uid, got, &others, N);
        let seqs: Vec<u64> = acked.iter().map(|&(_, s)| s).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{uid}: ack seqs not increasing: {seqs:?}"
        );
        for &(i, seq) in acked {
            let prev = all_acked.insert(seq, (uid.to_string(), i));
            assert!(
                prev.is_none(),
                "seq {seq} acked twice: {prev:?} and {uid}/{i}"
            );
        }
    }

    // Sync from 0 on every node returns all 3N, dense, matching the acks.
    for node in 0..3 {
        let items = history(cl.addr(node), "relay").await;
        assert_eq!(items.len() as u64, 3 * N, "node {node}: sync length");
        assert_dense(&items);
        for (k, m) in items.iter().enumerate() {
            let (from, i) = &all_acked[&(k as u64)];
            assert_eq!(m["data"], json!({"from": from, "i": i}), "sync item {k}");
            assert_eq!(m["2"], json!(from), "sync item {k}");
        }
    }
}

// ---------------------------------------------------------------------------
// 2. roster
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_events_cross_nodes_in_join_order() {
    let cl = Cluster::start(3);
    let mut u1 = member(cl.addr(0), "u1", "roster").await;
    let mut u2 = member(cl.addr(1), "u2", "roster").await;
    expect_presence(&mut u2, "remote_join", "u1").await;
    expect_presence(&mut u1, "remote_join", "u2").await;
    let mut u3 = member(cl.addr(2), "u3", "roster").await;
    // Join order, never its own uid.
    expect_presence(&mut u3, "remote_join", "u1").await;
    expect_presence(&mut u3, "remote_join", "u2").await;
    expect_presence(&mut u1, "remote_join", "u3").await;
    expect_presence(&mut u2, "remote_join", "u3").await;
    u3.expect_no_event(QUIET).await;

    // u2 (node B) leaves: u1 (A) and u3 (C) hear remote_leave.
    u2.emit("leave", json!({})).await;
    u2.expect_disconnect().await;
    expect_presence(&mut u1, "remote_leave", "u2").await;
    expect_presence(&mut u3, "remote_leave", "u2").await;

    // u3 (node C) closes its connection: u1 (A) hears remote_disconnect,
    // possibly after a remote_disconnect for the leaver.
    u3.close().await;
    loop {
        match u1.recv().await {
            Received::Event(name, v)
                if name == "remote_disconnect" && v == json!({"uid": "u3"}) =>
            {
                break
            }
            Received::Event(name, v)
                if name == "remote_disconnect" && v == json!({"uid": "u2"}) => {}
            other => panic!("u1: expected remote_disconnect u3, got {other:?}"),
        }
    }
    u1.expect_no_event(QUIET).await;
    assert_eq!(room_users(cl.addr(1), "roster").await, vec!["u1"]);
}

/// Joins and leaves racing on two nodes: every member learns of every other
/// exactly once and ends up with the room as it is (join order is the
/// registry's, whichever node a member is on).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_joins_and_leaves_across_nodes_leave_every_member_with_the_true_room() {
    let cl = Cluster::start(2);
    let node = |i: usize| cl.addr(i % 2);
    for round in 0..4 {
        let (room, what) = (format!("crowd-{round}"), format!("round {round}"));
        let mut members = Vec::new();
        for i in 0..8 {
            let uid = format!("u{i}");
            let mut c = Client::connect(node(i)).await;
            c.authenticate(json!(uid), "any").await;
            members.push((uid, c));
        }
        support::join_at_once(&room, &mut members, &what).await;

        // The first three leave while four more join.
        let before: Vec<String> = members.iter().map(|(u, _)| u.clone()).collect();
        let mut staying = members.split_off(3);
        let mut going: Vec<Client> = members.into_iter().map(|(_, c)| c).collect();
        let mut joining = Vec::new();
        for i in 0..4 {
            let uid = format!("n{round}-{i}");
            let mut c = Client::connect(node(i + 1)).await;
            c.authenticate(json!(uid), "any").await;
            joining.push((uid, c));
        }
        let what = format!("{what}, after the churn");
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

/// Redis losing the presence counter (a restart without persistence, a
/// flush) while members keep their numbers: joins and leaves after it are
/// still told to the members already in the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_told_after_redis_lost_the_presence_counter() {
    let cl = Cluster::start(2);
    let mut cs = room_of(&[(cl.addr(0), "a"), (cl.addr(1), "b")], "lost").await;
    let mut b = cs.pop().expect("b");
    let mut a = cs.pop().expect("a");
    assert_eq!(cl.redis.cli(&["DEL", "{ao}:joinseq"]), "1");

    let mut c = member(cl.addr(0), "c", "lost").await;
    expect_presence(&mut c, "remote_join", "a").await;
    expect_presence(&mut c, "remote_join", "b").await;
    expect_presence(&mut a, "remote_join", "c").await;
    expect_presence(&mut b, "remote_join", "c").await;

    b.emit("leave", json!({})).await;
    b.expect_disconnect().await;
    expect_presence(&mut a, "remote_leave", "b").await;
    expect_presence(&mut c, "remote_leave", "b").await;
    a.expect_no_event(QUIET).await;
    c.expect_no_event(Duration::ZERO).await;
}

// ---------------------------------------------------------------------------
// 3. kickout
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kickout_across_nodes_is_silent_for_the_room() {
    let cl = Cluster::start(3);
    let mut cs = room_of(&[(cl.addr(2), "y"), (cl.addr(0), "x")], "kick").await;
    let mut x_a = cs.pop().expect("x");
    let mut y_c = cs.pop().expect("y");

    // x logs in again on B and joins the same room.
    let mut x_b = member(cl.addr(1), "x", "kick").await;
    assert_eq!(
        x_a.recv().await,
        Received::Event("kickout".into(), json!(0)),
        "old connection on A: kickout"
    );
    x_a.expect_disconnect().await;
    // The new connection hears the existing member, never itself.
    expect_presence(&mut x_b, "remote_join", "y").await;
    // The room hears neither leave, disconnect nor the new join.
    y_c.expect_no_event(Duration::from_millis(1500)).await;
    x_b.expect_no_event(QUIET).await;
    assert_eq!(room_users(cl.addr(2), "kick").await, vec!["y", "x"]);

    // The new connection works both ways.
    let ack = x_b.send_msg(json!({"data": "from x"})).await;
    assert_eq!(ack["status"], json!(0), "{ack}");
    let got = y_c.expect_event("msg").await;
    assert_eq!(got["data"], json!("from x"));
    let ack = y_c.send_msg(json!({"data": "from y"})).await;
    assert_eq!(ack["status"], json!(0), "{ack}");
    assert_eq!(x_b.expect_event("msg").await["data"], json!("from y"));
}

// ---------------------------------------------------------------------------
// 4. dummy
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_on_another_node_observes_silently() {
    let cl = Cluster::start(2);
    let mut m1 = member(cl.addr(0), "m1", "obs").await;
    let mut d = dummy(cl.addr(1), "d", "obs").await;
    expect_presence(&mut d, "remote_join", "m1").await;
    m1.expect_no_event(QUIET).await;

    // A later member (on A) hears m1 only; the dummy hears the newcomer.
    let mut m2 = member(cl.addr(0), "m2", "obs").await;
    expect_presence(&mut m2, "remote_join", "m1").await;
    expect_presence(&mut m1, "remote_join", "m2").await;
    expect_presence(&mut d, "remote_join", "m2").await;
    m2.expect_no_event(QUIET).await;
    assert_eq!(room_users(cl.addr(1), "obs").await, vec!["m1", "m2"]);

    // The dummy receives msgs from A.
    for i in 0..5 {
        let ack = m1.send_msg(json!({"data": i})).await;
        assert_eq!(ack["status"], json!(0), "{ack}");
    }
    let got = recv_msgs(&mut d, 5, Duration::from_secs(10)).await;
    assert_eq!(
        got.iter().map(|m| m["data"].clone()).collect::<Vec<_>>(),
        (0..5).map(|i| json!(i)).collect::<Vec<_>>()
    );
    recv_msgs(&mut m2, 5, Duration::from_secs(10)).await;

    // Its msgs are refused, its sync is not announced, nor its leaving.
    let ack = d.send_msg(json!({"data": "from the dummy"})).await;
    assert_ne!(ack["status"], json!(0), "dummy msg acked as success: {ack}");
    let (items, _) = d.sync_all(0).await;
    assert_eq!(items.len(), 5);
    d.close().await;
    m1.expect_no_event(Duration::from_millis(1000)).await;
    m2.expect_no_event(QUIET).await;
}

// ---------------------------------------------------------------------------
// 5. admin
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_is_cluster_wide() {
    let cl = Cluster::start(3);
    let mut r1 = room_of(
        &[(cl.addr(0), "u1"), (cl.addr(1), "u2"), (cl.addr(2), "u3")],
        "adm1",
    )
    .await;
    let mut u4 = member(cl.addr(2), "u4", "adm2").await;

    // stat on A sees every node.
    let s = poll(Duration::from_secs(5), "stat on A", || async {
        let s = stat(cl.addr(0)).await;
        if s["online_user_count"] == json!(4) && s["online_socket_count"] == json!(4) {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    })
    .await;
    let mut uids: Vec<String> = s["online_users"]
        .as_array()
        .unwrap_or_else(|| panic!("online_users: {s}"))
        .iter()
        .map(|u| support::id_string(&u["uid"]))
        .collect();
    uids.sort();
    assert_eq!(uids, vec!["u1", "u2", "u3", "u4"], "{s}");
    let mut rooms: Vec<String> = s["online_rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("online_rooms: {s}"))
        .iter()
        .map(support::id_string)
        .collect();
    rooms.sort();
    assert_eq!(rooms, vec!["adm1", "adm2"], "{s}");
    assert_eq!(s["online_room_count"], json!(2), "{s}");
    assert!(!s.to_string().contains(ADMIN_TOKEN), "stat leaks the token");

    // room_users from any node, in join order.
    for i in 0..3 {
        assert_eq!(room_users(cl.addr(i), "adm1").await, vec!["u1", "u2", "u3"]);
        assert_eq!(room_users(cl.addr(i), "adm2").await, vec!["u4"]);
    }

    // A push on A reaches members on B and C (and not the other room).
    admin_ok(
        reqwest::Method::POST,
        cl.addr(0),
        "/admin/system/push",
        Some(json!({"roomId": "adm1", "content": "hello"})),
    )
    .await;
    for c in r1.iter_mut() {
        assert_eq!(c.expect_event("system").await, json!("hello"));
    }
    u4.expect_no_event(QUIET).await;

    // forceUserAuth set on A applies on B: a bad token is refused there...
    admin_ok(
        reqwest::Method::POST,
        cl.addr(0),
        "/admin/system/config",
        Some(json!({"forceUserAuth": true})),
    )
    .await;
    let mut attempt = 0;
    poll(Duration::from_secs(5), "forceUserAuth on B", || {
        attempt += 1;
        let uid = format!("nobody-{attempt}");
        let addr = cl.addr(1);
        async move {
            let r = try_authenticate(addr, &uid, "bad token").await;
            if r == json!({"status": 1, "data": AUTH_FAILED}) {
                Ok(())
            } else {
                Err(r.to_string())
            }
        }
    })
    .await;
    assert_eq!(stat(cl.addr(2)).await["force_user_auth"], json!(true));

    // ... and a token created through A's accounts API works on B.
    let url = format!("http://{}/user/create_token", cl.nodes[0].api_addr);
    let resp = http()
        .post(&url)
        .basic_auth(ADMIN_UID, Some(ADMIN_TOKEN))
        .json(&json!({"uid": "real"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let v: Value = resp.json().await.expect("create_token reply");
    assert_eq!(v["meta"]["status"], json!(0), "{v}");
    let token = v["data"]["token"].as_str().expect("token").to_owned();
    assert_eq!(
        try_authenticate(cl.addr(1), "real", &token).await,
        json!({"status": 0, "data": "auth success"})
    );
    assert_eq!(
        try_authenticate(cl.addr(2), "real", "wrong").await,
        json!({"status": 1, "data": AUTH_FAILED})
    );

    // A refresh through C's accounts API retires the old token on every node.
    let url = format!("http://{}/user/refresh_token", cl.nodes[2].api_addr);
    let v: Value = http()
        .post(&url)
        .basic_auth(ADMIN_UID, Some(ADMIN_TOKEN))
        .json(&json!({"uid": "real"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .json()
        .await
        .expect("refresh_token reply");
    assert_eq!(v["meta"]["status"], json!(0), "{v}");
    let fresh = v["data"]["token"].as_str().expect("token").to_owned();
    for i in 0..3 {
        assert_eq!(
            try_authenticate(cl.addr(i), "real", &token).await,
            json!({"status": 1, "data": AUTH_FAILED}),
            "old token on node {i}"
        );
    }
    assert_eq!(
        try_authenticate(cl.addr(0), "real", &fresh).await,
        json!({"status": 0, "data": "auth success"})
    );
}

// ---------------------------------------------------------------------------
// 6. auth rate limit
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_rate_limit_window_is_shared() {
    let cl = Cluster::start_with(3, |cmd| {
        cmd.env("AO_AUTH_RATE_LIMIT", "2");
    });
    let ok = json!({"status": 0, "data": "auth success"});
    assert_eq!(try_authenticate(cl.addr(0), "rl", "any").await, ok, "on A");
    assert_eq!(try_authenticate(cl.addr(1), "rl", "any").await, ok, "on B");
    assert_eq!(
        try_authenticate(cl.addr(2), "rl", "any").await,
        json!({"status": 1, "data": "reach rate limit"}),
        "third on C"
    );
    // Another uid is not affected.
    assert_eq!(try_authenticate(cl.addr(2), "other", "any").await, ok);
}

// ---------------------------------------------------------------------------
// 7. concurrent appends
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_from_three_nodes_get_dense_seqs() {
    const M: u64 = 40;
    let cl = Cluster::start(3);
    let who: Vec<(SocketAddr, String)> =
        (0..9).map(|k| (cl.addr(k % 3), format!("w{k}"))).collect();
    let refs: Vec<(SocketAddr, &str)> = who.iter().map(|(a, u)| (*a, u.as_str())).collect();
    let clients = room_of(&refs, "blast").await;

    let start = Arc::new(tokio::sync::Barrier::new(clients.len()));
    let mut tasks = Vec::new();
    for (c, (_, uid)) in clients.into_iter().zip(who.clone()) {
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = c;
            start.wait().await;
            // Blast every msg without waiting, then collect the acks.
            let mut ids = Vec::new();
            for i in 0..M {
                let msg = json!({"data": {"from": uid, "i": i}});
                ids.push((i, c.emit_ack_id("msg", msg).await));
            }
            let mut acked = Vec::new();
            for (i, id) in ids {
                let ack = c.wait_ack(id).await;
                assert_eq!(ack["status"], json!(0), "{uid} msg {i}: {ack}");
                acked.push((i, seq_of(&ack)));
            }
            let got = recv_msgs(&mut c, 8 * M as usize, Duration::from_secs(30)).await;
            (c, uid, acked, got)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("blaster task"));
    }

    let uids: Vec<String> = who.iter().map(|(_, u)| u.clone()).collect();
    let mut by_seq: HashMap<u64, (String, u64)> = HashMap::new();
    for (_, uid, acked, got) in &results {
        let others: Vec<&str> = uids
            .iter()
            .map(String::as_str)
            .filter(|u| u != uid)
            .collect();
        assert_received_all(uid, got, &others, M);
        let seqs: Vec<u64> = acked.iter().map(|&(_, s)| s).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{uid}: ack seqs not in send order: {seqs:?}"
        );
        for &(i, seq) in acked {
            let prev = by_seq.insert(seq, (uid.clone(), i));
            assert!(
                prev.is_none(),
                "seq {seq} acked twice: {prev:?} and {uid}/{i}"
            );
        }
    }
    let total = 9 * M;
    assert_eq!(by_seq.len() as u64, total);

    let items = history(cl.addr(1), "blast").await;
    assert_eq!(items.len() as u64, total, "sync length");
    assert_dense(&items);
    for (k, m) in items.iter().enumerate() {
        let (from, i) = &by_seq[&(k as u64)];
        assert_eq!(m["data"], json!({"from": from, "i": i}), "sync item {k}");
    }
}

// ---------------------------------------------------------------------------
// 8. a history written by the original service
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_reads_the_original_layout() {
    const OLD: usize = 250;
    let redis = RedisServer::start();
    let mut args = vec!["RPUSH".to_owned(), "msg_legacy_insert".to_owned()];
    for k in 0..OLD {
        args.push(
            json!({"data": {"text": format!("m{k}"), "2": "old"}, "ts": 1_700_000_000 + k})
                .to_string(),
        );
    }
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(redis.cli(&args_ref), OLD.to_string());
    let update =
        json!({"data": {"text": "edited", "s": 1, "1": "m-1", "2": "old"}, "ts": 1_700_001_000});
    assert_eq!(
        redis.cli(&["HSET", "msg_legacy_update", "m-1", &update.to_string()]),
        "1"
    );
    // The original appended each replaced update to a list.
    let replaced =
        json!({"data": {"text": "first", "s": 1, "1": "m-1", "2": "old"}, "ts": 1_699_999_000});
    assert_eq!(
        redis.cli(&["RPUSH", "msg_legacy_update_backup", &replaced.to_string()]),
        "1"
    );

    let cl = Cluster::on(redis, 2, |_| {});
    let mut a = member(cl.addr(0), "la", "legacy").await;
    let mut b = member(cl.addr(1), "lb", "legacy").await;
    expect_presence(&mut a, "remote_join", "lb").await;
    expect_presence(&mut b, "remote_join", "la").await;

    let (items, replies) = b.sync_all(0).await;
    assert_eq!(items.len(), OLD + 1, "inserts and the update");
    for (k, m) in items[..OLD].iter().enumerate() {
        assert_eq!(m["text"], json!(format!("m{k}")), "item {k}: {m}");
        assert_eq!(m["seq"], json!(k), "item {k}: {m}");
    }
    let last = &items[OLD];
    assert_eq!(last["text"], json!("edited"), "{last}");
    assert_eq!(last["1"], json!("m-1"), "{last}");
    // The update is on the last page only.
    let last_reply = replies.last().expect("a reply");
    assert_eq!(last_reply["next"], json!(0));
    for r in &replies[..replies.len() - 1] {
        assert!(
            r["data"]
                .as_array()
                .expect("data")
                .iter()
                .all(|m| m["text"] != json!("edited")),
            "update before the last page: {r}"
        );
    }
    assert!(replies.len() >= 2, "250 inserts fit one page? {replies:?}");

    // A new insert continues the list.
    let ack = a.send_msg(json!({"data": "new"})).await;
    assert_eq!(ack, json!({"status": 0, "seq": OLD}), "{ack}");
    let relayed = b.expect_event("msg").await;
    assert_eq!(relayed["seq"], json!(OLD), "{relayed}");
    let (tail, _) = b.sync_all(OLD as u64).await;
    assert_eq!(tail[0]["data"], json!("new"), "{tail:?}");
    assert_eq!(tail[0]["seq"], json!(OLD), "{tail:?}");
    assert_eq!(
        cl.redis.cli(&["LLEN", "msg_legacy_insert"]),
        (OLD + 1).to_string()
    );

    // An update of a msgId the original stored is taken, though the
    // original's backups are a list.
    let ack = a
        .send_msg(json!({"data": "edited again", "s": 1, "1": "m-1"}))
        .await;
    assert_eq!(ack, json!({"status": 0}), "{ack}");
    let relayed = b.expect_event("msg").await;
    assert_eq!(relayed["data"], json!("edited again"), "{relayed}");
    let (all, _) = b.sync_all(0).await;
    let updates: Vec<&Value> = all.iter().filter(|m| m["1"] == json!("m-1")).collect();
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0]["data"], json!("edited again"));
    assert_eq!(cl.redis.cli(&["TYPE", "msg_legacy_update_backup"]), "list");
}

// ---------------------------------------------------------------------------
// 9. a node killed with SIGKILL
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_is_healed_by_the_others() {
    let mut cl = Cluster::start_with(2, |cmd| {
        cmd.env("AO_NODE_TTL_MS", "2000");
    });
    let mut cs = room_of(&[(cl.addr(0), "u1"), (cl.addr(1), "u2")], "heal").await;
    let mut u2 = cs.pop().expect("u2");
    let mut u1 = cs.pop().expect("u1");
    let acked = send_inserts(&mut u2, "u2", 10).await;
    recv_msgs(&mut u1, 10, Duration::from_secs(10)).await;

    let b = cl.nodes.remove(1);
    b.kill();
    let killed = Instant::now();
    match u1.recv_within(Duration::from_secs(6)).await {
        Some(Received::Event(name, v)) if name == "remote_disconnect" => {
            assert_eq!(v, json!({"uid": "u2"}));
        }
        other => panic!("u1: expected remote_disconnect u2 within 6 s of the kill, got {other:?}"),
    }
    println!("remote_disconnect {:?} after the kill", killed.elapsed());
    poll(Duration::from_secs(3), "room_users without u2", || async {
        let users = room_users(cl.addr(0), "heal").await;
        if users == vec!["u1"] {
            Ok(())
        } else {
            Err(format!("{users:?}"))
        }
    })
    .await;
    drop(u2);

    // u2 comes back on A and finds everything it had acked.
    let mut u2 = member(cl.addr(0), "u2", "heal").await;
    expect_presence(&mut u2, "remote_join", "u1").await;
    expect_presence(&mut u1, "remote_join", "u2").await;
    let (items, _) = u2.sync_all(0).await;
    assert_eq!(items.len(), acked.len());
    for &(i, seq) in &acked {
        let m = &items[seq as usize];
        assert_eq!(m["data"], json!({"from": "u2", "i": i}), "seq {seq}");
    }
}

/// With Redis unreachable, joins and leaves cannot be numbered: the node's
/// own members are still told of them, and a joiner is never told of itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_on_a_node_without_redis_reaches_its_own_members() {
    let mut cl = Cluster::start(1);
    let mut a1 = member(cl.addr(0), "a1", "cut").await;
    let mut a2 = Client::connect(cl.addr(0)).await;
    a2.authenticate(json!("a2"), "any").await;
    let mut a3 = Client::connect(cl.addr(0)).await;
    a3.authenticate(json!("a3"), "any").await;
    cl.redis.kill();
    await_readiness(cl.addr(0), 503).await;

    assert_eq!(
        a2.request("join", json!({"roomId": "cut"})).await,
        json!({"status": 0, "data": "join success"})
    );
    expect_presence(&mut a2, "remote_join", "a1").await;
    expect_presence(&mut a1, "remote_join", "a2").await;
    a2.expect_no_event(QUIET).await;

    // Registry calls fail at once while Redis is unreachable: the leave and
    // the logout after it take no command timeout (3 s each).
    a2.emit("leave", json!({})).await;
    expect_presence(&mut a1, "remote_leave", "a2").await;
    a2.expect_disconnect().await;
    a1.expect_no_event(QUIET).await;

    // A room no member here was in: its channel is subscribed once Redis
    // is back; the join does not wait for it.
    assert_eq!(
        a3.request("join", json!({"roomId": "cut2"})).await,
        json!({"status": 0, "data": "join success"})
    );
}

/// A node cut off from Redis for a moment misses what the other nodes
/// publish meanwhile. Once it is back, its members get the stored msgs
/// (from the store) and are told the presence changes, in order and once
/// (from the rooms' presence logs); the members of the other nodes get
/// nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_changes_missed_while_cut_off_are_told_when_the_node_is_back() {
    let redis = RedisServer::start();
    let relay = support::cut::Relay::start(redis.port()).await;
    let (a, _a_dir) = start_nodes(&redis.url(), 1, &|_| {});
    let (b, _b_dir) = start_nodes(&relay.redis_url(), 1, &|_| {});
    let (addr_a, addr_b) = (a[0].addr, b[0].addr);
    let mut cs = room_of(&[(addr_a, "a1"), (addr_b, "b1"), (addr_b, "b2")], "gap").await;
    let mut b2 = cs.pop().expect("b2");
    let mut b1 = cs.pop().expect("b1");
    let mut a1 = cs.pop().expect("a1");

    relay.cut();
    await_readiness(addr_b, 503).await;
    let mut a2 = member(addr_a, "a2", "gap").await;
    for earlier in ["a1", "b1", "b2"] {
        expect_presence(&mut a2, "remote_join", earlier).await;
    }
    expect_presence(&mut a1, "remote_join", "a2").await;
    let sent = send_inserts(&mut a2, "a2", 3).await;
    assert_eq!(recv_msgs(&mut a1, 3, WAIT).await.len(), 3);
    a1.emit("leave", json!({})).await;
    a1.expect_disconnect().await;
    expect_presence(&mut a2, "remote_leave", "a1").await;
    b1.expect_no_event(QUIET).await;

    relay.restore();
    await_readiness(addr_b, 200).await;
    for b in [&mut b1, &mut b2] {
        let (mut msgs, mut presence) = (Vec::new(), Vec::new());
        while msgs.len() + presence.len() < 5 {
            match b.recv_within(WAIT).await {
                Some(Received::Event(name, v)) if name == "msg" => msgs.push(seq_of(&v)),
                Some(Received::Event(name, v)) => presence.push((name, v)),
                other => panic!("expected the missed events, got {other:?}"),
            }
        }
        assert_eq!(msgs, sent.iter().map(|&(_, seq)| seq).collect::<Vec<_>>());
        assert_eq!(
            presence,
            vec![
                ("remote_join".to_owned(), json!({"uid": "a2"})),
                ("remote_leave".to_owned(), json!({"uid": "a1"}))
            ]
        );
    }
    b1.expect_no_event(QUIET).await;
    b2.expect_no_event(Duration::ZERO).await;
    a2.expect_no_event(Duration::ZERO).await;

    // Presence goes on as before, once.
    b2.emit("leave", json!({})).await;
    b2.expect_disconnect().await;
    expect_presence(&mut a2, "remote_leave", "b2").await;
    expect_presence(&mut b1, "remote_leave", "b2").await;
    a2.expect_no_event(QUIET).await;
    b1.expect_no_event(Duration::ZERO).await;
}

/// A uid that logs in again on another node while the node of its older
/// connection is cut off from Redis: the kick cannot reach that node then.
/// When it is back, it kicks the older connection out instead of
/// registering it again; the room hears nothing, and has the uid once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_elsewhere_while_cut_off_kicks_the_older_connection_when_the_node_is_back() {
    let redis = RedisServer::start();
    let relay = support::cut::Relay::start(redis.port()).await;
    let (a, _a_dir) = start_nodes(&redis.url(), 1, &|_| {});
    let (b, _b_dir) = start_nodes(&relay.redis_url(), 1, &|_| {});
    let (addr_a, addr_b) = (a[0].addr, b[0].addr);
    let mut cs = room_of(&[(addr_a, "w"), (addr_b, "u")], "again").await;
    let mut u_old = cs.pop().expect("u");
    let mut w = cs.pop().expect("w");

    relay.cut();
    await_readiness(addr_b, 503).await;
    let mut u_new = member(addr_a, "u", "again").await;
    expect_presence(&mut u_new, "remote_join", "w").await;
    u_old.expect_no_event(QUIET).await;

    relay.restore();
    await_readiness(addr_b, 200).await;
    match u_old.recv_within(Duration::from_secs(10)).await {
        Some(Received::Event(name, v)) if name == "kickout" => assert_eq!(v, json!(0)),
        other => panic!("older connection: expected kickout once B is back, got {other:?}"),
    }
    u_old.expect_disconnect().await;
    w.expect_no_event(QUIET).await;
    u_new.expect_no_event(Duration::ZERO).await;
    poll(Duration::from_secs(5), "room of w and u once", || async {
        let mut users = room_users(addr_a, "again").await;
        users.sort();
        if users == ["u", "w"] {
            Ok(())
        } else {
            Err(format!("{users:?}"))
        }
    })
    .await;

    // The newer login works both ways.
    let ack = u_new.send_msg(json!({"data": "from u"})).await;
    assert_eq!(ack["status"], json!(0), "{ack}");
    assert_eq!(w.expect_event("msg").await["data"], json!("from u"));
}

/// A node that stalls longer than its heartbeat lives is taken for dead:
/// the others tell its rooms its members are gone. When it comes back with
/// its connections still open, the rooms are told they are back; its own
/// members, which never saw anyone leave, are told nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_a_node_taken_for_dead_are_announced_again_when_it_returns() {
    let cl = Cluster::start_with(2, |cmd| {
        cmd.env("AO_NODE_TTL_MS", "2000");
    });
    let mut cs = room_of(
        &[(cl.addr(0), "u1"), (cl.addr(1), "u2"), (cl.addr(1), "u3")],
        "stall",
    )
    .await;
    let mut u3 = cs.pop().expect("u3");
    let mut u2 = cs.pop().expect("u2");
    let mut u1 = cs.pop().expect("u1");

    signal_node(&cl, 1, "STOP");
    let mut gone = Vec::new();
    for _ in 0..2 {
        match u1.recv_within(Duration::from_secs(8)).await {
            Some(Received::Event(name, v)) if name == "remote_disconnect" => gone.push(v),
            other => {
                signal_node(&cl, 1, "CONT");
                panic!("u1: expected remote_disconnect while B stalls, got {other:?}");
            }
        }
    }
    signal_node(&cl, 1, "CONT");
    gone.sort_by_key(|v| v.to_string());
    assert_eq!(gone, vec![json!({"uid": "u2"}), json!({"uid": "u3"})]);

    let mut back = Vec::new();
    for _ in 0..2 {
        match u1.recv_within(Duration::from_secs(8)).await {
            Some(Received::Event(name, v)) if name == "remote_join" => back.push(v),
            other => panic!("u1: expected remote_join once B is back, got {other:?}"),
        }
    }
    back.sort_by_key(|v| v.to_string());
    assert_eq!(back, vec![json!({"uid": "u2"}), json!({"uid": "u3"})]);
    u1.expect_no_event(QUIET).await;
    u2.expect_no_event(Duration::ZERO).await;
    u3.expect_no_event(Duration::ZERO).await;
    let mut users = room_users(cl.addr(0), "stall").await;
    users.sort();
    assert_eq!(users, vec!["u1", "u2", "u3"]);

    // The room works across both nodes as before.
    u1.emit("msg", json!({"data": "still here?", "s": 2})).await;
    assert_eq!(u2.expect_event("msg").await["data"], json!("still here?"));
    assert_eq!(u3.expect_event("msg").await["data"], json!("still here?"));
}

// ---------------------------------------------------------------------------
// 10. Redis restarted during traffic
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restart_during_traffic_loses_no_acked_msg() {
    let mut cl = Cluster::start(2);
    let a = cl.addr(0);
    let b = cl.addr(1);
    let clients = room_of(&[(a, "a1"), (a, "a2"), (b, "b1"), (b, "b2")], "storm").await;
    let uids = ["a1", "a2", "b1", "b2"];
    assert_eq!(http_status(a, "/readyz").await, Some(200));

    let phase = Arc::new(AtomicU8::new(UP));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (c, uid) in clients.into_iter().zip(uids) {
        tasks.push(tokio::spawn(traffic(
            c,
            uid.to_owned(),
            phase.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // kill -9 Redis; readyz turns 503.
    cl.redis.kill();
    phase.store(DOWN, Ordering::SeqCst);
    let down_at = Instant::now();
    poll(
        Duration::from_secs(5),
        "readyz 503 while Redis is down",
        || async {
            match http_status(a, "/readyz").await {
                Some(503) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let elapsed = down_at.elapsed();
    if elapsed < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_secs(1) - elapsed).await;
    }
    phase.store(RESTARTING, Ordering::SeqCst);
    tokio::task::block_in_place(|| cl.redis.restart());
    phase.store(UP, Ordering::SeqCst);
    let up_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);

    let mut clients = Vec::new();
    let mut stats = Vec::new();
    for t in tasks {
        let (c, t) = t
            .await
            .expect("traffic task (an ack may not have come within 5 s)");
        clients.push(c);
        stats.push(t);
    }

    // readyz is 200 again.
    poll(
        Duration::from_secs(10),
        "readyz 200 after the restart",
        || async {
            match http_status(a, "/readyz").await {
                Some(200) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // Cross-node delivery works again (A → B and B → A).
    for (from, to) in [(0usize, 2usize), (2, 0)] {
        let mut n = 0;
        let deadline = up_at + Duration::from_secs(15);
        'probe: loop {
            assert!(
                Instant::now() < deadline,
                "cross-node delivery {} → {} not back within ~10 s of the restart",
                uids[from],
                uids[to]
            );
            let probe = format!("probe-{from}-{n}");
            n += 1;
            let _ = clients[from]
                .send_msg(json!({"data": {"probe": probe}, "s": 2}))
                .await;
            let until = Instant::now() + Duration::from_millis(500);
            while let Some(r) = clients[to]
                .recv_within(until.saturating_duration_since(Instant::now()))
                .await
            {
                match r {
                    Received::Event(name, v) if name == "msg" => {
                        if v["data"]["probe"] == json!(probe) {
                            break 'probe;
                        }
                        stats[to].received.push(v);
                    }
                    other => panic!("{}: unexpected {other:?}", uids[to]),
                }
            }
        }
    }
    // Collect what is still on the way.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (c, t) in clients.iter_mut().zip(stats.iter_mut()) {
        drain(c, &mut t.received).await;
    }

    // Counting.
    let mut ok_keys: HashMap<String, u64> = HashMap::new();
    let mut during_outage = 0;
    let mut false_success = Vec::new();
    let mut refused = 0;
    for t in &stats {
        for a in &t.acks {
            if a.ack["status"] == json!(0) {
                if let Some(seq) = a.ack["seq"].as_u64() {
                    ok_keys.insert(a.key.clone(), seq);
                } else {
                    panic!("{}: success ack without seq: {a:?}", t.uid);
                }
            } else {
                refused += 1;
            }
            if a.sent == DOWN && a.answered == DOWN {
                during_outage += 1;
                if a.ack["status"] == json!(0) {
                    false_success.push(a);
                }
            }
        }
    }
    let sent_total: usize = stats.iter().map(|t| t.sent.len()).sum();
    println!(
        "sent {sent_total}, acked ok {}, refused {refused}, answered during the outage {during_outage}",
        ok_keys.len()
    );
    assert!(
        false_success.is_empty(),
        "acks of status 0 for msgs sent and answered while Redis was down: {false_success:?}"
    );

    // Local fallback: same-node members received each other's outage msgs.
    let mut without_seq = 0;
    for (me, peer) in [(0usize, 1usize), (1, 0), (2, 3), (3, 2)] {
        let got: HashSet<String> = stats[me]
            .received
            .iter()
            .filter_map(|m| m["data"]["k"].as_str().map(str::to_owned))
            .collect();
        without_seq += stats[me]
            .received
            .iter()
            .filter(|m| m["data"]["k"].is_string() && m.get("seq").is_none())
            .count();
        let missing: Vec<&String> = stats[peer]
            .sent
            .iter()
            .filter(|(_, p)| *p == DOWN)
            .map(|(k, _)| k)
            .filter(|k| !got.contains(*k))
            .collect();
        assert!(
            missing.is_empty(),
            "{} did not receive these msgs its same-node peer {} sent while Redis was down: {missing:?}",
            uids[me],
            uids[peer]
        );
    }
    println!("msgs received without seq: {without_seq}");

    // Every msg acked with status 0 is in the history, once, at its seq.
    let items = history(b, "storm").await;
    assert_dense(&items);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (k, m) in items.iter().enumerate() {
        if let Some(key) = m["data"]["k"].as_str() {
            if let Some(prev) = seen.insert(key.to_owned(), k) {
                panic!("{key} stored twice, at {prev} and {k}");
            }
        }
    }
    let mut lost = Vec::new();
    for (key, seq) in &ok_keys {
        match seen.get(key) {
            Some(&k) => assert_eq!(k as u64, *seq, "{key}: acked seq vs position in sync"),
            None => lost.push(key.clone()),
        }
    }
    lost.sort();
    assert!(
        lost.is_empty(),
        "{} acked msgs missing from the final sync: {lost:?}",
        lost.len()
    );
}

// ---------------------------------------------------------------------------
// 11. Redis Cluster
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_smoke() {
    const N: u64 = 20;
    let redis = RedisCluster::start();
    let (nodes, _dirs) = start_nodes(&redis.url(), 2, &|_| {});
    let (a, b) = (nodes[0].addr, nodes[1].addr);

    for room in ["alpha", "beta"] {
        let ua = format!("{room}-a");
        let ub = format!("{room}-b");
        let mut cs = room_of(&[(a, &ua), (b, &ub)], room).await;
        let mut cb = cs.pop().expect("b");
        let mut ca = cs.pop().expect("a");
        let acked_a = send_inserts(&mut ca, &ua, N).await;
        let acked_b = send_inserts(&mut cb, &ub, N).await;
        let got_b = recv_msgs(&mut cb, N as usize, Duration::from_secs(10)).await;
        let got_a = recv_msgs(&mut ca, N as usize, Duration::from_secs(10)).await;
        assert_received_all(&ub, &got_b, &[&ua], N);
        assert_received_all(&ua, &got_a, &[&ub], N);
        assert_eq!(
            acked_a
                .iter()
                .chain(&acked_b)
                .map(|&(_, s)| s)
                .collect::<Vec<_>>(),
            (0..2 * N).collect::<Vec<_>>(),
            "{room}: acked seqs"
        );
        for node in [a, b] {
            let items = history(node, room).await;
            assert_eq!(items.len() as u64, 2 * N, "{room}: sync");
            assert_dense(&items);
        }
        assert!(
            redis
                .cli(&["LLEN", &format!("msg_{{{room}}}_insert")])
                .contains(&(2 * N).to_string()),
            "{room}: the list of the clustered layout"
        );
    }

    // kickout across nodes.
    let mut k_a = member(a, "k", "gamma").await;
    let _k_b = member(b, "k", "gamma").await;
    assert_eq!(
        k_a.recv().await,
        Received::Event("kickout".into(), json!(0))
    );
    k_a.expect_disconnect().await;
}

// ---------------------------------------------------------------------------
// 12. send order with a cold script cache
// ---------------------------------------------------------------------------

/// Each sender's inserts keep their send order in the history (and in the
/// seqs of their acks) when Redis loses its script cache while they are
/// being written — as after a Redis restart or failover; here `SCRIPT FLUSH`
/// runs over and over while senders on two nodes blast one room.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn send_order_survives_a_lost_script_cache() {
    const N: u64 = 300;
    let cl = Cluster::start(2);
    let port = cl.redis.port();
    let clients = room_of(&[(cl.addr(0), "sa"), (cl.addr(1), "sb")], "cold").await;

    let flushing = Arc::new(AtomicBool::new(true));
    let flusher = {
        let flushing = flushing.clone();
        std::thread::spawn(move || {
            let mut flushes = 0;
            while flushing.load(Ordering::SeqCst) {
                // Errors are ignored: Redis goes away when the test fails.
                let flushed = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "SCRIPT", "FLUSH"])
                    .output()
                    .is_ok_and(|o| o.stdout.starts_with(b"OK"));
                flushes += u32::from(flushed);
                std::thread::sleep(Duration::from_millis(2));
            }
            flushes
        })
    };
    let mut tasks = Vec::new();
    for (c, uid) in clients.into_iter().zip(["sa", "sb"]) {
        tasks.push(tokio::spawn(async move {
            let mut c = c;
            // Windows of 100 msgs awaiting their acks.
            let mut seqs = Vec::new();
            let all: Vec<u64> = (0..N).collect();
            for window in all.chunks(100) {
                let mut ids = Vec::new();
                for &i in window {
                    let msg = json!({"data": {"from": uid, "i": i}});
                    ids.push(c.emit_ack_id("msg", msg).await);
                }
                for id in ids {
                    let ack = c.wait_ack(id).await;
                    assert_eq!(ack["status"], json!(0), "{uid}: {ack}");
                    seqs.push(seq_of(&ack));
                }
            }
            (uid, seqs)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("sender task"));
    }
    flushing.store(false, Ordering::SeqCst);
    let flushes = flusher.join().expect("flusher thread");
    println!("SCRIPT FLUSH ran {flushes} times");

    for (uid, seqs) in &results {
        let inversions: Vec<(usize, u64, u64)> = seqs
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[0] >= w[1])
            .map(|(i, w)| (i, w[0], w[1]))
            .collect();
        assert!(
            inversions.is_empty(),
            "{uid}'s inserts were stored out of send order at {} places; the first (msg \
             index, its seq, the next msg's seq): {:?}",
            inversions.len(),
            &inversions[..inversions.len().min(10)]
        );
    }
    let items = history(cl.addr(0), "cold").await;
    assert_eq!(items.len() as u64, 2 * N);
    assert_dense(&items);
    for uid in ["sa", "sb"] {
        let order: Vec<u64> = items
            .iter()
            .filter(|m| m["data"]["from"] == json!(uid))
            .map(|m| m["data"]["i"].as_u64().expect("i"))
            .collect();
        assert_eq!(
            order,
            (0..N).collect::<Vec<_>>(),
            "{uid}: order in the history"
        );
    }
}

// ---------------------------------------------------------------------------
// A history cleared while a node was not listening
// ---------------------------------------------------------------------------

/// A node that missed a room's reset (its subscriber was reconnecting while
/// the history went away) must not take the new history's seqs for ones it
/// already delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_cleared_unseen_does_not_swallow_new_msgs() {
    let cl = Cluster::start(2);
    let mut members = room_of(&[(cl.addr(0), "sender"), (cl.addr(1), "peer")], "wiped").await;
    let mut peer = members.pop().expect("peer");
    let mut sender = members.pop().expect("sender");
    send_inserts(&mut sender, "sender", 5).await;
    let first = recv_msgs(&mut peer, 5, Duration::from_secs(10)).await;
    assert_eq!(seq_of(&first[4]), 4);

    // The history goes away without a reset frame, and every subscriber
    // connection is cut, so the nodes reconnect and catch up.
    cl.redis.cli(&["DEL", "msg_wiped_insert"]);
    cl.redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let acked = send_inserts(&mut sender, "sender", 2).await;
    assert_eq!(
        acked,
        vec![(0, 0), (1, 1)],
        "the new history starts at seq 0"
    );
    let got = recv_msgs(&mut peer, 2, Duration::from_secs(10)).await;
    assert_eq!(got.iter().map(seq_of).collect::<Vec<_>>(), vec![0, 1]);
}

/// A sync page read ahead on one node is not served after another node
/// cleared the room's history (the reset frame tells every node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_on_another_node_is_seen_by_the_next_sync_page() {
    let cl = Cluster::start_with(2, |cmd| {
        cmd.env("AO_SYNC_PAGE_SIZE", "5");
    });
    let mut c = member(cl.addr(1), "pager", "paged").await;
    send_inserts(&mut c, "pager", 12).await;
    let first = c.sync(json!({"offset": 0})).await;
    assert_eq!(first["next"], json!(1), "{first}");
    // Node 1 reads the page at offset 5 ahead meanwhile.
    tokio::time::sleep(Duration::from_millis(200)).await;
    admin_ok(
        reqwest::Method::POST,
        cl.addr(0),
        "/admin/system/clear_room_msgs",
        Some(json!({"roomId": "paged"})),
    )
    .await;
    // The reset frame reaches node 1 through Redis.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = c.sync(json!({"offset": 5})).await;
    assert_eq!(second["data"], json!([]), "cleared history: {second}");
    assert_eq!(second["next"], json!(0), "{second}");
    assert_ne!(second["epoch"], first["epoch"], "{second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn room_ids_with_braces_colons_and_key_suffixes_keep_to_one_slot_each() {
    const N: u64 = 5;
    let redis = RedisCluster::start();
    let (nodes, _dirs) = start_nodes(&redis.url(), 2, &|_| {});
    let (a, b) = (nodes[0].addr, nodes[1].addr);
    // Each would split its keys over slots, or share keys with another
    // room, if the room went into the keys as it is.
    let rooms = [
        "}", "}x", "a}b", "{", "x{y}z", "r:1", "r_insert", "ao", "{ao}",
    ];
    for room in rooms {
        let (ua, ub) = (format!("{room}-a"), format!("{room}-b"));
        let mut cs = room_of(&[(a, &ua), (b, &ub)], room).await;
        let mut cb = cs.pop().expect("b");
        let mut ca = cs.pop().expect("a");
        let acked = send_inserts(&mut ca, &ua, N).await;
        assert_eq!(acked.len() as u64, N, "{room:?}: every insert acked");
        let upd = ca.send_msg(json!({"data": "u", "s": 1, "1": "only"})).await;
        assert_eq!(upd["status"], json!(0), "{room:?}: update acked: {upd}");
        let got = recv_msgs(&mut cb, N as usize, Duration::from_secs(10)).await;
        assert_received_all(&ub, &got, &[&ua], N);
        for node in [a, b] {
            let items = history(node, room).await;
            assert_eq!(items.len() as u64, N + 1, "{room:?}: sync on {node}");
        }
    }
    // Every msg key of a room is in one slot.
    let mut keys = String::new();
    for port in redis.ports() {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "--scan", "--pattern", "msg_*"])
            .output()
            .expect("redis-cli --scan");
        keys.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    let mut slots: HashMap<String, HashSet<String>> = HashMap::new();
    for key in keys.lines().filter(|k| !k.is_empty()) {
        let slot = redis.cli(&["CLUSTER", "KEYSLOT", key]);
        let stem = key
            .rsplit_once("_insert")
            .or_else(|| key.rsplit_once("_update"))
            .or_else(|| key.rsplit_once("_epoch"))
            .map_or(key, |(stem, _)| stem)
            .to_owned();
        slots.entry(stem).or_default().insert(slot);
    }
    assert!(slots.len() >= rooms.len(), "{slots:?}");
    for (stem, s) in &slots {
        assert_eq!(s.len(), 1, "{stem}: keys in slots {s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_metrics_scrapes_cost_redis_a_few_counts() {
    let cl = Cluster::start(1);
    let a = cl.addr(0);
    let _m1 = member(a, "m1", "counted").await;
    let _m2 = member(a, "m2", "counted").await;
    // Everything Redis is asked while the scrapes run.
    let mut monitor = Command::new("redis-cli")
        .args(["-p", &cl.redis.port().to_string(), "MONITOR"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("redis-cli MONITOR");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut last = String::new();
    for _ in 0..100 {
        last = http()
            .get(format!("http://{a}/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = monitor.kill();
    let out = monitor.wait_with_output().expect("monitor output");
    let seen = String::from_utf8_lossy(&out.stdout);
    let of = |cmd: &str| {
        seen.lines()
            .filter(|l| l.to_ascii_uppercase().contains(&format!("\"{cmd}\"")))
            .count()
    };
    assert_eq!(
        of("HGETALL") + of("SMEMBERS"),
        0,
        "no listing per scrape:\n{seen}"
    );
    let counts = of("HLEN") + of("SCARD");
    assert!(
        (1..=6).contains(&counts),
        "{counts} counts for 100 scrapes:\n{seen}"
    );
    assert!(last.contains("ao_authenticated_users 2"), "{last}");
    assert!(last.contains("ao_rooms 1"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rooms_msg_rate_is_counted_across_nodes() {
    let cl = Cluster::start_with(2, |cmd| {
        cmd.env("AO_ROOM_MSG_RATE", "10");
    });
    let (a, b) = (cl.addr(0), cl.addr(1));
    let mut ca = member(a, "ra", "rated").await;
    let mut cb = member(b, "rb", "rated").await;
    // Both send at once, within one second's window or two.
    let mut ids = Vec::new();
    for i in 0..15 {
        ids.push((0, ca.emit_ack_id("msg", json!({"data": i, "s": 2})).await));
        ids.push((1, cb.emit_ack_id("msg", json!({"data": i, "s": 2})).await));
    }
    let (mut ok, mut refused) = (0, 0);
    for (who, id) in ids {
        let ack = if who == 0 {
            ca.wait_ack(id).await
        } else {
            cb.wait_ack(id).await
        };
        match ack["status"].as_u64() {
            Some(0) => ok += 1,
            Some(6) => refused += 1,
            _ => panic!("{ack}"),
        }
    }
    // One window holds 10; a second boundary in between may let 10 more.
    assert!((10..=20).contains(&ok), "{ok} accepted, {refused} refused");
    assert_eq!(ok + refused, 30);
}
