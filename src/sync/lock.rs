//! [`Lock`]: a fair mutual-exclusion lock owned by one task at a time
//! (Trio's `trio.Lock`), and its guard.
//!
//! **Hand-over (rule Y2).** Releasing a lock that has waiters does not make
//! it free: ownership goes straight to the oldest waiter, which becomes the
//! owner before it even runs. A task that releases and immediately tries to
//! re-acquire therefore queues behind everyone already waiting, and the
//! waiters acquire in arrival order.
//!
//! **Owner and breakers (rule Y3).** The lock remembers which task owns it.
//! Only that task may [`release`](Lock::release) it by hand, a task that
//! already owns it gets [`LockError::AlreadyHeld`] instead of deadlocking on
//! itself, and the owner is registered as the *breaker* of the lock's
//! parking lot: if the task ends while still holding the lock (it leaked the
//! guard), the lot is broken and every waiter, present and future, gets
//! [`LockError::Broken`] naming the dead owner instead of waiting forever.
//!
//! **Holding periods.** Each acquisition starts a new *holding period*
//! (a counter bumped on every acquire and release). A guard releases only
//! the period it was created for, so a guard whose lock was already
//! released by hand (after [`LockGuard::leak`], or by a `Condition` wait that
//! was dropped half-way) does nothing when it is dropped, instead of
//! releasing somebody else's ownership.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::kernel::budget::{after_io, AfterIo};
use crate::kernel::error::{BrokenResource, Cancellation, Cancelled, WouldBlock};
use crate::kernel::parking_lot::{Park, ParkError, ParkingLot};
use crate::kernel::task::TaskId;
use crate::kernel::Core;

/// A fair lock: at most one task owns it; waiters get it in arrival order.
///
/// Acquire it with [`acquire`](Lock::acquire) (a checkpoint) or
/// [`try_acquire`](Lock::try_acquire); either returns a [`LockGuard`] that
/// releases the lock when dropped. Unlike `std::sync::Mutex` it guards no
/// data: put the shared data next to it (in an `Rc<RefCell<_>>`) and hold
/// the guard while you use it across `await`s.
///
/// ```
/// use std::rc::Rc;
/// use trioxide::{run, open_nursery, checkpoint, BoxError};
/// use trioxide::sync::Lock;
///
/// run(open_nursery(|n| async move {
///     let lock = Rc::new(Lock::new());
///     for _ in 0..3 {
///         let lock = lock.clone();
///         n.start_soon(async move {
///             let _guard = lock.acquire().await?;
///             checkpoint().await?; // nobody else gets in meanwhile
///             Ok::<_, BoxError>(())
///         })?;
///     }
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
pub struct Lock {
    /// The owning task, `TaskId::NONE` when free.
    owner: Cell<TaskId>,
    /// The current holding period (see the module docs).
    period: Cell<u64>,
    /// Whether the owner is registered as the lot's breaker. Registering
    /// costs a push and a search on the run-wide breaker list, so it is done
    /// only once somebody waits; until then a dead owner is noticed by
    /// `check_owner` when the next task tries to acquire (rule Y3 either way).
    breaker: Cell<bool>,
    /// The run the owner belongs to (`Core::run_id`): task ids are only
    /// meaningful within one run.
    owner_run: Cell<u64>,
    pub(crate) lot: ParkingLot,
}

impl Default for Lock {
    fn default() -> Self {
        Lock::new()
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.statistics();
        f.debug_struct("Lock").field("owner", &s.owner).field("tasks_waiting", &s.tasks_waiting).finish()
    }
}

/// What [`Lock::statistics`] reports (Trio's `LockStatistics`).
///
/// ```
/// use trioxide::sync::{Lock, LockStatistics};
/// assert_eq!(Lock::new().statistics(), LockStatistics { locked: false, owner: None, tasks_waiting: 0 });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockStatistics {
    /// Whether some task owns the lock.
    pub locked: bool,
    /// The owning task, if any.
    pub owner: Option<TaskId>,
    /// How many tasks are blocked in [`Lock::acquire`] (a `Condition`'s
    /// notified waiters included).
    pub tasks_waiting: usize,
}

impl Lock {
    /// A free lock.
    ///
    /// ```
    /// let lock = trioxide::sync::Lock::new();
    /// assert!(!lock.is_locked());
    /// ```
    pub fn new() -> Lock {
        Lock {
            owner: Cell::new(TaskId::NONE),
            period: Cell::new(0),
            breaker: Cell::new(false),
            owner_run: Cell::new(0),
            lot: ParkingLot::new(),
        }
    }

    /// Acquires the lock for the current task, waiting behind the tasks
    /// already waiting. A checkpoint: it reports [`LockError::Cancelled`]
    /// if the task is cancelled before it owns the lock, and yields to
    /// other runnable tasks even when the lock was free.
    ///
    /// Errors: [`LockError::AlreadyHeld`] if the current task owns the lock
    /// already (the lock is not reentrant), [`LockError::Broken`] if a
    /// previous owner task ended holding it.
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::sync::{Lock, LockError};
    ///
    /// run(async {
    ///     let lock = Lock::new();
    ///     let guard = lock.acquire().await?;
    ///     assert!(lock.is_locked());
    ///     assert!(matches!(lock.acquire().await, Err(LockError::AlreadyHeld)));
    ///     drop(guard);
    ///     assert!(!lock.is_locked());
    ///     Ok::<_, LockError>(())
    /// }).unwrap();
    /// ```
    pub fn acquire(&self) -> LockAcquire<'_> {
        LockAcquire { lock: self, state: AcquireState::Start }
    }

    /// Acquires the lock if it is free and nobody waits for it, without
    /// blocking and without being a checkpoint (Trio's `acquire_nowait`).
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::sync::{Lock, TryLockError};
    ///
    /// run(async {
    ///     let lock = Lock::new();
    ///     let guard = lock.try_acquire().unwrap();
    ///     assert_eq!(lock.try_acquire().unwrap_err(), TryLockError::AlreadyHeld);
    ///     drop(guard);
    ///     assert!(lock.try_acquire().is_ok());
    /// });
    /// ```
    ///
    /// # Panics
    /// Outside [`run`](crate::run) (the lock records its owner task):
    /// "Lock::try_acquire must be called from inside trioxide::run", at
    /// the caller's line.
    #[inline]
    #[track_caller]
    pub fn try_acquire(&self) -> Result<LockGuard<'_>, TryLockError> {
        self.try_acquire_for("Lock::try_acquire")
    }

    /// [`try_acquire`](Lock::try_acquire), naming `op` if it panics.
    #[inline]
    #[track_caller]
    pub(crate) fn try_acquire_for(&self, op: &'static str) -> Result<LockGuard<'_>, TryLockError> {
        let me = Core::current_for(op).current_task();
        let owner = self.owner.get();
        if owner == me {
            Err(TryLockError::AlreadyHeld)
        } else if owner == TaskId::NONE {
            Ok(LockGuard { lock: self, period: self.take(me) })
        } else if let Some(dead) = self.check_owner() {
            Err(TryLockError::Broken { owner: dead })
        } else {
            Err(TryLockError::WouldBlock)
        }
    }

    /// Releases a lock the current task owns without a live guard: after
    /// [`LockGuard::leak`]. Hands it to the oldest waiter, if any.
    ///
    /// Errors with [`NotOwner`] if the current task does not own the lock
    /// (Trio raises `RuntimeError` for the same).
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::sync::{Lock, NotOwner};
    ///
    /// run(async {
    ///     let lock = Lock::new();
    ///     lock.try_acquire().unwrap().leak();
    ///     assert!(lock.is_locked());
    ///     lock.release()?;
    ///     assert!(!lock.is_locked());
    ///     assert_eq!(lock.release(), Err(NotOwner));
    ///     Ok::<_, NotOwner>(())
    /// }).unwrap();
    /// ```
    ///
    /// # Panics
    /// Outside [`run`](crate::run): "Lock::release must be called from
    /// inside trioxide::run", at the caller's line.
    #[track_caller]
    pub fn release(&self) -> Result<(), NotOwner> {
        let me = Core::current_for("Lock::release").current_task();
        if self.owner.get() != me || me == TaskId::NONE {
            return Err(NotOwner);
        }
        self.hand_over();
        Ok(())
    }

    /// Whether some task owns the lock.
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::sync::Lock;
    /// run(async {
    ///     let lock = Lock::new();
    ///     assert!(!lock.is_locked());
    ///     let _g = lock.try_acquire().unwrap();
    ///     assert!(lock.is_locked());
    /// });
    /// ```
    pub fn is_locked(&self) -> bool {
        self.owner.get() != TaskId::NONE
    }

    /// The owner and the number of waiters.
    ///
    /// ```
    /// use trioxide::{run, current_task};
    /// use trioxide::sync::Lock;
    ///
    /// run(async {
    ///     let lock = Lock::new();
    ///     let _g = lock.try_acquire().unwrap();
    ///     let s = lock.statistics();
    ///     assert!(s.locked);
    ///     assert_eq!(s.owner, Some(current_task().id));
    ///     assert_eq!(s.tasks_waiting, 0);
    /// });
    /// ```
    pub fn statistics(&self) -> LockStatistics {
        let owner = self.owner.get();
        LockStatistics {
            locked: owner != TaskId::NONE,
            owner: (owner != TaskId::NONE).then_some(owner),
            tasks_waiting: self.lot.len(),
        }
    }

    /// Makes `me` the owner of the free lock; returns the new period.
    #[inline]
    fn take(&self, me: TaskId) -> u64 {
        debug_assert!(self.lot.is_empty(), "a free lock has no waiters (release hands over)");
        self.owner.set(me);
        self.owner_run.set(Core::current().run_id());
        let period = self.period.get().wrapping_add(1);
        self.period.set(period);
        period
    }

    /// Breaks the lot if the owner task has ended; returns the dead owner.
    fn check_owner(&self) -> Option<TaskId> {
        if let Some(dead) = self.lot.first_breaker() {
            return Some(dead);
        }
        let owner = self.owner.get();
        let core = Core::current();
        // An owner from an earlier run (a lock kept across runs) is gone too.
        let alive = self.owner_run.get() == core.run_id() && core.task_alive(owner);
        if owner != TaskId::NONE && !self.breaker.get() && !alive {
            self.lot.break_lot(owner);
            return Some(owner);
        }
        None
    }

    /// Before a task waits: the owner must break the lot if it ends.
    pub(crate) fn ensure_breaker(&self) {
        if self.breaker.get() || self.check_owner().is_some() || self.owner.get() == TaskId::NONE {
            return;
        }
        // `check_owner` found the owner alive, so this cannot fail; if it
        // did, the owner could never release, so the lot breaks now.
        match self.lot.add_breaker(self.owner.get()) {
            Ok(()) => self.breaker.set(true),
            Err(_) => {
                self.lot.break_lot(self.owner.get());
            }
        }
    }

    /// The current owner, `TaskId::NONE` if free.
    pub(crate) fn owner(&self) -> TaskId {
        self.owner.get()
    }

    /// The current holding period.
    pub(crate) fn period(&self) -> u64 {
        self.period.get()
    }

    /// Ends the holding period `period` if it is still the current one.
    pub(crate) fn release_period(&self, period: u64) {
        if self.period.get() == period && self.owner.get() != TaskId::NONE {
            self.hand_over();
        }
    }

    /// Ends the current holding period: ownership goes to the oldest
    /// waiter (which is woken already owning it), or the lock becomes free.
    pub(crate) fn hand_over(&self) {
        if self.lot.is_broken() {
            // Broken for good (rule Y3). Reachable only if a guard outlived
            // its owner task (moved into another task's keeping): the lock
            // stays broken rather than becoming free for some and broken
            // for others.
            return;
        }
        let old = self.owner.get();
        // Outside a run (a guard dropped after `run` returned) there is no
        // breaker list to update.
        let in_run = Core::try_current().is_some();
        if in_run && self.breaker.get() {
            self.lot.remove_breaker(old);
        }
        self.breaker.set(false);
        self.period.set(self.period.get().wrapping_add(1));
        match self.lot.unpark_one() {
            Some(next) => {
                // The new period began with the bump above.
                self.owner.set(next);
                if in_run && !self.lot.is_empty() {
                    // `next` was parked, so it is alive; were it not, it
                    // could never release, and the lot breaks at once.
                    match self.lot.add_breaker(next) {
                        Ok(()) => self.breaker.set(true),
                        Err(_) => {
                            self.lot.break_lot(next);
                        }
                    }
                }
            }
            None => self.owner.set(TaskId::NONE),
        }
    }

    /// The task whose end broke the lock.
    pub(crate) fn broken(&self) -> TaskId {
        self.lot.first_breaker().unwrap_or(self.owner.get())
    }
}

/// Proof that the current task owns a [`Lock`]; dropping it releases the
/// lock, handing it to the oldest waiter.
///
/// ```
/// use trioxide::run;
/// use trioxide::sync::Lock;
///
/// run(async {
///     let lock = Lock::new();
///     {
///         let _guard = lock.acquire().await?;
///         assert!(lock.is_locked());
///     }
///     assert!(!lock.is_locked());
///     Ok::<_, trioxide::sync::LockError>(())
/// }).unwrap();
/// ```
#[must_use = "the lock is released when the guard is dropped: an unused guard releases it at once"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    period: u64,
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").field("held", &self.is_held()).finish()
    }
}

impl<'a> LockGuard<'a> {
    /// Keeps the lock held after the guard is gone; the owner task must
    /// then call [`Lock::release`]. If the task ends first, the lock is
    /// broken (rule Y3): its waiters get [`LockError::Broken`].
    ///
    /// Guards are the normal way because a forgotten release cannot happen
    /// with them, on errors, cancellation and panics alike; `leak` is for
    /// the rare lock whose release happens in another function.
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::sync::Lock;
    ///
    /// run(async {
    ///     let lock = Lock::new();
    ///     lock.try_acquire().unwrap().leak();
    ///     assert!(lock.is_locked());
    ///     lock.release().unwrap();
    /// });
    /// ```
    pub fn leak(self) {
        std::mem::forget(self);
    }

    /// The lock this guard holds.
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::sync::Lock;
    /// run(async {
    ///     let lock = Lock::new();
    ///     let g = lock.try_acquire().unwrap();
    ///     assert!(std::ptr::eq(g.lock(), &lock));
    /// });
    /// ```
    pub fn lock(&self) -> &'a Lock {
        self.lock
    }

    /// Whether this guard's holding period is still current (false only if
    /// the lock was released by hand while the guard lived).
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::sync::Lock;
    /// run(async {
    ///     let lock = Lock::new();
    ///     let g = lock.try_acquire().unwrap();
    ///     assert!(g.is_held());
    /// });
    /// ```
    pub fn is_held(&self) -> bool {
        self.lock.period.get() == self.period && self.lock.is_locked()
    }

    /// Turns the guard into its holding period, without releasing.
    pub(crate) fn into_period(self) -> u64 {
        let period = self.period;
        std::mem::forget(self);
        period
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.release_period(self.period);
    }
}

/// The future of [`Lock::acquire`].
///
/// ```
/// use trioxide::run;
/// use trioxide::sync::{Lock, LockAcquire, LockError};
/// run(async {
///     let lock = Lock::new();
///     let fut: LockAcquire<'_> = lock.acquire();
///     let _guard = fut.await?;
///     Ok::<_, LockError>(())
/// }).unwrap();
/// ```
#[must_use = "acquiring a lock does nothing unless awaited"]
pub struct LockAcquire<'a> {
    lock: &'a Lock,
    state: AcquireState<'a>,
}

enum AcquireState<'a> {
    Start,
    /// Took the free lock for `period`; passing the schedule point.
    Yielding(u64, AfterIo),
    /// Waiting in the lot.
    Parked(Park<'a>),
    Done,
}

impl fmt::Debug for LockAcquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            AcquireState::Start => "start",
            AcquireState::Yielding(..) => "acquired",
            AcquireState::Parked(_) => "waiting",
            AcquireState::Done => "done",
        };
        f.debug_struct("LockAcquire").field("state", &state).finish()
    }
}

impl<'a> Future for LockAcquire<'a> {
    type Output = Result<LockGuard<'a>, LockError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let lock = self.lock;
        loop {
            match &mut self.state {
                AcquireState::Start => {
                    let core = Core::current();
                    if core.is_cancelled() {
                        self.state = AcquireState::Done;
                        return Poll::Ready(Err(LockError::Cancelled));
                    }
                    let me = core.current_task();
                    let owner = lock.owner.get();
                    self.state = if owner == me {
                        self.state = AcquireState::Done;
                        return Poll::Ready(Err(LockError::AlreadyHeld));
                    } else if owner == TaskId::NONE {
                        AcquireState::Yielding(lock.take(me), after_io())
                    } else {
                        // Contended (or broken: the park reports it).
                        lock.ensure_breaker();
                        AcquireState::Parked(lock.lot.park())
                    };
                }
                AcquireState::Yielding(period, after) => {
                    let period = *period;
                    if Pin::new(after).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.state = AcquireState::Done;
                    return Poll::Ready(Ok(LockGuard { lock, period }));
                }
                AcquireState::Parked(park) => {
                    let res = match Pin::new(park).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(res) => res,
                    };
                    self.state = AcquireState::Done;
                    return Poll::Ready(match res {
                        // The releasing task made us the owner (hand-over).
                        Ok(()) => Ok(LockGuard { lock, period: lock.period.get() }),
                        Err(ParkError::Cancelled) => Err(LockError::Cancelled),
                        Err(ParkError::Broken(_)) => Err(LockError::Broken { owner: lock.broken() }),
                    });
                }
                AcquireState::Done => panic!("LockAcquire polled after completion"),
            }
        }
    }
}

impl Drop for LockAcquire<'_> {
    fn drop(&mut self) {
        match &self.state {
            // Took the lock but never reported it: give it back.
            AcquireState::Yielding(period, _) => self.lock.release_period(*period),
            // Handed the lock, dropped before the next poll: pass it on.
            AcquireState::Parked(park) if park.is_unparked() => self.lock.hand_over(),
            _ => {}
        }
    }
}

/// Why [`Lock::acquire`] failed.
///
/// ```
/// use trioxide::is_cancelled_error;
/// use trioxide::sync::LockError;
/// assert!(is_cancelled_error(&LockError::Cancelled));
/// assert!(!is_cancelled_error(&LockError::AlreadyHeld));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockError {
    /// The task was cancelled before it owned the lock.
    Cancelled,
    /// The current task owns the lock already (locks are not reentrant;
    /// Trio raises `RuntimeError`).
    AlreadyHeld,
    /// A previous owner task ended while holding the lock (rule Y3); the
    /// lock can never be acquired again.
    Broken {
        /// The task that ended holding the lock.
        owner: TaskId,
    },
}

/// The `BrokenResource` behind [`LockError::Broken`] and
/// [`TryLockError::Broken`], as their error source.
static LOCK_BROKEN: BrokenResource = BrokenResource { reason: "a lock's owner task ended without releasing it" };

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Cancelled => f.write_str("lock acquisition cancelled"),
            LockError::AlreadyHeld => f.write_str("attempt to re-acquire a lock the current task already holds"),
            LockError::Broken { owner } => {
                write!(f, "broken lock: its owner task {owner:?} ended without releasing it")
            }
        }
    }
}

impl std::error::Error for LockError {
    /// `Cancelled` for the cancelled case (so a cancel scope catches it),
    /// `BrokenResource` for the broken case.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::Cancelled => Some(&Cancelled),
            LockError::AlreadyHeld => None,
            LockError::Broken { .. } => Some(&LOCK_BROKEN),
        }
    }
}

impl From<Cancelled> for LockError {
    fn from(_: Cancelled) -> Self {
        LockError::Cancelled
    }
}

impl Cancellation for LockError {
    fn split_cancelled(self) -> (bool, Option<Self>) {
        match self {
            LockError::Cancelled => (true, None),
            other => (false, Some(other)),
        }
    }
}

/// Why [`Lock::try_acquire`] failed.
///
/// ```
/// use trioxide::sync::TryLockError;
/// assert_eq!(TryLockError::WouldBlock.to_string(), "the lock is held by another task");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryLockError {
    /// Another task owns the lock.
    WouldBlock,
    /// The current task owns the lock already.
    AlreadyHeld,
    /// A previous owner task ended while holding the lock (rule Y3).
    Broken {
        /// The task that ended holding the lock.
        owner: TaskId,
    },
}

impl fmt::Display for TryLockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock => f.write_str("the lock is held by another task"),
            TryLockError::AlreadyHeld => LockError::AlreadyHeld.fmt(f),
            TryLockError::Broken { owner } => LockError::Broken { owner: *owner }.fmt(f),
        }
    }
}

impl std::error::Error for TryLockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TryLockError::WouldBlock => Some(&WouldBlock),
            TryLockError::AlreadyHeld => None,
            TryLockError::Broken { .. } => Some(&LOCK_BROKEN),
        }
    }
}

/// [`Lock::release`] (or a `Condition`'s wait or notify) by a task that
/// does not own the lock.
///
/// ```
/// use trioxide::run;
/// use trioxide::sync::{Lock, NotOwner};
/// run(async { assert_eq!(Lock::new().release(), Err(NotOwner)) });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NotOwner;

impl fmt::Display for NotOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the current task does not own this lock")
    }
}

impl std::error::Error for NotOwner {}
