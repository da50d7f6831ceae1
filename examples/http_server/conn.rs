//! One HTTP/1.1 connection of the `http_server` example: the read-parse-
//! answer loop and its deadlines. Separate from `main.rs` so the tests can
//! run the very same code (`tests/http_bad_input.rs` and
//! `tests/http_shutdown.rs` include this file).

use std::rc::Rc;
use std::time::Duration;

use trioxide::{move_on_after, CancelScope, TcpStream};

use crate::proto::{parse_request, write_error, write_response, Parse};
/// First read buffer per connection; it grows (up to a head and a body at
/// their limits) only for requests that need it.
const INITIAL_BUF: usize = 4 * 1024;

/// How long a `408` answer to a timed-out client may take to send.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// Server settings, shared by every connection.
pub struct Config {
    /// The answer to `GET /`.
    pub body: Vec<u8>,
    /// Keep-alive idle limit between requests.
    pub idle: Duration,
    /// Limit on one request, from its first byte.
    pub request: Duration,
}

/// How a connection takes part in a graceful shutdown (`shutdown.rs`): it
/// says when it is idle (waiting for a request with nothing buffered, so it
/// may be closed at once), and asks whether the server is draining (then it
/// answers what it has started with `Connection: close` and closes).
pub trait Drain {
    /// `true` just before waiting for bytes with an empty buffer, `false`
    /// once the wait is over.
    fn set_idle(&self, idle: bool);
    /// Whether the server is shutting down.
    fn draining(&self) -> bool;
}

/// A server that never drains.
#[allow(dead_code)] // used by `serve_connection`, which the tests drive
pub struct NoDrain;

impl Drain for NoDrain {
    fn set_idle(&self, _: bool) {}
    fn draining(&self) -> bool {
        false
    }
}

/// Serves one connection until the client closes it, misbehaves, or times
/// out. Never returns an error: a client's trouble is not the server's.
#[allow(dead_code)] // the example serves through `serve_connection_with`; tests/http_bad_input.rs uses this
pub async fn serve_connection(stream: TcpStream, config: Rc<Config>) {
    serve_connection_with(stream, config, |_| NoDrain).await
}

/// [`serve_connection`] for a server that can shut down gracefully: `join`
/// gets the connection's cancel scope (cancelling it closes the connection)
/// and returns its [`Drain`] link, kept until the connection ends.
pub async fn serve_connection_with<D: Drain>(
    stream: TcpStream,
    config: Rc<Config>,
    join: impl FnOnce(&CancelScope) -> D,
) {
    let scope = CancelScope::with_relative_deadline(config.idle);
    let drain = join(&scope);
    // Reserved, not zeroed: `receive_into` fills spare capacity, so an idle
    // connection's buffer pages are never touched.
    let mut buf = Vec::with_capacity(INITIAL_BUF);
    let outcome = scope.run(connection_loop(&stream, &config, &scope, &drain, &mut buf)).await;
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
    drain: &impl Drain,
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
                    if drain.draining() {
                        // Tell the client this answer is the last one.
                        req.keep_alive = false;
                    }
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
        if buf.is_empty() && drain.draining() {
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
        drain.set_idle(buf.is_empty());
        let received = stream.receive_into(buf).await;
        drain.set_idle(false);
        if received? == 0 {
            return Ok(()); // the client closed, possibly mid-request
        }
    }
}
