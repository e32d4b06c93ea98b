//! The clustered message store: the original service's Redis layout.
//!
//! Every write is one Lua script that stores the message and publishes it
//! on the room's channel in the same atomic step, so all nodes see a room's
//! messages in seq order and a seq is never assigned twice. Writes are
//! dispatched in submission order on one connection and complete in that
//! order.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use fred::prelude::{HashesInterface, SortedSetsInterface};
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Entry, MessageStore, NotStored, Page, StoreError, Stored, UpdatePage, Write, WriteOp};
use crate::protocol::{event, SEQ_KEY};
use crate::redis::{room_frame_head, scripts, FrameTags, Redis, RedisError, RESET_EVENT};

type Pending = Pin<Box<dyn Future<Output = Result<Stored, NotStored>> + Send>>;

/// Redis-backed [`MessageStore`].
pub(crate) struct RedisMessageStore {
    redis: Redis,
    completions: mpsc::UnboundedSender<(Pending, super::Completion)>,
}

impl RedisMessageStore {
    /// A store on `redis`; starts the task that completes writes in order.
    pub(crate) fn new(redis: Redis) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(complete_in_order(rx));
        Self {
            redis,
            completions: tx,
        }
    }
}

/// Runs completions in the order their writes were submitted, while the
/// writes themselves are in flight together.
async fn complete_in_order(mut rx: mpsc::UnboundedReceiver<(Pending, super::Completion)>) {
    let mut inflight = FuturesOrdered::new();
    loop {
        tokio::select! {
            job = rx.recv() => match job {
                Some((fut, done)) => inflight.push_back(async move { done(fut.await) }),
                None => break,
            },
            Some(()) = inflight.next(), if !inflight.is_empty() => {}
        }
    }
    while inflight.next().await.is_some() {}
}

/// Polls `fut` once so that a Redis command it sends is dispatched now, in
/// the caller's order, rather than whenever an executor first polls it.
fn dispatch(mut fut: Pending) -> Pending {
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => Box::pin(std::future::ready(out)),
        Poll::Pending => fut,
    }
}

fn backend(e: RedisError) -> StoreError {
    StoreError::Redis(e)
}

fn new_epoch() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// JSON this store produced itself (serde's output, or it with a seq
/// appended) as a raw value.
fn to_raw(json: String) -> Arc<RawValue> {
    match RawValue::from_string(json) {
        Ok(raw) => Arc::from(raw),
        // Unreachable: the text is valid JSON by construction.
        Err(_) => Arc::from(RawValue::NULL.to_owned()),
    }
}

/// A stored `{"data": <msg>, "ts": <unix s>}` element.
#[derive(Deserialize)]
struct Element<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default)]
    ts: Option<f64>,
}

#[derive(Deserialize)]
struct SeqProbe {
    #[serde(default)]
    seq: Option<Value>,
}

/// Reads a stored element; a message written by the original service has
/// no `seq`, so it gets its position in the list.
impl RedisMessageStore {
    /// [`MessageStore::updates`] for a room with updates of the original
    /// service: those have no order record and come first, by time, with
    /// order keys counted back from -1 (the newest), so the keys of the
    /// ones not yet sent do not change when an older one is updated again.
    /// Reads the whole hash; only such rooms pay for it.
    async fn updates_with_legacy(
        &self,
        room: &str,
        after: i64,
        max_bytes: usize,
    ) -> Result<UpdatePage, StoreError> {
        let keys = &self.redis.keys;
        let client = self.redis.cmd();
        let all: std::collections::HashMap<String, String> = client
            .hgetall(keys.msg(room, "update"))
            .await
            .map_err(|e| backend(e.into()))?;
        let order: Vec<(String, f64)> = client
            .zrange(
                keys.msg(room, "update_order"),
                0,
                -1,
                None,
                false,
                None,
                true,
            )
            .await
            .map_err(|e| backend(e.into()))?;
        let rank: std::collections::HashMap<&str, i64> = order
            .iter()
            .map(|(id, s)| (id.as_str(), *s as i64))
            .collect();
        let mut legacy: Vec<(i64, &String, Entry)> = Vec::new();
        let mut ranked: Vec<(i64, Entry)> = Vec::new();
        for (id, raw) in &all {
            let Some(entry) = parse_element(raw, None) else {
                continue;
            };
            match rank.get(id.as_str()) {
                Some(&r) => ranked.push((r, entry)),
                None => legacy.push((entry.ts, id, entry)),
            }
        }
        legacy.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        let count = legacy.len() as i64;
        let mut entries: Vec<(i64, Entry)> = legacy
            .into_iter()
            .enumerate()
            .map(|(i, (_, _, e))| (i as i64 - count, e))
            .collect();
        ranked.sort_by_key(|(r, _)| *r);
        entries.extend(ranked);
        entries.retain(|(key, _)| *key > after);
        let (keep, _) = super::fitting(
            entries.iter().map(|(_, e)| super::entry_bytes(e)),
            max_bytes,
            true,
        );
        let more = keep < entries.len();
        entries.truncate(keep);
        Ok(UpdatePage { entries, more })
    }
}

fn parse_element(raw: &str, seq: Option<u64>) -> Option<Entry> {
    let el: Element<'_> = serde_json::from_str(raw).ok()?;
    let ts = el.ts.unwrap_or(0.0) as i64;
    let data = el.data.get();
    let body = match seq {
        Some(seq)
            if data.starts_with('{')
                && serde_json::from_str::<SeqProbe>(data).is_ok_and(|p| p.seq.is_none()) =>
        {
            let inner = data[1..data.len() - 1].trim();
            let text = if inner.is_empty() {
                format!("{{\"{SEQ_KEY}\":{seq}}}")
            } else {
                format!("{{{inner},\"{SEQ_KEY}\":{seq}}}")
            };
            RawValue::from_string(text).ok()?
        }
        _ => el.data.to_owned(),
    };
    Some(Entry { body, ts })
}

#[async_trait::async_trait]
impl MessageStore for RedisMessageStore {
    async fn submit(&self, write: Write) {
        let Write {
            room,
            op,
            body,
            sender,
            done,
        } = write;
        // Never `{}`: the sender stamp is always there.
        let json = body.into_string();
        let redis = self.redis.clone();
        let fut: Pending = Box::pin(async move {
            let keys = &redis.keys;
            let channel = keys.room_channel(&room);
            let head = room_frame_head(&room, event::MSG, FrameTags::except(sender.as_deref()));
            let without_close = &json[..json.len() - 1];
            // The insert's seq, or none; whether the message was written.
            let (written, durable) = match op {
                WriteOp::Insert => (
                    scripts::run::<(u64, i64)>(
                        &redis.client,
                        scripts::INSERT,
                        vec![keys.msg(&room, "insert"), keys.msg(&room, "epoch")],
                        vec![without_close.to_owned(), head, channel, new_epoch()],
                    )
                    .await
                    .map(|(seq, _ts)| Some(seq)),
                    true,
                ),
                WriteOp::Update { msg_id } => (
                    scripts::run::<i64>(
                        &redis.client,
                        scripts::UPDATE,
                        vec![
                            keys.msg(&room, "update"),
                            keys.msg(&room, "update_backup"),
                            keys.msg(&room, "update_order"),
                            keys.msg(&room, "epoch"),
                        ],
                        vec![json.clone(), msg_id, head, channel, new_epoch()],
                    )
                    .await
                    .map(|_ts| None),
                    true,
                ),
                WriteOp::Ignore => (
                    redis
                        .publish_room(
                            &room,
                            event::MSG,
                            &json,
                            FrameTags::except(sender.as_deref()),
                        )
                        .await
                        .map(|()| None),
                    false,
                ),
            };
            match written {
                Ok(seq) => Ok(Stored {
                    seq,
                    durable,
                    published: true,
                    body: to_raw(match seq {
                        Some(seq) => format!("{without_close},\"{SEQ_KEY}\":{seq}}}"),
                        None => json,
                    }),
                }),
                // Not written: this node's members still get it (as it was
                // sent, without seq); the sender is told it failed.
                Err(e) => Err(NotStored {
                    error: backend(e),
                    relay_anyway: Some(to_raw(json)),
                }),
            }
        });
        let fut = dispatch(fut);
        if let Err(mpsc::error::SendError((_, done))) = self.completions.send((fut, done)) {
            done(Err(StoreError::Closed.into()));
        }
    }

    async fn page(
        &self,
        room: &str,
        offset: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page, StoreError> {
        let keys = &self.redis.keys;
        let (len, epoch, items): (u64, String, Vec<String>) = scripts::run(
            &self.redis.client,
            scripts::PAGE,
            vec![keys.msg(room, "insert"), keys.msg(room, "epoch")],
            vec![
                offset.to_string(),
                limit.to_string(),
                new_epoch(),
                max_bytes.to_string(),
            ],
        )
        .await
        .map_err(backend)?;
        let start = offset.min(len);
        let read = items.len() as u64;
        let items: Vec<Entry> = items
            .iter()
            .enumerate()
            .filter_map(|(i, raw)| parse_element(raw, Some(start + i as u64)))
            .collect();
        let more = start + read < len;
        Ok(Page {
            start,
            items,
            more,
            epoch,
        })
    }

    async fn updates(
        &self,
        room: &str,
        after: i64,
        max_bytes: usize,
    ) -> Result<UpdatePage, StoreError> {
        let keys = &self.redis.keys;
        let reply: Vec<String> = scripts::run(
            &self.redis.client,
            scripts::UPDATES_PAGE,
            vec![keys.msg(room, "update"), keys.msg(room, "update_order")],
            vec![after.max(0).to_string(), max_bytes.to_string()],
        )
        .await
        .map_err(backend)?;
        if reply.first().is_some_and(|m| m == "legacy") {
            // Updates of the original service, which have no order record.
            return self.updates_with_legacy(room, after, max_bytes).await;
        }
        let mut page = UpdatePage {
            more: reply.first().is_some_and(|m| m == "1"),
            entries: Vec::new(),
        };
        for pair in reply.get(1..).unwrap_or_default().chunks_exact(2) {
            let key = pair[0].parse::<f64>().map_or(0, |k| k as i64);
            if let Some(entry) = parse_element(&pair[1], None) {
                page.entries.push((key, entry));
            }
        }
        Ok(page)
    }

    async fn clear(&self, room: &str) -> Result<(), StoreError> {
        let keys = &self.redis.keys;
        let _: i64 = scripts::run(
            &self.redis.client,
            scripts::CLEAR,
            vec![
                keys.msg(room, "insert"),
                keys.msg(room, "update"),
                keys.msg(room, "update_backup"),
                keys.msg(room, "update_order"),
                keys.msg(room, "ignore"),
                keys.msg(room, "epoch"),
            ],
            vec![
                new_epoch(),
                keys.room_channel(room),
                format!(
                    "{}null}}",
                    room_frame_head(room, RESET_EVENT, FrameTags::default())
                ),
            ],
        )
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        use fred::interfaces::ClientLike;
        let _: String = self
            .redis
            .cmd()
            .ping(None)
            .await
            .map_err(|e| backend(e.into()))?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every write is durable when its script returns; wait for the ones
        // in flight by queueing an empty completion behind them.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let fut: Pending = Box::pin(async {
            Err(StoreError::Closed.into()) // never delivered to a client
        });
        let _ = self.completions.send((
            fut,
            Box::new(move |_| {
                let _ = tx.send(());
            }),
        ));
        let _ = rx.await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_element;

    #[test]
    fn original_elements_get_their_position_as_seq() {
        let e = parse_element(r#"{"data":{"a":1},"ts":1700000000}"#, Some(7)).unwrap();
        assert_eq!(e.body.get(), r#"{"a":1,"seq":7}"#);
        assert_eq!(e.ts, 1_700_000_000);
        let e = parse_element(r#"{"data":{},"ts":1}"#, Some(0)).unwrap();
        assert_eq!(e.body.get(), r#"{"seq":0}"#);
    }

    #[test]
    fn stored_seq_is_kept() {
        let e = parse_element(r#"{"data":{"a":1,"seq":3},"ts":1}"#, Some(3)).unwrap();
        assert_eq!(e.body.get(), r#"{"a":1,"seq":3}"#);
        assert!(parse_element("not json", Some(0)).is_none());
    }
}
