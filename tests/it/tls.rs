//! TLS: every listener over TLS (the admin listener too) with a certificate the test makes, the
//! handshake's time limit, the certificate re-read on SIGHUP, unusable
//! certificate files at start-up, and Redis over `rediss://`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use always_online::{App, Config};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::support::certs::{peer_cert, Leaf, TestCa};
use crate::support::redis::{RedisServer, RedisTlsServer};
use crate::support::{binary, BinServer, Client, TestServer, WAIT};

/// A CA and a leaf it signed ("ao test 1", serial 1), as PEM files in a
/// temporary directory.
struct TlsFiles {
    ca: TestCa,
    leaf: Leaf,
    ca_path: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    dir: tempfile::TempDir,
}

impl TlsFiles {
    fn new() -> TlsFiles {
        let dir = tempfile::tempdir().expect("create a temporary dir");
        let ca = TestCa::new("ao test CA");
        let leaf = ca.leaf("ao test 1", 1);
        let (ca_path, cert, key) = (
            dir.path().join("ca.pem"),
            dir.path().join("cert.pem"),
            dir.path().join("key.pem"),
        );
        ca.write(&ca_path);
        leaf.write(&cert, &key);
        TlsFiles {
            ca,
            leaf,
            ca_path,
            cert,
            key,
            dir,
        }
    }

    /// The server's TLS settings.
    fn apply(&self, c: &mut Config) {
        c.tls_cert = Some(self.cert.clone());
        c.tls_key = Some(self.key.clone());
    }
}

/// The socket.io websocket URL of port `port` over TLS.
fn wss_url(port: u16) -> String {
    format!("wss://localhost:{port}/socket.io/?EIO=4&transport=websocket")
}

/// A socket.io client over TLS to `server`, authenticated as `uid` and
/// joined to `room`.
async fn wss_login(server: &TestServer, files: &TlsFiles, uid: &str, room: &str) -> Client {
    let stream = files.ca.connect(server.addr()).await;
    assert_eq!(
        peer_cert(&stream),
        files.leaf.der,
        "the configured certificate"
    );
    let mut c = Client::connect_over(&wss_url(server.addr().port()), Box::new(stream)).await;
    c.authenticate(json!(uid), &server.token(uid).await).await;
    let ack = c.request("join", json!({"roomId": room})).await;
    assert_eq!(ack, json!({"status": 0, "data": "join success"}));
    c
}

#[tokio::test]
async fn socket_io_over_wss_and_https_polling() {
    let files = TlsFiles::new();
    let server = TestServer::with(|c| files.apply(c)).await;
    let port = server.addr().port();

    // Websocket: two members exchange a message.
    let mut alice = wss_login(&server, &files, "alice", "tls-room").await;
    let mut bob = wss_login(&server, &files, "bob", "tls-room").await;
    assert_eq!(
        alice.expect_event("remote_join").await,
        json!({"uid": "bob"})
    );
    assert_eq!(
        bob.expect_event("remote_join").await,
        json!({"uid": "alice"})
    );
    let ack = alice
        .emit_with_ack("msg", json!({"data": "over tls", "s": 0}))
        .await;
    assert_eq!(ack["status"], json!(0), "{ack}");
    let got = bob.expect_event("msg").await;
    assert_eq!(got["data"], json!("over tls"));

    // Long-polling: the engine.io handshake, then the socket.io connect.
    let https = files.ca.https_client();
    let base = format!("https://localhost:{port}/socket.io/?EIO=4&transport=polling");
    let open = https
        .get(&base)
        .send()
        .await
        .expect("polling handshake over https")
        .text()
        .await
        .expect("handshake body");
    let handshake: Value = serde_json::from_str(
        open.strip_prefix('0')
            .unwrap_or_else(|| panic!("expected an engine.io open packet, got {open:?}")),
    )
    .expect("open packet JSON");
    let sid = handshake["sid"].as_str().expect("sid");
    let session = format!("{base}&sid={sid}");
    let posted = https
        .post(&session)
        .body("40")
        .send()
        .await
        .expect("post the socket.io connect");
    assert_eq!(posted.status(), 200);
    let connected = https
        .get(&session)
        .send()
        .await
        .expect("poll")
        .text()
        .await
        .expect("poll body");
    assert!(
        connected.starts_with("40{") && connected.contains("\"sid\""),
        "{connected:?}"
    );

    let health = https
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .expect("healthz over https");
    assert_eq!(health.status(), 200);

    // The listener speaks TLS only.
    let plain = reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("plain client")
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP answered on a TLS listener: {plain:?}"
    );
}

#[tokio::test]
async fn the_accounts_api_over_tls() {
    let files = TlsFiles::new();
    let server = TestServer::with(|c| {
        files.apply(c);
        c.admin = Some(("root".into(), "root-token".into()));
    })
    .await;
    let url = format!(
        "https://localhost:{}/user/create_token?uid=root&token=root-token",
        server.api_addr().port()
    );
    let reply: Value = files
        .ca
        .https_client()
        .post(&url)
        .json(&json!({"uid": "carol"}))
        .send()
        .await
        .expect("create_token over https")
        .json()
        .await
        .expect("a JSON envelope");
    assert_eq!(reply["meta"]["status"], json!(0), "{reply}");
    let token = reply["data"]["token"].as_str().expect("a token");
    let mut c = Client::connect_over(
        &wss_url(server.addr().port()),
        Box::new(files.ca.connect(server.addr()).await),
    )
    .await;
    c.authenticate(json!("carol"), token).await;
}

#[tokio::test]
async fn the_admin_listener_over_tls() {
    let files = TlsFiles::new();
    let server = TestServer::with(|c| {
        files.apply(c);
        c.admin = Some(("root".into(), "root-token".into()));
        c.admin_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let admin = server.admin_addr().expect("an admin listener");
    let https = files.ca.https_client();
    let get = |port: u16, path: &str| {
        https
            .get(format!("https://localhost:{port}{path}"))
            .basic_auth("root", Some("root-token"))
            .send()
    };
    let stat = get(admin.port(), "/admin/monitor/stat")
        .await
        .expect("the admin API over https");
    assert_eq!(stat.status(), 200);
    let reply: Value = stat.json().await.expect("a JSON envelope");
    assert_eq!(reply["meta"]["status"], json!(0), "{reply}");
    let metrics = get(admin.port(), "/metrics")
        .await
        .expect("metrics over https");
    assert_eq!(metrics.status(), 200);
    let public = get(server.addr().port(), "/metrics")
        .await
        .expect("the public listener over https");
    assert_eq!(public.status(), 404);
    // The admin listener speaks TLS only.
    let plain = reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("plain client")
        .get(format!("http://127.0.0.1:{}/healthz", admin.port()))
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP answered on a TLS listener: {plain:?}"
    );
}

#[tokio::test]
async fn a_tls_handshake_that_never_comes_is_cut_off() {
    let files = TlsFiles::new();
    let server = TestServer::with(|c| {
        files.apply(c);
        c.header_timeout = Duration::from_millis(300);
    })
    .await;
    for addr in [server.addr(), server.api_addr()] {
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(3), silent.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{addr}: a silent connection was held past 3 s"));
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "{addr}: expected the connection closed, read {read:?}"
        );
    }
    // A client that does speak still gets in.
    let mut c = Client::connect_over(
        &wss_url(server.addr().port()),
        Box::new(files.ca.connect(server.addr()).await),
    )
    .await;
    c.authenticate(json!("dave"), &server.token("dave").await)
        .await;
}

/// Waits until the server logged a line containing `text`; returns it.
fn wait_for_log(server: &BinServer, text: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        for line in server.stderr_lines() {
            if line.contains(text) {
                return line;
            }
            seen.push(line);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line with {text:?}; saw {seen:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sighup(server: &BinServer) {
    let status = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .expect("run kill -HUP");
    assert!(status.success(), "kill -HUP failed");
}

#[tokio::test]
async fn sighup_gives_new_connections_the_new_certificate() {
    let files = TlsFiles::new();
    let data = tempfile::tempdir().expect("data dir");
    let mut server = BinServer::start_with(data.path(), true, |cmd| {
        cmd.env("AO_TLS_CERT", &files.cert)
            .env("AO_TLS_KEY", &files.key);
    });
    let url = wss_url(server.addr.port());

    let old_stream = files.ca.connect(server.addr).await;
    assert_eq!(peer_cert(&old_stream), files.leaf.der);
    let mut old = Client::connect_over(&url, Box::new(old_stream)).await;

    let second = files.ca.leaf("ao test 2", 2);
    second.write(&files.cert, &files.key);
    sighup(&server);
    wait_for_log(&server, "TLS certificate reloaded");

    let new_stream = files.ca.connect(server.addr).await;
    assert_eq!(
        peer_cert(&new_stream),
        second.der,
        "the reloaded certificate"
    );
    let mut new = Client::connect_over(&url, Box::new(new_stream)).await;

    // The connection made before the reload is untouched.
    old.authenticate(json!("alice"), "any").await;
    new.authenticate(json!("bob"), "any").await;
    for c in [&mut old, &mut new] {
        let ack = c.request("join", json!({"roomId": "reload"})).await;
        assert_eq!(ack["status"], json!(0), "{ack}");
    }
    assert_eq!(old.expect_event("remote_join").await, json!({"uid": "bob"}));
    assert_eq!(
        new.expect_event("remote_join").await,
        json!({"uid": "alice"})
    );
    old.emit("msg", json!({"data": "still here", "s": 2})).await;
    assert_eq!(new.expect_event("msg").await["data"], json!("still here"));

    // Unusable files: the error is logged, the last good certificate stays.
    std::fs::write(&files.cert, "not a certificate").expect("break the certificate");
    sighup(&server);
    let line = wait_for_log(&server, "TLS certificate reload failed");
    assert!(line.contains("AO_TLS_CERT"), "{line}");
    let stream = files.ca.connect(server.addr).await;
    assert_eq!(peer_cert(&stream), second.der, "the last good certificate");
    assert!(
        matches!(server.child.try_wait(), Ok(None)),
        "SIGHUP stopped the server"
    );
    let status = server.terminate();
    assert!(status.success(), "{status}");
    drop(files.dir);
}

/// Runs the binary with `env` until it exits; its exit code and stderr.
fn start_up_failure(env: &[(&str, &std::path::Path)]) -> (Option<i32>, String) {
    let data = tempfile::tempdir().expect("data dir");
    let mut cmd = binary();
    cmd.args(["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run always-online");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unusable_certificate_files_stop_the_start_up() {
    let files = TlsFiles::new();
    let missing = files.dir.path().join("no-such-cert.pem");
    let (code, err) = start_up_failure(&[("AO_TLS_CERT", &missing), ("AO_TLS_KEY", &files.key)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("config error: AO_TLS_CERT") && err.contains("no-such-cert.pem"),
        "{err}"
    );

    // A key that is not the certificate's.
    let other = files.ca.leaf("other", 9);
    let other_key = files.dir.path().join("other-key.pem");
    std::fs::write(&other_key, &other.key_pem).expect("write the other key");
    let (code, err) = start_up_failure(&[("AO_TLS_CERT", &files.cert), ("AO_TLS_KEY", &other_key)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("config error: AO_TLS_KEY"), "{err}");

    // A file with no PEM key in it.
    let (code, err) =
        start_up_failure(&[("AO_TLS_CERT", &files.cert), ("AO_TLS_KEY", &files.cert)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("config error: AO_TLS_KEY"), "{err}");

    // One half of the pair.
    let (code, err) = start_up_failure(&[("AO_TLS_CERT", &files.cert)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("AO_TLS_KEY: must be set together"), "{err}");
}

#[tokio::test]
async fn a_node_on_redis_over_tls() {
    let files = TlsFiles::new();
    let redis = RedisTlsServer::start(&files.cert, &files.key, &files.ca_path);
    let server = TestServer::with(|c| {
        c.redis_url = Some(redis.url());
        c.redis_ca = Some(files.ca_path.clone());
    })
    .await;
    let mut alice = server.login("alice", "redis-tls").await;
    let mut bob = server.login("bob", "redis-tls").await;
    assert_eq!(
        alice.expect_event("remote_join").await,
        json!({"uid": "bob"})
    );
    assert_eq!(
        bob.expect_event("remote_join").await,
        json!({"uid": "alice"})
    );
    let ack = alice
        .emit_with_ack("msg", json!({"data": "via rediss", "s": 0}))
        .await;
    assert_eq!(ack, json!({"status": 0, "seq": 0}), "{}", redis.log());
    assert_eq!(bob.expect_event("msg").await["data"], json!("via rediss"));
    let page = bob.request("sync", json!({"offset": 0})).await;
    assert_eq!(page["data"][0]["data"], json!("via rediss"), "{page}");
}

/// `App::start` with Redis at `url` (and `ca`), which must fail; its error.
async fn redis_start_error(url: String, ca: Option<PathBuf>) -> String {
    let data = tempfile::tempdir().expect("data dir");
    let config = Config {
        listen: ([127, 0, 0, 1], 0).into(),
        api_listen: ([127, 0, 0, 1], 0).into(),
        data_dir: data.path().to_path_buf(),
        redis_url: Some(url),
        redis_ca: ca,
        ..Config::default()
    };
    match tokio::time::timeout(Duration::from_secs(30), App::start(config)).await {
        Ok(Ok(app)) => {
            app.shutdown().await;
            panic!("started");
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => panic!("the start-up neither failed nor finished within 30 s"),
    }
}

#[tokio::test]
async fn a_rediss_url_is_tls_or_nothing() {
    let files = TlsFiles::new();
    // A certificate the node does not trust (no AO_REDIS_CA) is refused.
    let redis = RedisTlsServer::start(&files.cert, &files.key, &files.ca_path);
    let err = redis_start_error(redis.url(), None).await;
    assert!(err.contains("AO_REDIS_URL"), "{err}");

    // A Redis that does not speak TLS is not talked to in clear text.
    let plain = RedisServer::start();
    let url = format!("rediss://127.0.0.1:{}", plain.port());
    let err = redis_start_error(url, Some(files.ca_path.clone())).await;
    assert!(err.contains("AO_REDIS_URL"), "{err}");
    assert_eq!(plain.cli(&["dbsize"]), "0", "the node wrote in clear text");
}
