//! [`Core`]: everything one run owns, with the invariant each field keeps,
//! and the small API the layers above the kernel use to reach it.
//!
//! The fields are private to the kernel (`pub(super)`): the scheduler pass,
//! the cancel-status tree, the budget and the I/O driver read and write them
//! directly, and nothing outside `src/kernel/` can. The layers above go
//! through the `pub(crate)` methods in the second `impl` block below: the
//! current task, what it waits on, the cancel check, spawning (into a
//! nursery's scope or as a system task), re-parenting a task for `start`,
//! timers, swapping the current cancel status, and run-local slots.
//!
//! The shape follows tokio's `current_thread` scheduler, split three ways:
//! * this file: the run's state (`Core`);
//! * `context.rs`: how code finds it (a thread-local pointer);
//! * `run.rs`: [`Builder`](crate::Builder), [`run`](crate::run) and
//!   [`RunReport`](crate::RunReport), which make a `Core` and drive it.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::ptr::NonNull;
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;

use slab::Slab;

use crate::kernel::budget::Budget;
use crate::kernel::cancel::ScopeNode;
use crate::kernel::clock::{Clock, Instant};
use crate::kernel::idle::IdleWaiters;
use crate::kernel::instrument::Instrument;
use crate::kernel::io::driver::Driver;
use crate::kernel::parking_lot::Lot;
use crate::kernel::remote::Shared;
use crate::kernel::rng::Rng;
use crate::kernel::run_local::RunLocals;
use crate::kernel::scheduler::{Explore, Schedule};
use crate::kernel::task::{self, Header, Interner, TaskId};
use crate::kernel::timers::{TimerAction, Timers};
use crate::kernel::trace::Trace;

/// Everything the runtime owns. Lives on `run`'s stack frame (boxed, so its
/// address is stable) and is reached through the thread-local context
/// (`context.rs`). Only the runtime thread touches it; the one part other
/// threads reach is `shared`.
pub(crate) struct Core {
    /// Every live task, by `TaskId::key`: a thin pointer to its header,
    /// whose `id` has the generation. A task is in the slab from `spawn`
    /// until the step in which its future completes (`remove_task`), and
    /// each entry holds the runtime's count on the task (so the header is
    /// alive while the entry is there). Borrowed only briefly, never across
    /// a poll.
    pub(super) tasks: RefCell<Slab<NonNull<Header>>>,
    /// Task names given as `&'static str` (`start_soon_named("...")`,
    /// system tasks), so a header keeps a `u16` index (`Header::name`);
    /// entry 0 stands for "the future's type". At most 1024.
    pub(super) static_names: Interner,
    /// The other given names (owned strings, or static ones once
    /// `static_names` is full), by `TaskId::key`; their headers' `name` is
    /// `NAME_OWNED`. Touched only when such tasks spawn and exit, and by
    /// the task tree.
    pub(super) owned_names: RefCell<HashMap<usize, Cow<'static, str>>>,
    /// The distinct strings tasks have blocked on, so a header keeps a
    /// one-byte index (`Header::waiting_on`); entry 0 is "". At most 256
    /// (a task blocking on a 257th shows "").
    pub(super) waiting_names: Interner,
    /// The generation given to the last spawned task; wraps.
    pub(super) next_gen: Cell<u32>,
    /// The next pass's batch: tasks made runnable since the current pass
    /// began (rule S1). A task appears at most once (rule S4): it is pushed
    /// only when its header's `scheduled` flag goes from false to true.
    /// Under an exploring `schedule` it holds every runnable task (the
    /// pass picks from it and `swap_remove`s the pick), so its order is
    /// not queue order there.
    pub(super) runq: RefCell<Vec<TaskId>>,
    /// Tasks of the current pass's batch not stepped yet (0 between
    /// passes, and always 0 under an exploring `schedule`, whose runnable
    /// tasks all stay in `runq`). With `runq`, tells the budget whether
    /// anybody else waits.
    pub(super) batch_left: Cell<usize>,
    /// The task being stepped, or `TaskId::NONE` between steps.
    pub(super) current_task: Cell<TaskId>,
    /// The cancel status of the code being polled right now: the current
    /// task's root, or the innermost cancel scope being polled; null
    /// between steps. A checkpoint reads `effectively_cancelled` through
    /// it: one load, whatever the depth. See `cancel.rs` ("Why
    /// current_status is valid") for why it is never dangling when read.
    pub(super) current_status: Cell<*const ScopeNode>,
    /// What the code being polled blocked on (set by leaf futures, copied
    /// into the task's slot when the step returns pending).
    pub(super) waiting_on: Cell<&'static str>,
    /// Deadlines: sleeps and cancel scopes. Expired once per pass.
    pub(super) timers: RefCell<Timers>,
    /// The run's clock (system or mock); read only when a timer is armed.
    pub(super) clock: Box<dyn Clock>,
    /// The seeded source of the pass's reverse-or-not bit (rule S2), and
    /// of every choice of the exploring strategies.
    pub(super) rng: RefCell<Rng>,
    /// How the next task is picked; fixed for the run (`Builder::schedule`).
    pub(super) schedule: Schedule,
    /// PCT's priorities and change points; empty unless `schedule` is
    /// `Pct`. Borrowed only between steps, never across a poll.
    pub(super) explore: RefCell<Explore>,
    /// Whether `trace` records; fixed for the run, so the step's test of
    /// it always goes the same way.
    pub(super) tracing: bool,
    /// The run trace (`Builder::trace`): untouched while `tracing` is
    /// false. Borrowed only for one `record`, never across a poll.
    pub(super) trace: RefCell<Trace>,
    /// Whether `to_thread::run_sync` runs its closure inline on the
    /// runtime thread instead of a worker (`trioxide::sim`); fixed for the
    /// run.
    pub(super) threads_inline: bool,
    /// Called when nothing can ever wake a task again (`Builder::on_stall`,
    /// set by `trioxide::sim`); fixed for the run.
    pub(super) on_stall: Option<fn() -> !>,
    /// What other threads may touch: remote wake-ups and jobs.
    pub(super) shared: Arc<Shared>,
    /// The I/O driver: epoll and the registered sources.
    pub(super) driver: RefCell<Driver>,
    /// Installed instruments; a hook may add or remove some.
    pub(super) instruments: RefCell<Vec<Rc<dyn Instrument>>>,
    /// `!instruments.is_empty()`, as one load for the hot paths.
    pub(super) has_instruments: Cell<bool>,
    /// Tasks in `wait_all_tasks_blocked`, woken by the idle loop, those of
    /// the smallest cushion together.
    pub(super) idle: IdleWaiters,
    /// The root cancel status of the main task and of system tasks;
    /// cancelled when main returns, to stop tasks orphaned by a dropped
    /// nursery.
    pub(super) system_scope: Rc<ScopeNode>,
    /// The main task's id: its future is polled from `run`'s frame.
    pub(super) main_id: Cell<TaskId>,
    /// Task steps since the I/O driver was last polled; the pass polls it
    /// (timeout 0) once this reaches `IO_POLL_INTERVAL`.
    pub(super) steps_since_io: Cell<u32>,
    /// Blocking waits left that may spin for a cross-thread wake-up.
    pub(super) remote_streak: Cell<u8>,
    /// The one cooperative budget of I/O, channels and sync primitives.
    pub(super) budget: Budget,
    /// Identifies this run, so a socket that outlives one run is registered
    /// afresh in the next, and a lock owner's id is not mistaken for a task
    /// of a later run.
    pub(super) run_id: u64,
    /// Lots to break when a task ends (`ParkingLot::add_breaker`): a `Lock`
    /// registers its owner here (rule Y3). Every entry's task was alive
    /// when it was added; entries are removed when the task exits. Usually
    /// empty or short.
    pub(super) lot_breakers: RefCell<Vec<(TaskId, Weak<RefCell<Lot>>)>>,
    /// Cancel checks made so far (every checkpoint makes one), for
    /// `testing::assert_checkpoints`. Only ever grows.
    pub(super) cancel_checks: Cell<u64>,
    /// Run-scoped state owned by the layers above (Trio's `RunVar`); the
    /// kernel keeps it without knowing its types and drops it with the run.
    pub(super) run_locals: RunLocals,
}

/// Internal operations of the kernel.
impl Core {
    /// Pushes a task onto the next pass's batch (its `scheduled` flag has
    /// just been set).
    #[inline]
    pub(super) fn push_runnable(&self, id: TaskId) {
        self.runq.borrow_mut().push(id);
        if self.has_instruments.get() {
            self.each_instrument(|i| i.task_scheduled(id));
        }
    }

    /// Wakes a task by id on the runtime thread (cancellation wakes whole
    /// tasks; remote wake-ups arrive as ids). `from_remote` also clears the
    /// task's remote flag, with the Acquire that makes the remote thread's
    /// writes visible.
    pub(super) fn wake_task(&self, id: TaskId, from_remote: bool) {
        if let Some(header) = self.header(id.key()) {
            if header.id == id {
                if from_remote {
                    header.remote_scheduled.swap(false, Ordering::Acquire);
                }
                header.schedule_local(self);
            }
        }
    }

    /// The header of the task in slot `key`, if any. The reference is valid
    /// until that task is removed, which happens only at the end of its
    /// own step (or at teardown): callers use it within one call.
    #[inline]
    pub(super) fn header(&self, key: usize) -> Option<&Header> {
        let ptr = self.tasks.borrow().get(key).copied()?;
        // SAFETY: a slab entry holds the runtime's count on the task, so the
        // header is alive while the entry is there (see `tasks`).
        Some(unsafe { ptr.as_ref() })
    }

    /// The header of live task `id` (generation checked).
    pub(super) fn live_header(&self, id: TaskId) -> Option<&Header> {
        self.header(id.key()).filter(|h| h.id == id)
    }

    fn next_gen(&self) -> u32 {
        let g = self.next_gen.get().wrapping_add(1);
        self.next_gen.set(g);
        g
    }

    /// Removes a finished task from the slab, breaks the lots it was the
    /// breaker of, tells instruments, and lets go of the task.
    pub(super) fn remove_task(&self, id: TaskId) {
        let ptr = self.tasks.borrow_mut().remove(id.key());
        // SAFETY: the entry held the runtime's count, which we now own.
        let header = unsafe { ptr.as_ref() };
        header.root().unregister_task(header.root_reg.get(), self);
        if header.name.get() == task::NAME_OWNED {
            self.owned_names.borrow_mut().remove(&id.key());
        }
        if !self.lot_breakers.borrow().is_empty() {
            crate::kernel::parking_lot::run_breakers(self, id);
        }
        if self.has_instruments.get() {
            self.each_instrument(|i| i.task_exited(id));
        }
        // SAFETY: runtime thread; the task left the slab above and is not
        // used again.
        unsafe { task::release(ptr) };
    }

    /// The cancel status of the code being polled.
    ///
    /// # Panics
    /// Between task steps (outside any task).
    #[inline]
    #[track_caller]
    pub(crate) fn current_status_ptr(&self) -> *const ScopeNode {
        let p = self.current_status.get();
        assert!(!p.is_null(), "this operation must be called from inside a trioxide task");
        p
    }

    pub(super) fn each_instrument(&self, mut f: impl FnMut(&dyn Instrument)) {
        // Clone the list so a hook may add or remove instruments.
        let list: Vec<Rc<dyn Instrument>> = self.instruments.borrow().clone();
        for i in &list {
            f(&**i);
        }
    }
}

/// The kernel's API for the layers above it.
impl Core {
    /// The task being stepped (`TaskId::NONE` outside a step).
    #[inline]
    pub(crate) fn current_task(&self) -> TaskId {
        self.current_task.get()
    }

    /// Records what the current task is about to block on, for
    /// [`task_tree`](crate::task_tree). Leaf futures call it when they
    /// return `Pending`.
    #[inline]
    pub(crate) fn set_waiting_on(&self, what: &'static str) {
        self.waiting_on.set(what);
    }

    /// Whether the code being polled is effectively cancelled: the one load
    /// every checkpoint makes.
    ///
    /// # Panics
    /// Between task steps (outside any task).
    #[inline]
    #[track_caller]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel_checks.set(self.cancel_checks.get() + 1);
        let p = self.current_status_ptr();
        // SAFETY: see `cancel.rs` ("Why current_status is valid"): a
        // non-null current_status points to a node kept alive by the task
        // slot or the scope future being polled.
        let node = unsafe { &*p };
        let cancelled = node.effectively_cancelled.get();
        if cancelled {
            node.note_cancel_seen();
        }
        cancelled
    }

    /// Cancel checks made so far in this run (`testing::assert_checkpoints`).
    pub(crate) fn cancel_checks(&self) -> u64 {
        self.cancel_checks.get()
    }

    /// Schedule points offered so far, yielded or not
    /// (`testing::assert_checkpoints`).
    pub(crate) fn yield_offers(&self) -> u64 {
        self.budget.yield_offers.get()
    }

    /// Makes `status` the current cancel status and returns the previous
    /// one, which the caller restores before its poll returns (see
    /// `cancel.rs`, "Why current_status is valid"). `status` must stay
    /// alive until then.
    #[inline]
    pub(crate) fn swap_status(&self, status: *const ScopeNode) -> *const ScopeNode {
        self.current_status.replace(status)
    }

    /// The current time on the run's clock.
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        self.clock.current_time()
    }

    /// This run's identity (unique in the process).
    #[inline]
    pub(crate) fn run_id(&self) -> u64 {
        self.run_id
    }

    /// Whether `to_thread::run_sync` runs closures inline (simulation).
    #[inline]
    pub(crate) fn threads_inline(&self) -> bool {
        self.threads_inline
    }

    /// The part of the run other threads may hold.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Adds a task, runnable in the next pass. `root` is the cancel status
    /// it starts each step in (its nursery's scope); `parent` is the task
    /// shown as its parent in the task tree (kept on `root`: every task of
    /// one root has the same parent); `name` is its name, or `None` for
    /// its future's type.
    pub(crate) fn spawn<F>(
        &self,
        future: F,
        root: Rc<ScopeNode>,
        name: Option<Cow<'static, str>>,
        parent: TaskId,
    ) -> TaskId
    where
        F: Future<Output = ()> + 'static,
    {
        // SAFETY: the closure writes the whole future.
        unsafe { self.spawn_in_place::<F, F>(root, name, parent, |dst| dst.write(future)) }
    }

    /// Like [`spawn`](Core::spawn), but allocates the task first and lets
    /// `init` write the future straight into it (so a large future is not
    /// moved through every layer). Without a name, the task is named after
    /// type `N`.
    ///
    /// # Safety
    /// `init` must initialise `*dst` completely, and must not panic.
    #[inline]
    pub(crate) unsafe fn spawn_in_place<F, N>(
        &self,
        root: Rc<ScopeNode>,
        name: Option<Cow<'static, str>>,
        parent: TaskId,
        init: impl FnOnce(*mut F),
    ) -> TaskId
    where
        F: Future<Output = ()> + 'static,
        N: ?Sized + 'static,
    {
        let mut tasks = self.tasks.borrow_mut();
        let entry = tasks.vacant_entry();
        let gen = self.next_gen();
        let id = TaskId::new(entry.key(), gen);
        root.set_task_parent(parent);
        let root_reg = root.register_task(id.key() as u32);
        let (header, dst) = task::allocate::<F, N>(id, &self.shared, root);
        init(dst);
        // SAFETY: just allocated, and the runtime holds its count.
        let h = unsafe { header.as_ref() };
        h.root_reg.set(root_reg);
        if let Some(name) = name {
            h.name.set(self.name_index(id, name));
        }
        entry.insert(header);
        drop(tasks);
        self.runq.borrow_mut().push(id);
        if self.has_instruments.get() {
            self.each_instrument(|i| i.task_spawned(id));
            self.each_instrument(|i| i.task_scheduled(id));
        }
        id
    }

    /// What a task's header keeps of its given name (see `static_names`).
    fn name_index(&self, id: TaskId, name: Cow<'static, str>) -> u16 {
        if let Cow::Borrowed(s) = name {
            if let Some(i) = self.static_names.index(s) {
                return i as u16;
            }
        }
        self.owned_names.borrow_mut().insert(id.key(), name);
        task::NAME_OWNED
    }

    /// Spawns a *system task*: one that belongs to the run itself rather
    /// than to a nursery (Trio's `spawn_system_task`). It runs under the
    /// run's root cancel status, which is cancelled once main has returned.
    pub(crate) fn spawn_system<F>(&self, future: F, name: Cow<'static, str>) -> TaskId
    where
        F: Future<Output = ()> + 'static,
    {
        self.spawn(future, self.system_scope.clone(), Some(name), TaskId::NONE)
    }

    /// Shows `task` as a child of `parent` in the task tree (a `start`ed
    /// task moving into its nursery; its root status is its own). Does
    /// nothing if `task` has exited.
    pub(crate) fn set_task_parent(&self, task: TaskId, parent: TaskId) {
        if let Some(h) = self.live_header(task) {
            h.root().replace_task_parent(parent);
        }
    }

    /// Whether task `id` is still in the slab.
    pub(crate) fn task_alive(&self, id: TaskId) -> bool {
        self.live_header(id).is_some()
    }

    /// Arms a timer that wakes `waker` at `deadline`; returns its key.
    pub(crate) fn add_wake_timer(&self, deadline: Instant, waker: Waker) -> usize {
        self.timers.borrow_mut().insert(deadline, TimerAction::Wake(Some(waker)))
    }

    /// Whether timer `key` has fired; if so it is removed, and `key` must
    /// not be used again.
    pub(crate) fn take_fired_timer(&self, key: usize) -> bool {
        let mut timers = self.timers.borrow_mut();
        let fired = timers.is_fired(key);
        if fired {
            timers.remove(key);
        }
        fired
    }

    /// Makes armed timer `key` wake `waker` (the task was polled with a new
    /// one).
    pub(crate) fn set_timer_waker(&self, key: usize, waker: &Waker) {
        self.timers.borrow_mut().set_waker(key, waker);
    }

    /// Disarms and forgets timer `key`.
    pub(crate) fn remove_timer(&self, key: usize) {
        self.timers.borrow_mut().remove(key);
    }
}
