//! HTTP long-polling: the handshake, the GET that waits for the server's
//! packets and the POST that carries the client's.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use axum::body::Body;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;

use crate::engine::payload::{self, Decoder, BINARY_CONTENT_TYPE};
use crate::engine::session::Session as Conn;
use crate::engine::{DisconnectReason, Transport};
use crate::engine::{Frame, Packet};
use crate::inner::{error_response, EngineError, Inner};

/// How long a disconnect packet held back from an answer waits after it.
const DISCONNECT_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// How long a poll made while a websocket probes the session waits
/// before its noop (engine.io checks every 100 ms).
const UPGRADING_NOOP_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// The most a long-poll answer carries at once; the rest waits for the
/// next poll.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Answers a polling handshake: the open packet (and, for a socket.io 2.x
/// client, the namespace's connect packet) and starts the connection's task.
pub(crate) fn handshake(inner: Arc<Inner>, conn: Arc<Conn>) -> Response<Body> {
    let _ = conn.push(conn.open_packet(true, &inner.config));
    conn.opened();
    let mut frames = Vec::new();
    conn.outbox.take_now(&mut frames);
    tokio::spawn(crate::driver::run_polling(conn.clone()));
    answer(&conn, &frames)
}

fn answer(conn: &Conn, frames: &[Frame]) -> Response<Body> {
    let encoded = payload::encode(conn.eio, conn.b64, frames);
    let mut res = Response::new(Body::from(encoded.body));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(encoded.content_type));
    res
}

/// Clears a flag of the connection's state when the request ends, however
/// it ends (answered, or dropped because the client went away).
struct Busy<'a> {
    conn: &'a Conn,
    get: bool,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut state = self.conn.state();
        if self.get {
            state.polling = false;
        } else {
            state.posting = false;
            state.post_waker = None;
        }
    }
}

/// A long-poll: waits for packets, the upgrade or the close.
pub(crate) async fn poll(conn: Arc<Conn>) -> Response<Body> {
    {
        let mut state = conn.state();
        if state.transport == Transport::Websocket {
            return error_response(StatusCode::BAD_REQUEST, EngineError::BadRequest);
        }
        if state.polling {
            drop(state);
            tracing::debug!(sid = %conn.sid, "two long-polls at once");
            conn.close(DisconnectReason::ProtocolError);
            return error_response(StatusCode::BAD_REQUEST, EngineError::BadRequest);
        }
        state.polling = true;
    }
    let _busy = Busy {
        conn: &conn,
        get: true,
    };
    // A poll that came after a websocket opened for this session: the
    // client's poll crossing the probe (answered with a noop shortly, as
    // engine.io does), or a request made after the upgrade (refused once
    // the upgrade packet is in).
    let late = {
        let state = conn.state();
        state.upgrade.is_some() || state.probing || state.upgrading
    };
    let mut frames = Vec::new();
    let waited = std::future::poll_fn(|cx| {
        let ready = conn.outbox.poll_take(cx, &mut frames, MAX_ANSWER_BYTES);
        if ready.is_ready() {
            return ready;
        }
        let state = conn.state();
        if state.closing.is_some()
            || (state.upgrading && !late)
            || state.transport == Transport::Websocket
        {
            return std::task::Poll::Ready(());
        }
        std::task::Poll::Pending
    });
    if late {
        let _ = tokio::time::timeout(UPGRADING_NOOP_AFTER, waited).await;
        if frames.is_empty() && conn.state().transport == Transport::Websocket {
            return error_response(StatusCode::BAD_REQUEST, EngineError::BadRequest);
        }
    } else {
        waited.await;
    }
    // A disconnect packet goes out in an answer of its own, a moment after
    // the events before it: python-socketio hands each polled packet to a
    // thread of its own, and could otherwise act on the disconnect before
    // the events that came just before it.
    if let Some(at) = frames.iter().position(is_disconnect).filter(|&at| at > 0) {
        conn.outbox.unshift(frames.split_off(at));
        conn.state().disconnect_after = Some(std::time::Instant::now() + DISCONNECT_AFTER);
    } else if frames.first().is_some_and(is_disconnect) {
        let after = conn.state().disconnect_after.take();
        if let Some(wait) =
            after.and_then(|at| at.checked_duration_since(std::time::Instant::now()))
        {
            tokio::time::sleep(wait).await;
        }
    }
    let (closing, upgrading) = {
        let state = conn.state();
        (
            state.closing,
            state.upgrading || state.transport == Transport::Websocket,
        )
    };
    // The close packet goes out alone too, after the last packets were
    // delivered, as engine.io does: socket.io clients hand decoded packets
    // on a tick later, so a close in the same answer would overtake them.
    // A client that closed itself is answered with a noop, as engine.io
    // answers it.
    if closing == Some(DisconnectReason::ClientClose) && frames.is_empty() {
        frames.push(Packet::Noop.encode());
        // The client's session ends with this answer: a later request
        // is refused as unknown, even before the session's task has
        // finished it (it waits for this poll, see the driver, and is
        // woken now).
        if let Some(server) = conn.server.upgrade() {
            server.forget(&conn);
        }
        conn.wake.notify_one();
    } else if closing.is_some() && frames.is_empty() {
        frames.push(Packet::Close.encode());
    } else if frames.is_empty() && (upgrading || late) {
        frames.push(Packet::Noop.encode());
    }
    answer(&conn, &frames)
}

/// A POST: the client's packets, handed on one at a time while the
/// connection's read gate is open.
pub(crate) async fn post(inner: Arc<Inner>, conn: Arc<Conn>, req: Request<Body>) -> Response<Body> {
    {
        let mut state = conn.state();
        if state.posting {
            drop(state);
            tracing::debug!(sid = %conn.sid, "two POSTs at once");
            conn.close(DisconnectReason::ProtocolError);
            return error_response(StatusCode::BAD_REQUEST, EngineError::BadRequest);
        }
        state.posting = true;
    }
    let _busy = Busy {
        conn: &conn,
        get: false,
    };
    let binary = req
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(BINARY_CONTENT_TYPE.as_bytes()));
    let body = match read_body(&inner, &conn, req.into_body()).await {
        Ok(body) => body,
        Err(res) => return res,
    };
    if let Err(res) = deliver(&conn, body, binary).await {
        return res;
    }
    let mut res = Response::new(Body::from("ok"));
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    res
}

/// Reads a POST's body whole, within the body cap; the HTTP server holds it
/// to its deadline. Reading stops at once when the session closes
/// meanwhile: what was read is dropped, and so is the client's TCP
/// connection after the answer.
async fn read_body(inner: &Inner, conn: &Conn, body: Body) -> Result<Bytes, Response<Body>> {
    let collect = http_body_util::Limited::new(body, inner.config.max_payload_bytes).collect();
    tokio::pin!(collect);
    let read = std::future::poll_fn(|cx| {
        if let Poll::Ready(read) = collect.as_mut().poll(cx) {
            return Poll::Ready(Some(read));
        }
        let mut state = conn.state();
        if state.closing.is_some() {
            return Poll::Ready(None);
        }
        match &mut state.post_waker {
            Some(w) => w.clone_from(cx.waker()),
            None => state.post_waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    })
    .await;
    let e = match read {
        Some(Ok(body)) => return Ok(body.to_bytes()),
        Some(Err(e)) => e,
        None => {
            tracing::debug!(sid = %conn.sid, "polling body cut: the session closed");
            return Err(error_response(
                StatusCode::BAD_REQUEST,
                EngineError::BadRequest,
            ));
        }
    };
    tracing::debug!(sid = %conn.sid, error = %e, "polling body not read");
    if e.is::<http_body_util::LengthLimitError>() {
        conn.close(DisconnectReason::ProtocolError);
        let mut res = Response::new(Body::from("payload too large"));
        *res.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        return Err(res);
    }
    conn.close(DisconnectReason::TransportClose);
    let status = if crate::serve::BodyTimeout::caused(&*e) {
        StatusCode::REQUEST_TIMEOUT
    } else {
        StatusCode::BAD_REQUEST
    };
    Err(error_response(status, EngineError::BadRequest))
}

async fn deliver(conn: &Arc<Conn>, body: Bytes, binary: bool) -> Result<(), Response<Body>> {
    for packet in Decoder::new(conn.eio, body, binary) {
        conn.gate.opened().await;
        if conn.closing().is_some() {
            break;
        }
        match packet {
            Ok(packet) => conn.on_packet(packet),
            Err(e) => {
                tracing::debug!(sid = %conn.sid, error = %e, "malformed polling payload");
                conn.close(DisconnectReason::ProtocolError);
                return Err(error_response(
                    StatusCode::BAD_REQUEST,
                    EngineError::BadRequest,
                ));
            }
        }
    }
    Ok(())
}

/// A socket.io disconnect packet of the default namespace.
fn is_disconnect(frame: &Frame) -> bool {
    matches!(frame, Frame::Text(t) if &t[..] == b"41")
}
