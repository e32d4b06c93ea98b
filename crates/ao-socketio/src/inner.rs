//! What the transports, the sessions and the server share: the server's
//! state ([`Inner`]) and engine.io's error answers. A leaf of the crate's
//! modules: the transports and the connection task import it, it imports
//! none of them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};

use crate::address::{Address, HandshakeRate};
use crate::config::Config;
use crate::engine::session::Session;
use crate::engine::socket::EngineHandler;
use crate::engine::{EngineVersion, Transport};
use crate::id::Id;
use crate::socket::namespace::Nsp;
use crate::stats::Stats;

/// Locks `m`, going on after a panic elsewhere (the data stays usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the server's sessions carry: socket.io, or the application's own
/// engine.io messages.
pub(crate) enum Layer {
    /// socket.io: its namespaces, the default one `/` first when served.
    SocketIo(Vec<Arc<Nsp>>),
    /// engine.io only: the application gets each message.
    Engine(Box<dyn EngineHandler>),
}

/// The server's state, shared by every session.
pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) layer: Layer,
    pub(crate) stats: Stats,
    /// Sessions by engine.io session id.
    pub(crate) sessions: Mutex<HashMap<Id, Arc<Session>>>,
    /// Addresses that hold connections, while a per-address limit is set.
    pub(crate) per_address: Mutex<HashMap<IpAddr, Address>>,
    pub(crate) handshake_rate: Option<HandshakeRate>,
    pub(crate) count: AtomicUsize,
    /// Told when [`Inner::count`] drops to zero (shutdown waits for it).
    pub(crate) none_left: tokio::sync::Notify,
    pub(crate) closed: AtomicBool,
}

impl Inner {
    /// The namespace `name`, when the server is a socket.io server with it.
    pub(crate) fn namespace(&self, name: &str) -> Option<&Arc<Nsp>> {
        match &self.layer {
            Layer::SocketIo(list) => list.iter().find(|n| &*n.name == name),
            Layer::Engine(_) => None,
        }
    }

    /// Opens a session and registers it.
    pub(crate) fn open(
        self: &Arc<Self>,
        eio: EngineVersion,
        b64: bool,
        transport: Transport,
        peer: Option<SocketAddr>,
    ) -> Arc<Session> {
        let session = Session::new(self, eio, b64, transport, peer);
        lock(&self.sessions).insert(session.sid, session.clone());
        session
    }

    /// Whether addresses are kept (a per-address limit is set).
    pub(crate) fn per_address_kept(&self) -> bool {
        self.config.max_connections_per_ip > 0 || self.handshake_rate.is_some()
    }

    /// Takes one connection off [`Inner::count`], telling a shutdown that
    /// waits once none is left.
    pub(crate) fn uncount(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.none_left.notify_waiters();
        }
    }

    /// Gives back what the admission counted.
    pub(crate) fn release(&self, peer: Option<SocketAddr>) {
        self.uncount();
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

    /// Whether `session` is still registered (not forgotten).
    pub(crate) fn knows(&self, session: &Session) -> bool {
        lock(&self.sessions).contains_key(&session.sid)
    }

    /// Removes a finished session.
    pub(crate) fn forget(&self, session: &Session) {
        let removed = lock(&self.sessions).remove(&session.sid).is_some();
        if removed {
            self.release(session.peer);
        }
    }
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

/// A JSON error answer with any code and message.
pub(crate) fn json_error(status: StatusCode, code: u8, message: &str) -> Response<Body> {
    let body = serde_json::json!({"code": code, "message": message}).to_string();
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}
