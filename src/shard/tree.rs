//! One task tree across the shards of a sharded run (issue 13, item 5).
//!
//! [`sharded_task_tree`] asks every other shard for its tree by sending one
//! *query* job on that shard's remote queue (the queue `from_thread` and
//! the remote-children protocol already use) and waits for the answers.
//! Each job takes its shard's [`task_tree`](crate::task_tree) between two
//! scheduler passes, on that shard's thread, annotates the children it
//! hosts for other shards with their owner ([`RemoteParent`]), and puts the
//! answer in the query's mailbox. Nothing of this runs unless someone
//! asks: a shard's scheduler and spawn path do not change.
//!
//! A job that can never run (its shard's run is over, or ends with the job
//! still queued) is dropped unrun, and its [`Reply`]'s destructor answers
//! [`ShardState::Finished`] in its place: every shard answers, so the
//! query never hangs. The last answer wakes the querying task once, with
//! the wake-up sent as a job to the querier's run (`wake_on`), like every
//! cross-shard wake-up, so the waker is dropped on its own thread.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::kernel::error::Cancelled;
use crate::kernel::instrument::{task_tree, TaskInfo};
use crate::kernel::task::TaskId;
use crate::kernel::Core;
use crate::shard::remote::{current_host, wake_on, HostCtx};
use crate::shard::Shard;
use crate::thread::from_thread::{current_handle, RuntimeHandle};
use crate::time::checkpoint::{checkpoint, Checkpoint};

/// Where a shard's run was when it answered a [`sharded_task_tree`] query.
///
/// ```
/// use trioxide::{sharded_task_tree, BoxError, ShardState, ShardedBuilder};
/// let out = ShardedBuilder::new(2).run(|shard| async move {
///     let tree = sharded_task_tree().await?;
///     Ok::<_, BoxError>(tree[shard.index()].state)
/// });
/// // Each shard sees itself running (its main is the one asking).
/// assert_eq!(out.unwrap(), [ShardState::Running, ShardState::Running]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShardState {
    /// The shard's main is still running.
    Running,
    /// The shard's main has returned; its run goes on hosting children
    /// for other shards until every shard's main has returned, and then
    /// until the children it hosts have ended. Its main task shows as
    /// waiting on `"other shards' mains"` or `"hosted remote children"`.
    MainReturned,
    /// The shard's run is over (or ended before it could answer): no tasks.
    Finished,
}

/// The shard and task a hosted remote child belongs to: the proxy task
/// named `trioxide remote children` that its owning nursery runs on the
/// owning shard (one per nursery and target shard). In the owning shard's
/// tree that proxy's `parent` is the task whose nursery started the child.
///
/// ```
/// use trioxide::{open_nursery, sharded_task_tree, sleep_forever, BoxError, ShardedBuilder};
/// let out = ShardedBuilder::new(2).run(|shard| async move {
///     if shard.index() == 1 {
///         return Ok::<_, BoxError>(Some(true));
///     }
///     Ok(open_nursery(|n| async move {
///         n.start_soon_on(1, || async { sleep_forever().await?; Ok::<_, BoxError>(()) })?;
///         // Wait until shard 1 runs the child, then look.
///         let tree = loop {
///             let tree = sharded_task_tree().await?;
///             if tree[1].tasks.iter().any(|t| t.remote_parent.is_some()) {
///                 break tree;
///             }
///         };
///         let child = tree[1].tasks.iter().find_map(|t| t.remote_parent).unwrap();
///         let proxy = tree[0].tasks.iter().find(|t| t.info.id == child.task).unwrap();
///         n.cancel_scope().cancel();
///         Ok::<_, BoxError>(child.shard == 0 && proxy.info.name == "trioxide remote children")
///     })
///     .await?)
/// });
/// assert_eq!(out.unwrap(), [Some(true), Some(true)]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RemoteParent {
    /// The owning shard.
    pub shard: usize,
    /// The proxy task of the owning nursery on that shard.
    pub task: TaskId,
}

/// One task of a shard's tree: what [`task_tree`](crate::task_tree) says
/// of it on its own shard, and, for a child another shard started here,
/// which task of which shard it belongs to.
///
/// ```
/// use trioxide::{sharded_task_tree, BoxError, ShardedBuilder};
/// let out = ShardedBuilder::new(2).run(|_| async {
///     let tree = sharded_task_tree().await?;
///     // Each shard runs its main task, a local task with no remote parent.
///     let mains = tree.iter().filter(|s| s.tasks.iter().any(|t| t.info.parent.is_none() && t.remote_parent.is_none()));
///     Ok::<_, BoxError>(mains.count())
/// });
/// assert_eq!(out.unwrap(), [2, 2]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardTask {
    /// The task as its shard's [`task_tree`](crate::task_tree) shows it
    /// (ids are per run: compare them within one shard). A hosted remote
    /// child's `parent` is its shard's main task, which hosts it.
    pub info: TaskInfo,
    /// For a child started by another shard's nursery: that shard and the
    /// nursery's proxy task there. `None` for every other task.
    pub remote_parent: Option<RemoteParent>,
}

/// One shard's part of a [`sharded_task_tree`]: its index, its state and
/// its live tasks, ordered by id.
///
/// ```
/// use trioxide::{sharded_task_tree, BoxError, ShardedBuilder};
/// let out = ShardedBuilder::new(3).run(|_| async {
///     let tree = sharded_task_tree().await?;
///     Ok::<_, BoxError>(tree.iter().map(|s| s.shard).collect::<Vec<_>>())
/// });
/// assert_eq!(out.unwrap(), [[0, 1, 2], [0, 1, 2], [0, 1, 2]]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardTasks {
    /// The shard's index.
    pub shard: usize,
    /// Where its run was when it answered.
    pub state: ShardState,
    /// Its live tasks, ordered by id (empty if [`ShardState::Finished`]).
    pub tasks: Vec<ShardTask>,
}

/// Every shard's task tree, in shard order: call it from any task of a
/// sharded run to see what every shard is doing.
///
/// Each other shard answers between two of its scheduler passes, so a
/// shard busy running tasks answers at its next pass, and a task that
/// blocks its shard's thread delays that shard's answer until its step
/// ends. Each shard's part is a snapshot of that shard at the moment it
/// answered; the parts are not taken at one instant (a remote child may
/// show on its shard while its owner's proxy, answered later, is already
/// gone). A shard whose run is over, or ends before it answers, is
/// [`ShardState::Finished`] with no tasks: the query never hangs.
///
/// Outside a sharded run (a plain [`run`](crate::run), or a sharded run
/// of one shard) there is one shard, 0: the result is this run's
/// [`task_tree`](crate::task_tree) as shard 0, [`ShardState::Running`].
///
/// The call is a checkpoint: `Err(Cancelled)` if the calling task is
/// cancelled before or while it waits; answers arriving later are
/// dropped. Asking costs one job per other shard and one wake-up of the
/// caller; a run nobody asks pays nothing.
///
/// # Panics
/// Outside [`run`](crate::run): "trioxide::sharded_task_tree must be called
/// from inside trioxide::run", at the caller's line.
///
/// ```
/// use trioxide::{open_nursery, sharded_task_tree, sleep_forever, BoxError, ShardedBuilder};
/// let out = ShardedBuilder::new(2).run(|shard| async move {
///     if shard.index() == 1 {
///         return Ok::<_, BoxError>(Vec::new());
///     }
///     let names = open_nursery(|n| async move {
///         n.start_soon_named("sleeper", async { sleep_forever().await?; Ok::<_, BoxError>(()) })?;
///         trioxide::wait_all_tasks_blocked().await?;
///         let tree = sharded_task_tree().await?;
///         n.cancel_scope().cancel();
///         Ok::<_, BoxError>(tree[0].tasks.iter().map(|t| t.info.name.clone()).collect())
///     })
///     .await?;
///     Ok(names.unwrap_or_default())
/// });
/// let names = &out.unwrap()[0];
/// assert_eq!(names.len(), 2); // shard 0's main task and its sleeper
/// assert_eq!(names[1], "sleeper");
/// ```
#[track_caller]
pub fn sharded_task_tree() -> ShardedTaskTree {
    Core::current_for("trioxide::sharded_task_tree");
    ShardedTaskTree { state: State::Start }
}

/// The future of [`sharded_task_tree`].
///
/// ```
/// let tree: trioxide::ShardedTaskTree = trioxide::run(async { trioxide::sharded_task_tree() });
/// drop(tree); // does nothing unless awaited
/// ```
#[must_use = "the task tree query does nothing unless awaited"]
pub struct ShardedTaskTree {
    state: State,
}

enum State {
    Start,
    /// Outside a sharded run: a checkpoint, then the local tree.
    Local(Checkpoint),
    /// Waiting for the other shards' answers.
    Waiting(Arc<Gather>),
    /// Cancelled while a wake-up was in flight: waits for it to land.
    Cancelled(Arc<Gather>),
    Done,
}

impl fmt::Debug for ShardedTaskTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Start => "start",
            State::Local(_) => "local",
            State::Waiting(_) => "waiting for shards",
            State::Cancelled(_) => "cancelled",
            State::Done => "done",
        };
        f.debug_struct("ShardedTaskTree").field("state", &state).finish()
    }
}

/// The query's mailbox: the answers so far, and how to wake the querier.
struct Gather {
    inner: Mutex<GatherState>,
    /// The querier's run: the last answer's wake-up is sent there.
    owner: RuntimeHandle,
}

struct GatherState {
    answers: Vec<Option<ShardTasks>>,
    missing: usize,
    /// The querier's waker; `None` once it has stopped waiting.
    waker: Option<Waker>,
    /// Whether the querier's wake-up is in flight (see `wake_on`).
    wake_in_flight: bool,
}

fn lock(g: &Gather) -> MutexGuard<'_, GatherState> {
    // No user code runs under this lock.
    g.inner.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gather {
    fn answer(self: &Arc<Self>, tasks: ShardTasks) {
        let mut st = lock(self);
        let shard = tasks.shard;
        if st.answers[shard].is_some() {
            return;
        }
        st.answers[shard] = Some(tasks);
        st.missing -= 1;
        if st.missing == 0 {
            // Under the lock: the querier cannot see `missing == 0` and
            // finish before the wake-up is marked in flight.
            if let Some(w) = st.waker.take() {
                st.wake_in_flight = true;
                let me = self.clone();
                wake_on(&self.owner, w, move || lock(&me).wake_in_flight = false);
            }
        }
    }
}

/// One shard's promise to answer: travels in the query job. Dropped
/// unused (the job never ran), it answers [`ShardState::Finished`].
struct Reply {
    gather: Option<Arc<Gather>>,
    shard: usize,
}

impl Reply {
    /// Runs on the answering shard's thread, between two passes.
    fn send(mut self) {
        if let Some(g) = self.gather.take() {
            g.answer(local_tasks(self.shard));
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(g) = self.gather.take() {
            g.answer(ShardTasks { shard: self.shard, state: ShardState::Finished, tasks: Vec::new() });
        }
    }
}

/// This shard's tree (taken on its own thread), annotated with the owners
/// of the remote children it hosts.
fn local_tasks(shard: usize) -> ShardTasks {
    let host = current_host();
    let state = match &host {
        Some(h) if h.registry.main_has_returned(h.index) => ShardState::MainReturned,
        _ => ShardState::Running,
    };
    let tasks = task_tree()
        .into_iter()
        .map(|info| {
            let remote_parent = host.as_deref().and_then(|h| h.remote_parent(info.id));
            ShardTask { info, remote_parent }
        })
        .collect();
    ShardTasks { shard, state, tasks }
}

/// Sends the query to every other shard; this shard answers at once.
fn ask(host: &HostCtx) -> Arc<Gather> {
    let count = host.count();
    let gather = Arc::new(Gather {
        inner: Mutex::new(GatherState {
            answers: (0..count).map(|_| None).collect(),
            missing: count,
            waker: None,
            wake_in_flight: false,
        }),
        owner: current_handle(),
    });
    for shard in (0..count).filter(|&i| i != host.index) {
        let reply = Reply { gather: Some(gather.clone()), shard };
        match host.registry.run_handle(shard) {
            // On failure (the run is over) the job is dropped here and
            // its reply answers Finished.
            Some(h) => {
                let _ = h.run_sync_soon(move || reply.send());
            }
            None => drop(reply),
        }
    }
    gather.answer(local_tasks(host.index));
    gather
}

impl Future for ShardedTaskTree {
    type Output = Result<Vec<ShardTasks>, Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match &mut self.state {
                State::Start => {
                    let core = Core::current();
                    if core.is_cancelled() {
                        self.state = State::Done;
                        return Poll::Ready(Err(Cancelled));
                    }
                    match current_host() {
                        None => self.state = State::Local(checkpoint()),
                        Some(host) => {
                            let gather = ask(&host);
                            let all_in = lock(&gather).missing == 0;
                            self.state = State::Waiting(gather);
                            if all_in {
                                // Every other shard had finished: still a
                                // schedule point, as any checkpoint.
                                cx.waker().wake_by_ref();
                                return Poll::Pending;
                            }
                        }
                    }
                }
                State::Local(cp) => {
                    let r = std::task::ready!(Pin::new(cp).poll(cx));
                    self.state = State::Done;
                    r?;
                    let shard = Shard::current().map_or(0, |s| s.index());
                    return Poll::Ready(Ok(vec![local_tasks(shard)]));
                }
                State::Waiting(gather) => {
                    let gather = gather.clone();
                    let mut st = lock(&gather);
                    if Core::current().is_cancelled() {
                        st.waker = None;
                        if st.wake_in_flight {
                            drop(st);
                            self.state = State::Cancelled(gather);
                            return Poll::Pending; // the wake-up polls us again
                        }
                        drop(st);
                        self.state = State::Done;
                        return Poll::Ready(Err(Cancelled));
                    }
                    if st.missing == 0 && !st.wake_in_flight {
                        let answers = std::mem::take(&mut st.answers);
                        drop(st);
                        self.state = State::Done;
                        return Poll::Ready(Ok(answers.into_iter().flatten().collect()));
                    }
                    if st.missing > 0 {
                        match &st.waker {
                            Some(w) if w.will_wake(cx.waker()) => {}
                            _ => st.waker = Some(cx.waker().clone()),
                        }
                    }
                    drop(st);
                    Core::current().set_waiting_on("other shards' task trees");
                    return Poll::Pending;
                }
                State::Cancelled(gather) => {
                    if lock(gather).wake_in_flight {
                        return Poll::Pending;
                    }
                    self.state = State::Done;
                    return Poll::Ready(Err(Cancelled));
                }
                State::Done => panic!("ShardedTaskTree polled after completion"),
            }
        }
    }
}

impl Drop for ShardedTaskTree {
    fn drop(&mut self) {
        // Dropped while waiting: late answers find no waker to wake.
        if let State::Waiting(g) | State::Cancelled(g) = &self.state {
            lock(g).waker = None;
        }
    }
}
