//! Timeouts that enter lazily: the kernel half of `move_on_after` and
//! friends ([`TimeoutScoped`]). A timeout's first poll runs without a
//! scope node of its own while nothing can cancel it; the parent module's
//! docs ("Timeouts enter lazily") say when a node is made and why the
//! single-load cancel check stays right. A child of `cancel` so that it
//! reads `ScopeNode`'s private state, which nothing else may.

use std::cell::{Cell, OnceCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;

use super::*;

thread_local! {
    /// The innermost timeout whose first poll is running ([`Frame`]), or
    /// null. Set by that poll and restored before it returns (by a guard,
    /// also when the body panics), so it only ever points at a frame of a
    /// future being polled further up this thread's call stack.
    static LAZY_TOP: Cell<*const Frame> = const { Cell::new(std::ptr::null()) };
}

#[inline]
fn lazy_top() -> *const Frame {
    LAZY_TOP.with(Cell::get)
}

/// Restores `LAZY_TOP` when a timeout's first poll ends, even by a panic.
struct RestoreTop(*const Frame);

impl Drop for RestoreTop {
    #[inline]
    fn drop(&mut self) {
        LAZY_TOP.with(|t| t.set(self.0));
    }
}

/// `Frame::relative` when there is no relative deadline. A timeout of
/// `u64::MAX` nanoseconds (584 years) or more means the same: its deadline
/// would saturate at `Instant::FAR_FUTURE`.
const NO_RELATIVE: u64 = u64::MAX;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum LazyPhase {
    /// Not polled yet.
    New,
    /// The first poll is running transparently (no node unless something
    /// needed one).
    First,
    /// Entered, with a node: later polls behave as [`Scoped`]'s.
    Inside,
    Done,
}

/// What a timeout scope knows about itself, node or no node. Every field is
/// a `Cell`: while the first poll runs, code deeper in the same call stack
/// reaches the frame through `LAZY_TOP` (a shared pointer) to give it a node.
pub(crate) struct Frame {
    /// The scope's node: made by [`TimeoutScoped::scope`] (a handle was
    /// asked for), at entry when the scope cannot be transparent, or when
    /// the first poll needs one (`effective_status`, or the body blocking).
    node: OnceCell<Rc<ScopeNode>>,
    /// The absolute deadline; a relative one is added to it at entry.
    deadline: Cell<Instant>,
    /// The relative deadline in nanoseconds, `NO_RELATIVE` if none (or once
    /// it was added at entry). Kept as nanoseconds so that a constant
    /// timeout is converted at compile time.
    relative: Cell<u64>,
    shield: Cell<bool>,
    phase: Cell<LazyPhase>,
    /// The physical current status when the first poll began.
    parent: Cell<*const ScopeNode>,
    /// The `LAZY_TOP` this frame's first poll replaced.
    prev: Cell<*const Frame>,
}

impl Frame {
    /// Gives this frame its node, entered under `parent` (a transparent
    /// first poll turning out to need one).
    fn materialise(&self, core: &Core, parent: *const ScopeNode) -> &Rc<ScopeNode> {
        debug_assert!(self.node.get().is_none() && self.phase.get() == LazyPhase::First);
        let node = Rc::new(ScopeNode::new(State::Unentered));
        node.deadline.set(self.deadline.get());
        node.enter_materialised(core, parent);
        self.node.get_or_init(|| node)
    }

    fn relative_duration(&self) -> Option<Duration> {
        match self.relative.get() {
            NO_RELATIVE => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// A node for a frame that has none, in the state the frame is in.
    fn make_node(&self) -> Rc<ScopeNode> {
        let state = match self.phase.get() {
            LazyPhase::New => State::Unentered,
            // A first poll that needed no node left no trace in the tree;
            // it was neither cancelled nor did it catch anything.
            LazyPhase::First | LazyPhase::Inside | LazyPhase::Done => State::Exited,
        };
        let node = ScopeNode::new(state);
        node.deadline.set(self.deadline.get());
        if state == State::Unentered {
            node.relative.set(self.relative_duration());
        }
        node.shield.set(self.shield.get());
        Rc::new(node)
    }
}

/// Whether a transparent timeout sits between `current` and the code being
/// polled: the top frame was entered under `current` (the check that keeps
/// `check_nesting` exact; one thread-local load when no timeout is in its
/// first poll).
#[inline]
pub(super) fn lazy_frame_over(current: *const ScopeNode) -> bool {
    let top = lazy_top();
    // SAFETY: a non-null LAZY_TOP points at the frame of a future whose poll
    // is running further up this call stack (see `LAZY_TOP`).
    !top.is_null() && unsafe { (*top).parent.get() } == current
}

/// The status the code being polled is logically in, without making
/// nodes: `current`, or the node of the innermost timeout in its first poll
/// above it; `None` if that timeout has no node (nothing can be nested in
/// it yet).
pub(super) fn logical_status(current: *const ScopeNode) -> Option<*const ScopeNode> {
    if !lazy_frame_over(current) {
        return Some(current);
    }
    // SAFETY: as in `lazy_frame_over`.
    let top = unsafe { &*lazy_top() };
    top.node.get().map(Rc::as_ptr)
}

/// The status to hang a new node under: `current` (the physical current
/// status), unless the code runs inside timeouts whose first poll is
/// transparent; then those get their nodes (outermost first, each under the
/// previous) and the innermost one's is returned. One thread-local load
/// when no timeout is in its first poll.
#[inline]
pub(crate) fn effective_status(core: &Core, current: *const ScopeNode) -> *const ScopeNode {
    if !lazy_frame_over(current) {
        return current;
    }
    materialise_frames(core, current)
}

#[cold]
#[inline(never)]
fn materialise_frames(core: &Core, current: *const ScopeNode) -> *const ScopeNode {
    // The frames entered under `current` form the top of the chain (a
    // timeout that gets a node makes every transparent frame below it
    // under `current` get one first, so the transparent ones are always the
    // innermost). Collect the ones still without a node.
    let mut pending: Vec<&Frame> = Vec::new();
    let mut base = current;
    let mut f = lazy_top();
    while !f.is_null() {
        // SAFETY: every frame on the chain belongs to a future being polled
        // further up this call stack (see `LAZY_TOP`).
        let frame = unsafe { &*f };
        if frame.parent.get() != current {
            break;
        }
        if let Some(node) = frame.node.get() {
            base = Rc::as_ptr(node);
            break;
        }
        pending.push(frame);
        f = frame.prev.get();
    }
    for frame in pending.into_iter().rev() {
        base = Rc::as_ptr(frame.materialise(core, base));
    }
    base
}

pin_project! {
    /// A cancel scope around `body` whose node is made only when needed:
    /// the future under [`move_on_after`](crate::move_on_after) and the
    /// other timeouts.
    ///
    /// Its first poll is *transparent* when the scope is not shielded and
    /// its deadline has not passed at entry: then nothing can cancel it
    /// before that poll ends (its timer is not armed, nobody holds a
    /// handle), so its code is cancelled exactly when its parent is, and the
    /// parent's node serves as the current status. If the body finishes in
    /// that poll, the scope costs a clock read and no allocation. A node is
    /// made (and entered under the right parent) as soon as something needs
    /// one: the body blocks, or a scope, nursery or `start` is entered inside
    /// it (`effective_status`), or a handle is asked for.
    pub(crate) struct TimeoutScoped<F> {
        #[pin]
        body: F,
        frame: Frame,
    }

    impl<F> PinnedDrop for TimeoutScoped<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(node) = this.frame.node.get() {
                if matches!(this.frame.phase.get(), LazyPhase::First | LazyPhase::Inside) {
                    node.exit(None);
                }
            }
        }
    }
}

impl<F> TimeoutScoped<F> {
    /// A timeout scope with an absolute deadline, a relative one, or both
    /// (the earlier wins).
    #[inline]
    pub(crate) fn new(body: F, deadline: Instant, relative: Option<Duration>) -> Self {
        let relative = match relative {
            Some(d) => u64::try_from(d.as_nanos()).unwrap_or(NO_RELATIVE),
            None => NO_RELATIVE,
        };
        TimeoutScoped {
            body,
            frame: Frame {
                node: OnceCell::new(),
                deadline: Cell::new(deadline),
                relative: Cell::new(relative),
                shield: Cell::new(false),
                phase: Cell::new(LazyPhase::New),
                parent: Cell::new(std::ptr::null()),
                prev: Cell::new(std::ptr::null()),
            },
        }
    }

    /// Shields (or unshields) the scope; with a handle already made, as
    /// [`CancelScope::set_shield`].
    pub(crate) fn set_shield(&self, shield: bool) {
        self.frame.shield.set(shield);
        if let Some(node) = self.frame.node.get() {
            CancelScope::from_node(node.clone()).set_shield(shield);
        }
    }

    /// A handle to the scope, making its node if it has none.
    pub(crate) fn scope(&self) -> CancelScope {
        CancelScope::from_node(self.frame.node.get_or_init(|| self.frame.make_node()).clone())
    }
}

impl<F> std::fmt::Debug for TimeoutScoped<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fr = &self.frame;
        match fr.node.get() {
            Some(node) => CancelScope::from_node(node.clone()).fmt(f),
            None => f
                .debug_struct("CancelScope")
                .field("phase", &fr.phase.get())
                .field("shield", &fr.shield.get())
                .field("deadline", &fr.deadline.get())
                .field("relative_deadline", &fr.relative_duration())
                .finish(),
        }
    }
}

impl<F> TimeoutScoped<F> {
    /// Polls the timeout for the public future `op` (`MoveOn` or
    /// `FailAfter`), which misuse panics name.
    #[inline]
    pub(crate) fn poll_for<T, E>(self: Pin<&mut Self>, cx: &mut Context<'_>, op: ScopeOp) -> Poll<Result<Option<T>, E>>
    where
        F: Future<Output = Result<T, E>>,
        E: Cancellation,
    {
        let mut this = self.project();
        let frame: &Frame = this.frame;
        let core = Core::current_for(op.name());
        let prev = core.current_status_ptr();
        let phase = frame.phase.get();
        if phase == LazyPhase::New && frame.node.get().is_none() {
            if let Some(out) = first_poll(frame, core, prev, this.body.as_mut(), cx, op) {
                return out;
            }
        }
        let node = match phase {
            LazyPhase::New => {
                // A handle was asked for, or the scope is shielded or past
                // its deadline already: enter a node as `CancelScope::run`
                // does.
                let node = frame.node.get_or_init(|| {
                    // (`first_poll` has already added a relative deadline.)
                    frame.relative.set(NO_RELATIVE);
                    frame.make_node()
                });
                node.enter(core, effective_status(core, prev), op);
                frame.phase.set(LazyPhase::Inside);
                node
            }
            LazyPhase::Inside => {
                let node = frame.node.get().expect("an entered timeout has its node");
                check_nesting_for(node, core, prev, op);
                node
            }
            LazyPhase::First | LazyPhase::Done => polled_after_completion(op),
        };
        core.current_status.set(Rc::as_ptr(node));
        let out = this.body.as_mut().poll(cx);
        core.current_status.set(prev);
        match out {
            Poll::Pending => {
                node.arm_if_blocked(core);
                Poll::Pending
            }
            Poll::Ready(out) => {
                frame.phase.set(LazyPhase::Done);
                Poll::Ready(finish(node, out, op))
            }
        }
    }
}

/// The first poll of a timeout. Fixes the deadline (the one clock read),
/// and if the scope can be transparent polls the body under the current
/// status and returns its outcome; `None` if the scope needs its node from
/// the start (shielded, or its deadline already passed: cancelled at entry).
#[inline]
fn first_poll<F, T, E>(
    frame: &Frame,
    core: &Core,
    prev: *const ScopeNode,
    body: Pin<&mut F>,
    cx: &mut Context<'_>,
    op: ScopeOp,
) -> Option<Poll<Result<Option<T>, E>>>
where
    F: Future<Output = Result<T, E>>,
    E: Cancellation,
{
    // Trio's rule: the deadline is fixed at entry (`now + timeout`), and a
    // deadline already passed cancels the scope at once (C10, C11). The
    // clock must be read here, not when the node is made: see DESIGN.md §3.
    // (`relative` is left as it is: a node made from now on is made as
    // entered or exited, which reads only `deadline`.)
    let relative = frame.relative.get();
    let mut deadline = frame.deadline.get();
    if relative != NO_RELATIVE {
        let now = core.now();
        deadline = deadline.min(Instant::from_nanos(now.as_nanos().saturating_add(relative)));
        frame.deadline.set(deadline);
        if deadline <= now {
            return None;
        }
    } else if deadline != Instant::FAR_FUTURE && deadline <= core.now() {
        return None;
    }
    if frame.shield.get() {
        return None;
    }
    frame.parent.set(prev);
    frame.phase.set(LazyPhase::First);
    let me: *const Frame = frame;
    frame.prev.set(LAZY_TOP.with(|t| t.replace(me)));
    let restore = RestoreTop(frame.prev.get());
    let out = body.poll(cx);
    drop(restore);
    Some(match out {
        Poll::Ready(out) => {
            frame.phase.set(LazyPhase::Done);
            match frame.node.get() {
                // Never needed a node: nothing was entered inside it, and it
                // was not cancelled, so it catches nothing.
                None => Poll::Ready(out.map(Some)),
                Some(node) => Poll::Ready(finish(node, out, op)),
            }
        }
        Poll::Pending => {
            let node = match frame.node.get() {
                Some(node) => node,
                None => frame.materialise(core, effective_status(core, prev)),
            };
            frame.phase.set(LazyPhase::Inside);
            node.arm_if_blocked(core);
            Poll::Pending
        }
    })
}

/// The earliest deadline among the scopes that could cancel the code
/// calling it: Trio's `current_effective_deadline()`.
///
/// It walks out from the innermost scope, taking the earliest deadline,
/// and stops after the first shielded scope (whose deadline still counts:
/// a shield keeps out outer cancellations, not its own). With no deadline
/// anywhere it is [`Instant::FAR_FUTURE`] (Trio: `inf`). If the code is
/// already effectively cancelled, so its next checkpoint reports
/// `Cancelled`, it is [`Instant::ZERO`], the clock's origin: a deadline
/// that has passed whatever the time (Trio: `-inf`).
///
/// Useful to skip work that cannot finish in time, or to pass a deadline on
/// to a peer (gRPC-style).
///
/// ```
/// use std::time::Duration;
/// use trioxide::{current_effective_deadline, current_time, move_on_after, Builder, Cancelled, Instant, MockClock};
/// Builder::new().clock(MockClock::new()).run(async {
///     assert_eq!(current_effective_deadline(), Instant::FAR_FUTURE);
///     let start = current_time();
///     move_on_after(Duration::from_secs(5), async {
///         move_on_after(Duration::from_secs(10), async {
///             // The earlier deadline, from the outer timeout.
///             assert_eq!(current_effective_deadline(), start + Duration::from_secs(5));
///             Ok::<_, Cancelled>(())
///         })
///         .await?;
///         move_on_after(Duration::from_secs(10), async {
///             // A shield keeps the outer timeout out, not its own.
///             assert_eq!(current_effective_deadline(), start + Duration::from_secs(10));
///             Ok::<_, Cancelled>(())
///         })
///         .shield(true)
///         .await?;
///         Ok::<_, Cancelled>(())
///     })
///     .await
/// })
/// .unwrap();
/// ```
///
/// # Panics
/// Outside a trioxide task; outside [`run`](crate::run) with
/// "trioxide::current_effective_deadline must be called from inside
/// trioxide::run", at the caller's line.
#[must_use = "`current_effective_deadline` only reads the deadline; it is not a checkpoint \
              (`checkpoint_if_cancelled()` checks for cancellation)"]
#[track_caller]
pub fn current_effective_deadline() -> Instant {
    let core = Core::current_for("trioxide::current_effective_deadline");
    let current = core.current_status_ptr();
    // SAFETY: the current status is kept alive for the duration of the poll
    // (module docs); we only read it here.
    let cur = unsafe { &*current };
    if cur.effectively_cancelled.get() {
        return Instant::ZERO;
    }
    let mut deadline = Instant::FAR_FUTURE;
    // First the timeouts in a transparent first poll (unshielded, and with
    // no node, or with a node that is the innermost status).
    // SAFETY: `current` is the current status, kept alive by an `Rc` for
    // the duration of the poll (module docs).
    let mut start: Rc<ScopeNode> = unsafe { live_rc(current) };
    let mut f = lazy_top();
    while !f.is_null() {
        // SAFETY: as in `materialise_frames`.
        let frame = unsafe { &*f };
        if frame.parent.get() != current {
            break;
        }
        if let Some(node) = frame.node.get() {
            start = node.clone();
            break;
        }
        deadline = deadline.min(frame.deadline.get());
        f = frame.prev.get();
    }
    let mut node = start;
    loop {
        deadline = deadline.min(node.deadline.get());
        if node.shield.get() {
            return deadline;
        }
        let parent = node.parent.borrow().clone();
        match parent {
            Some(p) => node = p,
            None => return deadline,
        }
    }
}
