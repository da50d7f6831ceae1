//! Telling a cancelled hyper future's error for what it is.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::kernel::error::{is_cancelled_error, BoxError, Cancelled};
use crate::kernel::Core;

/// Runs a hyper future (a connection, a request) so that a failure caused
/// by the task's cancellation is recognised as [`Cancelled`] by cancel
/// scopes and nurseries, whatever hyper made of it.
///
/// Over HTTP/1 hyper keeps the I/O error, which carries `Cancelled`, as
/// its error's source, and [`is_cancelled_error`] finds it. HTTP/2 does
/// not: the `h2` crate keeps an I/O error as its kind and message only, so
/// a cancelled HTTP/2 connection fails with an error that merely *says*
/// "cancelled", and a nursery would count it as a real failure. With this
/// adapter, an `Err` that comes out while the task is cancelled is
/// reported as a cancellation (with hyper's error in its message); any
/// other result passes through unchanged (boxed). It adds no checkpoint.
///
/// ```
/// use http_body_util::Full;
/// use hyper::body::Bytes;
/// use trioxide::hyper::{cancel_aware, NurseryExecutor};
/// use trioxide::{is_cancelled_error, open_nursery, run, BoxError, CancelScope, UnixStream};
/// run(async {
///     let (a, _b) = UnixStream::pair()?;
///     let scope = CancelScope::new();
///     let out = scope.run(open_nursery(|n| async move {
///         let exec = NurseryExecutor::new(&n);
///         let (_send, conn) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(exec, a).await?;
///         n.cancel_scope().cancel(); // or any scope around it
///         let err = cancel_aware(conn).await.unwrap_err();
///         assert!(is_cancelled_error(&*err));
///         Err::<(), _>(err)
///     })).await;
///     assert!(matches!(out, Ok(Some(None)))); // the nursery caught its own cancellation
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub fn cancel_aware<F, T, E>(fut: F) -> CancelAware<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    CancelAware { fut }
}

pin_project! {
    /// The future of [`cancel_aware`].
    ///
    /// ```
    /// use trioxide::hyper::{cancel_aware, CancelAware};
    /// let fut: CancelAware<_> = cancel_aware(async { Ok::<_, std::io::Error>(1) });
    /// assert_eq!(trioxide::run(fut).unwrap(), 1);
    /// ```
    #[derive(Debug)]
    #[must_use = "futures do nothing unless awaited"]
    pub struct CancelAware<F> {
        #[pin]
        fut: F,
    }
}

impl<F, T, E> Future for CancelAware<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match std::task::ready!(self.project().fut.poll(cx)) {
            Ok(v) => Poll::Ready(Ok(v)),
            Err(e) => {
                let e: BoxError = e.into();
                if !is_cancelled_error(&*e) && Core::try_current().is_some_and(|core| core.is_cancelled()) {
                    return Poll::Ready(Err(Box::new(CancelledDuring(e))));
                }
                Poll::Ready(Err(e))
            }
        }
    }
}

/// hyper's error, which came out while the task was cancelled: its source
/// is [`Cancelled`], so [`is_cancelled_error`] and the scopes see a
/// cancellation.
#[derive(Debug)]
struct CancelledDuring(BoxError);

static CANCELLED: Cancelled = Cancelled;

impl fmt::Display for CancelledDuring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cancelled (hyper: {})", self.0)
    }
}

impl StdError for CancelledDuring {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&CANCELLED)
    }
}
