//! The classic ping-pong server: accept, read the request, answer
//! `HTTP/1.0 200 OK` with `Pong!`, close.
//!
//! ```text
//! cargo run --release --example pingpong -- --port 8000
//! ```
//! Binds 127.0.0.1 (port 0: any free port), prints the address, and runs
//! until Ctrl-C.

use std::net::{IpAddr, Ipv4Addr};

use trioxide::{open_nursery, serve_tcp, BoxError, TcpStream};

#[path = "common/args.rs"]
mod args;

const ANSWER: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nPong!";

/// Largest request read; a longer one is answered once this much arrived.
/// The buffer lives inside the connection's task, so it is kept small
/// (a ping-pong request is a few dozen bytes).
const MAX_REQUEST: usize = 1024;

async fn pong(stream: TcpStream) {
    let mut buf = [0u8; MAX_REQUEST];
    let mut len = 0;
    // Read until the end of the request head, the end of the stream, or a
    // full buffer; errors (a reset, a cancel) just drop the connection.
    while len < buf.len() {
        match stream.receive_some(&mut buf[len..]).await {
            Ok(0) => break,
            Ok(n) => {
                // Look from 3 bytes back, for a `\r\n\r\n` split across reads.
                let from = len.saturating_sub(3);
                len += n;
                if buf[from..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => return,
        }
    }
    let _ = stream.send_all(ANSWER).await;
}

const PINGPONG_ABOUT: &str = "The ping-pong server: read a request, answer `Pong!`, close.";

const FLAGS: &[args::Flag] =
    &[args::Flag { name: "port", value: "PORT", default: "8000", help: "port on 127.0.0.1 (0: any free port)" }];

fn main() {
    let args = args::Args::parse("pingpong", PINGPONG_ABOUT, FLAGS);
    let port: u16 = args.get("port");
    let result = trioxide::run(open_nursery(|n| async move {
        let addrs = n.start(|status| serve_tcp(pong, port, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), status)).await?;
        println!("listening on {}", addrs[0]);
        Ok::<_, BoxError>(())
    }));
    if let Err(e) = result {
        eprintln!("pingpong: {e}");
        std::process::exit(1);
    }
}
