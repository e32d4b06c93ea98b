//! The web demo at `/` (main listener): the static files built from `web/`
//! (`npm run build` there), built into the binary, so an installed binary
//! serves it from any directory. `AO_WEB_DIR` serves a directory instead
//! (developing the demo). When neither has it, `/` says how to build it.

use std::path::Path;

use axum::handler::HandlerWithoutStateExt;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::services::ServeDir;

/// The built demo, embedded at compile time (read from `web/dist` at run
/// time in debug builds). Empty when the demo was not built first.
#[derive(rust_embed::Embed)]
#[folder = "web/dist/"]
#[allow_missing = true]
struct Dist;

/// Routes serving the demo, from `dir` if given, else the embedded copy;
/// every other path gets `not_found`.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(dir: Option<&Path>) -> Router<S> {
    match dir {
        Some(dir) if dir.join("index.html").is_file() => {
            let files = ServeDir::new(dir)
                .call_fallback_on_method_not_allowed(true)
                .fallback(super::not_found.into_service());
            Router::new().fallback_service(files)
        }
        None if Dist::get("index.html").is_some() => Router::new().fallback(embedded),
        _ => {
            let place = dir.map_or_else(
                || "this binary (build the demo, then the binary)".to_owned(),
                |d| d.display().to_string(),
            );
            let hint = format!(
                "<!doctype html><title>Always Online</title><h1>Always Online</h1>\
                 <p>The web demo has not been built: run <code>npm ci &amp;&amp; npm run build</code> in \
                 <code>web/</code> (it is looked for in {}; <code>AO_WEB_DIR</code> names a directory).</p>",
                html_escape(&place)
            );
            Router::new()
                .route("/", get(move || async move { Html(hint) }))
                .fallback(super::not_found)
        }
    }
}

/// One file of the embedded demo, with its type and an `ETag`.
async fn embedded(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return super::not_found().await.into_response();
    }
    let path = match uri.path().trim_start_matches('/') {
        "" => "index.html",
        p if p.ends_with('/') => return super::not_found().await.into_response(),
        p => p,
    };
    let Some(file) = Dist::get(path) else {
        return super::not_found().await.into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..12]));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        file.data.into_owned().into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(file.metadata.mimetype()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    response
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
