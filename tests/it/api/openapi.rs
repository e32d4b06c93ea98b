//! `/openapi.json` on each listener documents every route it serves.

use serde_json::{json, Value};

use crate::api::harness::{call, get, Backend, Body, Creds, Server};

/// The (path, method) pairs of `doc`'s `paths`.
fn documented(doc: &Value) -> Vec<(String, String)> {
    let paths = doc["paths"]
        .as_object()
        .unwrap_or_else(|| panic!("no paths object: {doc}"));
    let mut out = Vec::new();
    for (path, item) in paths {
        let item = item
            .as_object()
            .unwrap_or_else(|| panic!("path item of {path}: {item}"));
        for method in ["get", "post", "put", "delete", "patch", "head", "options"] {
            if item.contains_key(method) {
                out.push((path.clone(), method.to_owned()));
            }
        }
    }
    out
}

async fn openapi(url: &str) -> Value {
    let r = get(url, &Creds::None).await;
    assert_eq!(r.status, 200, "{}: {}", r.request, r.text);
    let doc = r.json();
    let version = doc["openapi"]
        .as_str()
        .unwrap_or_else(|| panic!("no openapi version: {doc}"));
    assert!(version.starts_with("3."), "OpenAPI 3: {version}");
    assert!(doc["info"]["title"].is_string(), "info.title: {doc}");
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_documents_its_routes() {
    let s = Server::start(Backend::Embedded).await;
    let accounts = [
        ("/user/create_token", "post"),
        ("/user/refresh_token", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ];
    let main = [
        ("/admin/monitor/stat", "get"),
        ("/admin/monitor/room_users", "get"),
        ("/admin/monitor/room_msgs", "get"),
        ("/admin/system/push", "post"),
        ("/admin/system/config", "post"),
        ("/admin/system/clear_room_msgs", "post"),
        ("/admin/system/clear_room_msg", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ];
    for (base, routes) in [(s.api_url(""), &accounts[..]), (s.main_url(""), &main[..])] {
        let doc = openapi(&format!("{base}/openapi.json")).await;
        let listed = documented(&doc);
        for (path, method) in routes {
            assert!(
                listed.contains(&(path.to_string(), method.to_string())),
                "{base}: {method} {path} is not documented; documented: {listed:?}"
            );
        }
        // Everything documented is served here, with that method.
        for (path, method) in &listed {
            let method: reqwest::Method = method.to_uppercase().parse().expect("method");
            let body = if method == reqwest::Method::POST {
                Body::Json(json!({}))
            } else {
                Body::Empty
            };
            let r = call(method.clone(), &format!("{base}{path}"), &s.basic(), body).await;
            assert!(
                r.status != 404 && r.status != 405,
                "{base}: documented {method} {path} answers {}",
                r.status
            );
        }
    }
    // The accounts listener does not serve the admin API, nor the main one the accounts API.
    let doc = openapi(&s.api_url("/openapi.json")).await;
    assert!(doc["paths"].get("/admin/monitor/stat").is_none());
    let doc = openapi(&s.main_url("/openapi.json")).await;
    assert!(doc["paths"].get("/user/create_token").is_none());
}
