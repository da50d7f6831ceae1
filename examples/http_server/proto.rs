//! The HTTP/1.1 side of the `http_server` example, free of any runtime: it
//! turns bytes into requests and requests into responses. The trioxide
//! example, and the tokio and raw-mio servers the I/O benchmarks compare it
//! with, all include this file, so they parse and answer identically.

/// Largest request head (request line and headers) accepted, in bytes.
/// 8 KiB is nginx's default `large_client_header_buffers` size; a head that
/// does not fit gets `431 Request Header Fields Too Large`.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Most headers accepted in one request (more gets `431`). httparse parses
/// into a fixed array; 64 is twice what browsers send.
pub const MAX_HEADERS: usize = 64;

/// Largest request body accepted (`Content-Length` above it gets `413`).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What [`parse_request`] found at the start of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// A whole request, body included, in `buf[..consumed]`.
    Request(Request),
    /// The buffer holds the start of a request; read more.
    Partial,
    /// The request is bad: answer with this status and close the connection.
    Error(u16),
}

/// A parsed request: only what the server needs to answer it.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// Bytes of the buffer this request (head and body) takes.
    pub consumed: usize,
    /// What to answer with: 200, 404 or 405.
    pub status: u16,
    /// `HEAD`: answer with headers only.
    pub head_only: bool,
    /// Whether the connection stays open after the answer (HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
}

/// Parses the request at the start of `buf`. Pipelined requests are parsed
/// one at a time: call again on `buf[consumed..]`.
pub fn parse_request(buf: &[u8]) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => return Parse::Error(431),
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parse::Error(431),
        Err(_) => return Parse::Error(400),
    };
    if head_len > MAX_HEAD_BYTES {
        return Parse::Error(431);
    }
    let http10 = req.version == Some(0);
    let mut keep_alive = !http10;
    let mut body_len = 0usize;
    let mut saw_length = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let len = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok());
            match len {
                // Two different lengths are a smuggling attempt (RFC 9112 §6.3).
                Some(n) if saw_length && n != body_len => return Parse::Error(400),
                Some(n) => body_len = n,
                None => return Parse::Error(400),
            }
            saw_length = true;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked request bodies are not supported by this example.
            return Parse::Error(501);
        } else if h.name.eq_ignore_ascii_case("connection") {
            if h.value.eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if h.value.eq_ignore_ascii_case(b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    if body_len > MAX_BODY_BYTES {
        return Parse::Error(413);
    }
    let consumed = head_len + body_len;
    if buf.len() < consumed {
        return Parse::Partial;
    }
    let method = req.method.unwrap_or("");
    let (status, head_only) = match (method, req.path.unwrap_or("")) {
        ("GET", "/") => (200, false),
        ("HEAD", "/") => (200, true),
        ("GET" | "HEAD", _) => (404, method == "HEAD"),
        _ => (405, false),
    };
    Parse::Request(Request { consumed, status, head_only, keep_alive })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        _ => "Error",
    }
}

/// Appends the answer to `req` to `out`: `body` for 200, a short text
/// otherwise.
pub fn write_response(out: &mut Vec<u8>, req: &Request, body: &[u8]) {
    let text: &[u8] = if req.status == 200 { body } else { reason(req.status).as_bytes() };
    write_head(out, req.status, text.len(), req.keep_alive);
    if !req.head_only {
        out.extend_from_slice(text);
    }
}

/// Appends an error answer (the connection closes after it).
pub fn write_error(out: &mut Vec<u8>, status: u16) {
    let text = reason(status).as_bytes();
    write_head(out, status, text.len(), false);
    out.extend_from_slice(text);
}

fn write_head(out: &mut Vec<u8>, status: u16, len: usize, keep_alive: bool) {
    use std::io::Write;
    let conn = if keep_alive { "keep-alive" } else { "close" };
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\nConnection: {conn}\r\n\r\n",
        reason(status)
    );
}

/// The default body: `n` bytes of printable text.
pub fn make_body(n: usize) -> Vec<u8> {
    (0..n).map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36]).collect()
}
