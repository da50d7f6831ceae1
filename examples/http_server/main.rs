//! An HTTP/1.1 server on trioxide: keep-alive, pipelining, a plain-text
//! answer to `GET /`, and the defences a server exposed to clients needs.
//!
//! ```text
//! cargo run --release --example http_server -- --port 8000 --body 1024
//! curl http://127.0.0.1:8000/
//! ```
//! Binds 127.0.0.1 (port 0: any free port), prints the address, and runs
//! until SIGINT (Ctrl-C) or SIGTERM. Then it shuts down gracefully
//! (`shutdown.rs`): it stops accepting, closes idle keep-alive connections
//! at once, lets requests in flight finish for up to `--grace SECS`
//! (default 5), cancels what is left, prints a one-line summary and exits
//! with status 0. A second signal during the drain ends the process at once
//! (the default action: the signal receiver is gone by then).
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
//! * `--threads N` (default 1) serves with N shards, one thread each
//!   (`sharded.rs`): `--balance reuseport` gives each shard its own
//!   `SO_REUSEPORT` socket (the kernel spreads connections by hash),
//!   `--balance least-loaded` accepts on shard 0 and hands each connection
//!   to the shard with the fewest open. With 1, none of that code runs: the
//!   single-threaded server below. `--work-us N` burns N µs of CPU per
//!   request, standing for a handler's own work in benchmarks.

use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::Duration;

use trioxide::signal::open_signal_receiver;
use trioxide::{open_tcp_listeners, secs_f64, Balance, BoxError, ShardedListener};

#[path = "../common/args.rs"]
mod args;
mod conn;
mod proto;
mod sharded;
mod shutdown;

use conn::Config;

/// Default grace period for requests in flight at shutdown (`--grace`): 5 s, the grace
/// Trio's `run_process` gives a child between SIGTERM and SIGKILL
/// (`trioxide::process::TERMINATE_GRACE`), and half of the 10 s that
/// `docker stop` waits before it sends SIGKILL, so the drain ends before an
/// orchestrator's kill.
const GRACE_DEFAULT: &str = "5";

const FLAGS: &[args::Flag] = &[
    args::Flag { name: "port", value: "PORT", default: "8000", help: "port on 127.0.0.1 (0: any free port)" },
    args::Flag { name: "body", value: "BYTES", default: "1024", help: "size of the answer to GET /" },
    args::Flag {
        name: "grace",
        value: "SECS",
        default: GRACE_DEFAULT,
        help: "how long requests in flight may finish at shutdown",
    },
    args::Flag {
        name: "idle-secs",
        value: "SECS",
        default: "10",
        help: "close a keep-alive connection idle this long",
    },
    args::Flag { name: "request-secs", value: "SECS", default: "10", help: "answer 408 to a request slower than this" },
    args::Flag { name: "threads", value: "N", default: "1", help: "shards (threads) serving the port" },
    args::Flag {
        name: "balance",
        value: "MODE",
        default: "reuseport",
        help: "with --threads > 1: reuseport or least-loaded",
    },
    args::Flag { name: "work-us", value: "US", default: "0", help: "CPU to burn per request, in microseconds" },
];

/// `--NAME SECS` as a duration; exits with a message if it is negative or
/// not finite.
fn seconds(secs: f64, name: &str) -> Duration {
    match secs_f64(secs) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("http_server: --{name}: {e}");
            std::process::exit(2);
        }
    }
}

fn main() {
    let args = args::Args::parse(
        "http_server",
        "An HTTP/1.1 server on trioxide; Ctrl-C or SIGTERM shuts it down gracefully.",
        FLAGS,
    );
    let port: u16 = args.get("port");
    let grace = seconds(args.get("grace"), "grace");
    let threads: usize = args.get("threads");
    let balance: Balance = args.get("balance");
    let config = Config {
        body: proto::make_body(args.get("body")),
        idle: seconds(args.get("idle-secs"), "idle-secs"),
        request: seconds(args.get("request-secs"), "request-secs"),
        work: Duration::from_micros(args.get("work-us")),
    };
    if threads == 0 {
        eprintln!("http_server: --threads must be at least 1");
        std::process::exit(2);
    }
    if threads > 1 {
        let result = ShardedListener::bind((Ipv4Addr::LOCALHOST, port).into(), threads, balance)
            .map_err(BoxError::from)
            .and_then(|listener| {
                eprintln!("http_server: {threads} shards, balance {balance}");
                let summary = sharded::serve_until_signal(&listener, &config, grace);
                eprintln!("http_server: connections served per shard: {:?}", listener.connections_served());
                summary
            });
        match result {
            Ok(summary) => println!("http_server: {summary}"),
            Err(e) => {
                eprintln!("http_server: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let config = Rc::new(config);
    let result = trioxide::run(async move {
        // Before the address is printed: from then on a SIGTERM is handled,
        // never the default (fatal) action.
        let signals = open_signal_receiver(&[libc::SIGINT, libc::SIGTERM])?;
        let listeners = open_tcp_listeners(port, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)))?;
        println!("listening on {}", listeners[0].local_addr()?);
        let shutdown = async move {
            if let Ok(sig) = signals.receive().await {
                let name = if sig == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
                eprintln!("http_server: {name}: shutting down (grace {:.3} s)", grace.as_secs_f64());
            }
            // `signals` is dropped here: a second signal acts at once.
        };
        let summary = shutdown::serve_until(listeners, config, grace, shutdown).await?;
        println!("http_server: {summary}");
        Ok::<_, BoxError>(())
    });
    if let Err(e) = result {
        eprintln!("http_server: {e}");
        std::process::exit(1);
    }
}
