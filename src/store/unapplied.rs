//! The writes that the commit log made durable and SQLite has not taken
//! yet, by room, so that a sync sees every acknowledged message at once.
//!
//! The writer adds a group's records once they are durable, before they are
//! acknowledged; the applier removes them once SQLite committed them. So a
//! reader that looks here first and in SQLite second misses nothing: what
//! was removed in between is already in SQLite, and what SQLite returns
//! twice is told apart by seq (inserts) or by ord (updates).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde_json::value::RawValue;

use super::journal::Record;
use super::{Entry, UpdatePage};

/// The unapplied writes of every room.
#[derive(Default)]
pub(super) struct Unapplied {
    rooms: HashMap<String, Tail>,
    bytes: usize,
}

/// One room's unapplied writes.
#[derive(Default)]
struct Tail {
    /// The seq of `inserts[0]`.
    first_seq: u64,
    /// Inserts in seq order: (body, ts).
    inserts: VecDeque<(Arc<RawValue>, i64)>,
    /// The latest update per msgId: (ord, body, ts).
    updates: HashMap<String, (i64, Arc<RawValue>, i64)>,
}

impl Tail {
    fn is_empty(&self) -> bool {
        self.inserts.is_empty() && self.updates.is_empty()
    }
}

/// A room's unapplied inserts from some offset.
#[derive(Debug, Default)]
pub(super) struct TailInserts {
    /// The seq of the room's first unapplied insert: every insert before it
    /// is in SQLite.
    pub first_seq: u64,
    /// The room's insert count, applied or not.
    pub len: u64,
    /// Unapplied inserts from the requested offset (or `first_seq`, if later).
    pub items: Vec<Entry>,
}

/// An update of a room: its msgId, its order and the message.
#[derive(Debug)]
pub(super) struct UpdateEntry {
    pub msg_id: String,
    pub ord: i64,
    pub entry: Entry,
}

impl Unapplied {
    /// Bytes the unapplied records hold.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records a durable write.
    /// The unapplied writes of `room`, made empty if it has none (its
    /// name copied only then: this runs for every write).
    fn tail(&mut self, room: &str) -> &mut Tail {
        if !self.rooms.contains_key(room) {
            self.rooms.insert(room.to_owned(), Tail::default());
        }
        self.rooms.get_mut(room).expect("inserted above")
    }

    pub(super) fn add(&mut self, record: &Record) {
        self.bytes += record.size();
        match record {
            Record::Insert {
                room,
                seq,
                ts,
                body,
            } => {
                let tail = self.tail(room);
                if tail.inserts.is_empty() {
                    tail.first_seq = *seq;
                }
                tail.inserts.push_back((body.clone(), *ts));
            }
            Record::Update {
                room,
                msg_id,
                ord,
                ts,
                body,
            } => {
                let tail = self.tail(room);
                tail.updates
                    .insert(msg_id.clone(), (*ord, body.clone(), *ts));
            }
        }
    }

    /// Forgets writes that SQLite committed: a room's inserts up to the
    /// last seq applied, and each update unless a later one replaced it.
    pub(super) fn remove_applied(&mut self, records: &[Record]) {
        for record in records {
            self.bytes = self.bytes.saturating_sub(record.size());
            let Some(tail) = self.rooms.get_mut(record.room()) else {
                continue;
            };
            match record {
                Record::Insert { seq, .. } => {
                    if tail.first_seq <= *seq && tail.inserts.pop_front().is_some() {
                        tail.first_seq += 1;
                    }
                }
                Record::Update { msg_id, ord, .. } => {
                    if tail.updates.get(msg_id).is_some_and(|(o, _, _)| o <= ord) {
                        tail.updates.remove(msg_id);
                    }
                }
            }
            if tail.is_empty() {
                self.rooms.remove(record.room());
            }
        }
    }

    /// Whether `room` has writes SQLite has not taken yet.
    pub(super) fn has_room(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// Forgets everything of `room` (its history was cleared).
    pub(super) fn clear_room(&mut self, room: &str) {
        self.rooms.remove(room);
    }

    /// Up to `limit` of `room`'s unapplied inserts from `offset`; `None`
    /// when the room has none.
    pub(super) fn inserts(&self, room: &str, offset: u64, limit: usize) -> Option<TailInserts> {
        let tail = self.rooms.get(room).filter(|t| !t.inserts.is_empty())?;
        let len = tail.first_seq + tail.inserts.len() as u64;
        let skip = offset.saturating_sub(tail.first_seq) as usize;
        let items = tail
            .inserts
            .iter()
            .skip(skip)
            .take(limit)
            .map(|(body, ts)| entry(body, *ts))
            .collect();
        Some(TailInserts {
            first_seq: tail.first_seq,
            len,
            items,
        })
    }

    /// `room`'s unapplied updates.
    pub(super) fn updates(&self, room: &str) -> Vec<UpdateEntry> {
        let Some(tail) = self.rooms.get(room) else {
            return Vec::new();
        };
        tail.updates
            .iter()
            .map(|(msg_id, (ord, body, ts))| UpdateEntry {
                msg_id: msg_id.clone(),
                ord: *ord,
                entry: entry(body, *ts),
            })
            .collect()
    }
}

fn entry(body: &RawValue, ts: i64) -> Entry {
    Entry {
        body: body.to_owned(),
        ts,
    }
}

/// One page of a room's updates after order key `after`, within
/// `max_bytes` (at least one): the rows read from SQLite (in order, after
/// `after`) merged with its unapplied ones, which win over an older row of
/// the same msgId. Rows are read only while the page has room.
pub(super) fn page_updates(
    from_sqlite: impl Iterator<Item = Result<UpdateEntry, rusqlite::Error>>,
    unapplied: Vec<UpdateEntry>,
    after: i64,
    max_bytes: usize,
) -> Result<UpdatePage, rusqlite::Error> {
    // The newest unapplied update per msgId.
    let mut newest: HashMap<String, i64> = HashMap::with_capacity(unapplied.len());
    for u in &unapplied {
        let ord = newest.entry(u.msg_id.clone()).or_insert(u.ord);
        *ord = (*ord).max(u.ord);
    }
    let mut pending: Vec<UpdateEntry> = unapplied
        .into_iter()
        .filter(|u| u.ord > after && newest.get(&u.msg_id) == Some(&u.ord))
        .collect();
    pending.sort_by_key(|u| u.ord);
    let mut pending = pending.into_iter().peekable();
    let mut stored = from_sqlite
        .filter(|r| {
            // A row an unapplied update replaced is not current.
            !matches!(r, Ok(u) if newest.get(&u.msg_id).is_some_and(|&o| o >= u.ord))
        })
        .peekable();
    let mut page = UpdatePage::default();
    let mut bytes = 0usize;
    loop {
        let take_stored = match (stored.peek(), pending.peek()) {
            (None, None) => break,
            (Some(Err(_)), _) => true,
            (Some(Ok(s)), Some(p)) => s.ord < p.ord,
            (Some(Ok(_)), None) => true,
            (None, Some(_)) => false,
        };
        let next = if take_stored {
            match stored.next() {
                Some(row) => row?,
                None => break,
            }
        } else {
            match pending.next() {
                Some(u) => u,
                None => break,
            }
        };
        let n = super::entry_bytes(&next.entry);
        if !page.entries.is_empty() && bytes.saturating_add(n) > max_bytes {
            page.more = true;
            break;
        }
        bytes += n;
        page.entries.push((next.ord, next.entry));
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> Arc<RawValue> {
        Arc::from(RawValue::from_string(text.to_owned()).expect("json"))
    }

    fn insert(room: &str, seq: u64) -> Record {
        Record::Insert {
            room: room.into(),
            seq,
            ts: 1,
            body: body(&seq.to_string()),
        }
    }

    fn update(room: &str, msg_id: &str, ord: i64) -> Record {
        Record::Update {
            room: room.into(),
            msg_id: msg_id.into(),
            ord,
            ts: 1,
            body: body(&format!("\"{msg_id}{ord}\"")),
        }
    }

    fn texts(items: &[Entry]) -> Vec<String> {
        items.iter().map(|e| e.body.get().to_owned()).collect()
    }

    #[test]
    fn inserts_are_read_from_an_offset_until_applied() {
        let mut u = Unapplied::default();
        let written: Vec<Record> = (5..9).map(|s| insert("r", s)).collect();
        for r in &written {
            u.add(r);
        }
        let tail = u.inserts("r", 0, 10).expect("tail");
        assert_eq!((tail.first_seq, tail.len), (5, 9));
        assert_eq!(texts(&tail.items), ["5", "6", "7", "8"]);
        let tail = u.inserts("r", 7, 1).expect("tail");
        assert_eq!(texts(&tail.items), ["7"]);
        assert!(u.inserts("other", 0, 10).is_none());

        u.remove_applied(&written[..2]);
        let tail = u.inserts("r", 0, 10).expect("tail");
        assert_eq!(tail.first_seq, 7);
        assert_eq!(texts(&tail.items), ["7", "8"]);
        u.remove_applied(&written[2..]);
        assert!(u.inserts("r", 0, 10).is_none());
        assert_eq!(u.bytes(), 0);
    }

    #[test]
    fn an_update_replaced_before_it_was_applied_stays() {
        let mut u = Unapplied::default();
        let first = update("r", "m", 1);
        u.add(&first);
        u.add(&update("r", "m", 2));
        u.remove_applied(&[first]);
        let left = u.updates("r");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].ord, 2);
    }

    #[test]
    fn merged_updates_keep_the_latest_per_msg_id_in_update_order() {
        let e = |msg_id: &str, ord: i64| UpdateEntry {
            msg_id: msg_id.into(),
            ord,
            entry: Entry {
                body: RawValue::from_string(format!("\"{msg_id}{ord}\"")).expect("json"),
                ts: 1,
            },
        };
        let page = |after: i64, max_bytes: usize| {
            let page = page_updates(
                vec![e("a", 1), e("b", 2)]
                    .into_iter()
                    .filter(|u| u.ord > after)
                    .map(Ok),
                vec![e("a", 3), e("c", 4), e("b", 2)],
                after,
                max_bytes,
            )
            .expect("page");
            let keys: Vec<i64> = page.entries.iter().map(|(k, _)| *k).collect();
            let entries: Vec<Entry> = page.entries.into_iter().map(|(_, e)| e).collect();
            (texts(&entries), keys, page.more)
        };
        let (all, _, more) = page(super::super::UPDATES_START, usize::MAX);
        assert_eq!(all, ["\"b2\"", "\"a3\"", "\"c4\""]);
        assert!(!more);
        // Four bytes a page: one update each, continued after its key.
        let (first, keys, more) = page(super::super::UPDATES_START, 4);
        assert_eq!(
            (first, keys.clone(), more),
            (vec!["\"b2\"".to_owned()], vec![2], true)
        );
        let (second, keys, more) = page(keys[0], 4);
        assert_eq!(
            (second, keys.clone(), more),
            (vec!["\"a3\"".to_owned()], vec![3], true)
        );
        let (third, _, more) = page(keys[0], 4);
        assert_eq!((third, more), (vec!["\"c4\"".to_owned()], false));
    }
}
