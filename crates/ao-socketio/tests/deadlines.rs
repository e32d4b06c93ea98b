//! Every connection has a deadline until it is useful: sockets that send
//! nothing or an HTTP/2 preface are closed at the header deadline, idle
//! sockets make room for new ones at the pending cap, and a polling POST
//! whose body never ends is cut at the body deadline, or at once when its
//! session closes.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use ao_socketio::serve::{HttpLimits, HttpServer};
use ao_socketio::{Config, DisconnectReason};
use support::{Polling, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn limits() -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(500),
        ..HttpLimits::default()
    }
}

/// Reads until the server closes the connection; `true` if it did within
/// `within`. Gives what was read too.
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> (bool, Vec<u8>) {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return (false, seen),
            Ok(Ok(0) | Err(_)) => return (true, seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// A connection that sends `bytes` and then nothing.
async fn sends(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(bytes).await.expect("write");
    tcp
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_header_deadline() {
    let server = support::start_with(Config::default(), limits()).await;
    let mut tcp = sends(server.addr, b"").await;
    let (closed, seen) = closed_within(&mut tcp, Duration::from_secs(3)).await;
    assert!(closed, "a connection that sent nothing was kept open");
    assert!(seen.is_empty(), "{}", String::from_utf8_lossy(&seen));
}

#[tokio::test]
async fn a_partial_http2_preface_is_closed_at_the_header_deadline() {
    let server = support::start_with(Config::default(), limits()).await;
    let mut tcp = sends(server.addr, b"PRI * HT").await;
    let (closed, _) = closed_within(&mut tcp, Duration::from_secs(3)).await;
    assert!(closed, "a partial HTTP/2 preface was kept open");
}

#[tokio::test]
async fn an_http2_cleartext_preface_is_refused() {
    let server = support::start_with(
        Config::default(),
        HttpLimits {
            // Long: the refusal is not the header deadline's doing.
            header_timeout: Duration::from_secs(30),
            ..limits()
        },
    )
    .await;
    // The full client preface, then an empty SETTINGS frame.
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let mut tcp = sends(server.addr, &preface).await;
    let (closed, seen) = closed_within(&mut tcp, Duration::from_secs(3)).await;
    assert!(closed, "an HTTP/2 cleartext connection was kept open");
    // No HTTP/2 frame (a SETTINGS frame would have type 4 at byte 3).
    assert!(
        seen.is_empty() || seen.starts_with(b"HTTP/1.1 "),
        "answered {seen:?}"
    );
}

#[tokio::test]
async fn a_request_line_trickled_a_byte_at_a_time_is_cut_at_the_header_deadline() {
    let server = support::start_with(Config::default(), limits()).await;
    let mut tcp = sends(server.addr, b"G").await;
    let started = tokio::time::Instant::now();
    let mut closed = false;
    for b in b"ET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n"
        .iter()
        .cycle()
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if tcp.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    if !closed {
        closed = closed_within(&mut tcp, Duration::from_millis(100)).await.0;
    }
    assert!(closed, "a trickled request head was kept open past 3 s");
}

/// A router answering `GET /` served by `http`, on a fresh listener.
async fn serve_plain(http: &HttpServer) -> SocketAddr {
    let router = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let http = http.clone();
    tokio::spawn(async move {
        http.serve(listener, router, std::future::pending()).await;
    });
    addr
}

#[tokio::test]
async fn idle_sockets_at_the_pending_cap_make_room_for_new_clients() {
    let http = HttpServer::new(HttpLimits {
        // Long: only the cap closes the idle sockets here.
        header_timeout: Duration::from_secs(30),
        body_timeout: Duration::from_secs(30),
        max_pending_connections: 8,
    });
    let addr = serve_plain(&http).await;
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(sends(addr, b"").await);
    }
    // A well-behaved client still gets its answer...
    let res = support::http()
        .get(format!("http://{addr}/"))
        .send()
        .await
        .expect("a client at the cap was refused");
    assert_eq!(res.text().await.unwrap(), "hello");
    // ...because the oldest idle sockets were closed to make room.
    let mut closed = 0;
    for tcp in &mut idle {
        if closed_within(tcp, Duration::from_millis(200)).await.0 {
            closed += 1;
        }
    }
    assert!(closed >= 42, "only {closed} of 50 idle sockets were closed");
    assert!(http.pending_closed() >= 42, "{}", http.pending_closed());
    assert!(
        http.pending_connections() <= 8,
        "{} pending",
        http.pending_connections()
    );
}

#[tokio::test]
async fn a_long_poll_in_progress_is_not_pending() {
    let server = support::start_with(
        Config::default(),
        HttpLimits {
            max_pending_connections: 2,
            ..limits()
        },
    )
    .await;
    let (p, _) = Polling::connect_v4(&server).await;
    let pending = {
        let (url, http) = (p.url(), p.http.clone());
        tokio::spawn(async move { http.get(url).send().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Idle sockets fill the cap again and again; the long-poll stays.
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(sends(server.addr, b"").await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!pending.is_finished(), "the long-poll was cut");
    server.only_socket().await.emit("late", &1).unwrap();
    let res = tokio::time::timeout(support::WAIT, pending)
        .await
        .unwrap()
        .unwrap()
        .expect("the long-poll was cut");
    assert_eq!(res.status(), 200);
}

/// Starts a polling POST whose chunked body never ends.
async fn endless_post(server: &TestServer, p: &Polling) -> TcpStream {
    let path = format!("/socket.io/?{}&sid={}", p.query, p.sid);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain;charset=UTF-8\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n2pin\r\n",
        server.addr
    );
    sends(server.addr, head.as_bytes()).await
}

#[tokio::test]
async fn a_polling_body_that_never_ends_is_cut_at_the_body_deadline() {
    let mut server = support::start_with(Config::default(), limits()).await;
    let (p, _) = Polling::connect_v4(&server).await;
    let mut post = endless_post(&server, &p).await;
    let (closed, seen) = closed_within(&mut post, Duration::from_secs(5)).await;
    assert!(closed, "an endless POST body was read past 5 s");
    assert!(
        seen.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    assert_eq!(
        server.disconnect_reason().await,
        DisconnectReason::TransportClose
    );
}

#[tokio::test]
async fn a_polling_body_is_cut_at_once_when_its_session_closes() {
    let server = support::start_with(
        Config::default(),
        HttpLimits {
            // Long: the cut is the session's doing.
            body_timeout: Duration::from_secs(60),
            ..limits()
        },
    )
    .await;
    let (p, _) = Polling::connect_v4(&server).await;
    let mut post = endless_post(&server, &p).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.only_socket().await.disconnect();
    let (closed, seen) = closed_within(&mut post, Duration::from_secs(5)).await;
    assert!(closed, "the POST of a closed session was still read");
    assert!(
        seen.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
}

#[tokio::test]
async fn a_second_post_cuts_the_endless_first_one() {
    let server = support::start_with(
        Config::default(),
        HttpLimits {
            body_timeout: Duration::from_secs(60),
            ..limits()
        },
    )
    .await;
    let (p, _) = Polling::connect_v4(&server).await;
    let mut first = endless_post(&server, &p).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Two POSTs at once close the session: the first stops being read.
    let second = p.post_raw(b"1:6".to_vec()).await;
    assert_eq!(second.status(), 400);
    let (closed, _) = closed_within(&mut first, Duration::from_secs(5)).await;
    assert!(closed, "the first POST was still read");
    assert_eq!(server.io.connections(), 0);
}

#[tokio::test]
async fn a_request_head_over_its_bound_is_refused() {
    let server = support::start_with(Config::default(), limits()).await;
    let head = format!(
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nCookie: {}\r\n\r\n",
        "a".repeat(ao_socketio::serve::MAX_HEAD_BYTES)
    );
    let mut tcp = sends(server.addr, head.as_bytes()).await;
    let (closed, seen) = closed_within(&mut tcp, Duration::from_secs(3)).await;
    assert!(closed, "an oversize request head was kept open");
    assert!(
        seen.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    // A head of ordinary size passes.
    let (_p, _) = Polling::connect_v4(&server).await;
}

#[tokio::test]
async fn an_answer_the_client_never_reads_is_cut() {
    let config = Config::builder().queue_max_bytes(32 << 20).build();
    let server = support::start_with(config, limits()).await;
    let (p, _) = Polling::connect_v4(&server).await;
    let socket = server.only_socket().await;
    // One answer larger than the kernel's socket buffers can take (at
    // most 4 MiB sent, 32 MiB received here).
    const ANSWER: usize = 48 << 20;
    socket.emit("big", &"x".repeat(ANSWER)).unwrap();
    // A long-poll from a socket with a tiny receive window that never
    // reads its answer.
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let mut stream = tcp.connect(server.addr).await.unwrap();
    let path = format!("/socket.io/?{}&sid={}", p.query, p.sid);
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The server gave up on it: reading now ends before the whole answer.
    let mut got = 0;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await {
            Err(_) => panic!("the unread answer still holds the connection ({got} bytes read)"),
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => got += n,
        }
    }
    assert!(got < ANSWER, "the whole answer came: {got} bytes");
}

#[tokio::test]
async fn a_websocket_is_exempt_from_the_write_deadline() {
    let server = support::start_with(Config::default(), limits()).await;
    let (mut ws, _, _) = support::Ws::connect_v4(&server).await;
    let socket = server.only_socket().await;
    // More than the kernel buffers take, unread for longer than the
    // deadline: the websocket stays.
    let text = "y".repeat(64 * 1024);
    for _ in 0..40 {
        socket.emit("big", &text).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!socket.is_closed(), "the websocket was cut");
    for _ in 0..40 {
        let frame = ws.text().await;
        assert!(frame.starts_with("42[\"big\""), "{}", &frame[..20]);
    }
}
