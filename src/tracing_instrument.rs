//! [`TracingInstrument`] (feature `tracing`): one `tracing` span per task,
//! nested like the nursery tree.
//!
//! An [`Instrument`] above the kernel: the hooks give task ids, and
//! `kernel::instrument::task_info` turns an id into a name and a parent.
//! Spans are created with the dispatcher that is the default when the task
//! is spawned, so install the subscriber around [`run`](crate::run).

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use tracing::Span;

use crate::kernel::instrument::{task_info, Instrument};
use crate::kernel::task::TaskId;

/// An [`Instrument`] that opens a `tracing` span for each task.
///
/// Each span is named `task`, at level TRACE, with the fields `task.name`
/// (the task's name: `start_soon_named`'s, else its future's type, and
/// `<main>` for the main task) and `task.id`. Its parent is the span of
/// the task whose nursery the task lives in, so the spans form the nursery
/// tree; the main task's span is a child of the span current when the run
/// starts. The span is entered for each step of its task and closed when
/// the task exits. TRACE events record each time a task is scheduled
/// (`scheduled`, inside the task's span) and each blocking wait for I/O
/// (`io wait` and `io wait done`, with the timeout), between steps.
///
/// ```
/// use std::rc::Rc;
/// use trioxide::{open_nursery, BoxError, Builder, TracingInstrument};
/// // With no subscriber installed, the spans are disabled and cost little.
/// let out = Builder::new().instrument(Rc::new(TracingInstrument::new())).run(open_nursery(|n| async move {
///     n.start_soon_named("child", async { Ok::<_, BoxError>(()) })?;
///     Ok::<_, BoxError>("done")
/// }));
/// assert_eq!(out.unwrap(), Some("done"));
/// ```
#[derive(Default)]
pub struct TracingInstrument {
    spans: RefCell<HashMap<TaskId, Span>>,
}

impl std::fmt::Debug for TracingInstrument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingInstrument").field("open_spans", &self.spans.borrow().len()).finish()
    }
}

impl TracingInstrument {
    /// An instrument with no span open yet; install it with
    /// [`Builder::instrument`](crate::Builder::instrument) (or
    /// [`add_instrument`](crate::add_instrument): tasks spawned before
    /// that get no span).
    ///
    /// ```
    /// use std::rc::Rc;
    /// use trioxide::{Builder, TracingInstrument};
    /// let instrument = Rc::new(TracingInstrument::new());
    /// assert_eq!(Builder::new().instrument(instrument).run(async { 7 }), 7);
    /// ```
    pub fn new() -> TracingInstrument {
        TracingInstrument::default()
    }

    fn with_span(&self, task: TaskId, f: impl FnOnce(&Span)) {
        if let Some(span) = self.spans.borrow().get(&task) {
            f(span);
        }
    }
}

impl Instrument for TracingInstrument {
    fn task_spawned(&self, task: TaskId) {
        let Some(info) = task_info(task) else { return };
        let spans = self.spans.borrow();
        let parent = info.parent.and_then(|p| spans.get(&p));
        let span = match parent {
            Some(parent) => {
                tracing::trace_span!(parent: parent, "task", task.name = %info.name, task.id = ?task)
            }
            // The main task (or a task whose parent has no span): the
            // span current when it was spawned.
            None => tracing::trace_span!("task", task.name = %info.name, task.id = ?task),
        };
        drop(spans);
        self.spans.borrow_mut().insert(task, span);
    }

    fn task_scheduled(&self, task: TaskId) {
        self.with_span(task, |span| tracing::trace!(parent: span, "scheduled"));
    }

    fn before_task_step(&self, task: TaskId) {
        self.with_span(task, |span| {
            span.with_subscriber(|(id, dispatch)| dispatch.enter(id));
        });
    }

    fn after_task_step(&self, task: TaskId) {
        self.with_span(task, |span| {
            span.with_subscriber(|(id, dispatch)| dispatch.exit(id));
        });
    }

    fn task_exited(&self, task: TaskId) {
        // Dropped outside the borrow: closing may call into the subscriber.
        let span = self.spans.borrow_mut().remove(&task);
        drop(span);
    }

    fn before_io_wait(&self, timeout: Option<Duration>) {
        tracing::trace!(?timeout, "io wait");
    }

    fn after_io_wait(&self, timeout: Option<Duration>) {
        tracing::trace!(?timeout, "io wait done");
    }
}
