//! `serve`'s header timeout over a real listener: slow and idle HTTP
//! connections are closed; a long-poll or a websocket is not cut.

mod support;

use std::time::Duration;

use ao_socketio::serve::HttpLimits;
use ao_socketio::Config;
use support::{Item, Polling, TestServer, Ws};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn limits() -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    }
}

async fn start() -> TestServer {
    support::start_with(Config::default(), limits()).await
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

#[tokio::test]
async fn half_a_request_line_is_cut_off() {
    let server = start().await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /socket.io/?EIO=4&trans").await.unwrap();
    let (closed, _) = closed_within(&mut tcp, Duration::from_secs(2)).await;
    assert!(
        closed,
        "a request that stalled in its first line was kept open"
    );
}

#[tokio::test]
async fn stalled_headers_are_cut_off() {
    let server = start().await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (closed, _) = closed_within(&mut tcp, Duration::from_secs(2)).await;
    assert!(
        closed,
        "a request that stalled in its headers was kept open"
    );
    assert_eq!(server.io.connections(), 0);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = start().await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    // A complete request (refused: no session is made), kept alive.
    tcp.write_all(
        b"GET /socket.io/?EIO=5&transport=polling HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(support::WAIT, tcp.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before answering");
        head.extend_from_slice(&buf[..n]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // Then nothing: the server closes it.
    let (closed, _) = closed_within(&mut tcp, Duration::from_secs(2)).await;
    assert!(closed, "an idle keep-alive connection was kept open");
}

#[tokio::test]
async fn a_pending_long_poll_is_not_cut() {
    let server = start().await;
    let (p, _) = Polling::connect_v4(&server).await;
    let pending = {
        let url = p.url();
        let http = p.http.clone();
        tokio::spawn(async move { http.get(url).send().await })
    };
    // Well past the header timeout, the poll still waits...
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        !pending.is_finished(),
        "the pending poll was answered early"
    );
    // ...and gets what the server sends.
    server.only_socket().await.emit("late", &1).unwrap();
    let res = tokio::time::timeout(support::WAIT, pending)
        .await
        .unwrap()
        .unwrap()
        .expect("the long-poll was cut");
    assert_eq!(res.status(), 200);
    assert_eq!(
        support::decode_response(4, res).await,
        vec![Item::Text(r#"42["late",1]"#.into())]
    );
}

#[tokio::test]
async fn an_idle_websocket_is_not_cut() {
    let server = start().await;
    let (mut ws, _, _) = Ws::connect_v4(&server).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    ws.send(r#"42["echo","still here"]"#).await;
    assert_eq!(ws.text().await, r#"42["echo","still here"]"#);
}
