//! Instrumentation hooks (Trio's `Instrument`) and task introspection.
//!
//! With no instrument installed, each hook site costs one load of a `bool`.

use std::rc::Rc;
use std::time::Duration;

use crate::kernel::task::{self, TaskId};
use crate::kernel::Core;

/// Hooks into the runtime's life. Every method has an empty default; install
/// with [`Builder::instrument`](crate::Builder::instrument) or
/// [`add_instrument`]. Hooks run on the runtime thread, inside the
/// scheduler: keep them short, and don't await (they are not async).
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use trioxide::{Builder, Instrument, TaskId, open_nursery, BoxError};
/// #[derive(Default)]
/// struct CountSteps(Cell<u32>);
/// impl Instrument for CountSteps {
///     fn before_task_step(&self, _task: TaskId) { self.0.set(self.0.get() + 1); }
/// }
/// let counter = Rc::new(CountSteps::default());
/// Builder::new().instrument(counter.clone()).run(open_nursery(|n| async move {
///     n.start_soon(async {})?;
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// assert!(counter.0.get() >= 2);
/// ```
pub trait Instrument {
    /// The run is starting.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use trioxide::{Builder, Instrument};
    /// #[derive(Debug, Default)]
    /// struct Phases(Cell<u32>);
    /// impl Instrument for Phases {
    ///     fn before_run(&self) { self.0.set(self.0.get() * 10 + 1); }
    ///     fn after_run(&self) { self.0.set(self.0.get() * 10 + 2); }
    /// }
    /// let phases = Rc::new(Phases::default());
    /// Builder::new().instrument(phases.clone()).run(async {});
    /// assert_eq!(phases.0.get(), 12); // before_run, then after_run
    /// ```
    fn before_run(&self) {}
    /// The run is over.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use trioxide::{open_nursery, Builder, BoxError, Instrument, TaskId};
    /// #[derive(Debug, Default)]
    /// struct LeftAlive { live: Cell<i32>, at_end: Cell<i32> }
    /// impl Instrument for LeftAlive {
    ///     fn task_spawned(&self, _: TaskId) { self.live.set(self.live.get() + 1); }
    ///     fn task_exited(&self, _: TaskId) { self.live.set(self.live.get() - 1); }
    ///     fn after_run(&self) { self.at_end.set(self.live.get()); }
    /// }
    /// let i = Rc::new(LeftAlive::default());
    /// Builder::new().instrument(i.clone()).run(open_nursery(|n| async move {
    ///     n.start_soon(async { Ok::<_, BoxError>(()) })?;
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// assert_eq!(i.at_end.get(), 0); // every task spawned had exited
    /// ```
    fn after_run(&self) {}
    /// A task was spawned (it is also scheduled).
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use trioxide::{open_nursery, Builder, BoxError, Instrument, TaskId};
    /// #[derive(Debug, Default)]
    /// struct Spawns(RefCell<Vec<TaskId>>);
    /// impl Instrument for Spawns {
    ///     fn task_spawned(&self, task: TaskId) { self.0.borrow_mut().push(task); }
    /// }
    /// let s = Rc::new(Spawns::default());
    /// Builder::new().instrument(s.clone()).run(open_nursery(|n| async move {
    ///     n.start_soon(async { Ok::<_, BoxError>(()) })?;
    ///     n.start_soon(async { Ok::<_, BoxError>(()) })?;
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// assert_eq!(s.0.borrow().len(), 3); // the main task and two children
    /// ```
    fn task_spawned(&self, _task: TaskId) {}
    /// A task became runnable.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use trioxide::{checkpoint, Builder, Instrument, TaskId};
    /// #[derive(Debug, Default)]
    /// struct Wakeups(Cell<u32>);
    /// impl Instrument for Wakeups {
    ///     fn task_scheduled(&self, _: TaskId) { self.0.set(self.0.get() + 1); }
    /// }
    /// let w = Rc::new(Wakeups::default());
    /// Builder::new().instrument(w.clone()).run(async {
    ///     for _ in 0..3 { checkpoint().await.unwrap(); } // each one reschedules the task
    /// });
    /// assert!(w.0.get() >= 3);
    /// ```
    fn task_scheduled(&self, _task: TaskId) {}
    /// A task is about to be polled.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use trioxide::{checkpoint, Builder, Instrument, TaskId};
    /// #[derive(Debug, Default)]
    /// struct Steps(Cell<u32>);
    /// impl Instrument for Steps {
    ///     fn before_task_step(&self, _: TaskId) { self.0.set(self.0.get() + 1); }
    /// }
    /// let s = Rc::new(Steps::default());
    /// Builder::new().instrument(s.clone()).run(async {
    ///     checkpoint().await.unwrap(); // the main task: polled twice
    /// });
    /// assert_eq!(s.0.get(), 2);
    /// ```
    fn before_task_step(&self, _task: TaskId) {}
    /// A task was polled.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use std::time::Instant;
    /// use trioxide::{Builder, Instrument, TaskId};
    /// // The longest step: a task that computes too long between checkpoints.
    /// #[derive(Debug)]
    /// struct LongestStep { started: Cell<Option<Instant>>, longest: Cell<std::time::Duration> }
    /// impl Instrument for LongestStep {
    ///     fn before_task_step(&self, _: TaskId) { self.started.set(Some(Instant::now())); }
    ///     fn after_task_step(&self, _: TaskId) {
    ///         let took = self.started.take().map(|t| t.elapsed()).unwrap_or_default();
    ///         self.longest.set(self.longest.get().max(took));
    ///     }
    /// }
    /// let i = Rc::new(LongestStep { started: Cell::new(None), longest: Cell::new(Default::default()) });
    /// Builder::new().instrument(i.clone()).run(async {
    ///     std::thread::sleep(std::time::Duration::from_millis(5)); // blocks the loop
    /// });
    /// assert!(i.longest.get() >= std::time::Duration::from_millis(5));
    /// ```
    fn after_task_step(&self, _task: TaskId) {}
    /// A task finished and was removed.
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use trioxide::{open_nursery, Builder, BoxError, Instrument, TaskId};
    /// #[derive(Debug, Default)]
    /// struct Exits(RefCell<Vec<TaskId>>);
    /// impl Instrument for Exits {
    ///     fn task_exited(&self, task: TaskId) { self.0.borrow_mut().push(task); }
    /// }
    /// let e = Rc::new(Exits::default());
    /// let child = Builder::new().instrument(e.clone()).run(open_nursery(|n| async move {
    ///     let id = Rc::new(RefCell::new(None));
    ///     let slot = id.clone();
    ///     n.start_soon(async move {
    ///         *slot.borrow_mut() = Some(trioxide::current_task().id);
    ///         Ok::<_, BoxError>(())
    ///     })?;
    ///     Ok::<_, BoxError>(id)
    /// })).unwrap().unwrap();
    /// let child = child.borrow().unwrap();
    /// assert_eq!(e.0.borrow()[0], child); // the child ended before the main task
    /// ```
    fn task_exited(&self, _task: TaskId) {}
    /// The scheduler is about to wait for I/O (`None`: no timeout).
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use std::time::Duration;
    /// use trioxide::{sleep, Builder, Instrument};
    /// #[derive(Debug, Default)]
    /// struct Waits(RefCell<Vec<Option<Duration>>>);
    /// impl Instrument for Waits {
    ///     fn before_io_wait(&self, timeout: Option<Duration>) { self.0.borrow_mut().push(timeout); }
    /// }
    /// let w = Rc::new(Waits::default());
    /// Builder::new().instrument(w.clone()).run(async {
    ///     sleep(Duration::from_millis(20)).await.unwrap(); // nothing runnable: the loop blocks
    /// });
    /// // The blocking wait was bounded by the sleep's deadline.
    /// assert!(w.0.borrow().iter().any(|t| matches!(t, Some(d) if *d > Duration::ZERO)));
    /// ```
    fn before_io_wait(&self, _timeout: Option<Duration>) {}
    /// The I/O wait returned.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use std::time::Duration;
    /// use trioxide::{sleep, Builder, Instrument};
    /// #[derive(Debug, Default)]
    /// struct Balanced(Cell<i32>);
    /// impl Instrument for Balanced {
    ///     fn before_io_wait(&self, _: Option<Duration>) { self.0.set(self.0.get() + 1); }
    ///     fn after_io_wait(&self, _: Option<Duration>) { self.0.set(self.0.get() - 1); }
    /// }
    /// let b = Rc::new(Balanced::default());
    /// Builder::new().instrument(b.clone()).run(async {
    ///     sleep(Duration::from_millis(1)).await.unwrap();
    /// });
    /// assert_eq!(b.0.get(), 0); // every wait returned
    /// ```
    fn after_io_wait(&self, _timeout: Option<Duration>) {}
}

/// Installs an instrument in the running runtime.
///
/// # Panics
/// Outside [`run`](crate::run): "trioxide::add_instrument must be called
/// from inside trioxide::run", at the caller's line.
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use trioxide::{add_instrument, checkpoint, remove_instrument, run, Instrument, TaskId};
/// #[derive(Debug, Default)]
/// struct Steps(Cell<u32>);
/// impl Instrument for Steps {
///     fn before_task_step(&self, _: TaskId) { self.0.set(self.0.get() + 1); }
/// }
/// let steps = Rc::new(Steps::default());
/// let seen = run({
///     let steps = steps.clone();
///     async move {
///         let i: Rc<dyn Instrument> = steps.clone();
///         add_instrument(i.clone()); // from the next step on
///         checkpoint().await.unwrap();
///         checkpoint().await.unwrap();
///         assert!(remove_instrument(&i));
///         steps.0.get()
///     }
/// });
/// assert_eq!(seen, 2);
/// ```
#[track_caller]
pub fn add_instrument(instrument: Rc<dyn Instrument>) {
    let core = Core::current_for("trioxide::add_instrument");
    core.instruments.borrow_mut().push(instrument);
    core.has_instruments.set(true);
}

/// Removes an instrument installed earlier; false if it was not installed.
///
/// # Panics
/// Outside [`run`](crate::run): "trioxide::remove_instrument must be
/// called from inside trioxide::run", at the caller's line.
///
/// ```
/// use std::rc::Rc;
/// use trioxide::{add_instrument, remove_instrument, run, Instrument};
/// #[derive(Debug)]
/// struct Nothing;
/// impl Instrument for Nothing {}
/// run(async {
///     let i: Rc<dyn Instrument> = Rc::new(Nothing);
///     assert!(!remove_instrument(&i)); // not installed
///     add_instrument(i.clone());
///     assert!(remove_instrument(&i));
/// });
/// ```
#[track_caller]
pub fn remove_instrument(instrument: &Rc<dyn Instrument>) -> bool {
    let core = Core::current_for("trioxide::remove_instrument");
    let mut list = core.instruments.borrow_mut();
    let before = list.len();
    list.retain(|i| !Rc::ptr_eq(i, instrument));
    core.has_instruments.set(!list.is_empty());
    list.len() != before
}

/// A live task, as [`current_task`] and [`task_tree`] describe it.
///
/// ```
/// use trioxide::{current_task, open_nursery, run, BoxError};
/// run(open_nursery(|n| async move {
///     let main = current_task();
///     assert_eq!(main.parent, None); // the main task has no parent
///     n.start_soon_named("worker", async move {
///         let me = current_task();
///         assert_eq!(me.name, "worker");
///         assert_eq!(me.parent, Some(main.id)); // it lives in main's nursery
///         Ok::<_, BoxError>(())
///     })?;
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// The task's id.
    pub id: TaskId,
    /// Its name (its future's type unless given with `start_soon_named`).
    pub name: String,
    /// The task whose nursery it lives in (`None` for the main task).
    pub parent: Option<TaskId>,
    /// What it last blocked on ("sleep", "nursery", "start", ...), or ""
    /// if it has not blocked yet or just yielded.
    pub waiting_on: &'static str,
}

fn info(core: &Core, id: TaskId) -> Option<TaskInfo> {
    let h = core.live_header(id)?;
    let name = match h.name.get() {
        task::NAME_OF_TYPE => h.type_name().to_string(),
        task::NAME_OWNED => core.owned_names.borrow().get(&id.key()).map(|n| n.to_string()).unwrap_or_default(),
        i => core.static_names.get(i as usize).to_string(),
    };
    Some(TaskInfo {
        id,
        name,
        parent: Some(h.root().task_parent()).filter(|p| *p != TaskId::NONE),
        waiting_on: core.waiting_names.get(h.waiting_on.get() as usize),
    })
}

/// The live task `id` of the running runtime (`None` outside a run or
/// once the task is gone): for instruments above the kernel, which get
/// only ids from their hooks.
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) fn task_info(id: TaskId) -> Option<TaskInfo> {
    info(Core::try_current()?, id)
}

/// The task running now.
///
/// # Panics
/// Outside [`run`](crate::run) ("trioxide::current_task must be called
/// from inside trioxide::run"), or inside it but between task steps, in an
/// [`Instrument`] hook ("trioxide::current_task must be called from inside
/// a trioxide task"); either way at the caller's line.
///
/// ```
/// use trioxide::{current_task, open_nursery, run, BoxError};
/// run(open_nursery(|n| async move {
///     let me = current_task().id;
///     n.start_soon(async move {
///         assert_ne!(current_task().id, me); // a child is a task of its own
///         Ok::<_, BoxError>(())
///     })?;
///     assert_eq!(current_task().id, me); // the nursery body runs in the parent's task
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
#[track_caller]
pub fn current_task() -> TaskInfo {
    let core = Core::current_for("trioxide::current_task");
    let id = core.current_task.get();
    match info(core, id) {
        Some(info) => info,
        None => panic!("trioxide::current_task must be called from inside a trioxide task (not between task steps)"),
    }
}

/// Every live task, ordered by id, with its parent and what it waits on:
/// print it to see what a stuck program is doing.
///
/// ```
/// use trioxide::{run, open_nursery, sleep_forever, task_tree, wait_all_tasks_blocked, BoxError};
/// run(open_nursery(|n| async move {
///     n.start_soon_named("sleeper", async { sleep_forever().await?; Ok::<_, BoxError>(()) })?;
///     wait_all_tasks_blocked().await?;
///     let tree = task_tree();
///     let sleeper = tree.iter().find(|t| t.name == "sleeper").unwrap();
///     assert_eq!(sleeper.waiting_on, "sleep");
///     n.cancel_scope().cancel();
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
///
/// # Panics
/// Outside [`run`](crate::run): "trioxide::task_tree must be called from
/// inside trioxide::run", at the caller's line.
#[track_caller]
pub fn task_tree() -> Vec<TaskInfo> {
    let core = Core::current_for("trioxide::task_tree");
    // SAFETY: slab entries point to live headers (see `Core::tasks`).
    let ids: Vec<TaskId> = core.tasks.borrow().iter().map(|(_, h)| unsafe { h.as_ref() }.id).collect();
    let mut out: Vec<TaskInfo> = ids.into_iter().filter_map(|id| info(core, id)).collect();
    out.sort_by_key(|t| (t.id.key(), t.id.gen()));
    out
}
