//! [`Semaphore`]: a counter that [`acquire`](Semaphore::acquire) decrements,
//! waiting while it is zero (Trio's `trio.Semaphore`).
//!
//! **Fairness (rule Y4).** The value is positive only while nobody waits.
//! A release with waiters present does not increment the value: it hands
//! the unit straight to the oldest waiter, so a `try_acquire` by a third
//! task right after the release fails with `WouldBlock` instead of jumping
//! the queue.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::kernel::budget::{after_io, AfterIo};
use crate::kernel::error::{Cancelled, WouldBlock};
use crate::kernel::parking_lot::{Park, ParkError, ParkingLot};
use crate::kernel::Core;

/// A counting semaphore, fair (FIFO) between waiters.
///
/// [`acquire`](Semaphore::acquire) returns a [`SemaphorePermit`] that gives
/// the unit back when dropped. For limiting how many tasks do something at
/// once, [`CapacityLimiter`](crate::sync::CapacityLimiter) adds checks
/// (who holds a token) that a plain semaphore lacks.
///
/// ```
/// use trioxide::{run, WouldBlock};
/// use trioxide::sync::Semaphore;
///
/// run(async {
///     let sem = Semaphore::new(2);
///     let a = sem.acquire().await?;
///     let b = sem.try_acquire().unwrap();
///     assert_eq!(sem.value(), 0);
///     assert_eq!(sem.try_acquire().unwrap_err(), WouldBlock);
///     drop((a, b));
///     assert_eq!(sem.value(), 2);
///     Ok::<_, trioxide::Cancelled>(())
/// }).unwrap();
/// ```
pub struct Semaphore {
    value: Cell<usize>,
    max: Option<usize>,
    lot: ParkingLot,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value.get())
            .field("max_value", &self.max)
            .field("tasks_waiting", &self.lot.len())
            .finish()
    }
}

/// What [`Semaphore::statistics`] reports.
///
/// ```
/// use trioxide::sync::{Semaphore, SemaphoreStatistics};
/// assert_eq!(Semaphore::new(1).statistics(), SemaphoreStatistics { tasks_waiting: 0 });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemaphoreStatistics {
    /// How many tasks are blocked in [`Semaphore::acquire`].
    pub tasks_waiting: usize,
}

impl Semaphore {
    /// A semaphore holding `initial` units, with no upper bound.
    ///
    /// ```
    /// assert_eq!(trioxide::sync::Semaphore::new(3).value(), 3);
    /// ```
    pub fn new(initial: usize) -> Semaphore {
        Semaphore { value: Cell::new(initial), max: None, lot: ParkingLot::new() }
    }

    /// A *bounded* semaphore: [`release`](Semaphore::release) fails instead
    /// of raising the value above `max`. Fails if `max < initial`.
    ///
    /// ```
    /// use trioxide::sync::{Semaphore, SemaphoreError};
    /// let s = Semaphore::with_max(1, 1).unwrap();
    /// assert_eq!(s.max_value(), Some(1));
    /// assert_eq!(
    ///     Semaphore::with_max(2, 1).unwrap_err(),
    ///     SemaphoreError::MaxBelowInitial { initial: 2, max_value: 1 }
    /// );
    /// ```
    pub fn with_max(initial: usize, max: usize) -> Result<Semaphore, SemaphoreError> {
        if max < initial {
            return Err(SemaphoreError::MaxBelowInitial { initial, max_value: max });
        }
        Ok(Semaphore { value: Cell::new(initial), max: Some(max), lot: ParkingLot::new() })
    }

    /// Takes a unit, waiting (in arrival order) while there is none. A
    /// checkpoint: `Err(Cancelled)` if the task is cancelled before a unit
    /// is handed to it, and a schedule point when it takes one at once.
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::sync::Semaphore;
    ///
    /// run(async {
    ///     let s = Semaphore::new(1);
    ///     let permit = s.acquire().await?;
    ///     assert_eq!(s.value(), 0);
    ///     drop(permit);
    ///     assert_eq!(s.value(), 1);
    ///     Ok::<_, trioxide::Cancelled>(())
    /// }).unwrap();
    /// ```
    pub fn acquire(&self) -> SemaphoreAcquire<'_> {
        SemaphoreAcquire { sem: self, state: AcquireState::Start }
    }

    /// Takes a unit if one is available, without blocking and without a
    /// checkpoint (Trio's `acquire_nowait`).
    ///
    /// ```
    /// use trioxide::sync::Semaphore;
    /// let s = Semaphore::new(1);
    /// let p = s.try_acquire().unwrap();
    /// assert!(s.try_acquire().is_err());
    /// p.forget(); // the unit stays taken
    /// assert_eq!(s.value(), 0);
    /// ```
    pub fn try_acquire(&self) -> Result<SemaphorePermit<'_>, WouldBlock> {
        let v = self.value.get();
        if v == 0 {
            return Err(WouldBlock);
        }
        debug_assert!(self.lot.is_empty(), "a positive value means nobody waits");
        self.value.set(v - 1);
        Ok(SemaphorePermit { sem: self })
    }

    /// Adds a unit by hand (for units taken with
    /// [`SemaphorePermit::forget`], or a semaphore used as a signal): hands
    /// it to the oldest waiter if one waits, else raises the value. Fails
    /// if the value is already at the maximum of a bounded semaphore.
    ///
    /// ```
    /// use trioxide::sync::{Semaphore, SemaphoreError};
    /// let s = Semaphore::with_max(0, 1).unwrap();
    /// s.release().unwrap();
    /// assert_eq!(s.release(), Err(SemaphoreError::ReleasedTooManyTimes { max_value: 1 }));
    /// assert_eq!(s.value(), 1);
    /// ```
    pub fn release(&self) -> Result<(), SemaphoreError> {
        if self.lot.unpark_one().is_some() {
            debug_assert_eq!(self.value.get(), 0);
            return Ok(());
        }
        let v = self.value.get();
        if let Some(max) = self.max {
            if v >= max {
                return Err(SemaphoreError::ReleasedTooManyTimes { max_value: max });
            }
        }
        self.value.set(v + 1);
        Ok(())
    }

    /// Gives a unit back from a permit or a dropped acquisition: like
    /// `release`, but the value stays at the maximum rather than failing
    /// (possible only if `release` was also called by hand).
    fn give_back(&self) {
        let _ = self.release();
    }

    /// The units available now.
    ///
    /// ```
    /// let s = trioxide::sync::Semaphore::new(2);
    /// let _p = s.try_acquire().unwrap();
    /// assert_eq!(s.value(), 1);
    /// ```
    pub fn value(&self) -> usize {
        self.value.get()
    }

    /// The bound given to [`with_max`](Semaphore::with_max), if any.
    ///
    /// ```
    /// use trioxide::sync::Semaphore;
    /// assert_eq!(Semaphore::new(1).max_value(), None);
    /// assert_eq!(Semaphore::with_max(1, 3).unwrap().max_value(), Some(3));
    /// ```
    pub fn max_value(&self) -> Option<usize> {
        self.max
    }

    /// How many tasks wait.
    ///
    /// ```
    /// assert_eq!(trioxide::sync::Semaphore::new(0).statistics().tasks_waiting, 0);
    /// ```
    pub fn statistics(&self) -> SemaphoreStatistics {
        SemaphoreStatistics { tasks_waiting: self.lot.len() }
    }
}

/// One unit taken from a [`Semaphore`]; dropping it gives the unit back
/// (to the oldest waiter if one waits).
///
/// ```
/// use trioxide::sync::Semaphore;
/// let s = Semaphore::new(1);
/// {
///     let _p = s.try_acquire().unwrap();
///     assert_eq!(s.value(), 0);
/// }
/// assert_eq!(s.value(), 1);
/// ```
#[must_use = "the unit is given back when the permit is dropped: an unused permit gives it back at once"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit").finish_non_exhaustive()
    }
}

impl SemaphorePermit<'_> {
    /// Keeps the unit taken; give it back later with
    /// [`Semaphore::release`].
    ///
    /// ```
    /// use trioxide::sync::Semaphore;
    /// let s = Semaphore::new(1);
    /// s.try_acquire().unwrap().forget();
    /// assert_eq!(s.value(), 0);
    /// s.release().unwrap();
    /// assert_eq!(s.value(), 1);
    /// ```
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        self.sem.give_back();
    }
}

/// The future of [`Semaphore::acquire`].
///
/// ```
/// use trioxide::{run, Cancelled};
/// use trioxide::sync::{Semaphore, SemaphoreAcquire};
/// run(async {
///     let s = Semaphore::new(1);
///     let fut: SemaphoreAcquire<'_> = s.acquire();
///     let _permit = fut.await?;
///     Ok::<_, Cancelled>(())
/// }).unwrap();
/// ```
#[must_use = "acquiring a semaphore does nothing unless awaited"]
pub struct SemaphoreAcquire<'a> {
    sem: &'a Semaphore,
    state: AcquireState<'a>,
}

enum AcquireState<'a> {
    Start,
    /// Took a unit at once; passing the schedule point.
    Yielding(AfterIo),
    Parked(Park<'a>),
    Done,
}

impl fmt::Debug for SemaphoreAcquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            AcquireState::Start => "start",
            AcquireState::Yielding(_) => "acquired",
            AcquireState::Parked(_) => "waiting",
            AcquireState::Done => "done",
        };
        f.debug_struct("SemaphoreAcquire").field("state", &state).finish()
    }
}

impl<'a> Future for SemaphoreAcquire<'a> {
    type Output = Result<SemaphorePermit<'a>, Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let sem = self.sem;
        loop {
            match &mut self.state {
                AcquireState::Start => {
                    if Core::current().is_cancelled() {
                        self.state = AcquireState::Done;
                        return Poll::Ready(Err(Cancelled));
                    }
                    self.state = match sem.try_acquire() {
                        Ok(permit) => {
                            // Held by the state until reported.
                            permit.forget();
                            AcquireState::Yielding(after_io())
                        }
                        Err(WouldBlock) => AcquireState::Parked(sem.lot.park()),
                    };
                }
                AcquireState::Yielding(after) => {
                    std::task::ready!(Pin::new(after).poll(cx));
                    self.state = AcquireState::Done;
                    return Poll::Ready(Ok(SemaphorePermit { sem }));
                }
                AcquireState::Parked(park) => {
                    let res = std::task::ready!(Pin::new(park).poll(cx));
                    self.state = AcquireState::Done;
                    return Poll::Ready(match res {
                        // A release handed us its unit.
                        Ok(()) => Ok(SemaphorePermit { sem }),
                        Err(ParkError::Cancelled) => Err(Cancelled),
                        Err(ParkError::Broken(_)) => {
                            unreachable!("a semaphore's parking lot has no breaker, so it is never broken")
                        }
                    });
                }
                AcquireState::Done => panic!("SemaphoreAcquire polled after completion"),
            }
        }
    }
}

impl Drop for SemaphoreAcquire<'_> {
    fn drop(&mut self) {
        match &self.state {
            // A unit taken (or handed over) but never reported: pass it on.
            AcquireState::Yielding(_) => self.sem.give_back(),
            AcquireState::Parked(park) if park.is_unparked() => self.sem.give_back(),
            _ => {}
        }
    }
}

/// Misuse of a bounded [`Semaphore`] (Trio raises `ValueError`).
///
/// ```
/// use trioxide::sync::Semaphore;
/// let s = Semaphore::with_max(1, 1).unwrap();
/// let err = s.release().unwrap_err();
/// assert_eq!(err.to_string(), "semaphore released too many times (its value is already at its maximum, 1)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SemaphoreError {
    /// [`Semaphore::release`] would raise the value above the maximum.
    ReleasedTooManyTimes {
        /// The semaphore's maximum value.
        max_value: usize,
    },
    /// [`Semaphore::with_max`] with a maximum below the initial value.
    MaxBelowInitial {
        /// The initial value given.
        initial: usize,
        /// The maximum given.
        max_value: usize,
    },
}

impl fmt::Display for SemaphoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SemaphoreError::ReleasedTooManyTimes { max_value } => {
                write!(f, "semaphore released too many times (its value is already at its maximum, {max_value})")
            }
            SemaphoreError::MaxBelowInitial { initial, max_value } => {
                write!(f, "a semaphore's maximum value ({max_value}) must be >= its initial value ({initial})")
            }
        }
    }
}

impl std::error::Error for SemaphoreError {}
