//! Shared state for a single node: everything in this process's memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Arrival, ClusterError, ClusterState, Departure, Member};

/// Length of the authentication rate limit window.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Authentication windows below which none are swept.
const WINDOWS_SWEEP_FLOOR: usize = 1024;

#[derive(Default)]
struct Inner {
    /// room → members in join order.
    rooms: HashMap<String, Vec<Arc<Member>>>,
    /// sid → room.
    room_of: HashMap<String, String>,
    /// uid → its connections, oldest first.
    connections: HashMap<String, Vec<String>>,
    /// uid → (window start, successful authentications in it).
    windows: HashMap<String, (Instant, u32)>,
    /// Windows left after the last sweep of expired ones.
    windows_swept: usize,
    /// The last presence change's number ([`super::PresenceSeq`]).
    presence_seq: u64,
}

/// In-process [`ClusterState`].
#[derive(Default)]
pub(crate) struct LocalState {
    inner: Mutex<Inner>,
    force_user_auth: AtomicBool,
}

impl LocalState {
    /// Empty state.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Every (room, member) held here, rooms in any order, members in join order.
    pub(crate) fn member_snapshot(&self) -> Vec<(String, Member)> {
        self.lock()
            .rooms
            .iter()
            .flat_map(|(room, ms)| ms.iter().map(move |m| (room.clone(), Member::clone(m))))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }
}

#[async_trait::async_trait]
impl ClusterState for LocalState {
    async fn auth_allowed(&self, uid: &str, limit: u32) -> Result<bool, ClusterError> {
        let mut inner = self.lock();
        let now = Instant::now();
        // Expired windows are swept whenever the table doubled since the
        // last sweep: it follows the uids of the last minute, not every uid
        // that ever logged in.
        if inner.windows.len() >= WINDOWS_SWEEP_FLOOR.max(inner.windows_swept.saturating_mul(2)) {
            inner
                .windows
                .retain(|_, (start, _)| now.duration_since(*start) < RATE_WINDOW);
            inner.windows_swept = inner.windows.len();
        }
        let slot = inner.windows.entry(uid.to_owned()).or_insert((now, 0));
        if now.duration_since(slot.0) >= RATE_WINDOW {
            *slot = (now, 0);
        }
        if slot.1 >= limit {
            return Ok(false);
        }
        slot.1 += 1;
        Ok(true)
    }

    async fn register_connection(&self, uid: &str, sid: &str) -> Result<Vec<String>, ClusterError> {
        let mut inner = self.lock();
        let older = inner
            .connections
            .insert(uid.to_owned(), vec![sid.to_owned()])
            .unwrap_or_default();
        Ok(older.into_iter().filter(|s| s != sid).collect())
    }

    async fn unregister_connection(&self, uid: &str, sid: &str) -> Result<(), ClusterError> {
        let mut inner = self.lock();
        if let Some(list) = inner.connections.get_mut(uid) {
            list.retain(|s| s != sid);
            if list.is_empty() {
                inner.connections.remove(uid);
            }
        }
        Ok(())
    }

    async fn join(&self, room: &str, member: Member) -> Result<Arrival, ClusterError> {
        let mut inner = self.lock();
        inner.presence_seq += 1;
        let seq = Some(inner.presence_seq);
        inner.room_of.insert(member.sid.clone(), room.to_owned());
        let list = inner.rooms.entry(room.to_owned()).or_default();
        list.retain(|m| m.sid != member.sid);
        let before = list.clone();
        list.push(Arc::new(member));
        Ok(Arrival { before, seq })
    }

    async fn leave(&self, room: &str, sid: &str) -> Result<Option<Departure>, ClusterError> {
        let mut inner = self.lock();
        if inner.room_of.get(sid).is_some_and(|r| r == room) {
            inner.room_of.remove(sid);
        }
        let Some(list) = inner.rooms.get_mut(room) else {
            return Ok(None);
        };
        let pos = list.iter().position(|m| m.sid == sid);
        let removed = pos.map(|i| Arc::unwrap_or_clone(list.remove(i)));
        if list.is_empty() {
            inner.rooms.remove(room);
        }
        let Some(member) = removed else {
            return Ok(None);
        };
        inner.presence_seq += 1;
        Ok(Some(Departure {
            member,
            seq: Some(inner.presence_seq),
        }))
    }

    async fn room_of(&self, sid: &str) -> Result<Option<String>, ClusterError> {
        Ok(self.lock().room_of.get(sid).cloned())
    }

    async fn members(&self, room: &str) -> Result<Vec<Member>, ClusterError> {
        Ok(self
            .lock()
            .rooms
            .get(room)
            .map(|ms| ms.iter().map(|m| Member::clone(m)).collect())
            .unwrap_or_default())
    }

    async fn member_count(&self, room: &str) -> Result<usize, ClusterError> {
        Ok(self.lock().rooms.get(room).map_or(0, |ms| ms.len()))
    }

    async fn online_users(&self) -> Result<Vec<(String, String)>, ClusterError> {
        let inner = self.lock();
        let mut users: Vec<(String, String)> = inner
            .connections
            .iter()
            .flat_map(|(uid, sids)| sids.iter().map(move |sid| (uid.clone(), sid.clone())))
            .collect();
        users.sort();
        Ok(users)
    }

    async fn rooms(&self) -> Result<Vec<String>, ClusterError> {
        let mut rooms: Vec<String> = self.lock().rooms.keys().cloned().collect();
        rooms.sort();
        Ok(rooms)
    }

    async fn counts(&self) -> Result<(usize, usize), ClusterError> {
        let inner = self.lock();
        let users = inner.connections.values().map(|sids| sids.len()).sum();
        Ok((users, inner.rooms.len()))
    }

    async fn force_user_auth(&self) -> Result<bool, ClusterError> {
        Ok(self.force_user_auth.load(Ordering::Relaxed))
    }

    async fn set_force_user_auth(&self, on: bool) -> Result<(), ClusterError> {
        self.force_user_auth.store(on, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member(uid: &str, sid: &str) -> Member {
        Member {
            uid: json!(uid),
            uid_key: uid.into(),
            sid: sid.into(),
            dummy: false,
        }
    }

    #[tokio::test]
    async fn rate_limit_window() {
        let s = LocalState::new();
        assert!(s.auth_allowed("a", 2).await.expect("ok"));
        assert!(s.auth_allowed("a", 2).await.expect("ok"));
        assert!(!s.auth_allowed("a", 2).await.expect("ok"));
        assert!(s.auth_allowed("b", 2).await.expect("ok"));
    }

    #[tokio::test]
    async fn presence_keeps_join_order() {
        let s = LocalState::new();
        assert!(s
            .join("r", member("a", "1"))
            .await
            .expect("ok")
            .before
            .is_empty());
        assert_eq!(
            s.join("r", member("b", "2"))
                .await
                .expect("ok")
                .before
                .len(),
            1
        );
        assert_eq!(s.room_of("2").await.expect("ok").as_deref(), Some("r"));
        assert!(s.leave("r", "1").await.expect("ok").is_some());
        assert_eq!(s.members("r").await.expect("ok"), vec![member("b", "2")]);
    }

    #[tokio::test]
    async fn every_presence_change_takes_the_next_number() {
        let s = LocalState::new();
        assert_eq!(
            s.join("r", member("a", "1")).await.expect("ok").seq,
            Some(1)
        );
        assert_eq!(
            s.join("q", member("b", "2")).await.expect("ok").seq,
            Some(2)
        );
        let left = s.leave("r", "1").await.expect("ok").expect("was there");
        assert_eq!((left.member.sid.as_str(), left.seq), ("1", Some(3)));
        // Leaving a room one is not in changes nothing and takes no number.
        assert_eq!(s.leave("r", "1").await.expect("ok"), None);
        assert_eq!(
            s.join("r", member("c", "3")).await.expect("ok").seq,
            Some(4)
        );
    }

    #[tokio::test]
    async fn second_login_replaces_first() {
        let s = LocalState::new();
        assert!(s
            .register_connection("u", "1")
            .await
            .expect("ok")
            .is_empty());
        assert_eq!(
            s.register_connection("u", "2").await.expect("ok"),
            vec!["1".to_string()]
        );
        s.unregister_connection("u", "1").await.expect("ok");
        assert_eq!(
            s.register_connection("u", "3").await.expect("ok"),
            vec!["2".to_string()]
        );
    }
}
