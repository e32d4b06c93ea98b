//! Back-pressure on a client's reads: a [`ReadValve`] that a session closes
//! while its inbox is over budget, the TCP stream that stops reading while
//! its valve is closed ([`ValvedStream`], what every listener accepts), and
//! the request body that stops yielding while its valve is closed
//! ([`ValvedBody`], for long-polling POSTs).
//!
//! Written here because the socket.io layer (socketioxide) hands every
//! event to a synchronous callback and offers no way to pause a
//! connection's reads: pausing below it, at the TCP stream or the request
//! body, is the one place left where a burst can wait instead of being
//! dropped.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Open or closed; readers behind a closed valve wait until it opens.
#[derive(Default)]
pub struct ReadValve {
    closed: AtomicBool,
    /// Events read through the valve so far ([`ReadValve::note_event`]).
    events: AtomicU64,
    /// Readers waiting for the valve to open (one for a websocket, the
    /// POST in flight for long-polling; empty and unallocated while open).
    waiters: Mutex<Vec<Waker>>,
}

impl std::fmt::Debug for ReadValve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadValve")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl ReadValve {
    /// A new, open valve.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Stops reads: every reader waits at its next read.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Lets reads go on and wakes the readers that wait.
    pub fn open(&self) {
        if self.closed.swap(false, Ordering::AcqRel) {
            let waiters = std::mem::take(&mut *self.waiters());
            for w in waiters {
                w.wake();
            }
        }
    }

    /// Counts an event read through the valve (the inbox does, for every
    /// event it takes).
    pub fn note_event(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    /// Events read through the valve so far.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Whether reads wait.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Ready while the valve is open; otherwise registers the reader to be
    /// woken when it opens.
    pub fn poll_open(&self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.is_closed() {
            return Poll::Ready(());
        }
        let mut waiters = self.waiters();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        drop(waiters);
        // Checked again: an `open` in between took the waiters before ours was in.
        if self.is_closed() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, Vec<Waker>> {
        crate::sync::lock(&self.waiters)
    }
}

/// A TCP connection whose reads wait while its valve is closed.
pub struct ValvedStream {
    tcp: TcpStream,
    valve: Arc<ReadValve>,
}

impl ValvedStream {
    /// The connection's valve.
    pub fn valve(&self) -> &Arc<ReadValve> {
        &self.valve
    }
}

impl AsyncRead for ValvedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.valve.poll_open(cx));
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ValvedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// A TCP listener whose connections are [`ValvedStream`]s with `TCP_NODELAY`
/// (realtime frames are small: sent at once, without Nagle's delay).
pub struct ValvedListener(pub TcpListener);

impl Listener for ValvedListener {
    type Io = ValvedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr) = Listener::accept(&mut self.0).await;
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let stream = ValvedStream {
            tcp,
            valve: ReadValve::new(),
        };
        (stream, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// What a request knows of the connection it came on (axum's `ConnectInfo`).
#[derive(Clone, Debug)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// The connection's valve: closing it stops reading from the client.
    pub valve: Arc<ReadValve>,
}

impl Connected<IncomingStream<'_, ValvedListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, ValvedListener>) -> Self {
        Peer {
            addr: *stream.remote_addr(),
            valve: stream.io().valve().clone(),
        }
    }
}

/// A request body that yields nothing while its valve is closed, in small
/// frames while the packets in it are small.
///
/// The small frames are what make the pause reach the events: engine.io's
/// payload decoder (engineioxide-core 0.2) reads one more body frame for
/// every packet it hands over, and hands over the rest without reading
/// once the body has ended; with frames as large as hyper reads them it
/// would have the whole body read, and keep handing its packets over, long
/// before the valve closes. So a frame is [`DRIP_BYTES`] after an event
/// came through, shorter than any event packet, and the decoder stays
/// within about a packet of what it handed over; inside a long packet
/// (no event since the last frame) the frames double, up to
/// [`MAX_FRAME_BYTES`], because the engine.io 3 decoder scans the whole
/// packet read so far on every frame.
pub struct ValvedBody {
    inner: Body,
    valve: Arc<ReadValve>,
    /// The rest of the frame read last.
    rest: Bytes,
    /// The size of the next frame.
    frame: usize,
    /// The valve's event count at the last frame.
    events: u64,
}

/// The frame a [`ValvedBody`] yields after an event came through: shorter
/// than any event packet.
pub const DRIP_BYTES: usize = 64;
/// The largest frame a [`ValvedBody`] yields.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

impl ValvedBody {
    /// `inner`, paused while `valve` is closed.
    pub fn wrap(inner: Body, valve: Arc<ReadValve>) -> Body {
        let events = valve.events();
        Body::new(ValvedBody {
            inner,
            valve,
            rest: Bytes::new(),
            frame: DRIP_BYTES,
            events,
        })
    }
}

impl http_body::Body for ValvedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::ready!(self.valve.poll_open(cx));
        if self.rest.is_empty() {
            match std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.rest = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return Poll::Ready(other),
            }
        }
        let events = self.valve.events();
        self.frame = if events != self.events {
            DRIP_BYTES
        } else {
            (self.frame * 2).min(MAX_FRAME_BYTES)
        };
        self.events = events;
        let n = self.rest.len().min(self.frame);
        let drip = self.rest.split_to(n);
        Poll::Ready(Some(Ok(http_body::Frame::data(drip))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let mut hint = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        hint.set_lower(hint.lower().saturating_add(rest));
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker_ref;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_closed_valve_holds_readers_until_it_opens() {
        let valve = ReadValve::new();
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(valve.poll_open(&mut cx).is_ready());
        valve.close();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(valve.poll_open(&mut cx).is_pending());
        assert!(valve.poll_open(&mut cx).is_pending(), "registered once");
        valve.open();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(valve.poll_open(&mut cx).is_ready());
        valve.open();
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "opening twice wakes once"
        );
    }

    #[tokio::test]
    async fn a_body_drips_and_waits_behind_a_closed_valve() {
        use http_body_util::BodyExt;
        let valve = ReadValve::new();
        let text = "x".repeat(DRIP_BYTES * 8);
        let mut body = ValvedBody::wrap(Body::from(text.clone()), valve.clone());
        let mut next = async || {
            let frame = body.frame().await.expect("a frame").expect("data");
            frame.into_data().map(|d| d.len()).ok()
        };
        // No event came through: the frames double.
        assert_eq!(next().await, Some(DRIP_BYTES * 2));
        assert_eq!(next().await, Some(DRIP_BYTES * 4));
        // An event came through: back to a drip.
        valve.note_event();
        assert_eq!(next().await, Some(DRIP_BYTES));
        valve.close();
        let read = tokio::time::timeout(std::time::Duration::from_millis(50), body.frame()).await;
        assert!(read.is_err(), "nothing while closed");
        valve.open();
        let rest = body.collect().await.expect("the rest").to_bytes();
        assert_eq!(rest.len(), DRIP_BYTES);
    }
}
