//! Pipe ends as trioxide streams: [`PipeSendStream`] (a child's stdin) and
//! [`PipeReceiveStream`] (its stdout or stderr). Built on the same
//! `Source` as sockets: non-blocking fds, cached readiness, registered with
//! the driver on their first `WouldBlock`, every operation a checkpoint.
//!
//! At the poll level ([`PollSend`], [`PollReceive`], and so `futures-io`)
//! they are polled as sockets are (`Source::poll_op`: the same readiness,
//! no extra `epoll_ctl`, the poll layer's checkpoint rules). A pipe has no
//! half-close, so `poll_send_eof` closes the writing end: the reader sees
//! the end of the data; a second `poll_send_eof` does nothing.

use crate::kernel::sys::syscall;
use std::cell::Cell;
use std::fmt;
use std::fs::File;
use std::future::Future;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::task::{Context, Poll};

use crate::kernel::budget::after_io;
use crate::kernel::error::Cancelled;
use crate::kernel::io::readiness::{Dir, Source};
use crate::kernel::Core;
use crate::stream::poll::{PollReceive, PollSend};
use crate::stream::{ReceiveStream, Resource, SendStream};

/// Most buffers one `writev` takes: Linux's `UIO_MAXIOV` (`IOV_MAX`).
const IOV_MAX: usize = 1024;

/// What [`PipeReceiveStream::receive_into`] reserves when the vector is
/// full: 64 KiB, the default capacity of a Linux pipe, so one read can take
/// everything a pipe holds.
const DEFAULT_RECEIVE: usize = 64 * 1024;

/// Sets `O_NONBLOCK` on the open file description behind `fd`.
fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own (borrowed by the caller); F_GETFL
    // takes and returns plain ints.
    let flags = syscall!(fcntl(fd, libc::F_GETFL))?;
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: as above; F_SETFL takes the flags as an int.
        syscall!(fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    }
    Ok(())
}

/// The writing end of a pipe, such as a child's standard input
/// ([`Process::stdin`](crate::process::Process::stdin)).
///
/// Closing it (or dropping it) is how the reader sees the end of the data:
/// a pipe has no half-close, so there is no `send_eof`.
///
/// ```
/// use std::process::{Command, Stdio};
/// trioxide::run(async {
///     let mut cmd = Command::new("cat");
///     cmd.stdin(Stdio::piped()).stdout(Stdio::null());
///     let mut child = trioxide::process::open_process(cmd)?;
///     let stdin = child.stdin.take().expect("piped");
///     stdin.send_all(b"hello").await?;
///     drop(stdin); // end of input: cat exits
///     assert!(child.wait().await?.success());
///     Ok::<_, Box<dyn std::error::Error>>(())
/// }).unwrap();
/// ```
pub struct PipeSendStream {
    source: Source<File>,
    /// `poll_send_eof` closed it (so a second one does nothing, where an
    /// operation after `close` gets `ClosedResource`).
    eof_sent: Cell<bool>,
}

impl PipeSendStream {
    /// Wraps the writing end of a pipe, making it non-blocking. (That flag
    /// belongs to the open file description, so any process sharing this
    /// very end sees it too; a child's end of a pipe is another one.)
    ///
    /// ```
    /// let (_reader, writer) = std::io::pipe()?;
    /// let w = trioxide::process::PipeSendStream::new(writer.into())?;
    /// # drop(w);
    /// # Ok::<_, std::io::Error>(())
    /// ```
    pub fn new(fd: OwnedFd) -> io::Result<PipeSendStream> {
        set_nonblocking(fd.as_raw_fd())?;
        Ok(PipeSendStream { source: Source::new(File::from(fd)), eof_sent: Cell::new(false) })
    }

    /// Sends all of `data`, waiting while the pipe is full. A checkpoint;
    /// see [`SendStream::send_all`]. If the reader has gone, the OS's
    /// `BrokenPipe` error (`EPIPE`).
    ///
    /// ```
    /// use trioxide::process::{PipeReceiveStream, PipeSendStream};
    /// trioxide::run(async {
    ///     let (r, w) = std::io::pipe()?;
    ///     let (r, w) = (PipeReceiveStream::new(r.into())?, PipeSendStream::new(w.into())?);
    ///     w.send_all(b"abc").await?;
    ///     w.close(); // the reader sees the end after the data
    ///     let mut got = Vec::new();
    ///     while r.receive_into(&mut got).await? > 0 {}
    ///     assert_eq!(got, b"abc");
    ///     Ok::<_, std::io::Error>(())
    /// }).unwrap();
    /// ```
    pub async fn send_all(&self, data: &[u8]) -> io::Result<()> {
        self.source
            .send_loop(data.len() as u64, |f, sent| {
                let rest = &data[sent as usize..];
                let n = (&*f).write(rest)?;
                Ok((n, n < rest.len()))
            })
            .await
            .map(drop)
    }

    /// Waits until the pipe has room. A checkpoint.
    ///
    /// ```
    /// trioxide::run(async {
    ///     let (_r, w) = std::io::pipe()?;
    ///     let w = trioxide::process::PipeSendStream::new(w.into())?;
    ///     w.wait_send_all_might_not_block().await?; // an empty pipe has room
    ///     Ok::<_, std::io::Error>(())
    /// }).unwrap();
    /// ```
    pub async fn wait_send_all_might_not_block(&self) -> io::Result<()> {
        let _guard = self.source.state.begin(Dir::Write)?;
        if !self.source.ready(Dir::Write).await? {
            after_io().await;
        }
        Ok(())
    }

    /// Closes the pipe now: the reader sees the end of the data, and tasks
    /// waiting here wake with [`ClosedResource`](crate::ClosedResource).
    ///
    /// ```
    /// trioxide::run(async {
    ///     let (_r, w) = std::io::pipe()?;
    ///     let w = trioxide::process::PipeSendStream::new(w.into())?;
    ///     w.close();
    ///     let e = w.send_all(b"x").await.unwrap_err();
    ///     assert_eq!(trioxide::io_error_kind(&e), Some(trioxide::IoErrorKind::Closed));
    ///     Ok::<_, std::io::Error>(())
    /// }).unwrap();
    /// ```
    pub fn close(&self) {
        self.source.close();
    }
}

impl PollSend for PipeSendStream {
    fn poll_send(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(self.source.check_poll_direction(Dir::Write).map(|()| 0));
        }
        self.source.poll_op(Dir::Write, cx, |f| {
            let n = (&*f).write(data)?;
            Ok((n, n < data.len()))
        })
    }

    /// One `writev` of at most `IOV_MAX` buffers.
    fn poll_send_vectored(&self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let bufs = &bufs[..bufs.len().min(IOV_MAX)];
        let asked: usize = bufs.iter().map(|b| b.len()).sum();
        if asked == 0 {
            return Poll::Ready(self.source.check_poll_direction(Dir::Write).map(|()| 0));
        }
        self.source.poll_op(Dir::Write, cx, |f| {
            let n = (&*f).write_vectored(bufs)?;
            Ok((n, n < asked))
        })
    }

    fn is_send_vectored(&self) -> bool {
        true
    }

    /// Closes the pipe (it has no half-close); a second call does nothing.
    fn poll_send_eof(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.eof_sent.get() {
            return Poll::Ready(Ok(()));
        }
        if let Err(e) = self.source.check_poll_direction(Dir::Write) {
            return Poll::Ready(Err(e));
        }
        if Core::current_for("trioxide::process::PipeSendStream::poll_send_eof").is_cancelled() {
            return Poll::Ready(Err(Cancelled.into()));
        }
        self.eof_sent.set(true);
        self.close();
        Poll::Ready(Ok(()))
    }
}

impl fmt::Debug for PipeSendStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeSendStream").field("fd", &self.source.fd()).finish()
    }
}

impl AsRawFd for PipeSendStream {
    fn as_raw_fd(&self) -> RawFd {
        self.source.fd()
    }
}

impl Resource for PipeSendStream {
    fn close(&self) {
        PipeSendStream::close(self);
    }
}

impl SendStream for PipeSendStream {
    fn send_all(&self, data: &[u8]) -> impl Future<Output = io::Result<()>> {
        PipeSendStream::send_all(self, data)
    }

    fn wait_send_all_might_not_block(&self) -> impl Future<Output = io::Result<()>> {
        PipeSendStream::wait_send_all_might_not_block(self)
    }
}

/// The reading end of a pipe, such as a child's standard output or error
/// ([`Process::stdout`](crate::process::Process::stdout)).
///
/// ```
/// use std::process::{Command, Stdio};
/// trioxide::run(async {
///     let mut cmd = Command::new("echo");
///     cmd.arg("hi").stdout(Stdio::piped());
///     let mut child = trioxide::process::open_process(cmd)?;
///     let out = child.stdout.take().expect("piped");
///     let mut got = Vec::new();
///     while out.receive_into(&mut got).await? > 0 {}
///     assert_eq!(got, b"hi\n");
///     child.wait().await?;
///     Ok::<_, Box<dyn std::error::Error>>(())
/// }).unwrap();
/// ```
pub struct PipeReceiveStream {
    source: Source<File>,
}

impl PipeReceiveStream {
    /// Wraps the reading end of a pipe, making it non-blocking (see
    /// [`PipeSendStream::new`]).
    ///
    /// ```
    /// let (reader, _writer) = std::io::pipe()?;
    /// let r = trioxide::process::PipeReceiveStream::new(reader.into())?;
    /// # drop(r);
    /// # Ok::<_, std::io::Error>(())
    /// ```
    pub fn new(fd: OwnedFd) -> io::Result<PipeReceiveStream> {
        set_nonblocking(fd.as_raw_fd())?;
        Ok(PipeReceiveStream { source: Source::new(File::from(fd)) })
    }

    /// Receives at least one byte into `buf`, or 0 once every writer has
    /// closed. A checkpoint; see [`ReceiveStream::receive_some`].
    ///
    /// ```
    /// use std::io::Write;
    /// trioxide::run(async {
    ///     let (r, mut w) = std::io::pipe()?;
    ///     w.write_all(b"hi")?;
    ///     drop(w);
    ///     let r = trioxide::process::PipeReceiveStream::new(r.into())?;
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(r.receive_some(&mut buf).await?, 2);
    ///     assert_eq!(r.receive_some(&mut buf).await?, 0); // end of data
    ///     Ok::<_, std::io::Error>(())
    /// }).unwrap();
    /// ```
    pub async fn receive_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "receive_some needs a non-empty buffer"));
        }
        let want = buf.len();
        self.source
            .op(Dir::Read, |f| {
                let n = (&*f).read(buf)?;
                Ok((n, n > 0 && n < want))
            })
            .await
    }

    /// Appends what the pipe holds to `buf` (reserving 64 KiB first if it
    /// is full) and returns how many bytes, 0 at the end. A checkpoint.
    ///
    /// ```
    /// use std::io::Write;
    /// trioxide::run(async {
    ///     let (r, mut w) = std::io::pipe()?;
    ///     w.write_all(b"hello")?;
    ///     let r = trioxide::process::PipeReceiveStream::new(r.into())?;
    ///     let mut got = b">".to_vec();
    ///     assert_eq!(r.receive_into(&mut got).await?, 5);
    ///     assert_eq!(got, b">hello");
    ///     Ok::<_, std::io::Error>(())
    /// }).unwrap();
    /// ```
    pub async fn receive_into(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.source.read_into_spare(buf, DEFAULT_RECEIVE).await
    }

    /// Closes the pipe now; tasks waiting here wake with
    /// [`ClosedResource`](crate::ClosedResource). A child still writing gets
    /// `EPIPE` (or SIGPIPE).
    ///
    /// ```
    /// trioxide::run(async {
    ///     let (r, _w) = std::io::pipe()?;
    ///     let r = trioxide::process::PipeReceiveStream::new(r.into())?;
    ///     r.close();
    ///     assert!(r.receive_some(&mut [0u8; 1]).await.is_err());
    ///     Ok::<_, std::io::Error>(())
    /// }).unwrap();
    /// ```
    pub fn close(&self) {
        self.source.close();
    }
}

impl PollReceive for PipeReceiveStream {
    fn poll_receive(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(self.source.check_poll_direction(Dir::Read).map(|()| 0));
        }
        let want = buf.len();
        self.source.poll_op(Dir::Read, cx, |f| {
            let n = (&*f).read(buf)?;
            Ok((n, n > 0 && n < want))
        })
    }
}

impl fmt::Debug for PipeReceiveStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeReceiveStream").field("fd", &self.source.fd()).finish()
    }
}

impl AsRawFd for PipeReceiveStream {
    fn as_raw_fd(&self) -> RawFd {
        self.source.fd()
    }
}

impl Resource for PipeReceiveStream {
    fn close(&self) {
        PipeReceiveStream::close(self);
    }
}

impl ReceiveStream for PipeReceiveStream {
    fn receive_some(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> {
        PipeReceiveStream::receive_some(self, buf)
    }
}
