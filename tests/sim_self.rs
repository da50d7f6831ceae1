//! trioxide's own stress tests under `trioxide::sim` (issue 14, item 5):
//! each workload runs under `sim::explore` with the batch, random and pct3
//! strategies, many seeds each, and checks its invariants.
//!
//! * **Random nursery/scope trees** (the generator and checks of
//!   `tests/random_trees.rs`, run in simulation): every task finished,
//!   every error reported exactly once, the panics that were injected and
//!   no other, nothing left in the `RunReport`.
//! * **Channel stress**: senders and receivers under random deadlines and a
//!   chaos task that cancels their operations; the three channel kinds
//!   (rendezvous, bounded, unbounded) by turns. Every value is received
//!   exactly once, the channel ends empty with nobody waiting.
//! * **Lock, semaphore and condition stress** under the same chaos: no two
//!   tasks inside the lock, never more holders than permits, every item a
//!   producer queued under the condition is consumed exactly once (a lost
//!   wake-up ends in the simulator's deadlock report or the hang guard).
//! * **Serving over the simulated network** with faults from the seed
//!   (`NetConfig::swarm`, partitions, clogged hosts, client hosts killed or
//!   restarted mid-request, the server host restarted mid-run, the server
//!   shut down gracefully with connections in flight or while it is down):
//!   `Server::serve_tcp` with a line protocol, and the HTTP/1.1 connection
//!   code of `examples/http_server`. Every accepted connection's handler
//!   finished (a killed server boot's at the kill), every handler error was
//!   reported once, every complete answer a client got was the right one
//!   from the server boot that was up as it arrived, clients failed only
//!   by refusal, reset, broken pipe or patience, each restart booted when
//!   it said and served, only the boot alive at the drain drained (one
//!   `GracefulShutdown` per boot), every connection is closed at both
//!   ends, and nothing is left in the `RunReport`.
//!
//! Seeds per strategy: the default keeps the binary to seconds in debug;
//! `TRIOXIDE_SIM_SEEDS=N` runs N. A failure panics with the line that
//! reproduces it (`TRIOXIDE_SIM=seed=..,schedule=.. cargo test --test
//! sim_self <test>`). Figures: BENCHMARKS.md, "trioxide's own tests under
//! simulation".

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::{poll_fn, Future};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use trioxide::channel::{ReceiveError, SendErrorKind, UNBOUNDED};
use trioxide::sim::{self, Case, Host, NetConfig, SIM_ENV};
use trioxide::sync::{Condition, ConditionError, Event, Lock, LockError, Semaphore};
use trioxide::{
    checkpoint, current_time, fail_after, is_cancelled_error, move_on_after, open_memory_channel, open_nursery, sleep,
    BoxError, CancelScope, Cancelled, GracefulShutdown, Instant, RunReport, Schedule, Server, ShutdownReport,
    TcpListener, TcpStream,
};

#[path = "random_trees.rs"]
#[allow(dead_code, unreachable_pub)]
mod random_trees;

#[allow(dead_code)]
#[path = "../examples/http_server/proto.rs"]
mod proto;

#[allow(dead_code)]
#[path = "../examples/http_server/conn.rs"]
mod conn;

#[path = "../examples/http_server/shutdown.rs"]
mod shutdown;

/// The strategies every workload runs under.
const STRATEGIES: [Schedule; 3] = [Schedule::Batch, Schedule::Random, Schedule::pct(3)];

/// Seeds per strategy: `TRIOXIDE_SIM_SEEDS`, or `default`.
fn seeds(default: u64) -> u64 {
    std::env::var("TRIOXIDE_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Runs `check` under `sim::explore` for each strategy; panics with the
/// reproduction line at the first failing case. With `TRIOXIDE_SIM` set,
/// runs that one case only.
fn explore_each(workload: &str, default: u64, mut check: impl FnMut(Case) -> Result<(), String>) {
    let n = seeds(default);
    let replay = matches!(Case::from_env(), Ok(Some(_)));
    for schedule in STRATEGIES {
        let t0 = std::time::Instant::now();
        match sim::explore(0..n, schedule, &mut check) {
            Ok(_) if replay => eprintln!("sim_self: {workload}: the {SIM_ENV} case passed: {:.2?}", t0.elapsed()),
            Ok(runs) => eprintln!("sim_self: {workload}: {runs} seeds under {schedule}: {:.2?}", t0.elapsed()),
            Err(failure) => panic!("{failure}"),
        }
        if replay {
            break;
        }
    }
}

/// Nothing left behind by a run.
fn check_report(report: &RunReport) -> Result<(), String> {
    if (report.tasks_left, report.timers_left, report.task_allocations_left) != (0, 0, 0) {
        return Err(format!("the run left things behind: {report:?}"));
    }
    Ok(())
}

/// SplitMix64 for a workload's own choices (the scheduler and the network
/// have theirs).
struct Rng(Cell<u64>);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(Cell::new(seed ^ 0x51e5_e1f0_0d15_ea5e))
    }

    fn below(&self, n: u64) -> u64 {
        let s = self.0.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.0.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

fn bump(c: &Cell<u32>) {
    c.set(c.get() + 1);
}

// ---------------------------------------------------------------------
// Random nursery/scope trees.

#[test]
fn random_trees_under_simulation() {
    random_trees::quiet_injected_panics();
    random_trees::IN_SIM.set(true);
    let mut stats = random_trees::Stats::default();
    explore_each("random trees", 300, |case| {
        random_trees::SCHEDULE.set(case.schedule);
        random_trees::run_seed(case.seed, false, &mut stats)
    });
    eprintln!("sim_self: random trees: {stats:?}");
}

// ---------------------------------------------------------------------
// Channels, locks, semaphores and conditions under random cancellation.

/// Deadlines of operations: 0..MAX_DEADLINE_US virtual microseconds (0
/// cancels at the entry checkpoint).
const MAX_DEADLINE_US: u64 = 40;
/// Bounds a run's virtual time: a lost value or wake-up that still leaves a
/// timer armed (the chaos task's) fails the run here instead of hanging it.
const HANG_GUARD: Duration = Duration::from_millis(200);

/// What the tasks of a stress run share: the random source and the scope
/// each task runs its current operation in, for the chaos task.
struct Chaos {
    rng: Rng,
    scopes: RefCell<Vec<Option<CancelScope>>>,
    busy: Cell<usize>,
}

impl Chaos {
    fn new(seed: u64, slots: usize) -> Chaos {
        Chaos { rng: Rng::new(seed), scopes: RefCell::new(vec![None; slots]), busy: Cell::new(slots) }
    }

    /// A scope with a random deadline or (one time in four) none,
    /// registered as `slot`'s current operation.
    fn scope(&self, slot: usize) -> CancelScope {
        let scope = if self.rng.below(4) == 0 {
            CancelScope::new()
        } else {
            CancelScope::with_relative_deadline(Duration::from_micros(self.rng.below(MAX_DEADLINE_US)))
        };
        self.scopes.borrow_mut()[slot] = Some(scope.clone());
        scope
    }

    fn done(&self, slot: usize) {
        self.scopes.borrow_mut()[slot] = None;
    }

    /// Cancels a random task's current operation every few virtual
    /// microseconds until every task is done.
    async fn run(self: Rc<Self>) -> Result<(), BoxError> {
        while self.busy.get() > 0 {
            sleep(Duration::from_micros(1 + self.rng.below(MAX_DEADLINE_US / 2))).await?;
            let slot = self.rng.below(self.scopes.borrow().len() as u64) as usize;
            let scope = self.scopes.borrow_mut()[slot].take();
            if let Some(scope) = scope {
                scope.cancel();
            }
        }
        Ok(())
    }
}

const CH_SENDERS: usize = 6;
const CH_RECEIVERS: usize = 4;
const CH_VALUES: u32 = 25;

#[derive(Default)]
struct ChannelTally {
    received: RefCell<Vec<u32>>,
    cancelled_sends: Cell<u32>,
    cancelled_receives: Cell<u32>,
    dropped_receives: Cell<u32>,
}

/// One channel stress run: `Err` describes a broken invariant.
fn channel_case(case: Case, capacity: usize, tally: &ChannelTally) -> Result<(), String> {
    let chaos = Rc::new(Chaos::new(case.seed, CH_SENDERS + CH_RECEIVERS));
    let got: Rc<ChannelTally> = Rc::default();
    let (c, g) = (chaos.clone(), got.clone());
    let main = async move {
        let (tx, rx) = open_memory_channel::<u32>(capacity);
        let probe = tx.clone();
        probe.close(); // reads the statistics without keeping the channel open
        open_nursery(|n| async move {
            for slot in 0..CH_SENDERS {
                let (c, g, tx) = (c.clone(), g.clone(), tx.clone());
                n.start_soon(async move {
                    let first = slot as u32 * CH_VALUES;
                    for v in first..first + CH_VALUES {
                        let mut value = v;
                        loop {
                            let scope = c.scope(slot);
                            let mut back = None;
                            let out = scope
                                .run(async {
                                    tx.send(value).await.map_err(|e| {
                                        assert_eq!(e.kind(), SendErrorKind::Cancelled);
                                        back = Some(e.into_inner());
                                        Cancelled
                                    })
                                })
                                .await;
                            c.done(slot);
                            match out {
                                Ok(Some(())) => break,
                                Ok(None) => {
                                    bump(&g.cancelled_sends);
                                    value = back.ok_or("a cancelled send lost its value")?;
                                    if value != v {
                                        return Err(format!("a cancelled send gave back {value}, not {v}").into());
                                    }
                                }
                                Err(e) => return Err(e.into()),
                            }
                        }
                        if c.rng.below(6) == 0 {
                            checkpoint().await?;
                        }
                    }
                    c.busy.set(c.busy.get() - 1);
                    Ok::<_, BoxError>(())
                })?;
            }
            drop(tx);
            for slot in CH_SENDERS..CH_SENDERS + CH_RECEIVERS {
                let (c, g, rx) = (c.clone(), g.clone(), rx.clone());
                n.start_soon(async move {
                    loop {
                        let out = if c.rng.below(3) > 0 {
                            let scope = c.scope(slot);
                            let out = scope.run(rx.receive()).await;
                            c.done(slot);
                            out
                        } else {
                            // A receive polled once, left queued while the task
                            // sleeps, then awaited or dropped (its drop must
                            // pass on a value handed to it meanwhile).
                            let mut f = rx.receive();
                            match poll_fn(|cx| Poll::Ready(Pin::new(&mut f).poll(cx))).await {
                                Poll::Ready(r) => r.map(Some),
                                Poll::Pending => {
                                    sleep(Duration::from_micros(c.rng.below(MAX_DEADLINE_US))).await?;
                                    if c.rng.below(2) == 0 {
                                        drop(f);
                                        bump(&g.dropped_receives);
                                        Ok(None)
                                    } else {
                                        f.await.map(Some)
                                    }
                                }
                            }
                        };
                        match out {
                            Ok(Some(v)) => g.received.borrow_mut().push(v),
                            Ok(None) => bump(&g.cancelled_receives),
                            Err(ReceiveError::EndOfChannel) => break,
                            Err(e) => return Err(e.into()),
                        }
                    }
                    c.busy.set(c.busy.get() - 1);
                    Ok::<_, BoxError>(())
                })?;
            }
            drop(rx);
            n.start_soon(c.clone().run())?;
            Ok::<_, BoxError>(())
        })
        .await?;
        let s = probe.statistics();
        if (s.current_buffer_used, s.tasks_waiting_send, s.tasks_waiting_receive) != (0, 0, 0) {
            return Err(format!("the channel ends with values or waiters: {s:?}").into());
        }
        Ok::<_, BoxError>(())
    };
    let (out, report, _) = case.builder().run_with_trace(fail_after(HANG_GUARD, main));
    out.map_err(|e| format!("capacity {capacity}: {e}"))?;
    check_report(&report)?;
    let mut values = got.received.borrow().clone();
    values.sort_unstable();
    let total = CH_SENDERS as u32 * CH_VALUES;
    if !values.iter().copied().eq(0..total) {
        return Err(format!("capacity {capacity}: {} values received, not each of 0..{total} once", values.len()));
    }
    for (sum, one) in [
        (&tally.cancelled_sends, &got.cancelled_sends),
        (&tally.cancelled_receives, &got.cancelled_receives),
        (&tally.dropped_receives, &got.dropped_receives),
    ] {
        sum.set(sum.get() + one.get());
    }
    Ok(())
}

#[test]
fn channels_under_simulation_deliver_every_value_once() {
    let tally = ChannelTally::default();
    explore_each("channels", 300, |case| {
        // The three kinds by turns: rendezvous, bounded, unbounded.
        let capacity = [0, 3, UNBOUNDED][(case.seed % 3) as usize];
        channel_case(case, capacity, &tally)
    });
    // The stress means something only if every path was taken.
    let (s, r, d) = (tally.cancelled_sends.get(), tally.cancelled_receives.get(), tally.dropped_receives.get());
    eprintln!("sim_self: channels: cancelled sends {s}, cancelled receives {r}, dropped receives {d}");
    if Case::from_env().ok().flatten().is_none() {
        assert!(s > 0 && r > 0 && d > 0, "sends {s}, receives {r}, dropped {d}");
    }
}

const SY_WORKERS: usize = 6;
const SY_CONSUMERS: usize = 2;
const SY_ROUNDS: u32 = 8;
const PERMITS: usize = 2;

#[derive(Default)]
struct SyncState {
    inside_lock: Cell<bool>,
    counter: Cell<u32>,
    sem_holders: Cell<usize>,
    max_sem_holders: Cell<usize>,
    sem_entries: Cell<u32>,
    queue: RefCell<VecDeque<u32>>,
    produced: Cell<u32>,
    producers_left: Cell<usize>,
    consumed: RefCell<Vec<u32>>,
    cancelled: Cell<u32>,
}

fn lock_err(e: LockError) -> BoxError {
    match e {
        LockError::Cancelled => Cancelled.into(),
        e => e.into(),
    }
}

fn cond_err(e: ConditionError) -> BoxError {
    match e {
        ConditionError::Cancelled => Cancelled.into(),
        e => e.into(),
    }
}

/// Runs `op` in a fresh chaos scope of `slot` until it completes
/// (retrying after each cancellation it caught).
async fn retrying<T, F, Fut>(c: &Chaos, st: &SyncState, slot: usize, mut op: F) -> Result<T, BoxError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BoxError>>,
{
    loop {
        let scope = c.scope(slot);
        let out = scope.run(op()).await;
        c.done(slot);
        match out {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => bump(&st.cancelled),
            Err(e) => return Err(e),
        }
    }
}

fn sync_case(case: Case, cancelled: &Cell<u32>) -> Result<(), String> {
    let chaos = Rc::new(Chaos::new(case.seed, SY_WORKERS + SY_CONSUMERS));
    let st = Rc::new(SyncState::default());
    st.producers_left.set(SY_WORKERS);
    let (c, s) = (chaos.clone(), st.clone());
    let lock = Rc::new(Lock::new());
    let sem = Rc::new(Semaphore::new(PERMITS));
    let cond = Rc::new(Condition::new());
    let (l2, sem2, cond2) = (lock.clone(), sem.clone(), cond.clone());
    let main = open_nursery(|n| async move {
        for w in 0..SY_WORKERS {
            let (c, s, lock, sem, cond) = (c.clone(), s.clone(), l2.clone(), sem2.clone(), cond2.clone());
            n.start_soon(async move {
                let (c, s, lock, sem, cond) = (&*c, &*s, &*lock, &*sem, &*cond);
                for round in 0..SY_ROUNDS {
                    match c.rng.below(3) {
                        // A read-modify-write with a checkpoint inside the lock.
                        0 => {
                            retrying(c, s, w, || async move {
                                let _g = lock.acquire().await.map_err(lock_err)?;
                                if s.inside_lock.replace(true) {
                                    return Err("two tasks inside the lock".into());
                                }
                                let v = s.counter.get();
                                CancelScope::shielded().run(checkpoint()).await?;
                                s.counter.set(v + 1);
                                s.inside_lock.set(false);
                                Ok(())
                            })
                            .await?
                        }
                        // A section under the semaphore that may be cancelled.
                        1 => {
                            retrying(c, s, w, || async move {
                                let _permit = sem.acquire().await?;
                                s.sem_holders.set(s.sem_holders.get() + 1);
                                s.max_sem_holders.set(s.max_sem_holders.get().max(s.sem_holders.get()));
                                bump(&s.sem_entries);
                                let r = sleep(Duration::from_micros(c.rng.below(MAX_DEADLINE_US))).await;
                                s.sem_holders.set(s.sem_holders.get() - 1);
                                r?;
                                Ok(())
                            })
                            .await?
                        }
                        // Produce one item under the condition's lock.
                        _ => {
                            let item = w as u32 * SY_ROUNDS + round;
                            retrying(c, s, w, || async move {
                                let _g = cond.acquire().await.map_err(lock_err)?;
                                s.queue.borrow_mut().push_back(item);
                                s.produced.set(s.produced.get() + 1);
                                cond.notify(1)?;
                                Ok(())
                            })
                            .await?
                        }
                    }
                }
                // The last producer wakes every consumer so they can see the end.
                retrying(c, s, w, || async move {
                    let _g = cond.acquire().await.map_err(lock_err)?;
                    s.producers_left.set(s.producers_left.get() - 1);
                    if s.producers_left.get() == 0 {
                        cond.notify_all()?;
                    }
                    Ok(())
                })
                .await?;
                c.busy.set(c.busy.get() - 1);
                Ok::<_, BoxError>(())
            })?;
        }
        for k in 0..SY_CONSUMERS {
            let slot = SY_WORKERS + k;
            let (c, s, cond) = (c.clone(), s.clone(), cond2.clone());
            n.start_soon(async move {
                let (c, s, cond) = (&*c, &*s, &*cond);
                loop {
                    let more = retrying(c, s, slot, || async move {
                        let mut g = cond.acquire().await.map_err(lock_err)?;
                        loop {
                            if let Some(v) = s.queue.borrow_mut().pop_front() {
                                s.consumed.borrow_mut().push(v);
                                return Ok(true);
                            }
                            if s.producers_left.get() == 0 {
                                return Ok(false);
                            }
                            cond.wait(&mut g).await.map_err(cond_err)?;
                        }
                    })
                    .await?;
                    if !more {
                        break;
                    }
                }
                c.busy.set(c.busy.get() - 1);
                Ok::<_, BoxError>(())
            })?;
        }
        n.start_soon(c.clone().run())?;
        Ok::<_, BoxError>(())
    });
    let guarded = fail_after(HANG_GUARD, async move {
        main.await?;
        Ok::<_, BoxError>(())
    });
    let (out, report, _) = case.builder().run_with_trace(guarded);
    out.map_err(|e| e.to_string())?;
    check_report(&report)?;
    let mut consumed = st.consumed.borrow().clone();
    consumed.sort_unstable();
    // Every item produced: the produced count says how many, the queue
    // must be empty, and no item may come twice.
    consumed.dedup();
    if consumed.len() != st.consumed.borrow().len() {
        return Err("an item was consumed twice".into());
    }
    if consumed.len() as u32 != st.produced.get() || !st.queue.borrow().is_empty() {
        return Err(format!("{} items produced, {} consumed", st.produced.get(), consumed.len()));
    }
    if st.max_sem_holders.get() > PERMITS {
        return Err(format!("{} tasks held the semaphore of {PERMITS} at once", st.max_sem_holders.get()));
    }
    if lock.is_locked() || cond.is_locked() || sem.value() != PERMITS {
        return Err(format!(
            "left held: lock {}, condition {}, {} permits",
            lock.is_locked(),
            cond.is_locked(),
            sem.value()
        ));
    }
    cancelled.set(cancelled.get() + st.cancelled.get());
    Ok(())
}

#[test]
fn locks_semaphores_conditions_under_simulation_keep_their_invariants() {
    let cancelled = Cell::new(0);
    explore_each("sync", 300, |case| sync_case(case, &cancelled));
    eprintln!("sim_self: sync: {} operations cancelled", cancelled.get());
    if Case::from_env().ok().flatten().is_none() {
        assert!(cancelled.get() > 0);
    }
}

// ---------------------------------------------------------------------
// Serving over the simulated network.

const CLIENTS: usize = 3;
/// Connections each client makes (per boot), and requests per connection.
const CONNS_PER_CLIENT: u32 = 4;
const REQUESTS_PER_CONN: u32 = 3;
/// A client gives up a connection that makes no progress for this long
/// (a partition without timeout, a clog).
const CLIENT_PATIENCE: Duration = Duration::from_secs(3);
/// A client waits up to this long (uniform, in ms) after a failed
/// connection before its next one.
const CLIENT_BACKOFF_MS: u64 = 100;
/// Why a client connection may fail: refused (the server is down, or has
/// stopped accepting), reset (a host was killed), a broken pipe (the
/// server closed the connection as the client sent: an idle close, the
/// drain), or no progress for `CLIENT_PATIENCE`. Anything else (a
/// half-answer, an error of the client's own host) fails the run.
const CLIENT_FAILURES: [&str; 4] = ["ConnectionRefused", "ConnectionReset", "BrokenPipe", "patience"];

/// What a serving run counts; the invariants compare them.
#[derive(Default, Debug)]
struct ServeTally {
    handlers_started: Cell<u32>,
    handlers_finished: Cell<u32>,
    /// Handler errors that were not cancellations, as returned...
    errors_returned: Cell<u32>,
    /// ... and as the server reported them.
    errors_reported: Cell<u32>,
    answers_right: Cell<u32>,
    answers_wrong: RefCell<Vec<String>>,
    client_failures: Cell<u32>,
    kills: Cell<u32>,
    open_at_drain: Cell<u32>,
    /// Each `serve_tcp` handler.
    spans: RefCell<Vec<Span>>,
    /// Each kill (or restart) of a client host: its address and when.
    killed: RefCell<Vec<(IpAddr, Instant)>>,
    /// Failed client connections by why: an `io::ErrorKind`, or
    /// `patience` (see `CLIENT_FAILURES`).
    failure_kinds: RefCell<BTreeMap<String, u32>>,
    /// Restarts of the server host (during another's downtime too).
    srv_restarts: Cell<u32>,
    /// The server's boots, in order (boot numbers start at 1).
    srv_boots: RefCell<Vec<SrvBoot>>,
    /// The boot that is up now, 0 while the server is down.
    srv_up: Cell<u32>,
    /// When the last restart said the server boots again.
    srv_due: Cell<Option<Instant>>,
    /// Right answers sent by a boot after the first.
    answers_after_restart: Cell<u32>,
    /// Runs whose server was down when the drain was asked for.
    down_at_drain: Cell<u32>,
    /// The line server's grace period, set by `faults` before it sets
    /// `stop`.
    grace: Cell<Duration>,
}

/// One `serve_tcp` handler: its peer's address, the server boot it ran
/// in, when it started and when it finished.
#[derive(Debug, Clone, Copy)]
struct Span {
    peer: IpAddr,
    boot: u32,
    start: Instant,
    end: Option<Instant>,
}

/// One boot of the server host.
#[derive(Debug)]
struct SrvBoot {
    started: Instant,
    /// When the last restart before it said it would boot (`None` for
    /// the first boot).
    due: Option<Instant>,
    /// When `faults` killed it (to restart), if it did.
    killed: Option<Instant>,
    /// Whether the drain had been asked for when it booted (the server was
    /// down at the drain).
    after_stop: bool,
    /// What its drain did, if its main returned (`serve_tcp`'s report; the
    /// HTTP example's summary in the same terms).
    report: Option<ShutdownReport>,
}

/// Counts a handler as finished when its future ends or is dropped, and
/// notes when (its entry in `spans`).
struct Finished(Rc<ServeTally>, usize);

impl Drop for Finished {
    fn drop(&mut self) {
        bump(&self.0.handlers_finished);
        self.0.spans.borrow_mut()[self.1].end = Some(current_time());
    }
}

/// Reads one `\n`-terminated line into `buf` (consuming it from the front);
/// `None` at a clean end of stream before any byte of a line.
async fn read_line(s: &TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<Vec<u8>>> {
    loop {
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line = buf[..=i].to_vec();
            buf.drain(..=i);
            return Ok(Some(line));
        }
        let mut chunk = [0u8; 64];
        let k = s.receive_some(&mut chunk).await?;
        if k == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "half a line"));
        }
        buf.extend_from_slice(&chunk[..k]);
    }
}

/// The line protocol's answer to `q N\n` from server boot `boot`.
fn line_answer(n: u64, boot: u32) -> Vec<u8> {
    format!("a {} boot {boot}\n", n * 3 + 1).into_bytes()
}

/// The server's handler in boot `boot`: answers each `q N` line until the
/// client closes.
async fn line_handler(s: TcpStream, t: Rc<ServeTally>, boot: u32) -> Result<(), BoxError> {
    bump(&t.handlers_started);
    let peer = s.peer_addr().map(|a| a.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    t.spans.borrow_mut().push(Span { peer, boot, start: current_time(), end: None });
    let _done = Finished(t.clone(), t.spans.borrow().len() - 1);
    let r: Result<(), BoxError> = async {
        let mut buf = Vec::new();
        while let Some(line) = read_line(&s, &mut buf).await? {
            let text = std::str::from_utf8(&line)?.trim_end();
            let n: u64 = text.strip_prefix("q ").ok_or("not a request")?.parse()?;
            s.send_all(&line_answer(n, boot)).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = &r {
        if !is_cancelled_error(&**e) {
            bump(&t.errors_returned);
        }
    }
    r
}

/// The protocol a serving run speaks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proto {
    /// `Server::serve_tcp` and [`line_handler`].
    Lines,
    /// The HTTP/1.1 connection code of `examples/http_server`.
    Http,
}

const HTTP_BODY: usize = 100;

/// The body server boot `boot` serves: the example's, tagged with the boot
/// (same length for every boot).
fn http_body(boot: u32) -> Vec<u8> {
    let mut body = proto::make_body(HTTP_BODY);
    let tag = format!("boot {boot:04};");
    body[..tag.len()].copy_from_slice(tag.as_bytes());
    body
}

/// Boot `boot`'s answer to `GET /`, with keep-alive or without (a request
/// answered during the drain closes the connection).
fn http_answer(keep_alive: bool, boot: u32) -> Vec<u8> {
    let req = proto::Request { consumed: 0, status: 200, head_only: false, keep_alive };
    let mut out = Vec::new();
    proto::write_response(&mut out, &req, &http_body(boot));
    out
}

/// Counts a right answer from server boot `boot`.
fn answered(t: &ServeTally, boot: u32) {
    bump(&t.answers_right);
    if boot > 1 {
        bump(&t.answers_after_restart);
    }
}

/// One client connection: up to `REQUESTS_PER_CONN` requests, each answer
/// checked; it ends early, `Ok`, if the server ends the connection.
///
/// An answer is right only if the boot of the server that is up as it
/// arrives sent it: a kill drops what its connections had in flight and
/// resets them, so nothing a dead boot sent arrives later.
async fn client_conn(proto: Proto, t: &ServeTally, id: u64) -> Result<(), BoxError> {
    let s = TcpStream::connect("10.0.0.1:80".parse()?).await?;
    let mut buf = Vec::new();
    for q in 0..u64::from(REQUESTS_PER_CONN) {
        let n = id * 10 + q;
        match proto {
            Proto::Lines => {
                s.send_all(format!("q {n}\n").as_bytes()).await?;
                let Some(line) = read_line(&s, &mut buf).await? else { return Ok(()) };
                let boot = t.srv_up.get();
                if line == line_answer(n, boot) {
                    answered(t, boot);
                } else {
                    t.answers_wrong.borrow_mut().push(String::from_utf8_lossy(&line).into_owned());
                }
            }
            Proto::Http => {
                s.send_all(b"GET / HTTP/1.1\r\nHost: srv\r\n\r\n").await?;
                // Read until the answer is complete (either form) or the end.
                loop {
                    let boot = t.srv_up.get();
                    let (keep, close) = (http_answer(true, boot), http_answer(false, boot));
                    if buf.len() >= keep.len().min(close.len()) {
                        let form = if buf.starts_with(&keep) {
                            Some((keep.len(), true))
                        } else if buf.starts_with(&close) {
                            Some((close.len(), false))
                        } else {
                            None
                        };
                        match form {
                            Some((len, alive)) => {
                                buf.drain(..len);
                                answered(t, boot);
                                if !alive {
                                    return Ok(());
                                }
                                break;
                            }
                            None if buf.len() >= keep.len().max(close.len()) => {
                                t.answers_wrong.borrow_mut().push(String::from_utf8_lossy(&buf).into_owned());
                                return Ok(());
                            }
                            None => {}
                        }
                    }
                    let mut chunk = [0u8; 256];
                    let k = s.receive_some(&mut chunk).await?;
                    if k == 0 {
                        // Closed mid-answer: allowed (the server was stopped),
                        // but what came must be a prefix of a right answer.
                        if !keep.starts_with(&buf) && !close.starts_with(&buf) {
                            t.answers_wrong.borrow_mut().push(String::from_utf8_lossy(&buf).into_owned());
                        }
                        return Ok(());
                    }
                    buf.extend_from_slice(&chunk[..k]);
                }
            }
        }
    }
    Ok(())
}

/// A client host's main: its connections in turn; an error (refused,
/// reset, given up: `CLIENT_FAILURES`) ends that connection only, and the
/// client backs off up to `CLIENT_BACKOFF_MS` before its next one (without
/// it, a client spends its connections on refusals while the server is
/// down).
async fn client_main(proto: Proto, t: Rc<ServeTally>, client: usize, boot: u32) -> Result<(), BoxError> {
    for k in 0..CONNS_PER_CLIENT {
        let id = ((client as u64 * 100) + u64::from(boot)) * 100 + u64::from(k);
        let failed = match move_on_after(CLIENT_PATIENCE, client_conn(proto, &t, id)).await {
            Ok(Some(())) => None,
            Ok(None) => Some("patience".to_string()),
            Err(e) if is_cancelled_error(&*e) => return Err(e),
            Err(e) => Some(e.downcast_ref::<io::Error>().map_or_else(|| e.to_string(), |e| format!("{:?}", e.kind()))),
        };
        if let Some(why) = failed {
            bump(&t.client_failures);
            *t.failure_kinds.borrow_mut().entry(why).or_default() += 1;
            sleep(Duration::from_millis(sim::net().random(CLIENT_BACKOFF_MS))).await?;
        }
    }
    Ok(())
}

/// The server host's main in boot `boot` (its `SrvBoot` is recorded).
///
/// One graceful shutdown per boot: a killed boot's connections end with
/// its tree (the kill cancels them), not by a drain, so a drain handle
/// shared across boots would count a dead boot's connections as open at
/// the drain and never report (the boot that would drain them is gone).
/// The drain is asked for through `stop`, which outlives the boots. A boot
/// that starts after it (the server was down at the drain; its restart was
/// already due) asks for its own drain before it accepts anything: it binds
/// port 80, accepts nothing, and returns an empty report at once.
async fn server_main(proto: Proto, t: Rc<ServeTally>, stop: Rc<Event>, boot: u32) -> Result<(), BoxError> {
    let after_stop = t.srv_boots.borrow()[boot as usize - 1].after_stop;
    let report = match proto {
        Proto::Lines => {
            let drain = GracefulShutdown::new();
            if after_stop {
                drain.shutdown(t.grace.get());
            }
            let (t2, t3) = (t.clone(), t.clone());
            let server = Server::new(move |s| line_handler(s, t2.clone(), boot))
                .graceful(&drain)
                .on_handler_error(move |_, _| bump(&t3.errors_reported));
            let (d, t4) = (drain.clone(), t.clone());
            open_nursery(|n| async move {
                n.start(|status| server.serve_tcp(80, Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), status)).await?;
                stop.wait().await?;
                d.shutdown(t4.grace.get()); // a second call does nothing
                Ok::<_, BoxError>(())
            })
            .await?;
            drain.report().ok_or("serve_tcp returned before its drain finished")?
        }
        Proto::Http => {
            let listener = TcpListener::bind("0.0.0.0:80".parse()?)?;
            let config = Rc::new(conn::Config {
                body: http_body(boot),
                idle: Duration::from_secs(2),
                request: Duration::from_secs(2),
                work: Duration::ZERO,
            });
            // The example's handler never fails: what it did is the summary.
            let grace = Duration::from_millis(sim::net().random(300));
            let summary = shutdown::serve_until(vec![listener], config, grace, async move {
                // Asked for already: shut down before the server accepts
                // (`wait` would let it run first: it is a checkpoint).
                if !after_stop {
                    let _ = stop.wait().await;
                }
            })
            .await?;
            // The summary in the terms of serve_tcp's report.
            ShutdownReport {
                open_at_drain: summary.idle_closed + summary.finished + summary.cancelled,
                abandoned: summary.idle_closed,
                finished: summary.idle_closed + summary.finished,
                cancelled: summary.cancelled,
                grace: summary.grace,
                took: summary.took,
            }
        }
    };
    t.srv_boots.borrow_mut()[boot as usize - 1].report = Some(report);
    Ok(())
}

/// Drives the faults and the shutdown of a serving run.
async fn faults(
    net: sim::Net,
    srv: Host,
    clients: Vec<Host>,
    t: Rc<ServeTally>,
    stop: Rc<Event>,
) -> Result<(), BoxError> {
    let shutdown_at = Duration::from_millis(200 + net.random(800));
    let start = trioxide::current_time();
    while trioxide::current_time().saturating_duration_since(start) < shutdown_at {
        sleep(Duration::from_millis(1 + net.random(150))).await?;
        let c = &clients[net.random(clients.len() as u64) as usize];
        match net.random(6) {
            0 => {
                net.partition(&[&srv], &[c]);
                sleep(Duration::from_millis(net.random(400))).await?;
                net.heal();
            }
            1 => {
                net.clog_host(c);
                sleep(Duration::from_millis(net.random(300))).await?;
                net.unclog_host(c);
            }
            2 => {
                bump(&t.kills);
                t.killed.borrow_mut().push((c.ip(), current_time()));
                if net.random(2) == 0 {
                    c.kill();
                } else {
                    c.restart(Duration::from_millis(net.random(200)));
                }
            }
            3 => {
                // The server host: killed now (its handlers cancelled, its
                // clients' connections reset), booting again after a
                // downtime; during another restart's downtime, the boot
                // moves.
                bump(&t.srv_restarts);
                if srv.is_up() {
                    t.srv_up.set(0);
                    t.srv_boots.borrow_mut().last_mut().ok_or("the server never booted")?.killed = Some(current_time());
                }
                let downtime = Duration::from_millis(net.random(300));
                t.srv_due.set(Some(current_time() + downtime));
                srv.restart(downtime);
            }
            _ => {}
        }
    }
    // Stop the server with whatever is in flight. If it is down, its next
    // boot finds the stop asked for.
    if !srv.is_up() {
        bump(&t.down_at_drain);
    }
    t.grace.set(Duration::from_millis(net.random(300)));
    stop.set();
    Ok(())
}

/// The server's boots after a run: each boot after the first began when
/// the last restart said (a restart during another's downtime moves the
/// boot); every boot but the last was killed, drained nothing, and its
/// handlers ended at the kill (cancelled with the host's tree, not one
/// latency later); the last one drained and its report adds up, and if it
/// booted after the drain was asked for, it accepted nothing. Adds the
/// connections open at the drain to the tally.
fn check_boots(t: &ServeTally) -> Result<(), String> {
    let boots = t.srv_boots.borrow();
    let spans = t.spans.borrow();
    let Some(last) = boots.last() else { return Err("the server never booted".into()) };
    if u32::from(last.after_stop) != t.down_at_drain.get() {
        return Err(format!("down at the drain: {}, but the last boot: {last:?}", t.down_at_drain.get()));
    }
    if spans.iter().any(|s| s.boot == 0 || s.boot as usize > boots.len()) {
        return Err("a handler of no boot".into());
    }
    for (i, b) in boots.iter().enumerate() {
        let boot = i as u32 + 1;
        if i > 0 && (boots[i - 1].killed.is_none_or(|k| k > b.started) || b.due != Some(b.started)) {
            return Err(format!("boot {boot} ({b:?}) after boot {i} ({:?})", boots[i - 1]));
        }
        match (b.killed, b.report) {
            (Some(at), None) => {
                for &Span { peer, start, end, .. } in spans.iter().filter(|s| s.boot == boot) {
                    if end.is_none_or(|end| end > at) {
                        return Err(format!(
                            "the handler of a connection from {peer} (started {start:?}) in server boot {boot} \
                             outlived the boot's kill at {at:?}: ended {end:?}"
                        ));
                    }
                }
            }
            (None, Some(r)) if i + 1 == boots.len() => {
                if r.finished + r.cancelled != r.open_at_drain {
                    return Err(format!("boot {boot}: shutdown report does not add up: {r:?}"));
                }
                let empty = ShutdownReport {
                    open_at_drain: 0,
                    abandoned: 0,
                    finished: 0,
                    cancelled: 0,
                    grace: r.grace,
                    took: Duration::ZERO,
                };
                if b.after_stop && (r != empty || spans.iter().any(|s| s.boot == boot)) {
                    return Err(format!("boot {boot} booted after the drain was asked for, yet served: {r:?}"));
                }
                t.open_at_drain.set(r.open_at_drain as u32);
            }
            _ => return Err(format!("boot {boot} of {}: {b:?}", boots.len())),
        }
    }
    Ok(())
}

fn serve_case(case: Case, proto: Proto, sum: &ServeTally) -> Result<(), String> {
    let t = Rc::new(ServeTally::default());
    let t2 = t.clone();
    let main = async move {
        let net = sim::net();
        let srv = net.add_host("srv", "10.0.0.1".parse()?)?;
        let mut clients = Vec::new();
        for i in 0..CLIENTS {
            clients.push(net.add_host(&format!("c{i}"), format!("10.0.1.{}", i + 1).parse()?)?);
        }
        let stop = Rc::new(Event::new());
        let (t, net2, stop_n) = (t2.clone(), net.clone(), stop.clone());
        open_nursery(|n| async move {
            let stop = stop_n;
            let (t_s, e_s, s_h) = (t.clone(), stop.clone(), srv.clone());
            n.start_soon(async move {
                s_h.run(|| {
                    let mut boots = t_s.srv_boots.borrow_mut();
                    let after_stop = e_s.is_set();
                    let (started, due) = (current_time(), t_s.srv_due.get());
                    boots.push(SrvBoot { started, due, killed: None, after_stop, report: None });
                    t_s.srv_up.set(boots.len() as u32);
                    server_main(proto, t_s.clone(), e_s.clone(), boots.len() as u32)
                })
                .await
            })?;
            for (i, c) in clients.iter().enumerate() {
                let (c, t) = (c.clone(), t.clone());
                let boots = Rc::new(Cell::new(0));
                n.start_soon(async move {
                    sleep(Duration::from_millis(1)).await?; // the server listens first
                    c.run(|| {
                        boots.set(boots.get() + 1);
                        client_main(proto, t.clone(), i, boots.get())
                    })
                    .await
                })?;
            }
            n.start_soon(faults(net2.clone(), srv.clone(), clients.clone(), t.clone(), stop.clone()))?;
            Ok::<_, BoxError>(())
        })
        .await?;
        let open = net.open_connections();
        if open != 0 {
            return Err(format!("{open} connections still open at the end").into());
        }
        Ok::<_, BoxError>(())
    };
    let (out, report, _) = case.builder().net(NetConfig::swarm(case.seed)).run_with_trace(main);
    out.map_err(|e| format!("{} over {}: {e}", proto_name(proto), NetConfig::swarm(case.seed)))?;
    check_report(&report)?;
    if t.handlers_started.get() != t.handlers_finished.get() {
        return Err(format!("{} handlers started, {} finished", t.handlers_started.get(), t.handlers_finished.get()));
    }
    check_boots(&t)?;
    // A kill resets the peer's end one latency later: a handler serving a
    // connection of the killed host must see it then and end, not wait
    // for the drain to cancel it.
    let latency = NetConfig::swarm(case.seed).get_latency();
    for &(ip, at) in t.killed.borrow().iter() {
        for &Span { peer, start, end, .. } in t.spans.borrow().iter() {
            if peer == ip && start <= at && end.is_none_or(|end| end > at + latency) {
                return Err(format!(
                    "the handler of a connection from {ip} (started {start:?}) still ran one latency ({latency:?}) after \
                     {ip} was killed at {at:?}: ended {end:?}"
                ));
            }
        }
    }
    if t.errors_returned.get() != t.errors_reported.get() {
        return Err(format!("{} handler errors, {} reported", t.errors_returned.get(), t.errors_reported.get()));
    }
    if !t.answers_wrong.borrow().is_empty() {
        return Err(format!("wrong answers: {:?}", t.answers_wrong.borrow()));
    }
    if let Some(why) = t.failure_kinds.borrow().keys().find(|k| !CLIENT_FAILURES.contains(&k.as_str())) {
        return Err(format!("a client connection failed with {why}"));
    }
    for (s, one) in [
        (&sum.handlers_started, &t.handlers_started),
        (&sum.errors_returned, &t.errors_returned),
        (&sum.answers_right, &t.answers_right),
        (&sum.client_failures, &t.client_failures),
        (&sum.kills, &t.kills),
        (&sum.open_at_drain, &t.open_at_drain),
        (&sum.srv_restarts, &t.srv_restarts),
        (&sum.answers_after_restart, &t.answers_after_restart),
        (&sum.down_at_drain, &t.down_at_drain),
    ] {
        s.set(s.get() + one.get());
    }
    for (k, v) in t.failure_kinds.borrow().iter() {
        *sum.failure_kinds.borrow_mut().entry(k.clone()).or_default() += v;
    }
    Ok(())
}

fn proto_name(p: Proto) -> &'static str {
    match p {
        Proto::Lines => "serve_tcp",
        Proto::Http => "http",
    }
}

fn serve_workload(proto: Proto) {
    let sum = ServeTally::default();
    explore_each(proto_name(proto), 200, |case| serve_case(case, proto, &sum));
    // The HTTP example's handler is not ours to count: only serve_tcp's is.
    let handlers = match proto {
        Proto::Lines => format!(
            "{} connections accepted, {} handler errors, ",
            sum.handlers_started.get(),
            sum.errors_returned.get()
        ),
        Proto::Http => String::new(),
    };
    eprintln!(
        "sim_self: {}: {handlers}{} right answers ({} from a restarted server), {} client connections failed \
         ({}), {} client kills/restarts, {} server restarts, {} drains with the server down, {} connections open at \
         the drain",
        proto_name(proto),
        sum.answers_right.get(),
        sum.answers_after_restart.get(),
        sum.client_failures.get(),
        sum.failure_kinds.borrow().iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", "),
        sum.kills.get(),
        sum.srv_restarts.get(),
        sum.down_at_drain.get(),
        sum.open_at_drain.get()
    );
    if Case::from_env().ok().flatten().is_none() {
        // Not vacuous: answers were checked, faults and drains happened,
        // restarted servers answered, and some drain found the server down.
        assert!(sum.answers_right.get() > 0 && sum.kills.get() > 0 && sum.client_failures.get() > 0);
        assert!(sum.open_at_drain.get() > 0, "no connection was in flight at a drain");
        assert!(sum.srv_restarts.get() > 0 && sum.answers_after_restart.get() > 0, "no restarted server answered");
        assert!(sum.down_at_drain.get() > 0, "no drain found the server down");
    }
}

#[test]
fn serve_tcp_under_simulated_faults_closes_every_connection() {
    serve_workload(Proto::Lines);
}

#[test]
fn http_server_under_simulated_faults_closes_every_connection() {
    serve_workload(Proto::Http);
}

// ---------------------------------------------------------------------
// The deadlock report.

/// The panic message of a simulated run of `main`, if it panicked.
fn sim_panic<F: Future>(builder: sim::Builder, main: F) -> Option<String> {
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.run(main)));
    let p = caught.err()?;
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
}

#[test]
fn a_run_where_nothing_can_wake_a_task_reports_a_deadlock() {
    let msg = sim_panic(
        sim::Builder::new().seed(3),
        open_nursery(|n| async move {
            let never = Rc::new(Event::new());
            let e = never.clone();
            n.start_soon_named("waiter", async move { e.wait().await })?;
            sleep(Duration::from_millis(1500)).await?;
            Ok::<_, BoxError>(())
        }),
    )
    .expect("the run must not hang nor end");
    assert_eq!(
        msg,
        "trioxide sim: deadlock at 1.5s: every task waits and nothing can wake one: <main> (nursery), waiter (parking lot)"
    );
    assert!(msg.starts_with(sim::DEADLOCK));
}

#[test]
fn explore_reports_a_deadlock_with_its_reproduction_line() {
    if matches!(Case::from_env(), Ok(Some(_))) {
        return; // replaying another test's case: explore would run that one here
    }
    let failure = sim::explore(0..5, Schedule::pct(3), |case| -> Result<(), BoxError> {
        case.builder().run(async {
            // A receive on a channel whose only sender the receiver keeps.
            let (tx, rx) = open_memory_channel::<u32>(0);
            let _keep = tx;
            rx.receive().await?;
            Ok::<_, BoxError>(())
        })
    })
    .unwrap_err();
    assert_eq!(failure.case.seed, 0);
    assert_eq!(
        failure.to_string(),
        "trioxide sim: failed at seed=0 schedule=pct3: panicked: trioxide sim: deadlock at 0ns: every task waits and \
         nothing can wake one: <main> (memory channel receive); re-run with TRIOXIDE_SIM=seed=0,schedule=pct3"
    );
}

#[test]
fn pending_timers_and_network_deliveries_are_not_deadlocks() {
    // A timer far away: the clock jumps to it.
    let out = sim::Builder::new().seed(1).run(async {
        sleep(Duration::from_secs(86_400)).await?;
        Ok::<_, Cancelled>("woke")
    });
    assert_eq!(out, Ok("woke"));
    // Every task waits on the network while a segment is in flight (and a
    // connect's SYN before it): its delivery wakes them.
    let cfg = NetConfig::new().latency(Duration::from_millis(40));
    let got = sim::Builder::new()
        .seed(2)
        .net(cfg)
        .run(async {
            let net = sim::net();
            let a = net.add_host("a", "10.0.0.1".parse()?)?;
            let b = net.add_host("b", "10.0.0.2".parse()?)?;
            let listener = b.enter(async { TcpListener::bind("0.0.0.0:9".parse()?).map_err(BoxError::from) }).await?;
            a.enter(async {
                let s = TcpStream::connect("10.0.0.2:9".parse()?).await?;
                let (peer, _) = listener.accept().await?;
                s.send_all(b"x").await?;
                let mut one = [0u8; 1];
                let k = peer.receive_some(&mut one).await?; // every task waits: the segment is a timer
                Ok::<_, BoxError>((k, one[0], trioxide::current_time()))
            })
            .await
        })
        .unwrap();
    assert_eq!((got.0, got.1), (1, b'x'));
    assert_eq!(got.2.saturating_duration_since(trioxide::Instant::ZERO), Duration::from_millis(120));
    // A partition holds the segment (no timer), but a task that heals it
    // later is sleeping: no report.
    let healed = sim::Builder::new()
        .seed(3)
        .net(NetConfig::new())
        .run(open_nursery(|n| async move {
            let net = sim::net();
            let (a, b, s, peer) = connected_hosts(&net).await?;
            net.partition(&[&a], &[&b]);
            let n2 = net.clone();
            n.start_soon(async move {
                sleep(Duration::from_secs(30)).await?;
                n2.heal();
                Ok::<_, BoxError>(())
            })?;
            s.send_all(b"y").await?;
            let mut one = [0u8; 1];
            peer.receive_some(&mut one).await?;
            Ok::<_, BoxError>(one[0])
        }))
        .unwrap();
    assert_eq!(healed, Some(b'y'));
}

/// Hosts `a` (10.0.0.1) and `b` (10.0.0.2) on the run's network and one
/// connection from `a` to port 9 of `b`: `(a, b, a's end, b's end)`.
async fn connected_hosts(net: &sim::Net) -> Result<(Host, Host, TcpStream, TcpStream), BoxError> {
    let a = net.add_host("a", "10.0.0.1".parse()?)?;
    let b = net.add_host("b", "10.0.0.2".parse()?)?;
    let listener = b.enter(async { TcpListener::bind("0.0.0.0:9".parse()?).map_err(BoxError::from) }).await?;
    let (s, peer) = a
        .enter(async {
            let s = TcpStream::connect("10.0.0.2:9".parse()?).await?;
            let (peer, _) = listener.accept().await?;
            Ok::<_, BoxError>((s, peer))
        })
        .await?;
    Ok((a, b, s, peer))
}

#[test]
fn a_partition_nobody_heals_is_a_deadlock() {
    let msg = sim_panic(sim::Builder::new().seed(4).net(NetConfig::new()), async {
        let net = sim::net();
        let (a, b, s, peer) = connected_hosts(&net).await?;
        net.partition(&[&a], &[&b]); // no partition timeout: held for good
        s.send_all(b"z").await?;
        peer.receive_some(&mut [0u8; 1]).await?;
        Ok::<_, BoxError>(())
    })
    .expect("a deadlock report");
    assert_eq!(
        msg,
        "trioxide sim: deadlock at 2ms: every task waits and nothing can wake one: <main> (trioxide sim: TcpStream receive)"
    );
}

thread_local! {
    /// The scope a thread's job cancels (`stuck_until_a_thread_cancels`).
    static TO_CANCEL: RefCell<Option<CancelScope>> = const { RefCell::new(None) };
}

/// Waits on an event nobody sets, in a scope that another thread cancels
/// through a `RuntimeHandle` after 50 ms of real time.
async fn stuck_until_a_thread_cancels() -> Result<Option<()>, Cancelled> {
    let handle = trioxide::from_thread::current_handle();
    let never = Event::new();
    let scope = CancelScope::new();
    TO_CANCEL.with(|s| *s.borrow_mut() = Some(scope.clone()));
    let thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let cancel = || TO_CANCEL.with(|s| s.borrow_mut().take().map(|s| s.cancel()));
        handle.run_sync(cancel).is_ok()
    });
    let out = scope.run(never.wait()).await;
    assert!(thread.join().unwrap_or(false), "the job ran on the runtime thread");
    out
}

#[test]
fn a_thread_that_can_still_wake_the_run_is_not_a_deadlock() {
    // In simulation, a live `RuntimeHandle` is a way in: no report.
    assert_eq!(sim::Builder::new().seed(5).run(stuck_until_a_thread_cancels()), Ok(None));
    // A real run has no report at all: it waits for the outside world.
    let clock = trioxide::MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    assert_eq!(trioxide::Builder::new().clock(clock).run(stuck_until_a_thread_cancels()), Ok(None));
}
