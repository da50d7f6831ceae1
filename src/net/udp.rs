//! UDP: [`UdpSocket`].

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use crate::kernel::io::readiness::{Dir, Source};
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
    source: Source<mio::net::UdpSocket>,
}

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket").field("fd", &self.source.fd()).finish()
    }
}

impl UdpSocket {
    /// Binds to `addr` (port 0: any free port).
    pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
        Ok(UdpSocket { source: Source::new(mio::net::UdpSocket::bind(addr)?) })
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.source.with(|s| s.local_addr())
    }

    /// Sends one datagram to `target`; returns the bytes sent.
    pub async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        self.source.op(Dir::Write, |s| Ok((s.send_to(buf, target)?, false))).await
    }

    /// Receives one datagram into `buf` (the rest of a longer datagram is
    /// discarded, as by `recvfrom(2)`); returns its length and sender.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.source.op(Dir::Read, |s| Ok((s.recv_from(buf)?, false))).await
    }

    /// Closes the socket now.
    pub fn close(&self) {
        self.source.close();
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.source.fd()
    }
}

impl Resource for UdpSocket {
    fn close(&self) {
        self.source.close();
    }
}
