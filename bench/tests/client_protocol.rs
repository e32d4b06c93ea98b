//! The client side of both engine.io generations against a scripted server:
//! who sends `40`, who pings, and what the client answers.

use std::time::Duration;

use ao_bench::engineio::{self, Eio};
use ao_bench::scenarios::conns::{conns, ConnsConfig};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Serves one connection: handshake for `eio` with a 100 ms ping interval,
/// accepts authenticate and join, pings (engine.io 4) and reports every
/// frame the client sends.
async fn scripted_server(eio: Eio) -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut ws = tokio_tungstenite::accept_async(stream).await.expect("ws");
        let text = |s: String| Message::Text(s.into());
        ws.send(text(engineio::open_frame("s1", 100, 5_000)))
            .await
            .expect("open");
        if eio == Eio::V3 {
            ws.send(text("40".into())).await.expect("connect");
        }
        let mut ping = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                frame = ws.next() => {
                    let Some(Ok(Message::Text(t))) = frame else { return };
                    let t = t.as_str().to_owned();
                    let reply = if t == "40" {
                        Some(engineio::connect_reply_v4("s1"))
                    } else if t.starts_with("42[\"authenticate\"") {
                        Some(engineio::event_frame("authenticate", r#"{"status":0,"data":"auth success"}"#))
                    } else if t.starts_with("42[\"join\"") {
                        Some(engineio::event_frame("join", r#"{"status":0,"data":"join success"}"#))
                    } else if t == "2" {
                        Some("3".to_owned())
                    } else {
                        None
                    };
                    let _ = tx.send(t);
                    if let Some(r) = reply {
                        if ws.send(text(r)).await.is_err() {
                            return;
                        }
                    }
                }
                _ = ping.tick(), if eio == Eio::V4 => {
                    if ws.send(text("2".into())).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    (addr, rx)
}

async fn hold_one(addr: String, eio: Eio) {
    let r = conns(&ConnsConfig {
        nodes: vec![addr],
        eio,
        conns: 1,
        members: 1,
        concurrency: 1,
        hold: Duration::from_millis(450),
        server_pids: vec![],
    })
    .await
    .expect("one connection");
    assert_eq!(r.lost, 0);
}

fn drain(rx: &mut mpsc::UnboundedReceiver<String>) -> Vec<String> {
    let mut v = Vec::new();
    while let Ok(f) = rx.try_recv() {
        v.push(f);
    }
    v
}

#[tokio::test]
async fn engineio3_client_waits_for_40_and_pings() {
    let (addr, mut rx) = scripted_server(Eio::V3).await;
    hold_one(addr, Eio::V3).await;
    let frames = drain(&mut rx);
    assert!(
        !frames.iter().any(|f| f == "40"),
        "EIO=3 client sent 40: {frames:?}"
    );
    assert!(
        frames[0].starts_with("42[\"authenticate\",{\"uid\":"),
        "{frames:?}"
    );
    assert!(
        frames[1].starts_with("42[\"join\",{\"roomId\":"),
        "{frames:?}"
    );
    let pings = frames.iter().filter(|f| *f == "2").count();
    assert!(pings >= 2, "expected client pings every 100 ms: {frames:?}");
    assert!(!frames.iter().any(|f| f == "3"), "{frames:?}");
}

#[tokio::test]
async fn engineio4_client_sends_40_and_answers_pings() {
    let (addr, mut rx) = scripted_server(Eio::V4).await;
    hold_one(addr, Eio::V4).await;
    let frames = drain(&mut rx);
    assert_eq!(frames[0], "40", "{frames:?}");
    assert!(frames.iter().any(|f| f.starts_with("42[\"authenticate\",")));
    let pongs = frames.iter().filter(|f| *f == "3").count();
    assert!(pongs >= 2, "expected answers to server pings: {frames:?}");
    assert!(!frames.iter().any(|f| f == "2"), "{frames:?}");
}
