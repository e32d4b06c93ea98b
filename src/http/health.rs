//! `/healthz` (the process is alive) and `/readyz` (its stores answer).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::realtime::Hub;

/// Routes for liveness and readiness.
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .with_state(hub)
}

async fn ready(State(hub): State<Arc<Hub>>) -> (StatusCode, Json<serde_json::Value>) {
    match hub.messages.page("", 0, 0).await {
        Ok(_) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "reason": e.to_string()})),
        ),
    }
}
