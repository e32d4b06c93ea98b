//! Prometheus metrics: what the server counts, and their text encoding.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Reasons a msg is dropped (`ao_messages_dropped_total`).
pub const DROP_REASONS: [&str; 13] = [
    "rate_limit",
    "room_rate_limit",
    "store_queue_full",
    "unauthenticated",
    "not_joined",
    "dummy",
    "malformed",
    "not_an_object",
    "too_large",
    "missing_msg_id",
    "storage",
    "inbound_overflow",
    "slow_client",
];
/// Reasons the server closes a connection (`ao_disconnects_total`).
pub const DISCONNECT_REASONS: [&str; 6] = [
    "auth_timeout",
    "join_timeout",
    "kickout",
    "inbound_overflow",
    "oversize_before_auth",
    "slow_client",
];
/// Reasons an authentication is refused (`ao_auth_failures_total`).
pub const AUTH_FAILURE_REASONS: [&str; 8] = [
    "wrong_credentials",
    "rate_limit",
    "too_many_failures",
    "timeout",
    "server_error",
    "jwt_invalid",
    "jwt_expired",
    "jwt_wrong_sub",
];
/// Requests other than msgs refused by a limit (`ao_requests_refused_total`).
pub const REQUEST_REFUSALS: [&str; 2] = ["room_full", "api_login_throttled"];
/// Timed store operations (`ao_store_operation_seconds`).
pub const STORE_OPS: [&str; 2] = ["write", "sync_page"];

/// A `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub(crate) reason: &'static str,
}

/// An `op` label of store operations.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Op {
    pub(crate) op: &'static str,
}

/// The engine.io protocol generation of a connection (3: socket.io-client 2.x, 4: 3.x/4.x).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Generation {
    pub(crate) engineio: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: &'static str,
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    /// Connected sockets, set at scrape time.
    pub connected_sockets: Family<Generation, Gauge>,
    /// Authenticated users, set at scrape time.
    pub authenticated_users: Gauge,
    /// Rooms with at least one member, set at scrape time.
    pub rooms: Gauge,
    pub(crate) messages_received: Counter,
    /// Deliveries of a msg to a member.
    pub messages_relayed: Counter,
    pub(crate) messages_stored: Counter,
    /// Deliveries made from the store because pub/sub missed them (cluster).
    pub relay_recovered: Counter,
    /// Presence changes told from a room's presence log because pub/sub
    /// missed them (cluster).
    pub presence_recovered: Counter,
    pub(crate) messages_dropped: Family<Reason, Counter>,
    /// Connections the server closed.
    pub disconnects: Family<Reason, Counter>,
    pub(crate) sync_pages: Counter,
    pub(crate) auth_failures: Family<Reason, Counter>,
    /// Joins and API logins refused by a limit.
    pub requests_refused: Family<Reason, Counter>,
    /// The outcome of the last readiness check: 1 ready, 0 not.
    pub ready: Gauge,
    /// When the cluster-wide gauges were last counted.
    cluster_gauges_at: std::sync::Mutex<Option<std::time::Instant>>,
    /// Seconds a store operation took.
    pub store_latency: Family<Op, Histogram>,
    /// Its `write` series, taken once: one is observed for every msg.
    store_writes: Histogram,
    /// Clients disconnected because their outbound queue reached its byte
    /// limit (brought up to date at scrape time).
    pub slow_clients: Counter,
    /// Connections refused at the handshake, by reason (brought up to date
    /// at scrape time).
    pub connections_refused: Family<Reason, Counter>,
    /// HTTP connections closed by a deadline or the pending cap, by reason
    /// (brought up to date at scrape time).
    pub http_closed: Family<Reason, Counter>,
    /// TCP connections with no request in progress (set at scrape time).
    pub http_pending: Gauge,
}

/// The reasons of `ao_http_connections_closed_total`.
const HTTP_CLOSED: [&str; 3] = ["header_timeout", "body_timeout", "pending_cap"];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered under the `ao_` prefix.
    pub fn new() -> Self {
        let mut root = Registry::default();
        root.register_collector(Box::new(crate::process_metrics::ProcessCollector));
        let registry = root.sub_registry_with_prefix("ao");
        let connected_sockets = Family::<Generation, Gauge>::default();
        let authenticated_users = Gauge::default();
        let rooms = Gauge::default();
        let messages_received = Counter::default();
        let messages_relayed = Counter::default();
        let messages_stored = Counter::default();
        let relay_recovered = Counter::default();
        let presence_recovered = Counter::default();
        let messages_dropped = Family::<Reason, Counter>::default();
        let disconnects = Family::<Reason, Counter>::default();
        let sync_pages = Counter::default();
        let auth_failures = Family::<Reason, Counter>::default();
        let requests_refused = Family::<Reason, Counter>::default();
        // Listening means ready until a readiness check says otherwise.
        let ready = Gauge::default();
        ready.set(1);
        for reason in REQUEST_REFUSALS {
            let _ = requests_refused.get_or_create(&Reason { reason });
        }
        let store_latency = Family::<Op, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0001, 2.0, 16))) as fn() -> Histogram,
        );
        // Every label value known in advance is exported from the start, at 0.
        for reason in DROP_REASONS {
            let _ = messages_dropped.get_or_create(&Reason { reason });
        }
        for reason in DISCONNECT_REASONS {
            let _ = disconnects.get_or_create(&Reason { reason });
        }
        for reason in AUTH_FAILURE_REASONS {
            let _ = auth_failures.get_or_create(&Reason { reason });
        }
        for op in STORE_OPS {
            let _ = store_latency.get_or_create(&Op { op });
        }
        let store_writes = (*store_latency.get_or_create(&Op { op: "write" })).clone();
        let slow_clients = Counter::default();
        let connections_refused = Family::<Reason, Counter>::default();
        for why in ao_socketio::Refusal::ALL {
            let _ = connections_refused.get_or_create(&Reason {
                reason: why.label(),
            });
        }
        let http_closed = Family::<Reason, Counter>::default();
        for reason in HTTP_CLOSED {
            let _ = http_closed.get_or_create(&Reason { reason });
        }
        let http_pending = Gauge::default();
        let build = Family::<Build, Gauge>::default();
        build
            .get_or_create(&Build {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);

        registry.register(
            "connected_sockets",
            "Connected sockets by engine.io protocol generation",
            connected_sockets.clone(),
        );
        registry.register(
            "authenticated_users",
            "Users with an authenticated connection",
            authenticated_users.clone(),
        );
        registry.register("rooms", "Rooms with at least one member", rooms.clone());
        registry.register(
            "messages_received",
            "msg events received",
            messages_received.clone(),
        );
        registry.register(
            "messages_relayed",
            "msg deliveries to room members",
            messages_relayed.clone(),
        );
        registry.register(
            "messages_stored",
            "Messages made durable (inserts and updates)",
            messages_stored.clone(),
        );
        registry.register(
            "relay_recovered",
            "msg deliveries made from the store after Redis pub/sub missed them",
            relay_recovered.clone(),
        );
        registry.register(
            "presence_recovered",
            "presence changes told from a room's presence log after Redis pub/sub missed them",
            presence_recovered.clone(),
        );
        registry.register(
            "messages_dropped",
            "msg events refused, by reason",
            messages_dropped.clone(),
        );
        registry.register(
            "disconnects",
            "Connections the server closed, by reason",
            disconnects.clone(),
        );
        registry.register("sync_pages", "sync pages served", sync_pages.clone());
        registry.register(
            "auth_failures",
            "Refused authentications, by reason",
            auth_failures.clone(),
        );
        registry.register(
            "ready",
            "Whether the last readiness check (GET /readyz) passed: 1 ready, 0 not",
            ready.clone(),
        );
        registry.register(
            "requests_refused",
            "Joins and API logins refused by a limit, by reason",
            requests_refused.clone(),
        );
        registry.register(
            "store_operation_seconds",
            "Store operation latency",
            store_latency.clone(),
        );
        let log = &*crate::store::LOG_METRICS;
        registry.register(
            "store_log_sync_seconds",
            "Seconds each group commit of the embedded store's commit log took to write and fdatasync",
            log.sync_seconds.clone(),
        );
        registry.register(
            "store_log_stalls",
            "Group commits of the commit log the disk held back over 50 ms (a write and fdatasync, or a segment rotation, that took longer)",
            log.stalls.clone(),
        );
        registry.register(
            "store_log_failures",
            "Group commits of the commit log whose write or fdatasync failed",
            log.failures.clone(),
        );
        registry.register(
            "store_apply_failures",
            "Batches of the commit log the embedded database refused (each retry counts)",
            log.apply_failures.clone(),
        );
        registry.register(
            "slow_clients",
            "Clients disconnected because they did not read what was sent to them (outbound queue full)",
            slow_clients.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused at the handshake, by reason",
            connections_refused.clone(),
        );
        registry.register(
            "http_connections_closed",
            "HTTP connections closed by a deadline (request headers, request body) or to make room at the pending cap, by reason",
            http_closed.clone(),
        );
        registry.register(
            "http_pending_connections",
            "TCP connections with no request in progress (accepted, in their TLS handshake, or idle between requests)",
            http_pending.clone(),
        );
        registry.register("build_info", "Build information", build);
        Self {
            registry: root,
            connected_sockets,
            authenticated_users,
            rooms,
            messages_received,
            messages_relayed,
            messages_stored,
            relay_recovered,
            presence_recovered,
            messages_dropped,
            disconnects,
            sync_pages,
            slow_clients,
            connections_refused,
            http_closed,
            http_pending,
            auth_failures,
            requests_refused,
            ready,
            store_latency,
            store_writes,
            cluster_gauges_at: std::sync::Mutex::new(None),
        }
    }

    /// Counts a dropped msg.
    pub fn dropped(&self, reason: &'static str) {
        self.messages_dropped
            .get_or_create(&Reason { reason })
            .inc();
    }

    /// Brings the socket.io layer's counters into the exported ones.
    pub fn take_transport_stats(&self, stats: &ao_socketio::Stats) {
        let slow = stats.slow_clients();
        self.slow_clients
            .inc_by(slow.saturating_sub(self.slow_clients.get()));
        for why in ao_socketio::Refusal::ALL {
            let counter = self.connections_refused.get_or_create(&Reason {
                reason: why.label(),
            });
            counter.inc_by(stats.refusals(why).saturating_sub(counter.get()));
        }
    }

    /// Brings the HTTP server's counters into the exported ones.
    pub fn take_http_stats(&self, http: &ao_socketio::serve::HttpServer) {
        let stats = http.stats();
        for (reason, total) in HTTP_CLOSED.into_iter().zip([
            stats.header_timeouts(),
            stats.body_timeouts(),
            http.pending_closed(),
        ]) {
            let counter = self.http_closed.get_or_create(&Reason { reason });
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        self.http_pending
            .set(i64::try_from(http.pending_connections()).unwrap_or(i64::MAX));
    }

    /// Counts `n` messages dropped for `reason`.
    pub fn dropped_by(&self, reason: &'static str, n: u64) {
        self.messages_dropped
            .get_or_create(&Reason { reason })
            .inc_by(n);
    }

    /// Counts a connection the server closed.
    pub fn disconnected(&self, reason: &'static str) {
        self.disconnects.get_or_create(&Reason { reason }).inc();
    }

    /// Whether the cluster-wide gauges are older than `ttl` (and so are to
    /// be counted again now: the call takes the turn).
    pub fn cluster_gauges_due(&self, ttl: std::time::Duration) -> bool {
        let now = std::time::Instant::now();
        let mut at = crate::sync::lock(&self.cluster_gauges_at);
        match *at {
            Some(last) if now.duration_since(last) < ttl => false,
            _ => {
                *at = Some(now);
                true
            }
        }
    }

    /// Counts a join or API login refused by a limit.
    pub fn refused(&self, reason: &'static str) {
        self.requests_refused
            .get_or_create(&Reason { reason })
            .inc();
    }

    /// Counts a refused authentication.
    pub fn auth_failed(&self, reason: &'static str) {
        self.auth_failures.get_or_create(&Reason { reason }).inc();
    }

    /// Records how long a store operation took.
    pub fn store_op(&self, op: &'static str, started: std::time::Instant) {
        let seconds = started.elapsed().as_secs_f64();
        if op == "write" {
            self.store_writes.observe(seconds);
        } else {
            self.store_latency
                .get_or_create(&Op { op })
                .observe(seconds);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_writes_are_observed_in_the_exported_series() {
        let metrics = Metrics::new();
        let started = std::time::Instant::now();
        metrics.store_op("write", started);
        metrics.store_op("write", started);
        metrics.store_op("sync_page", started);
        let text = metrics.encode();
        let count = |op: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("ao_store_operation_seconds_count")
                        && l.contains(&format!("op=\"{op}\""))
                })
                .map(|l| l.rsplit(' ').next().unwrap_or_default().to_owned())
        };
        assert_eq!(count("write").as_deref(), Some("2"), "{text}");
        assert_eq!(count("sync_page").as_deref(), Some("1"), "{text}");
    }
}
