//! Pending deadlines: a binary heap with lazy deletion, as Trio has used
//! since python-trio/trio#1629.
//!
//! Each timer is a slab entry (what to do when it fires) plus one heap entry
//! `(deadline, seq, key)`. Cancelling a timer only removes the slab entry;
//! moving it earlier pushes a new heap entry with a new `seq`. A heap entry
//! whose `seq` no longer matches its slab entry is stale and is skipped when
//! it reaches the top. Moving a timer *later* only updates its slab entry:
//! its heap entry is then early, and is pushed again at the true deadline
//! when it reaches the top (a server that pushes a connection's idle
//! deadline back on every request pays one heap push per idle period, not
//! per request). So setting, moving and cancelling cost O(log n), O(log n)
//! or O(1), and O(1), with no search, and a million pending sleeps are a
//! million heap entries. When stale entries outnumber live ones the heap is rebuilt, which
//! bounds its size to a constant factor of the live timers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Weak;
use std::task::Waker;

use slab::Slab;

use crate::kernel::cancel::ScopeNode;
use crate::kernel::clock::Instant;

/// Don't bother rebuilding tiny heaps. Trio rebuilds once stale entries are
/// more than half the heap; the floor keeps small timer counts from
/// rebuilding over and over.
const REBUILD_FLOOR: usize = 1024;

/// What a timer does when it fires.
pub(crate) enum TimerAction {
    /// Wake a sleeping future (which then sees that its timer fired).
    Wake(Option<Waker>),
    /// Cancel a scope whose deadline this is.
    CancelScope(Weak<ScopeNode>),
}

struct Entry {
    deadline: Instant,
    seq: u64,
    fired: bool,
    action: TimerAction,
}

#[derive(Default)]
pub(crate) struct Timers {
    entries: Slab<Entry>,
    heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    seq: u64,
    /// Entries not yet fired: each has exactly one live heap entry.
    armed: usize,
}

/// A fired timer's action, run after the timer table is released.
pub(crate) enum Fired {
    Wake(Waker),
    CancelScope(Weak<ScopeNode>),
}

impl Timers {
    pub(crate) fn insert(&mut self, deadline: Instant, action: TimerAction) -> usize {
        self.seq += 1;
        let seq = self.seq;
        let key = self.entries.insert(Entry { deadline, seq, fired: false, action });
        self.heap.push(Reverse((deadline, seq, key)));
        self.armed += 1;
        key
    }

    /// Moves an existing timer to a new deadline (re-arming it if it fired).
    pub(crate) fn reset(&mut self, key: usize, deadline: Instant) {
        if let Some(e) = self.entries.get_mut(key) {
            if !e.fired && deadline >= e.deadline {
                // Postponed: its heap entry, now early, stays. When it
                // comes due it is pushed again at the new deadline (see
                // `expire`). A server moving a connection's idle deadline
                // on every request pays no heap push for it.
                e.deadline = deadline;
                return;
            }
        }
        self.seq += 1;
        let seq = self.seq;
        if let Some(e) = self.entries.get_mut(key) {
            if e.fired {
                self.armed += 1;
            }
            e.fired = false;
            e.deadline = deadline;
            e.seq = seq;
            self.heap.push(Reverse((deadline, seq, key)));
            self.maybe_rebuild();
        }
    }

    pub(crate) fn remove(&mut self, key: usize) {
        if let Some(e) = self.entries.try_remove(key) {
            if !e.fired {
                self.armed -= 1;
                self.maybe_rebuild();
            }
        }
    }

    pub(crate) fn is_fired(&self, key: usize) -> bool {
        self.entries.get(key).is_some_and(|e| e.fired)
    }

    /// Keeps the waker a sleep will be woken with up to date.
    pub(crate) fn set_waker(&mut self, key: usize, waker: &Waker) {
        if let Some(Entry { action: TimerAction::Wake(slot), .. }) = self.entries.get_mut(key) {
            match slot {
                Some(w) if w.will_wake(waker) => {}
                _ => *slot = Some(waker.clone()),
            }
        }
    }

    /// Timers in the table (fired or not): zero when nothing is left behind.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.armed == 0
    }

    /// Timers armed and not fired yet (`current_statistics`).
    pub(crate) fn armed(&self) -> usize {
        self.armed
    }

    /// A lower bound of the earliest armed deadline (dropping stale heap
    /// entries on the way): a postponed timer's heap entry still holds its
    /// old, earlier deadline. Waking at it is harmless, `expire` then moves
    /// the entry to its true deadline, and it costs one early wake-up per
    /// postponed timer per period, where settling eagerly here would cost a
    /// heap push per postponement, each time the loop goes idle.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((deadline, seq, key))) = self.heap.peek() {
            if self.is_live(seq, key) {
                return Some(deadline);
            }
            self.heap.pop();
        }
        None
    }

    /// Fires every timer whose deadline is `<= now`, appending what to do to
    /// `out`. The caller runs the actions after releasing the table. A heap
    /// entry that comes due for a timer postponed since is pushed again at
    /// the true deadline instead.
    pub(crate) fn expire(&mut self, now: Instant, out: &mut Vec<Fired>) {
        while let Some(&Reverse((deadline, seq, key))) = self.heap.peek() {
            if deadline > now {
                break;
            }
            self.heap.pop();
            if !self.is_live(seq, key) {
                continue;
            }
            let e = &mut self.entries[key];
            if e.deadline > deadline {
                self.heap.push(Reverse((e.deadline, seq, key)));
                continue;
            }
            e.fired = true;
            self.armed -= 1;
            match &mut e.action {
                TimerAction::Wake(w) => {
                    if let Some(w) = w.take() {
                        out.push(Fired::Wake(w));
                    }
                }
                TimerAction::CancelScope(scope) => out.push(Fired::CancelScope(scope.clone())),
            }
        }
    }

    fn is_live(&self, seq: u64, key: usize) -> bool {
        self.entries.get(key).is_some_and(|e| e.seq == seq && !e.fired)
    }

    fn maybe_rebuild(&mut self) {
        if self.heap.len() > REBUILD_FLOOR && self.heap.len() > 2 * self.armed {
            let entries = &self.entries;
            self.heap.retain(|&Reverse((_, seq, key))| entries.get(key).is_some_and(|e| e.seq == seq && !e.fired));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(n: u64) -> Instant {
        Instant::from_nanos(n)
    }

    #[test]
    fn expire_fires_in_deadline_order_and_skips_cancelled_and_moved() {
        let mut t = Timers::default();
        let a = t.insert(at(30), TimerAction::Wake(None));
        let b = t.insert(at(10), TimerAction::Wake(None));
        let c = t.insert(at(20), TimerAction::Wake(None));
        t.remove(b);
        t.reset(c, at(40));
        // c was postponed in place: its old deadline is the lower bound.
        assert_eq!(t.next_deadline(), Some(at(20)));
        let mut out = Vec::new();
        t.expire(at(25), &mut out);
        assert!(out.is_empty(), "nothing was due at 25");
        assert_eq!(t.next_deadline(), Some(at(30)));
        t.expire(at(35), &mut out);
        assert!(t.is_fired(a));
        assert!(!t.is_fired(c));
        assert_eq!(t.next_deadline(), Some(at(40)));
        t.remove(a);
        t.remove(c);
        assert_eq!(t.len(), 0);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn postponing_a_timer_adds_no_heap_entry_and_fires_it_at_the_new_deadline() {
        let mut t = Timers::default();
        let k = t.insert(at(10), TimerAction::Wake(None));
        let other = t.insert(at(15), TimerAction::Wake(None));
        for d in 11..1000 {
            t.reset(k, at(d));
        }
        assert_eq!(t.heap.len(), 2, "postponing must not push");
        let mut out = Vec::new();
        t.expire(at(500), &mut out);
        assert!(!t.is_fired(k), "fired at its old deadline");
        assert!(t.is_fired(other));
        // Only a lower bound until the early heap entry came due:
        assert_eq!(t.next_deadline(), Some(at(999)));
        t.expire(at(999), &mut out);
        assert!(t.is_fired(k));
        // Moving it earlier again (re-arming) still works.
        t.reset(k, at(2000));
        t.reset(k, at(1500));
        assert_eq!(t.next_deadline(), Some(at(1500)));
        t.reset(k, at(1800));
        assert_eq!(t.next_deadline(), Some(at(1500)), "a lower bound");
        t.expire(at(1500), &mut out);
        assert!(!t.is_fired(k));
        assert_eq!(t.next_deadline(), Some(at(1800)));
        t.remove(k);
        t.remove(other);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn stale_entries_are_bounded_by_rebuilds() {
        let mut t = Timers::default();
        let keep = t.insert(at(1), TimerAction::Wake(None));
        for i in 0..100_000 {
            let k = t.insert(at(10 + i), TimerAction::Wake(None));
            t.remove(k);
        }
        assert!(t.heap.len() <= 2 * REBUILD_FLOOR + 2, "heap grew to {}", t.heap.len());
        assert_eq!(t.next_deadline(), Some(at(1)));
        t.remove(keep);
    }
}
