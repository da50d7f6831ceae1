//! The scheduling loop: Trio's batch passes.
//!
//! ```text
//! loop {
//!     collect:  I/O readiness, expired deadlines, wake-ups from other threads
//!     pass:     run the batch that was runnable when the pass began,
//!               forwards or reversed (one coin flip)
//! }
//! ```
//!
//! **Batches (rule S1).** A pass takes the whole run queue as its batch and
//! leaves an empty queue behind; tasks woken during the pass land in that
//! new queue and run in the *next* pass. So a task that yields in a loop
//! runs once per pass, and two such tasks interleave strictly (S3).
//!
//! **Randomness (rule S2).** Trio runs each batch in order or reversed with
//! probability 1/2 rather than shuffling it: one random bit per pass instead
//! of O(n), and every task still gets to run both before and after every
//! other, which shakes out ordering assumptions in tests. The bit comes from
//! a seedable SplitMix64 (`rng.rs`).
//!
//! **When to poll for I/O.** Trio polls for I/O between every two passes,
//! with timeout 0 when tasks are runnable. With few runnable tasks that is
//! one `epoll_wait` syscall per pass (~200 ns), more than the pass itself
//! (tens of ns). We keep Trio's promise that I/O is never starved for more
//! than a bounded time, but bound it in task steps: while tasks are
//! runnable, the driver is polled (timeout 0) between passes only once
//! [`IO_POLL_INTERVAL`] steps have run since the last poll, and never while
//! no I/O source is registered (remote wake-ups have their own flag). When
//! nothing is runnable the loop blocks in the driver until the next deadline.
//!
//! **Deadlines (rule C17)** are expired once per pass, and the clock is
//! read only when some timer is armed, so passes without timers pay nothing.

use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::kernel::remote::Job;
use crate::kernel::task::{main_waker, TaskId};
use crate::kernel::timers::Fired;
use crate::kernel::Core;

/// How long an idle runtime spins, waiting for a cross-thread wake-up,
/// before it blocks in `epoll_wait`. Blocking and being woken by the eventfd
/// costs a context switch each way (about 10 µs on this VM); a wake-up that
/// comes within a few microseconds is caught by the spin instead. The spin
/// happens only while other threads have woken tasks recently
/// ([`SPIN_STREAK`]), so a program without cross-thread wake-ups never spins.
const IDLE_SPIN: Duration = Duration::from_micros(5);

/// Blocking waits that may spin after a pass that drained remote wake-ups.
const SPIN_STREAK: u8 = 16;

/// Task steps after which runnable tasks must let the I/O driver look for
/// readiness. 61 is tokio's `event_interval` default for the same trade-off
/// (a prime, so it does not fall into step with periodic workloads).
pub(crate) const IO_POLL_INTERVAL: u32 = 61;

impl Core {
    /// Runs until `main` has finished and every other task with it.
    pub(crate) fn run_loop<F: Future>(&self, mut main: Pin<&mut F>) -> F::Output {
        let main_id = self.main_id.get();
        let waker = main_waker(self.live_header(main_id).expect("the main task is spawned before the loop"));
        let mut output: Option<std::thread::Result<F::Output>> = None;
        let mut batch: Vec<TaskId> = Vec::new();
        let mut scratch = Scratch::default();
        if self.has_instruments.get() {
            self.each_instrument(|i| i.before_run());
        }
        let mut poll_main = || {
            let mut cx = Context::from_waker(&waker);
            match catch_unwind(AssertUnwindSafe(|| main.as_mut().poll(&mut cx))) {
                Ok(Poll::Pending) => false,
                Ok(Poll::Ready(v)) => {
                    output = Some(Ok(v));
                    true
                }
                Err(panic) => {
                    output = Some(Err(panic));
                    true
                }
            }
        };
        loop {
            self.collect(&mut scratch);
            std::mem::swap(&mut *self.runq.borrow_mut(), &mut batch);
            let reverse = self.rng.borrow_mut().bit();
            let n = batch.len();
            if reverse {
                for (i, &id) in batch.iter().rev().enumerate() {
                    self.batch_left.set(n - 1 - i);
                    self.step(id, main_id, &mut poll_main);
                }
            } else {
                for (i, &id) in batch.iter().enumerate() {
                    self.batch_left.set(n - 1 - i);
                    self.step(id, main_id, &mut poll_main);
                }
            }
            batch.clear();
            if self.tasks.borrow().is_empty() {
                break;
            }
        }
        if self.has_instruments.get() {
            self.each_instrument(|i| i.after_run());
        }
        match output {
            Some(Ok(v)) => v,
            Some(Err(panic)) => resume_unwind(panic),
            None => unreachable!("the loop ends only after main has finished"),
        }
    }

    /// Polls one task once.
    #[inline]
    fn step(&self, id: TaskId, main_id: TaskId, poll_main: &mut impl FnMut() -> bool) {
        let Some(header) = self.live_header(id) else {
            // A stale id: the task finished after it was queued.
            return;
        };
        // Clear before polling so a wake-up during the poll queues it again.
        header.scheduled.set(false);
        self.current_task.set(id);
        self.current_status.set(header.root_ptr());
        self.waiting_on.set("");
        self.budget.begin_step();
        if self.has_instruments.get() {
            self.each_instrument(|i| i.before_task_step(id));
        }
        let done = if id == main_id {
            poll_main()
        } else {
            // SAFETY: runtime thread, not re-entrant (one step at a time),
            // and the slab entry keeps the task alive until `remove_task`
            // below, after the poll.
            unsafe { header.poll() }
        };
        self.current_status.set(std::ptr::null());
        self.current_task.set(TaskId::NONE);
        self.steps_since_io.set(self.steps_since_io.get().saturating_add(1));
        if self.has_instruments.get() {
            self.each_instrument(|i| i.after_task_step(id));
        }
        if done {
            self.remove_task(id);
            if id == main_id {
                // Anything left was orphaned by a dropped nursery: stop it.
                self.system_scope.cancel();
            }
        } else {
            let w = self.waiting_on.get();
            if !w.is_empty() {
                header.waiting_on.set(self.waiting_names.index(w).unwrap_or(0) as u8);
            }
        }
    }

    /// Between passes: I/O, deadlines, remote wake-ups.
    fn collect(&self, scratch: &mut Scratch) {
        let runnable = !self.runq.borrow().is_empty();
        if runnable {
            let due = self.steps_since_io.get() >= IO_POLL_INTERVAL || self.budget.io_poll_requested();
            if due && self.driver.borrow().has_sources() {
                self.wait_io(Some(Duration::ZERO), &mut scratch.io);
            }
        } else {
            self.when_idle(&mut scratch.io);
        }
        if !self.timers.borrow().is_empty() {
            let now = self.now();
            self.timers.borrow_mut().expire(now, &mut scratch.fired);
            for f in scratch.fired.drain(..) {
                match f {
                    Fired::Wake(w) => w.wake(),
                    Fired::CancelScope(scope) => {
                        if let Some(scope) = scope.upgrade() {
                            scope.cancel();
                        }
                    }
                }
            }
        }
        self.shared.drain_remote(&mut scratch.remote, &mut scratch.jobs);
        if !scratch.remote.is_empty() || !scratch.jobs.is_empty() {
            self.remote_streak.set(SPIN_STREAK);
        }
        for id in scratch.remote.drain(..) {
            self.wake_task(id, true);
        }
        for job in scratch.jobs.drain(..) {
            self.run_job(job);
        }
    }

    /// Runs a closure sent by another thread (`from_thread`), outside any
    /// task but inside the run's root cancel status, so it may spawn
    /// system tasks and check for cancellation.
    fn run_job(&self, job: Job) {
        self.current_status.set(std::rc::Rc::as_ptr(&self.system_scope));
        // The job catches its own panics (to send them to its thread);
        // this is a backstop so one bad job cannot take the runtime down.
        let r = catch_unwind(AssertUnwindSafe(job));
        self.current_status.set(std::ptr::null());
        if r.is_err() {
            eprintln!("trioxide: a job sent from another thread panicked; the run goes on");
        }
    }

    /// Nothing is runnable: block in the I/O wait until the next deadline,
    /// or, Trio's "idle priming", for a shorter time after which, if still
    /// nothing happened, the run counts as idle: then wake the
    /// `wait_all_tasks_blocked` waiters of the smallest cushion, or else
    /// autojump a mock clock to the next deadline.
    ///
    /// As in Trio's run loop: a waiter primes only if its cushion is
    /// shorter than the time to the next deadline (else the deadline comes
    /// first and the waiter measures its cushion afresh afterwards); while
    /// any task waits for idleness the clock does not autojump (the waiter
    /// wakes without time moving, so a `MockClock` with threshold 0 and a
    /// waiter with a nonzero cushion still wake in that order).
    fn when_idle(&self, woken: &mut Vec<Waker>) {
        let next = self.timers.borrow_mut().next_deadline();
        let mut timeout = match next {
            // A deadline already due never blocks, whatever the clock says.
            Some(d) if d <= self.now() => Some(Duration::ZERO),
            Some(d) => self.clock.deadline_to_sleep_time(d),
            None => None,
        };
        // Shorter than the timeout (`None` is forever).
        let shorter = |t: Duration, timeout: Option<Duration>| timeout.is_none_or(|limit| t < limit);
        let mut primed = Primed::No;
        if let Some(cushion) = self.idle.min_cushion() {
            if shorter(cushion, timeout) {
                timeout = Some(cushion);
                primed = Primed::Idle(cushion);
            }
        } else if let (Some(threshold), Some(deadline)) = (self.clock.autojump_threshold(), next) {
            if shorter(threshold, timeout) {
                timeout = Some(threshold);
                primed = Primed::Autojump(deadline);
            }
        }
        let events = self.wait_io(timeout, woken);
        if primed == Primed::No {
            return;
        }
        let deadline_due = next.is_some_and(|d| d <= self.now());
        let quiet = events == 0 && self.runq.borrow().is_empty() && !self.shared.has_pending() && !deadline_due;
        if !quiet {
            return;
        }
        match primed {
            Primed::Idle(cushion) => self.idle.wake_all_with(cushion),
            Primed::Autojump(deadline) => self.clock.autojump(deadline),
            Primed::No => {}
        }
    }

    /// Polls the I/O driver and wakes the tasks whose sources became
    /// ready; returns the number of events.
    fn wait_io(&self, timeout: Option<Duration>, woken: &mut Vec<Waker>) -> usize {
        let mut timeout = timeout;
        let blocking = timeout != Some(Duration::ZERO);
        if blocking && self.remote_streak.get() > 0 {
            self.remote_streak.set(self.remote_streak.get() - 1);
            if self.shared.spin_for_remote(IDLE_SPIN) {
                timeout = Some(Duration::ZERO);
            }
        }
        if blocking && !self.shared.park() {
            timeout = Some(Duration::ZERO);
        }
        if self.has_instruments.get() {
            self.each_instrument(|i| i.before_io_wait(timeout));
        }
        let n = self.driver.borrow_mut().wait(timeout, woken);
        // Woken after the driver's borrow ends: a waker may be anything.
        for w in woken.drain(..) {
            w.wake();
        }
        if blocking {
            self.shared.unpark();
        }
        if self.has_instruments.get() {
            self.each_instrument(|i| i.after_io_wait(timeout));
        }
        self.steps_since_io.set(0);
        self.budget.io_polled();
        n
    }
}

/// What an idle wait of [`Core::when_idle`] was shortened for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Primed {
    No,
    /// The `wait_all_tasks_blocked` waiters of this cushion.
    Idle(Duration),
    /// A mock clock's autojump to this deadline.
    Autojump(crate::kernel::clock::Instant),
}

/// Buffers reused from pass to pass, so collecting allocates nothing.
#[derive(Default)]
struct Scratch {
    fired: Vec<Fired>,
    io: Vec<Waker>,
    remote: Vec<TaskId>,
    jobs: Vec<Job>,
}
