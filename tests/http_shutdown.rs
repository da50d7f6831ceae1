//! The `http_server` example's graceful shutdown (`shutdown.rs`), with real
//! sockets on 127.0.0.1 and virtual time: on shutdown the listener closes,
//! an idle keep-alive client is closed at once, a client mid-request gets
//! its answer (with `Connection: close`) and then the end of the stream, and
//! a client stuck mid-request is cut off at exactly the grace deadline.
//!
//! The server is the example's own code (`shutdown.rs`, `conn.rs`,
//! `proto.rs`, included below). The shutdown is requested through a
//! `ParkingLot` the test unparks, where `main.rs` waits for SIGINT/SIGTERM.
//! Time is a `MockClock` that jumps after 50 ms of real quiet (with 0 it
//! would jump while loopback data is in flight).

use std::cell::Cell;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use trioxide::sync::ParkingLot;
use trioxide::{
    current_time, fail_after, open_nursery, wait_all_tasks_blocked, BoxError, Builder, Instant, MockClock, TcpListener,
    TcpStream, TooSlow,
};

#[allow(dead_code)]
#[path = "../examples/http_server/proto.rs"]
mod proto;

#[allow(dead_code)]
#[path = "../examples/http_server/conn.rs"]
mod conn;

#[path = "../examples/http_server/shutdown.rs"]
mod shutdown;

use shutdown::{serve_until, Summary};

/// The grace period under test.
const GRACE: Duration = Duration::from_secs(5);
/// Keep-alive idle limit and request limit: far beyond the grace period,
/// so only the shutdown closes connections in these tests.
const IDLE: Duration = Duration::from_secs(100);
const REQUEST: Duration = Duration::from_secs(60);
const BODY_LEN: usize = 300;
const HANG_GUARD: Duration = Duration::from_secs(3600);

/// A test's view of the server: its address, the trigger, and the summary
/// once `serve_until` returned.
struct Server {
    addr: SocketAddr,
    trigger: Rc<ParkingLot>,
    summary: Rc<Cell<Option<Summary>>>,
}

impl Server {
    /// Requests the shutdown; returns the virtual instant.
    async fn shut_down(&self) -> Result<Instant, BoxError> {
        wait_all_tasks_blocked().await?; // the server has read everything sent so far
        let t = current_time();
        assert_eq!(self.trigger.unpark_all(), 1, "the server was not waiting for the shutdown");
        Ok(t)
    }
}

/// Runs `body` with a server in a nursery; returns the server's summary.
fn with_server<F, Fut>(body: F) -> Summary
where
    F: FnOnce(Rc<Server>) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<(), BoxError>> + 'static,
{
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::from_millis(50)));
    let (out, report) = Builder::new().seed(7).clock(clock).run_with_report(fail_after(HANG_GUARD, async move {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let server = Rc::new(Server {
            addr: listener.local_addr()?,
            trigger: Rc::new(ParkingLot::new()),
            summary: Rc::new(Cell::new(None)),
        });
        let config = Rc::new(conn::Config { body: proto::make_body(BODY_LEN), idle: IDLE, request: REQUEST });
        let s = server.clone();
        open_nursery(|n| async move {
            let (trigger, summary) = (s.trigger.clone(), s.summary.clone());
            n.start_soon(async move {
                let shutdown = async move {
                    let _ = trigger.park().await;
                };
                summary.set(Some(serve_until(vec![listener], config, GRACE, shutdown).await?));
                Ok::<_, BoxError>(())
            })?;
            body(s).await
        })
        .await?;
        Ok::<_, BoxError>(server.summary.get().expect("serve_until did not return"))
    }));
    assert_eq!(report.tasks_left, 0, "tasks left behind");
    assert_eq!(report.timers_left, 0, "timers left behind");
    match out {
        Ok(summary) => summary,
        Err(e) if e.is::<TooSlow>() => panic!("the run hung: virtual time reached the {HANG_GUARD:?} guard"),
        Err(e) => panic!("the run failed: {e}"),
    }
}

/// A raw HTTP client.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> io::Result<Client> {
        Ok(Client { stream: TcpStream::connect(addr).await?, buf: Vec::new() })
    }

    async fn send(&self, data: &[u8]) -> io::Result<()> {
        self.stream.send_all(data).await
    }

    /// Reads one response; returns its head and body.
    async fn response(&mut self) -> Result<(String, Vec<u8>), BoxError> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if self.stream.receive_into(&mut self.buf).await? == 0 {
                return Err(format!("end of stream before a response: {:?}", String::from_utf8_lossy(&self.buf)).into());
            }
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec())?;
        let len: usize =
            head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).ok_or("no Content-Length")?.parse()?;
        while self.buf.len() < head_end + 4 + len {
            if self.stream.receive_into(&mut self.buf).await? == 0 {
                return Err("end of stream inside a body".into());
            }
        }
        let body = self.buf[head_end + 4..head_end + 4 + len].to_vec();
        self.buf.drain(..head_end + 4 + len);
        Ok((head, body))
    }

    /// Reads until the end of the stream; returns the virtual instant it
    /// came and any bytes that came before it.
    async fn end(&mut self) -> Result<(Instant, Vec<u8>), BoxError> {
        while self.stream.receive_into(&mut self.buf).await? > 0 {}
        Ok((current_time(), std::mem::take(&mut self.buf)))
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";
/// `GET` without its final CRLF: a request in flight.
const GET_HEAD_ONLY: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n";

fn assert_ok(head: &str, body: &[u8], connection: &str) {
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains(&format!("\r\nConnection: {connection}")), "{head}");
    assert_eq!(body, proto::make_body(BODY_LEN));
}

#[test]
fn shutdown_closes_listener_and_idle_client_at_once_and_lets_a_request_in_flight_finish() {
    let summary = with_server(|server| async move {
        // An idle keep-alive client: answered, connection kept open.
        let mut idle = Client::connect(server.addr).await?;
        idle.send(GET).await?;
        let (head, body) = idle.response().await?;
        assert_ok(&head, &body, "keep-alive");
        // A client in the middle of its request.
        let mut mid = Client::connect(server.addr).await?;
        mid.send(GET_HEAD_ONLY).await?;

        let t = server.shut_down().await?;
        // The idle client is closed at once, with nothing sent.
        assert_eq!(idle.end().await?, (t, Vec::new()));
        // The listener is closed: a new client is refused.
        wait_all_tasks_blocked().await?;
        let refused = TcpStream::connect(server.addr).await.map(drop);
        assert_eq!(refused.as_ref().map_err(|e| e.kind()), Err(io::ErrorKind::ConnectionRefused), "{refused:?}");
        // The request in flight completes and is answered, as the last one.
        mid.send(b"\r\n").await?;
        let (head, body) = mid.response().await?;
        assert_ok(&head, &body, "close");
        assert_eq!(mid.end().await?, (t, Vec::new()));
        Ok(())
    });
    assert_eq!(
        summary,
        Summary { idle_closed: 1, finished: 1, cancelled: 0, grace: GRACE, took: Duration::ZERO },
        "{summary}"
    );
}

#[test]
fn a_client_stuck_mid_request_is_cancelled_at_exactly_the_grace_deadline() {
    let summary = with_server(|server| async move {
        let mut idle = Client::connect(server.addr).await?;
        let mut stuck = Client::connect(server.addr).await?;
        stuck.send(b"GET / HTTP/1.1\r\nHost: te").await?;
        let t = server.shut_down().await?;
        assert_eq!(idle.end().await?, (t, Vec::new()));
        // Never completes its request: cut off at the deadline, no answer.
        assert_eq!(stuck.end().await?, (t + GRACE, Vec::new()));
        Ok(())
    });
    assert_eq!(summary, Summary { idle_closed: 1, finished: 0, cancelled: 1, grace: GRACE, took: GRACE }, "{summary}");
}

#[test]
fn shutdown_with_no_connections_is_immediate() {
    let summary = with_server(|server| async move {
        server.shut_down().await?;
        Ok(())
    });
    assert_eq!(summary, Summary { idle_closed: 0, finished: 0, cancelled: 0, grace: GRACE, took: Duration::ZERO });
}

#[test]
fn a_pipelined_burst_in_flight_is_answered_before_the_connection_closes() {
    let summary = with_server(|server| async move {
        let mut c = Client::connect(server.addr).await?;
        // One whole request and the start of another, in flight together.
        c.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\nGET /missing HTTP/1.1\r\n").await?;
        let (head, body) = c.response().await?;
        assert_ok(&head, &body, "keep-alive");
        let t = server.shut_down().await?;
        c.send(b"Host: test\r\n\r\n").await?;
        let (head, _) = c.response().await?;
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
        assert!(head.contains("\r\nConnection: close"), "{head}");
        assert_eq!(c.end().await?, (t, Vec::new()));
        Ok(())
    });
    assert_eq!(summary.finished, 1, "{summary}");
    assert_eq!(summary.took, Duration::ZERO);
}
