//! `hyper::rt::Read` and `hyper::rt::Write` over the poll layer
//! ([`PollReceive`], [`PollSend`]): for [`TcpStream`] and [`UnixStream`]
//! directly, and for any other stream through [`HyperIo`].

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use ::hyper::rt::{Read, ReadBufCursor, Write};

use crate::net::tcp::TcpStream;
use crate::net::unix::UnixStream;
use crate::stream::poll::{PollReceive, PollSend};

/// Receives into hyper's cursor: at most `buf.remaining()` bytes, as one
/// [`PollReceive::poll_receive`].
fn poll_read<T: PollReceive + ?Sized>(
    stream: &T,
    cx: &mut Context<'_>,
    mut buf: ReadBufCursor<'_>,
) -> Poll<io::Result<()>> {
    // A safe `PollReceive` takes initialised memory: zero the unfilled part.
    // hyper marks none of it initialised on each call, so this is a memset
    // per read; our sockets skip it (`poll_read_socket`), other streams
    // (TLS, memory) pay it.
    let dst = buf.initialize_unfilled();
    let len = dst.len();
    let n = ready!(stream.poll_receive(cx, dst))?;
    if n > len {
        // `PollReceive` is a safe trait: a wrong count must not become a
        // claim that bytes beyond the buffer are filled.
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "PollReceive::poll_receive reported more bytes than the buffer holds",
        )));
    }
    // SAFETY: `initialize_unfilled` initialised the whole unfilled part,
    // `len` bytes, and `n <= len` was just checked, so the `n` bytes the
    // cursor advances over are initialised (and now hold what was received).
    unsafe { buf.advance(n) };
    Poll::Ready(Ok(()))
}

/// Implements hyper's `Read` and `Write` for a type (or a generic wrapper)
/// that has `poll_receive`/`poll_send` through `$get`.
/// Reads a socket straight into the unfilled part of hyper's buffer. hyper
/// (1.12) hands each `poll_read` a fresh cursor that marks nothing
/// initialised, so [`poll_read`]'s zeroing would clear the whole spare
/// buffer on every call, `Pending` ones included: 86 % of an HTTP/1
/// request's instructions in `benches/hyper.sh`'s `instr` scenario.
fn poll_read_socket(
    cx: &mut Context<'_>,
    mut buf: ReadBufCursor<'_>,
    receive: impl FnOnce(&mut Context<'_>, &mut [std::mem::MaybeUninit<u8>]) -> Poll<io::Result<usize>>,
) -> Poll<io::Result<()>> {
    // SAFETY: `as_mut` lends the unfilled part, which may be uninitialised;
    // `receive` (a `read(2)` into it) never de-initialises a byte.
    let dst = unsafe { buf.as_mut() };
    let n = ready!(receive(cx, dst))?;
    // SAFETY: `receive` is our socket read (`SocketStream::
    // poll_receive_uninit`), which initialised the first `n` bytes of
    // `dst`, with `n <= dst.len()` (read(2) writes at most what it is given).
    unsafe { buf.advance(n) };
    Poll::Ready(Ok(()))
}

macro_rules! impl_hyper_io {
    (socket $t:ty) => {
        impl Read for $t {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
                let this = &*self;
                poll_read_socket(cx, buf, |cx, dst| this.poll_receive_uninit(cx, dst))
            }
        }
        impl_hyper_io!(@write [] $t, s => s);
    };
    ([$($gen:tt)*] $t:ty, $this:ident => $get:expr) => {
        impl<$($gen)*> Read for $t {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
                let $this = &*self;
                poll_read($get, cx, buf)
            }
        }
        impl_hyper_io!(@write [$($gen)*] $t, $this => $get);
    };
    (@write [$($gen:tt)*] $t:ty, $this:ident => $get:expr) => {

        impl<$($gen)*> Write for $t {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                let $this = &*self;
                PollSend::poll_send($get, cx, buf)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                let $this = &*self;
                PollSend::poll_flush($get, cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                let $this = &*self;
                PollSend::poll_send_eof($get, cx)
            }

            fn is_write_vectored(&self) -> bool {
                let $this = self;
                PollSend::is_send_vectored($get)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                let $this = &*self;
                PollSend::poll_send_vectored($get, cx, bufs)
            }
        }
    };
}

impl_hyper_io!(socket TcpStream);
impl_hyper_io!(socket UnixStream);
impl_hyper_io!([T: PollReceive + PollSend] HyperIo<T>, s => &s.inner);

/// Any trioxide stream with the poll layer ([`PollReceive`] +
/// [`PollSend`]: a TLS stream, a stream of your own) as hyper's I/O
/// (`hyper::rt::Read` + `hyper::rt::Write`). [`TcpStream`] and
/// [`UnixStream`] need no wrapper: they are hyper I/O themselves.
///
/// Each hyper call is one poll-level call: `poll_read` is
/// [`poll_receive`](PollReceive::poll_receive), `poll_write`
/// [`poll_send`](PollSend::poll_send), `poll_write_vectored`
/// [`poll_send_vectored`](PollSend::poll_send_vectored), `poll_flush`
/// [`poll_flush`](PollSend::poll_flush) and `poll_shutdown`
/// [`poll_send_eof`](PollSend::poll_send_eof), so hyper sees a cancelled
/// task as an `io::Error` carrying [`Cancelled`](crate::Cancelled), which
/// a cancel scope still recognises after hyper wrapped it.
///
/// ```
/// use std::future::poll_fn;
/// use std::pin::Pin;
/// use trioxide::hyper::HyperIo;
/// use trioxide::{run, BoxError, UnixStream};
/// run(async {
///     let (a, b) = UnixStream::pair()?;
///     let mut a = HyperIo::new(a);
///     let n = poll_fn(|cx| hyper::rt::Write::poll_write(Pin::new(&mut a), cx, b"GET / HTTP/1.1\r\n")).await?;
///     assert_eq!(n, 16);
///     let mut got = Vec::new();
///     b.receive_into(&mut got).await?;
///     assert_eq!(got, b"GET / HTTP/1.1\r\n");
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct HyperIo<T> {
    inner: T,
}

impl<T> HyperIo<T> {
    /// Wraps `stream` for hyper.
    ///
    /// ```
    /// use trioxide::hyper::HyperIo;
    /// use trioxide::{run, BoxError, UnixStream};
    /// run(async {
    ///     let (a, _b) = UnixStream::pair()?;
    ///     let io = HyperIo::new(a); // hand it to hyper's `serve_connection` or `handshake`
    ///     let _a: UnixStream = io.into_inner();
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn new(stream: T) -> HyperIo<T> {
        HyperIo { inner: stream }
    }

    /// The wrapped stream.
    ///
    /// ```
    /// use trioxide::hyper::HyperIo;
    /// use trioxide::{run, BoxError, UnixStream};
    /// run(async {
    ///     let (a, b) = UnixStream::pair()?;
    ///     let io = HyperIo::new(a);
    ///     io.get_ref().send_all(b"direct").await?; // the stream's own API
    ///     let mut got = Vec::new();
    ///     b.receive_into(&mut got).await?;
    ///     assert_eq!(got, b"direct");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The wrapped stream, mutably.
    ///
    /// ```
    /// use trioxide::hyper::HyperIo;
    /// let mut io = HyperIo::new(vec![1u8]);
    /// io.get_mut().push(2);
    /// assert_eq!(io.into_inner(), [1, 2]);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Unwraps the stream.
    ///
    /// ```
    /// use trioxide::hyper::HyperIo;
    /// let io = HyperIo::new("any stream");
    /// assert_eq!(io.into_inner(), "any stream");
    /// ```
    pub fn into_inner(self) -> T {
        self.inner
    }
}
