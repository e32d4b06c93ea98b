//! A connection's read gate: the application closes it to stop the server
//! from reading more of the client's packets (its queue of work is full),
//! and opens it again; nothing read is dropped meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// Open or closed; the connection's reader waits while it is closed.
#[derive(Default)]
pub struct ReadGate {
    closed: AtomicBool,
    /// Readers waiting for the gate to open (the websocket task, or the
    /// long-polling POST in flight; empty and unallocated while open).
    waiters: Mutex<Vec<Waker>>,
}

impl std::fmt::Debug for ReadGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadGate")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl ReadGate {
    /// Stops reads: the reader waits before its next packet.
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

    /// Whether reads wait.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Ready while the gate is open; otherwise registers the reader to be
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

    /// Waits until the gate is open.
    pub async fn opened(&self) {
        std::future::poll_fn(|cx| self.poll_open(cx)).await
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, Vec<Waker>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn a_closed_gate_holds_readers_until_opened() {
        let gate = std::sync::Arc::new(ReadGate::default());
        assert!(gate.opened().now_or_never().is_some());
        gate.close();
        assert!(gate.opened().now_or_never().is_none());
        gate.open();
        assert!(gate.opened().now_or_never().is_some());
    }
}
