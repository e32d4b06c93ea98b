//! Handshakes over a real listener: engine.io 3 and 4 on both transports,
//! the error answers, allowed origins, connection caps and namespaces.

mod support;

use ao_socketio::{Config, Origins, Refusal};
use support::{error_body, http, Item, Polling, Ws};
use tokio_tungstenite::tungstenite;

#[tokio::test]
async fn eio4_websocket_handshake_then_namespace_connect() {
    let server = support::start(Config::default()).await;
    let mut ws = Ws::connect(&server.ws_url("EIO=4&transport=websocket")).await;
    let open = ws.open_packet().await;
    let sid = open["sid"].as_str().expect("sid");
    assert_eq!(sid.len(), 20);
    assert_eq!(open["upgrades"], serde_json::json!([]));
    assert_eq!(open["pingInterval"], 25_000);
    assert_eq!(open["pingTimeout"], 20_000);
    assert_eq!(open["maxPayload"], 1_000_000);
    // socket.io 3+: nothing until the client connects to the namespace.
    ws.send("40").await;
    let socket_id = ws.connected_v5().await;
    assert_eq!(socket_id.len(), 20);
    assert_ne!(socket_id, sid, "the socket id must not be the session id");
    assert_eq!(server.only_socket().await.id(), socket_id);
    // And it works.
    ws.send(r#"42["echo","hi"]"#).await;
    assert_eq!(ws.text().await, r#"42["echo","hi"]"#);
}

#[tokio::test]
async fn eio3_websocket_handshake_connects_unasked() {
    let server = support::start(Config::default()).await;
    let mut ws = Ws::connect(&server.ws_url("EIO=3&transport=websocket")).await;
    let open = ws.open_packet().await;
    assert!(open["sid"].is_string());
    assert_eq!(open["upgrades"], serde_json::json!([]));
    assert_eq!(open["pingInterval"], 25_000);
    assert_eq!(open["pingTimeout"], 20_000);
    assert_eq!(ws.text().await, "40");
    ws.send(r#"42["echo","hi"]"#).await;
    assert_eq!(ws.text().await, r#"42["echo","hi"]"#);
}

#[tokio::test]
async fn a_missing_eio_is_engine_io_3() {
    let server = support::start(Config::default()).await;
    // websocket: open, then `40` unasked.
    let mut ws = Ws::connect(&server.ws_url("transport=websocket")).await;
    ws.open_packet().await;
    assert_eq!(ws.text().await, "40");
    // polling: an engine.io 3 text payload `<len>:0{...}2:40`.
    let res = http()
        .get(server.url("transport=polling"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    assert!(body.ends_with("2:40"), "{body:?}");
    let items = support::decode_v3_text(body.as_bytes());
    assert_eq!(items.len(), 2);
    assert!(items[0].text().starts_with("0{"));
}

#[tokio::test]
async fn the_error_answers() {
    let server = support::start(Config::default()).await;
    let client = http();
    let get = |query: &str| client.get(server.url(query)).send();

    let res = get("EIO=5&transport=polling").await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(error_body(res).await["code"], 5);

    let res = get("EIO=4&transport=flashsocket").await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(error_body(res).await["code"], 0);

    let res = get("EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA")
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(error_body(res).await["code"], 1);
    // Not even an id's shape.
    let res = get("EIO=4&transport=polling&sid=x").await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(error_body(res).await["code"], 1);

    // JSONP polling is refused.
    let res = get("EIO=3&transport=polling&j=0").await.unwrap();
    assert_eq!(res.status(), 400);
    assert_ne!(error_body(res).await["code"], serde_json::Value::Null);

    // A websocket with an unsupported version is refused before the upgrade.
    match Ws::try_connect(&server.ws_url("EIO=5&transport=websocket"), None).await {
        Err(tungstenite::Error::Http(res)) => assert_eq!(res.status(), 400),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("EIO=5 websocket accepted"),
    }
    assert_eq!(server.io.connections(), 0);
}

// ---------------------------------------------------------------------------
// origins

fn origins() -> Config {
    Config::builder()
        .origins(Origins::List(vec!["http://allowed.example".into()]))
        .build()
}

#[tokio::test]
async fn a_foreign_origin_is_refused_on_both_transports() {
    let server = support::start(origins()).await;
    let res = http()
        .get(server.url("EIO=4&transport=polling"))
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    match Ws::try_connect(
        &server.ws_url("EIO=4&transport=websocket"),
        Some("http://evil.example"),
    )
    .await
    {
        Err(tungstenite::Error::Http(res)) => assert_eq!(res.status(), 403),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a foreign origin's websocket was accepted"),
    }
    assert_eq!(server.io.stats().refusals(Refusal::Origin), 2);
    assert_eq!(server.io.connections(), 0);
}

#[tokio::test]
async fn an_allowed_origin_gets_cors_headers() {
    let server = support::start(origins()).await;
    let res = http()
        .get(server.url("EIO=4&transport=polling"))
        .header("Origin", "http://allowed.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers();
    assert_eq!(
        h.get("access-control-allow-origin").unwrap(),
        "http://allowed.example"
    );
    assert_eq!(h.get("access-control-allow-credentials").unwrap(), "true");
    assert!(res.text().await.unwrap().starts_with("0{"));

    let mut ws = Ws::try_connect(
        &server.ws_url("EIO=4&transport=websocket"),
        Some("http://allowed.example"),
    )
    .await
    .expect("the allowed origin's websocket");
    ws.open_packet().await;

    // Without an Origin (a native client): accepted.
    let res = http()
        .get(server.url("EIO=4&transport=polling"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut ws = Ws::connect(&server.ws_url("EIO=4&transport=websocket")).await;
    ws.open_packet().await;
    assert_eq!(server.io.stats().refusals(Refusal::Origin), 0);
}

#[tokio::test]
async fn any_origin_answers_preflights() {
    let server = support::start(Config::default()).await;
    let res = http()
        .request(
            reqwest::Method::OPTIONS,
            server.url("EIO=4&transport=polling"),
        )
        .header("Origin", "http://page.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type, x-custom")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers();
    assert_eq!(
        h.get("access-control-allow-headers").unwrap(),
        "content-type, x-custom"
    );
    let methods = h
        .get("access-control-allow-methods")
        .unwrap()
        .to_str()
        .unwrap();
    for m in ["GET", "POST", "OPTIONS"] {
        assert!(methods.contains(m), "{methods}");
    }
    assert_eq!(
        h.get("access-control-allow-origin").unwrap(),
        "http://page.example"
    );
    assert_eq!(server.io.connections(), 0);
}

// ---------------------------------------------------------------------------
// connection caps

#[tokio::test]
async fn a_full_server_refuses_then_admits_again() {
    let server = support::start(Config::builder().max_connections(2).build()).await;
    let (first, _) = Polling::connect_v4(&server).await;
    let (mut ws, _, _) = Ws::connect_v4(&server).await;
    assert_eq!(server.io.connections(), 2);

    let res = http()
        .get(server.url("EIO=4&transport=polling"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let body = error_body(res).await;
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    match Ws::try_connect(&server.ws_url("EIO=4&transport=websocket"), None).await {
        Err(tungstenite::Error::Http(res)) => assert_eq!(res.status(), 503),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a third websocket was admitted"),
    }
    assert_eq!(server.io.stats().refusals(Refusal::ServerFull), 2);

    // One leaves (a close packet), and a new one is admitted.
    first.post(&["1"]).await;
    server.wait_connections(1).await;
    let (_again, _) = Polling::connect_v4(&server).await;
    assert_eq!(server.io.connections(), 2);
    // The websocket still works.
    ws.send(r#"42["echo",1]"#).await;
    assert_eq!(ws.text().await, r#"42["echo",1]"#);
    // Its transport closing frees a place too.
    ws.inner.close(None).await.unwrap();
    server.wait_connections(1).await;
    let (_ws, _, _) = Ws::connect_v4(&server).await;
    assert_eq!(server.io.stats().refusals(Refusal::ServerFull), 2);
}

#[tokio::test]
async fn one_connection_per_address() {
    let server = support::start(Config::builder().max_connections_per_ip(1).build()).await;
    let (_ws, _, _) = Ws::connect_v4(&server).await;
    let res = http()
        .get(server.url("EIO=4&transport=polling"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let body = error_body(res).await;
    assert!(body["message"].is_string(), "{body}");
    assert_eq!(server.io.stats().refusals(Refusal::TooManyFromAddress), 1);
    assert_eq!(server.io.stats().refusals(Refusal::ServerFull), 0);
    assert_eq!(server.io.connections(), 1);
}

// ---------------------------------------------------------------------------
// namespaces

#[tokio::test]
async fn other_namespaces_are_refused_eio4() {
    let server = support::start(Config::default()).await;
    let (mut ws, _, _) = Ws::connect_v4(&server).await;
    ws.send("40/admin,").await;
    assert_eq!(
        ws.text().await,
        r#"44/admin,{"message":"Invalid namespace"}"#
    );
    // The default namespace goes on.
    ws.send(r#"42["echo","still"]"#).await;
    assert_eq!(ws.text().await, r#"42["echo","still"]"#);
}

#[tokio::test]
async fn other_namespaces_are_refused_eio3() {
    let server = support::start(Config::default()).await;
    let (mut ws, _) = Ws::connect_v3(&server).await;
    ws.send("40/admin,").await;
    assert_eq!(ws.text().await, r#"44/admin,"Invalid namespace""#);
    // Over polling too, without the comma as 2.x clients send it.
    let p = Polling::connect_v3(&server, "EIO=3").await;
    p.post(&["40/admin"]).await;
    assert_eq!(
        p.get().await,
        vec![Item::Text(r#"44/admin,"Invalid namespace""#.into())]
    );
}
