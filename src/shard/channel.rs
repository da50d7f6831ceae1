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

use std::task::Waker;

pub use receive::{ShardReceiveChannel, ShardReceiveFuture};
pub use send::{ShardSendChannel, ShardSendFuture};

use crate::channel::state::{HandleId, Side, State};
use crate::channel::MemoryChannelStatistics;
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
    let chan = Arc::new(Mutex::new(State::new(capacity)));
    let tx = ShardSendChannel::from_endpoint(Endpoint::new(chan.clone(), Side::Send, true));
    let rx = ShardReceiveChannel::from_endpoint(Endpoint::new(chan, Side::Receive, true));
    (tx, rx)
}

/// What every handle is: a share of the channel, an id for its own blocked
/// operations, and its own closed flag. Dropping it closes it.
struct Endpoint<T> {
    chan: Arc<Mutex<State<T>>>,
    id: HandleId,
    side: Side,
    closed: AtomicBool,
}

impl<T> Endpoint<T> {
    fn new(chan: Arc<Mutex<State<T>>>, side: Side, open: bool) -> Endpoint<T> {
        let id = lock(&chan).new_handle(side, open);
        Endpoint { chan, id, side, closed: AtomicBool::new(!open) }
    }

    /// The channel's state. The lock is held for a few pointer moves: no
    /// waker is woken and no value dropped under it (`state.rs` hands both
    /// back to the caller).
    #[inline]
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        lock(&self.chan)
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
    /// if this was the last receive handle, then wakes: a sender on another
    /// thread that sees `Broken` finds the buffered values already dropped.
    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let closing = self.lock().close_handle(self.side, self.id);
        drop(closing.dropped);
        for waker in closing.wakers {
            waker.wake();
        }
    }

    fn statistics(&self) -> MemoryChannelStatistics {
        self.lock().statistics()
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
fn lock<T>(chan: &Mutex<State<T>>) -> MutexGuard<'_, State<T>> {
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
fn lock_contended<T>(chan: &Mutex<State<T>>) -> MutexGuard<'_, State<T>> {
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
