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

/// Headers of a session-opening request that engine.io reads: the
/// websocket key (to answer the upgrade) and the content type (of polling
/// bodies). Add a header here when a socket.io handler comes to read it
/// through `SocketRef::req_parts`.
const KEPT_HEADERS: [axum::http::HeaderName; 2] = [
    axum::http::header::SEC_WEBSOCKET_KEY,
    axum::http::header::CONTENT_TYPE,
];

/// Copies what a session-opening socket.io request leaves behind for the
/// connection's whole life out of the HTTP read buffer, and drops the
/// headers nothing reads.
///
/// engine.io keeps the parts (URI, headers) of the request that opened a
/// session — a handshake without `sid`, polling or websocket — and a
/// websocket's task holds those of its upgrade request until it closes.
/// hyper parses the URI and headers as slices of its read buffer (8 KiB and
/// more per connection), so one retained slice (the URI, a header, the
/// router's copy of the URI in `OriginalUri`) keeps that whole buffer alive
/// for every connection. Measured with `bench/idle-memory.js`:
/// socket.io-client 4 on its default transports (polling, then websocket)
/// took 34.8 KiB per idle connection with only upgrades detached, 22.9 with
/// this. Fresh copies let the buffer go right after the request.
pub async fn detach_session_request(mut req: Request) -> Request {
    if !opens_session(&req) {
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
    let mut headers = axum::http::HeaderMap::new();
    for name in KEPT_HEADERS {
        for value in req.headers().get_all(&name) {
            if let Ok(copy) = axum::http::HeaderValue::from_bytes(value.as_bytes()) {
                headers.append(name.clone(), copy);
            }
        }
    }
    *req.headers_mut() = headers;
    req
}

/// A websocket upgrade (new session or upgrade of a polling one) or a
/// socket.io handshake without a session id.
fn opens_session(req: &Request) -> bool {
    let is_upgrade = req
        .headers()
        .get(axum::http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if is_upgrade {
        return true;
    }
    let uri = req.uri();
    uri.path().starts_with("/socket.io")
        && !uri
            .query()
            .unwrap_or("")
            .split('&')
            .any(|p| p.starts_with("sid="))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::header;

    fn request(uri: &str, upgrade: bool) -> Request {
        let mut b = Request::builder()
            .uri(uri)
            .header(header::USER_AGENT, "test")
            .header(header::COOKIE, "a=b")
            .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==");
        if upgrade {
            b = b
                .header(header::UPGRADE, "websocket")
                .header(header::CONNECTION, "Upgrade");
        }
        b.body(Body::empty()).expect("request")
    }

    #[tokio::test]
    async fn session_opening_requests_keep_only_what_engine_io_reads() {
        for (uri, upgrade) in [
            ("/socket.io/?EIO=4&transport=polling&t=abc", false),
            ("/socket.io/?EIO=4&transport=websocket", true),
            ("/socket.io/?EIO=4&transport=websocket&sid=xyz", true),
        ] {
            let req = detach_session_request(request(uri, upgrade)).await;
            assert_eq!(req.uri().to_string(), uri);
            let names: Vec<_> = req.headers().keys().map(|k| k.as_str()).collect();
            assert_eq!(names, ["sec-websocket-key"], "{uri}");
            assert_eq!(
                req.headers()[header::SEC_WEBSOCKET_KEY],
                "dGhlIHNhbXBsZSBub25jZQ=="
            );
        }
    }

    #[tokio::test]
    async fn other_requests_are_left_alone() {
        for uri in [
            "/socket.io/?EIO=4&transport=polling&sid=xyz",
            "/admin/rooms",
            "/healthz",
        ] {
            let req = detach_session_request(request(uri, false)).await;
            assert_eq!(req.headers().len(), 3, "{uri}");
        }
    }

    #[tokio::test]
    async fn a_missing_engine_io_version_means_3() {
        let req = default_engineio_version(request("/socket.io/?transport=polling", false)).await;
        assert_eq!(req.uri(), "/socket.io/?transport=polling&EIO=3");
        let req = default_engineio_version(request("/socket.io/?EIO=4", false)).await;
        assert_eq!(req.uri(), "/socket.io/?EIO=4");
    }
}
