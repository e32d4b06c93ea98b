//! sync: paging through a room's history, gzip encoding, remote_sync.

use std::io::Write as _;

use base64::Engine as _;
use serde_json::value::RawValue;
use serde_json::Value;
use socketioxide::extract::AckSender;

use super::session::{Flow, Phase, Session};
use crate::protocol::{self, ack_status, event, reason, StatusReply, SyncReply, UidEvent};
use crate::store::sync_page;

impl Session {
    pub(super) async fn sync(&mut self, data: Result<Value, String>, ack: AckSender) -> Flow {
        let Phase::Joined(joined) = &self.phase else {
            let _ = ack.send(&StatusReply::fail(
                ack_status::NOT_JOINED,
                reason::NOT_JOINED,
            ));
            return Flow::Continue;
        };
        let joined = joined.clone();
        // A sync sees every message this client sent before it.
        self.pending_writes.wait_idle().await;
        let request = protocol::parse_sync(&data.unwrap_or(Value::Null));
        let started = std::time::Instant::now();
        let page = match sync_page(
            self.hub.messages.as_ref(),
            &joined.room,
            request.offset,
            self.hub.config.sync_page_size,
        )
        .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "sync read failed");
                let _ = ack.send(&StatusReply::fail(
                    ack_status::STORAGE_UNAVAILABLE,
                    reason::STORAGE_UNAVAILABLE,
                ));
                return Flow::Continue;
            }
        };
        self.hub.metrics.store_op("sync_page", started);
        let offset = page.next_offset;
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
                    tracing::error!(error = %e, "gzip encoding failed");
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
        self.hub.metrics.sync_pages.inc();
        if let Err(e) = sent {
            tracing::debug!(error = %e, "sync reply not sent");
        }
        if request.offset == 0 && !joined.dummy {
            if let Some(uid) = &self.uid {
                let uid = uid.json.clone();
                self.to_room(&joined.room, event::REMOTE_SYNC, &UidEvent { uid: &uid })
                    .await;
            }
        }
        Flow::Continue
    }
}

/// base64 of the gzip of the JSON array of `items`.
fn gzip_base64(items: &[Box<RawValue>]) -> std::io::Result<String> {
    let json = serde_json::to_vec(items)?;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&json)?;
    let gz = enc.finish()?;
    Ok(base64::engine::general_purpose::STANDARD.encode(gz))
}
