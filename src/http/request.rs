//! Reading HTTP API requests: admin credentials (query string or HTTP Basic
//! auth), parameters from the query string and from a JSON or form body.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::accounts::Kind;
use crate::app::AppState;
use crate::logging::Chain;
use crate::protocol::api::{ApiStatus, Envelope};

/// Largest accepted request body; larger ones get HTTP 413.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// An HTTP API reply: HTTP 200 with the envelope, or a plain HTTP error.
#[derive(Debug)]
pub(crate) enum Reply {
    Envelope(Envelope),
    /// HTTP 400: the body is not valid JSON (or form data).
    BadRequest(String),
    /// HTTP 413: the body is over [`MAX_BODY_BYTES`].
    TooLarge,
    /// HTTP 408: the body did not arrive within `AO_BODY_TIMEOUT_MS`; the
    /// connection is closed.
    TimedOut,
    /// HTTP 429: the address made too many failed logins; retry after this.
    Throttled(Duration),
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self {
            Reply::Envelope(e) => Json(e).into_response(),
            Reply::BadRequest(why) => (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": "malformed request body", "detail": why})),
            )
                .into_response(),
            Reply::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                Json(
                    serde_json::json!({"error": "request body too large", "limit": MAX_BODY_BYTES}),
                ),
            )
                .into_response(),
            Reply::TimedOut => (
                StatusCode::REQUEST_TIMEOUT,
                [(header::CONNECTION, HeaderValue::from_static("close"))],
                Json(serde_json::json!({"error": "request body timed out"})),
            )
                .into_response(),
            Reply::Throttled(after) => {
                let secs = after.as_secs().max(1);
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(
                        serde_json::json!({"error": "too many failed logins", "retry_after": secs}),
                    ),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                response
            }
        }
    }
}

impl From<Envelope> for Reply {
    fn from(e: Envelope) -> Self {
        Reply::Envelope(e)
    }
}

/// Query-string parameters, in order.
pub(crate) fn query_params(query: Option<&str>) -> Map<String, Value> {
    let pairs: Vec<(String, String)> = query
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    pairs
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect()
}

/// Reads a request's body whole: HTTP 413 past [`MAX_BODY_BYTES`], 408
/// when it does not arrive within `AO_BODY_TIMEOUT_MS` (the listener
/// cuts it), 400 when the connection fails. Handlers read it after the
/// credentials are checked, so nobody without them makes the server wait
/// for a body.
pub(crate) async fn read_body(body: axum::body::Body) -> Result<axum::body::Bytes, Reply> {
    use http_body_util::BodyExt as _;
    match http_body_util::Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Reply::TooLarge),
        Err(e) if ao_socketio::serve::BodyTimeout::caused(&*e) => Err(Reply::TimedOut),
        Err(e) => Err(Reply::BadRequest(e.to_string())),
    }
}

/// The body's parameters: a form body by its content type (unless it is
/// plainly a JSON object), JSON otherwise;
/// an empty body has none. `Err` (HTTP 400) when it cannot be parsed or is
/// not an object.
pub(crate) fn body_params(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // A JSON object sent with curl's default form content type is still JSON.
    let looks_like_json = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{' || *b == b'[');
    if content_type.starts_with("application/x-www-form-urlencoded") && !looks_like_json {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(body).map_err(|e| Reply::BadRequest(e.to_string()))?;
        return Ok(pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Ok(Map::new()),
        Err(e) => Err(Reply::BadRequest(e.to_string())),
    }
}

/// Admin credentials: `?uid=&token=` or HTTP Basic `uid:token`.
fn admin_credentials(headers: &HeaderMap, query: &Map<String, Value>) -> Option<(String, String)> {
    let from_query = match (query.get("uid"), query.get("token")) {
        (Some(Value::String(u)), Some(Value::String(t))) if !u.is_empty() => {
            Some((u.clone(), t.clone()))
        }
        _ => None,
    };
    from_query.or_else(|| {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let encoded = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (uid, token) = text.split_once(':')?;
        (!uid.is_empty()).then(|| (uid.to_owned(), token.to_owned()))
    })
}

/// The address a request came from, when the listener told it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Why a request's admin credentials were not accepted.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Missing or wrong (1), or the account store failed (3).
    Envelope(Envelope),
    /// The address used up its failed logins (`AO_API_LOGIN_FAILURES_PER_IP`).
    Throttled(Duration),
}

impl From<Refused> for Reply {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Envelope(e) => Reply::Envelope(e),
            Refused::Throttled(after) => Reply::Throttled(after),
        }
    }
}

/// Checks the request's admin credentials, unless `peer` made too many
/// failed logins; a wrong or missing one counts as a failure of `peer`.
pub(crate) async fn require_admin(
    state: &AppState,
    peer: Peer,
    headers: &HeaderMap,
    query: &Map<String, Value>,
) -> Result<(), Refused> {
    if let Err(after) = state.limits().api_login_allowed(peer.0) {
        state.metrics().refused("api_login_throttled");
        return Err(Refused::Throttled(after));
    }
    let refused = |state: &AppState| {
        state.limits().api_login_failed(peer.0);
        Err(Refused::Envelope(Envelope::fail(
            ApiStatus::RequirePermission,
        )))
    };
    let Some((uid, token)) = admin_credentials(headers, query) else {
        return refused(state);
    };
    match state.accounts().verify(Kind::Admin, &uid, &token).await {
        Ok(true) => Ok(()),
        Ok(false) => refused(state),
        Err(e) => {
            tracing::error!(error = %Chain(&e), "account store failed while checking admin credentials");
            Err(Refused::Envelope(Envelope::fail(
                ApiStatus::OperationFailed,
            )))
        }
    }
}
