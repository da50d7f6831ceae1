//! Cancellation and dropped futures at every blocking point of the
//! synchronisation primitives: a cancelled waiter leaves no trace and the
//! others proceed in order; a hand-over beats a later cancellation; a
//! future dropped after a hand-over passes the thing on; every blocking
//! call is a checkpoint (cancel point on entry, schedule point when it
//! completes at once).
//!
//! Runs use fixed seeds on an autojumping mock clock inside a virtual-time
//! hang guard; order-sensitive tests loop over seeds 1..=8.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use trioxide::sync::{
    BorrowError, Borrower, CapacityLimiter, Condition, ConditionError, Event, Lock, LockError, ParkError, ParkingLot,
    Semaphore,
};
use trioxide::{
    checkpoint, current_task, fail_after, open_nursery, wait_all_tasks_blocked, BoxError, Builder, CancelScope,
    Cancelled, MockClock, TaskId,
};

// ---------------------------------------------------------------- helpers

const SEEDS: std::ops::RangeInclusive<u64> = 1..=8;

const HANG_GUARD: Duration = Duration::from_secs(3600);

type Log = Rc<RefCell<Vec<String>>>;

fn new_log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

fn push(log: &Log, entry: impl Into<String>) {
    log.borrow_mut().push(entry.into());
}

fn entries(log: &Log) -> Vec<String> {
    log.borrow().clone()
}

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

/// Polls `fut` exactly once from the current task (it must stay pending).
async fn poll_once<F: Future + ?Sized>(mut fut: Pin<&mut F>) {
    poll_fn(|cx| {
        assert!(fut.as_mut().poll(cx).is_pending(), "expected the future to stay pending");
        Poll::Ready(())
    })
    .await
}

type Acquiring<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// The primitives that act as a lock, with what "idle" means for each.
trait LockLike: 'static {
    /// Holds the lock while `body` runs.
    async fn with<T>(&self, body: impl Future<Output = T>) -> Result<T, BoxError>;
    /// An acquisition whose result (and guard) is thrown away when done.
    fn acquiring(&self) -> Acquiring<'_>;
    /// Tasks blocked acquiring.
    fn waiting(&self) -> usize;
    /// Whether someone holds it.
    fn held(&self) -> bool;
}

impl LockLike for Lock {
    async fn with<T>(&self, body: impl Future<Output = T>) -> Result<T, BoxError> {
        let _g = self.acquire().await?;
        Ok(body.await)
    }
    fn acquiring(&self) -> Acquiring<'_> {
        Box::pin(async move {
            let _ = self.acquire().await;
        })
    }
    fn waiting(&self) -> usize {
        self.statistics().tasks_waiting
    }
    fn held(&self) -> bool {
        self.is_locked()
    }
}

impl LockLike for Semaphore {
    async fn with<T>(&self, body: impl Future<Output = T>) -> Result<T, BoxError> {
        let _p = self.acquire().await?;
        Ok(body.await)
    }
    fn acquiring(&self) -> Acquiring<'_> {
        Box::pin(async move {
            let _ = self.acquire().await;
        })
    }
    fn waiting(&self) -> usize {
        self.statistics().tasks_waiting
    }
    fn held(&self) -> bool {
        self.value() == 0
    }
}

impl LockLike for CapacityLimiter {
    async fn with<T>(&self, body: impl Future<Output = T>) -> Result<T, BoxError> {
        let _t = self.acquire().await?;
        Ok(body.await)
    }
    fn acquiring(&self) -> Acquiring<'_> {
        Box::pin(async move {
            let _ = self.acquire().await;
        })
    }
    fn waiting(&self) -> usize {
        self.statistics().tasks_waiting
    }
    fn held(&self) -> bool {
        self.borrowed_tokens() > 0
    }
}

impl LockLike for Condition {
    async fn with<T>(&self, body: impl Future<Output = T>) -> Result<T, BoxError> {
        let _g = self.acquire().await?;
        Ok(body.await)
    }
    fn acquiring(&self) -> Acquiring<'_> {
        Box::pin(async move {
            let _ = self.acquire().await;
        })
    }
    fn waiting(&self) -> usize {
        self.statistics().lock_statistics.tasks_waiting
    }
    fn held(&self) -> bool {
        self.is_locked()
    }
}

/// Starts a task that holds `lock` until `release` is set, and waits until
/// it holds it.
async fn spawn_holder<L: LockLike>(n: &trioxide::Nursery, lock: &Rc<L>, release: &Rc<Event>) -> Result<(), BoxError> {
    let (lock, release) = (lock.clone(), release.clone());
    n.start_soon(async move {
        lock.with(release.wait()).await??;
        Ok::<_, BoxError>(())
    })?;
    wait_all_tasks_blocked().await?;
    Ok(())
}

// ------------------------------------------- cancelling one of several waiters

/// Three waiters queue (0, 1, 2) behind a holder; 1 is cancelled; then the
/// holder releases: 0 and 2 get the lock in order and the lock ends idle.
fn cancel_middle_waiter<L: LockLike>(make: impl Fn() -> L) {
    for seed in SEEDS {
        let lock = Rc::new(make());
        run_seeded(seed, async {
            let log = new_log();
            open_nursery(|n| {
                let (lock, log) = (lock.clone(), log.clone());
                async move {
                    let release = Rc::new(Event::new());
                    spawn_holder(&n, &lock, &release).await?;
                    let mut scopes = Vec::new();
                    for i in 0..3 {
                        let scope = CancelScope::new();
                        scopes.push(scope.clone());
                        let (lock, log) = (lock.clone(), log.clone());
                        n.start_soon(async move {
                            let out = scope
                                .run(lock.with(async {
                                    push(&log, format!("{i} got it"));
                                    checkpoint().await
                                }))
                                .await;
                            match out {
                                Ok(Some(r)) => r?,
                                Ok(None) => push(&log, format!("{i} cancelled")),
                                Err(e) => return Err(e),
                            }
                            Ok::<_, BoxError>(())
                        })?;
                        wait_all_tasks_blocked().await?;
                    }
                    assert_eq!(lock.waiting(), 3);
                    scopes[1].cancel();
                    wait_all_tasks_blocked().await?;
                    assert_eq!(lock.waiting(), 2);
                    assert_eq!(entries(&log), ["1 cancelled"]);
                    release.set();
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            assert_eq!(entries(&log), ["1 cancelled", "0 got it", "2 got it"], "seed {seed}");
            assert_eq!((lock.held(), lock.waiting()), (false, 0));
            Ok(())
        });
    }
}

#[test]
fn lock_cancelled_waiter_leaves_the_others_in_order() {
    cancel_middle_waiter(Lock::new);
}

#[test]
fn semaphore_cancelled_waiter_leaves_the_others_in_order() {
    cancel_middle_waiter(|| Semaphore::new(1));
}

#[test]
fn capacity_limiter_cancelled_waiter_leaves_the_others_in_order() {
    cancel_middle_waiter(|| CapacityLimiter::new(1));
}

#[test]
fn condition_acquire_cancelled_waiter_leaves_the_others_in_order() {
    cancel_middle_waiter(Condition::new);
}

#[test]
fn capacity_limiter_cancelled_borrower_may_borrow_again() {
    // The cancelled waiter's pending entry is gone: its borrower is not
    // "already borrowing".
    run1(async {
        let c = Rc::new(CapacityLimiter::new(1));
        let b = Borrower::unique();
        let hold = c.acquire().await?;
        let scope = CancelScope::new();
        open_nursery(|n| {
            let (c, scope) = (c.clone(), scope.clone());
            async move {
                let (c2, s2) = (c.clone(), scope.clone());
                n.start_soon(async move {
                    let out = s2.run(async { c2.acquire_on_behalf_of(b).await.map(drop) }).await;
                    assert_eq!(out, Ok(None));
                })?;
                wait_all_tasks_blocked().await?;
                assert_eq!(c.statistics().tasks_waiting, 1);
                scope.cancel();
                Ok::<_, BoxError>(())
            }
        })
        .await?;
        assert_eq!(c.statistics().tasks_waiting, 0);
        drop(hold);
        let t = c.try_acquire_on_behalf_of(b)?;
        assert_eq!(c.statistics().borrowers, vec![b]);
        drop(t);
        assert_eq!(c.borrowed_tokens(), 0);
        Ok(())
    });
}

#[test]
fn event_cancelled_waiter_leaves_the_others() {
    for seed in SEEDS {
        run_seeded(seed, async {
            let e = Rc::new(Event::new());
            let log = new_log();
            open_nursery(|n| {
                let (e, log) = (e.clone(), log.clone());
                async move {
                    let mut scopes = Vec::new();
                    for i in 0..3 {
                        let scope = CancelScope::new();
                        scopes.push(scope.clone());
                        let (e, log) = (e.clone(), log.clone());
                        n.start_soon(async move {
                            match scope.run(e.wait()).await? {
                                Some(()) => push(&log, format!("{i} woken")),
                                None => push(&log, format!("{i} cancelled")),
                            }
                            Ok::<_, BoxError>(())
                        })?;
                        wait_all_tasks_blocked().await?;
                    }
                    assert_eq!(e.statistics().tasks_waiting, 3);
                    scopes[1].cancel();
                    wait_all_tasks_blocked().await?;
                    assert_eq!(e.statistics().tasks_waiting, 2);
                    assert_eq!(entries(&log), ["1 cancelled"]);
                    e.set();
                    assert_eq!(e.statistics().tasks_waiting, 0);
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            let mut woken = entries(&log).split_off(1);
            // Woken in the same pass, which may run them in either order.
            woken.sort();
            assert_eq!(woken, ["0 woken", "2 woken"]);
            Ok(())
        });
    }
}

#[test]
fn condition_cancelled_waiter_leaves_the_others_in_order() {
    for seed in SEEDS {
        run_seeded(seed, async {
            let cond = Rc::new(Condition::new());
            let log = new_log();
            open_nursery(|n| {
                let (cond, log) = (cond.clone(), log.clone());
                async move {
                    let mut scopes = Vec::new();
                    for i in 0..3 {
                        let scope = CancelScope::new();
                        scopes.push(scope.clone());
                        let (cond, log) = (cond.clone(), log.clone());
                        n.start_soon(async move {
                            let mut g = cond.acquire().await?;
                            let r = scope.run(async { cond.wait(&mut g).await }).await;
                            assert!(g.is_held());
                            match r? {
                                Some(()) => push(&log, format!("{i} notified")),
                                None => push(&log, format!("{i} cancelled")),
                            }
                            Ok::<_, BoxError>(())
                        })?;
                        wait_all_tasks_blocked().await?;
                    }
                    assert_eq!(cond.statistics().tasks_waiting, 3);
                    scopes[1].cancel();
                    wait_all_tasks_blocked().await?;
                    // It got the free lock back, reported Cancelled, and
                    // released it on the way out.
                    assert_eq!(entries(&log), ["1 cancelled"]);
                    let s = cond.statistics();
                    assert_eq!((s.tasks_waiting, s.lock_statistics.locked), (2, false));
                    let _g = cond.acquire().await?;
                    assert_eq!(cond.notify_all(), Ok(2));
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            assert_eq!(entries(&log), ["1 cancelled", "0 notified", "2 notified"], "seed {seed}");
            let s = cond.statistics();
            assert_eq!((s.tasks_waiting, s.lock_statistics.locked, s.lock_statistics.tasks_waiting), (0, false, 0));
            Ok(())
        });
    }
}

#[test]
fn condition_waiter_cancelled_after_notify_requeues_for_the_lock() {
    // Notified (moved to the lock's line behind another waiter), then
    // cancelled: it leaves that line, queues again at the back, and still
    // returns holding the lock.
    for seed in SEEDS {
        run_seeded(seed, async {
            let cond = Rc::new(Condition::new());
            let log = new_log();
            let scope = CancelScope::new();
            open_nursery(|n| {
                let (cond, log, scope) = (cond.clone(), log.clone(), scope.clone());
                async move {
                    let (c, l, s) = (cond.clone(), log.clone(), scope.clone());
                    n.start_soon(async move {
                        let mut g = c.acquire().await?;
                        let r = s.run(async { c.wait(&mut g).await }).await?;
                        push(&l, format!("waiter {:?} held {}", r, g.is_held()));
                        Ok::<_, BoxError>(())
                    })?;
                    wait_all_tasks_blocked().await?;
                    let g = cond.acquire().await?;
                    // Another task queues for the lock first.
                    let (c, l) = (cond.clone(), log.clone());
                    n.start_soon(async move {
                        let _g = c.acquire().await?;
                        push(&l, "acquirer");
                        Ok::<_, BoxError>(())
                    })?;
                    wait_all_tasks_blocked().await?;
                    assert_eq!(cond.notify(1), Ok(1));
                    assert_eq!(cond.statistics().lock_statistics.tasks_waiting, 2);
                    scope.cancel();
                    wait_all_tasks_blocked().await?;
                    // Withdrawn and queued again: still two in line.
                    assert_eq!(cond.statistics().lock_statistics.tasks_waiting, 2);
                    drop(g);
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            assert_eq!(entries(&log), ["acquirer", "waiter None held true"], "seed {seed}");
            assert!(!cond.is_locked());
            Ok(())
        });
    }
}

// ------------------------------------------------ hand-over beats cancellation

/// The holder releases (handing over to the waiter) and cancels the
/// waiter's scope in the same step: the waiter gets the lock anyway.
fn hand_over_beats_cancel<L: LockLike>(make: impl Fn() -> L) {
    for seed in SEEDS {
        let lock = Rc::new(make());
        run_seeded(seed, async {
            let log = new_log();
            let scope = CancelScope::new();
            open_nursery(|n| {
                let (lock, log, scope) = (lock.clone(), log.clone(), scope.clone());
                async move {
                    let release = Rc::new(Event::new());
                    let (l, r, s) = (lock.clone(), release.clone(), scope.clone());
                    n.start_soon(async move {
                        l.with(r.wait()).await??;
                        // Same step as the release: nothing ran in between.
                        s.cancel();
                        Ok::<_, BoxError>(())
                    })?;
                    wait_all_tasks_blocked().await?;
                    let (l, lg, s) = (lock.clone(), log.clone(), scope.clone());
                    n.start_soon(async move {
                        let out = s.run(l.with(async { push(&lg, "waiter got it") })).await?;
                        push(&lg, format!("scope returned {}", if out.is_some() { "Some" } else { "None" }));
                        Ok::<_, BoxError>(())
                    })?;
                    wait_all_tasks_blocked().await?;
                    release.set();
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            assert_eq!(entries(&log), ["waiter got it", "scope returned Some"], "seed {seed}");
            assert!(scope.cancel_called());
            assert_eq!((lock.held(), lock.waiting()), (false, 0));
            Ok(())
        });
    }
}

#[test]
fn lock_hand_over_beats_a_later_cancel() {
    hand_over_beats_cancel(Lock::new);
}

#[test]
fn semaphore_hand_over_beats_a_later_cancel() {
    hand_over_beats_cancel(|| Semaphore::new(1));
}

#[test]
fn capacity_limiter_hand_over_beats_a_later_cancel() {
    hand_over_beats_cancel(|| CapacityLimiter::new(1));
}

// ------------------------------------------- dropped after a hand-over

/// Task T polls an acquisition once (it queues), then drops it after the
/// holder has handed it the lock but before polling it again; the lock
/// passes on to the waiter behind T. `check_handed` checks that T's
/// future holds it in between.
fn drop_after_hand_over<L: LockLike>(make: impl Fn() -> L, check_handed: impl Fn(&L, TaskId)) {
    for seed in SEEDS {
        let lock = Rc::new(make());
        let check_handed = &check_handed;
        run_seeded(seed, async {
            let log = new_log();
            open_nursery(|n| {
                let (lock, log) = (lock.clone(), log.clone());
                async move {
                    let release = Rc::new(Event::new());
                    spawn_holder(&n, &lock, &release).await?;
                    let go = Rc::new(Event::new());
                    let t_id = Rc::new(Cell::new(None));
                    let (l, g, lg, tid) = (lock.clone(), go.clone(), log.clone(), t_id.clone());
                    n.start_soon(async move {
                        tid.set(Some(current_task().id));
                        let mut fut = l.acquiring();
                        poll_once(fut.as_mut()).await;
                        g.wait().await?;
                        drop(fut);
                        push(&lg, "dropped");
                        Ok::<_, BoxError>(())
                    })?;
                    wait_all_tasks_blocked().await?;
                    let (l, lg) = (lock.clone(), log.clone());
                    n.start_soon(async move {
                        l.with(async { push(&lg, "waiter got it") }).await?;
                        Ok::<_, BoxError>(())
                    })?;
                    wait_all_tasks_blocked().await?;
                    assert_eq!(lock.waiting(), 2);
                    release.set();
                    wait_all_tasks_blocked().await?;
                    // Handed to T's future, which has not run since.
                    assert_eq!((lock.held(), lock.waiting()), (true, 1));
                    check_handed(&lock, t_id.get().expect("T ran"));
                    assert!(entries(&log).is_empty());
                    go.set();
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            assert_eq!(entries(&log), ["dropped", "waiter got it"], "seed {seed}");
            assert_eq!((lock.held(), lock.waiting()), (false, 0));
            Ok(())
        });
    }
}

#[test]
fn lock_acquire_dropped_after_hand_over_passes_the_lock_on() {
    drop_after_hand_over(Lock::new, |lock, t| assert_eq!(lock.statistics().owner, Some(t)));
}

#[test]
fn semaphore_acquire_dropped_after_hand_over_passes_the_unit_on() {
    drop_after_hand_over(|| Semaphore::new(1), |s, _| assert_eq!(s.value(), 0));
}

#[test]
fn capacity_limiter_acquire_dropped_after_hand_over_passes_the_token_on() {
    drop_after_hand_over(
        || CapacityLimiter::new(1),
        |c, t| assert_eq!(c.statistics().borrowers, vec![Borrower::task(t)]),
    );
}

#[test]
fn condition_acquire_dropped_after_hand_over_passes_the_lock_on() {
    drop_after_hand_over(Condition::new, |c, t| assert_eq!(c.statistics().lock_statistics.owner, Some(t)));
}

/// An acquisition that took the free lock at once and was dropped while
/// passing its schedule point (another task was runnable) gives it back.
fn drop_while_yielding<L: LockLike>(make: impl Fn() -> L) {
    run1(async {
        let lock = make();
        open_nursery(|n| {
            let lock = &lock;
            async move {
                // A runnable task, so the acquisition yields after taking.
                n.start_soon(async {})?;
                let mut fut = lock.acquiring();
                poll_once(fut.as_mut()).await;
                assert!(lock.held());
                drop(fut);
                assert!(!lock.held());
                Ok::<_, BoxError>(())
            }
        })
        .await?;
        assert_eq!((lock.held(), lock.waiting()), (false, 0));
        Ok(())
    });
}

#[test]
fn lock_acquire_dropped_while_yielding_releases() {
    drop_while_yielding(Lock::new);
}

#[test]
fn semaphore_acquire_dropped_while_yielding_releases() {
    drop_while_yielding(|| Semaphore::new(1));
}

#[test]
fn capacity_limiter_acquire_dropped_while_yielding_releases() {
    drop_while_yielding(|| CapacityLimiter::new(1));
}

#[test]
fn capacity_limiter_acquire_dropped_while_waiting_leaves_no_trace() {
    // Trio's test_CapacityLimiter_memleak_548, for a dropped future: its
    // pending entry goes with it, so the borrower may borrow again.
    run1(async {
        let c = CapacityLimiter::new(1);
        let b = Borrower::unique();
        let hold = c.acquire().await?;
        {
            let mut fut = Box::pin(c.acquire_on_behalf_of(b));
            poll_once(fut.as_mut()).await;
            assert_eq!(c.statistics().tasks_waiting, 1);
        }
        assert_eq!(c.statistics().tasks_waiting, 0);
        drop(hold);
        let t = c.acquire_on_behalf_of(b).await?;
        assert_eq!(c.statistics().borrowers, vec![b]);
        drop(t);
        Ok(())
    });
}

#[test]
fn condition_wait_dropped_after_hand_over_leaves_the_guard_holding_the_lock() {
    for seed in SEEDS {
        run_seeded(seed, async {
            let cond = Rc::new(Condition::new());
            let log = new_log();
            open_nursery(|n| {
                let (cond, log) = (cond.clone(), log.clone());
                async move {
                    let go = Rc::new(Event::new());
                    let (c, g, l) = (cond.clone(), go.clone(), log.clone());
                    n.start_soon(async move {
                        let me = current_task().id;
                        let mut guard = c.acquire().await?;
                        {
                            let mut wait = Box::pin(c.wait(&mut guard));
                            poll_once(wait.as_mut()).await;
                            g.wait().await?;
                            // Notified and handed the lock; never polled again.
                        }
                        push(
                            &l,
                            format!(
                                "held {} owner is me {}",
                                guard.is_held(),
                                c.statistics().lock_statistics.owner == Some(me)
                            ),
                        );
                        drop(guard);
                        Ok::<_, BoxError>(())
                    })?;
                    wait_all_tasks_blocked().await?;
                    {
                        let _g = cond.acquire().await?;
                        assert_eq!(cond.notify(1), Ok(1));
                    }
                    wait_all_tasks_blocked().await?;
                    assert!(cond.is_locked());
                    go.set();
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            assert_eq!(entries(&log), ["held true owner is me true"]);
            assert!(!cond.is_locked());
            Ok(())
        });
    }
}

#[test]
fn condition_wait_dropped_while_waiting_leaves_the_guard_not_holding() {
    run1(async {
        let cond = Condition::new();
        let mut guard = cond.acquire().await?;
        {
            let mut wait = Box::pin(cond.wait(&mut guard));
            poll_once(wait.as_mut()).await;
            assert_eq!(cond.statistics().tasks_waiting, 1);
        }
        assert_eq!(cond.statistics().tasks_waiting, 0);
        assert!(!guard.is_held());
        assert!(!cond.is_locked());
        // The stale guard releases nothing, even once someone else holds it.
        let other = cond.try_acquire()?;
        drop(guard);
        assert!(other.is_held());
        drop(other);
        assert!(!cond.is_locked());
        Ok(())
    });
}

// ------------------------------------------- every blocking call is a checkpoint

#[test]
fn every_blocking_call_in_a_cancelled_scope_reports_cancelled_and_takes_nothing() {
    run1(async {
        let lock = Lock::new();
        let sem = Semaphore::new(1);
        let limiter = CapacityLimiter::new(1);
        let cond = Condition::new();
        let event = Event::new();
        let lot = ParkingLot::new();
        let scope = CancelScope::new();
        scope.cancel();
        let results = scope
            .run(async {
                Ok::<_, Cancelled>((
                    lock.acquire().await.map(drop),
                    sem.acquire().await.map(drop),
                    limiter.acquire().await.map(drop),
                    limiter.acquire_on_behalf_of(Borrower::unique()).await.map(drop),
                    cond.acquire().await.map(drop),
                    event.wait().await,
                    lot.park().await,
                ))
            })
            .await?;
        assert_eq!(
            results,
            Some((
                Err(LockError::Cancelled),
                Err(Cancelled),
                Err(BorrowError::Cancelled),
                Err(BorrowError::Cancelled),
                Err(LockError::Cancelled),
                Err(Cancelled),
                Err(ParkError::Cancelled),
            ))
        );
        assert!(!lock.is_locked());
        assert_eq!(sem.value(), 1);
        assert_eq!(limiter.borrowed_tokens(), 0);
        assert!(!cond.is_locked());
        assert_eq!((event.statistics().tasks_waiting, lot.len()), (0, 0));

        // Contended: the same, and nobody is left queued.
        let _g = lock.acquire().await?;
        let _p = sem.acquire().await?;
        let _t = limiter.acquire().await?;
        let other = Borrower::unique();
        let scope = CancelScope::new();
        scope.cancel();
        let results = scope
            .run(async {
                Ok::<_, Cancelled>((sem.acquire().await.map(drop), limiter.acquire_on_behalf_of(other).await.map(drop)))
            })
            .await?;
        assert_eq!(results, Some((Err(Cancelled), Err(BorrowError::Cancelled))));
        assert_eq!((sem.statistics().tasks_waiting, limiter.statistics().tasks_waiting), (0, 0));
        assert_eq!(limiter.try_acquire_on_behalf_of(other).map(drop), Err(trioxide::sync::TryBorrowError::WouldBlock));

        // A condition wait cancelled on entry keeps the lock.
        let mut cg = cond.acquire().await?;
        let scope = CancelScope::new();
        scope.cancel();
        let r = scope.run(async { Ok::<_, Cancelled>(cond.wait(&mut cg).await) }).await?;
        assert_eq!(r, Some(Err(ConditionError::Cancelled)));
        assert!(cg.is_held());
        Ok(())
    });
}

/// One task loops uncontended acquisitions, another loops checkpoints; if
/// the acquisitions did not yield, the first would run all its rounds in
/// one step. As schedule points, they interleave one per pass.
fn uncontended_acquire_is_a_schedule_point<L: LockLike>(make: impl Fn() -> L) {
    for seed in SEEDS {
        let lock = Rc::new(make());
        run_seeded(seed, async {
            let log: Rc<RefCell<Vec<&'static str>>> = Rc::new(RefCell::new(Vec::new()));
            open_nursery(|n| {
                let (lock, l1, l2) = (lock.clone(), log.clone(), log.clone());
                async move {
                    n.start_soon(async move {
                        for _ in 0..4 {
                            lock.with(async { l1.borrow_mut().push("acquire") }).await?;
                        }
                        Ok::<_, BoxError>(())
                    })?;
                    n.start_soon(async move {
                        for _ in 0..4 {
                            checkpoint().await?;
                            l2.borrow_mut().push("other");
                        }
                        Ok::<_, BoxError>(())
                    })?;
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            let log = log.borrow().clone();
            assert_eq!(log.len(), 8);
            let pairs_ok = log.chunks(2).all(|p| p[0] != p[1]);
            assert!(pairs_ok, "seed {seed}: {log:?}");
            Ok(())
        });
    }
}

#[test]
fn lock_uncontended_acquire_is_a_schedule_point() {
    uncontended_acquire_is_a_schedule_point(Lock::new);
}

#[test]
fn semaphore_uncontended_acquire_is_a_schedule_point() {
    uncontended_acquire_is_a_schedule_point(|| Semaphore::new(1));
}

#[test]
fn capacity_limiter_uncontended_acquire_is_a_schedule_point() {
    uncontended_acquire_is_a_schedule_point(|| CapacityLimiter::new(1));
}

#[test]
fn condition_uncontended_acquire_is_a_schedule_point() {
    uncontended_acquire_is_a_schedule_point(Condition::new);
}

// ------------------------------------------- the uncontended path does not allocate

/// Counts allocations made on the current thread while counting is on
/// (tests run on several threads at once; only the counting one matters).
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the thread's locals may be gone while it exits.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded to `System` unchanged; we only count, in
// const-initialised thread-locals that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
async fn allocations_in<F: Future>(f: F) -> usize {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f.await;
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(|n| n.get())
}

#[test]
fn uncontended_acquire_and_release_do_not_allocate() {
    run1(async {
        let lock = Lock::new();
        let sem = Semaphore::new(1);
        let limiter = CapacityLimiter::new(1);
        let cond = Condition::new();
        let event = Event::new();
        event.set();
        let cycle = || async {
            drop(lock.acquire().await?);
            drop(lock.try_acquire()?);
            drop(sem.acquire().await?);
            drop(limiter.acquire().await?);
            drop(limiter.try_acquire()?);
            drop(cond.acquire().await?);
            event.wait().await?;
            Ok::<_, BoxError>(())
        };
        // Warm-up: the first acquisitions grow the runtime's breaker list
        // and the limiter's borrower map to their working size.
        cycle().await?;
        let n = allocations_in(async {
            for _ in 0..100 {
                cycle().await.expect("uncontended acquisitions succeed");
            }
        })
        .await;
        assert_eq!(n, 0);
        Ok(())
    });
}
