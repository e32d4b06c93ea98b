//! A TCP relay in front of a server that a test can cut off and restore: a
//! network partition between one process and, say, Redis, while every other
//! process still reaches it directly.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Relays connections on an ephemeral port to `127.0.0.1:<target port>`
/// until cut. Runs on the test's runtime.
pub(crate) struct Relay {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    /// Bumped by [`Relay::cut`]: every relayed connection closes.
    cuts: watch::Sender<u64>,
}

impl Relay {
    /// Starts relaying to `target_port` on this host.
    pub(crate) async fn start(target_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let target = SocketAddr::from(([127, 0, 0, 1], target_port));
        let open = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let (accept_open, accept_cuts) = (open.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !accept_open.load(Ordering::SeqCst) {
                    continue; // refused: closed at once
                }
                let mut cut = accept_cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut inbound, mut outbound) = (inbound, outbound);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Relay { addr, open, cuts }
    }

    /// A `redis://` URL through the relay.
    pub(crate) fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Closes every relayed connection and refuses new ones until
    /// [`Relay::restore`].
    pub(crate) fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Relays new connections again.
    pub(crate) fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}
