//! UDP: [`UdpSocket`].

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use crate::kernel::io::readiness::{Dir, Source};
use crate::sim::net::udp::SimUdp;
use crate::stream::Resource;

/// A UDP socket. `send_to` and `recv_from` are checkpoints; one task may
/// send while another receives.
///
/// ```
/// use trioxide::{run, UdpSocket, BoxError};
/// run(async {
///     let a = UdpSocket::bind("127.0.0.1:0".parse()?)?;
///     let b = UdpSocket::bind("127.0.0.1:0".parse()?)?;
///     a.send_to(b"hi", b.local_addr()?).await?;
///     let mut buf = [0u8; 16];
///     let (n, from) = b.recv_from(&mut buf).await?;
///     assert_eq!((&buf[..n], from), (&b"hi"[..], a.local_addr()?));
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub struct UdpSocket {
    inner: UdpInner,
}

/// A real socket, or one on the simulated network (`trioxide::sim`).
enum UdpInner {
    Real(Source<mio::net::UdpSocket>),
    Sim(SimUdp),
}

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket").field("fd", &self.as_raw_fd()).finish()
    }
}

impl UdpSocket {
    /// Binds to `addr` (port 0: any free port).
    ///
    /// ```
    /// use trioxide::{run, BoxError, UdpSocket};
    /// run(async {
    ///     let socket = UdpSocket::bind("127.0.0.1:0".parse()?)?;
    ///     assert_ne!(socket.local_addr()?.port(), 0);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
        if let Some(net) = crate::sim::net::active() {
            return Ok(UdpSocket { inner: UdpInner::Sim(SimUdp::bind(net, addr)?) });
        }
        Ok(UdpSocket { inner: UdpInner::Real(Source::new(mio::net::UdpSocket::bind(addr)?)) })
    }

    /// The local address.
    ///
    /// ```
    /// use trioxide::{run, BoxError, UdpSocket};
    /// run(async {
    ///     let socket = UdpSocket::bind("127.0.0.1:0".parse()?)?;
    ///     assert!(socket.local_addr()?.ip().is_loopback());
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.inner {
            UdpInner::Real(source) => source.with(|s| s.local_addr()),
            UdpInner::Sim(s) => Ok(s.local_addr()),
        }
    }

    /// Sends one datagram to `target`; returns the bytes sent.
    ///
    /// ```
    /// use trioxide::{run, BoxError, UdpSocket};
    /// run(async {
    ///     let (a, b) = (UdpSocket::bind("127.0.0.1:0".parse()?)?, UdpSocket::bind("127.0.0.1:0".parse()?)?);
    ///     assert_eq!(a.send_to(b"one", b.local_addr()?).await?, 3);
    ///     a.send_to(b"two", b.local_addr()?).await?;
    ///     let mut buf = [0u8; 8];
    ///     // Datagrams keep their boundaries.
    ///     assert_eq!(b.recv_from(&mut buf).await?.0, 3);
    ///     assert_eq!(&buf[..3], b"one");
    ///     assert_eq!(b.recv_from(&mut buf).await?.0, 3);
    ///     assert_eq!(&buf[..3], b"two");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        match &self.inner {
            UdpInner::Real(source) => source.op(Dir::Write, |s| Ok((s.send_to(buf, target)?, false))).await,
            UdpInner::Sim(s) => Box::pin(s.send_to(buf, target)).await,
        }
    }

    /// Receives one datagram into `buf` (the rest of a longer datagram is
    /// discarded, as by `recvfrom(2)`); returns its length and sender.
    ///
    /// ```
    /// use trioxide::{run, BoxError, UdpSocket};
    /// run(async {
    ///     let (a, b) = (UdpSocket::bind("127.0.0.1:0".parse()?)?, UdpSocket::bind("127.0.0.1:0".parse()?)?);
    ///     a.send_to(b"a long datagram", b.local_addr()?).await?;
    ///     let mut small = [0u8; 6];
    ///     let (n, from) = b.recv_from(&mut small).await?;
    ///     assert_eq!((&small[..n], from), (&b"a long"[..], a.local_addr()?)); // the rest is discarded
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match &self.inner {
            UdpInner::Real(source) => source.op(Dir::Read, |s| Ok((s.recv_from(buf)?, false))).await,
            UdpInner::Sim(s) => Box::pin(s.recv_from(buf)).await,
        }
    }

    /// Closes the socket now.
    ///
    /// ```
    /// use trioxide::{io_error_kind, run, BoxError, IoErrorKind, UdpSocket};
    /// run(async {
    ///     let socket = UdpSocket::bind("127.0.0.1:0".parse()?)?;
    ///     socket.close();
    ///     let e = socket.recv_from(&mut [0u8; 8]).await.unwrap_err();
    ///     assert_eq!(io_error_kind(&e), Some(IoErrorKind::Closed));
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn close(&self) {
        match &self.inner {
            UdpInner::Real(source) => source.close(),
            UdpInner::Sim(s) => s.close(),
        }
    }
}

/// The fd; -1 for a socket on the simulated network (it has none).
impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        match &self.inner {
            UdpInner::Real(source) => source.fd(),
            UdpInner::Sim(_) => -1,
        }
    }
}

impl Resource for UdpSocket {
    fn close(&self) {
        UdpSocket::close(self);
    }
}
