//! [`wait_all_tasks_blocked`]: let every other task settle, then go on.
//!
//! The waiters live in the kernel because only the scheduler knows when
//! the run is idle: when nothing is runnable, no I/O is ready and no
//! deadline is due, it wakes the waiter that arrived first (Trio's
//! `_run.py` does the same in its run loop).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use slab::Slab;

use crate::kernel::error::Cancelled;
use crate::kernel::Core;

/// The tasks in `wait_all_tasks_blocked`, one field of `Core`.
#[derive(Default)]
pub(super) struct IdleWaiters {
    /// Each waiter's arrival ticket and its waker; the waker is taken
    /// (`None`) once the waiter has been chosen, which is how its next poll
    /// knows it fired. Tickets are unique and increasing.
    waiters: RefCell<Slab<(u64, Option<Waker>)>>,
    /// The last ticket handed out.
    ticket: Cell<u64>,
}

impl IdleWaiters {
    /// Whether any task waits for the run to be idle.
    pub(super) fn is_empty(&self) -> bool {
        self.waiters.borrow().is_empty()
    }

    /// Wakes the waiter that arrived first, if any; true if one was woken.
    pub(super) fn wake_one(&self) -> bool {
        let waker = {
            let mut waiters = self.waiters.borrow_mut();
            let first = waiters.iter().filter(|(_, (_, w))| w.is_some()).min_by_key(|(_, (t, _))| *t).map(|(k, _)| k);
            first.and_then(|k| waiters[k].1.take())
        };
        match waker {
            Some(w) => {
                w.wake();
                true
            }
            None => false,
        }
    }
}

/// Waits until every other task is blocked (no task is runnable, no I/O is
/// ready and no timer is due), then returns. A checkpoint.
///
/// Use it in tests to let everything else settle before asserting. With
/// several waiters, one is woken per idle moment, in arrival order.
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
    WaitAllTasksBlocked { key: None, done: false }
}

/// The future of [`wait_all_tasks_blocked`].
#[derive(Debug)]
#[must_use = "wait_all_tasks_blocked does nothing unless awaited"]
pub struct WaitAllTasksBlocked {
    key: Option<usize>,
    done: bool,
}

impl Future for WaitAllTasksBlocked {
    type Output = Result<(), Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(!self.done, "wait_all_tasks_blocked polled after completion");
        let core = Core::current();
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
                self.key = Some(waiters.insert((ticket, Some(cx.waker().clone()))));
            }
            Some(key) => {
                let fired = waiters[key].1.is_none();
                if fired || cancelled {
                    waiters.remove(key);
                    self.key = None;
                    self.done = true;
                    return Poll::Ready(if fired { Ok(()) } else { Err(Cancelled) });
                }
                waiters[key].1 = Some(cx.waker().clone());
            }
        }
        core.set_waiting_on("wait_all_tasks_blocked");
        Poll::Pending
    }
}

impl Drop for WaitAllTasksBlocked {
    fn drop(&mut self) {
        if let (Some(key), Some(core)) = (self.key, Core::try_current()) {
            core.idle.waiters.borrow_mut().try_remove(key);
        }
    }
}
