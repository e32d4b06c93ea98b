//! Serving a router on a TCP listener, in clear text ([`serve`]) or over
//! TLS ([`serve_tls`]), with the limits an internet-facing server needs and
//! `axum::serve` does not apply: a connection whose TLS handshake or
//! request headers do not arrive in time, or that sits idle between
//! requests, is closed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Limits on each HTTP connection.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// How long a request's headers may take to arrive, counted from the
    /// connection's start or the end of its previous response (so it also
    /// closes idle keep-alive connections). A long-poll waiting for its
    /// answer is a request in progress, not idle. Over TLS the handshake
    /// must also complete within this time.
    pub header_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets
/// connections finish their current request. Requests carry the peer's
/// address as axum's `ConnectInfo<SocketAddr>`; websocket upgrades are
/// supported; every accepted socket gets `TCP_NODELAY` (realtime frames
/// are small and go out at once).
pub async fn serve<F>(listener: TcpListener, router: axum::Router, limits: HttpLimits, shutdown: F)
where
    F: Future<Output = ()> + Send,
{
    serve_with(listener, router, limits, None, shutdown).await;
}

/// Like [`serve`], over TLS: every accepted connection first completes a
/// handshake with `tls` (which chooses the certificate, so a
/// `ResolvesServerCert` can change it for new connections while the server
/// runs), within [`HttpLimits::header_timeout`]; one that does not is
/// closed. The caller's `tls` names the crypto provider and should offer
/// ALPN `http/1.1` (websockets are upgraded from HTTP/1.1).
pub async fn serve_tls<F>(
    listener: TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    tls: Arc<ServerConfig>,
    shutdown: F,
) where
    F: Future<Output = ()> + Send,
{
    serve_with(
        listener,
        router,
        limits,
        Some(TlsAcceptor::from(tls)),
        shutdown,
    )
    .await;
}

async fn serve_with<F>(
    listener: TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    tls: Option<TlsAcceptor>,
    shutdown: F,
) where
    F: Future<Output = ()> + Send,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
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
                // Out of file descriptors, most likely: give connections a
                // moment to close rather than spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let service = Service {
            router: router.clone(),
            addr,
        };
        let builder = builder.clone();
        let mut stopped = stopped.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return connection(&builder, TokioIo::new(tcp), service, stopped).await;
            };
            // The handshake runs in the connection's task, so a slow one
            // holds up nobody else, and within the header timeout.
            let handshake = tokio::time::timeout(limits.header_timeout, tls.accept(tcp));
            let stream = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(%addr, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%addr, "TLS handshake timed out");
                        return;
                    }
                },
                _ = stopped.wait_for(|s| *s) => return,
            };
            connection(&builder, TokioIo::new(stream), service, stopped).await;
        });
    }
    let _ = stop.send(true);
}

/// Serves one connection until it closes, or until `stopped` asks it to
/// finish its current request.
async fn connection<I>(
    builder: &Builder<TokioExecutor>,
    io: I,
    service: Service,
    mut stopped: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopped.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// The router, with the connection's peer address added to each request.
#[derive(Clone)]
struct Service {
    router: axum::Router,
    addr: SocketAddr,
}

impl hyper::service::Service<http::Request<Incoming>> for Service {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(self.addr));
        let router = self.router.clone();
        Box::pin(async move { router.oneshot(req).await })
    }
}
