//! A connection's outbound queue: frames waiting for its transport,
//! bounded in the memory they hold ([`weight`]: payload and per-frame
//! overhead). Nothing is allocated while it holds at most one frame
//! ([`FrameQueue`]); the ring that a burst grew is given back once the
//! burst is written.

use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use crate::engine::Frame;
use crate::frame_queue::FrameQueue;
use crate::held;

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The queue holds its byte limit: the client does not read fast enough.
    #[error("outbound queue full")]
    Full,
    /// The connection is closed or closing.
    #[error("connection closed")]
    Closed,
}

/// What a queued frame holds beyond its payload, counted high: its slot
/// in the ring and as much again of spare ring capacity (a ring doubles as
/// it grows), the allocation of its buffer and the shared header that
/// `Bytes` adds to a buffer made from a `Vec` with spare room (two
/// [`held::ALLOCATION_OVERHEAD`]s), and that spare room in the small
/// buffers the encoders make.
pub(crate) const FRAME_OVERHEAD: usize = 192;

const _: () = assert!(
    2 * std::mem::size_of::<Frame>() + 2 * held::ALLOCATION_OVERHEAD + 24 <= FRAME_OVERHEAD
);

/// What `frame` counts against its connection's queue: its bytes and
/// [`FRAME_OVERHEAD`], so that a flood of tiny frames (pongs to a
/// client's pings) fills the queue as soon as their memory does.
pub(crate) fn weight(frame: &Frame) -> usize {
    frame.len().saturating_add(FRAME_OVERHEAD)
}

pub(crate) struct Outbox {
    state: Mutex<State>,
    limit: usize,
}

struct State {
    frames: FrameQueue,
    bytes: usize,
    closed: bool,
    /// The transport's writer, waiting for frames.
    waker: Option<Waker>,
    /// Someone waiting until at most this many bytes are queued.
    drain: Option<Box<(usize, Waker)>>,
}

impl State {
    /// Keeps the writer's waker, cloning only when it changed.
    fn register(&mut self, cx: &Context<'_>) {
        match &mut self.waker {
            Some(w) => w.clone_from(cx.waker()),
            None => self.waker = Some(cx.waker().clone()),
        }
    }

    /// After frames were taken: wakes whoever waits for the queue to
    /// drain, once it has.
    fn taken(&mut self) {
        if matches!(&self.drain, Some(d) if self.bytes <= d.0) {
            if let Some(d) = self.drain.take() {
                d.1.wake();
            }
        }
    }
}

impl Outbox {
    pub(crate) fn new(limit: usize) -> Outbox {
        Outbox {
            state: Mutex::new(State {
                frames: FrameQueue::Empty,
                bytes: 0,
                closed: false,
                waker: None,
                drain: None,
            }),
            limit,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `frame`, unless the queue already holds its limit: it never
    /// holds more than its limit and one frame (each counted by [`weight`]).
    pub(crate) fn push(&self, frame: Frame) -> Result<(), QueueError> {
        self.push_all(std::iter::once(frame))
    }

    /// Queues `frames` together (a packet and its binary attachments): no
    /// other frame comes between them. Refused as a whole like [`Outbox::push`].
    pub(crate) fn push_all(
        &self,
        frames: impl IntoIterator<Item = Frame>,
    ) -> Result<(), QueueError> {
        let mut state = self.state();
        if state.closed {
            return Err(QueueError::Closed);
        }
        if state.bytes >= self.limit {
            return Err(QueueError::Full);
        }
        for frame in frames {
            state.bytes += weight(&frame);
            state.frames.push_back(frame);
        }
        let waker = state.waker.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Takes up to `max_bytes` of queued frames' payload (at least one
    /// frame) into `out`; pending (with the waker registered) when there
    /// are none.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        out: &mut Vec<Frame>,
        max_bytes: usize,
    ) -> Poll<()> {
        let mut state = self.state();
        if state.frames.is_empty() {
            state.register(cx);
            return Poll::Pending;
        }
        let mut taken = 0;
        let mut weights = 0;
        while let Some(frame) = state.frames.front() {
            let len = frame.len().max(1);
            if taken > 0 && taken + len > max_bytes {
                break;
            }
            taken += len;
            weights += weight(frame);
            if let Some(frame) = state.frames.pop_front() {
                out.push(frame);
            }
        }
        state.bytes -= weights;
        state.taken();
        Poll::Ready(())
    }

    /// Takes the oldest queued frame; pending (with the waker registered)
    /// when there is none.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Frame> {
        let mut state = self.state();
        match state.frames.pop_front() {
            Some(frame) => {
                state.bytes -= weight(&frame);
                state.taken();
                Poll::Ready(frame)
            }
            None => {
                state.register(cx);
                Poll::Pending
            }
        }
    }

    /// Registers the writer to be woken by the next frame or the close,
    /// whether or not it takes frames now (a writer waiting on its socket
    /// must still see the close).
    pub(crate) fn register(&self, cx: &mut Context<'_>) {
        self.state().register(cx);
    }

    /// Takes every queued frame at once, if any.
    pub(crate) fn take_now(&self, out: &mut Vec<Frame>) {
        let mut state = self.state();
        state.bytes = 0;
        state.frames.drain_into(out);
        state.taken();
    }

    /// Puts frames taken but not sent back in front of the queue, in order.
    pub(crate) fn unshift(&self, frames: Vec<Frame>) {
        let mut state = self.state();
        for frame in frames.into_iter().rev() {
            state.bytes += weight(&frame);
            state.frames.push_front(frame);
        }
    }

    /// What is queued now, counted by [`weight`].
    pub(crate) fn bytes(&self) -> usize {
        self.state().bytes
    }

    /// Ready once at most `bytes` are queued, or the queue is closed;
    /// otherwise pending, woken when the transport took enough. One waiter
    /// at a time: a later one replaces the earlier.
    pub(crate) fn poll_drained(&self, cx: &mut Context<'_>, bytes: usize) -> Poll<()> {
        let mut state = self.state();
        if state.closed || state.bytes <= bytes {
            state.drain = None;
            return Poll::Ready(());
        }
        match &mut state.drain {
            Some(d) => {
                d.0 = bytes;
                d.1.clone_from(cx.waker());
            }
            None => state.drain = Some(Box::new((bytes, cx.waker().clone()))),
        }
        Poll::Pending
    }

    /// Refuses further frames and wakes the writer and any drain waiter.
    pub(crate) fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        let waker = state.waker.take();
        let drain = state.drain.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
        if let Some(d) = drain {
            d.1.wake();
        }
    }

    /// Wakes the writer without a frame (something else changed).
    pub(crate) fn wake(&self) {
        let waker = self.state().waker.take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn text(n: usize) -> Frame {
        Frame::Text(Bytes::from(vec![b'4'; n]))
    }

    /// What `n` frames of `len` bytes count.
    fn counted(n: usize, len: usize) -> usize {
        n * (len + FRAME_OVERHEAD)
    }

    #[test]
    fn the_queue_is_bounded_in_bytes() {
        let q = Outbox::new(counted(1, 60) + counted(1, 40));
        q.push(text(60)).unwrap();
        q.push(text(40)).unwrap();
        assert_eq!(q.push(text(1)), Err(QueueError::Full));
        let mut out = Vec::new();
        q.take_now(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(q.bytes(), 0);
        // A frame larger than the limit fits a queue below it.
        q.push(text(50)).unwrap();
        q.push(text(5000)).unwrap();
        assert_eq!(q.push(text(1)), Err(QueueError::Full));
    }

    #[test]
    fn tiny_frames_count_what_they_hold() {
        let limit = 1 << 16;
        let q = Outbox::new(limit);
        let mut queued = 0;
        while q.push(Frame::Text(Bytes::from_static(b"3"))).is_ok() {
            queued += 1;
        }
        assert!(
            queued <= limit / FRAME_OVERHEAD + 1,
            "{queued} pongs queued"
        );
        assert_eq!(q.bytes(), counted(queued, 1));
        // Empty frames count too.
        let q = Outbox::new(limit);
        let mut queued = 0;
        while q.push(Frame::Binary(Bytes::new())).is_ok() {
            queued += 1;
        }
        assert!(
            queued <= limit / FRAME_OVERHEAD + 1,
            "{queued} empty frames queued"
        );
    }

    #[test]
    fn takes_stop_at_the_byte_budget_but_take_at_least_one() {
        let q = Outbox::new(counted(10, 100));
        for _ in 0..5 {
            q.push(text(100)).unwrap();
        }
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut out = Vec::new();
        assert!(q.poll_take(&mut cx, &mut out, 250).is_ready());
        assert_eq!(out.len(), 2);
        out.clear();
        assert!(q.poll_take(&mut cx, &mut out, 1).is_ready());
        assert_eq!(out.len(), 1);
        assert_eq!(q.bytes(), counted(2, 100));
        q.unshift(out);
        assert_eq!(q.bytes(), counted(3, 100));
    }

    #[test]
    fn a_drain_waiter_wakes_once_the_transport_took_enough_or_the_queue_closed() {
        let outbox = Outbox::new(1 << 20);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        outbox.push(text(100)).expect("queued");
        outbox.push(text(100)).expect("queued");
        let one = counted(1, 100);
        assert!(outbox.poll_drained(&mut cx, one + 50).is_pending());
        let mut out = Vec::new();
        assert!(outbox.poll_take(&mut cx, &mut out, 100).is_ready());
        assert!(outbox.state().drain.is_none(), "woken at one frame");
        assert!(outbox.poll_drained(&mut cx, one + 50).is_ready());
        assert!(outbox.poll_drained(&mut cx, 0).is_pending());
        outbox.close();
        assert!(outbox.poll_drained(&mut cx, 0).is_ready());
    }

    #[test]
    fn an_emptied_queue_holds_no_ring() {
        let q = Outbox::new(1 << 20);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut out = Vec::new();
        q.push(text(10)).unwrap();
        q.push(text(10)).unwrap();
        assert!(q.poll_take(&mut cx, &mut out, 10).is_ready());
        assert!(q.state().frames.capacity() > 0, "one frame is left");
        assert!(q.poll_take(&mut cx, &mut out, 10).is_ready());
        assert_eq!(q.state().frames.capacity(), 0);
        q.push(text(10)).unwrap();
        assert!(q.poll_next(&mut cx).is_ready());
        assert_eq!(q.state().frames.capacity(), 0);
        q.push(text(10)).unwrap();
        q.take_now(&mut out);
        assert_eq!(q.state().frames.capacity(), 0);
    }

    #[test]
    fn a_closed_queue_refuses() {
        let q = Outbox::new(10);
        q.close();
        assert_eq!(q.push(text(1)), Err(QueueError::Closed));
    }
}
