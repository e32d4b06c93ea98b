//! Ties the requests of a long-polling or upgrading socket.io session to
//! its inbox's back-pressure ([`crate::realtime::inbox`]): a POST's body is
//! read only while the session's valve is open ([`ValvedBody`]), and a
//! websocket that upgrades a session brings its connection's valve to the
//! session.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use socketioxide::socket::Sid;

use crate::realtime::AppState;
use crate::valve::{Peer, ValvedBody};

/// The middleware: passes every request on, after tying a session's
/// POSTs and upgrades to its inbox.
pub async fn tie_to_session(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(sid) = session_id(&req) {
        if let Some(inbox) = crate::realtime::inbox_of(&state.io, sid) {
            if req.method() == axum::http::Method::POST {
                if let Some(valve) = inbox.valve() {
                    req = req.map(|body| ValvedBody::wrap(body, valve));
                }
            } else if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<Peer>>() {
                if is_websocket_upgrade(&req) {
                    inbox.set_valve(peer.valve.clone());
                }
            }
        }
    }
    next.run(req).await
}

/// The engine.io session id of a socket.io request, if it has one.
fn session_id(req: &Request) -> Option<Sid> {
    let uri = req.uri();
    if !uri.path().starts_with("/socket.io") {
        return None;
    }
    uri.query()?
        .split('&')
        .find_map(|p| p.strip_prefix("sid="))
        .and_then(|sid| sid.parse().ok())
}

fn is_websocket_upgrade(req: &Request) -> bool {
    req.headers()
        .get(axum::http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[test]
    fn the_session_id_is_read_from_socket_io_requests_only() {
        let req = |uri: &str| {
            Request::builder()
                .uri(uri)
                .body(Body::empty())
                .expect("request")
        };
        let sid = "AAAAAAAAAAAAAAAA";
        assert_eq!(
            session_id(&req(&format!(
                "/socket.io/?EIO=4&transport=polling&sid={sid}"
            )))
            .map(|s| s.to_string()),
            Some(sid.to_owned())
        );
        assert!(session_id(&req("/socket.io/?EIO=4&transport=polling")).is_none());
        assert!(session_id(&req(&format!("/admin/?sid={sid}"))).is_none());
        assert!(session_id(&req("/socket.io/?sid=bad")).is_none());
    }
}
