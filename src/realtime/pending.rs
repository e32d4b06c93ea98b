//! Counts a session's messages that the store has not completed yet, so
//! events that must come after them (ignore messages, sync, leave, close)
//! can wait for them.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// The writes of one session still in the store's queue, and their bytes.
#[derive(Default)]
pub(super) struct PendingWrites {
    count: AtomicUsize,
    bytes: AtomicUsize,
    idle: Notify,
    /// Notified on every completion (for [`PendingWrites::wait_bytes_below`]).
    progress: Notify,
}

impl PendingWrites {
    /// Records a submitted write of `bytes`.
    pub(super) fn started(&self, bytes: usize) {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Records a completed write of `bytes`; wakes waiters when none is left.
    pub(super) fn finished(&self, bytes: usize) {
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.progress.notify_waiters();
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Bytes of writes pending.
    pub(super) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Waits until the pending writes hold at most `bytes`.
    pub(super) async fn wait_bytes_below(&self, bytes: usize) {
        loop {
            let notified = self.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.bytes() <= bytes {
                return;
            }
            notified.await;
        }
    }

    /// Whether no write is pending.
    pub(super) fn is_idle(&self) -> bool {
        self.count.load(Ordering::Acquire) == 0
    }

    /// Waits until every write submitted so far has completed.
    pub(super) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Register before checking, so a completion in between is not missed.
            notified.as_mut().enable();
            if self.is_idle() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn waits_for_the_last_write() {
        let p = Arc::new(PendingWrites::default());
        p.wait_idle().await;
        p.started(10);
        p.started(20);
        let waiter = tokio::spawn({
            let p = p.clone();
            async move { p.wait_idle().await }
        });
        p.finished(10);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert_eq!(p.bytes(), 20);
        p.finished(20);
        waiter.await.expect("waiter");
        assert!(p.is_idle());
    }

    #[tokio::test]
    async fn waits_until_the_bytes_pending_fit() {
        let p = Arc::new(PendingWrites::default());
        p.started(100);
        p.started(100);
        let waiter = tokio::spawn({
            let p = p.clone();
            async move { p.wait_bytes_below(150).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        p.finished(100);
        waiter.await.expect("waiter");
    }
}
