//! The frames of one connection's outbound queue, in order. A connection
//! that keeps up holds at most one frame at a time (its writer takes each
//! as it comes), so one frame is held in place and a ring is allocated
//! only when a second one waits behind it; the ring is given back once
//! empty, so an idle connection holds no allocation.

use std::collections::VecDeque;

use crate::engine::Frame;

/// Frames in order: none, one held in place, or a ring.
#[derive(Debug, Default)]
pub(crate) enum FrameQueue {
    #[default]
    Empty,
    One(Frame),
    Ring(VecDeque<Frame>),
}

impl FrameQueue {
    /// Whether no frame is queued.
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            FrameQueue::Empty => true,
            FrameQueue::One(_) => false,
            FrameQueue::Ring(ring) => ring.is_empty(),
        }
    }

    /// The oldest frame.
    pub(crate) fn front(&self) -> Option<&Frame> {
        match self {
            FrameQueue::Empty => None,
            FrameQueue::One(frame) => Some(frame),
            FrameQueue::Ring(ring) => ring.front(),
        }
    }

    /// Queues `frame` last.
    pub(crate) fn push_back(&mut self, frame: Frame) {
        match self {
            FrameQueue::Empty => *self = FrameQueue::One(frame),
            FrameQueue::Ring(ring) => ring.push_back(frame),
            FrameQueue::One(_) => {
                if let FrameQueue::One(first) = std::mem::take(self) {
                    *self = FrameQueue::Ring(ring_of(first, frame));
                }
            }
        }
    }

    /// Queues `frame` first.
    pub(crate) fn push_front(&mut self, frame: Frame) {
        match self {
            FrameQueue::Empty => *self = FrameQueue::One(frame),
            FrameQueue::Ring(ring) => ring.push_front(frame),
            FrameQueue::One(_) => {
                if let FrameQueue::One(second) = std::mem::take(self) {
                    *self = FrameQueue::Ring(ring_of(frame, second));
                }
            }
        }
    }

    /// Takes the oldest frame; an emptied ring is given back.
    pub(crate) fn pop_front(&mut self) -> Option<Frame> {
        let frame = match self {
            FrameQueue::Empty => None,
            FrameQueue::One(_) => match std::mem::take(self) {
                FrameQueue::One(frame) => Some(frame),
                _ => None,
            },
            FrameQueue::Ring(ring) => ring.pop_front(),
        };
        self.release_empty_ring();
        frame
    }

    /// Moves every frame to the end of `out`; an emptied ring is given back.
    pub(crate) fn drain_into(&mut self, out: &mut Vec<Frame>) {
        match std::mem::take(self) {
            FrameQueue::Empty => {}
            FrameQueue::One(frame) => out.push(frame),
            FrameQueue::Ring(ring) => out.extend(ring),
        }
    }

    /// Ring slots allocated now (0 while none or one frame is queued).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        match self {
            FrameQueue::Ring(ring) => ring.capacity(),
            _ => 0,
        }
    }

    fn release_empty_ring(&mut self) {
        if matches!(self, FrameQueue::Ring(ring) if ring.is_empty()) {
            *self = FrameQueue::Empty;
        }
    }
}

/// Slots of a new ring: what a queue that holds more than one frame
/// usually holds (a group commit's relays and an ack), so that it seldom
/// grows; as many as [`crate::outbox::FRAME_OVERHEAD`] counts for two frames.
const RING_SLOTS: usize = 4;

/// A ring holding `first` then `second`.
fn ring_of(first: Frame, second: Frame) -> VecDeque<Frame> {
    let mut ring = VecDeque::with_capacity(RING_SLOTS);
    ring.push_back(first);
    ring.push_back(second);
    ring
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(n: u8) -> Frame {
        Frame::Text(Bytes::from(vec![n]))
    }

    fn byte(f: &Frame) -> u8 {
        match f {
            Frame::Text(b) | Frame::Binary(b) => b[0],
        }
    }

    #[test]
    fn frames_come_out_in_order_and_one_needs_no_ring() {
        let mut q = FrameQueue::default();
        q.push_back(frame(1));
        assert_eq!(q.capacity(), 0, "one frame is held in place");
        q.push_back(frame(2));
        q.push_front(frame(0));
        q.push_back(frame(3));
        assert_eq!(
            q.capacity(),
            RING_SLOTS,
            "no growth for a third or fourth frame"
        );
        let mut seen = Vec::new();
        while let Some(f) = q.pop_front() {
            seen.push(byte(&f));
        }
        assert_eq!(seen, [0, 1, 2, 3]);
        assert!(q.is_empty());
        assert_eq!(q.capacity(), 0, "the emptied ring is given back");
        q.push_front(frame(5));
        q.push_front(frame(4));
        assert_eq!(q.front().map(byte), Some(4));
        let mut out = Vec::new();
        q.drain_into(&mut out);
        assert_eq!(out.iter().map(byte).collect::<Vec<_>>(), [4, 5]);
        assert!(q.is_empty() && q.capacity() == 0);
    }

    #[test]
    fn it_is_no_larger_than_a_ring() {
        assert!(
            std::mem::size_of::<FrameQueue>() <= std::mem::size_of::<VecDeque<Frame>>() + 8,
            "{} bytes",
            std::mem::size_of::<FrameQueue>()
        );
    }
}
