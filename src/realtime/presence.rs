//! Which presence events of its room a connection is told.
//!
//! A joiner learns of the members before it from its roster and of the ones
//! after it from their `remote_join`; a member learns of a leave only if it
//! knew of the leaver. Joins and leaves of one room run concurrently (on
//! several tasks, on several nodes), so "before" and "after" cannot be the
//! order in which events happen to reach a socket: every join and leave
//! takes the next number of one counter in the presence registry (a
//! [`PresenceSeq`]), and a member is told exactly the changes numbered after
//! its own join (and, for a change with a lower bound, [`Order::since`],
//! only if its join also came after that).
//!
//! A joiner's socket is in the room's delivery set before its join is
//! registered, so no change after the join can pass it by; until the
//! registry has numbered the join, the room's presence events wait in the
//! [`Gate`], and once the joiner has its ack and roster the ones after its
//! join are delivered, in arrival order, and the gate opens.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use serde_json::value::RawValue;

use crate::cluster::PresenceSeq;

/// A connection's filter for its room's presence events.
pub(super) struct Gate {
    state: Mutex<State>,
}

enum State {
    /// In no room: presence events are not for this connection.
    Shut,
    /// Joining `room`: its presence events wait for the join's number.
    Joining { room: String, held: Vec<Held> },
    /// In `room` since the join numbered `seq`.
    Open { room: String, seq: PresenceSeq },
}

/// Which members a presence change is for: the ones whose own join is
/// numbered before the change (`seq`) and, when `since` is set, after
/// `since` (a login that replaced an older connection of its uid is news
/// only to the members that joined after the older one was taken out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Order {
    pub seq: PresenceSeq,
    pub since: PresenceSeq,
}

impl Order {
    /// A change numbered `seq`, for every member that joined before it.
    pub(crate) fn at(seq: PresenceSeq) -> Self {
        Order { seq, since: None }
    }

    /// Whether a member whose join is numbered `member` is told.
    fn tells(self, member: PresenceSeq) -> bool {
        let after_since = match (member, self.since) {
            (Some(member), Some(since)) => member > since,
            _ => true,
        };
        comes_after(member, self.seq) && after_since
    }
}

/// A presence event waiting for its recipient's join to be numbered.
struct Held {
    order: Order,
    event: String,
    data: Box<RawValue>,
}

/// Whether a member whose join is numbered `member` is told of the change
/// numbered `change`: only if the change came later. An unnumbered join or
/// change (the registry was unreachable) cannot be ordered: it is told.
fn comes_after(member: PresenceSeq, change: PresenceSeq) -> bool {
    match (member, change) {
        (Some(member), Some(change)) => change > member,
        _ => true,
    }
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    /// A shut gate (the connection is in no room).
    pub(super) const fn new() -> Self {
        Gate {
            state: Mutex::new(State::Shut),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// The connection starts joining `room`: that room's presence events
    /// wait until [`Gate::open`].
    pub(super) fn joining(&self, room: &str) {
        *self.state() = State::Joining {
            room: room.to_owned(),
            held: Vec::new(),
        };
    }

    /// The connection left its room (or its join failed).
    pub(super) fn shut(&self) {
        *self.state() = State::Shut;
    }

    /// The join was numbered `seq`: the events held since [`Gate::joining`]
    /// that came after it go to `deliver`, in arrival order, and later ones
    /// are told as they come. Delivers under the gate's lock, so an event
    /// offered meanwhile cannot overtake the held ones.
    pub(super) fn open(&self, seq: PresenceSeq, mut deliver: impl FnMut(&str, &RawValue)) {
        let mut state = self.state();
        let State::Joining { room, held } = std::mem::replace(&mut *state, State::Shut) else {
            return;
        };
        for h in held.iter().filter(|h| h.order.tells(seq)) {
            deliver(&h.event, &h.data);
        }
        *state = State::Open { room, seq };
    }

    /// The number of this connection's join of `room`, once numbered.
    pub(super) fn joined_at(&self, room: &str) -> Option<u64> {
        match &*self.state() {
            State::Open { room: r, seq } if r == room => *seq,
            _ => None,
        }
    }

    /// A presence event of `room` in `order`: goes to `deliver` now if it
    /// is for this connection, waits if the connection is joining `room`,
    /// and is dropped otherwise.
    pub(super) fn offer(
        &self,
        room: &str,
        order: Order,
        event: &str,
        data: &RawValue,
        deliver: impl FnOnce(&str, &RawValue),
    ) {
        let mut state = self.state();
        match &mut *state {
            State::Open { room: r, seq: mine } if r == room && order.tells(*mine) => {
                deliver(event, data);
            }
            State::Joining { room: r, held } if r == room => held.push(Held {
                order,
                event: event.to_owned(),
                data: data.to_owned(),
            }),
            _ => {}
        }
    }
}

/// The numbered presence changes of one room a node has told its members
/// of, so that one read back from the room's presence log after the node
/// missed some is not told twice.
///
/// Changes are published by whichever node made them, so they may arrive a
/// little out of order: the last [`Told::KEPT`] numbers are kept, and
/// everything below them counts as told.
#[derive(Debug, Default)]
pub(super) struct Told {
    below: u64,
    recent: BTreeSet<u64>,
}

impl Told {
    /// How many numbers are kept (at least as many as a room's presence
    /// log holds, [`crate::redis::PRESENCE_LOG_CAP`]).
    pub(super) const KEPT: usize = 256;

    /// Records change `seq`; `false` if it was told already.
    pub(super) fn first_time(&mut self, seq: u64) -> bool {
        if seq < self.below || !self.recent.insert(seq) {
            return false;
        }
        while self.recent.len() > Self::KEPT {
            if let Some(oldest) = self.recent.pop_first() {
                self.below = oldest + 1;
            }
        }
        true
    }

    /// Every change numbered at or below this counts as told.
    pub(super) fn told_up_to(&self) -> u64 {
        self.below.saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(uid: &str) -> Box<RawValue> {
        RawValue::from_string(format!("{{\"uid\":\"{uid}\"}}")).expect("json")
    }

    fn offer(gate: &Gate, room: &str, seq: PresenceSeq, uid: &str, told: &mut Vec<String>) {
        offer_in(gate, room, Order::at(seq), uid, told);
    }

    fn offer_in(gate: &Gate, room: &str, order: Order, uid: &str, told: &mut Vec<String>) {
        gate.offer(room, order, "remote_join", &raw(uid), |ev, data| {
            told.push(format!("{ev} {}", data.get()))
        });
    }

    fn open(gate: &Gate, seq: PresenceSeq, told: &mut Vec<String>) {
        gate.open(seq, |ev, data| told.push(format!("{ev} {}", data.get())));
    }

    #[test]
    fn a_shut_gate_tells_nothing() {
        let gate = Gate::new();
        let mut told = Vec::new();
        offer(&gate, "r", Some(5), "a", &mut told);
        open(&gate, Some(1), &mut told);
        offer(&gate, "r", Some(6), "b", &mut told);
        assert!(told.is_empty(), "{told:?}");
    }

    #[test]
    fn a_joiner_is_told_the_changes_after_its_join_in_arrival_order() {
        let gate = Gate::new();
        let mut told = Vec::new();
        gate.joining("r");
        offer(&gate, "r", Some(9), "late", &mut told);
        offer(&gate, "r", Some(3), "early", &mut told); // in its roster
        offer(&gate, "q", Some(8), "elsewhere", &mut told);
        offer(&gate, "r", Some(5), "itself", &mut told); // its own join
        offer(&gate, "r", Some(7), "next", &mut told);
        assert!(told.is_empty(), "nothing before the gate opens: {told:?}");
        open(&gate, Some(5), &mut told);
        assert_eq!(
            told,
            vec![
                r#"remote_join {"uid":"late"}"#,
                r#"remote_join {"uid":"next"}"#
            ]
        );
        told.clear();
        offer(&gate, "r", Some(4), "stale", &mut told);
        offer(&gate, "r", Some(10), "now", &mut told);
        offer(&gate, "q", Some(11), "elsewhere", &mut told);
        assert_eq!(told, vec![r#"remote_join {"uid":"now"}"#]);
    }

    #[test]
    fn unnumbered_joins_and_changes_are_told() {
        let gate = Gate::new();
        let mut told = Vec::new();
        gate.joining("r");
        offer(&gate, "r", None, "a", &mut told);
        offer(&gate, "r", Some(1), "b", &mut told);
        open(&gate, None, &mut told);
        offer(&gate, "r", Some(2), "c", &mut told);
        assert_eq!(told.len(), 3, "{told:?}");
        gate.joining("q");
        open(&gate, Some(10), &mut told);
        offer(&gate, "q", None, "d", &mut told);
        assert_eq!(told.len(), 4, "{told:?}");
    }

    #[test]
    fn a_change_since_a_number_is_told_only_to_members_who_joined_after_it() {
        let order = Order {
            seq: Some(10),
            since: Some(4),
        };
        let mut told = Vec::new();
        for (member, expected) in [(3, 0), (4, 0), (5, 1), (9, 2), (10, 2), (11, 2)] {
            let gate = Gate::new();
            gate.joining("r");
            open(&gate, Some(member), &mut told);
            offer_in(&gate, "r", order, "back", &mut told);
            assert_eq!(told.len(), expected, "member {member}");
        }
        let gate = Gate::new();
        gate.joining("r");
        offer_in(&gate, "r", order, "held", &mut told);
        open(&gate, Some(7), &mut told);
        assert_eq!(told.len(), 3, "held, then told at open");
    }

    #[test]
    fn the_number_of_a_join_is_known_once_the_gate_opens() {
        let gate = Gate::new();
        gate.joining("r");
        assert_eq!(gate.joined_at("r"), None);
        open(&gate, Some(7), &mut Vec::new());
        assert_eq!((gate.joined_at("r"), gate.joined_at("q")), (Some(7), None));
        gate.shut();
        assert_eq!(gate.joined_at("r"), None);
    }

    #[test]
    fn a_change_is_told_once_whatever_the_order_it_arrives_in() {
        let mut told = Told::default();
        assert!(told.first_time(5));
        assert!(told.first_time(3));
        assert!(!told.first_time(5));
        assert!(!told.first_time(3));
        assert!(told.first_time(4));
        assert_eq!(told.told_up_to(), 0);
    }

    #[test]
    fn numbers_below_the_kept_ones_count_as_told() {
        let mut told = Told::default();
        for seq in 100..100 + Told::KEPT as u64 + 10 {
            assert!(told.first_time(seq));
        }
        assert_eq!(told.told_up_to(), 109);
        assert!(!told.first_time(50), "far below: counted as told");
        assert!(!told.first_time(109));
        assert!(!told.first_time(110), "kept");
        assert!(told.first_time(1_000));
    }

    #[test]
    fn joining_again_forgets_the_old_room() {
        let gate = Gate::new();
        let mut told = Vec::new();
        gate.joining("r");
        open(&gate, Some(1), &mut told);
        gate.joining("q");
        offer(&gate, "r", Some(2), "old", &mut told);
        open(&gate, Some(3), &mut told);
        offer(&gate, "r", Some(4), "old", &mut told);
        assert!(told.is_empty(), "{told:?}");
        gate.shut();
        offer(&gate, "q", Some(5), "gone", &mut told);
        assert!(told.is_empty(), "{told:?}");
    }
}
