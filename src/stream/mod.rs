//! Stream traits in Trio's spirit: a byte stream is something you can
//! `receive_some` from, `send_all` to, half-close with `send_eof`, and
//! `close`. Code written against these traits works on TCP, Unix sockets
//! and anything else that implements them.
//!
//! Every async method is a checkpoint: it reports `Cancelled` (inside the
//! `io::Error`, see [`io_error_kind`](crate::io_error_kind)) when its cancel
//! scope is cancelled, and lets other tasks run even when it completes at
//! once. Two tasks using the same direction at once get
//! [`BusyResource`](crate::BusyResource); an operation on, or waiting on, a
//! closed stream gets [`ClosedResource`](crate::ClosedResource).
//!
//! (These are not `futures_core::Stream`, which yields items; the name is
//! Trio's.)

pub(crate) mod buffered;
#[cfg(feature = "futures-io")]
mod futures_io;
pub(crate) mod poll;
pub(crate) mod poll_checkpoint;
pub(crate) mod split;
pub(crate) mod stapled;

use std::future::Future;
use std::io;

/// Something that can be closed. Closing is immediate and idempotent; tasks
/// waiting on the resource wake with [`ClosedResource`](crate::ClosedResource).
///
/// ```
/// use trioxide::{io_error_kind, run, BoxError, IoErrorKind, Resource, UnixStream};
/// run(async {
///     let (a, _b) = UnixStream::pair()?;
///     Resource::close(&a);
///     Resource::close(&a); // a second close does nothing
///     let e = a.receive_some(&mut [0u8; 8]).await.unwrap_err();
///     assert_eq!(io_error_kind(&e), Some(IoErrorKind::Closed));
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub trait Resource {
    /// Closes the resource now. Dropping it closes it too; `close` exists
    /// for resources shared through `Rc` between tasks. Not a checkpoint
    /// (it never waits). A task blocked on the resource in another task
    /// wakes at once with [`ClosedResource`](crate::ClosedResource), and so
    /// does every later operation.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use trioxide::{io_error_kind, open_nursery, run, wait_all_tasks_blocked, BoxError, IoErrorKind, Resource};
    /// use trioxide::testing::memory_stream_one_way_pair;
    /// run(open_nursery(|n| async move {
    ///     let (_tx, rx) = memory_stream_one_way_pair();
    ///     let rx = Rc::new(rx);
    ///     let waiter = rx.clone();
    ///     n.start_soon(async move {
    ///         let e = waiter.receive_some(&mut [0u8; 8]).await.unwrap_err();
    ///         assert_eq!(io_error_kind(&e), Some(IoErrorKind::Closed)); // woken by the close
    ///         Ok::<_, BoxError>(())
    ///     })?;
    ///     wait_all_tasks_blocked().await?; // the child waits for data
    ///     Resource::close(&*rx);
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    fn close(&self);
}

/// The sending half of a byte stream (Trio's `SendStream`).
///
/// The guarantees every implementation keeps (the conformance checks in
/// [`testing`](crate::testing) test them):
///
/// * **Every call is a checkpoint**: it returns an error carrying
///   [`Cancelled`](crate::Cancelled) (see [`io_error_kind`](crate::io_error_kind))
///   if its cancel scope is cancelled, and lets other tasks run even when
///   it completes at once (rule I2).
/// * **One sender at a time**: a second task that sends (or waits) while
///   a send is under way gets [`BusyResource`](crate::BusyResource); the
///   first goes on.
/// * **Closed means closed**: after [`close`](Resource::close) (by any
///   task, even while a send waits) sends fail with
///   [`ClosedResource`](crate::ClosedResource).
/// * **Partial sends break the stream**: a `send_all` cancelled after it
///   sent part of its data cannot say how much the peer got, so every
///   later send fails with [`BrokenResource`](crate::BrokenResource) (rule
///   I3). A send cancelled before it sent anything leaves the stream as it
///   was.
///
/// ```
/// use trioxide::{run, BoxError, SendStream};
/// use trioxide::testing::memory_stream_one_way_pair;
///
/// // Code written against the trait works on any stream.
/// async fn greet(tx: &impl SendStream) -> std::io::Result<()> {
///     tx.send_all(b"hello").await
/// }
///
/// run(async {
///     let (tx, rx) = memory_stream_one_way_pair();
///     greet(&tx).await?;
///     let mut buf = [0u8; 8];
///     let n = rx.receive_some(&mut buf).await?;
///     assert_eq!(&buf[..n], b"hello");
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub trait SendStream: Resource {
    /// Sends all of `data`, waiting for buffer space as needed; returns
    /// once all of it is handed to the stream (not necessarily received).
    ///
    /// If cancelled part-way, the peer has received an unknown prefix of
    /// `data`, so the stream refuses further sends with
    /// [`BrokenResource`](crate::BrokenResource) (rule I3). A checkpoint;
    /// [`BusyResource`](crate::BusyResource) if another task is sending,
    /// [`ClosedResource`](crate::ClosedResource) once closed.
    ///
    /// ```
    /// use trioxide::{run, BoxError, CancelScope, SendStream};
    /// use trioxide::testing::memory_stream_one_way_pair;
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     // Cancelled before it sent a byte: the stream is still usable.
    ///     let scope = CancelScope::new();
    ///     scope.cancel();
    ///     let r = scope.run(SendStream::send_all(&tx, b"lost")).await;
    ///     assert!(matches!(r, Ok(None))); // the scope caught its Cancelled
    ///     tx.send_all(b"kept").await?;
    ///     let mut buf = [0u8; 8];
    ///     let n = rx.receive_some(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"kept");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn send_all(&self, data: &[u8]) -> impl Future<Output = io::Result<()>>;

    /// Waits until a `send_all` would probably not block: for a producer
    /// that wants to compute its data as late as possible. It may wake
    /// spuriously. A checkpoint, and it counts as a send for
    /// [`BusyResource`](crate::BusyResource).
    ///
    /// ```
    /// use trioxide::{run, BoxError, SendStream};
    /// use trioxide::testing::memory_stream_one_way_pair;
    /// run(async {
    ///     let (tx, _rx) = memory_stream_one_way_pair();
    ///     SendStream::wait_send_all_might_not_block(&tx).await?; // an empty buffer: at once
    ///     tx.send_all(b"fresh data").await?;
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn wait_send_all_might_not_block(&self) -> impl Future<Output = io::Result<()>>;
}

/// The receiving half of a byte stream (Trio's `ReceiveStream`).
///
/// The guarantees every implementation keeps:
///
/// * **Every call is a checkpoint** (rule I2), as for [`SendStream`].
/// * **Nothing is lost to cancellation**: a cancelled `receive_some` has
///   consumed no byte; the next receive gets everything (rule I3).
/// * **One receiver at a time**: a second task that receives while one
///   waits gets [`BusyResource`](crate::BusyResource); the first goes on.
/// * **Closed means closed**: after [`close`](Resource::close), receives
///   fail with [`ClosedResource`](crate::ClosedResource), including one
///   that was waiting.
/// * **0 means the end**: `Ok(0)` only once the peer has ended the stream
///   (closed it or sent EOF), and again on every later call.
///
/// ```
/// use std::rc::Rc;
/// use trioxide::{io_error_kind, open_nursery, run, wait_all_tasks_blocked, BoxError, IoErrorKind, ReceiveStream};
/// use trioxide::testing::memory_stream_one_way_pair;
///
/// run(open_nursery(|n| async move {
///     let (tx, rx) = memory_stream_one_way_pair();
///     let rx = Rc::new(rx);
///     let first = rx.clone();
///     n.start_soon(async move {
///         let mut buf = [0u8; 8];
///         let got = first.receive_some(&mut buf).await?; // waits for data
///         assert_eq!(&buf[..got], b"hi");
///         Ok::<_, BoxError>(())
///     })?;
///     wait_all_tasks_blocked().await?; // the first receiver waits
///     let e = ReceiveStream::receive_some(&*rx, &mut [0u8; 8]).await.unwrap_err();
///     assert_eq!(io_error_kind(&e), Some(IoErrorKind::Busy)); // a second one is refused
///     tx.send_all(b"hi").await?;
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
pub trait ReceiveStream: Resource {
    /// Receives at least one byte into `buf` and returns how many, or 0 at
    /// the end of the stream. A cancelled receive has received nothing, so
    /// no byte is ever lost (rule I3). An empty `buf` is an `InvalidInput`
    /// error (0 means end of stream). A checkpoint.
    ///
    /// ```
    /// use trioxide::{run, BoxError, CancelScope, ReceiveStream};
    /// use trioxide::testing::memory_stream_one_way_pair;
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     tx.send_all(b"abc").await?;
    ///     let mut buf = [0u8; 8];
    ///     let scope = CancelScope::new();
    ///     scope.cancel();
    ///     let r = scope.run(ReceiveStream::receive_some(&rx, &mut buf)).await;
    ///     assert!(matches!(r, Ok(None))); // cancelled: consumed nothing
    ///     let n = rx.receive_some(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"abc"); // all still there
    ///     tx.close();
    ///     assert_eq!(rx.receive_some(&mut buf).await?, 0); // the end
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn receive_some(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>>;
}

/// A two-way byte stream (Trio's `Stream`): implemented for everything that
/// is both a [`SendStream`] and a [`ReceiveStream`]. The two directions are
/// independent: one task may send while another receives.
///
/// ```
/// use trioxide::{run, BoxError, Stream, UnixStream};
///
/// async fn ping(s: &impl Stream) -> std::io::Result<Vec<u8>> {
///     s.send_all(b"ping").await?;
///     let mut buf = [0u8; 16];
///     let n = s.receive_some(&mut buf).await?;
///     Ok(buf[..n].to_vec())
/// }
///
/// run(async {
///     let (a, b) = UnixStream::pair()?;
///     b.send_all(b"pong").await?; // already waiting for a
///     assert_eq!(ping(&a).await?, b"pong");
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub trait Stream: SendStream + ReceiveStream {}

impl<T: SendStream + ReceiveStream> Stream for T {}

/// A stream whose sending half can be closed on its own (TCP, Unix
/// sockets): the peer sees the end of the stream while data can still flow
/// the other way.
///
/// ```
/// use trioxide::{run, BoxError, HalfCloseableStream, UnixStream};
/// run(async {
///     let (a, b) = UnixStream::pair()?;
///     a.send_all(b"request").await?;
///     HalfCloseableStream::send_eof(&a).await?; // "that was all"
///     let mut req = Vec::new();
///     while b.receive_into(&mut req).await? != 0 {}
///     assert_eq!(req, b"request");
///     b.send_all(b"response").await?; // the other direction still works
///     let mut buf = [0u8; 16];
///     let n = a.receive_some(&mut buf).await?;
///     assert_eq!(&buf[..n], b"response");
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub trait HalfCloseableStream: Stream {
    /// Closes the sending half. Further sends fail with
    /// [`ClosedResource`](crate::ClosedResource); receiving goes on. A
    /// checkpoint that uses the sending direction: during a send in another
    /// task it fails with [`BusyResource`](crate::BusyResource). A second
    /// call does nothing.
    ///
    /// ```
    /// use trioxide::{io_error_kind, run, BoxError, HalfCloseableStream, IoErrorKind, UnixStream};
    /// run(async {
    ///     let (a, b) = UnixStream::pair()?;
    ///     HalfCloseableStream::send_eof(&a).await?;
    ///     HalfCloseableStream::send_eof(&a).await?; // again: nothing happens
    ///     let e = a.send_all(b"late").await.unwrap_err();
    ///     assert_eq!(io_error_kind(&e), Some(IoErrorKind::Closed));
    ///     assert_eq!(b.receive_some(&mut [0u8; 8]).await?, 0); // the peer sees the end
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn send_eof(&self) -> impl Future<Output = io::Result<()>>;
}

/// A [`SendStream`] that can send the end of the stream as an operation of
/// its own, apart from [`close`](Resource::close): what a
/// [`StapledStream`](crate::StapledStream) needs of its sending half to be a
/// [`HalfCloseableStream`].
///
/// Closing is immediate; `send_eof` is a checkpoint that uses the sending
/// direction like a send does, so during a send it fails with
/// [`BusyResource`](crate::BusyResource). Afterwards the receiver reads what
/// was sent, then 0. A second `send_eof` does nothing.
///
/// (Trio's `StapledStream.send_eof` looks for a `send_eof` method on the
/// sending half and otherwise closes it; Rust picks at compile time, so a
/// stapled stream is half-closeable exactly when its sending half
/// implements this trait. With any other sending half, close the half
/// itself: `stapled.send_stream().close()`.)
///
/// ```
/// use trioxide::{run, BoxError, SendEof};
/// use trioxide::testing::memory_stream_one_way_pair;
///
/// run(async {
///     let (tx, rx) = memory_stream_one_way_pair();
///     tx.send_all(b"last words").await?;
///     tx.send_eof().await?;
///     let mut buf = [0u8; 16];
///     assert_eq!(rx.receive_some(&mut buf).await?, 10);
///     assert_eq!(rx.receive_some(&mut buf).await?, 0);
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub trait SendEof: SendStream {
    /// Ends the stream: the receiver reads what was sent, then 0, and
    /// further sends fail with [`ClosedResource`](crate::ClosedResource).
    ///
    /// ```
    /// use trioxide::{io_error_kind, run, BoxError, IoErrorKind, SendEof};
    /// use trioxide::testing::memory_stream_one_way_pair;
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     SendEof::send_eof(&tx).await?;
    ///     let e = tx.send_all(b"more").await.unwrap_err();
    ///     assert_eq!(io_error_kind(&e), Some(IoErrorKind::Closed));
    ///     assert_eq!(rx.receive_some(&mut [0u8; 4]).await?, 0);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn send_eof(&self) -> impl Future<Output = io::Result<()>>;
}

/// Something that accepts incoming streams (a listening socket): what
/// [`Server::serve_listeners`](crate::Server::serve_listeners) serves.
///
/// `accept` and `accept_many` are checkpoints; a second task accepting
/// while one waits gets [`BusyResource`](crate::BusyResource), and closing
/// the listener wakes a waiting `accept` with
/// [`ClosedResource`](crate::ClosedResource).
///
/// ```
/// use trioxide::{run, BoxError, Listener, SendStream, TcpListener, TcpStream};
///
/// // Greets the next client of any kind of listener.
/// async fn greet_one<L: Listener>(listener: &L) -> std::io::Result<()> {
///     let stream = listener.accept().await?;
///     stream.send_all(b"hello").await
/// }
///
/// run(async {
///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
///     let client = TcpStream::connect(listener.local_addr()?).await?;
///     greet_one(&listener).await?;
///     let mut buf = [0u8; 8];
///     let n = client.receive_some(&mut buf).await?;
///     assert_eq!(&buf[..n], b"hello");
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub trait Listener: Resource {
    /// The kind of stream accepted.
    type Stream: Stream;

    /// Waits for the next incoming connection. A checkpoint.
    ///
    /// ```
    /// use trioxide::{run, BoxError, Listener, UnixListener, UnixStream};
    /// run(async {
    ///     let dir = std::env::temp_dir().join(format!("trioxide-doc-accept-{}", std::process::id()));
    ///     std::fs::create_dir_all(&dir)?;
    ///     let path = dir.join("sock");
    ///     let _ = std::fs::remove_file(&path);
    ///     let listener = UnixListener::bind(&path)?;
    ///     let client = UnixStream::connect(&path).await?;
    ///     let server_side = Listener::accept(&listener).await?;
    ///     client.send_all(b"hi").await?;
    ///     let mut buf = [0u8; 2];
    ///     assert_eq!(server_side.receive_some(&mut buf).await?, 2);
    ///     std::fs::remove_dir_all(&dir)?;
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn accept(&self) -> impl Future<Output = io::Result<Self::Stream>>;

    /// Waits for connections and appends every one already queued, up to
    /// `max`, to `out`; returns how many. A checkpoint. The default accepts
    /// one; listeners that can drain their queue in one wake-up (TCP)
    /// override it, and [`serve_listeners`](crate::serve_listeners) uses it.
    ///
    /// ```
    /// use trioxide::{run, BoxError, Listener, TcpListener, TcpStream};
    /// run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    ///     let addr = listener.local_addr()?;
    ///     let _clients = (TcpStream::connect(addr).await?, TcpStream::connect(addr).await?);
    ///     let mut accepted = Vec::new();
    ///     while accepted.len() < 2 {
    ///         listener.accept_many(&mut accepted, 64).await?; // both at once, usually
    ///     }
    ///     assert_eq!(accepted.len(), 2);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn accept_many(&self, out: &mut Vec<Self::Stream>, max: usize) -> impl Future<Output = io::Result<usize>> {
        let _ = max;
        async move {
            out.push(self.accept().await?);
            Ok(1)
        }
    }

    /// The peer of an accepted stream, for log lines, if the kind of stream
    /// has an address worth showing (TCP: the client's address and port).
    ///
    /// ```
    /// use trioxide::{run, BoxError, Listener, TcpListener, TcpStream};
    /// run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let stream = Listener::accept(&listener).await?;
    ///     assert_eq!(TcpListener::peer_of(&stream), Some(client.local_addr()?));
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn peer_of(stream: &Self::Stream) -> Option<std::net::SocketAddr> {
        let _ = stream;
        None
    }
}
