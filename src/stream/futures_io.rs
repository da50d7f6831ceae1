//! `futures-io`'s [`AsyncRead`], [`AsyncWrite`] and [`AsyncBufRead`] on
//! trioxide's byte streams (the `futures-io` feature, on by default), so
//! futures-util's combinators (`read_exact`, `write_all`, `copy`,
//! `split`, `BufReader`, ...) and libraries written against these traits
//! (async-tungstenite, codecs, TLS wrappers) run over trioxide.
//!
//! Every impl is a forwarding of the poll-level layer
//! ([`PollReceive`], [`PollSend`]; see [its rules](super::poll)):
//!
//! | `futures-io` | trioxide |
//! | --- | --- |
//! | `poll_read` | `poll_receive` |
//! | `poll_write` | `poll_send` |
//! | `poll_write_vectored` | `poll_send_vectored` (one `writev` on sockets and pipes) |
//! | `poll_flush` | `poll_flush` |
//! | `poll_close` | `poll_flush`, then `poll_send_eof`: a half-close where the stream has one (sockets, the in-memory pairs, TLS's `close_notify`), a close otherwise (pipes) |
//! | `poll_fill_buf`/`consume` | the buffer of [`BufferedReceiveStream`] |
//!
//! So the checkpoint rules hold through these traits: a cancelled task gets
//! an `io::Error` whose inner error is [`Cancelled`](crate::Cancelled)
//! (a cancel scope catches it after any library's `?`), and a read or write
//! that always finds its data ready still lets other tasks run.
//!
//! Both `T` and `&T` implement the traits: the poll methods take `&self`,
//! so two tasks can read and write one stream at once through two shared
//! references, as with std's `&TcpStream`. A second reader (or writer) of
//! the same direction is not told apart at the poll level (only the last
//! poller is woken, as `futures-io` documents); an `async fn` operation
//! holding the direction makes a poll fail with
//! [`BusyResource`](crate::BusyResource).
//!
//! The impls are written once, by the macros below, for: [`TcpStream`],
//! [`UnixStream`], [`StapledStream`] (so the two-way memory and lockstep
//! pairs), the split halves [`ReceiveHalf`]/[`SendHalf`] (so
//! `TcpReceiveHalf` and friends), the one-way memory and lockstep ends,
//! the process pipes, [`BufferedReceiveStream`] and, with the `rustls`
//! feature, [`TlsStream`](crate::tls::TlsStream) (so futures-util's
//! combinators run over TLS, and `poll_close` sends `close_notify`). A
//! `TlsStream` keeps the records it makes until `poll_flush` (or until
//! rustls's 64 KiB buffer is full), as a `BufWriter` does: flush before
//! waiting for an answer.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_io::{AsyncBufRead, AsyncRead, AsyncWrite};

use crate::process::{PipeReceiveStream, PipeSendStream};
use crate::stream::buffered::BufferedReceiveStream;
use crate::stream::poll::{PollReceive, PollSend};
use crate::stream::split::{ReceiveHalf, SendHalf};
use crate::stream::stapled::StapledStream;
use crate::stream::{ReceiveStream, Stream};
use crate::testing::{LockstepReceiveStream, LockstepSendStream, MemoryReceiveStream, MemorySendStream};
use crate::{TcpStream, UnixStream};

/// `AsyncRead` for `$t` and `&$t` (generic parameters in brackets), when
/// `$t` is a `PollReceive`.
macro_rules! async_read {
    ([$($g:tt)*] $t:ty) => {
        impl<$($g)*> AsyncRead for $t
        where
            $t: PollReceive,
        {
            #[inline]
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
                PollReceive::poll_receive(&*self, cx, buf)
            }
        }

        impl<'a, $($g)*> AsyncRead for &'a $t
        where
            $t: PollReceive,
        {
            #[inline]
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
                PollReceive::poll_receive(&**self, cx, buf)
            }
        }
    };
}

/// `AsyncWrite` for `$t` and `&$t` (generic parameters in brackets), when
/// `$t` is a `PollSend`.
macro_rules! async_write {
    ([$($g:tt)*] $t:ty) => {
        impl<$($g)*> AsyncWrite for $t
        where
            $t: PollSend,
        {
            #[inline]
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                PollSend::poll_send(&*self, cx, buf)
            }

            #[inline]
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                PollSend::poll_send_vectored(&*self, cx, bufs)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                PollSend::poll_flush(&*self, cx)
            }

            fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                close(&*self, cx)
            }
        }

        impl<'a, $($g)*> AsyncWrite for &'a $t
        where
            $t: PollSend,
        {
            #[inline]
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                PollSend::poll_send(&**self, cx, buf)
            }

            #[inline]
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                PollSend::poll_send_vectored(&**self, cx, bufs)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                PollSend::poll_flush(&**self, cx)
            }

            fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                close(&**self, cx)
            }
        }
    };
}

/// `poll_close`: whatever the stream buffers goes out, then the end of the
/// sending direction.
fn close<T: PollSend + ?Sized>(stream: &T, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    ready!(stream.poll_flush(cx))?;
    stream.poll_send_eof(cx)
}

async_read!([] TcpStream);
async_write!([] TcpStream);
async_read!([] UnixStream);
async_write!([] UnixStream);
async_read!([S, R] StapledStream<S, R>);
async_write!([S, R] StapledStream<S, R>);
async_read!([S: Stream] ReceiveHalf<S>);
async_write!([S: Stream] SendHalf<S>);
async_read!([] MemoryReceiveStream);
async_write!([] MemorySendStream);
async_read!([] LockstepReceiveStream);
async_write!([] LockstepSendStream);
async_read!([] PipeReceiveStream);
async_write!([] PipeSendStream);
async_read!([R] BufferedReceiveStream<R>);
#[cfg(feature = "rustls")]
async_read!([S] crate::tls::TlsStream<S>);
#[cfg(feature = "rustls")]
async_write!([S] crate::tls::TlsStream<S>);

/// Reading through the buffer: `poll_fill_buf` lends the buffered bytes
/// (with the poll layer's checkpoint) or receives once into the buffer;
/// `consume` drops bytes off its front.
impl<R: ReceiveStream + PollReceive + Unpin> AsyncBufRead for BufferedReceiveStream<R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        self.get_mut().poll_fill_buf_mut(cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().consume_mut(amt);
    }
}
