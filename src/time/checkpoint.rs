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
pub fn cancel_shielded_checkpoint() -> ShieldedCheckpoint {
    ShieldedCheckpoint { yielded: false }
}

/// The future of [`cancel_shielded_checkpoint`].
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
