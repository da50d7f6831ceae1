//! The `http_server` example's connection code against good and bad
//! clients: exact status lines, bodies, when the connection closes, and at
//! which virtual instant its deadlines fire.
//!
//! The server is the example's own code (`conn.rs` and `proto.rs`,
//! included below), served with `serve_tcp` in a nursery; the clients are
//! trioxide tasks in the same run, on 127.0.0.1. Time is a `MockClock`
//! with an autojump threshold of 50 ms (with 0 it would jump while loopback
//! data is in flight), so the idle and request deadlines are reached in
//! virtual time and asserted exactly.
//!
//! Every test also checks that a bad client hurts no one else: a
//! well-behaved keep-alive client is answered at once before and after the
//! bad one, and once every connection is closed the task count is back to
//! what it was before the first client connected.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use trioxide::{
    current_time, fail_after, move_on_after, open_nursery, serve_tcp, sleep, task_tree, wait_all_tasks_blocked,
    BoxError, Builder, Instant, MockClock, TcpStream, TooSlow,
};

#[allow(dead_code)]
#[path = "../examples/http_server/proto.rs"]
mod proto;

#[allow(dead_code)]
#[path = "../examples/http_server/conn.rs"]
mod conn;

use conn::Config;

// ---------------------------------------------------------------- the server

/// Keep-alive idle limit between requests.
const IDLE: Duration = Duration::from_secs(10);
/// Limit on one request, from its first byte. Different from `IDLE`, so
/// that the instant a connection closes tells which deadline closed it.
const REQUEST: Duration = Duration::from_secs(4);
/// Length of the answer to `GET /`.
const BODY_LEN: usize = 1000;

/// Virtual-time bound on every run: a hang makes the clock autojump to it
/// and the run fail with `TooSlow` instead of hanging.
const HANG_GUARD: Duration = Duration::from_secs(3600);

/// What a test body gets: the server's address and the task count before
/// any client connected.
#[derive(Clone, Copy)]
struct Server {
    addr: SocketAddr,
    tasks_idle: usize,
}

/// Runs `body` against a fresh server (the example's connection code under
/// `serve_tcp`), on a mock clock with a fixed seed. Before and after
/// `body`, a well-behaved client is served; at the end every connection
/// must be gone and the task count back where it was.
fn with_server<F, Fut>(body: F)
where
    F: FnOnce(Server) -> Fut + 'static,
    Fut: Future<Output = Result<(), BoxError>> + 'static,
{
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::from_millis(50)));
    let (out, report) = Builder::new().seed(1).clock(clock).run_with_report(fail_after(HANG_GUARD, async move {
        // `Ok(None)`: the server's nursery was cancelled at the end, as meant.
        let served: Option<()> = open_nursery(|n| async move {
            let config = Rc::new(Config {
                body: proto::make_body(BODY_LEN),
                idle: IDLE,
                request: REQUEST,
                work: Duration::ZERO,
            });
            let localhost = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
            let handler = move |s: TcpStream| conn::serve_connection(s, config.clone());
            let addrs = n.start(|status| serve_tcp(handler, 0, localhost, status)).await?;
            wait_all_tasks_blocked().await?;
            let server = Server { addr: addrs[0], tasks_idle: task_tree().len() };
            // Before and after the test's own clients, a good one is served.
            good_client_round(server).await?;
            body(server).await?;
            good_client_round(server).await?;
            // Every connection handler has ended: no task leaked.
            let waited = tasks_back_to(server.tasks_idle, Duration::from_secs(1)).await?;
            assert_eq!(waited, Duration::ZERO, "the last connections took virtual time to end");
            n.cancel_scope().cancel();
            Ok::<_, BoxError>(())
        })
        .await?;
        Ok::<_, BoxError>(served)
    }));
    match out {
        Ok(_) => {}
        Err(e) if e.is::<TooSlow>() => panic!("the run hung: virtual time reached the {HANG_GUARD:?} guard"),
        Err(e) => panic!("the run failed: {e}"),
    }
    assert_eq!(report.tasks_left, 0, "tasks left behind");
    assert_eq!(report.timers_left, 0, "timers left behind");
}

/// A fresh keep-alive client makes two requests and closes: both answered
/// at once (no virtual time passes).
async fn good_client_round(server: Server) -> Result<(), BoxError> {
    let mut good = Client::connect(server.addr).await?;
    good.expect_ok_now().await?;
    good.expect_ok_now().await?;
    Ok(())
}

/// Waits until the task count is `n`, checking whenever every task is
/// blocked and then in steps of 100 ms of virtual time (each one at least
/// 50 ms of real quiet, so nothing is in flight). Returns the virtual time
/// that took; fails after `limit`.
async fn tasks_back_to(n: usize, limit: Duration) -> Result<Duration, BoxError> {
    let start = current_time();
    loop {
        wait_all_tasks_blocked().await?;
        let now = task_tree().len();
        if now == n {
            return Ok(current_time().saturating_duration_since(start));
        }
        if current_time().saturating_duration_since(start) >= limit {
            return Err(format!("{now} tasks after {limit:?}, expected {n}: {:#?}", task_tree()).into());
        }
        sleep(Duration::from_millis(100)).await?;
    }
}

// ---------------------------------------------------------------- the client

/// One HTTP response, as the client read it.
#[derive(Debug)]
struct Response {
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Asserts the response to `GET /`: 200 with the example's body.
    #[track_caller]
    fn assert_ok(&self, keep_alive: bool) {
        assert_eq!(self.status_line, "HTTP/1.1 200 OK", "{self:?}");
        assert_eq!(self.header("Content-Length"), Some(BODY_LEN.to_string().as_str()), "{self:?}");
        assert_eq!(self.header("Connection"), Some(if keep_alive { "keep-alive" } else { "close" }));
        assert_eq!(self.body, proto::make_body(BODY_LEN));
    }

    /// Asserts a short error answer, e.g. `(404, "Not Found", true)`.
    #[track_caller]
    fn assert_status(&self, status: u16, reason: &str, keep_alive: bool) {
        assert_eq!(self.status_line, format!("HTTP/1.1 {status} {reason}"), "{self:?}");
        assert_eq!(self.header("Content-Length"), Some(reason.len().to_string().as_str()), "{self:?}");
        assert_eq!(self.header("Connection"), Some(if keep_alive { "keep-alive" } else { "close" }), "{self:?}");
        assert_eq!(self.body, reason.as_bytes(), "{self:?}");
    }
}

/// How a connection ended, seen from the client.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// End of stream, with no byte after the last response.
    Eof,
    /// Bytes nobody asked for.
    Extra(Vec<u8>),
}

struct Client {
    stream: TcpStream,
    /// Bytes received and not yet taken by a response.
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> io::Result<Client> {
        Ok(Client { stream: TcpStream::connect(addr).await?, buf: Vec::new() })
    }

    async fn send(&self, data: &[u8]) -> io::Result<()> {
        self.stream.send_all(data).await
    }

    /// Receives more bytes into `buf`; 0 at the end of the stream.
    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.receive_some(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one response (head and `Content-Length` body).
    async fn response(&mut self) -> Result<Response, BoxError> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if self.fill().await? == 0 {
                return Err(format!("end of stream before a whole response head; got {:?}", text(&self.buf)).into());
            }
        };
        let head = std::str::from_utf8(&self.buf[..head_end])?.to_string();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap_or((l, ""));
                (n.trim().to_string(), v.trim().to_string())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .ok_or_else(|| format!("no Content-Length in {head:?}"))?
            .1
            .parse()?;
        let total = head_end + 4 + len;
        while self.buf.len() < total {
            if self.fill().await? == 0 {
                return Err(format!("end of stream inside a body: {:?}", text(&self.buf)).into());
            }
        }
        let body = self.buf[head_end + 4..total].to_vec();
        self.buf.drain(..total);
        Ok(Response { status_line, headers, body })
    }

    /// Reads to the end of the stream. Gives up after `IDLE + REQUEST`
    /// (longer than any server deadline), with an error saying so.
    async fn end(&mut self) -> Result<End, BoxError> {
        let limit = IDLE + REQUEST;
        let read = move_on_after(limit, async {
            while self.fill().await? > 0 {}
            Ok::<_, io::Error>(())
        })
        .await?;
        if read.is_none() {
            return Err(format!(
                "no end of stream within {limit:?} (received {:?}), although the server closes every connection \
                 at once or at a deadline shorter than that",
                text(&self.buf)
            )
            .into());
        }
        Ok(if self.buf.is_empty() { End::Eof } else { End::Extra(std::mem::take(&mut self.buf)) })
    }

    /// Sends `GET /` and checks that the 200 comes back at the same
    /// virtual instant.
    async fn expect_ok_now(&mut self) -> Result<(), BoxError> {
        let t = current_time();
        self.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n").await?;
        self.response().await?.assert_ok(true);
        assert_eq!(current_time(), t, "a good request waited in virtual time");
        Ok(())
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Sends `request` on a fresh connection; expects one error answer with
/// `status` and then the end of the stream, all at once.
async fn expect_error_then_close(server: Server, request: &[u8], status: u16, reason: &str) -> Result<(), BoxError> {
    let t = current_time();
    let mut c = Client::connect(server.addr).await?;
    c.send(request).await?;
    let r = c.response().await?;
    r.assert_status(status, reason, false);
    assert_eq!(c.end().await?, End::Eof, "after {status} for {:?}", text(request));
    assert_eq!(current_time(), t, "the {status} answer waited in virtual time");
    Ok(())
}

// ---------------------------------------------------------------- good clients

#[test]
fn keep_alive_request_is_answered_and_the_connection_stays_open() {
    with_server(|server| async move {
        let mut c = Client::connect(server.addr).await?;
        for _ in 0..3 {
            c.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n").await?;
            c.response().await?.assert_ok(true);
        }
        // Still open: one more request on the same connection is answered.
        c.expect_ok_now().await?;
        Ok(())
    });
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    with_server(|server| async move {
        let mut c = Client::connect(server.addr).await?;
        c.send(
            b"GET / HTTP/1.1\r\nHost: test\r\n\r\n\
              GET /missing HTTP/1.1\r\nHost: test\r\n\r\n\
              POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello\
              GET / HTTP/1.1\r\nHost: test\r\n\r\n",
        )
        .await?;
        c.response().await?.assert_ok(true);
        c.response().await?.assert_status(404, "Not Found", true);
        c.response().await?.assert_status(405, "Method Not Allowed", true);
        c.response().await?.assert_ok(true);
        // Nothing more was sent, and the connection is still usable.
        assert!(c.buf.is_empty(), "extra bytes: {:?}", text(&c.buf));
        c.expect_ok_now().await?;
        Ok(())
    });
}

#[test]
fn http10_without_keep_alive_is_closed_after_the_answer() {
    with_server(|server| async move {
        let t = current_time();
        let mut c = Client::connect(server.addr).await?;
        c.send(b"GET / HTTP/1.0\r\n\r\n").await?;
        c.response().await?.assert_ok(false);
        assert_eq!(c.end().await?, End::Eof);
        // Closed right after the answer, not at the idle deadline.
        assert_eq!(current_time(), t);
        // With `Connection: keep-alive`, HTTP/1.0 keeps the connection.
        let mut c = Client::connect(server.addr).await?;
        c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").await?;
        c.response().await?.assert_ok(true);
        c.expect_ok_now().await?;
        Ok(())
    });
}

#[test]
fn connection_close_is_honoured_and_later_pipelined_requests_are_not_answered() {
    with_server(|server| async move {
        let t = current_time();
        let mut c = Client::connect(server.addr).await?;
        c.send(
            b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n\
              GET / HTTP/1.1\r\nHost: test\r\n\r\n",
        )
        .await?;
        c.response().await?.assert_ok(false);
        assert_eq!(c.end().await?, End::Eof, "a request after `Connection: close` was answered");
        assert_eq!(current_time(), t);
        Ok(())
    });
}

#[test]
fn unknown_path_gets_404_and_post_gets_405_on_a_kept_connection() {
    with_server(|server| async move {
        let mut c = Client::connect(server.addr).await?;
        c.send(b"GET /nope HTTP/1.1\r\nHost: test\r\n\r\n").await?;
        c.response().await?.assert_status(404, "Not Found", true);
        c.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n").await?;
        c.response().await?.assert_status(405, "Method Not Allowed", true);
        // A POST body is consumed, not taken for the next request.
        c.send(b"POST /x HTTP/1.1\r\nHost: test\r\nContent-Length: 9\r\n\r\nGET / ...").await?;
        c.response().await?.assert_status(405, "Method Not Allowed", true);
        c.expect_ok_now().await?;
        Ok(())
    });
}

// ---------------------------------------------------------------- malformed requests

#[test]
fn malformed_request_line_gets_400_then_close() {
    with_server(|server| async move {
        for request in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET / HTTX/1.1\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"\x00\x01\x02\r\n\r\n",
        ] {
            expect_error_then_close(server, request, 400, "Bad Request").await?;
            good_client_round(server).await?;
        }
        Ok(())
    });
}

#[test]
fn bad_header_bytes_get_400_then_close() {
    with_server(|server| async move {
        for request in [
            &b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nBad\x00Header: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-Nul: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nNo-Colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: five\r\n\r\n",
            // Two different lengths: a request-smuggling attempt.
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        ] {
            expect_error_then_close(server, request, 400, "Bad Request").await?;
            good_client_round(server).await?;
        }
        Ok(())
    });
}

/// A request head of exactly `len` bytes, padded with one header.
fn head_of_len(len: usize) -> Vec<u8> {
    let start = b"GET / HTTP/1.1\r\nX-Pad: ";
    let end = b"\r\n\r\n";
    let mut head = start.to_vec();
    head.resize(len - end.len(), b'a');
    head.extend_from_slice(end);
    assert_eq!(head.len(), len);
    head
}

/// A request with `n` headers.
fn request_with_headers(n: usize) -> Vec<u8> {
    let mut req = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..n {
        req.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req
}

#[test]
fn oversize_head_gets_431_then_close_and_the_limits_are_exact() {
    with_server(|server| async move {
        // At the limits: answered.
        let mut c = Client::connect(server.addr).await?;
        c.send(&head_of_len(proto::MAX_HEAD_BYTES)).await?;
        c.response().await?.assert_ok(true);
        c.send(&request_with_headers(proto::MAX_HEADERS)).await?;
        c.response().await?.assert_ok(true);
        drop(c);
        // One byte or one header over: 431.
        let reason = "Request Header Fields Too Large";
        expect_error_then_close(server, &head_of_len(proto::MAX_HEAD_BYTES + 1), 431, reason).await?;
        good_client_round(server).await?;
        expect_error_then_close(server, &request_with_headers(proto::MAX_HEADERS + 1), 431, reason).await?;
        good_client_round(server).await?;
        // A head that never ends: refused once it passes 8 KiB.
        let mut endless = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        endless.resize(proto::MAX_HEAD_BYTES + 100, b'a');
        expect_error_then_close(server, &endless, 431, reason).await?;
        Ok(())
    });
}

#[test]
fn bytes_after_the_declared_body_get_the_first_request_200_then_400_and_close() {
    with_server(|server| async move {
        let t = current_time();
        let mut c = Client::connect(server.addr).await?;
        c.send(b"GET / HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello\x01garbage\r\n\r\n").await?;
        c.response().await?.assert_ok(true);
        c.response().await?.assert_status(400, "Bad Request", false);
        assert_eq!(c.end().await?, End::Eof);
        assert_eq!(current_time(), t);
        Ok(())
    });
}

#[test]
fn chunked_transfer_encoding_gets_501_and_huge_content_length_413() {
    with_server(|server| async move {
        let chunked = b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        expect_error_then_close(server, chunked, 501, "Not Implemented").await?;
        good_client_round(server).await?;
        let huge = format!("POST / HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n", proto::MAX_BODY_BYTES + 1);
        expect_error_then_close(server, huge.as_bytes(), 413, "Content Too Large").await?;
        Ok(())
    });
}

// ---------------------------------------------------------------- clients that go away

/// Connects, waits until the server's handler is blocked reading (so the
/// socket is registered with epoll, as on a real server), sends `data` and
/// closes at once. The handler must end at that same virtual instant, not
/// at a deadline.
async fn vanish_after(server: Server, data: &[u8]) -> Result<(), BoxError> {
    let t = current_time();
    let c = Client::connect(server.addr).await?;
    wait_all_tasks_blocked().await?;
    assert_eq!(task_tree().len(), server.tasks_idle + 1, "one handler for the connection");
    c.send(data).await?;
    drop(c);
    let waited = tasks_back_to(server.tasks_idle, REQUEST + IDLE).await?;
    assert_eq!(
        waited,
        Duration::ZERO,
        "after a client sent {:?} and closed at {t:?}, its handler ran on until {:?} (the deadlines are {IDLE:?} \
         idle, {REQUEST:?} per request)",
        text(data),
        current_time()
    );
    Ok(())
}

#[test]
fn client_that_closes_without_a_request_ends_its_handler_at_once() {
    with_server(|server| async move { vanish_after(server, b"").await });
}

#[test]
fn client_that_vanishes_mid_request_ends_its_handler_at_once() {
    with_server(|server| async move {
        vanish_after(server, b"GET / HTTP/1.1\r\nHost: te").await?;
        good_client_round(server).await
    });
}

#[test]
fn client_that_vanishes_after_a_request_and_half_ends_its_handler_at_once() {
    with_server(|server| async move {
        vanish_after(server, b"GET / HTTP/1.1\r\nHost: test\r\n\r\nGET / HT").await?;
        good_client_round(server).await
    });
}

// ---------------------------------------------------------------- deadlines

#[test]
fn slowloris_gets_408_and_eof_at_the_request_deadline_while_others_are_served() {
    with_server(|server| async move {
        let start = current_time();
        let got_408_at: Rc<Cell<Option<Instant>>> = Rc::default();
        let got = got_408_at.clone();
        open_nursery(|n| async move {
            // The slow client: one byte of a request head every 1.5 s
            // (never complete), reading whatever comes back in between.
            n.start_soon(async move {
                let mut c = Client::connect(server.addr).await?;
                let head = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";
                let first_byte_at = current_time();
                for (i, byte) in head[..head.len() - 1].iter().enumerate() {
                    let sent_at = current_time();
                    assert_eq!(sent_at, first_byte_at + Duration::from_millis(1500) * i as u32);
                    c.send(std::slice::from_ref(byte)).await?;
                    if move_on_after(Duration::from_millis(1500), c.fill()).await?.is_some() {
                        break;
                    }
                }
                let r = c.response().await?;
                got.set(Some(current_time()));
                r.assert_status(408, "Request Timeout", false);
                assert_eq!(c.end().await?, End::Eof);
                // 408 and the end of stream both at the request deadline,
                // counted from the first byte.
                assert_eq!(current_time(), first_byte_at + REQUEST);
                Ok::<_, BoxError>(())
            })?;
            // A good keep-alive client meanwhile: a request every 500 ms,
            // each answered at once.
            let mut good = Client::connect(server.addr).await?;
            while current_time() < start + REQUEST + Duration::from_secs(1) {
                sleep(Duration::from_millis(500)).await?;
                good.expect_ok_now().await?;
            }
            Ok::<_, BoxError>(())
        })
        .await?;
        assert_eq!(got_408_at.get(), Some(start + REQUEST));
        Ok(())
    });
}

#[test]
fn idle_keep_alive_connection_is_closed_at_the_idle_deadline_without_a_response() {
    with_server(|server| async move {
        let mut c = Client::connect(server.addr).await?;
        c.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n").await?;
        c.response().await?.assert_ok(true);
        let answered_at = current_time();
        // Some activity on another connection does not extend this one.
        sleep(Duration::from_secs(3)).await?;
        good_client_round(server).await?;
        assert_eq!(c.end().await?, End::Eof, "an idle connection got bytes");
        assert_eq!(current_time(), answered_at + IDLE);
        Ok(())
    });
}

#[test]
fn connection_that_never_sends_is_closed_at_the_idle_deadline_without_a_response() {
    with_server(|server| async move {
        let connected_at = current_time();
        let mut c = Client::connect(server.addr).await?;
        assert_eq!(c.end().await?, End::Eof, "a silent connection got bytes");
        assert_eq!(current_time(), connected_at + IDLE);
        Ok(())
    });
}

#[test]
fn request_deadline_counts_from_the_first_byte_of_each_request() {
    with_server(|server| async move {
        // A request completed just inside its deadline is answered; the
        // next one gets a fresh deadline from its own first byte.
        let mut c = Client::connect(server.addr).await?;
        let t0 = current_time();
        c.send(b"GET / HTTP/1.1\r\n").await?;
        sleep(REQUEST - Duration::from_millis(1)).await?;
        c.send(b"Host: test\r\n\r\n").await?;
        c.response().await?.assert_ok(true);
        assert_eq!(current_time(), t0 + REQUEST - Duration::from_millis(1));
        let t1 = current_time();
        sleep(Duration::from_secs(1)).await?;
        c.send(b"GET / HTTP/1.1\r\n").await?;
        let r = c.response().await?;
        r.assert_status(408, "Request Timeout", false);
        assert_eq!(c.end().await?, End::Eof);
        assert_eq!(current_time(), t1 + Duration::from_secs(1) + REQUEST);
        Ok(())
    });
}
