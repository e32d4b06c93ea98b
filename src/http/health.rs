//! `/healthz` (the process is alive) and `/readyz` (its stores answer, the
//! embedded store's writer is alive and, in a cluster, a frame published
//! on Redis comes back).
//!
//! `/readyz` says why it is not ready, and what is worth a warning, only on
//! the internal listeners (accounts API, admin API when it has its own):
//! the public listener answers `{"status": "not ready"}` alone, so callers
//! on the internet learn nothing about the backends.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::logging::Chain;

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "{\"status\": \"ok\"}")))]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The stores answer and the store's writer is alive; 503 when not. On
/// an internal listener the body gives the reason, and `warnings` (such
/// as Redis without its append-only file) when there are any.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "{\"status\": \"ready\"}, with \"warnings\": [...] when there are any (internal listeners)"),
              (status = 503, description = "{\"status\": \"not ready\", \"reason\": ...} (the reason on internal listeners only)")))]
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let failure = check(&state).await;
    let mut body = match &failure {
        None => json!({"status": "ready"}),
        Some(reason) => json!({"status": "not ready", "reason": reason}),
    };
    let warnings: Vec<&str> = state
        .redis_persistence()
        .iter()
        .filter_map(|p| p.warning())
        .collect();
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    (status(&failure), Json(body))
}

/// `/readyz` on the public listener: the same check, without details.
pub(crate) async fn readyz_public(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let failure = check(&state).await;
    let body = match failure {
        None => json!({"status": "ready"}),
        Some(_) => json!({"status": "not ready"}),
    };
    (status(&failure), Json(body))
}

fn status(failure: &Option<String>) -> StatusCode {
    match failure {
        None => StatusCode::OK,
        Some(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Why the node is not ready, if it is not.
async fn check(state: &AppState) -> Option<String> {
    let (messages, accounts, bus) = tokio::join!(
        state.messages().ping(),
        state.accounts().ping(),
        state.bus().probe()
    );
    let failure = match (messages, accounts, bus) {
        (Ok(()), Ok(()), Ok(())) => None,
        (Err(e), _, _) => Some(format!("message store: {ec}", ec = Chain(&e))),
        (_, Err(e), _) => Some(format!("account store: {ec}", ec = Chain(&e))),
        (_, _, Err(e)) => Some(format!("redis pub/sub: {e}")),
    };
    state.metrics().ready.set(i64::from(failure.is_none()));
    failure
}
