//! The server: its connections and rooms, and the HTTP entry point that
//! takes every engine.io request (handshakes, long-polls, websockets).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    CONTENT_TYPE, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

use crate::address::{Address, HandshakeRate};
use crate::config::Config;
use crate::engine::{EngineVersion, Frame};
use crate::id::Id;
use crate::socket::conn::{Conn, DisconnectReason, Service, Socket, Transport};
use crate::stats::{Refusal, Stats};

/// A socket.io server. Cheap to clone; every clone is the same server.
#[derive(Clone)]
pub struct Server {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) service: Box<dyn Service>,
    pub(crate) stats: Stats,
    /// Connections by engine.io session id.
    sessions: Mutex<HashMap<Id, Arc<Conn>>>,
    /// Connections by socket id.
    sockets: Mutex<HashMap<Id, Arc<Conn>>>,
    rooms: Mutex<HashMap<Box<str>, Vec<Arc<Conn>>>>,
    /// Addresses that hold connections, while a per-address limit is set.
    per_address: Mutex<HashMap<IpAddr, Address>>,
    handshake_rate: Option<HandshakeRate>,
    count: AtomicUsize,
    closed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one broadcast did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Connections the frame was queued for.
    pub sent: u64,
    /// Connections whose queue was full (they are being disconnected).
    pub dropped: u64,
}

/// The parts of an engine.io request's query the server reads.
#[derive(Debug, Default)]
struct Query<'a> {
    eio: Option<&'a str>,
    transport: Option<&'a str>,
    sid: Option<&'a str>,
    b64: bool,
    jsonp: bool,
}

fn query(q: &str) -> Query<'_> {
    let mut out = Query::default();
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "EIO" => out.eio = Some(v),
            "transport" => out.transport = Some(v),
            "sid" => out.sid = Some(v),
            "b64" => out.b64 = !v.is_empty() && v != "0" && v != "false",
            "j" => out.jsonp = true,
            _ => {}
        }
    }
    out
}

/// engine.io's error answers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EngineError {
    UnknownTransport,
    UnknownSid,
    BadHandshakeMethod,
    BadRequest,
    Forbidden,
    UnsupportedVersion,
}

impl EngineError {
    fn code_and_message(self) -> (u8, &'static str) {
        match self {
            EngineError::UnknownTransport => (0, "Transport unknown"),
            EngineError::UnknownSid => (1, "Session ID unknown"),
            EngineError::BadHandshakeMethod => (2, "Bad handshake method"),
            EngineError::BadRequest => (3, "Bad request"),
            EngineError::Forbidden => (4, "Forbidden"),
            EngineError::UnsupportedVersion => (5, "Unsupported protocol version"),
        }
    }
}

/// A JSON error answer `{"code":N,"message":"..."}` with `status`.
pub(crate) fn error_response(status: StatusCode, error: EngineError) -> Response<Body> {
    let (code, message) = error.code_and_message();
    json_error(status, code, message)
}

fn json_error(status: StatusCode, code: u8, message: &str) -> Response<Body> {
    let body = serde_json::json!({"code": code, "message": message}).to_string();
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

impl Server {
    /// A server with `config` whose connections `service` handles.
    pub fn new(config: Config, service: impl Service) -> Server {
        Server {
            inner: Arc::new(Inner {
                handshake_rate: HandshakeRate::new(
                    config.handshake_rate_per_ip,
                    config.handshake_burst_per_ip,
                ),
                config,
                service: Box::new(service),
                stats: Stats::default(),
                sessions: Mutex::new(HashMap::new()),
                sockets: Mutex::new(HashMap::new()),
                rooms: Mutex::new(HashMap::new()),
                per_address: Mutex::new(HashMap::new()),
                count: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// The server's settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The server's counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.inner.count.load(Ordering::Acquire)
    }

    /// The connection with socket id `id`, if it is on this server.
    pub fn socket(&self, id: &str) -> Option<Socket> {
        let id = Id::parse(id)?;
        lock(&self.inner.sockets).get(&id).cloned().map(Socket)
    }

    /// Every connection connected to the namespace now.
    pub fn sockets(&self) -> Vec<Socket> {
        lock(&self.inner.sockets)
            .values()
            .filter(|c| c.state().connected)
            .cloned()
            .map(Socket)
            .collect()
    }

    /// The members of `room` on this server.
    pub fn room(&self, room: &str) -> Vec<Socket> {
        lock(&self.inner.rooms)
            .get(room)
            .map(|m| m.iter().cloned().map(Socket).collect())
            .unwrap_or_default()
    }

    /// Queues `frame` (built once, e.g. by [`crate::event_frame`]) for every
    /// member of `room` but `except`. A member whose queue is full is
    /// disconnected as a slow client and counted in [`Delivery::dropped`].
    pub fn broadcast(&self, room: &str, frame: &Frame, except: Option<&Socket>) -> Delivery {
        let members = lock(&self.inner.rooms).get(room).cloned();
        let mut delivery = Delivery::default();
        for conn in members.iter().flatten() {
            if except.is_some_and(|x| Arc::ptr_eq(&x.0, conn)) {
                continue;
            }
            match conn.push(frame.clone()) {
                Ok(()) => delivery.sent += 1,
                Err(crate::outbox::QueueError::Full) => delivery.dropped += 1,
                Err(crate::outbox::QueueError::Closed) => {}
            }
        }
        delivery
    }

    /// Closes every connection (each client is told the server is going
    /// away and may reconnect elsewhere) and refuses new ones.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let all: Vec<Arc<Conn>> = lock(&self.inner.sessions).values().cloned().collect();
        // No socket.io disconnect packet: clients see the transport close
        // and reconnect, to another node behind a load balancer.
        for conn in &all {
            conn.close(DisconnectReason::ServerShutdown);
        }
        // Each connection's task finishes its own close; wait for them.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        while self.inner.count.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Handles one engine.io request (mount it at the socket.io path, e.g.
    /// `Router::route_service("/socket.io/", server.clone())`). The peer
    /// address is read from axum's `ConnectInfo<SocketAddr>` when present.
    pub async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let origin = req.headers().get(ORIGIN).cloned();
        let mut res = self.route(req, origin.as_ref()).await;
        if res.status() != StatusCode::SWITCHING_PROTOCOLS
            && self
                .inner
                .config
                .origins
                .allows(origin.as_ref().map(|o| o.as_bytes()))
        {
            allow_origin(res.headers_mut(), origin.as_ref());
        }
        res
    }

    async fn route(&self, req: Request<Body>, origin: Option<&HeaderValue>) -> Response<Body> {
        let inner = &self.inner;
        if !inner.config.origins.allows(origin.map(|o| o.as_bytes())) {
            inner.stats.refused(Refusal::Origin);
            return error_response(StatusCode::FORBIDDEN, EngineError::Forbidden);
        }
        if req.method() == Method::OPTIONS {
            return preflight(req.headers());
        }
        let q = query(req.uri().query().unwrap_or(""));
        let eio = match q.eio {
            // socket.io-client-swift v13–v15 send no EIO; the reference
            // server takes that as 3.
            None | Some("3") => EngineVersion::V3,
            Some("4") => EngineVersion::V4,
            Some(_) => {
                return error_response(StatusCode::BAD_REQUEST, EngineError::UnsupportedVersion)
            }
        };
        if q.jsonp {
            // JSONP polling (engine.io 3's `j` parameter) is not served.
            return error_response(StatusCode::BAD_REQUEST, EngineError::BadRequest);
        }
        let transport = match q.transport {
            Some("polling") => Transport::Polling,
            Some("websocket") => Transport::Websocket,
            _ => return error_response(StatusCode::BAD_REQUEST, EngineError::UnknownTransport),
        };
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        match q.sid {
            None => {
                if req.method() != Method::GET {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        EngineError::BadHandshakeMethod,
                    );
                }
                if let Err(res) = self.admit(peer) {
                    return *res;
                }
                match transport {
                    Transport::Polling => {
                        let conn = self.open(eio, q.b64, Transport::Polling, peer);
                        crate::polling::handshake(self.inner.clone(), conn)
                    }
                    Transport::Websocket => {
                        let res = crate::websocket::accept(self.inner.clone(), req, eio, peer);
                        if res.status() != StatusCode::SWITCHING_PROTOCOLS {
                            self.release(peer);
                        }
                        res
                    }
                }
            }
            Some(sid) => {
                let conn = Id::parse(sid).and_then(|id| lock(&inner.sessions).get(&id).cloned());
                let Some(conn) = conn else {
                    return error_response(StatusCode::BAD_REQUEST, EngineError::UnknownSid);
                };
                if conn.eio != eio {
                    return error_response(StatusCode::BAD_REQUEST, EngineError::BadRequest);
                }
                match (transport, req.method()) {
                    (Transport::Polling, &Method::GET) => crate::polling::poll(conn).await,
                    (Transport::Polling, &Method::POST) => {
                        crate::polling::post(self.inner.clone(), conn, req).await
                    }
                    (Transport::Websocket, &Method::GET) => {
                        crate::websocket::upgrade(self.inner.clone(), conn, req)
                    }
                    _ => error_response(StatusCode::BAD_REQUEST, EngineError::BadRequest),
                }
            }
        }
    }

    /// Admission: counts the connection in, or refuses it with 503 (429
    /// when its address made handshakes faster than its rate).
    fn admit(&self, peer: Option<SocketAddr>) -> Result<(), Box<Response<Body>>> {
        let inner = &self.inner;
        let refuse = |why: Refusal, status: StatusCode, message: &str| {
            inner.stats.refused(why);
            tracing::debug!(?peer, reason = why.label(), "connection refused");
            Box::new(json_error(status, 4, message))
        };
        if inner.closed.load(Ordering::Acquire) {
            return Err(Box::new(json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                4,
                "server shutting down",
            )));
        }
        let max = inner.config.max_connections;
        let count = inner.count.fetch_add(1, Ordering::AcqRel);
        if max > 0 && count >= max {
            inner.count.fetch_sub(1, Ordering::AcqRel);
            return Err(refuse(
                Refusal::ServerFull,
                StatusCode::SERVICE_UNAVAILABLE,
                "server full",
            ));
        }
        let (Some(peer), true) = (peer, inner.per_address_kept()) else {
            return Ok(());
        };
        let per_ip = inner.config.max_connections_per_ip;
        let mut map = lock(&inner.per_address);
        let now = std::time::Instant::now();
        let address = map
            .entry(peer.ip())
            .or_insert_with(|| Address::new(inner.handshake_rate, now));
        let refused = if per_ip > 0 && address.connections >= per_ip {
            Some(refuse(
                Refusal::TooManyFromAddress,
                StatusCode::SERVICE_UNAVAILABLE,
                "too many connections from this address",
            ))
        } else if let Some(Err(wait)) = inner.handshake_rate.map(|r| address.take(r, now)) {
            let mut res = refuse(
                Refusal::HandshakeRate,
                StatusCode::TOO_MANY_REQUESTS,
                "too many handshakes from this address",
            );
            let secs = wait.as_secs().saturating_add(1);
            res.headers_mut()
                .insert(http::header::RETRY_AFTER, secs.into());
            Some(res)
        } else {
            None
        };
        if let Some(res) = refused {
            if address.connections == 0 {
                map.remove(&peer.ip());
            }
            drop(map);
            inner.count.fetch_sub(1, Ordering::AcqRel);
            return Err(res);
        }
        address.connections += 1;
        Ok(())
    }

    /// Gives back what [`Server::admit`] counted.
    fn release(&self, peer: Option<SocketAddr>) {
        self.inner.release(peer);
    }

    pub(crate) fn open(
        &self,
        eio: EngineVersion,
        b64: bool,
        transport: Transport,
        peer: Option<SocketAddr>,
    ) -> Arc<Conn> {
        self.inner.open(eio, b64, transport, peer)
    }
}

impl Inner {
    pub(crate) fn open(
        self: &Arc<Self>,
        eio: EngineVersion,
        b64: bool,
        transport: Transport,
        peer: Option<SocketAddr>,
    ) -> Arc<Conn> {
        let conn = Conn::new(self, eio, b64, transport, peer);
        lock(&self.sessions).insert(conn.sid, conn.clone());
        lock(&self.sockets).insert(conn.id, conn.clone());
        conn
    }

    /// Whether addresses are kept (a per-address limit is set).
    fn per_address_kept(&self) -> bool {
        self.config.max_connections_per_ip > 0 || self.handshake_rate.is_some()
    }

    fn release(&self, peer: Option<SocketAddr>) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        if let (true, Some(peer)) = (self.per_address_kept(), peer) {
            let mut map = lock(&self.per_address);
            if let Some(a) = map.get_mut(&peer.ip()) {
                a.connections = a.connections.saturating_sub(1);
                if a.connections == 0 {
                    map.remove(&peer.ip());
                }
            }
        }
    }

    pub(crate) fn join(&self, conn: &Arc<Conn>, room: &str) {
        {
            let mut state = conn.state();
            if state.closing.is_some() || state.rooms.iter().any(|r| &**r == room) {
                return;
            }
            state.rooms.push(room.into());
        }
        lock(&self.rooms)
            .entry(room.into())
            .or_default()
            .push(conn.clone());
    }

    pub(crate) fn leave(&self, conn: &Arc<Conn>, room: &str) {
        {
            let mut state = conn.state();
            let Some(i) = state.rooms.iter().position(|r| &**r == room) else {
                return;
            };
            state.rooms.swap_remove(i);
        }
        self.remove_member(conn, room);
    }

    fn remove_member(&self, conn: &Arc<Conn>, room: &str) {
        let mut rooms = lock(&self.rooms);
        if let Some(members) = rooms.get_mut(room) {
            if let Some(i) = members.iter().position(|m| Arc::ptr_eq(m, conn)) {
                members.swap_remove(i);
            }
            if members.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// Removes a finished connection from every table.
    pub(crate) fn forget(&self, conn: &Arc<Conn>) {
        let rooms = std::mem::take(&mut conn.state().rooms);
        for room in rooms {
            self.remove_member(conn, &room);
        }
        let removed = lock(&self.sessions).remove(&conn.sid).is_some();
        lock(&self.sockets).remove(&conn.id);
        if removed {
            self.release(conn.peer);
        }
    }
}

impl tower::Service<Request<Body>> for Server {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Body>, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let server = self.clone();
        Box::pin(async move { Ok(server.handle(req).await) })
    }
}

/// A CORS preflight, answered as socket.io 2.x answered them: the methods
/// and whatever headers were asked for.
fn preflight(headers: &HeaderMap) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    let h = res.headers_mut();
    h.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    let asked = headers
        .get(ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or(HeaderValue::from_static("Content-Type"));
    h.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked);
    h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    res
}

/// The origin and credentials headers for an allowed request from
/// `origin`: mirrored with credentials, `*` without an origin.
fn allow_origin(headers: &mut HeaderMap, origin: Option<&HeaderValue>) {
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

    #[test]
    fn the_query_is_read_as_engine_io_reads_it() {
        let q = query("EIO=4&transport=polling&t=abc&sid=x&b64=1");
        assert_eq!(q.eio, Some("4"));
        assert_eq!(q.transport, Some("polling"));
        assert_eq!(q.sid, Some("x"));
        assert!(q.b64);
        assert!(!q.jsonp);
        assert!(query("j=0").jsonp);
    }
}
