//! The workloads of `examples/sim_hunt.rs`, shared with `tests/sim_hunt.rs`
//! (which keeps them passing on the unpatched tree). Each is a small
//! program over trioxide's public API, run as one simulated case, that
//! checks one invariant; `benches/sim_bugs.sh` plants one bug per workload
//! (a patch in `benches/sim_bugs/`) in a scratch copy and counts the seeds
//! each schedule needs to break the invariant.
//!
//! Every random choice of a workload (sleeps, amounts of work) comes from a
//! SplitMix64 seeded from the case's seed, independent of the scheduler's,
//! so a case is the whole input and `TRIOXIDE_SIM=seed=..,schedule=..`
//! replays it.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::str::FromStr;
use std::time::Duration;

use trioxide::channel::ReceiveError;
use trioxide::sim::Case;
use trioxide::{
    checkpoint, current_time, fail_after, move_on_after, move_on_at, open_memory_channel, open_nursery, sleep,
    BoxError, CancelScope, Event, TooSlow,
};

#[path = "sim_kv_world.rs"]
mod kv_world;

/// The virtual time after which a workload that has not finished counts
/// as hung (a lost wake-up leaves tasks waiting forever: the autojumping
/// clock then jumps straight to this deadline).
pub const HANG_LIMIT: Duration = Duration::from_secs(60);

/// One workload, named after the bug it is built to catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Producers and consumers over a bounded channel: every value arrives
    /// and the run finishes (catches a lost wake-up).
    Wakeup,
    /// Consumers receiving under short deadlines: every value sent is
    /// received exactly once (catches a receive that drops a value on cancel).
    RecvCancel,
    /// Workers leasing tokens from a pool, cancelled by a supervisor: every
    /// token is back in the pool at the end (catches an unshielded cleanup).
    Cleanup,
    /// The replicated key-value store of `examples/sim_kv.rs` under faults:
    /// every acknowledged write survives (catches a missing durable ack).
    Ack,
    /// Clients with a common deadline calling a shared server: no request
    /// is started at or after the deadline (catches an off-by-one deadline).
    Deadline,
}

impl Workload {
    /// Every workload, in table order.
    pub const ALL: [Workload; 5] =
        [Workload::Wakeup, Workload::RecvCancel, Workload::Cleanup, Workload::Ack, Workload::Deadline];

    /// The name `--bug` takes.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Wakeup => "wakeup",
            Workload::RecvCancel => "recv-cancel",
            Workload::Cleanup => "cleanup",
            Workload::Ack => "ack",
            Workload::Deadline => "deadline",
        }
    }

    /// Runs one case of the workload: `Err` says which invariant broke.
    pub fn run(self, case: Case) -> Result<(), String> {
        match self {
            Workload::Wakeup => wakeup(case),
            Workload::RecvCancel => recv_cancel(case),
            Workload::Cleanup => cleanup(case),
            Workload::Ack => ack(case),
            Workload::Deadline => deadline(case),
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Workload, String> {
        Workload::ALL.into_iter().find(|w| w.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
            format!("unknown workload `{s}` (one of {})", names.join(", "))
        })
    }
}

/// The workload's own random source: SplitMix64, seeded from the case's
/// seed and a stream number (one per task), so adding a draw in one task
/// does not shift another's.
#[derive(Clone)]
pub struct Rng(Rc<Cell<u64>>);

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Rng {
        Rng(Rc::new(Cell::new(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F))))
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&self, n: u64) -> u64 {
        let s = self.0.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.0.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// `n` checkpoints: work that takes no virtual time but lets others run.
async fn work(n: u64) -> Result<(), trioxide::Cancelled> {
    for _ in 0..n {
        checkpoint().await?;
    }
    Ok(())
}

thread_local! {
    /// The trace hash of the last case run on this thread.
    static LAST_HASH: Cell<u64> = const { Cell::new(0) };
}

/// The trace hash of the last case run on this thread.
pub fn last_trace_hash() -> u64 {
    LAST_HASH.with(Cell::get)
}

/// Runs `workload`'s case and returns the hash of its trace (whether or
/// not the invariant held): two runs of one case must give the same.
pub fn trace_hash(workload: Workload, case: Case) -> u64 {
    let _ = workload.run(case);
    LAST_HASH.with(Cell::get)
}

/// Runs `main` as the case, under the hang limit; a hang is a failure.
fn run_bounded<F>(case: Case, main: F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<Option<()>, trioxide::MultiError>>,
{
    let main = async move {
        main.await?;
        Ok::<_, BoxError>(())
    };
    let (out, _report, trace) = case.builder().run_with_trace(fail_after(HANG_LIMIT, main));
    LAST_HASH.with(|h| h.set(trace.hash()));
    match out {
        Ok(()) => Ok(()),
        Err(e) if e.is::<TooSlow>() => {
            Err(format!("hung: not finished after {} s of virtual time", HANG_LIMIT.as_secs()))
        }
        Err(e) => Err(format!("the run failed: {e}")),
    }
}

// ---------------------------------------------------------------- wakeup

/// Two producers and two consumers of a bounded channel (capacity 6).
/// Each producer sends 6 values with 1 to 3 checkpoints of work after each
/// send; each consumer works 0 or 1 checkpoint on each value. A sender
/// blocks only when the producers run 6 values ahead of the consumers,
/// which the batch pass's turns do not let them do: whether it happens is
/// up to the schedule (and the amounts of work, from the seed). Every value
/// must arrive and the run must finish.
fn wakeup(case: Case) -> Result<(), String> {
    const PRODUCERS: u32 = 2;
    const PER_PRODUCER: u32 = 6;
    const CAPACITY: usize = 6;
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    run_bounded(
        case,
        open_nursery(move |n| async move {
            let (tx, rx) = open_memory_channel::<u32>(CAPACITY);
            for p in 0..PRODUCERS {
                let (tx, rng) = (tx.clone(), Rng::new(case.seed, u64::from(p)));
                n.start_soon(async move {
                    for i in 0..PER_PRODUCER {
                        tx.send(p * 100 + i).await?;
                        work(1 + rng.below(3)).await?;
                    }
                    Ok::<_, BoxError>(())
                })?;
            }
            for c in 0..2 {
                let (rx, rng, g) = (rx.clone(), Rng::new(case.seed, 10 + c), g.clone());
                n.start_soon(async move {
                    loop {
                        match rx.receive().await {
                            Ok(v) => {
                                g.borrow_mut().push(v);
                                work(rng.below(2)).await?;
                            }
                            Err(ReceiveError::EndOfChannel) => return Ok::<_, BoxError>(()),
                            Err(e) => return Err(e.into()),
                        }
                    }
                })?;
            }
            Ok::<_, BoxError>(())
        }),
    )?;
    let mut got = got.borrow().clone();
    got.sort_unstable();
    let want: Vec<u32> = (0..PRODUCERS).flat_map(|p| (0..PER_PRODUCER).map(move |i| p * 100 + i)).collect();
    if got != want {
        return Err(format!("received {got:?}, sent {want:?}"));
    }
    Ok(())
}

// ---------------------------------------------------------------- recv-cancel

/// One producer sends 12 values over a rendezvous channel, sleeping 10 µs
/// to 3 ms (in steps of 10 µs) before each; two consumers receive each
/// under a deadline of 10 µs to 3 ms, and try again when it passes. Now
/// and then a deadline and a send fall on the same virtual instant; then
/// whether the value is handed to a receiver whose scope has just been
/// cancelled depends on which of the two tasks the schedule runs first.
/// Rule Y6: a value handed over is the receiver's even if it was cancelled
/// since, so every value sent is received exactly once.
fn recv_cancel(case: Case) -> Result<(), String> {
    const VALUES: u32 = 12;
    let (sent, got) = (Rc::new(RefCell::new(Vec::new())), Rc::new(RefCell::new(Vec::new())));
    let (s, g) = (sent.clone(), got.clone());
    run_bounded(
        case,
        open_nursery(move |n| async move {
            let (tx, rx) = open_memory_channel::<u32>(0);
            let rng = Rng::new(case.seed, 0);
            n.start_soon(async move {
                for i in 0..VALUES {
                    sleep(Duration::from_micros(10 * (1 + rng.below(300)))).await?;
                    tx.send(i).await?;
                    s.borrow_mut().push(i);
                }
                Ok::<_, BoxError>(())
            })?;
            for c in 0..2 {
                let (rx, rng, g) = (rx.clone(), Rng::new(case.seed, 1 + c), g.clone());
                n.start_soon(async move {
                    loop {
                        match move_on_after(Duration::from_micros(10 * (1 + rng.below(300))), rx.receive()).await {
                            Ok(Some(v)) => g.borrow_mut().push(v),
                            Ok(None) => {}
                            Err(ReceiveError::EndOfChannel) => return Ok::<_, BoxError>(()),
                            Err(e) => return Err(e.into()),
                        }
                    }
                })?;
            }
            Ok::<_, BoxError>(())
        }),
    )?;
    let mut got = got.borrow().clone();
    got.sort_unstable();
    let sent = sent.borrow().clone();
    if got != sent {
        let lost: Vec<u32> = sent.iter().copied().filter(|v| !got.contains(v)).collect();
        return Err(format!("values sent but never received: {lost:?}"));
    }
    Ok(())
}

// ---------------------------------------------------------------- cleanup

/// Gives a leased token back to the pool. Cleanup after a cancellation
/// must not be cancelled itself: the send runs in a shielded scope.
/// (The planted bug `cleanup.patch` removes the shield.)
async fn release(pool: &trioxide::channel::MemorySendChannel<u32>, token: u32) -> Result<(), BoxError> {
    CancelScope::shielded().run(pool.send(token)).await?;
    Ok(())
}

/// A pool of 2 tokens (a channel holding them) and 3 workers: each sleeps
/// 1 to 4 ms, leases a token, works (0 to 2 checkpoints, no virtual time)
/// and gives it back. When the 6th job is done a supervisor cancels the
/// workers. A worker holding a token at that moment is cancelled inside
/// its job and must still give the token back: at the end the pool holds
/// both. Whether a worker holds one then depends on which jobs fell on the
/// same instant (the seed) and on how the schedule interleaves them with
/// the supervisor.
fn cleanup(case: Case) -> Result<(), String> {
    const TOKENS: u32 = 2;
    const JOBS: u32 = 6;
    let left = Rc::new(Cell::new(0usize));
    let l = left.clone();
    run_bounded(
        case,
        open_nursery(move |n| async move {
            let (pool_tx, pool_rx) = open_memory_channel::<u32>(TOKENS as usize);
            for t in 0..TOKENS {
                pool_tx.try_send(t).map_err(|_| "pool full")?;
            }
            let (jobs, enough) = (Rc::new(Cell::new(0)), Rc::new(Event::new()));
            let workers = CancelScope::new();
            let (w, e) = (workers.clone(), enough.clone());
            n.start_soon(async move {
                e.wait().await?;
                w.cancel();
                Ok::<_, BoxError>(())
            })?;
            let (tx, rx) = (pool_tx.clone(), pool_rx.clone());
            workers
                .run(open_nursery(move |m| async move {
                    for k in 0..3u64 {
                        let (tx, rx, rng) = (tx.clone(), rx.clone(), Rng::new(case.seed, k));
                        let (jobs, enough) = (jobs.clone(), enough.clone());
                        m.start_soon(async move {
                            loop {
                                sleep(Duration::from_millis(1 + rng.below(4))).await?;
                                let token = rx.receive().await?;
                                let done = work(rng.below(3)).await;
                                release(&tx, token).await?;
                                done?;
                                jobs.set(jobs.get() + 1);
                                if jobs.get() == JOBS {
                                    enough.set();
                                }
                            }
                            #[allow(unreachable_code)]
                            Ok::<_, BoxError>(())
                        })?;
                    }
                    Ok::<_, BoxError>(())
                }))
                .await?;
            l.set(pool_rx.statistics().current_buffer_used);
            Ok::<_, BoxError>(())
        }),
    )?;
    if left.get() != TOKENS as usize {
        return Err(format!("{} of {TOKENS} tokens back in the pool after the workers were cancelled", left.get()));
    }
    Ok(())
}

// ---------------------------------------------------------------- ack

/// The store of `examples/sim_kv.rs`. The planted bug (`ack.patch`) turns
/// on the store's own `--bug`: the primary acknowledges writes it keeps
/// only in memory.
const ACK_FROM_MEMORY: bool = false;

fn ack(case: Case) -> Result<(), String> {
    let (out, hash) = kv_world::run_case(case, ACK_FROM_MEMORY)?;
    LAST_HASH.with(|h| h.set(hash));
    match out.violation {
        None => Ok(()),
        Some(v) => Err(v),
    }
}

// ---------------------------------------------------------------- deadline

/// Two clients share one server and one deadline, 20 ms after the start;
/// each sends requests (stamped with the time the send began) inside
/// `move_on_at(deadline)` until the deadline cancels it. The server takes
/// 10 µs to 1 ms per request (from the seed), serving the clients in the
/// order their requests reach it (the schedule). A scope entered at its
/// deadline is cancelled at once (rule C10), so no send begun at or after
/// the deadline may reach the server. A client reaches the deadline
/// exactly when its last reply lands on it, which the service times and
/// the order of the two clients decide.
fn deadline(case: Case) -> Result<(), String> {
    const BUDGET: Duration = Duration::from_millis(20);
    const CLIENTS: u32 = 2;
    let late = Rc::new(RefCell::new(None));
    let l = late.clone();
    run_bounded(
        case,
        open_nursery(move |n| async move {
            let t0 = current_time();
            let end = t0 + BUDGET;
            // A request: (microseconds since the start when its send began, client, number).
            let (req_tx, req_rx) = open_memory_channel::<(u64, u32, u32)>(0);
            let (mut reply_txs, mut reply_rxs) = (Vec::new(), Vec::new());
            for _ in 0..CLIENTS {
                let (tx, rx) = open_memory_channel::<u32>(1);
                reply_txs.push(tx);
                reply_rxs.push(rx);
            }
            let rng = Rng::new(case.seed, 0);
            n.start_soon(async move {
                loop {
                    let (stamp, c, i) = match req_rx.receive().await {
                        Ok(req) => req,
                        Err(ReceiveError::EndOfChannel) => return Ok::<_, BoxError>(()),
                        Err(e) => return Err(e.into()),
                    };
                    if t0 + Duration::from_micros(stamp) >= end && l.borrow().is_none() {
                        *l.borrow_mut() = Some((stamp, c, i));
                    }
                    sleep(Duration::from_micros(10 * (1 + rng.below(100)))).await?;
                    // A client that gave up has dropped its reply channel.
                    let _ = reply_txs[c as usize].send(i).await;
                }
            })?;
            open_nursery(move |m| async move {
                for (c, reply_rx) in (0..CLIENTS).zip(reply_rxs) {
                    let req_tx = req_tx.clone();
                    m.start_soon(async move {
                        let mut i = 0;
                        loop {
                            let call = async {
                                let stamp = current_time().saturating_duration_since(t0).as_micros() as u64;
                                req_tx.send((stamp, c, i)).await?;
                                Ok::<_, BoxError>(reply_rx.receive().await?)
                            };
                            match move_on_at(end, call).await? {
                                Some(_) => i += 1,
                                None => return Ok::<_, BoxError>(()),
                            }
                        }
                    })?;
                }
                Ok::<_, BoxError>(())
            })
            .await?;
            Ok::<_, BoxError>(())
        }),
    )?;
    if let Some((stamp, c, i)) = *late.borrow() {
        return Err(format!(
            "request {i} of client {c}, begun at {stamp} µs, reached the server: the deadline was {} µs",
            BUDGET.as_micros()
        ));
    }
    Ok(())
}
