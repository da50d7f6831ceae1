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
    ///
    /// ```
    /// use trioxide::{run, BoxError, UnixListener, UnixStream};
    /// run(async {
    ///     let path = std::env::temp_dir().join(format!("trioxide-doc-connect-{}.sock", std::process::id()));
    ///     let _ = std::fs::remove_file(&path);
    ///     let listener = UnixListener::bind(&path)?;
    ///     let client = UnixStream::connect(&path).await?;
    ///     let server = listener.accept().await?;
    ///     client.send_all(b"ping").await?;
    ///     let mut buf = [0u8; 4];
    ///     assert_eq!(server.receive_some(&mut buf).await?, 4);
    ///     std::fs::remove_file(&path)?;
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        crate::time::checkpoint::checkpoint_if_cancelled()?;
        let stream = UnixStream { inner: SocketStream::new(mio::net::UnixStream::connect(path)?) };
        stream.inner.finish_connect().await?;
        Ok(stream)
    }

    /// A connected pair of sockets (`socketpair(2)`).
    ///
    /// ```
    /// use trioxide::{run, BoxError, UnixStream};
    /// run(async {
    ///     let (a, b) = UnixStream::pair()?;
    ///     a.send_all(b"to b").await?;
    ///     let mut buf = [0u8; 8];
    ///     let n = b.receive_some(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"to b");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = mio::net::UnixStream::pair()?;
        Ok((UnixStream { inner: SocketStream::new(a) }, UnixStream { inner: SocketStream::new(b) }))
    }

    /// Wraps a connected std socket (made non-blocking here).
    ///
    /// ```
    /// use std::io::Read;
    /// use trioxide::{run, BoxError, UnixStream};
    /// run(async {
    ///     let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
    ///     let a = UnixStream::from_std(a)?;
    ///     a.send_all(b"hi").await?;
    ///     let mut buf = [0u8; 2];
    ///     b.read_exact(&mut buf)?; // the other end is still a blocking std socket
    ///     assert_eq!(&buf, b"hi");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
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
    ///
    /// ```
    /// use trioxide::{run, BoxError, UnixStream};
    /// run(async {
    ///     let (a, b) = UnixStream::pair()?;
    ///     a.send_all(b"abc").await?;
    ///     drop(a); // closes: b reads the data, then 0
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(b.receive_some(&mut buf).await?, 3);
    ///     assert_eq!(b.receive_some(&mut buf).await?, 0);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
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
    ///
    /// ```
    /// use trioxide::{open_nursery, run, BoxError, UnixStream};
    /// run(open_nursery(|n| async move {
    ///     let (a, b) = UnixStream::pair()?;
    ///     // More than the socket buffer holds: send_all waits for the reader.
    ///     n.start_soon(async move {
    ///         a.send_all(&vec![1u8; 1 << 20]).await?;
    ///         Ok::<_, BoxError>(()) // dropping `a` ends the stream
    ///     })?;
    ///     let mut got = Vec::new();
    ///     while b.receive_into(&mut got).await? != 0 {}
    ///     assert_eq!(got.len(), 1 << 20);
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub async fn send_all(&self, data: &[u8]) -> io::Result<()> {
        self.inner.send_all(data).await
    }

    /// Sends the chunks one after the other with vectored writes.
    ///
    /// ```
    /// use trioxide::{run, BoxError, UnixStream};
    /// run(async {
    ///     let (a, b) = UnixStream::pair()?;
    ///     a.send_all_vectored(&[b"head ", b"and ", b"body"]).await?;
    ///     a.send_eof().await?;
    ///     let mut got = Vec::new();
    ///     while b.receive_into(&mut got).await? != 0 {}
    ///     assert_eq!(got, b"head and body");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn send_all_vectored(&self, chunks: &[&[u8]]) -> io::Result<()> {
        self.inner.send_all_vectored(chunks).await
    }

    /// Closes the sending half.
    ///
    /// ```
    /// use trioxide::{run, BoxError, UnixStream};
    /// run(async {
    ///     let (a, b) = UnixStream::pair()?;
    ///     a.send_eof().await?;
    ///     assert_eq!(b.receive_some(&mut [0u8; 8]).await?, 0); // b sees the end
    ///     b.send_all(b"still open").await?; // but can answer
    ///     let mut buf = [0u8; 16];
    ///     let n = a.receive_some(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"still open");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn send_eof(&self) -> io::Result<()> {
        self.inner.send_eof().await
    }

    /// Closes the socket now.
    ///
    /// ```
    /// use trioxide::{io_error_kind, run, BoxError, IoErrorKind, UnixStream};
    /// run(async {
    ///     let (a, b) = UnixStream::pair()?;
    ///     a.close();
    ///     let e = a.send_all(b"x").await.unwrap_err();
    ///     assert_eq!(io_error_kind(&e), Some(IoErrorKind::Closed)); // closed by us
    ///     assert_eq!(b.receive_some(&mut [0u8; 8]).await?, 0); // the peer sees the end
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn close(&self) {
        self.inner.close();
    }
}

impl UnixStream {
    /// `poll_receive` into uninitialised memory, with no zeroing: hyper's
    /// reads (`src/hyper/io.rs`). See `SocketStream::poll_receive_uninit`.
    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    pub(crate) fn poll_receive_uninit(
        &self,
        cx: &mut std::task::Context<'_>,
        buf: &mut [std::mem::MaybeUninit<u8>],
    ) -> std::task::Poll<io::Result<usize>> {
        self.inner.poll_receive_uninit(cx, buf)
    }
}

impl_stream_traits!(UnixStream);

/// The receiving half of a [`UnixStream`], from [`UnixStream::into_split`].
///
/// ```
/// use trioxide::{run, BoxError, UnixReceiveHalf, UnixStream};
/// run(async {
///     let (a, b) = UnixStream::pair()?;
///     let (rx, _tx): (UnixReceiveHalf, _) = a.into_split();
///     b.send_all(b"to the half").await?;
///     let mut buf = [0u8; 16];
///     let n = rx.receive_some(&mut buf).await?;
///     assert_eq!(&buf[..n], b"to the half");
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub type UnixReceiveHalf = ReceiveHalf<UnixStream>;

/// The sending half of a [`UnixStream`], from [`UnixStream::into_split`]; it can
/// `send_eof`.
///
/// ```
/// use trioxide::{run, BoxError, UnixSendHalf, UnixStream};
/// run(async {
///     let (a, b) = UnixStream::pair()?;
///     let (_rx, tx): (_, UnixSendHalf) = a.into_split();
///     tx.send_all(b"from the half").await?;
///     tx.send_eof().await?;
///     let mut got = Vec::new();
///     while b.receive_into(&mut got).await? != 0 {}
///     assert_eq!(got, b"from the half");
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
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
    ///
    /// ```
    /// use trioxide::{run, BoxError, UnixListener};
    /// run(async {
    ///     let path = std::env::temp_dir().join(format!("trioxide-doc-bind-{}.sock", std::process::id()));
    ///     let _ = std::fs::remove_file(&path);
    ///     let listener = UnixListener::bind(&path)?;
    ///     assert!(UnixListener::bind(&path).is_err()); // the path exists now
    ///     drop(listener);
    ///     std::fs::remove_file(&path)?; // closing does not remove it
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let listener = mio::net::UnixListener::bind(path)?;
        // SAFETY: `listen` on a socket fd we own; no memory is passed.
        syscall!(listen(listener.as_raw_fd(), crate::net::tcp::LISTEN_BACKLOG))?;
        Ok(UnixListener { source: Source::new(listener) })
    }

    /// Waits for one connection. A checkpoint.
    ///
    /// ```
    /// use trioxide::{run, BoxError, UnixListener, UnixStream};
    /// run(async {
    ///     let path = std::env::temp_dir().join(format!("trioxide-doc-uaccept-{}.sock", std::process::id()));
    ///     let _ = std::fs::remove_file(&path);
    ///     let listener = UnixListener::bind(&path)?;
    ///     let client = UnixStream::connect(&path).await?;
    ///     let server = listener.accept().await?;
    ///     server.send_all(b"welcome").await?;
    ///     let mut buf = [0u8; 16];
    ///     let n = client.receive_some(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"welcome");
    ///     std::fs::remove_file(&path)?;
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
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
    ///
    /// ```
    /// use trioxide::{io_error_kind, run, BoxError, IoErrorKind, UnixListener};
    /// run(async {
    ///     let path = std::env::temp_dir().join(format!("trioxide-doc-uclose-{}.sock", std::process::id()));
    ///     let _ = std::fs::remove_file(&path);
    ///     let listener = UnixListener::bind(&path)?;
    ///     listener.close();
    ///     let e = listener.accept().await.unwrap_err();
    ///     assert_eq!(io_error_kind(&e), Some(IoErrorKind::Closed));
    ///     assert!(path.exists()); // the socket file stays
    ///     std::fs::remove_file(&path)?;
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
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
