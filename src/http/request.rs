//! Reading HTTP API requests: admin credentials (query string or HTTP Basic
//! auth), parameters from the query string and from a JSON or form body.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::accounts::{AccountStore, Kind};
use crate::protocol::api::{ApiStatus, Envelope};

/// Largest accepted request body; larger ones get HTTP 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// An HTTP API reply: HTTP 200 with the envelope, or a plain HTTP error.
#[derive(Debug)]
pub enum Reply {
    Envelope(Envelope),
    /// HTTP 400: the body is not valid JSON (or form data).
    BadRequest(String),
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
        }
    }
}

impl From<Envelope> for Reply {
    fn from(e: Envelope) -> Self {
        Reply::Envelope(e)
    }
}

/// Query-string parameters, in order.
pub fn query_params(query: Option<&str>) -> Map<String, Value> {
    let pairs: Vec<(String, String)> = query
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    pairs
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect()
}

/// The body's parameters: a form body by its content type (unless it is
/// plainly a JSON object), JSON otherwise;
/// an empty body has none. `Err` (HTTP 400) when it cannot be parsed or is
/// not an object.
pub fn body_params(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, Reply> {
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

/// Checks the request's admin credentials; the envelope to send back when
/// they are missing or wrong (1) or the account store fails (3).
pub async fn require_admin(
    accounts: &dyn AccountStore,
    headers: &HeaderMap,
    query: &Map<String, Value>,
) -> Result<(), Envelope> {
    let Some((uid, token)) = admin_credentials(headers, query) else {
        return Err(Envelope::fail(ApiStatus::RequirePermission));
    };
    match accounts.verify(Kind::Admin, &uid, &token).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Envelope::fail(ApiStatus::RequirePermission)),
        Err(e) => {
            tracing::error!(error = %e, "account store failed while checking admin credentials");
            Err(Envelope::fail(ApiStatus::OperationFailed))
        }
    }
}
