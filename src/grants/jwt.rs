//! JSON Web Tokens: verifying them under the configured key (an HMAC secret
//! or a PEM public key) and signing them (`always-online token create`).
//!
//! Only the algorithms of the configured key's type are accepted: HS256,
//! HS384 and HS512 for a secret; RS256, ES256 or EdDSA for an RSA, a P-256
//! or an Ed25519 public key. So `alg: none`, and an HMAC token made with a
//! public key as its secret (algorithm confusion), are refused by
//! construction, before any signature is looked at.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde_json::{Map, Value};

use super::Grant;
use crate::config::Config;

/// The shortest HMAC secret accepted, in bytes: RFC 7518 asks for a key at
/// least as long as the hash (256 bits for HS256).
pub const MIN_SECRET_BYTES: usize = 32;

/// The longest token looked at, in bytes; longer ones are refused unread.
pub const MAX_TOKEN_BYTES: usize = 8192;

const HMAC_ALGORITHMS: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not a well-formed JWT (encoding, JSON, length).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header names an algorithm the configured key does not allow
    /// (`none`, or HMAC under a public key, or any other).
    #[error("algorithm {alg:?} not allowed (the server accepts {allowed})")]
    AlgorithmNotAllowed {
        /// The token's `alg`.
        alg: String,
        /// The algorithms of the configured key.
        allowed: String,
    },
    /// The signature does not verify under the configured key.
    #[error("bad signature")]
    BadSignature,
    /// `exp` has passed.
    #[error("expired")]
    Expired,
    /// `nbf` has not come yet.
    #[error("not valid yet (nbf)")]
    NotYetValid,
    /// `sub` is not the uid that authenticates.
    #[error("sub {sub:?} is not the uid {uid:?}")]
    WrongSubject {
        /// The token's `sub`.
        sub: String,
        /// The uid the client authenticates as.
        uid: String,
    },
    /// A claim the server needs is missing.
    #[error("missing claim {0:?}")]
    MissingClaim(String),
    /// A claim has a value the server cannot use.
    #[error("invalid claim {0}")]
    InvalidClaim(String),
}

impl JwtError {
    /// The `reason` label of `ao_auth_failures_total` for this refusal.
    pub fn metric_label(&self) -> &'static str {
        match self {
            JwtError::Expired => "jwt_expired",
            JwtError::WrongSubject { .. } => "jwt_wrong_sub",
            _ => "jwt_invalid",
        }
    }

    fn from_library(e: jsonwebtoken::errors::Error) -> Self {
        match e.kind() {
            ErrorKind::ExpiredSignature => JwtError::Expired,
            ErrorKind::ImmatureSignature => JwtError::NotYetValid,
            ErrorKind::InvalidSignature => JwtError::BadSignature,
            ErrorKind::MissingRequiredClaim(c) => JwtError::MissingClaim(c.clone()),
            ErrorKind::InvalidClaimFormat(c) => JwtError::InvalidClaim(format!("{c:?}")),
            ErrorKind::InvalidAudience => JwtError::InvalidClaim(
                "\"aud\": the server has no audience configured, so tokens for one are refused"
                    .into(),
            ),
            _ => JwtError::Malformed(e.to_string()),
        }
    }
}

/// Why the configured key cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyError {
    /// Both a secret and a public key are configured.
    #[error("set only one of AO_JWT_HMAC_SECRET and AO_JWT_PUBLIC_KEY")]
    BothKeys,
    /// The HMAC secret is shorter than [`MIN_SECRET_BYTES`] (its length).
    #[error("must be at least {MIN_SECRET_BYTES} bytes long (it is {0})")]
    SecretTooShort(usize),
    /// The key file cannot be read.
    #[error("cannot read {path}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why it cannot be read.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The public key is not a PEM public key of a supported type.
    #[error("not a PEM public key (expected -----BEGIN PUBLIC KEY----- of an RSA, P-256 or Ed25519 key)")]
    NotAPublicKey,
    /// The signing key is not a PEM private key of a supported type.
    #[error("not a PEM private key (expected PKCS#8 -----BEGIN PRIVATE KEY----- of an RSA, P-256 or Ed25519 key, or -----BEGIN RSA PRIVATE KEY-----)")]
    NotAPrivateKey,
}

impl KeyError {
    /// The setting at fault.
    pub fn setting(&self) -> &'static str {
        match self {
            KeyError::SecretTooShort(_) => "AO_JWT_HMAC_SECRET",
            _ => "AO_JWT_PUBLIC_KEY",
        }
    }
}

/// The claims `token create` signs, and the ones the server reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claims {
    /// The uid the token is for.
    pub sub: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Room id patterns the token grants; `None`: every room.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    /// The token allows observer (dummy) joins.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub observer: bool,
}

impl Claims {
    /// Claims for `uid`, valid from now for `ttl`.
    pub fn new(uid: &str, ttl: Duration, rooms: Option<Vec<String>>, observer: bool) -> Self {
        let iat = now();
        Claims {
            sub: uid.to_owned(),
            iat,
            exp: iat.saturating_add(ttl.as_secs()),
            rooms,
            observer,
        }
    }
}

/// A token that verified: its whole payload, and what it grants.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The `sub` claim in its string form.
    pub sub: String,
    pub(crate) grant: Grant,
    /// Every claim, as the token holds them.
    pub payload: Map<String, Value>,
}

/// Checks tokens under the configured key.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// The verifier the configuration asks for: `None` when neither
    /// `AO_JWT_HMAC_SECRET` nor `AO_JWT_PUBLIC_KEY` is set.
    pub fn from_config(config: &Config) -> Result<Option<Verifier>, KeyError> {
        match (&config.jwt_hmac_secret, &config.jwt_public_key) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(KeyError::BothKeys),
            (Some(secret), None) => Verifier::hmac(secret.as_bytes()).map(Some),
            (None, Some(key)) => Verifier::public_key(&read_pem(key)?).map(Some),
        }
    }

    /// Verifies HS256, HS384 and HS512 tokens signed with `secret`.
    pub fn hmac(secret: &[u8]) -> Result<Verifier, KeyError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyError::SecretTooShort(secret.len()));
        }
        let key = DecodingKey::from_secret(secret).map_err(|_| KeyError::SecretTooShort(0))?;
        Ok(Verifier::with(key, HMAC_ALGORITHMS))
    }

    /// Verifies tokens signed by the private half of `pem`: RS256 for an
    /// RSA key, ES256 for a P-256 key, EdDSA for an Ed25519 key.
    pub fn public_key(pem: &str) -> Result<Verifier, KeyError> {
        if !pem_has_label(pem, "PUBLIC KEY") {
            return Err(KeyError::NotAPublicKey);
        }
        let bytes = pem.as_bytes();
        let (key, alg) = if let Ok(k) = DecodingKey::from_ed_pem(bytes) {
            (k, Algorithm::EdDSA)
        } else if let Ok(k) = DecodingKey::from_ec_pem(bytes) {
            (k, Algorithm::ES256)
        } else if let Ok(k) = DecodingKey::from_rsa_pem(bytes) {
            (k, Algorithm::RS256)
        } else {
            return Err(KeyError::NotAPublicKey);
        };
        Ok(Verifier::with(key, &[alg]))
    }

    fn with(key: DecodingKey, algorithms: &[Algorithm]) -> Verifier {
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms.to_vec();
        // "exp has not passed": no grace period.
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        Verifier { key, validation }
    }

    /// The algorithms this verifier accepts, as their names.
    pub fn algorithms(&self) -> String {
        self.validation
            .algorithms
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks `token`: its algorithm, signature, `exp` (and `nbf`), and
    /// the claims the server reads; with `uid`, that `sub` is that uid.
    pub fn verify(&self, token: &str, uid: Option<&str>) -> Result<Verified, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::Malformed(format!(
                "longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let alg = header_alg(token)?;
        let allowed = self
            .validation
            .algorithms
            .iter()
            .any(|a| format!("{a:?}") == alg);
        if !allowed {
            return Err(JwtError::AlgorithmNotAllowed {
                alg,
                allowed: self.algorithms(),
            });
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(JwtError::from_library)?;
        let payload = data.claims;
        let sub = match payload.get("sub") {
            None => return Err(JwtError::MissingClaim("sub".into())),
            Some(v) => {
                crate::protocol::parse_id(v)
                    .ok_or_else(|| JwtError::InvalidClaim("\"sub\": not a uid".into()))?
                    .key
            }
        };
        if let Some(uid) = uid {
            if sub != uid {
                return Err(JwtError::WrongSubject {
                    sub,
                    uid: uid.to_owned(),
                });
            }
        }
        let grant = grant_of(&payload)?;
        Ok(Verified {
            sub,
            grant,
            payload,
        })
    }
}

/// The grant a verified payload's `rooms` and `observer` claims give.
fn grant_of(payload: &Map<String, Value>) -> Result<Grant, JwtError> {
    let rooms = match payload.get("rooms") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| crate::protocol::parse_id(v).map(|id| id.key))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| {
                    JwtError::InvalidClaim("\"rooms\": every item must be a room id".into())
                })?,
        ),
        Some(_) => {
            return Err(JwtError::InvalidClaim(
                "\"rooms\": must be an array of room ids".into(),
            ))
        }
    };
    let observer = match payload.get("observer") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(JwtError::InvalidClaim(
                "\"observer\": must be true or false".into(),
            ))
        }
    };
    Ok(Grant { rooms, observer })
}

/// The `alg` of a token's header, read without trusting anything else.
fn header_alg(token: &str) -> Result<String, JwtError> {
    let header = token
        .split('.')
        .next()
        .ok_or_else(|| JwtError::Malformed("no header".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| JwtError::Malformed("header is not base64url".into()))?;
    let json: Value = serde_json::from_slice(&bytes)
        .map_err(|_| JwtError::Malformed("header is not JSON".into()))?;
    match json.get("alg") {
        Some(Value::String(alg)) => Ok(alg.clone()),
        _ => Err(JwtError::Malformed("header has no alg".into())),
    }
}

/// Whether `token` has the shape of a JWT: three base64url parts separated
/// by dots (the last, the signature, may be empty). Stored tokens never do.
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    let b64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    parts.len() == 3
        && !parts[0].is_empty()
        && !parts[1].is_empty()
        && parts.iter().all(|p| b64url(p))
}

/// Signs tokens (`always-online token create`).
pub struct Signer {
    key: EncodingKey,
    alg: Algorithm,
}

impl Signer {
    /// Signs HS256 tokens with `secret`.
    pub fn hmac(secret: &[u8]) -> Result<Signer, KeyError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyError::SecretTooShort(secret.len()));
        }
        let key = EncodingKey::from_secret(secret).map_err(|_| KeyError::SecretTooShort(0))?;
        Ok(Signer {
            key,
            alg: Algorithm::HS256,
        })
    }

    /// Signs with a PEM private key: RS256 (RSA), ES256 (P-256) or EdDSA (Ed25519).
    pub fn private_key(pem: &str) -> Result<Signer, KeyError> {
        if !pem_has_label(pem, "PRIVATE KEY") {
            return Err(KeyError::NotAPrivateKey);
        }
        let bytes = pem.as_bytes();
        let (key, alg) = if let Ok(k) = EncodingKey::from_ed_pem(bytes) {
            (k, Algorithm::EdDSA)
        } else if let Ok(k) = EncodingKey::from_ec_pem(bytes) {
            (k, Algorithm::ES256)
        } else if let Ok(k) = EncodingKey::from_rsa_pem(bytes) {
            (k, Algorithm::RS256)
        } else {
            return Err(KeyError::NotAPrivateKey);
        };
        Ok(Signer { key, alg })
    }

    /// The algorithm tokens are signed with.
    pub fn algorithm(&self) -> String {
        format!("{:?}", self.alg)
    }

    /// The signed token of `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, JwtError> {
        jsonwebtoken::encode(&Header::new(self.alg), claims, &self.key)
            .map_err(|e| JwtError::Malformed(format!("cannot sign: {e}")))
    }
}

/// The PEM text of a setting: the value itself when it is PEM (escaped
/// `\n` allowed, as some deployment tools write multi-line values), else
/// the contents of the file it names.
pub fn read_pem(value: &str) -> Result<String, KeyError> {
    let v = value.trim();
    if v.starts_with("-----BEGIN") {
        return Ok(if v.contains('\n') {
            v.to_owned()
        } else {
            v.replace("\\n", "\n")
        });
    }
    std::fs::read_to_string(v).map_err(|e| KeyError::Unreadable {
        path: v.to_owned(),
        source: Arc::new(e),
    })
}

/// Whether `pem` begins with a `-----BEGIN … <label>-----` line.
fn pem_has_label(pem: &str, label: &str) -> bool {
    pem.lines()
        .map(str::trim)
        .find(|l| l.starts_with("-----BEGIN "))
        .is_some_and(|l| l.ends_with(&format!("{label}-----")))
}

/// Now, in Unix seconds.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
