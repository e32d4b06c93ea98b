//! The server: its connections and rooms, and the HTTP entry point that
//! takes every engine.io request (handshakes, long-polls, websockets).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS, ORIGIN,
    VARY,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

use crate::address::{Address, HandshakeRate};
use crate::config::Config;
use crate::engine::session::Session;
use crate::engine::{DisconnectReason, EngineHandler, EngineVersion, Frame, Transport};
use crate::id::Id;
use crate::inner::{error_response, json_error, lock, EngineError, Inner, Layer};
use crate::socket::conn::{Connector, Socket};
use crate::socket::namespace::{Delivery, Namespace, Nsp};
use crate::stats::{Refusal, Stats};

/// A socket.io server (or an engine.io one, [`Server::engine`]). Cheap to
/// clone; every clone is the same server.
#[derive(Clone)]
pub struct Server {
    pub(crate) inner: Arc<Inner>,
}

/// Builds a socket.io server with several namespaces ([`Server::builder`]).
pub struct ServerBuilder {
    config: Config,
    namespaces: Vec<Arc<Nsp>>,
}

impl ServerBuilder {
    /// Serves namespace `name` (`/` or `/name`), whose connects `connector`
    /// answers. A namespace added twice keeps its first connector.
    pub fn namespace(mut self, name: &str, connector: impl Connector) -> ServerBuilder {
        if !self.namespaces.iter().any(|n| &*n.name == name) {
            self.namespaces
                .push(Arc::new(Nsp::new(name.into(), Box::new(connector))));
        }
        self
    }

    /// The server.
    pub fn build(self) -> Server {
        Server::with_layer(self.config, Layer::SocketIo(self.namespaces))
    }
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

impl Server {
    /// A socket.io server with `config` serving the default namespace `/`,
    /// whose connects `connector` answers.
    pub fn new(config: Config, connector: impl Connector) -> Server {
        Server::builder(config).namespace("/", connector).build()
    }

    /// A socket.io server with several namespaces.
    pub fn builder(config: Config) -> ServerBuilder {
        ServerBuilder {
            config,
            namespaces: Vec::new(),
        }
    }

    /// An engine.io server without socket.io: `handler` gets each session's
    /// messages.
    pub fn engine(config: Config, handler: impl EngineHandler) -> Server {
        Server::with_layer(config, Layer::Engine(Box::new(handler)))
    }

    fn with_layer(config: Config, layer: Layer) -> Server {
        Server {
            inner: Arc::new(Inner {
                handshake_rate: HandshakeRate::new(
                    config.handshake_rate_per_ip,
                    config.handshake_burst_per_ip,
                ),
                config,
                layer,
                stats: Stats::default(),
                sessions: Mutex::new(Default::default()),
                per_address: Mutex::new(Default::default()),
                count: AtomicUsize::new(0),
                none_left: tokio::sync::Notify::new(),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Namespace `name`, when the server serves it.
    pub fn of(&self, name: &str) -> Option<Namespace> {
        self.inner.namespace(name).cloned().map(Namespace)
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

    /// The socket with id `id` on the default namespace, if it is on this
    /// server.
    pub fn socket(&self, id: &str) -> Option<Socket> {
        self.of("/")?.socket(id)
    }

    /// Every socket connected to the default namespace now.
    pub fn sockets(&self) -> Vec<Socket> {
        self.of("/").map(|n| n.sockets()).unwrap_or_default()
    }

    /// The members of `room` of the default namespace on this server.
    pub fn room(&self, room: &str) -> Vec<Socket> {
        self.of("/").map(|n| n.room(room)).unwrap_or_default()
    }

    /// Queues `frame` (built once, e.g. by [`crate::event_frame`]) for every
    /// member of `room` of the default namespace but `except`
    /// ([`Namespace::broadcast`]).
    pub fn broadcast(&self, room: &str, frame: &Frame, except: Option<&Socket>) -> Delivery {
        match self.inner.namespace("/") {
            Some(nsp) => Namespace(nsp.clone()).broadcast(room, frame, except),
            None => Delivery::default(),
        }
    }

    /// Closes every connection (each client is told the server is going
    /// away and may reconnect elsewhere) and refuses new ones.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let all: Vec<Arc<Session>> = lock(&self.inner.sessions).values().cloned().collect();
        // No socket.io disconnect packet: clients see the transport close
        // and reconnect, to another node behind a load balancer.
        for session in &all {
            session.close(DisconnectReason::ServerShutdown);
        }
        // Each connection's task finishes its own close; wait for them.
        let none_left = async {
            loop {
                // Registered before the count is read, so a release in
                // between still wakes it.
                let released = self.inner.none_left.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                if self.inner.count.load(Ordering::Acquire) == 0 {
                    return;
                }
                released.await;
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), none_left).await;
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
            None | Some("3") if inner.config.allow_eio3 => EngineVersion::V3,
            Some("4") => EngineVersion::V4,
            _ => return error_response(StatusCode::BAD_REQUEST, EngineError::UnsupportedVersion),
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
                        let session = self.inner.open(eio, q.b64, Transport::Polling, peer);
                        crate::polling::handshake(self.inner.clone(), session)
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
            inner.uncount();
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
            inner.uncount();
            return Err(res);
        }
        address.connections += 1;
        Ok(())
    }

    /// Gives back what [`Server::admit`] counted.
    fn release(&self, peer: Option<SocketAddr>) {
        self.inner.release(peer);
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
