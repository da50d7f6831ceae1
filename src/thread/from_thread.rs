//! Calling into a run from other threads (Trio's `trio.from_thread` and
//! `TrioToken`).
//!
//! A [`RuntimeHandle`] names one run. Any thread holding it can run a
//! closure ([`RuntimeHandle::run_sync`]) or a future
//! ([`RuntimeHandle::run`]) on the runtime thread and block until it has
//! the result. Inside a [`to_thread::run_sync`](crate::thread::to_thread::run_sync)
//! worker the free functions [`run_sync`] and [`run`] find the handle on
//! their own.
//!
//! How it works: the closure travels to the runtime through the same
//! mutex-protected queue as cross-thread wake-ups, and the runtime runs it
//! between two scheduler passes. A future is spawned there as a *system
//! task*: it belongs to no nursery, runs under the run's root cancel status
//! (so it is cancelled when `main` returns), and sends its output back.
//! The calling thread waits on a one-shot channel; if the run ends first,
//! the queued closure is dropped and the thread gets
//! [`FromThreadError::RunFinished`].

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::kernel::remote::Shared;
use crate::kernel::Core;

thread_local! {
    /// Set on a worker thread while it runs a `to_thread` job.
    static WORKER_HANDLE: RefCell<Option<RuntimeHandle>> = const { RefCell::new(None) };
}

/// A handle to a running trioxide run, usable from any thread (Trio's
/// `TrioToken`). Get it inside the run with [`current_handle`].
///
/// ```
/// use trioxide::from_thread::current_handle;
/// use trioxide::to_thread;
///
/// let total = trioxide::run(async {
///     let handle = current_handle();
///     // A plain OS thread calls back into the run.
///     let t = std::thread::spawn(move || handle.run_sync(|| 40 + 2));
///     // Keep the run alive (and not blocked) until the thread is done.
///     let answer = to_thread::run_sync(move || t.join().unwrap()).await?;
///     Ok::<_, trioxide::BoxError>(answer?)
/// });
/// assert_eq!(total.unwrap(), 42);
/// ```
#[derive(Clone)]
pub struct RuntimeHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for RuntimeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeHandle").finish_non_exhaustive()
    }
}

/// The handle of the run this code runs in.
///
/// # Panics
/// Outside [`run`](crate::run) (on another thread, say: get the handle on
/// the runtime's thread and send it): "trioxide::from_thread::current_handle
/// must be called from inside trioxide::run", at the caller's line.
///
/// ```
/// use trioxide::{from_thread, run, to_thread, BoxError};
/// let runtime_thread = std::thread::current().id();
/// let r = run(async {
///     let handle = from_thread::current_handle(); // on the runtime's thread
///     let ran_on = to_thread::run_sync(move || {
///         // On a worker thread: run a closure back on the runtime.
///         handle.run_sync(|| std::thread::current().id())
///     })
///     .await??;
///     Ok::<_, BoxError>(ran_on)
/// });
/// assert_eq!(r.unwrap(), runtime_thread);
/// ```
#[track_caller]
pub fn current_handle() -> RuntimeHandle {
    RuntimeHandle { shared: Core::current_for("trioxide::from_thread::current_handle").shared().clone() }
}

/// Why a call from another thread did not return the closure's result.
///
/// ```
/// use trioxide::from_thread::{self, FromThreadError};
/// use trioxide::{run, to_thread, BoxError};
/// // Not a to_thread worker: the free functions have no run to reach.
/// assert_eq!(from_thread::run_sync(|| 1), Err(FromThreadError::NotAWorkerThread));
/// run(async {
///     let handle = from_thread::current_handle();
///     // On the runtime's own thread, waiting for the answer would deadlock.
///     assert_eq!(handle.run_sync(|| 1), Err(FromThreadError::OnRuntimeThread));
///     let h = handle.clone();
///     to_thread::run_sync(move || assert_eq!(h.run_sync(|| 2), Ok(2))).await?;
///     Ok::<_, BoxError>(handle)
/// })
/// .map(|handle| assert_eq!(handle.run_sync(|| 3), Err(FromThreadError::RunFinished)))
/// .unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromThreadError {
    /// The run is over (or ended before the call ran).
    RunFinished,
    /// Called on the runtime's own thread, where blocking for the answer
    /// would deadlock. Just call the code directly there.
    OnRuntimeThread,
    /// The free functions [`run`] and [`run_sync`] were called on a thread
    /// that is not running a `to_thread` job: use a [`RuntimeHandle`].
    NotAWorkerThread,
}

impl fmt::Display for FromThreadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FromThreadError::RunFinished => "the trioxide run is over",
            FromThreadError::OnRuntimeThread => {
                "from_thread called on the runtime's own thread (it would deadlock); call the code directly"
            }
            FromThreadError::NotAWorkerThread => {
                "from_thread::run/run_sync called outside a to_thread worker; use a RuntimeHandle"
            }
        })
    }
}

impl std::error::Error for FromThreadError {}

impl RuntimeHandle {
    /// Runs `f` on the runtime thread, between two scheduler passes, and
    /// returns its result. Blocks the calling thread until then. A panic in
    /// `f` resumes in the calling thread.
    ///
    /// `f` runs outside any task: it may use the runtime's synchronous API
    /// (set an `Event`, `try_send` on a channel, cancel a scope) but not
    /// await.
    ///
    /// ```
    /// let r = trioxide::run(async {
    ///     let h = trioxide::from_thread::current_handle();
    ///     trioxide::to_thread::run_sync(move || h.run_sync(|| "ran on the runtime thread")).await
    /// });
    /// assert_eq!(r.unwrap(), Ok("ran on the runtime thread"));
    /// ```
    pub fn run_sync<F, R>(&self, f: F) -> Result<R, FromThreadError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.check_thread()?;
        let (tx, rx) = mpsc::sync_channel(1);
        let job = Box::new(move || {
            let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
        });
        self.shared.push_job(job).map_err(|_| FromThreadError::RunFinished)?;
        match rx.recv() {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(panic)) => resume_unwind(panic),
            // The job was dropped unrun: the run ended first.
            Err(_) => Err(FromThreadError::RunFinished),
        }
    }

    /// Runs the future made by `make` as a system task of the run and
    /// returns its output. Blocks the calling thread until then. `make`
    /// runs on the runtime thread, so the future need not be `Send`.
    ///
    /// The task runs under the run's root cancel status: it is cancelled
    /// when `main` returns, and then sees `Cancelled` at its checkpoints.
    /// A panic in it resumes in the calling thread.
    ///
    /// ```
    /// use std::time::Duration;
    /// let r = trioxide::run(async {
    ///     let h = trioxide::from_thread::current_handle();
    ///     trioxide::to_thread::run_sync(move || {
    ///         h.run(|| async {
    ///             trioxide::sleep(Duration::from_millis(1)).await?;
    ///             Ok::<_, trioxide::Cancelled>(7)
    ///         })
    ///     })
    ///     .await
    /// });
    /// assert_eq!(r.unwrap(), Ok(Ok(7)));
    /// ```
    pub fn run<M, Fut>(&self, make: M) -> Result<Fut::Output, FromThreadError>
    where
        M: FnOnce() -> Fut + Send + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        self.check_thread()?;
        let (tx, rx) = mpsc::sync_channel(1);
        let job = Box::new(move || {
            let core = Core::current();
            let task = SystemTask { fut: None, make: Some(Box::new(make)), tx };
            core.spawn_system(task, "trioxide from_thread::run".into());
        });
        self.shared.push_job(job).map_err(|_| FromThreadError::RunFinished)?;
        match rx.recv() {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(panic)) => resume_unwind(panic),
            Err(_) => Err(FromThreadError::RunFinished),
        }
    }

    /// Queues `f` to run on the runtime thread and returns at once (Trio's
    /// `TrioToken.run_sync_soon`). A panic in `f` is reported on stderr.
    ///
    /// ```
    /// let r = trioxide::run(async {
    ///     let h = trioxide::from_thread::current_handle();
    ///     h.run_sync_soon(|| println!("later, on the runtime thread"))
    /// });
    /// assert!(r.is_ok());
    /// ```
    pub fn run_sync_soon<F>(&self, f: F) -> Result<(), FromThreadError>
    where
        F: FnOnce() + Send + 'static,
    {
        self.shared.push_job(Box::new(f)).map_err(|_| FromThreadError::RunFinished)
    }

    fn check_thread(&self) -> Result<(), FromThreadError> {
        match Core::try_current() {
            Some(core) if Arc::ptr_eq(core.shared(), &self.shared) => Err(FromThreadError::OnRuntimeThread),
            _ => Ok(()),
        }
    }
}

/// The future of a system task started by [`RuntimeHandle::run`]: makes
/// the user's future on its first poll (on the runtime thread) and sends
/// the output, or the panic, back.
struct SystemTask<M, Fut: Future> {
    fut: Option<Pin<Box<Fut>>>,
    /// Boxed so the whole struct is `Unpin` (no pinning to reason about).
    make: Option<Box<M>>,
    tx: mpsc::SyncSender<std::thread::Result<Fut::Output>>,
}

impl<M, Fut> Future for SystemTask<M, Fut>
where
    M: FnOnce() -> Fut,
    Fut: Future,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let r = catch_unwind(AssertUnwindSafe(|| {
            if this.fut.is_none() {
                let make = this.make.take().expect("system task made twice");
                this.fut = Some(Box::pin(make()));
            }
            this.fut.as_mut().map(|f| f.as_mut().poll(cx))
        }));
        let out = match r {
            Ok(Some(Poll::Pending)) => return Poll::Pending,
            Ok(Some(Poll::Ready(v))) => Ok(v),
            Ok(None) => return Poll::Ready(()),
            Err(panic) => Err(panic),
        };
        this.fut = None;
        // The receiver may be gone (the thread panicked); nothing to do then.
        let _ = this.tx.send(out);
        Poll::Ready(())
    }
}

/// Runs `f` on the runtime thread of the run whose
/// [`to_thread::run_sync`](crate::thread::to_thread::run_sync) job is calling (see
/// [`RuntimeHandle::run_sync`]).
///
/// ```
/// let r = trioxide::run(async {
///     trioxide::to_thread::run_sync(|| trioxide::from_thread::run_sync(|| 1 + 1)).await
/// });
/// assert_eq!(r.unwrap(), Ok(2));
/// ```
pub fn run_sync<F, R>(f: F) -> Result<R, FromThreadError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    worker_handle()?.run_sync(f)
}

/// Runs the future made by `make` on the run whose `to_thread` job is
/// calling (see [`RuntimeHandle::run`]).
///
/// ```
/// let r = trioxide::run(async {
///     trioxide::to_thread::run_sync(|| {
///         trioxide::from_thread::run(|| async { trioxide::checkpoint().await.map(|()| "ok") })
///     })
///     .await
/// });
/// assert_eq!(r.unwrap(), Ok(Ok("ok")));
/// ```
pub fn run<M, Fut>(make: M) -> Result<Fut::Output, FromThreadError>
where
    M: FnOnce() -> Fut + Send + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    worker_handle()?.run(make)
}

fn worker_handle() -> Result<RuntimeHandle, FromThreadError> {
    if Core::try_current().is_some() {
        return Err(FromThreadError::OnRuntimeThread);
    }
    WORKER_HANDLE.with(|h| h.borrow().clone()).ok_or(FromThreadError::NotAWorkerThread)
}

/// Runs `f` with `handle` installed as this worker thread's handle.
pub(crate) fn with_worker_handle<R>(handle: RuntimeHandle, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            WORKER_HANDLE.with(|h| *h.borrow_mut() = None);
        }
    }
    WORKER_HANDLE.with(|h| *h.borrow_mut() = Some(handle));
    let _reset = Reset;
    f()
}
