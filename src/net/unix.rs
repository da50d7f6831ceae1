//! Unix-domain stream sockets: [`UnixListener`] and [`UnixStream`].

use crate::kernel::sys::syscall;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use crate::kernel::io::readiness::{Dir, Source};
use crate::net::socket::{impl_stream_traits, SocketStream};
use crate::stream::split::{split, ReceiveHalf, SendHalf};
use crate::stream::{Listener, Resource};

/// A Unix-domain stream socket. Same operations and rules as
/// [`TcpStream`](crate::TcpStream).
///
/// ```no_run
/// use trioxide::{run, UnixStream, BoxError};
/// run(async {
///     let s = UnixStream::connect("/tmp/app.sock").await?;
///     s.send_all(b"ping").await?;
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub struct UnixStream {
    inner: SocketStream<mio::net::UnixStream>,
}

impl std::fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixStream").field("fd", &self.inner.fd()).finish()
    }
}

impl UnixStream {
    /// Connects to the socket at `path`. A checkpoint.
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        crate::time::checkpoint::checkpoint_if_cancelled()?;
        let stream = UnixStream { inner: SocketStream::new(mio::net::UnixStream::connect(path)?) };
        stream.inner.finish_connect().await?;
        Ok(stream)
    }

    /// A connected pair of sockets (`socketpair(2)`).
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = mio::net::UnixStream::pair()?;
        Ok((UnixStream { inner: SocketStream::new(a) }, UnixStream { inner: SocketStream::new(b) }))
    }

    /// Wraps a connected std socket (made non-blocking here).
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        stream.set_nonblocking(true)?;
        Ok(UnixStream { inner: SocketStream::new(mio::net::UnixStream::from_std(stream)) })
    }

    /// Splits the stream into owned halves, one per direction, for one
    /// task that receives and another that sends: the types, not a run-time
    /// [`BusyResource`](crate::BusyResource), keep each direction to one
    /// task. See [`split`](crate::split) for closing;
    /// [`ReceiveHalf::reunite`] puts them back together.
    ///
    /// ```
    /// use trioxide::{run, open_nursery, UnixStream, BoxError};
    /// run(open_nursery(|n| async move {
    ///     let (a, b) = UnixStream::pair()?;
    ///     let (rx, tx) = a.into_split();
    ///     n.start_soon(async move {
    ///         tx.send_all(b"hello").await?; // the sending task
    ///         tx.send_eof().await?;
    ///         Ok::<_, BoxError>(())
    ///     })?;
    ///     let mut buf = [0u8; 8];
    ///     let n1 = b.receive_some(&mut buf).await?;
    ///     assert_eq!(&buf[..n1], b"hello");
    ///     b.send_all(b"back").await?;
    ///     let n2 = rx.receive_some(&mut buf).await?; // the receiving task
    ///     assert_eq!(&buf[..n2], b"back");
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub fn into_split(self) -> (UnixReceiveHalf, UnixSendHalf) {
        split(self)
    }

    /// Receives at least one byte; 0 at the end of the stream.
    pub async fn receive_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.receive_some(buf).await
    }

    /// Receives at least one byte into the spare capacity of `buf`
    /// (reserving 8 KiB if it has none) and returns how many were appended;
    /// 0 at the end of the stream. The buffer is never zeroed first, and an
    /// idle connection's `Vec::with_capacity` buffer is never touched, so
    /// its pages cost no memory (tokio's `read_buf` pattern).
    ///
    /// ```no_run
    /// # #[allow(dead_code)] async fn f(stream: trioxide::UnixStream) -> std::io::Result<()> {
    /// let mut buf = Vec::with_capacity(64 * 1024);
    /// loop {
    ///     buf.clear();
    ///     if stream.receive_into(&mut buf).await? == 0 { return Ok(()); }
    ///     stream.send_all(&buf).await?;
    /// }
    /// # }
    /// ```
    pub async fn receive_into(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.inner.receive_into(buf).await
    }

    /// Sends all of `data`.
    pub async fn send_all(&self, data: &[u8]) -> io::Result<()> {
        self.inner.send_all(data).await
    }

    /// Sends the chunks one after the other with vectored writes.
    pub async fn send_all_vectored(&self, chunks: &[&[u8]]) -> io::Result<()> {
        self.inner.send_all_vectored(chunks).await
    }

    /// Closes the sending half.
    pub async fn send_eof(&self) -> io::Result<()> {
        self.inner.send_eof().await
    }

    /// Closes the socket now.
    pub fn close(&self) {
        self.inner.close();
    }
}

impl_stream_traits!(UnixStream);

/// The receiving half of a [`UnixStream`], from [`UnixStream::into_split`].
pub type UnixReceiveHalf = ReceiveHalf<UnixStream>;

/// The sending half of a [`UnixStream`], from [`UnixStream::into_split`]; it can
/// `send_eof`.
pub type UnixSendHalf = SendHalf<UnixStream>;

/// A listening Unix-domain socket.
///
/// ```no_run
/// use trioxide::{run, UnixListener, BoxError};
/// run(async {
///     let listener = UnixListener::bind("/tmp/app.sock")?;
///     let stream = listener.accept().await?;
///     stream.send_all(b"hello").await?;
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub struct UnixListener {
    source: Source<mio::net::UnixListener>,
}

impl std::fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixListener").field("fd", &self.source.fd()).finish()
    }
}

impl UnixListener {
    /// Binds and listens at `path` (which must not exist yet).
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let listener = mio::net::UnixListener::bind(path)?;
        // SAFETY: `listen` on a socket fd we own; no memory is passed.
        syscall!(listen(listener.as_raw_fd(), crate::net::tcp::LISTEN_BACKLOG))?;
        Ok(UnixListener { source: Source::new(listener) })
    }

    /// Waits for one connection. A checkpoint.
    pub async fn accept(&self) -> io::Result<UnixStream> {
        let (s, _addr) = self.source.op(Dir::Read, |l| Ok((l.accept()?, false))).await?;
        Ok(UnixStream { inner: SocketStream::new(s) })
    }

    /// The address this listener is bound to (its path).
    ///
    /// ```no_run
    /// # trioxide::run(async {
    /// let listener = trioxide::UnixListener::bind("/tmp/app.sock")?;
    /// assert_eq!(listener.local_addr()?.as_pathname(), Some(std::path::Path::new("/tmp/app.sock")));
    /// # Ok::<_, std::io::Error>(()) }).unwrap();
    /// ```
    pub fn local_addr(&self) -> io::Result<std::os::unix::net::SocketAddr> {
        self.source.with(|l| l.local_addr())
    }

    /// Stops listening now (the socket file stays; remove it yourself).
    pub fn close(&self) {
        self.source.close();
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.source.fd()
    }
}

impl Resource for UnixListener {
    fn close(&self) {
        self.source.close();
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;

    async fn accept(&self) -> io::Result<UnixStream> {
        UnixListener::accept(self).await
    }
}
