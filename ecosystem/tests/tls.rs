//! `trioxide::tls::TlsStream` (feature `rustls`): handshakes with a CA and
//! certificates made by rcgen at test time, ALPN and SNI, close_notify and
//! its absence, a megabyte both ways, the stream rules (busy, closed,
//! cancellation, rule I3), the conformance checks over TCP, and a handshake
//! timeout on virtual time.

#[path = "../../tests/io_support/mod.rs"]
mod io_support;

use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use io_support::{
    assert_kind, assert_same_bytes, io_clock, pattern, recv_exact, recv_to_end, run_io, run_on, tcp_pair,
};
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ServerConfig, SupportedProtocolVersion};
use trioxide::testing::{check_half_closeable_stream, check_two_way_stream, wait_all_tasks_blocked};
use trioxide::tls::TlsStream;
use trioxide::{
    current_time, fail_after, io_error_kind, move_on_after, open_nursery, BoxError, CancelScope, HalfCloseableStream,
    IoErrorKind, PollSend, ReceiveStream, Resource, SendStream, TcpStream, TooSlow, UnixStream,
};

// ---- Certificates and configs ----

#[path = "support/pki.rs"]
mod support_pki;
use support_pki::{pki, provider};

const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];

fn client_config(versions: &[&'static SupportedProtocolVersion], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki().ca.clone()).unwrap();
    let mut c = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

fn server_config(versions: &[&'static SupportedProtocolVersion], alpn: &[&[u8]]) -> Arc<ServerConfig> {
    let key = PrivateKeyDer::Pkcs8(pki().key.clone().into());
    let mut s = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
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

/// A client and a server `TlsStream` over `transport`, not handshaken.
fn wrap<S: trioxide::PollReceive + PollSend>(
    (a, b): (S, S),
    versions: &[&'static SupportedProtocolVersion],
    name: ServerName<'static>,
) -> (TlsStream<S>, TlsStream<S>) {
    let client = TlsStream::client(a, client_config(versions, &[]), name).unwrap();
    let server = TlsStream::server(b, server_config(versions, &[])).unwrap();
    (client, server)
}

/// Runs `a` and `b` at once in the calling task; both outputs.
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut ra, mut rb) = (None, None);
    poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        match (ra.take(), rb.take()) {
            (Some(x), Some(y)) => Poll::Ready((x, y)),
            (x, y) => {
                (ra, rb) = (x, y);
                Poll::Pending
            }
        }
    })
    .await
}

/// A handshaken TLS 1.3 pair over a loopback TCP pair.
async fn tls_tcp_pair() -> io::Result<(TlsStream<TcpStream>, TlsStream<TcpStream>)> {
    let (client, server) = wrap(tcp_pair(false), TLS13, localhost());
    let (c, s) = join(client.handshake(), server.handshake()).await;
    c?;
    s?;
    Ok((client, server))
}

/// The rustls error inside an `InvalidData` error.
fn rustls_error(e: &io::Error) -> &rustls::Error {
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "not a TLS protocol error: {e:?}");
    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).expect("a rustls::Error inside")
}

// ---- Handshake, ALPN, SNI ----

#[test]
fn tls_over_tcp_agrees_on_h2_by_alpn_the_server_sees_sni_and_data_flows_both_ways() {
    run_io(1, async {
        let (c, s) = tcp_pair(false);
        let client = TlsStream::client(c, client_config(TLS13, &[b"h2", b"http/1.1"]), localhost())?;
        let server = TlsStream::server(s, server_config(TLS13, &[b"h2", b"http/1.1"]))?;
        assert!(!client.is_handshake_complete());
        assert_eq!(server.server_name(), None, "no ClientHello yet");
        let (hc, hs) = join(client.handshake(), server.handshake()).await;
        hc?;
        hs?;
        assert!(client.is_handshake_complete() && server.is_handshake_complete());
        assert_eq!(client.alpn_protocol().as_deref(), Some(&b"h2"[..]));
        assert_eq!(server.alpn_protocol().as_deref(), Some(&b"h2"[..]));
        assert_eq!(server.server_name().as_deref(), Some("localhost"));
        assert_eq!(client.server_name().as_deref(), Some("localhost"));
        assert_eq!(client.with_connection(|c| c.protocol_version()), Some(rustls::ProtocolVersion::TLSv1_3));

        client.send_all(b"ping").await?;
        assert_eq!(recv_exact(&server, 4).await?, b"ping");
        server.send_all(b"pong!").await?;
        assert_eq!(recv_exact(&client, 5).await?, b"pong!");
        Ok(())
    });
}

#[test]
fn the_server_picks_the_first_of_its_own_alpn_protocols_the_client_offers() {
    run_io(1, async {
        let (c, s) = tcp_pair(false);
        let client = TlsStream::client(c, client_config(TLS13, &[b"http/1.1", b"h2"]), localhost())?;
        let server = TlsStream::server(s, server_config(TLS13, &[b"h2", b"http/1.1"]))?;
        let (hc, hs) = join(client.handshake(), server.handshake()).await;
        hc?;
        hs?;
        assert_eq!(client.alpn_protocol().as_deref(), Some(&b"h2"[..]));
        Ok(())
    });
}

#[test]
fn tls_over_a_unix_stream_pair_handshakes_implicitly_on_first_send_and_receive() {
    run_io(1, async {
        let (client, server) = wrap(UnixStream::pair()?, TLS13, localhost());
        // No explicit handshake: the send and the receive run it.
        let (sent, got) = join(client.send_all(b"over unix"), recv_exact(&server, 9)).await;
        sent?;
        assert_eq!(got?, b"over unix");
        assert!(client.is_handshake_complete() && server.is_handshake_complete());
        Ok(())
    });
}

#[test]
fn a_wrong_hostname_fails_the_client_handshake_with_invalid_data_and_the_server_gets_the_alert() {
    run_io(1, async {
        let wrong = ServerName::try_from("not-localhost.example").unwrap();
        let (client, server) = wrap(tcp_pair(false), TLS13, wrong);
        let (hc, hs) = join(client.handshake(), server.handshake()).await;
        let ce = hc.unwrap_err();
        assert!(
            matches!(
                rustls_error(&ce),
                rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. })
            ),
            "client: {ce:?}"
        );
        let se = hs.unwrap_err();
        assert_eq!(
            rustls_error(&se),
            &rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate),
            "server: {se:?}"
        );
        // Reported once; then the stream is broken for good.
        assert_kind(&client.send_all(b"x").await, IoErrorKind::Broken);
        assert_kind(&client.receive_some(&mut [0u8; 8]).await, IoErrorKind::Broken);
        assert_kind(&server.handshake().await, IoErrorKind::Broken);
        assert!(!client.is_handshake_complete());
        Ok(())
    });
}

#[test]
fn a_client_that_trusts_another_ca_rejects_the_certificate() {
    run_io(1, async {
        let (c, s) = tcp_pair(false);
        let roots = rustls::RootCertStore::empty();
        let cfg = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(TLS13)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = TlsStream::client(c, Arc::new(cfg), localhost())?;
        let server = TlsStream::server(s, server_config(TLS13, &[]))?;
        let (hc, hs) = join(client.handshake(), server.handshake()).await;
        let ce = hc.unwrap_err();
        assert_eq!(rustls_error(&ce), &rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer));
        assert_eq!(rustls_error(&hs.unwrap_err()), &rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA));
        Ok(())
    });
}

#[test]
fn garbage_on_the_wire_is_invalid_data_once_then_broken_resource() {
    run_io(1, async {
        let (c, s) = tcp_pair(false);
        let server = TlsStream::server(s, server_config(TLS13, &[]))?;
        c.send_all(b"GET / HTTP/1.1\r\n\r\n").await?;
        let e = server.receive_some(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(rustls_error(&e), &rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType));
        assert_kind(&server.receive_some(&mut [0u8; 8]).await, IoErrorKind::Broken);
        assert_kind(&server.send_all(b"x").await, IoErrorKind::Broken);
        Ok(())
    });
}

// ---- The end of the stream ----

#[test]
fn send_eof_sends_close_notify_the_peer_reads_the_data_then_zero_and_can_still_answer() {
    for versions in [TLS13, TLS12] {
        run_io(1, async {
            let (client, server) = tls_tcp_pair_with(versions).await?;
            client.send_all(b"request").await?;
            client.send_eof().await?;
            client.send_eof().await?; // a second one does nothing
            assert_kind(&client.send_all(b"more").await, IoErrorKind::Closed);
            assert_eq!(recv_to_end(&server).await?, b"request");
            assert_eq!(server.receive_some(&mut [0u8; 8]).await?, 0, "0 again");
            server.send_all(b"response").await?;
            server.send_eof().await?;
            assert_eq!(recv_to_end(&client).await?, b"response");
            Ok(())
        });
    }
}

async fn tls_tcp_pair_with(
    versions: &[&'static SupportedProtocolVersion],
) -> io::Result<(TlsStream<TcpStream>, TlsStream<TcpStream>)> {
    let (client, server) = wrap(tcp_pair(false), versions, localhost());
    let (c, s) = join(client.handshake(), server.handshake()).await;
    c?;
    s?;
    let want = if versions == TLS12 { rustls::ProtocolVersion::TLSv1_2 } else { rustls::ProtocolVersion::TLSv1_3 };
    assert_eq!(client.with_connection(|c| c.protocol_version()), Some(want));
    Ok((client, server))
}

#[test]
fn close_sends_close_notify_when_the_transport_takes_it_so_the_peer_reads_zero() {
    run_io(1, async {
        let (client, server) = tls_tcp_pair().await?;
        client.send_all(b"last").await?;
        client.close();
        assert_eq!(recv_to_end(&server).await?, b"last");
        Ok(())
    });
}

#[test]
fn a_transport_end_without_close_notify_is_unexpected_eof_carrying_broken_resource() {
    run_io(1, async {
        // No session tickets: a client that closes with the tickets unread
        // in its socket would reset the connection instead of ending it.
        let (client, server) = tls_tcp_pair_without_tickets().await?;
        client.send_all(b"cut").await?;
        drop(client.into_inner()); // the TCP connection ends, no close_notify
        assert_eq!(recv_exact(&server, 3).await?, b"cut");
        for _ in 0..2 {
            let e = server.receive_some(&mut [0u8; 8]).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
            assert_eq!(io_error_kind(&e), Some(IoErrorKind::Broken));
        }
        Ok(())
    });
}

/// [`tls_tcp_pair`] with a server that sends no TLS 1.3 session tickets,
/// so nothing is left unread on the client's side after the handshake.
async fn tls_tcp_pair_without_tickets() -> io::Result<(TlsStream<TcpStream>, TlsStream<TcpStream>)> {
    let mut config = (*server_config(TLS13, &[])).clone();
    config.send_tls13_tickets = 0;
    let (c, s) = tcp_pair(false);
    let client = TlsStream::client(c, client_config(TLS13, &[]), localhost()).map_err(io::Error::other)?;
    let server = TlsStream::server(s, Arc::new(config)).map_err(io::Error::other)?;
    let (hc, hs) = join(client.handshake(), server.handshake()).await;
    hc?;
    hs?;
    Ok((client, server))
}

#[test]
fn ignore_missing_close_notify_turns_a_bare_transport_end_into_zero() {
    run_io(1, async {
        let (client, server) = tls_tcp_pair_without_tickets().await?;
        let server = server.ignore_missing_close_notify(true);
        client.send_all(b"cut").await?;
        drop(client.into_inner());
        assert_eq!(recv_to_end(&server).await?, b"cut");
        assert_eq!(server.receive_some(&mut [0u8; 8]).await?, 0, "0 again");
        Ok(())
    });
}

#[test]
fn a_transport_end_during_the_handshake_is_unexpected_eof_and_breaks_the_stream() {
    run_io(1, async {
        let (c, s) = tcp_pair(false);
        let server = TlsStream::server(s, server_config(TLS13, &[]))?;
        drop(c);
        let e = server.handshake().await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(io_error_kind(&e), Some(IoErrorKind::Broken));
        assert_kind(&server.receive_some(&mut [0u8; 8]).await, IoErrorKind::Broken);
        Ok(())
    });
}

// ---- Volume ----

#[test]
fn one_mebibyte_each_way_at_once_arrives_exactly() {
    const LEN: usize = 1 << 20;
    run_io(1, async {
        let (client, server) = tls_tcp_pair().await?;
        let (client, server) = (Rc::new(client), Rc::new(server));
        let got = Rc::new(std::cell::RefCell::new((Vec::new(), Vec::new())));
        let g = got.clone();
        open_nursery(|n| async move {
            for (tx, rx, seed, slot) in [(client.clone(), server.clone(), 1, 0), (server, client, 2, 1)] {
                n.start_soon(async move {
                    tx.send_all(&pattern(seed, LEN)).await?;
                    tx.send_eof().await?;
                    Ok::<_, BoxError>(())
                })?;
                let g = g.clone();
                n.start_soon(async move {
                    let data = recv_to_end(&*rx).await?;
                    let mut g = g.borrow_mut();
                    if slot == 0 {
                        g.0 = data;
                    } else {
                        g.1 = data;
                    }
                    Ok::<_, BoxError>(())
                })?;
            }
            Ok::<_, BoxError>(())
        })
        .await?;
        let got = got.borrow();
        assert_same_bytes(&got.0, &pattern(1, LEN));
        assert_same_bytes(&got.1, &pattern(2, LEN));
        Ok(())
    });
}

// ---- The stream rules ----

#[test]
fn a_receive_cancelled_while_waiting_loses_nothing_and_one_cancelled_before_takes_nothing() {
    run_io(1, async {
        let (client, server) = tls_tcp_pair().await?;
        let mut buf = [0u8; 16];
        // Waiting, then cancelled by a timeout: nothing to lose yet.
        let r = move_on_after(Duration::from_secs(1), server.receive_some(&mut buf)).await;
        assert!(matches!(r, Ok(None)), "{r:?}");
        client.send_all(b"abcdef").await?;
        // Data decrypted and waiting in rustls: a cancelled receive leaves it there.
        wait_all_tasks_blocked().await?;
        let scope = CancelScope::new();
        scope.cancel();
        assert!(matches!(scope.run(server.receive_some(&mut buf)).await, Ok(None)));
        let n = server.receive_some(&mut buf[..3]).await?;
        assert_eq!(&buf[..n], b"abc");
        let scope = CancelScope::new();
        scope.cancel();
        assert!(matches!(scope.run(server.receive_some(&mut buf)).await, Ok(None)));
        assert_eq!(recv_exact(&server, 3).await?, b"def");
        Ok(())
    });
}

#[test]
fn two_receivers_or_two_senders_at_once_one_gets_busy_resource() {
    run_io(1, async {
        let (client, server) = tls_tcp_pair().await?;
        let (client, server) = (Rc::new(client), Rc::new(server));
        let busy = Rc::new(std::cell::Cell::new((false, false)));
        let (c, s, b) = (client.clone(), server.clone(), busy.clone());
        open_nursery(|n| async move {
            // A receive that waits (the server sends nothing yet).
            let c1 = c.clone();
            n.start_soon(async move {
                assert_eq!(recv_exact(&*c1, 2).await?, b"ok");
                Ok::<_, BoxError>(())
            })?;
            // A send that blocks: 4 MiB to a peer that does not read.
            let c2 = c.clone();
            let cancel = CancelScope::new();
            let cancel_big = cancel.clone();
            n.start_soon(async move {
                let r = cancel.run(c2.send_all(&vec![1u8; 4 << 20])).await;
                assert!(matches!(r, Ok(None)), "the big send is cancelled at the end: {r:?}");
                Ok::<_, BoxError>(())
            })?;
            wait_all_tasks_blocked().await?;
            let receive = c.receive_some(&mut [0u8; 4]).await;
            let send = c.send_all(b"x").await;
            let eof = c.send_eof().await;
            let wait = c.wait_send_all_might_not_block().await;
            for r in [receive.map(drop), send, eof, wait] {
                assert_kind(&r, IoErrorKind::Busy);
            }
            b.set((true, true));
            cancel_big.cancel();
            s.send_all(b"ok").await?; // releases the first receiver
            Ok::<_, BoxError>(())
        })
        .await?;
        assert_eq!(busy.get(), (true, true));
        // The big send was cut part-way: sending is broken (rule I3), and
        // close sends no close_notify that would vouch for the cut data.
        assert_kind(&client.send_all(b"y").await, IoErrorKind::Broken);
        assert_kind(&client.send_eof().await, IoErrorKind::Broken);
        client.close();
        let mut total = 0;
        let e = loop {
            match server.receive_some(&mut vec![0u8; 65536]).await {
                Ok(0) => panic!("a clean end after a cut send_all"),
                Ok(n) => total += n,
                Err(e) => break e,
            }
        };
        assert!(total > 0 && total < 4 << 20, "{total}");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        Ok(())
    });
}

#[test]
fn after_close_every_operation_is_closed_resource_and_a_blocked_receive_wakes_with_it() {
    run_io(1, async {
        let (client, server) = tls_tcp_pair().await?;
        let server = Rc::new(server);
        let s = server.clone();
        open_nursery(|n| async move {
            let s1 = s.clone();
            n.start_soon(async move {
                assert_kind(&s1.receive_some(&mut [0u8; 8]).await, IoErrorKind::Closed);
                Ok::<_, BoxError>(())
            })?;
            wait_all_tasks_blocked().await?;
            s.close();
            s.close(); // twice is fine
            Ok::<_, BoxError>(())
        })
        .await?;
        assert_kind(&server.receive_some(&mut [0u8; 8]).await, IoErrorKind::Closed);
        assert_kind(&server.send_all(b"x").await, IoErrorKind::Closed);
        assert_kind(&server.send_eof().await, IoErrorKind::Closed);
        assert_kind(&server.handshake().await, IoErrorKind::Closed);
        assert_kind(&server.wait_send_all_might_not_block().await, IoErrorKind::Closed);
        // The server's close sent close_notify: the client reads the end.
        assert_eq!(client.receive_some(&mut [0u8; 8]).await?, 0);
        Ok(())
    });
}

#[test]
fn a_cancelled_handshake_loses_nothing_and_the_next_call_finishes_it() {
    run_io(1, async {
        let (client, server) = wrap(tcp_pair(false), TLS13, localhost());
        // The server is not running: the client sends its hello and waits.
        let r = move_on_after(Duration::from_secs(1), client.handshake()).await;
        assert!(matches!(r, Ok(None)), "{r:?}");
        assert!(!client.is_handshake_complete());
        // The server answers the hello already sent; the client goes on.
        let (c, s) = join(client.handshake(), server.handshake()).await;
        c?;
        s?;
        client.send_all(b"after").await?;
        assert_eq!(recv_exact(&server, 5).await?, b"after");
        Ok(())
    });
}

#[test]
fn a_handshake_with_a_silent_client_times_out_at_exactly_the_virtual_deadline() {
    let clock = io_clock();
    run_on(7, clock, async {
        let (_silent, s) = tcp_pair(false);
        let server = TlsStream::server(s, server_config(TLS13, &[]))?;
        let start = current_time();
        let r = fail_after(Duration::from_secs(10), server.handshake()).await;
        let e = r.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.get_ref().is_some_and(|inner| inner.is::<TooSlow>()), "{e:?}");
        assert_eq!(current_time(), start + Duration::from_secs(10));
        Ok(())
    });
}

// ---- The conformance checks over TLS over TCP ----

#[test]
fn tls_over_tcp_passes_check_two_way_stream() {
    for seed in [1, 2] {
        run_io(seed, async {
            if let Err(e) = check_two_way_stream(tls_tcp_pair, None).await {
                panic!("seed {seed}: {e}");
            }
            Ok(())
        });
    }
}

#[test]
fn tls_over_tcp_passes_check_half_closeable_stream() {
    for seed in [1, 2] {
        run_io(seed, async {
            if let Err(e) = check_half_closeable_stream(tls_tcp_pair, None).await {
                panic!("seed {seed}: {e}");
            }
            Ok(())
        });
    }
}
