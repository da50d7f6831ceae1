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
pub(crate) mod split;
pub(crate) mod stapled;

use std::future::Future;
use std::io;

/// Something that can be closed. Closing is immediate and idempotent; tasks
/// waiting on the resource wake with [`ClosedResource`](crate::ClosedResource).
pub trait Resource {
    /// Closes the resource now. Dropping it closes it too; `close` exists
    /// for resources shared through `Rc` between tasks.
    fn close(&self);
}

/// The sending half of a byte stream.
pub trait SendStream: Resource {
    /// Sends all of `data`, waiting for buffer space as needed.
    ///
    /// If cancelled part-way, the peer has received an unknown prefix of
    /// `data`, so the stream refuses further sends with
    /// [`BrokenResource`](crate::BrokenResource) (rule I3).
    fn send_all(&self, data: &[u8]) -> impl Future<Output = io::Result<()>>;

    /// Waits until a `send_all` would probably not block.
    fn wait_send_all_might_not_block(&self) -> impl Future<Output = io::Result<()>>;
}

/// The receiving half of a byte stream.
pub trait ReceiveStream: Resource {
    /// Receives at least one byte into `buf` and returns how many, or 0 at
    /// the end of the stream. A cancelled receive has received nothing, so
    /// no byte is ever lost (rule I3). An empty `buf` is an `InvalidInput`
    /// error (0 means end of stream).
    fn receive_some(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>>;
}

/// A two-way byte stream (Trio's `Stream`).
pub trait Stream: SendStream + ReceiveStream {}

impl<T: SendStream + ReceiveStream> Stream for T {}

/// A stream whose sending half can be closed on its own (TCP, Unix
/// sockets): the peer sees the end of the stream while data can still flow
/// the other way.
pub trait HalfCloseableStream: Stream {
    /// Closes the sending half. Further sends fail with
    /// [`ClosedResource`](crate::ClosedResource); receiving goes on.
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
    fn send_eof(&self) -> impl Future<Output = io::Result<()>>;
}

/// Something that accepts incoming streams (a listening socket).
pub trait Listener: Resource {
    /// The kind of stream accepted.
    type Stream: Stream;

    /// Waits for the next incoming connection.
    fn accept(&self) -> impl Future<Output = io::Result<Self::Stream>>;

    /// Waits for connections and appends every one already queued, up to
    /// `max`, to `out`; returns how many. A checkpoint. The default accepts
    /// one; listeners that can drain their queue in one wake-up (TCP)
    /// override it, and [`serve_listeners`](crate::serve_listeners) uses it.
    fn accept_many(&self, out: &mut Vec<Self::Stream>, max: usize) -> impl Future<Output = io::Result<usize>> {
        let _ = max;
        async move {
            out.push(self.accept().await?);
            Ok(1)
        }
    }

    /// The peer of an accepted stream, for log lines, if the kind of stream
    /// has an address worth showing (TCP: the client's address and port).
    fn peer_of(stream: &Self::Stream) -> Option<std::net::SocketAddr> {
        let _ = stream;
        None
    }
}
