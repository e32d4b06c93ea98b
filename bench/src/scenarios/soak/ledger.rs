//! What a soak run checks at the end: the ledger of acknowledged msgs,
//! what the final syncs found, and the verdict of comparing them.

use serde::Deserialize;
use std::collections::{HashMap, HashSet};

/// Acknowledged msgs of one room: insert ids, and each update msgId's
/// latest acknowledged version.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// Ids of acked inserts.
    pub inserts: HashSet<u64>,
    /// msgId → latest acked version of acked updates.
    pub updates: HashMap<String, u64>,
}

impl Ledger {
    /// Records an acked update (versions of one msgId only grow).
    pub fn update(&mut self, msg_id: &str, version: u64) {
        let v = self.updates.entry(msg_id.to_owned()).or_insert(version);
        *v = (*v).max(version);
    }
}

/// What one full sync of a room returned: how often each insert id came
/// back, and the highest version of each update msgId.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// Insert id → times returned.
    pub inserts: HashMap<u64, u32>,
    /// Update msgId → highest version returned.
    pub updates: HashMap<String, u64>,
    /// Msgs returned in all.
    pub msgs: u64,
    /// Pages.
    pub pages: u64,
}

/// One stored msg as a sync page returns it (only what the check needs).
#[derive(Deserialize)]
pub(super) struct Item {
    #[serde(default)]
    data: Option<ItemData>,
    #[serde(default)]
    s: Option<i64>,
    #[serde(rename = "1", default)]
    msg_id: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ItemData {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    v: Option<u64>,
}

impl Found {
    /// Adds the msgs of one page (its `data` array).
    pub fn add_page(&mut self, items: &[Box<serde_json::value::RawValue>]) {
        self.pages += 1;
        for raw in items {
            self.msgs += 1;
            let Ok(item) = serde_json::from_str::<Item>(raw.get()) else {
                continue;
            };
            let Some(data) = item.data else { continue };
            match (item.s, item.msg_id, data.v) {
                (Some(1), Some(msg_id), Some(v)) => {
                    let e = self.updates.entry(msg_id).or_insert(v);
                    *e = (*e).max(v);
                }
                _ => {
                    if let Some(id) = data.id {
                        *self.inserts.entry(id).or_default() += 1;
                    }
                }
            }
        }
    }
}

/// The check of one sync against the acks recorded before it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Acked inserts checked.
    pub inserts: u64,
    /// Acked update msgIds checked.
    pub updates: u64,
    /// Acked inserts missing.
    pub lost_inserts: u64,
    /// Acked inserts returned more than once.
    pub duplicate_inserts: u64,
    /// Acked updates missing, or only in an older version than acked.
    pub lost_updates: u64,
    /// A few of the missing ids, for the report.
    pub examples: Vec<String>,
}

impl Verdict {
    /// Acked msgs missing (inserts and updates).
    pub fn lost(&self) -> u64 {
        self.lost_inserts + self.lost_updates
    }

    /// Adds another verdict's counts.
    pub fn merge(&mut self, o: &Verdict) {
        self.inserts += o.inserts;
        self.updates += o.updates;
        self.lost_inserts += o.lost_inserts;
        self.duplicate_inserts += o.duplicate_inserts;
        self.lost_updates += o.lost_updates;
        for e in &o.examples {
            if self.examples.len() < 10 {
                self.examples.push(e.clone());
            }
        }
    }
}

/// Checks what a sync returned against what was acked before it started.
pub fn verify(acked: &Ledger, found: &Found) -> Verdict {
    let mut v = Verdict {
        inserts: acked.inserts.len() as u64,
        updates: acked.updates.len() as u64,
        ..Verdict::default()
    };
    let mut ids: Vec<u64> = acked.inserts.iter().copied().collect();
    ids.sort_unstable();
    for id in ids {
        match found.inserts.get(&id).copied().unwrap_or(0) {
            0 => {
                v.lost_inserts += 1;
                if v.examples.len() < 10 {
                    v.examples.push(format!("insert {id}"));
                }
            }
            1 => {}
            _ => v.duplicate_inserts += 1,
        }
    }
    let mut ups: Vec<(&String, &u64)> = acked.updates.iter().collect();
    ups.sort();
    for (msg_id, &version) in ups {
        let got = found.updates.get(msg_id).copied();
        if got.is_none_or(|g| g < version) {
            v.lost_updates += 1;
            if v.examples.len() < 10 {
                v.examples.push(format!(
                    "update {msg_id} v{version} (found {})",
                    got.map_or("none".into(), |g| format!("v{g}"))
                ));
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::soak::actors::{msg_payload, INSERT, RELAY, UPDATE};

    fn page(items: &[&str]) -> Vec<Box<serde_json::value::RawValue>> {
        items
            .iter()
            .map(|s| serde_json::value::RawValue::from_string((*s).to_owned()).expect("json"))
            .collect()
    }

    #[test]
    fn payloads_parse_back_as_sync_items() {
        let mut found = Found::default();
        let ins = msg_payload(7, INSERT, None, 200);
        let upd = msg_payload(9, UPDATE, Some("u.1.2"), 200);
        let rel = msg_payload(11, RELAY, None, 10);
        assert!(ins.len() >= 150 && ins.len() <= 200, "{}", ins.len());
        // The server adds the sender under "2" and an insert's seq.
        let stored_ins = format!("{},\"2\":\"u\",\"seq\":0}}", &ins[..ins.len() - 1]);
        let stored_upd = format!("{},\"2\":\"u\"}}", &upd[..upd.len() - 1]);
        found.add_page(&page(&[&stored_ins, &stored_upd, &rel]));
        assert_eq!(found.inserts.get(&7), Some(&1));
        assert_eq!(found.updates.get("u.1.2"), Some(&9));
        assert_eq!(found.msgs, 3);
    }

    #[test]
    fn verify_finds_lost_duplicate_and_stale() {
        let mut acked = Ledger::default();
        acked.inserts.extend([1, 2, 3]);
        acked.update("a", 10);
        acked.update("a", 5); // an older ack does not lower the version
        acked.update("b", 4);
        acked.update("c", 4);
        let mut found = Found::default();
        found.add_page(&page(&[
            r#"{"data":{"id":1,"v":1},"s":0}"#,
            r#"{"data":{"id":3,"v":3},"s":0}"#,
            r#"{"data":{"id":3,"v":3},"s":0}"#,
            r#"{"data":{"id":99,"v":99},"s":0}"#,
            r#"{"data":{"id":12,"v":12},"s":1,"1":"a"}"#,
            r#"{"data":{"id":3,"v":3},"s":1,"1":"b"}"#,
        ]));
        let v = verify(&acked, &found);
        assert_eq!(v.inserts, 3);
        assert_eq!(v.updates, 3);
        assert_eq!(v.lost_inserts, 1, "2 is missing; 99 was never acked");
        assert_eq!(v.duplicate_inserts, 1);
        // a: newer than acked is fine; b: older than acked; c: missing.
        assert_eq!(v.lost_updates, 2);
        assert_eq!(v.lost(), 3);
        assert_eq!(v.examples[0], "insert 2");

        let all = {
            let mut f = Found::default();
            f.add_page(&page(&[
                r#"{"data":{"id":1,"v":1},"s":0}"#,
                r#"{"data":{"id":2,"v":2},"s":0}"#,
                r#"{"data":{"id":3,"v":3},"s":0}"#,
                r#"{"data":{"id":10,"v":10},"s":1,"1":"a"}"#,
                r#"{"data":{"id":4,"v":4},"s":1,"1":"b"}"#,
                r#"{"data":{"id":6,"v":6},"s":1,"1":"c"}"#,
            ]));
            f
        };
        assert_eq!(verify(&acked, &all).lost(), 0);
    }
}
