//! The sending handle, [`MemorySendChannel`], and its [`SendFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::error::{SendError, SendErrorKind, TrySendError};
use super::state::{Offer, Side, Status};
use super::{wake, Endpoint, MemoryChannelStatistics};
use crate::kernel::budget::{after_channel_op, AfterIo};
use crate::kernel::error::ClosedResource;
use crate::kernel::Core;

/// What a task blocked in `send` shows as its `waiting_on`.
const WAITING_ON: &str = "memory channel send";

/// The operation, as a panic outside a run names it.
const SEND_OP: &str = "trioxide::channel::MemorySendChannel::send";

/// The sending half of a memory channel (see [`open_memory_channel`](super::open_memory_channel)).
///
/// Several tasks may send at once; blocked senders are served in arrival
/// order. Clone it to give each producer its own handle: receivers see the
/// end of the channel once every clone is closed. Dropping a handle closes
/// it. Not `Send`: channels connect tasks of one run (share it with `Rc` or
/// by cloning).
///
/// ```
/// use trioxide::{run, open_nursery, open_memory_channel, BoxError};
/// run(open_nursery(|n| async move {
///     let (tx, rx) = open_memory_channel::<String>(1);
///     n.start_soon(async move {
///         tx.send("ping".to_string()).await?;
///         Ok::<_, BoxError>(())
///     })?; // the task drops (closes) tx when it ends
///     assert_eq!(rx.receive().await?, "ping");
///     assert!(rx.receive().await.is_err()); // EndOfChannel
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
pub struct MemorySendChannel<T> {
    ep: Endpoint<T>,
}

impl<T> MemorySendChannel<T> {
    pub(super) fn from_endpoint(ep: Endpoint<T>) -> Self {
        MemorySendChannel { ep }
    }

    /// Sends `value`, waiting for room if the buffer is full.
    ///
    /// A checkpoint. If a receiver is blocked, the value goes straight to
    /// the oldest one (rule Y5); else into the buffer if there is room;
    /// else the task waits, holding the value, until a receiver takes it.
    /// Once a receiver has taken it, the send succeeds even if the task is
    /// cancelled before it runs again. On failure the value comes back in
    /// the [`SendError`]: `Cancelled` (nothing was sent), `Broken` (every
    /// receive handle is closed), `Closed` (this handle was closed, before
    /// or during the send).
    ///
    /// Dropping the future while it waits withdraws the send (the value is
    /// dropped with the future); dropping it after a receiver took the
    /// value changes nothing: the value was sent.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{open_memory_channel, move_on_after, Builder, MockClock};
    /// use trioxide::channel::SendErrorKind;
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// Builder::new().clock(clock).run(async {
    ///     let (tx, rx) = open_memory_channel::<Vec<u8>>(0);
    ///     // Nobody receives: the send waits until the timeout cancels it,
    ///     // and the value comes back.
    ///     let out = move_on_after(Duration::from_secs(1), async {
    ///         match tx.send(vec![1, 2, 3]).await {
    ///             Err(e) if e.kind() == SendErrorKind::Cancelled => Ok(e.into_inner()),
    ///             other => panic!("unexpected {other:?}"),
    ///         }
    ///     }).await;
    ///     assert_eq!(out, Ok::<_, trioxide::Cancelled>(Some(vec![1, 2, 3])));
    ///     assert_eq!(rx.statistics().tasks_waiting_send, 0);
    /// });
    /// ```
    pub fn send(&self, value: T) -> SendFuture<'_, T> {
        SendFuture { ep: &self.ep, state: SendState::Start(value) }
    }

    /// Sends `value` if that needs no waiting: to a blocked receiver or
    /// into the buffer. Not a checkpoint. Trio's `send_nowait`.
    ///
    /// ```
    /// use trioxide::open_memory_channel;
    /// use trioxide::channel::TrySendError;
    /// let (tx, rx) = open_memory_channel::<u8>(1);
    /// assert!(tx.try_send(1).is_ok());
    /// assert!(matches!(tx.try_send(2), Err(TrySendError::WouldBlock(2))));
    /// drop(rx);
    /// assert!(matches!(tx.try_send(3), Err(TrySendError::Broken(3))));
    /// tx.close();
    /// assert!(matches!(tx.try_send(4), Err(TrySendError::Closed(4))));
    /// ```
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        if self.ep.is_closed() {
            return Err(TrySendError::Closed(value));
        }
        let offer = self.ep.chan.borrow_mut().offer(value);
        match offer {
            Offer::Sent(waker) => {
                wake(waker);
                Ok(())
            }
            Offer::Full(v) => Err(TrySendError::WouldBlock(v)),
            Offer::Broken(v) => Err(TrySendError::Broken(v)),
        }
    }

    /// Closes this handle. Idempotent; not a checkpoint. Sends blocked on
    /// *this* handle fail with `Closed` (their values returned); if it was
    /// the last open send handle, blocked receivers get `EndOfChannel` (and
    /// later receives get it once the buffer is drained).
    ///
    /// ```
    /// use trioxide::open_memory_channel;
    /// use trioxide::channel::TryReceiveError;
    /// let (tx, rx) = open_memory_channel::<u8>(1);
    /// tx.try_send(9).unwrap();
    /// tx.close();
    /// tx.close();
    /// assert!(tx.is_closed());
    /// assert_eq!(rx.try_receive(), Ok(9));
    /// assert_eq!(rx.try_receive(), Err(TryReceiveError::EndOfChannel));
    /// ```
    pub fn close(&self) {
        self.ep.close();
    }

    /// True once this handle is closed (by [`close`](Self::close), or born
    /// closed as a clone of a closed handle).
    ///
    /// ```
    /// let (tx, _rx) = trioxide::open_memory_channel::<u8>(0);
    /// assert!(!tx.is_closed());
    /// tx.close();
    /// assert!(tx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.ep.is_closed()
    }

    /// The channel's statistics (the same from every handle).
    ///
    /// ```
    /// let (tx, _rx) = trioxide::open_memory_channel::<u8>(3);
    /// tx.try_send(0).unwrap();
    /// assert_eq!(tx.statistics().current_buffer_used, 1);
    /// ```
    pub fn statistics(&self) -> MemoryChannelStatistics {
        self.ep.statistics()
    }

    /// A new open handle on the same channel, or `ClosedResource` if this
    /// handle is closed (Trio's `clone`, which raises in that case).
    ///
    /// ```
    /// use trioxide::ClosedResource;
    /// let (tx, _rx) = trioxide::open_memory_channel::<u8>(0);
    /// let tx2 = tx.try_clone().unwrap();
    /// assert_eq!(tx.statistics().open_send_channels, 2);
    /// tx.close();
    /// assert_eq!(tx.try_clone().err(), Some(ClosedResource));
    /// assert!(!tx2.is_closed());
    /// ```
    pub fn try_clone(&self) -> Result<Self, ClosedResource> {
        if self.ep.is_closed() {
            return Err(ClosedResource);
        }
        Ok(self.clone())
    }
}

impl<T> Clone for MemorySendChannel<T> {
    /// A new handle on the same channel. A clone of an open handle is open
    /// and counts in `open_send_channels` until it is closed or dropped; a
    /// clone of a closed handle is closed (it does not reopen the channel).
    /// Use [`try_clone`](MemorySendChannel::try_clone) to treat cloning a
    /// closed handle as an error, as Trio does.
    ///
    /// ```
    /// let (tx, _rx) = trioxide::open_memory_channel::<u8>(0);
    /// tx.close();
    /// let again = tx.clone();
    /// assert!(again.is_closed());
    /// assert_eq!(again.statistics().open_send_channels, 0);
    /// ```
    fn clone(&self) -> Self {
        MemorySendChannel { ep: self.ep.duplicate() }
    }
}

impl<T> fmt::Debug for MemorySendChannel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySendChannel")
            .field("closed", &self.ep.is_closed())
            .field("statistics", &self.ep.statistics())
            .finish()
    }
}

enum SendState<T> {
    /// Not polled yet.
    Start(T),
    /// Queued as a blocked sender (the value is in the channel's entry).
    Parked(usize),
    /// Sent without blocking; letting other tasks run before reporting it.
    Yielding(AfterIo),
    /// Reported.
    Done,
}

/// The future of [`MemorySendChannel::send`]: `Ok(())` once the value is
/// in the channel (buffered or handed to a receiver), or the
/// [`SendError`] that gives the value back.
///
/// Until a receiver takes the value, the future holds it: dropping the
/// future while it waits withdraws the send and drops the value with it.
///
/// ```
/// use std::future::{poll_fn, Future};
/// use std::pin::Pin;
/// use std::task::Poll;
/// use trioxide::{open_memory_channel, run};
/// use trioxide::channel::{SendErrorKind, SendFuture, TryReceiveError};
/// run(async {
///     let (tx, rx) = open_memory_channel::<String>(0);
///     let mut fut: SendFuture<'_, String> = tx.send("hi".to_string());
///     // Polled once: no room and no receiver waiting, so it queues.
///     let first = poll_fn(|cx| Poll::Ready(Pin::new(&mut fut).poll(cx))).await;
///     assert!(first.is_pending());
///     assert_eq!(tx.statistics().tasks_waiting_send, 1);
///     drop(fut); // withdrawn: "hi" never reaches the channel
///     assert_eq!(rx.try_receive(), Err(TryReceiveError::WouldBlock));
///     rx.close();
///     let err = tx.send("late".to_string()).await.unwrap_err();
///     assert_eq!(err.kind(), SendErrorKind::Broken);
///     assert_eq!(err.into_inner(), "late"); // a failed send returns the value
/// });
/// ```
///
/// # Panics
/// When polled again after it completed ("trioxide::channel::SendFuture
/// polled after completion"), or polled outside [`run`](crate::run).
#[must_use = "a send does nothing unless awaited: the value is not in the channel until the future completes"]
pub struct SendFuture<'a, T> {
    ep: &'a Endpoint<T>,
    state: SendState<T>,
}

// The value is moved in and out by value, never pinned in place.
impl<T> Unpin for SendFuture<'_, T> {}

impl<T> fmt::Debug for SendFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            SendState::Start(_) => "start",
            SendState::Parked(_) => "waiting",
            SendState::Yielding(_) => "sent, yielding",
            SendState::Done => "done",
        };
        f.debug_struct("SendFuture").field("state", &state).finish()
    }
}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match std::mem::replace(&mut this.state, SendState::Done) {
            SendState::Start(value) => this.start(value, cx),
            SendState::Parked(key) => this.poll_parked(key, cx),
            SendState::Yielding(mut after) => {
                if Pin::new(&mut after).poll(cx).is_pending() {
                    this.state = SendState::Yielding(after);
                    return Poll::Pending;
                }
                Poll::Ready(Ok(()))
            }
            SendState::Done => send_polled_after_completion(),
        }
    }
}

#[cold]
#[inline(never)]
fn send_polled_after_completion() -> ! {
    panic!("trioxide::channel::SendFuture polled after completion")
}

impl<T> SendFuture<'_, T> {
    fn start(&mut self, value: T, cx: &mut Context<'_>) -> Poll<Result<(), SendError<T>>> {
        let core = Core::current_for(SEND_OP);
        if core.is_cancelled() {
            return Poll::Ready(Err(SendError::new(SendErrorKind::Cancelled, value)));
        }
        if self.ep.is_closed() {
            return Poll::Ready(Err(SendError::new(SendErrorKind::Closed, value)));
        }
        let mut chan = self.ep.chan.borrow_mut();
        match chan.offer(value) {
            Offer::Sent(waker) => {
                // Into the buffer, and that filled it: the channel is
                // exhausted for senders (a hand-over never is).
                let exhausted = waker.is_none() && chan.is_full();
                drop(chan);
                wake(waker);
                // A schedule point, not a cancel point: the value is sent.
                if let Some(after) = after_channel_op(core, exhausted, cx) {
                    self.state = SendState::Yielding(after);
                    return Poll::Pending;
                }
                Poll::Ready(Ok(()))
            }
            Offer::Broken(v) => Poll::Ready(Err(SendError::new(SendErrorKind::Broken, v))),
            Offer::Full(v) => {
                let key = chan.park_sender(self.ep.id, v, cx.waker().clone());
                self.state = SendState::Parked(key);
                core.set_waiting_on(WAITING_ON);
                Poll::Pending
            }
        }
    }

    fn poll_parked(&mut self, key: usize, cx: &mut Context<'_>) -> Poll<Result<(), SendError<T>>> {
        let polled = self
            .ep
            .chan
            .borrow_mut()
            .poll_waiter(Side::Send, key, cx.waker(), || Core::current_for(SEND_OP).is_cancelled());
        let Some((status, value)) = polled else {
            self.state = SendState::Parked(key);
            Core::current_for(SEND_OP).set_waiting_on(WAITING_ON);
            return Poll::Pending;
        };
        let kind = match status {
            // A receiver took the value: sent, whatever happened since.
            Status::Done => return Poll::Ready(Ok(())),
            Status::Cancelled => SendErrorKind::Cancelled,
            Status::Closed => SendErrorKind::Closed,
            Status::Broken => SendErrorKind::Broken,
            Status::Waiting | Status::End => unreachable!("a sender's entry never ends as {status:?}"),
        };
        match value {
            Some(v) => Poll::Ready(Err(SendError::new(kind, v))),
            None => unreachable!("a sender's entry lost its value without a receiver taking it"),
        }
    }
}

impl<T> Drop for SendFuture<'_, T> {
    fn drop(&mut self) {
        if let SendState::Parked(key) = self.state {
            // Still waiting: withdraw, and drop the value (after the borrow
            // ends: its Drop may use the channel). Already taken: nothing
            // to undo.
            let (_status, value) = self.ep.chan.borrow_mut().withdraw(Side::Send, key);
            drop(value);
        }
    }
}
