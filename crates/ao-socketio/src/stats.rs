//! Counters of what the server refused or cut off, for the application's
//! metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds `max_connections`.
    ServerFull,
    /// The client's address holds `max_connections_per_ip`.
    TooManyFromAddress,
    /// The page's origin is not allowed.
    Origin,
    /// The client's address made more than `handshake_rate_per_ip`.
    HandshakeRate,
}

impl Refusal {
    /// Every refusal, for exporting the counters.
    pub const ALL: [Refusal; 4] = [
        Refusal::ServerFull,
        Refusal::TooManyFromAddress,
        Refusal::Origin,
        Refusal::HandshakeRate,
    ];

    /// A label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::ServerFull => "server_full",
            Refusal::TooManyFromAddress => "too_many_from_address",
            Refusal::Origin => "origin",
            Refusal::HandshakeRate => "handshake_rate",
        }
    }
}

/// The server's counters (monotonic, since start).
#[derive(Debug, Default)]
pub struct Stats {
    refused: [AtomicU64; Refusal::ALL.len()],
    slow_clients: AtomicU64,
    malformed: AtomicU64,
}

impl Stats {
    pub(crate) fn refused(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn slow_client(&self) {
        self.slow_clients.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
    }

    /// Handshakes refused for `why`.
    pub fn refusals(&self, why: Refusal) -> u64 {
        self.refused[why as usize].load(Ordering::Relaxed)
    }

    /// Clients disconnected because their outbound queue was full.
    pub fn slow_clients(&self) -> u64 {
        self.slow_clients.load(Ordering::Relaxed)
    }

    /// Packets that were not the protocol (each closed its connection).
    pub fn malformed_packets(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }
}
