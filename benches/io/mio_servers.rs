//! The "ceiling" servers of the I/O benchmarks: echo, HTTP/1.1 and pingpong on a
//! hand-written, single-threaded, edge-triggered `mio` event loop.
//!
//! Built as the `bench_mio_servers` example and started by `benches/io.sh`
//! (pinned to one core) next to trioxide's example servers and
//! `bench_tokio_servers`, with the same command line:
//!
//! ```text
//! bench_mio_servers <echo|http|pingpong> --port N [--body BYTES] [--work-ns NS] [--read-budget N]
//! ```
//!
//! It binds 127.0.0.1:N (0 picks a port), prints `listening on 127.0.0.1:PORT`
//! as its first line and serves until killed. What a careful user-space loop
//! does, and nothing more:
//!
//! * connections live in a `slab::Slab`, each registered once, at accept, for
//!   READABLE | WRITABLE (edge-triggered, never re-registered; closing the
//!   socket removes it from epoll, so there is no deregister call either);
//! * a connection reads until `WouldBlock` into one 64 KiB buffer shared by all
//!   connections, answers straight from it and writes at once; only what a
//!   write could not take is copied into the connection's pending output,
//!   which is flushed when the socket is writable (reading stops meanwhile);
//! * a read shorter than the buffer counts as `WouldBlock` (the socket is
//!   drained; data arriving later raises a new edge), and so does a short
//!   write: no syscall is spent just to hear `EAGAIN`. tokio's `PollEvented`
//!   takes the same shortcut on epoll, so without it this loop would make
//!   one more `recvfrom` per request than tokio does;
//! * no allocation per event: the shared read and response buffers are
//!   reused, and a connection's own buffers are only used (and then kept) for
//!   partial writes and, in HTTP, for a request split across reads;
//! * fairness: one turn of a connection does at most [`READ_BUDGET`] reads
//!   (`--read-budget N` to change it; `benches/io.sh`'s `fairness_hog` uses 32);
//!   a connection that is still readable after that goes on a ready list that
//!   runs after the next poll (zero timeout), so a greedy client cannot starve
//!   the others (tokio's cooperative budget does the same for its tasks).
//!
//! Errors on a connection close that connection only; `accept` errors are
//! reported on stderr and the server goes on.

#[path = "../../examples/http_server/proto.rs"]
mod proto;

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

const LISTENER: Token = Token(0);
const READ_BUF: usize = 64 * 1024;
/// Reads one connection may do before the loop moves on to other connections
/// (default of `--read-budget`).
const READ_BUDGET: u32 = 16;
const PONG: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nPong!";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Echo,
    Http,
    Pingpong,
}

struct Args {
    kind: Kind,
    port: u16,
    body: usize,
    work_ns: u64,
    read_budget: u32,
}

fn usage() -> ! {
    eprintln!("usage: bench_mio_servers <echo|http|pingpong> --port N [--body BYTES] [--work-ns NS] [--read-budget N]");
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let kind = match it.next().as_deref() {
        Some("echo") => Kind::Echo,
        Some("http") => Kind::Http,
        Some("pingpong") => Kind::Pingpong,
        _ => usage(),
    };
    let mut args = Args { kind, port: 0, body: 1024, work_ns: 0, read_budget: READ_BUDGET };
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--port" => args.port = value.parse().unwrap_or_else(|_| usage()),
            "--body" => args.body = value.parse().unwrap_or_else(|_| usage()),
            "--work-ns" => args.work_ns = value.parse().unwrap_or_else(|_| usage()),
            "--read-budget" => args.read_budget = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    args
}

struct Conn {
    stream: TcpStream,
    /// The last read did not end in `WouldBlock`: there may be more to read.
    readable: bool,
    /// Output a write could not take yet: `out[out_pos..]`.
    out: Vec<u8>,
    out_pos: usize,
    /// HTTP: the start of a request that has not fully arrived.
    inbuf: Vec<u8>,
    /// Pingpong: how much of `\r\n\r\n` the request has matched so far.
    matched: u8,
    /// Close once `out` is flushed (answered pingpong, HTTP error or close).
    close_after_flush: bool,
    /// On the ready list (read budget used up while still readable).
    queued: bool,
}

/// What a turn of a connection left to do.
enum Turn {
    /// Waiting for the next readiness event.
    Wait,
    /// Read budget used up while still readable: run again after the next poll.
    Again,
    Close,
}

struct Server {
    kind: Kind,
    work: Duration,
    read_budget: u32,
    body: Vec<u8>,
    conns: Slab<Conn>,
    rbuf: Box<[u8]>,
    obuf: Vec<u8>,
}

fn main() {
    let args = parse_args();
    let mut poll = Poll::new().expect("create epoll instance");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    let mut listener = TcpListener::bind(addr).expect("bind 127.0.0.1");
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE).expect("register listener");
    let local = listener.local_addr().expect("listener address");
    println!("listening on {local}");
    io::stdout().flush().expect("flush stdout");

    let mut server = Server {
        kind: args.kind,
        work: Duration::from_nanos(args.work_ns),
        read_budget: args.read_budget.max(1),
        body: proto::make_body(args.body),
        conns: Slab::with_capacity(1024),
        rbuf: vec![0u8; READ_BUF].into_boxed_slice(),
        obuf: Vec::with_capacity(64 * 1024),
    };
    let mut events = Events::with_capacity(1024);
    let mut ready: Vec<usize> = Vec::new();
    let mut running: Vec<usize> = Vec::new();
    loop {
        let timeout = if ready.is_empty() { None } else { Some(Duration::ZERO) };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            panic!("epoll_wait failed: {e}");
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                server.accept_all(&listener, &poll);
                continue;
            }
            let key = ev.token().0 - 1;
            if let Some(conn) = server.conns.get_mut(key) {
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    conn.readable = true;
                }
                // A queued connection runs from the ready list below.
                if !conn.queued {
                    server.run(key, &mut ready);
                }
            }
        }
        std::mem::swap(&mut ready, &mut running);
        for key in running.drain(..) {
            if let Some(conn) = server.conns.get_mut(key) {
                conn.queued = false;
                server.run(key, &mut ready);
            }
        }
    }
}

impl Server {
    fn accept_all(&mut self, listener: &TcpListener, poll: &Poll) {
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let entry = self.conns.vacant_entry();
                    let token = Token(entry.key() + 1);
                    if let Err(e) =
                        poll.registry().register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                    {
                        eprintln!("register failed: {e}");
                        continue;
                    }
                    entry.insert(Conn {
                        stream,
                        readable: false,
                        out: Vec::new(),
                        out_pos: 0,
                        inbuf: Vec::new(),
                        matched: 0,
                        close_after_flush: false,
                        queued: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: the pending connections stay in the
                    // backlog and are accepted with the next connection's event.
                    eprintln!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn run(&mut self, key: usize, ready: &mut Vec<usize>) {
        match self.turn(key) {
            Turn::Wait => {}
            Turn::Again => {
                self.conns[key].queued = true;
                ready.push(key);
            }
            Turn::Close => {
                // Dropping the stream closes it, which also removes it from epoll.
                self.conns.try_remove(key);
            }
        }
    }

    fn turn(&mut self, key: usize) -> Turn {
        let Server { kind, work, read_budget, body, conns, rbuf, obuf } = self;
        let Some(conn) = conns.get_mut(key) else { return Turn::Wait };
        let mut budget = *read_budget;
        loop {
            if conn.out_pos < conn.out.len() {
                match write_some(&mut conn.stream, &conn.out[conn.out_pos..]) {
                    Ok(n) => conn.out_pos += n,
                    Err(_) => return Turn::Close,
                }
                if conn.out_pos < conn.out.len() {
                    return Turn::Wait; // the writable edge brings us back
                }
                conn.out.clear();
                conn.out_pos = 0;
            }
            if conn.close_after_flush {
                return Turn::Close;
            }
            if !conn.readable {
                return Turn::Wait;
            }
            if budget == 0 {
                return Turn::Again;
            }
            budget -= 1;
            let n = match conn.stream.read(rbuf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.readable = false;
                    return Turn::Wait;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Turn::Close,
            };
            if n < rbuf.len() {
                conn.readable = false; // short read: drained
            }
            let input = &rbuf[..n];
            match kind {
                Kind::Echo => {
                    if n == 0 {
                        return Turn::Close;
                    }
                    spin(*work);
                    if send(conn, input).is_err() {
                        return Turn::Close;
                    }
                }
                Kind::Http => {
                    if n == 0 {
                        return Turn::Close;
                    }
                    obuf.clear();
                    if conn.inbuf.is_empty() {
                        let used = answer_http(input, obuf, body, &mut conn.close_after_flush);
                        if !conn.close_after_flush {
                            conn.inbuf.extend_from_slice(&input[used..]);
                        }
                    } else {
                        conn.inbuf.extend_from_slice(input);
                        let used = answer_http(&conn.inbuf, obuf, body, &mut conn.close_after_flush);
                        conn.inbuf.drain(..used);
                    }
                    if !obuf.is_empty() && send(conn, obuf).is_err() {
                        return Turn::Close;
                    }
                }
                Kind::Pingpong => {
                    let done = n == 0 || scan_head_end(&mut conn.matched, input);
                    if done {
                        conn.close_after_flush = true;
                        if send(conn, PONG).is_err() {
                            return Turn::Close;
                        }
                    }
                }
            }
        }
    }
}

/// Answers every complete request at the start of `input` into `out` and
/// returns how many bytes they took. Sets `close` (and stops) on an error or a
/// request that closes the connection.
fn answer_http(input: &[u8], out: &mut Vec<u8>, body: &[u8], close: &mut bool) -> usize {
    let mut used = 0;
    loop {
        match proto::parse_request(&input[used..]) {
            proto::Parse::Request(req) => {
                proto::write_response(out, &req, body);
                used += req.consumed;
                if !req.keep_alive {
                    *close = true;
                    return used;
                }
            }
            proto::Parse::Partial => return used,
            proto::Parse::Error(status) => {
                proto::write_error(out, status);
                *close = true;
                return used;
            }
        }
    }
}

/// Feeds `input` to the `\r\n\r\n` matcher; true once it has been seen.
fn scan_head_end(matched: &mut u8, input: &[u8]) -> bool {
    const END: &[u8; 4] = b"\r\n\r\n";
    for &b in input {
        if b == END[*matched as usize] {
            *matched += 1;
            if *matched == 4 {
                return true;
            }
        } else {
            *matched = u8::from(b == b'\r');
        }
    }
    false
}

/// Writes as much of `data` as the socket takes now and queues the rest on
/// the connection (only called with no output already pending).
fn send(conn: &mut Conn, data: &[u8]) -> io::Result<()> {
    let n = write_some(&mut conn.stream, data)?;
    if n < data.len() {
        conn.out.extend_from_slice(&data[n..]);
    }
    Ok(())
}

/// Writes until everything is written or the socket is full (`WouldBlock` or
/// a short write); returns the bytes written.
fn write_some(stream: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < data.len() {
        match stream.write(&data[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) if n < data.len() - done => return Ok(done + n),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Busy-waits `work` (the simulated per-read processing of `--work-ns`).
fn spin(work: Duration) {
    if work.is_zero() {
        return;
    }
    let start = Instant::now();
    while start.elapsed() < work {
        std::hint::spin_loop();
    }
}
