//! Counts a session's messages that the store has not completed yet, so
//! events that must come after them (ignore messages, sync, leave, close)
//! can wait for them.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// The writes of one session still in the store's queue.
#[derive(Default)]
pub struct PendingWrites {
    count: AtomicUsize,
    idle: Notify,
}

impl PendingWrites {
    /// Records a submitted write.
    pub fn started(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// Records a completed write; wakes waiters when none is left.
    pub fn finished(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Whether no write is pending.
    pub fn is_idle(&self) -> bool {
        self.count.load(Ordering::Acquire) == 0
    }

    /// Waits until every write submitted so far has completed.
    pub async fn wait_idle(&self) {
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
        p.started();
        p.started();
        let waiter = tokio::spawn({
            let p = p.clone();
            async move { p.wait_idle().await }
        });
        p.finished();
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        p.finished();
        waiter.await.expect("waiter");
        assert!(p.is_idle());
    }
}
