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

use crate::error::{BrokenResource, Cancelled};
use crate::runtime::Core;
use crate::task::TaskId;

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
    /// Set by `break_lot`: every later park fails at once.
    broken_by: Option<TaskId>,
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
/// [`Event`](crate::sync::Event), [`Lock`](crate::sync::Lock) and the other
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

impl crate::error::Cancellation for ParkError {
    fn split_cancelled(self) -> (bool, Option<Self>) {
        match self {
            ParkError::Cancelled => (true, None),
            other => (false, Some(other)),
        }
    }
}

/// The reason a broken lot gives.
const BROKEN: BrokenResource =
    BrokenResource { reason: "the parking lot was broken (a lock's owner task ended holding it)" };

impl ParkingLot {
    /// An empty lot.
    pub fn new() -> ParkingLot {
        ParkingLot { inner: Rc::new(RefCell::new(Lot::default())) }
    }

    /// Parks the current task until it is unparked. A checkpoint: it reports
    /// `Cancelled` if the task is cancelled before being unparked, and
    /// cancellation after the unpark does not undo it.
    pub fn park(&self) -> Park<'_> {
        Park { lot: self, waiter: None, done: false }
    }

    /// Wakes up to `n` waiters, oldest first; returns how many.
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
    pub fn unpark_one(&self) -> Option<TaskId> {
        let waiter = self.inner.borrow_mut().pop_front()?;
        Some(finish(&waiter, State::Unparked))
    }

    /// Wakes every waiter; returns how many.
    pub fn unpark_all(&self) -> usize {
        self.unpark(usize::MAX)
    }

    /// Moves up to `n` waiters, oldest first, to the back of `other`
    /// without waking them; returns how many. They will be woken by an
    /// unpark of `other`. (`Condition::notify` moves waiters onto its lock.)
    ///
    /// If `other` is broken, the moved waiters fail with `Broken`.
    pub fn repark(&self, other: &ParkingLot, n: usize) -> usize {
        if Rc::ptr_eq(&self.inner, &other.inner) {
            return 0;
        }
        let mut moved = 0;
        while moved < n {
            let Some(waiter) = self.inner.borrow_mut().pop_front() else { break };
            let mut to = other.inner.borrow_mut();
            if to.broken_by.is_some() {
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
    pub fn repark_all(&self, other: &ParkingLot) -> usize {
        self.repark(other, usize::MAX)
    }

    /// Breaks the lot: every waiter's park fails with
    /// [`ParkError::Broken`], and so does every later park. `by` is the
    /// task responsible, reported by [`broken_by`](ParkingLot::broken_by).
    /// Returns how many waiters were woken.
    pub fn break_lot(&self, by: TaskId) -> usize {
        let mut n = 0;
        self.inner.borrow_mut().broken_by.get_or_insert(by);
        loop {
            let Some(w) = self.inner.borrow_mut().pop_front() else { break };
            finish(&w, State::Broken);
            n += 1;
        }
        n
    }

    /// The task whose end broke this lot, if it is broken.
    pub fn broken_by(&self) -> Option<TaskId> {
        self.inner.borrow().broken_by
    }

    /// How many tasks are parked here (Trio's `statistics().tasks_waiting`).
    pub fn len(&self) -> usize {
        self.inner.borrow().nodes.len()
    }

    /// True if no task is parked here.
    pub fn is_empty(&self) -> bool {
        self.inner.borrow().head.is_none()
    }

    /// Breaks this lot when `task` ends, unless
    /// [`remove_breaker`](ParkingLot::remove_breaker) is called first. A
    /// `Lock` registers its owner this way (rule Y3).
    pub fn add_breaker(&self, task: TaskId) {
        Core::current().lot_breakers.borrow_mut().push((task, Rc::downgrade(&self.inner)));
    }

    /// Undoes one [`add_breaker`](ParkingLot::add_breaker) for `task`;
    /// false if there was none.
    pub fn remove_breaker(&self, task: TaskId) -> bool {
        let core = Core::current();
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
    pub fn is_unparked(&self) -> bool {
        !self.done && self.waiter.as_ref().is_some_and(|w| w.state.get() == State::Unparked)
    }

    /// True while this future is queued in a lot.
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
            if lot.broken_by.is_some() {
                self.done = true;
                return Poll::Ready(Err(ParkError::Broken(BROKEN)));
            }
            let waiter = Rc::new(Waiter {
                state: Cell::new(State::Parked),
                task: core.current_task.get(),
                waker: RefCell::new(Some(cx.waker().clone())),
                lot: RefCell::new(Rc::downgrade(&self.lot.inner)),
                key: Cell::new(NIL),
            });
            waiter.key.set(lot.push_back(waiter.clone()));
            drop(lot);
            self.waiter = Some(waiter);
            core.waiting_on.set("parking lot");
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
                core.waiting_on.set("parking lot");
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

#[cfg(test)]
mod tests {
    //! The lot's own behaviours: FIFO unpark, unpark_all, repark order,
    //! break_lot, cancellation withdrawing a waiter, and dropped parks.

    use std::cell::RefCell;
    use std::future::{poll_fn, Future};
    use std::pin::{pin, Pin};
    use std::rc::Rc;
    use std::task::Poll;

    use super::{ParkError, ParkingLot};
    use crate::{current_task, open_nursery, wait_all_tasks_blocked, BoxError, Builder, CancelScope, Nursery, TaskId};

    type Log = Rc<RefCell<Vec<String>>>;

    fn run<F: Future<Output = Result<(), BoxError>>>(seed: u64, main: F) {
        if let Err(e) = Builder::new().seed(seed).run(main) {
            panic!("seed {seed}: the run failed: {e}");
        }
    }

    /// Parks `count` tasks on `lot` one at a time, so they arrive in index
    /// order; each logs `"{name}{i} {outcome}"` when its park returns.
    /// Returns their task ids and cancel scopes.
    async fn park_tasks(
        n: &Nursery,
        lot: &Rc<ParkingLot>,
        log: &Log,
        name: &'static str,
        count: usize,
    ) -> Result<(Vec<TaskId>, Vec<CancelScope>), BoxError> {
        let ids = Rc::new(RefCell::new(Vec::new()));
        let mut scopes = Vec::new();
        for i in 0..count {
            let (lot, log, ids) = (lot.clone(), log.clone(), ids.clone());
            let scope = CancelScope::new();
            scopes.push(scope.clone());
            n.start_soon(async move {
                ids.borrow_mut().push(current_task().id);
                let outcome = match scope.run(lot.park()).await {
                    Ok(Some(())) => "unparked".to_string(),
                    Ok(None) => "cancelled".to_string(),
                    Err(e) => format!("{e:?}"),
                };
                log.borrow_mut().push(format!("{name}{i} {outcome}"));
            })?;
            wait_all_tasks_blocked().await?;
        }
        let ids = ids.borrow().clone();
        Ok((ids, scopes))
    }

    fn entries(log: &Log) -> Vec<String> {
        log.borrow().clone()
    }

    /// Polls a park once from the current task; it must stay pending.
    async fn poll_pending(mut fut: Pin<&mut super::Park<'_>>) {
        poll_fn(|cx| {
            assert!(fut.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await
    }

    #[test]
    fn unpark_wakes_waiters_in_arrival_order_and_returns_their_tasks() {
        for seed in 1..=8 {
            run(seed, async {
                let lot = Rc::new(ParkingLot::new());
                let log: Log = Rc::default();
                open_nursery(|n| {
                    let (lot, log) = (lot.clone(), log.clone());
                    async move {
                        let (ids, _) = park_tasks(&n, &lot, &log, "w", 4).await?;
                        assert_eq!(lot.len(), 4);
                        for (i, id) in ids.iter().enumerate() {
                            assert_eq!(lot.unpark_one(), Some(*id));
                            assert_eq!(lot.len(), 3 - i);
                            wait_all_tasks_blocked().await?;
                            assert_eq!(log.borrow().last().cloned(), Some(format!("w{i} unparked")));
                        }
                        assert_eq!(lot.unpark_one(), None);
                        assert_eq!(lot.unpark(5), 0);
                        Ok::<_, BoxError>(())
                    }
                })
                .await?;
                assert_eq!(entries(&log), ["w0 unparked", "w1 unparked", "w2 unparked", "w3 unparked"]);
                Ok(())
            });
        }
    }

    #[test]
    fn unpark_n_wakes_at_most_n_and_unpark_all_wakes_the_rest() {
        run(1, async {
            let lot = Rc::new(ParkingLot::new());
            let log: Log = Rc::default();
            open_nursery(|n| {
                let (lot, log) = (lot.clone(), log.clone());
                async move {
                    park_tasks(&n, &lot, &log, "w", 5).await?;
                    assert_eq!(lot.unpark(2), 2);
                    assert_eq!(lot.len(), 3);
                    wait_all_tasks_blocked().await?;
                    assert_eq!(log.borrow().len(), 2);
                    assert_eq!(lot.unpark_all(), 3);
                    assert!(lot.is_empty());
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            let mut all = entries(&log);
            all.sort();
            assert_eq!(all, ["w0 unparked", "w1 unparked", "w2 unparked", "w3 unparked", "w4 unparked"]);
            Ok(())
        });
    }

    #[test]
    fn repark_moves_the_oldest_waiters_to_the_back_of_the_other_lot() {
        for seed in 1..=8 {
            run(seed, async {
                let a = Rc::new(ParkingLot::new());
                let b = Rc::new(ParkingLot::new());
                let log: Log = Rc::default();
                open_nursery(|n| {
                    let (a, b, log) = (a.clone(), b.clone(), log.clone());
                    async move {
                        let (a_ids, _) = park_tasks(&n, &a, &log, "a", 3).await?;
                        let (b_ids, _) = park_tasks(&n, &b, &log, "b", 1).await?;
                        assert_eq!(a.repark(&b, 2), 2);
                        assert_eq!(a.repark(&a, 1), 0, "reparking onto itself moves nothing");
                        assert_eq!((a.len(), b.len()), (1, 3));
                        // Moved, not woken.
                        wait_all_tasks_blocked().await?;
                        assert!(entries(&log).is_empty());
                        let order: Vec<TaskId> = std::iter::from_fn(|| b.unpark_one()).collect();
                        assert_eq!(order, [b_ids[0], a_ids[0], a_ids[1]]);
                        assert_eq!(a.repark_all(&b), 1);
                        assert_eq!(b.unpark_one(), Some(a_ids[2]));
                        Ok::<_, BoxError>(())
                    }
                })
                .await?;
                assert_eq!(entries(&log).len(), 4);
                Ok(())
            });
        }
    }

    #[test]
    fn break_lot_fails_every_waiter_and_every_later_park() {
        run(1, async {
            let lot = Rc::new(ParkingLot::new());
            let other = Rc::new(ParkingLot::new());
            let log: Log = Rc::default();
            let me = current_task().id;
            open_nursery(|n| {
                let (lot, other, log) = (lot.clone(), other.clone(), log.clone());
                async move {
                    park_tasks(&n, &lot, &log, "w", 2).await?;
                    park_tasks(&n, &other, &log, "o", 1).await?;
                    assert_eq!(lot.broken_by(), None);
                    assert_eq!(lot.break_lot(me), 2);
                    assert_eq!((lot.len(), lot.broken_by()), (0, Some(me)));
                    // A waiter moved onto a broken lot fails too.
                    assert_eq!(other.repark(&lot, 1), 1);
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            let mut all = entries(&log);
            all.sort();
            let broken = "Broken(BrokenResource { reason: \"the parking lot was broken (a lock's owner task ended holding it)\" })";
            assert_eq!(all, [format!("o0 {broken}"), format!("w0 {broken}"), format!("w1 {broken}")]);
            assert!(matches!(lot.park().await, Err(ParkError::Broken(_))));
            Ok(())
        });
    }

    #[test]
    fn cancelling_a_waiter_withdraws_it_from_its_lot() {
        for seed in 1..=8 {
            run(seed, async {
                let lot = Rc::new(ParkingLot::new());
                let moved_to = Rc::new(ParkingLot::new());
                let log: Log = Rc::default();
                open_nursery(|n| {
                    let (lot, moved_to, log) = (lot.clone(), moved_to.clone(), log.clone());
                    async move {
                        let (ids, scopes) = park_tasks(&n, &lot, &log, "w", 4).await?;
                        scopes[1].cancel();
                        wait_all_tasks_blocked().await?;
                        assert_eq!(lot.len(), 3);
                        assert_eq!(entries(&log), ["w1 cancelled"]);
                        // After a repark, cancelling withdraws from the new lot.
                        assert_eq!(lot.repark(&moved_to, 2), 2);
                        scopes[2].cancel();
                        wait_all_tasks_blocked().await?;
                        assert_eq!((lot.len(), moved_to.len()), (1, 1));
                        assert_eq!(moved_to.unpark_one(), Some(ids[0]));
                        assert_eq!(lot.unpark_one(), Some(ids[3]));
                        Ok::<_, BoxError>(())
                    }
                })
                .await?;
                assert_eq!(entries(&log)[..2], ["w1 cancelled", "w2 cancelled"]);
                Ok(())
            });
        }
    }

    #[test]
    fn unpark_beats_a_later_cancel() {
        run(1, async {
            let lot = Rc::new(ParkingLot::new());
            let log: Log = Rc::default();
            open_nursery(|n| {
                let (lot, log) = (lot.clone(), log.clone());
                async move {
                    let (_, scopes) = park_tasks(&n, &lot, &log, "w", 1).await?;
                    assert_eq!(lot.unpark(1), 1);
                    scopes[0].cancel();
                    Ok::<_, BoxError>(())
                }
            })
            .await?;
            assert_eq!(entries(&log), ["w0 unparked"]);
            Ok(())
        });
    }

    #[test]
    fn dropping_parks_leaves_the_lot_consistent() {
        run(1, async {
            let lot = ParkingLot::new();
            let me = current_task().id;
            // Dropped while queued: withdrawn.
            {
                let mut p = pin!(lot.park());
                poll_pending(p.as_mut()).await;
                assert!(p.is_parked() && !p.is_unparked());
                assert_eq!(lot.len(), 1);
            }
            assert_eq!(lot.len(), 0);
            // Dropped after being unparked: nothing left behind, and the
            // next unpark goes to the next waiter.
            let mut first = Box::pin(lot.park());
            poll_pending(first.as_mut()).await;
            let mut second = Box::pin(lot.park());
            poll_pending(second.as_mut()).await;
            assert_eq!(lot.unpark_one(), Some(me));
            assert!(first.is_unparked() && !first.is_parked());
            drop(first);
            assert_eq!(lot.len(), 1);
            assert_eq!(lot.unpark_one(), Some(me));
            assert_eq!(second.as_mut().await, Ok(()));
            assert!(!second.is_unparked(), "reported, so no longer pending a hand-over");
            assert!(lot.is_empty());
            // Never polled: nothing to undo.
            drop(lot.park());
            assert!(lot.is_empty());
            Ok(())
        });
    }
}
