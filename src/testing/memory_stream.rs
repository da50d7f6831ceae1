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
//!
//! **Hooks and pumps (Trio's `MemorySendStream(send_all_hook, ...)`,
//! `MemoryReceiveStream(receive_some_hook, close_hook)` and
//! `memory_stream_pump`).** The two ends of a pair made by
//! [`memory_stream_one_way_pair`] share one buffer, so what is sent can be
//! received at once: the effect Trio gets from a `send_all_hook` that pumps
//! after every send. To control delivery (a slow link, bytes trickling
//! through one at a time), make the two ends separately with
//! [`MemorySendStream::new`] and [`MemoryReceiveStream::new`], each with a
//! buffer of its own, and move data between them with
//! [`memory_stream_pump`] from hooks or from a task of your own. The
//! sending end's buffer is read with [`get_data`](MemorySendStream::get_data);
//! the receiving end's is filled with
//! [`put_data`](MemoryReceiveStream::put_data) and
//! [`put_eof`](MemoryReceiveStream::put_eof). Hooks are given the stream
//! they belong to, so they need not (and should not) hold it, which would
//! be a reference cycle.
//!
//! **The poll level ([`PollReceive`], [`PollSend`], and so `futures-io`).**
//! The hooks apply there too, so a stream made to trickle or to stall
//! behaves the same through `AsyncRead`/`AsyncWrite` as through
//! `receive_some`/`send_all`: `poll_receive` runs the `receive_some` hook
//! once per receive (the polls up to the one that returns `Ready`), before
//! it looks at the buffer; `poll_send` puts its data in the buffer, then
//! runs the `send_all` hook, and reports the count when the hook is done.
//! A hook's future that waits is kept in the stream between polls (it is
//! given a stand-in for the stream, sharing its buffer and hooks, so that
//! the stream may move meanwhile); a cancelled receive drops it, with
//! nothing consumed. A `poll_send` that returned `Pending` in its hook
//! has sent its data already: poll it again with the same data (as every
//! `AsyncWrite` caller does) to get the count. `poll_send_eof` is `close`,
//! as the async `send_eof` is, and runs the close hook.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use crate::kernel::budget::after_io;
use crate::kernel::error::{BrokenResource, Cancelled, ClosedResource, WouldBlock};
use crate::kernel::Core;
use crate::stream::poll::{PollReceive, PollSend};
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

/// The future an asynchronous hook returns, borrowing the stream it was
/// given (`Box::pin(async move { ... })`).
///
/// ```
/// use trioxide::{run, BoxError};
/// use trioxide::testing::{HookFuture, MemoryReceiveStream};
///
/// // A hook as a plain function: the future borrows the stream it is given.
/// fn feed(rx: &MemoryReceiveStream) -> HookFuture<'_> {
///     Box::pin(async move { rx.put_data(b"fed") })
/// }
///
/// run(async {
///     let rx = MemoryReceiveStream::new();
///     rx.set_receive_some_hook(feed);
///     let mut buf = [0u8; 8];
///     assert_eq!(rx.receive_some(&mut buf).await?, 3); // the hook ran first
///     assert_eq!(&buf[..3], b"fed");
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub type HookFuture<'a> = Pin<Box<dyn Future<Output = io::Result<()>> + 'a>>;

type SendHook = Rc<dyn for<'a> Fn(&'a MemorySendStream) -> HookFuture<'a>>;
type ReceiveHook = Rc<dyn for<'a> Fn(&'a MemoryReceiveStream) -> HookFuture<'a>>;
type SendCloseHook = Rc<dyn Fn(&MemorySendStream)>;
type ReceiveCloseHook = Rc<dyn Fn(&MemoryReceiveStream)>;

/// A hook's future started by a poll-level operation and kept in the
/// stream until it is done, with the stand-in stream it borrows.
struct RunningHook<S: 'static> {
    /// Borrows `*stream`. Declared first, so it is dropped before `stream`.
    future: HookFuture<'static>,
    /// A stand-in for the stream (see `stand_in`), in an `Rc` so that its
    /// address stays put while `future` borrows it, wherever this moves.
    stream: Rc<S>,
}

impl<S: 'static> RunningHook<S> {
    fn start(stream: S, hook: &dyn for<'a> Fn(&'a S) -> HookFuture<'a>) -> RunningHook<S> {
        let stream = Rc::new(stream);
        let future = hook(&stream);
        // SAFETY: only the lifetime changes (same type otherwise). The
        // future borrows the `S` inside the `Rc` allocation, which does not
        // move when the `Rc` (or this struct) does, and which lives as long
        // as `stream`: the `Rc` is never cloned or handed out, and `future`
        // is dropped before it (field order, and `RunningHook` has no other
        // way to drop them). The hook cannot have kept the reference
        // elsewhere: `for<'a> Fn(&'a S) -> HookFuture<'a>` lets it escape
        // only through the future.
        let future = unsafe { std::mem::transmute::<HookFuture<'_>, HookFuture<'static>>(future) };
        RunningHook { future, stream }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = &self.stream;
        self.future.as_mut().poll(cx)
    }
}

/// Where a poll-level receive is with the `receive_some` hook.
#[derive(Default)]
enum ReceiveHookState {
    /// Not run yet for this receive.
    #[default]
    Idle,
    Running(RunningHook<MemoryReceiveStream>),
    /// Done for this receive, which waits for data.
    Done,
}

#[derive(Default)]
struct SendHooks {
    send_all: RefCell<Option<SendHook>>,
    wait_send_all_might_not_block: RefCell<Option<SendHook>>,
    close: RefCell<Option<SendCloseHook>>,
}

#[derive(Default)]
struct ReceiveHooks {
    receive_some: RefCell<Option<ReceiveHook>>,
    close: RefCell<Option<ReceiveCloseHook>>,
}

/// `max_bytes` of `get_data`: `None` for everything, else at least 1.
fn check_max_bytes(max_bytes: Option<usize>) -> io::Result<usize> {
    match max_bytes {
        None => Ok(usize::MAX),
        Some(0) => Err(io::Error::new(io::ErrorKind::InvalidInput, "max_bytes must be >= 1")),
        Some(n) => Ok(n),
    }
}

/// Takes up to `max` bytes from the front of `data`.
fn take_up_to(data: &mut VecDeque<u8>, max: usize) -> Vec<u8> {
    let n = data.len().min(max);
    data.drain(..n).collect()
}

/// The sending end of a one-way memory stream, made by
/// [`memory_stream_one_way_pair`] or, with a buffer of its own, by
/// [`MemorySendStream::new`]. Dropping it closes it: the receiver reads
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
    hooks: Rc<SendHooks>,
    /// The `send_all` hook a poll-level send is running, and the count it
    /// reports when the hook is done.
    poll_hook: RefCell<Option<(RunningHook<MemorySendStream>, usize)>>,
    /// A stand-in lent to a hook by the poll layer: dropping it closes
    /// nothing.
    stand_in: bool,
}

/// The receiving end of a one-way memory stream, made by
/// [`memory_stream_one_way_pair`] or, with a buffer of its own, by
/// [`MemoryReceiveStream::new`]. Dropping it closes it: later sends fail
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
    hooks: Rc<ReceiveHooks>,
    /// The poll-level receive's progress with the `receive_some` hook.
    poll_hook: RefCell<ReceiveHookState>,
    /// A stand-in lent to a hook by the poll layer: dropping it closes
    /// nothing.
    stand_in: bool,
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
    (MemorySendStream::with_pipe(pipe.clone()), MemoryReceiveStream::with_pipe(pipe))
}

impl MemorySendStream {
    /// Appends `data` to the buffer and wakes the receiver. Never waits for
    /// the receiver, but is a checkpoint: `Cancelled` (with nothing sent)
    /// if the scope is cancelled, and it lets other tasks run.
    ///
    /// Errors: `ClosedResource` after [`close`](MemorySendStream::close),
    /// `BusyResource` if another task is sending, `BrokenResource` if the
    /// receiving end is closed.
    ///
    /// ```
    /// use trioxide::{io_error_kind, run, BoxError, CancelScope, Cancelled, IoErrorKind};
    /// use trioxide::testing::memory_stream_one_way_pair;
    ///
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     tx.send_all(b"abc").await?; // buffered: nobody needs to receive
    ///     assert_eq!(tx.buffered(), 3);
    ///     let scope = CancelScope::new();
    ///     scope.cancel();
    ///     scope.run(async {
    ///         let err = tx.send_all(b"def").await.unwrap_err();
    ///         assert_eq!(io_error_kind(&err), Some(IoErrorKind::Cancelled));
    ///         Ok::<_, Cancelled>(())
    ///     }).await?;
    ///     assert_eq!(tx.buffered(), 3); // the cancelled send sent nothing
    ///     drop(rx);
    ///     let err = tx.send_all(b"x").await.unwrap_err();
    ///     assert_eq!(io_error_kind(&err), Some(IoErrorKind::Broken));
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn send_all(&self, data: &[u8]) -> io::Result<()> {
        let pipe = &*self.pipe;
        let _claim = pipe.send.claim(pipe.eof.get(), "trioxide::testing::MemorySendStream::send_all")?;
        if pipe.receiver_closed.get() {
            return Err(RECEIVER_CLOSED.into());
        }
        if !data.is_empty() {
            pipe.data.borrow_mut().extend(data);
            pipe.receive.wake();
        }
        let hook = self.hooks.send_all.borrow().clone();
        if let Some(hook) = hook {
            hook(self).await?;
        }
        after_io().await;
        Ok(())
    }

    /// Returns at once (the buffer is unbounded, so a send never waits); a
    /// checkpoint. `ClosedResource` after `close`, `BusyResource` during
    /// another send.
    ///
    /// ```
    /// use trioxide::{io_error_kind, run, BoxError, IoErrorKind};
    /// use trioxide::testing::memory_stream_one_way_pair;
    ///
    /// run(async {
    ///     let (tx, _rx) = memory_stream_one_way_pair();
    ///     tx.wait_send_all_might_not_block().await?; // nobody receiving: returns anyway
    ///     tx.close();
    ///     let err = tx.wait_send_all_might_not_block().await.unwrap_err();
    ///     assert_eq!(io_error_kind(&err), Some(IoErrorKind::Closed));
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn wait_send_all_might_not_block(&self) -> io::Result<()> {
        let pipe = &*self.pipe;
        let _claim =
            pipe.send.claim(pipe.eof.get(), "trioxide::testing::MemorySendStream::wait_send_all_might_not_block")?;
        let hook = self.hooks.wait_send_all_might_not_block.borrow().clone();
        if let Some(hook) = hook {
            hook(self).await?;
        }
        after_io().await;
        Ok(())
    }

    /// Closes this end: the receiver reads what is buffered, then 0.
    /// Immediate and idempotent, but the close hook runs on every call (as
    /// in Trio), dropping the stream included.
    ///
    /// ```
    /// use trioxide::{io_error_kind, run, BoxError, IoErrorKind};
    /// use trioxide::testing::memory_stream_one_way_pair;
    ///
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     tx.send_all(b"last").await?;
    ///     tx.close();
    ///     tx.close(); // idempotent
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(rx.receive_some(&mut buf).await?, 4); // what was sent first
    ///     assert_eq!(rx.receive_some(&mut buf).await?, 0); // then the end
    ///     let err = tx.send_all(b"more").await.unwrap_err();
    ///     assert_eq!(io_error_kind(&err), Some(IoErrorKind::Closed));
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn close(&self) {
        self.pipe.eof.set(true);
        self.pipe.receive.wake();
        self.pipe.send.wake();
        let hook = self.hooks.close.borrow().clone();
        if let Some(hook) = hook {
            hook(self);
        }
    }

    /// A sending end with a buffer of its own and no receiving end (Trio's
    /// `MemorySendStream()`): what is sent stays in the buffer until taken
    /// with [`get_data`](MemorySendStream::get_data),
    /// [`get_data_nowait`](MemorySendStream::get_data_nowait) or
    /// [`memory_stream_pump`].
    ///
    /// ```
    /// use trioxide::{run, BoxError};
    /// use trioxide::testing::MemorySendStream;
    ///
    /// run(async {
    ///     let tx = MemorySendStream::new();
    ///     tx.send_all(b"123").await?;
    ///     assert_eq!(tx.get_data_nowait(Some(1))?, b"1");
    ///     assert_eq!(tx.get_data(None).await?, b"23");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    #[allow(clippy::new_without_default)] // dropping one closes it: no `Default`
    pub fn new() -> MemorySendStream {
        MemorySendStream::with_pipe(Rc::new(Pipe::default()))
    }

    /// Sets the hook `send_all` awaits after it has put its data in the
    /// buffer (before its final schedule point); an error of the hook is
    /// `send_all`'s. Trio's `send_all_hook`.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use trioxide::{run, BoxError};
    /// use trioxide::testing::{memory_stream_pump, MemoryReceiveStream, MemorySendStream};
    ///
    /// run(async {
    ///     // A link that delivers one byte per send_all call.
    ///     let rx = Rc::new(MemoryReceiveStream::new());
    ///     let tx = MemorySendStream::new();
    ///     let to = rx.clone();
    ///     tx.set_send_all_hook(move |tx| {
    ///         let to = to.clone();
    ///         Box::pin(async move {
    ///             memory_stream_pump(tx, &to, Some(1))?;
    ///             Ok(())
    ///         })
    ///     });
    ///     tx.send_all(b"ab").await?;
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(rx.receive_some(&mut buf).await?, 1);
    ///     assert_eq!(tx.buffered(), 1);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn set_send_all_hook<F>(&self, hook: F)
    where
        F: for<'a> Fn(&'a MemorySendStream) -> HookFuture<'a> + 'static,
    {
        *self.hooks.send_all.borrow_mut() = Some(Rc::new(hook));
    }

    /// Sets the hook `wait_send_all_might_not_block` awaits before its
    /// final schedule point (Trio's `wait_send_all_might_not_block_hook`):
    /// make it wait to simulate a clogged link.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use trioxide::{run, BoxError};
    /// use trioxide::testing::MemorySendStream;
    ///
    /// run(async {
    ///     let tx = MemorySendStream::new();
    ///     let calls = Rc::new(std::cell::Cell::new(0));
    ///     let c = calls.clone();
    ///     tx.set_wait_send_all_might_not_block_hook(move |_| {
    ///         c.set(c.get() + 1);
    ///         Box::pin(async { Ok(()) })
    ///     });
    ///     tx.wait_send_all_might_not_block().await?;
    ///     assert_eq!(calls.get(), 1);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn set_wait_send_all_might_not_block_hook<F>(&self, hook: F)
    where
        F: for<'a> Fn(&'a MemorySendStream) -> HookFuture<'a> + 'static,
    {
        *self.hooks.wait_send_all_might_not_block.borrow_mut() = Some(Rc::new(hook));
    }

    /// Sets the hook every [`close`](MemorySendStream::close) calls after
    /// closing (Trio's `close_hook`; dropping the stream closes it too):
    /// pump the EOF on with it.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use trioxide::{run, BoxError};
    /// use trioxide::testing::{memory_stream_pump, MemoryReceiveStream, MemorySendStream};
    ///
    /// run(async {
    ///     let rx = Rc::new(MemoryReceiveStream::new());
    ///     let tx = MemorySendStream::new();
    ///     let to = rx.clone();
    ///     tx.set_close_hook(move |tx| {
    ///         let _ = memory_stream_pump(tx, &to, None);
    ///     });
    ///     drop(tx);
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(rx.receive_some(&mut buf).await?, 0); // EOF arrived
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn set_close_hook<F>(&self, hook: F)
    where
        F: Fn(&MemorySendStream) + 'static,
    {
        *self.hooks.close.borrow_mut() = Some(Rc::new(hook));
    }

    /// Removes every hook.
    ///
    /// ```
    /// let tx = trioxide::testing::MemorySendStream::new();
    /// tx.set_close_hook(|_| panic!("not called"));
    /// tx.clear_hooks();
    /// drop(tx);
    /// ```
    pub fn clear_hooks(&self) {
        *self.hooks.send_all.borrow_mut() = None;
        *self.hooks.wait_send_all_might_not_block.borrow_mut() = None;
        *self.hooks.close.borrow_mut() = None;
    }

    /// Takes up to `max_bytes` (`None`: all) sent bytes out of the buffer,
    /// waiting until there are some; an empty `Vec` once this end is closed
    /// and the buffer is empty (Trio's `get_data`). A checkpoint.
    ///
    /// Errors: `InvalidInput` for `Some(0)`; `BusyResource` if another task
    /// is taking data (or receiving, for a pair's end); `ClosedResource` if
    /// the receiving end of a pair is closed.
    ///
    /// ```
    /// use trioxide::{run, BoxError};
    /// use trioxide::testing::MemorySendStream;
    ///
    /// run(async {
    ///     let tx = MemorySendStream::new();
    ///     tx.send_all(b"456").await?;
    ///     assert_eq!(tx.get_data(None).await?, b"456");
    ///     tx.close();
    ///     assert_eq!(tx.get_data(None).await?, b"");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn get_data(&self, max_bytes: Option<usize>) -> io::Result<Vec<u8>> {
        let max = check_max_bytes(max_bytes)?;
        let pipe = &*self.pipe;
        let claim = pipe.receive.claim(pipe.receiver_closed.get(), "trioxide::testing::MemorySendStream::get_data")?;
        let mut waited = false;
        let data = std::future::poll_fn(|cx| -> Poll<io::Result<Vec<u8>>> {
            if pipe.receiver_closed.get() {
                return Poll::Ready(Err(ClosedResource.into()));
            }
            if waited && claim.is_cancelled() {
                return Poll::Ready(Err(crate::Cancelled.into()));
            }
            let mut data = pipe.data.borrow_mut();
            if !data.is_empty() {
                return Poll::Ready(Ok(take_up_to(&mut data, max)));
            }
            if pipe.eof.get() {
                return Poll::Ready(Ok(Vec::new()));
            }
            waited = true;
            claim.park(cx, "memory stream get_data");
            Poll::Pending
        })
        .await?;
        if !waited {
            after_io().await;
        }
        Ok(data)
    }

    /// [`get_data`](MemorySendStream::get_data) without waiting (Trio's
    /// `get_data_nowait`): an error of kind `WouldBlock` if the buffer is
    /// empty and this end is still open. Not a checkpoint.
    ///
    /// ```
    /// use std::io::ErrorKind;
    /// use trioxide::testing::MemorySendStream;
    ///
    /// let tx = MemorySendStream::new();
    /// assert_eq!(tx.get_data_nowait(None).unwrap_err().kind(), ErrorKind::WouldBlock);
    /// tx.close();
    /// assert_eq!(tx.get_data_nowait(None).unwrap(), b"");
    /// ```
    pub fn get_data_nowait(&self, max_bytes: Option<usize>) -> io::Result<Vec<u8>> {
        let max = check_max_bytes(max_bytes)?;
        let pipe = &*self.pipe;
        if pipe.receiver_closed.get() {
            return Err(ClosedResource.into());
        }
        let mut data = pipe.data.borrow_mut();
        if !data.is_empty() {
            return Ok(take_up_to(&mut data, max));
        }
        if pipe.eof.get() {
            return Ok(Vec::new());
        }
        Err(io::Error::new(io::ErrorKind::WouldBlock, WouldBlock))
    }

    /// Bytes sent but not yet received.
    ///
    /// ```
    /// use trioxide::{run, BoxError};
    /// use trioxide::testing::memory_stream_one_way_pair;
    ///
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     tx.send_all(b"12345").await?;
    ///     assert_eq!(tx.buffered(), 5);
    ///     rx.receive_some(&mut [0u8; 2]).await?;
    ///     assert_eq!(tx.buffered(), 3); // the same buffer as rx.buffered()
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn buffered(&self) -> usize {
        self.pipe.data.borrow().len()
    }
}

/// The poll level of the sending end (see the module docs on hooks).
impl MemorySendStream {
    fn with_pipe(pipe: Rc<Pipe>) -> MemorySendStream {
        MemorySendStream { pipe, hooks: Rc::default(), poll_hook: RefCell::new(None), stand_in: false }
    }

    /// What a hook run by the poll layer is given: the same buffer and
    /// hooks, closing nothing when dropped.
    fn stand_in(&self) -> MemorySendStream {
        MemorySendStream {
            pipe: self.pipe.clone(),
            hooks: self.hooks.clone(),
            poll_hook: RefCell::new(None),
            stand_in: true,
        }
    }

    fn close_on_drop(&self) {
        if !self.stand_in {
            self.close();
        }
    }

    /// Polls the `send_all` hook an earlier `poll_send` started, if any.
    fn poll_send_hook(&self, cx: &mut Context<'_>) -> Option<Poll<io::Result<usize>>> {
        let mut slot = self.poll_hook.borrow_mut();
        let (running, sent) = slot.as_mut()?;
        match running.poll(cx) {
            Poll::Pending => {
                self.pipe.send.poll_suspended("memory stream send_all hook");
                Some(Poll::Pending)
            }
            Poll::Ready(r) => {
                let sent = *sent;
                *slot = None;
                Some(Poll::Ready(r.map(|()| sent)))
            }
        }
    }

    fn poll_send_impl(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(done) = self.poll_send_hook(cx) {
            return done;
        }
        let pipe = &*self.pipe;
        if data.is_empty() {
            return Poll::Ready(pipe.send.poll_check(pipe.eof.get()).map(|()| 0));
        }
        ready!(pipe.send.poll_begin(pipe.eof.get(), cx, "trioxide::testing::MemorySendStream::poll_send"))?;
        if pipe.receiver_closed.get() {
            return Poll::Ready(Err(RECEIVER_CLOSED.into()));
        }
        pipe.data.borrow_mut().extend(data);
        pipe.receive.wake();
        let hook = self.hooks.send_all.borrow().clone();
        let Some(hook) = hook else {
            return Poll::Ready(Ok(data.len()));
        };
        *self.poll_hook.borrow_mut() = Some((RunningHook::start(self.stand_in(), &*hook), data.len()));
        self.poll_send_hook(cx).unwrap_or(Poll::Ready(Ok(data.len())))
    }

    fn poll_send_eof_impl(&self) -> Poll<io::Result<()>> {
        if let Err(e) = self.pipe.send.poll_check(false) {
            return Poll::Ready(Err(e));
        }
        if Core::current_for("trioxide::testing::MemorySendStream::poll_send_eof").is_cancelled() {
            return Poll::Ready(Err(Cancelled.into()));
        }
        self.close();
        Poll::Ready(Ok(()))
    }
}

impl PollSend for MemorySendStream {
    fn poll_send(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_send_impl(cx, data)
    }

    fn poll_send_eof(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_send_eof_impl()
    }
}

/// The poll level of the receiving end (see the module docs on hooks).
impl MemoryReceiveStream {
    fn with_pipe(pipe: Rc<Pipe>) -> MemoryReceiveStream {
        MemoryReceiveStream {
            pipe,
            hooks: Rc::default(),
            poll_hook: RefCell::new(ReceiveHookState::Idle),
            stand_in: false,
        }
    }

    /// What a hook run by the poll layer is given (see
    /// `MemorySendStream::stand_in`).
    fn stand_in(&self) -> MemoryReceiveStream {
        MemoryReceiveStream {
            pipe: self.pipe.clone(),
            hooks: self.hooks.clone(),
            poll_hook: RefCell::new(ReceiveHookState::Idle),
            stand_in: true,
        }
    }

    fn close_on_drop(&self) {
        if !self.stand_in {
            self.close();
        }
    }

    fn poll_receive_impl(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let pipe = &*self.pipe;
        if buf.is_empty() {
            return Poll::Ready(pipe.receive.poll_check(pipe.receiver_closed.get()).map(|()| 0));
        }
        let op = "trioxide::testing::MemoryReceiveStream::poll_receive";
        if let Err(e) = ready!(pipe.receive.poll_begin(pipe.receiver_closed.get(), cx, op)) {
            // A cancelled receive drops its hook's future and starts over.
            *self.poll_hook.borrow_mut() = ReceiveHookState::Idle;
            return Poll::Ready(Err(e));
        }
        {
            let mut state = self.poll_hook.borrow_mut();
            if matches!(*state, ReceiveHookState::Idle) {
                let hook = self.hooks.receive_some.borrow().clone();
                if let Some(hook) = hook {
                    *state = ReceiveHookState::Running(RunningHook::start(self.stand_in(), &*hook));
                }
            }
            if let ReceiveHookState::Running(running) = &mut *state {
                match running.poll(cx) {
                    Poll::Pending => {
                        pipe.receive.poll_suspended("memory stream receive_some hook");
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => {
                        *state = ReceiveHookState::Idle;
                        return Poll::Ready(Err(e));
                    }
                    Poll::Ready(Ok(())) => *state = ReceiveHookState::Done,
                }
            }
        }
        if pipe.receiver_closed.get() {
            *self.poll_hook.borrow_mut() = ReceiveHookState::Idle;
            return Poll::Ready(Err(ClosedResource.into()));
        }
        let mut data = pipe.data.borrow_mut();
        if !data.is_empty() || pipe.eof.get() {
            *self.poll_hook.borrow_mut() = ReceiveHookState::Idle;
            return Poll::Ready(Ok(take_into(&mut data, buf)));
        }
        pipe.receive.poll_park(cx, "memory stream poll_receive");
        Poll::Pending
    }
}

impl PollReceive for MemoryReceiveStream {
    fn poll_receive(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.poll_receive_impl(cx, buf)
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
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{move_on_after, open_nursery, sleep, BoxError, Builder, MockClock};
    /// use trioxide::testing::memory_stream_one_way_pair;
    ///
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// Builder::new().clock(clock).run(open_nursery(|n| async move {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     let mut buf = [0u8; 8];
    ///     // Nothing sent: the receive waits, and its timeout cancels it.
    ///     assert_eq!(move_on_after(Duration::from_secs(1), rx.receive_some(&mut buf)).await?, None);
    ///     n.start_soon(async move {
    ///         sleep(Duration::from_secs(5)).await?;
    ///         tx.send_all(b"late").await?;
    ///         Ok::<_, BoxError>(())
    ///     })?;
    ///     assert_eq!(rx.receive_some(&mut buf).await?, 4); // waits for the sender
    ///     assert_eq!(rx.receive_some(&mut buf).await?, 0); // its task ended, closing tx
    ///     assert!(rx.receive_some(&mut []).await.is_err()); // InvalidInput
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub async fn receive_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Err(empty_buffer());
        }
        let pipe = &*self.pipe;
        let claim =
            pipe.receive.claim(pipe.receiver_closed.get(), "trioxide::testing::MemoryReceiveStream::receive_some")?;
        let hook = self.hooks.receive_some.borrow().clone();
        if let Some(hook) = hook {
            hook(self).await?;
        }
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
    /// The close hook runs on every call (as in Trio), dropping the stream
    /// included.
    ///
    /// ```
    /// use trioxide::{io_error_kind, run, BoxError, IoErrorKind};
    /// use trioxide::testing::memory_stream_one_way_pair;
    ///
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     tx.send_all(b"unread").await?;
    ///     rx.close();
    ///     assert_eq!(rx.buffered(), 0); // discarded
    ///     let err = rx.receive_some(&mut [0u8; 8]).await.unwrap_err();
    ///     assert_eq!(io_error_kind(&err), Some(IoErrorKind::Closed));
    ///     let err = tx.send_all(b"more").await.unwrap_err();
    ///     assert_eq!(io_error_kind(&err), Some(IoErrorKind::Broken));
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn close(&self) {
        self.pipe.receiver_closed.set(true);
        self.pipe.data.borrow_mut().clear();
        self.pipe.receive.wake();
        self.pipe.send.wake();
        let hook = self.hooks.close.borrow().clone();
        if let Some(hook) = hook {
            hook(self);
        }
    }

    /// A receiving end with a buffer of its own and no sending end (Trio's
    /// `MemoryReceiveStream()`): fill it with
    /// [`put_data`](MemoryReceiveStream::put_data) and
    /// [`put_eof`](MemoryReceiveStream::put_eof), or with
    /// [`memory_stream_pump`].
    ///
    /// ```
    /// use trioxide::{run, BoxError};
    /// use trioxide::testing::MemoryReceiveStream;
    ///
    /// run(async {
    ///     let rx = MemoryReceiveStream::new();
    ///     rx.put_data(b"abc")?;
    ///     rx.put_eof();
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(rx.receive_some(&mut buf).await?, 3);
    ///     assert_eq!(rx.receive_some(&mut buf).await?, 0);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    #[allow(clippy::new_without_default)] // dropping one closes it: no `Default`
    pub fn new() -> MemoryReceiveStream {
        MemoryReceiveStream::with_pipe(Rc::new(Pipe::default()))
    }

    /// Sets the hook `receive_some` awaits after its checks and before it
    /// looks at the buffer (Trio's `receive_some_hook`): pump data in with
    /// it, or wait to simulate latency. An error of the hook is
    /// `receive_some`'s.
    ///
    /// ```
    /// use trioxide::{run, BoxError};
    /// use trioxide::testing::MemoryReceiveStream;
    ///
    /// run(async {
    ///     let rx = MemoryReceiveStream::new();
    ///     rx.set_receive_some_hook(|rx| Box::pin(async move { rx.put_data(b"xxx") }));
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(rx.receive_some(&mut buf).await?, 3);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn set_receive_some_hook<F>(&self, hook: F)
    where
        F: for<'a> Fn(&'a MemoryReceiveStream) -> HookFuture<'a> + 'static,
    {
        *self.hooks.receive_some.borrow_mut() = Some(Rc::new(hook));
    }

    /// Sets the hook every [`close`](MemoryReceiveStream::close) calls
    /// after closing (Trio's `close_hook`).
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// use trioxide::testing::MemoryReceiveStream;
    ///
    /// let closed = Rc::new(Cell::new(0));
    /// let c = closed.clone();
    /// let rx = MemoryReceiveStream::new();
    /// rx.set_close_hook(move |_| c.set(c.get() + 1));
    /// rx.close();
    /// drop(rx); // closes again
    /// assert_eq!(closed.get(), 2);
    /// ```
    pub fn set_close_hook<F>(&self, hook: F)
    where
        F: Fn(&MemoryReceiveStream) + 'static,
    {
        *self.hooks.close.borrow_mut() = Some(Rc::new(hook));
    }

    /// Removes every hook.
    ///
    /// ```
    /// let rx = trioxide::testing::MemoryReceiveStream::new();
    /// rx.set_close_hook(|_| panic!("not called"));
    /// rx.clear_hooks();
    /// drop(rx);
    /// ```
    pub fn clear_hooks(&self) {
        *self.hooks.receive_some.borrow_mut() = None;
        *self.hooks.close.borrow_mut() = None;
    }

    /// Appends `data` to the buffer and wakes a waiting receive (Trio's
    /// `put_data`). `ClosedResource` after [`put_eof`](MemoryReceiveStream::put_eof)
    /// or [`close`](MemoryReceiveStream::close) (or, for a pair's end, after
    /// the sending end closed).
    ///
    /// ```
    /// use trioxide::testing::MemoryReceiveStream;
    /// let rx = MemoryReceiveStream::new();
    /// rx.put_data(b"abc").unwrap();
    /// assert_eq!(rx.buffered(), 3);
    /// rx.put_eof();
    /// assert!(rx.put_data(b"---").is_err());
    /// ```
    pub fn put_data(&self, data: &[u8]) -> io::Result<()> {
        let pipe = &*self.pipe;
        if pipe.receiver_closed.get() || pipe.eof.get() {
            return Err(ClosedResource.into());
        }
        if !data.is_empty() {
            pipe.data.borrow_mut().extend(data);
            pipe.receive.wake();
        }
        Ok(())
    }

    /// Marks the end of the data: once the buffer is drained, receives
    /// return 0 (Trio's `put_eof`). Idempotent. For a pair's end this is
    /// the same as closing the sending end.
    ///
    /// ```
    /// use trioxide::{run, BoxError};
    /// use trioxide::testing::MemoryReceiveStream;
    ///
    /// run(async {
    ///     let rx = MemoryReceiveStream::new();
    ///     rx.put_eof();
    ///     rx.put_eof();
    ///     let mut buf = [0u8; 1];
    ///     assert_eq!(rx.receive_some(&mut buf).await?, 0);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn put_eof(&self) {
        self.pipe.eof.set(true);
        self.pipe.receive.wake();
        self.pipe.send.wake();
    }

    /// Bytes sent but not yet received: put with
    /// [`put_data`](MemoryReceiveStream::put_data) or sent by a pair's
    /// sending end.
    ///
    /// ```
    /// use trioxide::{run, BoxError};
    /// use trioxide::testing::MemoryReceiveStream;
    ///
    /// run(async {
    ///     let rx = MemoryReceiveStream::new();
    ///     rx.put_data(b"abcd")?;
    ///     assert_eq!(rx.buffered(), 4);
    ///     rx.receive_some(&mut [0u8; 3]).await?;
    ///     assert_eq!(rx.buffered(), 1);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
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

/// Why a pump into a closed receiving end fails (Trio's message).
const PUMP_RECEIVER_CLOSED: BrokenResource = BrokenResource { reason: "MemoryReceiveStream was closed" };

/// Moves data from `send`'s buffer into `receive`'s (Trio's
/// `memory_stream_pump`): up to `max_bytes` bytes (`None`: all there is),
/// or the end of the data if `send` is closed and its buffer empty.
/// Returns whether it moved anything (data or the end). Not a checkpoint.
///
/// Errors: `BrokenResource` ("MemoryReceiveStream was closed") if `receive`
/// is closed, `InvalidInput` for `Some(0)`.
///
/// ```
/// use trioxide::{run, BoxError};
/// use trioxide::testing::{memory_stream_pump, MemoryReceiveStream, MemorySendStream};
///
/// run(async {
///     let (tx, rx) = (MemorySendStream::new(), MemoryReceiveStream::new());
///     assert!(!memory_stream_pump(&tx, &rx, None)?); // nothing to move
///     tx.send_all(b"456").await?;
///     assert!(memory_stream_pump(&tx, &rx, Some(1))?);
///     let mut buf = [0u8; 10];
///     assert_eq!(rx.receive_some(&mut buf).await?, 1);
///     assert_eq!(&buf[..1], b"4");
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub fn memory_stream_pump(
    send: &MemorySendStream,
    receive: &MemoryReceiveStream,
    max_bytes: Option<usize>,
) -> io::Result<bool> {
    check_max_bytes(max_bytes)?;
    {
        let from = &*send.pipe;
        if from.data.borrow().is_empty() && !from.eof.get() && !from.receiver_closed.get() {
            return Ok(false);
        }
    }
    // Refuse before taking anything, so a failed pump loses no data.
    let to = &*receive.pipe;
    let has_data = !send.pipe.data.borrow().is_empty();
    if to.receiver_closed.get() || (has_data && to.eof.get()) {
        return Err(PUMP_RECEIVER_CLOSED.into());
    }
    let data = send.get_data_nowait(max_bytes)?;
    if data.is_empty() {
        receive.put_eof();
    } else {
        receive.put_data(&data)?;
    }
    Ok(true)
}
