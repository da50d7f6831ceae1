//! The one cooperative budget: when an operation that completed without
//! waiting (a socket read, a channel send, an uncontended lock) lets other
//! tasks run anyway.
//!
//! Every I/O, channel and sync operation ends in a *schedule point* (rule
//! I2): a chance for other runnable tasks to go first, so one busy
//! connection or producer cannot starve the rest. Yielding at every one,
//! as Trio does, costs a task switch per operation; yielding at none
//! starves. As tokio's `task/coop`, this module decides in one place:
//! * while another task is runnable, an I/O or sync operation yields at
//!   once, and a memory-channel operation yields at every
//!   [`CHANNEL_BUDGET`]-th one completed at once in the current step, or
//!   at once if it took the channel's last unit (filled the buffer, or
//!   emptied it: an acquisition of a channel-built lock, which must yield
//!   for Trio's FIFO order, see [`after_channel_op`]);
//! * while nobody else is runnable, every [`IO_BUDGET`]-th operation in a
//!   row yields anyway and asks the scheduler to poll epoll, since tasks
//!   waiting on I/O look idle until their events are collected.
//!
//! A schedule point is never a cancel point: the operation's result is
//! already in hand and must not be lost (rule I3).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::kernel::Core;

/// Operations completed at once, with no other task runnable, before an
/// I/O operation yields anyway and has the scheduler poll epoll. Each costs
/// a syscall of ~1 µs, so 32 bounds the extra latency an idle-looking
/// connection sees to tens of µs, and adds one `epoll_wait` per 32
/// operations of a lone busy connection. (tokio's coop budget is 128.)
pub(crate) const IO_BUDGET: u32 = 32;

/// How many `send`s and `receive`s that complete at once a task may make
/// in one step, while another task is runnable, before one of them yields
/// (its schedule point). Trio yields at every one; with a budget a producer
/// fills several slots before its consumer runs and the consumer drains
/// them in one go, instead of the two switching at every message (tokio's
/// coop budget makes the same trade every 128 operations). A task still
/// gets its turn after at most `CHANNEL_BUDGET - 1` operations of another.
/// 16 was measured in `benches/sync.rs` (see BENCHMARKS.md).
///
/// ```
/// assert_eq!(trioxide::channel::CHANNEL_BUDGET, 16);
/// ```
pub const CHANNEL_BUDGET: u32 = 16;

/// The budget's state, one per run (a field of `Core`).
#[derive(Default)]
pub(super) struct Budget {
    /// Operations completed at once, with nobody else runnable, since the
    /// last yield or epoll poll; below `IO_BUDGET`.
    io_streak: Cell<u32>,
    /// Memory-channel operations completed at once in the current step;
    /// below `CHANNEL_BUDGET`, reset at each step.
    channel_streak: Cell<u32>,
    /// An operation yielded on its budget: poll epoll before the next pass
    /// even if `IO_POLL_INTERVAL` steps have not run.
    io_poll_requested: Cell<bool>,
    /// Schedule points offered so far, yielded or not, for
    /// `testing::assert_checkpoints`. Only ever grows.
    pub(super) yield_offers: Cell<u64>,
}

impl Budget {
    /// A task step begins: the channel budget is per step.
    #[inline]
    pub(super) fn begin_step(&self) {
        self.channel_streak.set(0);
    }

    /// The driver was just polled: the I/O streak starts over.
    #[inline]
    pub(super) fn io_polled(&self) {
        self.io_streak.set(0);
        self.io_poll_requested.set(false);
    }

    /// Whether an operation spent the budget and asked for an epoll poll.
    #[inline]
    pub(super) fn io_poll_requested(&self) -> bool {
        self.io_poll_requested.get()
    }
}

impl Core {
    /// Whether a task that just completed an I/O operation without waiting
    /// should yield (see [`after_io`]).
    #[inline]
    pub(crate) fn should_yield_after_io(&self) -> bool {
        self.budget.yield_offers.set(self.budget.yield_offers.get() + 1);
        if self.others_runnable() {
            self.budget.io_streak.set(0);
            return true;
        }
        self.io_budget_spent()
    }

    /// Another task of this pass's batch, or of the next, is waiting to run.
    #[inline]
    fn others_runnable(&self) -> bool {
        self.batch_left.get() > 0 || !self.runq.borrow().is_empty()
    }

    /// Counts one more operation completed at once with nobody else
    /// runnable; true (and a request to poll epoll) every `IO_BUDGET`.
    #[inline]
    fn io_budget_spent(&self) -> bool {
        let streak = self.budget.io_streak.get() + 1;
        if streak >= IO_BUDGET {
            self.budget.io_streak.set(0);
            self.budget.io_poll_requested.set(true);
            return true;
        }
        self.budget.io_streak.set(streak);
        false
    }

    /// `should_yield_after_io` for a memory-channel operation: while other
    /// tasks are runnable, yields at once if the operation `exhausted` the
    /// channel (see [`after_channel_op`]), else only at every
    /// `CHANNEL_BUDGET`-th operation completed at once in this step.
    #[inline]
    pub(crate) fn should_yield_after_channel_op(&self, exhausted: bool) -> bool {
        self.budget.yield_offers.set(self.budget.yield_offers.get() + 1);
        if !self.others_runnable() {
            return self.io_budget_spent();
        }
        let n = self.budget.channel_streak.get() + 1;
        // Taking the channel's last unit is an acquisition: it yields (see
        // `after_channel_op`).
        if n < CHANNEL_BUDGET && !exhausted {
            self.budget.channel_streak.set(n);
            return false;
        }
        self.budget.channel_streak.set(0);
        self.budget.io_streak.set(0);
        true
    }
}

impl Core {
    /// The schedule point of a poll-level operation (`poll_receive`,
    /// `poll_send`, ...), decided *before* its attempt, since a poll cannot
    /// return its result and yield in one call. It shares the channels'
    /// per-step streak: while other tasks are runnable it yields at every
    /// `CHANNEL_BUDGET`-th poll-level operation of a step (and, with nobody
    /// else runnable, every `IO_BUDGET`-th, as everywhere).
    ///
    /// Why not at every operation, as `after_io` does for `async fn`
    /// operations: poll-level callers (hyper, TLS engines, codecs) make
    /// several calls for one logical operation (a write, a flush, a read
    /// that finds nothing), so yielding at each made hyper's connection
    /// task take two steps per HTTP/1 request and run its dispatcher twice:
    /// about 1,200 more instructions per request in `benches/hyper.sh`'s
    /// `instr` scenario. A busy connection still lets the others run after
    /// at most `CHANNEL_BUDGET` operations.
    #[inline]
    pub(crate) fn should_yield_before_poll_op(&self) -> bool {
        self.should_yield_after_channel_op(false)
    }
}

/// Lets other runnable tasks run after an I/O operation that completed
/// without waiting, so one busy connection cannot starve the others (rule
/// I2). It is a schedule point, not a cancel point: the operation's result
/// is already in hand and must not be lost (rule I3).
///
/// It yields only when it matters: when another task is runnable, or after
/// [`IO_BUDGET`] operations in a row completed at once with nobody else
/// runnable, in which case it also asks the scheduler to poll epoll, since
/// tasks waiting on I/O look idle until their events are collected.
pub(crate) fn after_io() -> AfterIo {
    AfterIo { yielded: false }
}

/// The schedule point of a memory-channel operation that completed at
/// once, decided on the spot (the operation polls it right away): `None`
/// to go on, or the task has been rescheduled and `Some(after)` is the
/// future to return `Pending` on, ready at its next poll. While another
/// task is runnable it yields at once if the operation `exhausted` the
/// channel, and otherwise only at every [`CHANNEL_BUDGET`]-th operation
/// that completed at once in the current step (with nobody else runnable
/// it behaves as [`after_io`]). Deciding here rather than in a fresh
/// [`AfterIo`]'s first poll keeps the channel's fast path short (measured
/// with callgrind: an `AfterIo` carrying the flag cost 10 instructions per
/// message more, and outlined, 40).
///
/// *The budget.* A producer's send that hands its value to a blocked
/// consumer makes the consumer runnable, so with `after_io` every message
/// would cost a task switch each way (producer and consumer strictly
/// alternate, one message per step). With the budget, the producer fills up
/// to 16 slots before it lets the consumer run, and the consumer drains
/// them in one go: tokio's coop budget makes the same trade (every 128th
/// operation). Trio always yields here; it has discussed yielding less
/// often for the same reason. The starvation bound stays: at most
/// `CHANNEL_BUDGET - 1` operations run before a runnable task gets its turn.
///
/// *Exhausted: Trio's fairness.* A send that filled the buffer, or a
/// receive that emptied it, took the channel's last unit in its direction:
/// the next task to try the same operation would block. That is what an
/// acquisition does when a channel serves as a lock or a token pool (Trio's
/// `ChannelLock1` and `ChannelLock2`), and the moment FIFO order depends
/// on. The task yields there, as Trio's always does, so the tasks that want
/// the channel next reach it and queue, in order, behind it; from then on
/// every release hands the unit to the oldest of them. Without the yield
/// the releasing task took the unit straight back, five times in a row
/// (issue 11). Not yielding in the other cases is deliberate:
/// * with room left, nobody would queue, so there is no order to keep;
/// * a hand-over to or from a blocked task is never `exhausted`: the other
///   side was already waiting (its turn came), and counting it would make a
///   rendezvous ping-pong switch twice per message.
///
/// A consumer that drains its producer's burst also yields at the last
/// value; that costs nothing measurable (callgrind: `throughput_1p` 329
/// instructions per message before the rule, 328 with it), since it would
/// otherwise block on its next receive anyway.
#[inline]
pub(crate) fn after_channel_op(core: &Core, exhausted: bool, cx: &mut Context<'_>) -> Option<AfterIo> {
    if !core.should_yield_after_channel_op(exhausted) {
        return None;
    }
    cx.waker().wake_by_ref();
    Some(AfterIo { yielded: true })
}

/// The future of [`after_io`] (and, already yielded, of
/// [`after_channel_op`]).
pub(crate) struct AfterIo {
    yielded: bool,
}

impl Future for AfterIo {
    type Output = ();

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        // Reached at the end of an operation that has found the runtime
        // already; named for a future polled again outside the run.
        let core = Core::current_for("the schedule point of a trioxide operation");
        if !core.should_yield_after_io() {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
