//! Sync read-ahead: while a client receives one page of history, the next
//! page of inserts is read from the store, so its request is answered
//! without waiting for the store.
//!
//! Only a page that was full when read is handed out: inserts are
//! append-only within an epoch, so such a page is what a read at request
//! time would return unless the history was cleared in between, which
//! [`Bus::history_clears`](super::bus::Bus::history_clears) tells. Updates
//! are never read ahead; the last page reads them when it is asked for.

use futures_util::future::{FutureExt as _, RemoteHandle};
use tokio::sync::OwnedSemaphorePermit;

use crate::app::AppState;
use crate::store::Page;

/// Pages read ahead at once on this node, across all sessions: bounds the
/// memory held for clients that stop syncing half-way.
pub(super) const MAX_PAGES: usize = 64;

/// The next page of one session's sync, being read or read.
pub(super) struct ReadAhead {
    room: String,
    offset: u64,
    /// [`Bus::history_clears`](super::bus::Bus::history_clears) when the read started.
    clears: u64,
    /// Dropping it cancels the read.
    page: RemoteHandle<Option<Page>>,
    _permit: OwnedSemaphorePermit,
}

impl ReadAhead {
    /// Starts reading the page of `room` at `offset`, unless [`MAX_PAGES`]
    /// are being read ahead already.
    pub(super) fn start(state: &AppState, room: &str, offset: u64) -> Option<Box<ReadAhead>> {
        let permit = state.read_ahead().clone().try_acquire_owned().ok()?;
        let clears = state.bus().history_clears();
        let store = state.messages().clone();
        let limit = state.config().sync_page_size;
        let max_bytes = state.config().sync_page_max_bytes;
        let owned_room = room.to_owned();
        let (read, page) = async move {
            let page = store
                .page(&owned_room, offset, limit, max_bytes)
                .await
                .ok()?;
            page.more.then_some(page)
        }
        .remote_handle();
        tokio::spawn(read);
        Some(Box::new(ReadAhead {
            room: room.to_owned(),
            offset,
            clears,
            page,
            _permit: permit,
        }))
    }

    /// The page read ahead, if it is the one asked for, was full and no
    /// history was cleared since it was read.
    pub(super) async fn take(
        self: Box<Self>,
        state: &AppState,
        room: &str,
        offset: u64,
    ) -> Option<Page> {
        if self.room != room || self.offset != offset {
            return None;
        }
        let page = self.page.await?;
        (state.bus().history_clears() == self.clears).then_some(page)
    }
}
