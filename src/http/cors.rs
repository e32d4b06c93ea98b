//! CORS for socket.io's long-polling requests, as socket.io 2.x answered
//! them: a page from any origin may connect, with credentials. A request
//! with an `Origin` gets `Access-Control-Allow-Origin: <that origin>` and
//! `Access-Control-Allow-Credentials: true` (one without gets `*`); a
//! preflight (`OPTIONS`) is answered 200 with the methods and the headers
//! it asked for. Websocket handshakes need none of this: browsers do not
//! apply CORS to them.
//!
//! Written here rather than with tower-http's `CorsLayer`: socket.io 2.x's
//! answers (origin mirrored with credentials, an `OPTIONS` on any
//! socket.io path answered 200 whatever follows) are what its clients were
//! written against, and the layer would also apply to the admin API.

use axum::extract::Request;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS, ORIGIN,
    VARY,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The middleware: answers preflights of socket.io requests and adds the
/// CORS headers to their responses.
pub async fn socket_io_cors(req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/socket.io") {
        return next.run(req).await;
    }
    let origin = req.headers().get(ORIGIN).cloned();
    if req.method() == Method::OPTIONS {
        let mut headers = HeaderMap::new();
        allow(&mut headers, origin.as_ref());
        headers.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        let asked = req
            .headers()
            .get(ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or(HeaderValue::from_static("Content-Type"));
        headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked);
        headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
        return (StatusCode::OK, headers).into_response();
    }
    let mut res = next.run(req).await;
    allow(res.headers_mut(), origin.as_ref());
    res
}

/// The origin and credentials headers for a request from `origin`.
fn allow(headers: &mut HeaderMap, origin: Option<&HeaderValue>) {
    match origin {
        Some(origin) => {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            headers.append(VARY, HeaderValue::from_static("Origin"));
        }
        None => {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route("/socket.io/", get(|| async { "ok" }))
            .route("/admin", get(|| async { "admin" }))
            .layer(axum::middleware::from_fn(socket_io_cors))
    }

    #[tokio::test]
    async fn a_request_from_another_origin_is_allowed_with_credentials() {
        let res = app()
            .oneshot(
                Request::get("/socket.io/?EIO=3&transport=polling")
                    .header(ORIGIN, "http://page.example:8080")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(res.status(), StatusCode::OK);
        let h = res.headers();
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "http://page.example:8080");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    }

    #[tokio::test]
    async fn a_preflight_is_answered_with_what_it_asked_for() {
        let res = app()
            .oneshot(
                Request::options("/socket.io/?EIO=4&transport=polling&sid=x")
                    .header(ORIGIN, "http://page.example")
                    .header("access-control-request-method", "POST")
                    .header(ACCESS_CONTROL_REQUEST_HEADERS, "content-type, x-custom")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(res.status(), StatusCode::OK);
        let h = res.headers();
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "http://page.example");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_HEADERS], "content-type, x-custom");
        assert!(h[ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .is_ok_and(|m| m.contains("POST")));
    }

    #[tokio::test]
    async fn other_routes_and_native_clients_are_left_alone() {
        let res = app()
            .oneshot(
                Request::get("/admin")
                    .header(ORIGIN, "http://page.example")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert!(res.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        let res = app()
            .oneshot(
                Request::get("/socket.io/")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(res.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }
}
