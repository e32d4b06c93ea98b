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

/// Copies what a websocket upgrade request keeps for the connection's whole
/// life out of the HTTP read buffer.
///
/// hyper parses the URI and headers as slices of its read buffer (8 KiB and
/// more per connection), and engine.io keeps the request's parts for the
/// session's lifetime, so one retained slice (the URI, a header, the router's
/// copy of the URI in `OriginalUri`) keeps that whole buffer alive for every
/// websocket connection. Fresh copies let it go right after the upgrade.
pub async fn detach_upgrade_request(mut req: Request) -> Request {
    let is_upgrade = req
        .headers()
        .get(axum::http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !is_upgrade {
        return req;
    }
    if let Ok(uri) = req.uri().to_string().parse::<Uri>() {
        *req.uri_mut() = uri.clone();
        if req
            .extensions()
            .get::<axum::extract::OriginalUri>()
            .is_some()
        {
            req.extensions_mut().insert(axum::extract::OriginalUri(uri));
        }
    }
    let mut headers = axum::http::HeaderMap::with_capacity(req.headers().len());
    for (name, value) in req.headers() {
        if let Ok(copy) = axum::http::HeaderValue::from_bytes(value.as_bytes()) {
            headers.append(name.clone(), copy);
        }
    }
    *req.headers_mut() = headers;
    req
}
