//! The poll-level layer of byte streams: one `poll_*` call per attempt, no
//! future kept between calls, for code that is written against poll-based
//! traits (`futures-io`'s `AsyncRead`/`AsyncWrite`, hyper's `rt::Read`/
//! `rt::Write`, TLS engines).
//!
//! [`PollReceive`]'s docs list which checkpoint rules hold at this level.
//!
//! Every byte stream of trioxide implements these traits, and with the
//! `futures-io` feature (on by default) `futures_io::AsyncRead`/
//! `AsyncWrite` on top of them, for `T` and `&T` (src/stream/futures_io.rs).

use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use crate::stream::Resource;

/// Receiving at the poll level: the layer under `futures-io`'s `AsyncRead`
/// and hyper's `rt::Read`.
///
/// The poll layer stands on the same cached readiness as the `async fn` layer
/// ([`ReceiveStream`](crate::ReceiveStream), [`SendStream`](crate::SendStream)),
/// so it costs the same syscalls and never an extra `epoll_ctl`. What it
/// keeps of the checkpoint rules (DESIGN.md, "The poll layer"):
///
/// * **Cancel point: kept.** Every poll reports cancellation of the
///   calling task's scope before it touches the stream, as an
///   [`io::Error`] whose inner error is [`Cancelled`](crate::Cancelled),
///   so a scope catches it after `?` has carried it through hyper or any
///   other library (the "source is `Cancelled`" rule). A cancelled
///   `poll_receive` has consumed nothing.
/// * **Schedule point: on a budget, before instead of after.** A poll
///   cannot hand back data and yield in one call, so it yields *before*
///   the attempt and attempts on the next poll. It does so on the memory
///   channels' budget, not at every operation: while another task is
///   runnable, at every [`CHANNEL_BUDGET`](crate::channel::CHANNEL_BUDGET)-th
///   poll-level operation of a step (poll-level callers such as hyper make
///   several calls per logical operation; yielding at each doubled hyper's
///   steps per request). A poll that suspended on readiness has yielded
///   already.
/// * **One task per direction (I1): partly.** A poll while an `async fn`
///   operation holds the direction gets [`BusyResource`](crate::BusyResource).
///   Two poll-level users of one direction are not told apart: a poll
///   interface has no end of operation at which a claim could be released,
///   so, as `futures-io` documents, only the last poller is woken.
/// * **Partial sends (I3): the caller's.** `poll_send` reports how many
///   bytes it took, as `write(2)` does, so the caller always knows what the
///   peer may have got and a cancelled poll never breaks the stream. Only
///   the `async fn` [`send_all`](crate::SendStream::send_all), which hides
///   the count, marks a stream broken.
///
/// ```
/// use std::future::poll_fn;
/// use trioxide::{run, BoxError, PollReceive};
/// use trioxide::testing::memory_stream_one_way_pair;
/// run(async {
///     let (tx, rx) = memory_stream_one_way_pair();
///     tx.send_all(b"polled").await?;
///     let mut buf = [0u8; 16];
///     let n = poll_fn(|cx| rx.poll_receive(cx, &mut buf)).await?;
///     assert_eq!(&buf[..n], b"polled");
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub trait PollReceive: Resource {
    /// Receives at least one byte into `buf`, or returns `Pending` and
    /// wakes `cx` when it may succeed. `Ok(0)` is the end of the stream
    /// (or an empty `buf`, as for `std::io::Read`). A cancelled caller gets
    /// an error carrying [`Cancelled`](crate::Cancelled) and nothing is
    /// consumed.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use trioxide::{run, BoxError, PollReceive};
    /// use trioxide::testing::memory_stream_one_way_pair;
    /// run(async {
    ///     let (tx, rx) = memory_stream_one_way_pair();
    ///     tx.close(); // the end of the stream
    ///     let n = poll_fn(|cx| rx.poll_receive(cx, &mut [0u8; 8])).await?;
    ///     assert_eq!(n, 0);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn poll_receive(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
}

/// Sending at the poll level: the layer under `futures-io`'s `AsyncWrite`
/// and hyper's `rt::Write`. [`PollReceive`]'s docs list which checkpoint
/// rules hold here.
///
/// ```
/// use std::future::poll_fn;
/// use trioxide::{run, BoxError, PollSend};
/// use trioxide::testing::memory_stream_one_way_pair;
/// run(async {
///     let (tx, rx) = memory_stream_one_way_pair();
///     let n = poll_fn(|cx| tx.poll_send(cx, b"polled")).await?;
///     assert_eq!(n, 6);
///     let mut buf = [0u8; 16];
///     let got = rx.receive_some(&mut buf).await?;
///     assert_eq!(&buf[..got], b"polled");
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub trait PollSend: Resource {
    /// Sends a prefix of `data` (at least one byte unless `data` is empty)
    /// and returns its length, or returns `Pending` and wakes `cx` when it
    /// may succeed. A cancelled caller gets an error carrying
    /// [`Cancelled`](crate::Cancelled) and nothing is sent.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use trioxide::{run, BoxError, PollSend};
    /// use trioxide::testing::memory_stream_one_way_pair;
    /// run(async {
    ///     let (tx, _rx) = memory_stream_one_way_pair();
    ///     let mut rest: &[u8] = b"all of it";
    ///     while !rest.is_empty() {
    ///         let n = poll_fn(|cx| tx.poll_send(cx, rest)).await?;
    ///         rest = &rest[n..]; // the caller keeps the count
    ///     }
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn poll_send(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>>;

    /// Sends a prefix of the concatenation of `bufs` in one call where the
    /// stream can (`writev` on sockets; see
    /// [`is_send_vectored`](Self::is_send_vectored)); by default, a prefix
    /// of the first non-empty buffer.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use std::io::IoSlice;
    /// use trioxide::{run, BoxError, PollSend, UnixStream};
    /// run(async {
    ///     let (a, b) = UnixStream::pair()?;
    ///     let bufs = [IoSlice::new(b"head "), IoSlice::new(b"body")];
    ///     let n = poll_fn(|cx| a.poll_send_vectored(cx, &bufs)).await?;
    ///     assert_eq!(n, 9); // one writev
    ///     let mut got = Vec::new();
    ///     b.receive_into(&mut got).await?;
    ///     assert_eq!(got, b"head body");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn poll_send_vectored(&self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &**b);
        self.poll_send(cx, first)
    }

    /// Whether [`poll_send_vectored`](Self::poll_send_vectored) sends from
    /// several buffers in one call (so a caller need not copy them into
    /// one first).
    ///
    /// ```
    /// use trioxide::{run, BoxError, PollSend, UnixStream};
    /// use trioxide::testing::memory_stream_one_way_pair;
    /// run(async {
    ///     let (a, _b) = UnixStream::pair()?;
    ///     assert!(a.is_send_vectored()); // writev
    ///     let (tx, _rx) = memory_stream_one_way_pair();
    ///     assert!(!tx.is_send_vectored());
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn is_send_vectored(&self) -> bool {
        false
    }

    /// Pushes out whatever the stream buffers itself (a TLS record, say).
    /// Sockets and memory streams buffer nothing, so it is ready at once.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use trioxide::{run, BoxError, PollSend};
    /// use trioxide::testing::memory_stream_one_way_pair;
    /// run(async {
    ///     let (tx, _rx) = memory_stream_one_way_pair();
    ///     poll_fn(|cx| tx.poll_flush(cx)).await?;
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = cx;
        Poll::Ready(Ok(()))
    }

    /// Ends the sending direction after what was sent: a half-close
    /// (`shutdown(SHUT_WR)`, TLS `close_notify`) where the stream has one,
    /// otherwise a close. A second call does nothing. This is what
    /// `futures-io`'s `poll_close` and hyper's `poll_shutdown` do.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use trioxide::{run, BoxError, PollSend, UnixStream};
    /// run(async {
    ///     let (a, b) = UnixStream::pair()?;
    ///     poll_fn(|cx| a.poll_send_eof(cx)).await?;
    ///     assert_eq!(b.receive_some(&mut [0u8; 8]).await?, 0); // the peer sees the end
    ///     a.send_all(b"x").await.unwrap_err(); // sending is over
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn poll_send_eof(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}
