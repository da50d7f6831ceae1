//! Timeouts built on cancel scopes: `move_on_*` gives up quietly,
//! `fail_*` reports [`TooSlow`].
//!
//! Each returns a future ([`MoveOn`], [`FailAfter`]) that is also the
//! timeout's cancel scope, as Trio's `move_on_after` returns a
//! `CancelScope`: `.shield(true)` before awaiting shields it, `.scope()`
//! gives a [`CancelScope`] handle to cancel it, move its deadline or read
//! `cancel_called()` / `cancelled_caught()` afterwards. The scope's node in
//! the cancel tree is made only when needed (the body blocks, or a handle is
//! asked for): a timeout around work that finishes at once costs one clock
//! read (DESIGN.md §3, "Timeouts enter lazily").

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;

use crate::kernel::cancel::{CancelScope, ScopeOp, TimeoutScoped};
use crate::kernel::clock::Instant;
use crate::kernel::error::{Cancellation, TooSlow};

/// Runs `body` with a deadline `timeout` after it starts; on expiry the body
/// is cancelled and the output is `Ok(None)`.
///
/// The deadline counts from the first poll (rule C11), not from this call.
/// The output is `Ok(Some(value))` if the body finished, `Ok(None)` if the
/// deadline cancelled it and the scope caught the body's `Cancelled`, and
/// `Err(e)` otherwise (an outer scope's cancellation included).
///
/// ```
/// use std::time::Duration;
/// use trioxide::{move_on_after, sleep, Builder, MockClock, Cancelled};
/// let clock = MockClock::new();
/// clock.set_autojump_threshold(Some(Duration::ZERO));
/// let r = Builder::new().clock(clock).run(move_on_after(Duration::from_secs(1), async {
///     sleep(Duration::from_secs(5)).await?;
///     Ok::<_, Cancelled>(1)
/// }));
/// assert_eq!(r, Ok(None));
/// ```
pub fn move_on_after<F, T, E>(timeout: Duration, body: F) -> MoveOn<F>
where
    F: Future<Output = Result<T, E>>,
    E: Cancellation,
{
    MoveOn { inner: TimeoutScoped::new(body, Instant::FAR_FUTURE, Some(timeout)) }
}

/// Runs `body` with an absolute deadline; on expiry the output is `Ok(None)`.
///
/// A deadline already passed cancels the body at its first checkpoint
/// (rule C10).
///
/// ```
/// use std::time::Duration;
/// use trioxide::{current_time, move_on_at, sleep, Builder, MockClock, Cancelled};
/// let clock = MockClock::new();
/// clock.set_autojump_threshold(Some(Duration::ZERO));
/// let r = Builder::new().clock(clock).run(async {
///     let deadline = current_time() + Duration::from_secs(1);
///     move_on_at(deadline, async {
///         sleep(Duration::from_secs(5)).await?;
///         Ok::<_, Cancelled>(1)
///     })
///     .await
/// });
/// assert_eq!(r, Ok(None));
/// ```
pub fn move_on_at<F, T, E>(deadline: Instant, body: F) -> MoveOn<F>
where
    F: Future<Output = Result<T, E>>,
    E: Cancellation,
{
    MoveOn { inner: TimeoutScoped::new(body, deadline, None) }
}

/// Runs `body` with a deadline `timeout` after it starts; if the deadline
/// cancelled the body, reports [`TooSlow`] (converted into `E`).
///
/// ```
/// use std::time::Duration;
/// use trioxide::{fail_after, sleep, Builder, MockClock, BoxError, TooSlow};
/// let clock = MockClock::new();
/// clock.set_autojump_threshold(Some(Duration::ZERO));
/// let r: Result<(), BoxError> = Builder::new().clock(clock).run(fail_after(Duration::from_secs(1), async {
///     sleep(Duration::from_secs(5)).await?;
///     Ok(())
/// }));
/// assert!(r.unwrap_err().is::<TooSlow>());
/// ```
pub fn fail_after<F, T, E>(timeout: Duration, body: F) -> FailAfter<F>
where
    F: Future<Output = Result<T, E>>,
    E: Cancellation + From<TooSlow>,
{
    FailAfter { inner: TimeoutScoped::new(body, Instant::FAR_FUTURE, Some(timeout)) }
}

/// Runs `body` with an absolute deadline; reports [`TooSlow`] if it expired.
///
/// ```
/// use std::time::Duration;
/// use trioxide::{current_time, fail_at, sleep, Builder, MockClock, BoxError, TooSlow};
/// let clock = MockClock::new();
/// clock.set_autojump_threshold(Some(Duration::ZERO));
/// let r: Result<(), BoxError> = Builder::new().clock(clock).run(async {
///     fail_at(current_time() + Duration::from_secs(1), async {
///         sleep(Duration::from_secs(5)).await?;
///         Ok(())
///     })
///     .await
/// });
/// assert!(r.unwrap_err().is::<TooSlow>());
/// ```
pub fn fail_at<F, T, E>(deadline: Instant, body: F) -> FailAfter<F>
where
    F: Future<Output = Result<T, E>>,
    E: Cancellation + From<TooSlow>,
{
    FailAfter { inner: TimeoutScoped::new(body, deadline, None) }
}

pin_project! {
    /// The future of [`move_on_after`] and [`move_on_at`], and the timeout's
    /// cancel scope: [`shield`](MoveOn::shield) it before awaiting, or take a
    /// [`scope`](MoveOn::scope) handle.
    ///
    /// Its output is `Ok(Some(value))` if the body finished in time,
    /// `Ok(None)` if the timeout's own deadline cancelled it, and `Err(e)`
    /// for the body's other errors, a [`Cancelled`](crate::Cancelled) from
    /// an outer scope included (the timeout catches only its own).
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{move_on_after, sleep, Builder, CancelScope, Cancelled, MockClock};
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// Builder::new().clock(clock).run(async {
    ///     let quick = move_on_after(Duration::from_secs(1), async { Ok::<_, Cancelled>(1) });
    ///     assert_eq!(quick.await, Ok(Some(1)));
    ///
    ///     let slow = move_on_after(Duration::from_secs(1), async {
    ///         sleep(Duration::from_secs(5)).await?;
    ///         Ok::<_, Cancelled>(2)
    ///     });
    ///     assert_eq!(slow.await, Ok(None)); // its own deadline
    ///
    ///     let outer = CancelScope::with_relative_deadline(Duration::from_secs(1));
    ///     let out = outer.run(async {
    ///         let r = move_on_after(Duration::from_secs(10), async {
    ///             sleep(Duration::from_secs(5)).await?;
    ///             Ok::<_, Cancelled>(3)
    ///         })
    ///         .await;
    ///         assert_eq!(r, Err(Cancelled)); // the outer deadline, not ours
    ///         r
    ///     }).await;
    ///     assert_eq!(out, Ok(None));
    /// });
    /// ```
    ///
    /// # Panics
    /// When polled, naming "trioxide::MoveOn": if its scope (through a
    /// [`scope`](MoveOn::scope) handle) was entered elsewhere before; if
    /// polled by another task than the one that first polled it, under
    /// another scope than the one it was first polled in, after completion,
    /// or outside [`run`](crate::run); and when the body finishes while a
    /// scope entered inside it is still open (misnesting, rule C16).
    #[must_use = "a timeout does nothing unless awaited: `.await` it to run the body under the deadline"]
    pub struct MoveOn<F> {
        #[pin]
        inner: TimeoutScoped<F>,
    }
}

pin_project! {
    /// The future of [`fail_after`] and [`fail_at`], and the timeout's cancel
    /// scope: [`shield`](FailAfter::shield) it before awaiting, or take a
    /// [`scope`](FailAfter::scope) handle.
    ///
    /// Its output is `Ok(value)` if the body finished in time, and
    /// `Err(TooSlow.into())` only if the timeout's own deadline cancelled it
    /// (rule C12); a cancellation from an outer scope passes through as
    /// [`Cancelled`](crate::Cancelled), not as [`TooSlow`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{fail_after, sleep, BoxError, Builder, CancelScope, Cancelled, MockClock, TooSlow};
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// Builder::new().clock(clock).run(async {
    ///     let quick = fail_after(Duration::from_secs(1), async { Ok::<_, BoxError>(1) });
    ///     assert_eq!(quick.await.unwrap(), 1);
    ///
    ///     let slow = fail_after(Duration::from_secs(1), async {
    ///         sleep(Duration::from_secs(5)).await?;
    ///         Ok::<_, BoxError>(2)
    ///     });
    ///     assert!(slow.await.unwrap_err().is::<TooSlow>()); // its own deadline
    ///
    ///     let outer = CancelScope::with_relative_deadline(Duration::from_secs(1));
    ///     let out = outer.run(async {
    ///         let r = fail_after(Duration::from_secs(10), async {
    ///             sleep(Duration::from_secs(5)).await?;
    ///             Ok::<_, BoxError>(3)
    ///         })
    ///         .await;
    ///         let e = r.unwrap_err();
    ///         assert!(e.is::<Cancelled>()); // the outer deadline: not TooSlow
    ///         Err::<(), _>(e)
    ///     }).await;
    ///     assert!(out.unwrap().is_none()); // caught by the outer scope
    /// });
    /// ```
    ///
    /// # Panics
    /// When polled, naming "trioxide::FailAfter", in the cases listed for
    /// [`MoveOn`].
    #[must_use = "a timeout does nothing unless awaited: `.await` it to run the body under the deadline"]
    pub struct FailAfter<F> {
        #[pin]
        inner: TimeoutScoped<F>,
    }
}

macro_rules! scope_methods {
    ($ty:ident, $ctor:literal, $uses:literal, $output:literal) => {
        impl<F> $ty<F> {
            /// Shields the timeout's scope (Trio's `shield=True`): cancellation
            /// from outside does not reach the body, but the timeout's own
            /// deadline still does (rules C3, C12). Use it to bound cleanup
            /// that must run even in a cancelled task.
            ///
            /// ```
            /// use std::time::Duration;
            #[doc = concat!("use trioxide::{", $uses, "};")]
            /// let clock = MockClock::new();
            /// clock.set_autojump_threshold(Some(Duration::ZERO));
            /// Builder::new().clock(clock).run(async {
            ///     let outer = CancelScope::new();
            ///     outer.cancel(); // cancelled before the body even starts
            ///     let r = outer.run(async {
            #[doc = concat!("        let r = ", $ctor, "(Duration::from_secs(1), async {")]
            ///             sleep(Duration::from_secs(5)).await?; // the shield lets it sleep...
            ///             Ok::<_, BoxError>(())
            ///         })
            ///         .shield(true)
            ///         .await;
            #[doc = concat!("        ", $output, " // ...until its own deadline")]
            ///         Ok::<_, BoxError>(())
            ///     }).await;
            ///     assert!(r.is_ok());
            /// });
            /// ```
            #[must_use = "`shield` returns the timeout with the shield set: await the returned future"]
            pub fn shield(self, shield: bool) -> Self {
                self.inner.set_shield(shield);
                self
            }

            /// A handle to the timeout's cancel scope (this makes its node:
            /// one allocation the timeout otherwise skips when its body
            /// finishes without blocking).
            ///
            /// Before the timeout is awaited, the handle reads the deadline
            /// (a relative one as [`CancelScope::relative_deadline`]) and can
            /// change it or the shield; while it runs, any task can
            /// [`cancel`](CancelScope::cancel) it; after it finished,
            /// [`cancel_called`](CancelScope::cancel_called) and
            /// [`cancelled_caught`](CancelScope::cancelled_caught) tell what
            /// happened.
            ///
            /// ```
            /// use std::time::Duration;
            #[doc = concat!("use trioxide::{", $ctor, ", sleep, BoxError, Builder, MockClock};")]
            /// let clock = MockClock::new();
            /// clock.set_autojump_threshold(Some(Duration::ZERO));
            /// Builder::new().clock(clock).run(async {
            #[doc = concat!("    let timeout = ", $ctor, "(Duration::from_secs(1), async {")]
            ///         sleep(Duration::from_secs(5)).await?;
            ///         Ok::<_, BoxError>(())
            ///     });
            ///     let scope = timeout.scope();
            ///     assert_eq!(scope.relative_deadline(), Some(Duration::from_secs(1)));
            ///     let _ = timeout.await;
            ///     assert!(scope.cancel_called() && scope.cancelled_caught());
            /// });
            /// ```
            #[must_use = "`scope` only makes a handle; the timeout runs when awaited"]
            pub fn scope(&self) -> CancelScope {
                self.inner.scope()
            }
        }

        impl<F> std::fmt::Debug for $ty<F> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($ty)).field(&self.inner).finish()
            }
        }
    };
}

scope_methods!(
    MoveOn,
    "move_on_after",
    "move_on_after, sleep, BoxError, Builder, CancelScope, MockClock",
    "assert_eq!(r.unwrap(), None);"
);
scope_methods!(
    FailAfter,
    "fail_after",
    "fail_after, sleep, BoxError, Builder, CancelScope, MockClock, TooSlow",
    "assert!(r.unwrap_err().is::<TooSlow>());"
);

impl<F, T, E> Future for MoveOn<F>
where
    F: Future<Output = Result<T, E>>,
    E: Cancellation,
{
    type Output = Result<Option<T>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll_for(cx, ScopeOp::MoveOn)
    }
}

impl<F, T, E> Future for FailAfter<F>
where
    F: Future<Output = Result<T, E>>,
    E: Cancellation + From<TooSlow>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.poll_for(cx, ScopeOp::FailAfter) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(v))) => Poll::Ready(Ok(v)),
            // Rule C12: TooSlow only when the scope caught its own Cancelled.
            Poll::Ready(Ok(None)) => Poll::Ready(Err(E::from(TooSlow))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}
