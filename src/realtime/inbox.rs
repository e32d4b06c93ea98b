//! A session's inbox: the client's events in arrival order, fed by the
//! socket's handler ([`super::handler::Enqueue`]), and the signals from
//! outside its event stream.
//!
//! The inbox is bounded in bytes, not in events: past its budget
//! (`AO_INBOUND_MAX_BYTES`, counted as what the queued events hold in
//! memory, [`Inbound::weight`]) it
//! closes the connection's [`ReadGate`], so the server stops reading from
//! the client until the session has worked the queue down to half the
//! budget: a websocket's next frames are not read, a long-polling POST's
//! next packets are not handed on. A burst waits instead of being dropped. What is
//! already read when the read gate closes is at most about one largest
//! message, so a queue that still grows past twice the budget and one
//! largest message belongs to a transport that ignored the read gate: that
//! connection is disconnected, logged and counted.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use super::ack::AckSender;
use serde_json::value::RawValue;

use super::direct::DirectRelay;
use super::presence::Gate;
use ao_socketio::ReadGate;

/// One client event.
pub(super) struct Inbound {
    pub event: String,
    /// The payload's JSON text (the event's first argument), or why
    /// there is none.
    pub data: Result<Box<RawValue>, String>,
    pub ack: AckSender,
}

impl Inbound {
    /// What the event counts against its inbox's budget: what it holds
    /// in memory while it waits. Its name and payload, its boxed record,
    /// its slot in the queue counted twice (a ring has up to as much spare
    /// room as it fills) and an allocation overhead for each allocation
    /// ([`ao_socketio::held`]): a tiny event counts about 190 bytes, so a
    /// flood of them fills the budget as soon as their memory does.
    pub(super) fn weight(&self) -> usize {
        let data = match &self.data {
            Ok(raw) => raw.get().len(),
            Err(why) => why.capacity(),
        };
        ao_socketio::held::entry::<[(Box<Inbound>, usize); 2]>(&[
            std::mem::size_of::<Inbound>(),
            self.event.capacity(),
            data,
        ])
    }
}

/// Why the inbox would not take an event.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused<T> {
    /// The queue would grow past its hard limit: the first refusal of this
    /// connection, which must be disconnected.
    Overflow(T),
    /// The connection already overflowed; it is being disconnected.
    Overflowed(T),
}

/// Signals to a session from outside its socket's event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Control {
    /// The session may start: emits reach the client from now on.
    Ready,
    /// Another login of the same uid replaced this connection.
    Kick,
    /// The connection closed.
    Closed,
}

/// What a session takes from its inbox next.
#[derive(Debug, PartialEq)]
pub(super) enum Next<T> {
    /// Another login replaced this connection (signalled before it closed).
    Kick,
    /// The connection closed; events still queued are in [`InboxReceiver::try_event`].
    Closed,
    /// The client's next event (only once the session is [`Control::Ready`]).
    Event(T),
}

/// A session's inbox: the client's events in arrival order, and the signals
/// from outside its event stream. One per connection, shared by the socket's
/// handlers (which push) and the session task (which takes).
///
/// Written by hand on a mutex rather than with two tokio channels: every
/// connection holds its inbox for as long as it is open, and tokio's bounded
/// and unbounded channels allocate 800 and 576 bytes up front (cache-padded
/// state and a first block of 32 slots each), more than a twentieth of an
/// idle connection's memory. This is one allocation of about a hundred
/// bytes; the ring of events grows only while events wait.
pub(super) struct Inbox<T = Box<Inbound>> {
    state: Mutex<State<T>>,
    /// Which presence events of its room the connection is told.
    gate: Gate,
    /// Bytes queued past which the client's reads pause.
    budget: usize,
    /// The client authenticated: the full budget applies (before, only
    /// [`PRE_AUTH_BUDGET`]). Outside the lock: the handler reads it for
    /// every event.
    authenticated: AtomicBool,
}

struct State<T> {
    /// Queued events with their weights.
    events: VecDeque<(T, usize)>,
    /// The sum of the queued events' weights.
    bytes: usize,
    /// Closed while the queue is over budget; none before the transport is known.
    read_gate: Option<Arc<ReadGate>>,
    /// The queue once grew past its hard limit.
    overflowed: bool,
    ready: bool,
    kick: bool,
    closed: bool,
    /// The session is gone: nothing is queued any more.
    gone: bool,
    /// The session is handling what it took last (until it asks for more).
    busy: bool,
    /// Published by the session while msgs may bypass it.
    direct: Option<Arc<DirectRelay>>,
    waker: Option<Waker>,
}

/// Rings that grew past this many slots in a burst are given back once empty.
const KEPT_SLOTS: usize = 8;

/// The inbox's budget before the client authenticated: an authenticate and
/// a few small events sent right behind it.
pub(super) const PRE_AUTH_BUDGET: usize = 64 * 1024;

/// The largest event taken before the client authenticated.
pub(super) const PRE_AUTH_MAX_EVENT: usize = 16 * 1024;

impl<T> Inbox<T> {
    /// An empty inbox, not yet ready, that pauses the client's reads past
    /// `budget` bytes, and the session's end of it.
    pub(super) fn new(budget: usize) -> (Arc<Inbox<T>>, InboxReceiver<T>) {
        let inbox = Arc::new(Inbox {
            budget,
            state: Mutex::new(State {
                events: VecDeque::new(),
                bytes: 0,
                read_gate: None,
                overflowed: false,
                ready: false,
                kick: false,
                closed: false,
                gone: false,
                busy: false,
                direct: None,
                waker: None,
            }),
            gate: Gate::new(),
            authenticated: AtomicBool::new(false),
        });
        (inbox.clone(), InboxReceiver(inbox))
    }

    /// The budget that applies now: the full one once the client authenticated.
    fn current_budget(&self) -> usize {
        if self.is_authenticated() {
            self.budget
        } else {
            self.budget.min(PRE_AUTH_BUDGET)
        }
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        crate::sync::lock(&self.state)
    }

    /// The most the queue may hold: twice the budget and one largest
    /// message (see the module docs).
    fn limit(&self, max_event: usize) -> usize {
        self.current_budget()
            .saturating_mul(2)
            .saturating_add(max_event)
    }

    /// Whether the client authenticated.
    pub(super) fn is_authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Acquire)
    }

    /// The client authenticated: its events get the full budget.
    pub(super) fn authenticated(&self) {
        // Under the lock, so that no push or pop sees a budget between.
        let _state = self.state();
        self.authenticated.store(true, Ordering::Release);
    }

    /// Queues a client event of `weight` bytes (at most `max_event`, the
    /// largest one the transport lets through), closing the read gate when the
    /// queue is over budget; refuses it when the queue would grow past its
    /// hard limit.
    pub(super) fn push(&self, event: T, weight: usize, max_event: usize) -> Result<(), Refused<T>> {
        let mut state = self.state();
        if state.gone {
            return Ok(());
        }
        if state.overflowed {
            return Err(Refused::Overflowed(event));
        }
        if state.bytes.saturating_add(weight) > self.limit(max_event) {
            state.overflowed = true;
            return Err(Refused::Overflow(event));
        }
        state.bytes += weight;
        state.events.push_back((event, weight));
        if let Some(read_gate) = &state.read_gate {
            if state.bytes > self.current_budget() {
                read_gate.close();
            }
        }
        let waker = state.waker.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// What a msg arriving now needs to be relayed without the session
    /// ([`super::direct::handle_directly`]): only while the session published
    /// it and is waiting with nothing queued, so the msg keeps its place
    /// after every event before it.
    pub(super) fn direct(&self) -> Option<Arc<DirectRelay>> {
        let state = self.state();
        let idle = state.ready
            && !state.busy
            && !state.kick
            && !state.closed
            && !state.gone
            && state.events.is_empty();
        if idle {
            state.direct.clone()
        } else {
            None
        }
    }

    /// The connection's filter for its room's presence events.
    pub(super) fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Makes `read_gate` the one closed while the queue is over budget (a new
    /// connection, or the websocket that a long-polling session upgraded
    /// to); the one it replaces is opened.
    pub(super) fn set_read_gate(&self, read_gate: Arc<ReadGate>) {
        let mut state = self.state();
        if state.gone {
            return;
        }
        if state.bytes > self.current_budget() {
            read_gate.close();
        }
        if let Some(old) = state.read_gate.replace(read_gate) {
            old.open();
        }
    }

    /// Bytes queued now.
    pub(super) fn queued_bytes(&self) -> usize {
        self.state().bytes
    }

    /// Signals the session. A kick that comes after the connection closed is
    /// not delivered: the session handles the close and ends.
    pub(super) fn signal(&self, control: Control) {
        let mut state = self.state();
        match control {
            Control::Ready => state.ready = true,
            Control::Kick if !state.closed => state.kick = true,
            Control::Kick => return,
            Control::Closed => {
                state.closed = true;
                // Nothing more is read from a closed connection.
                if let Some(read_gate) = &state.read_gate {
                    read_gate.open();
                }
            }
        }
        let waker = state.waker.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The session's end of its [`Inbox`]. Dropping it (the session ended) drops
/// what is still queued and discards what is pushed later.
pub(super) struct InboxReceiver<T = Box<Inbound>>(Arc<Inbox<T>>);

impl<T> InboxReceiver<T> {
    /// What the session handles next: a kick, then the close, then events
    /// in arrival order once ready. The session counts as busy from the
    /// moment this returns until it asks again.
    pub(super) fn next(&self) -> impl Future<Output = Next<T>> + '_ {
        std::future::poll_fn(|cx| {
            let mut state = self.0.state();
            let next = if std::mem::take(&mut state.kick) {
                Some(Next::Kick)
            } else if state.closed {
                Some(Next::Closed)
            } else if state.ready {
                pop(&mut state, self.0.current_budget()).map(Next::Event)
            } else {
                None
            };
            state.busy = next.is_some();
            if let Some(next) = next {
                return Poll::Ready(next);
            }
            match &mut state.waker {
                Some(w) => w.clone_from(cx.waker()),
                None => state.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
    }

    /// Lets msgs bypass the session ([`Inbox::direct`]) with `direct`, or
    /// stops that with `None`.
    pub(super) fn publish(&self, direct: Option<Arc<DirectRelay>>) {
        self.0.state().direct = direct;
    }

    /// The next queued event, without waiting (to finish after [`Next::Closed`]).
    pub(super) fn try_event(&self) -> Option<T> {
        pop(&mut self.0.state(), self.0.current_budget())
    }
}

/// Takes the oldest event; opens the read gate once the queue is down to half
/// the budget, so reads resume well before the session runs dry and a
/// steady stream does not pause and resume on every event.
fn pop<T>(state: &mut State<T>, budget: usize) -> Option<T> {
    let (event, weight) = state.events.pop_front()?;
    state.bytes -= weight;
    if state.bytes <= budget / 2 {
        if let Some(read_gate) = &state.read_gate {
            if read_gate.is_closed() {
                read_gate.open();
            }
        }
    }
    if state.events.is_empty() && state.events.capacity() > KEPT_SLOTS {
        state.events = VecDeque::new();
    }
    Some(event)
}

impl<T> Drop for InboxReceiver<T> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.gone = true;
        state.waker = None;
        state.direct = None;
        state.bytes = 0;
        if let Some(read_gate) = state.read_gate.take() {
            read_gate.open();
        }
        let queued = std::mem::take(&mut state.events);
        drop(state);
        // Dropped outside the lock: an event's ack sender may run code of its own.
        drop(queued);
    }
}

/// What the application keeps on each socket: its session's inbox, and
/// the uid it authenticated as.
pub(super) struct Mailbox {
    pub inbox: Arc<Inbox>,
    pub uid: std::sync::OnceLock<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: usize = 1 << 20;

    /// What the receiver has now, without waiting.
    fn now(rx: &InboxReceiver<u32>) -> Option<Next<u32>> {
        futures_util::FutureExt::now_or_never(rx.next())
    }

    #[test]
    fn events_wait_for_ready_and_come_in_arrival_order() {
        let (inbox, rx) = Inbox::new(BUDGET);
        inbox.push(1, 1, 0).unwrap();
        inbox.push(2, 1, 0).unwrap();
        assert_eq!(now(&rx), None);
        inbox.signal(Control::Ready);
        assert_eq!(now(&rx), Some(Next::Event(1)));
        assert_eq!(now(&rx), Some(Next::Event(2)));
        assert_eq!(now(&rx), None);
    }

    #[test]
    fn past_its_budget_the_inbox_closes_the_read_gate_until_half_is_taken() {
        let (inbox, rx) = Inbox::new(100);
        let read_gate = Arc::new(ReadGate::default());
        inbox.set_read_gate(read_gate.clone());
        inbox.signal(Control::Ready);
        for i in 0..10 {
            inbox.push(i, 10, 50).unwrap();
        }
        assert!(!read_gate.is_closed(), "at the budget");
        inbox.push(10, 10, 50).unwrap();
        assert!(read_gate.is_closed(), "over the budget");
        for i in 0..5 {
            assert_eq!(now(&rx), Some(Next::Event(i)));
            assert!(read_gate.is_closed(), "still above half the budget");
        }
        assert_eq!(now(&rx), Some(Next::Event(5)));
        assert!(!read_gate.is_closed(), "down to half the budget");
    }

    #[test]
    fn a_read_gate_set_while_over_budget_starts_closed_and_the_old_one_opens() {
        let (inbox, _rx) = Inbox::new(10);
        let polling = Arc::new(ReadGate::default());
        inbox.set_read_gate(polling.clone());
        inbox.push(1u32, 20, 0).unwrap();
        assert!(polling.is_closed());
        let websocket = Arc::new(ReadGate::default());
        inbox.set_read_gate(websocket.clone());
        assert!(websocket.is_closed());
        assert!(!polling.is_closed());
    }

    #[test]
    fn past_twice_the_budget_and_one_event_the_inbox_refuses_once_then_for_good() {
        let (inbox, _rx) = Inbox::new(100);
        for i in 0..25u32 {
            inbox.push(i, 10, 50).unwrap();
        }
        assert_eq!(inbox.push(25, 10, 50), Err(Refused::Overflow(25)));
        assert_eq!(inbox.push(26, 1, 50), Err(Refused::Overflowed(26)));
    }

    #[test]
    fn an_ended_session_leaves_the_read_gate_open() {
        let (inbox, rx) = Inbox::new(10);
        let read_gate = Arc::new(ReadGate::default());
        inbox.set_read_gate(read_gate.clone());
        inbox.push(1u32, 20, 0).unwrap();
        assert!(read_gate.is_closed());
        drop(rx);
        assert!(!read_gate.is_closed());
    }

    #[test]
    fn a_kick_comes_before_the_close_only_when_it_was_first() {
        let (inbox, rx) = Inbox::<u32>::new(BUDGET);
        inbox.signal(Control::Kick);
        inbox.signal(Control::Closed);
        assert_eq!(now(&rx), Some(Next::Kick));
        assert_eq!(now(&rx), Some(Next::Closed));

        let (inbox, rx) = Inbox::<u32>::new(BUDGET);
        inbox.signal(Control::Closed);
        inbox.signal(Control::Kick);
        assert_eq!(now(&rx), Some(Next::Closed));
    }

    #[test]
    fn events_queued_before_the_close_can_still_be_taken() {
        let (inbox, rx) = Inbox::new(BUDGET);
        inbox.push(1, 1, 0).unwrap();
        inbox.signal(Control::Closed);
        assert_eq!(now(&rx), Some(Next::Closed));
        assert_eq!(rx.try_event(), Some(1));
        assert_eq!(rx.try_event(), None);
    }

    #[tokio::test]
    async fn a_waiting_session_is_woken_by_a_push() {
        let (inbox, rx) = Inbox::new(BUDGET);
        inbox.signal(Control::Ready);
        let waiter = tokio::spawn(async move { rx.next().await });
        tokio::task::yield_now().await;
        inbox.push(5, 1, 0).unwrap();
        assert_eq!(waiter.await.unwrap(), Next::Event(5));
    }

    #[test]
    fn after_the_session_ended_pushes_are_dropped() {
        let (inbox, rx) = Inbox::new(BUDGET);
        inbox.push(Arc::new(1), 1, 0).unwrap();
        let queued = Arc::new(2);
        inbox.push(queued.clone(), 1, 0).unwrap();
        drop(rx);
        assert_eq!(Arc::strong_count(&queued), 1, "queued events are dropped");
        let late = Arc::new(3);
        inbox.push(late.clone(), 1, 0).unwrap();
        assert_eq!(Arc::strong_count(&late), 1, "later events are not kept");
    }

    #[test]
    fn msgs_bypass_the_session_only_while_it_waits_with_nothing_queued() {
        let (inbox, rx) = Inbox::new(BUDGET);
        rx.publish(Some(Arc::new(DirectRelay {
            room: "r".into(),
            sender: crate::protocol::SenderStamp::of(&serde_json::Value::from("alice")),
            stores: true,
            pending: Default::default(),
        })));
        assert!(inbox.direct().is_none(), "not before ready");
        inbox.signal(Control::Ready);
        assert_eq!(now(&rx), None);
        assert!(inbox.direct().is_some(), "ready and waiting");
        inbox.push(1, 1, 0).unwrap();
        assert!(inbox.direct().is_none(), "an event is queued");
        assert_eq!(now(&rx), Some(Next::Event(1)));
        assert!(inbox.direct().is_none(), "the session handles an event");
        assert_eq!(now(&rx), None);
        assert!(inbox.direct().is_some(), "waiting again");
        let published = inbox.direct();
        rx.publish(None);
        assert!(inbox.direct().is_none(), "withdrawn");
        rx.publish(published);
        assert!(inbox.direct().is_some(), "published again");
        inbox.signal(Control::Kick);
        assert!(inbox.direct().is_none(), "a kick is pending");
    }

    #[test]
    fn a_session_that_ended_lets_nothing_bypass_it() {
        let (inbox, rx) = Inbox::<u32>::new(BUDGET);
        rx.publish(Some(Arc::new(DirectRelay {
            room: "r".into(),
            sender: crate::protocol::SenderStamp::of(&serde_json::Value::from(7)),
            stores: true,
            pending: Default::default(),
        })));
        inbox.signal(Control::Ready);
        drop(rx);
        assert!(inbox.direct().is_none());
    }

    #[test]
    fn a_tiny_event_weighs_what_it_holds() {
        let (event, data) = ("a".to_owned(), RawValue::from_string("1".to_owned()));
        let tiny = Inbound {
            event,
            data: data.map_err(|e| e.to_string()),
            ack: AckSender::new(None),
        };
        // Its record, its slot and three allocations: far more than its
        // two bytes of name and payload.
        assert!(tiny.weight() >= 150, "{}", tiny.weight());
        // A 4 MiB budget holds tens of thousands of them, not millions.
        assert!((4 << 20) / tiny.weight() < 30_000);
    }

    #[test]
    fn a_ring_grown_by_a_burst_is_given_back_once_empty() {
        let (inbox, rx) = Inbox::new(BUDGET);
        inbox.signal(Control::Ready);
        for i in 0..100 {
            inbox.push(i, 1, 0).unwrap();
        }
        while let Some(Next::Event(_)) = now(&rx) {}
        assert!(inbox.state().events.capacity() <= KEPT_SLOTS);
    }
}
