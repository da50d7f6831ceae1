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
//! Separate from `main.rs` so `tests/http_shutdown.rs` runs this very code
//! on a mock clock. It depends only on trioxide, `conn.rs` and `proto.rs`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use trioxide::sync::ParkingLot;
use trioxide::{
    current_time, move_on_after, open_nursery, sleep, BoxError, CancelScope, Cancelled, Nursery, TcpListener,
    ACCEPT_BATCH, ACCEPT_RETRY_DELAY,
};

use crate::conn::{serve_connection_with, Config, Drain};

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
/// gracefully (see the module docs) and returns what happened.
pub async fn serve_until(
    listeners: Vec<TcpListener>,
    config: Rc<Config>,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, BoxError> {
    let tracker = Rc::new(Tracker::default());
    let summary = open_nursery(|n| async move {
        // One scope per accept loop (a scope is entered once).
        let mut accepting = Vec::new();
        for listener in listeners {
            let scope = CancelScope::new();
            accepting.push(scope.clone());
            let accept = accept_loop(listener, n.clone(), tracker.clone(), config.clone());
            n.start_soon_named("http accept loop", async move { scope.run(accept).await.map(drop) })?;
        }
        shutdown.await;
        let started = current_time();
        for scope in &accepting {
            scope.cancel();
        }
        let busy = tracker.begin_drain();
        let drained = move_on_after(grace, tracker.all_closed()).await?;
        let cancelled = if drained.is_none() {
            // The grace period is over: cancel what is left (the
            // connections, and any 408 they would still try to send).
            let left = tracker.busy_left();
            n.cancel_scope().cancel();
            left
        } else {
            0
        };
        Ok::<_, BoxError>(Summary {
            idle_closed: tracker.idle_closed.get(),
            finished: busy - cancelled,
            cancelled,
            grace,
            took: current_time().saturating_duration_since(started),
        })
    })
    .await?;
    // `None` would mean the nursery's scope cut the body short; the body
    // cancels that scope only after its last checkpoint.
    summary.ok_or_else(|| "the server was cancelled before its shutdown finished".into())
}

/// Accepts connections until cancelled, each served as a task of `conns`.
/// Dropping the listener at the end closes it.
async fn accept_loop(
    listener: TcpListener,
    conns: Nursery,
    tracker: Rc<Tracker>,
    config: Rc<Config>,
) -> Result<(), BoxError> {
    let mut batch = Vec::with_capacity(ACCEPT_BATCH);
    loop {
        match listener.accept_batch(&mut batch, ACCEPT_BATCH).await {
            Ok(_) => {
                for (stream, _peer) in batch.drain(..) {
                    let tracker = tracker.clone();
                    let conn = serve_connection_with(stream, config.clone(), move |scope| tracker.join(scope));
                    conns.start_soon_named("http connection", conn)?;
                }
            }
            // Out of fds or memory: connections ending will free some (the
            // same pause as trioxide's own `serve_listeners`).
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)) => {
                eprintln!("http_server: accept failed: {e}; retrying in {} ms", ACCEPT_RETRY_DELAY.as_millis());
                sleep(ACCEPT_RETRY_DELAY).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The server's view of its connections: which are idle, and whether it is
/// draining.
#[derive(Default)]
struct Tracker {
    conns: RefCell<HashMap<u64, Rc<ConnState>>>,
    next_id: Cell<u64>,
    draining: Cell<bool>,
    idle_closed: Cell<usize>,
    /// Woken when the last connection ends while draining.
    empty: ParkingLot,
}

struct ConnState {
    scope: CancelScope,
    idle: Cell<bool>,
    /// Closed by the shutdown because it was idle.
    closed_idle: Cell<bool>,
}

impl Tracker {
    /// Adds a connection (idle until it receives bytes). One that arrives
    /// while draining is closed at once.
    fn join(self: &Rc<Self>, scope: &CancelScope) -> Member {
        let state = Rc::new(ConnState { scope: scope.clone(), idle: Cell::new(true), closed_idle: Cell::new(false) });
        if self.draining.get() {
            state.close_idle(self);
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.conns.borrow_mut().insert(id, state.clone());
        Member { tracker: self.clone(), id, state }
    }

    /// Starts draining: closes idle connections now. Returns how many
    /// others are busy.
    fn begin_drain(&self) -> usize {
        self.draining.set(true);
        let mut busy = 0;
        for c in self.conns.borrow().values() {
            if c.idle.get() {
                c.close_idle(self);
            } else {
                busy += 1;
            }
        }
        busy
    }

    fn live(&self) -> usize {
        self.conns.borrow().len()
    }

    /// Connections still open that were busy when the drain began.
    fn busy_left(&self) -> usize {
        self.conns.borrow().values().filter(|c| !c.closed_idle.get()).count()
    }

    /// Waits until no connection is left. A checkpoint.
    async fn all_closed(&self) -> Result<(), Cancelled> {
        trioxide::checkpoint().await?;
        while self.live() > 0 {
            self.empty.park().await.map_err(|_| Cancelled)?;
        }
        Ok(())
    }
}

impl ConnState {
    fn close_idle(&self, tracker: &Tracker) {
        self.closed_idle.set(true);
        self.scope.cancel();
        tracker.idle_closed.set(tracker.idle_closed.get() + 1);
    }
}

/// A connection's membership; leaves the tracker when the connection ends.
struct Member {
    tracker: Rc<Tracker>,
    id: u64,
    state: Rc<ConnState>,
}

impl Drain for Member {
    fn set_idle(&self, idle: bool) {
        self.state.idle.set(idle);
    }

    fn draining(&self) -> bool {
        self.tracker.draining.get()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut conns = self.tracker.conns.borrow_mut();
        conns.remove(&self.id);
        if conns.is_empty() {
            drop(conns);
            self.tracker.empty.unpark_all();
        }
    }
}
