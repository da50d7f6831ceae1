//! `http_server --threads N` for N > 1: the same connections (`conn.rs`)
//! served by N shards of one [`run_sharded`] run, over one
//! [`ShardedListener`] (`--balance reuseport|least-loaded`).
//!
//! Shard 0 waits for SIGINT/SIGTERM (the signal arrives on one thread) and
//! then asks every shard to drain ([`ShardedListener::shutdown`]): each
//! closes its listener, closes its idle keep-alive connections at once,
//! lets requests in flight finish within the grace period and cancels what
//! is left, exactly as the single-threaded server (`shutdown.rs`) does.
//! The summary adds up the shards' reports.

use std::rc::Rc;
use std::time::Duration;

use trioxide::signal::open_signal_receiver;
use trioxide::{
    open_nursery, run_sharded, BoxError, CancelScope, Cancelled, GracefulShutdown, ShardedListener, TcpStream,
    TASK_STATUS_IGNORED,
};

use crate::conn::{serve_connection_with, Config};
use crate::shutdown::Summary;

/// Serves `listener` on its shards until SIGINT or SIGTERM, then drains
/// every shard within `grace`; returns the shards' summaries added up.
pub fn serve_until_signal(listener: &ShardedListener, config: &Config, grace: Duration) -> Result<Summary, BoxError> {
    let summaries = run_sharded(listener.shards(), |shard| async move {
        let config = Rc::new(config.clone());
        let drain = GracefulShutdown::new();
        let for_conns = drain.clone();
        let handler = move |stream: TcpStream| serve_connection_with(stream, config.clone(), Some(for_conns.clone()));
        let served = listener.serve(shard, handler, &drain, TASK_STATUS_IGNORED);
        open_nursery(|n| async move {
            let watch = CancelScope::new();
            if shard.index() == 0 {
                // Before the address is printed: from then on a SIGTERM is
                // handled, never the default (fatal) action.
                let signals = open_signal_receiver(&[libc::SIGINT, libc::SIGTERM])?;
                println!("listening on {}", listener.local_addr());
                let (w, l) = (watch.clone(), listener.clone());
                n.start_soon(async move {
                    let got = w.run(async { signals.receive().await.map_err(|_| Cancelled) }).await?;
                    if let Some(sig) = got {
                        let name = if sig == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
                        eprintln!("http_server: {name}: shutting down (grace {:.3} s)", grace.as_secs_f64());
                        l.shutdown(grace);
                    }
                    // `signals` is dropped here: a second signal acts at once.
                    Ok::<_, Cancelled>(())
                })?;
            }
            let r = served.await;
            watch.cancel();
            r
        })
        .await?;
        let report = drain.report().ok_or("the shard stopped before its shutdown finished")?;
        Ok::<_, BoxError>(Summary {
            idle_closed: report.abandoned,
            finished: report.finished - report.abandoned,
            cancelled: report.cancelled,
            grace,
            took: report.took,
        })
    })?;
    Ok(summaries.into_iter().fold(
        Summary { idle_closed: 0, finished: 0, cancelled: 0, grace, took: Duration::ZERO },
        |a, s| Summary {
            idle_closed: a.idle_closed + s.idle_closed,
            finished: a.finished + s.finished,
            cancelled: a.cancelled + s.cancelled,
            grace,
            took: a.took.max(s.took),
        },
    ))
}
