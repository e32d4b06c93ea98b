//! A socket.io server for axum, on an engine.io layer of its own.
//!
//! Serves engine.io 3 and 4 (websocket and HTTP long-polling, with the
//! upgrade from one to the other) and socket.io protocols 4 and 5, which
//! together are every socket.io client generation from 2.x to 4.x, on the
//! namespaces the application declares ([`Server::builder`]; a connect to
//! any other is refused with "Invalid namespace"). JSONP polling is not
//! served. The engine.io layer serves applications of its own too
//! ([`Server::engine`], [`EngineHandler`]).
//!
//! Built for many connections per core:
//! - one task per connection: on a websocket it reads, writes and keeps
//!   the heartbeat; no task is spawned per event;
//! - events reach the application's [`Handler`] synchronously, in the
//!   order the client sent them; the application pauses a client's reads
//!   with its [`ReadGate`] instead of buffering without bound;
//! - each connection's outbound queue is bounded in bytes: a client that
//!   stops reading is disconnected ([`DisconnectReason::SlowClient`]);
//! - a broadcast encodes its packet once ([`event_frame`]) and queues the
//!   same bytes for every recipient;
//! - admission (connection caps, allowed origins, a handshake rate per
//!   address) at the handshake;
//! - every byte bound counts what an entry holds in memory ([`held`]);
//! - every HTTP connection has a deadline until it is useful (its request
//!   head, its body; see [`serve::HttpLimits`]), HTTP/1.1 only, and sockets
//!   with no request in progress are capped: at the cap the oldest is closed.
//!
//! Passes the official engine.io and socket.io protocol test suites
//! (`conformance/run`).
//!
//! ```no_run
//! use ao_socketio::{Config, Connect, Connector, DisconnectReason, Event, Handler, Server, Socket};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     fn event(&self, socket: &Socket, event: Event<'_>) {
//!         match event.ack {
//!             // Every argument back, binary attachments included.
//!             Some(ack) => drop(ack.send_raw(event.args, event.attachments)),
//!             None => drop(socket.emit_raw(&event.name, event.args, event.attachments)),
//!         }
//!     }
//!     fn disconnect(&self, _: &Socket, _: DisconnectReason) {}
//! }
//! struct App;
//! impl Connector for App {
//!     fn connect(&self, _: &Socket, _auth: Option<&str>) -> Connect {
//!         Connect::Accept(Box::new(Echo))
//!     }
//! }
//! # async fn run() -> std::io::Result<()> {
//! let io = Server::new(Config::default(), App);
//! let app = axum::Router::new().route_service("/socket.io/", io);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! ao_socketio::serve::serve(
//!     listener,
//!     app,
//!     ao_socketio::serve::HttpLimits::default(),
//!     std::future::pending(),
//! )
//! .await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod address;
mod config;
mod driver;
pub mod engine;
mod frame_queue;
mod gate;
pub mod held;
mod http_serve;
mod id;
mod inner;
#[cfg(any(test, feature = "test-util"))]
mod memory;
mod outbox;
mod polling;
mod server;
pub mod socket;
mod stats;
mod websocket;

pub use config::{Config, ConfigBuilder, Origins};
pub use engine::{DisconnectReason, EngineHandler, EngineSocket, Transport};
pub use gate::ReadGate;
#[cfg(any(test, feature = "test-util"))]
pub use memory::MemoryClient;
pub use outbox::QueueError;
pub use server::{Server, ServerBuilder};
pub use socket::conn::{
    event_frame, placeholder, AckReply, AckSender, Connect, ConnectError, Connector, Event,
    Handler, SendError, Socket,
};
pub use socket::namespace::{Delivery, Namespace};
pub use stats::{Refusal, Stats};

/// Serving HTTP: the accept loop with its limits, plain or over TLS, for
/// the server's router. Optional: [`Server`] is a `tower::Service` any
/// hyper or axum server can mount.
pub mod serve {
    pub use crate::http_serve::{
        serve, serve_tls, BodyTimeout, HttpLimits, HttpServer, HttpStats, MAX_HEAD_BYTES,
    };
    /// The rustls of [`serve_tls`]'s configuration.
    pub use tokio_rustls::rustls;
}
