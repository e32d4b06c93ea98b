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
