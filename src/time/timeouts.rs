//! Timeouts built on cancel scopes: `move_on_*` gives up quietly,
//! `fail_*` reports [`TooSlow`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;

use crate::kernel::cancel::{CancelScope, Scoped};
use crate::kernel::clock::Instant;
use crate::kernel::error::{Cancellation, TooSlow};

/// Runs `body` with a deadline `timeout` after it starts; on expiry the body
/// is cancelled and the output is `Ok(None)`.
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
pub fn move_on_after<F, T, E>(timeout: Duration, body: F) -> Scoped<F>
where
    F: Future<Output = Result<T, E>>,
    E: Cancellation,
{
    CancelScope::with_relative_deadline(timeout).run(body)
}

/// Runs `body` with an absolute deadline; on expiry the output is `Ok(None)`.
pub fn move_on_at<F, T, E>(deadline: Instant, body: F) -> Scoped<F>
where
    F: Future<Output = Result<T, E>>,
    E: Cancellation,
{
    CancelScope::with_deadline(deadline).run(body)
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
    let scope = CancelScope::with_relative_deadline(timeout);
    FailAfter { inner: scope.run(body), scope }
}

/// Runs `body` with an absolute deadline; reports [`TooSlow`] if it expired.
pub fn fail_at<F, T, E>(deadline: Instant, body: F) -> FailAfter<F>
where
    F: Future<Output = Result<T, E>>,
    E: Cancellation + From<TooSlow>,
{
    let scope = CancelScope::with_deadline(deadline);
    FailAfter { inner: scope.run(body), scope }
}

pin_project! {
    /// The future of [`fail_after`] and [`fail_at`].
    #[must_use = "a timeout does nothing unless awaited"]
    pub struct FailAfter<F> {
        #[pin]
        inner: Scoped<F>,
        scope: CancelScope,
    }
}

impl<F, T, E> Future for FailAfter<F>
where
    F: Future<Output = Result<T, E>>,
    E: Cancellation + From<TooSlow>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.inner.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(v))) => Poll::Ready(Ok(v)),
            // Rule C12: TooSlow only when the scope caught its own Cancelled.
            Poll::Ready(Ok(None)) => Poll::Ready(Err(E::from(TooSlow))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}
