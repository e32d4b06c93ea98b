//! The `always-online` command line: account commands and configuration errors.

use crate::support;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{binary, BinServer, Client};

/// Runs the binary with `args` (and `env`) to completion; kills it and
/// fails the test if it is still running after 30 s (a server that should
/// have refused to start).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = binary();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run always-online");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait for always-online").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "always-online {args:?} still running after 30 s; stderr: {}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("collect output")
}

fn dir_arg(dir: &Path) -> &str {
    dir.to_str().expect("utf-8 temp path")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The token printed by a successful account command: the only line on stdout.
fn token_of(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(out));
    let text = stdout(out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "stdout must be the token only: {text:?}");
    assert!(text.ends_with('\n'), "{text:?}");
    let token = lines[0];
    assert_eq!(token.len(), 64, "token {token:?}");
    assert!(
        token.bytes().all(|b| b.is_ascii_hexdigit()),
        "token {token:?}"
    );
    token.to_owned()
}

/// Exit code 2 and exactly one line on stderr that names `key`.
fn assert_config_error(out: &Output, key: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {err:?}");
    assert!(lines[0].contains(key), "stderr {err:?} does not name {key}");
    assert!(stdout(out).is_empty(), "stdout: {}", stdout(out));
}

fn user_create(dir: &Path, uid: &str) -> Output {
    run(&["user", "create", uid, "--data-dir", dir_arg(dir)], &[])
}

async fn auth_reply(server: &BinServer, uid: &str, token: &str) -> serde_json::Value {
    let mut c = Client::connect(server.addr).await;
    c.request("authenticate", json!({"uid": uid, "token": token}))
        .await
}

// --- accounts ----------------------------------------------------------------

#[test]
fn user_create_prints_only_a_64_hex_token() {
    let dir = support::tempdir();
    token_of(&user_create(dir.path(), "alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_token_authenticates_against_a_server_on_the_same_data_dir() {
    let dir = support::tempdir();
    let token = token_of(&user_create(dir.path(), "alice"));
    let server = BinServer::start(dir.path(), false);
    assert_eq!(
        auth_reply(&server, "alice", &token).await,
        json!({"status": 0, "data": "auth success"})
    );
    assert_eq!(
        auth_reply(&server, "alice", &"0".repeat(64)).await,
        json!({"status": 1, "data": "auth failed, uid or token is wrong"})
    );
}

#[test]
fn user_create_twice_exits_1() {
    let dir = support::tempdir();
    token_of(&user_create(dir.path(), "alice"));
    let out = user_create(dir.path(), "alice");
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert!(stdout(&out).is_empty(), "stdout: {}", stdout(&out));
    assert!(!stderr(&out).trim().is_empty(), "an explanation on stderr");
}

#[test]
fn user_create_gives_different_users_different_tokens() {
    let dir = support::tempdir();
    let a = token_of(&user_create(dir.path(), "alice"));
    let b = token_of(&user_create(dir.path(), "bob"));
    assert_ne!(a, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_refresh_prints_a_new_token_and_the_old_one_stops_working() {
    let dir = support::tempdir();
    let old = token_of(&user_create(dir.path(), "alice"));
    let server = BinServer::start(dir.path(), false);
    assert_eq!(auth_reply(&server, "alice", &old).await["status"], json!(0));
    let out = run(
        &[
            "user",
            "refresh",
            "alice",
            "--data-dir",
            dir_arg(dir.path()),
        ],
        &[],
    );
    let new = token_of(&out);
    assert_ne!(old, new);
    assert_eq!(
        auth_reply(&server, "alice", &old).await,
        json!({"status": 1, "data": "auth failed, uid or token is wrong"})
    );
    assert_eq!(
        auth_reply(&server, "alice", &new).await,
        json!({"status": 0, "data": "auth success"})
    );
}

#[test]
fn user_refresh_of_an_unknown_user_exits_1() {
    let dir = support::tempdir();
    let out = run(
        &[
            "user",
            "refresh",
            "nobody",
            "--data-dir",
            dir_arg(dir.path()),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

#[test]
fn admin_create_prints_only_a_64_hex_token() {
    let dir = support::tempdir();
    let out = run(
        &["admin", "create", "root", "--data-dir", dir_arg(dir.path())],
        &[],
    );
    token_of(&out);
}

#[test]
fn admin_create_twice_exits_1() {
    let dir = support::tempdir();
    let args = ["admin", "create", "root", "--data-dir", dir_arg(dir.path())];
    token_of(&run(&args, &[]));
    let out = run(&args, &[]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_does_not_log_in_a_user() {
    let dir = support::tempdir();
    let out = run(
        &["admin", "create", "root", "--data-dir", dir_arg(dir.path())],
        &[],
    );
    let token = token_of(&out);
    let server = BinServer::start(dir.path(), false);
    assert_eq!(
        auth_reply(&server, "root", &token).await["status"],
        json!(1)
    );
}

#[test]
fn user_create_with_an_empty_uid_fails() {
    let dir = support::tempdir();
    let out = user_create(dir.path(), "");
    assert_ne!(out.status.code(), Some(0));
    assert!(stdout(&out).is_empty());
}

#[test]
fn user_create_on_an_unusable_data_dir_exits_2() {
    let dir = support::tempdir();
    let file = support::path_in(&dir, "file");
    std::fs::write(&file, b"x").expect("write file");
    let out = user_create(&file.join("sub"), "alice");
    assert_config_error(&out, "data_dir");
}

// --- configuration errors ----------------------------------------------------------

fn serve(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--api-listen",
        "127.0.0.1:0",
        "--data-dir",
        dir_arg(dir),
    ];
    args.extend_from_slice(extra);
    run(&args, env)
}

#[test]
fn non_numeric_env_value_exits_2_naming_the_variable() {
    let dir = support::tempdir();
    let out = serve(dir.path(), &[], &[("AO_SYNC_PAGE_SIZE", "abc")]);
    assert_config_error(&out, "AO_SYNC_PAGE_SIZE");
}

#[test]
fn zero_page_size_exits_2_naming_the_key() {
    let dir = support::tempdir();
    let out = serve(dir.path(), &[], &[("AO_SYNC_PAGE_SIZE", "0")]);
    assert_config_error(&out, "sync_page_size");
}

#[test]
fn bad_env_address_exits_2_naming_the_variable() {
    let dir = support::tempdir();
    let out = run(
        &["--data-dir", dir_arg(dir.path())],
        &[("AO_LISTEN", "not-an-address")],
    );
    assert_config_error(&out, "AO_LISTEN");
}

#[test]
fn bad_env_boolean_exits_2_naming_the_variable() {
    let dir = support::tempdir();
    let out = serve(dir.path(), &[], &[("AO_DEV", "maybe")]);
    assert_config_error(&out, "AO_DEV");
}

#[test]
fn bad_log_format_exits_2_naming_the_variable() {
    let dir = support::tempdir();
    let out = serve(dir.path(), &[], &[("AO_LOG_FORMAT", "xml")]);
    assert_config_error(&out, "AO_LOG_FORMAT");
}

#[test]
fn admin_uid_without_token_exits_2() {
    let dir = support::tempdir();
    let out = serve(dir.path(), &[], &[("AO_ADMIN_UID", "root")]);
    assert_config_error(&out, "AO_ADMIN_TOKEN");
}

#[test]
fn unknown_key_in_the_config_file_exits_2_naming_it() {
    let dir = support::tempdir();
    let file = support::path_in(&dir, "c.toml");
    std::fs::write(&file, "sync_page_size = 5\nno_such_key = 1\n").expect("write toml");
    let out = serve(
        dir.path(),
        &["--config", file.to_str().expect("utf-8")],
        &[],
    );
    assert_config_error(&out, "no_such_key");
}

#[test]
fn wrongly_typed_key_in_the_config_file_exits_2_naming_it() {
    let dir = support::tempdir();
    let file = support::path_in(&dir, "c.toml");
    std::fs::write(&file, "sync_page_size = \"lots\"\n").expect("write toml");
    let out = serve(
        dir.path(),
        &["--config", file.to_str().expect("utf-8")],
        &[],
    );
    assert_config_error(&out, "sync_page_size");
}

#[test]
fn invalid_toml_exits_2_with_one_line() {
    let dir = support::tempdir();
    let file = support::path_in(&dir, "c.toml");
    std::fs::write(&file, "this is = = not toml\n[[[\n").expect("write toml");
    let out = serve(
        dir.path(),
        &["--config", file.to_str().expect("utf-8")],
        &[],
    );
    assert_config_error(&out, "config");
}

#[test]
fn missing_config_file_exits_2_naming_it() {
    let dir = support::tempdir();
    let file = support::path_in(&dir, "absent.toml");
    let out = serve(
        dir.path(),
        &["--config", file.to_str().expect("utf-8")],
        &[],
    );
    assert_config_error(&out, "absent.toml");
}

#[test]
fn listen_port_in_use_exits_2_naming_listen() {
    let dir = support::tempdir();
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let addr = held.local_addr().expect("held addr").to_string();
    let out = run(
        &[
            "--listen",
            &addr,
            "--api-listen",
            "127.0.0.1:0",
            "--data-dir",
            dir_arg(dir.path()),
        ],
        &[],
    );
    assert_config_error(&out, "listen");
    assert!(stderr(&out).contains(&addr), "{}", stderr(&out));
}

#[test]
fn api_listen_port_in_use_exits_2_naming_api_listen() {
    let dir = support::tempdir();
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let addr = held.local_addr().expect("held addr").to_string();
    let out = run(
        &[
            "--listen",
            "127.0.0.1:0",
            "--api-listen",
            &addr,
            "--data-dir",
            dir_arg(dir.path()),
        ],
        &[],
    );
    assert_config_error(&out, "api_listen");
}

#[test]
fn unwritable_data_dir_exits_2_naming_data_dir() {
    let dir = support::tempdir();
    let file = support::path_in(&dir, "file");
    std::fs::write(&file, b"x").expect("write file");
    let bad = file.join("data");
    let out = serve(&bad, &[], &[]);
    assert_config_error(&out, "data_dir");
}

#[test]
fn dev_mode_on_a_public_address_exits_2() {
    let dir = support::tempdir();
    let d = dir_arg(dir.path());
    let out = run(
        &[
            "--dev",
            "--listen",
            "0.0.0.0:0",
            "--api-listen",
            "127.0.0.1:0",
            "--data-dir",
            d,
        ],
        &[],
    );
    assert_config_error(&out, "AO_DEV");
    assert!(stderr(&out).contains("AO_DEV_PUBLIC"), "{}", stderr(&out));
    let out = run(
        &["--api-listen", "127.0.0.1:0", "--data-dir", d],
        &[("AO_DEV", "1"), ("AO_LISTEN", "0.0.0.0:0")],
    );
    assert_config_error(&out, "AO_DEV");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_on_a_public_address_starts_with_dev_public() {
    let dir = support::tempdir();
    let mut cmd = binary();
    cmd.env("AO_LOG_FORMAT", "json")
        .env("AO_DEV_PUBLIC", "1")
        .args([
            "--dev",
            "--listen",
            "0.0.0.0:0",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path());
    let server = BinServer::spawn(cmd);
    assert!(server.addr.ip().is_unspecified(), "{}", server.addr);
    let at = std::net::SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
    let mut c = support::login(at, "dana", "any-token", "r").await;
    assert_eq!(c.send_msg(json!({"data": 1})).await["status"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_dir_exits_2_until_the_first_is_gone() {
    let dir = support::tempdir();
    let first = BinServer::start(dir.path(), true);
    let lock = dir.path().join("always-online.lock");
    assert!(lock.is_file(), "no lock file in {}", dir.path().display());

    let out = serve(dir.path(), &[], &[]);
    assert_config_error(&out, "data_dir");
    let err = stderr(&out);
    assert!(
        err.contains("in use by another always-online process")
            && err.contains(&format!("pid {}", first.child.id())),
        "{err}"
    );
    // The account commands work on the store while the server runs.
    token_of(&user_create(dir.path(), "erin"));

    // kill -9 leaves the lock file behind; it does not block a restart.
    first.kill();
    assert!(lock.is_file());
    let second = BinServer::start(dir.path(), true);
    let mut c = support::login(second.addr, "erin", "any", "r").await;
    assert_eq!(c.send_msg(json!({"data": 1})).await["status"], json!(0));
}

// --- configuration layering, observed through the server -----------------------------

async fn page_len_after(server: &BinServer, inserts: usize) -> (usize, serde_json::Value) {
    let mut c = support::login(server.addr, "alice", "any", "r").await;
    for i in 0..inserts {
        let ack = c.send_msg(json!({"data": i})).await;
        assert_eq!(ack["status"], json!(0));
    }
    let reply = c.sync(json!({"offset": 0})).await;
    let len = reply["data"].as_array().map_or(0, Vec::len);
    (len, reply["next"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_sync_page_size_is_used() {
    let dir = support::tempdir();
    let server = BinServer::start_with(dir.path(), true, |c| {
        c.env("AO_SYNC_PAGE_SIZE", "2");
    });
    assert_eq!(page_len_after(&server, 3).await, (2, json!(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_sync_page_size_is_used_and_env_overrides_it() {
    let dir = support::tempdir();
    let file = support::path_in(&dir, "c.toml");
    std::fs::write(&file, "sync_page_size = 2\n").expect("write toml");
    let data = support::path_in(&dir, "data1");
    let server = BinServer::start_with(&data, true, |c| {
        c.arg("--config").arg(&file);
    });
    assert_eq!(page_len_after(&server, 4).await, (2, json!(1)));
    drop(server);

    let data = support::path_in(&dir, "data2");
    let server = BinServer::start_with(&data, true, |c| {
        c.arg("--config").arg(&file).env("AO_SYNC_PAGE_SIZE", "3");
    });
    assert_eq!(page_len_after(&server, 4).await, (3, json!(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_max_msg_bytes_is_used() {
    let dir = support::tempdir();
    let server = BinServer::start_with(dir.path(), true, |c| {
        c.env("AO_MAX_MSG_BYTES", "100");
    });
    let mut c = support::login(server.addr, "alice", "any", "r").await;
    let ack = c.send_msg(json!({"data": "x".repeat(200)})).await;
    assert_eq!(ack, json!({"status": 4, "data": "message too large"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_without_dev_refuses_unknown_tokens() {
    let dir = support::tempdir();
    let server = BinServer::start(dir.path(), false);
    assert_eq!(
        auth_reply(&server, "alice", "anything").await,
        json!({"status": 1, "data": "auth failed, uid or token is wrong"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_admin_account_exists_from_start_up() {
    let dir = support::tempdir();
    let server = BinServer::start_with(dir.path(), false, |c| {
        c.env("AO_ADMIN_UID", "root")
            .env("AO_ADMIN_TOKEN", "s3cret");
    });
    drop(server);
    // The admin exists now: creating it again fails.
    let out = run(
        &["admin", "create", "root", "--data-dir", dir_arg(dir.path())],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
}

// --- token ---------------------------------------------------------------------

const JWT_SECRET: &str = "cli-test-secret-of-at-least-32-bytes";

fn jwt_fixture(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The token printed by `token create`: the only line on stdout.
fn jwt_of(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(out));
    let text = stdout(out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "stdout must be the token only: {text:?}");
    assert_eq!(lines[0].split('.').count(), 3, "{text:?}");
    lines[0].to_owned()
}

/// `token check` with the HMAC secret: (exit code, stdout as JSON if any, stderr).
fn token_check(token: &str, extra: &[&str]) -> (Option<i32>, Option<serde_json::Value>, String) {
    let mut args = vec!["token", "check", token];
    args.extend_from_slice(extra);
    let out = run(&args, &[("AO_JWT_HMAC_SECRET", JWT_SECRET)]);
    let json = serde_json::from_str(&stdout(&out)).ok();
    (out.status.code(), json, stderr(&out))
}

#[test]
fn token_create_prints_a_token_that_token_check_reads_back() {
    let out = run(
        &[
            "token",
            "create",
            "alice",
            "--rooms",
            "doc-*,1000",
            "--rooms",
            "r2",
            "--observer",
            "--ttl",
            "15m",
        ],
        &[("AO_JWT_HMAC_SECRET", JWT_SECRET)],
    );
    let token = jwt_of(&out);
    let (code, claims, err) = token_check(&token, &[]);
    assert_eq!(code, Some(0), "stderr: {err}");
    let claims = claims.expect("claims as JSON on stdout");
    assert_eq!(claims["sub"], json!("alice"));
    assert_eq!(claims["rooms"], json!(["doc-*", "1000", "r2"]));
    assert_eq!(claims["observer"], json!(true));
    let ttl = claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat");
    assert_eq!(ttl, 900);
    assert_eq!(token_check(&token, &["--uid", "alice"]).0, Some(0));
    let (code, _, err) = token_check(&token, &["--uid", "bob"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not the uid"), "{err}");
}

#[test]
fn token_check_refuses_with_the_reason_and_exit_1() {
    // Signed with another secret.
    let out = run(
        &["token", "create", "alice"],
        &[("AO_JWT_HMAC_SECRET", "another-secret-of-at-least-32-bytes!")],
    );
    let (code, claims, err) = token_check(&jwt_of(&out), &[]);
    assert_eq!((code, claims), (Some(1), None), "{err}");
    assert!(err.contains("bad signature"), "{err}");
    // alg none.
    let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
    let (code, _, err) = token_check(none, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("\"none\" not allowed"), "{err}");
    // Expired (exp 1000, in 1970).
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice", "exp": 1000}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()).expect("key"),
    )
    .expect("sign");
    let (code, _, err) = token_check(&expired, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("expired"), "{err}");
    let (code, _, err) = token_check("0123abcd", &[]);
    assert_eq!(code, Some(1), "{err}");
}

#[test]
fn token_commands_say_what_key_is_missing() {
    let out = run(&["token", "create", "alice"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("AO_JWT_HMAC_SECRET"),
        "{}",
        stderr(&out)
    );
    let out = run(&["token", "check", "a.b.c"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // A public key verifies, it cannot sign: --key is the way.
    let public = jwt_fixture("ed25519-public.pem");
    let out = run(
        &["token", "create", "alice"],
        &[("AO_JWT_PUBLIC_KEY", &public)],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--key"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

#[test]
fn token_create_with_a_private_key_verifies_under_its_public_key() {
    let public = jwt_fixture("ec-public.pem");
    let env = [("AO_JWT_PUBLIC_KEY", public.as_str())];
    let out = run(
        &[
            "token",
            "create",
            "bob",
            "--key",
            &jwt_fixture("ec-private.pem"),
            "--ttl",
            "30s",
        ],
        &env,
    );
    let token = jwt_of(&out);
    let out = run(&["token", "check", &token], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // A private key that is not the configured key's pair is not handed out.
    let out = run(
        &[
            "token",
            "create",
            "bob",
            "--key",
            &jwt_fixture("ed25519-private.pem"),
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

#[test]
fn token_create_refuses_a_bad_ttl_uid_or_room() {
    let env = [("AO_JWT_HMAC_SECRET", JWT_SECRET)];
    for args in [
        &["token", "create", "alice", "--ttl", "soon"][..],
        &["token", "create", "alice", "--ttl", "0s"][..],
        &["token", "create", "", "--ttl", "1h"][..],
        &["token", "create", "alice", "--rooms", ""][..],
    ] {
        let out = run(args, &env);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}");
    }
}

#[test]
fn jwt_key_errors_stop_the_server_naming_the_variable() {
    let dir = support::tempdir();
    let out = serve(dir.path(), &[], &[("AO_JWT_HMAC_SECRET", "short")]);
    assert_config_error(&out, "AO_JWT_HMAC_SECRET");
    let out = serve(
        dir.path(),
        &[],
        &[("AO_JWT_PUBLIC_KEY", "/no/such/key.pem")],
    );
    assert_config_error(&out, "AO_JWT_PUBLIC_KEY");
    let private = jwt_fixture("rsa-private.pem");
    let out = serve(dir.path(), &[], &[("AO_JWT_PUBLIC_KEY", &private)]);
    assert_config_error(&out, "AO_JWT_PUBLIC_KEY");
    let public = jwt_fixture("rsa-public.pem");
    let out = serve(
        dir.path(),
        &[],
        &[
            ("AO_JWT_PUBLIC_KEY", &public),
            ("AO_JWT_HMAC_SECRET", JWT_SECRET),
        ],
    );
    assert_config_error(&out, "AO_JWT_PUBLIC_KEY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_token_authenticates_against_the_binary() {
    let dir = support::tempdir();
    let env = [("AO_JWT_HMAC_SECRET", JWT_SECRET)];
    let token = jwt_of(&run(&["token", "create", "alice", "--rooms", "r1"], &env));
    let server = BinServer::start_with(dir.path(), false, |cmd| {
        cmd.env("AO_JWT_HMAC_SECRET", JWT_SECRET);
    });
    let mut c = Client::connect(server.addr).await;
    c.authenticate(json!("alice"), &token).await;
    assert_eq!(
        c.request("join", json!({"roomId": "r2"})).await,
        json!({"status": 1, "data": "join failed, room not granted"})
    );
    assert_eq!(
        c.request("join", json!({"roomId": "r1"})).await,
        json!({"status": 0, "data": "join success"})
    );
}

#[test]
fn version_names_the_version_and_the_commit() {
    let out = run(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let expected = format!("always-online {} (", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected), "{text:?}");
    let commit = text
        .trim_end()
        .trim_start_matches(&expected)
        .trim_end_matches(')');
    assert!(
        commit == "unknown" || commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "{text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_0_while_ready_and_1_once_stopped() {
    let dir = support::tempdir();
    let server = BinServer::start(dir.path(), true);
    let url = format!("http://{}/readyz", server.addr);
    let out = run(&["healthcheck", "--url", &url], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The default: /readyz on the configured listener, over loopback.
    let listen = format!("0.0.0.0:{}", server.addr.port());
    let out = run(&["healthcheck", "--listen", &listen], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    server.kill();
    let out = run(&["healthcheck", "--url", &url], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("always-online healthcheck:"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_prints_every_setting_with_secrets_redacted_and_check_validates() {
    let env = [
        ("AO_ADMIN_UID", "root"),
        ("AO_ADMIN_TOKEN", "very-secret-admin-token"),
        ("AO_REDIS_URL", "redis://user:hunter2@redis.internal:6379"),
        ("AO_MSG_RATE", "20"),
    ];
    let out = run(&["config"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(
        text.lines().count(),
        always_online::config::SETTINGS.len(),
        "{text}"
    );
    assert!(text.contains("msg_rate = \"20\""), "{text}");
    assert!(!text.contains("very-secret-admin-token"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let printed: toml::Table = toml::from_str(&text).expect("the output is TOML");
    assert!(printed.contains_key("listen"));

    let out = run(&["config", "--check"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "configuration OK\n");
    let out = run(
        &["config", "--check"],
        &[
            ("AO_TLS_CERT", "/nonexistent.pem"),
            ("AO_TLS_KEY", "/nonexistent.key"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("AO_TLS_CERT"), "{}", stderr(&out));
    let out = run(&["config", "--check"], &[("AO_MSG_RATE", "fast")]);
    assert_config_error(&out, "AO_MSG_RATE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_demo_is_served_from_any_working_directory() {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("web/dist/index.html");
    let elsewhere = support::tempdir();
    let dir = support::tempdir();
    let server = BinServer::start_with(dir.path(), true, |cmd| {
        cmd.current_dir(elsewhere.path());
    });
    let page = reqwest::get(format!("http://{}/", server.addr))
        .await
        .expect("GET /");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    if built.is_file() {
        let expected = std::fs::read_to_string(&built).expect("index.html");
        assert_eq!(
            html, expected,
            "the built demo, whatever the working directory"
        );
        let script = reqwest::get(format!("http://{}/demo.js", server.addr))
            .await
            .expect("GET /demo.js");
        assert_eq!(script.status(), 200);
        assert!(
            script
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.contains("javascript")),
            "{:?}",
            script.headers()
        );
    } else {
        assert!(html.contains("npm run build"), "{html}");
    }
}

#[test]
fn the_packaged_default_config_file_is_current() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gen-default-config");
    let out = std::process::Command::new(&script)
        .arg("--check")
        .output()
        .expect("run scripts/gen-default-config");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The file it writes is a valid configuration.
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/debian/always-online.toml");
    let out = run(
        &[
            "--config",
            config.to_str().expect("utf-8 path"),
            "config",
            "--check",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
