//! The run trace: an opt-in recorder of what the scheduler did, folded into
//! one 64-bit hash, so two runs can be compared bit for bit
//! ([`Builder::trace`](crate::Builder::trace),
//! [`Builder::run_with_trace`](crate::Builder::run_with_trace)).
//!
//! Every task step, every batch of timer firings, every I/O wait that
//! reported readiness, every wake-up from another thread and every jump of
//! a mock clock is one [`TraceEvent`]. Events are folded as they happen
//! (FNV-1a over 64-bit words: xor, then multiply by the FNV prime), so the
//! recorder costs no memory beyond the first `keep` events kept for
//! diagnosis. When tracing is off the scheduler pays one predictable
//! branch per step.

use crate::kernel::clock::Instant;
use crate::kernel::task::TaskId;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// One thing the scheduler did, as recorded by a run trace.
///
/// ```
/// use trioxide::{Builder, TraceEvent};
/// let ((), _, trace) = Builder::new().seed(1).run_with_trace(async {}, 10);
/// // The main task's single step is the only event of this run.
/// assert!(matches!(trace.events(), [TraceEvent::Step(_)]));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceEvent {
    /// The task was polled once.
    Step(TaskId),
    /// `fired` deadlines (sleeps, cancel scopes) expired at `at` on the
    /// run's clock.
    Timers {
        /// The clock reading they expired at.
        at: Instant,
        /// How many.
        fired: u32,
    },
    /// An I/O wait reported `events` readiness events.
    Io {
        /// How many events the driver returned.
        events: u32,
    },
    /// Another thread woke the task.
    Remote(TaskId),
    /// The mock clock autojumped to this deadline.
    Jump(Instant),
}

impl TraceEvent {
    fn words(self) -> (u64, u64) {
        match self {
            TraceEvent::Step(id) => (1, id.as_u64()),
            TraceEvent::Timers { at, fired } => (2 | (fired as u64) << 8, at.as_nanos()),
            TraceEvent::Io { events } => (3, events as u64),
            TraceEvent::Remote(id) => (4, id.as_u64()),
            TraceEvent::Jump(to) => (5, to.as_nanos()),
        }
    }
}

/// A run's trace: the hash of all its events, their number, and the first
/// few kept for diagnosis.
///
/// ```
/// use trioxide::{checkpoint, Builder};
/// let run = |seed| Builder::new().seed(seed).run_with_trace(async { checkpoint().await }, 100).2;
/// let (a, b) = (run(5), run(5));
/// assert_eq!(a.hash(), b.hash()); // one seed, one trace
/// assert_eq!(a.len(), 2); // main stepped twice
/// assert_eq!(a.first_difference(&b), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    hash: u64,
    len: u64,
    keep: usize,
    events: Vec<TraceEvent>,
}

impl Trace {
    pub(crate) fn new(keep: usize) -> Trace {
        Trace { hash: FNV_OFFSET, len: 0, keep, events: Vec::new() }
    }

    /// Folds one event in.
    #[inline(never)]
    pub(crate) fn record(&mut self, e: TraceEvent) {
        let (a, b) = e.words();
        self.hash = (self.hash ^ a).wrapping_mul(FNV_PRIME);
        self.hash = (self.hash ^ b).wrapping_mul(FNV_PRIME);
        if self.events.len() < self.keep {
            self.events.push(e);
        }
        self.len += 1;
    }

    /// The hash of every event, in order (FNV-1a over two 64-bit words per
    /// event). Equal hashes mean equal traces, up to collisions.
    ///
    /// ```
    /// let ((), report, trace) = trioxide::Builder::new().seed(2).run_with_trace(async {}, 0);
    /// assert_eq!(report.trace_hash, Some(trace.hash()));
    /// ```
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// How many events were recorded (kept or not).
    ///
    /// ```
    /// let ((), _, trace) = trioxide::Builder::new().seed(2).run_with_trace(async {}, 0);
    /// assert_eq!((trace.len(), trace.events().len()), (1, 0));
    /// ```
    #[allow(clippy::len_without_is_empty)] // a finished run has stepped main at least once
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The first events, as many as were asked to be kept.
    ///
    /// ```
    /// use trioxide::{checkpoint, Builder, TraceEvent};
    /// let ((), _, trace) = Builder::new().seed(2).run_with_trace(async { checkpoint().await.unwrap() }, 1);
    /// assert_eq!(trace.events().len(), 1);
    /// assert!(matches!(trace.events()[0], TraceEvent::Step(_)));
    /// ```
    pub fn events(&self) -> &[TraceEvent] {
        &self.events
    }

    /// The index of the first kept event where the two traces differ, or
    /// where one kept list ends before the other's. `None` if the kept
    /// events, the lengths and the hashes all agree. If the kept events
    /// agree but the traces do not, the index is the number of kept events
    /// (the difference lies beyond them).
    ///
    /// ```
    /// use trioxide::{checkpoint, Builder};
    /// let short = Builder::new().seed(3).run_with_trace(async {}, 10).2;
    /// let long = Builder::new().seed(3).run_with_trace(async { checkpoint().await.unwrap() }, 10).2;
    /// assert_eq!(short.first_difference(&long), Some(1));
    /// ```
    pub fn first_difference(&self, other: &Trace) -> Option<usize> {
        if let Some(i) = self.events.iter().zip(&other.events).position(|(a, b)| a != b) {
            return Some(i);
        }
        if self.hash == other.hash && self.len == other.len && self.events.len() == other.events.len() {
            return None;
        }
        Some(self.events.len().min(other.events.len()))
    }
}
