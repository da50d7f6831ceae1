//! Running blocking code on worker threads (Trio's `trio.to_thread`).
//!
//! [`run_sync`] sends a closure to a cached worker thread and waits for its
//! result without blocking the runtime. How many closures run at once is
//! limited by a [`CapacityLimiter`]: by default the run's own limiter of
//! [`DEFAULT_THREAD_LIMIT`] tokens ([`current_default_thread_limiter`]).
//!
//! **Cancellation.** A thread cannot be interrupted. By default the call
//! therefore ignores cancellation while the closure runs and returns its
//! result; the next checkpoint reports the cancellation. With
//! [`RunSync::abandon_on_cancel`] the call returns `Cancelled` at once and
//! leaves the closure to finish on its own; its result is dropped, and its
//! limiter token is given back only when it actually finishes (so the
//! limiter still bounds the threads really running). Name resolution in
//! [`open_tcp_stream`](crate::open_tcp_stream) works this way.

use std::future::{Future, IntoFuture};
use std::io;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::kernel::error::Cancelled;
use crate::kernel::run_local::RunVar;
use crate::kernel::Core;
use crate::sync::{BorrowError, Borrower, CapacityLimiter};
use crate::thread::from_thread::{current_handle, with_worker_handle};

/// Tokens of each run's default thread limiter: how many `run_sync`
/// closures run at once unless a call names its own limiter. 40 is Trio's
/// default: enough for typical blocking work (file I/O, name lookups)
/// without letting a flood of calls start thousands of threads.
///
/// ```
/// use trioxide::{run, to_thread};
/// run(async {
///     let limiter = to_thread::current_default_thread_limiter();
///     assert_eq!(limiter.total_tokens(), to_thread::DEFAULT_THREAD_LIMIT);
/// });
/// ```
pub const DEFAULT_THREAD_LIMIT: usize = 40;

/// The run's default limiter for [`run_sync`]: [`DEFAULT_THREAD_LIMIT`]
/// tokens at first; change its total with
/// [`CapacityLimiter::set_total_tokens`].
///
/// ```
/// trioxide::run(async {
///     let limiter = trioxide::to_thread::current_default_thread_limiter();
///     assert_eq!(limiter.total_tokens(), 40);
/// });
/// ```
///
/// # Panics
/// Outside [`run`](crate::run).
pub fn current_default_thread_limiter() -> Rc<CapacityLimiter> {
    DEFAULT_LIMITER.get()
}

/// The run's default limiter, made on first use in each run.
static DEFAULT_LIMITER: RunVar<Rc<CapacityLimiter>> =
    RunVar::new("to_thread default limiter", || Rc::new(CapacityLimiter::new(DEFAULT_THREAD_LIMIT)));

/// Runs `f` on a worker thread and returns its result: a checkpoint that
/// waits without blocking other tasks. A panic in `f` resumes in the
/// calling task.
///
/// The output is `io::Result<R>`: `Err` carries [`Cancelled`] (see
/// [`io_error_kind`](crate::io_error_kind)) if the call was cancelled
/// before the closure started, or, with
/// [`abandon_on_cancel`](RunSync::abandon_on_cancel), while it ran; or the
/// OS error if no thread could be started.
///
/// ```
/// let n = trioxide::run(async {
///     let data = trioxide::to_thread::run_sync(|| std::fs::read("Cargo.toml")).await??;
///     Ok::<_, std::io::Error>(data.len())
/// });
/// assert!(n.unwrap() > 0);
/// ```
pub fn run_sync<F, R>(f: F) -> RunSync<F>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    RunSync { f, abandon: false, limiter: None }
}

/// A [`run_sync`] call being configured; `.await` it to run.
///
/// ```
/// use std::rc::Rc;
/// use trioxide::sync::CapacityLimiter;
/// use trioxide::{run, to_thread, BoxError};
/// let r = run(async {
///     let one_at_a_time = Rc::new(CapacityLimiter::new(1));
///     let call = to_thread::run_sync(|| 6 * 7).limiter(one_at_a_time).abandon_on_cancel(false);
///     Ok::<_, BoxError>(call.await?) // configured, then awaited
/// });
/// assert_eq!(r.unwrap(), 42);
/// ```
#[must_use = "to_thread::run_sync does nothing unless awaited"]
pub struct RunSync<F> {
    f: F,
    abandon: bool,
    limiter: Option<Rc<CapacityLimiter>>,
}

impl<F> std::fmt::Debug for RunSync<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSync").field("abandon_on_cancel", &self.abandon).finish_non_exhaustive()
    }
}

impl<F> RunSync<F> {
    /// If `yes`, a cancellation while the closure runs returns `Cancelled`
    /// at once and abandons the closure to finish on its own (its result is
    /// dropped). Default: `false`, the call waits for the closure.
    ///
    /// ```
    /// use std::time::Duration;
    /// let r = trioxide::run(trioxide::move_on_after(Duration::from_millis(10), async {
    ///     trioxide::to_thread::run_sync(|| std::thread::sleep(Duration::from_millis(200)))
    ///         .abandon_on_cancel(true)
    ///         .await
    /// }));
    /// assert!(matches!(r, Ok(None))); // gave up after 10 ms
    /// ```
    pub fn abandon_on_cancel(mut self, yes: bool) -> Self {
        self.abandon = yes;
        self
    }

    /// Goes through `limiter` instead of the run's default one.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use trioxide::sync::CapacityLimiter;
    /// let r = trioxide::run(async {
    ///     let one_at_a_time = Rc::new(CapacityLimiter::new(1));
    ///     trioxide::to_thread::run_sync(|| 5).limiter(one_at_a_time).await
    /// });
    /// assert_eq!(r.unwrap(), 5);
    /// ```
    pub fn limiter(mut self, limiter: Rc<CapacityLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }
}

impl<F, R> IntoFuture for RunSync<F>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    type Output = io::Result<R>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<R>>>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run_sync_inner(self.f, self.abandon, self.limiter))
    }
}

async fn run_sync_inner<F, R>(f: F, abandon: bool, limiter: Option<Rc<CapacityLimiter>>) -> io::Result<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    if Core::current().is_cancelled() {
        return Err(Cancelled.into());
    }
    if Core::current().threads_inline() {
        // Simulation (`trioxide::sim`): no worker thread, so no limiter and
        // no nondeterministic hand-over; the closure runs here, then the
        // call yields once, as a call that waited would have.
        let out = catch_unwind(AssertUnwindSafe(f));
        crate::time::cancel_shielded_checkpoint().await;
        return match out {
            Ok(v) => Ok(v),
            Err(panic) => resume_unwind(panic),
        };
    }
    let limiter = limiter.unwrap_or_else(current_default_thread_limiter);
    // Each call borrows on behalf of a borrower of its own, as Trio does
    // (a task may have several calls in flight through select-like code).
    let borrower = Borrower::unique();
    let token = match limiter.acquire_on_behalf_of(borrower).await {
        Ok(t) => t,
        Err(BorrowError::Cancelled) => return Err(Cancelled.into()),
        // A fresh borrower cannot already hold a token; report it anyway.
        Err(e) => return Err(io::Error::other(e)),
    };
    let slot = Arc::new(Mutex::new(Slot { result: None, waker: None }));
    let done = Completion { slot: slot.clone(), result: None };
    let handle = current_handle();
    let job = Box::new(move || {
        let mut done = done;
        done.result = Some(with_worker_handle(handle, || catch_unwind(AssertUnwindSafe(f))));
    });
    crate::thread::pool::spawn(job)?;
    // The token now belongs to the running closure: give it back only when
    // the closure has finished, even if this call is abandoned.
    token.forget();
    let outcome = WaitThread { slot: &slot, abandon }.await;
    match outcome {
        Some(result) => {
            release(&limiter, borrower);
            match result {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(panic)) => resume_unwind(panic),
                Err(lost) => Err(lost),
            }
        }
        None => {
            // Abandoned: a system task gives the token back when the closure
            // finishes (or when the run ends, whichever comes first).
            let core = Core::current();
            let cleanup = async move {
                let _ = WaitThread { slot: &slot, abandon: true }.await;
                release(&limiter, borrower);
            };
            core.spawn_system(cleanup, "trioxide to_thread (abandoned)".into());
            Err(Cancelled.into())
        }
    }
}

fn release(limiter: &CapacityLimiter, borrower: Borrower) {
    // Cannot fail: this borrower's token was forgotten above and nothing
    // else releases it.
    let _ = limiter.release_on_behalf_of(borrower);
}

/// A finished closure's result: its value or panic, or an error if the
/// job was dropped without running.
type ThreadResult<R> = Result<std::thread::Result<R>, io::Error>;

struct Slot<R> {
    result: Option<ThreadResult<R>>,
    waker: Option<Waker>,
}

/// Travels with the job; delivers the result, or "did not run" if the job
/// is dropped unrun, and wakes the waiting task.
struct Completion<R> {
    slot: Arc<Mutex<Slot<R>>>,
    result: Option<std::thread::Result<R>>,
}

impl<R> Drop for Completion<R> {
    fn drop(&mut self) {
        let result = match self.result.take() {
            Some(r) => Ok(r),
            None => Err(io::Error::other("the worker thread dropped the job without running it")),
        };
        let waker = {
            let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
            slot.result = Some(result);
            slot.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Waits for the closure's result; with `abandon`, gives up (`None`) when
/// cancelled.
struct WaitThread<'a, R> {
    slot: &'a Arc<Mutex<Slot<R>>>,
    abandon: bool,
}

impl<R> Future for WaitThread<'_, R> {
    type Output = Option<ThreadResult<R>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let core = Core::current();
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = slot.result.take() {
            return Poll::Ready(Some(r));
        }
        if self.abandon && core.is_cancelled() {
            return Poll::Ready(None);
        }
        match &mut slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            other => *other = Some(cx.waker().clone()),
        }
        core.set_waiting_on("to_thread");
        Poll::Pending
    }
}
