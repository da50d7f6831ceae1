//! Cancel scopes and the cancel-status tree.
//!
//! # The model (Trio's)
//!
//! Every piece of running code is inside a chain of cancel scopes: the scopes
//! it entered, inside its task's root (its nursery's scope), inside the
//! scopes that nursery was opened in, and so on up to the run's system scope.
//! Code is *effectively cancelled* when some scope on that chain has been
//! cancelled and no shield stands between that scope and the code.
//!
//! Walking the chain at every checkpoint would cost O(depth). Instead, as in
//! Trio's `CancelStatus`, each entered scope ([`ScopeNode`]) caches
//! `effectively_cancelled` for the code directly inside it, and the cache is
//! recomputed only when it can change: when a scope is cancelled, shielded or
//! unshielded, entered, or moved (by `TaskStatus::started`). A checkpoint
//! reads one `Cell<bool>` through `Core::current_status`.
//!
//! Recomputing ([`ScopeNode::recalc`]) pushes the new state down the tree of
//! entered scopes. When a node becomes cancelled, every task inside it is
//! woken at once (rule C15): the task's next poll re-enters its scopes and
//! the leaf future it was blocked in sees the cancellation.
//!
//! # How a scope is entered: by polling
//!
//! A scope wraps a future: [`CancelScope::run`]. Its first poll enters the
//! scope under whatever status was current (`Core::current_status`), and
//! every poll makes the scope's node current while polling the body, then
//! restores the previous one. So nesting follows the future tree, and the
//! status at any point of a poll is the innermost scope being polled.
//!
//! # Timeouts enter lazily
//!
//! A timeout ([`TimeoutScoped`], under `move_on_after` and friends) makes
//! its node only when something needs one. Its first poll is *transparent*
//! when it is unshielded and not past its deadline at entry: nothing can
//! cancel it before that poll ends, so its code is cancelled exactly when
//! its parent's is, and the parent's node stays `current_status`. Each such
//! poll pushes a [`Frame`] on a thread-local chain (`LAZY_TOP`); whatever
//! hangs a node under the current status (a scope, a nursery, `start`) asks
//! [`effective_status`], which gives the transparent frames above that
//! status their nodes, outermost first, and returns the innermost. The body
//! blocking makes the node too. `check_nesting` compares against the same
//! logical status. DESIGN.md §3 has the argument in full, and why the
//! clock is still read at entry.
//!
//! # Why `current_status` is valid
//!
//! `Core::current_status` is a raw pointer for speed. It is only read while a
//! task is being stepped, and then it points either at the task's root node
//! (kept alive by the task's slot, which is not removed until the step ends)
//! or at the node of a scope future being polled further up this very call
//! stack (kept alive by that future's `Rc`). Each frame that changes it
//! restores the previous value before returning; after a panic, the step
//! (and each `catch_unwind` site) resets it. `LAZY_TOP` likewise only points
//! at frames of timeouts whose first poll is running further up the call
//! stack: it is set at the start of that poll and restored by a guard when
//! it returns or unwinds; a node reached through it is kept alive by the
//! frame's `OnceCell`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use slab::Slab;

use crate::kernel::clock::Instant;
use crate::kernel::error::Cancellation;
use crate::kernel::task::TaskId;
use crate::kernel::timers::TimerAction;
use crate::kernel::Core;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Unentered,
    Entered,
    Exited,
}

/// The public operation a scope belongs to, for the messages of misuse
/// panics. One byte, passed where a `bool` was: the name itself is looked
/// up only on the (cold) failure path.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ScopeOp {
    /// [`CancelScope::run`] and its future [`Scoped`].
    Run,
    /// [`MoveOn`](crate::MoveOn), the future of `move_on_after`/`move_on_at`.
    MoveOn,
    /// [`FailAfter`](crate::FailAfter), the future of `fail_after`/`fail_at`.
    FailAfter,
    /// [`open_nursery`](crate::open_nursery): a nursery is a scope too.
    OpenNursery,
}

impl ScopeOp {
    /// The operation's path as a user writes it.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            ScopeOp::Run => "trioxide::CancelScope::run",
            ScopeOp::MoveOn => "trioxide::MoveOn",
            ScopeOp::FailAfter => "trioxide::FailAfter",
            ScopeOp::OpenNursery => "trioxide::open_nursery",
        }
    }
}

/// One cancel scope's state, and its place in the status tree.
pub(crate) struct ScopeNode {
    /// The cached answer every checkpoint reads.
    pub(crate) effectively_cancelled: Cell<bool>,
    cancel_called: Cell<bool>,
    shield: Cell<bool>,
    deadline: Cell<Instant>,
    relative: Cell<Option<Duration>>,
    state: Cell<State>,
    cancelled_caught: Cell<bool>,
    /// Set once a checkpoint inside this scope has reported `Cancelled`
    /// while the scope was cancelled (and no shield stood between). Never
    /// cleared. Lets a layer above tell "cancelled and it noticed" from
    /// "cancelled after it had already finished its work" even when the
    /// body swallowed the error (`GracefulShutdown`'s report).
    cancel_seen: Cell<bool>,
    parent: RefCell<Option<Rc<ScopeNode>>>,
    /// `Rc::as_ptr` of `parent`, for the cheap misnesting check.
    parent_ptr: Cell<*const ScopeNode>,
    /// Our key in the parent's `children`.
    parent_reg: Cell<usize>,
    children: RefCell<Slab<Weak<ScopeNode>>>,
    /// The task that entered this scope (`NONE` for roots).
    owner: Cell<TaskId>,
    /// The slab keys of the tasks whose root status this is (a nursery's
    /// children); each task's header keeps its index here (`root_reg`),
    /// fixed up when a removal moves the last key into its place.
    tasks: RefCell<Vec<u32>>,
    /// The task shown as the parent of those tasks in the task tree (the
    /// nursery's owner; `NONE` for system tasks and main).
    task_parent: Cell<TaskId>,
    timer: Cell<Option<usize>>,
    /// An inherited tag set by a layer above (0: none): code under this
    /// scope finds the nearest tag with [`current_tag`]. The simulated
    /// network marks each host's root scope with the host's number.
    tag: Cell<u32>,
}

impl ScopeNode {
    fn new(state: State) -> ScopeNode {
        ScopeNode {
            effectively_cancelled: Cell::new(false),
            cancel_called: Cell::new(false),
            shield: Cell::new(false),
            deadline: Cell::new(Instant::FAR_FUTURE),
            relative: Cell::new(None),
            state: Cell::new(state),
            cancelled_caught: Cell::new(false),
            cancel_seen: Cell::new(false),
            parent: RefCell::new(None),
            parent_ptr: Cell::new(std::ptr::null()),
            parent_reg: Cell::new(usize::MAX),
            children: RefCell::new(Slab::new()),
            owner: Cell::new(TaskId::NONE),
            tasks: RefCell::new(Vec::new()),
            task_parent: Cell::new(TaskId::NONE),
            timer: Cell::new(None),
            tag: Cell::new(0),
        }
    }

    /// Records that a checkpoint under `self` (the current status) is
    /// reporting `Cancelled`: marks every cancelled scope on the chain up to
    /// the first shield. Off the hot path: only called when the answer is
    /// already "cancelled".
    #[cold]
    pub(crate) fn note_cancel_seen(&self) {
        // Marks `node`; true when a shield stops the walk.
        fn mark(node: &ScopeNode) -> bool {
            if node.cancel_called.get() {
                node.cancel_seen.set(true);
            }
            node.shield.get()
        }
        if mark(self) {
            return;
        }
        let mut next = self.parent.borrow().clone();
        while let Some(node) = next {
            if mark(&node) {
                return;
            }
            next = node.parent.borrow().clone();
        }
    }

    /// A parentless, already-entered node: the run's system scope.
    pub(crate) fn new_root() -> Rc<ScopeNode> {
        Rc::new(ScopeNode::new(State::Entered))
    }

    /// A node for a task being `start`ed: entered at once under `parent`,
    /// owned by no task; the child task is registered in it.
    pub(crate) fn new_task_root(parent: Rc<ScopeNode>) -> Rc<ScopeNode> {
        let node = Rc::new(ScopeNode::new(State::Entered));
        node.attach(parent);
        node.effectively_cancelled.set(node.parent_cancellation_is_visible());
        node
    }

    /// Adds the task in slab slot `key`; returns its index in the list.
    pub(crate) fn register_task(&self, key: u32) -> u32 {
        let mut tasks = self.tasks.borrow_mut();
        tasks.push(key);
        (tasks.len() - 1) as u32
    }

    /// Removes the task at index `reg` (the task is leaving the slab); the
    /// last task moves into its place, and its header learns its new index.
    pub(crate) fn unregister_task(&self, reg: u32, core: &Core) {
        let moved = {
            let mut tasks = self.tasks.borrow_mut();
            tasks.swap_remove(reg as usize);
            tasks.get(reg as usize).copied()
        };
        if let Some(key) = moved {
            if let Some(h) = core.header(key as usize) {
                h.root_reg.set(reg);
            }
        }
    }

    /// Records the parent shown for the tasks of this root (`spawn`).
    #[inline]
    pub(crate) fn set_task_parent(&self, parent: TaskId) {
        debug_assert!(
            self.tasks.borrow().is_empty() || self.task_parent.get() == parent,
            "the tasks of one root status have one parent"
        );
        self.task_parent.set(parent);
    }

    /// Moves the tasks of this root under another parent (a `start`ed
    /// task, alone in its root, moving into its nursery).
    pub(crate) fn replace_task_parent(&self, parent: TaskId) {
        self.task_parent.set(parent);
    }

    /// The parent shown for the tasks of this root.
    pub(crate) fn task_parent(&self) -> TaskId {
        self.task_parent.get()
    }

    fn parent_cancellation_is_visible(&self) -> bool {
        !self.shield.get() && self.parent.borrow().as_ref().is_some_and(|p| p.effectively_cancelled.get())
    }

    /// Links this node under `parent` (which must be entered).
    fn attach(self: &Rc<Self>, parent: Rc<ScopeNode>) {
        let key = parent.children.borrow_mut().insert(Rc::downgrade(self));
        self.parent_reg.set(key);
        self.parent_ptr.set(Rc::as_ptr(&parent));
        *self.parent.borrow_mut() = Some(parent);
    }

    /// Unlinks this node from its parent (also how a `start`ed task's root
    /// leaves the tree when the task ends).
    pub(crate) fn detach(&self) {
        if let Some(parent) = self.parent.borrow_mut().take() {
            parent.children.borrow_mut().try_remove(self.parent_reg.get());
        }
        self.parent_ptr.set(std::ptr::null());
    }

    /// Moves this (entered) node under a new parent and recomputes: how
    /// `TaskStatus::started` hands a task to its new nursery.
    pub(crate) fn reparent(self: &Rc<Self>, new_parent: Rc<ScopeNode>) {
        self.detach();
        self.attach(new_parent);
        self.recalc();
    }

    /// Enters the scope under the status `parent`, for the current task,
    /// on behalf of `op` (named if the scope was entered before).
    ///
    /// # Panics
    /// If the scope was entered before (rule C7: once only, by one task).
    #[inline]
    fn enter(self: &Rc<Self>, core: &Core, parent: *const ScopeNode, op: ScopeOp) {
        if self.state.get() != State::Unentered {
            entered_twice(op, self.state.get());
        }
        self.enter_unchecked(core, parent);
    }

    /// Hangs the node under `parent` as entered by the current task: what
    /// entering eagerly and materialising a lazy timeout have in common.
    fn attach_entered(self: &Rc<Self>, core: &Core, parent: Rc<ScopeNode>) {
        self.attach(parent);
        self.owner.set(core.current_task.get());
        self.state.set(State::Entered);
    }

    /// [`enter`](ScopeNode::enter) once the state was checked.
    fn enter_unchecked(self: &Rc<Self>, core: &Core, parent: *const ScopeNode) {
        // SAFETY: `parent` is `Core::current_status`, which during a poll
        // points at a node kept alive by an `Rc` (see the module docs).
        self.attach_entered(core, unsafe { live_rc(parent) });
        let relative = self.relative.take();
        if relative.is_some() || self.deadline.get() != Instant::FAR_FUTURE {
            let now = core.now();
            if let Some(rel) = relative {
                // Rule C11: a relative deadline is fixed when the scope is entered.
                let d = now + rel;
                if d < self.deadline.get() {
                    self.deadline.set(d);
                }
            }
            // The timer itself is armed only if the body blocks
            // (`arm_if_blocked`): deadlines are expired between passes, so a
            // body that finishes in its first poll never needs one.
            if self.deadline.get() <= now {
                self.cancel();
            }
        }
        self.effectively_cancelled.set(self.cancel_called.get() || self.parent_cancellation_is_visible());
    }

    /// Gives a timeout scope whose first poll ran transparently its node:
    /// entered under `parent` (the status it is logically inside) with the
    /// deadline fixed when the timeout was entered. Reads no clock and
    /// cancels nothing: a transparent scope was neither cancelled nor past
    /// its deadline at entry, and a deadline that passed since then is
    /// noticed at the next pass, as for a scope entered eagerly (its timer
    /// is armed when the body blocks).
    fn enter_materialised(self: &Rc<Self>, core: &Core, parent: *const ScopeNode) {
        debug_assert_eq!(self.state.get(), State::Unentered);
        // SAFETY: `parent` comes from `effective_status`: the current status
        // or the node of a timeout further up this call stack, each kept
        // alive by an `Rc` for the duration of the poll (module docs).
        self.attach_entered(core, unsafe { live_rc(parent) });
        self.effectively_cancelled.set(self.parent_cancellation_is_visible());
    }

    /// Registers (or moves, or removes) the timer for our deadline; a
    /// deadline already passed cancels at once.
    fn arm_deadline(self: &Rc<Self>, core: &Core, now: Instant) {
        let deadline = self.deadline.get();
        let mut timers = core.timers.borrow_mut();
        if deadline == Instant::FAR_FUTURE || self.cancel_called.get() {
            if let Some(k) = self.timer.take() {
                timers.remove(k);
            }
            return;
        }
        if deadline <= now {
            if let Some(k) = self.timer.take() {
                timers.remove(k);
            }
            drop(timers);
            self.cancel();
            return;
        }
        match self.timer.get() {
            Some(k) => timers.reset(k, deadline),
            None => self.timer.set(Some(timers.insert(deadline, TimerAction::CancelScope(Rc::downgrade(self))))),
        }
    }

    /// Arms the deadline timer the first time the body blocks. The common
    /// case (no deadline, or already armed) is one compare, inline.
    #[inline]
    fn arm_if_blocked(self: &Rc<Self>, core: &Core) {
        if self.deadline.get() != Instant::FAR_FUTURE && self.timer.get().is_none() {
            self.arm_now(core);
        }
    }

    #[inline(never)]
    fn arm_now(self: &Rc<Self>, core: &Core) {
        if !self.cancel_called.get() {
            let action = TimerAction::CancelScope(Rc::downgrade(self));
            let key = core.timers.borrow_mut().insert(self.deadline.get(), action);
            self.timer.set(Some(key));
        }
    }

    /// Leaves the scope. Returns whether it catches a `Cancelled` coming out
    /// of its body (Trio's rule: it is effectively cancelled and the
    /// cancellation is not just its parent's showing through).
    ///
    /// `strict` names the operation exiting, which reports misnesting
    /// (rule C16) by panicking; it is `None` when exiting from a destructor,
    /// where a panic could abort.
    fn exit(&self, strict: Option<ScopeOp>) -> bool {
        let catches = self.effectively_cancelled.get() && !self.parent_cancellation_is_visible();
        let open_children = self.children.borrow().len();
        if let Some(k) = self.timer.take() {
            if let Some(core) = Core::try_current() {
                core.timers.borrow_mut().remove(k);
            }
        }
        self.detach();
        self.state.set(State::Exited);
        self.owner.set(TaskId::NONE);
        if open_children > 0 {
            // Cut the children loose so they cannot reach a dead parent.
            let children: Vec<Weak<ScopeNode>> = self.children.borrow_mut().drain().collect();
            for c in children.iter().filter_map(Weak::upgrade) {
                c.parent.borrow_mut().take();
                c.parent_ptr.set(std::ptr::null());
            }
            if let Some(op) = strict {
                exited_with_open_children(op, open_children);
            }
        }
        catches
    }

    /// Cancels the scope (idempotent, rule C1).
    pub(crate) fn cancel(&self) {
        if self.cancel_called.replace(true) {
            return;
        }
        if let Some(k) = self.timer.take() {
            if let Some(core) = Core::try_current() {
                core.timers.borrow_mut().remove(k);
            }
        }
        if self.state.get() == State::Entered {
            self.recalc();
        }
    }

    /// Recomputes `effectively_cancelled` here and below; wakes every task
    /// in a node that becomes cancelled (Trio's `CancelStatus.recalculate`).
    pub(crate) fn recalc(&self) {
        let new = self.cancel_called.get() || self.parent_cancellation_is_visible();
        if new == self.effectively_cancelled.get() {
            return;
        }
        self.effectively_cancelled.set(new);
        if new {
            if let Some(core) = Core::try_current() {
                let owner = self.owner.get();
                if owner != TaskId::NONE {
                    core.wake_task(owner, false);
                }
                let tasks: Vec<u32> = self.tasks.borrow().clone();
                for key in tasks {
                    if let Some(h) = core.header(key as usize) {
                        h.schedule_local(core);
                    }
                }
            }
        }
        // Collect first: waking runs instrument hooks, which may cancel
        // other scopes and so touch these lists.
        let children: Vec<Rc<ScopeNode>> = self.children.borrow().iter().filter_map(|(_, w)| w.upgrade()).collect();
        for c in children {
            c.recalc();
        }
    }

    /// Marks the node cancelled and cuts it off its parent: used when a
    /// nursery or `start` is dropped before it finished, so its tasks stop
    /// and can no longer reach the abandoned scope chain.
    pub(crate) fn abandon(&self) {
        self.detach();
        self.owner.set(TaskId::NONE);
        self.cancel();
    }
}

/// A cancel scope: a handle to cancel, time out or shield the code it runs.
///
/// Wrap a body with [`run`](CancelScope::run). Cancelling the scope (by hand,
/// or when its deadline passes) makes every checkpoint inside it return
/// `Err(Cancelled)`, now and at every later checkpoint (level-triggered);
/// the scope then catches that `Cancelled` when the body returns it, and
/// `run` gives `Ok(None)`. Cancellation of an outer scope passes through as
/// `Err`. Clones are handles to the same scope.
///
/// ```
/// use std::time::Duration;
/// use trioxide::{run, CancelScope, sleep, Cancelled};
/// run(async {
///     let scope = CancelScope::with_relative_deadline(Duration::from_millis(10));
///     let out = scope.run(async {
///         sleep(Duration::from_secs(10)).await?;
///         Ok::<_, Cancelled>("slept")
///     }).await;
///     assert_eq!(out, Ok(None)); // the deadline cancelled the sleep
///     assert!(scope.cancelled_caught());
/// });
/// ```
#[derive(Clone)]
pub struct CancelScope {
    pub(crate) node: Rc<ScopeNode>,
}

impl Default for CancelScope {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for CancelScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelScope")
            .field("state", &self.node.state.get())
            .field("cancel_called", &self.node.cancel_called.get())
            .field("shield", &self.node.shield.get())
            .field("deadline", &self.node.deadline.get())
            .finish()
    }
}

impl CancelScope {
    /// A scope with no deadline, not shielded: it is cancelled only by
    /// [`cancel`](CancelScope::cancel).
    ///
    /// ```
    /// use trioxide::{checkpoint, run, CancelScope};
    /// run(async {
    ///     let scope = CancelScope::new();
    ///     let out = scope.run(async {
    ///         scope.cancel(); // from inside: the next checkpoint sees it
    ///         checkpoint().await?;
    ///         Ok::<_, trioxide::Cancelled>("not reached")
    ///     }).await;
    ///     assert_eq!(out, Ok(None)); // the scope caught its own Cancelled
    /// });
    /// ```
    pub fn new() -> CancelScope {
        CancelScope { node: Rc::new(ScopeNode::new(State::Unentered)) }
    }

    /// A scope cancelled when the clock reaches `deadline`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{current_time, sleep, Builder, CancelScope, Cancelled, MockClock};
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// Builder::new().clock(clock).run(async {
    ///     let deadline = current_time() + Duration::from_secs(2);
    ///     let scope = CancelScope::with_deadline(deadline);
    ///     let out = scope.run(async {
    ///         sleep(Duration::from_secs(60)).await?;
    ///         Ok::<_, Cancelled>(())
    ///     }).await;
    ///     assert_eq!(out, Ok(None));
    ///     assert_eq!(current_time(), deadline); // woken at the deadline
    /// });
    /// ```
    pub fn with_deadline(deadline: Instant) -> CancelScope {
        let s = CancelScope::new();
        s.node.deadline.set(deadline);
        s
    }

    /// A scope cancelled `timeout` after it is entered (not after it is
    /// built: rule C11).
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{current_time, sleep, Builder, CancelScope, Cancelled, MockClock};
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// Builder::new().clock(clock).run(async {
    ///     let scope = CancelScope::with_relative_deadline(Duration::from_secs(1));
    ///     sleep(Duration::from_secs(10)).await?; // the timeout is not running yet
    ///     let entered = current_time();
    ///     let out = scope.run(async {
    ///         sleep(Duration::from_secs(5)).await?;
    ///         Ok::<_, Cancelled>(())
    ///     }).await;
    ///     assert_eq!(out, Ok(None));
    ///     assert_eq!(current_time(), entered + Duration::from_secs(1));
    ///     Ok::<_, Cancelled>(())
    /// }).unwrap();
    /// ```
    pub fn with_relative_deadline(timeout: Duration) -> CancelScope {
        let s = CancelScope::new();
        s.node.relative.set(Some(timeout));
        s
    }

    /// A shielded scope: cancellation from outside does not reach its body
    /// (its own [`cancel`](CancelScope::cancel) or deadline still does).
    ///
    /// ```
    /// use trioxide::{checkpoint, run, CancelScope, Cancelled};
    /// run(async {
    ///     let outer = CancelScope::new();
    ///     let out = outer.run(async {
    ///         outer.cancel();
    ///         // Cleanup behind a shield still gets through its checkpoints.
    ///         let cleanup = CancelScope::shielded().run(async {
    ///             checkpoint().await?;
    ///             Ok::<_, Cancelled>("cleaned up")
    ///         }).await;
    ///         assert_eq!(cleanup, Ok(Some("cleaned up")));
    ///         checkpoint().await?; // outside the shield: cancelled
    ///         Ok::<_, Cancelled>(())
    ///     }).await;
    ///     assert_eq!(out, Ok(None));
    /// });
    /// ```
    pub fn shielded() -> CancelScope {
        let s = CancelScope::new();
        s.node.shield.set(true);
        s
    }

    pub(crate) fn from_node(node: Rc<ScopeNode>) -> CancelScope {
        CancelScope { node }
    }

    /// Cancels the scope: its body sees `Err(Cancelled)` at every checkpoint
    /// from now on, and a task blocked inside it wakes at once. Cancelling
    /// twice, before entry or after exit is harmless.
    ///
    /// Any task may cancel a scope through a clone of the handle. The
    /// scope catches only its own cancellation: code inside a scope that
    /// an *outer* scope cancels gets `Err(Cancelled)` out of `run`, to pass
    /// on with `?`.
    ///
    /// ```
    /// use trioxide::{checkpoint, run, CancelScope, Cancelled};
    /// run(async {
    ///     let outer = CancelScope::new();
    ///     let inner = CancelScope::new();
    ///     let out = outer.run(async {
    ///         let r = inner.run(async {
    ///             outer.cancel();
    ///             checkpoint().await?;
    ///             Ok::<_, Cancelled>(())
    ///         }).await;
    ///         assert_eq!(r, Err(Cancelled)); // not inner's to catch
    ///         r
    ///     }).await;
    ///     assert_eq!(out, Ok(None)); // outer caught it
    ///     assert!(!inner.cancelled_caught() && outer.cancelled_caught());
    /// });
    /// ```
    pub fn cancel(&self) {
        self.node.cancel();
    }

    /// Whether the scope was cancelled (by hand or by its deadline), whether
    /// or not the body noticed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{sleep, Builder, CancelScope, Cancelled, MockClock};
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// Builder::new().clock(clock).run(async {
    ///     let scope = CancelScope::with_relative_deadline(Duration::from_secs(1));
    ///     assert!(!scope.cancel_called());
    ///     let out = scope.run(async {
    ///         sleep(Duration::from_secs(5)).await?;
    ///         Ok::<_, Cancelled>(())
    ///     }).await;
    ///     assert_eq!(out, Ok(None));
    ///     assert!(scope.cancel_called()); // the deadline cancelled it
    ///
    ///     let quiet = CancelScope::new();
    ///     quiet.run(async { Ok::<_, Cancelled>(()) }).await?;
    ///     quiet.cancel(); // after exit: recorded, harmless
    ///     assert!(quiet.cancel_called() && !quiet.cancelled_caught());
    ///     Ok::<_, Cancelled>(())
    /// }).unwrap();
    /// ```
    pub fn cancel_called(&self) -> bool {
        let n = &self.node;
        if !n.cancel_called.get() && n.state.get() != State::Exited && n.deadline.get() != Instant::FAR_FUTURE {
            if let Some(core) = Core::try_current() {
                if core.now() >= n.deadline.get() {
                    n.cancel();
                }
            }
        }
        n.cancel_called.get()
    }

    /// Whether a checkpoint inside the scope has reported its cancellation
    /// (whether or not the body then passed the error on).
    pub(crate) fn cancel_seen(&self) -> bool {
        self.node.cancel_seen.get()
    }

    /// Whether the scope caught a `Cancelled` when its body finished: it
    /// was cancelled and the body returned the `Cancelled` (then `run` gave
    /// `Ok(None)`). A cancelled scope whose body finished anyway, or
    /// swallowed the error, caught nothing.
    ///
    /// ```
    /// use trioxide::{checkpoint, run, CancelScope, Cancelled};
    /// run(async {
    ///     let caught = CancelScope::new();
    ///     let out = caught.run(async {
    ///         caught.cancel();
    ///         checkpoint().await?;
    ///         Ok::<_, Cancelled>(1)
    ///     }).await;
    ///     assert_eq!(out, Ok(None));
    ///     assert!(caught.cancel_called() && caught.cancelled_caught());
    ///
    ///     let finished = CancelScope::new();
    ///     let out = finished.run(async {
    ///         finished.cancel();
    ///         Ok::<_, Cancelled>(2) // no checkpoint: finishes anyway
    ///     }).await;
    ///     assert_eq!(out, Ok(Some(2)));
    ///     assert!(finished.cancel_called() && !finished.cancelled_caught());
    /// });
    /// ```
    pub fn cancelled_caught(&self) -> bool {
        self.node.cancelled_caught.get()
    }

    /// The absolute deadline ([`Instant::FAR_FUTURE`] if none). A relative
    /// deadline becomes absolute when the scope is entered.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{current_time, Builder, CancelScope, Cancelled, Instant, MockClock};
    /// Builder::new().clock(MockClock::new()).run(async {
    ///     assert_eq!(CancelScope::new().deadline(), Instant::FAR_FUTURE);
    ///     let scope = CancelScope::with_relative_deadline(Duration::from_secs(3));
    ///     assert_eq!(scope.deadline(), Instant::FAR_FUTURE); // not entered yet
    ///     let start = current_time();
    ///     scope.run(async {
    ///         assert_eq!(scope.deadline(), start + Duration::from_secs(3));
    ///         Ok::<_, Cancelled>(())
    ///     }).await
    /// }).unwrap();
    /// ```
    pub fn deadline(&self) -> Instant {
        self.node.deadline.get()
    }

    /// Sets the absolute deadline (replacing a relative one). Inside the
    /// scope, a deadline moved earlier takes effect at the next
    /// checkpoint, one moved later postpones the cancellation, and one
    /// already passed cancels now. After exit it changes nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{current_time, sleep, Builder, CancelScope, Cancelled, MockClock};
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// Builder::new().clock(clock).run(async {
    ///     let start = current_time();
    ///     let scope = CancelScope::with_relative_deadline(Duration::from_secs(1));
    ///     let out = scope.run(async {
    ///         // More time: the deadline moves later while inside.
    ///         scope.set_deadline(start + Duration::from_secs(10));
    ///         sleep(Duration::from_secs(5)).await?;
    ///         assert_eq!(current_time(), start + Duration::from_secs(5));
    ///         // A deadline already passed cancels at once.
    ///         scope.set_deadline(start);
    ///         assert!(scope.cancel_called());
    ///         sleep(Duration::from_secs(5)).await?;
    ///         Ok::<_, Cancelled>(())
    ///     }).await;
    ///     assert_eq!(out, Ok(None));
    ///     assert_eq!(current_time(), start + Duration::from_secs(5));
    /// });
    /// ```
    ///
    /// # Panics
    /// On an entered scope, outside [`run`](crate::run) (it reads the
    /// clock): "trioxide::CancelScope::set_deadline must be called from
    /// inside trioxide::run", at the caller's line.
    #[track_caller]
    pub fn set_deadline(&self, deadline: Instant) {
        if self.node.state.get() == State::Entered {
            let core = Core::current_for("trioxide::CancelScope::set_deadline");
            self.set_deadline_inside(core, deadline, core.now());
        } else {
            self.node.deadline.set(deadline);
            self.node.relative.set(None);
        }
    }

    /// `set_deadline` on an entered scope, with the clock already read (one
    /// clock read per call of `set_relative_deadline`, which a server may
    /// make per request).
    fn set_deadline_inside(&self, core: &Core, deadline: Instant, now: Instant) {
        self.node.deadline.set(deadline);
        self.node.relative.set(None);
        self.node.arm_deadline(core, now);
    }

    /// Sets a deadline relative to the moment of entry (before entry) or to
    /// now (while inside); after exit it changes nothing. Inside, it is a
    /// way to extend a timeout: each call restarts the countdown.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{current_time, sleep, Builder, CancelScope, Cancelled, MockClock};
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// Builder::new().clock(clock).run(async {
    ///     let start = current_time();
    ///     let idle = CancelScope::new();
    ///     idle.set_relative_deadline(Duration::from_secs(2)); // counts from entry
    ///     let out = idle.run(async {
    ///         for _ in 0..3 {
    ///             sleep(Duration::from_secs(1)).await?; // some progress...
    ///             idle.set_relative_deadline(Duration::from_secs(2)); // ...resets the timeout
    ///         }
    ///         sleep(Duration::from_secs(10)).await?; // no progress: times out
    ///         Ok::<_, Cancelled>(())
    ///     }).await;
    ///     assert_eq!(out, Ok(None));
    ///     assert_eq!(current_time(), start + Duration::from_secs(3 + 2));
    /// });
    /// ```
    ///
    /// # Panics
    /// On an entered scope, outside [`run`](crate::run) (it reads the
    /// clock): "trioxide::CancelScope::set_relative_deadline must be called
    /// from inside trioxide::run", at the caller's line.
    #[track_caller]
    pub fn set_relative_deadline(&self, timeout: Duration) {
        match self.node.state.get() {
            State::Unentered => {
                self.node.deadline.set(Instant::FAR_FUTURE);
                self.node.relative.set(Some(timeout));
            }
            State::Entered => {
                let core = Core::current_for("trioxide::CancelScope::set_relative_deadline");
                let now = core.now();
                self.set_deadline_inside(core, now + timeout, now);
            }
            State::Exited => {}
        }
    }

    /// How long until the deadline, as Trio's `relative_deadline` reads it;
    /// `None` when there is no deadline.
    ///
    /// * Before entry, a scope given a relative deadline
    ///   ([`with_relative_deadline`](CancelScope::with_relative_deadline),
    ///   [`set_relative_deadline`](CancelScope::set_relative_deadline), a
    ///   [`move_on_after`](crate::move_on_after)'s scope) answers that
    ///   timeout: it will count from entry.
    /// * Otherwise (entered, exited, or an absolute deadline before entry)
    ///   it is the time from now until the deadline, [`Duration::ZERO`] once
    ///   the deadline has passed.
    ///
    /// Trio differs in two corners Rust expresses otherwise: its value goes
    /// negative after the deadline (a `Duration` cannot), and it raises
    /// `RuntimeError` for an unentered scope with an absolute deadline,
    /// where this answers the time left.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{Builder, CancelScope, Cancelled, MockClock};
    /// let clock = MockClock::new();
    /// let c = clock.clone();
    /// Builder::new().clock(clock).run(async move {
    ///     let scope = CancelScope::with_relative_deadline(Duration::from_secs(5));
    ///     assert_eq!(scope.relative_deadline(), Some(Duration::from_secs(5)));
    ///     c.jump(Duration::from_secs(3)); // before entry: the timeout does not run yet
    ///     scope.run(async {
    ///         assert_eq!(scope.relative_deadline(), Some(Duration::from_secs(5)));
    ///         c.jump(Duration::from_secs(2));
    ///         assert_eq!(scope.relative_deadline(), Some(Duration::from_secs(3)));
    ///         c.jump(Duration::from_secs(4)); // past the deadline: zero
    ///         assert_eq!(scope.relative_deadline(), Some(Duration::ZERO));
    ///         Ok::<_, Cancelled>(())
    ///     }).await
    /// }).unwrap();
    /// assert_eq!(CancelScope::new().relative_deadline(), None);
    /// ```
    ///
    /// # Panics
    /// Outside [`run`](crate::run), when the answer needs the clock (an
    /// absolute deadline, or a scope already entered):
    /// "trioxide::CancelScope::relative_deadline must be called from inside
    /// trioxide::run", at the caller's line.
    #[must_use = "`relative_deadline` only reads the time left; `set_relative_deadline` changes it"]
    #[track_caller]
    pub fn relative_deadline(&self) -> Option<Duration> {
        let n = &self.node;
        if n.state.get() == State::Unentered {
            if let Some(rel) = n.relative.get() {
                return Some(rel);
            }
        }
        let deadline = n.deadline.get();
        if deadline == Instant::FAR_FUTURE {
            return None;
        }
        Some(deadline.saturating_duration_since(Core::current_for("trioxide::CancelScope::relative_deadline").now()))
    }

    /// Whether the scope is shielded.
    ///
    /// ```
    /// use trioxide::CancelScope;
    /// assert!(!CancelScope::new().shield());
    /// assert!(CancelScope::shielded().shield());
    /// ```
    pub fn shield(&self) -> bool {
        self.node.shield.get()
    }

    /// Shields or unshields the scope; takes effect at once, also for a task
    /// already blocked inside (rules C3, C4).
    ///
    /// ```
    /// use trioxide::{checkpoint, run, CancelScope, Cancelled};
    /// run(async {
    ///     let outer = CancelScope::new();
    ///     let inner = CancelScope::new();
    ///     inner.set_shield(true);
    ///     let out = outer.run(async {
    ///         outer.cancel();
    ///         inner.run(async {
    ///             checkpoint().await?; // shielded: not cancelled
    ///             inner.set_shield(false); // the outer cancellation now reaches in
    ///             checkpoint().await?;
    ///             Ok::<_, Cancelled>(())
    ///         }).await
    ///     }).await;
    ///     assert_eq!(out, Ok(None)); // caught by outer, not by inner
    ///     assert!(outer.cancelled_caught() && !inner.cancelled_caught());
    /// });
    /// ```
    pub fn set_shield(&self, shield: bool) {
        if self.node.shield.replace(shield) != shield && self.node.state.get() == State::Entered {
            self.node.recalc();
        }
    }

    /// Runs `body` inside this scope: the returned future enters the scope
    /// when first polled and exits it when the body finishes.
    ///
    /// The output is `Ok(Some(value))` if the body finished, `Ok(None)` if
    /// this scope was cancelled and caught the body's `Cancelled`, and
    /// `Err(e)` for any other error (an outer scope's `Cancelled` included:
    /// pass it on with `?`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{sleep, Builder, CancelScope, Cancelled, MockClock};
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// Builder::new().clock(clock).run(async {
    ///     // Finished in time: the value.
    ///     let scope = CancelScope::with_relative_deadline(Duration::from_secs(5));
    ///     let out = scope.run(async { Ok::<_, Cancelled>(7) }).await;
    ///     assert_eq!(out, Ok(Some(7)));
    ///
    ///     // Its own deadline fired: caught, `Ok(None)`.
    ///     let scope = CancelScope::with_relative_deadline(Duration::from_secs(1));
    ///     let out = scope.run(async {
    ///         sleep(Duration::from_secs(5)).await?;
    ///         Ok::<_, Cancelled>(7)
    ///     }).await;
    ///     assert_eq!(out, Ok(None));
    ///
    ///     // An outer scope's deadline fired: `Err(Cancelled)` passes through.
    ///     let outer = CancelScope::with_relative_deadline(Duration::from_secs(1));
    ///     let out = outer.run(async {
    ///         let inner = CancelScope::new().run(async {
    ///             sleep(Duration::from_secs(5)).await?;
    ///             Ok::<_, Cancelled>(7)
    ///         }).await;
    ///         assert_eq!(inner, Err(Cancelled));
    ///         inner
    ///     }).await;
    ///     assert_eq!(out, Ok(None));
    /// });
    /// ```
    ///
    /// # Panics
    /// The panics come from polling the returned [`Scoped`] future, so they
    /// name "trioxide::CancelScope::run" but cannot point at the caller's
    /// line:
    /// * the scope was already entered: "a cancel scope can be entered only
    ///   once" (rule C7);
    /// * a task other than the one that entered it polls it (rule C7);
    /// * it is polled under a different scope than the one it was entered
    ///   in, or exits while a scope entered inside it is still open
    ///   ("cancel scope misnesting", rule C16);
    /// * it is polled after it completed, or outside [`run`](crate::run).
    pub fn run<F, T, E>(&self, body: F) -> Scoped<F>
    where
        F: Future<Output = Result<T, E>>,
        E: Cancellation,
    {
        Scoped { body, node: self.node.clone(), phase: Phase::New }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    New,
    Inside,
    Done,
}

pin_project! {
    /// The future of [`CancelScope::run`]: polling it enters the scope,
    /// its output is the body's result with the scope's own cancellation
    /// caught (`Ok(None)`). It can be built ahead and awaited later; the
    /// scope counts as entered only from the first poll.
    ///
    /// ```
    /// use trioxide::{checkpoint, run, CancelScope, Cancelled, Scoped};
    /// run(async {
    ///     let scope = CancelScope::new();
    ///     let fut: Scoped<_> = scope.run(async {
    ///         checkpoint().await?;
    ///         Ok::<_, Cancelled>("done")
    ///     });
    ///     scope.cancel(); // before the first poll: the body starts cancelled
    ///     assert_eq!(fut.await, Ok(None));
    ///     assert!(scope.cancelled_caught());
    /// });
    /// ```
    ///
    /// # Panics
    /// When polled, naming "trioxide::CancelScope::run" (see
    /// [`CancelScope::run`] for the rules): if its scope was entered
    /// before, by another task than the one that entered the scope, under
    /// another scope than the one it was entered in, after completion, or
    /// outside [`run`](crate::run); and when the body finishes while a
    /// scope entered inside it is still open (misnesting).
    #[must_use = "a cancel scope does nothing unless awaited"]
    pub struct Scoped<F> {
        #[pin]
        body: F,
        node: Rc<ScopeNode>,
        phase: Phase,
    }

    impl<F> PinnedDrop for Scoped<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.phase == Phase::Inside {
                this.node.exit(None);
            }
        }
    }
}

impl<F, T, E> Future for Scoped<F>
where
    F: Future<Output = Result<T, E>>,
    E: Cancellation,
{
    type Output = Result<Option<T>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let core = Core::current_for(ScopeOp::Run.name());
        let prev = core.current_status_ptr();
        match *this.phase {
            Phase::New => {
                this.node.enter(core, effective_status(core, prev), ScopeOp::Run);
                *this.phase = Phase::Inside;
            }
            Phase::Inside => check_nesting_for(this.node, core, prev, ScopeOp::Run),
            Phase::Done => polled_after_completion(ScopeOp::Run),
        }
        core.current_status.set(Rc::as_ptr(this.node));
        let out = this.body.poll(cx);
        core.current_status.set(prev);
        match out {
            Poll::Pending => {
                this.node.arm_if_blocked(core);
                Poll::Pending
            }
            Poll::Ready(out) => {
                *this.phase = Phase::Done;
                Poll::Ready(finish(this.node, out, ScopeOp::Run))
            }
        }
    }
}

/// [`check_nesting_for`] a nursery's scope ([`open_nursery`](crate::open_nursery)).
#[inline]
pub(crate) fn check_nesting(node: &ScopeNode, core: &Core, current: *const ScopeNode) {
    check_nesting_for(node, core, current, ScopeOp::OpenNursery);
}

/// Panics, naming `op`, if a scope is polled by another task than the one
/// that entered it (rule C7), or under a different status than it entered
/// in (C16).
///
/// `current` is the physical current status; while a timeout's first poll
/// runs transparently the code is logically inside that timeout, which the
/// slow path takes into account (module docs, "Timeouts enter lazily").
#[inline]
fn check_nesting_for(node: &ScopeNode, core: &Core, current: *const ScopeNode, op: ScopeOp) {
    if node.owner.get() != core.current_task.get() || node.parent_ptr.get() != current || lazy_frame_over(current) {
        check_nesting_slow(node, core, current, op);
    }
}

#[cold]
#[inline(never)]
fn check_nesting_slow(node: &ScopeNode, core: &Core, current: *const ScopeNode, op: ScopeOp) {
    let other_task = node.owner.get() != core.current_task.get();
    if !other_task && Some(node.parent_ptr.get()) == logical_status(current) {
        return;
    }
    misnested(op, other_task);
}

// The misuse panics. Each names the operation (`ScopeOp::name`) and the
// rule; they are raised while a future is polled, so they cannot point at
// the user's line, only name what was misused.

#[cold]
#[inline(never)]
fn misnested(op: ScopeOp, other_task: bool) -> ! {
    let op = op.name();
    if other_task {
        panic!(
            "{op}: a cancel scope was entered by one task and polled by another; \
             a cancel scope belongs to the task that entered it (rule C7)"
        );
    }
    panic!(
        "{op}: cancel scope misnesting: a scope was polled outside the scope it was entered in; \
         a cancel scope must be awaited where it was first polled (rule C16)"
    );
}

#[cold]
#[inline(never)]
fn entered_twice(op: ScopeOp, state: State) -> ! {
    let op = op.name();
    let state = if state == State::Entered { "already active" } else { "already exited" };
    panic!("{op}: a cancel scope can be entered only once (rule C7; this one is {state})");
}

#[cold]
#[inline(never)]
fn exited_with_open_children(op: ScopeOp, open_children: usize) -> ! {
    let op = op.name();
    panic!(
        "{op}: cancel scope misnesting: a scope exited while {open_children} scope(s) entered inside it \
         were still open; cancel scopes must be exited in the reverse order they were entered (rule C16)"
    );
}

#[cold]
#[inline(never)]
fn polled_after_completion(op: ScopeOp) -> ! {
    panic!("{}: future polled after completion", op.name());
}

/// Exits `node` (for `op`) and decides what its body's outcome becomes.
fn finish<T, E: Cancellation>(node: &ScopeNode, out: Result<T, E>, op: ScopeOp) -> Result<Option<T>, E> {
    let catches = node.exit(Some(op));
    match out {
        Ok(v) => Ok(Some(v)),
        Err(e) if catches => {
            let (matched, rest) = e.split_cancelled();
            if matched {
                node.cancelled_caught.set(true);
            }
            match rest {
                None => Ok(None),
                Some(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Enter/exit plumbing shared with nurseries, which are scopes too.
pub(crate) mod raw {
    use super::*;

    /// Enters `node` (a nursery's scope) under the current status and
    /// returns the previous one.
    pub(crate) fn enter(node: &Rc<ScopeNode>, core: &Core) -> *const ScopeNode {
        let prev = core.current_status_ptr();
        node.enter(core, effective_status(core, prev), ScopeOp::OpenNursery);
        prev
    }

    /// Exits `node` (a nursery's scope); returns whether it catches a
    /// `Cancelled`. `strict`: panic on misnesting (see `ScopeNode::exit`).
    pub(crate) fn exit(node: &ScopeNode, strict: bool) -> bool {
        node.exit(strict.then_some(ScopeOp::OpenNursery))
    }

    pub(crate) fn set_caught(node: &ScopeNode) {
        node.cancelled_caught.set(true);
    }

    pub(crate) fn new_unentered() -> Rc<ScopeNode> {
        Rc::new(ScopeNode::new(State::Unentered))
    }
}

impl CancelScope {
    /// Marks this scope with `tag` (0 clears it): code running under it,
    /// in this task or in tasks of nurseries opened under it, finds it with
    /// [`current_tag`] unless a nearer scope has a tag of its own. The
    /// kernel gives the number no meaning.
    pub(crate) fn set_tag(&self, tag: u32) {
        self.node.tag.set(tag);
    }
}

/// The tag of the nearest tagged scope around the code being polled (see
/// [`CancelScope::set_tag`]), or 0. Walks the status chain: one step per
/// enclosing scope, so it is for rare operations (opening a socket), not
/// hot paths.
pub(crate) fn current_tag(core: &Core) -> u32 {
    let mut p = effective_status(core, core.current_status_ptr());
    while !p.is_null() {
        // SAFETY: `p` starts at the current status (or the node of a timeout
        // being polled further up this call stack), kept alive by an `Rc`
        // for the whole poll (module docs); every `parent_ptr` is the
        // pointer of the `Rc` that the child's `parent` field holds, so each
        // parent lives as long as its attached child does.
        let node = unsafe { &*p };
        let tag = node.tag.get();
        if tag != 0 {
            return tag;
        }
        p = node.parent_ptr.get();
    }
    0
}

/// An `Rc` to the status of the code being polled right now (giving the
/// timeouts it is transparently inside their nodes first), for a node to be
/// hung under it (`start`'s task root).
pub(crate) fn current_status_rc(core: &Core) -> Rc<ScopeNode> {
    let p = effective_status(core, core.current_status_ptr());
    // SAFETY: `effective_status` returns the current status or the node of
    // a timeout being polled further up this call stack; either is kept
    // alive by an `Rc` for the duration of the poll (module docs).
    unsafe { live_rc(p) }
}

/// An `Rc` of our own to the node `p` points at.
///
/// # Safety
/// `p` must come from `Rc::as_ptr` of a node that an `Rc` keeps alive for
/// the whole call: the current status during a poll, or the node of a
/// scope future being polled further up this call stack (module docs,
/// "Why `current_status` is valid").
unsafe fn live_rc(p: *const ScopeNode) -> Rc<ScopeNode> {
    // SAFETY: the caller guarantees `p` is a live `Rc`'s pointer; we take a
    // strong count of our own before making an `Rc` from it.
    unsafe {
        Rc::increment_strong_count(p);
        Rc::from_raw(p)
    }
}

mod lazy;

pub use lazy::current_effective_deadline;
pub(crate) use lazy::TimeoutScoped;
use lazy::{effective_status, lazy_frame_over, logical_status};
