//! TCP: [`TcpListener`] and [`TcpStream`].

use crate::kernel::sys::syscall;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use crate::kernel::io::readiness::{Dir, Source};
use crate::net::socket::{impl_stream_traits, SocketStream};
use crate::sim::net::tcp::{SimListener, SimStream};
use crate::stream::split::{split, ReceiveHalf, SendHalf};
use crate::stream::{Listener, Resource};

/// The listen backlog asked for: Trio's `0xFFFF`. Linux silently caps it at
/// `net.core.somaxconn` (4096 by default), so this means "the system's
/// maximum" without reading `/proc`.
pub(crate) const LISTEN_BACKLOG: libc::c_int = 0xFFFF;

/// Most connections [`TcpListener::accept_batch`] takes per readiness
/// event before letting other tasks run. A flood of connections then cannot
/// hold the loop for long, while a burst (a benchmark's connect storm, a
/// restart's reconnects) costs one wake-up per 64 connections, not one each.
///
/// ```
/// assert_eq!(trioxide::ACCEPT_BATCH, 64);
/// ```
pub const ACCEPT_BATCH: usize = 64;

/// A TCP stream, with `TCP_NODELAY` on.
///
/// Methods take `&self`, so one task can receive while another sends on an
/// `Rc<TcpStream>`; two tasks using the same direction at once get
/// [`BusyResource`](crate::BusyResource).
///
/// ```no_run
/// use trioxide::{run, TcpStream, BoxError};
/// run(async {
///     let s = TcpStream::connect("127.0.0.1:8080".parse()?).await?;
///     s.send_all(b"hello").await?;
///     let mut buf = [0u8; 1024];
///     let n = s.receive_some(&mut buf).await?;
///     println!("got {:?}", &buf[..n]);
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub struct TcpStream {
    inner: TcpInner,
}

/// A real socket, or one end of a connection on the simulated network
/// (`trioxide::sim`, when the run has one). Every operation dispatches
/// with one match; the real arm calls straight into the socket layer.
enum TcpInner {
    Real(SocketStream<mio::net::TcpStream>),
    Sim(SimStream),
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            TcpInner::Real(s) => f.debug_struct("TcpStream").field("fd", &s.fd()).finish(),
            TcpInner::Sim(s) => f
                .debug_struct("TcpStream")
                .field("sim", &true)
                .field("local", &s.local_addr())
                .field("peer", &s.peer_addr())
                .finish(),
        }
    }
}

/// Dispatches a method of the stream's inner socket to the real or the
/// simulated one.
macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            TcpInner::Real($s) => $e,
            TcpInner::Sim($s) => $e,
        }
    };
}

/// Dispatches an async operation: the real socket's future is awaited in
/// place; the simulated one's is boxed, so that the future of the real
/// path stays the size it was without a simulator. Measured with
/// callgrind on a loopback echo of 20,000 1 KiB round trips: unboxed, the
/// real path ran 3.7% more instructions than before the simulator, boxed
/// 1.2%; a hand-written enum future instead of the `async` match, 10%
/// (the future is built, then moved: a memcpy per operation).
macro_rules! dispatch_async {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            TcpInner::Real($s) => $e.await,
            TcpInner::Sim($s) => Box::pin($e).await,
        }
    };
}

impl TcpInner {
    /// The fd, or -1 for a simulated stream (it has none).
    fn fd(&self) -> RawFd {
        match self {
            TcpInner::Real(s) => s.fd(),
            TcpInner::Sim(_) => -1,
        }
    }

    fn close(&self) {
        dispatch!(self, s => s.close())
    }

    #[inline]
    async fn receive_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        dispatch_async!(self, s => s.receive_some(buf))
    }

    #[inline]
    async fn send_all(&self, data: &[u8]) -> io::Result<()> {
        dispatch_async!(self, s => s.send_all(data))
    }

    async fn send_eof(&self) -> io::Result<()> {
        dispatch_async!(self, s => s.send_eof())
    }

    async fn wait_send_all_might_not_block(&self) -> io::Result<()> {
        dispatch_async!(self, s => s.wait_send_all_might_not_block())
    }

    #[inline]
    fn poll_receive(&self, cx: &mut std::task::Context<'_>, buf: &mut [u8]) -> std::task::Poll<io::Result<usize>> {
        dispatch!(self, s => s.poll_receive(cx, buf))
    }

    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    fn poll_receive_uninit(
        &self,
        cx: &mut std::task::Context<'_>,
        buf: &mut [std::mem::MaybeUninit<u8>],
    ) -> std::task::Poll<io::Result<usize>> {
        dispatch!(self, s => s.poll_receive_uninit(cx, buf))
    }

    #[inline]
    fn poll_send(&self, cx: &mut std::task::Context<'_>, data: &[u8]) -> std::task::Poll<io::Result<usize>> {
        dispatch!(self, s => s.poll_send(cx, data))
    }

    #[inline]
    fn poll_send_vectored(
        &self,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        dispatch!(self, s => s.poll_send_vectored(cx, bufs))
    }

    fn poll_send_eof(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        dispatch!(self, s => s.poll_send_eof(cx))
    }
}

impl TcpStream {
    fn from_mio(s: mio::net::TcpStream) -> io::Result<TcpStream> {
        s.set_nodelay(true)?;
        Ok(TcpStream { inner: TcpInner::Real(SocketStream::new(s)) })
    }

    /// Connects to `addr` (one address; see
    /// [`open_tcp_stream`](crate::open_tcp_stream) for names and Happy
    /// Eyeballs). A checkpoint.
    ///
    /// ```
    /// use trioxide::{run, BoxError, TcpListener, TcpStream};
    /// run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    ///     // The kernel completes the handshake before anyone calls accept.
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (server, peer) = listener.accept().await?;
    ///     assert_eq!(peer, client.local_addr()?);
    ///     assert_eq!(server.peer_addr()?, client.local_addr()?);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        crate::time::checkpoint::checkpoint_if_cancelled()?;
        if let Some(net) = crate::sim::net::active() {
            return Ok(TcpStream { inner: TcpInner::Sim(crate::sim::net::tcp::connect(net, addr).await?) });
        }
        let stream = TcpStream::from_mio(mio::net::TcpStream::connect(addr)?)?;
        if let TcpInner::Real(s) = &stream.inner {
            s.finish_connect().await?;
        }
        Ok(stream)
    }

    /// Wraps a connected std stream (made non-blocking here).
    ///
    /// ```
    /// use trioxide::{run, BoxError, TcpStream};
    /// run(async {
    ///     let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let std_stream = std::net::TcpStream::connect(listener.local_addr()?)?; // blocking connect
    ///     let (mut peer, _) = listener.accept()?;
    ///     let stream = TcpStream::from_std(std_stream)?;
    ///     stream.send_all(b"hi").await?;
    ///     let mut buf = [0u8; 2];
    ///     std::io::Read::read_exact(&mut peer, &mut buf)?;
    ///     assert_eq!(&buf, b"hi");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        TcpStream::from_mio(mio::net::TcpStream::from_std(stream))
    }

    /// Splits the stream into owned halves, one per direction, for one
    /// task that receives and another that sends: the types, not a run-time
    /// [`BusyResource`](crate::BusyResource), keep each direction to one
    /// task. See [`split`](crate::split) for closing;
    /// [`ReceiveHalf::reunite`] puts them back together.
    ///
    /// ```no_run
    /// use trioxide::{run, open_nursery, TcpStream, BoxError};
    /// run(open_nursery(|n| async move {
    ///     let s = TcpStream::connect("127.0.0.1:8080".parse()?).await?;
    ///     let (rx, tx) = s.into_split();
    ///     n.start_soon(async move {
    ///         tx.send_all(b"hello").await?; // the sending task
    ///         Ok::<_, BoxError>(())
    ///     })?;
    ///     let mut buf = [0u8; 1024];
    ///     let got = rx.receive_some(&mut buf).await?; // the receiving task
    ///     println!("{got} bytes");
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub fn into_split(self) -> (TcpReceiveHalf, TcpSendHalf) {
        split(self)
    }

    /// Receives at least one byte into `buf`; 0 at the end of the stream.
    /// See [`ReceiveStream::receive_some`](crate::ReceiveStream::receive_some).
    ///
    /// ```
    /// use trioxide::{run, BoxError, TcpListener, TcpStream};
    /// run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (server, _) = listener.accept().await?;
    ///     client.send_all(b"hello").await?;
    ///     client.close(); // the server reads the data, then the end
    ///     let mut buf = [0u8; 1024];
    ///     let mut got = Vec::new();
    ///     loop {
    ///         let n = server.receive_some(&mut buf).await?;
    ///         if n == 0 { break; } // the end of the stream
    ///         got.extend_from_slice(&buf[..n]);
    ///     }
    ///     assert_eq!(got, b"hello");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn receive_some<'a, 'b>(
        &'a self,
        buf: &'b mut [u8],
    ) -> impl std::future::Future<Output = io::Result<usize>> + use<'a, 'b> {
        self.inner.receive_some(buf)
    }

    /// Receives at least one byte into the spare capacity of `buf`
    /// (reserving 8 KiB if it has none) and returns how many were appended;
    /// 0 at the end of the stream. The buffer is never zeroed first, and an
    /// idle connection's `Vec::with_capacity` buffer is never touched, so
    /// its pages cost no memory (tokio's `read_buf` pattern).
    ///
    /// ```no_run
    /// # #[allow(dead_code)] async fn f(stream: trioxide::TcpStream) -> std::io::Result<()> {
    /// let mut buf = Vec::with_capacity(64 * 1024);
    /// loop {
    ///     buf.clear();
    ///     if stream.receive_into(&mut buf).await? == 0 { return Ok(()); }
    ///     stream.send_all(&buf).await?;
    /// }
    /// # }
    /// ```
    pub async fn receive_into(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        dispatch_async!(&self.inner, s => s.receive_into(buf))
    }

    /// Sends all of `data`. See [`SendStream::send_all`](crate::SendStream::send_all).
    ///
    /// ```
    /// use trioxide::{run, BoxError, TcpListener, TcpStream};
    /// run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (server, _) = listener.accept().await?;
    ///     server.send_all(&[7u8; 100_000]).await?; // returns once the kernel took it all
    ///     server.send_eof().await?;
    ///     let mut got = Vec::new();
    ///     while client.receive_into(&mut got).await? != 0 {}
    ///     assert_eq!(got.len(), 100_000);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn send_all<'a, 'b>(
        &'a self,
        data: &'b [u8],
    ) -> impl std::future::Future<Output = io::Result<()>> + use<'a, 'b> {
        self.inner.send_all(data)
    }

    /// Sends the chunks one after the other with vectored writes (`writev`),
    /// as one `send_all`: a response head and body go out in one syscall.
    ///
    /// ```
    /// use trioxide::{run, BoxError, TcpListener, TcpStream};
    /// run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (server, _) = listener.accept().await?;
    ///     let body = b"hello";
    ///     server.send_all_vectored(&[b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", body]).await?;
    ///     server.send_eof().await?;
    ///     let mut got = Vec::new();
    ///     while client.receive_into(&mut got).await? != 0 {}
    ///     assert!(got.ends_with(b"\r\n\r\nhello"));
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn send_all_vectored(&self, chunks: &[&[u8]]) -> io::Result<()> {
        dispatch_async!(&self.inner, s => s.send_all_vectored(chunks))
    }

    /// Sends `count` bytes of `file` from `offset` with `sendfile(2)`, so
    /// the data never enters user space. Returns the bytes sent: fewer than
    /// `count` only if the file ends first. Cancellation part-way breaks the
    /// stream for sending, as for `send_all`.
    ///
    /// ```
    /// use std::io::Write;
    /// use trioxide::{run, BoxError, TcpListener, TcpStream};
    /// run(async {
    ///     let path = std::env::temp_dir().join(format!("trioxide-doc-sendfile-{}", std::process::id()));
    ///     std::fs::File::create(&path)?.write_all(b"0123456789")?;
    ///     let file = std::fs::File::open(&path)?;
    ///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (server, _) = listener.accept().await?;
    ///     assert_eq!(server.send_file(&file, 2, 5).await?, 5);   // bytes 2..7
    ///     assert_eq!(server.send_file(&file, 8, 100).await?, 2); // the file ends first
    ///     server.send_eof().await?;
    ///     let mut got = Vec::new();
    ///     while client.receive_into(&mut got).await? != 0 {}
    ///     assert_eq!(got, b"2345689");
    ///     std::fs::remove_file(&path)?;
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn send_file(&self, file: &File, offset: u64, count: u64) -> io::Result<u64> {
        dispatch_async!(&self.inner, s => s.send_file(file, offset, count))
    }

    /// Closes the sending half (`shutdown(SHUT_WR)`). See
    /// [`HalfCloseableStream::send_eof`](crate::HalfCloseableStream::send_eof).
    ///
    /// ```
    /// use trioxide::{io_error_kind, run, BoxError, IoErrorKind, TcpListener, TcpStream};
    /// run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (server, _) = listener.accept().await?;
    ///     client.send_all(b"question").await?;
    ///     client.send_eof().await?;
    ///     let e = client.send_all(b"more").await.unwrap_err();
    ///     assert_eq!(io_error_kind(&e), Some(IoErrorKind::Closed));
    ///     let mut q = Vec::new();
    ///     while server.receive_into(&mut q).await? != 0 {} // reads up to the EOF
    ///     server.send_all(b"answer").await?; // the other direction is open
    ///     let mut buf = [0u8; 16];
    ///     let n = client.receive_some(&mut buf).await?;
    ///     assert_eq!((&q[..], &buf[..n]), (&b"question"[..], &b"answer"[..]));
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn send_eof(&self) -> io::Result<()> {
        dispatch_async!(&self.inner, s => s.send_eof())
    }

    /// Waits until a send would probably not block.
    ///
    /// ```
    /// use trioxide::{run, BoxError, TcpListener, TcpStream};
    /// run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     client.wait_send_all_might_not_block().await?; // empty send buffer: at once
    ///     client.send_all(b"now").await?;
    ///     # drop(listener);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn wait_send_all_might_not_block(&self) -> io::Result<()> {
        dispatch_async!(&self.inner, s => s.wait_send_all_might_not_block())
    }

    /// Closes the stream now; tasks waiting on it get
    /// [`ClosedResource`](crate::ClosedResource).
    ///
    /// ```
    /// use std::rc::Rc;
    /// use trioxide::{io_error_kind, open_nursery, run, wait_all_tasks_blocked, BoxError, IoErrorKind};
    /// use trioxide::{TcpListener, TcpStream};
    /// run(open_nursery(|n| async move {
    ///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    ///     let client = Rc::new(TcpStream::connect(listener.local_addr()?).await?);
    ///     let _server = listener.accept().await?;
    ///     let reader = client.clone();
    ///     n.start_soon(async move {
    ///         let e = reader.receive_some(&mut [0u8; 8]).await.unwrap_err();
    ///         assert_eq!(io_error_kind(&e), Some(IoErrorKind::Closed)); // woken by close
    ///         Ok::<_, BoxError>(())
    ///     })?;
    ///     wait_all_tasks_blocked().await?;
    ///     client.close();
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub fn close(&self) {
        self.inner.close();
    }

    /// The local address.
    ///
    /// ```
    /// use trioxide::{run, BoxError, TcpListener, TcpStream};
    /// run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (server, _) = listener.accept().await?;
    ///     assert_eq!(server.local_addr()?, listener.local_addr()?);
    ///     assert_eq!(client.local_addr()?, server.peer_addr()?);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.inner {
            TcpInner::Real(s) => s.source.with(|s| s.local_addr()),
            TcpInner::Sim(s) => Ok(s.local_addr()),
        }
    }

    /// The peer's address.
    ///
    /// ```
    /// use trioxide::{run, BoxError, TcpListener, TcpStream};
    /// run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     assert_eq!(client.peer_addr()?, listener.local_addr()?);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match &self.inner {
            TcpInner::Real(s) => s.source.with(|s| s.peer_addr()),
            TcpInner::Sim(s) => Ok(s.peer_addr()),
        }
    }
}

impl TcpStream {
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

impl_stream_traits!(TcpStream);

/// The receiving half of a [`TcpStream`], from [`TcpStream::into_split`].
///
/// ```
/// use trioxide::{run, BoxError, BufferedReceiveStream, TcpListener, TcpReceiveHalf, TcpStream};
/// run(async {
///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
///     let client = TcpStream::connect(listener.local_addr()?).await?;
///     let (server, _) = listener.accept().await?;
///     let (rx, _tx): (TcpReceiveHalf, _) = server.into_split();
///     client.send_all(b"line one\n").await?;
///     let lines = BufferedReceiveStream::new(rx); // a half is a ReceiveStream
///     assert_eq!(lines.next_line(80).await?.as_deref(), Some(&b"line one"[..]));
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub type TcpReceiveHalf = ReceiveHalf<TcpStream>;

/// The sending half of a [`TcpStream`], from [`TcpStream::into_split`]; it can
/// `send_eof`.
///
/// ```
/// use trioxide::{run, BoxError, TcpListener, TcpSendHalf, TcpStream};
/// run(async {
///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
///     let client = TcpStream::connect(listener.local_addr()?).await?;
///     let (server, _) = listener.accept().await?;
///     let (_rx, tx): (_, TcpSendHalf) = server.into_split();
///     tx.send_all(b"bye").await?;
///     tx.send_eof().await?; // only the sending direction ends
///     let mut got = Vec::new();
///     while client.receive_into(&mut got).await? != 0 {}
///     assert_eq!(got, b"bye");
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub type TcpSendHalf = SendHalf<TcpStream>;

/// A listening TCP socket, with the backlog at the system's maximum.
///
/// ```no_run
/// use trioxide::{run, TcpListener, BoxError};
/// run(async {
///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
///     println!("listening on {}", listener.local_addr()?);
///     let (stream, _peer) = listener.accept().await?;
///     stream.send_all(b"hello\n").await?;
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub struct TcpListener {
    inner: ListenerInner,
}

/// A real listening socket, or one on the simulated network.
enum ListenerInner {
    Real(Source<mio::net::TcpListener>),
    Sim(SimListener),
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener").field("fd", &self.as_raw_fd()).field("addr", &self.local_addr().ok()).finish()
    }
}

impl TcpListener {
    /// Binds and listens on `addr` (port 0: any free port), with
    /// `SO_REUSEADDR` and the backlog at the system's maximum.
    ///
    /// ```
    /// use trioxide::{run, BoxError, TcpListener};
    /// run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    ///     assert_ne!(listener.local_addr()?.port(), 0); // the port the system picked
    ///     // The port is taken while the listener lives:
    ///     assert!(TcpListener::bind(listener.local_addr()?).is_err());
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        if let Some(net) = crate::sim::net::active() {
            return Ok(TcpListener { inner: ListenerInner::Sim(SimListener::bind(net, addr)?) });
        }
        let listener = mio::net::TcpListener::bind(addr)?;
        // mio listens with a backlog of 1024; listening again on a listening
        // socket only changes its backlog (Linux `inet_listen`).
        // SAFETY: `listen` on a socket fd we own; no memory is passed.
        syscall!(listen(listener.as_raw_fd(), LISTEN_BACKLOG))?;
        Ok(TcpListener { inner: ListenerInner::Real(Source::new(listener)) })
    }

    /// Wraps a listening std socket (made non-blocking here).
    ///
    /// ```
    /// use trioxide::{run, BoxError, TcpListener, TcpStream};
    /// run(async {
    ///     let listener = TcpListener::from_std(std::net::TcpListener::bind("127.0.0.1:0")?)?;
    ///     let _client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (_server, _peer) = listener.accept().await?;
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        Ok(TcpListener { inner: ListenerInner::Real(Source::new(mio::net::TcpListener::from_std(listener))) })
    }

    /// The address it listens on.
    ///
    /// ```
    /// use trioxide::{run, BoxError, TcpListener};
    /// run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    ///     assert!(listener.local_addr()?.ip().is_loopback());
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.inner {
            ListenerInner::Real(source) => source.with(|s| s.local_addr()),
            ListenerInner::Sim(l) => Ok(l.local_addr()),
        }
    }

    /// Waits for one connection. A checkpoint.
    ///
    /// ```
    /// use trioxide::{run, BoxError, TcpListener, TcpStream};
    /// run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (server, peer) = listener.accept().await?;
    ///     assert_eq!(peer, client.local_addr()?);
    ///     server.send_all(b"welcome").await?;
    ///     let mut buf = [0u8; 16];
    ///     let n = client.receive_some(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"welcome");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        match &self.inner {
            ListenerInner::Real(source) => {
                let (s, addr) = source.op(Dir::Read, |l| Ok((l.accept()?, false))).await?;
                Ok((TcpStream::from_mio(s)?, addr))
            }
            ListenerInner::Sim(l) => {
                let mut got = None;
                l.accept_each(1, |s, addr| got = Some((TcpStream { inner: TcpInner::Sim(s) }, addr))).await?;
                got.ok_or_else(|| io::Error::other("trioxide sim: accept returned no connection"))
            }
        }
    }

    /// Waits for connections and accepts every one already queued, up to
    /// `max` (see [`ACCEPT_BATCH`]), appending them to `out`; returns how
    /// many. The batch stops early at the first error after at least one
    /// success (the error comes again on the next call). A checkpoint.
    ///
    /// ```
    /// use trioxide::{run, BoxError, TcpListener, TcpStream, ACCEPT_BATCH};
    /// run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    ///     let addr = listener.local_addr()?;
    ///     let mut clients = Vec::new();
    ///     for _ in 0..3 {
    ///         clients.push(TcpStream::connect(addr).await?);
    ///     }
    ///     let mut accepted = Vec::new();
    ///     while accepted.len() < 3 {
    ///         listener.accept_batch(&mut accepted, ACCEPT_BATCH).await?; // all queued ones at once
    ///     }
    ///     for (stream, peer) in &accepted {
    ///         assert_eq!(stream.peer_addr()?, *peer);
    ///     }
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn accept_batch(&self, out: &mut Vec<(TcpStream, SocketAddr)>, max: usize) -> io::Result<usize> {
        self.accept_each(max, |s, addr| out.push((s, addr))).await
    }

    /// The loop under [`accept_batch`](TcpListener::accept_batch) and
    /// [`Listener::accept_many`]: hands each accepted stream to `push`.
    async fn accept_each(&self, max: usize, mut push: impl FnMut(TcpStream, SocketAddr)) -> io::Result<usize> {
        let max = max.max(1);
        let mut n = 0;
        let source = match &self.inner {
            ListenerInner::Real(source) => source,
            ListenerInner::Sim(l) => {
                return l.accept_each(max, |s, addr| push(TcpStream { inner: TcpInner::Sim(s) }, addr)).await;
            }
        };
        source
            .op(Dir::Read, |l| {
                loop {
                    match l.accept() {
                        Ok((s, addr)) => match TcpStream::from_mio(s) {
                            Ok(s) => {
                                push(s, addr);
                                n += 1;
                            }
                            // The connection died before we set its options.
                            Err(_) => continue,
                        },
                        Err(e) if n > 0 => {
                            // WouldBlock: the queue is drained.
                            return Ok(((), e.kind() == io::ErrorKind::WouldBlock));
                        }
                        Err(e) => return Err(e),
                    }
                    if n >= max {
                        return Ok(((), false));
                    }
                }
            })
            .await?;
        Ok(n)
    }

    /// Stops listening now; a task waiting in `accept` gets
    /// [`ClosedResource`](crate::ClosedResource).
    ///
    /// ```
    /// use trioxide::{run, BoxError, TcpListener, TcpStream};
    /// run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    ///     let addr = listener.local_addr()?;
    ///     listener.close();
    ///     let e = listener.accept().await.unwrap_err();
    ///     assert_eq!(trioxide::io_error_kind(&e), Some(trioxide::IoErrorKind::Closed));
    ///     assert!(TcpStream::connect(addr).await.is_err()); // refused: nobody listens
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn close(&self) {
        match &self.inner {
            ListenerInner::Real(source) => source.close(),
            ListenerInner::Sim(l) => l.close(),
        }
    }
}

/// The fd; -1 for a listener on the simulated network (it has none).
impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        match &self.inner {
            ListenerInner::Real(source) => source.fd(),
            ListenerInner::Sim(_) => -1,
        }
    }
}

impl Resource for TcpListener {
    fn close(&self) {
        TcpListener::close(self);
    }
}

impl Listener for TcpListener {
    type Stream = TcpStream;

    async fn accept(&self) -> io::Result<TcpStream> {
        TcpListener::accept(self).await.map(|(s, _)| s)
    }

    async fn accept_many(&self, out: &mut Vec<TcpStream>, max: usize) -> io::Result<usize> {
        self.accept_each(max, |s, _| out.push(s)).await
    }

    fn peer_of(stream: &TcpStream) -> Option<SocketAddr> {
        stream.peer_addr().ok()
    }
}
