//! Operations: /healthz, /readyz, /metrics, graceful shutdown of the real
//! binary, and its logs (no tokens, JSON lines on request).

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::api::harness::{
    backend_tests, get, poll, post, random_hex, strip_ansi, try_authenticate, wait_event, Backend,
    Bin, Body, Creds, Ferret, Server, ADMIN, AUTH_FAILED,
};
use crate::support::{self, login, Client, Received};

backend_tests!(health_and_readiness_on_both_listeners);

async fn health_and_readiness_on_both_listeners(backend: Backend) {
    let s = Server::start(backend).await;
    for base in [s.main_url(""), s.api_url("")] {
        let r = get(&format!("{base}/healthz"), &Creds::None).await;
        assert_eq!(r.status, 200, "{}: {}", r.request, r.text);
        assert_eq!(r.json(), json!({"status": "ok"}));
        let r = get(&format!("{base}/readyz"), &Creds::None).await;
        assert_eq!(r.status, 200, "{}: {}", r.request, r.text);
        assert_eq!(r.json(), json!({"status": "ready"}));
    }
}

/// The samples of a Prometheus text exposition: `name{labels}` → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (key, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample line: {l:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|e| panic!("sample value of {l:?}: {e}"));
            (key.to_owned(), value)
        })
        .collect()
}

async fn scrape(s: &Server) -> (String, HashMap<String, f64>) {
    let r = get(&s.main_url("/metrics"), &Creds::None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.content_type.starts_with("application/openmetrics-text"),
        "content type {:?}",
        r.content_type
    );
    let map = samples(&r.text);
    (r.text, map)
}

fn val(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_real_traffic() {
    let s = Server::with(Backend::Embedded, |c| c.max_msg_bytes = 2000).await;
    let (text, before) = scrape(&s).await;
    // Labelled families (dropped, auth failures, store latency) show up
    // once they have a sample; the others from the start.
    for name in [
        "ao_connected_sockets",
        "ao_authenticated_users",
        "ao_rooms",
        "ao_messages_received",
        "ao_messages_relayed",
        "ao_messages_stored",
        "ao_sync_pages",
        "ao_build_info",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "no TYPE line of {name}:\n{text}"
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        val(&before, &format!("ao_build_info{{version=\"{version}\"}}")),
        1.0,
        "{text}"
    );

    let ta = s.create_user(json!("ma")).await;
    let tb = s.create_user(json!("mb")).await;
    let mut a = s.login("ma", &ta, "metered").await;
    let mut b = s.login("mb", &tb, "metered").await;
    for i in 0..3 {
        assert_eq!(a.send_msg(json!({"data": i})).await["status"], json!(0));
    }
    assert_eq!(
        a.send_msg(json!({"data": "u", "s": 1, "1": "x"})).await["status"],
        json!(0)
    );
    assert_eq!(
        a.send_msg(json!({"data": "i", "s": 2})).await["status"],
        json!(0)
    );
    let big = a.send_msg(json!({"data": "z".repeat(3000)})).await;
    assert_eq!(big["status"], json!(4), "too large: {big}");
    let mut relayed = 0;
    while relayed < 5 {
        if let Received::Event(name, _) = b.recv().await {
            if name == "msg" {
                relayed += 1;
            }
        }
    }
    let page = b.sync(json!({"offset": 0})).await;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(4), "{page}");
    let r = try_authenticate(s.addr(), json!("ma"), "wrong-token", support::WAIT).await;
    assert_eq!(r, json!({"status": 1, "data": AUTH_FAILED}));
    // An engine.io 3 connection (socket.io-client 2.x).
    let url = format!("ws://{}/socket.io/?EIO=3&transport=websocket", s.addr());
    let (mut eio3, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("engine.io 3 websocket");
    let first = tokio::time::timeout(support::WAIT, eio3.next())
        .await
        .expect("engine.io 3 open packet")
        .expect("open")
        .expect("open frame");
    assert!(first.to_text().unwrap_or("").starts_with('0'), "{first:?}");

    let (text, after) = poll(Duration::from_secs(5), "gauges settle", || async {
        let (text, m) = scrape(&s).await;
        let ok = val(&m, "ao_connected_sockets{engineio=\"4\"}") == 2.0
            && val(&m, "ao_connected_sockets{engineio=\"3\"}") == 1.0;
        if ok {
            Ok((text, m))
        } else {
            Err(text)
        }
    })
    .await
    .0;
    for name in [
        "ao_connected_sockets",
        "ao_authenticated_users",
        "ao_rooms",
        "ao_messages_received_total",
        "ao_messages_relayed_total",
        "ao_messages_stored_total",
        "ao_messages_dropped_total",
        "ao_sync_pages_total",
        "ao_auth_failures_total",
        "ao_store_operation_seconds",
        "ao_build_info",
    ] {
        assert!(
            after.keys().any(|k| k.starts_with(name)),
            "no sample of {name}:\n{text}"
        );
    }
    let delta = |key: &str| val(&after, key) - val(&before, key);
    assert_eq!(delta("ao_messages_received_total"), 6.0, "{text}");
    assert_eq!(delta("ao_messages_relayed_total"), 5.0, "{text}");
    assert_eq!(delta("ao_messages_stored_total"), 4.0, "{text}");
    assert_eq!(
        delta("ao_messages_dropped_total{reason=\"too_large\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(delta("ao_sync_pages_total"), 1.0, "{text}");
    assert_eq!(
        delta("ao_auth_failures_total{reason=\"wrong_credentials\"}"),
        1.0,
        "{text}"
    );
    assert!(
        delta("ao_store_operation_seconds_count{op=\"write\"}") >= 4.0,
        "{text}"
    );
    assert!(
        delta("ao_store_operation_seconds_count{op=\"sync_page\"}") >= 1.0,
        "{text}"
    );
    assert!(
        val(&after, "ao_store_operation_seconds_sum{op=\"write\"}") > 0.0,
        "{text}"
    );
    assert_eq!(val(&after, "ao_authenticated_users"), 2.0, "{text}");
    assert_eq!(val(&after, "ao_rooms"), 1.0, "{text}");
    assert_eq!(
        val(&after, &format!("ao_build_info{{version=\"{version}\"}}")),
        1.0
    );
}

/// Sends inserts `{"data": i}` with acks in windows of 25; returns each ack's seq.
async fn send_acked(c: &mut Client, n: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    let all: Vec<u64> = (0..n).collect();
    for window in all.chunks(25) {
        let mut ids = Vec::new();
        for &i in window {
            ids.push(c.emit_ack_id("msg", json!({ "data": i })).await);
        }
        for id in ids {
            let ack = c.wait_ack(id).await;
            assert_eq!(ack["status"], json!(0), "{ack}");
            seqs.push(ack["seq"].as_u64().unwrap_or_else(|| panic!("seq: {ack}")));
        }
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_clients_and_keeps_acked_messages() {
    let dir = support::tempdir();
    let data_dir = dir.path().display().to_string();
    let bin = Bin::start(&["--dev", "--data-dir", &data_dir], &[]);
    let mut c = login(bin.addr, "stayer", "any", "kept").await;
    let mut other = login(bin.addr, "other", "any", "kept").await;
    let seqs = send_acked(&mut c, 120).await;
    assert_eq!(seqs, (0..120).collect::<Vec<_>>());

    let stopping = tokio::task::spawn_blocking(move || bin.terminate());
    // Both clients see their connection end (the disconnect packet or the close).
    for client in [&mut c, &mut other] {
        let seen = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match client.recv_within(Duration::from_secs(20)).await {
                    Some(Received::Disconnect | Received::Closed) | None => break,
                    Some(Received::Event(..)) => {}
                }
            }
        })
        .await;
        assert!(seen.is_ok(), "the client's connection was not closed");
    }
    let (status, stderr) = stopping.await.expect("terminate");
    assert_eq!(status.code(), Some(0), "exit status; stderr {stderr:#?}");

    let bin = Bin::start(&["--dev", "--data-dir", &data_dir], &[]);
    let mut c = login(bin.addr, "stayer", "any", "kept").await;
    let (items, _) = c.sync_all(0).await;
    assert_eq!(items.len(), 120, "every acked message is stored");
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["data"], json!(i), "{item}");
        assert_eq!(item["seq"], json!(i), "{item}");
    }
}

/// Some traffic with admin credentials in query strings and user tokens;
/// returns every secret used.
async fn traffic_with_secrets(bin: &Bin, admin_token: &str) -> Vec<String> {
    let q = Creds::Query(ADMIN.into(), admin_token.into());
    let basic = Creds::Basic(ADMIN.into(), admin_token.into());
    let mut secrets = vec![admin_token.to_owned()];
    let r = post(
        &bin.api_url("/user/create_token"),
        &q,
        Body::Json(json!({"uid": "lena"})),
    )
    .await;
    let first = r.envelope(0)["data"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let r = post(
        &bin.api_url("/user/refresh_token"),
        &q,
        Body::Form("uid=lena".into()),
    )
    .await;
    let lena = r.envelope(0)["data"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let r = post(
        &bin.api_url("/user/create_token"),
        &basic,
        Body::Json(json!({"uid": "max"})),
    )
    .await;
    let max = r.envelope(0)["data"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    secrets.extend([first.clone(), lena.clone(), max.clone()]);

    let mut a = login(bin.addr, "lena", &lena, "logged").await;
    let mut b = login(bin.addr, "max", &max, "logged").await;
    assert_eq!(a.send_msg(json!({"data": "hi"})).await["status"], json!(0));
    b.emit("sync", json!({"offset": 0})).await;
    wait_event(&mut b, "sync").await;
    // Old, wrong and foreign tokens.
    let wrong = random_hex(32);
    for (uid, token) in [
        ("lena", first.as_str()),
        ("lena", wrong.as_str()),
        ("max", lena.as_str()),
    ] {
        let r = try_authenticate(bin.addr, json!(uid), token, support::WAIT).await;
        assert_eq!(r, json!({"status": 1, "data": AUTH_FAILED}));
    }
    let wrong_admin = random_hex(32);
    secrets.extend([wrong.clone(), wrong_admin.clone()]);

    for path in [
        "/admin/monitor/stat".to_owned(),
        "/admin/monitor/room_users?roomId=logged".to_owned(),
        "/admin/monitor/room_msgs?roomId=logged&offset=0".to_owned(),
    ] {
        get(&bin.main_url(&path), &q).await.envelope(0);
        get(&bin.main_url(&path), &basic).await.envelope(0);
        get(
            &bin.main_url(&path),
            &Creds::Query(ADMIN.into(), wrong_admin.clone()),
        )
        .await
        .expect(1, json!({}));
        get(
            &bin.main_url(&path),
            &Creds::Query("lena".into(), lena.clone()),
        )
        .await
        .expect(1, json!({}));
    }
    post(
        &bin.main_url("/admin/system/push"),
        &q,
        Body::Json(json!({"roomId": "logged", "content": "x"})),
    )
    .await
    .envelope(0);
    post(
        &bin.main_url("/admin/system/config"),
        &q,
        Body::Form("forceUserAuth=false".into()),
    )
    .await
    .envelope(0);
    post(
        &bin.main_url("/admin/system/clear_room_msgs?roomId=logged"),
        &q,
        Body::Empty,
    )
    .await
    .envelope(0);
    post(
        &bin.api_url("/user/create_token"),
        &Creds::Query(ADMIN.into(), wrong_admin.clone()),
        Body::Json(json!({"uid": "nobody"})),
    )
    .await
    .expect(1, json!({}));
    a.close().await;
    b.close().await;
    secrets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_tokens() {
    // Accounts in MongoDB, with a password in its URL (FerretDB takes PLAIN
    // credentials and does not check them): it must not be logged either.
    let ferret = Ferret::start().await;
    let password = format!("pw{}", random_hex(8));
    let url = ferret
        .url()
        .replace("mongodb://", &format!("mongodb://aouser:{password}@"))
        + "/?authMechanism=PLAIN&authSource=%24external";
    let dir = support::tempdir();
    let data_dir = dir.path().display().to_string();
    let admin_token = random_hex(32);
    let bin = Bin::start(
        &["--data-dir", &data_dir],
        &[
            ("RUST_LOG", "debug"),
            ("AO_ADMIN_UID", ADMIN),
            ("AO_ADMIN_TOKEN", &admin_token),
            ("AO_MONGODB_URL", &url),
            ("AO_MONGODB_DB", "logs"),
        ],
    );
    let mut secrets = traffic_with_secrets(&bin, &admin_token).await;
    secrets.push(password);
    let (status, lines) = tokio::task::spawn_blocking(move || bin.terminate())
        .await
        .expect("terminate");
    assert_eq!(status.code(), Some(0));
    let text = strip_ansi(&lines.join("\n"));
    assert!(text.contains("DEBUG"), "debug logging is on:\n{text}");
    assert!(
        text.contains("authenticated"),
        "connection events are logged:\n{text}"
    );
    for secret in &secrets {
        let found: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(secret.as_str()))
            .collect();
        assert!(found.is_empty(), "a token is in the log: {found:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_format_gives_json_lines() {
    let dir = support::tempdir();
    let data_dir = dir.path().display().to_string();
    let admin_token = random_hex(32);
    let bin = Bin::start(
        &["--data-dir", &data_dir, "--log-format", "json"],
        &[("AO_ADMIN_UID", ADMIN), ("AO_ADMIN_TOKEN", &admin_token)],
    );
    let secrets = traffic_with_secrets(&bin, &admin_token).await;
    let (status, lines) = tokio::task::spawn_blocking(move || bin.terminate())
        .await
        .expect("terminate");
    assert_eq!(status.code(), Some(0));
    let mut messages = Vec::new();
    for line in lines.iter().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert!(v.is_object(), "{line}");
        assert!(v["timestamp"].is_string(), "timestamp: {line}");
        assert!(v["level"].is_string(), "level: {line}");
        if let Some(m) = v["fields"]["message"].as_str() {
            messages.push(m.to_owned());
        }
    }
    assert!(
        messages.iter().any(|m| m.contains("listening")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m == "authenticated"),
        "{messages:?}"
    );
    let text = lines.join("\n");
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "a token is in the log");
    }

    // The default format is text, not JSON.
    let bin = Bin::start(&["--data-dir", &data_dir], &[]);
    let (_, lines) = tokio::task::spawn_blocking(move || bin.terminate())
        .await
        .expect("terminate");
    let first = lines.first().expect("a log line");
    assert!(
        serde_json::from_str::<Value>(first).is_err(),
        "text by default: {first}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_strings_cannot_forge_log_lines() {
    // What an attacker would like to see as a line of its own.
    const FORGED: &str = "1999-01-01T00:00:00.000000Z  INFO always_online::http::admin: forged";
    let uid = format!("mallory\n{FORGED} uid=root");
    let room = format!("lobby\r\n{FORGED} room=secret");
    for format in ["text", "json"] {
        let dir = support::tempdir();
        let data_dir = dir.path().display().to_string();
        let bin = Bin::start(
            &["--dev", "--data-dir", &data_dir, "--log-format", format],
            &[],
        );
        let mut c = login(bin.addr, uid.as_str(), "any", room.as_str()).await;
        assert_eq!(c.send_msg(json!({"data": 1})).await["status"], json!(0));
        // An event name of the client's choosing, logged when it is oversize
        // before authentication.
        let mut early = support::Client::connect(bin.addr).await;
        early
            .emit(&format!("big\n{FORGED} event"), json!("x".repeat(20_000)))
            .await;
        let _ = early.recv_within(Duration::from_millis(500)).await;
        c.close().await;
        let (status, lines) = tokio::task::spawn_blocking(move || bin.terminate())
            .await
            .expect("terminate");
        assert_eq!(status.code(), Some(0), "{format}: {lines:#?}");
        let lines: Vec<String> = lines.iter().map(|l| strip_ansi(l)).collect();
        for line in &lines {
            assert!(
                !line.trim_start().starts_with("1999-"),
                "{format}: a forged log line: {line:?}\nall: {lines:#?}"
            );
            if format == "json" {
                serde_json::from_str::<Value>(line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
            }
        }
        // The strings are there, escaped, on the lines that log them.
        for (what, escaped) in [
            ("authenticated", "mallory\\"),
            ("joined", "lobby\\"),
            ("oversize event", "big\\"),
        ] {
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains(what) && l.contains(escaped) && l.contains("1999-")),
                "{format}: no {what:?} line with {escaped:?}: {lines:#?}"
            );
        }
    }
}
