//! futures-io over TLS: futures-util's `AsyncReadExt`/`AsyncWriteExt` on
//! `trioxide::tls::TlsStream` (and `&TlsStream`) over TCP, and
//! futures-rustls, the futures-io ecosystem's own TLS wrapper, running
//! over trioxide's TCP streams through their futures-io impls: against
//! itself, against a trioxide TLS server and a trioxide TLS client.
//!
//! Certificates come from an rcgen CA made when the binary runs. The runs
//! use `io_support`'s mock clock (autojump after 50 ms of real quiet)
//! inside its hang guard, with a fixed seed.

#[path = "../../tests/io_support/mod.rs"]
mod io_support;

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_rustls::{TlsAcceptor, TlsConnector};
use futures_util::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use io_support::{assert_same_bytes, pattern, run_io, tcp_pair};
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::ServerConfig;
use trioxide::tls::TlsStream;
use trioxide::{
    io_error_kind, move_on_after, open_nursery, BoxError, CancelScope, Cancelled, HalfCloseableStream, IoErrorKind,
    ReceiveStream, SendStream, TcpListener, TcpStream,
};

// ---- Certificates and configs ----

#[path = "support/pki.rs"]
mod support_pki;
use support_pki::{client_config, pki, provider};

fn server_config(alpn: &[&[u8]]) -> Arc<ServerConfig> {
    let key = PrivateKeyDer::Pkcs8(pki().key.clone().into());
    let mut s = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki().leaf.clone()], key)
        .unwrap();
    s.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(s)
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

/// A trioxide TLS client and server over a TCP pair on 127.0.0.1, not
/// handshaken.
fn tls_over_tcp() -> (TlsStream<TcpStream>, TlsStream<TcpStream>) {
    let (a, b) = tcp_pair(false);
    let client = TlsStream::client(a, client_config(&[]), localhost()).unwrap();
    let server = TlsStream::server(b, server_config(&[])).unwrap();
    (client, server)
}

// ---- trioxide's TlsStream through futures-io ----

/// `read_exact`, `write_all`, `close` (the peer's `read_to_end` ends at
/// the `close_notify` while the other direction still works), then the
/// other side's close and `read_exact` past the end.
async fn conformance<T>(mut a: T, mut b: T) -> Result<(), BoxError>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    open_nursery(|n| async move {
        n.start_soon(async move {
            let mut hello = [0u8; 5];
            b.read_exact(&mut hello).await?; // handshakes first
            assert_eq!(&hello, b"hello");
            b.write_all(b"world").await?;
            b.flush().await?; // the record goes out (TLS buffers like a BufWriter)
            let mut rest = Vec::new();
            b.read_to_end(&mut rest).await?; // until a's close_notify
            assert_eq!(rest, b" and the rest");
            b.write_all(b"after your close").await?; // still open this way
            b.close().await?;
            Ok::<_, BoxError>(())
        })?;
        a.write_all(b"hello").await?;
        a.flush().await?;
        let mut world = [0u8; 5];
        a.read_exact(&mut world).await?;
        assert_eq!(&world, b"world");
        a.write_all(b" and the rest").await?;
        a.close().await?;
        let mut tail = Vec::new();
        a.read_to_end(&mut tail).await?;
        assert_eq!(tail, b"after your close");
        let e = a.read_exact(&mut [0u8; 1]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        Ok::<_, BoxError>(())
    })
    .await?;
    Ok(())
}

#[test]
fn read_exact_write_all_and_close_over_tls_over_tcp_end_at_close_notify() {
    run_io(1, async {
        let (client, server) = tls_over_tcp();
        conformance(client, server).await
    });
}

#[test]
fn close_sends_close_notify_the_trioxide_peer_sees_the_end_and_still_answers() {
    run_io(2, async {
        let (mut client, server) = tls_over_tcp();
        let server = Rc::new(server);
        let s = server.clone();
        let got = open_nursery(|n| async move {
            n.start_soon(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 64];
                loop {
                    let k = s.receive_some(&mut buf).await?;
                    if k == 0 {
                        break; // the close_notify
                    }
                    got.extend_from_slice(&buf[..k]);
                }
                assert_eq!(got, b"request, then close");
                s.send_all(b"answer").await?;
                s.send_eof().await?;
                Ok::<_, BoxError>(())
            })?;
            client.write_all(b"request, then close").await?;
            client.close().await?;
            client.close().await?; // a second close does nothing
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await?;
            Ok::<_, BoxError>(answer)
        })
        .await?
        .expect("not cancelled");
        assert_eq!(got, b"answer");
        // The server's receive direction stays at its end.
        assert_eq!(server.receive_some(&mut [0u8; 8]).await?, 0);
        Ok(())
    });
}

#[test]
fn write_all_stays_in_rustls_until_flush_then_the_peer_gets_it() {
    run_io(8, async {
        let (mut client, server) = tls_over_tcp();
        let (shaken, ready) = futures_util::future::join(client.handshake(), server.handshake()).await;
        shaken?;
        ready?;
        client.write_all(b"buffered").await?;
        let mut buf = [0u8; 16];
        // Not on the wire yet: the receive waits until the timeout.
        assert_eq!(move_on_after(Duration::from_secs(1), server.receive_some(&mut buf)).await?, None);
        client.flush().await?;
        let k = server.receive_some(&mut buf).await?;
        assert_eq!(&buf[..k], b"buffered");
        Ok(())
    });
}

#[test]
fn shared_references_read_and_write_one_tls_stream_from_two_tasks() {
    run_io(3, async {
        let (a, b) = tls_over_tcp();
        let (a, b) = (Rc::new(a), Rc::new(b));
        let msg = pattern(5, 300 * 1024); // more than rustls and the sockets buffer
        let want = msg.clone();
        let got = open_nursery(|n| async move {
            let writer = a.clone();
            n.start_soon(async move {
                let mut w: &TlsStream<TcpStream> = &writer;
                w.write_all(&msg).await?;
                AsyncWriteExt::close(&mut w).await?; // close_notify: the echo ends
                Ok::<_, BoxError>(())
            })?;
            // The peer echoes through two references of its own.
            let (pr, pw) = (b.clone(), b);
            n.start_soon(async move {
                let (mut r, mut w): (&TlsStream<TcpStream>, &TlsStream<TcpStream>) = (&pr, &pw);
                let copied = futures_util::io::copy(&mut r, &mut w).await?;
                assert_eq!(copied, 300 * 1024);
                AsyncWriteExt::close(&mut w).await?;
                Ok::<_, BoxError>(())
            })?;
            let mut r: &TlsStream<TcpStream> = &a;
            let mut got = Vec::new();
            r.read_to_end(&mut got).await?;
            Ok::<_, BoxError>(got)
        })
        .await?
        .expect("not cancelled");
        assert_same_bytes(&got, &want);
        Ok(())
    });
}

#[test]
fn a_timeout_cancels_read_exact_over_tls_and_the_error_carries_cancelled() {
    run_io(4, async {
        let (mut client, server) = tls_over_tcp();
        // The server sends 3 of the 8 bytes the client waits for.
        let (sent, shaken) = futures_util::future::join(server.send_all(b"abc"), client.handshake()).await;
        sent?;
        shaken?;
        let mut buf = [0u8; 8];
        let out = move_on_after(Duration::from_secs(1), client.read_exact(&mut buf)).await?;
        assert_eq!(out, None, "the timeout's scope caught the cancelled read");
        let scope = CancelScope::new();
        scope.cancel();
        let inner = scope
            .run(async {
                let err = client.read_exact(&mut buf).await.unwrap_err();
                assert!(err.get_ref().is_some_and(|i| i.is::<Cancelled>()), "{err:?}");
                assert_eq!(io_error_kind(&err), Some(IoErrorKind::Cancelled));
                Err::<(), _>(err)
            })
            .await;
        assert!(matches!(inner, Ok(None)));
        Ok(())
    });
}

// ---- futures-rustls over trioxide's TCP ----

#[test]
fn futures_rustls_client_and_server_exchange_exact_bytes_over_trioxide_tcp() {
    run_io(5, async {
        let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        let up = pattern(21, 200 * 1024);
        let down = pattern(22, 150 * 1024);
        let (up2, down2) = (up.clone(), down.clone());
        let got = open_nursery(|n| async move {
            n.start_soon(async move {
                let (tcp, _) = listener.accept().await?;
                let acceptor = TlsAcceptor::from(server_config(&[b"h2", b"x-trioxide"]));
                let mut tls = acceptor.accept(tcp).await?;
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"x-trioxide"[..]));
                assert_eq!(tls.get_ref().1.server_name(), Some("localhost"));
                let mut got = Vec::new();
                tls.read_to_end(&mut got).await?; // the client's close_notify
                assert_same_bytes(&got, &up2);
                tls.write_all(&down2).await?;
                tls.close().await?;
                Ok::<_, BoxError>(())
            })?;
            let tcp = TcpStream::connect(addr).await?;
            let connector = TlsConnector::from(client_config(&[b"x-trioxide"]));
            let mut tls = connector.connect(localhost(), tcp).await?;
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"x-trioxide"[..]));
            tls.write_all(&up).await?;
            tls.close().await?; // close_notify, then the TCP half-close
            let mut got = Vec::new();
            tls.read_to_end(&mut got).await?;
            Ok::<_, BoxError>(got)
        })
        .await?
        .expect("not cancelled");
        assert_same_bytes(&got, &down);
        Ok(())
    });
}

#[test]
fn futures_rustls_client_talks_to_a_trioxide_tls_server() {
    run_io(6, async {
        let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        let up = pattern(31, 100 * 1024);
        let up2 = up.clone();
        let got = open_nursery(|n| async move {
            n.start_soon(async move {
                let (tcp, _) = listener.accept().await?;
                let tls = TlsStream::server(tcp, server_config(&[b"h2", b"http/1.1"]))?;
                tls.handshake().await?;
                assert_eq!(tls.alpn_protocol().as_deref(), Some(&b"http/1.1"[..]));
                assert_eq!(tls.server_name().as_deref(), Some("localhost")); // the client's SNI
                let mut got = Vec::new();
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let k = tls.receive_some(&mut buf).await?;
                    if k == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..k]);
                }
                assert_same_bytes(&got, &up2);
                tls.send_all(format!("got {} bytes", got.len()).as_bytes()).await?;
                tls.send_eof().await?;
                Ok::<_, BoxError>(())
            })?;
            let tcp = TcpStream::connect(addr).await?;
            let connector = TlsConnector::from(client_config(&[b"http/1.1"]));
            let mut tls = connector.connect(localhost(), tcp).await?;
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
            tls.write_all(&up).await?;
            tls.close().await?;
            let mut got = String::new();
            tls.read_to_string(&mut got).await?;
            Ok::<_, BoxError>(got)
        })
        .await?
        .expect("not cancelled");
        assert_eq!(got, "got 102400 bytes");
        Ok(())
    });
}

#[test]
fn trioxide_tls_client_talks_to_a_futures_rustls_server() {
    run_io(7, async {
        let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        let got = open_nursery(|n| async move {
            n.start_soon(async move {
                let (tcp, _) = listener.accept().await?;
                let mut tls = TlsAcceptor::from(server_config(&[b"h2"])).accept(tcp).await?;
                let mut request = [0u8; 7];
                tls.read_exact(&mut request).await?;
                assert_eq!(&request, b"request");
                tls.write_all(b"reply from futures-rustls").await?;
                tls.close().await?;
                Ok::<_, BoxError>(())
            })?;
            let tcp = TcpStream::connect(addr).await?;
            let mut tls = TlsStream::client(tcp, client_config(&[b"h2"]), localhost())?;
            tls.write_all(b"request").await?;
            tls.flush().await?;
            let mut got = Vec::new();
            tls.read_to_end(&mut got).await?; // ends at its close_notify
            assert_eq!(tls.alpn_protocol().as_deref(), Some(&b"h2"[..]));
            Ok::<_, BoxError>(got)
        })
        .await?
        .expect("not cancelled");
        assert_eq!(got, b"reply from futures-rustls");
        Ok(())
    });
}
