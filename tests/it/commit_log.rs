//! The embedded store's commit log under the faults of issue 28, against
//! the real binary: a failed `fdatasync` and a failed recovery (through
//! `AO_TEST_LOG_FAULTS`, which only debug builds honour), a corrupt sealed
//! segment (byte damage from the test; `store check`, `store repair`), the
//! block layout that keeps a torn write off acknowledged records, a clear
//! across kill -9, a failed start, and segments written again from the
//! spare across kill -9.

use crate::support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{binary, login, BinServer, Client};

const BLOCK: u64 = 4096;

/// The commit log's segments in `dir`, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("commit-log."))
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    found.sort();
    found
}

/// The inserts of `room` the embedded store's database holds (read-only,
/// beside the running server).
fn inserts_in_database(dir: &Path, room: &str) -> i64 {
    let db = rusqlite::Connection::open_with_flags(
        dir.join("always-online.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the database");
    db.query_row(
        "SELECT COUNT(*) FROM inserts WHERE room = ?1",
        [room],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

/// Sends inserts `{"data": i}` one at a time (each its own group commit);
/// the seq of each acked one, `None` for each refused with status 5.
async fn send_each(c: &mut Client, range: std::ops::Range<u64>) -> Vec<(u64, Option<u64>)> {
    let mut out = Vec::new();
    for i in range {
        let ack = c.send_msg(json!({"data": i})).await;
        match ack["status"].as_u64() {
            Some(0) => out.push((i, Some(ack["seq"].as_u64().expect("seq")))),
            Some(5) => out.push((i, None)),
            _ => panic!("msg {i}: {ack}"),
        }
    }
    out
}

/// Each acked `(i, seq)` is at position `seq` and nothing else is there.
fn assert_exactly(items: &[Value], acked: &[(u64, u64)]) {
    let found: Vec<(u64, u64)> = items
        .iter()
        .map(|m| {
            (
                m["data"].as_u64().expect("data"),
                m["seq"].as_u64().expect("seq"),
            )
        })
        .collect();
    assert_eq!(
        found, acked,
        "every acked msg at its seq, once, and nothing else"
    );
}

fn store_command(dir: &Path, action: &str) -> std::process::Output {
    let mut cmd = binary();
    cmd.args(["store", action, "--data-dir"]).arg(dir);
    cmd.output().expect("run always-online store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fdatasync_and_a_failed_recovery_lose_no_acked_msg_and_refused_seqs_are_reused_safely(
) {
    let dir = support::tempdir();
    // The 10th group's fdatasync fails; the first attempt to mend the log
    // (a rename of the rewritten segment) fails too.
    let server = BinServer::start_with(dir.path(), true, |cmd| {
        cmd.env("AO_TEST_LOG_FAULTS", "sync@10,rename@1");
    });
    let mut c = login(server.addr, "alice", "any", "r").await;
    let mut sent = send_each(&mut c, 0..30).await;
    let refused = sent.iter().filter(|(_, s)| s.is_none()).count();
    assert!(
        refused >= 2,
        "the failed group and the one refused while mending: {sent:?}"
    );
    // Writes come back by themselves once the log is mended.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sent.last().is_some_and(|(_, s)| s.is_none()) {
        assert!(Instant::now() < deadline, "never mended: {sent:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        sent.extend(send_each(&mut c, 100..101).await);
    }
    let acked: Vec<(u64, u64)> = sent.iter().filter_map(|&(i, s)| Some((i, s?))).collect();
    // The refused msgs' seqs were given out again: no hole while running.
    assert_eq!(
        acked.iter().map(|&(_, s)| s).collect::<Vec<_>>(),
        (0..acked.len() as u64).collect::<Vec<_>>()
    );
    let (items, _) = c.sync_all(0).await;
    assert_exactly(&items, &acked);
    server.kill();
    drop(c);

    let server = BinServer::start(dir.path(), true);
    let mut c = login(server.addr, "alice", "any", "r").await;
    let (items, _) = c.sync_all(0).await;
    assert_exactly(&items, &acked);
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_group_commit_takes_whole_blocks_of_its_own() {
    let dir = support::tempdir();
    let server = BinServer::start(dir.path(), true);
    let mut c = login(server.addr, "alice", "any", "r").await;
    let sent = send_each(&mut c, 0..10).await;
    server.kill();
    let segs = segments(dir.path());
    let newest = segs.last().expect("a segment");
    let bytes = std::fs::read(newest).expect("read");
    // A block is never written again once it holds acked records: each
    // small group starts a block of its own.
    assert_eq!(bytes.len() as u64, 10 * BLOCK, "{sent:?}");
    drop(c);
    let server = BinServer::start(dir.path(), true);
    let mut c = login(server.addr, "alice", "any", "r").await;
    let (items, _) = c.sync_all(0).await;
    let acked: Vec<(u64, u64)> = sent.iter().filter_map(|&(i, s)| Some((i, s?))).collect();
    assert_exactly(&items, &acked);
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_sealed_segment_stops_the_start_and_store_repair_salvages_it() {
    let dir = support::tempdir();
    // Applied segments are not deleted (every unlink fails), so a sealed
    // one stays on disk to be damaged.
    let never_delete: Vec<String> = (1..200).map(|n| format!("remove@{n}")).collect();
    let server = BinServer::start_with(dir.path(), true, |cmd| {
        cmd.env("AO_TEST_LOG_FAULTS", never_delete.join(","));
    });
    let mut c = login(server.addr, "alice", "any", "r").await;
    let sent = send_each(&mut c, 0..20).await;
    let acked: Vec<(u64, u64)> = sent.iter().filter_map(|&(i, s)| Some((i, s?))).collect();
    assert_eq!(acked.len(), 20);
    let epoch_before = c.sync(json!({"offset": 0})).await["epoch"].clone();
    // The writer seals its segment within its apply interval, and the
    // applier (a lower-priority thread) takes it into SQLite after that.
    let deadline = Instant::now() + Duration::from_secs(20);
    while segments(dir.path()).len() < 2 || inserts_in_database(dir.path(), "r") < 20 {
        assert!(
            Instant::now() < deadline,
            "no segment was sealed and applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill();
    drop(c);

    // One flipped byte in the 5th group of the sealed segment.
    let sealed = segments(dir.path())[0].clone();
    let mut bytes = std::fs::read(&sealed).expect("read");
    bytes[4 * BLOCK as usize + 40] ^= 0x20;
    std::fs::write(&sealed, &bytes).expect("damage");

    let out = binary()
        .args([
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success(), "started on a corrupt segment");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let name = sealed.file_name().and_then(|n| n.to_str()).expect("name");
    let line = stderr
        .lines()
        .find(|l| l.contains("is corrupt at byte"))
        .unwrap_or_else(|| panic!("no corruption line: {stderr}"));
    assert!(line.contains(name), "{line}");
    // The first record of the group: after its 21-byte group frame.
    assert!(
        line.contains(&format!("at byte {}", 4 * BLOCK + 21)),
        "{line}"
    );
    assert!(line.contains("intact records follow it"), "{line}");
    assert!(sealed.exists(), "the damaged file is kept");

    let check = store_command(dir.path(), "check");
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{report}");
    assert!(report.contains("CORRUPT at byte"), "{report}");

    let repair = store_command(dir.path(), "repair");
    let report = String::from_utf8_lossy(&repair.stdout);
    assert!(
        repair.status.success(),
        "{report} {}",
        String::from_utf8_lossy(&repair.stderr)
    );
    assert!(report.contains("new epoch: r"), "{report}");
    assert!(
        sealed.with_file_name(format!("{name}.damaged")).exists(),
        "kept for inspection"
    );
    assert_eq!(store_command(dir.path(), "check").status.code(), Some(0));

    let server = BinServer::start(dir.path(), true);
    let mut c = login(server.addr, "alice", "any", "r").await;
    let (items, replies) = c.sync_all(0).await;
    // Every msg was in the database already: nothing lost, none twice, no hole.
    assert_exactly(&items, &acked);
    assert_ne!(replies[0]["epoch"], epoch_before, "resuming clients resync");
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_leaves_no_segment_behind() {
    let dir = support::tempdir();
    // The directory sync after creating the first segment fails.
    let out = binary()
        .env("AO_TEST_LOG_FAULTS", "sync_dir@1")
        .args([
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        segments(dir.path()).is_empty(),
        "{:?}",
        segments(dir.path())
    );
}

/// `POST /admin/system/clear_room_msgs` for `room`; its `meta.status`.
async fn clear(addr: std::net::SocketAddr, room: &str) -> Value {
    let text = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .post(format!("http://{addr}/admin/system/clear_room_msgs"))
        .basic_auth("root", Some("commit-log-admin-secret"))
        .header("content-type", "application/json")
        .body(json!({"roomId": room}).to_string())
        .send()
        .await
        .expect("clear")
        .text()
        .await
        .expect("body");
    let v: Value = serde_json::from_str(&text).expect("json");
    v["meta"]["status"].clone()
}

fn with_admin(cmd: &mut Command) {
    cmd.env("AO_ADMIN_UID", "root")
        .env("AO_ADMIN_TOKEN", "commit-log-admin-secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_holds_across_kill_9_and_a_clear_whose_deletion_fails_is_refused() {
    let dir = support::tempdir();
    // The first two unlinks fail: the first clear cannot delete the
    // segment holding the room's msgs, so it must fail as a whole.
    let server = BinServer::start_with(dir.path(), true, |cmd| {
        with_admin(cmd);
        cmd.env("AO_TEST_LOG_FAULTS", "remove@1,remove@2");
    });
    let mut c = login(server.addr, "alice", "any", "r").await;
    let before = send_each(&mut c, 0..5).await;
    let epoch = c.sync(json!({"offset": 0})).await["epoch"].clone();
    assert_ne!(
        clear(server.addr, "r").await,
        json!(0),
        "a clear that could not delete"
    );
    let (items, replies) = c.sync_all(0).await;
    let acked: Vec<(u64, u64)> = before.iter().filter_map(|&(i, s)| Some((i, s?))).collect();
    assert_exactly(&items, &acked);
    assert_eq!(replies[0]["epoch"], epoch, "nothing was cleared");

    // The next clear deletes, durably: after kill -9 the cleared msgs stay
    // gone and the msgs acked after the clear stay, in the new epoch.
    assert_eq!(clear(server.addr, "r").await, json!(0));
    let after = send_each(&mut c, 10..13).await;
    let acked: Vec<(u64, u64)> = after.iter().filter_map(|&(i, s)| Some((i, s?))).collect();
    assert_eq!(acked, [(10, 0), (11, 1), (12, 2)]);
    let epoch = c.sync(json!({"offset": 0})).await["epoch"].clone();
    server.kill();
    drop(c);

    let server = BinServer::start_with(dir.path(), true, with_admin);
    let mut c = login(server.addr, "alice", "any", "r").await;
    let (items, replies) = c.sync_all(0).await;
    assert_exactly(&items, &acked);
    assert_eq!(replies[0]["epoch"], epoch);
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_written_again_from_the_spare_lose_nothing_across_kill_9() {
    let dir = support::tempdir();
    let server = BinServer::start(dir.path(), true);
    let mut c = login(server.addr, "alice", "any", "r").await;
    // Long enough for segments to be sealed, taken by SQLite, kept as the
    // spare and written again (the writer seals every 5 s).
    let mut sent = Vec::new();
    let spare = dir.path().join("commit-log.spare");
    let inode = |p: &Path| std::fs::metadata(p).ok().map(|m| m.ino());
    let mut first_spare = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0;
    // Until a segment is the file that was the spare.
    while !first_spare.is_some_and(|ino| segments(dir.path()).iter().any(|s| inode(s) == Some(ino)))
    {
        assert!(Instant::now() < deadline, "no segment was written again");
        sent.extend(send_each(&mut c, i..i + 50).await);
        i += 50;
        first_spare = first_spare.or_else(|| inode(&spare));
    }
    // And some more in the reused segment, then the power goes.
    sent.extend(send_each(&mut c, i..i + 30).await);
    server.kill();
    drop(c);
    let acked: Vec<(u64, u64)> = sent.iter().filter_map(|&(i, s)| Some((i, s?))).collect();
    assert_eq!(acked.len(), sent.len());

    let server = BinServer::start(dir.path(), true);
    assert!(!spare.exists(), "the spare of the run before is deleted");
    let mut c = login(server.addr, "alice", "any", "r").await;
    let (items, _) = c.sync_all(0).await;
    assert_exactly(&items, &acked);
    server.kill();
}
