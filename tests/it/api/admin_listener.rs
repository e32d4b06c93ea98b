//! `AO_ADMIN_LISTEN`: the admin API, `/metrics` and the admin API's
//! `/openapi.json` on a listener of their own, and gone from the public one.

use std::net::SocketAddr;

use serde_json::json;

use crate::api::harness::{get, Backend, Bin, Creds, Server, ADMIN};
use crate::support::{self, login};

/// The admin surface: served on `with`, 404 on `without`; health on both.
async fn admin_surface_only_on(with: SocketAddr, without: SocketAddr, creds: &Creds) {
    let url = |at: SocketAddr, path: &str| format!("http://{at}{path}");
    for path in [
        "/admin/monitor/stat",
        "/admin/monitor/room_users?roomId=1",
        "/metrics",
        "/openapi.json",
    ] {
        let r = get(&url(without, path), creds).await;
        assert_eq!(r.status, 404, "{}: {}", r.request, r.text);
        let r = get(&url(with, path), creds).await;
        assert_eq!(r.status, 200, "{}: {}", r.request, r.text);
    }
    let r = get(&url(with, "/admin/monitor/stat"), creds).await;
    assert_eq!(r.json()["meta"]["status"], json!(0), "{}", r.text);
    let doc = get(&url(with, "/openapi.json"), &Creds::None).await.json();
    assert!(doc["paths"].get("/admin/monitor/stat").is_some(), "{doc}");
    for at in [with, without] {
        for path in ["/healthz", "/readyz"] {
            let r = get(&url(at, path), &Creds::None).await;
            assert_eq!(r.status, 200, "{}: {}", r.request, r.text);
        }
    }
    // socket.io stays on the public listener only.
    let r = get(
        &url(with, "/socket.io/?EIO=4&transport=polling"),
        &Creds::None,
    )
    .await;
    assert_eq!(r.status, 404, "{}: {}", r.request, r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_and_metrics_move_to_the_admin_listener() {
    let s = Server::with(Backend::Embedded, |c| {
        c.admin_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let admin = s.admin_addr().expect("an admin listener");
    assert_ne!(admin, s.addr());
    admin_surface_only_on(admin, s.addr(), &s.basic()).await;
    admin_surface_only_on(admin, s.addr(), &s.query()).await;
    // Clients are served on the public listener as before.
    let token = s.create_user(json!("ada")).await;
    let mut c = s.login("ada", &token, "moved").await;
    assert_eq!(c.send_msg(json!({"data": 1})).await["status"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_listener_the_public_one_serves_the_admin_api() {
    let s = Server::start(Backend::Embedded).await;
    assert_eq!(s.admin_addr(), None);
    for path in ["/admin/monitor/stat", "/metrics", "/openapi.json"] {
        let r = get(&s.main_url(path), &s.basic()).await;
        assert_eq!(r.status, 200, "{}: {}", r.request, r.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_names_its_admin_listener_and_stops_gracefully() {
    let dir = support::tempdir();
    let data_dir = dir.path().display().to_string();
    let token = "admin-listener-token";
    let bin = Bin::start(
        &[
            "--dev",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
            &data_dir,
        ],
        &[("AO_ADMIN_UID", ADMIN), ("AO_ADMIN_TOKEN", token)],
    );
    let admin = bin.admin_addr.expect("admin_addr in the listening line");
    admin_surface_only_on(admin, bin.addr, &Creds::Basic(ADMIN.into(), token.into())).await;
    let mut c = login(bin.addr, "bo", "any", "r").await;
    assert_eq!(c.send_msg(json!({"data": 1})).await["status"], json!(0));
    let (status, stderr) = tokio::task::spawn_blocking(move || bin.terminate())
        .await
        .expect("terminate");
    assert_eq!(status.code(), Some(0), "stderr {stderr:#?}");
}
