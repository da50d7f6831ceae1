//! TCP: [`TcpListener`] and [`TcpStream`].

use crate::kernel::sys::syscall;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use crate::kernel::io::readiness::{Dir, Source};
use crate::net::socket::{impl_stream_traits, SocketStream};
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
    inner: SocketStream<mio::net::TcpStream>,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream").field("fd", &self.inner.fd()).finish()
    }
}

impl TcpStream {
    fn from_mio(s: mio::net::TcpStream) -> io::Result<TcpStream> {
        s.set_nodelay(true)?;
        Ok(TcpStream { inner: SocketStream::new(s) })
    }

    /// Connects to `addr` (one address; see
    /// [`open_tcp_stream`](crate::open_tcp_stream) for names and Happy
    /// Eyeballs). A checkpoint.
    pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        crate::time::checkpoint::checkpoint_if_cancelled()?;
        let stream = TcpStream::from_mio(mio::net::TcpStream::connect(addr)?)?;
        stream.inner.finish_connect().await?;
        Ok(stream)
    }

    /// Wraps a connected std stream (made non-blocking here).
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
        self.inner.receive_into(buf).await
    }

    /// Sends all of `data`. See [`SendStream::send_all`](crate::SendStream::send_all).
    pub async fn send_all(&self, data: &[u8]) -> io::Result<()> {
        self.inner.send_all(data).await
    }

    /// Sends the chunks one after the other with vectored writes (`writev`),
    /// as one `send_all`: a response head and body go out in one syscall.
    pub async fn send_all_vectored(&self, chunks: &[&[u8]]) -> io::Result<()> {
        self.inner.send_all_vectored(chunks).await
    }

    /// Sends `count` bytes of `file` from `offset` with `sendfile(2)`, so
    /// the data never enters user space. Returns the bytes sent: fewer than
    /// `count` only if the file ends first. Cancellation part-way breaks the
    /// stream for sending, as for `send_all`.
    pub async fn send_file(&self, file: &File, offset: u64, count: u64) -> io::Result<u64> {
        self.inner.send_file(file, offset, count).await
    }

    /// Closes the sending half (`shutdown(SHUT_WR)`). See
    /// [`HalfCloseableStream::send_eof`](crate::HalfCloseableStream::send_eof).
    pub async fn send_eof(&self) -> io::Result<()> {
        self.inner.send_eof().await
    }

    /// Waits until a send would probably not block.
    pub async fn wait_send_all_might_not_block(&self) -> io::Result<()> {
        self.inner.wait_send_all_might_not_block().await
    }

    /// Closes the stream now; tasks waiting on it get
    /// [`ClosedResource`](crate::ClosedResource).
    pub fn close(&self) {
        self.inner.close();
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.source.with(|s| s.local_addr())
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.source.with(|s| s.peer_addr())
    }
}

impl_stream_traits!(TcpStream);

/// The receiving half of a [`TcpStream`], from [`TcpStream::into_split`].
pub type TcpReceiveHalf = ReceiveHalf<TcpStream>;

/// The sending half of a [`TcpStream`], from [`TcpStream::into_split`]; it can
/// `send_eof`.
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
    source: Source<mio::net::TcpListener>,
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener").field("fd", &self.source.fd()).field("addr", &self.local_addr().ok()).finish()
    }
}

impl TcpListener {
    /// Binds and listens on `addr` (port 0: any free port), with
    /// `SO_REUSEADDR` and the backlog at the system's maximum.
    pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        let listener = mio::net::TcpListener::bind(addr)?;
        // mio listens with a backlog of 1024; listening again on a listening
        // socket only changes its backlog (Linux `inet_listen`).
        // SAFETY: `listen` on a socket fd we own; no memory is passed.
        syscall!(listen(listener.as_raw_fd(), LISTEN_BACKLOG))?;
        Ok(TcpListener { source: Source::new(listener) })
    }

    /// Wraps a listening std socket (made non-blocking here).
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        Ok(TcpListener { source: Source::new(mio::net::TcpListener::from_std(listener)) })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.source.with(|s| s.local_addr())
    }

    /// Waits for one connection. A checkpoint.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, addr) = self.source.op(Dir::Read, |l| Ok((l.accept()?, false))).await?;
        Ok((TcpStream::from_mio(s)?, addr))
    }

    /// Waits for connections and accepts every one already queued, up to
    /// `max` (see [`ACCEPT_BATCH`]), appending them to `out`; returns how
    /// many. The batch stops early at the first error after at least one
    /// success (the error comes again on the next call). A checkpoint.
    pub async fn accept_batch(&self, out: &mut Vec<(TcpStream, SocketAddr)>, max: usize) -> io::Result<usize> {
        self.accept_each(max, |s, addr| out.push((s, addr))).await
    }

    /// The loop under [`accept_batch`](TcpListener::accept_batch) and
    /// [`Listener::accept_many`]: hands each accepted stream to `push`.
    async fn accept_each(&self, max: usize, mut push: impl FnMut(TcpStream, SocketAddr)) -> io::Result<usize> {
        let max = max.max(1);
        let mut n = 0;
        self.source
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
    pub fn close(&self) {
        self.source.close();
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.source.fd()
    }
}

impl Resource for TcpListener {
    fn close(&self) {
        self.source.close();
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
