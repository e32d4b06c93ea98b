//! Part 2, "an acknowledged message is never lost": the real binary, killed
//! with SIGKILL or stopped with SIGTERM, keeps every acknowledged message.

use crate::support;

use serde_json::{json, Value};
use support::{login, BinServer, Client};

/// Sends inserts `{"data": i}` for `range` in windows of 50 and returns
/// `(i, seq)` of each, all of which must be acknowledged.
async fn send_acked(c: &mut Client, range: std::ops::Range<u64>) -> Vec<(u64, u64)> {
    let mut acked = Vec::new();
    let all: Vec<u64> = range.collect();
    for window in all.chunks(50) {
        let mut ids = Vec::new();
        for &i in window {
            ids.push((i, c.emit_ack_id("msg", json!({"data": i})).await));
        }
        for (i, id) in ids {
            let ack = c.wait_ack(id).await;
            assert_eq!(ack["status"], json!(0), "msg {i}: {ack}");
            let seq = ack["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("insert ack without seq: {ack}"));
            acked.push((i, seq));
        }
    }
    acked
}

/// Gives a freshly started binary time to install its SIGTERM handler.
///
/// The binary logs "always-online listening" (and serves) before it installs
/// the handler, and nothing observable marks that moment, so the graceful
/// shutdown tests wait a little; `sigterm_right_after_the_listening_line_exits_0`
/// covers the window itself.
fn let_signal_handler_install() {
    std::thread::sleep(std::time::Duration::from_millis(300));
}

/// Every acknowledged `(i, seq)` is at position `seq` of `items`, in order.
fn assert_all_present(items: &[Value], acked: &[(u64, u64)]) {
    for &(i, seq) in acked {
        let item = items
            .get(seq as usize)
            .unwrap_or_else(|| panic!("acked seq {seq} missing; {} items", items.len()));
        assert_eq!(item["seq"], json!(seq), "item at {seq}");
        assert_eq!(item["data"], json!(i), "item at {seq}");
    }
    let seqs: Vec<u64> = acked.iter().map(|&(_, s)| s).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "acked seqs in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_kill_9() {
    let dir = support::tempdir();
    let server = BinServer::start(dir.path(), true);
    let mut c = login(server.addr, "alice", "any", "r").await;
    let acked = send_acked(&mut c, 0..300).await;
    assert_eq!(acked.len(), 300);
    assert_eq!(
        acked.iter().map(|&(_, s)| s).collect::<Vec<_>>(),
        (0..300).collect::<Vec<_>>()
    );
    server.kill();
    drop(c);

    let server = BinServer::start(dir.path(), true);
    let mut c = login(server.addr, "alice", "any", "r").await;
    let (items, _) = c.sync_all(0).await;
    assert_eq!(items.len(), 300);
    assert_all_present(&items, &acked);
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_kill_9_mid_stream_after_batches_reached_the_database() {
    let dir = support::tempdir();
    let server = BinServer::start(dir.path(), true);
    let mut c = login(server.addr, "alice", "any", "r").await;
    let started = std::time::Instant::now();
    let mut acked = Vec::new();
    let mut next = 0;
    // Long enough for the commit log to be handed to the database more
    // than once (every second), so some msgs are there and some only in
    // the log when the server dies.
    while started.elapsed() < std::time::Duration::from_millis(2500) {
        acked.extend(send_acked(&mut c, next..next + 50).await);
        next += 50;
    }
    // A window still in flight when the server dies.
    for i in next..next + 50 {
        c.emit("msg", json!({"data": i})).await;
    }
    server.kill();
    drop(c);

    let server = BinServer::start(dir.path(), true);
    let mut c = login(server.addr, "alice", "any", "r").await;
    let (items, _) = c.sync_all(0).await;
    assert!(
        items.len() >= acked.len(),
        "{} of {} acked",
        items.len(),
        acked.len()
    );
    assert_all_present(&items, &acked);
    let seqs: Vec<u64> = items.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(
        seqs,
        (0..items.len() as u64).collect::<Vec<_>>(),
        "no holes"
    );
    let after = send_acked(&mut c, 1_000_000..1_000_001).await;
    assert_eq!(after[0].1, items.len() as u64, "numbering goes on");
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_reads_the_same_before_and_after_it_reaches_the_database() {
    let dir = support::tempdir();
    let server = BinServer::start(dir.path(), true);
    let mut c = login(server.addr, "alice", "any", "r").await;
    send_acked(&mut c, 0..250).await;
    for v in 0..5 {
        let ack = c
            .send_msg(json!({"data": v, "s": 1, "1": format!("m{}", v % 2)}))
            .await;
        assert_eq!(ack, json!({"status": 0}));
    }
    let fresh = c.sync_all(0).await;
    // The commit log is handed to the database every second.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let settled = c.sync_all(0).await;
    assert_eq!(fresh, settled);
    assert_eq!(
        fresh.0.len(),
        252,
        "250 inserts and the latest of 2 updates"
    );
    // New msgs on top of what the database has.
    send_acked(&mut c, 250..300).await;
    let ack = c.send_msg(json!({"data": 9, "s": 1, "1": "m0"})).await;
    assert_eq!(ack, json!({"status": 0}));
    let (items, _) = c.sync_all(0).await;
    let inserts: Vec<u64> = items.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(inserts, (0..300).collect::<Vec<_>>());
    let updates: Vec<&Value> = items.iter().filter(|m| m["s"] == json!(1)).collect();
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[1]["data"], json!(9), "the latest update comes last");
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_continues_after_kill_9() {
    let dir = support::tempdir();
    let server = BinServer::start(dir.path(), true);
    let mut c = login(server.addr, "alice", "any", "r").await;
    send_acked(&mut c, 0..10).await;
    server.kill();
    drop(c);

    let server = BinServer::start(dir.path(), true);
    let mut c = login(server.addr, "alice", "any", "r").await;
    let acked = send_acked(&mut c, 10..12).await;
    assert_eq!(acked, vec![(10, 10), (11, 11)]);
    let (items, _) = c.sync_all(0).await;
    let data: Vec<Value> = items.iter().map(|m| m["data"].clone()).collect();
    assert_eq!(data, (0..12).map(|i| json!(i)).collect::<Vec<_>>());
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epoch_survives_a_restart() {
    let dir = support::tempdir();
    let server = BinServer::start(dir.path(), true);
    let mut c = login(server.addr, "alice", "any", "r").await;
    send_acked(&mut c, 0..3).await;
    let before = c.sync(json!({"offset": 0})).await["epoch"].clone();
    assert!(before.is_string(), "epoch {before}");
    server.kill();
    drop(c);

    let server = BinServer::start(dir.path(), true);
    let mut c = login(server.addr, "alice", "any", "r").await;
    let after = c.sync(json!({"offset": 0})).await["epoch"].clone();
    assert_eq!(before, after);
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_updates_survive_kill_9() {
    let dir = support::tempdir();
    let server = BinServer::start(dir.path(), true);
    let mut c = login(server.addr, "alice", "any", "r").await;
    for v in ["v1", "v2", "v3"] {
        let ack = c.send_msg(json!({"data": v, "s": 1, "1": "m"})).await;
        assert_eq!(ack, json!({"status": 0}));
    }
    server.kill();
    drop(c);

    let server = BinServer::start(dir.path(), true);
    let mut c = login(server.addr, "alice", "any", "r").await;
    let (items, _) = c.sync_all(0).await;
    assert_eq!(
        items,
        vec![json!({"data": "v3", "s": 1, "1": "m", "2": "alice"})]
    );
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_0_and_keeps_every_acked_message() {
    let dir = support::tempdir();
    let server = BinServer::start(dir.path(), true);
    let mut c = login(server.addr, "alice", "any", "r").await;
    let acked = send_acked(&mut c, 0..100).await;
    let_signal_handler_install();
    let status = server.terminate();
    assert_eq!(status.code(), Some(0), "exit status {status}");
    drop(c);

    let server = BinServer::start(dir.path(), true);
    let mut c = login(server.addr, "alice", "any", "r").await;
    let (items, _) = c.sync_all(0).await;
    assert_eq!(items.len(), 100);
    assert_all_present(&items, &acked);
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_disconnects_connected_clients() {
    let dir = support::tempdir();
    let server = BinServer::start(dir.path(), true);
    let mut c = login(server.addr, "alice", "any", "r").await;
    let_signal_handler_install();
    let status = server.terminate();
    assert_eq!(status.code(), Some(0), "exit status {status}");
    let seen = c.drain_until_closed().await;
    assert!(
        seen.iter()
            .all(|r| matches!(r, support::Received::Disconnect | support::Received::Closed)),
        "client saw {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_no_clients_exits_0() {
    let dir = support::tempdir();
    let server = BinServer::start(dir.path(), true);
    let_signal_handler_install();
    let status = server.terminate();
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

/// Once the server says it is listening, SIGTERM must be a graceful stop.
/// The race is narrow, so the test tries several times.
#[test]
fn sigterm_right_after_the_listening_line_exits_0() {
    let dir = support::tempdir();
    for attempt in 0..40 {
        let server = BinServer::start(dir.path(), true);
        let status = server.terminate();
        assert_eq!(
            status.code(),
            Some(0),
            "attempt {attempt}: SIGTERM right after \"always-online listening\" gave {status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_flag_accepts_any_token_in_the_binary() {
    let dir = support::tempdir();
    let server = BinServer::start(dir.path(), true);
    let mut c = Client::connect(server.addr).await;
    c.authenticate(json!("anyone"), "whatever").await;
    server.kill();
}
