//! Synchronisation primitives for tasks of one run, all fair (FIFO) as in
//! Trio, every blocking call a checkpoint (Trio's `trio._sync`).
//!
//! * [`Event`]: a flag set once; setting it wakes every waiter (rule Y1).
//! * [`Lock`]: mutual exclusion with an owner task, handed straight to the
//!   next waiter on release (Y2), broken if its owner ends holding it (Y3).
//! * [`Semaphore`]: a counter, handed over unit by unit (Y4).
//! * [`CapacityLimiter`]: at most N borrowers at once, one token each (Y4).
//! * [`Condition`]: a condition variable over its own lock.
//! * [`ParkingLot`]: the queue of waiting tasks the others are built on.
//!
//! Acquisitions return guards that release on drop ([`LockGuard`],
//! [`SemaphorePermit`], [`CapacityToken`], [`ConditionGuard`]), so error
//! paths, cancellation and panics cannot forget a release; each guard can
//! be leaked on purpose and released by hand.
//!
//! Every blocking call is a checkpoint: it reports cancellation on entry
//! (having taken nothing), and when it completes at once it still lets the
//! other runnable tasks run. Once another task has handed something over
//! (the lock, a unit, a token), a later cancellation does not undo it; an
//! acquisition future dropped between the hand-over and its next poll
//! passes the thing on to the next waiter.

mod capacity_limiter;
mod condition;
mod event;
mod lock;
mod semaphore;

pub use crate::kernel::parking_lot::{Park, ParkError, ParkingLot};
pub use capacity_limiter::{
    BorrowError, Borrower, CapacityAcquire, CapacityLimiter, CapacityLimiterStatistics, CapacityToken, NotBorrowing,
    TryBorrowError,
};
pub use condition::{Condition, ConditionAcquire, ConditionError, ConditionGuard, ConditionStatistics, ConditionWait};
pub use event::{Event, EventStatistics, EventWait};
pub use lock::{Lock, LockAcquire, LockError, LockGuard, LockStatistics, NotOwner, TryLockError};
pub use semaphore::{Semaphore, SemaphoreAcquire, SemaphoreError, SemaphorePermit, SemaphoreStatistics};
