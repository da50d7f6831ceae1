//! Rules Y1–Y4 of RULES.md (at the repository root), section
//! "Synchronisation and channels", and the Condition behaviours of Trio's
//! test_sync.py, one or more tests per rule, named after the rule.
//!
//! Every run uses a fixed seed and a mock clock that autojumps, inside a
//! virtual-time hang guard: a lost wake-up fails the test with `TooSlow`
//! instead of hanging. Ordering assertions that must hold for every
//! scheduling order loop over seeds 1..=8.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use trioxide::sync::{
    BorrowError, Borrower, CapacityLimiter, Condition, ConditionError, Event, Lock, LockError, NotBorrowing, NotOwner,
    Semaphore, SemaphoreError, TryBorrowError, TryLockError,
};
use trioxide::{
    checkpoint, current_task, fail_after, is_cancelled_error, open_nursery, wait_all_tasks_blocked, BoxError, Builder,
    CancelScope, Cancelled, MockClock, TaskId, WouldBlock,
};

// ---------------------------------------------------------------- helpers

const SEEDS: std::ops::RangeInclusive<u64> = 1..=8;

/// Virtual-time bound on every run: a hang autojumps to it.
const HANG_GUARD: Duration = Duration::from_secs(3600);

type Log<T> = Rc<RefCell<Vec<T>>>;

fn new_log<T>() -> Log<T> {
    Rc::new(RefCell::new(Vec::new()))
}

fn entries<T: Clone>(log: &Log<T>) -> Vec<T> {
    log.borrow().clone()
}

/// Runs `main` with `seed` on an autojumping mock clock, inside the hang
/// guard; panics if it fails.
fn run_seeded<F: Future<Output = Result<(), BoxError>>>(seed: u64, main: F) {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    if let Err(e) = Builder::new().seed(seed).clock(clock).run(fail_after(HANG_GUARD, main)) {
        panic!("seed {seed}: the run failed: {e}");
    }
}

fn run1<F: Future<Output = Result<(), BoxError>>>(main: F) {
    run_seeded(1, main)
}

/// True if the log holds, pass by pass, one entry of each of two tasks:
/// every aligned pair is `{a, b}`.
fn interleaved(log: &[&'static str], a: &str, b: &str) -> bool {
    log.len().is_multiple_of(2) && log.chunks(2).all(|p| (p[0] == a && p[1] == b) || (p[0] == b && p[1] == a))
}

// ---------------------------------------------------------------- Y1

#[test]
fn y1_event_set_wakes_every_waiter() {
    for seed in SEEDS {
        run_seeded(seed, async {
            let e = Rc::new(Event::new());
            assert!(!e.is_set());
            assert_eq!(e.statistics().tasks_waiting, 0);
            let log = new_log();
            let woken = Rc::new(Cell::new(0));
            open_nursery(|n| {
                let (e, log, woken) = (e.clone(), log.clone(), woken.clone());
                async move {
                    for i in 0..5 {
                        let (e, log, woken) = (e.clone(), log.clone(), woken.clone());
                        n.start_soon(async move {
                            log.borrow_mut().push(format!("sleeping {i}"));
                            e.wait().await?;
                            woken.set(woken.get() + 1);
                            Ok::<_, Cancelled>(())
                        })?;
                    }
                    wait_all_tasks_blocked().await?;
                    assert_eq!(log.borrow().len(), 5);
                    assert_eq!(e.statistics().tasks_waiting, 5);
                    assert_eq!(woken.get(), 0);
                    e.set();
                    assert!(e.is_set());
                    assert_eq!(e.statistics().tasks_waiting, 0);
                    wait_all_tasks_blocked().await?;
                    assert_eq!(woken.get(), 5);
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            assert_eq!(woken.get(), 5);
            Ok(())
        });
    }
}

#[test]
fn y1_waiting_on_a_set_event_still_yields_to_other_tasks() {
    // Two tasks loop: one waits on a set event, the other checkpoints. If
    // the wait did not yield, the first would log all its rounds in one
    // step; as a checkpoint, each logs once per pass (rule S3).
    for seed in SEEDS {
        run_seeded(seed, async {
            let e = Rc::new(Event::new());
            e.set();
            let log: Log<&'static str> = new_log();
            open_nursery(|n| {
                let (e, l1, l2) = (e.clone(), log.clone(), log.clone());
                async move {
                    n.start_soon(async move {
                        for _ in 0..4 {
                            e.wait().await?;
                            l1.borrow_mut().push("event");
                        }
                        Ok::<_, Cancelled>(())
                    })?;
                    n.start_soon(async move {
                        for _ in 0..4 {
                            checkpoint().await?;
                            l2.borrow_mut().push("other");
                        }
                        Ok::<_, Cancelled>(())
                    })?;
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            let log = entries(&log);
            assert_eq!(log.len(), 8);
            assert!(interleaved(&log, "event", "other"), "seed {seed}: {log:?}");
            Ok(())
        });
    }
}

#[test]
fn y1_waiting_on_a_set_event_reports_cancelled_in_a_cancelled_scope() {
    run1(async {
        let e = Event::new();
        e.set();
        let scope = CancelScope::new();
        scope.cancel();
        let direct = scope.run(async { Ok::<_, Cancelled>(e.wait().await) }).await?;
        assert_eq!(direct, Some(Err(Cancelled)));
        let scope = CancelScope::new();
        scope.cancel();
        let caught = scope.run(e.wait()).await?;
        assert_eq!(caught, None);
        assert!(scope.cancelled_caught());
        // Not set: the same, and nobody is left waiting.
        let e2 = Event::new();
        let scope2 = CancelScope::new();
        scope2.cancel();
        assert_eq!(scope2.run(e2.wait()).await?, None);
        assert_eq!(e2.statistics().tasks_waiting, 0);
        Ok(())
    });
}

#[test]
fn y1_a_waiter_woken_by_set_returns_ok_even_if_cancelled_before_it_runs() {
    for seed in SEEDS {
        run_seeded(seed, async {
            let e = Rc::new(Event::new());
            let scope = CancelScope::new();
            let out = Rc::new(RefCell::new(None));
            open_nursery(|n| {
                let (e, scope, out) = (e.clone(), scope.clone(), out.clone());
                async move {
                    let (e2, s2, o2) = (e.clone(), scope.clone(), out.clone());
                    n.start_soon(async move {
                        let r = s2.run(async { Ok::<_, Cancelled>(e2.wait().await) }).await;
                        *o2.borrow_mut() = Some(r);
                    })?;
                    wait_all_tasks_blocked().await?;
                    // Set, then cancel, in the same step: the set wins.
                    e.set();
                    scope.cancel();
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            assert_eq!(*out.borrow(), Some(Ok(Some(Ok(())))));
            Ok(())
        });
    }
}

// ---------------------------------------------------------------- Y2

/// The primitives that can act as a lock, for the generic tests.
trait LockLike: 'static {
    /// Holds the lock while running `body`.
    async fn critical(&self, body: impl FnOnce()) -> Result<(), BoxError>;
}

impl LockLike for Lock {
    async fn critical(&self, body: impl FnOnce()) -> Result<(), BoxError> {
        let _g = self.acquire().await?;
        body();
        Ok(())
    }
}

impl LockLike for Semaphore {
    async fn critical(&self, body: impl FnOnce()) -> Result<(), BoxError> {
        let _p = self.acquire().await?;
        body();
        Ok(())
    }
}

impl LockLike for CapacityLimiter {
    async fn critical(&self, body: impl FnOnce()) -> Result<(), BoxError> {
        let _t = self.acquire().await?;
        body();
        Ok(())
    }
}

impl LockLike for Condition {
    async fn critical(&self, body: impl FnOnce()) -> Result<(), BoxError> {
        let _g = self.acquire().await?;
        body();
        Ok(())
    }
}

/// Trio's test_generic_lock_fifo_fairness: `TASKS` tasks loop
/// acquire/release `ROUNDS` times with no other checkpoint; after the first
/// round (whose order the scheduler picks) the order repeats exactly.
fn fifo_fairness<L: LockLike>(make: impl Fn() -> L) {
    const TASKS: usize = 4;
    const ROUNDS: usize = 6;
    for seed in SEEDS {
        let lock = Rc::new(make());
        run_seeded(seed, async {
            let initial: Log<usize> = new_log();
            let record: Log<usize> = new_log();
            open_nursery(|n| {
                let (lock, initial, record) = (lock.clone(), initial.clone(), record.clone());
                async move {
                    for name in 0..TASKS {
                        let (lock, initial, record) = (lock.clone(), initial.clone(), record.clone());
                        n.start_soon(async move {
                            initial.borrow_mut().push(name);
                            for _ in 0..ROUNDS {
                                lock.critical(|| record.borrow_mut().push(name)).await?;
                            }
                            Ok::<_, BoxError>(())
                        })?;
                    }
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            let initial = entries(&initial);
            let record = entries(&record);
            assert_eq!(record.len(), TASKS * ROUNDS);
            for (round, chunk) in record.chunks(TASKS).enumerate() {
                assert_eq!(chunk, &initial[..], "seed {seed}, round {round}: {record:?}");
            }
            Ok(())
        });
    }
}

#[test]
fn y2_lock_waiters_acquire_in_arrival_order_round_robin() {
    fifo_fairness(Lock::new);
}

#[test]
fn y2_condition_lock_is_fifo_fair() {
    fifo_fairness(Condition::new);
}

#[test]
fn y2_lock_release_hands_ownership_to_the_waiter() {
    // Trio's test_lock_handover.
    for seed in SEEDS {
        run_seeded(seed, async {
            let lock = Rc::new(Lock::new());
            let waiter_id: Rc<Cell<Option<TaskId>>> = Rc::new(Cell::new(None));
            let hold = Rc::new(Event::new());
            let third: Log<Result<(), TryLockError>> = new_log();
            let guard = lock.try_acquire()?;
            open_nursery(|n| {
                let (lock, waiter_id, hold, third) = (lock.clone(), waiter_id.clone(), hold.clone(), third.clone());
                async move {
                    let (l2, w2, h2) = (lock.clone(), waiter_id.clone(), hold.clone());
                    n.start_soon(async move {
                        w2.set(Some(current_task().id));
                        let _g = l2.acquire().await?;
                        h2.wait().await?;
                        Ok::<_, BoxError>(())
                    })?;
                    wait_all_tasks_blocked().await?;
                    let s = lock.statistics();
                    assert_eq!((s.locked, s.owner, s.tasks_waiting), (true, Some(current_task().id), 1));
                    drop(guard);
                    // Never free in between: the waiter owns it before it runs.
                    let s = lock.statistics();
                    assert!(lock.is_locked());
                    assert_eq!((s.locked, s.owner, s.tasks_waiting), (true, waiter_id.get(), 0));
                    assert_eq!(lock.try_acquire().map(drop), Err(TryLockError::WouldBlock));
                    let (l3, t3) = (lock.clone(), third.clone());
                    n.start_soon(async move {
                        t3.borrow_mut().push(l3.try_acquire().map(drop));
                    })?;
                    wait_all_tasks_blocked().await?;
                    assert_eq!(entries(&third), [Err(TryLockError::WouldBlock)]);
                    assert_eq!(lock.statistics().owner, waiter_id.get());
                    hold.set();
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            let s = lock.statistics();
            assert_eq!((s.locked, s.owner, s.tasks_waiting), (false, None, 0));
            Ok(())
        });
    }
}

#[test]
fn y2_lock_reacquire_by_the_owner_is_an_error_not_a_deadlock() {
    run1(async {
        let lock = Lock::new();
        let g = lock.acquire().await?;
        assert_eq!(lock.acquire().await.map(drop), Err(LockError::AlreadyHeld));
        assert_eq!(lock.try_acquire().map(drop), Err(TryLockError::AlreadyHeld));
        assert!(g.is_held());
        drop(g);
        assert!(!lock.is_locked());
        assert_eq!(LockError::AlreadyHeld.to_string(), "attempt to re-acquire a lock the current task already holds");
        Ok(())
    });
}

#[test]
fn y2_lock_excludes_other_tasks_from_the_critical_section() {
    // Trio's test_generic_lock_exclusion.
    for seed in SEEDS {
        run_seeded(seed, async {
            let lock = Rc::new(Lock::new());
            let inside = Rc::new(Cell::new(false));
            let entries = Rc::new(Cell::new(0));
            open_nursery(|n| {
                let (lock, inside, entries) = (lock.clone(), inside.clone(), entries.clone());
                async move {
                    for _ in 0..5 {
                        let (lock, inside, entries) = (lock.clone(), inside.clone(), entries.clone());
                        n.start_soon(async move {
                            for _ in 0..10 {
                                let _g = lock.acquire().await?;
                                entries.set(entries.get() + 1);
                                assert!(!inside.replace(true));
                                checkpoint().await?;
                                checkpoint().await?;
                                assert!(inside.replace(false));
                            }
                            Ok::<_, BoxError>(())
                        })?;
                    }
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            assert_eq!(entries.get(), 50);
            assert!(!lock.is_locked());
            Ok(())
        });
    }
}

// ---------------------------------------------------------------- Y3

#[test]
fn y3_release_by_a_task_that_does_not_own_the_lock_is_refused() {
    run1(async {
        let lock = Rc::new(Lock::new());
        // Free: nobody owns it.
        assert_eq!(lock.release(), Err(NotOwner));
        let owner: Rc<Cell<Option<TaskId>>> = Rc::new(Cell::new(None));
        let go = Rc::new(Event::new());
        let results: Log<Result<(), NotOwner>> = new_log();
        open_nursery(|n| {
            let (lock, owner, go, results) = (lock.clone(), owner.clone(), go.clone(), results.clone());
            async move {
                let (l2, o2, g2, r2) = (lock.clone(), owner.clone(), go.clone(), results.clone());
                n.start_soon(async move {
                    o2.set(Some(current_task().id));
                    l2.acquire().await?.leak();
                    g2.wait().await?;
                    r2.borrow_mut().push(l2.release());
                    r2.borrow_mut().push(l2.release());
                    Ok::<_, BoxError>(())
                })?;
                wait_all_tasks_blocked().await?;
                assert_eq!(lock.release(), Err(NotOwner));
                assert_eq!(NotOwner.to_string(), "the current task does not own this lock");
                // Refused, and nothing changed.
                assert_eq!(lock.statistics().owner, owner.get());
                go.set();
                Ok::<_, BoxError>(())
            }
        })
        .await?;
        assert_eq!(entries(&results), [Ok(()), Err(NotOwner)]);
        assert!(!lock.is_locked());
        Ok(())
    });
}

#[test]
fn y3_owner_task_ending_with_the_lock_breaks_it_for_waiters_and_later_acquires() {
    for seed in SEEDS {
        run_seeded(seed, async {
            let lock = Rc::new(Lock::new());
            let owner: Rc<Cell<Option<TaskId>>> = Rc::new(Cell::new(None));
            let go = Rc::new(Event::new());
            let results: Log<(usize, Result<(), LockError>)> = new_log();
            open_nursery(|n| {
                let (lock, owner, go, results) = (lock.clone(), owner.clone(), go.clone(), results.clone());
                async move {
                    let (l2, o2, g2) = (lock.clone(), owner.clone(), go.clone());
                    n.start_soon(async move {
                        o2.set(Some(current_task().id));
                        l2.acquire().await?.leak();
                        g2.wait().await?;
                        // Ends holding the lock.
                        Ok::<_, BoxError>(())
                    })?;
                    wait_all_tasks_blocked().await?;
                    for i in 0..2 {
                        let (l3, r3) = (lock.clone(), results.clone());
                        n.start_soon(async move {
                            let r = l3.acquire().await.map(drop);
                            r3.borrow_mut().push((i, r));
                        })?;
                        wait_all_tasks_blocked().await?;
                    }
                    assert_eq!(lock.statistics().tasks_waiting, 2);
                    go.set();
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            let dead = owner.get().expect("the owner ran");
            let broken = Err(LockError::Broken { owner: dead });
            // Both woken in one pass, which may run them in either order.
            let mut results = entries(&results);
            results.sort_by_key(|r| r.0);
            assert_eq!(results, [(0, broken), (1, broken)]);
            assert_eq!(lock.acquire().await.map(drop), broken);
            assert_eq!(lock.try_acquire().map(drop), Err(TryLockError::Broken { owner: dead }));
            let msg = LockError::Broken { owner: dead }.to_string();
            assert!(msg.contains(&format!("{dead:?}")), "{msg}");
            let source = std::error::Error::source(&LockError::Broken { owner: dead }).map(|s| s.to_string());
            assert_eq!(source.as_deref(), Some("broken resource: a lock's owner task ended without releasing it"));
            let s = lock.statistics();
            assert_eq!((s.locked, s.owner, s.tasks_waiting), (true, Some(dead), 0));
            Ok(())
        });
    }
}

#[test]
fn y3_breaker_moves_with_ownership_on_hand_over() {
    // A hands the lock to B and ends: not broken. B then ends holding it
    // (leaked): broken, naming B.
    for seed in SEEDS {
        run_seeded(seed, async {
            let lock = Rc::new(Lock::new());
            let ids: Log<TaskId> = new_log();
            let b_go = Rc::new(Event::new());
            let later: Log<Result<(), LockError>> = new_log();
            open_nursery(|n| {
                let (lock, ids, b_go, later) = (lock.clone(), ids.clone(), b_go.clone(), later.clone());
                async move {
                    let (l, i) = (lock.clone(), ids.clone());
                    let a_go = Rc::new(Event::new());
                    let a_go2 = a_go.clone();
                    n.start_soon(async move {
                        i.borrow_mut().push(current_task().id);
                        let g = l.acquire().await?;
                        a_go2.wait().await?;
                        drop(g);
                        Ok::<_, BoxError>(())
                    })?;
                    wait_all_tasks_blocked().await?;
                    let (l, i, bg) = (lock.clone(), ids.clone(), b_go.clone());
                    n.start_soon(async move {
                        i.borrow_mut().push(current_task().id);
                        l.acquire().await?.leak();
                        bg.wait().await?;
                        Ok::<_, BoxError>(())
                    })?;
                    wait_all_tasks_blocked().await?;
                    a_go.set();
                    wait_all_tasks_blocked().await?;
                    // A has ended; B owns the lock, which is not broken.
                    let b = ids.borrow()[1];
                    assert_eq!(lock.statistics().owner, Some(b));
                    let (l, lt) = (lock.clone(), later.clone());
                    n.start_soon(async move {
                        let r = l.acquire().await.map(drop);
                        lt.borrow_mut().push(r);
                    })?;
                    wait_all_tasks_blocked().await?;
                    assert_eq!(lock.statistics().tasks_waiting, 1);
                    b_go.set();
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            let b = ids.borrow()[1];
            assert_eq!(entries(&later), [Err(LockError::Broken { owner: b })]);
            Ok(())
        });
    }
}

#[test]
fn y3_a_guard_dropped_when_its_task_ends_does_not_break_the_lock() {
    run1(async {
        let lock = Rc::new(Lock::new());
        open_nursery(|n| {
            let lock = lock.clone();
            async move {
                n.start_soon(async move {
                    let _g = lock.acquire().await?;
                    Ok::<_, BoxError>(())
                })?;
                Ok::<_, BoxError>(())
            }
        })
        .await?;
        assert!(!lock.is_locked());
        let g = lock.acquire().await?;
        assert!(g.is_held());
        Ok(())
    });
}

// ---------------------------------------------------------------- Y4

#[test]
fn y4_semaphore_release_hands_the_unit_to_the_waiter() {
    // Trio's test_Semaphore.
    for seed in SEEDS {
        run_seeded(seed, async {
            let s = Rc::new(Semaphore::new(1));
            assert_eq!((s.value(), s.max_value()), (1, None));
            s.release()?;
            assert_eq!(s.value(), 2);
            s.try_acquire()?.forget();
            assert_eq!(s.value(), 1);
            s.acquire().await?.forget();
            assert_eq!(s.value(), 0);
            assert_eq!(s.try_acquire().map(drop), Err(WouldBlock));
            s.release()?;
            {
                let _p = s.acquire().await?;
                assert_eq!(s.value(), 0);
            }
            assert_eq!(s.value(), 1);
            s.try_acquire()?.forget();
            let record: Log<&'static str> = new_log();
            let third: Log<Result<(), WouldBlock>> = new_log();
            open_nursery(|n| {
                let (s, record, third) = (s.clone(), record.clone(), third.clone());
                async move {
                    let (s2, r2) = (s.clone(), record.clone());
                    n.start_soon(async move {
                        r2.borrow_mut().push("started");
                        s2.acquire().await?.forget();
                        r2.borrow_mut().push("finished");
                        Ok::<_, BoxError>(())
                    })?;
                    wait_all_tasks_blocked().await?;
                    assert_eq!(entries(&record), ["started"]);
                    assert_eq!((s.value(), s.statistics().tasks_waiting), (0, 1));
                    s.release()?;
                    // Handed over: the value stays 0, a third party fails.
                    assert_eq!((s.value(), s.statistics().tasks_waiting), (0, 0));
                    assert_eq!(s.try_acquire().map(drop), Err(WouldBlock));
                    let (s3, t3) = (s.clone(), third.clone());
                    n.start_soon(async move { t3.borrow_mut().push(s3.try_acquire().map(|p| p.forget())) })?;
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            assert_eq!(entries(&record), ["started", "finished"]);
            assert_eq!(entries(&third), [Err(WouldBlock)]);
            assert_eq!(s.value(), 0);
            Ok(())
        });
    }
}

#[test]
fn y4_semaphore_is_fifo_fair() {
    fifo_fairness(|| Semaphore::new(1));
}

#[test]
fn y4_bounded_semaphore_refuses_a_release_above_its_max() {
    // Trio's test_Semaphore_bounded.
    run1(async {
        assert_eq!(
            Semaphore::with_max(2, 1).map(drop),
            Err(SemaphoreError::MaxBelowInitial { initial: 2, max_value: 1 })
        );
        let s = Semaphore::with_max(1, 1)?;
        assert_eq!(s.max_value(), Some(1));
        assert_eq!(s.release(), Err(SemaphoreError::ReleasedTooManyTimes { max_value: 1 }));
        assert_eq!(s.value(), 1);
        s.try_acquire()?.forget();
        assert_eq!(s.value(), 0);
        s.release()?;
        assert_eq!(s.value(), 1);
        // A permit given back while the value is at its max (after a
        // release by hand) leaves it at the max.
        let p = s.acquire().await?;
        s.release()?;
        drop(p);
        assert_eq!(s.value(), 1);
        assert_eq!(
            SemaphoreError::ReleasedTooManyTimes { max_value: 1 }.to_string(),
            "semaphore released too many times (its value is already at its maximum, 1)"
        );
        Ok(())
    });
}

#[test]
fn y4_capacity_limiter_basics_and_hand_over() {
    // Trio's test_CapacityLimiter.
    for seed in SEEDS {
        run_seeded(seed, async {
            let c = Rc::new(CapacityLimiter::new(2));
            assert_eq!((c.total_tokens(), c.borrowed_tokens(), c.available_tokens()), (2, 0, 2));
            assert_eq!(c.release(), Err(NotBorrowing));
            c.try_acquire()?.forget();
            assert_eq!((c.borrowed_tokens(), c.available_tokens()), (1, 1));
            let me = Borrower::current_task();
            let s = c.statistics();
            assert_eq!((s.borrowed_tokens, s.total_tokens, s.tasks_waiting), (1, 2, 0));
            assert_eq!(s.borrowers, vec![me]);
            // One token per borrower.
            assert_eq!(c.try_acquire().map(drop), Err(TryBorrowError::AlreadyBorrowing));
            assert_eq!(c.acquire().await.map(drop), Err(BorrowError::AlreadyBorrowing));
            assert_eq!(c.borrowed_tokens(), 1);
            // On behalf of someone else, though:
            let someone = Borrower::unique();
            c.acquire_on_behalf_of(someone).await?.forget();
            assert_eq!(c.borrowed_tokens(), 2);
            let third_party = Borrower::unique();
            assert_eq!(c.try_acquire_on_behalf_of(third_party).map(drop), Err(TryBorrowError::WouldBlock));
            let mut both = vec![me, someone];
            both.sort();
            assert_eq!(c.statistics().borrowers, both);
            c.release_on_behalf_of(me)?;
            assert_eq!(c.statistics().borrowers, vec![someone]);
            c.release_on_behalf_of(someone)?;
            assert_eq!(c.borrowed_tokens(), 0);
            {
                let _t = c.acquire().await?;
                assert_eq!(c.borrowed_tokens(), 1);
            }
            assert_eq!(c.borrowed_tokens(), 0);

            let (v1, v2, v3) = (Borrower::unique(), Borrower::unique(), Borrower::unique());
            let third: Log<Result<(), TryBorrowError>> = new_log();
            open_nursery(|n| {
                let (c, third) = (c.clone(), third.clone());
                async move {
                    c.acquire_on_behalf_of(v1).await?.forget();
                    c.acquire_on_behalf_of(v2).await?.forget();
                    let c2 = c.clone();
                    n.start_soon(async move {
                        c2.acquire_on_behalf_of(v3).await?.forget();
                        Ok::<_, BoxError>(())
                    })?;
                    wait_all_tasks_blocked().await?;
                    assert_eq!((c.borrowed_tokens(), c.statistics().tasks_waiting), (2, 1));
                    c.release_on_behalf_of(v2)?;
                    // Fairness: handed to v3 at once.
                    assert_eq!((c.borrowed_tokens(), c.statistics().tasks_waiting), (2, 0));
                    assert!(c.statistics().borrowers.contains(&v3));
                    assert_eq!(c.try_acquire().map(drop), Err(TryBorrowError::WouldBlock));
                    let c3 = c.clone();
                    let t3 = third.clone();
                    n.start_soon(async move { t3.borrow_mut().push(c3.try_acquire().map(drop)) })?;
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            assert_eq!(entries(&third), [Err(TryBorrowError::WouldBlock)]);
            c.release_on_behalf_of(v3)?;
            c.release_on_behalf_of(v1)?;
            assert_eq!(c.release_on_behalf_of(v1), Err(NotBorrowing));
            assert_eq!(c.borrowed_tokens(), 0);
            Ok(())
        });
    }
}

#[test]
fn y4_capacity_limiter_second_token_for_one_borrower_is_an_error() {
    run1(async {
        let c = Rc::new(CapacityLimiter::new(1));
        let b = Borrower::unique();
        let _t = c.acquire_on_behalf_of(b).await?;
        assert_eq!(c.try_acquire_on_behalf_of(b).map(drop), Err(TryBorrowError::AlreadyBorrowing));
        assert_eq!(c.acquire_on_behalf_of(b).await.map(drop), Err(BorrowError::AlreadyBorrowing));
        // Also while the borrower is still waiting for its first token.
        let w = Borrower::unique();
        let seen: Log<Result<(), BorrowError>> = new_log();
        open_nursery(|n| {
            let (c, seen) = (c.clone(), seen.clone());
            async move {
                let c2 = c.clone();
                n.start_soon(async move {
                    let _t = c2.acquire_on_behalf_of(w).await?;
                    Ok::<_, BoxError>(())
                })?;
                wait_all_tasks_blocked().await?;
                assert_eq!(c.statistics().tasks_waiting, 1);
                let second = c.acquire_on_behalf_of(w).await.map(drop);
                seen.borrow_mut().push(second);
                assert_eq!(c.try_acquire_on_behalf_of(w).map(drop), Err(TryBorrowError::AlreadyBorrowing));
                n.cancel_scope().cancel();
                Ok::<_, BoxError>(())
            }
        })
        .await?;
        assert_eq!(entries(&seen), [Err(BorrowError::AlreadyBorrowing)]);
        assert_eq!(c.borrowed_tokens(), 1);
        assert_eq!(
            BorrowError::AlreadyBorrowing.to_string(),
            "this borrower is already holding (or waiting for) one of this CapacityLimiter's tokens"
        );
        Ok(())
    });
}

#[test]
fn y4_capacity_limiter_set_total_tokens_grows_at_once_and_shrinks_as_tokens_return() {
    // Trio's test_CapacityLimiter_change_total_tokens.
    for seed in SEEDS {
        run_seeded(seed, async {
            let c = Rc::new(CapacityLimiter::new(2));
            // 0 is allowed now (Trio PR #3321; tested in trio_parity.rs).
            assert_eq!(c.total_tokens(), 2);
            let b: Vec<Borrower> = (0..5).map(|_| Borrower::unique()).collect();
            let sorted = |v: &[usize]| {
                let mut out: Vec<Borrower> = v.iter().map(|&i| b[i]).collect();
                out.sort();
                out
            };
            open_nursery(|n| {
                let c = c.clone();
                let b = b.clone();
                async move {
                    for &bi in &b {
                        let c2 = c.clone();
                        n.start_soon(async move {
                            c2.acquire_on_behalf_of(bi).await?.forget();
                            Ok::<_, BoxError>(())
                        })?;
                        wait_all_tasks_blocked().await?;
                    }
                    assert_eq!(c.statistics().borrowers, sorted(&[0, 1]));
                    assert_eq!(c.statistics().tasks_waiting, 3);
                    // Growing hands the new tokens out at once, oldest first.
                    c.set_total_tokens(4);
                    assert_eq!(c.statistics().borrowers, sorted(&[0, 1, 2, 3]));
                    assert_eq!(c.statistics().tasks_waiting, 1);
                    // Shrinking takes nobody's token away.
                    c.set_total_tokens(1);
                    assert_eq!((c.borrowed_tokens(), c.total_tokens(), c.available_tokens()), (4, 1, 0));
                    for &bi in &b[..3] {
                        c.release_on_behalf_of(bi)?;
                    }
                    assert_eq!(c.statistics().borrowers, sorted(&[3]));
                    assert_eq!(c.statistics().tasks_waiting, 1);
                    c.release_on_behalf_of(b[3])?;
                    assert_eq!(c.statistics().borrowers, sorted(&[4]));
                    assert_eq!(c.statistics().tasks_waiting, 0);
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            c.release_on_behalf_of(b[4])?;
            assert_eq!(c.borrowed_tokens(), 0);
            Ok(())
        });
    }
}

#[test]
fn y4_capacity_limiter_is_fifo_fair() {
    fifo_fairness(|| CapacityLimiter::new(1));
}

// ---------------------------------------------------------------- Condition

/// Spawns `count` condition waiters, one at a time so they arrive in index
/// order; each logs its index once its wait returns holding the lock.
async fn spawn_waiters(
    n: &trioxide::Nursery,
    cond: &Rc<Condition>,
    finished: &Log<usize>,
    count: usize,
) -> Result<(), BoxError> {
    for i in 0..count {
        let (cond, finished) = (cond.clone(), finished.clone());
        n.start_soon(async move {
            let mut g = cond.acquire().await?;
            cond.wait(&mut g).await?;
            assert!(g.is_held());
            finished.borrow_mut().push(i);
            Ok::<_, BoxError>(())
        })?;
        wait_all_tasks_blocked().await?;
    }
    Ok(())
}

#[test]
fn condition_notify_one_wakes_exactly_one_in_fifo_order() {
    for seed in SEEDS {
        run_seeded(seed, async {
            let cond = Rc::new(Condition::new());
            let finished: Log<usize> = new_log();
            open_nursery(|n| {
                let (cond, finished) = (cond.clone(), finished.clone());
                async move {
                    spawn_waiters(&n, &cond, &finished, 3).await?;
                    assert_eq!(cond.statistics().tasks_waiting, 3);
                    for expected in [vec![0], vec![0, 1], vec![0, 1, 2]] {
                        {
                            let _g = cond.acquire().await?;
                            assert_eq!(cond.notify(1), Ok(1));
                            let s = cond.statistics();
                            assert_eq!(s.lock_statistics.tasks_waiting, 1);
                        }
                        // Handed over: still locked, by the notified task.
                        assert!(cond.is_locked());
                        wait_all_tasks_blocked().await?;
                        assert_eq!(entries(&finished), expected);
                    }
                    let _g = cond.acquire().await?;
                    assert_eq!(cond.notify(1), Ok(0));
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            let s = cond.statistics();
            assert_eq!((s.tasks_waiting, s.lock_statistics.locked), (0, false));
            Ok(())
        });
    }
}

#[test]
fn condition_notify_all_wakes_every_waiter_in_fifo_order() {
    for seed in SEEDS {
        run_seeded(seed, async {
            let cond = Rc::new(Condition::new());
            let finished: Log<usize> = new_log();
            open_nursery(|n| {
                let (cond, finished) = (cond.clone(), finished.clone());
                async move {
                    spawn_waiters(&n, &cond, &finished, 4).await?;
                    {
                        let _g = cond.acquire().await?;
                        assert_eq!(cond.notify_all(), Ok(4));
                        let s = cond.statistics();
                        assert_eq!((s.tasks_waiting, s.lock_statistics.tasks_waiting), (0, 4));
                    }
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            assert_eq!(entries(&finished), [0, 1, 2, 3]);
            Ok(())
        });
    }
}

#[test]
fn condition_notify_n_moves_n_waiters_to_the_lock() {
    // Trio's test_Condition, the notify(2) part.
    run1(async {
        let cond = Rc::new(Condition::new());
        let finished: Log<usize> = new_log();
        open_nursery(|n| {
            let (cond, finished) = (cond.clone(), finished.clone());
            async move {
                spawn_waiters(&n, &cond, &finished, 3).await?;
                {
                    let _g = cond.acquire().await?;
                    assert_eq!(cond.notify(2), Ok(2));
                    let s = cond.statistics();
                    assert_eq!((s.tasks_waiting, s.lock_statistics.tasks_waiting), (1, 2));
                }
                // The release handed the lock to the first notified task.
                assert_eq!(cond.statistics().lock_statistics.tasks_waiting, 1);
                wait_all_tasks_blocked().await?;
                assert_eq!(entries(&finished), [0, 1]);
                let _g = cond.acquire().await?;
                cond.notify_all()?;
                Ok::<_, BoxError>(())
            }
        })
        .await?;
        assert_eq!(entries(&finished), [0, 1, 2]);
        Ok(())
    });
}

#[test]
fn condition_wait_and_notify_require_holding_the_lock() {
    run1(async {
        let cond = Rc::new(Condition::new());
        let other = Condition::new();
        assert_eq!(cond.notify(1), Err(NotOwner));
        assert_eq!(cond.notify_all(), Err(NotOwner));
        // A guard of another condition does not do.
        let mut foreign = other.acquire().await?;
        assert_eq!(cond.wait(&mut foreign).await, Err(ConditionError::NotOwner));
        assert!(foreign.is_held());
        drop(foreign);
        // Another task holding the lock: this one may not notify.
        let go = Rc::new(Event::new());
        open_nursery(|n| {
            let (cond, go) = (cond.clone(), go.clone());
            async move {
                let (c2, g2) = (cond.clone(), go.clone());
                n.start_soon(async move {
                    let _g = c2.acquire().await?;
                    g2.wait().await?;
                    Ok::<_, BoxError>(())
                })?;
                wait_all_tasks_blocked().await?;
                assert_eq!(cond.notify(1), Err(NotOwner));
                assert_eq!(cond.try_acquire().map(drop), Err(TryLockError::WouldBlock));
                go.set();
                Ok::<_, BoxError>(())
            }
        })
        .await?;
        assert_eq!(ConditionError::NotOwner.to_string(), "must hold the condition's lock to wait");
        Ok(())
    });
}

#[test]
fn condition_wait_returns_holding_the_lock_after_cancellation() {
    for seed in SEEDS {
        run_seeded(seed, async {
            let cond = Rc::new(Condition::new());
            // Cancelled on entry: returns at once, still holding the lock.
            let scope = CancelScope::new();
            scope.cancel();
            let mut g = cond.acquire().await?;
            let r = scope.run(async { Ok::<_, Cancelled>(cond.wait(&mut g).await) }).await?;
            assert_eq!(r, Some(Err(ConditionError::Cancelled)));
            assert!(g.is_held());
            assert_eq!(cond.statistics().lock_statistics.owner, Some(current_task().id));
            drop(g);
            assert!(!cond.is_locked());

            // Cancelled while waiting, with the lock held by someone else:
            // it gets back in line and reports Cancelled once it holds it.
            let log: Log<String> = new_log();
            let waiter_scope = CancelScope::new();
            open_nursery(|n| {
                let (cond, log, waiter_scope) = (cond.clone(), log.clone(), waiter_scope.clone());
                async move {
                    let (c2, l2, s2) = (cond.clone(), log.clone(), waiter_scope.clone());
                    n.start_soon(async move {
                        let me = current_task().id;
                        let out = s2
                            .run(async {
                                let mut g = c2.acquire().await?;
                                let r = c2.wait(&mut g).await;
                                l2.borrow_mut().push(format!(
                                    "returned {:?}, held {}, owner is me {}",
                                    r,
                                    g.is_held(),
                                    c2.statistics().lock_statistics.owner == Some(me)
                                ));
                                r?;
                                Ok::<_, BoxError>(())
                            })
                            .await;
                        l2.borrow_mut().push(format!("scope {:?}", out.map_err(|e| e.to_string())));
                        Ok::<_, BoxError>(())
                    })?;
                    wait_all_tasks_blocked().await?;
                    let g = cond.acquire().await?;
                    waiter_scope.cancel();
                    wait_all_tasks_blocked().await?;
                    // Withdrawn from the condition, waiting for the lock.
                    let s = cond.statistics();
                    assert_eq!((s.tasks_waiting, s.lock_statistics.tasks_waiting), (0, 1));
                    assert!(entries(&log).is_empty());
                    drop(g);
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            assert_eq!(entries(&log), ["returned Err(Cancelled), held true, owner is me true", "scope Ok(None)"]);
            assert!(!cond.is_locked());
            Ok(())
        });
    }
}

// ---------------------------------------------------------------- errors

#[test]
fn cancelled_error_cases_are_caught_by_the_cancelled_scope() {
    assert!(is_cancelled_error(&LockError::Cancelled));
    assert!(is_cancelled_error(&BorrowError::Cancelled));
    assert!(is_cancelled_error(&ConditionError::Cancelled));
    assert!(!is_cancelled_error(&LockError::AlreadyHeld));
    assert!(!is_cancelled_error(&BorrowError::AlreadyBorrowing));
    assert!(!is_cancelled_error(&ConditionError::NotOwner));
    run1(async {
        // Boxed by `?`, the scope still recognises its own cancellation.
        let lock = Lock::new();
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope
            .run(async {
                let _g = lock.acquire().await?;
                Ok::<_, BoxError>("unreachable")
            })
            .await;
        assert!(matches!(out, Ok(None)));
        assert!(scope.cancelled_caught());
        Ok(())
    });
}

#[test]
fn y3_owner_ending_with_no_waiters_breaks_the_lock_for_later_acquires() {
    run1(async {
        let lock = Rc::new(Lock::new());
        let owner: Rc<Cell<Option<TaskId>>> = Rc::new(Cell::new(None));
        open_nursery(|n| {
            let (lock, owner) = (lock.clone(), owner.clone());
            async move {
                n.start_soon(async move {
                    owner.set(Some(current_task().id));
                    lock.acquire().await?.leak();
                    Ok::<_, BoxError>(())
                })?;
                Ok::<_, BoxError>(())
            }
        })
        .await?;
        let dead = owner.get().expect("the owner ran");
        assert_eq!(lock.try_acquire().map(drop), Err(TryLockError::Broken { owner: dead }));
        assert_eq!(lock.acquire().await.map(drop), Err(LockError::Broken { owner: dead }));
        Ok(())
    });
}

#[test]
fn y3_owner_ending_with_no_waiters_breaks_the_lock_for_a_later_acquire() {
    run1(async {
        let lock = Rc::new(Lock::new());
        let owner: Rc<Cell<Option<TaskId>>> = Rc::new(Cell::new(None));
        open_nursery(|n| {
            let (lock, owner) = (lock.clone(), owner.clone());
            async move {
                n.start_soon(async move {
                    owner.set(Some(current_task().id));
                    lock.acquire().await?.leak();
                    Ok::<_, BoxError>(())
                })?;
                Ok::<_, BoxError>(())
            }
        })
        .await?;
        let dead = owner.get().expect("the owner ran");
        assert_eq!(lock.acquire().await.map(drop), Err(LockError::Broken { owner: dead }));
        Ok(())
    });
}
