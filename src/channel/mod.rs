//! Memory channels: pass values between tasks of one run, with
//! back-pressure, fairness and clean shutdown (Trio's
//! `open_memory_channel`).
//!
//! [`open_memory_channel`] returns a [`MemorySendChannel`] and a
//! [`MemoryReceiveChannel`] sharing one buffer of the given capacity:
//! `0` (a rendezvous: every send waits for a receiver), `n` (bounded), or
//! [`UNBOUNDED`]. Both handles can be cloned for several producers and
//! consumers; values go to receivers in the order they were sent, blocked
//! receivers are served oldest first, and so are blocked senders.
//!
//! * **Checkpoints.** `send` and `receive` report `Cancelled` on entry if the
//!   task is cancelled (and then nothing happened), and otherwise let other
//!   tasks run after completing without blocking (a schedule point that
//!   cannot lose the result). `try_send`, `try_receive` and `close` never
//!   block and are not checkpoints.
//! * **Hand-over (rules Y5, Y6).** A value sent while a receiver is blocked
//!   goes straight to the oldest blocked receiver, which owns it from then
//!   on: nobody else can take it, and a cancellation of that receiver after
//!   the hand-over does not lose it (its receive returns the value). A
//!   blocked sender keeps its value until a receiver takes it; cancelled
//!   before that, it gets the value back in its [`SendError`].
//! * **Shutdown (rule Y7).** Receivers see [`ReceiveError::EndOfChannel`]
//!   only once every send handle (every clone) is closed *and* the buffer is
//!   drained. Senders see [`SendErrorKind::Broken`] once every receive handle
//!   is closed (the buffered values are dropped then). Closing one handle
//!   wakes only the tasks blocked on that handle, with `Closed`. Dropping a
//!   handle closes it.
//!
//! ```
//! use trioxide::{run, open_nursery, open_memory_channel, BoxError};
//! use trioxide::channel::ReceiveError;
//!
//! let got = run(open_nursery(|n| async move {
//!     let (tx, rx) = open_memory_channel::<u32>(0);
//!     for i in 0..3 {
//!         let tx = tx.clone();
//!         n.start_soon(async move {
//!             tx.send(i).await?;
//!             Ok::<_, BoxError>(())
//!         })?;
//!     }
//!     drop(tx); // the producers hold the only open send handles now
//!     let mut got = Vec::new();
//!     loop {
//!         match rx.receive().await {
//!             Ok(v) => got.push(v),
//!             // Every sender closed and the buffer drained.
//!             Err(ReceiveError::EndOfChannel) => break,
//!             // Cancelled (or this end closed): not the end of the data.
//!             Err(e) => return Err(e.into()),
//!         }
//!     }
//!     got.sort();
//!     Ok::<_, BoxError>(got)
//! }));
//! assert_eq!(got.unwrap(), Some(vec![0, 1, 2]));
//! ```

mod error;
mod receive;
mod send;
pub(crate) mod state;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;

pub use error::{ReceiveError, SendError, SendErrorKind, TryReceiveError, TrySendError};
pub use receive::{MemoryReceiveChannel, ReceiveFuture};
pub use send::{MemorySendChannel, SendFuture};

use state::{HandleId, Side, State};

pub use crate::kernel::budget::CHANNEL_BUDGET;

/// The capacity of a channel whose sends never block (Trio's `math.inf`).
/// It is `usize::MAX`: a buffer that large cannot be allocated, so the
/// capacity check never fails before memory does.
///
/// ```
/// use trioxide::open_memory_channel;
/// use trioxide::channel::UNBOUNDED;
/// let (tx, _rx) = open_memory_channel::<u32>(UNBOUNDED);
/// for i in 0..10_000 {
///     tx.try_send(i).unwrap();
/// }
/// assert_eq!(tx.statistics().current_buffer_used, 10_000);
/// ```
pub const UNBOUNDED: usize = usize::MAX;

/// Opens a channel with a buffer of `capacity` values: `0` for a
/// rendezvous, [`UNBOUNDED`] for no limit. Returns the send handle and the
/// receive handle; values flow from left to right.
///
/// ```
/// use trioxide::{run, open_memory_channel};
/// run(async {
///     let (tx, rx) = open_memory_channel::<&str>(2);
///     tx.send("a").await.unwrap();
///     tx.send("b").await.unwrap();
///     assert_eq!(rx.receive().await, Ok("a"));
///     assert_eq!(rx.try_receive(), Ok("b"));
/// });
/// ```
pub fn open_memory_channel<T>(capacity: usize) -> (MemorySendChannel<T>, MemoryReceiveChannel<T>) {
    let chan = Rc::new(RefCell::new(State::new(capacity)));
    let tx = MemorySendChannel::from_endpoint(Endpoint::new(chan.clone(), Side::Send, true));
    let rx = MemoryReceiveChannel::from_endpoint(Endpoint::new(chan, Side::Receive, true));
    (tx, rx)
}

/// A snapshot of a channel's state, the same from every handle (Trio's
/// `MemoryChannelStatistics`, every field of it, plus the buffer's
/// high-water mark, `peak_buffer_used`).
///
/// ```
/// use trioxide::open_memory_channel;
/// let (tx, rx) = open_memory_channel::<u8>(4);
/// tx.try_send(1).unwrap();
/// tx.try_send(2).unwrap();
/// rx.try_receive().unwrap();
/// let tx2 = tx.clone();
/// let s = rx.statistics();
/// assert_eq!(s, tx2.statistics());
/// assert_eq!(s.current_buffer_used, 1);
/// assert_eq!(s.peak_buffer_used, 2); // two values were buffered at once
/// assert_eq!(s.max_buffer_size, 4);
/// assert_eq!(s.open_send_channels, 2);
/// assert_eq!(s.open_receive_channels, 1);
/// assert_eq!((s.tasks_waiting_send, s.tasks_waiting_receive), (0, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemoryChannelStatistics {
    /// Values in the buffer now.
    pub current_buffer_used: usize,
    /// The most values the buffer has held at once since the channel was
    /// opened (a high-water mark, for sizing a channel; trioxide's own,
    /// Trio has no such field). It never decreases. A value handed straight
    /// to a blocked receiver never enters the buffer, so a rendezvous
    /// channel stays at 0, except that a receive future dropped after its
    /// hand-over puts its value back into the buffer, even beyond
    /// `max_buffer_size`, and that counts.
    pub peak_buffer_used: usize,
    /// The capacity given to [`open_memory_channel`] ([`UNBOUNDED`] for no
    /// limit).
    pub max_buffer_size: usize,
    /// Open send handles (clones included).
    pub open_send_channels: usize,
    /// Open receive handles (clones included).
    pub open_receive_channels: usize,
    /// Tasks blocked in `send`, over all send handles.
    pub tasks_waiting_send: usize,
    /// Tasks blocked in `receive` (or in a receive handle's stream), over
    /// all receive handles.
    pub tasks_waiting_receive: usize,
}

/// What every handle is: a share of the channel, an id for its own blocked
/// operations, and its own closed flag. Dropping it closes it.
struct Endpoint<T> {
    chan: Rc<RefCell<State<T>>>,
    id: HandleId,
    side: Side,
    closed: Cell<bool>,
}

impl<T> Endpoint<T> {
    fn new(chan: Rc<RefCell<State<T>>>, side: Side, open: bool) -> Endpoint<T> {
        let id = chan.borrow_mut().new_handle(side, open);
        Endpoint { chan, id, side, closed: Cell::new(!open) }
    }

    /// A new handle on the same channel: open if this one is open, closed
    /// (and not counted) if this one is closed.
    fn duplicate(&self) -> Endpoint<T> {
        Endpoint::new(self.chan.clone(), self.side, !self.closed.get())
    }

    fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Closes this handle (idempotent). Wakes outside the borrow, then drops
    /// the buffer if this was the last receive handle.
    fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        let closing = self.chan.borrow_mut().close_handle(self.side, self.id);
        for waker in closing.wakers {
            waker.wake();
        }
        drop(closing.dropped);
    }

    fn statistics(&self) -> MemoryChannelStatistics {
        self.chan.borrow().statistics()
    }
}

impl<T> Drop for Endpoint<T> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Wakes the task a channel operation handed something to, if any.
#[inline]
fn wake(waker: Option<Waker>) {
    if let Some(w) = waker {
        w.wake();
    }
}
