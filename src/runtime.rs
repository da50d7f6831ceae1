//! The runtime's state ([`Core`]), how code finds it (a thread-local
//! pointer), and the entry points [`run`] and [`Builder`].
//!
//! The scheduling loop itself is in `scheduler.rs`.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;

use slab::Slab;

use crate::cancel::ScopeNode;
use crate::clock::{Clock, Instant, SystemClock};
use crate::driver::Driver;
use crate::instrument::Instrument;
use crate::rng::Rng;
use crate::task::{Header, MainTask, RawTask, Shared, Task, TaskId};
use crate::timers::Timers;

/// Source of `Core::run_id`: 1, 2, ... (0 means "no run" in `IoState`).
static NEXT_RUN_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

thread_local! {
    /// The runtime running on this thread, if any. Set by `run` for its
    /// whole duration (teardown included) and cleared after.
    static CONTEXT: Cell<*const Core> = const { Cell::new(std::ptr::null()) };
}

/// One live task, as the scheduler sees it. Only the runtime thread touches
/// this; the part other threads may touch is the task's [`Header`].
pub(crate) struct TaskSlot {
    pub(crate) task: Arc<dyn RawTask>,
    pub(crate) gen: u32,
    /// The cancel status the task starts each step in (its nursery's scope,
    /// or its own root while being `start`ed).
    pub(crate) root: Rc<ScopeNode>,
    /// This task's key in `root`'s task list.
    pub(crate) root_reg: usize,
    pub(crate) name: Cow<'static, str>,
    pub(crate) parent: TaskId,
    /// What the task last blocked on, for [`task_tree`](crate::task_tree).
    pub(crate) waiting_on: &'static str,
}

/// Everything the runtime owns. Lives on `run`'s stack frame (boxed, so its
/// address is stable) and is reached through `CONTEXT`.
pub(crate) struct Core {
    pub(crate) tasks: RefCell<Slab<TaskSlot>>,
    next_gen: Cell<u32>,
    /// The next pass's batch: tasks made runnable since the current pass
    /// began (rule S1).
    pub(crate) runq: RefCell<Vec<TaskId>>,
    /// The task being stepped, or `TaskId::NONE`.
    pub(crate) current_task: Cell<TaskId>,
    /// The cancel status of the code being polled right now: the current
    /// task's root, or the innermost cancel scope being polled. A checkpoint
    /// reads `effectively_cancelled` through it: one load, whatever the depth.
    /// See `cancel.rs` for why the pointer is always valid when read.
    pub(crate) current_status: Cell<*const ScopeNode>,
    /// What the code being polled blocked on (set by leaf futures).
    pub(crate) waiting_on: Cell<&'static str>,
    pub(crate) timers: RefCell<Timers>,
    pub(crate) clock: Box<dyn Clock>,
    pub(crate) rng: RefCell<Rng>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) driver: RefCell<Driver>,
    pub(crate) instruments: RefCell<Vec<Rc<dyn Instrument>>>,
    /// `!instruments.is_empty()`, as one load for the hot paths.
    pub(crate) has_instruments: Cell<bool>,
    /// Tasks in `wait_all_tasks_blocked`, in arrival order.
    pub(crate) idle_waiters: RefCell<Slab<(u64, Option<Waker>)>>,
    pub(crate) idle_ticket: Cell<u64>,
    /// The root cancel status of the main task; cancelled when main returns,
    /// to stop tasks orphaned by a dropped nursery.
    pub(crate) system_scope: Rc<ScopeNode>,
    pub(crate) main_id: Cell<TaskId>,
    /// Task steps since the I/O driver was last polled.
    pub(crate) steps_since_io: Cell<u32>,
    /// Blocking waits left that may spin for a cross-thread wake-up.
    pub(crate) remote_streak: Cell<u8>,
    /// Tasks of the current pass's batch not stepped yet.
    pub(crate) batch_left: Cell<usize>,
    /// I/O operations completed at once, with nobody else runnable, since
    /// the last yield or epoll poll (see `readiness::after_io`).
    pub(crate) io_streak: Cell<u32>,
    /// Memory-channel operations completed at once in the current step
    /// (see `readiness::after_channel_op`); reset at each step.
    pub(crate) channel_streak: Cell<u32>,
    /// An I/O operation yielded on its budget: poll epoll before the next
    /// pass even if `IO_POLL_INTERVAL` steps have not run.
    pub(crate) io_poll_requested: Cell<bool>,
    /// Identifies this run, so a socket that outlives one run is registered
    /// afresh in the next.
    pub(crate) run_id: u64,
    /// Lots to break when a task ends (`ParkingLot::add_breaker`): a
    /// `Lock` registers its owner here (rule Y3). Usually empty or short.
    pub(crate) lot_breakers: RefCell<Vec<(TaskId, std::rc::Weak<RefCell<crate::sync::parking_lot::Lot>>)>>,
    /// Cancel checks made so far (every checkpoint makes one), for
    /// `testing::assert_checkpoints`.
    pub(crate) cancel_checks: Cell<u64>,
    /// Schedule points offered without yielding (`after_io` found nobody
    /// else runnable), for `testing::assert_checkpoints`.
    pub(crate) yield_offers: Cell<u64>,
    /// The default limiter of `to_thread::run_sync`, made on first use.
    pub(crate) thread_limiter: std::cell::OnceCell<Rc<crate::sync::CapacityLimiter>>,
}

impl Core {
    /// The runtime of this thread.
    ///
    /// # Panics
    /// Outside [`run`]: every trioxide operation needs a running runtime.
    #[inline]
    pub(crate) fn current() -> &'static Core {
        match Core::try_current() {
            Some(core) => core,
            None => panic!("this operation must be called from inside trioxide::run"),
        }
    }

    #[inline]
    pub(crate) fn try_current() -> Option<&'static Core> {
        let ptr = CONTEXT.with(|c| c.get());
        // SAFETY: `run` sets CONTEXT to its boxed Core and clears it before
        // the box is dropped, so a non-null pointer is a live Core on this
        // thread. The `'static` lifetime is a white lie kept inside the crate:
        // no caller stores the reference beyond the call that got it.
        unsafe { ptr.as_ref() }
    }

    #[inline]
    pub(crate) fn push_runnable(&self, id: TaskId) {
        self.runq.borrow_mut().push(id);
        if self.has_instruments.get() {
            self.each_instrument(|i| i.task_scheduled(id));
        }
    }

    /// Wakes a task by id on the runtime thread (cancellation wakes whole
    /// tasks; remote wake-ups arrive as ids). `from_remote` also clears the
    /// task's remote flag, with the Acquire that makes the remote thread's
    /// writes visible.
    pub(crate) fn wake_task(&self, id: TaskId, from_remote: bool) {
        let tasks = self.tasks.borrow();
        if let Some(slot) = tasks.get(id.key()) {
            if slot.gen == id.gen() {
                let header: &Header = slot.task.header();
                if from_remote {
                    header.remote_scheduled.swap(false, Ordering::Acquire);
                }
                let task = slot.task.clone();
                drop(tasks);
                task.header().schedule_local(self);
            }
        }
    }

    fn next_gen(&self) -> u32 {
        let g = self.next_gen.get().wrapping_add(1);
        self.next_gen.set(g);
        g
    }

    /// Adds a task, runnable in the next pass. `root` is the cancel status it
    /// starts each step in.
    pub(crate) fn spawn<F>(&self, future: F, root: Rc<ScopeNode>, name: Cow<'static, str>, parent: TaskId) -> TaskId
    where
        F: Future<Output = ()> + 'static,
    {
        let mut tasks = self.tasks.borrow_mut();
        let entry = tasks.vacant_entry();
        let gen = self.next_gen();
        let id = TaskId::new(entry.key(), gen);
        let task = Task::allocate(id, &self.shared, future);
        let root_reg = root.register_task(id);
        entry.insert(TaskSlot { task, gen, root, root_reg, name, parent, waiting_on: "" });
        drop(tasks);
        self.runq.borrow_mut().push(id);
        if self.has_instruments.get() {
            self.each_instrument(|i| i.task_spawned(id));
            self.each_instrument(|i| i.task_scheduled(id));
        }
        id
    }

    /// Whether task `id` is still in the slab.
    pub(crate) fn task_alive(&self, id: TaskId) -> bool {
        self.tasks.borrow().get(id.key()).is_some_and(|s| s.gen == id.gen())
    }

    /// Removes a finished task from the slab.
    pub(crate) fn remove_task(&self, id: TaskId) {
        let slot = self.tasks.borrow_mut().remove(id.key());
        slot.root.unregister_task(slot.root_reg);
        if !self.lot_breakers.borrow().is_empty() {
            crate::sync::parking_lot::run_breakers(self, id);
        }
        if self.has_instruments.get() {
            self.each_instrument(|i| i.task_exited(id));
        }
        drop(slot);
    }

    /// Whether a task that just completed an I/O operation without waiting
    /// should yield (see `readiness::after_io`).
    #[inline]
    pub(crate) fn should_yield_after_io(&self) -> bool {
        self.yield_offers.set(self.yield_offers.get() + 1);
        if self.others_runnable() {
            self.io_streak.set(0);
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
        let streak = self.io_streak.get() + 1;
        if streak >= crate::readiness::IO_BUDGET {
            self.io_streak.set(0);
            self.io_poll_requested.set(true);
            return true;
        }
        self.io_streak.set(streak);
        false
    }

    /// `should_yield_after_io` for a memory-channel operation: while other
    /// tasks are runnable, yields only at every `CHANNEL_BUDGET`-th
    /// operation completed at once in this step.
    #[inline]
    pub(crate) fn should_yield_after_channel_op(&self) -> bool {
        self.yield_offers.set(self.yield_offers.get() + 1);
        if !self.others_runnable() {
            return self.io_budget_spent();
        }
        let n = self.channel_streak.get() + 1;
        if n < crate::readiness::CHANNEL_BUDGET {
            self.channel_streak.set(n);
            return false;
        }
        self.channel_streak.set(0);
        self.io_streak.set(0);
        true
    }

    /// The current time on the run's clock.
    pub(crate) fn now(&self) -> Instant {
        self.clock.current_time()
    }

    /// The cancel status of the code being polled.
    #[inline]
    pub(crate) fn current_status_ptr(&self) -> *const ScopeNode {
        let p = self.current_status.get();
        assert!(!p.is_null(), "this operation must be called from inside a trioxide task");
        p
    }

    /// Whether the code being polled is effectively cancelled: the one load
    /// every checkpoint makes.
    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel_checks.set(self.cancel_checks.get() + 1);
        let p = self.current_status_ptr();
        // SAFETY: see `cancel.rs` ("Why current_status is valid"): a
        // non-null current_status points to a node kept alive by the task
        // slot or the scope future being polled.
        unsafe { (*p).effectively_cancelled.get() }
    }

    pub(crate) fn each_instrument(&self, mut f: impl FnMut(&dyn Instrument)) {
        // Clone the list so a hook may add or remove instruments.
        let list: Vec<Rc<dyn Instrument>> = self.instruments.borrow().clone();
        for i in &list {
            f(&**i);
        }
    }
}

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
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

/// What a run left behind, from [`Builder::run_with_report`]: all zero when
/// structured concurrency held.
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
}

impl Builder {
    /// A builder with a random seed (or `TRIOXIDE_SEED` from the
    /// environment), the system clock and no instruments.
    pub fn new() -> Builder {
        Builder { seed: None, clock: None, instruments: Vec::new() }
    }

    /// Fixes the scheduler's random seed: the same seed and the same program
    /// give the same interleaving.
    pub fn seed(mut self, seed: u64) -> Builder {
        self.seed = Some(seed);
        self
    }

    /// Uses `clock` instead of the system clock (e.g. a
    /// [`MockClock`](crate::MockClock)).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Builder {
        self.clock = Some(Box::new(clock));
        self
    }

    /// Installs an instrument for the whole run.
    pub fn instrument(mut self, instrument: Rc<dyn Instrument>) -> Builder {
        self.instruments.push(instrument);
        self
    }

    /// Runs `main` to completion and returns its output.
    ///
    /// # Panics
    /// If called inside a running trioxide runtime, or if `main` panics
    /// (after every other task has finished).
    pub fn run<F: Future>(self, main: F) -> F::Output {
        self.run_with_report(main).0
    }

    /// Like [`run`](Builder::run), also reporting what was left behind.
    pub fn run_with_report<F: Future>(self, main: F) -> (F::Output, RunReport) {
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
            next_gen: Cell::new(0),
            runq: RefCell::new(Vec::new()),
            current_task: Cell::new(TaskId::NONE),
            current_status: Cell::new(std::ptr::null()),
            waiting_on: Cell::new(""),
            timers: RefCell::new(Timers::default()),
            clock: self.clock.unwrap_or_else(|| Box::new(SystemClock::new())),
            rng: RefCell::new(Rng::new(seed)),
            shared: Arc::new(Shared::new(mio_waker)),
            driver: RefCell::new(driver),
            has_instruments: Cell::new(!self.instruments.is_empty()),
            instruments: RefCell::new(self.instruments),
            idle_waiters: RefCell::new(Slab::new()),
            idle_ticket: Cell::new(0),
            system_scope: ScopeNode::new_root(),
            main_id: Cell::new(TaskId::NONE),
            steps_since_io: Cell::new(0),
            remote_streak: Cell::new(0),
            batch_left: Cell::new(0),
            io_streak: Cell::new(0),
            channel_streak: Cell::new(0),
            io_poll_requested: Cell::new(false),
            run_id: NEXT_RUN_ID.fetch_add(1, Ordering::Relaxed),
            lot_breakers: RefCell::new(Vec::new()),
            cancel_checks: Cell::new(0),
            yield_offers: Cell::new(0),
            thread_limiter: std::cell::OnceCell::new(),
        });
        let guard = ContextGuard::enter(&core);
        core.clock.start_clock();
        let main_task: Arc<Task<MainTask>> = {
            let id = core.spawn(MainTask, core.system_scope.clone(), Cow::Borrowed("<main>"), TaskId::NONE);
            core.main_id.set(id);
            let tasks = core.tasks.borrow();
            let raw: Arc<dyn RawTask> = tasks[id.key()].task.clone();
            drop(tasks);
            // SAFETY: the slot we just filled holds an `Arc<Task<MainTask>>`
            // (spawned two lines up); this only recovers its concrete type.
            unsafe { Arc::from_raw(Arc::into_raw(raw) as *const Task<MainTask>) }
        };
        let main = std::pin::pin!(main);
        let out = core.run_loop(main, &main_task);
        drop(main_task);
        let report = RunReport {
            tasks_left: core.tasks.borrow().len(),
            timers_left: core.timers.borrow().len(),
            task_allocations_left: core.shared.live_allocations.load(Ordering::Relaxed),
            seed,
        };
        drop(guard);
        (out, report)
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
pub fn run<F: Future>(main: F) -> F::Output {
    Builder::new().run(main)
}

/// Installs the Core in CONTEXT; on drop (normal or unwinding) tears down
/// what is left while the Core is still reachable, then clears CONTEXT.
struct ContextGuard<'a> {
    core: &'a Core,
}

impl<'a> ContextGuard<'a> {
    fn enter(core: &'a Core) -> Self {
        CONTEXT.with(|c| c.set(core as *const Core));
        ContextGuard { core }
    }
}

impl Drop for ContextGuard<'_> {
    fn drop(&mut self) {
        // Drop the futures of tasks still alive (only after a panic) on this
        // thread, while their destructors can still reach the runtime.
        let tasks: Vec<Arc<dyn RawTask>> = self.core.tasks.borrow().iter().map(|(_, s)| s.task.clone()).collect();
        for t in &tasks {
            // SAFETY: runtime thread, no task is being polled any more, and
            // `tasks` holds a count on each.
            unsafe { t.drop_future() };
        }
        drop(tasks);
        self.core.tasks.borrow_mut().clear();
        // Jobs sent from other threads from now on are refused; those
        // queued but not run are dropped here, which tells their threads
        // the run is over (`from_thread`).
        drop(self.core.shared.close_jobs());
        CONTEXT.with(|c| c.set(std::ptr::null()));
    }
}
