//! The accounts API (internal listener): create_token and refresh_token, on
//! both account backends.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::api::harness::{
    assert_auth_ok, assert_auth_refused, backend_tests, call_oversized, get, post, Backend, Body,
    Creds, Server,
};

const CREATE: &str = "/user/create_token";
const REFRESH: &str = "/user/refresh_token";

backend_tests!(
    create_token_with_json_body,
    create_token_with_form_body,
    create_token_with_json_sent_as_form,
    refresh_token_with_each_body_kind,
    admin_credentials_in_query_or_basic_auth,
    missing_or_wrong_admin_credentials_are_status_1,
    user_token_is_not_an_admin_token,
    create_existing_user_is_status_2,
    bad_uids_are_status_5,
    refresh_unknown_user_is_status_6,
    refreshed_token_replaces_the_old_one_at_once,
    malformed_oversized_and_unknown_requests,
    concurrent_creates_of_one_uid,
    tokens_survive_a_restart,
    admin_token_with_special_characters,
);

/// The token of a status-0 reply, after checking `data` is exactly `{uid, token}`.
fn issued_token(reply: &Value, uid: &Value) -> String {
    let data = reply["data"]
        .as_object()
        .unwrap_or_else(|| panic!("data is not an object: {reply}"));
    assert_eq!(data.len(), 2, "data is {{uid, token}}: {reply}");
    assert_eq!(&data["uid"], uid, "uid echoed with its JSON type: {reply}");
    let token = data["token"]
        .as_str()
        .unwrap_or_else(|| panic!("token is not a string: {reply}"));
    assert!(token.len() >= 32, "token too short to be random: {token:?}");
    token.to_owned()
}

async fn create_token_with_json_body(backend: Backend) {
    let s = Server::start(backend).await;
    let url = s.api_url(CREATE);

    let r = post(&url, &s.query(), Body::Json(json!({"uid": "alice"}))).await;
    let alice = issued_token(&r.envelope(0), &json!("alice"));
    assert_auth_ok(s.addr(), json!("alice"), &alice).await;

    // A number stays a number in the reply; the account is its string form.
    let r = post(&url, &s.query(), Body::Json(json!({"uid": 1000}))).await;
    let t1000 = issued_token(&r.envelope(0), &json!(1000));
    assert_auth_ok(s.addr(), json!(1000), &t1000).await;
    assert_auth_ok(s.addr(), json!("1000"), &t1000).await;
    // ... so "1000" now exists.
    let r = post(&url, &s.query(), Body::Json(json!({"uid": "1000"}))).await;
    r.expect(2, json!({}));

    // Every user gets a different token.
    assert_ne!(alice, t1000);
    assert_auth_refused(s.addr(), json!("alice"), &t1000).await;
}

async fn create_token_with_form_body(backend: Backend) {
    let s = Server::start(backend).await;
    let url = s.api_url(CREATE);
    let r = post(&url, &s.basic(), Body::Form("uid=bob".into())).await;
    let bob = issued_token(&r.envelope(0), &json!("bob"));
    assert_auth_ok(s.addr(), json!("bob"), &bob).await;

    // Form values are strings; url-encoding is decoded.
    let r = post(
        &url,
        &s.basic(),
        Body::Form("uid=b%C3%B6b+2&other=x".into()),
    )
    .await;
    let t = issued_token(&r.envelope(0), &json!("böb 2"));
    assert_auth_ok(s.addr(), json!("böb 2"), &t).await;

    let r = post(&url, &s.basic(), Body::Form("uid=4242".into())).await;
    let t = issued_token(&r.envelope(0), &json!("4242"));
    assert_auth_ok(s.addr(), json!(4242), &t).await;
}

async fn create_token_with_json_sent_as_form(backend: Backend) {
    let s = Server::start(backend).await;
    let url = s.api_url(CREATE);
    // curl -d '{"uid": 42}' sends application/x-www-form-urlencoded.
    let r = post(
        &url,
        &s.query(),
        Body::Raw(
            Some("application/x-www-form-urlencoded"),
            br#"{"uid": 42}"#.to_vec(),
        ),
    )
    .await;
    let t = issued_token(&r.envelope(0), &json!(42));
    assert_auth_ok(s.addr(), json!(42), &t).await;

    // No content type at all: JSON.
    let r = post(
        &url,
        &s.query(),
        Body::Raw(None, br#"{"uid": "carl"}"#.to_vec()),
    )
    .await;
    let t = issued_token(&r.envelope(0), &json!("carl"));
    assert_auth_ok(s.addr(), json!("carl"), &t).await;
}

async fn refresh_token_with_each_body_kind(backend: Backend) {
    let s = Server::start(backend).await;
    let url = s.api_url(REFRESH);
    let t0 = s.create_user(json!("dora")).await;
    let n0 = s.create_user(json!(77)).await;

    let r = post(&url, &s.query(), Body::Json(json!({"uid": "dora"}))).await;
    let t1 = issued_token(&r.envelope(0), &json!("dora"));
    assert_ne!(t0, t1);

    let r = post(&url, &s.basic(), Body::Form("uid=dora".into())).await;
    let t2 = issued_token(&r.envelope(0), &json!("dora"));
    assert_ne!(t1, t2);

    let r = post(
        &url,
        &s.basic(),
        Body::Raw(
            Some("application/x-www-form-urlencoded"),
            br#"{"uid":"dora"}"#.to_vec(),
        ),
    )
    .await;
    let t3 = issued_token(&r.envelope(0), &json!("dora"));
    assert_ne!(t2, t3);
    for old in [&t0, &t1, &t2] {
        assert_auth_refused(s.addr(), json!("dora"), old).await;
    }
    assert_auth_ok(s.addr(), json!("dora"), &t3).await;

    // A number uid is echoed as a number.
    let r = post(&url, &s.query(), Body::Json(json!({"uid": 77}))).await;
    let n1 = issued_token(&r.envelope(0), &json!(77));
    assert_auth_refused(s.addr(), json!(77), &n0).await;
    assert_auth_ok(s.addr(), json!(77), &n1).await;
}

async fn admin_credentials_in_query_or_basic_auth(backend: Backend) {
    let s = Server::start(backend).await;
    for (i, creds) in [s.query(), s.basic()].into_iter().enumerate() {
        let uid = format!("cred-{i}");
        let r = post(
            &s.api_url(CREATE),
            &creds,
            Body::Json(json!({ "uid": uid })),
        )
        .await;
        issued_token(&r.envelope(0), &json!(uid));
        let r = post(
            &s.api_url(REFRESH),
            &creds,
            Body::Form(format!("uid={uid}")),
        )
        .await;
        let t = issued_token(&r.envelope(0), &json!(uid));
        assert_auth_ok(s.addr(), json!(uid), &t).await;
    }
    // An admin created in the store (not from the configuration) works too.
    let ops = s
        .state()
        .accounts()
        .create(always_online::accounts::Kind::Admin, "ops")
        .await
        .expect("create admin ops");
    for (i, creds) in [
        Creds::Query("ops".into(), ops.clone()),
        Creds::Basic("ops".into(), ops.clone()),
    ]
    .into_iter()
    .enumerate()
    {
        let uid = format!("by-ops-{i}");
        let r = post(
            &s.api_url(CREATE),
            &creds,
            Body::Json(json!({ "uid": uid })),
        )
        .await;
        issued_token(&r.envelope(0), &json!(uid));
    }
}

async fn missing_or_wrong_admin_credentials_are_status_1(backend: Backend) {
    let s = Server::start(backend).await;
    let good = s.admin_token.clone();
    let cases = [
        Creds::None,
        Creds::Query("root".into(), "wrong".into()),
        Creds::Query("root".into(), String::new()),
        Creds::Query("nobody".into(), good.clone()),
        Creds::Query(String::new(), good.clone()),
        Creds::Basic("root".into(), "wrong".into()),
        Creds::Basic("root".into(), String::new()),
        Creds::Basic("nobody".into(), good.clone()),
        Creds::Basic("ROOT".into(), good.clone()),
    ];
    for creds in &cases {
        for path in [CREATE, REFRESH] {
            let r = post(
                &s.api_url(path),
                creds,
                Body::Json(json!({"uid": "victim"})),
            )
            .await;
            r.expect(1, json!({}));
        }
    }
    // Only a uid, or only a token, in the query.
    for q in [
        format!("?uid={ADMIN}", ADMIN = "root"),
        format!("?token={good}"),
    ] {
        let r = post(
            &s.api_url(&format!("{CREATE}{q}")),
            &Creds::None,
            Body::Json(json!({"uid": "victim"})),
        )
        .await;
        r.expect(1, json!({}));
    }
    // Malformed or foreign Authorization headers.
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for value in [
        "Basic !!!not-base64".to_owned(),
        format!("Basic {}", b64("root")),
        format!("Basic {}", b64(&format!("root{good}"))),
        format!("Bearer {good}"),
        good.clone(),
    ] {
        let r = post(
            &s.api_url(CREATE),
            &Creds::Authorization(value),
            Body::Json(json!({"uid": "victim"})),
        )
        .await;
        r.expect(1, json!({}));
    }
    // Nothing was created by the refused calls.
    let t = s.create_user(json!("victim")).await;
    assert_auth_ok(s.addr(), json!("victim"), &t).await;
}

async fn user_token_is_not_an_admin_token(backend: Backend) {
    let s = Server::start(backend).await;
    let mallory = s.create_user(json!("mallory")).await;
    for creds in [
        Creds::Query("mallory".into(), mallory.clone()),
        Creds::Basic("mallory".into(), mallory.clone()),
    ] {
        let r = post(
            &s.api_url(CREATE),
            &creds,
            Body::Json(json!({"uid": "evil"})),
        )
        .await;
        r.expect(1, json!({}));
        let r = post(
            &s.api_url(REFRESH),
            &creds,
            Body::Json(json!({"uid": "mallory"})),
        )
        .await;
        r.expect(1, json!({}));
    }
    // Mallory's token is unchanged and "evil" does not exist.
    assert_auth_ok(s.addr(), json!("mallory"), &mallory).await;
    let r = post(
        &s.api_url(REFRESH),
        &s.basic(),
        Body::Json(json!({"uid": "evil"})),
    )
    .await;
    r.expect(6, json!({"uid": "evil"}));
    // An admin's token is no user token either.
    assert_auth_refused(s.addr(), json!("root"), &s.admin_token).await;
    // A user named like the admin has a token of its own, which is no admin token.
    let user_root = s.create_user(json!("root")).await;
    assert_auth_ok(s.addr(), json!("root"), &user_root).await;
    for creds in [
        Creds::Query("root".into(), user_root.clone()),
        Creds::Basic("root".into(), user_root.clone()),
    ] {
        let r = post(
            &s.api_url(CREATE),
            &creds,
            Body::Json(json!({"uid": "evil"})),
        )
        .await;
        r.expect(1, json!({}));
    }
    // The admin's own token is unchanged by it.
    let r = post(
        &s.api_url(CREATE),
        &s.basic(),
        Body::Json(json!({"uid": "fine"})),
    )
    .await;
    r.envelope(0);
}

async fn create_existing_user_is_status_2(backend: Backend) {
    let s = Server::start(backend).await;
    let t = s.create_user(json!("erin")).await;
    for body in [
        Body::Json(json!({"uid": "erin"})),
        Body::Form("uid=erin".into()),
    ] {
        let r = post(&s.api_url(CREATE), &s.query(), body).await;
        r.expect(2, json!({}));
    }
    let _ = s.create_user(json!(5)).await;
    let r = post(
        &s.api_url(CREATE),
        &s.query(),
        Body::Json(json!({"uid": 5})),
    )
    .await;
    r.expect(2, json!({}));
    let r = post(
        &s.api_url(CREATE),
        &s.query(),
        Body::Json(json!({"uid": "5"})),
    )
    .await;
    r.expect(2, json!({}));
    // The existing token still works.
    assert_auth_ok(s.addr(), json!("erin"), &t).await;
}

async fn bad_uids_are_status_5(backend: Backend) {
    let s = Server::start(backend).await;
    let long = "x".repeat(300);
    let bodies = [
        Body::Empty,
        Body::Json(json!({})),
        Body::Json(json!({"user": "a"})),
        Body::Json(json!({"uid": ""})),
        Body::Json(json!({"uid": 0})),
        Body::Json(json!({"uid": null})),
        Body::Json(json!({"uid": {}})),
        Body::Json(json!({"uid": {"$ne": null}})),
        Body::Json(json!({"uid": []})),
        Body::Json(json!({"uid": ["a"]})),
        Body::Json(json!({"uid": true})),
        Body::Json(json!({"uid": false})),
        Body::Json(json!({ "uid": long })),
        Body::Form(String::new()),
        Body::Form("uid=".into()),
        Body::Form("name=a".into()),
        Body::Form(format!("uid={long}")),
    ];
    for path in [CREATE, REFRESH] {
        for body in &bodies {
            let r = post(&s.api_url(path), &s.basic(), body.clone()).await;
            r.expect(5, json!({}));
        }
    }
    s.create_user(json!("still-fine")).await;
}

async fn refresh_unknown_user_is_status_6(backend: Backend) {
    let s = Server::start(backend).await;
    let r = post(
        &s.api_url(REFRESH),
        &s.query(),
        Body::Json(json!({"uid": "ghost"})),
    )
    .await;
    r.expect(6, json!({"uid": "ghost"}));
    let r = post(
        &s.api_url(REFRESH),
        &s.basic(),
        Body::Json(json!({"uid": 404})),
    )
    .await;
    r.expect(6, json!({"uid": 404}));
    let r = post(
        &s.api_url(REFRESH),
        &s.basic(),
        Body::Form("uid=ghost2".into()),
    )
    .await;
    r.expect(6, json!({"uid": "ghost2"}));
    // An admin is not a user.
    let r = post(
        &s.api_url(REFRESH),
        &s.basic(),
        Body::Json(json!({"uid": "root"})),
    )
    .await;
    r.expect(6, json!({"uid": "root"}));
    // Refresh did not create the account.
    s.create_user(json!("ghost")).await;
}

async fn refreshed_token_replaces_the_old_one_at_once(backend: Backend) {
    let s = Server::start(backend).await;
    let old = s.create_user(json!("fay")).await;
    assert_auth_ok(s.addr(), json!("fay"), &old).await;
    let new = s.refresh_user(json!("fay")).await;
    assert_ne!(old, new);
    // The very next authentication with the old token fails...
    assert_auth_refused(s.addr(), json!("fay"), &old).await;
    // ...and the new one works, also in a room.
    let mut c = s.login("fay", &new, "room-fay").await;
    let r = c.sync(json!({"offset": 0})).await;
    assert_eq!(r["data"], json!([]));
    // Twice in a row: only the latest works.
    let newer = s.refresh_user(json!("fay")).await;
    assert_auth_refused(s.addr(), json!("fay"), &new).await;
    assert_auth_ok(s.addr(), json!("fay"), &newer).await;
}

async fn malformed_oversized_and_unknown_requests(backend: Backend) {
    let s = Server::start(backend).await;
    for path in [CREATE, REFRESH] {
        let url = s.api_url(path);
        for (ct, body) in [
            (Some("application/json"), &b"{\"uid\": "[..]),
            (Some("application/json"), &b"{uid: 1}"[..]),
            (Some("application/json"), &b"not json"[..]),
            (
                Some("application/x-www-form-urlencoded"),
                &b"{\"uid\": \"a\""[..],
            ),
            (None, &b"{\"uid\""[..]),
        ] {
            let r = post(&url, &s.basic(), Body::Raw(ct, body.to_vec())).await;
            assert_eq!(r.status, 400, "{}: {}", r.request, r.text);
        }
    }

    // Unknown routes, on both listeners.
    for url in [
        s.api_url("/user/nope"),
        s.api_url("/"),
        s.api_url("/admin/monitor/stat"),
        s.main_url("/nope"),
        s.main_url("/user/create_token"),
    ] {
        let r = get(&url, &s.basic()).await;
        assert_eq!(r.status, 404, "{}: {}", r.request, r.text);
        let r = post(&url, &s.basic(), Body::Json(json!({"uid": "x"}))).await;
        assert_eq!(r.status, 404, "{}: {}", r.request, r.text);
    }

    // Bodies: 64 000 bytes pass, one byte over 64 KiB is 413.
    let padded = |len: usize, uid: &str| {
        let head = format!("{{\"uid\":\"{uid}\",\"pad\":\"");
        let pad = "a".repeat(len - head.len() - 2);
        format!("{head}{pad}\"}}").into_bytes()
    };
    let body = padded(64_000, "big-ok");
    assert_eq!(body.len(), 64_000);
    let r = post(
        &s.api_url(CREATE),
        &s.basic(),
        Body::Raw(Some("application/json"), body),
    )
    .await;
    issued_token(&r.envelope(0), &json!("big-ok"));
    for path in [CREATE, REFRESH] {
        for len in [64 * 1024 + 1, 1024 * 1024] {
            let body = padded(len, "too-big");
            let r = call_oversized(
                reqwest::Method::POST,
                &s.api_url(path),
                &s.basic(),
                Body::Raw(Some("application/json"), body),
            )
            .await;
            assert_eq!(r.status, 413, "{}: {}", r.request, r.text);
        }
    }
    let r = call_oversized(
        reqwest::Method::POST,
        &s.api_url(CREATE),
        &s.basic(),
        Body::Form(format!("uid=too-big&pad={}", "b".repeat(70_000))),
    )
    .await;
    assert_eq!(r.status, 413, "{}: {}", r.request, r.text);

    // The process survived all of it.
    let r = get(&s.api_url("/healthz"), &Creds::None).await;
    assert_eq!(r.status, 200);
    let r = post(
        &s.api_url(REFRESH),
        &s.basic(),
        Body::Json(json!({"uid": "too-big"})),
    )
    .await;
    r.expect(6, json!({"uid": "too-big"}));
    let t = s.create_user(json!("after")).await;
    let mut a = s.login("after", &t, "after-room").await;
    let t2 = s.create_user(json!("after2")).await;
    let mut b = s.login("after2", &t2, "after-room").await;
    assert_eq!(
        a.expect_event("remote_join").await,
        json!({"uid": "after2"})
    );
    b.expect_event("remote_join").await;
    a.emit("msg", json!({"data": "alive", "s": 2})).await;
    assert_eq!(b.expect_event("msg").await["data"], json!("alive"));
}

async fn concurrent_creates_of_one_uid(backend: Backend) {
    let s = Server::start(backend).await;
    let url = s.api_url(CREATE);
    let calls = (0..20).map(|i| {
        let url = url.clone();
        let creds = if i % 2 == 0 { s.basic() } else { s.query() };
        async move { post(&url, &creds, Body::Json(json!({"uid": "racer"}))).await }
    });
    let replies = futures_util::future::join_all(calls).await;
    let mut tokens = Vec::new();
    let mut exists = 0;
    for r in &replies {
        assert_eq!(r.status, 200, "{}: {}", r.request, r.text);
        match r.json()["meta"]["status"].as_u64() {
            Some(0) => tokens.push(issued_token(&r.envelope(0), &json!("racer"))),
            Some(2) => {
                r.expect(2, json!({}));
                exists += 1;
            }
            other => panic!("unexpected status {other:?}: {}", r.text),
        }
    }
    assert_eq!(tokens.len(), 1, "exactly one create wins: {replies:#?}");
    assert_eq!(exists, 19);
    assert_auth_ok(s.addr(), json!("racer"), &tokens[0]).await;
}

async fn tokens_survive_a_restart(backend: Backend) {
    let mut s = Server::start(backend).await;
    let old = s.create_user(json!("pat")).await;
    let current = s.refresh_user(json!("pat")).await;
    let direct = s
        .state()
        .accounts()
        .create(always_online::accounts::Kind::User, "quinn")
        .await
        .expect("create quinn");
    // MongoDB: a new server with an empty data directory still has the
    // accounts; embedded: the same data directory.
    s.restart(backend == Backend::Mongo).await;
    assert_auth_ok(s.addr(), json!("pat"), &current).await;
    assert_auth_refused(s.addr(), json!("pat"), &old).await;
    assert_auth_ok(s.addr(), json!("quinn"), &direct).await;
    let r = post(
        &s.api_url(CREATE),
        &s.basic(),
        Body::Json(json!({"uid": "pat"})),
    )
    .await;
    r.expect(2, json!({}));
    let r = post(
        &s.api_url(REFRESH),
        &s.query(),
        Body::Json(json!({"uid": "quinn"})),
    )
    .await;
    let t = issued_token(&r.envelope(0), &json!("quinn"));
    assert_auth_ok(s.addr(), json!("quinn"), &t).await;
}

async fn admin_token_with_special_characters(backend: Backend) {
    // AO_ADMIN_TOKEN is the operator's choice: colons, spaces, '&', '+',
    // '%', '=' and non-ASCII must work in the query string (url-encoded)
    // and in HTTP Basic auth (the token is everything after the first ':').
    let token = "s3:cr et&x=1+2%41ü/?#";
    let s = Server::with(backend, move |c| {
        c.admin = Some(("ops admin".into(), token.into()));
    })
    .await;
    for (i, creds) in [
        Creds::Query("ops admin".into(), token.into()),
        Creds::Basic("ops admin".into(), token.into()),
    ]
    .into_iter()
    .enumerate()
    {
        let uid = format!("special-{i}");
        let r = post(
            &s.api_url(CREATE),
            &creds,
            Body::Json(json!({ "uid": uid })),
        )
        .await;
        issued_token(&r.envelope(0), &json!(uid));
        let r = get(&s.main_url("/admin/monitor/stat"), &creds).await;
        r.envelope(0);
    }
    for creds in [
        Creds::Query("ops admin".into(), "s3".into()),
        Creds::Basic("ops admin".into(), "s3:cr et&x=1 2%41ü/?#".into()),
        Creds::Basic("ops".into(), format!("admin:{token}")),
    ] {
        let r = post(&s.api_url(CREATE), &creds, Body::Json(json!({"uid": "no"}))).await;
        r.expect(1, json!({}));
    }
}
