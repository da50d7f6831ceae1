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
        let config = Rc::new(conn::Config {
            body: proto::make_body(BODY_LEN),
            idle: IDLE,
            request: REQUEST,
            work: Duration::ZERO,
        });
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

// ---------------------------------------------------------------------------
// The sharded server (`http_server --threads 2`) as a process: SIGTERM
// reaches one thread, and every shard drains.

mod process {
    use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
    use std::net::TcpStream as StdStream;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant as StdInstant};

    /// How long the server may take to print its address, and to exit
    /// after SIGTERM (it exits in milliseconds; room for a loaded machine).
    const LIMIT: Duration = Duration::from_secs(20);

    /// The `http_server` example of this build profile, built if needed:
    /// `cargo test` builds the examples, `cargo test --test http_shutdown`
    /// does not.
    pub(super) fn http_server_binary() -> std::path::PathBuf {
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
        let bin = profile_dir.join("examples").join("http_server");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "--example", "http_server"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        if let Some(target) = profile_dir.parent() {
            build.env("CARGO_TARGET_DIR", target);
        }
        let status = build.status().expect("run cargo build --example http_server");
        assert!(status.success(), "cargo build --example http_server failed");
        bin
    }

    /// A running `http_server`: its address, and its stdout/stderr in
    /// files read after the exit.
    pub(super) struct Server {
        child: Child,
        pub(super) port: u16,
        out: std::path::PathBuf,
        err: std::path::PathBuf,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_file(&self.out);
            let _ = std::fs::remove_file(&self.err);
        }
    }

    impl Server {
        pub(super) fn start(args: &[&str]) -> Server {
            let dir = std::env::temp_dir();
            let tag = format!("trioxide-http-shutdown-{}-{}", std::process::id(), args.join("_").replace('-', ""));
            let (out, err) = (dir.join(format!("{tag}.out")), dir.join(format!("{tag}.err")));
            let child = Command::new(http_server_binary())
                .args(["--port", "0"])
                .args(args)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&out).expect("stdout file"))
                .stderr(std::fs::File::create(&err).expect("stderr file"))
                .spawn()
                .expect("start http_server");
            let mut server = Server { child, port: 0, out, err };
            let t0 = StdInstant::now();
            while server.port == 0 {
                let first = std::fs::File::open(&server.out)
                    .ok()
                    .and_then(|f| BufReader::new(f).lines().next())
                    .and_then(Result::ok)
                    .unwrap_or_default();
                if let Some(port) = first.strip_prefix("listening on 127.0.0.1:").and_then(|p| p.parse().ok()) {
                    server.port = port;
                } else {
                    assert!(server.child.try_wait().unwrap().is_none(), "http_server exited: {}", server.stderr());
                    assert!(t0.elapsed() < LIMIT, "no address printed within {LIMIT:?}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            server
        }

        pub(super) fn stdout(&self) -> String {
            std::fs::read_to_string(&self.out).unwrap_or_default()
        }

        pub(super) fn stderr(&self) -> String {
            std::fs::read_to_string(&self.err).unwrap_or_default()
        }

        pub(super) fn connect(&self) -> StdStream {
            let c = StdStream::connect(("127.0.0.1", self.port)).expect("connect");
            c.set_read_timeout(Some(LIMIT)).unwrap();
            c
        }

        pub(super) fn sigterm(&self) {
            // SAFETY: `kill` takes no pointers; the pid is our live child's.
            let r = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            assert_eq!(r, 0, "kill: {}", std::io::Error::last_os_error());
        }

        /// Waits for the exit; returns its status code.
        pub(super) fn wait_exit(&mut self) -> Option<i32> {
            let t0 = StdInstant::now();
            loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    return status.code();
                }
                assert!(t0.elapsed() < LIMIT, "still running {LIMIT:?} after SIGTERM: {}", self.stderr());
                std::thread::sleep(Duration::from_millis(10));
            }
        }

        /// Polls until a new connection is refused (every shard has
        /// closed its listener).
        pub(super) fn wait_refused(&self) {
            let t0 = StdInstant::now();
            loop {
                match StdStream::connect(("127.0.0.1", self.port)) {
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
                    _ => {
                        assert!(t0.elapsed() < LIMIT, "still accepting {LIMIT:?} after SIGTERM");
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
    }

    /// Reads one response (head and `Content-Length` body) from `c`;
    /// returns the head.
    pub(super) fn response(c: &mut StdStream) -> String {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            c.read_exact(&mut byte).expect("a response head");
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf).unwrap();
        let len: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().parse().unwrap();
        let mut body = vec![0u8; len];
        c.read_exact(&mut body).expect("the body");
        head
    }

    /// Reads to the end of the stream; returns what came.
    pub(super) fn rest(c: &mut StdStream) -> Vec<u8> {
        let mut got = Vec::new();
        c.read_to_end(&mut got).expect("the end of the stream");
        got
    }

    pub(super) fn get(c: &mut StdStream) -> String {
        c.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
        response(c)
    }
}

#[test]
fn sharded_server_process_exits_0_on_sigterm_after_its_requests_in_flight_finish() {
    use std::io::Write;
    // reuseport: a refused connection means every shard has closed its
    // listener, so has begun its drain.
    let mut server = process::Server::start(&["--threads", "2", "--balance", "reuseport"]);
    // Requests in flight, on enough connections that both shards have some
    // (2^-7 odds of all on one): a whole request and the head of another
    // without its final CRLF, in one write; the first answer shows the
    // server has read both.
    let mut mid: Vec<_> = (0..8).map(|_| server.connect()).collect();
    for c in &mut mid {
        c.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\nGET / HTTP/1.1\r\nHost: test\r\n").unwrap();
        assert!(process::response(c).contains("\r\nConnection: keep-alive"));
    }
    server.sigterm();
    server.wait_refused();
    for c in &mut mid {
        c.write_all(b"\r\n").unwrap();
        let head = process::response(c);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("\r\nConnection: close"), "{head}");
        assert_eq!(process::rest(c), b"");
    }
    assert_eq!(server.wait_exit(), Some(0), "{}", server.stderr());
    let out = server.stdout();
    // The refusal probes may have been accepted (and closed at once) by a
    // shard before its drain: the idle count is not fixed.
    assert!(out.contains(" 8 finished their request, 0 cancelled at the 5.000 s grace deadline"), "{out}");
    assert!(server.stderr().contains("http_server: SIGTERM: shutting down (grace 5.000 s)"));
}

#[test]
fn sharded_least_loaded_server_process_closes_idle_connections_on_both_shards_at_sigterm() {
    let mut server = process::Server::start(&["--threads", "2", "--balance", "least-loaded", "--grace", "30"]);
    // Least-loaded: the first goes to shard 0, the second (the first still
    // open) to shard 1. Both answered, then idle.
    let mut idle: Vec<_> = (0..2).map(|_| server.connect()).collect();
    for c in &mut idle {
        assert!(process::get(c).contains("\r\nConnection: keep-alive"));
    }
    server.sigterm();
    for c in &mut idle {
        assert_eq!(process::rest(c), b""); // closed at once, nothing sent
    }
    assert_eq!(server.wait_exit(), Some(0), "{}", server.stderr());
    let out = server.stdout();
    assert!(
        out.contains(
            ": listeners closed, 2 idle connection(s) closed at once, 0 finished their request, 0 cancelled at the \
             30.000 s grace deadline"
        ),
        "{out}"
    );
}
