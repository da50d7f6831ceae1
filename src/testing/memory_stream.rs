//! In-memory streams with an unbounded buffer (Trio's
//! `memory_stream_one_way_pair` and `memory_stream_pair`): a socket pair
//! with no operating system involved, for testing protocol code.
//!
//! `send_all` appends to the buffer and never waits (except that it is a
//! checkpoint); `receive_some` waits for data. The rules are a socket's:
//! two tasks sending (or receiving) at once get
//! [`BusyResource`](crate::BusyResource); operations on a closed end get
//! [`ClosedResource`](crate::ClosedResource), and closing wakes the task
//! waiting on that end with it; a cancelled receive loses no bytes.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::rc::Rc;
use std::task::Poll;

use crate::kernel::budget::after_io;
use crate::kernel::error::{BrokenResource, ClosedResource};
use crate::stream::stapled::StapledStream;
use crate::testing::direction::{empty_buffer, Direction};
use crate::testing::halves::{one_way_halves, stapled_pair};

/// The buffer between the two ends of a one-way memory stream.
#[derive(Default)]
struct Pipe {
    data: RefCell<VecDeque<u8>>,
    /// The sending end is closed (or half-closed): once the data is drained
    /// the receiver reads 0, and the sender's operations fail with
    /// `ClosedResource`.
    eof: Cell<bool>,
    /// The receiving end is closed: the buffer was discarded, the receiver's
    /// operations fail with `ClosedResource`, and sends fail with
    /// `BrokenResource` (nobody will ever read them).
    receiver_closed: Cell<bool>,
    send: Direction,
    receive: Direction,
}

/// Why a send to a memory stream whose receiver is gone fails.
const RECEIVER_CLOSED: BrokenResource = BrokenResource { reason: "the receiving end of the memory stream was closed" };

/// Moves up to `buf.len()` bytes from the front of `data` into `buf`.
pub(super) fn take_into(data: &mut VecDeque<u8>, buf: &mut [u8]) -> usize {
    let n = data.len().min(buf.len());
    let (front, back) = data.as_slices();
    let from_front = n.min(front.len());
    buf[..from_front].copy_from_slice(&front[..from_front]);
    buf[from_front..n].copy_from_slice(&back[..n - from_front]);
    data.drain(..n);
    n
}

/// The sending end of a one-way memory stream, made by
/// [`memory_stream_one_way_pair`]. Dropping it closes it: the receiver reads
/// the rest of the buffer, then 0.
///
/// ```
/// use trioxide::{run, BoxError};
/// use trioxide::testing::memory_stream_one_way_pair;
///
/// run(async {
///     let (tx, rx) = memory_stream_one_way_pair();
///     tx.send_all(b"hello").await?;
///     drop(tx);
///     let mut buf = [0u8; 16];
///     assert_eq!(rx.receive_some(&mut buf).await?, 5);
///     assert_eq!(rx.receive_some(&mut buf).await?, 0);
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub struct MemorySendStream {
    pipe: Rc<Pipe>,
}

/// The receiving end of a one-way memory stream, made by
/// [`memory_stream_one_way_pair`]. Dropping it closes it: later sends fail
/// with [`BrokenResource`](crate::BrokenResource).
///
/// ```
/// use trioxide::{run, io_error_kind, BoxError, IoErrorKind};
/// use trioxide::testing::memory_stream_one_way_pair;
///
/// run(async {
///     let (tx, rx) = memory_stream_one_way_pair();
///     drop(rx);
///     let err = tx.send_all(b"lost").await.unwrap_err();
///     assert_eq!(io_error_kind(&err), Some(IoErrorKind::Broken));
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub struct MemoryReceiveStream {
    pipe: Rc<Pipe>,
}

impl fmt::Debug for MemorySendStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySendStream")
            .field("buffered", &self.pipe.data.borrow().len())
            .field("closed", &self.pipe.eof.get())
            .finish()
    }
}

impl fmt::Debug for MemoryReceiveStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReceiveStream")
            .field("buffered", &self.pipe.data.borrow().len())
            .field("closed", &self.pipe.receiver_closed.get())
            .finish()
    }
}

/// A connected one-way memory stream: bytes sent into the first end come
/// out of the second, through an unbounded buffer. An in-process,
/// no-system-call `pipe(2)` (with the ends in the order data flows).
///
/// ```
/// use trioxide::{run, BoxError};
/// use trioxide::testing::memory_stream_one_way_pair;
///
/// run(async {
///     let (tx, rx) = memory_stream_one_way_pair();
///     tx.send_all(b"abc").await?;
///     let mut buf = [0u8; 2];
///     assert_eq!(rx.receive_some(&mut buf).await?, 2);
///     assert_eq!(&buf, b"ab");
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub fn memory_stream_one_way_pair() -> (MemorySendStream, MemoryReceiveStream) {
    let pipe = Rc::new(Pipe::default());
    (MemorySendStream { pipe: pipe.clone() }, MemoryReceiveStream { pipe })
}

impl MemorySendStream {
    /// Appends `data` to the buffer and wakes the receiver. Never waits for
    /// the receiver, but is a checkpoint: `Cancelled` (with nothing sent)
    /// if the scope is cancelled, and it lets other tasks run.
    ///
    /// Errors: `ClosedResource` after [`close`](MemorySendStream::close),
    /// `BusyResource` if another task is sending, `BrokenResource` if the
    /// receiving end is closed.
    pub async fn send_all(&self, data: &[u8]) -> io::Result<()> {
        let pipe = &*self.pipe;
        let _claim = pipe.send.claim(pipe.eof.get())?;
        if pipe.receiver_closed.get() {
            return Err(RECEIVER_CLOSED.into());
        }
        if !data.is_empty() {
            pipe.data.borrow_mut().extend(data);
            pipe.receive.wake();
        }
        after_io().await;
        Ok(())
    }

    /// Returns at once (the buffer is unbounded, so a send never waits); a
    /// checkpoint. `ClosedResource` after `close`, `BusyResource` during
    /// another send.
    pub async fn wait_send_all_might_not_block(&self) -> io::Result<()> {
        let pipe = &*self.pipe;
        let _claim = pipe.send.claim(pipe.eof.get())?;
        after_io().await;
        Ok(())
    }

    /// Closes this end: the receiver reads what is buffered, then 0.
    /// Immediate and idempotent.
    pub fn close(&self) {
        self.pipe.eof.set(true);
        self.pipe.receive.wake();
        self.pipe.send.wake();
    }

    /// Bytes sent but not yet received.
    pub fn buffered(&self) -> usize {
        self.pipe.data.borrow().len()
    }
}

impl MemoryReceiveStream {
    /// Receives at least one byte into `buf` (as many as are buffered, up
    /// to its length), waiting for the sender if the buffer is empty;
    /// returns 0 once the sender has closed and everything was received.
    ///
    /// A checkpoint. A cancelled receive takes no byte out of the buffer.
    /// Errors: `InvalidInput` for an empty `buf`, `ClosedResource` after
    /// [`close`](MemoryReceiveStream::close) (also while waiting),
    /// `BusyResource` if another task is receiving.
    pub async fn receive_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Err(empty_buffer());
        }
        let pipe = &*self.pipe;
        let claim = pipe.receive.claim(pipe.receiver_closed.get())?;
        let mut waited = false;
        let n = std::future::poll_fn(|cx| -> Poll<io::Result<usize>> {
            if pipe.receiver_closed.get() {
                return Poll::Ready(Err(ClosedResource.into()));
            }
            // The first poll made its cancel check in `claim`.
            if waited && claim.is_cancelled() {
                return Poll::Ready(Err(crate::Cancelled.into()));
            }
            let mut data = pipe.data.borrow_mut();
            if !data.is_empty() {
                return Poll::Ready(Ok(take_into(&mut data, buf)));
            }
            if pipe.eof.get() {
                return Poll::Ready(Ok(0));
            }
            waited = true;
            claim.park(cx, "memory stream receive_some");
            Poll::Pending
        })
        .await?;
        if !waited {
            after_io().await;
        }
        Ok(n)
    }

    /// Closes this end: discards the buffer, wakes a waiting receive with
    /// `ClosedResource`, and makes later sends fail with `BrokenResource`.
    /// Immediate and idempotent.
    pub fn close(&self) {
        self.pipe.receiver_closed.set(true);
        self.pipe.data.borrow_mut().clear();
        self.pipe.receive.wake();
        self.pipe.send.wake();
    }

    /// Bytes sent but not yet received.
    pub fn buffered(&self) -> usize {
        self.pipe.data.borrow().len()
    }
}

one_way_halves!(MemorySendStream, MemoryReceiveStream, shared: pipe);

/// One end of a two-way memory stream, made by [`memory_stream_pair`]: a
/// [`MemorySendStream`] and a [`MemoryReceiveStream`] joined by a
/// [`StapledStream`], whose methods it has.
/// [`send_eof`](StapledStream::send_eof) closes the sending half only.
///
/// ```
/// use trioxide::{run, BoxError};
/// use trioxide::testing::memory_stream_pair;
///
/// run(async {
///     let (left, right) = memory_stream_pair();
///     left.send_all(b"ping").await?;
///     left.send_eof().await?;
///     let mut buf = [0u8; 8];
///     assert_eq!(right.receive_some(&mut buf).await?, 4);
///     assert_eq!(right.receive_some(&mut buf).await?, 0);
///     right.send_all(b"pong").await?; // the other direction still works
///     assert_eq!(left.receive_some(&mut buf).await?, 4);
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub type MemoryStream = StapledStream<MemorySendStream, MemoryReceiveStream>;

/// A connected pair of two-way memory streams, built from two one-way
/// pairs: what one end sends, the other receives. An in-process
/// `socketpair(2)`.
///
/// ```
/// use trioxide::{run, BoxError};
/// use trioxide::testing::memory_stream_pair;
///
/// run(async {
///     let (a, b) = memory_stream_pair();
///     a.send_all(b"123").await?;
///     b.send_all(b"456").await?;
///     let mut buf = [0u8; 3];
///     assert_eq!(b.receive_some(&mut buf).await?, 3);
///     assert_eq!(&buf, b"123");
///     assert_eq!(a.receive_some(&mut buf).await?, 3);
///     assert_eq!(&buf, b"456");
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub fn memory_stream_pair() -> (MemoryStream, MemoryStream) {
    stapled_pair(memory_stream_one_way_pair)
}
