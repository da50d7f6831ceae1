//! TLS over any trioxide stream (Trio's `SSLStream`), with
//! [rustls](https://docs.rs/rustls) on the ring crypto provider: feature
//! `rustls`.
//!
//! A [`TlsStream`] wraps a transport (a [`TcpStream`](crate::TcpStream), a
//! [`UnixStream`](crate::UnixStream), anything with the poll-level
//! [`PollReceive`] and [`PollSend`]) and is itself a trioxide stream: a
//! [`HalfCloseableStream`] whose operations keep every rule the socket ones
//! keep (checkpoints, `BusyResource`, `ClosedResource`, rule I3), and a
//! `PollReceive + PollSend` for code written against poll traits (hyper).
//!
//! * **The handshake** runs on the first operation that needs it, or
//!   explicitly with [`handshake`](TlsStream::handshake) (to see its
//!   errors apart, or to put a timeout on it). A cancelled handshake loses
//!   nothing: rustls keeps the state and the transport's poll layer never
//!   half-sends, so a later operation goes on from where it stopped.
//! * **The end of the stream** is TLS's `close_notify`:
//!   [`send_eof`](HalfCloseableStream::send_eof) sends it (the peer's
//!   `receive_some` then returns 0, and data still flows the other way),
//!   and [`close`](Resource::close) sends it if the transport takes it at
//!   once, then closes the transport. A transport that ends *without* a
//!   `close_notify` may be an attacker cutting the data short: the receive
//!   fails with an [`UnexpectedEof`](io::ErrorKind::UnexpectedEof) error
//!   carrying [`BrokenResource`](crate::BrokenResource), unless
//!   [`ignore_missing_close_notify`](TlsStream::ignore_missing_close_notify)
//!   is set (Trio's `https_compatible`, for HTTPS peers that just close).
//! * **Errors**: a TLS protocol error (a bad certificate, a wrong name, an
//!   alert from the peer) is an [`InvalidData`](io::ErrorKind::InvalidData)
//!   error with the [`rustls::Error`] inside, reported once; the stream is
//!   then broken and every later operation fails with `BrokenResource`.
//!   Transport errors come through as they are.
//!
//! ```no_run
//! # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
//! # use support::*;
//! use rustls::pki_types::ServerName;
//! use trioxide::tls::TlsStream;
//! use trioxide::{open_nursery, run, BoxError, HalfCloseableStream, ReceiveStream, SendStream, TcpListener, TcpStream};
//!
//! // `test_configs` reads a CA and a "localhost" certificate from PEM files;
//! // a real client would use webpki-roots or the system's roots.
//! let (client_config, server_config) = test_configs(&[b"h2", b"http/1.1"]);
//! run(open_nursery(|n| async move {
//!     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
//!     let addr = listener.local_addr()?;
//!     n.start_soon(async move {
//!         let (tcp, _) = listener.accept().await?;
//!         let tls = TlsStream::server(tcp, server_config)?;
//!         let mut request = Vec::new();
//!         let mut buf = [0u8; 1024];
//!         loop {
//!             let got = tls.receive_some(&mut buf).await?; // handshakes first
//!             if got == 0 { break; } // the client's close_notify
//!             request.extend_from_slice(&buf[..got]);
//!         }
//!         tls.send_all(&request).await?; // an echo
//!         tls.send_eof().await?;
//!         Ok::<_, BoxError>(())
//!     })?;
//!     let tcp = TcpStream::connect(addr).await?;
//!     let tls = TlsStream::client(tcp, client_config, ServerName::try_from("localhost")?)?;
//!     tls.handshake().await?;
//!     assert_eq!(tls.alpn_protocol().as_deref(), Some(&b"h2"[..]));
//!     tls.send_all(b"hello over TLS").await?;
//!     tls.send_eof().await?; // half-close: the answer still comes back
//!     let mut answer = Vec::new();
//!     let mut buf = [0u8; 1024];
//!     loop {
//!         let got = tls.receive_some(&mut buf).await?;
//!         if got == 0 { break; }
//!         answer.extend_from_slice(&buf[..got]);
//!     }
//!     assert_eq!(answer, b"hello over TLS");
//!     Ok::<_, BoxError>(())
//! })).unwrap();
//! ```

mod engine;

use std::cell::Cell;
use std::fmt;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use crate::kernel::budget::after_io;
use crate::kernel::error::{BusyResource, Cancelled, ClosedResource};
use crate::kernel::Core;
use crate::stream::poll::{PollReceive, PollSend};
use crate::stream::{HalfCloseableStream, ReceiveStream, Resource, SendStream};
use engine::{Engine, Eof, Role};

/// A TLS session over a transport stream: Trio's `SSLStream`, on rustls.
/// See [the module docs](self) for the handshake, the end of the stream
/// and errors.
///
/// Made with [`client`](Self::client) or [`server`](Self::server), which do
/// no I/O; the handshake happens on first use or with
/// [`handshake`](Self::handshake). One task may receive while another
/// sends (the directions are independent, as on a socket).
///
/// ```no_run
/// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
/// # use support::*;
/// use trioxide::{run, BoxError, ReceiveStream, SendStream};
/// run(async {
///     let (client, server) = tls_pair()?; // over UnixStream::pair(), see the module docs
///     let (sent, received) = join(client.send_all(b"secret"), async {
///         let mut buf = [0u8; 16];
///         let n = server.receive_some(&mut buf).await?;
///         Ok::<_, std::io::Error>(buf[..n].to_vec())
///     }).await;
///     sent?;
///     assert_eq!(received?, b"secret");
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub struct TlsStream<S> {
    engine: Engine<S>,
    /// The name a client connects to (a DNS name or an IP address).
    client_name: Option<String>,
    receiving: Cell<bool>,
    sending: Cell<bool>,
    handshaking: Cell<bool>,
    /// A poll-level call yielded before its attempt (the schedule point
    /// of the poll layer); the next one attempts. Receive, send.
    poll_yielded: [Cell<bool>; 2],
}

/// A direction claimed by an `async fn` operation (rule I1); released on drop.
struct Claim<'a>(&'a Cell<bool>);

impl<'a> Claim<'a> {
    fn new(flag: &'a Cell<bool>) -> io::Result<Self> {
        if flag.replace(true) {
            return Err(BusyResource.into());
        }
        Ok(Claim(flag))
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// Marks the sending direction broken if dropped while `cut` (a
/// `send_all` that handed rustls part of its data, then stopped).
struct SendProgress<'a, S: PollReceive + PollSend> {
    engine: &'a Engine<S>,
    cut: bool,
}

impl<S: PollReceive + PollSend> Drop for SendProgress<'_, S> {
    fn drop(&mut self) {
        if self.cut {
            self.engine.send_broken.set(true);
        }
    }
}

/// The error of an operation whose scope is cancelled.
fn cancelled() -> io::Result<()> {
    if Core::current().is_cancelled() {
        return Err(Cancelled.into());
    }
    Ok(())
}

impl<S: PollReceive + PollSend> TlsStream<S> {
    fn new(transport: S, conn: Connection, client_name: Option<String>) -> Self {
        TlsStream {
            engine: Engine::new(transport, conn),
            client_name,
            receiving: Cell::new(false),
            sending: Cell::new(false),
            handshaking: Cell::new(false),
            poll_yielded: [Cell::new(false), Cell::new(false)],
        }
    }

    /// The client side of a TLS session over `transport`, for the server
    /// `server_name` (checked against its certificate, and sent as SNI
    /// when it is a DNS name). No I/O: the handshake comes later. Fails
    /// only if `config` cannot make a session (no usable protocol version).
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use rustls::pki_types::ServerName;
    /// use trioxide::tls::TlsStream;
    /// use trioxide::{run, BoxError, UnixStream};
    /// run(async {
    ///     let (client_config, _) = test_configs(&[]);
    ///     let (a, _b) = UnixStream::pair()?;
    ///     let tls = TlsStream::client(a, client_config, ServerName::try_from("localhost")?)?;
    ///     assert_eq!(tls.server_name().as_deref(), Some("localhost"));
    ///     assert!(!tls.is_handshake_complete());
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn client(
        transport: S,
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> Result<Self, rustls::Error> {
        let name = server_name.to_str().into_owned();
        let conn = ClientConnection::new(config, server_name)?;
        Ok(Self::new(transport, Connection::Client(conn), Some(name)))
    }

    /// The server side of a TLS session over `transport`. No I/O: the
    /// handshake comes later.
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use trioxide::tls::TlsStream;
    /// use trioxide::{run, BoxError, UnixStream};
    /// run(async {
    ///     let (_, server_config) = test_configs(&[]);
    ///     let (_a, b) = UnixStream::pair()?;
    ///     let tls = TlsStream::server(b, server_config)?;
    ///     assert_eq!(tls.server_name(), None); // no ClientHello yet
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn server(transport: S, config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        let conn = ServerConnection::new(config)?;
        Ok(Self::new(transport, Connection::Server(conn), None))
    }

    /// Accepts a transport that ends without `close_notify` as the end of
    /// the stream (`receive_some` returns 0) instead of an error: Trio's
    /// `https_compatible`. HTTPS peers often just close the connection,
    /// and HTTP frames its own messages, so a cut is seen there anyway;
    /// for any protocol that relies on the end of the stream, leave it off
    /// (a cut stream would look complete). Off by default.
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use trioxide::{run, BoxError, ReceiveStream};
    /// run(async {
    ///     let (client, server) = tls_pair()?;
    ///     let client = client.ignore_missing_close_notify(true);
    ///     let (done, ready) = join(client.handshake(), server.handshake()).await;
    ///     done?;
    ///     ready?;
    ///     let tcp_only = server.into_inner(); // dropped below without close_notify
    ///     drop(tcp_only);
    ///     assert_eq!(client.receive_some(&mut [0u8; 8]).await?, 0); // the end, not an error
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn ignore_missing_close_notify(self, ignore: bool) -> Self {
        self.engine.ignore_missing_close_notify.set(ignore);
        self
    }

    /// Runs the handshake to its end (Trio's `do_handshake`); at once if
    /// it is done already. Other operations run it themselves when needed:
    /// call this to tell handshake errors apart or bound it with a
    /// timeout. A checkpoint; `BusyResource` during another `handshake`
    /// of this stream (a `receive_some` or `send_all` may run alongside: they
    /// all drive the same handshake). Cancelled part-way, it loses
    /// nothing: the next operation goes on with it.
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use trioxide::{run, BoxError};
    /// run(async {
    ///     let (client, server) = tls_pair()?;
    ///     let (c, s) = join(client.handshake(), server.handshake()).await;
    ///     c?;
    ///     s?;
    ///     assert!(client.is_handshake_complete() && server.is_handshake_complete());
    ///     client.handshake().await?; // done already: at once
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn handshake(&self) -> io::Result<()> {
        self.engine.check_usable()?;
        let _claim = Claim::new(&self.handshaking)?;
        cancelled()?;
        self.drive(Role::Handshake, |cx| self.engine.poll_handshake(cx, Role::Handshake)).await
    }

    /// Whether the handshake is over (successfully).
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use trioxide::{run, BoxError};
    /// run(async {
    ///     let (client, server) = tls_pair()?;
    ///     assert!(!client.is_handshake_complete());
    ///     let (c, s) = join(client.handshake(), server.handshake()).await;
    ///     c?;
    ///     s?;
    ///     assert!(client.is_handshake_complete());
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn is_handshake_complete(&self) -> bool {
        !self.engine.conn.borrow().is_handshaking() && self.engine.broken.get().is_none()
    }

    /// The application protocol agreed by ALPN, once the handshake has
    /// got that far; `None` if the peers agreed on none.
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use trioxide::{run, BoxError};
    /// run(async {
    ///     let (client, server) = tls_pair()?; // configs without ALPN
    ///     let (c, s) = join(client.handshake(), server.handshake()).await;
    ///     c?;
    ///     s?;
    ///     assert_eq!(client.alpn_protocol(), None);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn alpn_protocol(&self) -> Option<Vec<u8>> {
        self.engine.conn.borrow().alpn_protocol().map(<[u8]>::to_vec)
    }

    /// The server's name: on a client, the one it was made for; on a
    /// server, the one the client sent (SNI), once its hello has come
    /// (`None` if it sent none, as for an IP address).
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use trioxide::{run, BoxError};
    /// run(async {
    ///     let (client, server) = tls_pair()?; // for "localhost"
    ///     let (c, s) = join(client.handshake(), server.handshake()).await;
    ///     c?;
    ///     s?;
    ///     assert_eq!(server.server_name().as_deref(), Some("localhost"));
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn server_name(&self) -> Option<String> {
        if let Some(name) = &self.client_name {
            return Some(name.clone());
        }
        match &*self.engine.conn.borrow() {
            Connection::Server(conn) => conn.server_name().map(str::to_owned),
            Connection::Client(_) => None,
        }
    }

    /// Calls `f` with rustls's session: for what the accessors here do not
    /// cover (the peer's certificates, the protocol version, the cipher
    /// suite, keying material).
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use trioxide::{run, BoxError};
    /// run(async {
    ///     let (client, server) = tls_pair()?;
    ///     let (c, s) = join(client.handshake(), server.handshake()).await;
    ///     c?;
    ///     s?;
    ///     let version = client.with_connection(|c| c.protocol_version());
    ///     assert_eq!(version, Some(rustls::ProtocolVersion::TLSv1_3));
    ///     let chain = client.with_connection(|c| c.peer_certificates().map(|certs| certs.len()));
    ///     assert_eq!(chain, Some(1)); // the leaf; the CA is the client's
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn with_connection<R>(&self, f: impl FnOnce(&Connection) -> R) -> R {
        f(&self.engine.conn.borrow())
    }

    /// The transport.
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use std::os::fd::AsRawFd;
    /// use trioxide::{run, BoxError};
    /// run(async {
    ///     let (client, _server) = tls_pair()?;
    ///     assert!(client.get_ref().as_raw_fd() >= 0);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.engine.transport
    }

    /// Takes the transport back, dropping the TLS session: whatever rustls
    /// still held (received records not yet read, records not yet sent)
    /// is lost, and no `close_notify` is sent.
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use trioxide::{run, BoxError, ReceiveStream};
    /// run(async {
    ///     let (client, server) = tls_pair()?;
    ///     let (c, s) = join(client.handshake(), server.handshake()).await;
    ///     c?;
    ///     s?;
    ///     let raw = client.into_inner();
    ///     raw.send_all(b"not a TLS record").await?;
    ///     let e = server.receive_some(&mut [0u8; 8]).await.unwrap_err();
    ///     assert_eq!(e.kind(), std::io::ErrorKind::InvalidData); // rustls refuses it
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn into_inner(self) -> S {
        self.engine.transport
    }
}

impl<S: fmt::Debug> fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = match &*self.engine.conn.borrow() {
            Connection::Client(_) => "client",
            Connection::Server(_) => "server",
        };
        f.debug_struct("TlsStream")
            .field("side", &side)
            .field("handshaking", &self.engine.conn.borrow().is_handshaking())
            .field("closed", &self.engine.closed.get())
            .field("broken", &self.engine.broken.get())
            .field("transport", &self.engine.transport)
            .finish_non_exhaustive()
    }
}

impl<S: PollReceive + PollSend> Resource for TlsStream<S> {
    /// Sends `close_notify` if the session is up and the transport takes
    /// it at once (no waiting: `close` is immediate), then closes the
    /// transport. For a `close_notify` that surely goes out, await
    /// [`send_eof`](HalfCloseableStream::send_eof) first. Nothing is sent
    /// after a cut `send_all` or a protocol error, and a dropped stream
    /// sends nothing.
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use trioxide::{io_error_kind, run, BoxError, IoErrorKind, ReceiveStream, Resource, SendStream};
    /// run(async {
    ///     let (client, server) = tls_pair()?;
    ///     let (c, s) = join(client.handshake(), server.handshake()).await;
    ///     c?;
    ///     s?;
    ///     client.close();
    ///     assert_eq!(server.receive_some(&mut [0u8; 8]).await?, 0); // its close_notify
    ///     let e = client.send_all(b"late").await.unwrap_err();
    ///     assert_eq!(io_error_kind(&e), Some(IoErrorKind::Closed));
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn close(&self) {
        self.engine.close();
    }
}

impl<S: PollReceive + PollSend> ReceiveStream for TlsStream<S> {
    /// Receives plaintext, running the handshake first if it has not run.
    /// 0 after the peer's `close_notify`; an error if the transport ended
    /// without one (see [the module docs](self)). A cancelled receive has
    /// taken nothing: decrypted data stays in rustls until returned.
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use trioxide::{run, BoxError, CancelScope, HalfCloseableStream, ReceiveStream, SendStream};
    /// run(async {
    ///     let (client, server) = tls_pair()?;
    ///     let (sent, _) = join(async { client.send_all(b"abc").await?; client.send_eof().await }, server.handshake()).await;
    ///     sent?;
    ///     let scope = CancelScope::new();
    ///     scope.cancel();
    ///     let mut buf = [0u8; 8];
    ///     assert!(matches!(scope.run(server.receive_some(&mut buf)).await, Ok(None)));
    ///     let n = server.receive_some(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"abc"); // nothing was lost
    ///     assert_eq!(server.receive_some(&mut buf).await?, 0);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    async fn receive_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "receive_some needs a non-empty buffer"));
        }
        self.engine.check_usable()?;
        let _claim = Claim::new(&self.receiving)?;
        cancelled()?;
        self.drive(Role::Receive, |cx| self.engine.poll_receive(cx, buf)).await
    }
}

impl<S: PollReceive + PollSend> SendStream for TlsStream<S> {
    /// Encrypts all of `data` and hands the records to the transport,
    /// running the handshake first if it has not run. Stopped part-way
    /// (cancelled, or a transport error), it leaves the sending direction
    /// broken (rule I3): rustls may hold part of the data, and no
    /// `close_notify` may then vouch for it.
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use trioxide::{run, BoxError, ReceiveStream, SendStream};
    /// run(async {
    ///     let (client, server) = tls_pair()?;
    ///     let (sent, got) = join(client.send_all(&[7u8; 100_000]), async {
    ///         let mut got = Vec::new();
    ///         let mut buf = [0u8; 16384];
    ///         while got.len() < 100_000 {
    ///             let n = server.receive_some(&mut buf).await?;
    ///             got.extend_from_slice(&buf[..n]);
    ///         }
    ///         Ok::<_, std::io::Error>(got)
    ///     }).await;
    ///     sent?;
    ///     assert_eq!(got?, vec![7u8; 100_000]);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    async fn send_all(&self, data: &[u8]) -> io::Result<()> {
        self.engine.check_usable()?;
        let _claim = Claim::new(&self.sending)?;
        self.engine.check_send()?;
        cancelled()?;
        let mut progress = SendProgress { engine: &self.engine, cut: false };
        let mut sent = 0;
        let mut suspended = false;
        let r = poll_fn(|cx| loop {
            let p = if sent < data.len() {
                match self.engine.poll_send(cx, &[IoSlice::new(&data[sent..])]) {
                    Poll::Ready(Ok(n)) => {
                        sent += n;
                        progress.cut = true;
                        continue;
                    }
                    other => other.map_ok(drop),
                }
            } else {
                self.engine.poll_flush_tls(cx, Some(Role::Send))
            };
            suspended |= p.is_pending();
            return p;
        })
        .await;
        self.engine.forget(Role::Send);
        r?;
        progress.cut = false;
        if !suspended {
            after_io().await;
        }
        Ok(())
    }

    /// Runs the handshake if it has not run and pushes out the records
    /// rustls holds: then a `send_all` of up to rustls's buffer (64 KiB by
    /// default) would go no further than the transport's buffer. A
    /// checkpoint, and a send for `BusyResource`.
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use trioxide::{run, BoxError, SendStream};
    /// run(async {
    ///     let (client, server) = tls_pair()?;
    ///     let (ready, _) = join(client.wait_send_all_might_not_block(), server.handshake()).await;
    ///     ready?;
    ///     assert!(client.is_handshake_complete());
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    async fn wait_send_all_might_not_block(&self) -> io::Result<()> {
        self.engine.check_usable()?;
        let _claim = Claim::new(&self.sending)?;
        if self.engine.eof.get() != Eof::Open {
            return Err(ClosedResource.into());
        }
        cancelled()?;
        self.drive(Role::Send, |cx| {
            if self.engine.conn.borrow().is_handshaking() {
                self.engine.poll_handshake(cx, Role::Send)
            } else {
                self.engine.poll_flush_tls(cx, Some(Role::Send))
            }
        })
        .await
    }
}

impl<S: PollReceive + PollSend> HalfCloseableStream for TlsStream<S> {
    /// Sends `close_notify` and waits until the transport has taken it:
    /// the peer's `receive_some` returns 0 after the data, while data
    /// still flows this way. The transport itself stays open both ways
    /// (TLS ends the stream; a transport half-close would add nothing, and
    /// some transports can only close). Runs the handshake first if it
    /// has not run. A second call does nothing; after a cut `send_all` it
    /// fails with `BrokenResource`.
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use trioxide::{run, BoxError, HalfCloseableStream, ReceiveStream, SendStream};
    /// run(async {
    ///     let (client, server) = tls_pair()?;
    ///     let (eof, _) = join(client.send_eof(), server.handshake()).await;
    ///     eof?;
    ///     assert_eq!(server.receive_some(&mut [0u8; 8]).await?, 0);
    ///     server.send_all(b"still open").await?; // the other direction
    ///     let mut buf = [0u8; 16];
    ///     let n = client.receive_some(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"still open");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    async fn send_eof(&self) -> io::Result<()> {
        self.engine.check_usable()?;
        let _claim = Claim::new(&self.sending)?;
        cancelled()?;
        self.drive(Role::Send, |cx| self.engine.poll_send_eof(cx)).await
    }
}

impl<S: PollReceive + PollSend> TlsStream<S> {
    /// Runs one `async fn` operation at the poll level to its end and gives
    /// it the async layer's schedule point: the engine forgets `role`'s
    /// waker once it is done, and an operation that never suspended passes
    /// `after_io` (rule I2; not a cancel point, so no result is lost).
    async fn drive<T>(
        &self,
        role: Role,
        mut poll: impl FnMut(&mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> io::Result<T> {
        let mut suspended = false;
        let r = poll_fn(|cx| {
            let p = poll(cx);
            suspended |= p.is_pending();
            p
        })
        .await;
        self.engine.forget(role);
        let value = r?;
        if !suspended {
            after_io().await;
        }
        Ok(value)
    }

    /// The checks every poll-level call makes first: closed, an `async fn`
    /// operation holding the direction, cancellation.
    fn poll_checks(&self, busy: &Cell<bool>) -> io::Result<()> {
        if self.engine.closed.get() {
            return Err(ClosedResource.into());
        }
        if busy.get() {
            return Err(BusyResource.into());
        }
        cancelled()
    }

    /// The poll layer's schedule point, before the attempt: `true` if the
    /// call should return `Pending` now (and has been woken).
    fn yield_first(&self, dir: usize, cx: &mut Context<'_>) -> bool {
        let yielded = &self.poll_yielded[dir];
        if yielded.get() {
            yielded.set(false);
            return false;
        }
        if Core::current().should_yield_before_poll_op() {
            yielded.set(true);
            cx.waker().wake_by_ref();
            return true;
        }
        false
    }
}

impl<S: PollReceive + PollSend> PollReceive for TlsStream<S> {
    /// Receives plaintext at the poll level; see
    /// [`receive_some`](ReceiveStream::receive_some) for the end of the
    /// stream and errors, and [`PollReceive`] for the rules of the layer.
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use std::future::poll_fn;
    /// use trioxide::{run, BoxError, PollReceive, SendStream};
    /// run(async {
    ///     let (client, server) = tls_pair()?;
    ///     let mut buf = [0u8; 8];
    ///     let (sent, got) = join(client.send_all(b"polled"), poll_fn(|cx| server.poll_receive(cx, &mut buf))).await;
    ///     sent?;
    ///     assert_eq!(&buf[..got?], b"polled");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn poll_receive(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.poll_checks(&self.receiving)?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.yield_first(0, cx) {
            return Poll::Pending;
        }
        let p = self.engine.poll_receive(cx, buf);
        self.poll_yielded[0].set(p.is_pending());
        p
    }
}

impl<S: PollReceive + PollSend> TlsStream<S> {
    fn poll_send_bufs(&self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        self.poll_checks(&self.sending)?;
        if self.yield_first(1, cx) {
            return Poll::Pending;
        }
        let p = self.engine.poll_send(cx, bufs);
        self.poll_yielded[1].set(p.is_pending());
        p
    }
}

impl<S: PollReceive + PollSend> PollSend for TlsStream<S> {
    /// Hands a prefix of `data` to rustls, which encrypts it into records
    /// it keeps until [`poll_flush`](PollSend::poll_flush) (or a full
    /// buffer, 64 KiB by default) sends them; runs the handshake first.
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use std::future::poll_fn;
    /// use trioxide::{run, BoxError, PollSend, ReceiveStream};
    /// run(async {
    ///     let (client, server) = tls_pair()?;
    ///     let send = async {
    ///         let n = poll_fn(|cx| client.poll_send(cx, b"buffered")).await?;
    ///         poll_fn(|cx| client.poll_flush(cx)).await?; // now it is on its way
    ///         Ok::<_, std::io::Error>(n)
    ///     };
    ///     let mut buf = [0u8; 16];
    ///     let (n, got) = join(send, server.receive_some(&mut buf)).await;
    ///     assert_eq!(n?, 8);
    ///     assert_eq!(&buf[..got?], b"buffered");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn poll_send(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_send_bufs(cx, &[IoSlice::new(data)])
    }

    /// All of `bufs` go into records in one call, as far as rustls's
    /// buffer takes them.
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use std::future::poll_fn;
    /// use std::io::IoSlice;
    /// use trioxide::{run, BoxError, PollSend, ReceiveStream};
    /// run(async {
    ///     let (client, server) = tls_pair()?;
    ///     let bufs = [IoSlice::new(b"head "), IoSlice::new(b"body")];
    ///     let send = async {
    ///         let n = poll_fn(|cx| client.poll_send_vectored(cx, &bufs)).await?;
    ///         poll_fn(|cx| client.poll_flush(cx)).await?;
    ///         Ok::<_, std::io::Error>(n)
    ///     };
    ///     let mut buf = [0u8; 16];
    ///     let (n, got) = join(send, server.receive_some(&mut buf)).await;
    ///     assert_eq!(n?, 9);
    ///     assert_eq!(&buf[..got?], b"head body");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn poll_send_vectored(&self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        self.poll_send_bufs(cx, bufs)
    }

    /// True: rustls gathers the buffers into its records.
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use trioxide::{run, BoxError, PollSend};
    /// run(async {
    ///     let (client, _server) = tls_pair()?;
    ///     assert!(client.is_send_vectored());
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn is_send_vectored(&self) -> bool {
        true
    }

    /// Sends the records rustls holds; ready when it holds none.
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use std::future::poll_fn;
    /// use trioxide::{run, BoxError, PollSend};
    /// run(async {
    ///     let (client, _server) = tls_pair()?;
    ///     poll_fn(|cx| client.poll_flush(cx)).await?; // the ClientHello is queued: it goes out
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_checks(&self.sending)?;
        let p = self.engine.poll_flush_tls(cx, Some(Role::Send));
        if p.is_ready() {
            self.engine.forget(Role::Send);
        }
        p
    }

    /// [`send_eof`](HalfCloseableStream::send_eof) at the poll level:
    /// `close_notify`, flushed.
    ///
    /// ```no_run
    /// # mod support { include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/doc_support.rs")); }
    /// # use support::*;
    /// use std::future::poll_fn;
    /// use trioxide::{run, BoxError, PollSend, ReceiveStream};
    /// run(async {
    ///     let (client, server) = tls_pair()?;
    ///     let mut buf = [0u8; 8];
    ///     let (eof, got) = join(poll_fn(|cx| client.poll_send_eof(cx)), server.receive_some(&mut buf)).await;
    ///     eof?;
    ///     assert_eq!(got?, 0);
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn poll_send_eof(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_checks(&self.sending)?;
        let p = self.engine.poll_send_eof(cx);
        if p.is_ready() {
            self.engine.forget(Role::Send);
        }
        p
    }
}
