//! Websocket requests: a new session on a websocket, or the websocket that
//! upgrades a long-polling session. The handshake is answered here; the
//! connection's task ([`crate::driver`]) takes the upgraded stream.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::engine::session::Session;
use crate::engine::EngineVersion;
use crate::engine::Transport;
use crate::inner::{error_response, EngineError, Inner};

/// Bytes of frames gathered before they are written to the socket.
const WRITE_BATCH_BYTES: usize = 16 * 1024;

/// An upgraded websocket, boxed: it is handed from the handshake to the
/// connection's task and its phases, and each async function that takes it
/// by value would keep a copy's worth of room in the task for its whole life.
pub(crate) type Ws = Box<WebSocketStream<TokioIo<Upgraded>>>;

/// The 101 answer to a valid websocket handshake, and the upgrade to come.
fn handshake(req: Request<Body>) -> Result<(Response<Body>, OnUpgrade), Box<Response<Body>>> {
    let headers = req.headers();
    let is_upgrade = headers
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let version_ok = headers
        .get(SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()));
    let (true, true, Some(accept)) = (is_upgrade, version_ok, key) else {
        return Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            EngineError::BadRequest,
        )));
    };
    let mut req = req;
    let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        return Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            EngineError::BadRequest,
        )));
    };
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok((res, on_upgrade))
}

/// Wraps an upgraded connection in the websocket protocol.
pub(crate) async fn stream(inner: &Inner, upgraded: Upgraded) -> Ws {
    let config = WebSocketConfig::default()
        .read_buffer_size(inner.config.ws_read_buffer_bytes)
        // What the task takes from the outbox in one go is written with one
        // flush (one system call for a burst, not one per frame).
        .write_buffer_size(WRITE_BATCH_BYTES)
        .max_message_size(Some(inner.config.max_message_bytes))
        .max_frame_size(Some(inner.config.max_message_bytes));
    Box::new(
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await,
    )
}

/// A new session on a websocket.
pub(crate) fn accept(
    inner: Arc<Inner>,
    req: Request<Body>,
    eio: EngineVersion,
    peer: Option<SocketAddr>,
) -> Response<Body> {
    let (res, on_upgrade) = match handshake(req) {
        Ok(ok) => ok,
        Err(res) => return *res,
    };
    let conn = inner.open(eio, false, Transport::Websocket, peer);
    tokio::spawn(async move {
        let ws = match on_upgrade.await {
            Ok(upgraded) => stream(&inner, upgraded).await,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                conn.finish();
                return;
            }
        };
        let _ = conn.push(conn.open_packet(false, &inner.config));
        drop(inner);
        conn.opened();
        crate::driver::run_websocket(conn, ws).await;
    });
    res
}

/// A websocket that upgrades long-polling session `conn`: handed to the
/// session's task, which runs the probe. A websocket for a session that
/// upgraded already (or is upgrading) completes its handshake and is
/// closed at once, as engine.io closes it.
pub(crate) fn upgrade(inner: Arc<Inner>, conn: Arc<Session>, req: Request<Body>) -> Response<Body> {
    let taken = {
        let state = conn.state();
        if state.closing.is_some() {
            return error_response(StatusCode::BAD_REQUEST, EngineError::BadRequest);
        }
        state.transport != Transport::Polling
            || state.upgrading
            || state.probing
            || state.upgrade.is_some()
    };
    let (res, on_upgrade) = match handshake(req) {
        Ok(ok) => ok,
        Err(res) => return *res,
    };
    if taken {
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let mut ws = stream(&inner, upgraded).await;
                let _ = futures_util::SinkExt::close(&mut ws).await;
            }
        });
        return res;
    }
    conn.state().upgrade = Some(on_upgrade);
    conn.wake.notify_one();
    res
}
