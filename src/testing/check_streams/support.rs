//! The vocabulary the conformance checks are written in: a failure naming
//! its property, operations checked for being checkpoints, expected
//! errors, tasks whose result is kept, and nurseries whose failure is
//! reported as the property that failed.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::rc::Rc;

use crate::kernel::error::{io_error_kind, BoxError, IoErrorKind, MultiError};
use crate::nursery::open_nursery;
use crate::stream::{ReceiveStream, Resource};
use crate::testing::check_streams::{CheckFailed, PairMaker};
use crate::testing::checkpoints::Measure;
use crate::testing::wait_all_tasks_blocked;

/// Which check is running, for the failure message.
#[derive(Clone, Copy)]
pub(super) struct Ctx {
    pub(super) check: &'static str,
    /// Set while a two-way check runs the one-way checks on the pair with
    /// its ends swapped.
    pub(super) swapped: bool,
}

impl Ctx {
    /// A failure of `property`.
    pub(super) fn fail(self, property: &'static str, detail: impl Into<String>) -> BoxError {
        Box::new(CheckFailed { check: self.check, swapped: self.swapped, property, detail: detail.into() })
    }

    /// Fails `property` unless `ok`.
    pub(super) fn ensure(
        self,
        ok: bool,
        property: &'static str,
        detail: impl FnOnce() -> String,
    ) -> Result<(), BoxError> {
        if ok {
            Ok(())
        } else {
            Err(self.fail(property, detail()))
        }
    }
}

/// What an operation should have failed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Want {
    Closed,
    Busy,
    Cancelled,
    /// [`BrokenResource`](crate::BrokenResource), or the OS saying the peer
    /// is gone (`EPIPE`, `ECONNRESET`, `ECONNABORTED`): trioxide's sockets
    /// report the OS error as it is.
    Broken,
    InvalidInput,
}

impl Want {
    pub(super) fn matches(self, e: &io::Error) -> bool {
        let kind = io_error_kind(e);
        match self {
            Want::Closed => kind == Some(IoErrorKind::Closed),
            Want::Busy => kind == Some(IoErrorKind::Busy),
            Want::Cancelled => kind == Some(IoErrorKind::Cancelled),
            Want::Broken => match kind {
                Some(k) => k == IoErrorKind::Broken,
                None => matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ),
            },
            Want::InvalidInput => kind.is_none() && e.kind() == io::ErrorKind::InvalidInput,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Want::Closed => "ClosedResource",
            Want::Busy => "BusyResource",
            Want::Cancelled => "Cancelled",
            Want::Broken => "BrokenResource (or EPIPE/ECONNRESET)",
            Want::InvalidInput => "an InvalidInput error",
        }
    }
}

impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An operation's outcome, for a failure message.
pub(super) fn describe<T: fmt::Debug>(r: &io::Result<T>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => describe_err(e),
    }
}

pub(super) fn describe_err(e: &io::Error) -> String {
    match io_error_kind(e) {
        Some(k) => format!("{k:?} error ({e})"),
        None => format!("error {:?} ({e})", e.kind()),
    }
}

/// A task's outcome, `None` while it has not finished.
pub(super) fn describe_slot<T: fmt::Debug>(slot: &Slot<io::Result<T>>) -> String {
    match &*slot.borrow() {
        Some(r) => describe(r),
        None => "still blocked".to_string(),
    }
}

/// Runs `fut` and returns its result, failing `property` if it succeeded
/// without being a checkpoint (every stream operation must be one). A
/// failed operation is not held to that (Trio's `assert_checkpoints` also
/// skips a block that raised).
pub(super) async fn measured<T>(
    ctx: Ctx,
    property: &'static str,
    what: &'static str,
    fut: impl Future<Output = io::Result<T>>,
) -> Result<io::Result<T>, BoxError> {
    let (out, seen) = Measure::new(fut).await;
    if out.is_ok() && !seen.is_checkpoint() {
        return Err(ctx.fail(
            property,
            format!("{what} returned without a checkpoint (it made {seen}; it needs at least one of each)"),
        ));
    }
    Ok(out)
}

/// [`measured`], also failing `property` if the operation failed (other
/// than by being cancelled).
pub(super) async fn checked<T>(
    ctx: Ctx,
    property: &'static str,
    what: &'static str,
    fut: impl Future<Output = io::Result<T>>,
) -> Result<T, BoxError> {
    match measured(ctx, property, what, fut).await? {
        Ok(v) => Ok(v),
        // Cancelled by a sibling's failure (or from outside the check):
        // pass it on, so the failure that caused it is the one reported.
        Err(e) if Want::Cancelled.matches(&e) => Err(Box::new(e)),
        Err(e) => Err(ctx.fail(property, format!("{what} failed: {}", describe_err(&e)))),
    }
}

/// Fails `property` unless `r` is the error `want`.
pub(super) fn expect_err<T: fmt::Debug>(
    ctx: Ctx,
    property: &'static str,
    what: &'static str,
    r: io::Result<T>,
    want: Want,
) -> Result<(), BoxError> {
    match &r {
        Err(e) if want.matches(e) => Ok(()),
        _ => Err(ctx.fail(property, format!("{what} should fail with {want}, got {}", describe(&r)))),
    }
}

/// Receives exactly `want.len()` bytes with buffers of `max` bytes, the
/// first receive checked for being a checkpoint; fails `property` on an
/// early end of stream, an error, or different bytes. An empty `want`
/// expects the end of the stream (a receive returning 0).
pub(super) async fn receive_expecting(
    ctx: Ctx,
    property: &'static str,
    r: &impl ReceiveStream,
    max: usize,
    want: &[u8],
) -> Result<(), BoxError> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; max];
    loop {
        let n = if got.is_empty() {
            checked(ctx, property, "receive_some", r.receive_some(&mut buf)).await?
        } else {
            r.receive_some(&mut buf)
                .await
                .map_err(|e| ctx.fail(property, format!("receive_some failed: {}", describe_err(&e))))?
        };
        if n > buf.len() {
            return Err(ctx.fail(property, format!("receive_some returned {n} for a buffer of {}", buf.len())));
        }
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.len() >= want.len() {
            break;
        }
    }
    ctx.ensure(got == want, property, || format!("received {:?}, expected {:?}", Bytes(&got), Bytes(want)))
}

/// Short byte strings as text, long ones by length.
pub(super) struct Bytes<'a>(pub(super) &'a [u8]);

impl fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() <= 32 {
            write!(f, "b\"{}\"", self.0.escape_ascii())
        } else {
            write!(f, "<{} bytes>", self.0.len())
        }
    }
}

/// Where a spawned task leaves its output.
pub(super) type Slot<T> = Rc<RefCell<Option<T>>>;

/// An empty [`Slot`].
pub(super) fn slot<T>() -> Slot<T> {
    Rc::new(RefCell::new(None))
}

/// A task (for `start_soon`) that runs `fut` and leaves its output in
/// `slot`. The task itself never fails, so an error of `fut` does not
/// cancel its siblings.
pub(super) fn keep<T: 'static>(slot: &Slot<T>, fut: impl Future<Output = T> + 'static) -> impl Future<Output = ()> {
    let slot = slot.clone();
    async move {
        let v = fut.await;
        *slot.borrow_mut() = Some(v);
    }
}

/// The output of a finished task.
pub(super) fn take<T>(slot: &Slot<T>) -> Option<T> {
    slot.borrow_mut().take()
}

/// Makes a pair with `maker`, shared through `Rc` (tasks are `'static`).
pub(super) async fn make<M: PairMaker>(ctx: Ctx, maker: &mut M) -> Result<(Rc<M::A>, Rc<M::B>), BoxError> {
    match maker.make().await {
        Ok((a, b)) => Ok((Rc::new(a), Rc::new(b))),
        Err(e) => {
            Err(ctx.fail("the maker returns a connected pair", format!("the maker failed: {}", describe_err(&e))))
        }
    }
}

/// What [`op_then`] does if the operation is still blocked once
/// everything is idle after `then`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum IfBlocked {
    /// Cancel it and report `None`: `then` acted on the operation's own
    /// end (closed it, cancelled its scope), which wakes it at once, or the
    /// operation may legitimately stay blocked.
    Cancel,
    /// Wait for it: its wake-up may have to travel through the other end
    /// (a child process behind a pipe), so an idle moment proves nothing.
    /// A broken stream makes the check hang here, as Trio's would.
    Wait,
}

/// Runs `op` as a task until everything is idle, then runs `then` (which
/// should make `op` finish: close the stream, cancel its scope), then lets
/// everything settle again. Returns `op`'s output (`None` if it was still
/// blocked and `if_blocked` said to cancel it), and `then`'s output.
pub(super) async fn op_then<T: 'static, U>(
    ctx: Ctx,
    property: &'static str,
    op: impl Future<Output = T> + 'static,
    then: impl Future<Output = U>,
    if_blocked: IfBlocked,
) -> Result<(Option<T>, U), BoxError> {
    let out = slot();
    let stuck = Rc::new(Cell::new(false));
    let after = slot();
    let r = open_nursery(|n| {
        let (out, stuck, after) = (out.clone(), stuck.clone(), after.clone());
        async move {
            n.start_soon(keep(&out, op))?;
            wait_all_tasks_blocked().await?;
            *after.borrow_mut() = Some(then.await);
            if if_blocked == IfBlocked::Wait {
                return Ok(());
            }
            wait_all_tasks_blocked().await?;
            if out.borrow().is_none() {
                stuck.set(true);
                n.cancel_scope().cancel();
            }
            Ok::<_, BoxError>(())
        }
    })
    .await;
    settle(ctx, property, r)?;
    let then_out = match take(&after) {
        Some(v) => v,
        None => return Err(ctx.fail(property, "the check was cut short")),
    };
    Ok((if stuck.get() { None } else { take(&out) }, then_out))
}

/// Turns a nursery's outcome into the check's: a [`CheckFailed`] of a
/// child comes out as it is; a cancellation from outside the check is
/// passed on (the caller's scope catches it); anything else fails
/// `property`.
pub(super) fn settle<T>(ctx: Ctx, property: &'static str, r: Result<T, MultiError>) -> Result<(), BoxError> {
    let multi = match r {
        Ok(_) => return Ok(()),
        Err(m) => m,
    };
    if multi.is_cancelled() {
        return Err(Box::new(multi));
    }
    let mut errors = multi.into_errors();
    if let Some(i) = errors.iter().position(|e| e.is::<CheckFailed>()) {
        return Err(errors.swap_remove(i));
    }
    let detail = MultiError::new(errors).to_string();
    Err(ctx.fail(property, format!("unexpected failure: {detail}")))
}

/// Closes both ends of a pair when the check is done with it, however it
/// ends (Trio's `_ForceCloseBoth`).
pub(super) struct CloseBoth<A: Resource, B: Resource>(pub(super) Rc<A>, pub(super) Rc<B>);

impl<A: Resource, B: Resource> Drop for CloseBoth<A, B> {
    fn drop(&mut self) {
        self.0.close();
        self.1.close();
    }
}

fn is_busy<T>(slot: &Slot<io::Result<T>>) -> bool {
    matches!(&*slot.borrow(), Some(Err(e)) if Want::Busy.matches(e))
}

/// Runs `first` and `second` as two tasks at once (operations on the same
/// direction of one stream) and fails `property` unless one of them failed
/// with `BusyResource` by the time everything is idle. Whatever is still
/// blocked then is cancelled.
pub(super) async fn expect_one_busy<T1: fmt::Debug + 'static, T2: fmt::Debug + 'static>(
    ctx: Ctx,
    property: &'static str,
    first: impl Future<Output = io::Result<T1>> + 'static,
    second: impl Future<Output = io::Result<T2>> + 'static,
) -> Result<(), BoxError> {
    let (a, b, seen) = (slot(), slot(), slot());
    let r = open_nursery(|n| {
        let (a, b, seen) = (a.clone(), b.clone(), seen.clone());
        async move {
            n.start_soon(keep(&a, first))?;
            n.start_soon(keep(&b, second))?;
            wait_all_tasks_blocked().await?;
            *seen.borrow_mut() = Some((describe_slot(&a), describe_slot(&b)));
            n.cancel_scope().cancel();
            Ok::<_, BoxError>(())
        }
    })
    .await;
    settle(ctx, property, r)?;
    if is_busy(&a) || is_busy(&b) {
        return Ok(());
    }
    let (first, second) = take(&seen).unwrap_or_default();
    Err(ctx.fail(property, format!("neither call failed with BusyResource (first: {first}; second: {second})")))
}
