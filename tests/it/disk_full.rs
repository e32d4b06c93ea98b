//! The embedded store on a disk that fills up: every msg is answered
//! `storage unavailable`, nothing is relayed as stored, the node is not
//! ready, and it recovers by itself once there is space again.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::{login, BinServer, Received};

/// A small tmpfs mounted for the test's life.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> SmallDisk {
        let dir = support::tempdir();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (the test suite runs as root in CI)"
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the disk with a file until a write fails; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", path.display()))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run dd");
    path
}

async fn readyz(addr: std::net::SocketAddr) -> u16 {
    reqwest::get(format!("http://{addr}/readyz"))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[test]
fn a_full_disk_refuses_every_msg_with_status_5_and_the_node_recovers() {
    let disk = SmallDisk::mount(24);
    let data = disk.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    let server = BinServer::start(&data, true);
    let addr = server.addr;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut a = login(addr, json!("a"), "t", "disk").await;
        let mut b = login(addr, json!("b"), "t", "disk").await;
        a.expect_event("remote_join").await;
        b.expect_event("remote_join").await;
        let ack = a.send_msg(json!({"data": "before"})).await;
        assert_eq!(ack["status"], json!(0), "{ack}");
        assert!(matches!(b.recv().await, Received::Event(n, _) if n == "msg"));
        assert_eq!(readyz(addr).await, 200);

        let filler = fill(disk.path());
        let pad = "f".repeat(20_000);
        for i in 0..20 {
            let ack = a.send_msg(json!({"data": i, "pad": pad})).await;
            assert_eq!(
                ack,
                json!({"status": 5, "data": "storage unavailable"}),
                "msg {i} on a full disk"
            );
        }
        // Nothing of it reached the room as stored.
        if let Some(r) = b.recv_within(Duration::from_millis(500)).await {
            panic!("relayed while the disk was full: {r:?}");
        }
        assert_eq!(readyz(addr).await, 503, "not ready while writes fail");
        // One line per interval, not one per msg.
        let errors: Vec<String> = server
            .stderr_lines()
            .into_iter()
            .filter(|l| l.contains("\"level\":\"ERROR\""))
            .collect();
        let refusals = errors.len();
        assert!(
            (1..=4).contains(&refusals),
            "{refusals} error lines for 20 refused msgs"
        );
        // The operator reads why, not only what failed.
        assert!(
            errors.iter().all(|l| l.contains("No space left on device")),
            "{errors:#?}"
        );

        std::fs::remove_file(&filler).expect("free the disk");
        // Back by itself: ready again, and msgs are stored and relayed.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while readyz(addr).await != 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "not ready after space returned"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let ack = a.send_msg(json!({"data": "after"})).await;
        assert_eq!(ack["status"], json!(0), "{ack}");
        match b.recv().await {
            Received::Event(n, m) if n == "msg" => assert_eq!(m["data"], json!("after")),
            other => panic!("{other:?}"),
        }
        let (items, _) = b.sync_all(0).await;
        let datas: Vec<Value> = items.iter().map(|m| m["data"].clone()).collect();
        assert_eq!(datas, [json!("before"), json!("after")], "history intact");
    });
    drop(server);
}
