//! Graceful shutdown for the `http_server` example: [`serve_until`] serves
//! until a shutdown future completes, then
//!
//! 1. stops accepting (the accept loops are cancelled, which drops and so
//!    closes the listeners: new clients are refused at once);
//! 2. closes idle keep-alive connections at once (their cancel scopes are
//!    cancelled), and lets busy ones finish the request they started,
//!    answered with `Connection: close`;
//! 3. waits for them for at most the grace period, then cancels whatever
//!    is left (a client that stalls mid-request);
//! 4. returns a [`Summary`] of what happened.
//!
//! The mechanism is trioxide's own ([`Server::graceful`] with a
//! [`GracefulShutdown`]); what is HTTP about it is in `conn.rs`.
//!
//! Separate from `main.rs` so `tests/http_shutdown.rs` runs this very code
//! on a mock clock. It depends only on trioxide, `conn.rs` and `proto.rs`.

use std::fmt;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use trioxide::{open_nursery, BoxError, GracefulShutdown, Server, TcpListener, TcpStream, TASK_STATUS_IGNORED};

use crate::conn::{serve_connection_with, Config};

/// What a graceful shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Connections idle at shutdown (or accepted during it), closed at once.
    pub idle_closed: usize,
    /// Connections busy at shutdown that ended within the grace period
    /// (normally after their answer).
    pub finished: usize,
    /// Connections still open at the grace deadline, cancelled.
    pub cancelled: usize,
    /// The grace period.
    pub grace: Duration,
    /// From the shutdown request until every connection was gone.
    pub took: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shut down in {:.3} s: listeners closed, {} idle connection(s) closed at once, {} finished their \
             request, {} cancelled at the {:.3} s grace deadline",
            self.took.as_secs_f64(),
            self.idle_closed,
            self.finished,
            self.cancelled,
            self.grace.as_secs_f64()
        )
    }
}

/// Serves HTTP on `listeners` until `shutdown` completes, then shuts down
/// gracefully (see the module docs) and returns what happened. The accept
/// loops and the drain are trioxide's [`Server`] with a
/// [`GracefulShutdown`]; this file only says what is HTTP about it (idle
/// keep-alive waits are cut short, see `conn.rs`).
pub async fn serve_until(
    listeners: Vec<TcpListener>,
    config: Rc<Config>,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, BoxError> {
    let drain = GracefulShutdown::new();
    let summary = open_nursery(|n| async move {
        let for_conns = drain.clone();
        let handler = move |stream: TcpStream| serve_connection_with(stream, config.clone(), Some(for_conns.clone()));
        let server = Server::new(handler).graceful(&drain);
        n.start_soon_named("http server", server.serve_listeners(listeners, TASK_STATUS_IGNORED))?;
        shutdown.await;
        drain.shutdown(grace);
        let report = drain.stopped().await?;
        Ok::<_, BoxError>(Summary {
            idle_closed: report.abandoned,
            finished: report.finished - report.abandoned,
            cancelled: report.cancelled,
            grace,
            took: report.took,
        })
    })
    .await?;
    summary.ok_or_else(|| "the server was cancelled before its shutdown finished".into())
}
