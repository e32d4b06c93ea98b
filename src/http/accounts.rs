//! The accounts API (internal listener): create and refresh user tokens.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Map, Value};

use super::request::{body_params, query_params, read_body, require_admin, Peer, Refused, Reply};
use crate::accounts::{AccountError, Kind};
use crate::app::AppState;
use crate::logging::Chain;
use crate::protocol::api::{ApiStatus, Envelope};
use crate::protocol::parse_id;

/// `POST /user/create_token` and `POST /user/refresh_token`.
pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/user/create_token", post(create_token))
        .route("/user/refresh_token", post(refresh_token))
}

/// The body of both calls: `{uid}` as JSON or form data.
/// (Only describes the body in the OpenAPI document; the handlers read
/// JSON and form bodies alike through `request::body_params`.)
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct UidBody {
    /// A non-empty string or a non-zero number.
    #[schema(value_type = String)]
    uid: Value,
}

/// Create a user with a fresh token.
#[utoipa::path(post, path = "/user/create_token", tag = "accounts",
    params(
        ("uid" = Option<String>, Query, description = "admin uid (or HTTP Basic auth)"),
        ("token" = Option<String>, Query, description = "admin token (or HTTP Basic auth)"),
    ),
    request_body(content = UidBody, content_type = "application/json",
        description = "also accepted as application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = Envelope, description = "status 0 with {uid, token}; 1 require permission; 2 user exists; 3 operation failed; 5 param error"),
        (status = 400, description = "malformed body"),
        (status = 408, description = "body not received within AO_BODY_TIMEOUT_MS"),
        (status = 413, description = "body over 64 kB"),
    ))]
pub(crate) async fn create_token(
    State(state): State<Arc<AppState>>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Reply {
    token_call(&state, peer, &headers, query.as_deref(), body, false).await
}

/// Give a user a new token; the old one stops working at once.
#[utoipa::path(post, path = "/user/refresh_token", tag = "accounts",
    params(
        ("uid" = Option<String>, Query, description = "admin uid (or HTTP Basic auth)"),
        ("token" = Option<String>, Query, description = "admin token (or HTTP Basic auth)"),
    ),
    request_body(content = UidBody, content_type = "application/json",
        description = "also accepted as application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = Envelope, description = "status 0 with {uid, token}; 1 require permission; 3 operation failed; 5 param error; 6 user not exists"),
        (status = 400, description = "malformed body"),
        (status = 408, description = "body not received within AO_BODY_TIMEOUT_MS"),
        (status = 413, description = "body over 64 kB"),
    ))]
pub(crate) async fn refresh_token(
    State(state): State<Arc<AppState>>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Reply {
    token_call(&state, peer, &headers, query.as_deref(), body, true).await
}

async fn token_call(
    state: &AppState,
    peer: Peer,
    headers: &HeaderMap,
    query: Option<&str>,
    body: Body,
    refresh: bool,
) -> Reply {
    let query = query_params(query);
    // The credentials first: without them the body is not waited for. A
    // store failure still reads it, to name the uid as every status 3 does.
    let store_failed = match require_admin(state, peer, headers, &query).await {
        Ok(()) => false,
        Err(Refused::Envelope(e)) if e.meta.status == ApiStatus::OperationFailed as u8 => true,
        Err(refused) => return refused.into(),
    };
    let body = match read_body(body).await.and_then(|b| body_params(headers, &b)) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let uid = body.get("uid").and_then(parse_id);
    if store_failed {
        return match &uid {
            Some(uid) => Envelope::new(ApiStatus::OperationFailed, json!({"uid": uid.json})).into(),
            None => Envelope::fail(ApiStatus::OperationFailed).into(),
        };
    }
    let Some(uid) = uid else {
        return Envelope::fail(ApiStatus::ParamError).into();
    };
    let result = if refresh {
        state.accounts().refresh(Kind::User, &uid.key).await
    } else {
        state.accounts().create(Kind::User, &uid.key).await
    };
    let with_uid = |status| {
        let mut data = Map::new();
        data.insert("uid".into(), uid.json.clone());
        Envelope::new(status, Value::Object(data))
    };
    match result {
        Ok(token) => {
            tracing::info!(uid = ?crate::client_log::Clipped(&uid.key), refresh, "user token issued");
            Envelope::ok(json!({"uid": uid.json, "token": token})).into()
        }
        Err(AccountError::Exists) => Envelope::fail(ApiStatus::UserExists).into(),
        Err(AccountError::NotFound) => with_uid(ApiStatus::UserNotExists).into(),
        Err(e) => {
            tracing::error!(error = %Chain(&e), "account store failed");
            with_uid(ApiStatus::OperationFailed).into()
        }
    }
}
