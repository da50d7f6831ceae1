//! [`wait_all_tasks_blocked`]: let every other task settle, then go on.
//!
//! The waiters live in the kernel because only the scheduler knows when
//! the run is idle (Trio's `_run.py` does the same in its run loop). When
//! nothing is runnable, the scheduler takes the smallest cushion among the
//! waiters; if it is shorter than the time to the next deadline, the I/O
//! wait blocks for that cushion (real time) instead, and if it then saw no
//! event, no deadline came due and no task became runnable, every waiter
//! with that cushion is woken, in arrival order. A waiter keeps the
//! autojump of a `MockClock` from happening, since it will wake without
//! time moving (`scheduler.rs`, `when_idle`).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use slab::Slab;

use crate::kernel::error::Cancelled;
use crate::kernel::Core;

/// One task in `wait_all_tasks_blocked`.
struct Waiter {
    cushion: Duration,
    /// Arrival order: unique and increasing.
    ticket: u64,
    /// Taken (`None`) once the waiter has been chosen, which is how its
    /// next poll knows it fired.
    waker: Option<Waker>,
}

/// The tasks in `wait_all_tasks_blocked`, one field of `Core`.
#[derive(Default)]
pub(super) struct IdleWaiters {
    waiters: RefCell<Slab<Waiter>>,
    /// The last ticket handed out.
    ticket: Cell<u64>,
}

impl IdleWaiters {
    /// The smallest cushion of the waiters not woken yet, if any.
    pub(super) fn min_cushion(&self) -> Option<Duration> {
        self.waiters.borrow().iter().filter(|(_, w)| w.waker.is_some()).map(|(_, w)| w.cushion).min()
    }

    /// Wakes every waiter (not woken yet) whose cushion is `cushion`, in
    /// arrival order (Trio wakes all the waiters of the smallest cushion).
    pub(super) fn wake_all_with(&self, cushion: Duration) {
        let mut chosen: Vec<(u64, Waker)> = {
            let mut waiters = self.waiters.borrow_mut();
            waiters
                .iter_mut()
                .filter(|(_, w)| w.cushion == cushion)
                .filter_map(|(_, w)| w.waker.take().map(|k| (w.ticket, k)))
                .collect()
        };
        chosen.sort_unstable_by_key(|(t, _)| *t);
        // Woken after the borrow ends: a waker may be anything.
        for (_, w) in chosen {
            w.wake();
        }
    }
}

/// Waits until every other task is blocked (no task is runnable, no I/O is
/// ready and no timer is due), then returns. A checkpoint: in a cancelled
/// scope it returns `Err(Cancelled)`.
///
/// Use it in tests to let everything else settle before asserting.
/// [`cushion`](WaitAllTasksBlocked::cushion) asks for the run to stay
/// blocked that long (real time, not the run's clock) before it counts as
/// settled, for two tasks talking over a real socket, where the data is
/// briefly in the kernel and every task looks blocked.
///
/// With several waiters, those with the smallest cushion are woken
/// together, in arrival order, and the others start measuring their
/// cushion afresh. A waiter keeps a [`MockClock`](crate::MockClock) from
/// autojumping: it wakes first, without time moving (Trio's rule).
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use trioxide::{run, open_nursery, checkpoint, BoxError};
/// use trioxide::testing::wait_all_tasks_blocked;
/// let n_steps = Rc::new(Cell::new(0));
/// let c = n_steps.clone();
/// run(open_nursery(move |n| async move {
///     let c2 = c.clone();
///     n.start_soon(async move {
///         for _ in 0..10 { checkpoint().await?; c2.set(c2.get() + 1); }
///         Ok::<_, BoxError>(())
///     })?;
///     wait_all_tasks_blocked().await?;
///     assert_eq!(c.get(), 10);
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
pub fn wait_all_tasks_blocked() -> WaitAllTasksBlocked {
    WaitAllTasksBlocked { cushion: Duration::ZERO, key: None, done: false }
}

/// The future of [`wait_all_tasks_blocked`]: `Ok(())` once the run has
/// settled, `Err(Cancelled)` if its scope is cancelled first (before or
/// while waiting). Dropping it while it waits withdraws it. Waiters with
/// the same cushion are woken together, in one scheduler pass (which, like
/// Trio's, may run its batch in either order).
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use trioxide::{open_nursery, run, BoxError, CancelScope, Cancelled};
/// use trioxide::testing::{wait_all_tasks_blocked, WaitAllTasksBlocked};
/// run(open_nursery(|n| async move {
///     let order = Rc::new(RefCell::new(Vec::new()));
///     for i in 0..3 {
///         let order = order.clone();
///         n.start_soon(async move {
///             wait_all_tasks_blocked().await?;
///             order.borrow_mut().push(i);
///             Ok::<_, BoxError>(())
///         })?;
///     }
///     // In a cancelled scope it reports Cancelled without waiting.
///     let scope = CancelScope::new();
///     scope.cancel();
///     scope.run(async {
///         let wait: WaitAllTasksBlocked = wait_all_tasks_blocked();
///         assert_eq!(wait.await, Err(Cancelled));
///         Ok::<_, Cancelled>(())
///     }).await?;
///     wait_all_tasks_blocked().await?; // woken with the three, in the same pass
///     wait_all_tasks_blocked().await?; // they have all run since
///     order.borrow_mut().sort();
///     assert_eq!(*order.borrow(), [0, 1, 2]);
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
///
/// # Panics
/// When polled again after it completed ("trioxide::WaitAllTasksBlocked
/// polled after completion"), or outside [`run`](crate::run).
#[derive(Debug)]
#[must_use = "wait_all_tasks_blocked does nothing unless awaited: `wait_all_tasks_blocked().await?`"]
pub struct WaitAllTasksBlocked {
    cushion: Duration,
    key: Option<usize>,
    done: bool,
}

impl WaitAllTasksBlocked {
    /// Returns only once every other task has been blocked for `cushion`
    /// of real time without interruption (Trio's
    /// `wait_all_tasks_blocked(cushion)`); the default is zero.
    ///
    /// The cushion is real time even under a [`MockClock`](crate::MockClock):
    /// it is about data in flight outside the run (a socket pair), which
    /// virtual time does not move.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{run, open_nursery, sleep, BoxError};
    /// use trioxide::testing::wait_all_tasks_blocked;
    /// run(open_nursery(|n| async move {
    ///     // A task that blocks for 1 ms at a time, three times.
    ///     n.start_soon(async {
    ///         for _ in 0..3 { sleep(Duration::from_millis(1)).await?; }
    ///         Ok::<_, BoxError>(())
    ///     })?;
    ///     let t = std::time::Instant::now();
    ///     // Blocked for 20 ms in a row: only after the sleeper is done.
    ///     wait_all_tasks_blocked().cushion(Duration::from_millis(20)).await?;
    ///     assert!(t.elapsed() >= Duration::from_millis(23));
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub fn cushion(mut self, cushion: Duration) -> WaitAllTasksBlocked {
        self.cushion = cushion;
        if let (Some(key), Some(core)) = (self.key, Core::try_current()) {
            if let Some(w) = core.idle.waiters.borrow_mut().get_mut(key) {
                w.cushion = cushion;
            }
        }
        self
    }
}

impl Future for WaitAllTasksBlocked {
    type Output = Result<(), Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.done {
            polled_after_completion();
        }
        let core = Core::current_for("trioxide::wait_all_tasks_blocked");
        let cancelled = core.is_cancelled();
        let idle = &core.idle;
        let mut waiters = idle.waiters.borrow_mut();
        match self.key {
            None => {
                if cancelled {
                    self.done = true;
                    return Poll::Ready(Err(Cancelled));
                }
                let ticket = idle.ticket.get() + 1;
                idle.ticket.set(ticket);
                let waiter = Waiter { cushion: self.cushion, ticket, waker: Some(cx.waker().clone()) };
                self.key = Some(waiters.insert(waiter));
            }
            Some(key) => {
                let fired = waiters[key].waker.is_none();
                if fired || cancelled {
                    waiters.remove(key);
                    self.key = None;
                    self.done = true;
                    return Poll::Ready(if fired { Ok(()) } else { Err(Cancelled) });
                }
                waiters[key].waker = Some(cx.waker().clone());
            }
        }
        core.set_waiting_on("wait_all_tasks_blocked");
        Poll::Pending
    }
}

#[cold]
#[inline(never)]
fn polled_after_completion() -> ! {
    panic!("trioxide::WaitAllTasksBlocked polled after completion")
}

impl Drop for WaitAllTasksBlocked {
    fn drop(&mut self) {
        if let (Some(key), Some(core)) = (self.key, Core::try_current()) {
            core.idle.waiters.borrow_mut().try_remove(key);
        }
    }
}
