//! The operations every stream socket shares (TCP and Unix): receive,
//! send, vectored send, `sendfile`, half-close, close. `TcpStream` and
//! `UnixStream` wrap a [`SocketStream`] and add what is theirs.

use crate::kernel::sys::syscall;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::task::{Context, Poll};

use crate::kernel::budget::after_io;
use crate::kernel::io::readiness::{Dir, Source};
use crate::kernel::Core;
use crate::Cancelled;

/// What [`SocketStream::receive_into`] reserves when the vector has no
/// spare capacity: 8 KiB, the size `std::io::copy` uses.
const DEFAULT_RECEIVE: usize = 8 * 1024;

/// Most buffers one `writev` takes: Linux's `UIO_MAXIOV` (`IOV_MAX`).
const IOV_MAX: usize = 1024;

/// Most bytes one `sendfile` call moves: Linux caps every call at
/// `0x7ffff000` (`MAX_RW_COUNT`), so asking for more only adds a loop there.
const SENDFILE_CHUNK: u64 = 0x7fff_f000;

/// A connected stream socket with cached readiness.
pub(crate) struct SocketStream<S: AsRawFd> {
    pub(crate) source: Source<S>,
}

/// What a stream socket must offer: reads and writes through `&S`, and a
/// half-close.
pub(crate) trait StreamIo: AsRawFd {
    /// The socket's pending error (`SO_ERROR`), taken.
    fn take_error(&self) -> io::Result<Option<io::Error>>;
    /// Whether the socket has a peer yet (a non-blocking connect is done).
    fn is_connected(&self) -> io::Result<bool>;
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn write_some(&self, buf: &[u8]) -> io::Result<usize>;
    fn write_vectored_some(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    fn shutdown_write(&self) -> io::Result<()>;
}

macro_rules! stream_io {
    ($t:ty) => {
        impl StreamIo for $t {
            fn take_error(&self) -> io::Result<Option<io::Error>> {
                <$t>::take_error(self)
            }
            fn is_connected(&self) -> io::Result<bool> {
                match self.peer_addr() {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                    Err(e) => Err(e),
                }
            }
            #[inline]
            fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
                (&*self).read(buf)
            }
            #[inline]
            fn write_some(&self, buf: &[u8]) -> io::Result<usize> {
                (&*self).write(buf)
            }
            #[inline]
            fn write_vectored_some(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                (&*self).write_vectored(bufs)
            }
            fn shutdown_write(&self) -> io::Result<()> {
                self.shutdown(Shutdown::Write)
            }
        }
    };
}

stream_io!(mio::net::TcpStream);
stream_io!(mio::net::UnixStream);

impl<S: StreamIo> SocketStream<S> {
    pub(crate) fn new(io: S) -> Self {
        SocketStream { source: Source::new(io) }
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.source.fd()
    }

    /// Waits for a non-blocking `connect` to finish: the socket turns
    /// writable, then `SO_ERROR` says how it went. The optimistic initial
    /// readiness must not be trusted for that, so it is cleared first.
    pub(crate) async fn finish_connect(&self) -> io::Result<()> {
        let source = &self.source;
        source.state.clear(Dir::Write);
        loop {
            source.ready(Dir::Write).await?;
            if let Some(e) = source.with(|s| s.take_error())? {
                return Err(e);
            }
            if source.with(|s| s.is_connected())? {
                return Ok(());
            }
            // Spurious readiness: not connected yet.
            source.state.clear(Dir::Write);
        }
    }

    pub(crate) async fn receive_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "receive_some needs a non-empty buffer"));
        }
        let want = buf.len();
        self.source
            .op(Dir::Read, |s| {
                let n = s.read_some(buf)?;
                // A short read drained the socket: the next receive waits
                // for an event without trying a syscall that would refuse.
                // (Not at end of stream: that edge has fired for good.)
                Ok((n, n > 0 && n < want))
            })
            .await
    }

    pub(crate) async fn receive_into(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.source.read_into_spare(buf, DEFAULT_RECEIVE).await
    }

    pub(crate) async fn send_all(&self, data: &[u8]) -> io::Result<()> {
        self.source
            .send_loop(data.len() as u64, |s, sent| {
                // Re-slicing is O(1): no copy of what is left.
                let rest = &data[sent as usize..];
                let n = s.write_some(rest)?;
                Ok((n, n < rest.len()))
            })
            .await
            .map(drop)
    }

    pub(crate) async fn send_all_vectored(&self, chunks: &[&[u8]]) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = chunks.iter().filter(|c| !c.is_empty()).map(|c| IoSlice::new(c)).collect();
        let total: u64 = slices.iter().map(|s| s.len() as u64).sum();
        // `advance_slices` drops what was sent from the front and shortens
        // the first partly sent buffer in place: each byte is passed over
        // once, however many calls the send takes.
        let mut rest: &mut [IoSlice<'_>] = &mut slices;
        self.source
            .send_loop(total, |s, _| {
                let batch = &rest[..rest.len().min(IOV_MAX)];
                let asked: usize = batch.iter().map(|b| b.len()).sum();
                let n = s.write_vectored_some(batch)?;
                IoSlice::advance_slices(&mut rest, n);
                Ok((n, n < asked))
            })
            .await
            .map(drop)
    }

    pub(crate) async fn send_file(&self, file: &std::fs::File, offset: u64, count: u64) -> io::Result<u64> {
        let in_fd = file.as_raw_fd();
        self.source
            .send_loop(count, |s, sent| {
                let mut off = libc::off_t::try_from(offset + sent)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
                let want = (count - sent).min(SENDFILE_CHUNK) as usize;
                // SAFETY: both fds are open for the duration of the call (the
                // socket's is borrowed through `s`, the file's through
                // `file`), and `off` is a valid, exclusively borrowed off_t.
                let n = syscall!(sendfile(s.as_raw_fd(), in_fd, &mut off, want))?;
                // 0 means the file ended before `count` bytes. A short
                // transfer may mean the file ended too, not that the socket
                // is full, so it never clears readiness: the next call tells.
                Ok((n as usize, false))
            })
            .await
    }

    pub(crate) async fn send_eof(&self) -> io::Result<()> {
        let _guard = self.source.state.begin(Dir::Write)?;
        if Core::current().is_cancelled() {
            return Err(Cancelled.into());
        }
        if self.source.state.check_send().is_err() {
            // Already half-closed (or broken): a second send_eof does nothing.
            after_io().await;
            return Ok(());
        }
        self.source.with(|s| s.shutdown_write())?;
        self.source.state.mark_send_closed();
        after_io().await;
        Ok(())
    }

    pub(crate) async fn wait_send_all_might_not_block(&self) -> io::Result<()> {
        let _guard = self.source.state.begin(Dir::Write)?;
        if !self.source.ready(Dir::Write).await? {
            after_io().await;
        }
        Ok(())
    }

    pub(crate) fn close(&self) {
        self.source.close();
    }

    /// The poll-level receive (`PollReceive`); see `Source::poll_op`.
    pub(crate) fn poll_receive(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            // std::io::Read's convention; the caller knows it asked for 0.
            return Poll::Ready(self.source.check_poll_direction(Dir::Read).map(|()| 0));
        }
        let want = buf.len();
        self.source.poll_op(Dir::Read, cx, |s| {
            let n = s.read_some(buf)?;
            Ok((n, n > 0 && n < want))
        })
    }

    /// `poll_receive` into memory that may be uninitialised (hyper's read
    /// buffer): one `read(2)` straight into it, so nothing is zeroed first.
    /// On `Ready(Ok(n))` the first `n` bytes of `buf` are initialised, and
    /// `n <= buf.len()` (the kernel never writes more than it is given).
    pub(crate) fn poll_receive_uninit(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [std::mem::MaybeUninit<u8>],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(self.source.check_poll_direction(Dir::Read).map(|()| 0));
        }
        let want = buf.len();
        self.source.poll_op(Dir::Read, cx, |s| {
            // SAFETY: `buf` is writable memory of `want` bytes, borrowed
            // exclusively for the call; read(2) writes at most `want` bytes
            // there and never reads it, so its being uninitialised is fine.
            // The fd is open: `poll_op` lends `s` only while the source is
            // not closed.
            let n = syscall!(read(s.as_raw_fd(), buf.as_mut_ptr().cast(), want))? as usize;
            Ok((n, n > 0 && n < want))
        })
    }

    /// The poll-level send (`PollSend`): one `write`, its count returned.
    pub(crate) fn poll_send(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if let Err(e) = self.source.state.check_send() {
            return Poll::Ready(Err(e));
        }
        if data.is_empty() {
            return Poll::Ready(self.source.check_poll_direction(Dir::Write).map(|()| 0));
        }
        self.source.poll_op(Dir::Write, cx, |s| {
            let n = s.write_some(data)?;
            Ok((n, n < data.len()))
        })
    }

    /// The poll-level vectored send: one `writev` of at most `IOV_MAX`
    /// buffers.
    pub(crate) fn poll_send_vectored(&self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        if let Err(e) = self.source.state.check_send() {
            return Poll::Ready(Err(e));
        }
        let bufs = &bufs[..bufs.len().min(IOV_MAX)];
        let asked: usize = bufs.iter().map(|b| b.len()).sum();
        if asked == 0 {
            return Poll::Ready(self.source.check_poll_direction(Dir::Write).map(|()| 0));
        }
        self.source.poll_op(Dir::Write, cx, |s| {
            let n = s.write_vectored_some(bufs)?;
            Ok((n, n < asked))
        })
    }

    /// The poll-level `send_eof`: `shutdown(SHUT_WR)` once; never waits.
    pub(crate) fn poll_send_eof(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.source.check_poll_direction(Dir::Write) {
            return Poll::Ready(Err(e));
        }
        if Core::current_for("poll_send_eof").is_cancelled() {
            return Poll::Ready(Err(Cancelled.into()));
        }
        if self.source.state.check_send().is_ok() {
            if let Err(e) = self.source.with(|s| s.shutdown_write()) {
                return Poll::Ready(Err(e));
            }
            self.source.state.mark_send_closed();
        }
        Poll::Ready(Ok(()))
    }
}

/// Implements the stream traits (and `AsRawFd`) for a wrapper of a
/// [`SocketStream`] in a field named `inner`.
macro_rules! impl_stream_traits {
    ($t:ty) => {
        impl std::os::fd::AsRawFd for $t {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.inner.fd()
            }
        }

        impl $crate::stream::Resource for $t {
            fn close(&self) {
                self.inner.close();
            }
        }

        impl $crate::stream::SendStream for $t {
            fn send_all(&self, data: &[u8]) -> impl std::future::Future<Output = std::io::Result<()>> {
                self.inner.send_all(data)
            }

            fn wait_send_all_might_not_block(&self) -> impl std::future::Future<Output = std::io::Result<()>> {
                self.inner.wait_send_all_might_not_block()
            }
        }

        impl $crate::stream::ReceiveStream for $t {
            fn receive_some(&self, buf: &mut [u8]) -> impl std::future::Future<Output = std::io::Result<usize>> {
                self.inner.receive_some(buf)
            }
        }

        impl $crate::stream::poll::PollReceive for $t {
            #[inline]
            fn poll_receive(
                &self,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.inner.poll_receive(cx, buf)
            }
        }

        impl $crate::stream::poll::PollSend for $t {
            #[inline]
            fn poll_send(
                &self,
                cx: &mut std::task::Context<'_>,
                data: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.inner.poll_send(cx, data)
            }

            #[inline]
            fn poll_send_vectored(
                &self,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.inner.poll_send_vectored(cx, bufs)
            }

            fn is_send_vectored(&self) -> bool {
                true
            }

            fn poll_send_eof(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
                self.inner.poll_send_eof(cx)
            }
        }

        impl $crate::stream::HalfCloseableStream for $t {
            fn send_eof(&self) -> impl std::future::Future<Output = std::io::Result<()>> {
                self.inner.send_eof()
            }
        }
    };
}

pub(crate) use impl_stream_traits;
