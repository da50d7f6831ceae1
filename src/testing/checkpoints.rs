//! [`assert_checkpoints`] and [`assert_no_checkpoints`] (Trio's
//! `trio.testing` functions of the same names): check that an operation is,
//! or is not, a checkpoint.
//!
//! A *checkpoint* is a cancel point (the code asked whether its scope is
//! cancelled) plus a schedule point (other tasks could run). The runtime
//! counts both: `Core::cancel_checks` goes up at every cancel check, and a
//! schedule point is either a `Pending` from the inner future (the task
//! really yielded) or an offer to yield that found nobody else runnable
//! (`Core::yield_offers`, counted by `after_io`, which yields only when
//! another task could run: the offer is the schedule point, whether or not
//! anyone took it). The counters are read just before and after each poll
//! of the inner future: the runtime is single-threaded, so whatever they
//! count in between was done by the inner code.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::kernel::Core;

/// What a [`Measure`]d future did: its cancel checks and schedule points.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Checkpoints {
    pub(crate) cancel_points: u64,
    pub(crate) schedule_points: u64,
}

impl Checkpoints {
    /// At least one cancel point and one schedule point: a full checkpoint.
    pub(crate) fn is_checkpoint(&self) -> bool {
        self.cancel_points > 0 && self.schedule_points > 0
    }

    /// Neither a cancel point nor a schedule point.
    pub(crate) fn is_none(&self) -> bool {
        self.cancel_points == 0 && self.schedule_points == 0
    }
}

impl fmt::Display for Checkpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} cancel point(s), {} schedule point(s)", self.cancel_points, self.schedule_points)
    }
}

pin_project! {
    /// Polls `inner` and counts the checkpoints it makes; outputs them
    /// with its result.
    pub(crate) struct Measure<F> {
        #[pin]
        inner: F,
        seen: Checkpoints,
    }
}

impl<F: Future> Measure<F> {
    pub(crate) fn new(inner: F) -> Self {
        Measure { inner, seen: Checkpoints::default() }
    }
}

impl<F: Future> Future for Measure<F> {
    type Output = (F::Output, Checkpoints);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let core = Core::current();
        let (checks, offers) = (core.cancel_checks(), core.yield_offers());
        let poll = this.inner.poll(cx);
        this.seen.cancel_points += core.cancel_checks() - checks;
        this.seen.schedule_points += core.yield_offers() - offers;
        match poll {
            Poll::Ready(out) => Poll::Ready((out, *this.seen)),
            Poll::Pending => {
                this.seen.schedule_points += 1;
                Poll::Pending
            }
        }
    }
}

/// Wraps `fut` and panics when it completes unless it made at least one
/// cancel point and one schedule point (Trio's `assert_checkpoints`):
/// for testing that an operation is a checkpoint. The output is passed
/// through.
///
/// Unlike Trio, which skips the check when the block raises, the check is
/// made whatever `fut` returns (an `Err` too): wrap operations you expect
/// to succeed. An operation that fails at once (on a closed stream, say)
/// need not be a checkpoint.
///
/// # Panics
/// With "assert_checkpoints block did not yield!" and the caller's
/// location. Outside a trioxide run.
///
/// ```
/// use std::time::Duration;
/// use trioxide::{run, checkpoint, sleep, Cancelled};
/// use trioxide::testing::assert_checkpoints;
///
/// run(async {
///     assert_checkpoints(checkpoint()).await?;
///     assert_checkpoints(sleep(Duration::ZERO)).await?;
///     Ok::<_, Cancelled>(())
/// }).unwrap();
/// ```
#[track_caller]
pub fn assert_checkpoints<F: Future>(fut: F) -> AssertCheckpoints<F> {
    AssertCheckpoints { inner: Measure::new(fut), expect: true, caller: Location::caller() }
}

/// Wraps `fut` and panics when it completes if it made any cancel point or
/// schedule point (Trio's `assert_no_checkpoints`): for testing that code
/// runs without letting other tasks in or being cancelled, such as a
/// `try_` operation. The output is passed through.
///
/// # Panics
/// With "assert_no_checkpoints block yielded!" and the caller's location.
/// Outside a trioxide run.
///
/// ```
/// use trioxide::run;
/// use trioxide::testing::assert_no_checkpoints;
///
/// let sum = run(async {
///     assert_no_checkpoints(async { 1 + 1 }).await
/// });
/// assert_eq!(sum, 2);
/// ```
#[track_caller]
pub fn assert_no_checkpoints<F: Future>(fut: F) -> AssertCheckpoints<F> {
    AssertCheckpoints { inner: Measure::new(fut), expect: false, caller: Location::caller() }
}

pin_project! {
    /// The future of [`assert_checkpoints`] and [`assert_no_checkpoints`]:
    /// the wrapped future's output, passed through once the check holds.
    /// The counting covers every poll, so a checkpoint made after the
    /// first one counts too.
    ///
    /// ```
    /// use trioxide::{open_memory_channel, run};
    /// use trioxide::testing::{assert_checkpoints, assert_no_checkpoints, AssertCheckpoints};
    ///
    /// run(async {
    ///     let (tx, rx) = open_memory_channel::<u8>(1);
    ///     // try_send never yields nor checks for cancellation...
    ///     let quiet: AssertCheckpoints<_> = assert_no_checkpoints(async { tx.try_send(1) });
    ///     assert!(quiet.await.is_ok());
    ///     // ...while a receive is a checkpoint even when a value is ready.
    ///     assert_eq!(assert_checkpoints(rx.receive()).await, Ok(1));
    /// });
    /// ```
    ///
    /// # Panics
    /// When the wrapped future completes without the checkpoints expected,
    /// naming the line that called `assert_checkpoints` or
    /// `assert_no_checkpoints`.
    ///
    /// ```should_panic
    /// use trioxide::{run, testing::assert_checkpoints};
    /// run(async {
    ///     assert_checkpoints(async { 42 }).await // panics: no checkpoint
    /// });
    /// ```
    #[must_use = "the assertion is made when the wrapped future completes, so it must be awaited"]
    pub struct AssertCheckpoints<F> {
        #[pin]
        inner: Measure<F>,
        expect: bool,
        caller: &'static Location<'static>,
    }
}

impl<F> fmt::Debug for AssertCheckpoints<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssertCheckpoints")
            .field("expect_checkpoints", &self.expect)
            .field("seen", &self.inner.seen)
            .field("caller", &self.caller)
            .finish()
    }
}

impl<F: Future> Future for AssertCheckpoints<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let (out, seen) = std::task::ready!(this.inner.poll(cx));
        if *this.expect && !seen.is_checkpoint() {
            panic!("assert_checkpoints block did not yield! ({seen}; at {})", this.caller);
        }
        if !*this.expect && !seen.is_none() {
            panic!("assert_no_checkpoints block yielded! ({seen}; at {})", this.caller);
        }
        Poll::Ready(out)
    }
}
