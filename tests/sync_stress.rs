//! Many tasks hammering one memory channel *and* one lock under random
//! cancellation, on virtual time: every value is received exactly once,
//! every value is recorded exactly once under the lock, and no two tasks
//! are ever inside the lock at the same time.
//!
//! * Senders push their own ranges through a small bounded channel, each
//!   send under a random deadline; a cancelled send gets its value back and
//!   retries it.
//! * Workers receive under random deadlines. For each value they acquire
//!   the lock under a random deadline (retrying when cancelled, still
//!   holding the value), then do a read-modify-write of a shared counter
//!   with a checkpoint in the middle (which would lose updates without
//!   mutual exclusion) and record the value.
//! * A chaos task cancels a random worker's current operation every few
//!   virtual microseconds.
//!
//! Random choices come from a PRNG seeded per run; the scheduler seed is
//! fixed per run; each configuration runs under 8 seeds.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use trioxide::channel::{ReceiveError, SendErrorKind};
use trioxide::sync::{Lock, LockError};
use trioxide::{
    checkpoint, fail_after, open_memory_channel, open_nursery, sleep, BoxError, Builder, CancelScope, Cancelled,
    MockClock,
};

const SENDERS: u32 = 8;
const WORKERS: usize = 8;
const VALUES_PER_SENDER: u32 = 60;
/// Deadlines are 0..MAX_DEADLINE_US virtual microseconds (0 cancels at the
/// entry checkpoint), short enough that many blocked operations time out.
const MAX_DEADLINE_US: u64 = 30;
/// A lost wake-up fails the run instead of hanging it: a run needs a few
/// virtual milliseconds.
const HANG_GUARD: Duration = Duration::from_millis(200);

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

#[derive(Default)]
struct Shared {
    rng: RefCell<Option<Rng>>,
    /// The scope each worker runs its current operation in, for chaos.
    scopes: RefCell<Vec<Option<CancelScope>>>,
    received: RefCell<Vec<u32>>,
    recorded: RefCell<Vec<u32>>,
    counter: Cell<u32>,
    inside: Cell<bool>,
    workers_left: Cell<usize>,
    cancelled_acquires: Cell<u32>,
    cancelled_receives: Cell<u32>,
}

impl Shared {
    fn rand(&self, n: u64) -> u64 {
        self.rng.borrow_mut().as_mut().expect("seeded").below(n)
    }

    fn deadline(&self) -> Duration {
        Duration::from_micros(self.rand(MAX_DEADLINE_US))
    }

    /// A scope with a random deadline, registered for chaos as worker `w`'s.
    fn scope_for(&self, w: usize) -> CancelScope {
        let scope = CancelScope::with_relative_deadline(self.deadline());
        self.scopes.borrow_mut()[w] = Some(scope.clone());
        scope
    }
}

fn run_once(seed: u64, capacity: usize) -> (Rc<Shared>, u32) {
    let shared = Rc::new(Shared::default());
    *shared.rng.borrow_mut() = Some(Rng(seed * 7919));
    shared.scopes.borrow_mut().resize(WORKERS, None);
    shared.workers_left.set(WORKERS);
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    let s = shared.clone();
    let total = SENDERS * VALUES_PER_SENDER;
    Builder::new()
        .seed(seed)
        .clock(clock)
        .run(fail_after(HANG_GUARD, async move {
            open_nursery(move |n| async move {
                let (tx, rx) = open_memory_channel::<u32>(capacity);
                let lock = Rc::new(Lock::new());
                for sender in 0..SENDERS {
                    let (tx, s) = (tx.clone(), s.clone());
                    n.start_soon(async move {
                        for v in sender * VALUES_PER_SENDER..(sender + 1) * VALUES_PER_SENDER {
                            let mut value = v;
                            loop {
                                let scope = CancelScope::with_relative_deadline(s.deadline());
                                let mut back = None;
                                let out = scope
                                    .run(async {
                                        tx.send(value).await.map_err(|e| {
                                            assert_eq!(e.kind(), SendErrorKind::Cancelled, "only cancels stop a send");
                                            back = Some(e.into_inner());
                                            Cancelled
                                        })
                                    })
                                    .await;
                                match out {
                                    Ok(Some(())) => break,
                                    // Our own deadline: the value came back; retry it.
                                    Ok(None) => value = back.ok_or("a cancelled send lost its value")?,
                                    // The hang guard: give up.
                                    Err(c) => return Err(c.into()),
                                }
                            }
                        }
                        Ok::<_, BoxError>(())
                    })?;
                }
                drop(tx);
                for w in 0..WORKERS {
                    let (rx, s, lock) = (rx.clone(), s.clone(), lock.clone());
                    n.start_soon(async move {
                        loop {
                            let got = s.scope_for(w).run(rx.receive()).await;
                            let v = match got {
                                Ok(Some(v)) => v,
                                // Our own deadline or chaos: nothing was taken.
                                Ok(None) => {
                                    s.cancelled_receives.set(s.cancelled_receives.get() + 1);
                                    continue;
                                }
                                Err(ReceiveError::EndOfChannel) => break,
                                // The hang guard, or a real error: give up.
                                Err(e) => return Err(e.into()),
                            };
                            s.received.borrow_mut().push(v);
                            // Record `v` under the lock, however many tries.
                            loop {
                                let scope = s.scope_for(w);
                                let r = scope
                                    .run(async {
                                        let _guard = lock.acquire().await?;
                                        assert!(!s.inside.replace(true), "two tasks inside the lock");
                                        let c = s.counter.get();
                                        // Shielded: once inside, finish the update.
                                        CancelScope::shielded().run(checkpoint()).await.ok();
                                        s.counter.set(c + 1);
                                        s.recorded.borrow_mut().push(v);
                                        s.inside.set(false);
                                        Ok::<_, LockError>(())
                                    })
                                    .await;
                                match r {
                                    Ok(Some(())) => break,
                                    // Our own deadline or chaos: retry, still holding `v`.
                                    Ok(None) => s.cancelled_acquires.set(s.cancelled_acquires.get() + 1),
                                    Err(e) => return Err(e.into()),
                                }
                            }
                        }
                        s.scopes.borrow_mut()[w] = None;
                        s.workers_left.set(s.workers_left.get() - 1);
                        Ok::<_, BoxError>(())
                    })?;
                }
                drop(rx);
                // Chaos: cancel a random worker's current operation.
                let s2 = s.clone();
                n.start_soon(async move {
                    while s2.workers_left.get() > 0 {
                        sleep(Duration::from_micros(1 + s2.rand(5))).await?;
                        let w = s2.rand(WORKERS as u64) as usize;
                        if let Some(scope) = s2.scopes.borrow_mut()[w].take() {
                            scope.cancel();
                        }
                    }
                    Ok::<_, BoxError>(())
                })?;
                Ok::<_, BoxError>(())
            })
            .await?;
            Ok::<_, BoxError>(())
        }))
        .expect("no task failed and the run finished within the hang guard");
    (shared, total)
}

fn check(seed: u64, capacity: usize) {
    let (s, total) = run_once(seed, capacity);
    let mut received = s.received.borrow().clone();
    let mut recorded = s.recorded.borrow().clone();
    received.sort_unstable();
    recorded.sort_unstable();
    let expected: Vec<u32> = (0..total).collect();
    assert_eq!(received, expected, "seed {seed}: every value received exactly once");
    assert_eq!(recorded, expected, "seed {seed}: every value recorded exactly once");
    assert_eq!(s.counter.get(), total, "seed {seed}: no update lost inside the lock");
    // The stress must actually stress: cancellations hit both primitives.
    assert!(s.cancelled_acquires.get() > 0, "seed {seed}: no acquire was cancelled");
    assert!(s.cancelled_receives.get() > 0, "seed {seed}: no receive was cancelled");
}

#[test]
fn channel_and_lock_under_random_cancellation_lose_and_duplicate_nothing_bounded() {
    for seed in 1..=8 {
        check(seed, 2);
    }
}

#[test]
fn channel_and_lock_under_random_cancellation_lose_and_duplicate_nothing_rendezvous() {
    for seed in 1..=8 {
        check(seed, 0);
    }
}
