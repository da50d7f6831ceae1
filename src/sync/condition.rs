//! [`Condition`]: a condition variable over its own [`Lock`] (Trio's
//! `trio.Condition`).
//!
//! **How a notified task gets the lock.** A waiter releases the lock and
//! parks on the condition's own lot. [`Condition::notify`] does not wake
//! it: it *moves* it ([`ParkingLot::repark`]) to the back of the lock's
//! lot, where it waits like any `acquire`. When the notifying task releases
//! the lock, the hand-over of rule Y2 gives the lock to the oldest waiter
//! there, and a notified task wakes up already owning it. No thundering
//! herd: `notify_all` with a hundred waiters wakes one task per release.
//!
//! **Cancellation.** A cancelled wait re-acquires the lock (shielded: a
//! cancelled task still gets in line and waits its turn) before it reports
//! `Cancelled`, so the caller always holds the lock when `wait` returns,
//! as Trio does; the guard the caller drops afterwards then has something
//! to release.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::kernel::cancel::{CancelScope, Scoped};
use crate::kernel::error::{BrokenResource, Cancellation, Cancelled};
use crate::kernel::parking_lot::{Park, ParkError, ParkingLot};
use crate::kernel::task::TaskId;
use crate::kernel::Core;
use crate::sync::lock::{Lock, LockAcquire, LockError, LockStatistics, NotOwner, TryLockError};

/// A condition variable: tasks holding its lock [`wait`](Condition::wait)
/// until another task holding the lock [`notify`](Condition::notify)s them.
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use trioxide::{run, open_nursery, BoxError};
/// use trioxide::sync::Condition;
///
/// run(open_nursery(|n| async move {
///     let cond = Rc::new(Condition::new());
///     let ready = Rc::new(Cell::new(false));
///     let (c2, r2) = (cond.clone(), ready.clone());
///     n.start_soon(async move {
///         let mut guard = c2.acquire().await?;
///         while !r2.get() {
///             c2.wait(&mut guard).await?; // returns holding the lock
///         }
///         Ok::<_, BoxError>(())
///     })?;
///     let _guard = cond.acquire().await?;
///     ready.set(true);
///     cond.notify_all()?;
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
pub struct Condition {
    lock: Lock,
    lot: ParkingLot,
}

impl Default for Condition {
    fn default() -> Self {
        Condition::new()
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.statistics();
        f.debug_struct("Condition").field("tasks_waiting", &s.tasks_waiting).field("lock", &s.lock_statistics).finish()
    }
}

/// What [`Condition::statistics`] reports (Trio's `ConditionStatistics`).
///
/// ```
/// let s = trioxide::sync::Condition::new().statistics();
/// assert_eq!(s.tasks_waiting, 0);
/// assert!(!s.lock_statistics.locked);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConditionStatistics {
    /// Tasks blocked in [`Condition::wait`] and not notified yet.
    pub tasks_waiting: usize,
    /// The lock's statistics; its `tasks_waiting` counts notified tasks
    /// waiting for the lock.
    pub lock_statistics: LockStatistics,
}

impl Condition {
    /// A condition with a new lock, free.
    ///
    /// ```
    /// assert!(!trioxide::sync::Condition::new().is_locked());
    /// ```
    pub fn new() -> Condition {
        Condition { lock: Lock::new(), lot: ParkingLot::new() }
    }

    /// Acquires the lock, as [`Lock::acquire`] (a checkpoint).
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::sync::Condition;
    /// run(async {
    ///     let c = Condition::new();
    ///     let guard = c.acquire().await?;
    ///     assert!(c.is_locked());
    ///     drop(guard);
    ///     assert!(!c.is_locked());
    ///     Ok::<_, trioxide::sync::LockError>(())
    /// }).unwrap();
    /// ```
    pub fn acquire(&self) -> ConditionAcquire<'_> {
        ConditionAcquire { cond: self, inner: self.lock.acquire() }
    }

    /// Acquires the lock if it is free, as [`Lock::try_acquire`].
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::sync::{Condition, TryLockError};
    /// run(async {
    ///     let c = Condition::new();
    ///     let g = c.try_acquire().unwrap();
    ///     assert_eq!(c.try_acquire().unwrap_err(), TryLockError::AlreadyHeld);
    ///     drop(g);
    /// });
    /// ```
    ///
    /// # Panics
    /// Outside [`run`](crate::run): "Condition::try_acquire must be called
    /// from inside trioxide::run", at the caller's line.
    #[track_caller]
    pub fn try_acquire(&self) -> Result<ConditionGuard<'_>, TryLockError> {
        let guard = self.lock.try_acquire_for("Condition::try_acquire")?;
        Ok(ConditionGuard { cond: self, period: guard.into_period() })
    }

    /// Whether some task holds the lock.
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::sync::Condition;
    /// run(async {
    ///     let c = Condition::new();
    ///     assert!(!c.is_locked());
    ///     let _g = c.try_acquire().unwrap();
    ///     assert!(c.is_locked());
    /// });
    /// ```
    pub fn is_locked(&self) -> bool {
        self.lock.is_locked()
    }

    /// Releases the lock, waits to be notified, and re-acquires the lock
    /// before returning: when it returns, `guard` holds the lock again, in
    /// every case but [`ConditionError::NotOwner`] and
    /// [`ConditionError::Broken`].
    ///
    /// A checkpoint. If the task is cancelled on entry, it returns
    /// `Cancelled` at once, still holding the lock. If it is cancelled
    /// while waiting, it gets back in line for the lock (shielded) and
    /// reports `Cancelled` once it holds it (Trio does the same, so that
    /// the code releasing the lock afterwards still works). A waiter
    /// notified before the cancel arrived returns `Ok`.
    ///
    /// Errors with [`ConditionError::NotOwner`] if `guard` is not a current
    /// guard of this condition's lock held by the current task.
    ///
    /// If this future is dropped before it completes, `guard` holds the
    /// lock only if the lock was already handed back to it; see
    /// [`ConditionGuard::is_held`].
    ///
    /// ```
    /// use trioxide::{run, CancelScope};
    /// use trioxide::sync::Condition;
    ///
    /// run(async {
    ///     let c = Condition::new();
    ///     let mut guard = c.acquire().await.unwrap();
    ///     let scope = CancelScope::new();
    ///     scope.cancel();
    ///     let out = scope.run(c.wait(&mut guard)).await;
    ///     assert_eq!(out, Ok(None)); // the scope caught the Cancelled
    ///     assert!(guard.is_held());
    /// });
    /// ```
    pub fn wait<'a, 'g>(&'a self, guard: &'g mut ConditionGuard<'a>) -> ConditionWait<'a, 'g> {
        ConditionWait { cond: self, guard, state: WaitState::Start }
    }

    /// Moves up to `n` waiters, oldest first, into the line for the lock;
    /// each wakes up once it is handed the lock. Returns how many were
    /// moved. Only the task holding the lock may notify ([`NotOwner`]
    /// otherwise).
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::sync::{Condition, NotOwner};
    /// run(async {
    ///     let c = Condition::new();
    ///     assert_eq!(c.notify(1), Err(NotOwner));
    ///     let _g = c.try_acquire().unwrap();
    ///     assert_eq!(c.notify(1), Ok(0)); // nobody waits
    /// });
    /// ```
    ///
    /// # Panics
    /// Outside [`run`](crate::run): "Condition::notify must be called from
    /// inside trioxide::run", at the caller's line.
    #[track_caller]
    pub fn notify(&self, n: usize) -> Result<usize, NotOwner> {
        self.notify_for(n, "Condition::notify")
    }

    #[track_caller]
    fn notify_for(&self, n: usize, op: &'static str) -> Result<usize, NotOwner> {
        self.check_owner(op)?;
        // The moved waiters now wait on the lock: its owner must break it
        // if it ends (rule Y3).
        self.lock.ensure_breaker();
        Ok(self.lot.repark(&self.lock.lot, n))
    }

    /// [`notify`](Condition::notify)s every waiter.
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::sync::{Condition, NotOwner};
    /// run(async {
    ///     let c = Condition::new();
    ///     assert_eq!(c.notify_all(), Err(NotOwner));
    ///     let _g = c.try_acquire().unwrap();
    ///     assert_eq!(c.notify_all(), Ok(0));
    /// });
    /// ```
    ///
    /// # Panics
    /// Outside [`run`](crate::run): "Condition::notify_all must be called
    /// from inside trioxide::run", at the caller's line.
    #[track_caller]
    pub fn notify_all(&self) -> Result<usize, NotOwner> {
        self.notify_for(usize::MAX, "Condition::notify_all")
    }

    /// Waiters, and the lock's statistics.
    ///
    /// ```
    /// let s = trioxide::sync::Condition::new().statistics();
    /// assert_eq!((s.tasks_waiting, s.lock_statistics.tasks_waiting), (0, 0));
    /// ```
    pub fn statistics(&self) -> ConditionStatistics {
        ConditionStatistics { tasks_waiting: self.lot.len(), lock_statistics: self.lock.statistics() }
    }

    #[track_caller]
    fn check_owner(&self, op: &'static str) -> Result<(), NotOwner> {
        let me = Core::current_for(op).current_task();
        if me == TaskId::NONE || self.lock.owner() != me {
            return Err(NotOwner);
        }
        Ok(())
    }
}

/// Proof that the current task holds a [`Condition`]'s lock; pass it to
/// [`Condition::wait`]. Dropping it releases the lock.
///
/// ```
/// use trioxide::run;
/// use trioxide::sync::Condition;
/// run(async {
///     let c = Condition::new();
///     let g = c.try_acquire().unwrap();
///     assert!(g.is_held());
///     drop(g);
///     assert!(!c.is_locked());
/// });
/// ```
#[must_use = "the lock is released when the guard is dropped: an unused guard releases it at once"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    /// The lock's holding period this guard owns (see `lock.rs`).
    period: u64,
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard").field("held", &self.is_held()).finish()
    }
}

impl ConditionGuard<'_> {
    /// Whether this guard holds the lock. Always true, except after a
    /// [`Condition::wait`] that failed with `Broken` or whose future was
    /// dropped before the lock came back.
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::sync::Condition;
    /// run(async {
    ///     let c = Condition::new();
    ///     let g = c.try_acquire().unwrap();
    ///     assert!(g.is_held());
    /// });
    /// ```
    pub fn is_held(&self) -> bool {
        self.cond.lock.period() == self.period && self.cond.lock.is_locked()
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        self.cond.lock.release_period(self.period);
    }
}

/// The future of [`Condition::acquire`].
///
/// ```
/// use trioxide::run;
/// use trioxide::sync::{Condition, ConditionAcquire, LockError};
/// run(async {
///     let c = Condition::new();
///     let fut: ConditionAcquire<'_> = c.acquire();
///     let _guard = fut.await?;
///     Ok::<_, LockError>(())
/// }).unwrap();
/// ```
#[must_use = "acquiring a lock does nothing unless awaited"]
pub struct ConditionAcquire<'a> {
    cond: &'a Condition,
    inner: LockAcquire<'a>,
}

impl fmt::Debug for ConditionAcquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ConditionAcquire").field(&self.inner).finish()
    }
}

impl<'a> Future for ConditionAcquire<'a> {
    type Output = Result<ConditionGuard<'a>, LockError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let cond = self.cond;
        let guard = std::task::ready!(Pin::new(&mut self.inner).poll(cx))?;
        Poll::Ready(Ok(ConditionGuard { cond, period: guard.into_period() }))
    }
}

/// The future of [`Condition::wait`].
///
/// ```
/// use trioxide::{run, BoxError, CancelScope};
/// use trioxide::sync::{Condition, ConditionWait};
/// run(async {
///     let c = Condition::new();
///     let mut guard = c.acquire().await?;
///     let scope = CancelScope::new();
///     scope.cancel();
///     let wait: ConditionWait<'_, '_> = c.wait(&mut guard);
///     assert_eq!(scope.run(wait).await, Ok(None));
///     assert!(guard.is_held());
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
#[must_use = "waiting on a condition does nothing unless awaited"]
pub struct ConditionWait<'a, 'g> {
    cond: &'a Condition,
    guard: &'g mut ConditionGuard<'a>,
    state: WaitState<'a>,
}

enum WaitState<'a> {
    Start,
    /// Released the lock; parked on the condition's lot, or (once
    /// notified) on the lock's.
    Parked(Park<'a>),
    /// Cancelled while waiting: getting the lock back, shielded.
    Reacquire(Scoped<LockAcquire<'a>>),
    Done,
}

impl fmt::Debug for ConditionWait<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            WaitState::Start => "start",
            WaitState::Parked(_) => "waiting",
            WaitState::Reacquire(_) => "re-acquiring after cancel",
            WaitState::Done => "done",
        };
        f.debug_struct("ConditionWait").field("state", &state).finish()
    }
}

impl Future for ConditionWait<'_, '_> {
    type Output = Result<(), ConditionError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let lock = &this.cond.lock;
        loop {
            match &mut this.state {
                WaitState::Start => {
                    let core = Core::current();
                    let me = core.current_task();
                    if !std::ptr::eq(this.guard.cond, this.cond) || !this.guard.is_held() || lock.owner() != me {
                        this.state = WaitState::Done;
                        return Poll::Ready(Err(ConditionError::NotOwner));
                    }
                    if core.is_cancelled() {
                        // Nothing happened: the lock is still ours.
                        this.state = WaitState::Done;
                        return Poll::Ready(Err(ConditionError::Cancelled));
                    }
                    lock.hand_over();
                    this.state = WaitState::Parked(this.cond.lot.park());
                }
                WaitState::Parked(park) => {
                    let res = std::task::ready!(Pin::new(park).poll(cx));
                    match res {
                        Ok(()) => {
                            // Notified, then handed the lock by its release
                            // (only the lock's lot ever unparks us).
                            debug_assert_eq!(lock.owner(), Core::current().current_task());
                            this.guard.period = lock.period();
                            this.state = WaitState::Done;
                            return Poll::Ready(Ok(()));
                        }
                        Err(ParkError::Broken(_)) => {
                            this.state = WaitState::Done;
                            return Poll::Ready(Err(ConditionError::Broken { owner: lock.broken() }));
                        }
                        Err(ParkError::Cancelled) => {
                            this.state = WaitState::Reacquire(CancelScope::shielded().run(lock.acquire()));
                        }
                    }
                }
                WaitState::Reacquire(acquire) => {
                    let res = std::task::ready!(Pin::new(acquire).poll(cx));
                    this.state = WaitState::Done;
                    return Poll::Ready(match res {
                        Ok(Some(guard)) => {
                            this.guard.period = guard.into_period();
                            Err(ConditionError::Cancelled)
                        }
                        Err(LockError::Broken { owner }) => Err(ConditionError::Broken { owner }),
                        // Not reachable: the shielded scope is ours alone
                        // and never cancelled, and we released the lock.
                        Ok(None) | Err(LockError::Cancelled | LockError::AlreadyHeld) => Err(ConditionError::Cancelled),
                    });
                }
                WaitState::Done => panic!("ConditionWait polled after completion"),
            }
        }
    }
}

impl Drop for ConditionWait<'_, '_> {
    fn drop(&mut self) {
        if let WaitState::Parked(park) = &self.state {
            if park.is_unparked() {
                // Handed the lock, dropped before the next poll: the guard
                // holds it again, as if the wait had returned.
                self.guard.period = self.cond.lock.period();
            }
        }
        // In `Reacquire`, the inner acquire's own drop passes on a lock
        // handed to it; the guard then does not hold the lock.
    }
}

/// Why [`Condition::wait`] failed.
///
/// ```
/// use trioxide::is_cancelled_error;
/// use trioxide::sync::ConditionError;
/// assert!(is_cancelled_error(&ConditionError::Cancelled));
/// assert_eq!(ConditionError::NotOwner.to_string(), "must hold the condition's lock to wait");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionError {
    /// The task was cancelled; the lock is held again (see
    /// [`Condition::wait`]).
    Cancelled,
    /// The guard does not hold this condition's lock for the current task
    /// (Trio raises `RuntimeError`).
    NotOwner,
    /// A task ended holding the lock while this one waited for it back
    /// (rule Y3); the lock is not held.
    Broken {
        /// The task that ended holding the lock.
        owner: TaskId,
    },
}

static CONDITION_BROKEN: BrokenResource =
    BrokenResource { reason: "a condition's lock was broken: its owner task ended without releasing it" };

impl fmt::Display for ConditionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConditionError::Cancelled => f.write_str("condition wait cancelled (the lock is held again)"),
            ConditionError::NotOwner => f.write_str("must hold the condition's lock to wait"),
            ConditionError::Broken { owner } => {
                write!(f, "broken lock: its owner task {owner:?} ended without releasing it")
            }
        }
    }
}

impl std::error::Error for ConditionError {
    /// `Cancelled` for the cancelled case, so a cancel scope catches it.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConditionError::Cancelled => Some(&Cancelled),
            ConditionError::NotOwner => None,
            ConditionError::Broken { .. } => Some(&CONDITION_BROKEN),
        }
    }
}

impl From<Cancelled> for ConditionError {
    fn from(_: Cancelled) -> Self {
        ConditionError::Cancelled
    }
}

impl Cancellation for ConditionError {
    fn split_cancelled(self) -> (bool, Option<Self>) {
        match self {
            ConditionError::Cancelled => (true, None),
            other => (false, Some(other)),
        }
    }
}
