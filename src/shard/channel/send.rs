//! The sending handle, [`ShardSendChannel`], and its [`ShardSendFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::blocking::{assert_outside_run, thread_waker};
use super::{wake, Endpoint, MemoryChannelStatistics};
use crate::channel::state::{Offer, Side, Status};
use crate::channel::{SendError, SendErrorKind, TrySendError};
use crate::kernel::budget::{after_channel_op, AfterIo};
use crate::kernel::error::ClosedResource;
use crate::kernel::sync_shim::park;
use crate::kernel::Core;

/// What a task blocked in `send` shows as its `waiting_on`.
const WAITING_ON: &str = "shard channel send";

/// The operations, as a panic names them.
const SEND_OP: &str = "trioxide::shard_channel::ShardSendChannel::send";
const SEND_BLOCKING_OP: &str = "trioxide::shard_channel::ShardSendChannel::send_blocking";

/// The sending half of a cross-shard channel (see
/// [`open_shard_channel`](super::open_shard_channel)).
///
/// `Send + Sync` (for `T: Send`): hand it, or a clone, to another shard or
/// thread. Several tasks may send at once, from any threads; blocked senders
/// are served in arrival order. Receivers see the end of the channel once
/// every clone is closed; dropping a handle closes it.
///
/// ```
/// use trioxide::{run, open_shard_channel};
/// let (tx, rx) = open_shard_channel::<u32>(0);
/// let t = std::thread::spawn(move || rx.receive_blocking());
/// run(async move { tx.send(7).await.unwrap() }); // a rendezvous: waits for the thread
/// assert_eq!(t.join().unwrap(), Ok(7));
/// ```
pub struct ShardSendChannel<T> {
    ep: Endpoint<T>,
}

impl<T: Send> ShardSendChannel<T> {
    pub(super) fn from_endpoint(ep: Endpoint<T>) -> Self {
        ShardSendChannel { ep }
    }

    /// Sends `value`, waiting for room if the buffer is full.
    ///
    /// A checkpoint, as [`MemorySendChannel::send`](crate::channel::MemorySendChannel::send):
    /// to the oldest blocked receiver if one waits (and then that receiver's
    /// task is woken, on whatever thread it runs), else into the buffer if
    /// there is room, else the task waits, holding the value, until a
    /// receiver takes it. Once taken, the send succeeds even if the task is
    /// cancelled before it runs again. On failure the value comes back in
    /// the [`SendError`]: `Cancelled` (nothing was sent), `Broken` (every
    /// receive handle is closed), `Closed` (this handle was closed).
    /// Dropping the future while it waits withdraws the send.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{open_shard_channel, move_on_after, Builder, MockClock};
    /// use trioxide::channel::SendErrorKind;
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// let (tx, rx) = open_shard_channel::<Vec<u8>>(0);
    /// Builder::new().clock(clock).run(async {
    ///     // Nobody receives: the timeout cancels the send, the value comes back.
    ///     let out = move_on_after(Duration::from_secs(1), async {
    ///         match tx.send(vec![1, 2, 3]).await {
    ///             Err(e) if e.kind() == SendErrorKind::Cancelled => Ok(e.into_inner()),
    ///             other => panic!("unexpected {other:?}"),
    ///         }
    ///     }).await;
    ///     assert_eq!(out, Ok::<_, trioxide::Cancelled>(Some(vec![1, 2, 3])));
    /// });
    /// assert_eq!(rx.statistics().tasks_waiting_send, 0);
    /// ```
    pub fn send(&self, value: T) -> ShardSendFuture<'_, T> {
        ShardSendFuture { ep: &self.ep, state: SendState::Start(value) }
    }

    /// Sends `value` from a thread outside any run, blocking the thread
    /// until the value is in the channel. Fails with `Broken` or `Closed`
    /// (never `Cancelled`), giving the value back.
    ///
    /// # Panics
    /// If called on a thread that is running a trioxide run (it would block
    /// every task of the run): use [`send`](Self::send) there.
    ///
    /// ```
    /// use trioxide::open_shard_channel;
    /// let (tx, rx) = open_shard_channel::<u8>(1);
    /// tx.send_blocking(1).unwrap(); // room in the buffer: no waiting
    /// let t = std::thread::spawn(move || tx.send_blocking(2)); // waits for room
    /// assert_eq!(rx.receive_blocking(), Ok(1));
    /// t.join().unwrap().unwrap();
    /// assert_eq!(rx.receive_blocking(), Ok(2));
    /// ```
    #[track_caller]
    pub fn send_blocking(&self, value: T) -> Result<(), SendError<T>> {
        assert_outside_run(SEND_BLOCKING_OP);
        let waker = thread_waker();
        let mut chan = self.ep.lock();
        if self.ep.is_closed() {
            return Err(SendError::new(SendErrorKind::Closed, value));
        }
        let key = match chan.offer(value) {
            Offer::Sent(w) => {
                drop(chan);
                wake(w);
                return Ok(());
            }
            Offer::Broken(v) => return Err(SendError::new(SendErrorKind::Broken, v)),
            Offer::Full(v) => chan.park_sender(self.ep.id, v, waker.clone()),
        };
        drop(chan);
        loop {
            park();
            let polled = self.ep.lock().poll_waiter(Side::Send, key, &waker, || false);
            if let Some((status, value)) = polled {
                return sent(status, value);
            }
        }
    }

    /// Sends `value` if that needs no waiting: to a blocked receiver or into
    /// the buffer. Not a checkpoint; usable from any thread.
    ///
    /// ```
    /// use trioxide::open_shard_channel;
    /// use trioxide::channel::TrySendError;
    /// let (tx, rx) = open_shard_channel::<u8>(1);
    /// assert!(tx.try_send(1).is_ok());
    /// assert!(matches!(tx.try_send(2), Err(TrySendError::WouldBlock(2))));
    /// drop(rx);
    /// assert!(matches!(tx.try_send(3), Err(TrySendError::Broken(3))));
    /// tx.close();
    /// assert!(matches!(tx.try_send(4), Err(TrySendError::Closed(4))));
    /// ```
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let mut chan = self.ep.lock();
        if self.ep.is_closed() {
            return Err(TrySendError::Closed(value));
        }
        let offer = chan.offer(value);
        drop(chan);
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
    /// *this* handle fail with `Closed`; if it was the last open send
    /// handle, blocked receivers get `EndOfChannel` (later receives get it
    /// once the buffer is drained).
    ///
    /// ```
    /// use trioxide::open_shard_channel;
    /// use trioxide::channel::TryReceiveError;
    /// let (tx, rx) = open_shard_channel::<u8>(1);
    /// tx.try_send(9).unwrap();
    /// tx.close();
    /// tx.close();
    /// assert_eq!(rx.try_receive(), Ok(9));
    /// assert_eq!(rx.try_receive(), Err(TryReceiveError::EndOfChannel));
    /// ```
    pub fn close(&self) {
        self.ep.close();
    }

    /// True once this handle is closed.
    ///
    /// ```
    /// let (tx, _rx) = trioxide::open_shard_channel::<u8>(0);
    /// assert!(!tx.is_closed());
    /// tx.close();
    /// assert!(tx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.ep.is_closed()
    }

    /// The channel's statistics (the same from every handle).
    /// `current_buffer_used` counts every value sent and not yet received.
    /// On an unbounded channel `peak_buffer_used` is a lower bound: values
    /// a receive has already moved out of the shared buffer in one batch
    /// (see the [module docs](crate::shard_channel)) are not in the peak.
    ///
    /// ```
    /// let (tx, _rx) = trioxide::open_shard_channel::<u8>(3);
    /// tx.try_send(0).unwrap();
    /// let s = tx.statistics();
    /// assert_eq!((s.current_buffer_used, s.max_buffer_size, s.open_send_channels), (1, 3, 1));
    /// ```
    pub fn statistics(&self) -> MemoryChannelStatistics {
        self.ep.statistics()
    }

    /// A new open handle on the same channel, or `ClosedResource` if this
    /// handle is closed (Trio's `clone`).
    ///
    /// ```
    /// use trioxide::ClosedResource;
    /// let (tx, _rx) = trioxide::open_shard_channel::<u8>(0);
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

/// The outcome of a sender's decided waiter entry.
fn sent<T>(status: Status, value: Option<T>) -> Result<(), SendError<T>> {
    let kind = match status {
        // A receiver took the value: sent, whatever happened since.
        Status::Done => return Ok(()),
        Status::Cancelled => SendErrorKind::Cancelled,
        Status::Closed => SendErrorKind::Closed,
        Status::Broken => SendErrorKind::Broken,
        Status::Waiting | Status::End => unreachable!("a sender's entry never ends as {status:?}"),
    };
    match value {
        Some(v) => Err(SendError::new(kind, v)),
        None => unreachable!("a sender's entry lost its value without a receiver taking it"),
    }
}

impl<T: Send> Clone for ShardSendChannel<T> {
    /// A new handle on the same channel: open (and counted) if this one is
    /// open, closed if this one is closed.
    ///
    /// ```
    /// let (tx, _rx) = trioxide::open_shard_channel::<u8>(0);
    /// let tx2 = tx.clone();
    /// assert_eq!(tx2.statistics().open_send_channels, 2);
    /// tx.close();
    /// assert!(tx.clone().is_closed());
    /// assert_eq!(tx2.statistics().open_send_channels, 1);
    /// ```
    fn clone(&self) -> Self {
        ShardSendChannel { ep: self.ep.duplicate() }
    }
}

impl<T> fmt::Debug for ShardSendChannel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardSendChannel")
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

/// The future of [`ShardSendChannel::send`]: `Ok(())` once the value is in
/// the channel (buffered or handed to a receiver), or the [`SendError`] that
/// gives the value back. Dropping it while it waits withdraws the send.
///
/// ```
/// use std::future::{poll_fn, Future};
/// use std::pin::Pin;
/// use std::task::Poll;
/// use trioxide::{open_shard_channel, run};
/// use trioxide::channel::TryReceiveError;
/// use trioxide::shard_channel::ShardSendFuture;
/// let (tx, rx) = open_shard_channel::<String>(0);
/// run(async {
///     let mut fut: ShardSendFuture<'_, String> = tx.send("hi".to_string());
///     let first = poll_fn(|cx| Poll::Ready(Pin::new(&mut fut).poll(cx))).await;
///     assert!(first.is_pending()); // queued: no receiver
///     drop(fut); // withdrawn: "hi" never reaches the channel
/// });
/// assert_eq!(rx.try_receive(), Err(TryReceiveError::WouldBlock));
/// ```
///
/// # Panics
/// When polled again after it completed, or polled outside a run.
#[must_use = "a send does nothing unless awaited: the value is not in the channel until the future completes"]
pub struct ShardSendFuture<'a, T> {
    ep: &'a Endpoint<T>,
    state: SendState<T>,
}

// The value is moved in and out by value, never pinned in place.
impl<T> Unpin for ShardSendFuture<'_, T> {}

impl<T> fmt::Debug for ShardSendFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            SendState::Start(_) => "start",
            SendState::Parked(_) => "waiting",
            SendState::Yielding(_) => "sent, yielding",
            SendState::Done => "done",
        };
        f.debug_struct("ShardSendFuture").field("state", &state).finish()
    }
}

impl<T: Send> Future for ShardSendFuture<'_, T> {
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
    panic!("trioxide::shard_channel::ShardSendFuture polled after completion")
}

impl<T: Send> ShardSendFuture<'_, T> {
    fn start(&mut self, value: T, cx: &mut Context<'_>) -> Poll<Result<(), SendError<T>>> {
        let core = Core::current_for(SEND_OP);
        if core.is_cancelled() {
            return Poll::Ready(Err(SendError::new(SendErrorKind::Cancelled, value)));
        }
        let mut chan = self.ep.lock();
        // The closed flag is read under the lock: a `close` on another
        // thread sets it before it takes the lock to fail this handle's
        // blocked sends, so either this sees it, or that close runs after
        // this send has queued and fails it.
        if self.ep.is_closed() {
            return Poll::Ready(Err(SendError::new(SendErrorKind::Closed, value)));
        }
        match chan.offer(value) {
            Offer::Sent(waker) => {
                // Into the buffer, and that filled it: exhausted for senders.
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
                drop(chan);
                self.state = SendState::Parked(key);
                core.set_waiting_on(WAITING_ON);
                Poll::Pending
            }
        }
    }

    fn poll_parked(&mut self, key: usize, cx: &mut Context<'_>) -> Poll<Result<(), SendError<T>>> {
        let polled =
            self.ep.lock().poll_waiter(Side::Send, key, cx.waker(), || Core::current_for(SEND_OP).is_cancelled());
        let Some((status, value)) = polled else {
            self.state = SendState::Parked(key);
            Core::current_for(SEND_OP).set_waiting_on(WAITING_ON);
            return Poll::Pending;
        };
        Poll::Ready(sent(status, value))
    }
}

impl<T> Drop for ShardSendFuture<'_, T> {
    fn drop(&mut self) {
        if let SendState::Parked(key) = self.state {
            // Still waiting: withdraw, and drop the value after the lock is
            // released. Already taken: nothing to undo.
            let (_status, value) = self.ep.lock().withdraw(Side::Send, key);
            drop(value);
        }
    }
}
