//! An echo server: one task per connection, in the server's nursery.
//!
//! ```text
//! cargo run --release --example echo_server -- --port 8000
//! ```
//! Binds 127.0.0.1 (port 0: any free port), prints the address, and runs
//! until Ctrl-C. `--work-ns N` burns N ns of CPU per chunk received, to
//! make the server the bottleneck (the fairness benchmark uses it).
//!
//! `--threads N` (default 1) serves with N shards of one `run_sharded`
//! run over a `ShardedListener`, `--balance reuseport` (one `SO_REUSEPORT`
//! socket per shard) or `least-loaded` (shard 0 accepts and hands each
//! connection to the shard with the fewest open). With 1, the
//! single-threaded server, with no sharding code on its path.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use trioxide::{
    is_cancelled_error, open_nursery, run_sharded, serve_tcp, Balance, BoxError, GracefulShutdown, ShardedListener,
    TcpStream, TASK_STATUS_IGNORED,
};

#[path = "common/args.rs"]
mod args;

/// Read buffer per connection: 64 KiB, so one read takes what a fast
/// client has in flight. Reserved, not zeroed: `receive_into` reads into
/// spare capacity, so an idle connection's buffer pages are never touched
/// and cost no memory.
const BUF_SIZE: usize = 64 * 1024;

async fn echo(stream: TcpStream, work: Duration) {
    let mut buf = Vec::with_capacity(BUF_SIZE);
    loop {
        buf.clear();
        let n = match stream.receive_into(&mut buf).await {
            Ok(0) => return, // the client closed
            // The server is stopping (Ctrl-C): an io::Error of kind Other
            // holding Cancelled. Returning lets the server's scope catch it.
            Err(e) if is_cancelled_error(&e) => return,
            Err(_) => return, // reset by the client: nothing to tell anyone
            Ok(n) => n,
        };
        if !work.is_zero() {
            let t = Instant::now();
            while t.elapsed() < work {
                std::hint::spin_loop();
            }
        }
        if stream.send_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

const FLAGS: &[args::Flag] = &[
    args::Flag { name: "port", value: "PORT", default: "8000", help: "port on 127.0.0.1 (0: any free port)" },
    args::Flag { name: "work-ns", value: "NS", default: "0", help: "CPU to burn per chunk received, in ns" },
    args::Flag { name: "threads", value: "N", default: "1", help: "shards (threads) serving the port" },
    args::Flag {
        name: "balance",
        value: "MODE",
        default: "reuseport",
        help: "with --threads > 1: reuseport or least-loaded",
    },
];

/// `--threads N` for N > 1: every shard serves its part of the port until
/// the process is killed.
fn serve_sharded(port: u16, threads: usize, balance: Balance, work: Duration) -> Result<(), BoxError> {
    let listener = ShardedListener::bind((Ipv4Addr::LOCALHOST, port).into(), threads, balance)?;
    println!("listening on {}", listener.local_addr());
    let listener = &listener;
    run_sharded(threads, |shard| async move {
        let handler = move |s: TcpStream| echo(s, work);
        // Never asked to drain: Ctrl-C ends the process.
        listener.serve(shard, handler, &GracefulShutdown::new(), TASK_STATUS_IGNORED).await
    })?;
    Ok(())
}

fn main() {
    let args = args::Args::parse("echo_server", "An echo server: one task per connection.", FLAGS);
    let port: u16 = args.get("port");
    let work = Duration::from_nanos(args.get("work-ns"));
    let threads: usize = args.get("threads");
    let balance: Balance = args.get("balance");
    if threads == 0 {
        eprintln!("echo_server: --threads must be at least 1");
        std::process::exit(2);
    }
    if threads > 1 {
        if let Err(e) = serve_sharded(port, threads, balance, work) {
            eprintln!("echo_server: {e}");
            std::process::exit(1);
        }
        return;
    }
    let result = trioxide::run(open_nursery(|n| async move {
        let handler = move |s: TcpStream| echo(s, work);
        let addrs = n.start(|status| serve_tcp(handler, port, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), status)).await?;
        println!("listening on {}", addrs[0]);
        Ok::<_, BoxError>(())
    }));
    if let Err(e) = result {
        eprintln!("echo_server: {e}");
        std::process::exit(1);
    }
}
