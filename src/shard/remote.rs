//! Remote children (issue 13, part 2): the cross-shard protocol.
//!
//! A nursery on shard A starts a child on shard B with
//! [`Nursery::start_soon_on`](crate::Nursery::start_soon_on) or
//! [`Nursery::start_on`](crate::Nursery::start_on). This file holds both
//! ends of the protocol (DESIGN.md, "The cross-shard protocol"):
//!
//! * the [`Registry`] of a sharded run (one `Arc`): each shard's
//!   [`RuntimeHandle`], whether its *host* still accepts children, the
//!   count of shard mains still running, and per-shard statistics;
//! * the *host* of a shard ([`HostCtx`], a thread-local set by the shard's
//!   main): the remote groups it runs, each a cancel scope node of its own
//!   under which the group's children run as tasks of that shard;
//! * the owner side: one [`OwnerGroup`] per (nursery, target shard) with
//!   live children, waited for by one local proxy task in the nursery
//!   ([`GroupProxy`]). The proxy records the children's outcomes into the
//!   nursery and sends the one cancel message when the nursery's scope
//!   becomes effectively cancelled.
//!
//! Messages A → B are jobs on B's remote queue (FIFO per sender): *start*
//! (group id, whether the group was already cancelled, the child's
//! factory) and *cancel* (group id). Messages B → A go through the
//! group's [`GroupShared`] (a mutex-protected list of outcomes and a
//! count) and one wake-up of the proxy's waker, taken on use so a burst of
//! outcomes costs one wake-up.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;

use crate::kernel::cancel::{current_status_rc, ScopeNode};
use crate::kernel::task::TaskId;
use crate::kernel::Core;
use crate::nursery::{NurseryInner, Outcome, TaskOutput};
use crate::shard::tree::RemoteParent;
use crate::thread::from_thread::{current_handle, RuntimeHandle};

/// Why a child could not be started on (or was lost by) another shard.
///
/// ```
/// use trioxide::{open_nursery, run, BoxError, RemoteError};
/// // Outside a sharded run there is one shard, 0.
/// run(open_nursery(|n| async move {
///     assert_eq!(n.start_soon_on(3, || async {}), Err(RemoteError::NoSuchShard { shard: 3, count: 1 }));
///     Ok::<_, BoxError>(())
/// }))
/// .unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteError {
    /// The index is not that of a shard of this run (`count` shards; a
    /// plain [`run`](crate::run) counts as one shard).
    NoSuchShard {
        /// The index asked for.
        shard: usize,
        /// How many shards the run has.
        count: usize,
    },
    /// The shard no longer accepts children: every shard's main has
    /// returned (hosts stay open until then, even on a shard whose main
    /// has returned or failed), or its run is over. Also what the
    /// nursery's [`MultiError`](crate::MultiError) gets if the hosts
    /// closed while the start message was in flight.
    ShardFinished(usize),
    /// The child had started but its shard's run dropped it unfinished
    /// (the run was torn down): its outcome is unknown.
    ChildLost(usize),
    /// The nursery is closed (its body and children are done).
    NurseryClosed,
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::NoSuchShard { shard, count } => {
                write!(f, "no shard {shard}: the run has {count} shard(s)")
            }
            RemoteError::ShardFinished(i) => write!(f, "shard {i} has finished and accepts no children"),
            RemoteError::ChildLost(i) => write!(f, "shard {i} ended before its remote child finished"),
            RemoteError::NurseryClosed => f.write_str("nursery is closed"),
        }
    }
}

impl StdError for RemoteError {}

/// Wakes `waker` (a task of the run `handle` names) from another thread
/// by sending the wake-up as a job: the waker is then dropped on its own
/// run's thread, so no other thread holds the task's allocation a moment
/// after the task could have ended (which would show as a task allocation
/// left in that run's report). Callers send it while still holding the
/// lock under which they published what the task waits for: by the time
/// the task can see it, the job is already in its run's queue, which the
/// run drains before its main can return. Costs what a remote wake-up
/// costs: one lock of that run's queue, a syscall only if it is parked.
/// If the run is over, the job (and the waker) is dropped here.
///
/// `landed` runs on the woken run's thread just before the wake-up: the
/// callers use it to clear an "in flight" mark, and their waiting task
/// does not finish while a wake-up is in flight, so the job never
/// outlives the task's run's main.
pub(crate) fn wake_on(handle: &RuntimeHandle, waker: Waker, landed: impl FnOnce() + Send + 'static) {
    let _ = handle.run_sync_soon(move || {
        landed();
        waker.wake();
    });
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No user code runs under these locks; poisoning means nothing here.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// The registry of a sharded run.

enum Slot {
    /// The shard's run has not registered yet.
    Unregistered,
    Open(RuntimeHandle),
    Closed,
}

struct RegState {
    slots: Vec<Slot>,
    registered: usize,
    main_done: Vec<bool>,
    mains_left: usize,
    /// Hosts waiting for every main to return: (shard, its run, waker).
    waiters: Vec<(usize, RuntimeHandle, Waker)>,
    /// Per shard: a wake-up sent to its host is in flight.
    wake_in_flight: Vec<bool>,
    /// Per shard: its run, from registration on (never cleared: a job
    /// sent to a run that is over is refused or dropped unrun). The task
    /// tree query reaches a shard through it even once the hosts are closed.
    runs: Vec<Option<RuntimeHandle>>,
}

/// Per-shard counters, for [`ShardReport`](crate::ShardReport).
#[derive(Default)]
pub(crate) struct HostStats {
    pub(crate) hosted: AtomicU64,
    pub(crate) cancels: AtomicU64,
}

/// What the shards of one sharded run share for remote children.
pub(crate) struct Registry {
    count: usize,
    state: Mutex<RegState>,
    cv: Condvar,
    /// Whether each shard's host accepts children (one load per start).
    open: Vec<AtomicBool>,
    pub(crate) stats: Vec<HostStats>,
}

impl Registry {
    pub(crate) fn new(count: usize) -> Arc<Registry> {
        Arc::new(Registry {
            count,
            state: Mutex::new(RegState {
                slots: (0..count).map(|_| Slot::Unregistered).collect(),
                registered: 0,
                main_done: vec![false; count],
                mains_left: count,
                waiters: Vec::new(),
                wake_in_flight: vec![false; count],
                runs: vec![None; count],
            }),
            cv: Condvar::new(),
            open: (0..count).map(|_| AtomicBool::new(false)).collect(),
            stats: (0..count).map(|_| HostStats::default()).collect(),
        })
    }

    /// Shard `index`'s run is up: its host accepts children.
    fn register(&self, index: usize, handle: RuntimeHandle) {
        let mut st = lock(&self.state);
        if matches!(st.slots[index], Slot::Unregistered) {
            st.registered += 1;
            st.runs[index] = Some(handle.clone());
            st.slots[index] = Slot::Open(handle);
            self.open[index].store(true, Ordering::SeqCst);
        }
        drop(st);
        self.cv.notify_all();
    }

    /// Blocks the shard's thread until every shard has registered (or
    /// failed to start), so that no start message can find a shard not
    /// yet up. Called once per shard, before its main.
    fn wait_all_registered(&self) {
        let mut st = lock(&self.state);
        while st.registered < self.count {
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Shard `index` accepts no more children (idempotent). Also counts as
    /// registered and as its main done (a shard that never started).
    pub(crate) fn close(self: &Arc<Self>, index: usize) {
        let mut st = lock(&self.state);
        if matches!(st.slots[index], Slot::Unregistered) {
            st.registered += 1;
        }
        st.slots[index] = Slot::Closed;
        self.open[index].store(false, Ordering::SeqCst);
        self.note_main_done(&mut st, index);
        drop(st);
        self.cv.notify_all();
    }

    /// Shard `index`'s main has returned (idempotent).
    fn main_finished(self: &Arc<Self>, index: usize) {
        self.note_main_done(&mut lock(&self.state), index);
    }

    /// Under the lock: marks the main done; the last one wakes the hosts.
    fn note_main_done(self: &Arc<Self>, st: &mut RegState, index: usize) {
        if st.main_done[index] {
            return;
        }
        st.main_done[index] = true;
        st.mains_left -= 1;
        if st.mains_left == 0 {
            // Every main has returned: every host closes now, at one
            // instant (a start refused from here on, everywhere).
            for (slot, open) in st.slots.iter_mut().zip(&self.open) {
                *slot = Slot::Closed;
                open.store(false, Ordering::SeqCst);
            }
            for (i, h, w) in std::mem::take(&mut st.waiters) {
                st.wake_in_flight[i] = true;
                let me = self.clone();
                wake_on(&h, w, move || lock(&me.state).wake_in_flight[i] = false);
            }
        }
    }

    fn handle(&self, index: usize) -> Result<RuntimeHandle, RemoteError> {
        match &lock(&self.state).slots[index] {
            Slot::Open(h) => Ok(h.clone()),
            _ => Err(RemoteError::ShardFinished(index)),
        }
    }

    /// Shard `index`'s run, if it ever registered (it may be over since).
    pub(crate) fn run_handle(&self, index: usize) -> Option<RuntimeHandle> {
        lock(&self.state).runs[index].clone()
    }

    /// Whether shard `index`'s main has returned (or never ran).
    pub(crate) fn main_has_returned(&self, index: usize) -> bool {
        lock(&self.state).main_done[index]
    }

    fn is_open(&self, index: usize) -> bool {
        self.open[index].load(Ordering::SeqCst)
    }
}

/// Waits (not a cancel point) until every shard's main has returned.
struct AllMainsDone<'a> {
    registry: &'a Registry,
    index: usize,
}

impl Future for AllMainsDone<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = lock(&self.registry.state);
        if st.mains_left == 0 {
            if st.wake_in_flight[self.index] {
                return Poll::Pending; // the wake-up in flight polls us again
            }
            return Poll::Ready(());
        }
        if !st.waiters.iter().any(|(_, _, w)| w.will_wake(cx.waker())) {
            st.waiters.push((self.index, current_handle(), cx.waker().clone()));
        }
        Core::current().set_waiting_on("other shards' mains");
        Poll::Pending
    }
}

// ---------------------------------------------------------------------------
// The host: the target side, one per shard thread.

thread_local! {
    static HOST: RefCell<Option<Rc<HostCtx>>> = const { RefCell::new(None) };
}

/// The current shard's host, if this thread runs a shard of a sharded run.
pub(crate) fn current_host() -> Option<Rc<HostCtx>> {
    HOST.with(|h| h.borrow().clone())
}

/// The target side of remote children on one shard.
pub(crate) struct HostCtx {
    pub(crate) registry: Arc<Registry>,
    pub(crate) index: usize,
    /// The scope node the groups hang under (under the shard main's status).
    root: Rc<ScopeNode>,
    /// Shown as the parent of hosted children in the task tree.
    parent_task: TaskId,
    /// Hosted children alive.
    live: Cell<usize>,
    waker: RefCell<Option<Waker>>,
    groups: RefCell<HashMap<u64, Rc<TargetGroup>>>,
    /// The owner of each hosted child alive, for the task tree query,
    /// indexed by the child's slab key (`TaskId::key`, dense and small):
    /// one store when a remote child is spawned and one when it ends, on
    /// this shard's thread, no hashing; local tasks never touch it. Grows
    /// to the run's highest slab key among hosted children.
    hosted: RefCell<Vec<Option<(TaskId, RemoteParent)>>>,
}

impl HostCtx {
    pub(crate) fn count(&self) -> usize {
        self.registry.count
    }

    /// The owner of `task` if it is a child this shard hosts for another.
    pub(crate) fn remote_parent(&self, task: TaskId) -> Option<RemoteParent> {
        match self.hosted.borrow().get(task.key()) {
            Some(Some((id, parent))) if *id == task => Some(*parent),
            _ => None,
        }
    }
}

/// Installs the host of shard `index` for the duration of the shard's
/// main; closes it (and the registry's slot) when dropped, a panic
/// included.
pub(crate) struct HostGuard {
    host: Rc<HostCtx>,
}

impl HostGuard {
    /// Registers this run in `registry` and waits for the other shards to
    /// register. Must be called from inside the shard's main task.
    pub(crate) fn install(registry: Arc<Registry>, index: usize, handle: RuntimeHandle) -> HostGuard {
        let core = Core::current();
        let host = Rc::new(HostCtx {
            registry: registry.clone(),
            index,
            root: ScopeNode::new_task_root(current_status_rc(core)),
            parent_task: core.current_task(),
            live: Cell::new(0),
            waker: RefCell::new(None),
            groups: RefCell::new(HashMap::new()),
            hosted: RefCell::new(Vec::new()),
        });
        HOST.with(|h| *h.borrow_mut() = Some(host.clone()));
        registry.register(index, handle);
        registry.wait_all_registered();
        HostGuard { host }
    }

    /// The shard's main has returned: waits until every shard's main has,
    /// closes the host, and waits for the children it hosts.
    pub(crate) async fn main_returned(&self) {
        let registry = self.host.registry.clone();
        registry.main_finished(self.host.index);
        AllMainsDone { registry: &registry, index: self.host.index }.await;
        // Every host is closed now (see `note_main_done`).
        HostIdle { host: &self.host }.await;
    }
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        self.host.registry.close(self.host.index);
        self.host.root.detach();
        // The host stays in the thread-local, closed, until the run is
        // over (`clear_host`): a task outliving the main (a system task)
        // gets `ShardFinished`, not "no such shard".
    }
}

/// Forgets this thread's host: called on the shard's thread once its run
/// is over.
pub(crate) fn clear_host() {
    HOST.with(|h| h.borrow_mut().take());
}

/// Waits (not a cancel point) until the host runs no child.
struct HostIdle<'a> {
    host: &'a HostCtx,
}

impl Future for HostIdle<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.host.live.get() == 0 {
            return Poll::Ready(());
        }
        *self.host.waker.borrow_mut() = Some(cx.waker().clone());
        Core::current().set_waiting_on("hosted remote children");
        Poll::Pending
    }
}

/// The children of one (nursery, this shard) pair: one scope node, so one
/// message cancels them all.
struct TargetGroup {
    id: u64,
    node: Rc<ScopeNode>,
    live: Cell<usize>,
    host: Rc<HostCtx>,
}

impl TargetGroup {
    /// Child `task` has ended (`TaskId::NONE`: dropped before its first
    /// poll, by a run being torn down; its `hosted` entry goes with the
    /// host).
    fn child_done(&self, task: TaskId) {
        if let Some(slot) = self.host.hosted.borrow_mut().get_mut(task.key()) {
            if slot.is_some_and(|(id, _)| id == task) {
                *slot = None;
            }
        }
        self.live.set(self.live.get() - 1);
        if self.live.get() == 0 {
            self.host.groups.borrow_mut().remove(&self.id);
            self.node.detach();
        }
        self.host.live.set(self.host.live.get() - 1);
        if self.host.live.get() == 0 {
            if let Some(w) = self.host.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

/// The *start* message, run on the target shard's thread: makes the child
/// and spawns it in its group (created, cancelled if `cancelled`, if the
/// group has no child here yet). If the host is closed the ticket is
/// dropped, which reports [`RemoteError::ShardFinished`] to the owner.
pub(crate) fn accept<M, Fut>(id: u64, cancelled: bool, mut ticket: Ticket, owner: RemoteParent, make: M)
where
    M: FnOnce() -> Fut,
    Fut: Future + 'static,
    Fut::Output: TaskOutput,
{
    let Some(host) = current_host().filter(|h| h.registry.is_open(h.index)) else {
        return; // `ticket` reports ShardFinished
    };
    host.registry.stats[host.index].hosted.fetch_add(1, Ordering::Relaxed);
    let fut = match catch_unwind(AssertUnwindSafe(make)) {
        Ok(fut) => fut,
        Err(panic) => {
            ticket.report(Outcome::Panic(panic));
            return;
        }
    };
    let existing = host.groups.borrow().get(&id).cloned();
    let group = existing.unwrap_or_else(|| {
        let node = ScopeNode::new_task_root(host.root.clone());
        if cancelled {
            node.cancel();
        }
        let g = Rc::new(TargetGroup { id, node, live: Cell::new(0), host: host.clone() });
        host.groups.borrow_mut().insert(id, g.clone());
        g
    });
    group.live.set(group.live.get() + 1);
    host.live.set(host.live.get() + 1);
    ticket.accepted = true;
    let child = RemoteChild { fut, task: TaskId::NONE, end: Some((ticket, group.clone())) };
    // SAFETY: the closure writes the whole future and cannot panic.
    let task = unsafe {
        Core::current()
            .spawn_in_place::<RemoteChild<Fut>, Fut>(group.node.clone(), None, host.parent_task, |dst| dst.write(child))
    };
    let mut hosted = host.hosted.borrow_mut();
    if hosted.len() <= task.key() {
        hosted.resize(task.key() + 1, None);
    }
    hosted[task.key()] = Some((task, owner));
}

/// The *cancel* message, run on the target shard's thread: cancels the
/// group's scope, so every child of that group here sees `Cancelled`. If
/// the group has no child left here, there is nothing to cancel.
pub(crate) fn cancel_group(id: u64) {
    if let Some(host) = current_host() {
        host.registry.stats[host.index].cancels.fetch_add(1, Ordering::Relaxed);
        let group = host.groups.borrow().get(&id).cloned();
        if let Some(g) = group {
            g.node.cancel();
        }
    }
}

pin_project! {
    /// A hosted child: reports its outcome to the owner when it ends, or
    /// [`RemoteError::ChildLost`] if it is dropped unfinished.
    struct RemoteChild<F> {
        #[pin]
        fut: F,
        // Its own id, learnt at its first poll (for `child_done`).
        task: TaskId,
        end: Option<(Ticket, Rc<TargetGroup>)>,
    }

    impl<F> PinnedDrop for RemoteChild<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some((ticket, group)) = this.end.take() {
                group.child_done(*this.task);
                drop(ticket); // reports ChildLost
            }
        }
    }
}

impl<F> Future for RemoteChild<F>
where
    F: Future,
    F::Output: TaskOutput,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if *this.task == TaskId::NONE {
            *this.task = Core::current().current_task();
        }
        let fut = this.fut;
        let outcome = match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(out)) => match out.into_task_result() {
                Ok(()) => Outcome::Ok,
                Err(e) => Outcome::Err(e),
            },
            Err(panic) => Outcome::Panic(panic),
        };
        if let Some((mut ticket, group)) = this.end.take() {
            group.child_done(*this.task);
            ticket.report(outcome);
        }
        Poll::Ready(())
    }
}

// ---------------------------------------------------------------------------
// Between the two sides.

/// What the target side sends back for one group.
#[derive(Default)]
pub(crate) struct GroupMsgs {
    outcomes: Vec<Outcome>,
    finished: usize,
    waker: Option<Waker>,
    /// Wake-ups sent to the proxy and not yet run (see `wake_on`).
    wakes_in_flight: usize,
}

/// The owner's mailbox for one group (the only state both sides touch).
pub(crate) struct GroupShared {
    msgs: Mutex<GroupMsgs>,
    /// The owner's run, where the proxy's wake-ups are sent.
    owner: RuntimeHandle,
}

/// One remote child's promise to report: travels in the start message and
/// then lives in the child. Dropped without reporting, it reports
/// [`RemoteError::ShardFinished`] (never accepted) or
/// [`RemoteError::ChildLost`] (accepted, then dropped unfinished).
pub(crate) struct Ticket {
    shared: Option<Arc<GroupShared>>,
    shard: usize,
    accepted: bool,
}

impl Ticket {
    pub(crate) fn new(shared: Arc<GroupShared>, shard: usize) -> Ticket {
        Ticket { shared: Some(shared), shard, accepted: false }
    }

    fn report(&mut self, outcome: Outcome) {
        let Some(shared) = self.shared.take() else { return };
        let mut m = lock(&shared.msgs);
        if !matches!(outcome, Outcome::Ok) {
            m.outcomes.push(outcome);
        }
        m.finished += 1;
        // Taken: more outcomes before the proxy runs cost no wake-up.
        if let Some(w) = m.waker.take() {
            m.wakes_in_flight += 1;
            let sh = shared.clone();
            wake_on(&shared.owner, w, move || lock(&sh.msgs).wakes_in_flight -= 1);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let e = if self.accepted { RemoteError::ChildLost(self.shard) } else { RemoteError::ShardFinished(self.shard) };
        self.report(Outcome::Err(Box::new(e)));
    }
}

static NEXT_GROUP: AtomicU64 = AtomicU64::new(1);

/// The owner side of one (nursery, target shard) group with live children.
pub(crate) struct OwnerGroup {
    pub(crate) target: usize,
    pub(crate) id: u64,
    handle: RuntimeHandle,
    pub(crate) shared: Arc<GroupShared>,
    /// Children sent; the group ends when as many have finished.
    sent: Cell<usize>,
    cancel_sent: Cell<bool>,
    /// The group's proxy task, set by the nursery once spawned: shown as
    /// the children's [`RemoteParent`] in the task tree.
    pub(crate) proxy: Cell<TaskId>,
}

impl OwnerGroup {
    /// A new group for children on `target`; `Err` if that shard's host is
    /// closed.
    pub(crate) fn new(host: &HostCtx, target: usize) -> Result<OwnerGroup, RemoteError> {
        Ok(OwnerGroup {
            target,
            id: NEXT_GROUP.fetch_add(1, Ordering::Relaxed),
            handle: host.registry.handle(target)?,
            shared: Arc::new(GroupShared { msgs: Mutex::default(), owner: current_handle() }),
            sent: Cell::new(0),
            cancel_sent: Cell::new(false),
            proxy: Cell::new(TaskId::NONE),
        })
    }

    /// Sends one *start* message. The target's host being closed is
    /// reported at once; a close racing with the message comes back as
    /// [`RemoteError::ShardFinished`] through the group.
    pub(crate) fn send_start<M, Fut>(&self, host: &HostCtx, make: M) -> Result<(), RemoteError>
    where
        M: FnOnce() -> Fut + Send + 'static,
        Fut: Future + 'static,
        Fut::Output: TaskOutput,
    {
        if !host.registry.is_open(self.target) {
            return Err(RemoteError::ShardFinished(self.target));
        }
        let ticket = Ticket::new(self.shared.clone(), self.target);
        let (id, cancelled) = (self.id, self.cancel_sent.get());
        let owner = RemoteParent { shard: host.index, task: self.proxy.get() };
        self.sent.set(self.sent.get() + 1);
        // On failure (the run is over) the job, and so the ticket, is
        // dropped: ShardFinished arrives through the group.
        let _ = self.handle.run_sync_soon(move || accept(id, cancelled, ticket, owner, make));
        Ok(())
    }
}

/// The local proxy of one group: a child of the owning nursery that ends
/// when every child of the group has, records their failures into the
/// nursery, and sends the group's one cancel message.
pub(crate) struct GroupProxy {
    pub(crate) group: Rc<OwnerGroup>,
    pub(crate) nursery: Rc<NurseryInner>,
}

impl Future for GroupProxy {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let g = &*self.group;
        let (outcomes, finished) = {
            let mut m = lock(&g.shared.msgs);
            if m.finished == g.sent.get() {
                // Done: keep no waker behind (it would hold the task).
                m.waker = None;
                if m.wakes_in_flight > 0 {
                    // Finish once it has landed (it polls us again).
                    let outcomes = std::mem::take(&mut m.outcomes);
                    drop(m);
                    for o in outcomes {
                        self.nursery.record_outcome(o);
                    }
                    return Poll::Pending;
                }
            } else {
                match &m.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => m.waker = Some(cx.waker().clone()),
                }
            }
            (std::mem::take(&mut m.outcomes), m.finished)
        };
        for o in outcomes {
            self.nursery.record_outcome(o);
        }
        if finished == g.sent.get() {
            self.nursery.remote_groups.borrow_mut().retain(|x| !Rc::ptr_eq(x, &self.group));
            return Poll::Ready(());
        }
        if !g.cancel_sent.get() && self.nursery.scope.effectively_cancelled.get() {
            g.cancel_sent.set(true);
            let id = g.id;
            // The run being over is fine: its children were dropped and
            // reported ChildLost.
            let _ = g.handle.run_sync_soon(move || cancel_group(id));
        }
        Core::current().set_waiting_on("remote children");
        Poll::Pending
    }
}

// ---------------------------------------------------------------------------
// start_on across shards.

struct StartState<V> {
    started: bool,
    value: Option<V>,
    ended: Option<Outcome>,
    waker: Option<Waker>,
}

/// Shared by [`RemoteTaskStatus`], the child's wrapper and the waiting
/// `start_on`.
pub(crate) struct StartSlot<V> {
    state: Mutex<StartState<V>>,
    /// The run of the waiting `start_on`.
    owner: RuntimeHandle,
    /// A wake-up of the waiting `start_on` is in flight (`wake_on`).
    wake_in_flight: Arc<AtomicBool>,
}

impl<V> StartSlot<V> {
    pub(crate) fn new() -> Arc<StartSlot<V>> {
        Arc::new(StartSlot {
            state: Mutex::new(StartState { started: false, value: None, ended: None, waker: None }),
            wake_in_flight: Arc::new(AtomicBool::new(false)),
            owner: current_handle(),
        })
    }

    fn end(&self, outcome: Outcome) {
        let mut s = lock(&self.state);
        if s.started || s.ended.is_some() {
            return;
        }
        s.ended = Some(outcome);
        self.wake(&mut s);
    }

    /// Under the lock: wakes the waiting `start_on`, if it waits.
    fn wake(&self, s: &mut StartState<V>) {
        if let Some(w) = s.waker.take() {
            self.wake_in_flight.store(true, Ordering::SeqCst);
            let flag = self.wake_in_flight.clone();
            wake_on(&self.owner, w, move || flag.store(false, Ordering::SeqCst));
        }
    }
}

/// Given to a child by [`Nursery::start_on`](crate::Nursery::start_on):
/// call [`started`](RemoteTaskStatus::started) once the child is ready;
/// the value crosses to the shard that called `start_on`.
///
/// ```
/// use trioxide::{open_nursery, BoxError, RemoteTaskStatus, ShardedBuilder};
/// let out = ShardedBuilder::new(2).run(|shard| async move {
///     if shard.index() == 1 {
///         return Ok::<_, BoxError>(0);
///     }
///     let got = open_nursery(|n| async move {
///         n.start_on(1, |status: RemoteTaskStatus<u16>| async move { status.started(8080) }).await
///     })
///     .await?;
///     Ok(got.unwrap())
/// });
/// assert_eq!(out.unwrap(), [8080, 0]);
/// ```
pub struct RemoteTaskStatus<V> {
    pub(crate) slot: Arc<StartSlot<V>>,
}

impl<V> fmt::Debug for RemoteTaskStatus<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteTaskStatus").field("started", &lock(&self.slot.state).started).finish()
    }
}

impl<V> RemoteTaskStatus<V> {
    /// Reports the child ready: `start_on` returns `value` on the calling
    /// shard, and from now on the child's outcome goes to the nursery.
    ///
    /// ```
    /// use trioxide::{open_nursery, run, RemoteTaskStatus};
    /// // In a plain run, shard 0 is the run itself: start_on starts locally.
    /// let v = run(open_nursery(|n| async move {
    ///     n.start_on(0, |status: RemoteTaskStatus<&str>| async move { status.started("ready") }).await
    /// }));
    /// assert_eq!(v.unwrap(), Some("ready"));
    /// ```
    pub fn started(self, value: V) {
        let mut s = lock(&self.slot.state);
        if s.started || s.ended.is_some() {
            return;
        }
        s.started = true;
        s.value = Some(value);
        self.slot.wake(&mut s);
    }
}

impl<V> crate::Started<V> for RemoteTaskStatus<V> {
    fn started(self, value: V) {
        RemoteTaskStatus::started(self, value);
    }
}

/// Ends a start that never ran (the message was dropped) or whose child
/// was dropped before `started`: `start_on` then returns
/// [`RemoteError::ShardFinished`].
pub(crate) struct StartGuard<V> {
    pub(crate) slot: Arc<StartSlot<V>>,
    pub(crate) shard: usize,
}

impl<V> Drop for StartGuard<V> {
    fn drop(&mut self) {
        self.slot.end(Outcome::Err(Box::new(RemoteError::ShardFinished(self.shard))));
    }
}

pin_project! {
    /// The child of `start_on`: until `started`, its end goes to the
    /// waiting `start_on`; afterwards, to the nursery.
    pub(crate) struct StartWrap<F, V> {
        #[pin]
        pub(crate) fut: F,
        pub(crate) guard: StartGuard<V>,
    }
}

impl<F, V> Future for StartWrap<F, V>
where
    F: Future,
    F::Output: TaskOutput,
{
    type Output = Result<(), crate::BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let fut = this.fut;
        let r = catch_unwind(AssertUnwindSafe(|| fut.poll(cx)));
        let started = lock(&this.guard.slot.state).started;
        match r {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => {
                let res = out.into_task_result();
                if started {
                    return Poll::Ready(res);
                }
                this.guard.slot.end(match res {
                    Ok(()) => Outcome::Ok,
                    Err(e) => Outcome::Err(e),
                });
                Poll::Ready(Ok(()))
            }
            Err(panic) if started => std::panic::resume_unwind(panic),
            Err(panic) => {
                this.guard.slot.end(Outcome::Panic(panic));
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// Waits for `started(value)` or the child's end (not a cancel point).
pub(crate) struct WaitStarted<V> {
    pub(crate) slot: Arc<StartSlot<V>>,
}

impl<V> Drop for WaitStarted<V> {
    fn drop(&mut self) {
        // Leave no waker of ours in the slot the child's shard holds.
        lock(&self.slot.state).waker = None;
    }
}

impl<V> Future for WaitStarted<V> {
    type Output = Result<V, crate::BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = lock(&self.slot.state);
        if self.slot.wake_in_flight.load(Ordering::SeqCst) {
            return Poll::Pending; // the wake-up in flight polls us again
        }
        if let Some(v) = s.value.take() {
            return Poll::Ready(Ok(v));
        }
        match s.ended.take() {
            Some(Outcome::Err(e)) => Poll::Ready(Err(e)),
            Some(Outcome::Panic(p)) => {
                drop(s);
                std::panic::resume_unwind(p)
            }
            Some(Outcome::Ok) => Poll::Ready(Err(Box::new(crate::StartError::NotStarted))),
            None => {
                s.waker = Some(cx.waker().clone());
                drop(s);
                Core::current().set_waiting_on("start_on");
                Poll::Pending
            }
        }
    }
}

/// A name for hosted children's proxies in the task tree.
pub(crate) const PROXY_NAME: Cow<'static, str> = Cow::Borrowed("trioxide remote children");
