//! Sync pages bounded in bytes (`AO_SYNC_PAGE_MAX_BYTES`), the updates
//! paged when they do not fit (PROTOCOL.md "sync"), on the embedded store
//! and on Redis with updates of the original service, and a client that
//! asks for pages without reading them.

use crate::support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::redis::RedisServer;
use support::{login, BinServer, Client, TestServer};

/// The bytes a page's messages count: their JSON texts.
fn page_bytes(reply: &Value) -> usize {
    reply["data"]
        .as_array()
        .map_or(0, |d| d.iter().map(|m| m.to_string().len()).sum())
}

/// Sends `n` msgs as fast as the socket takes them, then waits for every ack.
async fn send_all(c: &mut Client, msgs: impl Iterator<Item = Value>) {
    let mut ids = Vec::new();
    for m in msgs {
        ids.push(c.emit_ack_id("msg", m).await);
    }
    for id in ids {
        let ack = c.wait_ack(id).await;
        assert_eq!(ack["status"], json!(0), "{ack}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_and_updates_are_paged_within_the_byte_budget_each_exactly_once() {
    const MAX: usize = 16 * 1024;
    let ts = TestServer::with(|c| c.sync_page_max_bytes = MAX).await;
    let mut c = ts.login("pager", "r").await;
    let pad = "p".repeat(900);
    send_all(&mut c, (0..60).map(|i| json!({"data": i, "pad": pad}))).await;
    send_all(
        &mut c,
        (0..60).map(|i| json!({"data": i, "pad": pad, "s": 1, "1": format!("u{i}")})),
    )
    .await;
    // An update replaced: only its latest version comes, once.
    send_all(
        &mut c,
        std::iter::once(json!({"data": "new", "s": 1, "1": "u0"})),
    )
    .await;

    let (items, replies) = c.sync_all(0).await;
    assert!(replies.len() > 4, "several pages: {}", replies.len());
    for r in &replies {
        assert!(page_bytes(r) <= MAX, "page of {} bytes", page_bytes(r));
    }
    let inserts: Vec<&Value> = items.iter().filter(|m| m.get("1").is_none()).collect();
    let seqs: Vec<u64> = inserts.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(
        seqs,
        (0..60).collect::<Vec<u64>>(),
        "every insert once, in order"
    );
    let updates: Vec<String> = items
        .iter()
        .filter_map(|m| m.get("1").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let distinct: HashSet<&String> = updates.iter().collect();
    assert_eq!(updates.len(), 60, "every update once: {updates:?}");
    assert_eq!(distinct.len(), 60);
    assert_eq!(
        updates.last().map(String::as_str),
        Some("u0"),
        "in update order"
    );
    let last = replies.last().expect("a last page");
    assert_eq!(
        last["offset"],
        json!(60),
        "the last page gives the history's length"
    );
    // A message larger than the budget still comes, alone on its page.
    let big = "b".repeat(MAX * 2);
    send_all(&mut c, std::iter::once(json!({"data": big}))).await;
    let reply = c.sync(json!({"offset": 60})).await;
    assert_eq!(reply["data"].as_array().map(Vec::len), Some(1), "one msg");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_updates_arrive_once_each_within_page_bounds() {
    const MAX: usize = 256 * 1024;
    const N: usize = 100_000;
    let ts = TestServer::with(|c| c.sync_page_max_bytes = MAX).await;
    let mut c = ts.login("many", "updates").await;
    for chunk in 0..(N / 5000) {
        send_all(
            &mut c,
            (chunk * 5000..(chunk + 1) * 5000).map(|i| json!({"data": i, "s": 1, "1": i})),
        )
        .await;
    }
    let (items, replies) = c.sync_all(0).await;
    for r in &replies {
        assert!(page_bytes(r) <= MAX, "page of {} bytes", page_bytes(r));
    }
    let ids: HashSet<u64> = items.iter().filter_map(|m| m["1"].as_u64()).collect();
    assert_eq!(items.len(), N, "{} pages", replies.len());
    assert_eq!(ids.len(), N, "every update exactly once");
    assert_eq!(replies.last().map(|r| r["offset"].clone()), Some(json!(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pages_updates_of_the_original_service_before_later_ones() {
    let redis = RedisServer::start();
    // Updates the original wrote: no order record.
    for i in 0..40 {
        let el = format!(
            r#"{{"data":{{"data":"old{i}","s":1,"1":"old{i}","2":"x","pad":"{}"}},"ts":{}}}"#,
            "q".repeat(500),
            1000 + i
        );
        redis.cli(&["HSET", "msg_legacy_update", &format!("old{i}"), &el]);
    }
    let ts = TestServer::with(|c| {
        c.redis_url = Some(redis.url());
        c.sync_page_max_bytes = 16 * 1024;
    })
    .await;
    let mut c = ts.login("reader", "legacy").await;
    send_all(
        &mut c,
        (0..40).map(|i| json!({"data": i, "s": 1, "1": format!("new{i}"), "pad": "n".repeat(500)})),
    )
    .await;
    let (items, replies) = c.sync_all(0).await;
    assert!(replies.len() >= 3, "{} pages", replies.len());
    for r in &replies {
        assert!(
            page_bytes(r) <= 16 * 1024,
            "page of {} bytes",
            page_bytes(r)
        );
    }
    let ids: Vec<String> = items
        .iter()
        .filter_map(|m| m["1"].as_str().map(str::to_owned))
        .collect();
    let mut expected: Vec<String> = (0..40).map(|i| format!("old{i}")).collect();
    expected.extend((0..40).map(|i| format!("new{i}")));
    assert_eq!(
        ids, expected,
        "the original's first, by time, then in update order"
    );

    // Without updates of the original, the order records page by themselves.
    c.close().await;
    let olds: Vec<String> = (0..40).map(|i| format!("old{i}")).collect();
    let mut hdel = vec!["HDEL", "msg_legacy_update"];
    hdel.extend(olds.iter().map(String::as_str));
    redis.cli(&hdel);
    let mut c = ts.login("reader2", "legacy").await;
    let (items, _) = c.sync_all(0).await;
    assert_eq!(items.len(), 40);
}

#[test]
fn a_client_that_asks_for_pages_and_never_reads_holds_a_bounded_amount() {
    let dir = support::tempdir();
    let server = BinServer::start_with(dir.path(), true, |cmd| {
        cmd.env("AO_PING_INTERVAL_MS", "500")
            .env("AO_PING_TIMEOUT_MS", "1000");
    });
    let addr = server.addr;
    let pid = server.child.id();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut writer = login(addr, json!("writer"), "t", "big-history").await;
        let pad = "h".repeat(1000);
        send_all(
            &mut writer,
            (0..2000).map(|i| json!({"data": i, "pad": pad})),
        )
        .await;
        writer.close().await;
        let before = support::rss_kib(pid);
        let mut greedy = login(addr, json!("greedy"), "t", "big-history").await;
        for _ in 0..2000 {
            greedy.emit("sync", json!({"offset": 0})).await;
        }
        // It never reads: the server holds a page or so for it, then its
        // heartbeat times out and it is disconnected.
        let mut peak = before;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            peak = peak.max(support::rss_kib(pid));
        }
        assert!(
            peak < before + 64 * 1024,
            "server RSS grew from {before} KiB to {peak} KiB"
        );
        // Its heartbeat timed out: nobody is connected.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = reqwest::get(format!("http://{addr}/metrics"))
                .await
                .expect("GET /metrics")
                .text()
                .await
                .expect("metrics");
            if text.contains("ao_connected_sockets{engineio=\"4\"} 0\n") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still connected: {text}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop(greedy);
        let mut again = login(addr, json!("writer"), "t", "big-history").await;
        let ack = again.send_msg(json!({"data": "alive", "s": 2})).await;
        assert_eq!(ack["status"], json!(0));
    });
    drop(server);
}
