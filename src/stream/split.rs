//! Owned halves of a two-way stream: [`split`] gives a [`ReceiveHalf`] and a
//! [`SendHalf`], each of which can move into a task of its own.
//!
//! A stream's methods take `&self`, so two tasks sharing an `Rc<Stream>` can
//! already receive and send at once; but nothing stops both from receiving,
//! and the second finds out at run time with `BusyResource`. The halves
//! give each direction one owner: a `ReceiveHalf` has no way to send and a
//! `SendHalf` none to receive, and neither is `Clone`. Nothing else is added
//! in between: each operation is the stream's own, with its checkpoints and
//! errors.
//!
//! Closing: `close` on a half (or dropping it) closes that half: further
//! operations on it fail with [`ClosedResource`], and an operation waiting
//! on it at the time (from a task that shares it) stops with the same. The
//! stream itself is closed when both halves are closed or dropped. To tell
//! the peer that you are done sending while still receiving, use the send
//! half's `send_eof` (when the stream is half-closeable).
//!
//! At the poll level a half is a [`PollReceive`] (or [`PollSend`]) when the
//! stream is one: each poll is the stream's, after the half's own check
//! (`ClosedResource` once the half is closed; closing the half wakes a
//! task that was left `Pending` in a poll of it). The send half's
//! `poll_send_eof` is the stream's: a half-close where the stream has one.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::kernel::error::ClosedResource;
use crate::stream::poll::{PollReceive, PollSend};
use crate::stream::{HalfCloseableStream, ReceiveStream, Resource, SendEof, SendStream, Stream};

struct Shared<S> {
    stream: S,
    /// Halves not yet closed: the stream closes when this reaches 0.
    open: Cell<u8>,
}

impl<S: Resource> Shared<S> {
    fn half_closed(&self) {
        let left = self.open.get().saturating_sub(1);
        self.open.set(left);
        if left == 0 {
            self.stream.close();
        }
    }
}

/// What one half keeps of its own: whether it was closed, and the task
/// waiting in an operation on it (woken by `close`).
#[derive(Default)]
struct HalfState {
    closed: Cell<bool>,
    waiter: RefCell<Option<Waker>>,
}

impl HalfState {
    /// Runs `op`, stopping it with `ClosedResource` if the half is closed
    /// first or while it waits.
    async fn guard<T>(&self, op: impl Future<Output = io::Result<T>>) -> io::Result<T> {
        let mut op = pin!(op);
        std::future::poll_fn(|cx| {
            if self.closed.get() {
                self.waiter.borrow_mut().take();
                return Poll::Ready(Err(ClosedResource.into()));
            }
            match op.as_mut().poll(cx) {
                Poll::Ready(r) => {
                    self.waiter.borrow_mut().take();
                    Poll::Ready(r)
                }
                Poll::Pending => {
                    let mut w = self.waiter.borrow_mut();
                    match &*w {
                        Some(old) if old.will_wake(cx.waker()) => {}
                        _ => *w = Some(cx.waker().clone()),
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// [`guard`](Self::guard) for one poll of a poll-level operation.
    fn poll_guard<T>(
        &self,
        cx: &mut Context<'_>,
        op: impl FnOnce(&mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if self.closed.get() {
            self.waiter.borrow_mut().take();
            return Poll::Ready(Err(ClosedResource.into()));
        }
        match op(cx) {
            Poll::Ready(r) => {
                self.waiter.borrow_mut().take();
                Poll::Ready(r)
            }
            Poll::Pending => {
                let mut w = self.waiter.borrow_mut();
                match &*w {
                    Some(old) if old.will_wake(cx.waker()) => {}
                    _ => *w = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// Marks the half closed; true the first time.
    fn close(&self) -> bool {
        if self.closed.replace(true) {
            return false;
        }
        if let Some(w) = self.waiter.borrow_mut().take() {
            w.wake();
        }
        true
    }
}

/// Splits `stream` into owned halves that two tasks can use at once, one
/// direction each. [`TcpStream::into_split`](crate::TcpStream::into_split)
/// and [`UnixStream::into_split`](crate::UnixStream::into_split) are this
/// function with the types named.
///
/// ```
/// use trioxide::{run, open_nursery, split, BoxError};
/// use trioxide::testing::memory_stream_pair;
///
/// let got = run(open_nursery(|n| async move {
///     let (a, b) = memory_stream_pair();
///     let (rx, tx) = split(a);
///     n.start_soon(async move {
///         tx.send_all(b"ping").await?; // this task only sends
///         Ok::<_, BoxError>(())
///     })?;
///     b.send_all(b"pong").await?;
///     let mut buf = [0u8; 4];
///     let n1 = rx.receive_some(&mut buf).await?; // this one only receives
///     let mut buf2 = [0u8; 4];
///     let n2 = b.receive_some(&mut buf2).await?;
///     Ok::<_, BoxError>((buf[..n1].to_vec(), buf2[..n2].to_vec()))
/// })).unwrap().unwrap();
/// assert_eq!(got, (b"pong".to_vec(), b"ping".to_vec()));
/// ```
pub fn split<S: Stream>(stream: S) -> (ReceiveHalf<S>, SendHalf<S>) {
    let shared = Rc::new(Shared { stream, open: Cell::new(2) });
    (
        ReceiveHalf { shared: shared.clone(), state: HalfState::default() },
        SendHalf { shared, state: HalfState::default() },
    )
}

/// The receiving half of a stream, from [`split`]: a [`ReceiveStream`].
///
/// ```
/// use trioxide::{run, split, BoxError, ReceiveHalf};
/// use trioxide::testing::{memory_stream_pair, MemoryStream};
///
/// run(async {
///     let (a, b) = memory_stream_pair();
///     let (rx, _tx): (ReceiveHalf<MemoryStream>, _) = split(a);
///     b.send_all(b"hi").await?;
///     let mut buf = [0u8; 2];
///     assert_eq!(rx.receive_some(&mut buf).await?, 2);
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
#[must_use = "dropping a ReceiveHalf closes it (and the stream, once the send half is gone too)"]
pub struct ReceiveHalf<S: Stream> {
    shared: Rc<Shared<S>>,
    state: HalfState,
}

/// The sending half of a stream, from [`split`]: a [`SendStream`], and a
/// [`SendEof`] when the stream is half-closeable.
///
/// ```
/// use trioxide::{run, split, BoxError};
/// use trioxide::UnixStream;
///
/// run(async {
///     let (a, b) = UnixStream::pair()?;
///     let (_rx, tx) = split(a);
///     tx.send_all(b"bye").await?;
///     tx.send_eof().await?; // the peer reads "bye", then the end
///     let mut buf = [0u8; 8];
///     assert_eq!(b.receive_some(&mut buf).await?, 3);
///     assert_eq!(b.receive_some(&mut buf).await?, 0);
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
#[must_use = "dropping a SendHalf closes it (and the stream, once the receive half is gone too)"]
pub struct SendHalf<S: Stream> {
    shared: Rc<Shared<S>>,
    state: HalfState,
}

impl<S: Stream> ReceiveHalf<S> {
    /// Receives at least one byte into `buf`; 0 at the end of the stream.
    /// The stream's own [`ReceiveStream::receive_some`]; fails with
    /// [`ClosedResource`] once this half is closed.
    ///
    /// ```
    /// use trioxide::{run, split, BoxError};
    /// use trioxide::testing::memory_stream_pair;
    /// run(async {
    ///     let (a, b) = memory_stream_pair();
    ///     let (rx, tx) = split(a);
    ///     b.close();
    ///     let mut buf = [0u8; 1];
    ///     assert_eq!(rx.receive_some(&mut buf).await?, 0);
    ///     drop(tx);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn receive_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.state.guard(self.shared.stream.receive_some(buf)).await
    }

    /// Closes this half (see the [module rules](split)); the stream closes
    /// when the other half is closed too.
    ///
    /// ```
    /// use trioxide::{run, split, BoxError, io_error_kind, IoErrorKind};
    /// use trioxide::testing::memory_stream_pair;
    /// run(async {
    ///     let (a, _b) = memory_stream_pair();
    ///     let (rx, _tx) = split(a);
    ///     rx.close();
    ///     let e = rx.receive_some(&mut [0u8; 1]).await.unwrap_err();
    ///     assert_eq!(io_error_kind(&e), Some(IoErrorKind::Closed));
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn close(&self) {
        if self.state.close() {
            self.shared.half_closed();
        }
    }

    /// The stream both halves use.
    ///
    /// ```
    /// use trioxide::{split, UnixStream};
    /// let (a, _b) = UnixStream::pair().unwrap();
    /// let (rx, _tx) = split(a);
    /// let _: &UnixStream = rx.get_ref();
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.shared.stream
    }

    /// Puts the halves back together. Fails, giving them back, if they come
    /// from different streams or either was closed.
    ///
    /// ```
    /// use trioxide::{split, UnixStream};
    /// let (a, _b) = UnixStream::pair().unwrap();
    /// let (rx, tx) = split(a);
    /// let a: UnixStream = rx.reunite(tx).unwrap();
    /// # drop(a);
    /// ```
    pub fn reunite(self, send: SendHalf<S>) -> Result<S, ReuniteError<S>> {
        if !Rc::ptr_eq(&self.shared, &send.shared) || self.state.closed.get() || send.state.closed.get() {
            return Err(ReuniteError { receive: self, send });
        }
        let shared = self.shared.clone();
        // Defuse both halves: closed without counting, so their drops do
        // not close the stream.
        self.state.closed.set(true);
        send.state.closed.set(true);
        drop(self);
        drop(send);
        match Rc::try_unwrap(shared) {
            Ok(shared) => Ok(shared.stream),
            // Only the two halves held the stream, and both are gone.
            Err(_) => unreachable!("a split stream is held only by its two halves"),
        }
    }
}

impl<S: Stream> SendHalf<S> {
    /// Sends all of `data`: the stream's own [`SendStream::send_all`];
    /// fails with [`ClosedResource`] once this half is closed.
    ///
    /// ```
    /// use trioxide::{run, split, BoxError};
    /// use trioxide::testing::memory_stream_pair;
    /// run(async {
    ///     let (a, b) = memory_stream_pair();
    ///     let (_rx, tx) = split(a);
    ///     tx.send_all(b"x").await?;
    ///     let mut buf = [0u8; 1];
    ///     assert_eq!(b.receive_some(&mut buf).await?, 1);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn send_all(&self, data: &[u8]) -> io::Result<()> {
        self.state.guard(self.shared.stream.send_all(data)).await
    }

    /// Waits until a send would probably not block.
    ///
    /// ```
    /// use trioxide::{run, split, BoxError};
    /// use trioxide::testing::memory_stream_pair;
    /// run(async {
    ///     let (a, _b) = memory_stream_pair();
    ///     let (_rx, tx) = split(a);
    ///     tx.wait_send_all_might_not_block().await?;
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn wait_send_all_might_not_block(&self) -> io::Result<()> {
        self.state.guard(self.shared.stream.wait_send_all_might_not_block()).await
    }

    /// Closes this half (see the [module rules](split)); the stream closes
    /// when the other half is closed too. The peer sees the end of the
    /// stream only then: use `send_eof` to end the sending direction alone.
    ///
    /// ```
    /// use trioxide::{run, split, BoxError};
    /// use trioxide::testing::memory_stream_pair;
    /// run(async {
    ///     let (a, b) = memory_stream_pair();
    ///     let (rx, tx) = split(a);
    ///     tx.close();
    ///     rx.close(); // both closed: the stream is closed
    ///     assert_eq!(b.receive_some(&mut [0u8; 1]).await?, 0);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn close(&self) {
        if self.state.close() {
            self.shared.half_closed();
        }
    }

    /// The stream both halves use.
    ///
    /// ```
    /// use trioxide::{split, UnixStream};
    /// let (a, _b) = UnixStream::pair().unwrap();
    /// let (_rx, tx) = split(a);
    /// let _: &UnixStream = tx.get_ref();
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.shared.stream
    }
}

impl<S: HalfCloseableStream> SendHalf<S> {
    /// Ends the sending direction: the peer reads what was sent, then the
    /// end of the stream, while this side's receive half goes on receiving.
    /// The stream's own [`HalfCloseableStream::send_eof`].
    ///
    /// ```
    /// use trioxide::{run, split, BoxError, UnixStream};
    /// run(async {
    ///     let (a, b) = UnixStream::pair()?;
    ///     let (rx, tx) = split(a);
    ///     tx.send_eof().await?;
    ///     assert_eq!(b.receive_some(&mut [0u8; 1]).await?, 0);
    ///     b.send_all(b"still open").await?; // the other direction works
    ///     assert_eq!(rx.receive_some(&mut [0u8; 16]).await?, 10);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn send_eof(&self) -> io::Result<()> {
        self.state.guard(HalfCloseableStream::send_eof(&self.shared.stream)).await
    }
}

impl<S: Stream> Drop for ReceiveHalf<S> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<S: Stream> Drop for SendHalf<S> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<S: Stream> Resource for ReceiveHalf<S> {
    fn close(&self) {
        ReceiveHalf::close(self);
    }
}

impl<S: Stream> ReceiveStream for ReceiveHalf<S> {
    fn receive_some(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> {
        ReceiveHalf::receive_some(self, buf)
    }
}

impl<S: Stream> Resource for SendHalf<S> {
    fn close(&self) {
        SendHalf::close(self);
    }
}

impl<S: Stream> SendStream for SendHalf<S> {
    fn send_all(&self, data: &[u8]) -> impl Future<Output = io::Result<()>> {
        SendHalf::send_all(self, data)
    }

    fn wait_send_all_might_not_block(&self) -> impl Future<Output = io::Result<()>> {
        SendHalf::wait_send_all_might_not_block(self)
    }
}

impl<S: HalfCloseableStream> SendEof for SendHalf<S> {
    fn send_eof(&self) -> impl Future<Output = io::Result<()>> {
        SendHalf::send_eof(self)
    }
}

impl<S: Stream + PollReceive> PollReceive for ReceiveHalf<S> {
    fn poll_receive(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.state.poll_guard(cx, |cx| self.shared.stream.poll_receive(cx, buf))
    }
}

impl<S: Stream + PollSend> PollSend for SendHalf<S> {
    fn poll_send(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.state.poll_guard(cx, |cx| self.shared.stream.poll_send(cx, data))
    }

    fn poll_send_vectored(&self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        self.state.poll_guard(cx, |cx| self.shared.stream.poll_send_vectored(cx, bufs))
    }

    fn is_send_vectored(&self) -> bool {
        self.shared.stream.is_send_vectored()
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.state.poll_guard(cx, |cx| self.shared.stream.poll_flush(cx))
    }

    fn poll_send_eof(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.state.poll_guard(cx, |cx| self.shared.stream.poll_send_eof(cx))
    }
}

impl<S: Stream + fmt::Debug> fmt::Debug for ReceiveHalf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiveHalf")
            .field("stream", &self.shared.stream)
            .field("closed", &self.state.closed.get())
            .finish()
    }
}

impl<S: Stream + fmt::Debug> fmt::Debug for SendHalf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendHalf")
            .field("stream", &self.shared.stream)
            .field("closed", &self.state.closed.get())
            .finish()
    }
}

/// [`ReceiveHalf::reunite`] was given halves of two different streams, or
/// a closed half; both halves are given back.
///
/// ```
/// use trioxide::{split, UnixStream};
/// let (a, b) = UnixStream::pair().unwrap();
/// let (rx_a, _tx_a) = split(a);
/// let (_rx_b, tx_b) = split(b);
/// let err = rx_a.reunite(tx_b).unwrap_err();
/// assert_eq!(err.to_string(), "the halves are not the two open halves of one stream");
/// let (_rx_a, _tx_b) = (err.receive, err.send);
/// ```
pub struct ReuniteError<S: Stream> {
    /// The receiving half given to `reunite`.
    pub receive: ReceiveHalf<S>,
    /// The sending half given to `reunite`.
    pub send: SendHalf<S>,
}

impl<S: Stream> fmt::Debug for ReuniteError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReuniteError")
    }
}

impl<S: Stream> fmt::Display for ReuniteError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the halves are not the two open halves of one stream")
    }
}

impl<S: Stream> std::error::Error for ReuniteError<S> {}
