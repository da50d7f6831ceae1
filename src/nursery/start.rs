//! `Nursery::start`: run a child until it says it is ready, then hand it to
//! the nursery.
//!
//! Until the child calls [`TaskStatus::started`] it runs under the caller's
//! cancel status (a root node of its own, hung under the caller's current
//! scope), so cancelling the caller cancels it and its errors come out of
//! `start` itself (rule N10). `started` moves that root node under the
//! target nursery's scope; from then on the child is the nursery's (N9).
//!
//! **In a cancelled caller** (Trio's `TaskStatus.started` and `start`, rule
//! N12): `started(value)` records the value but does not move the child,
//! which stays under the caller and ends on its own. `start` never reports
//! a cancellation of its own (its wait is not a cancel point, as Trio's
//! hidden nursery's `__aexit__` is not): what it returns follows from how
//! the child ended. A child that hits a checkpoint gets `Cancelled` and,
//! returning it, makes `start` return it; a child that called `started(v)`
//! and returned without a cancelled checkpoint makes `start` return `v`
//! (the caller's scope catches nothing); one that returned without calling
//! `started` gives [`StartError::NotStarted`].

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::resume_unwind;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;

use crate::kernel::cancel::{current_status_rc, ScopeNode};
use crate::kernel::error::{BoxError, NurseryClosed, StartError};
use crate::kernel::task::TaskId;
use crate::kernel::Core;
use crate::nursery::{ChildLink, ChildTask, Nursery, NurseryInner, Outcome, TaskOutput};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Running under the caller; `started` not called yet.
    Waiting,
    /// Handed over to the target nursery.
    Started,
    /// Finished before calling `started`.
    Exited,
    /// The `start` future was dropped while waiting.
    Abandoned,
}

/// How a started child reports its end, whatever its value type.
pub(crate) trait StartLink {
    fn child_finished(&self, outcome: Outcome);
}

struct StartShared<V> {
    target: Rc<NurseryInner>,
    root: Rc<ScopeNode>,
    task: Cell<TaskId>,
    state: Cell<State>,
    /// The value given to `started`. Taken by `start` once the child is
    /// in the nursery, or once the child has ended if `started` was called
    /// in a cancelled caller (which left the child where it was).
    value: RefCell<Option<V>>,
    outcome: RefCell<Option<Outcome>>,
    waker: RefCell<Option<Waker>>,
}

impl<V> StartShared<V> {
    fn wake_starter(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

impl<V> ChildLink for Rc<StartShared<V>> {
    fn child_finished(&self, outcome: Outcome) {
        StartLink::child_finished(&**self, outcome);
    }
}

impl<V> StartLink for StartShared<V> {
    fn child_finished(&self, outcome: Outcome) {
        self.root.detach();
        match self.state.get() {
            State::Started => self.target.child_finished(outcome),
            State::Waiting => {
                *self.outcome.borrow_mut() = Some(outcome);
                self.state.set(State::Exited);
                self.target.pending_starts.set(self.target.pending_starts.get() - 1);
                self.target.maybe_wake();
                self.wake_starter();
            }
            State::Abandoned => match outcome {
                Outcome::Err(e) => eprintln!("trioxide: error in a task whose start() was dropped: {e}"),
                Outcome::Panic(_) => eprintln!("trioxide: a task whose start() was dropped panicked"),
                Outcome::Ok => {}
            },
            State::Exited => unreachable!("a task finishes once"),
        }
    }
}

/// Given to a child by [`Nursery::start`]: call
/// [`started`](TaskStatus::started) once the child is ready. It is consumed
/// by the call, so calling it twice does not compile.
///
/// ```compile_fail
/// fn twice(s: trioxide::TaskStatus<u32>) {
///     s.started(1);
///     s.started(2); // error: use of moved value
/// }
/// ```
///
/// ```
/// use trioxide::{open_nursery, run, sleep_forever, BoxError, TaskStatus};
/// run(open_nursery(|n| async move {
///     let port = n.start(|status: TaskStatus<u16>| async move {
///         status.started(4242); // start() returns 4242 now
///         sleep_forever().await?; // and the task goes on in the nursery
///         Ok::<_, BoxError>(())
///     }).await?;
///     assert_eq!(port, 4242);
///     n.cancel_scope().cancel();
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
pub struct TaskStatus<V> {
    shared: Rc<StartShared<V>>,
}

impl<V> std::fmt::Debug for TaskStatus<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskStatus").field("state", &self.shared.state.get()).finish()
    }
}

impl<V> TaskStatus<V> {
    /// Reports the child ready: `start` returns `value`, and the child moves
    /// into the target nursery.
    ///
    /// If the caller of `start` is cancelled (rule N12, as in Trio), the
    /// value is recorded but the child is not moved: it stays under the
    /// caller, still cancelled, and `start` waits for it to end. If it ends
    /// without error (it reached no checkpoint, or swallowed its
    /// `Cancelled`), `start` returns `value`; if it returns an error (its
    /// `Cancelled` included), `start` returns that error.
    ///
    /// ```
    /// use trioxide::{run, open_nursery, BoxError, CancelScope, TaskStatus};
    /// run(open_nursery(|n| async move {
    ///     let scope = CancelScope::new();
    ///     scope.cancel();
    ///     let got = scope
    ///         .run(n.start(|status: TaskStatus<u8>| async move {
    ///             status.started(1); // no checkpoint after it
    ///         }))
    ///         .await?;
    ///     assert_eq!(got, Some(1)); // the body finished: start returned 1
    ///     assert!(!scope.cancelled_caught());
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub fn started(self, value: V) {
        let s = &*self.shared;
        if s.state.get() != State::Waiting {
            return;
        }
        *s.value.borrow_mut() = Some(value);
        if s.root.effectively_cancelled.get() {
            return;
        }
        s.state.set(State::Started);
        s.target.child_adopted();
        s.target.pending_starts.set(s.target.pending_starts.get() - 1);
        s.root.reparent(s.target.scope.clone());
        Core::current().set_task_parent(s.task.get(), s.target.owner);
        s.wake_starter();
    }
}

impl Nursery {
    /// Starts a child and waits until it calls
    /// [`TaskStatus::started`]`(value)`; returns that value. From then on
    /// the child belongs to this nursery.
    ///
    /// Errors: the child's own error (unwrapped) if it fails before
    /// `started`; [`StartError::NotStarted`] if it returns without calling
    /// it; [`NurseryClosed`] at once if the nursery is closed. A panic
    /// before `started` resumes in the caller. Waiting here is not a cancel
    /// point: if the caller is cancelled, the child (still under the caller)
    /// is cancelled, and `start` reports what the child did about it: its
    /// `Cancelled` if it returned one, the value if it called `started` and
    /// ended without error (see [`TaskStatus::started`]).
    ///
    /// ```
    /// use trioxide::{run, open_nursery, BoxError, TaskStatus};
    /// run(open_nursery(|n| async move {
    ///     let port = n.start(|status: TaskStatus<u16>| async move {
    ///         status.started(8080); // e.g. after binding a listener
    ///         Ok::<_, BoxError>(())
    ///     }).await?;
    ///     assert_eq!(port, 8080);
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub fn start<S, F, V>(&self, spawn: S) -> Start<S, V>
    where
        S: FnOnce(TaskStatus<V>) -> F,
        F: Future + 'static,
        F::Output: TaskOutput,
        V: 'static,
    {
        Start { spawn: Some(spawn), target: self.inner.clone(), shared: None, done: false }
    }
}

pin_project! {
    /// The future of [`Nursery::start`].
    ///
    /// ```
    /// use trioxide::{open_nursery, run, BoxError, Start, TaskStatus};
    /// run(open_nursery(|n| async move {
    ///     let start = n.start(|status: TaskStatus<&str>| async move { status.started("up"); Ok::<_, BoxError>(()) });
    ///     fn is_start<S, V>(_: &Start<S, V>) {}
    ///     is_start(&start);
    ///     assert_eq!(start.await?, "up");
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    #[must_use = "start does nothing unless awaited"]
    pub struct Start<S, V> {
        spawn: Option<S>,
        target: Rc<NurseryInner>,
        shared: Option<Rc<StartShared<V>>>,
        done: bool,
    }

    impl<S, V> PinnedDrop for Start<S, V> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(s) = this.shared.as_ref() {
                if s.state.get() == State::Waiting {
                    s.state.set(State::Abandoned);
                    s.target.pending_starts.set(s.target.pending_starts.get() - 1);
                    s.target.maybe_wake();
                    s.root.abandon();
                }
            }
        }
    }
}

impl<S, F, V> Future for Start<S, V>
where
    S: FnOnce(TaskStatus<V>) -> F,
    F: Future + 'static,
    F::Output: TaskOutput,
    V: 'static,
{
    type Output = Result<V, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        assert!(!*this.done, "start future polled after completion");
        let core = Core::current();
        let shared = match this.shared {
            Some(s) => s.clone(),
            None => {
                if this.target.is_closed() {
                    *this.done = true;
                    return Poll::Ready(Err(Box::new(NurseryClosed)));
                }
                this.target.pending_starts.set(this.target.pending_starts.get() + 1);
                let shared = Rc::new(StartShared {
                    target: this.target.clone(),
                    root: ScopeNode::new_task_root(current_status_rc(core)),
                    task: Cell::new(TaskId::NONE),
                    state: Cell::new(State::Waiting),
                    value: RefCell::new(None),
                    outcome: RefCell::new(None),
                    waker: RefCell::new(None),
                });
                let spawn = this.spawn.take().expect("start spawn function taken twice");
                let task = spawn(TaskStatus { shared: shared.clone() });
                let child = ChildTask { task, link: shared.clone() };
                // SAFETY: the closure writes the whole future (named after
                // the started future's type, `F`).
                let id = unsafe {
                    core.spawn_in_place::<ChildTask<F, Rc<StartShared<V>>>, F>(
                        shared.root.clone(),
                        None,
                        core.current_task(),
                        |dst| dst.write(child),
                    )
                };
                shared.task.set(id);
                *this.shared = Some(shared.clone());
                shared
            }
        };
        match shared.state.get() {
            State::Started => {
                *this.done = true;
                let v = shared.value.borrow_mut().take().expect("started value delivered once");
                Poll::Ready(Ok(v))
            }
            State::Exited => {
                *this.done = true;
                // The child ended under the caller. Whether the caller was
                // cancelled does not matter here (Trio): the child's outcome
                // decides, and a value recorded by `started` in a cancelled
                // caller is returned if the child ended without error.
                match shared.outcome.borrow_mut().take() {
                    Some(Outcome::Err(e)) => Poll::Ready(Err(e)),
                    Some(Outcome::Panic(p)) => resume_unwind(p),
                    Some(Outcome::Ok) | None => match shared.value.borrow_mut().take() {
                        Some(v) => Poll::Ready(Ok(v)),
                        None => Poll::Ready(Err(Box::new(StartError::NotStarted))),
                    },
                }
            }
            State::Waiting | State::Abandoned => {
                *shared.waker.borrow_mut() = Some(cx.waker().clone());
                core.set_waiting_on("start");
                Poll::Pending
            }
        }
    }
}
