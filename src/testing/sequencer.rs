//! [`Sequencer`]: force code in different tasks to run in an explicit
//! order (Trio's `trio.testing.Sequencer`).
//!
//! Each position `n` has an [`Event`]; a turn at `n` waits for event `n`
//! (position 0 does not wait), and ending the turn (dropping its
//! [`SequencerTurn`]) sets event `n + 1`. As in Trio, a waiter whose wait
//! is cancelled *breaks* the sequencer: every waiting turn wakes with
//! [`SequencerError::Broken`], and so does every later one, since the order
//! the test relies on can no longer happen. In Rust a turn's future can
//! also be dropped while it waits (a `select!`); that breaks the sequencer
//! the same way, for the same reason.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::rc::Rc;

use crate::sync::Event;

/// Runs code in different tasks in a fixed linear order: the turn at
/// position 0 starts at once, the turn at `n` once the turn at `n - 1` has
/// ended.
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// use trioxide::{run, open_nursery, BoxError};
/// use trioxide::testing::Sequencer;
///
/// let out = run(async {
///     let seq = Rc::new(Sequencer::new());
///     let log = Rc::new(RefCell::new(Vec::new()));
///     open_nursery(|n| {
///         let (seq, log) = (seq.clone(), log.clone());
///         async move {
///             for (worker, turns) in [(1, [0, 3]), (2, [1, 2])] {
///                 let (seq, log) = (seq.clone(), log.clone());
///                 n.start_soon(async move {
///                     for t in turns {
///                         let _turn = seq.turn(t).await?;
///                         log.borrow_mut().push((worker, t));
///                     } // the turn ends when `_turn` is dropped
///                     Ok::<_, BoxError>(())
///                 })?;
///             }
///             Ok::<_, BoxError>(())
///         }
///     })
///     .await?;
///     let log = log.borrow().clone();
///     Ok::<_, BoxError>(log)
/// });
/// assert_eq!(out.unwrap(), [(1, 0), (2, 1), (2, 2), (1, 3)]);
/// ```
#[derive(Default)]
pub struct Sequencer {
    points: RefCell<HashMap<usize, Rc<Event>>>,
    claimed: RefCell<HashSet<usize>>,
    broken: Cell<bool>,
}

impl fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut claimed: Vec<usize> = self.claimed.borrow().iter().copied().collect();
        claimed.sort_unstable();
        f.debug_struct("Sequencer").field("claimed", &claimed).field("broken", &self.broken.get()).finish()
    }
}

/// Why [`Sequencer::turn`] failed (Trio raises `RuntimeError` for each).
///
/// None of them is a cancellation: a cancelled wait reports
/// [`WaitCancelled`](SequencerError::WaitCancelled), which an enclosing
/// cancel scope does not catch, as Trio's `RuntimeError(...) from None`.
///
/// ```
/// use trioxide::run;
/// use trioxide::testing::{Sequencer, SequencerError};
///
/// run(async {
///     let seq = Sequencer::new();
///     drop(seq.turn(0).await.unwrap());
///     assert_eq!(seq.turn(0).await.unwrap_err(), SequencerError::Reused(0));
///     assert_eq!(SequencerError::Reused(0).to_string(), "Attempted to reuse sequence point 0");
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequencerError {
    /// This position was already taken by another turn.
    Reused(usize),
    /// The sequencer was broken by a cancelled (or dropped) wait.
    Broken,
    /// This turn's own wait was cancelled; the sequencer is now broken.
    WaitCancelled,
}

impl fmt::Display for SequencerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SequencerError::Reused(n) => write!(f, "Attempted to reuse sequence point {n}"),
            SequencerError::Broken => f.write_str("sequence broken!"),
            SequencerError::WaitCancelled => f.write_str("Sequencer wait cancelled -- sequence broken"),
        }
    }
}

impl std::error::Error for SequencerError {}

/// The turn at one position of a [`Sequencer`]; dropping it ends the turn
/// and lets the next position start.
///
/// ```
/// use trioxide::run;
/// use trioxide::testing::Sequencer;
///
/// run(async {
///     let seq = Sequencer::new();
///     let turn = seq.turn(0).await.unwrap();
///     assert_eq!(turn.position(), 0);
///     drop(turn); // position 1 may start now
///     drop(seq.turn(1).await.unwrap());
/// });
/// ```
#[must_use = "the turn ends as soon as this guard is dropped"]
pub struct SequencerTurn<'a> {
    seq: &'a Sequencer,
    position: usize,
}

impl fmt::Debug for SequencerTurn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SequencerTurn").field("position", &self.position).finish()
    }
}

impl SequencerTurn<'_> {
    /// This turn's position.
    ///
    /// ```
    /// trioxide::run(async {
    ///     let seq = trioxide::testing::Sequencer::new();
    ///     assert_eq!(seq.turn(0).await.unwrap().position(), 0);
    /// });
    /// ```
    pub fn position(&self) -> usize {
        self.position
    }
}

impl Drop for SequencerTurn<'_> {
    fn drop(&mut self) {
        // Trio's `finally: self._sequence_points[position + 1].set()`.
        self.seq.point(self.position + 1).set();
    }
}

/// Breaks the sequencer if a turn's wait ends without being disarmed
/// (cancelled, or its future dropped).
struct BreakOnDrop<'a> {
    seq: &'a Sequencer,
    armed: bool,
}

impl Drop for BreakOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.seq.break_all();
        }
    }
}

impl Sequencer {
    /// A sequencer whose turns have not started.
    ///
    /// ```
    /// let seq = trioxide::testing::Sequencer::new();
    /// # let _ = seq;
    /// ```
    pub fn new() -> Sequencer {
        Sequencer::default()
    }

    fn point(&self, position: usize) -> Rc<Event> {
        self.points.borrow_mut().entry(position).or_insert_with(|| Rc::new(Event::new())).clone()
    }

    fn break_all(&self) {
        self.broken.set(true);
        let events: Vec<Rc<Event>> = self.points.borrow().values().cloned().collect();
        for e in events {
            e.set();
        }
    }

    /// Waits for the turn at `position` (Trio's `async with seq(position)`):
    /// at once for 0, else until the turn at `position - 1` has ended.
    /// Returns the turn; dropping it ends the turn. A checkpoint for
    /// positions above 0.
    ///
    /// Errors: [`SequencerError::Reused`] if the position was taken before;
    /// [`SequencerError::Broken`] if the sequencer is broken (also when that
    /// happens while waiting); [`SequencerError::WaitCancelled`] if this
    /// wait is cancelled, which breaks the sequencer for every other turn.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use trioxide::{run, open_nursery, BoxError};
    /// use trioxide::testing::Sequencer;
    ///
    /// run(open_nursery(|n| async move {
    ///     let seq = Rc::new(Sequencer::new());
    ///     let s = seq.clone();
    ///     n.start_soon(async move {
    ///         let _t = s.turn(1).await?; // waits for turn 0 to end
    ///         Ok::<_, BoxError>(())
    ///     })?;
    ///     drop(seq.turn(0).await?);
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub async fn turn(&self, position: usize) -> Result<SequencerTurn<'_>, SequencerError> {
        if self.claimed.borrow().contains(&position) {
            return Err(SequencerError::Reused(position));
        }
        if self.broken.get() {
            return Err(SequencerError::Broken);
        }
        self.claimed.borrow_mut().insert(position);
        if position != 0 {
            let event = self.point(position);
            let mut guard = BreakOnDrop { seq: self, armed: true };
            let waited = event.wait().await;
            guard.armed = false;
            if waited.is_err() {
                self.break_all();
                return Err(SequencerError::WaitCancelled);
            }
            if self.broken.get() {
                return Err(SequencerError::Broken);
            }
        }
        Ok(SequencerTurn { seq: self, position })
    }

    /// Runs `body` in the turn at `position`: waits for the turn, runs the
    /// body, ends the turn (whatever the body returned). Errors of the turn
    /// come out as `Err`, the body's value as `Ok`.
    ///
    /// ```
    /// use trioxide::run;
    /// use trioxide::testing::Sequencer;
    ///
    /// run(async {
    ///     let seq = Sequencer::new();
    ///     assert_eq!(seq.run(0, async { 5 }).await, Ok(5));
    ///     assert_eq!(seq.run(1, async { 6 }).await, Ok(6));
    /// });
    /// ```
    pub async fn run<F: Future>(&self, position: usize, body: F) -> Result<F::Output, SequencerError> {
        let _turn = self.turn(position).await?;
        Ok(body.await)
    }
}
