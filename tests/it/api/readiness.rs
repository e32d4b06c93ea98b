//! `/readyz`: a dead store writer makes the node not ready; the public
//! listener gives no details, the internal ones do; a cluster on a Redis
//! without its append-only file is warned about and stays ready.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::api::harness::{get, Creds};
use crate::support::redis::RedisServer;
use crate::support::{self, BinServer, TestServer};

async fn readyz(at: SocketAddr) -> (u16, Value) {
    let r = get(&format!("http://{at}/readyz"), &Creds::None).await;
    (r.status, r.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_store_writer_makes_the_node_not_ready() {
    let s = TestServer::with(|c| {
        c.admin_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let admin = s.admin_addr().expect("admin listener");
    let mut c = s.login("wanda", "crashing").await;
    assert_eq!(c.send_msg(json!({"data": 1})).await["status"], json!(0));
    for at in [s.addr(), s.api_addr(), admin] {
        assert_eq!(readyz(at).await, (200, json!({"status": "ready"})));
    }

    s.state().messages().crash_writer_for_tests().await;

    // Public: not ready, and nothing more.
    assert_eq!(
        readyz(s.addr()).await,
        (503, json!({"status": "not ready"}))
    );
    // Internal listeners: the reason.
    for at in [s.api_addr(), admin] {
        let (status, body) = readyz(at).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], json!("not ready"), "{body}");
        let reason = body["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("writer"), "{body}");
    }
    // The process is alive, and a msg is refused as not stored.
    let r = get(&format!("http://{}/healthz", s.addr()), &Creds::None).await;
    assert_eq!(r.status, 200);
    let ack = c.send_msg(json!({"data": 2})).await;
    assert_eq!(ack["status"], json!(5), "{ack}");
}

/// The stderr line of `server` containing `text`, logged at start-up or
/// within 10 s after.
fn wait_for_line(server: &BinServer, text: &str) -> String {
    if let Some(line) = server.startup_lines.iter().find(|l| l.contains(text)) {
        return line.clone();
    }
    let mut seen = server.startup_lines.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        for line in server.stderr_lines() {
            if line.contains(text) {
                return line;
            }
            seen.push(line);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no log line with {text:?}; stderr: {seen:#?}");
}

fn node_on(redis: &RedisServer, dir: &tempfile::TempDir) -> BinServer {
    let url = redis.url();
    BinServer::start_with(dir.path(), true, move |cmd| {
        cmd.env("AO_REDIS_URL", url);
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_without_appendonly_is_warned_about_and_the_node_stays_ready() {
    let redis = RedisServer::start_with(&["--appendonly", "no"]);
    let dir = support::tempdir();
    let node = node_on(&redis, &dir);
    let line = wait_for_line(&node, "appendonly is no");
    assert!(line.contains("WARN"), "{line}");

    let (status, body) = readyz(node.api_addr).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("ready"), "{body}");
    let warnings = body["warnings"].to_string();
    assert!(warnings.contains("appendonly is no"), "{body}");
    // The public listener tells nothing of it.
    assert_eq!(readyz(node.addr).await, (200, json!({"status": "ready"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_persistence_is_checked_quietly_when_it_is_on_or_cannot_be_checked() {
    // appendonly yes (the launcher's default): no warning.
    let redis = RedisServer::start();
    let dir = support::tempdir();
    let node = node_on(&redis, &dir);
    wait_for_line(&node, "redis persistence: appendonly yes");
    assert_eq!(
        readyz(node.api_addr).await,
        (200, json!({"status": "ready"}))
    );
    drop(node);

    // CONFIG renamed away, as managed services do: said, not warned.
    let redis = RedisServer::start_with(&["--rename-command", "CONFIG", ""]);
    let dir = support::tempdir();
    let node = node_on(&redis, &dir);
    let line = wait_for_line(&node, "redis persistence could not be checked");
    assert!(!line.contains("WARN"), "{line}");
    assert_eq!(
        readyz(node.api_addr).await,
        (200, json!({"status": "ready"}))
    );
}
