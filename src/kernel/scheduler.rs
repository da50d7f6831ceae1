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
//! **Exploring strategies.** [`Schedule::Random`] and [`Schedule::Pct`]
//! (for tests; `Builder::schedule`) replace the batch with a pick among
//! *all* runnable tasks at every step, so they relax S1 and S3 (a task
//! woken during a pass may run before one that was runnable when it
//! began). A pass of theirs still takes as many steps as there were
//! runnable tasks when it began, then collects I/O and deadlines as the
//! batch pass does. The strategy is tested once per pass; the batch pass
//! itself is the code it always was, and draws the same bits.
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
use crate::kernel::rng::Rng;
use crate::kernel::task::{main_waker, TaskId};
use crate::kernel::timers::Fired;
use crate::kernel::trace::TraceEvent;
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
        let exploring = self.schedule != Schedule::Batch;
        if let Schedule::Pct { depth, steps } = self.schedule {
            self.explore.borrow_mut().choose_change_points(&mut self.rng.borrow_mut(), depth, steps);
        }
        loop {
            self.collect(&mut scratch);
            if exploring {
                // One test per pass, never per step of the batch pass.
                self.explore_pass(main_id, &mut poll_main);
                if self.tasks.borrow().is_empty() {
                    break;
                }
                continue;
            }
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
        if self.tracing {
            self.trace.borrow_mut().record(TraceEvent::Step(id));
        }
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
            if self.tracing && !scratch.fired.is_empty() {
                self.trace.borrow_mut().record(TraceEvent::Timers { at: now, fired: scratch.fired.len() as u32 });
            }
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
            if self.tracing {
                self.trace.borrow_mut().record(TraceEvent::Remote(id));
            }
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
        if timeout.is_none() {
            if let Some(hook) = self.on_stall {
                if self.nothing_can_wake() {
                    hook();
                }
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
            Primed::Autojump(deadline) => {
                if self.tracing {
                    self.trace.borrow_mut().record(TraceEvent::Jump(deadline));
                }
                self.clock.autojump(deadline)
            }
            Primed::No => {}
        }
    }

    /// Whether no event the run knows of can wake a task: called only when
    /// nothing is runnable, no timer is armed and nobody waits for
    /// idleness. Then the only ways left are an I/O source, a remote
    /// wake-up or job already queued, and another thread holding a
    /// `RuntimeHandle` (each holds a count of `shared`, as does each
    /// detached task allocation; the run holds one).
    fn nothing_can_wake(&self) -> bool {
        let handles = std::sync::Arc::strong_count(&self.shared)
            .saturating_sub(1 + self.shared.detached_allocations.load(std::sync::atomic::Ordering::Relaxed));
        !self.driver.borrow().has_sources() && !self.shared.has_pending() && handles == 0
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
        if self.tracing && n > 0 {
            self.trace.borrow_mut().record(TraceEvent::Io { events: n as u32 });
        }
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

/// The estimate of a run's length, in task steps, that [`Schedule::pct`]
/// draws PCT's change points from (`K` in the paper). PCT finds a bug of
/// depth `d` with probability at least `1 / (n · K^(d-1))` when `K` bounds
/// the run's steps, and change points past the run's end are wasted, so
/// `K` should be near the number of steps of the runs explored: unit-test
/// sized workloads take tens to a few hundred steps ([`Trace::len`](crate::Trace::len)
/// counts them). Give another estimate with `Schedule::Pct { depth, steps }`.
///
/// ```
/// assert_eq!(trioxide::Schedule::pct(3), trioxide::Schedule::Pct { depth: 3, steps: trioxide::PCT_STEPS });
/// ```
pub const PCT_STEPS: u32 = 100;

/// How the scheduler picks the next task to step: selected per run with
/// [`Builder::schedule`](crate::Builder::schedule). Every choice comes from
/// the run's seeded random source, so the seed and the schedule replay the
/// interleaving exactly.
///
/// * [`Batch`](Schedule::Batch) (the default) is Trio's pass: the tasks
///   runnable when a pass begins run in queue order or reversed (rules
///   S1–S3). It is what programs run with.
/// * [`Random`](Schedule::Random) steps a uniformly random runnable task
///   each time, including tasks woken a moment ago.
/// * [`Pct`](Schedule::Pct) is Probabilistic Concurrency Testing
///   (Burckhardt, Kothari, Musuvathi & Nagarakatte, ASPLOS 2010): each
///   task gets a random priority when it is first runnable, `depth - 1`
///   change points are drawn among the first `steps` steps, the runnable
///   task of highest priority always runs, and at a change point the task
///   that just ran drops below every other. A bug that needs `d` ordering
///   constraints is found with probability at least `1/(n·steps^(d-1))`
///   per run.
///
/// The exploring strategies relax S1 and S3 (see DESIGN.md, "Deterministic
/// simulation"); the nursery and cancel rules hold under every strategy.
/// A task that spins on checkpoints waiting for another (`while !flag {
/// checkpoint().await }`) can starve it forever under `Pct`, as in the
/// paper: wait on an [`Event`](crate::Event) instead.
///
/// ```
/// use trioxide::{checkpoint, Builder, Schedule};
/// for schedule in [Schedule::Batch, Schedule::Random, Schedule::pct(3)] {
///     let out = Builder::new().seed(9).schedule(schedule).run(async {
///         checkpoint().await?;
///         Ok::<_, trioxide::Cancelled>(1)
///     });
///     assert_eq!(out, Ok(1));
/// }
/// // Written and read as in `TRIOXIDE_SIM` (`pctD` uses `PCT_STEPS`).
/// assert_eq!(Schedule::pct(3).to_string(), "pct3");
/// assert_eq!("pct2:500".parse::<Schedule>(), Ok(Schedule::Pct { depth: 2, steps: 500 }));
/// assert_eq!("random".parse::<Schedule>(), Ok(Schedule::Random));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Schedule {
    /// Trio's batch pass with one reverse-or-not coin per pass.
    #[default]
    Batch,
    /// A uniformly random runnable task at every step.
    Random,
    /// PCT with `depth - 1` change points among the first `steps` steps.
    Pct {
        /// The bug depth searched for (`d`; at least 1).
        depth: u32,
        /// The estimate of the run's length in steps (`K`).
        steps: u32,
    },
}

impl Schedule {
    /// PCT of depth `depth` with the default length estimate [`PCT_STEPS`].
    ///
    /// ```
    /// assert!(matches!(trioxide::Schedule::pct(2), trioxide::Schedule::Pct { depth: 2, .. }));
    /// ```
    pub const fn pct(depth: u32) -> Schedule {
        Schedule::Pct { depth, steps: PCT_STEPS }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Schedule::Batch => f.write_str("batch"),
            Schedule::Random => f.write_str("random"),
            Schedule::Pct { depth, steps } if steps == PCT_STEPS => write!(f, "pct{depth}"),
            Schedule::Pct { depth, steps } => write!(f, "pct{depth}:{steps}"),
        }
    }
}

/// A schedule name that is not `batch`, `random`, `pctD` or `pctD:K`.
///
/// ```
/// let e = "fifo".parse::<trioxide::Schedule>().unwrap_err();
/// assert_eq!(e.to_string(), "unknown schedule `fifo` (expected batch, random, pctD or pctD:K)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseScheduleError(String);

impl std::fmt::Display for ParseScheduleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown schedule `{}` (expected batch, random, pctD or pctD:K)", self.0)
    }
}

impl std::error::Error for ParseScheduleError {}

impl std::str::FromStr for Schedule {
    type Err = ParseScheduleError;

    fn from_str(s: &str) -> Result<Schedule, ParseScheduleError> {
        let bad = || ParseScheduleError(s.to_string());
        match s {
            "batch" => return Ok(Schedule::Batch),
            "random" => return Ok(Schedule::Random),
            _ => {}
        }
        let rest = s.strip_prefix("pct").ok_or_else(bad)?;
        let (d, k) = match rest.split_once(':') {
            Some((d, k)) => (d, Some(k)),
            None => (rest, None),
        };
        let depth: u32 = d.parse().map_err(|_| bad())?;
        let steps: u32 = match k {
            Some(k) => k.parse().map_err(|_| bad())?,
            None => PCT_STEPS,
        };
        if depth == 0 || steps == 0 {
            return Err(bad());
        }
        Ok(Schedule::Pct { depth, steps })
    }
}

/// PCT's state for one run (unused by the other strategies).
#[derive(Default)]
pub(crate) struct Explore {
    /// Steps taken so far by the exploring pass (1-based once stepping).
    steps: u64,
    /// Priority of the task in each slab slot, with the id it was drawn
    /// for: an entry whose id is not the slot's current task is stale and
    /// drawn afresh. Initial priorities lie in `[2^62, 2^63)`; demoted ones
    /// are below `depth`, so below every initial one.
    prio: Vec<(TaskId, u64)>,
    /// The steps after which the task that ran is demoted, ascending.
    change_points: Vec<u64>,
    /// The priority the next demoted task gets (`depth - 1`, then lower).
    next_low: u64,
}

impl Explore {
    /// Draws `depth - 1` distinct change points uniformly in `1..=steps`.
    fn choose_change_points(&mut self, rng: &mut Rng, depth: u32, steps: u32) {
        let want = (depth.saturating_sub(1) as u64).min(steps as u64);
        while (self.change_points.len() as u64) < want {
            let c = rng.below(steps as u64) + 1;
            if !self.change_points.contains(&c) {
                self.change_points.push(c);
            }
        }
        self.change_points.sort_unstable();
        self.next_low = depth.saturating_sub(1) as u64;
    }

    /// The priority of `id`, drawn on first sight.
    fn priority(&mut self, id: TaskId, rng: &mut Rng) -> u64 {
        let key = id.key();
        if self.prio.len() <= key {
            self.prio.resize(key + 1, (TaskId::NONE, 0));
        }
        if self.prio[key].0 != id {
            self.prio[key] = (id, (rng.next_u64() >> 2) | 1 << 62);
        }
        self.prio[key].1
    }
}

impl Core {
    /// One pass of an exploring strategy: as many steps as there were
    /// runnable tasks when it began (so I/O and deadlines are collected as
    /// often as under the batch pass), each picking among all runnable
    /// tasks, including ones woken during the pass.
    fn explore_pass(&self, main_id: TaskId, poll_main: &mut impl FnMut() -> bool) {
        let n = self.runq.borrow().len();
        let pct = matches!(self.schedule, Schedule::Pct { .. });
        for _ in 0..n {
            let id = {
                let mut q = self.runq.borrow_mut();
                if q.is_empty() {
                    break;
                }
                let mut rng = self.rng.borrow_mut();
                let i = if pct {
                    let mut ex = self.explore.borrow_mut();
                    let mut best = 0;
                    let mut best_prio = 0;
                    for (i, &id) in q.iter().enumerate() {
                        let p = ex.priority(id, &mut rng);
                        if p > best_prio {
                            best = i;
                            best_prio = p;
                        }
                    }
                    best
                } else {
                    rng.below(q.len() as u64) as usize
                };
                q.swap_remove(i)
            };
            self.step(id, main_id, poll_main);
            if pct {
                let mut ex = self.explore.borrow_mut();
                ex.steps += 1;
                if ex.change_points.first() == Some(&ex.steps) {
                    ex.change_points.remove(0);
                    let low = ex.next_low;
                    ex.next_low = low.saturating_sub(1);
                    if let Some(slot) = ex.prio.get_mut(id.key()) {
                        if slot.0 == id {
                            slot.1 = low;
                        }
                    }
                }
            }
        }
    }
}
