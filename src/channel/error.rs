//! Why a channel operation failed: [`SendError`], [`TrySendError`],
//! [`ReceiveError`] and [`TryReceiveError`].
//!
//! A failed send always gives the value back, so a sender whose send was
//! cancelled can retry it, and a value is never silently dropped because the
//! other side went away. None of these types needs `T: Debug`: a channel of
//! sockets or closures still gets usable errors.
//!
//! The cases that mean "cancelled" return [`Cancelled`] from
//! [`source()`](std::error::Error::source), so after `?` boxes them the
//! cancel scope that was cancelled still recognises its own cancellation
//! (see [`is_cancelled_error`](crate::is_cancelled_error)).

use std::error::Error as StdError;
use std::fmt;

use crate::kernel::error::{BrokenResource, Cancellation, Cancelled, ClosedResource, WouldBlock};

/// What a send reports once every receive handle is closed (Trio's
/// `BrokenResourceError` from `send`).
pub(super) const RECEIVERS_GONE: BrokenResource =
    BrokenResource { reason: "every receive handle of the memory channel was closed" };

/// Why a [`send`](super::MemorySendChannel::send) failed.
///
/// ```
/// use trioxide::channel::SendErrorKind;
/// assert_ne!(SendErrorKind::Broken, SendErrorKind::Closed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendErrorKind {
    /// The task's cancel scope was cancelled before a receiver took the
    /// value (the value was not sent).
    Cancelled,
    /// Every receive handle is closed: nobody will ever receive the value
    /// (Trio's `BrokenResourceError`).
    Broken,
    /// This send handle was closed, before the send or while it waited
    /// (Trio's `ClosedResourceError`).
    Closed,
}

/// A failed [`send`](super::MemorySendChannel::send), with the value that was
/// not sent.
///
/// `Debug` shows only the kind, so `T` need not be `Debug`. The error
/// implements [`Cancellation`], so it can be the error type of a cancel
/// scope's body; splitting off the cancellation drops the value, so take it
/// out with [`into_inner`](SendError::into_inner) first if you want to keep it.
/// (There is no `From<Cancelled>`: a `SendError` cannot exist without its
/// value.)
///
/// ```
/// use trioxide::{run, open_memory_channel};
/// use trioxide::channel::SendErrorKind;
/// run(async {
///     let (tx, rx) = open_memory_channel::<String>(1);
///     drop(rx);
///     let err = tx.send("hello".to_string()).await.unwrap_err();
///     assert_eq!(err.kind(), SendErrorKind::Broken);
///     assert_eq!(err.into_inner(), "hello");
/// });
/// ```
pub struct SendError<T> {
    kind: SendErrorKind,
    value: T,
}

impl<T> SendError<T> {
    pub(crate) fn new(kind: SendErrorKind, value: T) -> SendError<T> {
        SendError { kind, value }
    }

    /// Why the send failed.
    ///
    /// ```
    /// use trioxide::{run, open_memory_channel};
    /// use trioxide::channel::SendErrorKind;
    /// run(async {
    ///     let (tx, _rx) = open_memory_channel::<u8>(0);
    ///     tx.close();
    ///     assert_eq!(tx.send(1).await.unwrap_err().kind(), SendErrorKind::Closed);
    /// });
    /// ```
    pub fn kind(&self) -> SendErrorKind {
        self.kind
    }

    /// True if the send was cancelled (the value was not sent).
    ///
    /// ```
    /// use trioxide::{run, open_memory_channel, CancelScope};
    /// run(async {
    ///     let (tx, _rx) = open_memory_channel::<u8>(0);
    ///     let scope = CancelScope::new();
    ///     scope.cancel();
    ///     let out = scope.run(async {
    ///         let err = tx.send(7).await.unwrap_err();
    ///         assert!(err.is_cancelled());
    ///         Err::<(), _>(err)
    ///     }).await;
    ///     assert!(matches!(out, Ok(None)));
    /// });
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.kind == SendErrorKind::Cancelled
    }

    /// The value that was not sent.
    ///
    /// ```
    /// use trioxide::{run, open_memory_channel};
    /// run(async {
    ///     let (tx, rx) = open_memory_channel::<Vec<u8>>(0);
    ///     rx.close();
    ///     let err = tx.send(vec![1, 2]).await.unwrap_err();
    ///     assert_eq!(err.value(), &[1, 2]);
    /// });
    /// ```
    pub fn value(&self) -> &T {
        &self.value
    }

    /// Takes back the value that was not sent (to retry, or to dispose of).
    ///
    /// ```
    /// use trioxide::{run, open_memory_channel};
    /// run(async {
    ///     let (tx, rx) = open_memory_channel::<Box<str>>(0);
    ///     drop(rx);
    ///     assert_eq!(&*tx.send("x".into()).await.unwrap_err().into_inner(), "x");
    /// });
    /// ```
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError").field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            SendErrorKind::Cancelled => f.write_str("send on a memory channel was cancelled; the value was not sent"),
            SendErrorKind::Broken => RECEIVERS_GONE.fmt(f),
            SendErrorKind::Closed => f.write_str("send on a closed memory channel handle"),
        }
    }
}

impl<T> StdError for SendError<T> {
    /// `Cancelled`, `BrokenResource` or `ClosedResource`, so that generic
    /// error handling (and a cancel scope) can classify the error.
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self.kind {
            SendErrorKind::Cancelled => Some(&Cancelled),
            SendErrorKind::Broken => Some(&RECEIVERS_GONE),
            SendErrorKind::Closed => Some(&ClosedResource),
        }
    }
}

impl<T> Cancellation for SendError<T> {
    fn split_cancelled(self) -> (bool, Option<Self>) {
        match self.kind {
            SendErrorKind::Cancelled => (true, None),
            _ => (false, Some(self)),
        }
    }
}

/// A failed [`try_send`](super::MemorySendChannel::try_send), with the value
/// that was not sent.
///
/// ```
/// use trioxide::open_memory_channel;
/// use trioxide::channel::TrySendError;
/// let (tx, _rx) = open_memory_channel::<u32>(1);
/// tx.try_send(1).unwrap();
/// match tx.try_send(2) {
///     Err(TrySendError::WouldBlock(v)) => assert_eq!(v, 2),
///     other => panic!("{other:?}"),
/// }
/// ```
pub enum TrySendError<T> {
    /// The buffer is full and no receiver is waiting.
    WouldBlock(T),
    /// Every receive handle is closed.
    Broken(T),
    /// This send handle is closed.
    Closed(T),
}

impl<T> TrySendError<T> {
    /// Takes back the value that was not sent.
    ///
    /// ```
    /// use trioxide::open_memory_channel;
    /// let (tx, rx) = open_memory_channel::<&str>(0);
    /// drop(rx);
    /// assert_eq!(tx.try_send("v").unwrap_err().into_inner(), "v");
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::WouldBlock(v) | TrySendError::Broken(v) | TrySendError::Closed(v) => v,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            TrySendError::WouldBlock(_) => "WouldBlock",
            TrySendError::Broken(_) => "Broken",
            TrySendError::Closed(_) => "Closed",
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(..)", self.name())
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::WouldBlock(_) => {
                f.write_str("the memory channel's buffer is full and no receiver is waiting")
            }
            TrySendError::Broken(_) => RECEIVERS_GONE.fmt(f),
            TrySendError::Closed(_) => f.write_str("send on a closed memory channel handle"),
        }
    }
}

impl<T> StdError for TrySendError<T> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            TrySendError::WouldBlock(_) => Some(&WouldBlock),
            TrySendError::Broken(_) => Some(&RECEIVERS_GONE),
            TrySendError::Closed(_) => Some(&ClosedResource),
        }
    }
}

/// Why a [`receive`](super::MemoryReceiveChannel::receive) failed.
///
/// ```
/// use trioxide::{run, open_memory_channel};
/// use trioxide::channel::ReceiveError;
/// run(async {
///     let (tx, rx) = open_memory_channel::<u8>(0);
///     drop(tx);
///     assert_eq!(rx.receive().await, Err(ReceiveError::EndOfChannel));
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiveError {
    /// The task's cancel scope was cancelled before a value was handed to
    /// this receive (nothing was taken from the channel).
    Cancelled,
    /// Every send handle is closed and the buffer is empty: no value will
    /// ever come (Trio's `EndOfChannel`).
    EndOfChannel,
    /// This receive handle was closed, before the receive or while it
    /// waited (Trio's `ClosedResourceError`).
    Closed,
}

impl fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiveError::Cancelled => Cancelled.fmt(f),
            ReceiveError::EndOfChannel => {
                f.write_str("end of channel: every send handle was closed and the buffer is empty")
            }
            ReceiveError::Closed => f.write_str("receive on a closed memory channel handle"),
        }
    }
}

impl StdError for ReceiveError {
    /// `Cancelled` for the cancelled case (so a cancel scope catches it
    /// after `?`), `ClosedResource` for the closed case.
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            ReceiveError::Cancelled => Some(&Cancelled),
            ReceiveError::EndOfChannel => None,
            ReceiveError::Closed => Some(&ClosedResource),
        }
    }
}

impl From<Cancelled> for ReceiveError {
    fn from(_: Cancelled) -> Self {
        ReceiveError::Cancelled
    }
}

impl Cancellation for ReceiveError {
    fn split_cancelled(self) -> (bool, Option<Self>) {
        match self {
            ReceiveError::Cancelled => (true, None),
            other => (false, Some(other)),
        }
    }
}

/// Why a [`try_receive`](super::MemoryReceiveChannel::try_receive) failed.
///
/// ```
/// use trioxide::open_memory_channel;
/// use trioxide::channel::TryReceiveError;
/// let (tx, rx) = open_memory_channel::<u8>(4);
/// assert_eq!(rx.try_receive(), Err(TryReceiveError::WouldBlock));
/// drop(tx);
/// assert_eq!(rx.try_receive(), Err(TryReceiveError::EndOfChannel));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TryReceiveError {
    /// Nothing is buffered and no sender is waiting.
    WouldBlock,
    /// Every send handle is closed and the buffer is empty.
    EndOfChannel,
    /// This receive handle is closed.
    Closed,
}

impl fmt::Display for TryReceiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryReceiveError::WouldBlock => {
                f.write_str("nothing to receive: the buffer is empty and no sender is waiting")
            }
            TryReceiveError::EndOfChannel => ReceiveError::EndOfChannel.fmt(f),
            TryReceiveError::Closed => ReceiveError::Closed.fmt(f),
        }
    }
}

impl StdError for TryReceiveError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            TryReceiveError::WouldBlock => Some(&WouldBlock),
            TryReceiveError::EndOfChannel => None,
            TryReceiveError::Closed => Some(&ClosedResource),
        }
    }
}
