//! Cross-shard channels: memory channels whose handles cross threads (issue
//! 13, item 3).
//!
//! [`open_shard_channel`] is [`open_memory_channel`](crate::open_memory_channel)
//! for `Send` values: it returns a [`ShardSendChannel`] and a
//! [`ShardReceiveChannel`] that are `Send + Sync` and may be used from any
//! thread: from the shards of [`run_sharded`](crate::run_sharded), from
//! separate runs, and from plain threads (with
//! [`send_blocking`](ShardSendChannel::send_blocking) and
//! [`receive_blocking`](ShardReceiveChannel::receive_blocking)). The
//! capacity is the same: `0` (a rendezvous), `n` (bounded) or
//! [`UNBOUNDED`](crate::channel::UNBOUNDED).
//!
//! **The same semantics, the same code.** The channel's state machine is the
//! memory channel's own (`src/channel/state.rs`, shared by both
//! channel kinds, here behind a `Mutex` instead of a `RefCell`), so every rule holds as
//! there: FIFO hand-over to the oldest blocked receiver (rule Y5), a value
//! handed to a receive is that receive's even if it is cancelled afterwards,
//! and a receive future dropped holding one passes it on (rule Y6, a
//! cancelled receive loses nothing, rendezvous included); a cancelled send
//! sends nothing and gives its value back; closing and clone counting follow
//! rule Y7. The errors are the memory channel's: [`SendError`](crate::channel::SendError)
//! ([`Cancelled`](crate::channel::SendErrorKind::Cancelled), `Broken`, `Closed`),
//! [`ReceiveError`](crate::channel::ReceiveError) (`Cancelled`, `EndOfChannel`,
//! `Closed`), [`TrySendError`](crate::channel::TrySendError) and
//! [`TryReceiveError`](crate::channel::TryReceiveError) with `WouldBlock`.
//! `send` and `receive` are checkpoints with the usual rules: cancelled on
//! entry, nothing happens; completed at once, a schedule point that cannot
//! lose the result.
//!
//! **Waking.** A blocked operation stores its task's waker in its waiter
//! entry; the side that decides its outcome takes the waker out (once) and
//! wakes it after releasing the lock. A trioxide waker woken from another
//! thread pushes the task onto its run's remote queue, and costs a syscall
//! only if that run is parked in `epoll_wait` (see `kernel/remote.rs`). So a
//! sender wakes a receiver only when the receiver is actually blocked, and a
//! busy stream, where the receiver finds values waiting, costs no wake-up
//! per message: the wake-ups come in one per batch (see BENCHMARKS.md,
//! "Cross-shard channels").
//!
//! **Unbounded channels take their backlog in one go.** A receive on an
//! unbounded channel that finds values waiting moves all of them, in one
//! step, into a batch that the receive handles drain under a lock of their
//! own, so a fast producer and its consumer do not contend for one lock per
//! message. The batch is still the channel's: order, hand-over to blocked
//! receivers, the end of the channel, `close` and the buffer count of
//! `statistics` are as without it.
//!
//! ```
//! use std::sync::Mutex;
//! use trioxide::{run_sharded, open_shard_channel, BoxError};
//! use trioxide::channel::ReceiveError;
//!
//! let (tx, rx) = open_shard_channel::<u64>(16);
//! // The closure is shared by the shards: shard 0 takes the sender, shard 1
//! // the receiver, so that the channel ends when shard 0 drops its handle.
//! let (tx, rx) = (Mutex::new(Some(tx)), Mutex::new(Some(rx)));
//! let out = run_sharded(2, |shard| {
//!     let tx = if shard.index() == 0 { tx.lock().unwrap().take() } else { None };
//!     let rx = if shard.index() == 1 { rx.lock().unwrap().take() } else { None };
//!     async move {
//!         if let Some(tx) = tx {
//!             for i in 1..=100 {
//!                 tx.send(i).await?;
//!             }
//!             return Ok::<_, BoxError>(0); // drops (closes) tx
//!         }
//!         let rx = rx.expect("shard 1 has the receiver");
//!         let mut sum = 0;
//!         loop {
//!             match rx.receive().await {
//!                 Ok(v) => sum += v,
//!                 Err(ReceiveError::EndOfChannel) => return Ok(sum),
//!                 Err(e) => return Err(e.into()),
//!             }
//!         }
//!     }
//! });
//! assert_eq!(out.unwrap(), [0, 5050]);
//! ```

mod blocking;
#[cfg(all(test, loom))]
mod loom_models;
mod receive;
mod send;

use std::collections::VecDeque;
use std::task::Waker;

pub use receive::{ShardReceiveChannel, ShardReceiveFuture};
pub use send::{ShardSendChannel, ShardSendFuture};

use crate::channel::state::{HandleId, PutBack, Side, State, Take};
use crate::channel::{MemoryChannelStatistics, UNBOUNDED};
use crate::kernel::sync_shim::{spin_loop, Arc, AtomicBool, Mutex, MutexGuard, Ordering, TryLockError};

/// Opens a cross-shard channel with a buffer of `capacity` values: `0` for
/// a rendezvous, [`UNBOUNDED`](crate::channel::UNBOUNDED) for no limit.
/// Returns the send handle and the receive handle, both `Send + Sync` for a
/// `Send` value type; values flow from left to right.
///
/// ```
/// use trioxide::{run, open_shard_channel};
/// let (tx, rx) = open_shard_channel::<String>(4);
/// // A plain thread sends, a run receives.
/// let producer = std::thread::spawn(move || {
///     for word in ["a", "b", "c"] {
///         tx.send_blocking(word.to_string()).unwrap();
///     }
/// });
/// let got = run(async move {
///     let mut got = Vec::new();
///     while let Ok(w) = rx.receive().await {
///         got.push(w);
///     }
///     got
/// });
/// producer.join().unwrap();
/// assert_eq!(got, ["a", "b", "c"]);
/// ```
pub fn open_shard_channel<T: Send>(capacity: usize) -> (ShardSendChannel<T>, ShardReceiveChannel<T>) {
    let chan = Arc::new(Shared::new(capacity));
    let tx = ShardSendChannel::from_endpoint(Endpoint::new(chan.clone(), Side::Send, true));
    let rx = ShardReceiveChannel::from_endpoint(Endpoint::new(chan, Side::Receive, true));
    (tx, rx)
}

/// What every handle of one channel shares.
///
/// Lock order: `batch` before `state`. Senders take only `state` (and
/// `batch` only to close the last receive handle or to read statistics).
struct Shared<T> {
    /// The memory channel's state machine: buffer, handle counts, waiters.
    state: Mutex<State<T>>,
    /// Unbounded channels only (`None` for rendezvous and bounded ones,
    /// whose receives never touch it): values a receive moved out of
    /// `state`'s buffer in one go, in order, oldest first. They are still
    /// the channel's, not any receive's: every receive takes from here
    /// first, and looks at `state` only when this is empty.
    ///
    /// *Why.* With one lock per message, a producer that never blocks and
    /// a consumer on another core pull the lock's cache line to and fro
    /// twice per message, and when the producer runs ahead the buffer grows
    /// into fresh pages the kernel must zero (BENCHMARKS.md, "Cross-shard
    /// channels": 20 % and 18 % of the consumer's samples). A receive that
    /// finds values waiting swaps the whole buffer with this deque's empty
    /// allocation: the next values go into recycled memory, and the
    /// consumer takes the batch under a lock of its own that the producer
    /// never touches. Bounded channels cannot do this, since values moved
    /// out would no longer count against the capacity.
    ///
    /// *Invariants* (under both locks): a receive parks only when this is
    /// empty, so while it holds values no receiver is blocked, and FIFO
    /// hand-over to blocked receivers (rule Y5) is undisturbed; it is
    /// emptied, and its values dropped, when the last receive handle
    /// closes, as the buffer is.
    batch: Option<Box<Batch<T>>>,
}

/// The batch on its own cache lines (128 bytes: a line and its
/// adjacent-line prefetch pair on x86-64), apart from `state`'s lock, which
/// the producers write. Boxed, so that `Shared` itself keeps `state`'s
/// layout and alignment: bounded channels, which never use the batch, pay
/// one pointer for it.
#[repr(align(128))]
struct Batch<T> {
    values: Mutex<VecDeque<T>>,
}

impl<T> Shared<T> {
    fn new(capacity: usize) -> Shared<T> {
        let batch = (capacity == UNBOUNDED).then(|| Box::new(Batch { values: Mutex::new(VecDeque::new()) }));
        Shared { state: Mutex::new(State::new(capacity)), batch }
    }
}

/// What every handle is: a share of the channel, an id for its own blocked
/// operations, and its own closed flag. Dropping it closes it.
struct Endpoint<T> {
    chan: Arc<Shared<T>>,
    id: HandleId,
    side: Side,
    closed: AtomicBool,
}

/// A receive's non-blocking attempt ([`Endpoint::take`]).
enum Taken<'a, T> {
    /// A value; the sender to wake if one was moved along; whether the
    /// next receive would find nothing (the schedule point's "exhausted").
    Value(T, Option<Waker>, bool),
    /// Every send handle is closed and nothing is left.
    End,
    /// Nothing to take. The locks are still held, so that the receive
    /// can park before any value arrives.
    Empty(ReceiveLocks<'a, T>),
    /// This handle is closed.
    Closed,
}

/// The locks a receive holds while it decides, in the lock order.
struct ReceiveLocks<'a, T> {
    /// Held to keep `batch` empty until the receive has parked.
    _batch: Option<MutexGuard<'a, VecDeque<T>>>,
    state: MutexGuard<'a, State<T>>,
}

impl<T> Endpoint<T> {
    fn new(chan: Arc<Shared<T>>, side: Side, open: bool) -> Endpoint<T> {
        let id = lock(&chan.state).new_handle(side, open);
        Endpoint { chan, id, side, closed: AtomicBool::new(!open) }
    }

    /// The channel's state. The lock is held for a few pointer moves: no
    /// waker is woken and no value dropped under it (`state.rs` hands both
    /// back to the caller).
    #[inline]
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        lock(&self.chan.state)
    }

    /// The batch's lock, for unbounded channels; taken before [`lock`](Self::lock).
    #[inline]
    fn lock_batch(&self) -> Option<MutexGuard<'_, VecDeque<T>>> {
        self.chan.batch.as_ref().map(|b| lock(&b.values))
    }

    /// A receive's attempt that does not block: the batch first, then the
    /// state (moving what is left of the buffer into the batch). The
    /// closed flag is read under the locks, as [`ShardSendFuture`] explains.
    fn take(&self) -> Taken<'_, T> {
        let mut batch = self.lock_batch();
        if let Some(b) = batch.as_mut() {
            if self.is_closed() {
                return Taken::Closed;
            }
            if let Some(value) = b.pop_front() {
                // Under the batch's lock: nobody can refill it meanwhile.
                let exhausted = b.is_empty() && self.lock().is_drained();
                return Taken::Value(value, None, exhausted);
            }
        }
        let mut state = self.lock();
        if self.is_closed() {
            return Taken::Closed;
        }
        match state.take() {
            Take::Value(value, waker) => {
                let exhausted = match batch.as_mut() {
                    // Unbounded: no sender ever waits, so `waker` is `None`.
                    Some(b) => !state.swap_buffer(b),
                    None => state.is_drained(),
                };
                Taken::Value(value, waker, exhausted)
            }
            Take::End => Taken::End,
            Take::Empty => Taken::Empty(ReceiveLocks { _batch: batch, state }),
        }
    }

    /// Returns a value a receive took but will not deliver: to the front of
    /// the batch if it holds values (they came after this one), else as
    /// [`State::put_back`] does. `state` is the state's guard if the caller
    /// holds it (with the batch's, taken first: `batch`).
    fn put_back(
        &self,
        value: T,
        batch: Option<&mut MutexGuard<'_, VecDeque<T>>>,
        state: &mut MutexGuard<'_, State<T>>,
    ) -> PutBack<T> {
        if let Some(b) = batch {
            if !b.is_empty() {
                b.push_front(value);
                return PutBack::Done(None);
            }
        }
        state.put_back(value)
    }

    /// A new handle on the same channel: open if this one is open, closed
    /// (and not counted) if this one is closed.
    fn duplicate(&self) -> Endpoint<T> {
        Endpoint::new(self.chan.clone(), self.side, !self.is_closed())
    }

    #[inline]
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes this handle (idempotent). Outside the lock, drops the buffer
    /// (and the batch) if this was the last receive handle, then wakes: a
    /// sender on another thread that sees `Broken` finds the buffered values
    /// already dropped.
    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut batch = if self.side == Side::Receive { self.lock_batch() } else { None };
        let mut state = self.lock();
        let closing = state.close_handle(self.side, self.id);
        let batched = match batch.as_mut() {
            Some(b) if !state.has_receivers() => std::mem::take(&mut **b),
            _ => VecDeque::new(),
        };
        drop(state);
        drop(batch);
        drop(batched);
        drop(closing.dropped);
        for waker in closing.wakers {
            waker.wake();
        }
    }

    /// The state's statistics, with the batch's values counted as buffered
    /// (`peak_buffer_used` is the shared buffer's peak: a lower bound when
    /// a batch was taken out while more values arrived).
    fn statistics(&self) -> MemoryChannelStatistics {
        let batch = self.lock_batch();
        let mut s = self.lock().statistics();
        if let Some(b) = batch {
            s.current_buffer_used += b.len();
            s.peak_buffer_used = s.peak_buffer_used.max(s.current_buffer_used);
        }
        s
    }
}

impl<T> Drop for Endpoint<T> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Locks the state. A poisoned lock is taken anyway: nothing that can panic
/// runs under it except the cancellation check, which leaves the state
/// consistent.
#[inline]
fn lock<U>(chan: &Mutex<U>) -> MutexGuard<'_, U> {
    match chan.try_lock() {
        Ok(g) => g,
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
        Err(TryLockError::WouldBlock) => lock_contended(chan),
    }
}

/// The lock is held by another thread: for a few pointer moves, so spin
/// (with backoff) before letting `Mutex::lock` put the thread to sleep,
/// which costs a `futex` wait here and a `futex` wake in the holder.
#[cold]
fn lock_contended<U>(chan: &Mutex<U>) -> MutexGuard<'_, U> {
    for round in 0..LOCK_SPIN_ROUNDS {
        for _ in 0..1u32 << round.min(6) {
            spin_loop();
        }
        match chan.try_lock() {
            Ok(g) => return g,
            Err(TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(TryLockError::WouldBlock) => {}
        }
    }
    chan.lock().unwrap_or_else(|p| p.into_inner())
}

/// Rounds of spinning in [`lock_contended`]: 1, 2, 4, .. 64, 64, 64 pause
/// instructions, 255 in all (well under a microsecond to a few
/// microseconds, depending on the CPU's pause), about 10 times the hold.
/// Under loom one round: each `try_lock` is a point where the model may
/// switch threads, and nine rounds of them multiply the interleavings
/// without reaching a state one round does not (a failed `try_lock`
/// changes nothing).
const LOCK_SPIN_ROUNDS: u32 = if cfg!(loom) { 1 } else { 9 };

/// Wakes the task (or thread) a channel operation handed something to, if any.
#[inline]
fn wake(waker: Option<Waker>) {
    if let Some(w) = waker {
        w.wake();
    }
}
