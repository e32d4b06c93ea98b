//! `/healthz` (the process is alive) and `/readyz` (its stores answer and,
//! in a cluster, a frame published on Redis comes back).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::realtime::AppState;

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "{\"status\": \"ok\"}")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The stores answer; 503 with a JSON reason when one does not.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "{\"status\": \"ready\"}"),
              (status = 503, description = "{\"status\": \"not ready\", \"reason\": ...}")))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let (messages, accounts, bus) = tokio::join!(
        state.messages.ping(),
        state.accounts.ping(),
        state.bus.probe()
    );
    let failure = match (messages, accounts, bus) {
        (Ok(()), Ok(()), Ok(())) => None,
        (Err(e), _, _) => Some(format!("message store: {e}")),
        (_, Err(e), _) => Some(format!("account store: {e}")),
        (_, _, Err(e)) => Some(format!("redis pub/sub: {e}")),
    };
    match failure {
        None => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "reason": reason})),
        ),
    }
}
