//! Verifying and signing under each kind of key, and every refusal.

use super::*;
use serde_json::json;

const SECRET: &str = "an HMAC secret of at least 32 bytes, for tests";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).expect("read a test key")
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn claims(uid: &str) -> Claims {
    Claims::new(uid, Duration::from_secs(60), None, false)
}

#[test]
fn hmac_tokens_verify_and_carry_their_grant() {
    let signer = Signer::hmac(SECRET.as_bytes()).expect("signer");
    let verifier = Verifier::hmac(SECRET.as_bytes()).expect("verifier");
    let c = Claims::new(
        "alice",
        Duration::from_secs(60),
        Some(vec!["doc-*".into()]),
        true,
    );
    let token = signer.sign(&c).expect("sign");
    assert!(looks_like_jwt(&token));
    let v = verifier.verify(&token, Some("alice")).expect("verifies");
    assert_eq!(v.sub, "alice");
    assert_eq!(
        v.grant,
        Grant {
            rooms: Some(vec!["doc-*".into()]),
            observer: true
        }
    );
    assert_eq!(v.payload["rooms"], json!(["doc-*"]));
}

#[test]
fn every_public_key_type_verifies_its_own_algorithm_only() {
    for (kind, alg) in [("rsa", "RS256"), ("ec", "ES256"), ("ed25519", "EdDSA")] {
        let signer = Signer::private_key(&fixture(&format!("{kind}-private.pem"))).expect(kind);
        assert_eq!(signer.algorithm(), alg);
        let verifier = Verifier::public_key(&fixture(&format!("{kind}-public.pem"))).expect(kind);
        assert_eq!(verifier.algorithms(), alg);
        let token = signer.sign(&claims("bob")).expect("sign");
        assert_eq!(
            verifier.verify(&token, Some("bob")).expect("verifies").sub,
            "bob"
        );
        // Another key type's token is refused on its algorithm.
        let other = if kind == "ed25519" { "ec" } else { "ed25519" };
        let stranger = Signer::private_key(&fixture(&format!("{other}-private.pem")))
            .expect("other")
            .sign(&claims("bob"))
            .expect("sign");
        assert!(matches!(
            verifier.verify(&stranger, Some("bob")),
            Err(JwtError::AlgorithmNotAllowed { .. })
        ));
    }
}

#[test]
fn alg_none_is_refused() {
    let verifier = Verifier::hmac(SECRET.as_bytes()).expect("verifier");
    let exp = now() + 60;
    let token = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&json!({"sub": "alice", "exp": exp}))
    );
    assert!(looks_like_jwt(&token));
    let e = verifier.verify(&token, Some("alice")).expect_err("none");
    assert_eq!(
        e,
        JwtError::AlgorithmNotAllowed {
            alg: "none".into(),
            allowed: "HS256, HS384, HS512".into()
        }
    );
    assert_eq!(e.metric_label(), "jwt_invalid");
}

#[test]
fn an_hmac_token_keyed_with_the_public_key_is_refused() {
    let public = fixture("ed25519-public.pem");
    let verifier = Verifier::public_key(&public).expect("verifier");
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("alice"),
        &EncodingKey::from_secret(public.as_bytes()).expect("key"),
    )
    .expect("forge");
    assert!(matches!(
        verifier.verify(&forged, Some("alice")),
        Err(JwtError::AlgorithmNotAllowed { alg, .. }) if alg == "HS256"
    ));
}

#[test]
fn wrong_sub_expired_bad_signature_and_bad_claims_are_refused() {
    let signer = Signer::hmac(SECRET.as_bytes()).expect("signer");
    let verifier = Verifier::hmac(SECRET.as_bytes()).expect("verifier");
    let token = signer.sign(&claims("alice")).expect("sign");
    let e = verifier.verify(&token, Some("mallory")).expect_err("sub");
    assert_eq!(e.metric_label(), "jwt_wrong_sub");

    let mut old = claims("alice");
    old.exp = now() - 1;
    let e = verifier
        .verify(&signer.sign(&old).expect("sign"), Some("alice"))
        .expect_err("expired");
    assert_eq!(
        (e.clone(), e.metric_label()),
        (JwtError::Expired, "jwt_expired")
    );

    let other = Signer::hmac(&[7u8; 32]).expect("signer");
    assert_eq!(
        verifier.verify(&other.sign(&claims("alice")).expect("sign"), Some("alice")),
        Err(JwtError::BadSignature)
    );

    let sign_raw = |payload: Value| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &payload,
            &EncodingKey::from_secret(SECRET.as_bytes()).expect("key"),
        )
        .expect("sign")
    };
    let exp = now() + 60;
    for (payload, why) in [
        (json!({"sub": "alice"}), "no exp"),
        (json!({"exp": exp}), "no sub"),
        (
            json!({"sub": "alice", "exp": exp, "rooms": "r1"}),
            "rooms not an array",
        ),
        (
            json!({"sub": "alice", "exp": exp, "rooms": [{}]}),
            "room not an id",
        ),
        (
            json!({"sub": "alice", "exp": exp, "observer": "yes"}),
            "observer not a boolean",
        ),
        (
            json!({"sub": "alice", "exp": exp, "aud": "elsewhere"}),
            "an audience",
        ),
        (
            json!({"sub": "alice", "exp": exp, "nbf": exp}),
            "not valid yet",
        ),
    ] {
        let e = verifier
            .verify(&sign_raw(payload), Some("alice"))
            .expect_err(why);
        assert_eq!(e.metric_label(), "jwt_invalid", "{why}: {e}");
    }
    // A numeric room id is the room's string form.
    let v = verifier
        .verify(
            &sign_raw(json!({"sub": 1000, "exp": exp, "rooms": [1000]})),
            Some("1000"),
        )
        .expect("numbers");
    assert_eq!(v.grant.rooms, Some(vec!["1000".to_owned()]));
    assert!(matches!(
        verifier.verify(&"a".repeat(MAX_TOKEN_BYTES + 1), None),
        Err(JwtError::Malformed(_))
    ));
}

#[test]
fn stored_tokens_do_not_look_like_jwts() {
    assert!(!looks_like_jwt(&crate::accounts::token::generate()));
    assert!(!looks_like_jwt("a.b"));
    assert!(!looks_like_jwt("a.b.c.d"));
    assert!(!looks_like_jwt("a..c"));
    assert!(!looks_like_jwt("a.b+.c"));
    assert!(looks_like_jwt("a.b.c"));
}

#[test]
fn keys_are_checked() {
    assert!(matches!(
        Verifier::hmac(b"short").err(),
        Some(KeyError::SecretTooShort(5))
    ));
    assert!(matches!(
        Verifier::public_key(&fixture("ec-private.pem")).err(),
        Some(KeyError::NotAPublicKey)
    ));
    assert!(matches!(
        Signer::private_key(&fixture("ec-public.pem")).err(),
        Some(KeyError::NotAPrivateKey)
    ));
    assert!(matches!(
        Verifier::public_key("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n")
            .err(),
        Some(KeyError::NotAPublicKey)
    ));
    let one_line = fixture("ed25519-public.pem").trim().replace('\n', "\\n");
    assert!(Verifier::public_key(&read_pem(&one_line).expect("pem")).is_ok());
    assert!(matches!(
        read_pem("/no/such/key.pem"),
        Err(KeyError::Unreadable { .. })
    ));
}
