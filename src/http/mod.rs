//! HTTP routes served beside socket.io (main listener), on the internal
//! listener and, when it is set, on the admin listener. Policy: API calls
//! answer HTTP 200 with the `{meta, data}` envelope; a body that cannot be
//! parsed is HTTP 400, one over 64 kB is HTTP 413, one slower than
//! `AO_BODY_TIMEOUT_MS` HTTP 408, an unknown route HTTP 404. Bodies are
//! read after the credentials are checked.

pub(crate) mod accounts;
pub(crate) mod admin;
pub(crate) mod demo;
pub(crate) mod health;
pub(crate) mod metrics;
pub(crate) mod openapi;
pub(crate) mod request;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use utoipa::OpenApi;

use crate::app::AppState;

/// Routes of the main listener: socket.io and health, with the admin API,
/// metrics and the admin API's OpenAPI document when `with_admin` (they
/// have no listener of their own), and the web demo at `/` unless it is
/// turned off. Its `/readyz` gives no details.
pub(crate) fn main_router(state: Arc<AppState>, with_admin: bool) -> Router {
    let routes = Router::new()
        .route_service("/socket.io/", state.io().clone())
        .route_service("/socket.io", state.io().clone())
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz_public));
    let routes = if with_admin {
        routes.merge(admin_routes())
    } else {
        routes
    };
    let routes = if state.config().demo {
        routes.merge(demo::router(state.config().web_dir.as_deref()))
    } else {
        routes.fallback(not_found)
    };
    routes
        .layer(DefaultBodyLimit::max(request::MAX_BODY_BYTES))
        .with_state(state)
}

/// Routes of the admin listener (`AO_ADMIN_LISTEN`): the admin API,
/// metrics, its OpenAPI document and health, `/readyz` with details.
pub(crate) fn admin_router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(admin_routes())
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(request::MAX_BODY_BYTES))
        .with_state(state)
}

/// The admin API, `/metrics` and the admin API's `/openapi.json`.
fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .merge(admin::router())
        .route("/metrics", get(metrics::metrics))
        .route(
            "/openapi.json",
            get(|| async { Json(openapi::AdminApi::openapi()) }),
        )
}

/// Routes of the internal listener: the accounts API and health,
/// `/readyz` with details.
pub(crate) fn api_router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(accounts::router())
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route(
            "/openapi.json",
            get(|| async { Json(openapi::AccountsApi::openapi()) }),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(request::MAX_BODY_BYTES))
        .with_state(state)
}

async fn not_found() -> (StatusCode, Json<serde_json::Value>) {
    (StatusCode::NOT_FOUND, Json(json!({"error": "not found"})))
}
