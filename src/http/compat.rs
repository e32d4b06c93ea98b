//! Request fixes for older clients, applied before socket.io sees a request.

use axum::extract::Request;
use axum::http::Uri;

/// socket.io-client-swift v13–v15 speak engine.io 3 but send no `EIO`
/// query parameter; the engine.io reference server treats a missing `EIO`
/// as 3, while socketioxide refuses the request. This adds `EIO=3` to
/// socket.io requests that lack it.
pub async fn default_engineio_version(mut req: Request) -> Request {
    let uri = req.uri();
    if !uri.path().starts_with("/socket.io") {
        return req;
    }
    let query = uri.query().unwrap_or("");
    if query.split('&').any(|p| p.starts_with("EIO=")) {
        return req;
    }
    let path_and_query = if query.is_empty() {
        format!("{}?EIO=3", uri.path())
    } else {
        format!("{}?{query}&EIO=3", uri.path())
    };
    let mut parts = uri.clone().into_parts();
    match path_and_query.parse() {
        Ok(pq) => {
            parts.path_and_query = Some(pq);
            if let Ok(new_uri) = Uri::from_parts(parts) {
                *req.uri_mut() = new_uri;
            }
        }
        Err(e) => tracing::debug!(error = %e, "could not add EIO to a socket.io request"),
    }
    req
}
