//! The server the official protocol test suites expect
//! (github.com/socketio/engine.io-protocol and socketio/socket.io-protocol,
//! folder `test-suite/`), built on the crate's public API; `conformance/run`
//! starts it and runs both suites against it.
//!
//! On port 3000 (or the first argument), pinging every 300 ms with a
//! 200 ms timeout:
//! - `/engine.io/`: an engine.io server that echoes every message;
//! - `/socket.io/`: a socket.io server with namespaces `/` and `/custom`;
//!   on connect it emits `auth` with the client's payload (`{}` without
//!   one); it answers `message` with `message-back` and the same arguments,
//!   and `message-with-ack` with an ack of the same arguments (binary
//!   attachments included).

use std::time::Duration;

use ao_socketio::engine::Message;
use ao_socketio::{
    Config, Connect, Connector, DisconnectReason, EngineHandler, EngineSocket, Event, Handler,
    Server, Socket,
};

struct Echo;

impl EngineHandler for Echo {
    fn message(&self, socket: &EngineSocket, message: Message) {
        let _ = socket.send(message);
    }
}

struct Suite;

impl Connector for Suite {
    fn connect(&self, socket: &Socket, auth: Option<&str>) -> Connect {
        // Emitted before the connect is answered: it goes out after it.
        let _ = socket.emit_raw("auth", auth.unwrap_or("{}"), Vec::new());
        Connect::Accept(Box::new(Suite))
    }
}

impl Handler for Suite {
    fn event(&self, socket: &Socket, event: Event<'_>) {
        match (&*event.name, event.ack) {
            ("message", _) => {
                let _ = socket.emit_raw("message-back", event.args, event.attachments);
            }
            ("message-with-ack", Some(ack)) => {
                let _ = ack.send_raw(event.args, event.attachments);
            }
            _ => {}
        }
    }

    fn disconnect(&self, _: &Socket, _: DisconnectReason) {}
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        None => 3000,
    };
    let config = Config::builder()
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(1000))
        // The suites expect a request without `EIO` refused, as the
        // reference server refuses it without `allowEIO3`.
        .allow_eio3(false)
        .build();
    let engine = Server::engine(config.clone(), Echo);
    let io = Server::builder(config)
        .namespace("/", Suite)
        .namespace("/custom", Suite)
        .build();
    let app = axum::Router::new()
        .route_service("/engine.io/", engine)
        .route_service("/socket.io/", io);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("conformance server on {}", listener.local_addr()?);
    ao_socketio::serve::serve(
        listener,
        app,
        ao_socketio::serve::HttpLimits::default(),
        std::future::pending(),
    )
    .await;
    Ok(())
}
