//! The server's settings.

use std::time::Duration;

/// Which page origins may open connections.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Origins {
    /// Any origin, with the CORS answers socket.io 2.x gave: the origin
    /// mirrored with credentials, any preflight allowed.
    #[default]
    Any,
    /// Only these origins (`scheme://host[:port]`, compared exactly);
    /// requests from others are refused with 403. Requests without an
    /// `Origin` header (native clients) are always accepted.
    List(Vec<String>),
}

impl Origins {
    /// Whether a request with this `Origin` header value may connect.
    pub fn allows(&self, origin: Option<&[u8]>) -> bool {
        match (self, origin) {
            (Origins::Any, _) | (_, None) => true,
            (Origins::List(list), Some(origin)) => list.iter().any(|o| o.as_bytes() == origin),
        }
    }
}

/// The server's settings; [`Config::default`] gives the reference
/// server's defaults, but for a per-address handshake rate (the reference
/// server has none; without one a single client can open sessions faster
/// than they time out); [`Config::builder`] changes them (a setting added
/// later is not a breaking change).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// How often the heartbeat runs: engine.io 4 servers ping at this
    /// interval, engine.io 3 clients are told to.
    pub ping_interval: Duration,
    /// How long a heartbeat may go unanswered before the connection is
    /// closed.
    pub ping_timeout: Duration,
    /// How long a websocket may take from its probe to the upgrade.
    pub upgrade_timeout: Duration,
    /// How long a socket.io 3.x/4.x client may take to connect to the
    /// namespace after the engine.io handshake.
    pub connect_timeout: Duration,
    /// The largest websocket message (and binary attachment) a client may
    /// send.
    pub max_message_bytes: usize,
    /// The largest long-polling request body.
    pub max_payload_bytes: usize,
    /// The most bytes that may wait in one connection's outbound queue; a
    /// client that lets more pile up is disconnected as too slow.
    pub queue_max_bytes: usize,
    /// Connections this server holds at most (0: no limit).
    pub max_connections: usize,
    /// Connections one client address may hold at most (0: no limit).
    pub max_connections_per_ip: usize,
    /// Handshakes one client address may make per second once its burst
    /// is used (0: no limit); more are refused with 429. With the connect
    /// timeout this bounds what one address can make the server hold in
    /// sessions that never connect: at most `handshake_burst_per_ip +
    /// handshake_rate_per_ip × connect_timeout` of them. Behind a proxy
    /// every client has the proxy's address.
    pub handshake_rate_per_ip: u32,
    /// Handshakes one client address may make at once before
    /// `handshake_rate_per_ip` applies (0: as many as the rate).
    pub handshake_burst_per_ip: u32,
    /// Which page origins may connect.
    pub origins: Origins,
    /// The read buffer of each websocket, held for its whole life.
    pub ws_read_buffer_bytes: usize,
    /// Whether engine.io 3 clients (socket.io-client 2.x) are served; a
    /// request without `EIO` counts as engine.io 3 (socket.io-client-swift
    /// v13–v15 send none), as in the reference server's `allowEIO3`.
    pub allow_eio3: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            upgrade_timeout: Duration::from_millis(10_000),
            connect_timeout: Duration::from_millis(45_000),
            max_message_bytes: 1_000_000,
            max_payload_bytes: 1_000_000,
            queue_max_bytes: 4 * 1024 * 1024,
            max_connections: 0,
            max_connections_per_ip: 0,
            handshake_rate_per_ip: 50,
            handshake_burst_per_ip: 500,
            origins: Origins::Any,
            ws_read_buffer_bytes: 1024,
            allow_eio3: true,
        }
    }
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder(Config::default())
    }
}

/// Builds a [`Config`]; each setter sets the field of the same name.
#[derive(Debug, Clone, Default)]
pub struct ConfigBuilder(Config);

impl ConfigBuilder {
    /// Sets [`Config::ping_interval`].
    pub fn ping_interval(mut self, value: Duration) -> Self {
        self.0.ping_interval = value;
        self
    }

    /// Sets [`Config::ping_timeout`].
    pub fn ping_timeout(mut self, value: Duration) -> Self {
        self.0.ping_timeout = value;
        self
    }

    /// Sets [`Config::upgrade_timeout`].
    pub fn upgrade_timeout(mut self, value: Duration) -> Self {
        self.0.upgrade_timeout = value;
        self
    }

    /// Sets [`Config::connect_timeout`].
    pub fn connect_timeout(mut self, value: Duration) -> Self {
        self.0.connect_timeout = value;
        self
    }

    /// Sets [`Config::max_message_bytes`].
    pub fn max_message_bytes(mut self, value: usize) -> Self {
        self.0.max_message_bytes = value;
        self
    }

    /// Sets [`Config::max_payload_bytes`].
    pub fn max_payload_bytes(mut self, value: usize) -> Self {
        self.0.max_payload_bytes = value;
        self
    }

    /// Sets [`Config::queue_max_bytes`].
    pub fn queue_max_bytes(mut self, value: usize) -> Self {
        self.0.queue_max_bytes = value;
        self
    }

    /// Sets [`Config::max_connections`].
    pub fn max_connections(mut self, value: usize) -> Self {
        self.0.max_connections = value;
        self
    }

    /// Sets [`Config::max_connections_per_ip`].
    pub fn max_connections_per_ip(mut self, value: usize) -> Self {
        self.0.max_connections_per_ip = value;
        self
    }

    /// Sets [`Config::handshake_rate_per_ip`].
    pub fn handshake_rate_per_ip(mut self, value: u32) -> Self {
        self.0.handshake_rate_per_ip = value;
        self
    }

    /// Sets [`Config::handshake_burst_per_ip`].
    pub fn handshake_burst_per_ip(mut self, value: u32) -> Self {
        self.0.handshake_burst_per_ip = value;
        self
    }

    /// Sets [`Config::origins`].
    pub fn origins(mut self, value: Origins) -> Self {
        self.0.origins = value;
        self
    }

    /// Sets [`Config::ws_read_buffer_bytes`].
    pub fn ws_read_buffer_bytes(mut self, value: usize) -> Self {
        self.0.ws_read_buffer_bytes = value;
        self
    }

    /// Sets [`Config::allow_eio3`].
    pub fn allow_eio3(mut self, value: bool) -> Self {
        self.0.allow_eio3 = value;
        self
    }

    /// The settings.
    pub fn build(self) -> Config {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_without_a_header_are_always_allowed() {
        let list = Origins::List(vec!["https://app.example".into()]);
        assert!(list.allows(None));
        assert!(list.allows(Some(b"https://app.example")));
        assert!(!list.allows(Some(b"https://evil.example")));
        assert!(Origins::Any.allows(Some(b"https://evil.example")));
    }
}
