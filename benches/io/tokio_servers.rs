//! The tokio side of the I/O benchmarks: echo, HTTP/1.1 and pingpong servers
//! on tokio's current-thread runtime, written the way a competent tokio user
//! would write them (one spawned task per connection, `TCP_NODELAY` on).
//!
//! Built as the `bench_tokio_servers` example and started by `benches/io.sh`
//! (pinned to one core) next to trioxide's example servers and
//! `bench_mio_servers`, with the same command line:
//!
//! ```text
//! bench_tokio_servers <echo|http|pingpong> --port N [--body BYTES] [--work-ns NS] [--workers N]
//! ```
//!
//! `--workers 0` (the default) is the current-thread runtime; `--workers N`
//! is tokio's multi-thread (work-stealing) runtime with N worker threads,
//! which `benches/sharded.sh` puts beside trioxide's sharded `http_server`.
//!
//! It binds 127.0.0.1:N (0 picks a port), prints `listening on 127.0.0.1:PORT`
//! as its first line and serves until killed.
//!
//! * echo: reads into a 64 KiB buffer, busy-spins `--work-ns` per chunk read,
//!   writes the chunk back;
//! * http: HTTP/1.1 keep-alive and pipelining with the parser shared with
//!   trioxide's `http_server` example (`examples/http_server/proto.rs`): every
//!   complete request in the buffer is answered into one output buffer that
//!   is written at once; `--body` bytes (default 1024) per answer; with
//!   `--work-ns`, busy-spins that long per request before answering it;
//! * pingpong: reads the request head, answers a fixed `Pong!` and closes.

#[path = "../../examples/http_server/proto.rs"]
mod proto;

use std::io::Write;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PONG: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nPong!";

#[derive(Clone, Copy)]
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
    workers: usize,
}

fn usage() -> ! {
    eprintln!("usage: bench_tokio_servers <echo|http|pingpong> --port N [--body BYTES] [--work-ns NS] [--workers N]");
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
    let mut args = Args { kind, port: 0, body: 1024, work_ns: 0, workers: 0 };
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--port" => args.port = value.parse().unwrap_or_else(|_| usage()),
            "--body" => args.body = value.parse().unwrap_or_else(|_| usage()),
            "--work-ns" => args.work_ns = value.parse().unwrap_or_else(|_| usage()),
            "--workers" => args.workers = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    args
}

fn main() {
    let args = parse_args();
    let rt = match args.workers {
        0 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    }
    .expect("build tokio runtime");
    rt.block_on(serve(args));
}

async fn serve(args: Args) {
    let listener = TcpListener::bind(("127.0.0.1", args.port)).await.expect("bind 127.0.0.1");
    let local = listener.local_addr().expect("listener address");
    println!("listening on {local}");
    std::io::stdout().flush().expect("flush stdout");
    let body: &'static [u8] = Box::leak(proto::make_body(args.body).into_boxed_slice());
    let work = Duration::from_nanos(args.work_ns);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like: back off a little instead of spinning.
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match args.kind {
            Kind::Echo => tokio::spawn(echo(stream, work)),
            Kind::Http => tokio::spawn(http(stream, body, work)),
            Kind::Pingpong => tokio::spawn(pingpong(stream)),
        };
    }
}

async fn echo(mut stream: TcpStream, work: Duration) {
    // `with_capacity` + `read_buf`, as tokio's own examples do: the kernel
    // writes into the spare capacity, so an idle connection never touches
    // (or pays RSS for) its 64 KiB.
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if !work.is_zero() {
            let start = Instant::now();
            while start.elapsed() < work {
                std::hint::spin_loop();
            }
        }
        if stream.write_all(&buf).await.is_err() {
            return;
        }
    }
}

async fn http(mut stream: TcpStream, body: &'static [u8], work: Duration) {
    // Unread bytes are `buf[..]`; reads go into its spare capacity.
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut out = Vec::new();
    loop {
        if buf.capacity() - buf.len() < 4096 {
            // A request larger than the buffer (the parser caps heads at 8 KiB
            // and bodies at 1 MiB, so this stays bounded).
            buf.reserve(16 * 1024);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut used = 0;
        let mut close = false;
        loop {
            match proto::parse_request(&buf[used..]) {
                proto::Parse::Request(req) => {
                    if !work.is_zero() {
                        let start = Instant::now();
                        while start.elapsed() < work {
                            std::hint::spin_loop();
                        }
                    }
                    proto::write_response(&mut out, &req, body);
                    used += req.consumed;
                    if !req.keep_alive {
                        close = true;
                        break;
                    }
                }
                proto::Parse::Partial => break,
                proto::Parse::Error(status) => {
                    proto::write_error(&mut out, status);
                    close = true;
                    break;
                }
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if close {
            let _ = stream.shutdown().await;
            return;
        }
        buf.drain(..used);
    }
}

async fn pingpong(mut stream: TcpStream) {
    let mut buf = [0u8; 1024];
    let mut filled = 0;
    // Read the request head (or until EOF); a head larger than the buffer is
    // answered once the buffer is full.
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]).await {
            Ok(0) => break,
            Ok(n) => {
                // Look from 3 bytes before the new data, for a `\r\n\r\n` split across reads.
                let from = filled.saturating_sub(3);
                filled += n;
                if buf[from..filled].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => return,
        }
    }
    let _ = stream.write_all(PONG).await;
}
