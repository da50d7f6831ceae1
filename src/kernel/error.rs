//! The error values the runtime reports: [`Cancelled`], [`TooSlow`],
//! [`MultiError`], [`NurseryClosed`], [`StartError`] and the [`Cancellation`]
//! trait that lets a cancel scope find its own `Cancelled` inside any error.

use std::error::Error as StdError;
use std::fmt;

/// A boxed error of any kind, as carried by nurseries.
///
/// Tasks are not `Send` in trioxide, so neither are their errors.
pub type BoxError = Box<dyn StdError + 'static>;

/// Delivered at a checkpoint when the task's cancel status is cancelled.
///
/// Propagate it with `?`; the cancel scope that was cancelled catches it.
///
/// ```
/// use trioxide::{run, CancelScope, Cancelled, checkpoint};
/// run(async {
///     let scope = CancelScope::new();
///     scope.cancel();
///     let out = scope.run(async {
///         checkpoint().await?; // returns Err(Cancelled)
///         Ok::<_, Cancelled>("unreachable")
///     }).await;
///     assert_eq!(out, Ok(None));
///     assert!(scope.cancelled_caught());
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cancelled")
    }
}

impl StdError for Cancelled {}

/// Reported by [`fail_after`](crate::fail_after) and
/// [`fail_at`](crate::fail_at) when their deadline cancelled the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TooSlow;

impl fmt::Display for TooSlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl StdError for TooSlow {}

/// Every error of a nursery: the body's and each child's, in the order they
/// happened. None is dropped.
///
/// ```
/// use trioxide::{run, open_nursery, MultiError};
/// let res = run(open_nursery(|n| async move {
///     n.start_soon(async { Err::<(), _>("first") })?;
///     n.start_soon(async { Err::<(), _>("second") })?;
///     Ok::<_, trioxide::BoxError>(())
/// }));
/// let err: MultiError = res.unwrap_err();
/// let msgs: Vec<String> = err.errors().iter().map(|e| e.to_string()).collect();
/// assert_eq!(msgs.len(), 2);
/// ```
#[derive(Debug, Default)]
pub struct MultiError {
    errors: Vec<BoxError>,
}

impl MultiError {
    pub(crate) fn new(errors: Vec<BoxError>) -> Self {
        MultiError { errors }
    }

    /// The errors, in the order they were reported.
    pub fn errors(&self) -> &[BoxError] {
        &self.errors
    }

    /// Takes the errors out.
    pub fn into_errors(self) -> Vec<BoxError> {
        self.errors
    }

    /// True when every error in the group is a cancellation.
    pub fn is_cancelled(&self) -> bool {
        !self.errors.is_empty() && self.errors.iter().all(|e| is_cancelled_error(e.as_ref()))
    }
}

impl fmt::Display for MultiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error(s) in nursery", self.errors.len())?;
        for (i, e) in self.errors.iter().enumerate() {
            write!(f, "{}[{}] {}", if i == 0 { ": " } else { "; " }, i, e)?;
        }
        Ok(())
    }
}

impl StdError for MultiError {}

/// Spawning into a nursery that has already closed (its body and all its
/// children have finished).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NurseryClosed;

impl fmt::Display for NurseryClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nursery is closed to new arrivals")
    }
}

impl StdError for NurseryClosed {}

/// An operation on a resource (a socket, a stream) that has been closed, or
/// that was closed while the operation waited on it (Trio's
/// `ClosedResourceError`). Carried inside an `io::Error`; see
/// [`io_error_kind`](crate::io_error_kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClosedResource;

impl fmt::Display for ClosedResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the resource was closed (by this process, possibly while an operation waited on it)")
    }
}

impl StdError for ClosedResource {}

/// Two tasks tried to use the same direction of one resource at the same
/// time, such as two tasks receiving from one socket (Trio's
/// `BusyResourceError`). The second one gets this error; the first goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BusyResource;

impl fmt::Display for BusyResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("another task is already using this resource in the same direction")
    }
}

impl StdError for BusyResource {}

/// The resource can no longer be used this way, and says why (Trio's
/// `BrokenResourceError`): for example a stream whose earlier send was
/// cancelled part-way, so the peer got an unknown prefix of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokenResource {
    /// Why the resource is broken.
    pub reason: &'static str,
}

impl fmt::Display for BrokenResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "broken resource: {}", self.reason)
    }
}

impl StdError for BrokenResource {}

impl From<ClosedResource> for std::io::Error {
    fn from(e: ClosedResource) -> Self {
        std::io::Error::new(std::io::ErrorKind::NotConnected, e)
    }
}

impl From<BusyResource> for std::io::Error {
    fn from(e: BusyResource) -> Self {
        std::io::Error::new(std::io::ErrorKind::ResourceBusy, e)
    }
}

impl From<BrokenResource> for std::io::Error {
    fn from(e: BrokenResource) -> Self {
        std::io::Error::new(std::io::ErrorKind::BrokenPipe, e)
    }
}

/// Which of trioxide's own conditions an I/O error carries, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoErrorKind {
    /// [`Cancelled`]: the operation's cancel scope was cancelled.
    Cancelled,
    /// [`ClosedResource`].
    Closed,
    /// [`BusyResource`].
    Busy,
    /// [`BrokenResource`].
    Broken,
}

/// Classifies an I/O error returned by a trioxide operation: `Some` when it
/// carries one of trioxide's conditions, `None` for an error from the OS.
///
/// ```
/// use trioxide::{io_error_kind, ClosedResource, IoErrorKind};
/// let e: std::io::Error = ClosedResource.into();
/// assert_eq!(io_error_kind(&e), Some(IoErrorKind::Closed));
/// assert_eq!(io_error_kind(&std::io::Error::from_raw_os_error(104)), None);
/// ```
pub fn io_error_kind(e: &std::io::Error) -> Option<IoErrorKind> {
    let inner = e.get_ref()?;
    if inner.is::<Cancelled>() {
        Some(IoErrorKind::Cancelled)
    } else if inner.is::<ClosedResource>() {
        Some(IoErrorKind::Closed)
    } else if inner.is::<BusyResource>() {
        Some(IoErrorKind::Busy)
    } else if inner.is::<BrokenResource>() {
        Some(IoErrorKind::Broken)
    } else {
        None
    }
}

/// Misuse of [`Nursery::start`](crate::Nursery::start) by the started child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
    /// The child finished without calling `TaskStatus::started`.
    NotStarted,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NotStarted => f.write_str("child exited without calling task_status.started()"),
        }
    }
}

impl StdError for StartError {}

/// Bad input to a time function: a negative or NaN duration or a NaN
/// deadline (Trio raises `ValueError` for the same).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InvalidTime {
    pub(crate) value: f64,
    pub(crate) what: &'static str,
}

impl fmt::Display for InvalidTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {} (must be a non-negative number, not NaN)", self.what, self.value)
    }
}

impl StdError for InvalidTime {}

/// Errors in which a cancel scope can find a [`Cancelled`].
///
/// A scope that was cancelled catches its own `Cancelled`: it splits the
/// error its body returned and, if nothing but cancellation is left, reports
/// that it moved on (Trio's `exc.split(Cancelled)`). Implemented for
/// [`Cancelled`], [`MultiError`], [`BoxError`] and [`std::io::Error`];
/// implement it for your own error type to use it with cancel scopes.
///
/// ```
/// use trioxide::{Cancellation, Cancelled, BoxError};
/// let e: BoxError = Box::new(Cancelled);
/// assert!(matches!(e.split_cancelled(), (true, None)));
/// let e: BoxError = "disk full".into();
/// assert!(matches!(e.split_cancelled(), (false, Some(_))));
/// ```
pub trait Cancellation: Sized {
    /// Removes the cancellations from this error: returns whether it held
    /// any, and what remains (`None` if it was only cancellation).
    fn split_cancelled(self) -> (bool, Option<Self>);
}

impl Cancellation for Cancelled {
    fn split_cancelled(self) -> (bool, Option<Self>) {
        (true, None)
    }
}

impl Cancellation for MultiError {
    fn split_cancelled(self) -> (bool, Option<Self>) {
        let before = self.errors.len();
        let mut matched = false;
        let mut errors = Vec::with_capacity(before);
        for e in self.errors {
            let (m, rest) = split_box(e);
            matched |= m;
            errors.extend(rest);
        }
        if errors.is_empty() {
            (matched, None)
        } else {
            (matched, Some(MultiError { errors }))
        }
    }
}

impl Cancellation for BoxError {
    fn split_cancelled(self) -> (bool, Option<Self>) {
        split_box(self)
    }
}

impl Cancellation for std::io::Error {
    fn split_cancelled(self) -> (bool, Option<Self>) {
        if self.get_ref().is_some_and(|e| is_cancelled_error(e)) {
            (true, None)
        } else {
            (false, Some(self))
        }
    }
}

impl From<Cancelled> for std::io::Error {
    fn from(c: Cancelled) -> Self {
        std::io::Error::other(c)
    }
}

impl From<TooSlow> for std::io::Error {
    fn from(t: TooSlow) -> Self {
        std::io::Error::new(std::io::ErrorKind::TimedOut, t)
    }
}

fn split_box(e: BoxError) -> (bool, Option<BoxError>) {
    if e.is::<Cancelled>() {
        return (true, None);
    }
    match e.downcast::<MultiError>() {
        Ok(multi) => {
            let (m, rest) = multi.split_cancelled();
            (m, rest.map(|m| Box::new(m) as BoxError))
        }
        Err(e) => match e.downcast::<std::io::Error>() {
            Ok(io) => {
                let (m, rest) = io.split_cancelled();
                (m, rest.map(|io| Box::new(io) as BoxError))
            }
            Err(e) if is_cancelled_error(e.as_ref()) => (true, None),
            Err(e) => (false, Some(e)),
        },
    }
}

/// True if `e` is a [`Cancelled`], an I/O error wrapping one, a
/// [`MultiError`] made only of cancellations, or an error whose
/// [`source`](StdError::source) is one of these.
///
/// The last rule is how an error enum with a "cancelled" case (such as
/// [`ParkError`](crate::kernel::parking_lot::ParkError) or a channel's receive error) is
/// caught by the cancel scope that was cancelled after `?` boxed it: its
/// cancelled case returns `Cancelled` as its source. Give your own error
/// types the same shape to get the same treatment.
///
/// ```
/// use trioxide::{is_cancelled_error, Cancelled};
/// #[derive(Debug)]
/// struct Wrapped(Cancelled);
/// impl std::fmt::Display for Wrapped {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("gave up") }
/// }
/// impl std::error::Error for Wrapped {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> { Some(&self.0) }
/// }
/// assert!(is_cancelled_error(&Wrapped(Cancelled)));
/// assert!(!is_cancelled_error(&std::fmt::Error));
/// ```
pub fn is_cancelled_error(e: &(dyn StdError + 'static)) -> bool {
    if e.is::<Cancelled>() {
        return true;
    }
    if let Some(m) = e.downcast_ref::<MultiError>() {
        return m.is_cancelled();
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return io.get_ref().is_some_and(|inner| is_cancelled_error(inner));
    }
    e.source().is_some_and(is_cancelled_error)
}

/// A `try_` operation could not complete without blocking (Trio's
/// `WouldBlock`).
///
/// ```
/// use trioxide::WouldBlock;
/// assert_eq!(WouldBlock.to_string(), "the operation would block");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct WouldBlock;

impl fmt::Display for WouldBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the operation would block")
    }
}

impl StdError for WouldBlock {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_non_cancel_errors_of_a_group() {
        let m = MultiError::new(vec![Box::new(Cancelled), "boom".into(), Box::new(Cancelled)]);
        let (matched, rest) = m.split_cancelled();
        assert!(matched);
        let rest = rest.expect("boom remains");
        assert_eq!(rest.errors().len(), 1);
        assert_eq!(rest.errors()[0].to_string(), "boom");
    }

    #[test]
    fn split_removes_nested_groups_of_cancellations() {
        let inner: BoxError = Box::new(MultiError::new(vec![Box::new(Cancelled)]));
        assert!(matches!(inner.split_cancelled(), (true, None)));
        let io: BoxError = Box::new(std::io::Error::from(Cancelled));
        assert!(matches!(io.split_cancelled(), (true, None)));
    }
}
