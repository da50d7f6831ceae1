//! [`current_statistics`]: Trio's `trio.lowlevel.current_statistics()`, a
//! snapshot of the run's load for debugging and monitoring.

use std::time::Duration;

use crate::kernel::clock::Instant;
use crate::kernel::Core;

/// What the run is doing at the moment [`current_statistics`] was called
/// (Trio's `RunStatistics`). Fields may be added in later versions, so it
/// cannot be built outside the crate; read it from
/// [`current_statistics`].
///
/// ```
/// use trioxide::{current_statistics, run, RunStatistics};
/// let s: RunStatistics = run(async { current_statistics() });
/// assert_eq!(s.tasks_living, 1); // the main task alone
/// assert_eq!(s.tasks_runnable, 0);
/// assert_eq!(s.timers, 0);
/// assert_eq!((s.next_deadline, s.time_to_next_deadline), (None, None));
/// assert_eq!(s.run_sync_soon_queue_size, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunStatistics {
    /// Tasks spawned and not finished, the main task (and any system task)
    /// included (Trio's `tasks_living`).
    pub tasks_living: usize,
    /// Tasks waiting for their turn to run, the caller excluded (even if it
    /// has woken itself): those woken for the next scheduler pass and those
    /// of the current pass not run yet (Trio's `tasks_runnable` counts the
    /// next pass's only).
    pub tasks_runnable: usize,
    /// Deadlines armed and not yet due or fired: sleeps, and cancel scopes
    /// with a deadline whose body has blocked.
    pub timers: usize,
    /// The earliest armed deadline, `None` if there is none. A deadline that
    /// was moved later may show here at its earlier value until the
    /// scheduler reaches it (the timer store settles postponed timers
    /// lazily).
    pub next_deadline: Option<Instant>,
    /// Time from now to [`next_deadline`](RunStatistics::next_deadline) on
    /// the run's clock: `None` with no deadline (Trio's `inf`), zero for a
    /// deadline already due (Trio's negative values). Trio's
    /// `seconds_to_next_deadline`.
    pub time_to_next_deadline: Option<Duration>,
    /// The I/O driver's waits (Trio's `io_statistics`).
    pub io_statistics: IoStatistics,
    /// Closures sent by other threads (`from_thread`, a `RuntimeHandle`)
    /// queued and not run yet (Trio's `run_sync_soon_queue_size`).
    pub run_sync_soon_queue_size: usize,
}

/// The I/O part of [`RunStatistics`] (Trio's `_EpollStatistics`): how
/// many tasks wait for readiness in each direction.
///
/// ```
/// use trioxide::{current_statistics, open_nursery, run, wait_all_tasks_blocked, BoxError, UnixStream};
/// run(open_nursery(|n| async move {
///     let (a, _b) = UnixStream::pair()?;
///     n.start_soon(async move {
///         a.receive_some(&mut [0u8; 8]).await?; // nothing sent: waits
///         Ok::<_, BoxError>(())
///     })?;
///     wait_all_tasks_blocked().await?;
///     let io = current_statistics().io_statistics;
///     assert_eq!((io.tasks_waiting_read, io.tasks_waiting_write), (1, 0));
///     assert_eq!(io.backend, "epoll");
///     n.cancel_scope().cancel(); // stop the reader
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IoStatistics {
    /// Tasks blocked until a socket, pipe or raw fd is readable.
    pub tasks_waiting_read: usize,
    /// Tasks blocked until a socket, pipe or raw fd is writable.
    pub tasks_waiting_write: usize,
    /// The readiness API underneath: `"epoll"`.
    pub backend: &'static str,
}

/// A snapshot of the current run's load: tasks alive and runnable,
/// deadlines, and tasks waiting on I/O (Trio's `current_statistics()`).
/// Counting the I/O waits scans the registered fds, so it costs O(fds):
/// for debugging and monitoring, not for a hot loop.
///
/// ```
/// use std::time::Duration;
/// use trioxide::{current_statistics, open_nursery, sleep, wait_all_tasks_blocked, BoxError, Builder, MockClock};
/// Builder::new().clock(MockClock::new()).run(open_nursery(|n| async move {
///     n.start_soon(async {
///         sleep(Duration::from_secs(5)).await?;
///         Ok::<_, BoxError>(())
///     })?;
///     wait_all_tasks_blocked().await?;
///     let s = current_statistics();
///     assert_eq!(s.tasks_living, 2); // main and the sleeper
///     assert_eq!(s.tasks_runnable, 0); // the caller is running, not waiting
///     assert_eq!(s.timers, 1);
///     assert_eq!(s.time_to_next_deadline, Some(Duration::from_secs(5)));
///     assert_eq!(s.io_statistics.tasks_waiting_read, 0);
///     n.cancel_scope().cancel(); // the mock clock stands still: stop the sleeper
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
///
/// # Panics
/// Outside [`run`](crate::run): "trioxide::current_statistics must be
/// called from inside trioxide::run", at the caller's line.
#[track_caller]
pub fn current_statistics() -> RunStatistics {
    let core = Core::current_for("trioxide::current_statistics");
    let next_deadline = core.timers.borrow_mut().next_deadline();
    let time_to_next_deadline = next_deadline.map(|d| d.saturating_duration_since(core.now()));
    let (tasks_waiting_read, tasks_waiting_write) = core.driver.borrow().tasks_waiting();
    RunStatistics {
        tasks_living: core.tasks.borrow().len(),
        // The caller may have queued itself (a cancel it made wakes it):
        // it is running, not waiting for its turn.
        tasks_runnable: core.runq.borrow().iter().filter(|&&id| id != core.current_task.get()).count()
            + core.batch_left.get(),
        timers: core.timers.borrow().armed(),
        next_deadline,
        time_to_next_deadline,
        io_statistics: IoStatistics { tasks_waiting_read, tasks_waiting_write, backend: "epoll" },
        run_sync_soon_queue_size: core.shared.queued_jobs(),
    }
}
