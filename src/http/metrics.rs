//! `GET /metrics`: Prometheus text format.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::app::AppState;
use crate::protocol::ProtocolGeneration;

/// How long the cluster-wide gauges (users, rooms) are reused: however
/// often `/metrics` is scraped, Redis answers two counts this often at most.
const CLUSTER_GAUGES_TTL: Duration = Duration::from_secs(5);

/// Prometheus text exposition of the server's metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain", description = "Prometheus text format")))]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let m = &state.metrics();
    let (mut v3, mut v4) = (0i64, 0i64);
    for s in state.io().sockets() {
        match ProtocolGeneration::of(s.protocol()) {
            ProtocolGeneration::EngineIo3 => v3 += 1,
            ProtocolGeneration::EngineIo4 => v4 += 1,
        }
    }
    m.connected_sockets
        .get_or_create(&crate::metrics::Generation { engineio: "3" })
        .set(v3);
    m.connected_sockets
        .get_or_create(&crate::metrics::Generation { engineio: "4" })
        .set(v4);
    m.take_transport_stats(state.io().stats());
    m.take_http_stats(state.http());
    // One node counts in memory; a cluster asks Redis, at most every TTL.
    if state.bus().is_local_only() || m.cluster_gauges_due(CLUSTER_GAUGES_TTL) {
        if let Ok((users, rooms)) = state.cluster().counts().await {
            m.authenticated_users.set(users as i64);
            m.rooms.set(rooms as i64);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
}
