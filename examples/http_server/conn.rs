//! One HTTP/1.1 connection of the `http_server` example: the read-parse-
//! answer loop and its deadlines. Separate from `main.rs` so the tests can
//! run the very same code (`tests/http_bad_input.rs` and
//! `tests/http_shutdown.rs` include this file).

use std::rc::Rc;
use std::time::Duration;

use trioxide::{move_on_after, CancelScope, GracefulShutdown, IdleWaiter, TcpStream};

use crate::proto::{parse_request, write_error, write_response, Parse};
/// First read buffer per connection; it grows (up to a head and a body at
/// their limits) only for requests that need it.
const INITIAL_BUF: usize = 4 * 1024;

/// How long a `408` answer to a timed-out client may take to send.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// Server settings, shared by every connection.
#[derive(Clone)]
pub struct Config {
    /// The answer to `GET /`.
    pub body: Vec<u8>,
    /// Keep-alive idle limit between requests.
    pub idle: Duration,
    /// Limit on one request, from its first byte.
    pub request: Duration,
    /// CPU to burn per request before answering it (`--work-us`): a busy
    /// spin, standing for a handler's own work in benchmarks.
    pub work: Duration,
}

/// Spins for `work` (nothing for zero): CPU spent in the handler.
fn burn(work: Duration) {
    if work.is_zero() {
        return;
    }
    let t = std::time::Instant::now();
    while t.elapsed() < work {
        std::hint::spin_loop();
    }
}

/// Serves one connection until the client closes it, misbehaves, or times
/// out. Never returns an error: a client's trouble is not the server's.
#[allow(dead_code)] // the example serves through `serve_connection_with`; tests/http_bad_input.rs uses this
pub async fn serve_connection(stream: TcpStream, config: Rc<Config>) {
    serve_connection_with(stream, config, None).await
}

/// [`serve_connection`] for a server that can shut down gracefully: while
/// the connection is idle (waiting for a request with nothing buffered)
/// the drain closes it at once; a request it has started is answered with
/// `Connection: close`.
pub async fn serve_connection_with(stream: TcpStream, config: Rc<Config>, shutdown: Option<GracefulShutdown>) {
    let scope = CancelScope::with_relative_deadline(config.idle);
    // Reserved, not zeroed: `receive_into` fills spare capacity, so an idle
    // connection's buffer pages are never touched.
    let mut buf = Vec::with_capacity(INITIAL_BUF);
    // One registration for the connection's life: each idle wait then
    // costs a flag, not a registration.
    let idle = shutdown.as_ref().map(GracefulShutdown::idle_waiter);
    let outcome = scope.run(connection_loop(&stream, &config, &scope, idle.as_ref(), &mut buf)).await;
    if let Ok(None) = outcome {
        // The deadline fired. Mid-request, tell the client why.
        if !buf.is_empty() {
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
    shutdown: Option<&IdleWaiter>,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(config.body.len() + 256);
    // Whether the bytes buffered belong to a request whose deadline is set.
    let mut in_request = false;
    loop {
        // Answer every complete request already buffered (pipelining).
        let mut start = 0;
        let mut close = false;
        loop {
            match parse_request(&buf[start..]) {
                Parse::Request(mut req) => {
                    if shutdown.is_some_and(IdleWaiter::is_draining) {
                        // Tell the client this answer is the last one.
                        req.keep_alive = false;
                    }
                    burn(config.work);
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
            buf.drain(..start);
            in_request = false;
        }
        if !out.is_empty() {
            stream.send_all(&out).await?;
            out.clear();
        }
        if close {
            return Ok(());
        }
        if buf.is_empty() && shutdown.is_some_and(IdleWaiter::is_draining) {
            return Ok(()); // shutting down, and no request started
        }
        if buf.is_empty() {
            // Between requests: the keep-alive idle deadline applies.
            scope.set_relative_deadline(config.idle);
        } else if !in_request {
            // The first bytes of a request not complete yet: from now on it
            // has the request deadline, however slowly the rest trickles in.
            scope.set_relative_deadline(config.request);
            in_request = true;
        }
        if buf.len() == buf.capacity() {
            // A request bigger than the buffer so far: grow (the parser has
            // already refused heads and bodies over their limits).
            buf.reserve(buf.len());
        }
        let received = match shutdown {
            // Idle: a shutdown closes the connection at once.
            Some(sd) if buf.is_empty() => match sd.abandon_on_drain(stream.receive_into(buf)).await? {
                Some(n) => n,
                None => return Ok(()),
            },
            _ => stream.receive_into(buf).await?,
        };
        if received == 0 {
            return Ok(()); // the client closed, possibly mid-request
        }
    }
}
