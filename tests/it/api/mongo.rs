//! Accounts in MongoDB (a real FerretDB): what the collections hold, the
//! unique index, the CLI, start-up without MongoDB, and an outage.

use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use serde_json::json;
use sha2::Digest;

use crate::support::Received;

use crate::api::harness::{
    assert_auth_ok, assert_auth_refused, free_port, get, poll, post, run_cli, try_authenticate,
    Backend, Body, Creds, Server, ADMIN,
};

/// hex SHA-256 of `token`.
fn sha256_hex(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A MongoDB client of the test's FerretDB, and the accounts database.
async fn database(s: &Server) -> mongodb::Database {
    let url = s.ferret.as_ref().expect("a MongoDB server").url();
    let client = mongodb::Client::with_uri_str(&url)
        .await
        .expect("connect to FerretDB");
    client.database(&s.db)
}

/// Unix seconds of a stored time (a BSON date, or a number of seconds or milliseconds).
fn seconds(v: &Bson) -> i64 {
    match v {
        Bson::DateTime(d) => d.timestamp_millis() / 1000,
        Bson::Int64(n) if *n > 100_000_000_000 => n / 1000,
        Bson::Int64(n) => *n,
        Bson::Int32(n) => i64::from(*n),
        Bson::Double(f) => *f as i64,
        Bson::Timestamp(t) => i64::from(t.time),
        other => panic!("not a time: {other:?}"),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Every string anywhere inside `doc`.
fn strings(v: &Bson, out: &mut Vec<String>) {
    match v {
        Bson::String(s) => out.push(s.clone()),
        Bson::Document(d) => d.values().for_each(|v| strings(v, out)),
        Bson::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Bson::Binary(b) => out.push(String::from_utf8_lossy(&b.bytes).into_owned()),
        _ => {}
    }
}

/// Checks one account document: `{_id, uid, token_hash, created, updated}`
/// with the hash of `token`; returns (created, updated).
fn check_account(d: &Document, uid: &str, token: &str) -> (i64, i64) {
    let mut keys: Vec<&str> = d.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["_id", "created", "token_hash", "uid", "updated"],
        "{d}"
    );
    assert_eq!(
        d.get_str("uid").ok(),
        Some(uid),
        "uid stored in string form: {d}"
    );
    let hash = d
        .get_str("token_hash")
        .unwrap_or_else(|_| panic!("token_hash string: {d}"));
    assert_eq!(hash.len(), 64, "{d}");
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "hex: {d}");
    assert_eq!(
        hash.to_ascii_lowercase(),
        sha256_hex(token),
        "SHA-256 of the token: {d}"
    );
    let mut all = Vec::new();
    strings(&Bson::Document(d.clone()), &mut all);
    assert!(
        all.iter().all(|s| !s.contains(token)),
        "the token itself is stored: {d}"
    );
    let created = seconds(d.get("created").expect("created"));
    let updated = seconds(d.get("updated").expect("updated"));
    let now = unix_now();
    assert!(
        (now - 120..=now + 5).contains(&created),
        "created {created} is recent: {d}"
    );
    assert!(
        updated >= created && updated <= now + 5,
        "updated {updated}: {d}"
    );
    (created, updated)
}

async fn find(db: &mongodb::Database, coll: &str, uid: &str) -> Document {
    db.collection::<Document>(coll)
        .find_one(doc! {"uid": uid})
        .await
        .expect("find_one")
        .unwrap_or_else(|| panic!("no {uid} in {coll}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_hold_token_hashes_never_tokens() {
    let s = Server::start(Backend::Mongo).await;
    let alice = s.create_user(json!("alice")).await;
    let n1000 = s.create_user(json!(1000)).await;
    let ops = s
        .state()
        .accounts()
        .create(always_online::accounts::Kind::Admin, "ops")
        .await
        .expect("create admin ops");
    let db = database(&s).await;

    let mut names = db.list_collection_names().await.expect("collections");
    names.sort();
    assert!(
        names.contains(&"users".to_owned()) && names.contains(&"admins".to_owned()),
        "{names:?}"
    );
    let users = db.collection::<Document>("users");
    assert_eq!(users.count_documents(doc! {}).await.expect("count"), 2);
    let (created, _) = check_account(&find(&db, "users", "alice").await, "alice", &alice);
    check_account(&find(&db, "users", "1000").await, "1000", &n1000);
    check_account(&find(&db, "admins", ADMIN).await, ADMIN, &s.admin_token);
    check_account(&find(&db, "admins", "ops").await, "ops", &ops);
    // Users and admins are apart.
    assert!(users
        .find_one(doc! {"uid": ADMIN})
        .await
        .expect("find")
        .is_none());

    // A refresh replaces the hash and moves `updated`, not `created`.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = s.refresh_user(json!("alice")).await;
    let d = find(&db, "users", "alice").await;
    let (created2, updated2) = check_account(&d, "alice", &fresh);
    assert_eq!(created2, created, "created kept: {d}");
    assert!(updated2 > created, "updated moved: {d}");
    assert_ne!(
        d.get_str("token_hash").ok(),
        Some(sha256_hex(&alice).as_str())
    );

    // No token anywhere in the database.
    let tokens = [alice, n1000, ops, fresh, s.admin_token.clone()];
    for name in db.list_collection_names().await.expect("collections") {
        let docs: Vec<Document> = db
            .collection::<Document>(&name)
            .find(doc! {})
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("read");
        for d in docs {
            let mut all = Vec::new();
            strings(&Bson::Document(d.clone()), &mut all);
            for t in &tokens {
                assert!(
                    all.iter().all(|s| !s.contains(t.as_str())),
                    "token in {name}: {d}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uid_has_a_unique_index() {
    let s = Server::start(Backend::Mongo).await;
    s.create_user(json!("uma")).await;
    let db = database(&s).await;
    for coll in ["users", "admins"] {
        let c = db.collection::<Document>(coll);
        let indexes: Vec<mongodb::IndexModel> = c
            .list_indexes()
            .await
            .expect("list indexes")
            .try_collect()
            .await
            .expect("read indexes");
        let unique_uid = indexes.iter().any(|i| {
            i.keys == doc! {"uid": 1} && i.options.as_ref().and_then(|o| o.unique) == Some(true)
        });
        assert!(unique_uid, "{coll}: no unique index on uid: {indexes:?}");
    }
    // The database itself refuses a second document for a uid.
    let err = db
        .collection::<Document>("users")
        .insert_one(doc! {"uid": "uma", "token_hash": "0".repeat(64)})
        .await
        .expect_err("duplicate uid inserted");
    let dup = matches!(
        err.kind.as_ref(),
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) if w.code == 11000
    );
    assert!(dup, "duplicate key error expected: {err}");
}

/// Runs the CLI with the server's MongoDB.
async fn cli(s: &Server, args: &[&str]) -> (i32, String, String) {
    let url = s.ferret.as_ref().expect("mongo").url();
    let db = s.db.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let dir = crate::support::tempdir();
    let data_dir = dir.path().display().to_string();
    let (status, out, err) = tokio::task::spawn_blocking(move || {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend(["--data-dir", &data_dir]);
        run_cli(&all, &[("AO_MONGODB_URL", &url), ("AO_MONGODB_DB", &db)])
    })
    .await
    .expect("run the CLI");
    (status.code().unwrap_or(-1), out, err)
}

/// The token a successful account command printed: its only stdout line.
fn printed_token(out: &str, err: &str) -> String {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "only the token on stdout: {out:?} (stderr {err:?})"
    );
    let token = lines[0].trim();
    assert!(token.len() >= 32, "a token: {out:?}");
    assert!(!token.contains(' '), "a token: {out:?}");
    assert!(!err.contains(token), "the token is not on stderr: {err}");
    token.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_accounts_in_mongodb() {
    let s = Server::start(Backend::Mongo).await;
    // While the server runs, on another data dir: only MongoDB is shared.
    let (code, out, err) = cli(&s, &["user", "create", "cli-user"]).await;
    assert_eq!(code, 0, "stdout {out:?} stderr {err:?}");
    let t1 = printed_token(&out, &err);
    assert_auth_ok(s.addr(), json!("cli-user"), &t1).await;
    let r = post(
        &s.api_url("/user/create_token"),
        &s.basic(),
        Body::Json(json!({"uid": "cli-user"})),
    )
    .await;
    r.expect(2, json!({}));

    let (code, out, err) = cli(&s, &["user", "refresh", "cli-user"]).await;
    assert_eq!(code, 0, "stdout {out:?} stderr {err:?}");
    let t2 = printed_token(&out, &err);
    assert_auth_refused(s.addr(), json!("cli-user"), &t1).await;
    assert_auth_ok(s.addr(), json!("cli-user"), &t2).await;

    let (code, out, _) = cli(&s, &["user", "create", "cli-user"]).await;
    assert_eq!(code, 1, "create of an existing user");
    assert_eq!(out, "", "nothing on stdout");
    let (code, out, _) = cli(&s, &["user", "refresh", "nobody"]).await;
    assert_eq!(code, 1, "refresh of an unknown user");
    assert_eq!(out, "");

    // A user from the API is seen by the CLI, and an admin from the CLI by the API.
    s.create_user(json!("api-user")).await;
    let (code, _, _) = cli(&s, &["user", "create", "api-user"]).await;
    assert_eq!(code, 1);
    let (code, out, err) = cli(&s, &["admin", "create", "ops"]).await;
    assert_eq!(code, 0, "stdout {out:?} stderr {err:?}");
    let ops = printed_token(&out, &err);
    let r = get(
        &s.main_url("/admin/monitor/stat"),
        &Creds::Basic("ops".into(), ops.clone()),
    )
    .await;
    r.envelope(0);
    let r = post(
        &s.api_url("/user/create_token"),
        &Creds::Query("ops".into(), ops),
        Body::Json(json!({"uid": "by-ops"})),
    )
    .await;
    r.envelope(0);
}

/// The non-empty lines of `text`.
fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_mongodb_at_start_up_exits_2() {
    let port = free_port();
    let url = format!("mongodb://127.0.0.1:{port}");
    let dir = crate::support::tempdir();
    let data_dir = dir.path().display().to_string();
    let started = Instant::now();
    let (status, out, err) = tokio::task::spawn_blocking(move || {
        run_cli(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--api-listen",
                "127.0.0.1:0",
                "--data-dir",
                &data_dir,
            ],
            &[("AO_MONGODB_URL", &url)],
        )
    })
    .await
    .expect("run the server");
    assert_eq!(status.code(), Some(2), "exit code; stderr {err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out, "");
    let l = lines(&err);
    assert_eq!(l.len(), 1, "one line: {err:?}");
    assert!(
        l[0].contains("AO_MONGODB_URL"),
        "names AO_MONGODB_URL: {err:?}"
    );

    // The account commands too.
    let url = format!("mongodb://127.0.0.1:{port}");
    let (status, out, err) = tokio::task::spawn_blocking(move || {
        run_cli(&["user", "create", "x"], &[("AO_MONGODB_URL", &url)])
    })
    .await
    .expect("run the CLI");
    assert_eq!(status.code(), Some(2), "exit code; stderr {err:?}");
    assert_eq!(out, "");
    let l = lines(&err);
    assert_eq!(l.len(), 1, "one line: {err:?}");
    assert!(
        l[0].contains("AO_MONGODB_URL"),
        "names AO_MONGODB_URL: {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_error_hides_the_mongodb_password() {
    let port = free_port();
    let password = format!("pw{}", crate::api::harness::random_hex(8));
    let url = format!("mongodb://aouser:{password}@127.0.0.1:{port}/account");
    let dir = crate::support::tempdir();
    let data_dir = dir.path().display().to_string();
    let (status, _, err) = tokio::task::spawn_blocking(move || {
        run_cli(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--api-listen",
                "127.0.0.1:0",
                "--data-dir",
                &data_dir,
            ],
            &[("AO_MONGODB_URL", &url)],
        )
    })
    .await
    .expect("run the server");
    assert_eq!(status.code(), Some(2), "stderr {err:?}");
    assert!(err.contains("AO_MONGODB_URL"), "{err:?}");
    assert!(!err.contains(&password), "the password is printed: {err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_and_recovery() {
    // With credentials in the URL (FerretDB takes PLAIN and does not check
    // them): the password must not leak through /readyz's reason.
    let password = format!("pw{}", crate::api::harness::random_hex(8));
    let pw = password.clone();
    let mut s = Server::with(Backend::Mongo, move |c| {
        let url = c.mongodb_url.clone().expect("mongo url");
        let url = url.replace("mongodb://", &format!("mongodb://aouser:{pw}@"));
        c.mongodb_url = Some(format!("{url}/?authMechanism=PLAIN&authSource=%24external"));
    })
    .await;
    let olive = s.create_user(json!("olive")).await;
    for url in [s.main_url("/readyz"), s.api_url("/readyz")] {
        let r = get(&url, &Creds::None).await;
        assert_eq!(r.status, 200, "{}: {}", r.request, r.text);
    }

    let member = s.create_user(json!("member")).await;
    let mut joined = s.login("member", &member, "outage-room").await;

    s.ferret.as_mut().expect("ferret").stop().await;

    // A connection authenticated before goes on working.
    let ack = joined.send_msg(json!({"data": "during outage"})).await;
    assert_eq!(ack, json!({"status": 0, "seq": 0}));
    let page = joined.sync(json!({"offset": 0})).await;
    assert_eq!(page["data"][0]["data"], json!("during outage"), "{page}");

    // authenticate: server error, then disconnect.
    let mut c = crate::support::Client::connect(s.addr()).await;
    c.emit("authenticate", json!({"uid": "olive", "token": olive}))
        .await;
    let r = c.recv_within(Duration::from_secs(20)).await;
    assert_eq!(
        r,
        Some(Received::Event(
            "authenticate".into(),
            json!({"status": 1, "data": "server error"})
        ))
    );
    assert!(
        matches!(c.recv().await, Received::Disconnect | Received::Closed),
        "disconnected after the refusal"
    );
    let m = get(&s.main_url("/metrics"), &Creds::None).await;
    assert!(
        m.text
            .contains("ao_auth_failures_total{reason=\"server_error\"} 1"),
        "{}",
        m.text
    );
    // The accounts API: status 3.
    for path in ["/user/create_token", "/user/refresh_token"] {
        let r = post(
            &s.api_url(path),
            &s.basic(),
            Body::Json(json!({"uid": "olive"})),
        )
        .await;
        r.envelope(3);
    }
    // readyz: 503 on both listeners, with a JSON reason on the internal
    // one only; healthz still 200.
    let r = get(&s.main_url("/readyz"), &Creds::None).await;
    assert_eq!(r.status, 503, "{}: {}", r.request, r.text);
    assert_eq!(
        r.json(),
        json!({"status": "not ready"}),
        "no details in public"
    );
    for url in [s.api_url("/readyz")] {
        let r = get(&url, &Creds::None).await;
        assert_eq!(r.status, 503, "{}: {}", r.request, r.text);
        let v = r.json();
        assert_eq!(v["status"], json!("not ready"), "{v}");
        assert!(
            v["reason"].as_str().is_some_and(|s| !s.is_empty()),
            "a reason: {v}"
        );
        assert!(
            !r.text.contains(&password),
            "the MongoDB password in /readyz: {}",
            r.text
        );
    }
    for url in [s.main_url("/healthz"), s.api_url("/healthz")] {
        assert_eq!(get(&url, &Creds::None).await.status, 200);
    }

    s.ferret.as_mut().expect("ferret").start_again().await;
    let back = Instant::now();
    let limit = Duration::from_secs(15);
    poll(limit, "readyz 200 on both listeners", || async {
        for url in [s.main_url("/readyz"), s.api_url("/readyz")] {
            let r = get(&url, &Creds::None).await;
            if r.status != 200 {
                return Err(format!("{}: {} {}", r.request, r.status, r.text));
            }
        }
        Ok(())
    })
    .await;
    let left = limit.saturating_sub(back.elapsed());
    poll(left, "authenticate recovers", || async {
        let r = try_authenticate(s.addr(), json!("olive"), &olive, Duration::from_secs(10)).await;
        if r == json!({"status": 0, "data": "auth success"}) {
            Ok(())
        } else {
            Err(r.to_string())
        }
    })
    .await;
    let mut n = 0;
    let left = limit.saturating_sub(back.elapsed());
    let (token, _) = poll(left, "create_token recovers", || {
        n += 1;
        let uid = format!("after-outage-{n}");
        let s = &s;
        async move {
            let r = post(
                &s.api_url("/user/create_token"),
                &s.basic(),
                Body::Json(json!({ "uid": uid })),
            )
            .await;
            let v = r.json();
            if v["meta"]["status"] == json!(0) {
                Ok((
                    uid,
                    v["data"]["token"].as_str().unwrap_or_default().to_owned(),
                ))
            } else {
                Err(r.text)
            }
        }
    })
    .await;
    let recovered = back.elapsed();
    assert!(recovered < limit, "recovered after {recovered:?}");
    eprintln!("recovered {recovered:?} after FerretDB came back");
    assert_auth_ok(s.addr(), json!(token.0), &token.1).await;
    // The old token still works and the refreshed account is consistent.
    let fresh = s.refresh_user(json!("olive")).await;
    assert_auth_refused(s.addr(), json!("olive"), &olive).await;
    assert_auth_ok(s.addr(), json!("olive"), &fresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_error_reply_echoes_the_uid() {
    // PROTOCOL.md: status 3 `operation failed` (store error) has data `{uid}`.
    let mut s = Server::start(Backend::Mongo).await;
    s.ferret.as_mut().expect("ferret").stop().await;
    let r = post(
        &s.api_url("/user/create_token"),
        &s.basic(),
        Body::Json(json!({"uid": "zoe"})),
    )
    .await;
    r.expect(3, json!({"uid": "zoe"}));
    let r = post(
        &s.api_url("/user/refresh_token"),
        &s.basic(),
        Body::Json(json!({"uid": 31})),
    )
    .await;
    r.expect(3, json!({"uid": 31}));
}

/// An account document as the original service wrote it: mongoose's
/// ObjectId `_id` and `__v`, the token in clear text, times in milliseconds.
fn original_account(uid: &str, token: &str) -> Document {
    let ms = unix_now() * 1000;
    doc! {
        "_id": mongodb::bson::oid::ObjectId::new(),
        "uid": uid,
        "token": token,
        "createTime": ms,
        "updateTime": ms,
        "__v": 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_services_accounts_work_unchanged() {
    let s = Server::start(Backend::Mongo).await;
    let db = database(&s).await;
    db.collection::<Document>("users")
        .insert_many([
            original_account("1001", "tok-1001"),
            original_account("carol", "tok-carol"),
            original_account("dave", "tok-dave"),
            original_account("erin", "tok-erin"),
        ])
        .await
        .expect("insert the original's users");
    db.collection::<Document>("admins")
        .insert_many([
            original_account("legacy-root", "tok-root"),
            original_account("ops2", "tok-ops2"),
        ])
        .await
        .expect("insert the original's admins");

    // On the socket: a uid stored as digits matches a client that sends
    // it as a number, as it did in the original; a wrong token is refused.
    assert_auth_refused(s.addr(), json!(1001), "wrong").await;
    assert_auth_ok(s.addr(), json!(1001), "tok-1001").await;
    // The first success replaced the clear token with its hash, and kept
    // the original's own fields.
    let d = find(&db, "users", "1001").await;
    assert!(d.get("token").is_none(), "clear token gone: {d}");
    assert_eq!(
        d.get_str("token_hash").ok(),
        Some(sha256_hex("tok-1001").as_str())
    );
    assert!(
        d.get("__v").is_some() && d.get("createTime").is_some(),
        "{d}"
    );
    assert_auth_ok(s.addr(), json!("1001"), "tok-1001").await;

    // The original's admins, on both HTTP APIs.
    get(
        &s.main_url("/admin/monitor/stat"),
        &Creds::Basic("legacy-root".into(), "tok-root".into()),
    )
    .await
    .envelope(0);
    post(
        &s.api_url("/user/create_token"),
        &Creds::Query("ops2".into(), "tok-ops2".into()),
        Body::Json(json!({"uid": "made-by-ops2"})),
    )
    .await
    .envelope(0);
    let d = find(&db, "admins", "legacy-root").await;
    assert!(d.get("token").is_none(), "{d}");

    // A refresh through our API of an account the original created: the
    // old token stops working, and no clear token is left.
    let fresh = s.refresh_user(json!("carol")).await;
    assert_auth_refused(s.addr(), json!("carol"), "tok-carol").await;
    assert_auth_ok(s.addr(), json!("carol"), &fresh).await;
    let d = find(&db, "users", "carol").await;
    assert!(d.get("token").is_none(), "{d}");

    // Everything left at once.
    let (code, out, err) = cli(&s, &["accounts", "migrate"]).await;
    assert_eq!(code, 0, "stdout {out:?} stderr {err:?}");
    assert_eq!(
        out.trim(),
        "hashed 2 clear-text tokens (2 users, 0 admins)",
        "dave and erin were never used"
    );
    let clear = db
        .collection::<Document>("users")
        .count_documents(doc! {"token": {"$exists": true}})
        .await
        .expect("count");
    assert_eq!(clear, 0);
    assert_auth_ok(s.addr(), json!("dave"), "tok-dave").await;
    let (code, out, _) = cli(&s, &["accounts", "migrate"]).await;
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "hashed 0 clear-text tokens (0 users, 0 admins)");
}

/// Events of 1 MB before authentication, while the account store does not
/// answer (FerretDB stopped with SIGSTOP), hold no memory: each is refused
/// where it arrives, and its connection closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabyte_events_before_authentication_hold_nothing_while_the_account_store_stalls() {
    let ferret = crate::api::harness::Ferret::start().await;
    let dir = crate::support::tempdir();
    let server = crate::support::BinServer::start_with(dir.path(), false, |cmd| {
        cmd.env("AO_MONGODB_URL", ferret.url());
    });
    let (addr, pid) = (server.addr, server.child.id());
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &ferret.pid().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    };
    let before = crate::support::rss_kib(pid);
    signal("-STOP");
    let packet = format!("42{}", json!(["msg", {"data": "m".repeat(1 << 20)}]));
    let mut peak = before;
    for _ in 0..30 {
        // Its authenticate waits for the stalled store; the megabyte event
        // behind it is refused and closes the connection at once.
        let mut c = crate::support::Client::connect(addr).await;
        c.emit("authenticate", json!({"uid": "u", "token": "t"}))
            .await;
        c.emit_raw(&packet).await;
        c.expect_disconnect().await;
        drop(c);
        peak = peak.max(crate::support::rss_kib(pid));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    peak = peak.max(crate::support::rss_kib(pid));
    signal("-CONT");
    assert!(
        peak < before + 32 * 1024,
        "RSS grew from {before} KiB to {peak} KiB on 30 MB sent before authentication"
    );
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics");
    assert!(
        metrics.contains("ao_messages_dropped_total{reason=\"unauthenticated\"} 30")
            && metrics.contains("ao_disconnects_total{reason=\"oversize_before_auth\"} 30"),
        "{metrics}"
    );
    drop(server);
}
