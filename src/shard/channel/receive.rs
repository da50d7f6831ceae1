//! The receiving handle, [`ShardReceiveChannel`], its [`ShardReceiveFuture`]
//! and its `Stream` implementation: the memory channel's `RecvOp` state
//! machine, over the locked state.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::blocking::{assert_outside_run, thread_waker};
use super::{wake, Endpoint, MemoryChannelStatistics, Taken};
use crate::channel::state::{PutBack, Side, Status};
use crate::channel::{ReceiveError, TryReceiveError};
use crate::kernel::budget::{after_channel_op, AfterIo};
use crate::kernel::error::ClosedResource;
use crate::kernel::sync_shim::park;
use crate::kernel::Core;

/// What a task blocked in `receive` shows as its `waiting_on`.
const WAITING_ON: &str = "shard channel receive";

/// The operations, as a panic names them.
const RECEIVE_OP: &str = "trioxide::shard_channel::ShardReceiveChannel::receive";
const STREAM_OP: &str = "trioxide::shard_channel::ShardReceiveChannel::poll_next";
const RECEIVE_BLOCKING_OP: &str = "trioxide::shard_channel::ShardReceiveChannel::receive_blocking";

/// The receiving half of a cross-shard channel (see
/// [`open_shard_channel`](super::open_shard_channel)).
///
/// `Send + Sync` (for `T: Send`). Several tasks may receive at once, from
/// any threads: each value goes to exactly one of them, blocked receivers
/// are served in arrival order. Senders see the channel broken once every
/// clone is closed; dropping a handle closes it. It is also a [`Stream`]
/// of `Result<T, ReceiveError>` that ends at the end of the channel.
///
/// ```
/// use trioxide::{run, open_shard_channel};
/// let (tx, rx) = open_shard_channel::<u32>(8);
/// let consumer = std::thread::spawn(move || {
///     run(async move {
///         let mut sum = 0;
///         while let Ok(v) = rx.receive().await {
///             sum += v;
///         }
///         sum
///     })
/// });
/// for i in 1..=10 {
///     tx.send_blocking(i).unwrap();
/// }
/// drop(tx); // the end of the channel
/// assert_eq!(consumer.join().unwrap(), 55);
/// ```
pub struct ShardReceiveChannel<T> {
    ep: Endpoint<T>,
    /// The receive in progress through the `Stream` impl.
    stream: RecvOp<T>,
}

// `RecvOp` holds values by value, never pinned in place.
impl<T> Unpin for ShardReceiveChannel<T> {}

impl<T: Send> ShardReceiveChannel<T> {
    pub(super) fn from_endpoint(ep: Endpoint<T>) -> Self {
        ShardReceiveChannel { ep, stream: RecvOp::Idle }
    }

    /// Receives the next value, waiting for one if none is buffered.
    ///
    /// A checkpoint, as [`MemoryReceiveChannel::receive`](crate::channel::MemoryReceiveChannel::receive).
    /// Fails with `Cancelled` (nothing was taken), `EndOfChannel` (every
    /// send handle is closed and the buffer is empty) or `Closed` (this
    /// handle was closed). A value handed to this receive while it waited
    /// (by a sender on any thread) is returned even if the task was
    /// cancelled meanwhile; if the future is dropped holding one, the value
    /// goes to the next blocked receiver or back to the front of the buffer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{open_shard_channel, move_on_after, Builder, MockClock};
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// let (tx, rx) = open_shard_channel::<&str>(1);
    /// Builder::new().clock(clock).run(async {
    ///     let out = move_on_after(Duration::from_secs(10), rx.receive()).await;
    ///     assert_eq!(out, Ok(None)); // timed out: nothing sent yet
    ///     tx.send("later").await.unwrap();
    ///     assert_eq!(rx.receive().await, Ok("later"));
    /// });
    /// ```
    pub fn receive(&self) -> ShardReceiveFuture<'_, T> {
        ShardReceiveFuture { ep: &self.ep, op: RecvOp::Idle, done: false }
    }

    /// Receives the next value on a thread outside any run, blocking the
    /// thread until one comes. Fails with `EndOfChannel` or `Closed` (never
    /// `Cancelled`).
    ///
    /// # Panics
    /// If called on a thread that is running a trioxide run: use
    /// [`receive`](Self::receive) there.
    ///
    /// ```
    /// use trioxide::open_shard_channel;
    /// use trioxide::channel::ReceiveError;
    /// let (tx, rx) = open_shard_channel::<u8>(0);
    /// let t = std::thread::spawn(move || {
    ///     tx.send_blocking(3).unwrap();
    /// }); // the thread ends: tx is dropped, the channel ends
    /// assert_eq!(rx.receive_blocking(), Ok(3));
    /// assert_eq!(rx.receive_blocking(), Err(ReceiveError::EndOfChannel));
    /// t.join().unwrap();
    /// ```
    #[track_caller]
    pub fn receive_blocking(&self) -> Result<T, ReceiveError> {
        assert_outside_run(RECEIVE_BLOCKING_OP);
        let waker = thread_waker();
        let key = match self.ep.take() {
            Taken::Value(v, w, _) => {
                wake(w);
                return Ok(v);
            }
            Taken::End => return Err(ReceiveError::EndOfChannel),
            Taken::Closed => return Err(ReceiveError::Closed),
            Taken::Empty(mut locks) => locks.state.park_receiver(self.ep.id, waker.clone()),
        };
        loop {
            park();
            let polled = self.ep.lock().poll_waiter(Side::Receive, key, &waker, || false);
            if let Some((status, value)) = polled {
                return received(status, value);
            }
        }
    }

    /// Takes the next value if that needs no waiting. Not a checkpoint;
    /// usable from any thread.
    ///
    /// ```
    /// use trioxide::open_shard_channel;
    /// use trioxide::channel::TryReceiveError;
    /// let (tx, rx) = open_shard_channel::<u8>(2);
    /// assert_eq!(rx.try_receive(), Err(TryReceiveError::WouldBlock));
    /// tx.try_send(5).unwrap();
    /// assert_eq!(rx.try_receive(), Ok(5));
    /// rx.close();
    /// assert_eq!(rx.try_receive(), Err(TryReceiveError::Closed));
    /// ```
    pub fn try_receive(&self) -> Result<T, TryReceiveError> {
        match self.ep.take() {
            Taken::Value(v, waker, _) => {
                wake(waker);
                Ok(v)
            }
            Taken::Empty(_) => Err(TryReceiveError::WouldBlock),
            Taken::End => Err(TryReceiveError::EndOfChannel),
            Taken::Closed => Err(TryReceiveError::Closed),
        }
    }

    /// Closes this handle. Idempotent; not a checkpoint. Receives blocked on
    /// *this* handle fail with `Closed`; if it was the last open receive
    /// handle, the buffered values are dropped and senders fail with
    /// `Broken` (their values returned).
    ///
    /// ```
    /// use trioxide::open_shard_channel;
    /// use trioxide::channel::TrySendError;
    /// let (tx, rx) = open_shard_channel::<u8>(1);
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
    /// let (_tx, rx) = trioxide::open_shard_channel::<u8>(0);
    /// rx.close();
    /// assert!(rx.is_closed());
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
    /// let (_tx, rx) = trioxide::open_shard_channel::<u8>(0);
    /// assert_eq!(rx.statistics().open_receive_channels, 1);
    /// ```
    pub fn statistics(&self) -> MemoryChannelStatistics {
        self.ep.statistics()
    }

    /// A new open handle on the same channel, or `ClosedResource` if this
    /// handle is closed.
    ///
    /// ```
    /// use trioxide::ClosedResource;
    /// let (_tx, rx) = trioxide::open_shard_channel::<u8>(0);
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

/// The outcome of a receiver's decided waiter entry.
fn received<T>(status: Status, value: Option<T>) -> Result<T, ReceiveError> {
    match (status, value) {
        // Handed over: ours, even if cancelled since (rule Y6).
        (Status::Done, Some(v)) => Ok(v),
        (Status::Cancelled, _) => Err(ReceiveError::Cancelled),
        (Status::Closed, _) => Err(ReceiveError::Closed),
        (Status::End, _) => Err(ReceiveError::EndOfChannel),
        (status, value) => {
            unreachable!("a receiver's entry ended as {status:?} (holding a value: {})", value.is_some())
        }
    }
}

impl<T: Send> Clone for ShardReceiveChannel<T> {
    /// A new handle on the same channel: open (and counted) if this one is
    /// open, closed if this one is closed. The clone has no stream receive
    /// in progress.
    ///
    /// ```
    /// let (_tx, rx) = trioxide::open_shard_channel::<u8>(0);
    /// let rx2 = rx.clone();
    /// assert_eq!(rx.statistics().open_receive_channels, 2);
    /// drop(rx2);
    /// assert_eq!(rx.statistics().open_receive_channels, 1);
    /// ```
    fn clone(&self) -> Self {
        ShardReceiveChannel { ep: self.ep.duplicate(), stream: RecvOp::Idle }
    }
}

impl<T> Drop for ShardReceiveChannel<T> {
    fn drop(&mut self) {
        // First pass on anything the stream holds, then (as the endpoint is
        // dropped) close the handle.
        self.stream.abandon(&self.ep);
    }
}

impl<T> fmt::Debug for ShardReceiveChannel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardReceiveChannel")
            .field("closed", &self.ep.is_closed())
            .field("statistics", &self.ep.statistics())
            .finish()
    }
}

impl<T: Send> Stream for ShardReceiveChannel<T> {
    type Item = Result<T, ReceiveError>;

    /// The next value, as [`receive`](ShardReceiveChannel::receive) would
    /// give it; `None` at the end of the channel. A receive left in progress
    /// stays queued and keeps any value handed to it for the next
    /// `poll_next`; dropping or closing the handle passes it on.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use std::pin::Pin;
    /// use futures_core::Stream;
    /// use trioxide::{run, open_shard_channel};
    /// let (tx, mut rx) = open_shard_channel::<u8>(3);
    /// for i in 0..3 { tx.try_send(i).unwrap(); }
    /// drop(tx);
    /// let got = run(async move {
    ///     let mut got = Vec::new();
    ///     while let Some(v) = poll_fn(|cx| Pin::new(&mut rx).poll_next(cx)).await {
    ///         got.push(v.unwrap());
    ///     }
    ///     got
    /// });
    /// assert_eq!(got, [0, 1, 2]);
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

/// The future of [`ShardReceiveChannel::receive`]: the value, or the
/// [`ReceiveError`] that says why there is none. Once a sender has handed
/// it a value, the value is this receive's; dropping the future before it
/// returns the value puts the value back in the channel.
///
/// ```
/// use std::future::{poll_fn, Future};
/// use std::pin::Pin;
/// use std::task::Poll;
/// use trioxide::{open_shard_channel, run};
/// use trioxide::shard_channel::ShardReceiveFuture;
/// let (tx, rx) = open_shard_channel::<u32>(0);
/// run(async {
///     let mut fut: ShardReceiveFuture<'_, u32> = rx.receive();
///     let first = poll_fn(|cx| Poll::Ready(Pin::new(&mut fut).poll(cx))).await;
///     assert!(first.is_pending()); // queued as a blocked receiver
///     // Another thread hands it a value...
///     std::thread::scope(|s| { s.spawn(|| tx.try_send(7).unwrap()); });
///     drop(fut); // ...and it is dropped holding it: the value goes back
/// });
/// assert_eq!(rx.try_receive(), Ok(7));
/// ```
///
/// # Panics
/// When polled again after it completed, or polled outside a run.
#[must_use = "a receive does nothing unless awaited; once a value is handed to it, dropping it puts the value back"]
pub struct ShardReceiveFuture<'a, T> {
    ep: &'a Endpoint<T>,
    op: RecvOp<T>,
    done: bool,
}

// `RecvOp` holds values by value, never pinned in place.
impl<T> Unpin for ShardReceiveFuture<'_, T> {}

impl<T> fmt::Debug for ShardReceiveFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (&self.op, self.done) {
            (_, true) => "done",
            (RecvOp::Idle, false) => "start",
            (RecvOp::Parked(_), false) => "waiting",
            (RecvOp::Yielding(..), false) => "received, yielding",
        };
        f.debug_struct("ShardReceiveFuture").field("state", &state).finish()
    }
}

impl<T: Send> Future for ShardReceiveFuture<'_, T> {
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
    panic!("trioxide::shard_channel::ShardReceiveFuture polled after completion")
}

impl<T> Drop for ShardReceiveFuture<'_, T> {
    fn drop(&mut self) {
        self.op.abandon(self.ep);
    }
}

/// One receive in progress.
enum RecvOp<T> {
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
        // `take` reads the closed flag under the lock, so that a `close` on
        // another thread cannot miss a receive that queues on this handle
        // (see `ShardSendFuture`).
        match ep.take() {
            Taken::Value(value, waker, exhausted) => {
                wake(waker);
                // A schedule point, not a cancel point: the value is ours
                // now, and is put back if this is dropped while yielding.
                if let Some(after) = after_channel_op(core, exhausted, cx) {
                    *self = RecvOp::Yielding(after, value);
                    return Poll::Pending;
                }
                Poll::Ready(Ok(value))
            }
            Taken::End => Poll::Ready(Err(ReceiveError::EndOfChannel)),
            Taken::Closed => Poll::Ready(Err(ReceiveError::Closed)),
            Taken::Empty(mut locks) => {
                let key = locks.state.park_receiver(ep.id, cx.waker().clone());
                drop(locks);
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
        let polled = ep.lock().poll_waiter(Side::Receive, key, cx.waker(), || Core::current_for(op).is_cancelled());
        let Some((status, value)) = polled else {
            *self = RecvOp::Parked(key);
            Core::current_for(op).set_waiting_on(WAITING_ON);
            return Poll::Pending;
        };
        Poll::Ready(received(status, value))
    }

    /// Gives up the receive (its future or handle is being dropped): a
    /// queued receiver leaves the queue; a value already handed over goes
    /// to the next blocked receiver or back to the front of the buffer.
    fn abandon(&mut self, ep: &Endpoint<T>) {
        let op = std::mem::replace(self, RecvOp::Idle);
        if let RecvOp::Idle = op {
            return;
        }
        // Under both locks: no other receive can slip in between, so the
        // value keeps its place at the front.
        let mut batch = ep.lock_batch();
        let mut state = ep.lock();
        let value = match op {
            RecvOp::Idle => return,
            RecvOp::Yielding(_, value) => value,
            RecvOp::Parked(key) => match state.withdraw(Side::Receive, key) {
                (_, Some(v)) => v,
                (_, None) => return,
            },
        };
        let put = ep.put_back(value, batch.as_mut(), &mut state);
        drop(state);
        drop(batch);
        match put {
            PutBack::Done(waker) => wake(waker),
            // Every receive handle is closed: the value has nowhere to go.
            PutBack::Orphaned(v) => drop(v),
        }
    }
}
