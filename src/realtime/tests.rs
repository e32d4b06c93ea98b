//! The session's handlers driven through in-memory connections
//! ([`ao_socketio::MemoryClient`]): the same packet handling as a network
//! client, without a transport, on a real server with its embedded store.

use std::net::SocketAddr;

use ao_socketio::engine::EngineVersion;
use ao_socketio::MemoryClient;
use serde_json::{json, Value};

use crate::app::App;
use crate::config::Config;

async fn server() -> (App, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary data dir");
    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.path().to_path_buf(),
        dev: true,
        ..Config::default()
    };
    let app = App::start(config).await.expect("start the server");
    (app, dir)
}

/// What the client received next: an event `(name, arg)` or an ack `(id, arg)`.
#[derive(Debug, PartialEq)]
enum Got {
    Event(String, Value),
    Ack(u64, Value),
}

async fn next(c: &MemoryClient) -> Got {
    let mut text = String::from("40");
    // The namespace's connect packet (`40`, `40{"sid":…}`) is not an event.
    while text.starts_with("40") {
        text = tokio::time::timeout(std::time::Duration::from_secs(5), c.recv())
            .await
            .expect("a packet within 5 s")
            .expect("the connection is open");
    }
    if let Some(rest) = text.strip_prefix("42") {
        let v: Vec<Value> = serde_json::from_str(rest).expect("an event array");
        let name = v[0].as_str().expect("event name").to_owned();
        return Got::Event(name, v.get(1).cloned().unwrap_or(Value::Null));
    }
    if let Some(rest) = text.strip_prefix("43") {
        let split = rest.find('[').expect("ack data");
        let id = rest[..split].parse().expect("ack id");
        let v: Vec<Value> = serde_json::from_str(&rest[split..]).expect("an ack array");
        return Got::Ack(id, v[0].clone());
    }
    panic!("unexpected packet {text}");
}

async fn event(c: &MemoryClient, name: &str) -> Value {
    match next(c).await {
        Got::Event(n, v) if n == name => v,
        other => panic!("expected {name}, got {other:?}"),
    }
}

/// Connects, authenticates as `uid` and joins `room`.
async fn member(app: &App, uid: &str, room: &str) -> MemoryClient {
    let mut c = app.state().io().connect_in_memory(EngineVersion::V4);
    c.emit("authenticate", &json!({"uid": uid, "token": "any"}), false);
    assert_eq!(event(&c, "authenticate").await["status"], 0);
    c.emit("join", &json!({"roomId": room}), false);
    assert_eq!(event(&c, "join").await["status"], 0);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_msg_is_stored_relayed_stamped_and_acked_with_its_seq() {
    let (app, _dir) = server().await;
    let mut a = member(&app, "alice", "r").await;
    let b = member(&app, "bob", "r").await;
    assert_eq!(event(&a, "remote_join").await, json!({"uid": "bob"}));
    assert_eq!(event(&b, "remote_join").await, json!({"uid": "alice"}));
    let id = a.emit("msg", &json!({"data": {"text": "hi"}, "s": 0}), true);
    let relayed = event(&b, "msg").await;
    assert_eq!(relayed["data"], json!({"text": "hi"}));
    assert_eq!(relayed["2"], json!("alice"));
    assert_eq!(
        next(&a).await,
        Got::Ack(id.unwrap_or(0), json!({"status": 0, "seq": 0}))
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_before_authenticate_are_answered_and_change_nothing() {
    let (app, _dir) = server().await;
    let mut c = app.state().io().connect_in_memory(EngineVersion::V3);
    let id = c.emit("msg", &json!({"data": 1}), true);
    match next(&c).await {
        Got::Ack(got, reply) => {
            assert_eq!(Some(got), id);
            assert_eq!(reply["status"], 2);
        }
        other => panic!("expected the refusal's ack, got {other:?}"),
    }
    assert!(c.closed().is_none());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_login_of_a_uid_kicks_the_first_out() {
    let (app, _dir) = server().await;
    let first = member(&app, "alice", "r").await;
    let _second = member(&app, "alice", "r").await;
    assert_eq!(event(&first, "kickout").await, json!(0));
    // Then the server's disconnect packet, and the connection closes.
    let mut rest = Vec::new();
    while let Some(p) = first.recv().await {
        rest.push(p);
    }
    assert_eq!(rest, ["41"]);
    assert_eq!(
        first.closed(),
        Some(ao_socketio::DisconnectReason::ServerDisconnect)
    );
    app.shutdown().await;
}
