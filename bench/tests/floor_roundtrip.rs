//! The load generator against the floor, in-process: both engine.io
//! generations through handshake, authenticate, join and relay; the
//! durable floor's group commit, acks and metrics.

use std::time::Duration;

use ao_bench::client::Conn;
use ao_bench::engineio::{self, Eio};
use ao_bench::floor;
use ao_bench::log_metrics;
use ao_bench::scenarios::conns::{conns, ConnsConfig};
use ao_bench::scenarios::fanout::{fanout, find_max, Criteria, FanoutConfig, FindMax};
use tokio::net::TcpListener;

async fn start_floor() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(floor::serve_listener(listener, true, None));
    addr
}

/// A durable floor logging into `dir`; its address and its metrics URL.
async fn start_durable_floor(dir: &std::path::Path) -> (String, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let durable = floor::Durable {
        dir: dir.to_owned(),
        window: Duration::from_millis(2),
        metrics_listen: Some(metrics),
    };
    tokio::spawn(floor::serve_listener(listener, true, Some(durable)));
    let url = format!("http://{metrics}/metrics");
    // The metrics listener is bound before the floor's: wait for the floor.
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (addr, url)
}

fn small(addr: &str, eio: Eio) -> FanoutConfig {
    FanoutConfig {
        nodes: vec![addr.to_owned()],
        eio,
        rooms: 3,
        members: 4,
        rate: 200.0,
        size: 200,
        storage: 2,
        warmup: Duration::from_millis(200),
        duration: Duration::from_millis(500),
        drain: Duration::from_secs(2),
        server_pids: vec![std::process::id()],
        concurrency: 8,
    }
}

/// Criteria a debug build meets on a busy CI machine.
fn lenient() -> Criteria {
    Criteria {
        max_p99: Duration::from_secs(5),
        min_delivery: 0.99,
        min_sent: 0.5,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_is_delivered_in_both_generations() {
    let addr = start_floor().await;
    for eio in [Eio::V3, Eio::V4] {
        let r = fanout(&small(&addr, eio)).await.expect("fanout");
        assert!(r.sent > 50, "{eio}: sent {}", r.sent);
        assert_eq!(r.expected, r.sent * 3);
        assert_eq!(r.received, r.expected, "{eio}: {}", r.summary());
        assert_eq!(r.latency.count(), r.received);
        assert_eq!(r.lost_conns, 0);
        assert!(r.deliveries_per_cpu_s().is_some());
        assert!(r.verdict(&lenient()).is_ok(), "{}", r.summary());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_layout_spreads_members_over_nodes() {
    // Two floors are two unconnected nodes: members on the other node do
    // not get each other's messages, so about half the deliveries are missing.
    let a = start_floor().await;
    let b = start_floor().await;
    let mut cfg = small(&a, Eio::V4);
    cfg.nodes = vec![a, b];
    let r = fanout(&cfg).await.expect("cluster fanout");
    assert!(r.received > 0);
    assert!(r.received < r.expected, "{}", r.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_max_stops_at_the_step_limit() {
    let addr = start_floor().await;
    let cfg = small(&addr, Eio::V4);
    let fm = FindMax {
        factor: 2.0,
        refine: 1,
        max_steps: 2,
        retries: 1,
        criteria: lenient(),
    };
    let r = find_max(&cfg, &fm).await.expect("find-max");
    assert_eq!(r.steps.len(), 2);
    assert_eq!(r.best.map(|b| b.rate), Some(400.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conns_are_set_up_and_held() {
    let addr = start_floor().await;
    let r = conns(&ConnsConfig {
        nodes: vec![addr],
        eio: Eio::V3,
        conns: 50,
        members: 10,
        concurrency: 16,
        hold: Duration::from_millis(100),
        server_pids: vec![],
    })
    .await
    .expect("conns");
    assert_eq!(r.conns, 50);
    assert_eq!(r.lost, 0);
    assert!(r.setups_per_s() > 0.0);
    assert!(r.rss_per_conn().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_durable_floor_stores_then_relays_and_acks_with_seqs() {
    let dir = tempfile::tempdir().expect("dir");
    let (addr, metrics) = start_durable_floor(dir.path()).await;
    let mut a = Conn::connect(&addr, Eio::V4).await.expect("connect");
    a.authenticate("alice").await.expect("authenticate");
    a.join("r").await.expect("join");
    let mut b = Conn::connect(&addr, Eio::V4).await.expect("connect");
    b.authenticate("bob").await.expect("authenticate");
    b.join("r").await.expect("join");
    for (id, seq) in [(1, 0), (2, 1)] {
        a.send(engineio::event_frame_with_ack(
            "msg",
            Some(id),
            r#"{"data":{"x":1},"s":0}"#,
        ))
        .await
        .expect("send");
        let ack = a.wait_ack(id).await.expect("ack");
        assert_eq!(ack, format!(r#"[{{"status":0,"seq":{seq}}}]"#));
        let got = b.wait_event("msg").await.expect("relayed");
        assert_eq!(
            got,
            format!(r#"{{"data":{{"x":1}},"s":0,"2":"alice","seq":{seq}}}"#)
        );
    }
    // Relay only: acknowledged at once, neither numbered nor stored.
    a.send(engineio::event_frame_with_ack(
        "msg",
        Some(3),
        r#"{"data":2,"s":2}"#,
    ))
    .await
    .expect("send");
    assert_eq!(a.wait_ack(3).await.expect("ack"), r#"[{"status":0}]"#);
    assert_eq!(
        b.wait_event("msg").await.expect("relayed"),
        r#"{"data":2,"s":2,"2":"alice"}"#
    );
    let log = std::fs::read(dir.path().join("floor.log")).expect("the log");
    let frames = log.windows(5).filter(|w| w == b"\"seq\"").count();
    assert_eq!(frames, 2, "two stored msgs in {} bytes", log.len());
    let client = reqwest::Client::new();
    let figs = log_metrics::fetch(&client, &metrics)
        .await
        .expect("metrics");
    assert!(figs.stalls.is_some(), "{figs:?}");
    assert!(
        figs.syncs.as_ref().is_some_and(|s| s.count() >= 2),
        "{figs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_with_inserts_is_delivered_by_the_durable_floor() {
    let dir = tempfile::tempdir().expect("dir");
    let (addr, _) = start_durable_floor(dir.path()).await;
    let mut cfg = small(&addr, Eio::V4);
    cfg.storage = 0;
    let r = fanout(&cfg).await.expect("fanout");
    assert!(r.sent > 50, "sent {}", r.sent);
    assert_eq!(r.received, r.expected, "{}", r.summary());
    assert!(r.verdict(&lenient()).is_ok(), "{}", r.summary());
}
