//! What the two ends of an in-memory stream share about one direction of
//! use (sending or receiving): whether an operation is in progress, and the
//! waker of the task waiting in it. Used by the memory and lockstep streams.

use std::cell::Cell;
use std::io;
use std::task::{Context, Poll, Waker};

use crate::kernel::error::{BusyResource, Cancelled, ClosedResource};
use crate::kernel::Core;
use crate::stream::poll_checkpoint::PollCheckpoint;

/// One direction (send or receive) of one end of an in-memory stream.
#[derive(Default)]
pub(super) struct Direction {
    /// An operation is in progress (a second one gets `BusyResource`).
    busy: Cell<bool>,
    /// The task blocked in that operation, if it is blocked.
    waker: Cell<Option<Waker>>,
    /// The schedule point of the poll-level operations on it.
    poll: PollCheckpoint,
}

impl Direction {
    /// Claims the direction for one operation: `ClosedResource` if `closed`,
    /// `BusyResource` if another operation holds it, then the checkpoint's
    /// cancel check (`Cancelled` before anything happened). The same order
    /// as a socket's operations. `op` is the public operation (its path,
    /// `"trioxide::testing::MemorySendStream::send_all"`), named by the
    /// panic outside a run.
    pub(super) fn claim(&self, closed: bool, op: &'static str) -> io::Result<Claim<'_>> {
        if closed {
            return Err(ClosedResource.into());
        }
        if self.busy.replace(true) {
            return Err(BusyResource.into());
        }
        let claim = Claim { dir: self, op };
        if Core::current_for(op).is_cancelled() {
            return Err(Cancelled.into());
        }
        Ok(claim)
    }

    /// The start of a poll-level operation (`poll_receive`, `poll_send`):
    /// `ClosedResource` if `closed`, `BusyResource` while an `async fn`
    /// operation holds the direction, then the poll checkpoint (see
    /// [`PollCheckpoint::poll_begin`]). Claims nothing: a poll interface
    /// has no end of operation at which to release a claim.
    #[track_caller]
    pub(super) fn poll_begin(&self, closed: bool, cx: &mut Context<'_>, op: &'static str) -> Poll<io::Result<()>> {
        if let Err(e) = self.poll_check(closed) {
            return Poll::Ready(Err(e));
        }
        self.poll.poll_begin(cx, op)
    }

    /// `ClosedResource` if `closed`, `BusyResource` while an `async fn`
    /// operation holds the direction: the checks of a poll-level call that
    /// does nothing (an empty buffer).
    pub(super) fn poll_check(&self, closed: bool) -> io::Result<()> {
        if closed {
            return Err(ClosedResource.into());
        }
        if self.busy.get() {
            return Err(BusyResource.into());
        }
        Ok(())
    }

    /// Records the polling task as the one to wake (the last poller wins),
    /// before a poll-level operation returns `Pending`.
    pub(super) fn poll_park(&self, cx: &mut Context<'_>, what: &'static str) {
        match self.waker.take() {
            Some(w) if w.will_wake(cx.waker()) => self.waker.set(Some(w)),
            _ => self.waker.set(Some(cx.waker().clone())),
        }
        self.poll.suspended(what);
    }

    /// A poll-level operation returns `Pending` for a reason of its own (a
    /// hook's future waits): that is its schedule point.
    pub(super) fn poll_suspended(&self, what: &'static str) {
        self.poll.suspended(what);
    }

    /// Wakes the task blocked in this direction, if any.
    pub(super) fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// Holds a [`Direction`] for one operation; releases it on drop, also when
/// the operation's future is cancelled or dropped, and forgets its waker so
/// nothing wakes a task that has moved on.
pub(super) struct Claim<'a> {
    dir: &'a Direction,
    /// The operation holding it, for the panic outside a run.
    op: &'static str,
}

impl Claim<'_> {
    /// Records the current task as blocked here (`what` shows in
    /// [`task_tree`](crate::task_tree)).
    pub(super) fn park(&self, cx: &mut Context<'_>, what: &'static str) {
        let slot = &self.dir.waker;
        match slot.take() {
            Some(w) if w.will_wake(cx.waker()) => slot.set(Some(w)),
            _ => slot.set(Some(cx.waker().clone())),
        }
        Core::current_for(self.op).set_waiting_on(what);
    }

    /// The cancel check of a re-poll after blocking: true if the code being
    /// polled is cancelled.
    pub(super) fn is_cancelled(&self) -> bool {
        Core::current_for(self.op).is_cancelled()
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.dir.busy.set(false);
        drop(self.dir.waker.take());
    }
}

/// The error of `receive_some` with an empty buffer: 0 would mean the end of
/// the stream, so an empty buffer cannot be answered.
pub(super) fn empty_buffer() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "receive_some needs a non-empty buffer")
}
