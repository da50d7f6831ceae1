//! hyper 1.x on trioxide (`trioxide::hyper`, feature `hyper`): servers and
//! clients over real sockets on 127.0.0.1 and over `UnixStream::pair`,
//! HTTP/1 and HTTP/2 through hyper-util's auto builder, cancellation,
//! graceful shutdown, bad input and hyper's timeouts in virtual time.
//!
//! Time is a `MockClock` that jumps after 50 ms of real quiet (with 0 it
//! would jump while loopback data is in flight, see tests/http_shutdown.rs);
//! every test runs under a virtual `fail_after` guard, so a hang fails it
//! instead of blocking.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::rt::{Read, Write};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::server::conn::auto;
use trioxide::channel::MemoryReceiveChannel;
use trioxide::hyper::{cancel_aware, server_builder, HyperIo, NurseryExecutor};
use trioxide::sync::Event;
use trioxide::{
    current_time, fail_after, is_cancelled_error, open_memory_channel, open_nursery, sleep, wait_all_tasks_blocked,
    BoxError, Builder, CancelScope, Instant, MockClock, Nursery, PollReceive, PollSend, Resource, RunReport,
    TcpListener, TcpStream, UnixStream,
};

const HANG_GUARD: Duration = Duration::from_secs(3600);

/// A builder with a seed and a mock clock that jumps after 50 ms of quiet.
fn builder() -> Builder {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::from_millis(50)));
    Builder::new().seed(7).clock(clock)
}

/// Runs `main` under the hang guard and reports what the run left.
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

/// The answer of [`echo`]: method, path, version and body.
async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, BoxError> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut text = format!("{} {} {:?} ", parts.method, parts.uri.path(), parts.version).into_bytes();
    text.extend_from_slice(&body);
    Ok(Response::new(Full::new(Bytes::from(text))))
}

type Log = Rc<RefCell<Vec<Result<(), String>>>>;

/// Serves one connection with the auto builder (configured by
/// `configure`) and [`echo`]; its HTTP/2 streams are children of a nursery
/// of its own.
async fn serve_conn<I>(io: I, configure: fn(&mut auto::Builder<NurseryExecutor>)) -> Result<(), BoxError>
where
    I: Read + Write + Unpin + 'static,
{
    open_nursery(|n| async move {
        let mut builder = server_builder(&n);
        configure(&mut builder);
        cancel_aware(builder.serve_connection(io, service_fn(echo))).await
    })
    .await?;
    Ok(())
}

fn defaults(_: &mut auto::Builder<NurseryExecutor>) {}

/// Accepts forever on `listener`, one task of `n` per connection; each
/// connection's outcome goes to `log` (an error does not stop the server).
async fn accept_loop(
    listener: TcpListener,
    n: Nursery,
    log: Log,
    configure: fn(&mut auto::Builder<NurseryExecutor>),
) -> Result<(), BoxError> {
    loop {
        let (stream, _) = listener.accept().await?;
        let log = log.clone();
        n.start_soon(async move {
            let out = serve_conn(stream, configure).await;
            log.borrow_mut().push(out.map_err(|e| e.to_string()));
        })?;
    }
}

/// Starts a server in `n`; returns its address and connection log.
fn start_server(n: &Nursery, configure: fn(&mut auto::Builder<NurseryExecutor>)) -> io::Result<(SocketAddr, Log)> {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap())?;
    let addr = listener.local_addr()?;
    let log = Log::default();
    n.start_soon(accept_loop(listener, n.clone(), log.clone(), configure)).unwrap();
    Ok((addr, log))
}

/// An HTTP/1 client on `io`, its connection task in `n`.
async fn http1_client<I, B>(n: &Nursery, io: I) -> Result<hyper::client::conn::http1::SendRequest<B>, BoxError>
where
    I: Read + Write + Unpin + 'static,
    B: Body + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    n.start_soon(conn)?;
    Ok(sender)
}

fn request(method: &str, path: &str, body: &'static [u8]) -> Request<Full<Bytes>> {
    Request::builder().method(method).uri(path).body(Full::new(Bytes::from_static(body))).unwrap()
}

async fn text(resp: Response<Incoming>) -> Result<(StatusCode, String), BoxError> {
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8(body.to_vec())?))
}

/// GET and POST on one HTTP/1 connection: exact statuses and bodies.
async fn get_and_post<I: Read + Write + Unpin + 'static>(n: &Nursery, io: I) -> Result<(), BoxError> {
    let mut sender = http1_client(n, io).await?;
    let resp = sender.send_request(request("GET", "/hello", b"")).await?;
    assert_eq!(resp.version(), Version::HTTP_11);
    assert_eq!(text(resp).await?, (StatusCode::OK, "GET /hello HTTP/1.1 ".to_string()));
    sender.ready().await?;
    let resp = sender.send_request(request("POST", "/echo", b"a body of 20 bytes!!")).await?;
    assert_eq!(text(resp).await?, (StatusCode::OK, "POST /echo HTTP/1.1 a body of 20 bytes!!".to_string()));
    Ok(())
}

#[test]
fn http1_get_and_post_round_trip_exact_bodies_over_tcp() {
    let report = run_test(|n| async move {
        let (addr, log) = start_server(&n, defaults)?;
        let client = open_nursery(|c| async move { get_and_post(&c, TcpStream::connect(addr).await?).await }).await?;
        assert_eq!(client, Some(()));
        wait_all_tasks_blocked().await?; // the server saw the client's end
        assert_eq!(*log.borrow(), [Ok(())]);
        n.cancel_scope().cancel();
        Ok(())
    });
    assert_nothing_left(report);
}

#[test]
fn http1_get_and_post_round_trip_exact_bodies_over_unix_stream_pair() {
    let report = run_test(|n| async move {
        let (server_io, client_io) = UnixStream::pair()?;
        let served = Rc::new(Cell::new(None));
        let s = served.clone();
        n.start_soon(async move { s.set(Some(serve_conn(server_io, defaults).await.map_err(|e| e.to_string()))) })?;
        open_nursery(|c| async move { get_and_post(&c, client_io).await }).await?;
        wait_all_tasks_blocked().await?;
        assert_eq!(served.take(), Some(Ok(())));
        Ok(())
    });
    assert_nothing_left(report);
}

/// A stream of our own with the poll layer, to pin `HyperIo<T>` for any
/// `T: PollReceive + PollSend` (a TLS stream's shape).
struct Wrapped(UnixStream, Rc<Cell<usize>>);

impl Resource for Wrapped {
    fn close(&self) {
        self.0.close()
    }
}

impl PollReceive for Wrapped {
    fn poll_receive(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.1.set(self.1.get() + 1);
        self.0.poll_receive(cx, buf)
    }
}

impl PollSend for Wrapped {
    fn poll_send(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.0.poll_send(cx, data)
    }

    fn poll_send_eof(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_send_eof(cx)
    }
}

#[test]
fn hyper_io_wrapper_serves_http1_over_any_poll_stream() {
    let report = run_test(|n| async move {
        let (server_io, client_io) = UnixStream::pair()?;
        let polls = Rc::new(Cell::new(0));
        let server_io = HyperIo::new(Wrapped(server_io, polls.clone()));
        assert!(!Write::is_write_vectored(&server_io)); // `Wrapped` has no writev
        n.start_soon(serve_conn(server_io, defaults))?;
        open_nursery(|c| async move { get_and_post(&c, HyperIo::new(Wrapped(client_io, Rc::default()))).await })
            .await?;
        assert!(polls.get() >= 2, "the server received through Wrapped ({} polls)", polls.get());
        Ok(())
    });
    assert_nothing_left(report);
}

#[test]
fn http1_keep_alive_serves_three_requests_on_one_connection() {
    let report = run_test(|n| async move {
        let (addr, log) = start_server(&n, defaults)?;
        open_nursery(|c| async move {
            let stream = TcpStream::connect(addr).await?;
            let local = stream.local_addr()?;
            let mut sender = http1_client(&c, stream).await?;
            for i in 0..3 {
                sender.ready().await?;
                let path = format!("/req/{i}");
                let req = Request::builder().uri(&path).body(Full::new(Bytes::new()))?;
                let resp = sender.send_request(req).await?;
                assert_eq!(text(resp).await?, (StatusCode::OK, format!("GET {path} HTTP/1.1 ")));
            }
            assert_ne!(local.port(), 0);
            Ok::<_, BoxError>(())
        })
        .await?;
        wait_all_tasks_blocked().await?;
        // One connection served all three.
        assert_eq!(*log.borrow(), [Ok(())]);
        n.cancel_scope().cancel();
        Ok(())
    });
    assert_nothing_left(report);
}

/// Splits raw HTTP/1 responses (with `Content-Length`) into status and body.
fn parse_responses(mut raw: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(raw).unwrap() {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("a partial response: {:?}", String::from_utf8_lossy(raw)),
        };
        let len: usize = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
            .unwrap();
        out.push((resp.code.unwrap(), raw[head_len..head_len + len].to_vec()));
        raw = &raw[head_len + len..];
    }
    out
}

#[test]
fn http1_pipelined_requests_are_answered_in_order() {
    let report = run_test(|n| async move {
        let (addr, _log) = start_server(&n, defaults)?;
        let stream = TcpStream::connect(addr).await?;
        // Both requests in one send: the server reads them in one go.
        stream
            .send_all(
                b"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirstGET /second HTTP/1.1\r\nHost: \
                  x\r\nConnection: close\r\n\r\n",
            )
            .await?;
        let mut raw = Vec::new();
        while stream.receive_into(&mut raw).await? != 0 {}
        assert_eq!(
            parse_responses(&raw),
            [(200, b"POST /first HTTP/1.1 first".to_vec()), (200, b"GET /second HTTP/1.1 ".to_vec())]
        );
        n.cancel_scope().cancel();
        Ok(())
    });
    assert_nothing_left(report);
}

/// A response body holding an `Rc` (so neither it nor the service future
/// is `Send`): the HTTP/2 server must still run it, on this thread.
struct RcBody {
    data: Option<Bytes>,
    _not_send: Rc<()>,
}

impl Body for RcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().data.take().map(|d| Ok(Frame::data(d))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

#[test]
fn http2_prior_knowledge_multiplexes_ten_requests_on_one_connection() {
    const N: usize = 10;
    let report = run_test(|n| async move {
        let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        // The handler answers only once all ten requests are in: they must
        // be in flight together on the one connection.
        let in_flight = Rc::new(Cell::new(0usize));
        let all_in = Rc::new(Event::new());
        let connections = Rc::new(Cell::new(0usize));
        let (inf, all, conns) = (in_flight.clone(), all_in.clone(), connections.clone());
        n.start_soon(async move {
            loop {
                let (stream, _) = listener.accept().await?;
                conns.set(conns.get() + 1);
                let (inf, all) = (inf.clone(), all.clone());
                let service = service_fn(move |req: Request<Incoming>| {
                    let (inf, all) = (inf.clone(), all.clone());
                    async move {
                        let version = req.version();
                        let body = req.into_body().collect().await?.to_bytes();
                        inf.set(inf.get() + 1);
                        if inf.get() == N {
                            all.set();
                        }
                        all.wait().await?;
                        let mut text = format!("{version:?} ").into_bytes();
                        text.extend_from_slice(&body);
                        Ok::<_, BoxError>(Response::new(RcBody { data: Some(text.into()), _not_send: Rc::new(()) }))
                    }
                });
                open_nursery(|conn| async move {
                    cancel_aware(server_builder(&conn).serve_connection(stream, service)).await
                })
                .await?;
            }
            #[allow(unreachable_code)]
            Ok::<_, BoxError>(())
        })?;
        let got = Rc::new(RefCell::new(Vec::new()));
        let g = got.clone();
        open_nursery(|c| async move {
            let exec = NurseryExecutor::new(&c);
            let (sender, conn) = hyper::client::conn::http2::handshake(exec, TcpStream::connect(addr).await?).await?;
            c.start_soon(cancel_aware(conn))?;
            for i in 0..N {
                let mut sender = sender.clone();
                let g = g.clone();
                c.start_soon(async move {
                    let body = format!("body number {i}");
                    let req = Request::builder().method("POST").uri("/").body(Full::new(Bytes::from(body)))?;
                    let resp = sender.send_request(req).await?;
                    assert_eq!(resp.version(), Version::HTTP_2);
                    let got = text(resp).await?;
                    g.borrow_mut().push((i, got));
                    Ok::<_, BoxError>(())
                })?;
            }
            Ok::<_, BoxError>(())
        })
        .await?;
        let mut got = got.take();
        got.sort();
        let want: Vec<_> = (0..N).map(|i| (i, (StatusCode::OK, format!("HTTP/2.0 body number {i}")))).collect();
        assert_eq!(got, want);
        assert_eq!(connections.get(), 1);
        assert_eq!(in_flight.get(), N);
        n.cancel_scope().cancel();
        Ok(())
    });
    assert_nothing_left(report);
}

/// The kind of the `io::Error` under hyper's error, if any.
fn io_kind(e: &hyper::Error) -> Option<io::ErrorKind> {
    std::error::Error::source(e)?.downcast_ref::<io::Error>().map(io::Error::kind)
}

/// A request body fed from a channel, so the test decides when it stalls.
struct ChannelBody(MemoryReceiveChannel<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = trioxide::channel::ReceiveError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().0).poll_next(cx).map(|item| item.map(|r| r.map(Frame::data)))
    }
}

#[test]
fn cancel_scope_mid_body_cancels_the_client_and_the_server_sees_the_end() {
    let report = run_test(|n| async move {
        let (server_io, client_io) = UnixStream::pair()?;
        // The server reads the body chunk by chunk and records what it got.
        let server_saw = Rc::new(RefCell::new((Vec::<u8>::new(), None::<String>)));
        let first_chunk_in = Rc::new(Event::new());
        let (saw, first) = (server_saw.clone(), first_chunk_in.clone());
        let first_in = first_chunk_in.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let (saw, first) = (saw.clone(), first.clone());
            async move {
                let mut body = req.into_body();
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(frame) => {
                            saw.borrow_mut().0.extend_from_slice(frame.data_ref().unwrap());
                            first.set();
                        }
                        Err(e) => {
                            saw.borrow_mut().1 = Some(e.to_string());
                            break;
                        }
                    }
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            }
        });
        let served = Rc::new(RefCell::new(None));
        let s = served.clone();
        n.start_soon(async move {
            let out = hyper::server::conn::http1::Builder::new().serve_connection(server_io, service).await;
            *s.borrow_mut() = Some(out.map_err(|e| (e.to_string(), io_kind(&e))));
        })?;

        let scope = CancelScope::new();
        let canceller = scope.clone();
        let (tx, rx) = open_memory_channel::<Bytes>(4);
        let out = scope
            .run(open_nursery(|c| async move {
                let mut sender = http1_client(&c, client_io).await?;
                let req = Request::builder()
                    .method("POST")
                    .uri("/upload")
                    .header("content-length", "100")
                    .body(ChannelBody(rx))?;
                c.start_soon(async move {
                    tx.send(Bytes::from_static(b"first ten!")).await?;
                    first_in.wait().await?; // the server has the first chunk
                    canceller.cancel(); // mid-body: 10 of 100 bytes sent
                    sleep(Duration::from_secs(1)).await?;
                    unreachable!("the sleep is cancelled");
                    #[allow(unreachable_code)]
                    Ok::<_, BoxError>(())
                })?;
                let resp = sender.send_request(req).await;
                // The response future is hyper's, not a checkpoint: when the
                // connection task is cancelled it fails; the checkpoint
                // says why.
                trioxide::checkpoint().await?;
                Ok::<_, BoxError>(resp.map(|_| ()).map_err(|e| e.to_string()))
            }))
            .await;
        // The scope caught the Cancelled of every task in it, the hyper
        // connection task's (inside hyper's error) included.
        assert!(matches!(out, Ok(None)), "{out:?}");
        assert!(scope.cancelled_caught());
        wait_all_tasks_blocked().await?;
        let (body, err) = server_saw.borrow().clone();
        assert_eq!(body, b"first ten!");
        assert_eq!(err.as_deref(), Some("error reading a body from connection"));
        // The server's connection ended with an error, not a panic: the
        // client is gone (its end of the pair was dropped with its task).
        // Where hyper was (writing its answer, or shutting down) when it
        // found the peer gone depends on its poll order; the kind does not.
        let served = served.borrow().clone();
        match served {
            Some(Err((msg, Some(io::ErrorKind::BrokenPipe))))
                if msg == "error shutting down connection" || msg == "error writing a body to connection" => {}
            other => panic!("the server connection should end with BrokenPipe, got {other:?}"),
        }
        Ok(())
    });
    assert_nothing_left(report);
}

type Handler = Rc<dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, BoxError>>>>>;

/// Serves one connection until it ends or `stop` is set; then shuts it
/// down gracefully (hyper's `graceful_shutdown`: HTTP/1 finishes the
/// request in flight, HTTP/2 sends GOAWAY and finishes its open streams).
/// Its HTTP/2 streams are children of a nursery of its own.
async fn serve_until_stop(stream: TcpStream, stop: Rc<Event>, handler: Handler) -> Result<(), BoxError> {
    open_nursery(|conn_n| async move {
        let builder = server_builder(&conn_n);
        let service = service_fn(move |req| handler(req));
        let mut conn = pin!(builder.serve_connection(stream, service));
        let mut stopped = pin!(stop.wait());
        let first = poll_fn(|cx| {
            if let Poll::Ready(out) = conn.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            stopped.as_mut().poll(cx).map(|_| None)
        })
        .await;
        match first {
            Some(out) => out,
            None => {
                conn.as_mut().graceful_shutdown();
                cancel_aware(conn).await
            }
        }
    })
    .await?;
    Ok(())
}

/// Serves `listener` until `stop` is set, then stops accepting (the
/// listener closes), lets connections finish for `grace` and cancels what
/// is left. Returns whether the grace deadline cut something off.
async fn serve_gracefully(
    listener: TcpListener,
    stop: Rc<Event>,
    grace: Duration,
    log: Log,
    handler: Handler,
) -> Result<bool, BoxError> {
    let finished = open_nursery(|server| async move {
        let accepting = CancelScope::new();
        let (acc, srv, st) = (accepting.clone(), server.clone(), stop.clone());
        server.start_soon(async move {
            acc.run(async move {
                loop {
                    let (stream, _) = listener.accept().await?;
                    let (stop, log, handler) = (st.clone(), log.clone(), handler.clone());
                    srv.start_soon(async move {
                        let out = serve_until_stop(stream, stop, handler).await;
                        log.borrow_mut().push(out.map_err(|e| e.to_string()));
                    })?;
                }
                #[allow(unreachable_code)]
                Ok::<_, BoxError>(())
            })
            .await
            .map(|_| ())
        })?;
        stop.wait().await?;
        accepting.cancel();
        let scope = server.cancel_scope();
        scope.set_deadline(current_time() + grace);
        Ok::<_, BoxError>(scope)
    })
    .await?;
    Ok(finished.is_some_and(|scope| scope.cancel_called()))
}

fn handler_sleeping_by_path() -> Handler {
    Rc::new(|req: Request<Incoming>| {
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let secs = if path == "/slow" { 60 } else { 5 };
            sleep(Duration::from_secs(secs)).await?;
            Ok(Response::new(Full::new(Bytes::from(format!("done {path}")))))
        })
    })
}

type Results = Rc<RefCell<Vec<(String, Result<(StatusCode, String), String>, Duration)>>>;

#[test]
fn graceful_shutdown_finishes_requests_in_flight_cancels_the_rest_and_leaves_no_task() {
    const GRACE: Duration = Duration::from_secs(10);
    let report = run_test(|n| async move {
        let t0 = current_time();
        let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        let stop = Rc::new(Event::new());
        let log = Log::default();
        let server_done = Rc::new(Cell::new(None));
        let (st, lg, sd) = (stop.clone(), log.clone(), server_done.clone());
        n.start_soon(async move {
            let cut = serve_gracefully(listener, st, GRACE, lg, handler_sleeping_by_path()).await?;
            sd.set(Some((cut, current_time().saturating_duration_since(t0))));
            Ok::<_, BoxError>(())
        })?;

        let results = Results::default();
        let record = move |results: &Results, what: &str, out: Result<(StatusCode, String), BoxError>| {
            let at = current_time().saturating_duration_since(t0);
            results.borrow_mut().push((what.to_string(), out.map_err(|e| e.to_string()), at));
        };
        open_nursery(|c| {
            let results = results.clone();
            async move {
                // HTTP/1: one request in flight.
                let mut h1 = http1_client(&c, TcpStream::connect(addr).await?).await?;
                let r = results.clone();
                c.start_soon(async move {
                    let out = async { text(h1.send_request(request("GET", "/fast", b"")).await?).await }.await;
                    record(&r, "h1 /fast", out);
                })?;
                // HTTP/2: two streams on one connection.
                let exec = NurseryExecutor::new(&c);
                let (h2, conn) = hyper::client::conn::http2::handshake(exec, TcpStream::connect(addr).await?).await?;
                c.start_soon(async move {
                    let _ = conn.await; // ends with the server's cut
                })?;
                for path in ["/fast", "/slow"] {
                    let (mut h2, r) = (h2.clone(), results.clone());
                    c.start_soon(async move {
                        let out = async { text(h2.send_request(request("GET", path, b"")).await?).await }.await;
                        record(&r, &format!("h2 {path}"), out);
                    })?;
                }
                drop(h2);
                sleep(Duration::from_secs(1)).await?;
                stop.set(); // at t = 1 s, with all three requests in flight
                wait_all_tasks_blocked().await?;
                // The listener is closed: a new client is refused.
                let refused = TcpStream::connect(addr).await.map(|_| ()).map_err(|e| e.kind());
                assert_eq!(refused, Err(io::ErrorKind::ConnectionRefused));
                Ok::<_, BoxError>(())
            }
        })
        .await?;
        let mut results = results.take();
        results.sort_by(|a, b| a.0.cmp(&b.0));
        let secs = Duration::from_secs;
        assert_eq!(results[0], ("h1 /fast".into(), Ok((StatusCode::OK, "done /fast".into())), secs(5)));
        assert_eq!(results[1], ("h2 /fast".into(), Ok((StatusCode::OK, "done /fast".into())), secs(5)));
        assert_eq!(results[2].0, "h2 /slow");
        assert!(results[2].1.is_err(), "{:?}", results[2]);
        assert_eq!(results[2].2, secs(1) + GRACE); // cut at the grace deadline
        wait_all_tasks_blocked().await?;
        assert_eq!(server_done.get(), Some((true, secs(1) + GRACE)));
        let log = log.borrow();
        assert_eq!(log.len(), 2);
        assert_eq!(log.iter().filter(|r| r.is_ok()).count(), 1, "{log:?}"); // HTTP/1 ended cleanly
        Ok(())
    });
    assert_nothing_left(report);
}

#[test]
fn malformed_request_gets_400_and_the_server_keeps_serving() {
    let report = run_test(|n| async move {
        let (addr, log) = start_server(&n, defaults)?;
        let bad = TcpStream::connect(addr).await?;
        bad.send_all(b"NOT HTTP AT ALL\r\n\r\n").await?;
        let mut raw = Vec::new();
        while bad.receive_into(&mut raw).await? != 0 {}
        let head = String::from_utf8(raw)?;
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head:?}");
        // The next connection is served.
        open_nursery(|c| async move { get_and_post(&c, TcpStream::connect(addr).await?).await }).await?;
        wait_all_tasks_blocked().await?;
        let log = log.borrow();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0], Err("1 error:\n  [0] invalid HTTP version parsed".to_string()));
        assert_eq!(log[1], Ok(()));
        n.cancel_scope().cancel();
        Ok(())
    });
    assert_nothing_left(report);
}

#[test]
fn header_read_timeout_cuts_a_slow_client_at_the_virtual_deadline() {
    fn five_seconds(b: &mut auto::Builder<NurseryExecutor>) {
        b.http1().header_read_timeout(Duration::from_secs(5));
    }
    let report = run_test(|n| async move {
        let (addr, log) = start_server(&n, five_seconds)?;
        let t0 = current_time();
        let slow = TcpStream::connect(addr).await?;
        slow.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await?; // the head never ends
        let mut raw = Vec::new();
        while slow.receive_into(&mut raw).await? != 0 {}
        assert_eq!(current_time().saturating_duration_since(t0), Duration::from_secs(5));
        let got = String::from_utf8(raw)?;
        assert_eq!(got, ""); // hyper closes without an answer
        wait_all_tasks_blocked().await?;
        let log = log.borrow();
        assert_eq!(log.len(), 1);
        // The connection's nursery reports hyper's error.
        assert_eq!(log[0], Err("1 error:\n  [0] read header from client timeout".to_string()));
        n.cancel_scope().cancel();
        Ok(())
    });
    assert_nothing_left(report);
}

#[test]
fn cancelled_hyper_io_is_recognised_as_cancellation() {
    let report = run_test(|_n| async move {
        let (a, _b) = UnixStream::pair()?;
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope
            .run(async {
                let (_sender, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(a).await?;
                let err = conn.await.unwrap_err(); // reading failed: the task is cancelled
                assert!(is_cancelled_error(&err), "{err:?}");
                Err::<(), BoxError>(err.into())
            })
            .await;
        assert!(matches!(out, Ok(None)), "{out:?}"); // the scope caught hyper's error
        assert!(scope.cancelled_caught());
        Ok(())
    });
    assert_nothing_left(report);
}

#[test]
fn header_read_timeout_restarts_for_each_request_on_a_kept_alive_connection() {
    fn five_seconds(b: &mut auto::Builder<NurseryExecutor>) {
        b.http1().header_read_timeout(Duration::from_secs(5));
    }
    let report = run_test(|n| async move {
        let (addr, _log) = start_server(&n, five_seconds)?;
        let t0 = current_time();
        let stream = TcpStream::connect(addr).await?;
        // A whole request at t = 4 s: within the first timeout.
        sleep(Duration::from_secs(4)).await?;
        stream.send_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").await?;
        let mut raw = Vec::new();
        while parse_complete(&raw) < 1 {
            assert_ne!(stream.receive_into(&mut raw).await?, 0);
        }
        // Then nothing: the timer is reset at the next head, 5 s later.
        while stream.receive_into(&mut raw).await? != 0 {}
        assert_eq!(current_time().saturating_duration_since(t0), Duration::from_secs(9));
        assert_eq!(parse_responses(&raw), [(200, b"GET /a HTTP/1.1 ".to_vec())]);
        n.cancel_scope().cancel();
        Ok(())
    });
    assert_nothing_left(report);
}

/// How many complete responses `raw` starts with.
fn parse_complete(raw: &[u8]) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => {
            let len: usize = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map_or(0, |h| std::str::from_utf8(h.value).unwrap().parse().unwrap());
            usize::from(raw.len() >= n + len)
        }
        _ => 0,
    }
}

#[test]
fn hyper_timer_sleeps_are_send_sync_and_follow_the_mock_clock() {
    use hyper::rt::Timer;
    fn send_sync<T: Send + Sync>(_: &T) {}
    let report = run_test(|_n| async move {
        let timer = trioxide::hyper::HyperTimer::new();
        let t0 = current_time();
        let std0 = timer.now();
        let sleep = timer.sleep(Duration::from_millis(1500));
        send_sync(&sleep);
        sleep.await;
        assert_eq!(current_time().saturating_duration_since(t0), Duration::from_millis(1500));
        assert_eq!(timer.now().duration_since(std0), Duration::from_millis(1500));
        // reset: earlier, then later than the first deadline.
        let mut s = timer.sleep_until(timer.now() + Duration::from_secs(100));
        timer.reset(&mut s, timer.now() + Duration::from_secs(3));
        s.await;
        assert_eq!(current_time().saturating_duration_since(t0), Duration::from_millis(4500));
        let at: Instant = current_time();
        assert_eq!(at.saturating_duration_since(t0), Duration::from_millis(4500));
        Ok(())
    });
    assert_nothing_left(report);
}
