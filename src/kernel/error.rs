//! The error values the runtime reports: [`Cancelled`], [`TooSlow`],
//! [`MultiError`], [`NurseryClosed`], [`StartError`] and the [`Cancellation`]
//! trait that lets a cancel scope find its own `Cancelled` inside any error.

use std::error::Error as StdError;
use std::fmt;

/// A boxed error of any kind, as carried by nurseries and [`MultiError`].
///
/// `Send + Sync` like the error types of the rest of the ecosystem
/// (`anyhow::Error`, `Box<dyn Error + Send + Sync>`), so `?` turns a
/// trioxide result into either. Tasks are not `Send`, but their errors may
/// outlive the run and cross threads (a `main` returning `anyhow::Result`,
/// a log shipped to another thread).
///
/// ```
/// fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
///     let out = trioxide::run(trioxide::open_nursery(|_n| async {
///         Ok::<_, trioxide::BoxError>(7)
///     }))?; // MultiError into Box<dyn Error + Send + Sync>
///     assert_eq!(out, Some(7));
///     Ok(())
/// }
/// ```
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

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
///
/// ```
/// use std::time::Duration;
/// use trioxide::{fail_after, sleep, BoxError, Builder, MockClock, TooSlow};
/// let clock = MockClock::new();
/// clock.set_autojump_threshold(Some(Duration::ZERO));
/// let r = Builder::new().clock(clock).run(fail_after(Duration::from_secs(1), async {
///     sleep(Duration::from_secs(5)).await?;
///     Ok::<_, BoxError>("too late")
/// }));
/// let e = r.unwrap_err();
/// assert!(e.is::<TooSlow>());
/// assert_eq!(e.to_string(), "deadline exceeded");
/// ```
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
/// It prints one line per error, numbered; a nested `MultiError` (from an
/// inner nursery) is indented under its line:
///
/// ```
/// use trioxide::{run, open_nursery, MultiError};
/// let res = run(open_nursery(|n| async move {
///     n.start_soon(async { Err::<(), _>("the child's") })?;
///     Err::<(), trioxide::BoxError>("the body's".into()) // first: the child has not run yet
/// }));
/// let err: MultiError = res.unwrap_err();
/// assert_eq!(err.len(), 2);
/// assert_eq!(err.to_string(), "2 errors:\n  [0] the body's\n  [1] the child's");
/// ```
///
/// Cancellations of an outer scope travel inside it too; the scope that was
/// cancelled removes them itself, but a handler that logs errors can drop
/// them first with [`without_cancellations`](MultiError::without_cancellations)
/// (or split them off with [`Cancellation::split_cancelled`]).
#[derive(Debug, Default)]
pub struct MultiError {
    errors: Vec<BoxError>,
}

impl MultiError {
    /// A group of errors, in the order given.
    ///
    /// ```
    /// use trioxide::{MultiError, Cancelled};
    /// let m = MultiError::new(vec!["boom".into(), Box::new(Cancelled)]);
    /// assert_eq!(m.len(), 2);
    /// ```
    pub fn new(errors: Vec<BoxError>) -> Self {
        MultiError { errors }
    }

    /// The errors, in the order they were reported.
    ///
    /// ```
    /// let m = trioxide::MultiError::new(vec!["a".into()]);
    /// assert_eq!(m.errors()[0].to_string(), "a");
    /// ```
    pub fn errors(&self) -> &[BoxError] {
        &self.errors
    }

    /// Takes the errors out.
    ///
    /// ```
    /// let m = trioxide::MultiError::new(vec!["a".into(), "b".into()]);
    /// assert_eq!(m.into_errors().len(), 2);
    /// ```
    pub fn into_errors(self) -> Vec<BoxError> {
        self.errors
    }

    /// How many errors the group holds (a nested group counts as one).
    ///
    /// ```
    /// assert_eq!(trioxide::MultiError::new(vec!["a".into()]).len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// True when the group holds no error.
    ///
    /// ```
    /// assert!(trioxide::MultiError::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// True when every error in the group is a cancellation.
    ///
    /// ```
    /// use trioxide::{MultiError, Cancelled};
    /// assert!(MultiError::new(vec![Box::new(Cancelled)]).is_cancelled());
    /// assert!(!MultiError::new(vec![Box::new(Cancelled), "boom".into()]).is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        !self.errors.is_empty() && self.errors.iter().all(|e| is_cancelled_error(e.as_ref()))
    }

    /// The group without its cancellations (nested groups, `io::Error`s and
    /// source chains included, as [`is_cancelled_error`] sees them), or
    /// `None` if nothing else was in it. Use it before logging or reporting
    /// the errors of a nursery that was also cancelled from outside.
    ///
    /// ```
    /// use trioxide::{MultiError, Cancelled};
    /// let m = MultiError::new(vec![
    ///     Box::new(Cancelled),
    ///     "disk full".into(),
    ///     Box::new(std::io::Error::from(Cancelled)),
    /// ]);
    /// let rest = m.without_cancellations().expect("one real error");
    /// assert_eq!(rest.to_string(), "1 error:\n  [0] disk full");
    /// assert!(MultiError::new(vec![Box::new(Cancelled)]).without_cancellations().is_none());
    /// ```
    #[must_use = "without_cancellations returns the remaining errors; it does not change `self`"]
    pub fn without_cancellations(self) -> Option<MultiError> {
        self.split_cancelled().1
    }

    /// Iterates over the errors, in order.
    ///
    /// ```
    /// let m = trioxide::MultiError::new(vec!["a".into(), "b".into()]);
    /// let s: Vec<String> = m.iter().map(|e| e.to_string()).collect();
    /// assert_eq!(s, ["a", "b"]);
    /// ```
    pub fn iter(&self) -> std::slice::Iter<'_, BoxError> {
        self.errors.iter()
    }
}

impl<'a> IntoIterator for &'a MultiError {
    type Item = &'a BoxError;
    type IntoIter = std::slice::Iter<'a, BoxError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

impl IntoIterator for MultiError {
    type Item = BoxError;
    type IntoIter = std::vec::IntoIter<BoxError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl FromIterator<BoxError> for MultiError {
    fn from_iter<I: IntoIterator<Item = BoxError>>(iter: I) -> Self {
        MultiError { errors: iter.into_iter().collect() }
    }
}

impl fmt::Display for MultiError {
    /// `N errors:` then one line per error, `  [i] message`. Lines after the
    /// first of a message (a nested `MultiError`, or any multi-line error)
    /// are indented to sit under it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(f, "{n} error{}", if n == 1 { "" } else { "s" })?;
        if n > 0 {
            f.write_str(":")?;
        }
        for (i, e) in self.errors.iter().enumerate() {
            let text = e.to_string();
            let mut lines = text.split('\n');
            write!(f, "\n  [{i}] {}", lines.next().unwrap_or(""))?;
            for line in lines {
                write!(f, "\n    {line}")?;
            }
        }
        Ok(())
    }
}

impl StdError for MultiError {}

/// Spawning into a nursery that has already closed (its body and all its
/// children have finished).
///
/// ```
/// use trioxide::{open_nursery, run, BoxError, NurseryClosed};
/// let leaked = run(open_nursery(|n| async move { Ok::<_, BoxError>(n.clone()) }))
///     .unwrap()
///     .unwrap(); // a handle to a nursery that has finished
/// assert!(leaked.is_closed());
/// let r = leaked.start_soon(async { Ok::<_, BoxError>(()) });
/// assert_eq!(r, Err(NurseryClosed));
/// ```
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
///
/// ```
/// use trioxide::{io_error_kind, run, BoxError, ClosedResource, IoErrorKind, UnixStream};
/// run(async {
///     let (a, _b) = UnixStream::pair()?;
///     a.close();
///     let e = a.send_all(b"x").await.unwrap_err();
///     assert_eq!(io_error_kind(&e), Some(IoErrorKind::Closed));
///     assert!(e.get_ref().unwrap().is::<ClosedResource>());
///     assert_eq!(e.kind(), std::io::ErrorKind::NotConnected);
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
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
///
/// ```
/// use std::rc::Rc;
/// use trioxide::{open_nursery, run, wait_all_tasks_blocked, BoxError, BusyResource, UnixStream};
/// run(open_nursery(|n| async move {
///     let (a, b) = UnixStream::pair()?;
///     let a = Rc::new(a);
///     let reader = a.clone();
///     n.start_soon(async move {
///         reader.receive_some(&mut [0u8; 8]).await?; // waits, and keeps waiting
///         Ok::<_, BoxError>(())
///     })?;
///     wait_all_tasks_blocked().await?;
///     let e = a.receive_some(&mut [0u8; 8]).await.unwrap_err(); // a second reader
///     assert!(e.get_ref().unwrap().is::<BusyResource>());
///     assert_eq!(e.kind(), std::io::ErrorKind::ResourceBusy);
///     b.send_all(b"!").await?; // the first reader gets it
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
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
///
/// ```
/// use trioxide::{BrokenResource, io_error_kind, IoErrorKind};
/// let e: std::io::Error = BrokenResource { reason: "an earlier send was cancelled part-way" }.into();
/// assert_eq!(io_error_kind(&e), Some(IoErrorKind::Broken));
/// assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
/// assert_eq!(e.to_string(), "broken resource: an earlier send was cancelled part-way");
/// ```
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
///
/// ```
/// use trioxide::{io_error_kind, run, BoxError, CancelScope, IoErrorKind, UnixStream};
/// run(async {
///     let (a, _b) = UnixStream::pair()?;
///     let scope = CancelScope::new();
///     scope.cancel();
///     // Inside the cancelled scope, the receive reports Cancelled in an io::Error.
///     let r = scope.run(async {
///         let e = a.receive_some(&mut [0u8; 8]).await.unwrap_err();
///         assert_eq!(io_error_kind(&e), Some(IoErrorKind::Cancelled));
///         Err::<(), _>(e) // passed on: the scope catches its own cancellation
///     }).await;
///     assert!(matches!(r, Ok(None)));
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
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
///
/// ```
/// use trioxide::{open_nursery, run, BoxError, StartError, TaskStatus};
/// run(open_nursery(|n| async move {
///     // The child returns without calling status.started(..).
///     let r = n.start(|_status: TaskStatus<u16>| async { Ok::<_, BoxError>(()) }).await;
///     let e = r.unwrap_err();
///     assert_eq!(e.downcast_ref::<StartError>(), Some(&StartError::NotStarted));
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
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
///
/// ```
/// let e = trioxide::secs_f64(-1.0).unwrap_err();
/// assert_eq!(e.to_string(), "invalid duration: -1 (must be a non-negative number, not NaN)");
/// ```
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
/// [`Cancelled`], [`MultiError`], [`BoxError`] (and `Box<dyn Error>`,
/// `Box<dyn Error + Send>`), [`std::io::Error`] and, with the default
/// feature `anyhow`, `anyhow::Error`; implement it for your own error type
/// to use it with cancel scopes (usually by asking [`is_cancelled_error`]).
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
    ///
    /// ```
    /// use trioxide::{BoxError, Cancellation, Cancelled, MultiError};
    /// let only: BoxError = Box::new(Cancelled);
    /// assert!(matches!(only.split_cancelled(), (true, None)));
    /// let mixed = MultiError::new(vec![Box::new(Cancelled), "disk full".into()]);
    /// let (had, rest) = mixed.split_cancelled();
    /// assert!(had);
    /// assert_eq!(rest.unwrap().len(), 1); // the real error stays
    /// ```
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
            let (m, rest) = e.split_cancelled();
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

macro_rules! cancellation_for_box {
    ($($bounds:tt)*) => {
        impl Cancellation for Box<dyn StdError $($bounds)*> {
            fn split_cancelled(self) -> (bool, Option<Self>) {
                if self.is::<Cancelled>() {
                    return (true, None);
                }
                match self.downcast::<MultiError>() {
                    Ok(multi) => {
                        let (m, rest) = multi.split_cancelled();
                        (m, rest.map(|m| Box::new(m) as Self))
                    }
                    Err(e) if is_cancelled_error(&*e) => (true, None),
                    Err(e) => (false, Some(e)),
                }
            }
        }
    };
}

// `BoxError` itself, and the two other boxes users write by hand.
cancellation_for_box!(+ Send + Sync + 'static);
cancellation_for_box!(+ Send + 'static);
cancellation_for_box!(+ 'static);

impl Cancellation for std::io::Error {
    fn split_cancelled(self) -> (bool, Option<Self>) {
        if is_cancelled_error(&self) {
            (true, None)
        } else {
            (false, Some(self))
        }
    }
}

/// An `anyhow::Error` is a cancellation when [`is_cancelled_error`] says so
/// of its chain (`anyhow::Error::context` layers included); a
/// [`MultiError`] at its root is split like any other.
///
/// ```
/// use trioxide::{Cancellation, Cancelled};
/// let e = anyhow::Error::from(Cancelled).context("while reading the header");
/// assert!(matches!(e.split_cancelled(), (true, None)));
/// assert!(matches!(anyhow::anyhow!("disk full").split_cancelled(), (false, Some(_))));
/// ```
#[cfg(feature = "anyhow")]
impl Cancellation for anyhow::Error {
    fn split_cancelled(self) -> (bool, Option<Self>) {
        let e = if self.is::<MultiError>() {
            match self.downcast::<MultiError>() {
                Ok(multi) => {
                    let (m, rest) = multi.split_cancelled();
                    return (m, rest.map(anyhow::Error::from));
                }
                Err(e) => e,
            }
        } else {
            self
        };
        if is_cancelled_error(&*e) {
            (true, None)
        } else {
            (false, Some(e))
        }
    }
}

/// Boxes an error as a nursery records it. `E: Into<BoxError>` would do,
/// but `anyhow::Error`'s own conversion hides its root error behind a
/// private type (neither downcastable nor a `source()`), so a `Cancelled`
/// at an anyhow root would no longer be recognisable. An anyhow error that
/// holds a cancellation is re-boxed so its root stays downcastable (its
/// backtrace is dropped; a cancellation has no use for one); every other
/// error converts as usual.
pub(crate) fn into_box_error<E: Into<BoxError> + 'static>(e: E) -> BoxError {
    #[cfg(feature = "anyhow")]
    {
        let mut slot = Some(e);
        if let Some(a) = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<anyhow::Error>>() {
            if let Some(a) = a.take() {
                return if a.is::<MultiError>() || is_cancelled_error(&*a) {
                    a.reallocate_into_boxed_dyn_error_without_backtrace()
                } else {
                    a.into()
                };
            }
        }
        match slot {
            Some(e) => e.into(),
            None => unreachable!("the slot is emptied only when it held an anyhow::Error"),
        }
    }
    #[cfg(not(feature = "anyhow"))]
    {
        e.into()
    }
}

/// An I/O operation cut short by cancellation fails with this `io::Error`:
/// kind [`ErrorKind::Other`](std::io::ErrorKind::Other), inner error
/// [`Cancelled`], message `cancelled`. Recognise it with
/// [`is_cancelled_error`] (or `e.get_ref().is_some_and(|i| i.is::<Cancelled>())`
/// in plain std); the cancel scope that was cancelled does.
///
/// The kind is *not* `Interrupted`: std and much code modelled on it retry
/// an `Interrupted` call at once (`read_exact`, `write_all`, `io::copy`,
/// EINTR loops), and a cancellation is level-triggered: the retry fails
/// again, forever.
///
/// ```
/// use std::io::{Error, ErrorKind};
/// use trioxide::{is_cancelled_error, Cancelled};
/// let e = Error::from(Cancelled);
/// assert_eq!(e.kind(), ErrorKind::Other);
/// assert_eq!(e.to_string(), "cancelled");
/// assert!(is_cancelled_error(&e));
/// ```
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

/// True if `e` is a [`Cancelled`], an I/O error wrapping one, a
/// [`MultiError`] made only of cancellations, or an error whose
/// [`source`](StdError::source) is one of these: a `Cancelled` anywhere
/// down the source chain makes the whole error a cancellation. For an
/// `anyhow::Error` `a`, ask `is_cancelled_error(&*a)` (its chain is
/// followed the same way).
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
