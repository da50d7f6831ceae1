//! [`CapacityLimiter`]: a sack of tokens, at most one per borrower, that
//! limits how many things happen at once (Trio's `trio.CapacityLimiter`;
//! `to_thread` uses one to bound its worker threads).
//!
//! A *borrower* is whoever holds a token: by default the current task, or
//! any [`Borrower`] id (`to_thread` borrows on behalf of the thread it
//! starts). One borrower holding two tokens is reported as an error
//! ([`BorrowError::AlreadyBorrowing`], rule Y4): it usually means a task
//! re-entered code that already took its token, and would otherwise
//! deadlock once the sack runs dry.
//!
//! **Fairness (rule Y4).** A token coming back while tasks wait goes
//! straight to the oldest waiter, registered under that waiter's borrower at
//! once, so a third task's `try_acquire` right after fails with
//! `WouldBlock`. To know which borrower a woken task stands for, the
//! limiter keeps the waiting `(task, borrower)` pairs in arrival order next
//! to its parking lot (Trio's `_pending_borrowers`).

use std::cell::{Cell, RefCell};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use crate::kernel::budget::{after_io, AfterIo};
use crate::kernel::error::{Cancellation, Cancelled, WouldBlock};
use crate::kernel::parking_lot::{Park, ParkError, ParkingLot};
use crate::kernel::task::TaskId;
use crate::kernel::Core;

/// The borrower map's hasher: a multiply-rotate mix (the one rustc uses
/// for its own id maps). Borrowers are ids made by the runtime, not input
/// an attacker picks, so SipHash's flooding resistance buys nothing here,
/// and it cost about half of an uncontended acquire/release.
type IdHash = BuildHasherDefault<IdHasher>;

#[derive(Default)]
struct IdHasher(u64);

/// An odd constant with well-spread bits (from FxHash).
const ID_HASH_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(ID_HASH_SEED);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A loan serial number never issued (`lend` starts at 1).
const NO_LOAN: u64 = 0;

/// Who holds a [`CapacityLimiter`] token: a task, or an opaque unique id.
///
/// ```
/// use trioxide::sync::Borrower;
/// let a = Borrower::unique();
/// let b = Borrower::unique();
/// assert_ne!(a, b);
/// assert_eq!(a, a);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Borrower(Repr);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Repr {
    Task(TaskId),
    Unique(u64),
}

/// Source of [`Borrower::unique`] ids. Global rather than per run so that
/// an id can never be mistaken for one made in another run.
static NEXT_UNIQUE: AtomicU64 = AtomicU64::new(0);

impl Borrower {
    /// The current task as a borrower.
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::sync::Borrower;
    /// run(async { assert_eq!(Borrower::current_task(), Borrower::current_task()) });
    /// ```
    ///
    /// # Panics
    /// Outside [`run`](crate::run): "Borrower::current_task must be called
    /// from inside trioxide::run", at the caller's line.
    #[track_caller]
    pub fn current_task() -> Borrower {
        Borrower::current_for("Borrower::current_task")
    }

    /// [`current_task`](Borrower::current_task), naming `op` if it panics.
    #[track_caller]
    fn current_for(op: &'static str) -> Borrower {
        Borrower::task(Core::current_for(op).current_task())
    }

    /// The task `id` as a borrower.
    ///
    /// ```
    /// use trioxide::{run, current_task};
    /// use trioxide::sync::Borrower;
    /// run(async { assert_eq!(Borrower::task(current_task().id), Borrower::current_task()) });
    /// ```
    pub fn task(id: TaskId) -> Borrower {
        Borrower(Repr::Task(id))
    }

    /// A new borrower, different from every other (a counter).
    ///
    /// ```
    /// use trioxide::sync::Borrower;
    /// let b = Borrower::unique();
    /// assert_ne!(b, Borrower::unique());
    /// ```
    pub fn unique() -> Borrower {
        // Relaxed: only uniqueness matters, not ordering with other memory.
        Borrower(Repr::Unique(NEXT_UNIQUE.fetch_add(1, Ordering::Relaxed)))
    }
}

/// At most `total_tokens` borrowers at once, each holding one token; fair
/// (FIFO) between waiters.
///
/// Share it with an `Rc` between tasks. Tokens are guards
/// ([`CapacityToken`]) that give the token back when dropped.
///
/// ```
/// use std::rc::Rc;
/// use trioxide::{run, open_nursery, checkpoint, BoxError};
/// use trioxide::sync::CapacityLimiter;
///
/// run(open_nursery(|n| async move {
///     let limiter = Rc::new(CapacityLimiter::new(2));
///     for _ in 0..5 {
///         let limiter = limiter.clone();
///         n.start_soon(async move {
///             let _token = limiter.acquire().await?;
///             assert!(limiter.borrowed_tokens() <= 2);
///             checkpoint().await?;
///             Ok::<_, BoxError>(())
///         })?;
///     }
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
pub struct CapacityLimiter {
    total: Cell<usize>,
    /// Each borrower holding a token, with the serial number of its loan
    /// (so a stale token guard cannot give back a newer loan).
    borrowers: RefCell<HashMap<Borrower, u64, IdHash>>,
    next_serial: Cell<u64>,
    /// The parked acquisitions, in arrival order: (task, borrower).
    pending: RefCell<Vec<(TaskId, Borrower)>>,
    lot: ParkingLot,
}

impl fmt::Debug for CapacityLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CapacityLimiter")
            .field("borrowed_tokens", &self.borrowed_tokens())
            .field("total_tokens", &self.total.get())
            .field("tasks_waiting", &self.lot.len())
            .finish()
    }
}

/// What [`CapacityLimiter::statistics`] reports (Trio's
/// `CapacityLimiterStatistics`).
///
/// ```
/// use trioxide::sync::CapacityLimiter;
/// let s = CapacityLimiter::new(4).statistics();
/// assert_eq!((s.borrowed_tokens, s.total_tokens, s.tasks_waiting), (0, 4, 0));
/// assert!(s.borrowers.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityLimiterStatistics {
    /// Tokens held now (may exceed `total_tokens` just after it shrank).
    pub borrowed_tokens: usize,
    /// The sack's size.
    pub total_tokens: usize,
    /// Who holds the tokens, sorted.
    pub borrowers: Vec<Borrower>,
    /// How many tasks wait for a token.
    pub tasks_waiting: usize,
}

impl CapacityLimiter {
    /// A sack of `total` tokens. `usize::MAX` means no limit in practice.
    /// `0` is allowed (as in Trio since PR #3321): borrowing is paused, every
    /// acquisition waits until [`set_total_tokens`](CapacityLimiter::set_total_tokens)
    /// grows the sack.
    ///
    /// ```
    /// let l = trioxide::sync::CapacityLimiter::new(40);
    /// assert_eq!(l.available_tokens(), 40);
    /// let paused = trioxide::sync::CapacityLimiter::new(0);
    /// assert_eq!(paused.available_tokens(), 0);
    /// ```
    pub fn new(total: usize) -> CapacityLimiter {
        CapacityLimiter {
            total: Cell::new(total),
            borrowers: RefCell::new(HashMap::default()),
            next_serial: Cell::new(0),
            pending: RefCell::new(Vec::new()),
            lot: ParkingLot::new(),
        }
    }

    /// Borrows a token for the current task, waiting while none is free.
    /// See [`acquire_on_behalf_of`](CapacityLimiter::acquire_on_behalf_of).
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::sync::{BorrowError, CapacityLimiter};
    ///
    /// run(async {
    ///     let l = CapacityLimiter::new(2);
    ///     let token = l.acquire().await?;
    ///     assert_eq!(l.borrowed_tokens(), 1);
    ///     // One token per borrower.
    ///     assert!(matches!(l.acquire().await, Err(BorrowError::AlreadyBorrowing)));
    ///     drop(token);
    ///     assert_eq!(l.borrowed_tokens(), 0);
    ///     Ok::<_, BorrowError>(())
    /// }).unwrap();
    /// ```
    pub fn acquire(&self) -> CapacityAcquire<'_> {
        CapacityAcquire { limiter: self, borrower: None, state: AcquireState::Start }
    }

    /// Borrows a token for `borrower`, waiting (in arrival order) while
    /// none is free. A checkpoint: [`BorrowError::Cancelled`] if the task is
    /// cancelled before a token is handed to it (then nothing was taken),
    /// and a schedule point when it takes a token at once.
    ///
    /// Errors with [`BorrowError::AlreadyBorrowing`] if `borrower` holds a
    /// token of this limiter, or is already waiting for one.
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::sync::{Borrower, CapacityLimiter};
    ///
    /// run(async {
    ///     let l = CapacityLimiter::new(1);
    ///     let thread = Borrower::unique();
    ///     l.acquire_on_behalf_of(thread).await?.forget();
    ///     assert_eq!(l.statistics().borrowers, vec![thread]);
    ///     l.release_on_behalf_of(thread).unwrap();
    ///     Ok::<_, trioxide::sync::BorrowError>(())
    /// }).unwrap();
    /// ```
    pub fn acquire_on_behalf_of(&self, borrower: Borrower) -> CapacityAcquire<'_> {
        CapacityAcquire { limiter: self, borrower: Some(borrower), state: AcquireState::Start }
    }

    /// Borrows a token for the current task if one is free and nobody
    /// waits, without blocking and without a checkpoint.
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::sync::{CapacityLimiter, TryBorrowError};
    /// run(async {
    ///     let l = CapacityLimiter::new(1);
    ///     let token = l.try_acquire().unwrap();
    ///     assert_eq!(l.try_acquire().unwrap_err(), TryBorrowError::AlreadyBorrowing);
    ///     drop(token);
    /// });
    /// ```
    ///
    /// # Panics
    /// Outside [`run`](crate::run): "CapacityLimiter::try_acquire must be
    /// called from inside trioxide::run", at the caller's line.
    #[track_caller]
    pub fn try_acquire(&self) -> Result<CapacityToken<'_>, TryBorrowError> {
        self.try_acquire_on_behalf_of(Borrower::current_for("CapacityLimiter::try_acquire"))
    }

    /// Borrows a token for `borrower` if one is free and nobody waits,
    /// without blocking and without a checkpoint (Trio's
    /// `acquire_on_behalf_of_nowait`).
    ///
    /// ```
    /// use trioxide::sync::{Borrower, CapacityLimiter, TryBorrowError};
    /// let l = CapacityLimiter::new(1);
    /// let (a, b) = (Borrower::unique(), Borrower::unique());
    /// let token = l.try_acquire_on_behalf_of(a).unwrap();
    /// assert_eq!(l.try_acquire_on_behalf_of(a).unwrap_err(), TryBorrowError::AlreadyBorrowing);
    /// assert_eq!(l.try_acquire_on_behalf_of(b).unwrap_err(), TryBorrowError::WouldBlock);
    /// drop(token);
    /// ```
    pub fn try_acquire_on_behalf_of(&self, borrower: Borrower) -> Result<CapacityToken<'_>, TryBorrowError> {
        if self.is_borrowing_or_waiting(borrower) {
            return Err(TryBorrowError::AlreadyBorrowing);
        }
        if self.borrowed_tokens() < self.total.get() && self.lot.is_empty() {
            let serial = self.lend(borrower);
            Ok(CapacityToken { limiter: self, borrower, serial })
        } else {
            Err(TryBorrowError::WouldBlock)
        }
    }

    /// Gives back the current task's token held without a guard (after
    /// [`CapacityToken::forget`]).
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::sync::{CapacityLimiter, NotBorrowing};
    /// run(async {
    ///     let l = CapacityLimiter::new(1);
    ///     l.try_acquire().unwrap().forget();
    ///     assert_eq!(l.release(), Ok(()));
    ///     assert_eq!(l.release(), Err(NotBorrowing));
    /// });
    /// ```
    ///
    /// # Panics
    /// Outside [`run`](crate::run): "CapacityLimiter::release must be
    /// called from inside trioxide::run", at the caller's line.
    #[track_caller]
    pub fn release(&self) -> Result<(), NotBorrowing> {
        self.release_on_behalf_of(Borrower::current_for("CapacityLimiter::release"))
    }

    /// Gives back `borrower`'s token held without a guard (after
    /// [`CapacityToken::forget`]); it goes to the oldest waiter if one
    /// waits and the sack is not over-full. Fails with [`NotBorrowing`] if
    /// `borrower` holds no token of this limiter.
    ///
    /// ```
    /// use trioxide::sync::{Borrower, CapacityLimiter, NotBorrowing};
    /// let l = CapacityLimiter::new(1);
    /// let b = Borrower::unique();
    /// assert_eq!(l.release_on_behalf_of(b), Err(NotBorrowing));
    /// l.try_acquire_on_behalf_of(b).unwrap().forget();
    /// assert_eq!(l.release_on_behalf_of(b), Ok(()));
    /// ```
    pub fn release_on_behalf_of(&self, borrower: Borrower) -> Result<(), NotBorrowing> {
        if self.borrowers.borrow_mut().remove(&borrower).is_none() {
            return Err(NotBorrowing);
        }
        if !self.lot.is_empty() {
            self.wake_waiters();
        }
        Ok(())
    }

    /// Changes the sack's size. Growing it hands the new tokens to waiters
    /// at once, oldest first; shrinking it below the tokens held takes
    /// effect as they come back (nobody loses a token).
    ///
    /// `0` pauses borrowing (Trio allows it since PR #3321): holders keep
    /// their tokens, tokens given back are not handed on, every
    /// acquisition waits (`try_` ones fail with `WouldBlock`), in arrival
    /// order; growing the sack later hands the new tokens to the waiters,
    /// oldest first.
    ///
    /// ```
    /// use trioxide::sync::{Borrower, CapacityLimiter};
    /// let l = CapacityLimiter::new(2);
    /// let a = l.try_acquire_on_behalf_of(Borrower::unique()).unwrap();
    /// let b = l.try_acquire_on_behalf_of(Borrower::unique()).unwrap();
    /// l.set_total_tokens(1);
    /// assert_eq!((l.borrowed_tokens(), l.available_tokens()), (2, 0));
    /// drop(a);
    /// assert_eq!(l.available_tokens(), 0);
    /// drop(b);
    /// assert_eq!(l.available_tokens(), 1);
    /// l.set_total_tokens(0); // pause
    /// assert!(l.try_acquire_on_behalf_of(Borrower::unique()).is_err());
    /// l.set_total_tokens(1); // resume
    /// assert!(l.try_acquire_on_behalf_of(Borrower::unique()).is_ok());
    /// ```
    pub fn set_total_tokens(&self, total: usize) {
        self.total.set(total);
        self.wake_waiters();
    }

    /// The sack's size.
    ///
    /// ```
    /// assert_eq!(trioxide::sync::CapacityLimiter::new(3).total_tokens(), 3);
    /// ```
    pub fn total_tokens(&self) -> usize {
        self.total.get()
    }

    /// Tokens held now.
    ///
    /// ```
    /// use trioxide::sync::{Borrower, CapacityLimiter};
    /// let l = CapacityLimiter::new(3);
    /// let _t = l.try_acquire_on_behalf_of(Borrower::unique()).unwrap();
    /// assert_eq!(l.borrowed_tokens(), 1);
    /// ```
    pub fn borrowed_tokens(&self) -> usize {
        self.borrowers.borrow().len()
    }

    /// Tokens free now (0 while the sack is over-full after shrinking).
    ///
    /// ```
    /// use trioxide::sync::{Borrower, CapacityLimiter};
    /// let l = CapacityLimiter::new(3);
    /// let _t = l.try_acquire_on_behalf_of(Borrower::unique()).unwrap();
    /// assert_eq!(l.available_tokens(), 2);
    /// ```
    pub fn available_tokens(&self) -> usize {
        self.total.get().saturating_sub(self.borrowed_tokens())
    }

    /// Tokens, borrowers and waiters.
    ///
    /// ```
    /// use trioxide::sync::{Borrower, CapacityLimiter};
    /// let l = CapacityLimiter::new(3);
    /// let b = Borrower::unique();
    /// let _t = l.try_acquire_on_behalf_of(b).unwrap();
    /// let s = l.statistics();
    /// assert_eq!((s.borrowed_tokens, s.total_tokens, s.tasks_waiting), (1, 3, 0));
    /// assert_eq!(s.borrowers, vec![b]);
    /// ```
    pub fn statistics(&self) -> CapacityLimiterStatistics {
        let mut borrowers: Vec<Borrower> = self.borrowers.borrow().keys().copied().collect();
        borrowers.sort_unstable();
        CapacityLimiterStatistics {
            borrowed_tokens: borrowers.len(),
            total_tokens: self.total.get(),
            borrowers,
            tasks_waiting: self.lot.len(),
        }
    }

    fn is_borrowing_or_waiting(&self, borrower: Borrower) -> bool {
        self.borrowers.borrow().contains_key(&borrower) || self.pending.borrow().iter().any(|&(_, b)| b == borrower)
    }

    /// Records a loan to `borrower`; returns its serial number.
    fn lend(&self, borrower: Borrower) -> u64 {
        let serial = match self.next_serial.get().wrapping_add(1) {
            NO_LOAN => NO_LOAN + 1,
            n => n,
        };
        self.next_serial.set(serial);
        self.borrowers.borrow_mut().insert(borrower, serial);
        serial
    }

    /// The serial number of `borrower`'s loan, if it holds one.
    fn serial_of(&self, borrower: Borrower) -> Option<u64> {
        self.borrowers.borrow().get(&borrower).copied()
    }

    /// Ends the loan `serial` of `borrower` if it is still current.
    fn give_back(&self, borrower: Borrower, serial: u64) {
        let ended = match self.borrowers.borrow_mut().entry(borrower) {
            Entry::Occupied(loan) if *loan.get() == serial => {
                loan.remove();
                true
            }
            _ => false,
        };
        if ended && !self.lot.is_empty() {
            self.wake_waiters();
        }
    }

    /// Hands free tokens to the oldest waiters, registering each under
    /// the borrower it waits for (hand-over: the token is theirs before
    /// they run).
    fn wake_waiters(&self) {
        while self.borrowed_tokens() < self.total.get() {
            let Some(task) = self.lot.unpark_one() else { break };
            // Waiters of one task park and leave in the same order as their
            // entries here, so the task's first entry is the woken waiter's.
            let entry = {
                let mut pending = self.pending.borrow_mut();
                pending.iter().position(|&(t, _)| t == task).map(|i| pending.remove(i))
            };
            match entry {
                Some((_, borrower)) => {
                    self.lend(borrower);
                }
                None => debug_assert!(false, "a woken waiter of a CapacityLimiter had no pending entry"),
            }
        }
    }

    /// Removes a waiter's entry after it left the lot without a token.
    fn forget_pending(&self, borrower: Borrower) {
        let mut pending = self.pending.borrow_mut();
        if let Some(i) = pending.iter().position(|&(_, b)| b == borrower) {
            pending.remove(i);
        }
    }
}

/// A token borrowed from a [`CapacityLimiter`]; dropping it gives the token
/// back (to the oldest waiter, if one waits and the sack is not over-full).
///
/// ```
/// use trioxide::sync::{Borrower, CapacityLimiter};
/// let l = CapacityLimiter::new(1);
/// {
///     let _token = l.try_acquire_on_behalf_of(Borrower::unique()).unwrap();
///     assert_eq!(l.available_tokens(), 0);
/// }
/// assert_eq!(l.available_tokens(), 1);
/// ```
#[must_use = "the token is given back when dropped: an unused token is given back at once"]
pub struct CapacityToken<'a> {
    limiter: &'a CapacityLimiter,
    borrower: Borrower,
    serial: u64,
}

impl fmt::Debug for CapacityToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CapacityToken").field("borrower", &self.borrower).finish()
    }
}

impl CapacityToken<'_> {
    /// Who holds this token.
    ///
    /// ```
    /// use trioxide::sync::{Borrower, CapacityLimiter};
    /// let l = CapacityLimiter::new(1);
    /// let b = Borrower::unique();
    /// let token = l.try_acquire_on_behalf_of(b).unwrap();
    /// assert_eq!(token.borrower(), b);
    /// ```
    pub fn borrower(&self) -> Borrower {
        self.borrower
    }

    /// Keeps the token borrowed after the guard is gone; give it back with
    /// [`CapacityLimiter::release_on_behalf_of`].
    ///
    /// ```
    /// use trioxide::sync::{Borrower, CapacityLimiter};
    /// let l = CapacityLimiter::new(1);
    /// let b = Borrower::unique();
    /// l.try_acquire_on_behalf_of(b).unwrap().forget();
    /// assert_eq!(l.borrowed_tokens(), 1);
    /// l.release_on_behalf_of(b).unwrap();
    /// assert_eq!(l.borrowed_tokens(), 0);
    /// ```
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for CapacityToken<'_> {
    fn drop(&mut self) {
        self.limiter.give_back(self.borrower, self.serial);
    }
}

/// The future of [`CapacityLimiter::acquire`] and
/// [`CapacityLimiter::acquire_on_behalf_of`].
///
/// ```
/// use trioxide::run;
/// use trioxide::sync::{BorrowError, CapacityAcquire, CapacityLimiter};
/// run(async {
///     let l = CapacityLimiter::new(1);
///     let fut: CapacityAcquire<'_> = l.acquire();
///     let _token = fut.await?;
///     Ok::<_, BorrowError>(())
/// }).unwrap();
/// ```
#[must_use = "borrowing a token does nothing unless awaited"]
pub struct CapacityAcquire<'a> {
    limiter: &'a CapacityLimiter,
    /// `None`: the current task, looked up at the first poll.
    borrower: Option<Borrower>,
    state: AcquireState<'a>,
}

enum AcquireState<'a> {
    Start,
    /// Borrowed at once under loan `serial`; passing the schedule point.
    Yielding(Borrower, u64, AfterIo),
    Parked(Borrower, Park<'a>),
    Done,
}

impl fmt::Debug for CapacityAcquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            AcquireState::Start => "start",
            AcquireState::Yielding(..) => "acquired",
            AcquireState::Parked(..) => "waiting",
            AcquireState::Done => "done",
        };
        f.debug_struct("CapacityAcquire").field("borrower", &self.borrower).field("state", &state).finish()
    }
}

impl<'a> Future for CapacityAcquire<'a> {
    type Output = Result<CapacityToken<'a>, BorrowError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let limiter = self.limiter;
        loop {
            match &mut self.state {
                AcquireState::Start => {
                    let core = Core::current();
                    if core.is_cancelled() {
                        self.state = AcquireState::Done;
                        return Poll::Ready(Err(BorrowError::Cancelled));
                    }
                    let me = core.current_task();
                    let borrower = self.borrower.unwrap_or(Borrower::task(me));
                    self.state = match limiter.try_acquire_on_behalf_of(borrower) {
                        Ok(token) => {
                            let serial = token.serial;
                            // Held by the state until reported.
                            token.forget();
                            AcquireState::Yielding(borrower, serial, after_io())
                        }
                        Err(TryBorrowError::AlreadyBorrowing) => {
                            self.state = AcquireState::Done;
                            return Poll::Ready(Err(BorrowError::AlreadyBorrowing));
                        }
                        Err(TryBorrowError::WouldBlock) => {
                            limiter.pending.borrow_mut().push((me, borrower));
                            AcquireState::Parked(borrower, limiter.lot.park())
                        }
                    };
                }
                AcquireState::Yielding(borrower, serial, after) => {
                    let (borrower, serial) = (*borrower, *serial);
                    std::task::ready!(Pin::new(after).poll(cx));
                    self.state = AcquireState::Done;
                    return Poll::Ready(Ok(CapacityToken { limiter, borrower, serial }));
                }
                AcquireState::Parked(borrower, park) => {
                    let borrower = *borrower;
                    let res = std::task::ready!(Pin::new(park).poll(cx));
                    self.state = AcquireState::Done;
                    return Poll::Ready(match res {
                        // `wake_waiters` lent the token to our borrower.
                        Ok(()) => {
                            // The loan may already be over, if someone gave
                            // it back on our borrower's behalf before we ran:
                            // the token then holds nothing (serial 0 is
                            // never issued).
                            let serial = limiter.serial_of(borrower).unwrap_or(NO_LOAN);
                            Ok(CapacityToken { limiter, borrower, serial })
                        }
                        Err(ParkError::Cancelled) => {
                            limiter.forget_pending(borrower);
                            Err(BorrowError::Cancelled)
                        }
                        Err(ParkError::Broken(_)) => {
                            unreachable!("a capacity limiter's parking lot has no breaker, so it is never broken")
                        }
                    });
                }
                AcquireState::Done => panic!("CapacityAcquire polled after completion"),
            }
        }
    }
}

impl Drop for CapacityAcquire<'_> {
    fn drop(&mut self) {
        match &self.state {
            // Borrowed but never reported: give it back.
            AcquireState::Yielding(borrower, serial, _) => self.limiter.give_back(*borrower, *serial),
            AcquireState::Parked(borrower, park) => {
                let borrower = *borrower;
                if park.is_unparked() {
                    // Handed a token, dropped before the next poll: pass it on.
                    if let Some(serial) = self.limiter.serial_of(borrower) {
                        self.limiter.give_back(borrower, serial);
                    }
                } else if park.is_parked() {
                    // Still queued: the park's own drop leaves the lot.
                    self.limiter.forget_pending(borrower);
                }
            }
            _ => {}
        }
    }
}

/// Why [`CapacityLimiter::acquire`] or
/// [`acquire_on_behalf_of`](CapacityLimiter::acquire_on_behalf_of) failed.
///
/// ```
/// use trioxide::is_cancelled_error;
/// use trioxide::sync::BorrowError;
/// assert!(is_cancelled_error(&BorrowError::Cancelled));
/// assert!(!is_cancelled_error(&BorrowError::AlreadyBorrowing));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BorrowError {
    /// The task was cancelled before a token was handed to it.
    Cancelled,
    /// The borrower already holds (or waits for) a token of this limiter
    /// (Trio raises `RuntimeError`).
    AlreadyBorrowing,
}

impl fmt::Display for BorrowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BorrowError::Cancelled => f.write_str("token acquisition cancelled"),
            BorrowError::AlreadyBorrowing => {
                f.write_str("this borrower is already holding (or waiting for) one of this CapacityLimiter's tokens")
            }
        }
    }
}

impl std::error::Error for BorrowError {
    /// `Cancelled` for the cancelled case, so a cancel scope catches it.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BorrowError::Cancelled => Some(&Cancelled),
            BorrowError::AlreadyBorrowing => None,
        }
    }
}

impl From<Cancelled> for BorrowError {
    fn from(_: Cancelled) -> Self {
        BorrowError::Cancelled
    }
}

impl Cancellation for BorrowError {
    fn split_cancelled(self) -> (bool, Option<Self>) {
        match self {
            BorrowError::Cancelled => (true, None),
            other => (false, Some(other)),
        }
    }
}

/// Why [`CapacityLimiter::try_acquire`] or
/// [`try_acquire_on_behalf_of`](CapacityLimiter::try_acquire_on_behalf_of)
/// failed.
///
/// ```
/// use trioxide::sync::TryBorrowError;
/// assert_eq!(TryBorrowError::WouldBlock.to_string(), "no CapacityLimiter token is free");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryBorrowError {
    /// No token is free (or tasks wait for one already).
    WouldBlock,
    /// The borrower already holds (or waits for) a token of this limiter.
    AlreadyBorrowing,
}

impl fmt::Display for TryBorrowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryBorrowError::WouldBlock => f.write_str("no CapacityLimiter token is free"),
            TryBorrowError::AlreadyBorrowing => BorrowError::AlreadyBorrowing.fmt(f),
        }
    }
}

impl std::error::Error for TryBorrowError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TryBorrowError::WouldBlock => Some(&WouldBlock),
            TryBorrowError::AlreadyBorrowing => None,
        }
    }
}

/// Giving back a token for a borrower that holds none.
///
/// ```
/// use trioxide::sync::{Borrower, CapacityLimiter, NotBorrowing};
/// let l = CapacityLimiter::new(1);
/// assert_eq!(l.release_on_behalf_of(Borrower::unique()), Err(NotBorrowing));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NotBorrowing;

impl fmt::Display for NotBorrowing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("this borrower isn't holding any of this CapacityLimiter's tokens")
    }
}

impl std::error::Error for NotBorrowing {}
