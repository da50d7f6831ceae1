//! Nurseries: the only place tasks live.
//!
//! A nursery is a cancel scope with children. [`open_nursery`] runs its body
//! inside that scope, in the parent task; children run as tasks of their own
//! whose root cancel status is the same scope. The nursery finishes only
//! when the body and every child have finished, and it reports every error.
//! The first failure (an `Err` or a panic) cancels the scope, so the body
//! and all the other children stop at their next checkpoint (rule N1).

use std::any::Any;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;

use crate::kernel::cancel::{check_nesting, raw, CancelScope, ScopeNode};
use crate::kernel::error::{into_box_error, BoxError, Cancellation, MultiError, NurseryClosed};
use crate::kernel::task::TaskId;
use crate::kernel::Core;
use crate::shard::remote::OwnerGroup;

/// What a task's future may return: `()` or `Result<(), E>` for any error
/// that converts into a [`BoxError`].
///
/// ```
/// use trioxide::{open_nursery, run, BoxError};
/// run(open_nursery(|n| async move {
///     n.start_soon(async {})?; // ()
///     n.start_soon(async { Ok::<(), std::io::Error>(()) })?; // Result<(), io::Error>
///     n.start_soon(async { Ok::<(), BoxError>(()) })?; // Result<(), BoxError>
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
pub trait TaskOutput {
    /// The output as the nursery records it.
    ///
    /// ```
    /// use trioxide::TaskOutput;
    /// assert!(().into_task_result().is_ok());
    /// let failed: Result<(), std::io::Error> = Err(std::io::ErrorKind::Other.into());
    /// assert!(failed.into_task_result().is_err());
    /// ```
    fn into_task_result(self) -> Result<(), BoxError>;
}

impl TaskOutput for () {
    fn into_task_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError> + 'static> TaskOutput for Result<(), E> {
    fn into_task_result(self) -> Result<(), BoxError> {
        self.map_err(into_box_error)
    }
}

/// How a child ended.
pub(crate) enum Outcome {
    Ok,
    Err(BoxError),
    Panic(Box<dyn Any + Send>),
}

pub(crate) struct NurseryInner {
    pub(crate) scope: Rc<ScopeNode>,
    /// The task that opened the nursery (the parent of its children).
    pub(crate) owner: TaskId,
    /// Children alive, started ones included.
    live: Cell<usize>,
    /// `start` calls in progress targeting this nursery (they keep it open,
    /// rule N13).
    pub(crate) pending_starts: Cell<usize>,
    closed: Cell<bool>,
    /// The nursery future was dropped before it finished.
    abandoned: Cell<bool>,
    errors: RefCell<Vec<BoxError>>,
    panic: RefCell<Option<Box<dyn Any + Send>>>,
    /// The parent, waiting for the last child.
    waker: RefCell<Option<Waker>>,
    /// Groups of children on other shards, one per target shard with live
    /// children (`remote.rs`).
    pub(crate) remote_groups: RefCell<Vec<Rc<OwnerGroup>>>,
}

impl NurseryInner {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Records a failure and cancels the nursery (rule N1).
    fn record(&self, outcome: Outcome) {
        match outcome {
            Outcome::Ok => return,
            Outcome::Err(e) if self.abandoned.get() => {
                eprintln!("trioxide: error in a task of a dropped nursery: {e}");
            }
            Outcome::Err(e) => self.errors.borrow_mut().push(e),
            Outcome::Panic(p) => {
                let mut slot = self.panic.borrow_mut();
                if slot.is_none() && !self.abandoned.get() {
                    *slot = Some(p);
                } else {
                    eprintln!("trioxide: a further task panicked: {}", panic_message(&*p));
                }
            }
        }
        self.scope.cancel();
    }

    /// Records the outcome of a remote child (`shard::remote`'s proxy).
    pub(crate) fn record_outcome(&self, outcome: Outcome) {
        self.record(outcome);
    }

    pub(crate) fn child_finished(&self, outcome: Outcome) {
        self.record(outcome);
        self.live.set(self.live.get() - 1);
        self.maybe_wake();
    }

    pub(crate) fn child_adopted(&self) {
        self.live.set(self.live.get() + 1);
    }

    /// Wakes the parent if nothing keeps the nursery open any more.
    pub(crate) fn maybe_wake(&self) {
        if self.live.get() == 0 && self.pending_starts.get() == 0 {
            if let Some(w) = self.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

fn panic_message(p: &(dyn Any + Send)) -> &str {
    if let Some(s) = p.downcast_ref::<&str>() {
        s
    } else if let Some(s) = p.downcast_ref::<String>() {
        s
    } else {
        "<non-string panic payload>"
    }
}

/// A handle to an open nursery, for spawning children into it.
///
/// Cheap to clone; hand clones to children so they can spawn siblings. Once
/// the nursery has closed (body and children all done), spawning reports
/// [`NurseryClosed`].
///
/// ```
/// use std::rc::Rc;
/// use std::cell::RefCell;
/// use trioxide::{run, open_nursery, BoxError};
/// let log = Rc::new(RefCell::new(Vec::new()));
/// let l = log.clone();
/// run(open_nursery(move |n| async move {
///     let n2 = n.clone();
///     let l2 = l.clone();
///     n.start_soon(async move {
///         l2.borrow_mut().push("child");
///         // a child spawning a sibling through a handle it was given
///         n2.start_soon(async move { l2.borrow_mut().push("sibling"); })?;
///         Ok::<_, BoxError>(())
///     })?;
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// assert_eq!(*log.borrow(), ["child", "sibling"]);
/// ```
#[derive(Clone)]
pub struct Nursery {
    pub(crate) inner: Rc<NurseryInner>,
}

impl std::fmt::Debug for Nursery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nursery")
            .field("children", &self.inner.live.get())
            .field("closed", &self.inner.closed.get())
            .finish()
    }
}

impl Nursery {
    /// Spawns `task` as a child; it first runs in the next scheduler pass.
    /// Its name (for [`task_tree`](crate::task_tree)) is its future's type.
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use trioxide::{open_nursery, run, BoxError};
    /// let log = Rc::new(RefCell::new(Vec::new()));
    /// let l = log.clone();
    /// run(open_nursery(|n| async move {
    ///     let child_log = l.clone();
    ///     n.start_soon(async move {
    ///         child_log.borrow_mut().push("child");
    ///         Ok::<_, BoxError>(())
    ///     })?;
    ///     l.borrow_mut().push("body"); // the child has not run yet
    ///     Ok::<_, BoxError>(())
    /// })).unwrap(); // returns once the child is done too
    /// assert_eq!(*log.borrow(), ["body", "child"]);
    /// ```
    pub fn start_soon<F>(&self, task: F) -> Result<(), NurseryClosed>
    where
        F: Future + 'static,
        F::Output: TaskOutput,
    {
        self.spawn_child(None, task).map(drop)
    }

    /// Like [`start_soon`](Nursery::start_soon), with a name.
    ///
    /// ```
    /// use trioxide::{current_task, open_nursery, run, BoxError};
    /// run(open_nursery(|n| async move {
    ///     let id = format!("conn-{}", 7);
    ///     n.start_soon_named(id, async {
    ///         assert_eq!(current_task().name, "conn-7");
    ///         Ok::<_, BoxError>(())
    ///     })?;
    ///     n.start_soon_named("static name", async {})?;
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub fn start_soon_named<F>(&self, name: impl Into<Cow<'static, str>>, task: F) -> Result<(), NurseryClosed>
    where
        F: Future + 'static,
        F::Output: TaskOutput,
    {
        self.spawn_child(Some(name.into()), task).map(drop)
    }

    /// Spawns `task` wrapped in a `ChildTask`, copying it once: from this
    /// call's argument straight into the new task's allocation (a future
    /// holding a large buffer is not moved through every layer). Returns
    /// the new task's id.
    #[inline(always)]
    pub(crate) fn spawn_child<F>(&self, name: Option<Cow<'static, str>>, task: F) -> Result<TaskId, NurseryClosed>
    where
        F: Future + 'static,
        F::Output: TaskOutput,
    {
        if self.inner.closed.get() {
            return Err(NurseryClosed);
        }
        let core = Core::current();
        self.inner.child_adopted();
        let link = self.inner.clone();
        // Not dropped here: its bytes are copied into the task below.
        let task = ManuallyDrop::new(task);
        // SAFETY: the closure initialises both fields of the `ChildTask`
        // and cannot panic; `task` is copied exactly once and never used or
        // dropped here afterwards (ManuallyDrop), so it has one owner.
        let id = unsafe {
            core.spawn_in_place::<ChildTask<F, Rc<NurseryInner>>, F>(
                self.inner.scope.clone(),
                name,
                self.inner.owner,
                |dst| {
                    std::ptr::copy_nonoverlapping(&*task as *const F, std::ptr::addr_of_mut!((*dst).task), 1);
                    std::ptr::addr_of_mut!((*dst).link).write(link);
                },
            )
        };
        Ok(id)
    }

    /// The nursery's own cancel scope: cancel it to stop the body and every
    /// child.
    ///
    /// ```
    /// use trioxide::{open_nursery, run, sleep_forever, BoxError};
    /// let out = run(open_nursery(|n| async move {
    ///     n.start_soon(async { sleep_forever().await?; Ok::<_, BoxError>(()) })?;
    ///     n.cancel_scope().cancel(); // the child and the body
    ///     sleep_forever().await?; // returns Err(Cancelled) at once
    ///     Ok::<_, BoxError>("unreachable")
    /// }));
    /// assert_eq!(out.unwrap(), None); // the nursery caught its own cancellation
    /// ```
    pub fn cancel_scope(&self) -> CancelScope {
        CancelScope::from_node(self.inner.scope.clone())
    }

    /// Whether the nursery has closed to new children.
    ///
    /// ```
    /// use trioxide::{open_nursery, run, BoxError};
    /// let n = run(open_nursery(|n| async move {
    ///     assert!(!n.is_closed());
    ///     Ok::<_, BoxError>(n.clone())
    /// })).unwrap().unwrap();
    /// assert!(n.is_closed()); // body and children are done
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get()
    }
}

/// Where a child reports how it ended: its nursery, or the `start` call
/// that is starting it.
pub(crate) trait ChildLink {
    fn child_finished(&self, outcome: Outcome);
}

impl ChildLink for Rc<NurseryInner> {
    fn child_finished(&self, outcome: Outcome) {
        NurseryInner::child_finished(self, outcome);
    }
}

pin_project! {
    /// A child's future, wrapped to catch its panic and report its outcome.
    pub(crate) struct ChildTask<F, L> {
        #[pin]
        pub(crate) task: F,
        pub(crate) link: L,
    }
}

impl<F, L> Future for ChildTask<F, L>
where
    F: Future,
    F::Output: TaskOutput,
    L: ChildLink,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let task = this.task;
        let outcome = match catch_unwind(AssertUnwindSafe(|| task.poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(out)) => match out.into_task_result() {
                Ok(()) => Outcome::Ok,
                Err(e) => Outcome::Err(e),
            },
            Err(panic) => Outcome::Panic(panic),
        };
        this.link.child_finished(outcome);
        Poll::Ready(())
    }
}

/// Opens a nursery: runs `body` with a handle to it, and finishes when the
/// body and every child have finished.
///
/// The output is `Ok(Some(v))` when the body returned `Ok(v)` and nothing
/// failed; `Ok(None)` when the nursery's own scope was cancelled (by
/// [`Nursery::cancel_scope`]) and cut the body short; and `Err(MultiError)`
/// holding every error of the body and the children otherwise (an outer
/// scope's `Cancelled` included). If any of them panicked, the first panic
/// resumes in the parent once everyone has finished.
///
/// The body runs in the parent task and may borrow from it; children must be
/// `'static` (see DESIGN.md, "Tasks are 'static").
///
/// ```
/// use std::time::Duration;
/// use trioxide::{run, open_nursery, sleep, BoxError};
/// let out = run(open_nursery(|n| async move {
///     for i in 0..3u64 {
///         n.start_soon(async move {
///             sleep(Duration::from_millis(i)).await?;
///             Ok::<_, BoxError>(())
///         })?;
///     }
///     Ok::<_, BoxError>("body done")
/// }));
/// assert_eq!(out.unwrap(), Some("body done"));
/// ```
pub fn open_nursery<B, Fut, T, E>(body: B) -> OpenNursery<B, Fut, T>
where
    B: FnOnce(Nursery) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError> + 'static,
{
    OpenNursery { body_fn: Some(body), body: None, inner: None, value: None, yielded: false, done: false }
}

pin_project! {
    /// The future of [`open_nursery`].
    ///
    /// ```
    /// use trioxide::{open_nursery, run, BoxError, OpenNursery};
    /// let nursery = open_nursery(|_n| async { Ok::<_, BoxError>(1) }); // nothing runs yet
    /// fn is_nursery<B, F, T>(_: &OpenNursery<B, F, T>) {}
    /// is_nursery(&nursery);
    /// assert_eq!(run(nursery).unwrap(), Some(1));
    /// ```
    #[must_use = "a nursery does nothing unless awaited"]
    pub struct OpenNursery<B, Fut, T> {
        body_fn: Option<B>,
        #[pin]
        body: Option<Fut>,
        inner: Option<Rc<NurseryInner>>,
        value: Option<T>,
        yielded: bool,
        done: bool,
    }

    impl<B, Fut, T> PinnedDrop for OpenNursery<B, Fut, T> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(inner) = this.inner.as_ref() {
                if !*this.done {
                    abandon(inner);
                }
            }
        }
    }
}

/// The nursery future was dropped before it finished (a `select!` dropped
/// it, or its task was torn down). Rust cannot block in a destructor, so the
/// children are cancelled and left to finish on their own; their errors go
/// to stderr. This is the "scoped task trilemma": it is why children must be
/// `'static`.
fn abandon(inner: &NurseryInner) {
    inner.abandoned.set(true);
    inner.closed.set(true);
    for e in inner.errors.borrow_mut().drain(..) {
        eprintln!("trioxide: error in a dropped nursery: {e}");
    }
    inner.scope.abandon();
}

impl<B, Fut, T, E> Future for OpenNursery<B, Fut, T>
where
    B: FnOnce(Nursery) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError> + 'static,
{
    type Output = Result<Option<T>, MultiError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        assert!(!*this.done, "nursery future polled after completion");
        let core = Core::current();
        let outer = core.current_status_ptr();
        let inner = match this.inner.as_ref() {
            Some(inner) => {
                check_nesting(&inner.scope, core, outer);
                inner.clone()
            }
            None => {
                let scope = raw::new_unentered();
                raw::enter(&scope, core);
                let inner = Rc::new(NurseryInner {
                    scope,
                    owner: core.current_task(),
                    live: Cell::new(0),
                    pending_starts: Cell::new(0),
                    closed: Cell::new(false),
                    abandoned: Cell::new(false),
                    errors: RefCell::new(Vec::new()),
                    panic: RefCell::new(None),
                    waker: RefCell::new(None),
                    remote_groups: RefCell::new(Vec::new()),
                });
                *this.inner = Some(inner.clone());
                let body_fn = this.body_fn.take().expect("nursery body taken twice");
                this.body.set(Some(body_fn(Nursery { inner: inner.clone() })));
                inner
            }
        };
        let here = Rc::as_ptr(&inner.scope);
        core.swap_status(here);

        if let Some(body) = this.body.as_mut().as_pin_mut() {
            let res = catch_unwind(AssertUnwindSafe(|| body.poll(cx)));
            core.swap_status(here);
            match res {
                Ok(Poll::Pending) => {}
                Ok(Poll::Ready(Ok(v))) => {
                    *this.value = Some(v);
                    this.body.set(None);
                }
                Ok(Poll::Ready(Err(e))) => {
                    inner.record(Outcome::Err(into_box_error(e)));
                    this.body.set(None);
                }
                Err(panic) => {
                    inner.record(Outcome::Panic(panic));
                    this.body.set(None);
                }
            }
        }

        if this.body.is_none() {
            if inner.live.get() == 0 && inner.pending_starts.get() == 0 {
                if !*this.yielded {
                    // Leaving a nursery is a schedule point, never a cancel
                    // point (rule N8).
                    *this.yielded = true;
                    core.swap_status(outer);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                core.swap_status(outer);
                *this.done = true;
                return Poll::Ready(close(&inner, this.value.take()));
            }
            // Waiting for children. A cancellation arriving now is not an
            // error of the nursery (Trio gh-1457): the children see it and
            // report their own `Cancelled` if they fail because of it; the
            // wait just goes on until they are done.
            let mut w = inner.waker.borrow_mut();
            match &*w {
                Some(old) if old.will_wake(cx.waker()) => {}
                _ => *w = Some(cx.waker().clone()),
            }
            core.set_waiting_on("nursery");
        }
        *this.yielded = true;
        core.swap_status(outer);
        Poll::Pending
    }
}

/// Closes the nursery and turns what happened into its output.
fn close<T>(inner: &NurseryInner, value: Option<T>) -> Result<Option<T>, MultiError> {
    inner.closed.set(true);
    let catches = raw::exit(&inner.scope, true);
    let errors = inner.errors.take();
    if let Some(panic) = inner.panic.take() {
        for e in &errors {
            eprintln!("trioxide: error in a nursery that also panicked: {e}");
        }
        resume_unwind(panic);
    }
    if errors.is_empty() {
        return Ok(value);
    }
    let multi = MultiError::new(errors);
    if !catches {
        return Err(multi);
    }
    let (matched, rest) = multi.split_cancelled();
    if matched {
        raw::set_caught(&inner.scope);
    }
    match rest {
        None => Ok(value),
        Some(rest) => Err(rest),
    }
}
