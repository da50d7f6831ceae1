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
    fn before_run(&self) {}
    /// The run is over.
    fn after_run(&self) {}
    /// A task was spawned (it is also scheduled).
    fn task_spawned(&self, _task: TaskId) {}
    /// A task became runnable.
    fn task_scheduled(&self, _task: TaskId) {}
    /// A task is about to be polled.
    fn before_task_step(&self, _task: TaskId) {}
    /// A task was polled.
    fn after_task_step(&self, _task: TaskId) {}
    /// A task finished and was removed.
    fn task_exited(&self, _task: TaskId) {}
    /// The scheduler is about to wait for I/O (`None`: no timeout).
    fn before_io_wait(&self, _timeout: Option<Duration>) {}
    /// The I/O wait returned.
    fn after_io_wait(&self, _timeout: Option<Duration>) {}
}

/// Installs an instrument in the running runtime.
///
/// # Panics
/// Outside [`run`](crate::run): "trioxide::add_instrument must be called
/// from inside trioxide::run", at the caller's line.
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

/// The task running now.
///
/// # Panics
/// Outside [`run`](crate::run) ("trioxide::current_task must be called
/// from inside trioxide::run"), or inside it but between task steps, in an
/// [`Instrument`] hook ("trioxide::current_task must be called from inside
/// a trioxide task"); either way at the caller's line.
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
