//! A model-based test of the embedded store on a simulated disk
//! ([`super::sim_disk`]): random inserts and updates, clears, flushes,
//! file operation faults (EIO, ENOSPC on create, write, fdatasync, rename,
//! unlink and directory sync) and crashes, also in the middle of a start-up
//! (power loss: unsynced blocks kept, dropped or garbled; unsynced
//! directory changes kept or dropped), checked after every step against a
//! model of what was acknowledged: every acked msg at its seq exactly once,
//! no hole, each msgId's last acked update current, the epoch changed
//! exactly where a clear was acknowledged. A msg answered with an error may
//! turn up after a crash (its outcome is unknown to the client), never in
//! place of an acked one.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::sim_disk::{Op, SimFs};
use super::sqlite::SqliteMessageStore;
use super::{MessageStore, Write, WriteOp};

#[derive(Debug, Clone)]
enum Step {
    Insert {
        room: u8,
        n: u8,
    },
    Update {
        room: u8,
        key: u8,
        n: u8,
    },
    Clear {
        room: u8,
    },
    Flush,
    Fault {
        op: u8,
        skip: u8,
        enospc: bool,
    },
    Crash,
    /// A crash, then a start-up that fails at the `skip`+1-th call of an
    /// operation and crashes there, then a start-up without faults.
    CrashInStartUp {
        op: u8,
        skip: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..3u8, 1..5u8).prop_map(|(room, n)| Step::Insert { room, n }),
        3 => (0..3u8, 0..2u8, 1..3u8).prop_map(|(room, key, n)| Step::Update { room, key, n }),
        1 => (0..3u8).prop_map(|room| Step::Clear { room }),
        1 => Just(Step::Flush),
        2 => (0..6u8, 0..3u8, any::<bool>()).prop_map(|(op, skip, enospc)| Step::Fault { op, skip, enospc }),
        1 => Just(Step::Crash),
        1 => (0..6u8, 0..4u8).prop_map(|(op, skip)| Step::CrashInStartUp { op, skip }),
    ]
}

const OPS: [Op; 6] = [
    Op::Create,
    Op::Write,
    Op::Sync,
    Op::Rename,
    Op::Remove,
    Op::SyncDir,
];

/// What the client side knows of a room.
#[derive(Default)]
struct RoomModel {
    /// Its history as last read, with the msgs acked since: seq → msg id.
    history: BTreeMap<u64, u64>,
    epoch: Option<String>,
    /// A clear was acknowledged since the last read: the epoch must change.
    cleared: bool,
    /// Per msgId: the msg ids of its updates since the last read, in
    /// submission order, each acked or not; the first is the one last read.
    updates: BTreeMap<String, Vec<(u64, bool)>>,
}

struct Model {
    rooms: [RoomModel; 3],
    /// Msgs answered with an error.
    refused: HashSet<u64>,
    next_id: u64,
}

fn room_name(room: u8) -> String {
    format!("room-{room}")
}

/// Submits msg `id` (an insert, or an update of msgId `key`); answers
/// whether it was stored and its seq.
async fn submit(
    store: &SqliteMessageStore,
    room: u8,
    id: u64,
    key: Option<&str>,
) -> oneshot::Receiver<Option<Option<u64>>> {
    let (tx, rx) = oneshot::channel();
    let (text, op) = match key {
        Some(key) => (
            format!("{{\"id\":{id},\"s\":1,\"msgId\":\"{key}\"}}"),
            WriteOp::Update {
                msg_id: key.to_owned(),
            },
        ),
        None => (format!("{{\"id\":{id}}}"), WriteOp::Insert),
    };
    let stamp = crate::protocol::SenderStamp::of(&json!("u"));
    let msg = crate::protocol::parse_msg(&text, 1 << 20, &stamp).expect("msg");
    store
        .submit(Write {
            room: room_name(room),
            op,
            body: msg.body,
            sender: None,
            done: Box::new(move |r| {
                let _ = tx.send(r.ok().map(|s| s.seq));
            }),
        })
        .await;
    rx
}

/// Reads every room and checks it against the model, then takes what it
/// read as the model's history.
async fn check(store: &SqliteMessageStore, model: &mut Model, after_crash: bool, trace: &str) {
    for room in 0..3u8 {
        let page = store
            .page(&room_name(room), 0, 100_000, 0)
            .await
            .expect("page");
        let m = &mut model.rooms[room as usize];
        let mut seen = BTreeMap::new();
        for (i, e) in page.items.iter().enumerate() {
            let v: Value = serde_json::from_str(e.body.get()).expect("body");
            assert_eq!(
                v["seq"],
                json!(i),
                "room {room}: a hole or a msg out of place\n{trace}"
            );
            let id = v["id"].as_u64().expect("id");
            assert!(seen.insert(i as u64, id).is_none());
        }
        let ids: HashSet<u64> = seen.values().copied().collect();
        assert_eq!(ids.len(), seen.len(), "room {room}: a msg twice\n{trace}");
        for (seq, id) in &m.history {
            assert_eq!(
                seen.get(seq),
                Some(id),
                "room {room}: acked msg {id} lost or replaced at seq {seq}\n{trace}"
            );
        }
        for (seq, id) in &seen {
            if !m.history.contains_key(seq) {
                assert!(
                    after_crash && model.refused.contains(id),
                    "room {room}: msg {id} at seq {seq} was never sent or acked\n{trace}"
                );
            }
        }
        if let Some(before) = &m.epoch {
            assert_eq!(
                &page.epoch != before,
                m.cleared,
                "room {room}: epoch changed {} (cleared: {})\n{trace}",
                &page.epoch != before,
                m.cleared
            );
        }
        m.history = seen;
        m.epoch = Some(page.epoch);
        m.cleared = false;
        // Each msgId shows its last acked update, or one submitted after it
        // whose outcome is unknown (refused, then found after a crash).
        let shown = store
            .updates(&room_name(room), super::UPDATES_START, usize::MAX)
            .await
            .expect("updates");
        let mut shown_ids = BTreeMap::new();
        for (_, e) in &shown.entries {
            let v: Value = serde_json::from_str(e.body.get()).expect("body");
            let key = v["msgId"].as_str().expect("msgId").to_owned();
            let id = v["id"].as_u64().expect("id");
            assert!(
                shown_ids.insert(key, id).is_none(),
                "room {room}: a msgId twice\n{trace}"
            );
        }
        for (key, sent) in &m.updates {
            let last_acked = sent.iter().rposition(|&(_, acked)| acked);
            let allowed: Vec<u64> = match last_acked {
                Some(i) => sent[i..]
                    .iter()
                    .enumerate()
                    .filter(|&(j, &(_, acked))| j == 0 || (!acked && after_crash))
                    .map(|(_, &(id, _))| id)
                    .collect(),
                None => sent
                    .iter()
                    .filter(|_| after_crash)
                    .map(|&(id, _)| id)
                    .collect(),
            };
            match shown_ids.get(key) {
                Some(id) => assert!(
                    allowed.contains(id),
                    "room {room}: msgId {key} shows update {id}, allowed {allowed:?}\n{trace}"
                ),
                None => assert!(
                    last_acked.is_none(),
                    "room {room}: acked update of msgId {key} lost\n{trace}"
                ),
            }
        }
        for key in shown_ids.keys() {
            assert!(
                m.updates.contains_key(key),
                "room {room}: msgId {key} never sent (model {:?}, shown {:?})\n{trace}",
                m.updates,
                shown
                    .entries
                    .iter()
                    .map(|(o, e)| (*o, e.body.get()))
                    .collect::<Vec<_>>()
            );
        }
        // What is shown is acked from now on; refused updates after it may
        // still turn up after a crash.
        let mut next = BTreeMap::new();
        for (key, sent) in std::mem::take(&mut m.updates) {
            let shown = shown_ids.get(&key).copied();
            let from = shown
                .and_then(|id| sent.iter().position(|&(i, _)| i == id))
                .map_or(0, |i| i + 1);
            let mut kept: Vec<(u64, bool)> = shown.map(|id| (id, true)).into_iter().collect();
            kept.extend(sent[from..].iter().filter(|&&(_, acked)| !acked));
            if !kept.is_empty() {
                next.insert(key, kept);
            }
        }
        m.updates = next;
    }
}

fn open(fs: &SimFs, dir: &std::path::Path) -> SqliteMessageStore {
    SqliteMessageStore::open_on(Arc::new(fs.clone()), dir, Duration::ZERO)
        .expect("open after a crash")
}

async fn crash(store: SqliteMessageStore, fs: &SimFs) -> SimFs {
    let flags = store.thread_flags();
    let after = fs.crash();
    drop(store);
    while flags.iter().any(|f| f.load(Ordering::SeqCst)) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    after
}

async fn run(seed: u64, steps: Vec<Step>) {
    let dir = tempfile::tempdir().expect("dir");
    let mut fs = SimFs::new(seed);
    let mut store = open(&fs, dir.path());
    let mut model = Model {
        rooms: Default::default(),
        refused: HashSet::new(),
        next_id: 0,
    };
    let mut trace = String::new();
    for step in steps {
        trace.push_str(&format!("{step:?}\n"));
        let mut after_crash = false;
        match step {
            Step::Insert { room, n } => {
                let mut waiting = Vec::new();
                for _ in 0..n {
                    model.next_id += 1;
                    waiting.push((
                        model.next_id,
                        submit(&store, room, model.next_id, None).await,
                    ));
                }
                for (id, rx) in waiting {
                    match rx.await.expect("answered") {
                        Some(None) => panic!("an insert without seq"),
                        Some(Some(seq)) => {
                            let m = &mut model.rooms[room as usize];
                            assert!(
                                m.history.insert(seq, id).is_none(),
                                "seq {seq} given twice\n{trace}"
                            );
                        }
                        None => {
                            model.refused.insert(id);
                        }
                    }
                }
            }
            Step::Update { room, key, n } => {
                let key = format!("k{key}");
                let mut waiting = Vec::new();
                for _ in 0..n {
                    model.next_id += 1;
                    waiting.push((
                        model.next_id,
                        submit(&store, room, model.next_id, Some(&key)).await,
                    ));
                }
                for (id, rx) in waiting {
                    let acked = rx.await.expect("answered").is_some();
                    let m = &mut model.rooms[room as usize];
                    m.updates.entry(key.clone()).or_default().push((id, acked));
                    if !acked {
                        model.refused.insert(id);
                    }
                }
            }
            Step::Clear { room } => {
                if store.clear(&room_name(room)).await.is_ok() {
                    let m = &mut model.rooms[room as usize];
                    m.history.clear();
                    m.updates.clear();
                    m.cleared = true;
                }
            }
            Step::Flush => {
                let _ = store.flush().await;
            }
            Step::Fault { op, skip, enospc } => {
                let errno = if enospc { libc::ENOSPC } else { libc::EIO };
                fs.fail(OPS[op as usize], u64::from(skip), errno);
            }
            Step::Crash => {
                fs = crash(store, &fs).await;
                store = open(&fs, dir.path());
                after_crash = true;
            }
            Step::CrashInStartUp { op, skip } => {
                fs = crash(store, &fs).await;
                fs.fail(OPS[op as usize], u64::from(skip), libc::EIO);
                match SqliteMessageStore::open_on(Arc::new(fs.clone()), dir.path(), Duration::ZERO)
                {
                    Ok(started) => fs = crash(started, &fs).await,
                    Err(_) => fs = fs.crash(),
                }
                store = open(&fs, dir.path());
                after_crash = true;
            }
        }
        check(&store, &mut model, after_crash, &trace).await;
    }
    // And a last crash, with every fault still planned.
    fs = crash(store, &fs).await;
    let store = open(&fs, dir.path());
    check(&store, &mut model, true, &trace).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn acked_msgs_survive_faults_and_crashes(seed in any::<u64>(), steps in proptest::collection::vec(step(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(run(seed, steps));
    }
}
