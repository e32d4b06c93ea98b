//! Connections that never become useful, against the real binary: each is
//! closed by its deadline (request headers, TLS handshake, request body,
//! socket.io CONNECT), idle sockets at the pending cap make room for new
//! clients, and never-ending polling bodies hold no memory once their
//! session closed; meanwhile a well-behaved client keeps being served.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::certs::TestCa;
use crate::support::{self, login, BinServer, WAIT};

/// Reads until the server closes the connection; `true` if it did within
/// `within`. Gives what was read too.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    within: Duration,
) -> (bool, Vec<u8>) {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (false, seen),
            Ok(Ok(0) | Err(_)) => return (true, seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// A connection to `addr` that sends `bytes` and then nothing.
async fn sends(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(bytes).await.expect("write");
    tcp
}

/// The value of a `/metrics` sample (`name{labels}`), 0 when absent.
async fn metric(server: &BinServer, sample: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", server.addr))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A well-behaved client is served: it connects, authenticates and joins
/// (within [`WAIT`]: the machine running the tests may be loaded), and its
/// msg is acked within a second.
async fn served(addr: SocketAddr, uid: &str) {
    let mut c = tokio::time::timeout(WAIT, login(addr, uid, "dev", "calm"))
        .await
        .expect("the well-behaved client was not served");
    let started = Instant::now();
    let ack = c.send_msg(json!({"data": "still here"})).await;
    assert_eq!(ack["status"], json!(0), "{ack}");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the well-behaved client's msg took {took:?}"
    );
    c.close().await;
}

const HEADER_CUT: &str = "ao_http_connections_closed_total{reason=\"header_timeout\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_and_http2_prefaces_are_closed_at_the_header_deadline() {
    let data = support::tempdir();
    let server = BinServer::start_with(data.path(), true, |c| {
        c.env("AO_HEADER_TIMEOUT_MS", "300");
    });
    let mut h2c = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2c.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    for addr in [server.addr, server.api_addr] {
        for (what, bytes) in [
            ("nothing", &b""[..]),
            ("part of an HTTP/2 preface", &b"PRI * HT"[..]),
            ("an HTTP/2 cleartext preface", &h2c[..]),
            ("half a request line", &b"GET /socket.io/?EIO=4&tra"[..]),
        ] {
            let mut tcp = sends(addr, bytes).await;
            let (closed, seen) = closed_within(&mut tcp, Duration::from_secs(3)).await;
            assert!(
                closed,
                "{addr}: a connection that sent {what} was kept open"
            );
            // Never an HTTP/2 answer (a SETTINGS frame).
            assert!(
                seen.is_empty() || seen.starts_with(b"HTTP/1.1 "),
                "{addr}: {what} was answered {seen:?}"
            );
        }
    }
    assert!(metric(&server, HEADER_CUT).await >= 4.0);
    served(server.addr, "calm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_silent_after_its_handshake_is_closed() {
    let dir = support::tempdir();
    let ca = TestCa::new("ao test CA");
    let leaf = ca.leaf("localhost", 1);
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    leaf.write(&cert, &key);
    let server = BinServer::start_with(dir.path(), true, |c| {
        c.env("AO_HEADER_TIMEOUT_MS", "300")
            .env("AO_TLS_CERT", &cert)
            .env("AO_TLS_KEY", &key);
    });
    for addr in [server.addr, server.api_addr] {
        // The handshake completes; then nothing, or half a request.
        let mut silent = ca.connect(addr).await;
        let (closed, _) = closed_within(&mut silent, Duration::from_secs(3)).await;
        assert!(closed, "{addr}: a silent TLS client was kept open");
        let mut half = ca.connect(addr).await;
        half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        let (closed, _) = closed_within(&mut half, Duration::from_secs(3)).await;
        assert!(closed, "{addr}: a TLS client that stalled was kept open");
    }
    // A client that speaks is served.
    let https = ca.https_client();
    let res = https
        .get(format!("https://localhost:{}/healthz", server.addr.port()))
        .send()
        .await
        .expect("GET /healthz over TLS");
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_at_the_pending_cap_do_not_lock_clients_out() {
    let data = support::tempdir();
    let server = BinServer::start_with(data.path(), true, |c| {
        // Long: only the cap closes the idle sockets here.
        c.env("AO_HEADER_TIMEOUT_MS", "60000")
            .env("AO_MAX_PENDING_CONNECTIONS", "50");
    });
    // Each sends most of a request head (8 KiB of a cookie), then nothing.
    let partial = format!(
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nCookie: {}",
        "a".repeat(8 * 1024)
    );
    let pid = server.child.id();
    let (growth_kib, mut idle) = peak_growth(pid, async {
        let mut idle = Vec::new();
        for _ in 0..500 {
            idle.push(sends(server.addr, partial.as_bytes()).await);
        }
        served(server.addr, "calm").await;
        idle
    })
    .await;
    // What 50 pending connections may hold (a read buffer of at most
    // twice the head bound each) and 32 MiB of slack.
    let bound_kib = (50 * 2 * head_bound_kib()) + 32 * 1024;
    eprintln!(
        "500 idle sockets at a cap of 50: peak RSS growth {growth_kib} KiB (bound {bound_kib} KiB)"
    );
    assert!(
        growth_kib <= bound_kib,
        "RSS grew {growth_kib} KiB, over {bound_kib} KiB"
    );
    let made_room = metric(
        &server,
        "ao_http_connections_closed_total{reason=\"pending_cap\"}",
    )
    .await;
    assert!(made_room >= 450.0, "{made_room} idle sockets closed");
    let pending = metric(&server, "ao_http_pending_connections").await;
    assert!(pending <= 50.0, "{pending} pending");
    // The oldest idle sockets were closed.
    let (closed, _) = closed_within(&mut idle[0], Duration::from_secs(1)).await;
    assert!(closed, "the oldest idle socket is still open");
}

/// The largest request head the server reads, in KiB.
fn head_bound_kib() -> u64 {
    (ao_socketio::serve::MAX_HEAD_BYTES / 1024) as u64
}

/// When the server runs out of file descriptors, idle sockets make room:
/// the binary runs with an open-files limit of 256 and no pending cap of
/// its own, and 400 idle sockets do not lock a client out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_descriptor_limit_idle_sockets_make_room() {
    let data = support::tempdir();
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg("--nofile=256:256")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_always-online"));
    for (key, _) in std::env::vars() {
        if key.starts_with("AO_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "info")
        .env("AO_LOG_FORMAT", "json")
        .env("AO_HEADER_TIMEOUT_MS", "60000")
        .env("AO_MAX_PENDING_CONNECTIONS", "100000")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
            "--dev",
        ])
        .arg("--data-dir")
        .arg(data.path());
    let server = BinServer::spawn(cmd);
    let mut idle = Vec::new();
    for _ in 0..400 {
        idle.push(sends(server.addr, b"").await);
    }
    // The accept loop closes the oldest idle socket at each descriptor it
    // lacks; give it the time to go through the backlog.
    tokio::time::sleep(Duration::from_secs(1)).await;
    served(server.addr, "calm").await;
    let made_room = metric(
        &server,
        "ao_http_connections_closed_total{reason=\"pending_cap\"}",
    )
    .await;
    assert!(made_room >= 100.0, "{made_room} idle sockets closed");
    let (closed, _) = closed_within(&mut idle[0], Duration::from_secs(1)).await;
    assert!(closed, "the oldest idle socket is still open");
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(to).await
}

/// A raw HTTP/1.1 exchange from `from`: sends `request`, reads the answer
/// (with `Content-Length`) and gives its status and body.
async fn exchange(from: [u8; 4], to: SocketAddr, request: &str) -> Option<(u16, Vec<u8>)> {
    let mut tcp = connect_from(from, to).await.ok()?;
    tcp.write_all(request.as_bytes()).await.ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if got.len() >= end + 4 + len {
            let status = head.get(9..12)?.parse().ok()?;
            return Some((status, got[end + 4..end + 4 + len].to_vec()));
        }
    }
    None
}

/// An engine.io 4 polling session opened from `from`; its sid.
async fn polling_session(from: [u8; 4], to: SocketAddr) -> Option<String> {
    let (status, body) = exchange(
        from,
        to,
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await?;
    if status != 200 {
        return None;
    }
    let open: Value = serde_json::from_slice(body.get(1..)?).ok()?;
    Some(open["sid"].as_str()?.to_owned())
}

/// The head of a polling POST for `sid` whose body is chunked.
fn chunked_post(sid: &str) -> String {
    format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain;charset=UTF-8\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
}

/// What one attacker does until `until`: opens a session, sends a POST
/// whose chunked body stops after `bytes` (pings, never ending), makes the
/// session close with a second POST, and keeps the first one's socket open.
async fn endless_bodies(to: SocketAddr, bytes: usize, until: Instant) -> Vec<TcpStream> {
    let attacker = [127, 0, 0, 2];
    let mut held = Vec::new();
    let chunk = {
        let data = "2".repeat(256 * 1024);
        format!("{:x}\r\n{data}\r\n", data.len()).into_bytes()
    };
    while Instant::now() < until {
        let Some(sid) = polling_session(attacker, to).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let Ok(mut post) = connect_from(attacker, to).await else {
            continue;
        };
        if post.write_all(chunked_post(&sid).as_bytes()).await.is_err() {
            continue;
        }
        let mut sent = 0;
        while sent < bytes {
            if post.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        // Two POSTs at once: the session closes.
        let second = format!(
            "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\n1:6"
        );
        let _ = exchange(attacker, to, &second).await;
        held.push(post);
    }
    held
}

/// Peak RSS growth of `pid` in KiB while `work` runs, sampled every 50 ms.
async fn peak_growth<F: std::future::Future>(pid: u32, work: F) -> (u64, F::Output) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let before = support::rss_kib(pid);
    let peak = std::sync::Arc::new(AtomicU64::new(before));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(support::rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let out = work.await;
    sampler.abort();
    peak.fetch_max(support::rss_kib(pid), Ordering::Relaxed);
    (peak.load(Ordering::Relaxed).saturating_sub(before), out)
}

/// Bodies an attacker keeps open after their session closed hold nothing.
/// Five sessions at once (the attacker's address cap), each with a body of
/// 8 MiB: the documented bound is what five bodies in flight hold (the
/// body collected and its copy, 2 × 8 MiB each) and 48 MiB of slack for
/// the allocator; before bodies were cut at their session's close, every
/// body the attacker left open stayed held (+305 MiB for 20 of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_ending_polling_bodies_hold_no_memory_after_their_session() {
    const BODY: usize = 8 << 20;
    const ATTACKERS: usize = 5;
    let data = support::tempdir();
    let server = BinServer::start_with(data.path(), true, |c| {
        c.env("AO_MAX_CONNECTIONS_PER_IP", ATTACKERS.to_string())
            // Long: the cuts here are the session's doing.
            .env("AO_BODY_TIMEOUT_MS", "60000");
    });
    let (addr, pid) = (server.addr, server.child.id());
    let until = Instant::now() + Duration::from_secs(6);
    let attack = async move {
        let attackers: Vec<_> = (0..ATTACKERS)
            .map(|_| tokio::spawn(endless_bodies(addr, BODY, until)))
            .collect();
        // Meanwhile a well-behaved client keeps being served.
        let mut calm = 0;
        while Instant::now() < until {
            served(addr, &format!("calm{calm}")).await;
            calm += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mut held = Vec::new();
        for a in attackers {
            held.extend(a.await.expect("attacker"));
        }
        held
    };
    let (growth_kib, mut held) = peak_growth(pid, attack).await;
    let bound_kib = ((ATTACKERS * 2 * BODY) >> 10) as u64 + 48 * 1024;
    eprintln!(
        "{} never-ending bodies left open; peak RSS growth {} KiB (bound {bound_kib} KiB)",
        held.len(),
        growth_kib
    );
    assert!(
        held.len() >= 2 * ATTACKERS,
        "the attack made only {} bodies",
        held.len()
    );
    assert!(
        growth_kib <= bound_kib,
        "RSS grew {growth_kib} KiB, over {bound_kib} KiB"
    );
    // Each body the attacker left open was cut.
    for post in &mut held {
        let (closed, _) = closed_within(post, Duration::from_secs(2)).await;
        assert!(closed, "a POST of a closed session is still read");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_body_that_never_ends_is_cut_at_the_body_deadline() {
    let data = support::tempdir();
    let server = BinServer::start_with(data.path(), true, |c| {
        c.env("AO_BODY_TIMEOUT_MS", "500");
    });
    let sid = polling_session([127, 0, 0, 1], server.addr)
        .await
        .expect("a session");
    let mut post = sends(
        server.addr,
        format!("{}4\r\n2222\r\n", chunked_post(&sid)).as_bytes(),
    )
    .await;
    let (closed, seen) = closed_within(&mut post, Duration::from_secs(5)).await;
    assert!(closed, "a never-ending POST body was read past 5 s");
    assert!(
        seen.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    assert!(
        metric(
            &server,
            "ao_http_connections_closed_total{reason=\"body_timeout\"}"
        )
        .await
            >= 1.0
    );
}

/// `POST path` with HTTP Basic `uid:token`, a body announced as 100 bytes
/// of which `sent` are sent; the answer's status line and whether the
/// connection closed after it, within 5 s.
async fn slow_post(addr: SocketAddr, path: &str, creds: &str, sent: &[u8]) -> (String, bool) {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(creds);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    let mut tcp = sends(addr, head.as_bytes()).await;
    tcp.write_all(sent).await.expect("write");
    let (closed, seen) = closed_within(&mut tcp, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&seen);
    (text.lines().next().unwrap_or("").to_owned(), closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_admin_and_accounts_bodies_are_cut_and_wrong_credentials_not_waited_for() {
    let data = support::tempdir();
    let server = BinServer::start_with(data.path(), false, |c| {
        c.env("AO_BODY_TIMEOUT_MS", "2500")
            .env("AO_ADMIN_UID", "root")
            .env("AO_ADMIN_TOKEN", "secret-admin-token");
    });
    for (addr, path) in [
        (server.api_addr, "/user/create_token"),
        (server.addr, "/admin/system/push"),
    ] {
        // With credentials: the body is waited for, to the deadline.
        let started = Instant::now();
        let (status, closed) = slow_post(addr, path, "root:secret-admin-token", b"{\"uid\"").await;
        assert!(status.starts_with("HTTP/1.1 408"), "{path}: {status}");
        assert!(closed, "{path}: the connection stayed open");
        assert!(started.elapsed() >= Duration::from_secs(2), "{path}");
        // Without: answered at once, the body not read.
        let started = Instant::now();
        let (status, _) = slow_post(addr, path, "root:wrong", b"").await;
        assert!(status.starts_with("HTTP/1.1 200"), "{path}: {status}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{path}: a refusal waited for the body"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_never_connects_is_closed_at_the_auth_timeout() {
    let data = support::tempdir();
    let server = BinServer::start_with(data.path(), true, |c| {
        c.env("AO_AUTH_TIMEOUT_MS", "500");
    });
    // A websocket that opens engine.io and never sends the CONNECT packet.
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        use futures_util::StreamExt;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    assert!(closed.is_ok(), "a session that never connected lived 5 s");
    assert!(started.elapsed() >= Duration::from_millis(400));
    // Over polling too: the session is gone.
    let sid = polling_session([127, 0, 0, 1], server.addr)
        .await
        .expect("a session");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = exchange(
        [127, 0, 0, 1],
        server.addr,
        &format!("GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await
    .expect("an answer");
    // Unknown, or its close packet waiting for this poll.
    assert!(
        status == 400 || (status == 200 && body == b"1"),
        "the session still exists: {status} {}",
        String::from_utf8_lossy(&body)
    );
    served(server.addr, "calm").await;
}
