//! Checkpoints: the places where a task may be cancelled and may let others
//! run.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::kernel::error::Cancelled;
use crate::kernel::Core;

/// A checkpoint: reports `Err(Cancelled)` if the current cancel status is
/// cancelled, else lets every other runnable task run once, then reports
/// cancellation again if it arrived meanwhile.
///
/// ```
/// trioxide::run(async {
///     trioxide::checkpoint().await?;
///     Ok::<_, trioxide::Cancelled>(())
/// }).unwrap();
/// ```
pub fn checkpoint() -> Checkpoint {
    Checkpoint { yielded: false }
}

/// The future of [`checkpoint`].
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use trioxide::{checkpoint, open_nursery, run, BoxError};
/// // Two tasks that checkpoint take turns.
/// let log = Rc::new(RefCell::new(String::new()));
/// let l = log.clone();
/// run(open_nursery(|n| async move {
///     for c in ['a', 'b'] {
///         let l = l.clone();
///         n.start_soon(async move {
///             for _ in 0..3 { l.borrow_mut().push(c); checkpoint().await?; }
///             Ok::<_, BoxError>(())
///         })?;
///     }
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// let s = log.borrow();
/// assert_eq!(s.len(), 6);
/// assert!(!s.contains("aaa") && !s.contains("bbb")); // interleaved
/// ```
#[derive(Debug)]
#[must_use = "a checkpoint does nothing unless awaited"]
pub struct Checkpoint {
    yielded: bool,
}

impl Future for Checkpoint {
    type Output = Result<(), Cancelled>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if Core::current().is_cancelled() {
            return Poll::Ready(Err(Cancelled));
        }
        if self.yielded {
            return Poll::Ready(Ok(()));
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Reports `Err(Cancelled)` if the current cancel status is cancelled, and
/// otherwise does nothing: no other task runs. Trio's
/// `checkpoint_if_cancelled`.
///
/// # Panics
/// Outside [`run`](crate::run) ("trioxide::checkpoint_if_cancelled must be
/// called from inside trioxide::run"), or inside it but outside a task (in
/// an [`Instrument`](crate::Instrument) hook), at the caller's line.
///
/// ```
/// use trioxide::{checkpoint_if_cancelled, run, CancelScope, Cancelled};
/// run(async {
///     assert_eq!(checkpoint_if_cancelled(), Ok(())); // not cancelled: nothing happens
///     let scope = CancelScope::new();
///     scope.cancel();
///     let r = scope.run(async {
///         assert_eq!(checkpoint_if_cancelled(), Err(Cancelled));
///         checkpoint_if_cancelled()
///     }).await;
///     assert_eq!(r, Ok(None));
/// });
/// ```
#[track_caller]
pub fn checkpoint_if_cancelled() -> Result<(), Cancelled> {
    if Core::current_for("trioxide::checkpoint_if_cancelled").is_cancelled() {
        Err(Cancelled)
    } else {
        Ok(())
    }
}

/// Lets every other runnable task run once, and never reports cancellation
/// (a schedule point that is not a cancel point, rule C2).
///
/// ```
/// use trioxide::{cancel_shielded_checkpoint, checkpoint, run, CancelScope, Cancelled};
/// run(async {
///     let scope = CancelScope::new();
///     scope.cancel();
///     let r = scope.run(async {
///         cancel_shielded_checkpoint().await; // others ran; no cancellation
///         checkpoint().await?; // this one reports it
///         Ok::<_, Cancelled>("unreachable")
///     }).await;
///     assert_eq!(r, Ok(None));
/// });
/// ```
pub fn cancel_shielded_checkpoint() -> ShieldedCheckpoint {
    ShieldedCheckpoint { yielded: false }
}

/// The future of [`cancel_shielded_checkpoint`].
///
/// ```
/// trioxide::run(async {
///     let yield_now: trioxide::ShieldedCheckpoint = trioxide::cancel_shielded_checkpoint();
///     yield_now.await; // `()`: it cannot fail
/// });
/// ```
#[derive(Debug)]
#[must_use = "a checkpoint does nothing unless awaited"]
pub struct ShieldedCheckpoint {
    yielded: bool,
}

impl Future for ShieldedCheckpoint {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
