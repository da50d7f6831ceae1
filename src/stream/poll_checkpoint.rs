//! The checkpoint of a poll-level operation on a stream that is not an fd
//! (memory, lockstep, buffered): what `Source::poll_op` does for sockets
//! and pipes, for streams whose readiness is their own state. The rules are
//! [the poll layer's](super::poll): a cancel point before the stream is
//! touched, and a schedule point *before* the attempt on the channels'
//! budget (`Core::should_yield_before_poll_op`), skipped when the previous
//! poll yielded or suspended.

use std::cell::Cell;
use std::io;
use std::task::{Context, Poll};

use crate::kernel::error::Cancelled;
use crate::kernel::Core;

/// The schedule-point state of one direction of a stream at the poll
/// level: whether the last poll of it gave up the CPU (yielded or
/// suspended), so the next one attempts at once.
#[derive(Default)]
pub(crate) struct PollCheckpoint {
    yielded: Cell<bool>,
}

impl PollCheckpoint {
    /// The checkpoint before an attempt: `Ready(Err(Cancelled))` if the
    /// caller is cancelled (nothing touched), `Pending` after rescheduling
    /// the task if it should let others run first, else `Ready(Ok(()))`:
    /// go ahead. `op` names the operation in the panic outside a run.
    #[inline]
    #[track_caller]
    pub(crate) fn poll_begin(&self, cx: &mut Context<'_>, op: &'static str) -> Poll<io::Result<()>> {
        let core = Core::current_for(op);
        if core.is_cancelled() {
            return Poll::Ready(Err(Cancelled.into()));
        }
        if self.yielded.replace(false) {
            return Poll::Ready(Ok(()));
        }
        if core.should_yield_before_poll_op() {
            self.yielded.set(true);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    /// The operation suspends (returns `Pending` until woken): that is its
    /// schedule point. `what` shows in [`task_tree`](crate::task_tree).
    #[inline]
    pub(crate) fn suspended(&self, what: &'static str) {
        self.yielded.set(true);
        if let Some(core) = Core::try_current() {
            core.set_waiting_on(what);
        }
    }
}
