//! An HTTP/1.1 server on trioxide: keep-alive, pipelining, a plain-text
//! answer to `GET /`, and the defences a server exposed to clients needs.
//!
//! ```text
//! cargo run --release --example http_server -- --port 8000 --body 1024
//! curl http://127.0.0.1:8000/
//! ```
//! Binds 127.0.0.1 (port 0: any free port), prints the address, and runs
//! until Ctrl-C.
//!
//! * One task per connection, in the server's nursery (`serve_tcp`).
//! * Pipelined requests are answered in order, all answers that are ready
//!   going out in one `send_all`.
//! * Malformed requests get `400`, heads over 8 KiB or 64 headers `431`,
//!   and the connection closes (see `proto.rs`).
//! * A connection idle for `--idle-secs` between requests is closed; a
//!   request that takes longer than `--request-secs` from its first byte
//!   (a slowloris client) gets `408` and is closed. Both are one cancel
//!   scope per connection whose deadline moves.
//! * A handler never fails: whatever a client does, only its own
//!   connection ends, and its task with it.

use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::Duration;

use trioxide::{current_time, move_on_after, open_nursery, serve_tcp, BoxError, CancelScope, TcpStream};

#[path = "../common/args.rs"]
mod args;
mod proto;

use proto::{parse_request, write_error, write_response, Parse};

/// First read buffer per connection; it grows (up to a head and a body at
/// their limits) only for requests that need it.
const INITIAL_BUF: usize = 4 * 1024;

/// How long a `408` answer to a timed-out client may take to send.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// Server settings, shared by every connection.
struct Config {
    body: Vec<u8>,
    idle: Duration,
    request: Duration,
}

/// Serves one connection until the client closes it, misbehaves, or times
/// out. Never returns an error: a client's trouble is not the server's.
async fn serve_connection(stream: TcpStream, config: Rc<Config>) {
    let scope = CancelScope::with_deadline(current_time() + config.idle);
    let mut buf = vec![0u8; INITIAL_BUF];
    let mut filled = 0;
    let outcome = scope.run(connection_loop(&stream, &config, &scope, &mut buf, &mut filled)).await;
    if let Ok(None) = outcome {
        // The deadline fired. Mid-request, tell the client why.
        if filled > 0 {
            let mut out = Vec::new();
            write_error(&mut out, 408);
            let _ = move_on_after(GOODBYE_TIMEOUT, stream.send_all(&out)).await;
        }
    }
}

async fn connection_loop(
    stream: &TcpStream,
    config: &Config,
    scope: &CancelScope,
    buf: &mut Vec<u8>,
    filled: &mut usize,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(config.body.len() + 256);
    // Whether the bytes buffered belong to a request whose deadline is set.
    let mut in_request = false;
    loop {
        // Answer every complete request already buffered (pipelining).
        let mut start = 0;
        let mut close = false;
        loop {
            match parse_request(&buf[start..*filled]) {
                Parse::Request(req) => {
                    write_response(&mut out, &req, &config.body);
                    start += req.consumed;
                    if !req.keep_alive {
                        close = true;
                        break;
                    }
                }
                Parse::Partial => break,
                Parse::Error(status) => {
                    write_error(&mut out, status);
                    close = true;
                    break;
                }
            }
        }
        if start > 0 {
            buf.copy_within(start..*filled, 0);
            *filled -= start;
            in_request = false;
        }
        if !out.is_empty() {
            stream.send_all(&out).await?;
            out.clear();
        }
        if close {
            return Ok(());
        }
        if *filled == 0 {
            // Between requests: the keep-alive idle deadline applies.
            scope.set_deadline(current_time() + config.idle);
        } else if !in_request {
            // The first bytes of a request not complete yet: from now on it
            // has the request deadline, however slowly the rest trickles in.
            scope.set_deadline(current_time() + config.request);
            in_request = true;
        }
        if *filled == buf.len() {
            // A request bigger than the buffer so far: grow (the parser has
            // already refused heads and bodies over their limits).
            buf.resize(buf.len() * 2, 0);
        }
        let n = stream.receive_some(&mut buf[*filled..]).await?;
        if n == 0 {
            return Ok(()); // the client closed, possibly mid-request
        }
        *filled += n;
    }
}

fn main() {
    let port: u16 = args::flag("port", 8000);
    let config = Rc::new(Config {
        body: proto::make_body(args::flag("body", 1024)),
        idle: Duration::from_secs_f64(args::flag("idle-secs", 10.0)),
        request: Duration::from_secs_f64(args::flag("request-secs", 10.0)),
    });
    let result = trioxide::run(open_nursery(|n| async move {
        let handler = move |s: TcpStream| serve_connection(s, config.clone());
        let addrs = n.start(|status| serve_tcp(handler, port, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), status)).await?;
        println!("listening on {}", addrs[0]);
        Ok::<_, BoxError>(())
    }));
    if let Err(e) = result {
        eprintln!("http_server: {e}");
        std::process::exit(1);
    }
}
