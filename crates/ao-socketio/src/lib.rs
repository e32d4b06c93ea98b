//! A socket.io server for axum.
//!
//! Serves engine.io 3 and 4 (websocket and HTTP long-polling, with the
//! upgrade from one to the other) and socket.io protocols 4 and 5, which
//! together are every socket.io client generation from 2.x to 4.x, on the
//! default namespace `/` (a connect to any other namespace is refused with
//! that protocol's error). JSONP polling is not served.
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
//! - admission (connection caps, allowed origins) at the handshake;
//! - every HTTP connection has a deadline until it is useful (its request
//!   head, its body; see [`HttpLimits`]), HTTP/1.1 only, and sockets with
//!   no request in progress are capped: at the cap the oldest is closed.
//!
//! ```no_run
//! use ao_socketio::{Config, Event, Handler, Server, Service, Socket, DisconnectReason};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     fn event(&self, socket: &Socket, event: Event<'_>) {
//!         if let Some(ack) = event.ack {
//!             let _ = ack.send(&serde_json::json!({"echo": event.data}));
//!         }
//!     }
//!     fn disconnect(&self, _: &Socket, _: DisconnectReason) {}
//! }
//! struct App;
//! impl Service for App {
//!     fn connect(&self, _: &Socket) -> Box<dyn Handler> {
//!         Box::new(Echo)
//!     }
//! }
//! # async fn run() -> std::io::Result<()> {
//! let io = Server::new(Config::default(), App);
//! let app = axum::Router::new().route_service("/socket.io/", io);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! ao_socketio::serve(listener, app, ao_socketio::HttpLimits::default(), std::future::pending()).await;
//! # Ok(())
//! # }
//! ```

mod address;
mod config;
mod driver;
pub mod engine;
mod gate;
pub mod held;
mod http_serve;
mod id;
mod memory;
mod outbox;
mod polling;
mod server;
pub mod socket;
mod stats;
mod websocket;

pub use config::{Config, Origins};
pub use gate::ReadGate;
pub use http_serve::{
    serve, serve_tls, BodyTimeout, HttpLimits, HttpServer, HttpStats, MAX_HEAD_BYTES,
};
pub use memory::MemoryClient;
pub use outbox::QueueError;
pub use server::{Delivery, Server};
pub use socket::conn::{
    event_frame, AckReply, AckSender, DisconnectReason, Event, Handler, SendError, Service, Socket,
    Transport,
};
pub use stats::{Refusal, Stats};
/// The rustls of [`serve_tls`]'s configuration.
pub use tokio_rustls::rustls;
