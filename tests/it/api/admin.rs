//! The admin API (main listener): stat, room_users, room_msgs, push,
//! config, clear_room_msgs / clear_room_msg.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use crate::api::harness::{
    assert_auth_ok, assert_auth_refused, assert_no_event, backend_tests, call_oversized, get, poll,
    post, try_authenticate, wait_event, Backend, Body, Creds, Server,
};
use crate::support::{self, Client};

const STAT: &str = "/admin/monitor/stat";
const ROOM_USERS: &str = "/admin/monitor/room_users";
const ROOM_MSGS: &str = "/admin/monitor/room_msgs";
const PUSH: &str = "/admin/system/push";
const CONFIG: &str = "/admin/system/config";
const CLEAR: &str = "/admin/system/clear_room_msgs";
const CLEAR_ALIAS: &str = "/admin/system/clear_room_msg";

backend_tests!(
    credentials_other_than_an_admin_are_refused_everywhere,
    admin_routes_accept_query_and_basic_credentials,
    force_user_auth_switches_dev_mode_off_and_on,
);

/// Unix seconds now.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// User `uid` (created now) logged in to `room`.
async fn member(s: &Server, uid: &str, room: impl Into<Value>) -> Client {
    let token = s.create_user(json!(uid)).await;
    s.login(uid, &token, room).await
}

/// The `data` of a successful stat.
async fn stat(s: &Server) -> Value {
    let r = s.admin_get(STAT).await;
    r.envelope(0)["data"].clone()
}

/// Every admin route with a harmless request: (method, path, body).
fn routes(room: &str) -> Vec<(reqwest::Method, String, Body)> {
    use reqwest::Method;
    vec![
        (Method::GET, STAT.into(), Body::Empty),
        (
            Method::GET,
            format!("{ROOM_USERS}?roomId={room}"),
            Body::Empty,
        ),
        (
            Method::GET,
            format!("{ROOM_MSGS}?roomId={room}&offset=0"),
            Body::Empty,
        ),
        (
            Method::POST,
            PUSH.into(),
            Body::Json(json!({"roomId": room, "content": "intruder"})),
        ),
        (
            Method::POST,
            CONFIG.into(),
            Body::Json(json!({"forceUserAuth": true})),
        ),
        (
            Method::POST,
            CLEAR.into(),
            Body::Json(json!({ "roomId": room })),
        ),
        (
            Method::POST,
            CLEAR_ALIAS.into(),
            Body::Form(format!("roomId={room}")),
        ),
    ]
}

async fn credentials_other_than_an_admin_are_refused_everywhere(backend: Backend) {
    let s = Server::start(backend).await;
    let user_token = s.create_user(json!("mallory")).await;
    let mut c = s.login("mallory", &user_token, "vault").await;
    assert_eq!(
        c.send_msg(json!({"data": "keep me"})).await["status"],
        json!(0)
    );
    let refused = [
        Creds::None,
        Creds::Query("mallory".into(), user_token.clone()),
        Creds::Basic("mallory".into(), user_token.clone()),
        Creds::Query(crate::api::harness::ADMIN.into(), user_token.clone()),
        Creds::Basic(crate::api::harness::ADMIN.into(), "wrong".into()),
        Creds::Query("nobody".into(), s.admin_token.clone()),
    ];
    for creds in &refused {
        for (method, path, body) in routes("vault") {
            let r = crate::api::harness::call(method, &s.main_url(&path), creds, body).await;
            r.expect(1, json!({}));
        }
    }
    // None of the refused calls had an effect.
    assert_no_event(&mut c, "system", support::QUIET).await;
    let r = c.sync(json!({"offset": 0})).await;
    assert_eq!(
        r["data"].as_array().map(Vec::len),
        Some(1),
        "history kept: {r}"
    );
    assert_eq!(stat(&s).await["force_user_auth"], json!(false));
}

async fn admin_routes_accept_query_and_basic_credentials(backend: Backend) {
    let s = Server::start(backend).await;
    let _c = member(&s, "eve", "open").await;
    for creds in [s.query(), s.basic()] {
        for (method, path, body) in routes("open") {
            let r = crate::api::harness::call(method, &s.main_url(&path), &creds, body).await;
            r.envelope(0);
        }
    }
}

/// A fresh uid for each authentication, so that no rate limit is reached.
fn fresh_uid(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn force_user_auth_switches_dev_mode_off_and_on(backend: Backend) {
    let s = Server::with(backend, |c| c.dev = true).await;
    let real = s.create_user(json!("real")).await;
    let any_token_works = |on: bool| {
        let s = &s;
        async move {
            let uid = fresh_uid("anyone");
            let r = try_authenticate(s.addr(), json!(uid), "made-up", support::WAIT).await;
            let ok = r == json!({"status": 0, "data": "auth success"});
            assert_eq!(ok, on, "any token accepted: expected {on}, got {r}");
            assert_eq!(stat(s).await["force_user_auth"], json!(!on));
        }
    };
    any_token_works(true).await;

    let steps: Vec<(Body, bool)> = vec![
        (Body::Json(json!({"forceUserAuth": true})), true),
        (Body::Form("forceUserAuth=false".into()), false),
        (Body::Form("forceUserAuth=true".into()), true),
        (Body::Json(json!({"forceUserAuth": false})), false),
        (
            Body::Raw(
                Some("application/x-www-form-urlencoded"),
                br#"{"forceUserAuth": true}"#.to_vec(),
            ),
            true,
        ),
    ];
    for (body, forced) in steps {
        s.admin_post(CONFIG, body).await.expect(0, json!({}));
        any_token_works(!forced).await;
        // Real tokens work either way; a wrong one fails when forced.
        assert_auth_ok(s.addr(), json!("real"), &real).await;
        if forced {
            assert_auth_refused(s.addr(), json!("real"), "made-up").await;
        }
    }

    // Missing or invalid values are param errors and change nothing (now forced).
    for body in [
        Body::Empty,
        Body::Json(json!({})),
        Body::Json(json!({"forceUserAuth": "yes"})),
        Body::Json(json!({"forceUserAuth": 0})),
        Body::Json(json!({"forceUserAuth": 1})),
        Body::Json(json!({"forceUserAuth": null})),
        Body::Json(json!({"forceUserAuth": "TRUE"})),
        Body::Json(json!({"forceUserAuth": [false]})),
        Body::Json(json!({"force_user_auth": false})),
        Body::Form("forceUserAuth=".into()),
        Body::Form("forceUserAuth=0".into()),
        Body::Form("forceUserAuth=no".into()),
    ] {
        s.admin_post(CONFIG, body).await.expect(5, json!({}));
        assert_eq!(stat(&s).await["force_user_auth"], json!(true));
    }
    any_token_works(false).await;

    // Without dev mode, switching it off does not turn token checks off.
    let strict = Server::start(backend).await;
    strict
        .admin_post(CONFIG, Body::Json(json!({"forceUserAuth": false})))
        .await
        .expect(0, json!({}));
    assert_auth_refused(strict.addr(), json!("nobody"), "made-up").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_reports_who_is_online() {
    let s = Server::start(Backend::Embedded).await;
    let empty = stat(&s).await;
    assert_eq!(empty["online_user_count"], json!(0), "{empty}");
    assert_eq!(empty["online_users"], json!([]), "{empty}");
    assert_eq!(empty["online_room_count"], json!(0), "{empty}");
    assert_eq!(empty["online_rooms"], json!([]), "{empty}");
    assert_eq!(empty["online_socket_count"], json!(0), "{empty}");
    assert_eq!(empty["force_user_auth"], json!(false), "{empty}");

    let mut a = member(&s, "a", "r1").await;
    let b = member(&s, "b", "r1").await;
    let c = member(&s, "c", "r2").await;
    let d_token = s.create_user(json!("d")).await;
    let mut d = Client::connect(s.addr()).await;
    d.authenticate(json!("d"), &d_token).await;
    let e_token = s.create_user(json!("e")).await;
    let _e = s.dummy("e", &e_token, "r1").await;
    let _unauthenticated = Client::connect(s.addr()).await;

    let st = stat(&s).await;
    let obj = st.as_object().unwrap_or_else(|| panic!("stat data: {st}"));
    for key in [
        "online_user_count",
        "online_users",
        "online_room_count",
        "online_rooms",
        "online_socket_count",
        "force_user_auth",
        "memory",
    ] {
        assert!(obj.contains_key(key), "stat without {key}: {st}");
    }
    let users = st["online_users"].as_array().expect("online_users array");
    let pairs: BTreeSet<(String, String)> = users
        .iter()
        .map(|u| {
            assert_eq!(
                u.as_object().map(|o| o.len()),
                Some(2),
                "{{uid, socketId}}: {u}"
            );
            (
                u["uid"]
                    .as_str()
                    .unwrap_or_else(|| panic!("uid: {u}"))
                    .to_owned(),
                u["socketId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("socketId: {u}"))
                    .to_owned(),
            )
        })
        .collect();
    for (uid, client) in [("a", &a), ("b", &b), ("c", &c), ("d", &d)] {
        assert!(
            pairs.contains(&(uid.to_owned(), client.sid.clone())),
            "{uid} with socketId {} in {st}",
            client.sid
        );
    }
    let distinct: BTreeSet<&String> = pairs.iter().map(|(u, _)| u).collect();
    assert!(distinct.len() >= 4, "{st}");
    assert_eq!(st["online_user_count"], json!(distinct.len()), "{st}");
    let mut rooms: Vec<String> = st["online_rooms"]
        .as_array()
        .expect("online_rooms array")
        .iter()
        .map(|r| {
            r.as_str()
                .unwrap_or_else(|| panic!("room id string: {r}"))
                .to_owned()
        })
        .collect();
    rooms.sort();
    assert_eq!(rooms, ["r1", "r2"], "{st}");
    assert_eq!(st["online_room_count"], json!(2), "{st}");
    let sockets = st["online_socket_count"].as_u64().expect("socket count");
    assert!(
        (5..=6).contains(&sockets),
        "5 authenticated + 1 bare connection: {st}"
    );
    assert_eq!(st["force_user_auth"], json!(false));
    let mem = st["memory"]
        .as_object()
        .unwrap_or_else(|| panic!("memory object: {st}"));
    for key in ["rss_bytes", "virtual_bytes"] {
        let v = mem.get(key).and_then(Value::as_u64).unwrap_or(0);
        assert!(v > 0, "memory.{key} is a positive number: {st}");
    }

    // A second login of a kicks the first one out: a is listed once, with the new socket.
    let a_first = a.sid.clone();
    let a_again = {
        let t = s.refresh_user(json!("a")).await;
        let mut n = Client::connect(s.addr()).await;
        n.authenticate(json!("a"), &t).await;
        n
    };
    assert_eq!(wait_event(&mut a, "kickout").await, json!(0));
    poll(
        Duration::from_secs(5),
        "a listed once, with its new socket",
        || async {
            let st = stat(&s).await;
            let a_entries: Vec<&Value> = st["online_users"]
                .as_array()
                .map(|u| u.iter().filter(|u| u["uid"] == json!("a")).collect())
                .unwrap_or_default();
            if a_entries.len() == 1 && a_entries[0]["socketId"] == json!(a_again.sid) {
                Ok(())
            } else {
                Err(st.to_string())
            }
        },
    )
    .await;
    let st = stat(&s).await;
    assert_ne!(a_first, a_again.sid);
    assert_eq!(st["online_user_count"], json!(distinct.len()), "{st}");
    assert_eq!(
        s.admin_get(&format!("{ROOM_USERS}?roomId=r1"))
            .await
            .envelope(0)["data"],
        json!({"users": [{"uid": "b"}]}),
        "the kicked-out a left r1"
    );

    // c leaves: r2 and c disappear.
    c.close().await;
    poll(Duration::from_secs(5), "c gone from stat", || async {
        let st = stat(&s).await;
        let gone = st["online_rooms"] == json!(["r1"])
            && !st["online_users"]
                .as_array()
                .is_some_and(|u| u.iter().any(|u| u["uid"] == json!("c")));
        if gone {
            Ok(())
        } else {
            Err(st.to_string())
        }
    })
    .await;
    let st = stat(&s).await;
    assert_eq!(st["online_room_count"], json!(1), "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_never_contains_secrets() {
    // A MongoDB URL with a user and password. FerretDB's SQLite backend
    // takes them with the PLAIN mechanism and does not check them.
    let password = format!("pw{}", crate::api::harness::random_hex(8));
    let pw = password.clone();
    let s = Server::with(Backend::Mongo, move |c| {
        let url = c.mongodb_url.clone().expect("mongo url");
        let url = url.replace("mongodb://", &format!("mongodb://aouser:{pw}@"));
        c.mongodb_url = Some(format!("{url}/?authMechanism=PLAIN&authSource=%24external"));
    })
    .await;
    assert!(s.config().mongodb_url.expect("url").contains(&password));
    let mut tokens = vec![s.admin_token.clone()];
    let mut clients = Vec::new();
    for uid in ["s1", "s2"] {
        let t = s.create_user(json!(uid)).await;
        clients.push(s.login(uid, &t, "secret-room").await);
        tokens.push(t);
    }
    let r = s.admin_get(STAT).await;
    r.envelope(0);
    let r2 = get(&s.main_url(STAT), &s.query()).await;
    r2.envelope(0);
    for text in [&r.text, &r2.text] {
        assert!(!text.contains(&password), "password in stat: {text}");
        assert!(
            !text.contains("aouser:"),
            "mongodb credentials in stat: {text}"
        );
        for t in &tokens {
            assert!(!text.contains(t.as_str()), "a token in stat: {text}");
        }
        // Nor any hash of them.
        for t in &tokens {
            let h = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(t.as_bytes()));
            assert!(!text.contains(&h), "a token hash in stat: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_users_in_join_order_without_dummies() {
    let s = Server::start(Backend::Embedded).await;
    let users = |room: &str| {
        let s = &s;
        let room = room.to_owned();
        async move {
            let r = s.admin_get(&format!("{ROOM_USERS}?roomId={room}")).await;
            r.envelope(0)["data"].clone()
        }
    };
    assert_eq!(users("lobby").await, json!({"users": []}));

    let _z = member(&s, "zed", "lobby").await;
    let b = member(&s, "bea", "lobby").await;
    let dt = s.create_user(json!("watcher")).await;
    let _w = s.dummy("watcher", &dt, "lobby").await;
    let _m = member(&s, "max", "lobby").await;
    let _other = member(&s, "olga", "elsewhere").await;
    let expected = json!({"users": [{"uid": "zed"}, {"uid": "bea"}, {"uid": "max"}]});
    assert_eq!(users("lobby").await, expected);
    // Numbers and strings are one room.
    let _n = member(&s, "num", 123).await;
    assert_eq!(users("123").await, json!({"users": [{"uid": "num"}]}));

    // bea leaves: the order of the others is kept.
    b.close().await;
    poll(Duration::from_secs(5), "bea gone", || async {
        let u = users("lobby").await;
        if u == json!({"users": [{"uid": "zed"}, {"uid": "max"}]}) {
            Ok(())
        } else {
            Err(u.to_string())
        }
    })
    .await;
    assert_eq!(users("nowhere").await, json!({"users": []}));

    for q in ["", "?roomId=", "?room=lobby", "?roomId=&x=1"] {
        let r = s.admin_get(&format!("{ROOM_USERS}{q}")).await;
        r.expect(5, json!({}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_msgs_pages_like_sync() {
    let s = Server::with(Backend::Embedded, |c| c.sync_page_size = 3).await;
    let started = now();
    let mut c = member(&s, "writer", "hist").await;
    for i in 0..7 {
        let ack = c.send_msg(json!({"data": i})).await;
        assert_eq!(ack["status"], json!(0), "{ack}");
    }
    for (id, v) in [("u1", "first"), ("u2", "only"), ("u1", "second")] {
        let ack = c.send_msg(json!({"data": v, "s": 1, "1": id})).await;
        assert_eq!(ack["status"], json!(0), "{ack}");
    }
    let (synced, _) = c.sync_all(0).await;
    assert_eq!(synced.len(), 9, "7 inserts + 2 updates: {synced:?}");

    let page = |q: String| {
        let s = &s;
        async move {
            let r = s.admin_get(&format!("{ROOM_MSGS}?roomId=hist{q}")).await;
            r.envelope(0)["data"]["msgs"].clone()
        }
    };
    let mut got = Vec::new();
    let mut shape = Vec::new();
    let mut offset = 0;
    loop {
        let p = page(format!("&offset={offset}")).await;
        let obj = p.as_object().unwrap_or_else(|| panic!("msgs: {p}"));
        assert_eq!(obj.len(), 3, "{{data, offset, next}}: {p}");
        let data = p["data"].as_array().unwrap_or_else(|| panic!("data: {p}"));
        for entry in data {
            assert_eq!(
                entry.as_object().map(|o| o.len()),
                Some(2),
                "{{data, ts}}: {entry}"
            );
            let ts = entry["ts"]
                .as_i64()
                .unwrap_or_else(|| panic!("ts: {entry}"));
            assert!(
                ts >= started - 2 && ts <= now() + 2,
                "ts {ts} is a recent Unix second: {entry}"
            );
            got.push(entry["data"].clone());
        }
        let next = p["next"].as_u64().unwrap_or_else(|| panic!("next: {p}"));
        shape.push((data.len(), p["offset"].clone(), next));
        offset = p["offset"]
            .as_u64()
            .unwrap_or_else(|| panic!("offset: {p}"));
        if next == 0 {
            break;
        }
        assert!(shape.len() < 10, "no last page: {shape:?}");
    }
    assert_eq!(
        shape,
        vec![(3, json!(3), 1), (3, json!(6), 1), (3, json!(7), 0)],
        "pages like sync"
    );
    assert_eq!(got, synced, "the same messages as sync, in the same order");
    assert_eq!(got[0]["2"], json!("writer"), "{:?}", got[0]);
    assert_eq!(got[7]["data"], json!("only"));
    assert_eq!(got[8]["data"], json!("second"));

    // Every offset pages exactly as sync does.
    for offset in [0u64, 1, 3, 5, 6, 7, 8, 100] {
        let p = page(format!("&offset={offset}")).await;
        let sync = c.sync(json!({ "offset": offset })).await;
        let data: Vec<Value> = p["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|e| e["data"].clone())
            .collect();
        assert_eq!(json!(data), sync["data"], "offset {offset}: {p} vs {sync}");
        assert_eq!(
            p["offset"], sync["offset"],
            "offset {offset}: {p} vs {sync}"
        );
        assert_eq!(p["next"], sync["next"], "offset {offset}: {p} vs {sync}");
    }

    // No offset means 0; a garbage offset is 0.
    let first = page(String::new()).await;
    assert_eq!(first, page("&offset=0".into()).await);
    assert_eq!(first, page("&offset=abc".into()).await);
    // Past the end: only the updates, last page.
    let end = page("&offset=100".into()).await;
    assert_eq!(end["next"], json!(0), "{end}");
    let data: Vec<Value> = end["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["data"].clone())
        .collect();
    assert_eq!(data, synced[7..].to_vec(), "{end}");

    // An unknown room is empty.
    let r = s.admin_get(&format!("{ROOM_MSGS}?roomId=void")).await;
    let v = r.envelope(0);
    assert_eq!(v["data"]["msgs"]["data"], json!([]), "{v}");
    assert_eq!(v["data"]["msgs"]["next"], json!(0), "{v}");
    for q in ["", "?offset=0", "?roomId="] {
        let r = s.admin_get(&format!("{ROOM_MSGS}{q}")).await;
        r.expect(5, json!({}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_reaches_every_member_and_dummy() {
    let s = Server::start(Backend::Embedded).await;
    let mut a = member(&s, "pa", "news").await;
    let mut b = member(&s, "pb", "news").await;
    let dt = s.create_user(json!("pd")).await;
    let mut d = s.dummy("pd", &dt, "news").await;
    let mut x = member(&s, "px", "other").await;
    let mut n = member(&s, "pn", 555).await;

    let content = json!({"notice": "maintenance at 2am", "n": [1, 2]});
    s.admin_post(
        PUSH,
        Body::Json(json!({"roomId": "news", "content": content})),
    )
    .await
    .expect(0, json!({}));
    for c in [&mut a, &mut b, &mut d] {
        assert_eq!(wait_event(c, "system").await, content);
    }
    assert_no_event(&mut x, "system", support::QUIET).await;

    // Form body: content is a string; roomId in the query; a numeric room.
    s.admin_post(PUSH, Body::Form("roomId=news&content=hello".into()))
        .await
        .expect(0, json!({}));
    for c in [&mut a, &mut b, &mut d] {
        assert_eq!(wait_event(c, "system").await, json!("hello"));
    }
    s.admin_post(
        &format!("{PUSH}?roomId=555"),
        Body::Json(json!({"content": 7})),
    )
    .await
    .expect(0, json!({}));
    assert_eq!(wait_event(&mut n, "system").await, json!(7));
    s.admin_post(PUSH, Body::Json(json!({"roomId": 555, "content": "num"})))
        .await
        .expect(0, json!({}));
    assert_eq!(wait_event(&mut n, "system").await, json!("num"));
    assert_no_event(&mut x, "system", support::QUIET).await;

    // Nobody in the room: 7.
    s.admin_post(PUSH, Body::Json(json!({"roomId": "empty", "content": "x"})))
        .await
        .expect(7, json!({}));
    x.close().await;
    poll(Duration::from_secs(5), "room other emptied", || async {
        let r = s
            .admin_post(PUSH, Body::Json(json!({"roomId": "other", "content": "x"})))
            .await;
        let v = r.json();
        if v["meta"]["status"] == json!(7) {
            r.expect(7, json!({}));
            Ok(())
        } else {
            Err(r.text)
        }
    })
    .await;
    // No roomId: 5.
    for body in [
        Body::Json(json!({"content": "x"})),
        Body::Json(json!({"roomId": "", "content": "x"})),
        Body::Json(json!({"roomId": null, "content": "x"})),
        Body::Empty,
        Body::Form("content=x".into()),
    ] {
        s.admin_post(PUSH, body).await.expect(5, json!({}));
    }
    assert_no_event(&mut a, "system", support::QUIET).await;
}

/// A page read ahead during a sync is not served once the history was cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_between_sync_pages_is_seen_by_the_next_page() {
    let s = Server::with(Backend::Embedded, |c| c.sync_page_size = 5).await;
    let mut c = member(&s, "pager", "paged").await;
    for i in 0..12 {
        assert_eq!(c.send_msg(json!({"data": i})).await["status"], json!(0));
    }
    let first = c.sync(json!({"offset": 0})).await;
    assert_eq!(first["next"], json!(1), "{first}");
    // The server reads the page at offset 5 ahead meanwhile.
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.admin_post(CLEAR, Body::Json(json!({"roomId": "paged"})))
        .await
        .expect(0, json!({}));
    let second = c.sync(json!({"offset": 5})).await;
    assert_eq!(second["data"], json!([]), "cleared history: {second}");
    assert_eq!(second["next"], json!(0), "{second}");
    assert_ne!(second["epoch"], first["epoch"], "{second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_room_msgs_deletes_history_and_changes_epoch() {
    let s = Server::start(Backend::Embedded).await;
    let ways: Vec<(&str, &str)> = vec![
        (CLEAR, "json"),
        (CLEAR, "query"),
        (CLEAR, "form"),
        (CLEAR_ALIAS, "json"),
        (CLEAR_ALIAS, "query"),
        (CLEAR_ALIAS, "form"),
    ];
    let mut keeper = member(&s, "keeper", "untouched").await;
    assert_eq!(
        keeper.send_msg(json!({"data": "stay"})).await["status"],
        json!(0)
    );
    for (i, (path, way)) in ways.into_iter().enumerate() {
        let room = format!("clr{i}");
        let mut c = member(&s, &format!("clearer{i}"), room.as_str()).await;
        for m in [
            json!({"data": 1}),
            json!({"data": 2}),
            json!({"data": "u", "s": 1, "1": "m"}),
        ] {
            assert_eq!(c.send_msg(m).await["status"], json!(0));
        }
        let before = c.sync(json!({"offset": 0})).await;
        assert_eq!(before["data"].as_array().map(Vec::len), Some(3), "{before}");
        let epoch = before["epoch"].clone();
        assert!(epoch.is_string(), "sync carries an epoch: {before}");

        let r = match way {
            "json" => {
                s.admin_post(path, Body::Json(json!({ "roomId": room })))
                    .await
            }
            "query" => {
                s.admin_post(&format!("{path}?roomId={room}"), Body::Empty)
                    .await
            }
            _ => {
                s.admin_post(path, Body::Form(format!("roomId={room}")))
                    .await
            }
        };
        r.expect(0, json!({}));

        let after = c.sync(json!({"offset": 0})).await;
        assert_eq!(
            after["data"],
            json!([]),
            "{path} {way}: history gone: {after}"
        );
        assert_eq!(after["next"], json!(0), "{after}");
        assert_ne!(
            after["epoch"], epoch,
            "{path} {way}: epoch changed: {after}"
        );
        let r = s.admin_get(&format!("{ROOM_MSGS}?roomId={room}")).await;
        assert_eq!(
            r.envelope(0)["data"]["msgs"]["data"],
            json!([]),
            "{}",
            r.text
        );
        // The room goes on: the next insert is seq 0 of the new epoch.
        let ack = c.send_msg(json!({"data": "fresh"})).await;
        assert_eq!(ack, json!({"status": 0, "seq": 0}), "{path} {way}");
        let again = c.sync(json!({"offset": 0})).await;
        assert_eq!(again["epoch"], after["epoch"], "{again}");
        assert_eq!(again["data"].as_array().map(Vec::len), Some(1), "{again}");
    }
    // Other rooms keep their history.
    let r = keeper.sync(json!({"offset": 0})).await;
    assert_eq!(r["data"].as_array().map(Vec::len), Some(1), "{r}");

    for path in [CLEAR, CLEAR_ALIAS] {
        for body in [
            Body::Empty,
            Body::Json(json!({})),
            Body::Json(json!({"roomId": ""})),
            Body::Json(json!({"roomId": 0})),
            Body::Form("roomId=".into()),
        ] {
            s.admin_post(path, body).await.expect(5, json!({}));
        }
    }
    // Clearing a room that never had history is fine.
    s.admin_post(CLEAR, Body::Json(json!({"roomId": "never"})))
        .await
        .expect(0, json!({}));
    let r = post(
        &s.main_url(CLEAR),
        &s.query(),
        Body::Json(json!({"roomId": "never"})),
    )
    .await;
    r.expect(0, json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_admin_bodies() {
    let s = Server::start(Backend::Embedded).await;
    let mut c = member(&s, "reader", "big").await;
    for path in [PUSH, CONFIG, CLEAR, CLEAR_ALIAS] {
        for (ct, body) in [
            (Some("application/json"), &b"{\"roomId\": "[..]),
            (
                Some("application/x-www-form-urlencoded"),
                &b"{roomId: big}"[..],
            ),
            (None, &b"{\"roomId\""[..]),
        ] {
            let r = s.admin_post(path, Body::Raw(ct, body.to_vec())).await;
            assert_eq!(r.status, 400, "{}: {}", r.request, r.text);
        }
        let huge = json!({"roomId": "big", "content": "x".repeat(70_000)});
        let r = call_oversized(
            reqwest::Method::POST,
            &s.main_url(path),
            &s.basic(),
            Body::Json(huge),
        )
        .await;
        assert_eq!(r.status, 413, "{}: {}", r.request, r.text);
    }
    assert_no_event(&mut c, "system", support::QUIET).await;
    // Just under the limit: a push goes through.
    let content = "y".repeat(60_000);
    s.admin_post(
        PUSH,
        Body::Json(json!({"roomId": "big", "content": content})),
    )
    .await
    .expect(0, json!({}));
    assert_eq!(wait_event(&mut c, "system").await, json!(content));
    assert_eq!(get(&s.main_url("/healthz"), &Creds::None).await.status, 200);
}
