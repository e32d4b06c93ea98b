//! sync: paging through a room's history, gzip encoding, remote_sync.

use std::cell::RefCell;
use std::io::Write as _;

use super::ack::AckSender;
use base64::Engine as _;
use flate2::write::DeflateEncoder;
use flate2::{Compression, Crc};
use serde_json::value::RawValue;
use serde_json::Value;

use super::read_ahead::ReadAhead;
use super::session::{Flow, Phase, Session};
use crate::logging::Chain;
use crate::protocol::{self, ack_status, event, reason, StatusReply, SyncReply, UidEvent};
use crate::store::{self, sync_page, with_updates, StoreError, SyncPage};

/// Bytes that may still wait for the client when its next sync page is
/// built: live msgs, not a page.
const SYNC_QUEUED_BYTES: usize = 64 * 1024;

impl Session {
    pub(super) async fn sync(&mut self, data: Result<Value, String>, ack: AckSender) -> Flow {
        let Phase::Joined(login, joined) = &self.phase else {
            let _ = ack.send(&StatusReply::fail(
                ack_status::NOT_JOINED,
                reason::NOT_JOINED,
            ));
            return Flow::Continue;
        };
        let (joined, uid) = (joined.clone(), login.uid.json.clone());
        // A sync sees every message this client sent before it.
        self.pending_writes.wait_idle().await;
        // One page at a time: the next is built once the transport took the
        // last, so a client that asks and does not read holds one page here.
        self.socket.drained(SYNC_QUEUED_BYTES).await;
        if self.socket.is_closed() {
            return Flow::Continue;
        }
        let request = protocol::parse_sync(&data.unwrap_or(Value::Null));
        let page = match self.read_page(&joined.room, request.offset).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %Chain(&e), "sync read failed");
                let _ = ack.send(&StatusReply::fail(
                    ack_status::STORAGE_UNAVAILABLE,
                    reason::STORAGE_UNAVAILABLE,
                ));
                return Flow::Continue;
            }
        };
        let offset = page.next_offset;
        if page.more && store::updates_cursor(offset).is_none() {
            self.read_ahead = ReadAhead::start(&self.state, &joined.room, offset);
        }
        let items: Vec<Box<RawValue>> = page.entries.into_iter().map(|e| e.body).collect();
        let next = u8::from(page.more);
        let sent = if request.gzip {
            match gzip_base64(&items) {
                Ok(data) => self.socket.emit(
                    event::SYNC,
                    &SyncReply {
                        data,
                        offset,
                        next,
                        epoch: page.epoch,
                        encoding: Some("gzip"),
                    },
                ),
                Err(e) => {
                    tracing::error!(error = %Chain(&e), "gzip encoding failed");
                    return Flow::Continue;
                }
            }
        } else {
            self.socket.emit(
                event::SYNC,
                &SyncReply {
                    data: &items,
                    offset,
                    next,
                    epoch: page.epoch,
                    encoding: None,
                },
            )
        };
        self.state.metrics().sync_pages.inc();
        if let Err(e) = sent {
            tracing::debug!(error = %Chain(&e), "sync reply not sent");
        }
        if request.offset == 0 && !joined.dummy {
            self.to_room(&joined.room, event::REMOTE_SYNC, &UidEvent { uid: &uid })
                .await;
        }
        Flow::Continue
    }

    /// The sync page of `room` at `offset`: read ahead while the client
    /// received the previous one, or read now.
    async fn read_page(&mut self, room: &str, offset: u64) -> Result<SyncPage, StoreError> {
        let store = self.state.messages().as_ref();
        let started = std::time::Instant::now();
        let ahead = match self.read_ahead.take() {
            Some(ahead) => ahead.take(&self.state, room, offset).await,
            None => None,
        };
        let max_bytes = self.state.config().sync_page_max_bytes;
        let page = match ahead {
            Some(page) => with_updates(store, room, page, max_bytes).await,
            None => {
                let limit = self.state.config().sync_page_size;
                sync_page(store, room, offset, limit, max_bytes).await
            }
        };
        self.state.metrics().store_op("sync_page", started);
        page
    }
}

/// base64 of the gzip of the JSON array of `items`.
fn gzip_base64(items: &[Box<RawValue>]) -> std::io::Result<String> {
    let json = serde_json::to_vec(items)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(gzip(&json)?))
}

thread_local! {
    /// A deflate encoder per worker thread, reset for each page: a new one
    /// allocates and zeroes about 300 KiB of tables, which cost more than
    /// compressing the page itself.
    static DEFLATE: RefCell<DeflateEncoder<Vec<u8>>> =
        RefCell::new(DeflateEncoder::new(Vec::new(), Compression::fast()));
}

/// Fixed gzip member header (RFC 1952): magic, deflate, no flags, no mtime,
/// "fastest" compression, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];

/// One gzip member holding `data` (header, deflate stream, CRC-32, length).
/// flate2's `GzEncoder` cannot be reset, hence the framing here around a
/// reusable [`DeflateEncoder`].
fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    DEFLATE.with(|cell| {
        let mut enc = cell.borrow_mut();
        let mut out = Vec::with_capacity(data.len() / 4 + 64);
        out.extend_from_slice(&GZIP_HEADER);
        enc.reset(out)?;
        enc.write_all(data)?;
        let mut out = enc.reset(Vec::new())?;
        let mut crc = Crc::new();
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&crc.amount().to_le_bytes());
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn gzip_members_decode_and_the_encoder_is_reused_cleanly() {
        let a = br#"[{"a":1},{"b":"two"}]"#.repeat(50);
        let b = b"[]".to_vec();
        for data in [&a, &b, &a] {
            let gz = gzip(data).expect("gzip");
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .expect("valid gzip");
            assert_eq!(&back, data);
        }
    }
}
