//! The entry points: [`run`], [`Builder`] and [`RunReport`].
//!
//! `run_with_report` makes the [`Core`], installs it in the thread-local
//! context, drives the scheduler loop (`scheduler.rs`) until main and every
//! other task are done, and reports what was left behind.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use slab::Slab;

use crate::kernel::budget::Budget;
use crate::kernel::cancel::ScopeNode;
use crate::kernel::clock::{Clock, SystemClock};
use crate::kernel::context::ContextGuard;
use crate::kernel::idle::IdleWaiters;
use crate::kernel::instrument::Instrument;
use crate::kernel::io::driver::Driver;
use crate::kernel::remote::Shared;
use crate::kernel::rng::Rng;
use crate::kernel::run_local::RunLocals;
use crate::kernel::scheduler::{Explore, Schedule};
use crate::kernel::task::{Interner, MainTask, TaskId};
use crate::kernel::timers::Timers;
use crate::kernel::trace::Trace;
use crate::kernel::Core;

/// Source of `Core::run_id`: 1, 2, ... (0 means "no run" in `IoState`).
static NEXT_RUN_ID: AtomicU64 = AtomicU64::new(1);

/// Configures and starts a run: the scheduler's seed, the clock, and
/// instruments.
///
/// ```
/// use trioxide::Builder;
/// let answer = Builder::new().seed(7).run(async { 6 * 7 });
/// assert_eq!(answer, 42);
/// ```
#[must_use = "a Builder does nothing until you call .run(main)"]
pub struct Builder {
    seed: Option<u64>,
    clock: Option<Box<dyn Clock>>,
    instruments: Vec<Rc<dyn Instrument>>,
    schedule: Schedule,
    trace: bool,
    threads_inline: bool,
    on_stall: Option<fn() -> !>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("seed", &self.seed)
            .field("mock_or_custom_clock", &self.clock.is_some())
            .field("instruments", &self.instruments.len())
            .field("schedule", &self.schedule)
            .field("trace", &self.trace)
            .finish()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

/// What a run left behind, from [`Builder::run_with_report`]: all zero when
/// structured concurrency held.
///
/// ```
/// use trioxide::{open_nursery, BoxError, Builder};
/// let (out, report) = Builder::new().seed(1).run_with_report(open_nursery(|n| async move {
///     n.start_soon(async { Ok::<_, BoxError>(()) })?;
///     Ok::<_, BoxError>(7)
/// }));
/// assert_eq!(out.unwrap(), Some(7));
/// assert_eq!((report.tasks_left, report.timers_left, report.task_allocations_left), (0, 0, 0));
/// assert_eq!(report.seed, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    /// Tasks still in the slab when `run` returned.
    pub tasks_left: usize,
    /// Timers still in the timer table.
    pub timers_left: usize,
    /// Task allocations still alive (a waker kept somewhere holds one). A
    /// waker held by another thread counts until that thread drops it: a
    /// name-resolution thread of `open_tcp_stream` that is still finishing
    /// when the run ends shows here as 1.
    pub task_allocations_left: usize,
    /// The seed the scheduler used (to replay an interleaving).
    pub seed: u64,
    /// The hash of the run's trace if it was traced ([`Builder::trace`]),
    /// else `None`: equal for two runs that stepped the same tasks, fired
    /// the same timers and saw the same I/O events in the same order.
    pub trace_hash: Option<u64>,
}

impl Builder {
    /// A builder with a random seed (or `TRIOXIDE_SEED` from the
    /// environment), the system clock and no instruments.
    ///
    /// ```
    /// let out = trioxide::Builder::new().run(async { "ran" });
    /// assert_eq!(out, "ran");
    /// ```
    pub fn new() -> Builder {
        Builder {
            seed: None,
            clock: None,
            instruments: Vec::new(),
            schedule: Schedule::Batch,
            trace: false,
            threads_inline: false,
            on_stall: None,
        }
    }

    /// Fixes the scheduler's random seed: the same seed and the same program
    /// give the same interleaving.
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use trioxide::{checkpoint, open_nursery, BoxError, Builder};
    /// // The order two tasks interleave in, under a seed.
    /// fn trace(seed: u64) -> Vec<u8> {
    ///     let log = Rc::new(RefCell::new(Vec::new()));
    ///     let l = log.clone();
    ///     Builder::new().seed(seed).run(open_nursery(|n| async move {
    ///         for who in [b'a', b'b'] {
    ///             let l = l.clone();
    ///             n.start_soon(async move {
    ///                 for _ in 0..8 { l.borrow_mut().push(who); checkpoint().await?; }
    ///                 Ok::<_, BoxError>(())
    ///             })?;
    ///         }
    ///         Ok::<_, BoxError>(())
    ///     })).unwrap();
    ///     let v = log.borrow().clone();
    ///     v
    /// }
    /// assert_eq!(trace(7), trace(7)); // one seed, one interleaving
    /// ```
    pub fn seed(mut self, seed: u64) -> Builder {
        self.seed = Some(seed);
        self
    }

    /// Uses `clock` instead of the system clock (e.g. a
    /// [`MockClock`](crate::MockClock)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{current_time, sleep, Builder, MockClock};
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO)); // jump when all tasks wait
    /// let slept = Builder::new().clock(clock).run(async {
    ///     let t0 = current_time();
    ///     sleep(Duration::from_secs(3600)).await.unwrap(); // an hour, at once
    ///     current_time().saturating_duration_since(t0)
    /// });
    /// assert_eq!(slept, Duration::from_secs(3600));
    /// ```
    pub fn clock(mut self, clock: impl Clock + 'static) -> Builder {
        self.clock = Some(Box::new(clock));
        self
    }

    /// Installs an instrument for the whole run.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use trioxide::{Builder, Instrument, TaskId};
    /// #[derive(Debug, Default)]
    /// struct Count(Cell<u32>);
    /// impl Instrument for Count {
    ///     fn task_spawned(&self, _: TaskId) { self.0.set(self.0.get() + 1); }
    /// }
    /// let c = Rc::new(Count::default());
    /// Builder::new().instrument(c.clone()).run(async {});
    /// assert_eq!(c.0.get(), 1); // the main task
    /// ```
    pub fn instrument(mut self, instrument: Rc<dyn Instrument>) -> Builder {
        self.instruments.push(instrument);
        self
    }

    /// Picks the scheduling strategy (default: [`Schedule::Batch`], Trio's
    /// pass). The exploring strategies are for tests: with
    /// [`seed`](Builder::seed), each seed is one replayable interleaving.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use trioxide::{checkpoint, open_nursery, BoxError, Builder, Schedule};
    /// // A lost update: read, checkpoint, write back.
    /// let lost = |seed| {
    ///     let c = Rc::new(Cell::new(0));
    ///     let c2 = c.clone();
    ///     Builder::new().seed(seed).schedule(Schedule::Random).run(open_nursery(|n| async move {
    ///         for _ in 0..2 {
    ///             let c = c2.clone();
    ///             n.start_soon(async move {
    ///                 let v = c.get();
    ///                 checkpoint().await?;
    ///                 c.set(v + 1);
    ///                 Ok::<_, BoxError>(())
    ///             })?;
    ///         }
    ///         Ok::<_, BoxError>(())
    ///     })).unwrap();
    ///     c.get() != 2
    /// };
    /// assert!((0..50).any(lost)); // some seed interleaves the two
    /// ```
    pub fn schedule(mut self, schedule: Schedule) -> Builder {
        self.schedule = schedule;
        self
    }

    /// Records the run's trace ([`Trace`]) and reports its hash in
    /// [`RunReport::trace_hash`]. Off by default; off, it costs one
    /// predictable branch per task step.
    ///
    /// ```
    /// use trioxide::{checkpoint, Builder};
    /// let hash = |seed| {
    ///     let (_, report) = Builder::new().seed(seed).trace(true).run_with_report(async { checkpoint().await });
    ///     report.trace_hash.unwrap()
    /// };
    /// assert_eq!(hash(4), hash(4));
    /// ```
    pub fn trace(mut self, on: bool) -> Builder {
        self.trace = on;
        self
    }

    /// Makes `to_thread::run_sync` run its closures inline on the runtime
    /// thread (for `trioxide::sim`, where a worker thread's timing would
    /// make the run nondeterministic).
    pub(crate) fn threads_inline(mut self, on: bool) -> Builder {
        self.threads_inline = on;
        self
    }

    /// Calls `hook` (which must not return: it panics) when the run is
    /// stuck for good: nothing is runnable, no timer is armed, no task
    /// waits for idleness, no I/O source is registered, no remote wake-up
    /// or job is queued, and no `RuntimeHandle` is alive (another thread
    /// could send a job through it). Without the hook such a run blocks in the I/O
    /// wait forever, which is right for a real run (an outside thread may
    /// still hold a waker) but a hang in a closed world such as
    /// `trioxide::sim`, which sets it.
    pub(crate) fn on_stall(mut self, hook: fn() -> !) -> Builder {
        self.on_stall = Some(hook);
        self
    }

    /// Like [`run_with_report`](Builder::run_with_report), tracing the run
    /// and keeping its first `keep` events (all are hashed).
    ///
    /// ```
    /// use trioxide::{Builder, TraceEvent};
    /// let (out, report, trace) = Builder::new().seed(1).run_with_trace(async { 5 }, 16);
    /// assert_eq!(out, 5);
    /// assert_eq!(report.trace_hash, Some(trace.hash()));
    /// assert!(matches!(trace.events(), [TraceEvent::Step(_)]));
    /// ```
    ///
    /// # Panics
    /// As [`run`](Builder::run).
    #[track_caller]
    pub fn run_with_trace<F: Future>(mut self, main: F, keep: usize) -> (F::Output, RunReport, Trace) {
        self.trace = true;
        self.run_inner(main, keep)
    }

    /// Runs `main` to completion and returns its output.
    ///
    /// # Panics
    /// If called inside a running trioxide runtime, or if `main` panics
    /// (after every other task has finished).
    ///
    /// ```
    /// use trioxide::{open_nursery, BoxError, Builder};
    /// let out = Builder::new().seed(3).run(open_nursery(|n| async move {
    ///     n.start_soon(async { Ok::<_, BoxError>(()) })?;
    ///     Ok::<_, BoxError>("all children done")
    /// }));
    /// assert_eq!(out.unwrap(), Some("all children done"));
    /// ```
    #[track_caller]
    pub fn run<F: Future>(self, main: F) -> F::Output {
        self.run_with_report(main).0
    }

    /// Like [`run`](Builder::run), also reporting what was left behind.
    ///
    /// ```
    /// let (out, report) = trioxide::Builder::new().run_with_report(async { 1 + 1 });
    /// assert_eq!(out, 2);
    /// assert_eq!(report.tasks_left, 0);
    /// ```
    ///
    /// # Panics
    /// As [`run`](Builder::run).
    #[track_caller]
    pub fn run_with_report<F: Future>(self, main: F) -> (F::Output, RunReport) {
        let (out, report, _) = self.run_inner(main, 0);
        (out, report)
    }

    #[track_caller]
    fn run_inner<F: Future>(self, main: F, keep: usize) -> (F::Output, RunReport, Trace) {
        assert!(
            Core::try_current().is_none(),
            "trioxide::run called inside a running trioxide runtime; use a nursery instead"
        );
        let (driver, mio_waker) = match Driver::new() {
            Ok(d) => d,
            Err(e) => panic!("trioxide: cannot create the I/O driver (epoll): {e}"),
        };
        let seed = self.seed.unwrap_or_else(Rng::seed_from_env_or_entropy);
        let core = Box::new(Core {
            tasks: RefCell::new(Slab::new()),
            static_names: Interner::new("", 1024),
            owned_names: RefCell::new(HashMap::new()),
            waiting_names: Interner::new("", 256),
            next_gen: Cell::new(0),
            runq: RefCell::new(Vec::new()),
            current_task: Cell::new(TaskId::NONE),
            current_status: Cell::new(std::ptr::null()),
            waiting_on: Cell::new(""),
            timers: RefCell::new(Timers::default()),
            clock: self.clock.unwrap_or_else(|| Box::new(SystemClock::new())),
            rng: RefCell::new(Rng::new(seed)),
            schedule: self.schedule,
            explore: RefCell::new(Explore::default()),
            tracing: self.trace,
            trace: RefCell::new(Trace::new(keep)),
            threads_inline: self.threads_inline,
            on_stall: self.on_stall,
            shared: Arc::new(Shared::new(mio_waker)),
            driver: RefCell::new(driver),
            has_instruments: Cell::new(!self.instruments.is_empty()),
            instruments: RefCell::new(self.instruments),
            idle: IdleWaiters::default(),
            system_scope: ScopeNode::new_root(),
            main_id: Cell::new(TaskId::NONE),
            steps_since_io: Cell::new(0),
            remote_streak: Cell::new(0),
            batch_left: Cell::new(0),
            budget: Budget::default(),
            run_id: NEXT_RUN_ID.fetch_add(1, Ordering::Relaxed),
            lot_breakers: RefCell::new(Vec::new()),
            cancel_checks: Cell::new(0),
            run_locals: RunLocals::default(),
        });
        let guard = ContextGuard::enter(&core);
        core.clock.start_clock();
        let id = core.spawn(MainTask, core.system_scope.clone(), Some(Cow::Borrowed("<main>")), TaskId::NONE);
        core.main_id.set(id);
        let main = std::pin::pin!(main);
        let out = core.run_loop(main);
        let report = RunReport {
            tasks_left: core.tasks.borrow().len(),
            timers_left: core.timers.borrow().len(),
            task_allocations_left: core.tasks.borrow().len() + core.shared.detached_allocations.load(Ordering::Relaxed),
            seed,
            trace_hash: core.tracing.then(|| core.trace.borrow().hash()),
        };
        drop(guard);
        let trace = core.trace.replace(Trace::new(0));
        (out, report, trace)
    }
}

/// Runs `main` on a new single-threaded runtime and returns its output.
///
/// Every task `main` starts lives in a nursery inside it, so when `run`
/// returns, nothing of the run is left.
///
/// ```
/// use std::time::Duration;
/// let v = trioxide::run(async {
///     trioxide::sleep(Duration::from_millis(1)).await?;
///     Ok::<_, trioxide::Cancelled>(5)
/// });
/// assert_eq!(v, Ok(5));
/// ```
#[track_caller]
pub fn run<F: Future>(main: F) -> F::Output {
    Builder::new().run(main)
}
