//! The state every handle of one channel shares: the buffer, the counts of
//! open handles, and the tasks blocked in `send` and `receive` (Trio's
//! `MemoryChannelState`).
//!
//! **Waiters live in a slab.** A blocked operation is an entry of one
//! `Slab<Waiter<T>>`, threaded on one of two doubly linked FIFO lists
//! (blocked senders, blocked receivers) by slab keys. The future (or the
//! receive handle's stream state) remembers only its key. This gives:
//!
//! * no allocation per blocked operation once the slab has grown to the
//!   peak number of waiters (an `Rc` per waiter, as `ParkingLot` needs for
//!   `repark`, would cost an allocation per block: a rendezvous ping-pong
//!   blocks on every message);
//! * O(1) push, pop-oldest and removal from the middle (a cancelled waiter
//!   leaves without a search);
//! * a place for the value: a blocked sender's value sits in its entry until
//!   a receiver takes it, and a value handed to a blocked receiver sits in
//!   the receiver's entry until its future is polled (or dropped).
//!
//! An entry leaves its list when its outcome is decided (hand-over, close,
//! end of channel) but stays in the slab until the owning future collects
//! the outcome; only the owner removes it, so a key is never reused behind
//! its owner's back.
//!
//! **No user code runs under the `RefCell` borrow.** Methods here never
//! wake a waker or drop a `T`: they return the wakers to wake and the values
//! to drop, and the caller does both after releasing the borrow. A waker or a
//! value's `Drop` may touch the channel again (a value holding a handle of
//! the same channel, a waker that polls in place), which would otherwise be
//! a double borrow.

use std::collections::VecDeque;
use std::task::Waker;

use slab::Slab;

use super::MemoryChannelStatistics;

/// End of a waiter list.
const NIL: usize = usize::MAX;

/// Identifies one handle (one clone) of a channel, so that closing it wakes
/// only the operations blocked on that handle (rule Y7).
pub(crate) type HandleId = u64;

/// The two waiter lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Send,
    Receive,
}

/// Where a blocked operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// In its list, waiting. A sender's value is in the entry.
    Waiting,
    /// Handed over: a receiver took the sender's value, or a sender gave the
    /// receiver one (now in the entry). Final: cancellation cannot undo it.
    Done,
    /// The operation's own handle was closed (the sender's value is still
    /// in the entry).
    Closed,
    /// Sender only: every receive handle was closed.
    Broken,
    /// Receiver only: every send handle was closed and the buffer is empty.
    End,
    /// Never stored: what [`State::poll_waiter`] reports when it withdrew a
    /// waiting entry because its task was cancelled.
    Cancelled,
}

struct Waiter<T> {
    status: Status,
    value: Option<T>,
    waker: Option<Waker>,
    handle: HandleId,
    prev: usize,
    next: usize,
}

/// A FIFO list of waiter keys, linked through the slab.
#[derive(Debug)]
struct Queue {
    head: usize,
    tail: usize,
    len: usize,
}

impl Queue {
    const EMPTY: Queue = Queue { head: NIL, tail: NIL, len: 0 };
}

/// The outcome of offering a value (`send`, `try_send`).
pub(crate) enum Offer<T> {
    /// Handed to the oldest blocked receiver (wake the waker), or appended
    /// to the buffer (no waker).
    Sent(Option<Waker>),
    /// No room and nobody waiting: the value comes back.
    Full(T),
    /// Every receive handle is closed: the value comes back.
    Broken(T),
}

/// The outcome of asking for a value (`receive`, `try_receive`).
pub(crate) enum Take<T> {
    /// A value, and the sender to wake if one was moved along.
    Value(T, Option<Waker>),
    /// Nothing buffered, no sender waiting.
    Empty,
    /// Every send handle is closed and the buffer is drained.
    End,
}

/// The outcome of returning a value a receive future will not deliver.
pub(crate) enum PutBack<T> {
    /// Given to the oldest blocked receiver (wake the waker), or put back
    /// at the front of the buffer (no waker).
    Done(Option<Waker>),
    /// Every receive handle is closed: nobody can have it. Drop it after
    /// releasing the borrow.
    Orphaned(T),
}

/// What closing a handle leaves for the caller to do outside the borrow.
pub(crate) struct Closing<T> {
    /// Wake these, in order.
    pub(crate) wakers: Vec<Waker>,
    /// The buffer, dropped when the last receive handle closes.
    pub(crate) dropped: VecDeque<T>,
}

pub(crate) struct State<T> {
    buffer: VecDeque<T>,
    capacity: usize,
    /// The most values `buffer` has held at once (never decreases).
    peak_buffer_used: usize,
    open_senders: usize,
    open_receivers: usize,
    next_handle: HandleId,
    waiters: Slab<Waiter<T>>,
    senders: Queue,
    receivers: Queue,
}

impl<T> State<T> {
    /// A channel with no handles yet.
    pub(crate) fn new(capacity: usize) -> State<T> {
        State {
            buffer: VecDeque::new(),
            capacity,
            peak_buffer_used: 0,
            open_senders: 0,
            open_receivers: 0,
            next_handle: 0,
            waiters: Slab::new(),
            senders: Queue::EMPTY,
            receivers: Queue::EMPTY,
        }
    }

    /// A fresh id for a new handle; counts it as open unless it is born
    /// closed (a clone of a closed handle).
    pub(crate) fn new_handle(&mut self, side: Side, open: bool) -> HandleId {
        if open {
            match side {
                Side::Send => self.open_senders += 1,
                Side::Receive => self.open_receivers += 1,
            }
        }
        self.next_handle += 1;
        self.next_handle
    }

    pub(crate) fn statistics(&self) -> MemoryChannelStatistics {
        MemoryChannelStatistics {
            current_buffer_used: self.buffer.len(),
            peak_buffer_used: self.peak_buffer_used,
            max_buffer_size: self.capacity,
            open_send_channels: self.open_senders,
            open_receive_channels: self.open_receivers,
            tasks_waiting_send: self.senders.len,
            tasks_waiting_receive: self.receivers.len,
        }
    }

    /// Records the buffer's length if it is a new high-water mark.
    #[inline]
    fn note_peak(&mut self) {
        self.peak_buffer_used = self.peak_buffer_used.max(self.buffer.len());
    }

    // ------------------------------------------------------------ lists

    fn queue(&mut self, side: Side) -> (&mut Slab<Waiter<T>>, &mut Queue) {
        match side {
            Side::Send => (&mut self.waiters, &mut self.senders),
            Side::Receive => (&mut self.waiters, &mut self.receivers),
        }
    }

    fn push_back(&mut self, side: Side, handle: HandleId, value: Option<T>, waker: Waker) -> usize {
        let (slab, queue) = self.queue(side);
        let prev = queue.tail;
        let key = slab.insert(Waiter { status: Status::Waiting, value, waker: Some(waker), handle, prev, next: NIL });
        if prev == NIL {
            queue.head = key;
        } else {
            slab[prev].next = key;
        }
        queue.tail = key;
        queue.len += 1;
        key
    }

    /// Takes a waiting entry out of its list (it stays in the slab).
    fn unlink(&mut self, side: Side, key: usize) {
        let (slab, queue) = self.queue(side);
        let (prev, next) = (slab[key].prev, slab[key].next);
        if prev == NIL {
            queue.head = next;
        } else {
            slab[prev].next = next;
        }
        if next == NIL {
            queue.tail = prev;
        } else {
            slab[next].prev = prev;
        }
        queue.len -= 1;
    }

    fn pop_front(&mut self, side: Side) -> Option<usize> {
        let key = match side {
            Side::Send => self.senders.head,
            Side::Receive => self.receivers.head,
        };
        if key == NIL {
            return None;
        }
        self.unlink(side, key);
        Some(key)
    }

    /// Decides a popped entry's outcome; returns its waker.
    fn finish(&mut self, key: usize, status: Status) -> Option<Waker> {
        let w = &mut self.waiters[key];
        w.status = status;
        w.waker.take()
    }

    // ------------------------------------------------------------ sending

    /// A send's attempt that does not block (Trio's `send_nowait`, minus the
    /// closed-handle check, which belongs to the handle): to the oldest
    /// blocked receiver (rule Y5), else into the buffer if there is room.
    pub(crate) fn offer(&mut self, value: T) -> Offer<T> {
        if self.open_receivers == 0 {
            return Offer::Broken(value);
        }
        if let Some(key) = self.pop_front(Side::Receive) {
            // A receiver blocks only on an empty buffer, so handing over
            // directly keeps the order.
            debug_assert!(self.buffer.is_empty());
            self.waiters[key].value = Some(value);
            return Offer::Sent(self.finish(key, Status::Done));
        }
        if self.buffer.len() < self.capacity {
            self.buffer.push_back(value);
            self.note_peak();
            Offer::Sent(None)
        } else {
            Offer::Full(value)
        }
    }

    /// After a send that put its value in the buffer: whether that filled
    /// it, so the next send would block (the schedule point's "exhausted",
    /// see `budget::after_channel_op`).
    pub(crate) fn is_full(&self) -> bool {
        self.buffer.len() >= self.capacity
    }

    /// Blocks a send: queues it with its value; returns its key.
    pub(crate) fn park_sender(&mut self, handle: HandleId, value: T, waker: Waker) -> usize {
        self.push_back(Side::Send, handle, Some(value), waker)
    }

    // ------------------------------------------------------------ receiving

    /// A receive's attempt that does not block (Trio's `receive_nowait`,
    /// minus the closed-handle check).
    ///
    /// Trio moves the oldest blocked sender's value into the buffer, then
    /// pops the front. Here the front is popped first and a sender moved in
    /// only while there is room: the same result whenever the buffer is
    /// within its capacity, and when a dropped receive has put a value back
    /// beyond capacity, the senders wait until the excess is drained
    /// instead of being told their value was taken.
    pub(crate) fn take(&mut self) -> Take<T> {
        if let Some(value) = self.buffer.pop_front() {
            let mut waker = None;
            if self.buffer.len() < self.capacity {
                if let Some(key) = self.pop_front(Side::Send) {
                    if let Some(v) = self.waiters[key].value.take() {
                        self.buffer.push_back(v);
                    }
                    waker = self.finish(key, Status::Done);
                }
            }
            return Take::Value(value, waker);
        }
        if let Some(key) = self.pop_front(Side::Send) {
            // Empty buffer (capacity 0, or a sender queued behind values a
            // dropped receive put back): straight from the sender.
            let value = self.waiters[key].value.take();
            let waker = self.finish(key, Status::Done);
            if let Some(value) = value {
                return Take::Value(value, waker);
            }
        }
        if self.open_senders == 0 {
            Take::End
        } else {
            Take::Empty
        }
    }

    /// After a receive that took a value: whether it left a buffered
    /// channel with nothing to take, so the next receive would block (the
    /// schedule point's "exhausted", see `budget::after_channel_op`). A
    /// rendezvous channel's receive is a hand-over, never "exhausted".
    pub(crate) fn is_drained(&self) -> bool {
        self.capacity > 0 && self.buffer.is_empty()
    }

    /// Unbounded cross-shard channels: after a receive took its value,
    /// moves the rest of the buffer into the receivers' `batch` (which must
    /// be empty) by swapping the two deques, so the buffer goes on in the
    /// batch's old allocation. Returns whether the batch now holds values.
    /// See `Shared::batch` in `shard/channel.rs` for why.
    pub(crate) fn swap_buffer(&mut self, batch: &mut VecDeque<T>) -> bool {
        debug_assert!(batch.is_empty(), "a batch is taken only once the previous one is drained");
        debug_assert!(self.senders.len == 0, "an unbounded channel's senders never wait");
        if self.buffer.is_empty() {
            return false;
        }
        std::mem::swap(&mut self.buffer, batch);
        true
    }

    /// Whether any receive handle is open.
    pub(crate) fn has_receivers(&self) -> bool {
        self.open_receivers > 0
    }

    /// Blocks a receive; returns its key.
    pub(crate) fn park_receiver(&mut self, handle: HandleId, waker: Waker) -> usize {
        self.push_back(Side::Receive, handle, None, waker)
    }

    /// Returns a value that a receive future took but will not deliver (it
    /// was dropped after the hand-over): to the oldest blocked receiver, or
    /// back at the front of the buffer (even beyond capacity), so no value
    /// is lost and the order is kept.
    pub(crate) fn put_back(&mut self, value: T) -> PutBack<T> {
        if self.open_receivers == 0 {
            return PutBack::Orphaned(value);
        }
        if let Some(key) = self.pop_front(Side::Receive) {
            self.waiters[key].value = Some(value);
            return PutBack::Done(self.finish(key, Status::Done));
        }
        self.buffer.push_front(value);
        self.note_peak();
        PutBack::Done(None)
    }

    // ------------------------------------------------------------ blocked ops

    /// A blocked operation's poll. If its outcome is decided, removes the
    /// entry and returns the outcome with the entry's value. If it still
    /// waits and `cancelled()` says its task is cancelled, withdraws it
    /// (`Status::Cancelled`, the sender's value returned). Otherwise keeps
    /// the newest waker and returns `None`.
    pub(crate) fn poll_waiter(
        &mut self,
        side: Side,
        key: usize,
        waker: &Waker,
        cancelled: impl FnOnce() -> bool,
    ) -> Option<(Status, Option<T>)> {
        let w = &mut self.waiters[key];
        if w.status == Status::Waiting {
            if !cancelled() {
                match &mut w.waker {
                    Some(old) if old.will_wake(waker) => {}
                    slot => *slot = Some(waker.clone()),
                }
                return None;
            }
            self.unlink(side, key);
            return Some((Status::Cancelled, self.waiters.remove(key).value));
        }
        let w = self.waiters.remove(key);
        Some((w.status, w.value))
    }

    /// Removes a blocked operation whose future is being dropped; returns
    /// its status and value (the caller disposes of both outside the borrow).
    pub(crate) fn withdraw(&mut self, side: Side, key: usize) -> (Status, Option<T>) {
        if self.waiters[key].status == Status::Waiting {
            self.unlink(side, key);
        }
        let w = self.waiters.remove(key);
        (w.status, w.value)
    }

    // ------------------------------------------------------------ closing

    /// Closes one handle (Trio's `close`): its own blocked operations fail
    /// with `Closed`; if it was the last of its side, the other side's
    /// blocked operations end (receivers: `End`; senders: `Broken`, and the
    /// buffer goes).
    pub(crate) fn close_handle(&mut self, side: Side, handle: HandleId) -> Closing<T> {
        let mut wakers = Vec::new();
        let mut key = match side {
            Side::Send => self.senders.head,
            Side::Receive => self.receivers.head,
        };
        while key != NIL {
            let next = self.waiters[key].next;
            if self.waiters[key].handle == handle {
                self.unlink(side, key);
                wakers.extend(self.finish(key, Status::Closed));
            }
            key = next;
        }
        let mut dropped = VecDeque::new();
        let (other, status) = match side {
            Side::Send => {
                self.open_senders -= 1;
                if self.open_senders > 0 {
                    return Closing { wakers, dropped };
                }
                (Side::Receive, Status::End)
            }
            Side::Receive => {
                self.open_receivers -= 1;
                if self.open_receivers > 0 {
                    return Closing { wakers, dropped };
                }
                dropped = std::mem::take(&mut self.buffer);
                (Side::Send, Status::Broken)
            }
        };
        while let Some(key) = self.pop_front(other) {
            wakers.extend(self.finish(key, status));
        }
        Closing { wakers, dropped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn noop() -> Waker {
        Waker::noop().clone()
    }

    fn keys(state: &State<u32>, side: Side) -> Vec<usize> {
        let mut out = Vec::new();
        let mut key = match side {
            Side::Send => state.senders.head,
            Side::Receive => state.receivers.head,
        };
        while key != NIL {
            out.push(key);
            key = state.waiters[key].next;
        }
        out
    }

    #[test]
    fn lists_stay_linked_after_removal_from_the_middle() {
        let mut s = State::<u32>::new(0);
        s.new_handle(Side::Send, true);
        let h1 = s.new_handle(Side::Receive, true);
        let h2 = s.new_handle(Side::Receive, true);
        let a = s.park_receiver(h1, noop());
        let b = s.park_receiver(h1, noop());
        let c = s.park_receiver(h2, noop());
        assert_eq!(keys(&s, Side::Receive), vec![a, b, c]);
        let out = s.poll_waiter(Side::Receive, b, &noop(), || true);
        assert!(matches!(out, Some((Status::Cancelled, None))));
        assert_eq!(keys(&s, Side::Receive), vec![a, c]);
        assert_eq!(s.statistics().tasks_waiting_receive, 2);
        // Closing h1 fails only its own waiter.
        let closing = s.close_handle(Side::Receive, h1);
        assert_eq!(closing.wakers.len(), 1);
        assert_eq!(keys(&s, Side::Receive), vec![c]);
        assert!(matches!(s.withdraw(Side::Receive, a), (Status::Closed, None)));
        assert!(matches!(s.offer(5), Offer::Sent(Some(_))));
        assert!(matches!(s.withdraw(Side::Receive, c), (Status::Done, Some(5))));
        assert!(s.waiters.is_empty());
        assert_eq!(s.receivers.head, NIL);
        assert_eq!(s.receivers.tail, NIL);
    }

    #[test]
    fn take_moves_one_sender_in_only_while_under_capacity() {
        let mut s = State::<u32>::new(1);
        s.new_handle(Side::Send, true);
        s.new_handle(Side::Receive, true);
        assert!(matches!(s.offer(1), Offer::Sent(None)));
        let Offer::Full(v) = s.offer(2) else { panic!("buffer of 1 should be full") };
        let k = s.park_sender(1, v, noop());
        // A dropped receive put a value back beyond capacity.
        assert!(matches!(s.put_back(0), PutBack::Done(None)));
        assert_eq!(s.statistics().current_buffer_used, 2);
        assert!(matches!(s.take(), Take::Value(0, None)));
        assert_eq!(s.statistics().tasks_waiting_send, 1, "no room yet: the sender still waits");
        assert!(matches!(s.take(), Take::Value(1, Some(_))));
        assert_eq!(s.statistics().tasks_waiting_send, 0);
        assert!(matches!(s.withdraw(Side::Send, k), (Status::Done, None)));
        assert!(matches!(s.take(), Take::Value(2, None)));
        assert!(matches!(s.take(), Take::Empty));
    }
}
