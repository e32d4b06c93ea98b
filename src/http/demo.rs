//! The web demo at `/` (main listener): static files built from `web/`
//! (`npm run build` there), served from `web_dir`. When they have not been
//! built, `/` says how to build them.

use std::path::Path;

use axum::handler::HandlerWithoutStateExt;
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use tower_http::services::ServeDir;

/// Routes serving the demo from `dir`; every other path gets `not_found`.
pub fn router<S: Clone + Send + Sync + 'static>(dir: &Path) -> Router<S> {
    if dir.join("index.html").is_file() {
        let files = ServeDir::new(dir)
            .call_fallback_on_method_not_allowed(true)
            .fallback(super::not_found.into_service());
        Router::new().fallback_service(files)
    } else {
        let hint = format!(
            "<!doctype html><title>Always Online</title><h1>Always Online</h1>\
             <p>The web demo has not been built: run <code>npm ci &amp;&amp; npm run build</code> in \
             <code>web/</code> (it is looked for in <code>{}</code>, setting <code>AO_WEB_DIR</code>).</p>",
            html_escape(&dir.display().to_string())
        );
        Router::new()
            .route("/", get(move || async move { Html(hint) }))
            .fallback(super::not_found)
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
