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

use trioxide::{open_nursery, serve_tcp, BoxError, TcpStream};

#[path = "../common/args.rs"]
mod args;
mod conn;
mod proto;

use conn::{serve_connection, Config};

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
