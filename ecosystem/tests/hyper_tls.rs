//! hyper over TLS: `HyperIo<TlsStream<TcpStream>>` on 127.0.0.1, HTTP/1.1
//! and HTTP/2 chosen by ALPN (the server tells hyper-util's auto builder
//! which one the handshake agreed on; with no ALPN the builder tells them
//! apart by the HTTP/2 preface), with hyper's client connections; exact
//! bodies and versions, a graceful shutdown, and no task, timer or task
//! allocation left when the run ends.
//!
//! Time is a `MockClock` that jumps after 50 ms of real quiet; every test
//! runs under a virtual `fail_after` guard, so a hang fails it instead of
//! blocking. Certificates come from an rcgen CA made when the binary runs.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Version};
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::ServerConfig;
use trioxide::hyper::{cancel_aware, server_builder, HyperIo, NurseryExecutor};
use trioxide::sync::Event;
use trioxide::tls::TlsStream;
use trioxide::{
    fail_after, open_nursery, wait_all_tasks_blocked, BoxError, Builder, MockClock, Nursery, RunReport, TcpListener,
    TcpStream,
};

const HANG_GUARD: Duration = Duration::from_secs(3600);

// ---- Certificates and configs ----

#[path = "support/pki.rs"]
mod support_pki;
use support_pki::{client_config, pki, provider};

/// The server offers HTTP/2 first, then HTTP/1.1.
fn server_config() -> Arc<ServerConfig> {
    let key = PrivateKeyDer::Pkcs8(pki().key.clone().into());
    let mut s = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki().leaf.clone()], key)
        .unwrap();
    s.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(s)
}

const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
const H1_ONLY: &[&[u8]] = &[b"http/1.1"];

// ---- Runs ----

fn builder() -> Builder {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::from_millis(50)));
    Builder::new().seed(7).clock(clock)
}

/// Runs `main` in a nursery under the hang guard; what the run left.
fn run_test<F>(main: impl FnOnce(Nursery) -> F + 'static) -> RunReport
where
    F: std::future::Future<Output = Result<(), BoxError>> + 'static,
{
    let (out, report) = builder().run_with_report(fail_after(HANG_GUARD, async move {
        open_nursery(|n| async move { main(n).await }).await?;
        Ok::<_, BoxError>(())
    }));
    out.unwrap();
    report
}

fn assert_nothing_left(report: RunReport) {
    assert_eq!((report.tasks_left, report.timers_left, report.task_allocations_left), (0, 0, 0));
}

// ---- The server ----

/// Method, path, version and body.
async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, BoxError> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut text = format!("{} {} {:?} ", parts.method, parts.uri.path(), parts.version).into_bytes();
    text.extend_from_slice(&body);
    Ok(Response::new(Full::new(Bytes::from(text))))
}

/// How serving a connection ended.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    /// No error.
    Clean,
    /// The client closed its socket while the server still had something
    /// to write: `EPIPE` or `ECONNRESET`. HTTP/2 only, and a race: hyper's
    /// client connection ends as soon as it is dropped or has read the
    /// server's GOAWAY, and its socket closes with server frames unread
    /// (a PING, a SETTINGS acknowledgement), so the kernel resets it and
    /// the server's last write (its final GOAWAY, its `close_notify`)
    /// fails.
    PeerGone,
    Failed(String),
}

fn end_of(out: Result<(), BoxError>) -> End {
    let Err(e) = out else { return End::Clean };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            // An OS error carries no payload (h2 keeps only its kind);
            // trioxide's BrokenResource, also a BrokenPipe, does.
            if matches!(io.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset)
                && io.get_ref().is_none()
            {
                return End::PeerGone;
            }
        }
        source = err.source();
    }
    End::Failed(format!("{e:?}"))
}

/// Whether an HTTP/2 connection went well (see [`End::PeerGone`]).
fn client_ended_h2_well(end: &End) -> bool {
    matches!(end, End::Clean | End::PeerGone)
}

/// Per connection: the protocol ALPN agreed on, and how serving it ended.
type Log = Rc<RefCell<Vec<(Option<Vec<u8>>, End)>>>;

/// TLS handshake, then hyper-util's auto builder restricted to what ALPN
/// chose (`h2`: HTTP/2 only, `http/1.1`: HTTP/1 only, none: told apart by
/// the HTTP/2 preface). Until the connection ends, or `stop` is set: then
/// a graceful shutdown.
async fn serve_tls(tcp: TcpStream, stop: Rc<Event>, log: Log) -> Result<(), BoxError> {
    let tls = TlsStream::server(tcp, server_config())?;
    tls.handshake().await?;
    let alpn = tls.alpn_protocol();
    let mut end = End::Clean;
    let e = &mut end;
    open_nursery(|streams| {
        let alpn = alpn.clone();
        async move {
            let builder = match alpn.as_deref() {
                Some(b"h2") => server_builder(&streams).http2_only(),
                Some(b"http/1.1") => server_builder(&streams).http1_only(),
                _ => server_builder(&streams),
            };
            let mut conn = pin!(builder.serve_connection(HyperIo::new(tls), service_fn(echo)));
            let stopped = {
                let mut stopped = pin!(stop.wait());
                poll_fn(|cx| {
                    if let Poll::Ready(out) = conn.as_mut().poll(cx) {
                        return Poll::Ready(Some(out));
                    }
                    stopped.as_mut().poll(cx).map(|_| None)
                })
                .await
            };
            let out = match stopped {
                Some(out) => cancel_aware(async { out }).await,
                None => {
                    conn.as_mut().graceful_shutdown();
                    cancel_aware(conn).await
                }
            };
            *e = end_of(out);
            Ok::<_, BoxError>(())
        }
    })
    .await?;
    log.borrow_mut().push((alpn, end));
    Ok(())
}

/// A TLS server in `n`: its address, the stop event and its log.
fn start_server(n: &Nursery) -> std::io::Result<(SocketAddr, Rc<Event>, Log)> {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap())?;
    let addr = listener.local_addr()?;
    let (stop, log) = (Rc::new(Event::new()), Log::default());
    let (s, l, conns) = (stop.clone(), log.clone(), n.clone());
    n.start_soon(async move {
        loop {
            let (tcp, _) = listener.accept().await?;
            conns.start_soon(serve_tls(tcp, s.clone(), l.clone()))?;
        }
        #[allow(unreachable_code)]
        Ok::<_, BoxError>(())
    })
    .unwrap();
    Ok((addr, stop, log))
}

// ---- The client ----

/// A TLS client for "localhost" offering `alpn`, handshaken.
async fn connect(addr: SocketAddr, alpn: &[&[u8]]) -> Result<TlsStream<TcpStream>, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    let tls = TlsStream::client(tcp, client_config(alpn), ServerName::try_from("localhost")?)?;
    tls.handshake().await?;
    Ok(tls)
}

fn post(path: &str, body: String) -> Request<Full<Bytes>> {
    Request::builder().method("POST").uri(path).body(Full::new(Bytes::from(body))).unwrap()
}

async fn answer(resp: Response<Incoming>) -> Result<(Version, StatusCode, String), BoxError> {
    let (version, status) = (resp.version(), resp.status());
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((version, status, String::from_utf8(body.to_vec())?))
}

/// Three POSTs at once on one HTTP/2 connection over `tls`; the answers in
/// request order.
async fn h2_requests(tls: TlsStream<TcpStream>) -> Result<Vec<(Version, StatusCode, String)>, BoxError> {
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    open_nursery(|c| async move {
        let (sender, conn) = hyper::client::conn::http2::handshake(NurseryExecutor::new(&c), HyperIo::new(tls)).await?;
        c.start_soon(cancel_aware(conn))?;
        for i in 0..3 {
            let (mut sender, g) = (sender.clone(), g.clone());
            c.start_soon(async move {
                let resp = sender.send_request(post("/echo", format!("stream {i}"))).await?;
                let got = answer(resp).await?;
                g.borrow_mut().push((i, got));
                Ok::<_, BoxError>(())
            })?;
        }
        Ok::<_, BoxError>(()) // the last sender goes: the connection ends
    })
    .await?;
    let mut got = got.take();
    got.sort_by_key(|(i, _)| *i);
    Ok(got.into_iter().map(|(_, a)| a).collect())
}

/// A GET and a POST on one HTTP/1.1 connection over `io`.
async fn h1_requests<I>(io: I) -> Result<Vec<(Version, StatusCode, String)>, BoxError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
{
    open_nursery(|c| async move {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        c.start_soon(conn)?;
        let mut got = Vec::new();
        let get = Request::builder().uri("/hello").body(Full::new(Bytes::new()))?;
        got.push(answer(sender.send_request(get).await?).await?);
        sender.ready().await?;
        got.push(answer(sender.send_request(post("/echo", "a body over TLS".into())).await?).await?);
        Ok::<_, BoxError>(got)
    })
    .await?
    .ok_or_else(|| "cancelled".into())
}

fn h2_want() -> Vec<(Version, StatusCode, String)> {
    (0..3).map(|i| (Version::HTTP_2, StatusCode::OK, format!("POST /echo HTTP/2.0 stream {i}"))).collect()
}

fn h1_want() -> Vec<(Version, StatusCode, String)> {
    vec![
        (Version::HTTP_11, StatusCode::OK, "GET /hello HTTP/1.1 ".to_string()),
        (Version::HTTP_11, StatusCode::OK, "POST /echo HTTP/1.1 a body over TLS".to_string()),
    ]
}

// ---- Tests ----

#[test]
fn alpn_h2_serves_http2_streams_over_tls_with_exact_bodies() {
    let report = run_test(|n| async move {
        let (addr, _stop, log) = start_server(&n)?;
        let tls = connect(addr, H2_AND_H1).await?;
        assert_eq!(tls.alpn_protocol().as_deref(), Some(&b"h2"[..]));
        assert_eq!(h2_requests(tls).await?, h2_want());
        wait_all_tasks_blocked().await?; // the server saw the connection end
        let log = log.take();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].0.as_deref(), Some(&b"h2"[..]));
        assert!(client_ended_h2_well(&log[0].1), "{log:?}");
        n.cancel_scope().cancel();
        Ok(())
    });
    assert_nothing_left(report);
}

#[test]
fn alpn_http1_serves_http1_over_tls_with_exact_bodies() {
    let report = run_test(|n| async move {
        let (addr, _stop, log) = start_server(&n)?;
        let tls = connect(addr, H1_ONLY).await?;
        assert_eq!(tls.alpn_protocol().as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(h1_requests(HyperIo::new(tls)).await?, h1_want());
        wait_all_tasks_blocked().await?;
        assert_eq!(*log.borrow(), [(Some(b"http/1.1".to_vec()), End::Clean)]);
        n.cancel_scope().cancel();
        Ok(())
    });
    assert_nothing_left(report);
}

#[test]
fn without_alpn_the_auto_builder_tells_http1_from_http2_by_the_preface() {
    let report = run_test(|n| async move {
        let (addr, _stop, log) = start_server(&n)?;
        let tls = connect(addr, &[]).await?;
        assert_eq!(tls.alpn_protocol(), None);
        assert_eq!(h2_requests(tls).await?, h2_want()); // prior knowledge
        let tls = connect(addr, &[]).await?;
        assert_eq!(h1_requests(HyperIo::new(tls)).await?, h1_want());
        wait_all_tasks_blocked().await?;
        let log = log.take();
        assert_eq!(log.len(), 2);
        assert!(log[0].0.is_none() && client_ended_h2_well(&log[0].1), "{log:?}");
        assert_eq!(log[1], (None, End::Clean));
        n.cancel_scope().cancel();
        Ok(())
    });
    assert_nothing_left(report);
}

#[test]
fn http1_and_http2_clients_share_one_tls_server_at_once() {
    let report = run_test(|n| async move {
        let (addr, _stop, log) = start_server(&n)?;
        let (h2, h1) = (connect(addr, H2_AND_H1).await?, connect(addr, H1_ONLY).await?);
        let (got2, got1) = futures_util::future::join(h2_requests(h2), h1_requests(HyperIo::new(h1))).await;
        assert_eq!((got2?, got1?), (h2_want(), h1_want()));
        wait_all_tasks_blocked().await?;
        let mut seen = log.take();
        seen.sort();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].0.as_deref(), Some(&b"h2"[..]));
        assert!(client_ended_h2_well(&seen[0].1), "{seen:?}");
        assert_eq!(seen[1], (Some(b"http/1.1".to_vec()), End::Clean));
        n.cancel_scope().cancel();
        Ok(())
    });
    assert_nothing_left(report);
}

#[test]
fn graceful_shutdown_ends_idle_tls_connections_of_both_protocols_and_leaves_no_task() {
    let report = run_test(|n| async move {
        let (addr, stop, log) = start_server(&n)?;
        // Two idle keep-alive connections, one of each protocol, with
        // their client connection tasks still running.
        let ended = Rc::new(RefCell::new(Vec::new()));
        open_nursery(|c| {
            let (ended, log) = (ended.clone(), log.clone());
            async move {
                let tls = connect(addr, H2_AND_H1).await?;
                let (mut h2, conn) =
                    hyper::client::conn::http2::handshake(NurseryExecutor::new(&c), HyperIo::new(tls)).await?;
                let e = ended.clone();
                c.start_soon(async move {
                    let out = conn.await.map_err(|e| e.to_string());
                    e.borrow_mut().push(("h2", out));
                })?;
                let resp = h2.send_request(post("/echo", "before".into())).await?;
                assert_eq!(answer(resp).await?, (Version::HTTP_2, StatusCode::OK, "POST /echo HTTP/2.0 before".into()));

                let tls = connect(addr, H1_ONLY).await?;
                let (mut h1, conn) = hyper::client::conn::http1::handshake(HyperIo::new(tls)).await?;
                let e = ended.clone();
                c.start_soon(async move {
                    let out = conn.await.map_err(|e| e.to_string());
                    e.borrow_mut().push(("h1", out));
                })?;
                let resp = h1.send_request(post("/echo", "before".into())).await?;
                assert_eq!(
                    answer(resp).await?,
                    (Version::HTTP_11, StatusCode::OK, "POST /echo HTTP/1.1 before".into())
                );

                wait_all_tasks_blocked().await?;
                assert!(log.borrow().is_empty(), "both connections are open and idle");
                stop.set(); // the server shuts both down gracefully
                Ok::<_, BoxError>(()) // the senders stay alive until the nursery ends
            }
        })
        .await?;
        let mut ended = ended.take();
        ended.sort();
        assert_eq!(ended, [("h1", Ok(())), ("h2", Ok(()))], "both client connections ended cleanly");
        wait_all_tasks_blocked().await?; // and the server's ends are logged
        let mut seen = log.take();
        seen.sort();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].0.as_deref(), Some(&b"h2"[..]));
        assert!(client_ended_h2_well(&seen[0].1), "{seen:?}");
        assert_eq!(seen[1], (Some(b"http/1.1".to_vec()), End::Clean));
        n.cancel_scope().cancel();
        Ok(())
    });
    assert_nothing_left(report);
}
