//! Serving a router on TCP listeners, in clear text or over TLS, with the
//! limits an internet-facing server needs and `axum::serve` does not
//! apply: every connection has a deadline until it is useful.
//!
//! - HTTP/1.1 only (websockets upgrade from it). An HTTP/2 preface is
//!   refused at once (a partial one is cut at the header deadline).
//! - From accept, a connection has [`HttpLimits::header_timeout`] to
//!   deliver its first request head, its TLS handshake included; after a
//!   response, the same time to deliver the next one (idle keep-alive
//!   connections close). A request in progress (a long-poll waiting for
//!   its answer) is not idle.
//! - A request body must arrive whole within [`HttpLimits::body_timeout`]
//!   of its head ([`BodyTimeout`]); an answer the client takes nothing of
//!   for that long closes the connection.
//! - Connections with no request in progress are capped
//!   ([`HttpLimits::max_pending_connections`]): at the cap the oldest is
//!   closed to make room, so sockets held open without a word cannot lock
//!   clients out. When the process runs out of file descriptors, the
//!   oldest is closed too.

mod deadline_body;
mod pending;
mod write_deadline;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

pub use deadline_body::BodyTimeout;
use deadline_body::DeadlineBody;
use pending::{Pending, Tracked};
use write_deadline::WriteDeadline;

/// The largest request head, and about the most a connection's read
/// buffer holds: a larger head is answered 431. It bounds what each
/// pending connection can make the server hold (nginx's default for a request's headers is the same
/// 32 KiB; hyper's own is ~400 KB).
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Limits on each HTTP connection.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// How long a request's head may take to arrive: counted from the
    /// connection's accept for its first request (over TLS the handshake
    /// is included), from the end of the previous response for the next
    /// (so it also closes idle keep-alive connections). A long-poll
    /// waiting for its answer is a request in progress, not idle.
    pub header_timeout: Duration,
    /// How long a request's body may take to arrive whole, counted from
    /// its head; a body cut by it gives [`BodyTimeout`] to the handler
    /// reading it, and the connection closes after the answer. Also how
    /// long a write may wait for the client to take anything (an answer it
    /// does not read): the connection is closed then. Upgraded websockets
    /// are exempt (their heartbeat and outbound queue bound apply).
    pub body_timeout: Duration,
    /// Connections with no request in progress (accepted, in their TLS
    /// handshake, or idle between requests) held at most, across every
    /// listener of one [`HttpServer`]; a new one beyond it closes the
    /// oldest (0: no cap).
    pub max_pending_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_pending_connections: 1024,
        }
    }
}

/// Counters of the connections and requests [`HttpServer`] cut off.
#[derive(Debug, Default)]
pub struct HttpStats {
    header_timeouts: AtomicU64,
    body_timeouts: Arc<AtomicU64>,
}

impl HttpStats {
    /// Connections closed because a request head (or the TLS handshake
    /// before the first) did not arrive in time, idle keep-alive
    /// connections included.
    pub fn header_timeouts(&self) -> u64 {
        self.header_timeouts.load(Ordering::Relaxed)
    }

    /// Request bodies cut because they did not arrive in time.
    pub fn body_timeouts(&self) -> u64 {
        self.body_timeouts.load(Ordering::Relaxed)
    }
}

/// Serves routers on listeners with one set of [`HttpLimits`]; the
/// listeners it serves share its cap on pending connections and its
/// counters. Cheap to clone.
#[derive(Clone)]
pub struct HttpServer {
    shared: Arc<Shared>,
}

struct Shared {
    limits: HttpLimits,
    http1: http1::Builder,
    pending: Pending,
    stats: HttpStats,
}

impl HttpServer {
    /// A server applying `limits`.
    pub fn new(limits: HttpLimits) -> HttpServer {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .max_header_size(MAX_HEAD_BYTES)
            .keep_alive(true);
        HttpServer {
            shared: Arc::new(Shared {
                limits,
                http1,
                pending: Pending::new(limits.max_pending_connections),
                stats: HttpStats::default(),
            }),
        }
    }

    /// Its counters.
    pub fn stats(&self) -> &HttpStats {
        &self.shared.stats
    }

    /// Connections with no request in progress now.
    pub fn pending_connections(&self) -> usize {
        self.shared.pending.len()
    }

    /// Pending connections closed to make room (at the cap, or when the
    /// process ran out of file descriptors), since start.
    pub fn pending_closed(&self) -> u64 {
        self.shared.pending.closed()
    }

    /// Serves `router` on `listener` until `shutdown` completes, then lets
    /// connections finish their current request. Requests carry the peer's
    /// address as axum's `ConnectInfo<SocketAddr>`; websocket upgrades are
    /// supported; every accepted socket gets `TCP_NODELAY` (realtime
    /// frames are small and go out at once).
    pub async fn serve<F>(&self, listener: TcpListener, router: axum::Router, shutdown: F)
    where
        F: Future<Output = ()> + Send,
    {
        self.serve_with(listener, router, None, shutdown).await;
    }

    /// Like [`HttpServer::serve`], over TLS: every accepted connection
    /// first completes a handshake with `tls` (which chooses the
    /// certificate, so a `ResolvesServerCert` can change it for new
    /// connections while the server runs). The caller's `tls` names the
    /// crypto provider and should offer ALPN `http/1.1` only.
    pub async fn serve_tls<F>(
        &self,
        listener: TcpListener,
        router: axum::Router,
        tls: Arc<ServerConfig>,
        shutdown: F,
    ) where
        F: Future<Output = ()> + Send,
    {
        self.serve_with(listener, router, Some(TlsAcceptor::from(tls)), shutdown)
            .await;
    }

    async fn serve_with<F>(
        &self,
        listener: TcpListener,
        router: axum::Router,
        tls: Option<TlsAcceptor>,
        shutdown: F,
    ) where
        F: Future<Output = ()> + Send,
    {
        let (stop, stopped) = watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            let (tcp, addr) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, most likely: a pending
                    // connection makes room (counted, so logged at debug:
                    // a client could make this happen at every connect),
                    // or connections get a moment to close rather than
                    // the loop spinning.
                    let pause = if out_of_descriptors(&e) && self.shared.pending.close_oldest() {
                        tracing::debug!(error = %e, "accept failed; closed the oldest pending connection");
                        Duration::from_millis(1)
                    } else {
                        tracing::warn!(error = %e, "accept failed");
                        Duration::from_millis(50)
                    };
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            let first_by = Instant::now() + self.shared.limits.header_timeout;
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
            let tracked = self.shared.pending.accepted();
            let conn = Connection {
                shared: self.shared.clone(),
                tracked,
                addr,
                first_by,
            };
            let router = router.clone();
            let stopped = stopped.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                conn.run(tcp, tls, router, stopped).await;
            });
        }
        let _ = stop.send(true);
    }
}

/// Whether an accept failed for want of file descriptors.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    // EMFILE (24) and ENFILE (23) on Linux and the BSDs.
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// Serves `router` on `listener` with `limits` until `shutdown` completes
/// (an [`HttpServer`] of its own; see [`HttpServer::serve`]).
pub async fn serve<F>(listener: TcpListener, router: axum::Router, limits: HttpLimits, shutdown: F)
where
    F: Future<Output = ()> + Send,
{
    HttpServer::new(limits)
        .serve(listener, router, shutdown)
        .await;
}

/// Like [`serve`], over TLS (see [`HttpServer::serve_tls`]).
pub async fn serve_tls<F>(
    listener: TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    tls: Arc<ServerConfig>,
    shutdown: F,
) where
    F: Future<Output = ()> + Send,
{
    HttpServer::new(limits)
        .serve_tls(listener, router, tls, shutdown)
        .await;
}

/// One accepted connection.
struct Connection {
    shared: Arc<Shared>,
    tracked: Arc<Tracked>,
    addr: SocketAddr,
    /// Its first request head is due by then.
    first_by: Instant,
}

impl Connection {
    async fn run(
        self,
        tcp: tokio::net::TcpStream,
        tls: Option<TlsAcceptor>,
        router: axum::Router,
        mut stopped: watch::Receiver<bool>,
    ) {
        match tls {
            None => self.serve(TokioIo::new(tcp), router, stopped).await,
            Some(tls) => {
                let addr = self.addr;
                // The handshake runs in the connection's task, so a slow
                // one holds up nobody else, and within the first deadline.
                let handshake = tokio::time::timeout_at(self.first_by, tls.accept(tcp));
                let stream = tokio::select! {
                    done = handshake => match done {
                        Ok(Ok(stream)) => Some(stream),
                        Ok(Err(e)) => {
                            tracing::debug!(%addr, error = %e, "TLS handshake failed");
                            None
                        }
                        Err(_) => {
                            tracing::debug!(%addr, "TLS handshake timed out");
                            self.shared.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                            None
                        }
                    },
                    () = self.tracked.evicted() => {
                        tracing::debug!(%addr, "pending connection closed to make room");
                        None
                    }
                    _ = stopped.wait_for(|s| *s) => None,
                };
                let Some(stream) = stream else {
                    return self.closed();
                };
                self.serve(TokioIo::new(stream), router, stopped).await;
            }
        }
    }

    /// Serves HTTP/1.1 until the connection closes, misses a deadline, is
    /// closed to make room, or `stopped` asks it to finish its current
    /// request.
    async fn serve<I>(self, io: I, router: axum::Router, mut stopped: watch::Receiver<bool>)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let upgraded = Arc::new(AtomicBool::new(false));
        let io = WriteDeadline::new(io, self.shared.limits.body_timeout, upgraded.clone());
        let service = Service {
            router,
            addr: self.addr,
            shared: self.shared.clone(),
            tracked: self.tracked.clone(),
            upgraded,
        };
        let conn = self
            .shared
            .http1
            .serve_connection(io, service)
            .with_upgrades();
        tokio::pin!(conn);
        // hyper's header timer starts when it first reads, after the TLS
        // handshake: this one holds the first head to the deadline from
        // accept.
        // (A select's branch conditions are read once per select, not
        // while it waits: the deadline checks for itself.)
        let tracked = self.tracked.clone();
        let first_by = self.first_by;
        let first = async {
            tokio::time::sleep_until(first_by).await;
            if tracked.has_requested() {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(first);
        let mut stopping = false;
        let addr = self.addr;
        loop {
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        if e.is_timeout() {
                            self.shared.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                        }
                        tracing::debug!(%addr, error = %e, "HTTP connection ended");
                    }
                    break;
                }
                () = &mut first => {
                    tracing::debug!(%addr, "no request head in time");
                    self.shared.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                () = tracked.evicted() => {
                    tracing::debug!(%addr, "pending connection closed to make room");
                    break;
                }
                _ = stopped.wait_for(|s| *s), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
        self.closed();
    }

    fn closed(self) {
        self.shared.pending.leave(&self.tracked);
    }
}

/// The router, with the connection's peer address added to each request,
/// its body under the body deadline, and the connection counted busy until
/// the answer is sent.
struct Service {
    router: axum::Router,
    addr: SocketAddr,
    shared: Arc<Shared>,
    tracked: Arc<Tracked>,
    /// Set once it answers 101: the websocket is exempt from the write
    /// deadline.
    upgraded: Arc<AtomicBool>,
}

impl hyper::service::Service<http::Request<Incoming>> for Service {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        self.shared.pending.request_started(&self.tracked);
        let busy = Busy {
            shared: self.shared.clone(),
            tracked: self.tracked.clone(),
        };
        let deadline = Instant::now() + self.shared.limits.body_timeout;
        let cut = self.shared.stats.body_timeouts.clone();
        let mut req = req.map(|body| Body::new(DeadlineBody::new(body, deadline, cut)));
        req.extensions_mut().insert(ConnectInfo(self.addr));
        let router = self.router.clone();
        let upgraded = self.upgraded.clone();
        Box::pin(async move {
            let res = router.oneshot(req).await?;
            if res.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                upgraded.store(true, Ordering::Relaxed);
            }
            Ok(res.map(|body| Body::new(Answer { body, _busy: busy })))
        })
    }
}

/// Counts its connection busy from the request head until it is dropped:
/// with the answer's body once sent, or with the request if it was
/// dropped unanswered.
struct Busy {
    shared: Arc<Shared>,
    tracked: Arc<Tracked>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.shared.pending.request_done(&self.tracked);
    }
}

/// An answer's body, holding its connection busy until it is sent.
struct Answer {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Answer {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
