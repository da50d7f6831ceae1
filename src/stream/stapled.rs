//! [`StapledStream`] (Trio's `trio.StapledStream`): a [`SendStream`] and a
//! [`ReceiveStream`] joined into one two-way [`Stream`](crate::Stream).
//!
//! Sends go to the sending half, receives come from the receiving half, and
//! closing closes both. Nothing is added in between: every rule of the
//! halves (checkpoints, `BusyResource`, `ClosedResource`, what a cancelled
//! operation leaves behind) is the stapled stream's rule too. The one piece
//! of state of its own is whether it was closed, so that `send_eof` after
//! `close` reports [`ClosedResource`] although the sending half, closed by
//! `close`, would take a second end-of-stream quietly.
//!
//! At the poll level it is a [`PollReceive`] when the receiving half is
//! one and a [`PollSend`] when the sending half is one, forwarding each
//! call, so the in-memory pairs and any stapled poll-level halves work
//! with `futures-io` and hyper.

use std::cell::Cell;
use std::fmt;
use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use crate::kernel::error::ClosedResource;
use crate::stream::poll::{PollReceive, PollSend};
use crate::stream::{HalfCloseableStream, ReceiveStream, Resource, SendEof, SendStream};

/// A two-way stream made of a sending half `S` and a receiving half `R`
/// (Trio's `StapledStream`). The halves need not be connected to each
/// other: staple the ends of two one-way pipes, or a pipe's two ends for a
/// stream that hears itself.
///
/// It is a [`HalfCloseableStream`] when the sending half implements
/// [`SendEof`]. Dropping it drops (and so, for the in-memory streams,
/// closes) both halves. [`MemoryStream`](crate::testing::MemoryStream) and
/// [`LockstepStream`](crate::testing::LockstepStream) are stapled streams.
///
/// ```
/// use trioxide::{run, BoxError, StapledStream};
/// use trioxide::testing::memory_stream_one_way_pair;
///
/// run(async {
///     // A stream connected to itself: what it sends, it receives.
///     let (tx, rx) = memory_stream_one_way_pair();
///     let echo = StapledStream::new(tx, rx);
///     echo.send_all(b"hello").await?;
///     let mut buf = [0u8; 8];
///     assert_eq!(echo.receive_some(&mut buf).await?, 5);
///     assert_eq!(&buf[..5], b"hello");
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub struct StapledStream<S, R> {
    send: S,
    receive: R,
    /// `close` was called (as opposed to only `send_eof`): the sending half
    /// cannot tell the two apart, and `send_eof` must fail after a close.
    closed: Cell<bool>,
}

impl<S: SendStream, R: ReceiveStream> StapledStream<S, R> {
    /// Staples `send` and `receive` into one stream.
    ///
    /// ```
    /// use trioxide::{run, BoxError, StapledStream};
    /// use trioxide::testing::memory_stream_one_way_pair;
    ///
    /// run(async {
    ///     // Two one-way pairs make a connected two-way pair.
    ///     let (tx1, rx1) = memory_stream_one_way_pair();
    ///     let (tx2, rx2) = memory_stream_one_way_pair();
    ///     let (a, b) = (StapledStream::new(tx1, rx2), StapledStream::new(tx2, rx1));
    ///     a.send_all(b"ping").await?;
    ///     let mut buf = [0u8; 4];
    ///     assert_eq!(b.receive_some(&mut buf).await?, 4);
    ///     assert_eq!(&buf, b"ping");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn new(send: S, receive: R) -> Self {
        StapledStream { send, receive, closed: Cell::new(false) }
    }

    /// Sends all of `data` through the sending half (its
    /// [`SendStream::send_all`], with its errors and its waiting).
    ///
    /// ```
    /// use trioxide::{run, BoxError, StapledStream};
    /// use trioxide::testing::memory_stream_one_way_pair;
    ///
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     let s = StapledStream::new(tx, rx);
    ///     s.send_all(b"abc").await?;
    ///     assert_eq!(s.send_stream().buffered(), 3);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn send_all(&self, data: &[u8]) -> io::Result<()> {
        self.send.send_all(data).await
    }

    /// Waits until a `send_all` would probably not block: the sending
    /// half's [`SendStream::wait_send_all_might_not_block`].
    ///
    /// ```
    /// use trioxide::{run, BoxError, StapledStream};
    /// use trioxide::testing::memory_stream_one_way_pair;
    ///
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     let s = StapledStream::new(tx, rx);
    ///     s.wait_send_all_might_not_block().await?; // an unbounded buffer never blocks
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn wait_send_all_might_not_block(&self) -> io::Result<()> {
        self.send.wait_send_all_might_not_block().await
    }

    /// Receives from the receiving half (its
    /// [`ReceiveStream::receive_some`]): at least one byte, or 0 at the end
    /// of the stream.
    ///
    /// ```
    /// use trioxide::{run, BoxError, StapledStream};
    /// use trioxide::testing::memory_stream_one_way_pair;
    ///
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     let s = StapledStream::new(tx, rx);
    ///     s.send_all(b"hi").await?;
    ///     s.send_stream().close(); // this stream's own sender: it reads "hi", then 0
    ///     let mut buf = [0u8; 4];
    ///     assert_eq!(s.receive_some(&mut buf).await?, 2);
    ///     assert_eq!(s.receive_some(&mut buf).await?, 0);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn receive_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.receive.receive_some(buf).await
    }

    /// Closes both halves now, the sending half first (as Trio does).
    /// Immediate and idempotent; a later [`send_eof`](StapledStream::send_eof)
    /// fails with [`ClosedResource`].
    ///
    /// ```
    /// use trioxide::{run, io_error_kind, BoxError, IoErrorKind, StapledStream};
    /// use trioxide::testing::memory_stream_one_way_pair;
    ///
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     let s = StapledStream::new(tx, rx);
    ///     s.close();
    ///     let err = s.send_all(b"x").await.unwrap_err();
    ///     assert_eq!(io_error_kind(&err), Some(IoErrorKind::Closed));
    ///     let err = s.send_eof().await.unwrap_err();
    ///     assert_eq!(io_error_kind(&err), Some(IoErrorKind::Closed));
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn close(&self) {
        self.closed.set(true);
        self.send.close();
        self.receive.close();
    }

    /// The sending half.
    ///
    /// ```
    /// use trioxide::StapledStream;
    /// use trioxide::testing::memory_stream_one_way_pair;
    ///
    /// let (tx, rx) = memory_stream_one_way_pair();
    /// let s = StapledStream::new(tx, rx);
    /// assert_eq!(s.send_stream().buffered(), 0);
    /// ```
    pub fn send_stream(&self) -> &S {
        &self.send
    }

    /// The receiving half.
    ///
    /// ```
    /// use trioxide::StapledStream;
    /// use trioxide::testing::memory_stream_one_way_pair;
    ///
    /// let (tx, rx) = memory_stream_one_way_pair();
    /// let s = StapledStream::new(tx, rx);
    /// assert_eq!(s.receive_stream().buffered(), 0);
    /// ```
    pub fn receive_stream(&self) -> &R {
        &self.receive
    }

    /// Takes the stream apart into its sending and receiving halves, which
    /// stay open (unless the stream was closed).
    ///
    /// ```
    /// use trioxide::{run, BoxError, StapledStream};
    /// use trioxide::testing::memory_stream_one_way_pair;
    ///
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     let (tx, rx) = StapledStream::new(tx, rx).into_inner();
    ///     tx.send_all(b"still open").await?;
    ///     let mut buf = [0u8; 16];
    ///     assert_eq!(rx.receive_some(&mut buf).await?, 10);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn into_inner(self) -> (S, R) {
        (self.send, self.receive)
    }
}

impl<S: SendEof, R: ReceiveStream> StapledStream<S, R> {
    /// Ends the sending half with its [`SendEof::send_eof`]: the peer reads
    /// the rest, then 0, while data still flows the other way. A
    /// checkpoint; a second call does nothing. `BusyResource` during a
    /// send, [`ClosedResource`] after [`close`](StapledStream::close).
    ///
    /// ```
    /// use trioxide::{run, BoxError, StapledStream};
    /// use trioxide::testing::memory_stream_one_way_pair;
    ///
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     let s = StapledStream::new(tx, rx);
    ///     s.send_all(b"bye").await?;
    ///     s.send_eof().await?;
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(s.receive_some(&mut buf).await?, 3);
    ///     assert_eq!(s.receive_some(&mut buf).await?, 0);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn send_eof(&self) -> io::Result<()> {
        if self.closed.get() {
            return Err(ClosedResource.into());
        }
        self.send.send_eof().await
    }
}

impl<S: fmt::Debug, R: fmt::Debug> fmt::Debug for StapledStream<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StapledStream")
            .field("send", &self.send)
            .field("receive", &self.receive)
            .field("closed", &self.closed.get())
            .finish()
    }
}

impl<S: SendStream, R: ReceiveStream> Resource for StapledStream<S, R> {
    fn close(&self) {
        StapledStream::close(self);
    }
}

impl<S: SendStream, R: ReceiveStream> SendStream for StapledStream<S, R> {
    fn send_all(&self, data: &[u8]) -> impl std::future::Future<Output = io::Result<()>> {
        StapledStream::send_all(self, data)
    }

    fn wait_send_all_might_not_block(&self) -> impl std::future::Future<Output = io::Result<()>> {
        StapledStream::wait_send_all_might_not_block(self)
    }
}

impl<S: SendStream, R: ReceiveStream> ReceiveStream for StapledStream<S, R> {
    fn receive_some(&self, buf: &mut [u8]) -> impl std::future::Future<Output = io::Result<usize>> {
        StapledStream::receive_some(self, buf)
    }
}

impl<S: SendEof, R: ReceiveStream> HalfCloseableStream for StapledStream<S, R> {
    fn send_eof(&self) -> impl std::future::Future<Output = io::Result<()>> {
        StapledStream::send_eof(self)
    }
}

/// The poll level: the receiving half's [`PollReceive`].
impl<S: SendStream, R: ReceiveStream + PollReceive> PollReceive for StapledStream<S, R> {
    #[inline]
    fn poll_receive(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.receive.poll_receive(cx, buf)
    }
}

/// The poll level: the sending half's [`PollSend`]. `poll_send_eof` ends
/// the sending half only (a half-close for the in-memory streams), and
/// fails with [`ClosedResource`] after [`close`](StapledStream::close), as
/// `send_eof` does.
impl<S: SendStream + PollSend, R: ReceiveStream> PollSend for StapledStream<S, R> {
    #[inline]
    fn poll_send(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.send.poll_send(cx, data)
    }

    #[inline]
    fn poll_send_vectored(&self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        self.send.poll_send_vectored(cx, bufs)
    }

    fn is_send_vectored(&self) -> bool {
        self.send.is_send_vectored()
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.send.poll_flush(cx)
    }

    fn poll_send_eof(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.closed.get() {
            return Poll::Ready(Err(ClosedResource.into()));
        }
        self.send.poll_send_eof(cx)
    }
}
