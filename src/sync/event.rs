//! [`Event`]: a flag that is set once and that tasks can wait for (Trio's
//! `trio.Event`).

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::kernel::error::Cancelled;
use crate::kernel::parking_lot::{Park, ParkError, ParkingLot};
use crate::time::checkpoint::{checkpoint, Checkpoint};

/// A flag, initially clear, that can be set once; [`wait`](Event::wait)
/// blocks until it is set. Setting it wakes every waiter (rule Y1).
///
/// It cannot be cleared again (as in Trio): once something has happened,
/// it cannot un-happen, and a waiter that arrives late still sees it. For a
/// series of happenings, make a new `Event` for each (they are cheap) or use
/// a channel.
///
/// ```
/// use std::rc::Rc;
/// use trioxide::{run, open_nursery, BoxError};
/// use trioxide::sync::Event;
///
/// run(open_nursery(|n| async move {
///     let ready = Rc::new(Event::new());
///     let r2 = ready.clone();
///     n.start_soon(async move {
///         r2.wait().await?; // blocks until the set below
///         Ok::<_, BoxError>(())
///     })?;
///     ready.set();
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
pub struct Event {
    flag: Cell<bool>,
    lot: ParkingLot,
}

impl Default for Event {
    fn default() -> Self {
        Event::new()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("set", &self.flag.get()).field("tasks_waiting", &self.lot.len()).finish()
    }
}

/// What [`Event::statistics`] reports (Trio's `EventStatistics`).
///
/// ```
/// use trioxide::sync::{Event, EventStatistics};
/// assert_eq!(Event::new().statistics(), EventStatistics { tasks_waiting: 0 });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventStatistics {
    /// How many tasks are blocked in [`Event::wait`].
    pub tasks_waiting: usize,
}

impl Event {
    /// A new event, not set.
    ///
    /// ```
    /// assert!(!trioxide::sync::Event::new().is_set());
    /// ```
    pub fn new() -> Event {
        Event { flag: Cell::new(false), lot: ParkingLot::new() }
    }

    /// Sets the flag and wakes every waiting task. Setting it again does
    /// nothing.
    ///
    /// ```
    /// let e = trioxide::sync::Event::new();
    /// e.set();
    /// e.set();
    /// assert!(e.is_set());
    /// ```
    pub fn set(&self) {
        if !self.flag.replace(true) {
            self.lot.unpark_all();
        }
    }

    /// Whether the flag is set.
    ///
    /// ```
    /// let e = trioxide::sync::Event::new();
    /// assert!(!e.is_set());
    /// e.set();
    /// assert!(e.is_set());
    /// ```
    pub fn is_set(&self) -> bool {
        self.flag.get()
    }

    /// Waits until the flag is set. A checkpoint, also when the flag is set
    /// already: it then reports `Cancelled` if the task is cancelled, and
    /// otherwise lets the other runnable tasks run once before returning.
    ///
    /// A waiter woken by [`set`](Event::set) returns `Ok` even if it is
    /// cancelled before it runs again: the event did happen.
    ///
    /// ```
    /// use trioxide::{run, CancelScope, Cancelled};
    /// use trioxide::sync::Event;
    ///
    /// run(async {
    ///     let e = Event::new();
    ///     e.set();
    ///     e.wait().await?;
    ///     let scope = CancelScope::new();
    ///     scope.cancel();
    ///     // Already set, but still a cancel point.
    ///     assert_eq!(scope.run(e.wait()).await, Ok(None));
    ///     Ok::<_, Cancelled>(())
    /// }).unwrap();
    /// ```
    pub fn wait(&self) -> EventWait<'_> {
        EventWait { event: self, state: WaitState::Start }
    }

    /// How many tasks wait.
    ///
    /// ```
    /// let e = trioxide::sync::Event::new();
    /// assert_eq!(e.statistics().tasks_waiting, 0);
    /// ```
    pub fn statistics(&self) -> EventStatistics {
        EventStatistics { tasks_waiting: self.lot.len() }
    }
}

/// The future of [`Event::wait`].
///
/// ```
/// use trioxide::run;
/// use trioxide::sync::{Event, EventWait};
/// run(async {
///     let e = Event::new();
///     e.set();
///     let wait: EventWait<'_> = e.wait();
///     wait.await
/// }).unwrap();
/// ```
#[must_use = "waiting for an event does nothing unless awaited"]
pub struct EventWait<'a> {
    event: &'a Event,
    state: WaitState<'a>,
}

enum WaitState<'a> {
    Start,
    /// The flag was set: a plain checkpoint.
    Set(Checkpoint),
    Parked(Park<'a>),
    Done,
}

impl fmt::Debug for EventWait<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            WaitState::Start => "start",
            WaitState::Set(_) => "set",
            WaitState::Parked(_) => "waiting",
            WaitState::Done => "done",
        };
        f.debug_struct("EventWait").field("state", &state).finish()
    }
}

impl Future for EventWait<'_> {
    type Output = Result<(), Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match &mut self.state {
                WaitState::Start => {
                    // The park and the checkpoint both begin with the
                    // cancellation check.
                    self.state = if self.event.flag.get() {
                        WaitState::Set(checkpoint())
                    } else {
                        WaitState::Parked(self.event.lot.park())
                    };
                }
                WaitState::Set(cp) => {
                    let res = std::task::ready!(Pin::new(cp).poll(cx));
                    self.state = WaitState::Done;
                    return Poll::Ready(res);
                }
                WaitState::Parked(park) => {
                    let res = std::task::ready!(Pin::new(park).poll(cx));
                    self.state = WaitState::Done;
                    return Poll::Ready(match res {
                        Ok(()) => Ok(()),
                        Err(ParkError::Cancelled) => Err(Cancelled),
                        Err(ParkError::Broken(_)) => {
                            unreachable!("an event's parking lot has no breaker, so it is never broken")
                        }
                    });
                }
                WaitState::Done => panic!("EventWait polled after completion"),
            }
        }
    }
}
