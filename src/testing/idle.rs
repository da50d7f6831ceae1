//! [`wait_all_tasks_blocked`]: let every other task settle, then go on.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::Cancelled;
use crate::runtime::Core;

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
        let mut waiters = core.idle_waiters.borrow_mut();
        match self.key {
            None => {
                if cancelled {
                    self.done = true;
                    return Poll::Ready(Err(Cancelled));
                }
                let ticket = core.idle_ticket.get() + 1;
                core.idle_ticket.set(ticket);
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
        core.waiting_on.set("wait_all_tasks_blocked");
        Poll::Pending
    }
}

impl Drop for WaitAllTasksBlocked {
    fn drop(&mut self) {
        if let (Some(key), Some(core)) = (self.key, Core::try_current()) {
            core.idle_waiters.borrow_mut().try_remove(key);
        }
    }
}

/// Wakes the waiter that arrived first, if any; true if one was woken.
pub(crate) fn wake_one_idle_waiter(core: &Core) -> bool {
    let waker = {
        let mut waiters = core.idle_waiters.borrow_mut();
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
