//! Room grants (OPERATIONS.md "Room grants"): JSON Web Tokens beside stored
//! tokens, every refusal, the `rooms` and `observer` claims.

use crate::support;

use std::time::Duration;

use always_online::grants::{Claims, Signer};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::{Client, TestServer, QUIET};

const SECRET: &str = "room-grants-test-secret-of-32-bytes-or-more";
const AUTH_FAILED: &str = "auth failed, uid or token is wrong";
const NOT_GRANTED: &str = "join failed, room not granted";
const OBSERVER_NOT_GRANTED: &str = "join failed, observer not granted";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).expect("read a test key")
}

/// A server verifying tokens with the HMAC secret; `dummy_requires_grant` as given.
async fn hmac_server(dummy_requires_grant: bool) -> TestServer {
    TestServer::with(|c| {
        c.jwt_hmac_secret = Some(SECRET.into());
        c.dummy_requires_grant = dummy_requires_grant;
    })
    .await
}

/// An HS256 token for `uid`, valid for a minute.
fn token(uid: &str, rooms: Option<&[&str]>, observer: bool) -> String {
    let rooms = rooms.map(|r| r.iter().map(|s| (*s).to_owned()).collect());
    Signer::hmac(SECRET.as_bytes())
        .expect("signer")
        .sign(&Claims::new(uid, Duration::from_secs(60), rooms, observer))
        .expect("sign")
}

/// `payload` signed HS256 with `secret`, whatever it holds.
fn hs256(payload: Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &payload,
        &EncodingKey::from_secret(secret).expect("key"),
    )
    .expect("sign")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Authenticates as `uid` with `token` and checks it is refused as wrong
/// credentials, then disconnected.
async fn assert_refused(ts: &TestServer, uid: &str, token: &str) {
    let mut c = Client::connect(ts.addr()).await;
    let reply = c
        .request("authenticate", json!({"uid": uid, "token": token}))
        .await;
    assert_eq!(reply, json!({"status": 1, "data": AUTH_FAILED}), "{token}");
    c.expect_disconnect().await;
}

/// The value of `ao_auth_failures_total{reason="<reason>"}`.
fn auth_failures(ts: &TestServer, reason: &str) -> u64 {
    let text = ts.state().metrics().encode();
    let key = format!("ao_auth_failures_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

async fn connect_with(ts: &TestServer, uid: Value, token: &str) -> Client {
    let mut c = Client::connect(ts.addr()).await;
    c.authenticate(uid, token).await;
    c
}

async fn join(c: &mut Client, room: Value, dummy: bool) -> Value {
    c.request("join", json!({"roomId": room, "dummy": dummy}))
        .await
}

fn join_ok() -> Value {
    json!({"status": 0, "data": "join success"})
}

// --- authenticate -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_authenticates_a_uid_without_a_stored_account() {
    let ts = hmac_server(false).await;
    let mut c = connect_with(&ts, json!("alice"), &token("alice", None, false)).await;
    assert_eq!(join(&mut c, json!("any-room"), false).await, join_ok());
    // A numeric uid is its string form, as for stored tokens.
    let mut n = connect_with(&ts, json!(1000), &token("1000", None, false)).await;
    assert_eq!(join(&mut n, json!("any-room"), false).await, join_ok());
    assert_eq!(c.expect_event("remote_join").await, json!({"uid": 1000}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_tokens_keep_working_with_a_jwt_key() {
    let ts = hmac_server(false).await;
    let mut stored = ts.login("bob", "r").await;
    let _jwt = connect_with(&ts, json!("alice"), &token("alice", None, false)).await;
    assert_refused(&ts, "bob", &"0".repeat(64)).await;
    assert_eq!(auth_failures(&ts, "wrong_credentials"), 1);
    stored.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_is_refused() {
    let ts = hmac_server(false).await;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(json!({"sub": "alice", "exp": now() + 60}))
    );
    assert_refused(&ts, "alice", &none).await;
    // Nor with a signature part that is some other token's.
    let signed = token("alice", None, false);
    let signature = signed.rsplit('.').next().expect("signature");
    assert_refused(&ts, "alice", &format!("{}{signature}", none)).await;
    assert_eq!(auth_failures(&ts, "jwt_invalid"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hmac_token_under_a_public_key_is_refused() {
    let public = fixture("rsa-public.pem");
    let ts = TestServer::with(|c| c.jwt_public_key = Some(public.clone())).await;
    // Algorithm confusion: an HS256 token keyed with the public key's PEM.
    let forged = hs256(
        json!({"sub": "alice", "exp": now() + 60}),
        public.as_bytes(),
    );
    assert_refused(&ts, "alice", &forged).await;
    assert_eq!(auth_failures(&ts, "jwt_invalid"), 1);
    // The private key's own RS256 token is accepted.
    let genuine = Signer::private_key(&fixture("rsa-private.pem"))
        .expect("signer")
        .sign(&Claims::new("alice", Duration::from_secs(60), None, false))
        .expect("sign");
    connect_with(&ts, json!("alice"), &genuine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ed25519_key_given_as_a_file_verifies_eddsa_tokens() {
    let path = format!(
        "{}/tests/fixtures/jwt/ed25519-public.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let ts = TestServer::with(|c| c.jwt_public_key = Some(path)).await;
    let signer = Signer::private_key(&fixture("ed25519-private.pem")).expect("signer");
    let t = signer
        .sign(&Claims::new("carol", Duration::from_secs(60), None, false))
        .expect("sign");
    connect_with(&ts, json!("carol"), &t).await;
    // Someone else's Ed25519 key: a bad signature.
    let other = Signer::private_key(&fixture("ec-private.pem")).expect("signer");
    let t = other
        .sign(&Claims::new("carol", Duration::from_secs(60), None, false))
        .expect("sign");
    assert_refused(&ts, "carol", &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_uid_is_refused() {
    let ts = hmac_server(false).await;
    assert_refused(&ts, "mallory", &token("alice", None, false)).await;
    assert_eq!(auth_failures(&ts, "jwt_wrong_sub"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused() {
    let ts = hmac_server(false).await;
    let expired = hs256(
        json!({"sub": "alice", "iat": now() - 120, "exp": now() - 1}),
        SECRET.as_bytes(),
    );
    assert_refused(&ts, "alice", &expired).await;
    assert_eq!(auth_failures(&ts, "jwt_expired"), 1);
    let no_exp = hs256(json!({"sub": "alice"}), SECRET.as_bytes());
    assert_refused(&ts, "alice", &no_exp).await;
    assert_eq!(auth_failures(&ts, "jwt_invalid"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_is_refused() {
    let ts = hmac_server(false).await;
    let other = hs256(
        json!({"sub": "alice", "exp": now() + 60}),
        b"another-secret-of-at-least-32-bytes!!",
    );
    assert_refused(&ts, "alice", &other).await;
    // A token whose claims were changed after signing.
    let good = token("alice", Some(&["r1"]), false);
    let parts: Vec<&str> = good.split('.').collect();
    let widened = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"sub": "alice", "exp": now() + 60, "rooms": ["*"]}).to_string());
    assert_refused(
        &ts,
        "alice",
        &format!("{}.{widened}.{}", parts[0], parts[2]),
    )
    .await;
    assert_eq!(auth_failures(&ts, "jwt_invalid"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_jwt_key_a_jwt_is_just_a_wrong_stored_token() {
    let ts = TestServer::start().await;
    assert_refused(&ts, "alice", &token("alice", None, false)).await;
    assert_eq!(auth_failures(&ts, "wrong_credentials"), 1);
    assert_eq!(auth_failures(&ts, "jwt_invalid"), 0);
}

// --- rooms ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_claim_allows_matching_rooms_and_refuses_others() {
    let ts = hmac_server(false).await;
    let t = token("alice", Some(&["doc-*", "1000"]), false);
    let mut c = connect_with(&ts, json!("alice"), &t).await;
    let refused = json!({"status": 1, "data": NOT_GRANTED});
    assert_eq!(join(&mut c, json!("admin"), false).await, refused);
    assert_eq!(join(&mut c, json!("doc"), false).await, refused);
    assert_eq!(join(&mut c, json!(1001), false).await, refused);
    // The socket stays open and may join a granted room.
    assert_eq!(join(&mut c, json!("doc-7"), false).await, join_ok());
    // A numeric roomId is compared in its string form.
    assert_eq!(join(&mut c, json!(1000), false).await, join_ok());
    // A refused join leaves the connection in its room.
    let mut other = ts.login("bob", 1000).await;
    assert_eq!(c.expect_event("remote_join").await, json!({"uid": "bob"}));
    assert_eq!(
        other.expect_event("remote_join").await,
        json!({"uid": "alice"})
    );
    assert_eq!(join(&mut c, json!("secret"), false).await, refused);
    other.emit("msg", json!({"data": "still here?"})).await;
    assert_eq!(c.expect_event("msg").await["data"], json!("still here?"));
    other.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_rooms_and_a_stored_token_join_any_room() {
    let ts = hmac_server(false).await;
    let mut c = connect_with(&ts, json!("alice"), &token("alice", None, false)).await;
    assert_eq!(join(&mut c, json!("whatever"), false).await, join_ok());
    let mut s = ts.authenticated("bob").await;
    assert_eq!(join(&mut s, json!("anything-else"), false).await, join_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_rooms_claim_grants_no_room() {
    let ts = hmac_server(false).await;
    let mut c = connect_with(&ts, json!("alice"), &token("alice", Some(&[]), false)).await;
    assert_eq!(
        join(&mut c, json!("r"), false).await,
        json!({"status": 1, "data": NOT_GRANTED})
    );
}

// --- observer ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_requires_grant_needs_observer_true() {
    let ts = hmac_server(true).await;
    let refused = json!({"status": 1, "data": OBSERVER_NOT_GRANTED});
    // A stored-token login cannot watch; it can still join as a member.
    let mut stored = ts.authenticated("bob").await;
    assert_eq!(join(&mut stored, json!("r"), true).await, refused);
    assert_eq!(join(&mut stored, json!("r"), false).await, join_ok());
    // A token without the grant cannot either.
    let mut plain = connect_with(&ts, json!("carol"), &token("carol", None, false)).await;
    assert_eq!(join(&mut plain, json!("r"), true).await, refused);
    // observer: true watches, unannounced.
    let t = token("watcher", Some(&["r"]), true);
    let mut w = connect_with(&ts, json!("watcher"), &t).await;
    assert_eq!(join(&mut w, json!("r"), true).await, join_ok());
    assert_eq!(w.expect_event("remote_join").await, json!({"uid": "bob"}));
    stored.expect_no_event(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_grant_is_bounded_by_rooms() {
    let ts = hmac_server(true).await;
    let mut w = connect_with(
        &ts,
        json!("watcher"),
        &token("watcher", Some(&["team-*"]), true),
    )
    .await;
    assert_eq!(
        join(&mut w, json!("other"), true).await,
        json!({"status": 1, "data": NOT_GRANTED})
    );
    assert_eq!(join(&mut w, json!("team-a"), true).await, join_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_dummy_requires_grant_dummies_join_as_before() {
    let ts = hmac_server(false).await;
    let _d = ts.dummy("watcher", "r").await;
    let mut c = connect_with(&ts, json!("carol"), &token("carol", None, false)).await;
    assert_eq!(join(&mut c, json!("r"), true).await, join_ok());
}
