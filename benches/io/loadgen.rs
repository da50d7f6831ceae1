//! The load generator of the I/O benchmarks: a single-threaded client on raw
//! `mio` (edge-triggered, no allocation per request), so that one core of
//! load is enough to saturate a single-threaded server on the other core.
//!
//! Built as the `bench_loadgen` example; `benches/io.sh` runs it pinned to
//! core 1 against each server (pinned to core 0) and reads the one line it
//! prints on stdout, `RESULT key=value ...`. Connections go to 127.0.0.1 only.
//! Failures (refused connects, resets, wrong answers) are counted in
//! `errors=`, never fatal.
//!
//! ```text
//! bench_loadgen echo     --addr A [--conns 10] [--size 1024] [--secs 5]
//! bench_loadgen http     --addr A [--conns 100] [--secs 5] [--pipeline 1]
//! bench_loadgen pingpong --addr A [--inflight 50] [--secs 5]
//! bench_loadgen fairness --addr A [--secs 5] [--chunk 16384]
//! bench_loadgen idle     --addr A [--conns 10000] [--hold-secs 5]
//! ```
//!
//! * `echo`: each connection sends a `size`-byte message, waits for all of
//!   its echo (checked byte for byte), sends the next. `requests=` counts
//!   round trips.
//! * `http`: keep-alive `GET /` on every connection, `pipeline` requests in
//!   flight per connection (default 1); a response ends after its
//!   `Content-Length`; a status other than 200 is an error.
//! * `pingpong`: `inflight` connections at all times, each sending
//!   `GET / HTTP/1.0` and reading to EOF (the answer must be a 200 ending in
//!   `Pong!`), then replaced by a new one. `requests=` counts connections.
//! * `fairness`: two greedy connections each write `chunk`-byte blocks as
//!   fast as the server takes them while reading the echo back; a third sends
//!   one byte, waits for its echo, sleeps 10 ms, and so on. Reports the bytes
//!   echoed to each greedy client (`a=`, `b=`), Jain's fairness index of the
//!   two and the ping's latency percentiles.
//! * `idle`: opens `conns` connections in batches (each connect completed
//!   before the next batch), prints `RESULT opened=N`, holds them
//!   `hold-secs`, closes them. The script measures the server's RSS meanwhile.
//!
//! `secs=` is the time from the first connect to the end of the run (the
//! script measures the server's CPU time over the same span, so
//! `requests=` includes everything the server did meanwhile).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

const READ_BUF: usize = 64 * 1024;

fn usage() -> ! {
    eprintln!(
        "usage: bench_loadgen <echo|http|pingpong|fairness|idle> --addr 127.0.0.1:PORT [options]\n\
         echo:     --conns 10 --size 1024 --secs 5\n\
         http:     --conns 100 --secs 5 --pipeline 1\n\
         pingpong: --inflight 50 --secs 5\n\
         fairness: --secs 5 --chunk 16384\n\
         idle:     --conns 10000 --hold-secs 5"
    );
    std::process::exit(2);
}

struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(mut it: impl Iterator<Item = String>) -> Opts {
        let mut map = HashMap::new();
        while let Some(flag) = it.next() {
            let Some(key) = flag.strip_prefix("--") else { usage() };
            let value = it.next().unwrap_or_else(|| usage());
            map.insert(key.to_string(), value);
        }
        Opts(map)
    }

    fn get<T: FromStr>(&self, key: &str, default: Option<T>) -> T {
        match self.0.get(key) {
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("bad value for --{key}: {v}");
                usage()
            }),
            None => default.unwrap_or_else(|| {
                eprintln!("missing --{key}");
                usage()
            }),
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| usage());
    let opts = Opts::parse(args);
    let addr: SocketAddr = opts.get("addr", None);
    if !addr.ip().is_loopback() {
        eprintln!("--addr must be a loopback address");
        std::process::exit(2);
    }
    let secs = Duration::from_secs_f64(opts.get("secs", Some(5.0)));
    match mode.as_str() {
        "echo" => echo(addr, opts.get("conns", Some(10)), opts.get("size", Some(1024)), secs),
        "http" => http(addr, opts.get("conns", Some(100)), opts.get("pipeline", Some(1)), secs),
        "pingpong" => pingpong(addr, opts.get("inflight", Some(50)), secs),
        "fairness" => fairness(addr, opts.get("chunk", Some(16384)), secs),
        "idle" => {
            idle(addr, opts.get("conns", Some(10_000)), Duration::from_secs_f64(opts.get("hold-secs", Some(5.0))))
        }
        _ => usage(),
    }
}

fn report(line: String) {
    println!("RESULT {line}");
    let _ = io::stdout().flush();
}

/// A connected, non-blocking, `TCP_NODELAY` socket (the blocking connect is
/// only for the few long-lived connections of echo, http and fairness).
fn connect_blocking(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = std::net::TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    Ok(TcpStream::from_std(s))
}

fn poll_once(poll: &mut Poll, events: &mut Events, timeout: Option<Duration>) {
    if let Err(e) = poll.poll(events, timeout) {
        if e.kind() != io::ErrorKind::Interrupted {
            eprintln!("epoll_wait failed: {e}");
            std::process::exit(1);
        }
    }
}

fn new_poll() -> (Poll, Events) {
    match Poll::new() {
        Ok(p) => (p, Events::with_capacity(1024)),
        Err(e) => {
            eprintln!("cannot create epoll instance: {e}");
            std::process::exit(1);
        }
    }
}

/// Writes `data[*pos..]` until done or the socket is full (`WouldBlock`, or a
/// short write: the writable edge comes back either way).
fn write_from(s: &mut TcpStream, data: &[u8], pos: &mut usize) -> io::Result<()> {
    while *pos < data.len() {
        match s.write(&data[*pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) if n < data.len() - *pos => {
                *pos += n;
                return Ok(());
            }
            Ok(n) => *pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn rate(requests: u64, elapsed: Duration) -> f64 {
    requests as f64 / elapsed.as_secs_f64().max(1e-9)
}

// ---------------------------------------------------------------- echo

struct EchoConn {
    s: TcpStream,
    sent: usize,
    recvd: usize,
    dead: bool,
}

fn echo(addr: SocketAddr, conns: usize, size: usize, secs: Duration) {
    let size = size.max(1);
    let pattern: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut rbuf = vec![0u8; READ_BUF];
    let (mut poll, mut events) = new_poll();
    let start = Instant::now();
    let deadline = start + secs;
    let mut errors = 0u64;
    let mut cs: Vec<EchoConn> = Vec::with_capacity(conns);
    for _ in 0..conns {
        match connect_blocking(addr) {
            Ok(mut s) => {
                let token = Token(cs.len());
                if poll.registry().register(&mut s, token, Interest::READABLE | Interest::WRITABLE).is_err() {
                    errors += 1;
                    continue;
                }
                cs.push(EchoConn { s, sent: 0, recvd: 0, dead: false });
            }
            Err(_) => errors += 1,
        }
    }
    for c in cs.iter_mut() {
        if write_from(&mut c.s, &pattern, &mut c.sent).is_err() {
            c.dead = true;
            errors += 1;
        }
    }
    let mut alive = cs.iter().filter(|c| !c.dead).count();
    let mut requests = 0u64;
    loop {
        let now = Instant::now();
        if now >= deadline || alive == 0 {
            break;
        }
        poll_once(&mut poll, &mut events, Some(deadline - now));
        for ev in events.iter() {
            let c = &mut cs[ev.token().0];
            if c.dead {
                continue;
            }
            let mut ok = true;
            if ev.is_writable() && c.sent < size {
                ok = write_from(&mut c.s, &pattern, &mut c.sent).is_ok();
            }
            if ok && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                // Only bytes we sent can come back: read at most those.
                while c.recvd < c.sent {
                    let want = (c.sent - c.recvd).min(rbuf.len());
                    match c.s.read(&mut rbuf[..want]) {
                        Ok(0) => {
                            ok = false;
                            break;
                        }
                        Ok(n) => {
                            if rbuf[..n] != pattern[c.recvd..c.recvd + n] {
                                ok = false;
                                break;
                            }
                            c.recvd += n;
                            if c.recvd == size {
                                requests += 1;
                                c.sent = 0;
                                c.recvd = 0;
                                ok = write_from(&mut c.s, &pattern, &mut c.sent).is_ok();
                                // The echo of the new message raises a new
                                // readable edge: no need to read to WouldBlock.
                                break;
                            }
                            if n < want {
                                break; // short read: drained, wait for the next edge
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            ok = false;
                            break;
                        }
                    }
                }
            }
            if !ok {
                c.dead = true;
                errors += 1;
                alive -= 1;
            }
        }
    }
    let elapsed = start.elapsed();
    report(format!(
        "mode=echo conns={conns} size={size} requests={requests} secs={:.3} rate={:.1} errors={errors}",
        elapsed.as_secs_f64(),
        rate(requests, elapsed)
    ));
}

// ---------------------------------------------------------------- http

struct HttpConn {
    s: TcpStream,
    buf: Vec<u8>,
    filled: usize,
    /// Bytes of the current request batch written.
    wpos: usize,
    /// Responses of the current batch still to come.
    outstanding: usize,
    dead: bool,
}

enum Response {
    /// A whole response of this many bytes; whether its status was 200.
    Complete(usize, bool),
    Partial,
    Bad,
}

fn parse_response(buf: &[u8]) -> Response {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Response::Partial,
        Err(_) => return Response::Bad,
    };
    let mut len = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            len = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok());
        }
    }
    let Some(len) = len else { return Response::Bad };
    if buf.len() < head + len {
        return Response::Partial;
    }
    Response::Complete(head + len, resp.code == Some(200))
}

fn http(addr: SocketAddr, conns: usize, pipeline: usize, secs: Duration) {
    let pipeline = pipeline.max(1);
    let batch: Vec<u8> = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(pipeline);
    let (mut poll, mut events) = new_poll();
    let start = Instant::now();
    let deadline = start + secs;
    let mut errors = 0u64;
    let mut cs: Vec<HttpConn> = Vec::with_capacity(conns);
    for _ in 0..conns {
        match connect_blocking(addr) {
            Ok(mut s) => {
                let token = Token(cs.len());
                if poll.registry().register(&mut s, token, Interest::READABLE | Interest::WRITABLE).is_err() {
                    errors += 1;
                    continue;
                }
                cs.push(HttpConn {
                    s,
                    buf: vec![0u8; 16 * 1024],
                    filled: 0,
                    wpos: 0,
                    outstanding: pipeline,
                    dead: false,
                });
            }
            Err(_) => errors += 1,
        }
    }
    for c in cs.iter_mut() {
        if write_from(&mut c.s, &batch, &mut c.wpos).is_err() {
            c.dead = true;
            errors += 1;
        }
    }
    let mut alive = cs.iter().filter(|c| !c.dead).count();
    let mut requests = 0u64;
    loop {
        let now = Instant::now();
        if now >= deadline || alive == 0 {
            break;
        }
        poll_once(&mut poll, &mut events, Some(deadline - now));
        for ev in events.iter() {
            let c = &mut cs[ev.token().0];
            if c.dead {
                continue;
            }
            let mut ok = true;
            if ev.is_writable() && c.wpos < batch.len() {
                ok = write_from(&mut c.s, &batch, &mut c.wpos).is_ok();
            }
            if ok && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                'read: loop {
                    if c.filled == c.buf.len() {
                        c.buf.resize(c.buf.len() * 2, 0);
                    }
                    let space = c.buf.len() - c.filled;
                    let drained = match c.s.read(&mut c.buf[c.filled..]) {
                        Ok(0) => {
                            ok = false;
                            break;
                        }
                        Ok(n) => {
                            c.filled += n;
                            n < space
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => {
                            ok = false;
                            break;
                        }
                    };
                    let mut pos = 0;
                    while c.outstanding > 0 {
                        match parse_response(&c.buf[pos..c.filled]) {
                            Response::Complete(len, good) => {
                                pos += len;
                                c.outstanding -= 1;
                                if good {
                                    requests += 1;
                                } else {
                                    errors += 1;
                                }
                            }
                            Response::Partial => break,
                            Response::Bad => {
                                ok = false;
                                break 'read;
                            }
                        }
                    }
                    c.buf.copy_within(pos..c.filled, 0);
                    c.filled -= pos;
                    if c.outstanding == 0 {
                        if c.filled != 0 {
                            ok = false; // bytes nobody asked for
                            break;
                        }
                        c.outstanding = pipeline;
                        c.wpos = 0;
                        ok = write_from(&mut c.s, &batch, &mut c.wpos).is_ok();
                        // The answers raise a new readable edge.
                        break;
                    }
                    if drained {
                        break; // short read: wait for the next edge
                    }
                }
            }
            if !ok {
                c.dead = true;
                errors += 1;
                alive -= 1;
            }
        }
    }
    let elapsed = start.elapsed();
    report(format!(
        "mode=http conns={conns} pipeline={pipeline} requests={requests} secs={:.3} rate={:.1} errors={errors}",
        elapsed.as_secs_f64(),
        rate(requests, elapsed)
    ));
}

// ---------------------------------------------------------------- pingpong

const PING_REQUEST: &[u8] = b"GET / HTTP/1.0\r\n\r\n";

struct PingConn {
    s: TcpStream,
    written: usize,
    resp: [u8; 128],
    len: usize,
}

/// Opens a pingpong connection and sends the request at once if the
/// handshake is already done (on loopback it usually completes inside
/// `connect`), saving a trip through epoll. No `TCP_NODELAY`: one small write
/// per connection is never delayed by Nagle.
fn open_ping(poll: &Poll, slab: &mut Slab<PingConn>, rbuf: &mut [u8], addr: SocketAddr) -> io::Result<()> {
    let mut s = TcpStream::connect(addr)?;
    let entry = slab.vacant_entry();
    let key = entry.key();
    poll.registry().register(&mut s, Token(key), Interest::READABLE | Interest::WRITABLE)?;
    let c = entry.insert(PingConn { s, written: 0, resp: [0; 128], len: 0 });
    match ping_step(c, rbuf, false) {
        PingStep::Pending => Ok(()),
        _ => {
            slab.remove(key);
            Err(io::ErrorKind::ConnectionAborted.into())
        }
    }
}

/// What an event did to a pingpong connection.
enum PingStep {
    Pending,
    Done,
    Failed,
}

fn ping_step(c: &mut PingConn, rbuf: &mut [u8], readable: bool) -> PingStep {
    if c.written < PING_REQUEST.len() {
        // A failed connect shows up as the write's error.
        loop {
            match c.s.write(&PING_REQUEST[c.written..]) {
                Ok(n) => {
                    c.written += n;
                    if c.written == PING_REQUEST.len() {
                        break;
                    }
                }
                // Still connecting.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::NotConnected => {
                    return PingStep::Pending
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return PingStep::Failed,
            }
        }
        // The answer raises a readable edge.
        return PingStep::Pending;
    }
    if !readable {
        return PingStep::Pending;
    }
    loop {
        match c.s.read(rbuf) {
            Ok(0) => {
                let r = &c.resp[..c.len];
                let good =
                    (r.starts_with(b"HTTP/1.0 200 ") || r.starts_with(b"HTTP/1.1 200 ")) && r.ends_with(b"Pong!");
                return if good { PingStep::Done } else { PingStep::Failed };
            }
            Ok(n) => {
                if c.len + n > c.resp.len() {
                    return PingStep::Failed;
                }
                c.resp[c.len..c.len + n].copy_from_slice(&rbuf[..n]);
                c.len += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return PingStep::Pending,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return PingStep::Failed,
        }
    }
}

fn pingpong(addr: SocketAddr, inflight: usize, secs: Duration) {
    let (mut poll, mut events) = new_poll();
    let mut rbuf = vec![0u8; 4096];
    let mut slab: Slab<PingConn> = Slab::with_capacity(inflight);
    let start = Instant::now();
    let deadline = start + secs;
    let mut errors = 0u64;
    let mut requests = 0u64;
    // Connections to open (a failed connect is retried after a short pause).
    let mut to_open = inflight;
    loop {
        while to_open > 0 {
            match open_ping(&poll, &mut slab, &mut rbuf, addr) {
                Ok(()) => to_open -= 1,
                Err(_) => {
                    errors += 1;
                    break;
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let timeout = if to_open > 0 { Duration::from_millis(1) } else { deadline - now };
        poll_once(&mut poll, &mut events, Some(timeout.min(deadline - now)));
        for ev in events.iter() {
            let key = ev.token().0;
            let Some(c) = slab.get_mut(key) else { continue };
            let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
            match ping_step(c, &mut rbuf, readable) {
                PingStep::Pending => continue,
                PingStep::Done => requests += 1,
                PingStep::Failed => errors += 1,
            }
            // Closing also removes the socket from epoll.
            slab.remove(key);
            to_open += 1;
        }
    }
    let elapsed = start.elapsed();
    report(format!(
        "mode=pingpong inflight={inflight} requests={requests} secs={:.3} rate={:.1} errors={errors}",
        elapsed.as_secs_f64(),
        rate(requests, elapsed)
    ));
}

// ---------------------------------------------------------------- fairness

fn fairness(addr: SocketAddr, chunk: usize, secs: Duration) {
    const PING_EVERY: Duration = Duration::from_millis(10);
    let block = vec![b'x'; chunk.max(1)];
    let mut rbuf = vec![0u8; READ_BUF];
    let (mut poll, mut events) = new_poll();
    let start = Instant::now();
    let deadline = start + secs;
    let mut errors = 0u64;
    // Tokens 0 and 1: the greedy clients; 2: the ping.
    let mut socks: Vec<Option<TcpStream>> = Vec::new();
    for i in 0..3 {
        match connect_blocking(addr) {
            Ok(mut s) => {
                let ok = poll.registry().register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE).is_ok();
                socks.push(ok.then_some(s));
            }
            Err(_) => socks.push(None),
        }
    }
    if socks.iter().any(Option::is_none) {
        report(format!("mode=fairness a=0 b=0 secs=0 jain=0 pings=0 p50_us=0 p99_us=0 max_us=0 errors={}", 3));
        return;
    }
    let mut echoed = [0u64; 2];
    let mut latencies_us: Vec<u64> = Vec::with_capacity(secs.as_millis() as usize / 10 + 16);
    let mut ping_sent: Option<Instant> = None;
    let mut next_ping = start;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if ping_sent.is_none() && now >= next_ping {
            if let Some(s) = socks[2].as_mut() {
                match s.write(b"p") {
                    Ok(1) => ping_sent = Some(Instant::now()),
                    Ok(_) | Err(_) => {
                        errors += 1;
                        socks[2] = None;
                    }
                }
            }
        }
        let wake = if ping_sent.is_none() && socks[2].is_some() { next_ping.min(deadline) } else { deadline };
        poll_once(&mut poll, &mut events, Some(wake.saturating_duration_since(now)));
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(s) = socks[i].as_mut() else { continue };
            let mut ok = true;
            if i < 2 && ev.is_writable() {
                loop {
                    match s.write(&block) {
                        Ok(0) => {
                            ok = false;
                            break;
                        }
                        Ok(n) if n < block.len() => break, // short write: full
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            ok = false;
                            break;
                        }
                    }
                }
            }
            if ok && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                loop {
                    match s.read(&mut rbuf) {
                        Ok(0) => {
                            ok = false;
                            break;
                        }
                        Ok(n) if i < 2 => {
                            echoed[i] += n as u64;
                            if n < rbuf.len() {
                                break; // short read: drained
                            }
                        }
                        Ok(_) => {
                            if let Some(sent) = ping_sent.take() {
                                let done = Instant::now();
                                latencies_us.push(done.duration_since(sent).as_micros() as u64);
                                next_ping = done + PING_EVERY;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            ok = false;
                            break;
                        }
                    }
                }
            }
            if !ok {
                errors += 1;
                socks[i] = None;
            }
        }
    }
    let elapsed = start.elapsed();
    let (a, b) = (echoed[0] as f64, echoed[1] as f64);
    let jain = if a + b > 0.0 { (a + b) * (a + b) / (2.0 * (a * a + b * b)) } else { 0.0 };
    latencies_us.sort_unstable();
    let pct = |p: usize| -> u64 {
        if latencies_us.is_empty() {
            0
        } else {
            latencies_us[(latencies_us.len() * p / 100).min(latencies_us.len() - 1)]
        }
    };
    report(format!(
        "mode=fairness a={} b={} secs={:.3} jain={jain:.4} pings={} p50_us={} p99_us={} max_us={} errors={errors}",
        echoed[0],
        echoed[1],
        elapsed.as_secs_f64(),
        latencies_us.len(),
        pct(50),
        pct(99),
        latencies_us.last().copied().unwrap_or(0),
    ));
}

// ---------------------------------------------------------------- idle

/// Raises this process's open-file limit to its hard limit.
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn idle(addr: SocketAddr, conns: usize, hold: Duration) {
    const BATCH: usize = 256;
    const BATCH_TIMEOUT: Duration = Duration::from_secs(10);
    raise_nofile();
    let (mut poll, mut events) = new_poll();
    let start = Instant::now();
    let mut open: Vec<TcpStream> = Vec::with_capacity(conns);
    let mut errors = 0usize;
    let mut attempted = 0usize;
    let mut batch: Vec<Option<TcpStream>> = Vec::with_capacity(BATCH);
    while attempted < conns {
        let n = BATCH.min(conns - attempted);
        // Tokens are unique over the run, so late events of earlier batches
        // (which stay registered) are told apart.
        let base = attempted;
        attempted += n;
        batch.clear();
        for i in 0..n {
            let s = TcpStream::connect(addr).and_then(|mut s| {
                poll.registry().register(&mut s, Token(base + i), Interest::WRITABLE)?;
                Ok(s)
            });
            match s {
                Ok(s) => batch.push(Some(s)),
                Err(_) => {
                    errors += 1;
                    batch.push(None);
                }
            }
        }
        let mut waiting = batch.iter().filter(|s| s.is_some()).count();
        let batch_deadline = Instant::now() + BATCH_TIMEOUT;
        while waiting > 0 {
            let now = Instant::now();
            if now >= batch_deadline {
                break;
            }
            poll_once(&mut poll, &mut events, Some(batch_deadline - now));
            for ev in events.iter() {
                let Some(i) = ev.token().0.checked_sub(base) else { continue };
                let Some(s) = batch.get_mut(i).and_then(Option::take) else { continue };
                match (s.take_error(), s.peer_addr()) {
                    (Ok(None), Ok(_)) => open.push(s),
                    (Ok(None), Err(e)) if e.kind() == io::ErrorKind::NotConnected => {
                        batch[i] = Some(s); // not yet: wait for the next event
                        continue;
                    }
                    _ => errors += 1,
                }
                waiting -= 1;
            }
        }
        errors += waiting; // timed out
        if open.is_empty() && errors >= BATCH {
            break; // the server is not there: give up early
        }
    }
    report(format!(
        "mode=idle opened={} errors={errors} connect_secs={:.3}",
        open.len(),
        start.elapsed().as_secs_f64()
    ));
    std::thread::sleep(hold);
    drop(open);
}
