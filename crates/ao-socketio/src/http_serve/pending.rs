//! Connections with no request in progress (just accepted, in their TLS
//! handshake, or idle between keep-alive requests), capped: at the cap the
//! oldest of them is closed to make room for the newest.
//!
//! Closing the oldest rather than refusing the newest is what keeps the cap
//! from locking clients out: a client that holds sockets open without
//! sending anything would otherwise fill the cap and keep it full, while
//! now each of its sockets is closed once `max` newer ones arrived. A
//! client that means to speak sends its request head within a round trip
//! of connecting, long before that, and leaves the set.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// The connections with no request in progress, oldest first.
pub(super) struct Pending {
    max: usize,
    set: Mutex<Set>,
    /// Connections closed to make room, since start.
    closed: AtomicU64,
}

#[derive(Default)]
struct Set {
    next: u64,
    conns: BTreeMap<u64, Arc<Tracked>>,
}

/// One connection's part in [`Pending`].
#[derive(Default)]
pub(super) struct Tracked {
    /// Its key in the set while it is there; 0 when it is not. Changed
    /// under the set's lock only.
    key: AtomicU64,
    /// Requests of it being answered now.
    in_flight: AtomicUsize,
    /// Requests it made, ever.
    requests: AtomicU64,
    /// Told when it is to close to make room.
    evict: Notify,
}

impl Pending {
    /// A set of at most `max` connections (0: no cap).
    pub(super) fn new(max: usize) -> Pending {
        Pending {
            max,
            set: Mutex::new(Set {
                next: 1,
                conns: BTreeMap::new(),
            }),
            closed: AtomicU64::new(0),
        }
    }

    fn set(&self) -> MutexGuard<'_, Set> {
        self.set.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections in the set now.
    pub(super) fn len(&self) -> usize {
        self.set().conns.len()
    }

    /// Connections closed to make room, since start.
    pub(super) fn closed(&self) -> u64 {
        self.closed.load(Ordering::Relaxed)
    }

    /// A new connection, pending until its first request.
    pub(super) fn accepted(&self) -> Arc<Tracked> {
        let tracked = Arc::new(Tracked::default());
        self.enter(&tracked);
        tracked
    }

    /// `tracked` has no request in progress (again): it enters the set, and
    /// the oldest one leaves it, closed, if the set is over its cap.
    fn enter(&self, tracked: &Arc<Tracked>) {
        let mut set = self.set();
        let key = set.next;
        set.next += 1;
        tracked.key.store(key, Ordering::Relaxed);
        set.conns.insert(key, tracked.clone());
        if self.max > 0 && set.conns.len() > self.max {
            self.close_oldest_locked(&mut set);
        }
    }

    /// Closes the oldest pending connection, if there is one; `false` if
    /// there is none. For when the process ran out of file descriptors.
    pub(super) fn close_oldest(&self) -> bool {
        let mut set = self.set();
        self.close_oldest_locked(&mut set)
    }

    fn close_oldest_locked(&self, set: &mut Set) -> bool {
        let Some((_, oldest)) = set.conns.pop_first() else {
            return false;
        };
        oldest.key.store(0, Ordering::Relaxed);
        oldest.evict.notify_one();
        self.closed.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// `tracked` leaves the set (a request started, or it closed).
    pub(super) fn leave(&self, tracked: &Tracked) {
        let mut set = self.set();
        let key = tracked.key.swap(0, Ordering::Relaxed);
        if key != 0 {
            set.conns.remove(&key);
        }
    }

    /// A request of `tracked` started.
    pub(super) fn request_started(&self, tracked: &Tracked) {
        tracked.requests.fetch_add(1, Ordering::Relaxed);
        if tracked.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            self.leave(tracked);
        }
    }

    /// A request of `tracked` was answered (or dropped).
    pub(super) fn request_done(&self, tracked: &Arc<Tracked>) {
        if tracked.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.enter(tracked);
        }
    }
}

impl Tracked {
    /// Whether it has made a request yet.
    pub(super) fn has_requested(&self) -> bool {
        self.requests.load(Ordering::Relaxed) > 0
    }

    /// Completes when it is to close to make room. A connection chosen in
    /// the instant its request arrived is kept (its request is served; it
    /// re-enters the set when idle again).
    pub(super) async fn evicted(&self) {
        loop {
            self.evict.notified().await;
            if self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn the_oldest_pending_connection_makes_room() {
        let pending = Pending::new(2);
        let a = pending.accepted();
        let b = pending.accepted();
        // b makes a request: only a is pending.
        pending.request_started(&b);
        let c = pending.accepted();
        assert_eq!(pending.len(), 2);
        assert!(a.evicted().now_or_never().is_none());
        // d is over the cap: a, the oldest, goes.
        let d = pending.accepted();
        assert_eq!(pending.len(), 2);
        assert!(a.evicted().now_or_never().is_some());
        assert!(c.evicted().now_or_never().is_none());
        assert_eq!(pending.closed(), 1);
        // b is idle again, newest: c goes next.
        pending.request_done(&b);
        assert!(c.evicted().now_or_never().is_some());
        assert!(d.evicted().now_or_never().is_none());
        pending.leave(&d);
        pending.leave(&b);
        assert_eq!(pending.len(), 0);
    }

    #[test]
    fn a_connection_with_a_request_in_progress_is_not_evicted() {
        let pending = Pending::new(0);
        let a = pending.accepted();
        pending.request_started(&a);
        // Chosen in the instant its request arrived: kept.
        a.evict.notify_one();
        assert!(a.evicted().now_or_never().is_none());
        assert!(!pending.close_oldest());
    }
}
