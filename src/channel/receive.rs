//! The receiving handle, [`MemoryReceiveChannel`], its [`ReceiveFuture`],
//! and its `Stream` implementation.
//!
//! Both `receive` and the stream run the same state machine, [`RecvOp`]:
//! the future keeps one in itself; the stream keeps one inside the handle,
//! because `poll_next` has no future of its own to remember that it is
//! queued, or that it holds a value while it lets other tasks run.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::error::{ReceiveError, TryReceiveError};
use super::state::{PutBack, Side, Status, Take};
use super::{wake, Endpoint, MemoryChannelStatistics};
use crate::kernel::budget::{after_channel_op, AfterIo};
use crate::kernel::error::ClosedResource;
use crate::kernel::Core;

/// What a task blocked in `receive` shows as its `waiting_on`.
const WAITING_ON: &str = "memory channel receive";

/// The operations a receive runs for, as a panic outside a run names them.
const RECEIVE_OP: &str = "trioxide::channel::MemoryReceiveChannel::receive";
const STREAM_OP: &str = "trioxide::channel::MemoryReceiveChannel::poll_next";

/// The receiving half of a memory channel (see [`open_memory_channel`](super::open_memory_channel)).
///
/// Several tasks may receive at once: each value goes to exactly one of
/// them, blocked receivers are served in arrival order. Clone it to give
/// each consumer its own handle; senders see the channel broken once every
/// clone is closed. Dropping a handle closes it.
///
/// It is also a [`Stream`] of `Result<T, ReceiveError>` that ends at the end
/// of the channel and yields `Err` for `Cancelled` and `Closed`, so a
/// cancellation is never mistaken for the end of the stream.
///
/// ```
/// use trioxide::{run, open_nursery, open_memory_channel, BoxError};
/// run(open_nursery(|n| async move {
///     let (tx, rx) = open_memory_channel::<u32>(0);
///     let rx2 = rx.clone();
///     n.start_soon(async move {
///         let v = rx2.receive().await?;
///         assert_eq!(v, 1);
///         Ok::<_, BoxError>(())
///     })?;
///     drop(rx);
///     tx.send(1).await?;
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
pub struct MemoryReceiveChannel<T> {
    ep: Endpoint<T>,
    /// The receive in progress through the `Stream` impl.
    stream: RecvOp<T>,
}

// `RecvOp` holds values by value, never pinned in place.
impl<T> Unpin for MemoryReceiveChannel<T> {}

impl<T> MemoryReceiveChannel<T> {
    pub(super) fn from_endpoint(ep: Endpoint<T>) -> Self {
        MemoryReceiveChannel { ep, stream: RecvOp::Idle }
    }

    /// Receives the next value, waiting for one if none is buffered.
    ///
    /// A checkpoint. Fails with `Cancelled` (nothing was taken),
    /// `EndOfChannel` (every send handle is closed and the buffer is
    /// empty) or `Closed` (this handle was closed, before or during the
    /// receive). A value handed to this receive while it waited is returned
    /// even if the task was cancelled meanwhile (rule Y6); if the future is
    /// dropped holding such a value, the value goes to the next blocked
    /// receiver or back to the front of the buffer. Nothing is ever lost.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{open_memory_channel, move_on_after, Builder, MockClock};
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// Builder::new().clock(clock).run(async {
    ///     let (tx, rx) = open_memory_channel::<&str>(1);
    ///     // Times out: nothing sent yet (Trio's test_553).
    ///     let out = move_on_after(Duration::from_secs(10), rx.receive()).await;
    ///     assert_eq!(out, Ok(None));
    ///     tx.send("later").await.unwrap();
    ///     assert_eq!(rx.receive().await, Ok("later"));
    /// });
    /// ```
    pub fn receive(&self) -> ReceiveFuture<'_, T> {
        ReceiveFuture { ep: &self.ep, op: RecvOp::Idle, done: false }
    }

    /// Takes the next value if that needs no waiting. Not a checkpoint.
    /// Trio's `receive_nowait`.
    ///
    /// ```
    /// use trioxide::open_memory_channel;
    /// use trioxide::channel::TryReceiveError;
    /// let (tx, rx) = open_memory_channel::<u8>(2);
    /// assert_eq!(rx.try_receive(), Err(TryReceiveError::WouldBlock));
    /// tx.try_send(5).unwrap();
    /// assert_eq!(rx.try_receive(), Ok(5));
    /// rx.close();
    /// assert_eq!(rx.try_receive(), Err(TryReceiveError::Closed));
    /// ```
    pub fn try_receive(&self) -> Result<T, TryReceiveError> {
        if self.ep.is_closed() {
            return Err(TryReceiveError::Closed);
        }
        let take = self.ep.chan.borrow_mut().take();
        match take {
            Take::Value(v, waker) => {
                wake(waker);
                Ok(v)
            }
            Take::Empty => Err(TryReceiveError::WouldBlock),
            Take::End => Err(TryReceiveError::EndOfChannel),
        }
    }

    /// Closes this handle. Idempotent; not a checkpoint. Receives blocked on
    /// *this* handle fail with `Closed`; if it was the last open receive
    /// handle, the buffered values are dropped and blocked senders fail with
    /// `Broken` (their values returned), as does every later send.
    ///
    /// ```
    /// use trioxide::open_memory_channel;
    /// use trioxide::channel::TrySendError;
    /// let (tx, rx) = open_memory_channel::<u8>(1);
    /// tx.try_send(1).unwrap();
    /// rx.close();
    /// assert_eq!(tx.statistics().current_buffer_used, 0);
    /// assert!(matches!(tx.try_send(2), Err(TrySendError::Broken(2))));
    /// ```
    pub fn close(&self) {
        self.ep.close();
    }

    /// True once this handle is closed.
    ///
    /// ```
    /// let (_tx, rx) = trioxide::open_memory_channel::<u8>(0);
    /// rx.close();
    /// assert!(rx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.ep.is_closed()
    }

    /// The channel's statistics (the same from every handle).
    ///
    /// ```
    /// let (_tx, rx) = trioxide::open_memory_channel::<u8>(0);
    /// assert_eq!(rx.statistics().open_receive_channels, 1);
    /// ```
    pub fn statistics(&self) -> MemoryChannelStatistics {
        self.ep.statistics()
    }

    /// A new open handle on the same channel, or `ClosedResource` if this
    /// handle is closed (Trio's `clone`).
    ///
    /// ```
    /// use trioxide::ClosedResource;
    /// let (_tx, rx) = trioxide::open_memory_channel::<u8>(0);
    /// let rx2 = rx.try_clone().unwrap();
    /// rx.close();
    /// assert_eq!(rx.try_clone().err(), Some(ClosedResource));
    /// assert_eq!(rx2.statistics().open_receive_channels, 1);
    /// ```
    pub fn try_clone(&self) -> Result<Self, ClosedResource> {
        if self.ep.is_closed() {
            return Err(ClosedResource);
        }
        Ok(self.clone())
    }
}

impl<T> Clone for MemoryReceiveChannel<T> {
    /// A new handle on the same channel: open (and counted in
    /// `open_receive_channels`) if this one is open, closed if this one is
    /// closed. The clone has no stream receive in progress.
    ///
    /// ```
    /// let (_tx, rx) = trioxide::open_memory_channel::<u8>(0);
    /// let rx2 = rx.clone();
    /// assert_eq!(rx.statistics().open_receive_channels, 2);
    /// drop(rx2);
    /// assert_eq!(rx.statistics().open_receive_channels, 1);
    /// ```
    fn clone(&self) -> Self {
        MemoryReceiveChannel { ep: self.ep.duplicate(), stream: RecvOp::Idle }
    }
}

impl<T> Drop for MemoryReceiveChannel<T> {
    fn drop(&mut self) {
        // First pass on anything the stream holds, then (as the endpoint is
        // dropped) close the handle.
        self.stream.abandon(&self.ep);
    }
}

impl<T> fmt::Debug for MemoryReceiveChannel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReceiveChannel")
            .field("closed", &self.ep.is_closed())
            .field("statistics", &self.ep.statistics())
            .finish()
    }
}

impl<T> Stream for MemoryReceiveChannel<T> {
    type Item = Result<T, ReceiveError>;

    /// The next value, as [`receive`](MemoryReceiveChannel::receive) would
    /// give it, with the same checkpoint and hand-over rules; `None` at the
    /// end of the channel. A receive left in progress (a consumer that
    /// stopped polling) stays queued and keeps any value handed to it for
    /// the next `poll_next`; dropping or closing the handle passes it on.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use std::pin::Pin;
    /// use futures_core::Stream;
    /// use trioxide::{run, open_memory_channel};
    /// run(async {
    ///     let (tx, mut rx) = open_memory_channel::<u8>(3);
    ///     for i in 0..3 { tx.try_send(i).unwrap(); }
    ///     drop(tx);
    ///     let mut got = Vec::new();
    ///     while let Some(v) = poll_fn(|cx| Pin::new(&mut rx).poll_next(cx)).await {
    ///         got.push(v.unwrap());
    ///     }
    ///     assert_eq!(got, [0, 1, 2]);
    /// });
    /// ```
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.stream.poll(&this.ep, cx, STREAM_OP) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(v)) => Poll::Ready(Some(Ok(v))),
            Poll::Ready(Err(ReceiveError::EndOfChannel)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
        }
    }
}

/// The future of [`MemoryReceiveChannel::receive`]: the value, or the
/// [`ReceiveError`] that says why there is none.
///
/// Once a sender has handed it a value, the value is this receive's: a
/// cancel that comes later does not take it away, and dropping the future
/// before it returns the value puts the value back in the channel, where
/// the next receive finds it.
///
/// ```
/// use std::future::{poll_fn, Future};
/// use std::pin::Pin;
/// use std::task::Poll;
/// use trioxide::{open_memory_channel, run};
/// use trioxide::channel::ReceiveFuture;
/// run(async {
///     let (tx, rx) = open_memory_channel::<u32>(0);
///     let mut fut: ReceiveFuture<'_, u32> = rx.receive();
///     // Polled once: nothing to take, so it queues as a blocked receiver.
///     let first = poll_fn(|cx| Poll::Ready(Pin::new(&mut fut).poll(cx))).await;
///     assert!(first.is_pending());
///     assert_eq!(rx.statistics().tasks_waiting_receive, 1);
///     tx.try_send(7).unwrap(); // no room, but handed straight to the waiting receive
///     drop(fut); // dropped holding 7: the value goes back, it is not lost
///     assert_eq!(rx.try_receive(), Ok(7));
/// });
/// ```
///
/// # Panics
/// When polled again after it completed ("trioxide::channel::ReceiveFuture
/// polled after completion"), or polled outside [`run`](crate::run).
#[must_use = "a receive does nothing unless awaited; once a value is handed to it, dropping it puts the value back"]
pub struct ReceiveFuture<'a, T> {
    ep: &'a Endpoint<T>,
    op: RecvOp<T>,
    done: bool,
}

// `RecvOp` holds values by value, never pinned in place.
impl<T> Unpin for ReceiveFuture<'_, T> {}

impl<T> fmt::Debug for ReceiveFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (&self.op, self.done) {
            (_, true) => "done",
            (RecvOp::Idle, false) => "start",
            (RecvOp::Parked(_), false) => "waiting",
            (RecvOp::Yielding(..), false) => "received, yielding",
        };
        f.debug_struct("ReceiveFuture").field("state", &state).finish()
    }
}

impl<T> Future for ReceiveFuture<'_, T> {
    type Output = Result<T, ReceiveError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.done {
            receive_polled_after_completion();
        }
        let out = this.op.poll(this.ep, cx, RECEIVE_OP);
        this.done = out.is_ready();
        out
    }
}

#[cold]
#[inline(never)]
fn receive_polled_after_completion() -> ! {
    panic!("trioxide::channel::ReceiveFuture polled after completion")
}

impl<T> Drop for ReceiveFuture<'_, T> {
    fn drop(&mut self) {
        self.op.abandon(self.ep);
    }
}

/// One receive in progress.
pub(super) enum RecvOp<T> {
    /// Not started (or finished: ready to start the next one).
    Idle,
    /// Queued as a blocked receiver under this key.
    Parked(usize),
    /// Took a value without blocking; letting other tasks run before
    /// returning it.
    Yielding(AfterIo, T),
}

impl<T> RecvOp<T> {
    /// Polls the receive; `op` names it in the panic outside a run.
    fn poll(&mut self, ep: &Endpoint<T>, cx: &mut Context<'_>, op: &'static str) -> Poll<Result<T, ReceiveError>> {
        match std::mem::replace(self, RecvOp::Idle) {
            RecvOp::Idle => self.start(ep, cx, op),
            RecvOp::Parked(key) => self.poll_parked(key, ep, cx, op),
            RecvOp::Yielding(mut after, value) => {
                if Pin::new(&mut after).poll(cx).is_pending() {
                    *self = RecvOp::Yielding(after, value);
                    return Poll::Pending;
                }
                Poll::Ready(Ok(value))
            }
        }
    }

    fn start(&mut self, ep: &Endpoint<T>, cx: &mut Context<'_>, op: &'static str) -> Poll<Result<T, ReceiveError>> {
        let core = Core::current_for(op);
        if core.is_cancelled() {
            return Poll::Ready(Err(ReceiveError::Cancelled));
        }
        if ep.is_closed() {
            return Poll::Ready(Err(ReceiveError::Closed));
        }
        let mut chan = ep.chan.borrow_mut();
        match chan.take() {
            Take::Value(value, waker) => {
                let exhausted = chan.is_drained();
                drop(chan);
                wake(waker);
                // A schedule point, not a cancel point: the value is ours
                // now, and is put back if this is dropped while yielding.
                if let Some(after) = after_channel_op(core, exhausted, cx) {
                    *self = RecvOp::Yielding(after, value);
                    return Poll::Pending;
                }
                Poll::Ready(Ok(value))
            }
            Take::End => Poll::Ready(Err(ReceiveError::EndOfChannel)),
            Take::Empty => {
                let key = chan.park_receiver(ep.id, cx.waker().clone());
                *self = RecvOp::Parked(key);
                core.set_waiting_on(WAITING_ON);
                Poll::Pending
            }
        }
    }

    fn poll_parked(
        &mut self,
        key: usize,
        ep: &Endpoint<T>,
        cx: &mut Context<'_>,
        op: &'static str,
    ) -> Poll<Result<T, ReceiveError>> {
        let polled =
            ep.chan.borrow_mut().poll_waiter(Side::Receive, key, cx.waker(), || Core::current_for(op).is_cancelled());
        let Some((status, value)) = polled else {
            *self = RecvOp::Parked(key);
            Core::current_for(op).set_waiting_on(WAITING_ON);
            return Poll::Pending;
        };
        Poll::Ready(match (status, value) {
            // Handed over: ours, even if cancelled since (rule Y6).
            (Status::Done, Some(v)) => Ok(v),
            (Status::Cancelled, _) => Err(ReceiveError::Cancelled),
            (Status::Closed, _) => Err(ReceiveError::Closed),
            (Status::End, _) => Err(ReceiveError::EndOfChannel),
            (status, value) => {
                unreachable!("a receiver's entry ended as {status:?} (holding a value: {})", value.is_some())
            }
        })
    }

    /// Gives up the receive (its future or handle is being dropped): a
    /// queued receiver leaves the queue; a value already handed over goes
    /// to the next blocked receiver or back to the front of the buffer.
    fn abandon(&mut self, ep: &Endpoint<T>) {
        let value = match std::mem::replace(self, RecvOp::Idle) {
            RecvOp::Idle => return,
            RecvOp::Yielding(_, value) => value,
            RecvOp::Parked(key) => {
                let (_status, value) = ep.chan.borrow_mut().withdraw(Side::Receive, key);
                match value {
                    Some(v) => v,
                    None => return,
                }
            }
        };
        let put = ep.chan.borrow_mut().put_back(value);
        match put {
            PutBack::Done(waker) => wake(waker),
            // Every receive handle is closed: the value has nowhere to go.
            PutBack::Orphaned(v) => drop(v),
        }
    }
}
