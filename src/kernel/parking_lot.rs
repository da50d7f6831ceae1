//! [`ParkingLot`]: the FIFO queue of waiting tasks every synchronisation
//! primitive is built on (Trio's `trio.lowlevel.ParkingLot`).
//!
//! A lot holds *waiters* in arrival order. [`ParkingLot::park`] queues the
//! current task and sleeps until another task calls [`ParkingLot::unpark`]
//! (first come, first served), the task is cancelled, or the lot is broken.
//!
//! **Hand-over.** Unparking is a decision made by the *unparking* task: from
//! that moment the waiter counts as woken, and a cancellation that arrives
//! before the waiter runs again does not undo it (Trio reschedules the task
//! with a value; the abort function is no longer consulted). This is what
//! lets a `Lock` hand ownership straight to the next waiter (rule Y2) and a
//! channel hand a value straight to a blocked receiver (rule Y5). A Rust
//! future can also be *dropped* between the hand-over and its next poll (a
//! `select!` that picked another branch); primitives that hand something over
//! check [`Park::is_unparked`] in their own `Drop` and pass the thing on.
//!
//! **Why waiters are `Rc`s.** [`ParkingLot::repark`] moves waiters from one
//! lot to another (a `Condition` moves notified tasks onto its lock's lot),
//! so a waiter cannot be identified by its slot in one lot. Each parked
//! future owns a small `Rc<Waiter>`; the lot keeps a doubly linked list of
//! them in a `slab` (O(1) push, pop and removal on cancel), and the waiter
//! remembers which lot and slot it sits in. The allocation happens only
//! when a task actually blocks.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use slab::Slab;

use crate::kernel::error::{BrokenResource, Cancelled};
use crate::kernel::task::TaskId;
use crate::kernel::Core;

/// End of a waiter list.
const NIL: usize = usize::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Queued in a lot.
    Parked,
    /// Removed by `unpark`: the park succeeds whatever happens next.
    Unparked,
    /// Removed by `break_lot`.
    Broken,
}

struct Waiter {
    state: Cell<State>,
    task: TaskId,
    waker: RefCell<Option<Waker>>,
    /// The lot this waiter is queued in, and its slot there (while Parked).
    lot: RefCell<Weak<RefCell<Lot>>>,
    key: Cell<usize>,
}

struct Node {
    waiter: Rc<Waiter>,
    prev: usize,
    next: usize,
}

#[derive(Default)]
pub(crate) struct Lot {
    nodes: Slab<Node>,
    head: Option<usize>,
    tail: Option<usize>,
    /// Every task that broke the lot, in order (Trio's `broken_by` list).
    /// Non-empty means broken: every later park fails at once.
    broken_by: Vec<TaskId>,
}

impl Lot {
    fn push_back(&mut self, waiter: Rc<Waiter>) -> usize {
        let prev = self.tail.unwrap_or(NIL);
        let key = self.nodes.insert(Node { waiter, prev, next: NIL });
        match self.tail {
            Some(t) => self.nodes[t].next = key,
            None => self.head = Some(key),
        }
        self.tail = Some(key);
        key
    }

    fn unlink(&mut self, key: usize) -> Rc<Waiter> {
        let node = self.nodes.remove(key);
        if node.prev == NIL {
            self.head = (node.next != NIL).then_some(node.next);
        } else {
            self.nodes[node.prev].next = node.next;
        }
        if node.next == NIL {
            self.tail = (node.prev != NIL).then_some(node.prev);
        } else {
            self.nodes[node.next].prev = node.prev;
        }
        node.waiter
    }

    fn pop_front(&mut self) -> Option<Rc<Waiter>> {
        let key = self.head?;
        Some(self.unlink(key))
    }
}

/// A fair (FIFO) queue of parked tasks: the building block of
/// [`Event`](crate::Event), [`Lock`](crate::Lock) and the other
/// primitives, public for writing your own (Trio's `ParkingLot`).
///
/// Not `Clone`: share it with an `Rc` if several owners need it.
///
/// ```
/// use std::rc::Rc;
/// use trioxide::{run, open_nursery, wait_all_tasks_blocked, BoxError};
/// use trioxide::sync::ParkingLot;
///
/// run(open_nursery(|n| async move {
///     let lot = Rc::new(ParkingLot::new());
///     let l2 = lot.clone();
///     n.start_soon(async move { l2.park().await })?;
///     wait_all_tasks_blocked().await?;
///     assert_eq!(lot.len(), 1);
///     assert_eq!(lot.unpark(1), 1);
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
pub struct ParkingLot {
    inner: Rc<RefCell<Lot>>,
}

impl Default for ParkingLot {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ParkingLot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lot = self.inner.borrow();
        f.debug_struct("ParkingLot")
            .field("tasks_waiting", &lot.nodes.len())
            .field("broken_by", &lot.broken_by)
            .finish()
    }
}

/// Why a [`ParkingLot::park`] did not end in an unpark.
///
/// ```
/// use trioxide::{run, CancelScope, current_task};
/// use trioxide::sync::{ParkError, ParkingLot};
/// run(async {
///     let lot = ParkingLot::new();
///     let scope = CancelScope::new();
///     scope.cancel();
///     let r = scope.run(async {
///         let e = lot.park().await.unwrap_err();
///         assert_eq!(e, ParkError::Cancelled);
///         Err::<(), _>(e) // a scope recognises ParkError::Cancelled as its own
///     }).await;
///     assert_eq!(r, Ok(None));
///     lot.break_lot(current_task().id);
///     assert!(matches!(lot.park().await, Err(ParkError::Broken(_))));
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkError {
    /// The task's cancel scope was cancelled first.
    Cancelled,
    /// The lot was broken by [`ParkingLot::break_lot`] (for a `Lock`: its
    /// owner task ended while holding it).
    Broken(BrokenResource),
}

impl fmt::Display for ParkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParkError::Cancelled => Cancelled.fmt(f),
            ParkError::Broken(b) => b.fmt(f),
        }
    }
}

impl std::error::Error for ParkError {
    /// `Cancelled` for the cancelled case, so a cancel scope recognises the
    /// error as its own cancellation (see [`Cancellation`](crate::Cancellation)).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ParkError::Cancelled => Some(&Cancelled),
            ParkError::Broken(b) => Some(b),
        }
    }
}

impl From<Cancelled> for ParkError {
    fn from(_: Cancelled) -> Self {
        ParkError::Cancelled
    }
}

impl crate::kernel::error::Cancellation for ParkError {
    fn split_cancelled(self) -> (bool, Option<Self>) {
        match self {
            ParkError::Cancelled => (true, None),
            other => (false, Some(other)),
        }
    }
}

/// The error of [`ParkingLot::add_breaker`] given a task that has ended
/// (Trio's message).
const EXITED_BREAKER: BrokenResource = BrokenResource { reason: "Attempted to add already exited task as lot breaker" };

/// The reason a broken lot gives.
const BROKEN: BrokenResource =
    BrokenResource { reason: "the parking lot was broken (a lock's owner task ended holding it)" };

impl ParkingLot {
    /// An empty lot.
    ///
    /// ```
    /// let lot = trioxide::sync::ParkingLot::new();
    /// assert!(lot.is_empty() && !lot.is_broken());
    /// ```
    pub fn new() -> ParkingLot {
        ParkingLot { inner: Rc::new(RefCell::new(Lot::default())) }
    }

    /// Parks the current task until it is unparked. A checkpoint: it reports
    /// `Cancelled` if the task is cancelled before being unparked, and
    /// cancellation after the unpark does not undo it.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use trioxide::{open_nursery, run, wait_all_tasks_blocked, BoxError};
    /// use trioxide::sync::ParkingLot;
    /// run(open_nursery(|n| async move {
    ///     let lot = Rc::new(ParkingLot::new());
    ///     let l = lot.clone();
    ///     n.start_soon(async move {
    ///         l.park().await?; // until someone unparks it
    ///         Ok::<_, BoxError>(())
    ///     })?;
    ///     wait_all_tasks_blocked().await?;
    ///     assert_eq!(lot.len(), 1);
    ///     assert_eq!(lot.unpark_all(), 1);
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub fn park(&self) -> Park<'_> {
        Park { lot: self, waiter: None, done: false }
    }

    /// Wakes up to `n` waiters, oldest first; returns how many.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use trioxide::{open_nursery, run, wait_all_tasks_blocked, BoxError};
    /// use trioxide::sync::ParkingLot;
    /// run(open_nursery(|n| async move {
    ///     let lot = Rc::new(ParkingLot::new());
    ///     for _ in 0..3 {
    ///         let l = lot.clone();
    ///         n.start_soon(async move { l.park().await?; Ok::<_, BoxError>(()) })?;
    ///     }
    ///     wait_all_tasks_blocked().await?;
    ///     assert_eq!(lot.unpark(2), 2);
    ///     assert_eq!(lot.len(), 1);
    ///     assert_eq!(lot.unpark(5), 1); // only one was left
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub fn unpark(&self, n: usize) -> usize {
        let mut woken = 0;
        while woken < n && self.unpark_one().is_some() {
            woken += 1;
        }
        woken
    }

    /// Wakes the oldest waiter and returns its task, if any waits. The
    /// hand-over is final: the waiter's park succeeds even if it is
    /// cancelled before it runs.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use trioxide::{current_task, open_nursery, run, wait_all_tasks_blocked, BoxError};
    /// use trioxide::sync::ParkingLot;
    /// run(open_nursery(|n| async move {
    ///     let lot = Rc::new(ParkingLot::new());
    ///     assert_eq!(lot.unpark_one(), None); // nobody waits
    ///     let (l, ids) = (lot.clone(), Rc::new(std::cell::Cell::new(None)));
    ///     let id = ids.clone();
    ///     n.start_soon(async move {
    ///         id.set(Some(current_task().id));
    ///         l.park().await?;
    ///         Ok::<_, BoxError>(())
    ///     })?;
    ///     wait_all_tasks_blocked().await?;
    ///     assert_eq!(lot.unpark_one(), ids.get()); // the task that was woken
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub fn unpark_one(&self) -> Option<TaskId> {
        let waiter = self.inner.borrow_mut().pop_front()?;
        Some(finish(&waiter, State::Unparked))
    }

    /// Wakes every waiter; returns how many.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use trioxide::{open_nursery, run, wait_all_tasks_blocked, BoxError};
    /// use trioxide::sync::ParkingLot;
    /// run(open_nursery(|n| async move {
    ///     let lot = Rc::new(ParkingLot::new());
    ///     for _ in 0..4 {
    ///         let l = lot.clone();
    ///         n.start_soon(async move { l.park().await?; Ok::<_, BoxError>(()) })?;
    ///     }
    ///     wait_all_tasks_blocked().await?;
    ///     assert_eq!(lot.unpark_all(), 4);
    ///     assert!(lot.is_empty());
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub fn unpark_all(&self) -> usize {
        self.unpark(usize::MAX)
    }

    /// Moves up to `n` waiters, oldest first, to the back of `other`
    /// without waking them; returns how many. They will be woken by an
    /// unpark of `other`. (`Condition::notify` moves waiters onto its lock.)
    ///
    /// If `other` is broken, the moved waiters fail with `Broken`.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use trioxide::{open_nursery, run, wait_all_tasks_blocked, BoxError};
    /// use trioxide::sync::ParkingLot;
    /// run(open_nursery(|n| async move {
    ///     let (a, b) = (Rc::new(ParkingLot::new()), ParkingLot::new());
    ///     for _ in 0..2 {
    ///         let l = a.clone();
    ///         n.start_soon(async move { l.park().await?; Ok::<_, BoxError>(()) })?;
    ///     }
    ///     wait_all_tasks_blocked().await?;
    ///     assert_eq!(a.repark(&b, 1), 1); // moved, still asleep
    ///     assert_eq!((a.len(), b.len()), (1, 1));
    ///     assert_eq!(b.unpark_all() + a.unpark_all(), 2);
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub fn repark(&self, other: &ParkingLot, n: usize) -> usize {
        if Rc::ptr_eq(&self.inner, &other.inner) {
            return 0;
        }
        let mut moved = 0;
        while moved < n {
            let Some(waiter) = self.inner.borrow_mut().pop_front() else { break };
            let mut to = other.inner.borrow_mut();
            if !to.broken_by.is_empty() {
                drop(to);
                finish(&waiter, State::Broken);
            } else {
                let key = to.push_back(waiter.clone());
                waiter.key.set(key);
                *waiter.lot.borrow_mut() = Rc::downgrade(&other.inner);
            }
            moved += 1;
        }
        moved
    }

    /// Moves every waiter to `other` (see [`repark`](ParkingLot::repark)).
    ///
    /// ```
    /// use std::rc::Rc;
    /// use trioxide::{open_nursery, run, wait_all_tasks_blocked, BoxError};
    /// use trioxide::sync::ParkingLot;
    /// run(open_nursery(|n| async move {
    ///     let (a, b) = (Rc::new(ParkingLot::new()), ParkingLot::new());
    ///     for _ in 0..3 {
    ///         let l = a.clone();
    ///         n.start_soon(async move { l.park().await?; Ok::<_, BoxError>(()) })?;
    ///     }
    ///     wait_all_tasks_blocked().await?;
    ///     assert_eq!(a.repark_all(&b), 3);
    ///     assert!(a.is_empty());
    ///     assert_eq!(b.unpark_all(), 3);
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub fn repark_all(&self, other: &ParkingLot) -> usize {
        self.repark(other, usize::MAX)
    }

    /// Breaks the lot: every waiter's park fails with
    /// [`ParkError::Broken`], and so does every later park. `by` is the
    /// task responsible, added to [`broken_by`](ParkingLot::broken_by)
    /// (breaking an already broken lot only adds `by` there, as in Trio).
    /// Returns how many waiters were woken.
    ///
    /// ```
    /// use trioxide::{run, current_task};
    /// use trioxide::sync::{ParkError, ParkingLot};
    ///
    /// run(async {
    ///     let lot = ParkingLot::new();
    ///     let me = current_task().id;
    ///     lot.break_lot(me);
    ///     lot.break_lot(me);
    ///     assert_eq!(lot.broken_by(), vec![me, me]);
    ///     assert!(matches!(lot.park().await, Err(ParkError::Broken(_))));
    /// });
    /// ```
    pub fn break_lot(&self, by: TaskId) -> usize {
        let mut n = 0;
        self.inner.borrow_mut().broken_by.push(by);
        loop {
            let Some(w) = self.inner.borrow_mut().pop_front() else { break };
            finish(&w, State::Broken);
            n += 1;
        }
        n
    }

    /// Every task that broke this lot, in the order they did (empty if it
    /// is not broken). Trio's `ParkingLot.broken_by`: several breakers that
    /// end (or several `break_lot` calls) are all listed.
    ///
    /// ```
    /// use trioxide::{run, current_task};
    /// use trioxide::sync::ParkingLot;
    ///
    /// run(async {
    ///     let lot = ParkingLot::new();
    ///     assert!(lot.broken_by().is_empty());
    ///     lot.break_lot(current_task().id);
    ///     assert_eq!(lot.broken_by(), vec![current_task().id]);
    /// });
    /// ```
    pub fn broken_by(&self) -> Vec<TaskId> {
        self.inner.borrow().broken_by.clone()
    }

    /// The first task that broke this lot, if it is broken: the one a
    /// `Lock` names as its dead owner. Does not allocate.
    ///
    /// ```
    /// use trioxide::{run, current_task};
    /// use trioxide::sync::ParkingLot;
    ///
    /// run(async {
    ///     let lot = ParkingLot::new();
    ///     assert_eq!(lot.first_breaker(), None);
    ///     lot.break_lot(current_task().id);
    ///     assert_eq!(lot.first_breaker(), Some(current_task().id));
    /// });
    /// ```
    pub fn first_breaker(&self) -> Option<TaskId> {
        self.inner.borrow().broken_by.first().copied()
    }

    /// True once the lot is broken.
    ///
    /// ```
    /// use trioxide::{run, current_task};
    /// use trioxide::sync::ParkingLot;
    ///
    /// run(async {
    ///     let lot = ParkingLot::new();
    ///     assert!(!lot.is_broken());
    ///     lot.break_lot(current_task().id);
    ///     assert!(lot.is_broken());
    /// });
    /// ```
    pub fn is_broken(&self) -> bool {
        !self.inner.borrow().broken_by.is_empty()
    }

    /// How many tasks are parked here (Trio's `statistics().tasks_waiting`).
    ///
    /// ```
    /// use std::rc::Rc;
    /// use trioxide::{open_nursery, run, wait_all_tasks_blocked, BoxError};
    /// use trioxide::sync::ParkingLot;
    /// run(open_nursery(|n| async move {
    ///     let lot = Rc::new(ParkingLot::new());
    ///     assert_eq!(lot.len(), 0);
    ///     let l = lot.clone();
    ///     n.start_soon(async move { l.park().await?; Ok::<_, BoxError>(()) })?;
    ///     wait_all_tasks_blocked().await?;
    ///     assert_eq!(lot.len(), 1);
    ///     lot.unpark_all();
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub fn len(&self) -> usize {
        self.inner.borrow().nodes.len()
    }

    /// True if no task is parked here.
    ///
    /// ```
    /// assert!(trioxide::sync::ParkingLot::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.inner.borrow().head.is_none()
    }

    /// Breaks this lot when `task` ends, unless
    /// [`remove_breaker`](ParkingLot::remove_breaker) is called first. A
    /// `Lock` registers its owner this way (rule Y3). A task may be
    /// registered several times (each registration is removed separately),
    /// and registering on an already broken lot is allowed (its end then
    /// adds it to [`broken_by`](ParkingLot::broken_by)).
    ///
    /// # Errors
    /// A task that has already exited (or `TaskId::NONE`, or a task of
    /// another run) cannot break anything any more: the call returns
    /// [`BrokenResource`] ("Attempted to add already exited task as lot
    /// breaker", Trio's `add_parking_lot_breaker`) and registers nothing.
    ///
    /// # Panics
    /// Outside a run.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// use trioxide::{run, current_task, open_nursery, BoxError};
    /// use trioxide::sync::ParkingLot;
    ///
    /// run(async {
    ///     let lot = ParkingLot::new();
    ///     lot.add_breaker(current_task().id)?; // alive: registered
    ///     assert!(lot.remove_breaker(current_task().id));
    ///
    ///     let id = Rc::new(Cell::new(None));
    ///     let id2 = id.clone();
    ///     open_nursery(move |n| async move {
    ///         n.start_soon(async move { id2.set(Some(current_task().id)) })?;
    ///         Ok::<_, BoxError>(())
    ///     }).await?;
    ///     let exited = id.get().unwrap(); // that child has ended
    ///     let err = lot.add_breaker(exited).unwrap_err();
    ///     assert_eq!(err.reason, "Attempted to add already exited task as lot breaker");
    ///     assert!(!lot.remove_breaker(exited), "nothing was registered");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    ///
    /// # Panics
    /// Outside [`run`](crate::run): "ParkingLot::add_breaker must be called
    /// from inside trioxide::run", at the caller's line.
    #[track_caller]
    pub fn add_breaker(&self, task: TaskId) -> Result<(), BrokenResource> {
        let core = Core::current_for("ParkingLot::add_breaker");
        if !core.task_alive(task) {
            return Err(EXITED_BREAKER);
        }
        core.lot_breakers.borrow_mut().push((task, Rc::downgrade(&self.inner)));
        Ok(())
    }

    /// Undoes one [`add_breaker`](ParkingLot::add_breaker) for `task`;
    /// false if there was none.
    ///
    /// ```
    /// use trioxide::{current_task, run};
    /// use trioxide::sync::ParkingLot;
    /// run(async {
    ///     let lot = ParkingLot::new();
    ///     let me = current_task().id;
    ///     lot.add_breaker(me).unwrap();
    ///     assert!(lot.remove_breaker(me)); // my end no longer breaks the lot
    ///     assert!(!lot.remove_breaker(me)); // nothing left to remove
    /// });
    /// ```
    ///
    /// # Panics
    /// Outside [`run`](crate::run): "ParkingLot::remove_breaker must be called
    /// from inside trioxide::run", at the caller's line.
    #[track_caller]
    pub fn remove_breaker(&self, task: TaskId) -> bool {
        let core = Core::current_for("ParkingLot::remove_breaker");
        let mut list = core.lot_breakers.borrow_mut();
        // Locks are usually released in the reverse order of acquisition:
        // search from the back.
        let me = Rc::downgrade(&self.inner);
        match list.iter().rposition(|(t, lot)| *t == task && lot.ptr_eq(&me)) {
            Some(i) => {
                list.swap_remove(i);
                true
            }
            None => false,
        }
    }
}

/// Marks a waiter removed from its lot and wakes it; returns its task.
fn finish(waiter: &Waiter, state: State) -> TaskId {
    waiter.state.set(state);
    *waiter.lot.borrow_mut() = Weak::new();
    if let Some(w) = waiter.waker.borrow_mut().take() {
        w.wake();
    }
    waiter.task
}

/// Called by the runtime when a task ends: breaks the lots it was
/// registered as the breaker of.
pub(crate) fn run_breakers(core: &Core, task: TaskId) {
    let due: Vec<Weak<RefCell<Lot>>> = {
        let mut list = core.lot_breakers.borrow_mut();
        let mut due = Vec::new();
        list.retain(|(t, lot)| {
            if *t == task {
                due.push(lot.clone());
                false
            } else {
                true
            }
        });
        due
    };
    for lot in due {
        if let Some(inner) = lot.upgrade() {
            ParkingLot { inner }.break_lot(task);
        }
    }
}

/// The future of [`ParkingLot::park`].
///
/// ```
/// use std::future::Future;
/// use std::pin::pin;
/// use std::task::{Context, Poll, Waker};
/// use trioxide::run;
/// use trioxide::sync::ParkingLot;
/// run(async {
///     let lot = ParkingLot::new();
///     let mut park = pin!(lot.park());
///     let mut cx = Context::from_waker(Waker::noop());
///     assert!(!park.is_parked());
///     assert_eq!(park.as_mut().poll(&mut cx), Poll::Pending); // queued
///     assert!(park.is_parked() && lot.len() == 1);
///     lot.unpark_one();
///     assert!(park.is_unparked()); // chosen, not yet reported
///     assert_eq!(park.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
/// });
/// ```
#[must_use = "parking does nothing unless awaited"]
pub struct Park<'a> {
    lot: &'a ParkingLot,
    waiter: Option<Rc<Waiter>>,
    done: bool,
}

impl fmt::Debug for Park<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Park").field("state", &self.waiter.as_ref().map(|w| w.state.get())).finish()
    }
}

impl Park<'_> {
    /// True once an unpark has chosen this waiter, before the future has
    /// reported it. A primitive that hands something over on unpark checks
    /// this in its `Drop` to pass the thing on if the future is dropped.
    ///
    /// ```
    /// use std::future::Future;
    /// use std::pin::pin;
    /// use std::task::{Context, Waker};
    /// use trioxide::run;
    /// use trioxide::sync::ParkingLot;
    /// run(async {
    ///     let lot = ParkingLot::new();
    ///     let mut park = pin!(lot.park());
    ///     let _ = park.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    ///     assert!(!park.is_unparked());
    ///     lot.unpark_all();
    ///     assert!(park.is_unparked()); // a drop now would have to pass the hand-over on
    /// });
    /// ```
    pub fn is_unparked(&self) -> bool {
        !self.done && self.waiter.as_ref().is_some_and(|w| w.state.get() == State::Unparked)
    }

    /// True while this future is queued in a lot.
    ///
    /// ```
    /// use std::future::Future;
    /// use std::pin::pin;
    /// use std::task::{Context, Waker};
    /// use trioxide::run;
    /// use trioxide::sync::ParkingLot;
    /// run(async {
    ///     let lot = ParkingLot::new();
    ///     let mut park = pin!(lot.park());
    ///     assert!(!park.is_parked()); // not polled yet
    ///     let _ = park.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    ///     assert!(park.is_parked());
    ///     lot.unpark_all();
    ///     assert!(!park.is_parked());
    /// });
    /// ```
    pub fn is_parked(&self) -> bool {
        !self.done && self.waiter.as_ref().is_some_and(|w| w.state.get() == State::Parked)
    }

    /// Removes a still-queued waiter from whatever lot it is in now.
    fn withdraw(waiter: &Waiter) {
        if waiter.state.get() != State::Parked {
            return;
        }
        let lot = waiter.lot.borrow().upgrade();
        if let Some(lot) = lot {
            lot.borrow_mut().unlink(waiter.key.get());
        }
        *waiter.lot.borrow_mut() = Weak::new();
    }
}

impl Future for Park<'_> {
    type Output = Result<(), ParkError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(!self.done, "Park polled after completion");
        let core = Core::current();
        let Some(waiter) = self.waiter.clone() else {
            // First poll: a checkpoint's cancel check, then queue up.
            if core.is_cancelled() {
                self.done = true;
                return Poll::Ready(Err(ParkError::Cancelled));
            }
            let mut lot = self.lot.inner.borrow_mut();
            if !lot.broken_by.is_empty() {
                self.done = true;
                return Poll::Ready(Err(ParkError::Broken(BROKEN)));
            }
            let waiter = Rc::new(Waiter {
                state: Cell::new(State::Parked),
                task: core.current_task(),
                waker: RefCell::new(Some(cx.waker().clone())),
                lot: RefCell::new(Rc::downgrade(&self.lot.inner)),
                key: Cell::new(NIL),
            });
            waiter.key.set(lot.push_back(waiter.clone()));
            drop(lot);
            self.waiter = Some(waiter);
            core.set_waiting_on("parking lot");
            return Poll::Pending;
        };
        match waiter.state.get() {
            State::Unparked => {
                self.done = true;
                Poll::Ready(Ok(()))
            }
            State::Broken => {
                self.done = true;
                Poll::Ready(Err(ParkError::Broken(BROKEN)))
            }
            State::Parked => {
                if core.is_cancelled() {
                    Park::withdraw(&waiter);
                    self.done = true;
                    return Poll::Ready(Err(ParkError::Cancelled));
                }
                let mut slot = waiter.waker.borrow_mut();
                match &mut *slot {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    other => *other = Some(cx.waker().clone()),
                }
                core.set_waiting_on("parking lot");
                Poll::Pending
            }
        }
    }
}

impl Drop for Park<'_> {
    fn drop(&mut self) {
        if let Some(w) = &self.waiter {
            if !self.done {
                Park::withdraw(w);
            }
        }
    }
}
