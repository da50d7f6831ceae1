//! What other threads may touch of a run: the remote queue of wake-ups and
//! jobs, and the handshake that lets them wake a runtime blocked in
//! `epoll_wait`.
//!
//! Everything else of the run is single-threaded (`Cell`, `RefCell`, `Rc`);
//! this is the one `Arc`-shared part, reached from task headers (remote
//! wakers) and from `from_thread::RuntimeHandle`s.
//!
//! # The parking handshake
//! A remote waker pushes onto the queue, then sets `pending` and swaps
//! `parked` to false; the runtime, before blocking, sets `parked` and then
//! reads `pending`. A `SeqCst` fence stands between the write and the read
//! on each side, so at least one side sees the other's write (Dekker's
//! handshake): either the runtime sees `pending` and does not block, or the
//! waker sees `parked` and pokes the `mio::Waker`. No wake-up is lost, and a
//! runtime that is not parked costs a remote waker no syscall.
//!
//! [`Inbox`] is that handshake with its queue, everything but the syscall;
//! the loom models at the end of this file drive it, as shipped, through
//! every interleaving of a runtime and one or two wakers (DESIGN.md 18,
//! "Model-checked handshakes").

use std::convert::Infallible;
use std::sync::atomic::AtomicUsize;

use crate::kernel::sync_shim::{fence, AtomicBool, Mutex, MutexGuard, Ordering};
use crate::kernel::task::TaskId;

/// A closure sent by another thread to run on the runtime thread
/// (`from_thread`).
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// What other threads have queued for the runtime.
#[derive(Default)]
pub(crate) struct RemoteQueue {
    /// Tasks woken from other threads.
    pub(crate) tasks: Vec<TaskId>,
    /// Closures to run on the runtime thread, in arrival order.
    pub(crate) jobs: Vec<Job>,
    /// Set when the run is over: no job is accepted any more.
    closed: bool,
}

/// A queue other threads push onto and the runtime drains, with the
/// parking handshake (see the module doc): everything of [`Shared`] but the
/// `mio::Waker`, so that the loom models drive this very type with a model
/// of the poke in place of the syscall.
pub(crate) struct Inbox<Q> {
    /// Drained by the runtime between passes.
    queue: Mutex<Q>,
    /// Set after a push to `queue`, so the runtime can check for remote
    /// wake-ups with one load instead of taking the lock every pass.
    pending: AtomicBool,
    /// True while the runtime is (about to be) blocked in the I/O wait; a
    /// remote waker that clears it must poke the runtime.
    parked: AtomicBool,
}

impl<Q> Inbox<Q> {
    pub(crate) fn new(queue: Q) -> Inbox<Q> {
        Inbox { queue: Mutex::new(queue), pending: AtomicBool::new(false), parked: AtomicBool::new(false) }
    }

    /// The queue. A poisoned lock only means another thread panicked
    /// mid-push; the queue is still valid.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Q> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Other threads: runs `push` on the queue under the lock, and if it
    /// pushed (`Ok`), tells the runtime. `Ok(true)`: the runtime is parked
    /// and the caller must poke it.
    pub(crate) fn push<E>(&self, push: impl FnOnce(&mut Q) -> Result<(), E>) -> Result<bool, E> {
        push(&mut self.lock())?;
        Ok(self.notify())
    }

    /// Tells the runtime that something waits in the queue; true if it is
    /// parked (then the caller pokes it).
    fn notify(&self) -> bool {
        // Release: the runtime's `drain`, acquiring `pending`, takes the
        // lock after our push released it.
        self.pending.store(true, Ordering::Release);
        // Pairs with the fence in `park` (Dekker's handshake): of the two
        // fences, whichever comes second in their single total order sees
        // the flag written before the other, so either the runtime sees
        // `pending` before it blocks, or we see `parked` and poke it. (The
        // fences, not `SeqCst` on the flags themselves: the same
        // instructions on x86, and loom checks fences but treats `SeqCst`
        // loads and stores as acquire/release, DESIGN.md 18.)
        fence(Ordering::SeqCst);
        // A read-modify-write: reads the latest `parked`, and only one
        // waker of several sees `true`.
        self.parked.swap(false, Ordering::Relaxed)
    }

    /// The runtime, just before blocking in the I/O wait. Returns false if
    /// a remote wake-up is already pending (then don't block).
    pub(crate) fn park(&self) -> bool {
        // Every write of `parked` is a read-modify-write, here and in
        // `unpark` as in `notify`: then they form one chain, each reading
        // the one before, and a waker's swap always finds the latest
        // `true`. Plain stores would be as correct (the fences order them),
        // but loom orders a plain store and a concurrent swap only by
        // causality, and then lets a later swap read the older `false`
        // (a deadlock no real machine can reach). The swaps cost nothing
        // that counts: one per blocking I/O wait, next to its syscall.
        self.parked.swap(true, Ordering::Relaxed);
        // Pairs with the fence in `notify`.
        fence(Ordering::SeqCst);
        if self.pending.load(Ordering::Relaxed) {
            self.parked.swap(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// The runtime, after the I/O wait: pushes cost no poke again.
    pub(crate) fn unpark(&self) {
        // A swap, not a store: see `park`.
        self.parked.swap(false, Ordering::Relaxed);
    }

    /// Whether remote wake-ups wait to be drained (one load).
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// The runtime: runs `drain` on the queue if anything was pushed since
    /// the last drain. Cheap (one load) when nothing was.
    pub(crate) fn drain(&self, drain: impl FnOnce(&mut Q)) {
        if self.pending.load(Ordering::Relaxed) && self.pending.swap(false, Ordering::AcqRel) {
            drain(&mut self.lock());
        }
    }
}

/// The part of the runtime other threads may touch: remote wake-ups and
/// jobs.
pub(crate) struct Shared {
    /// The remote queue and the parking handshake.
    inbox: Inbox<RemoteQueue>,
    waker: mio::Waker,
    /// Task allocations the runtime has let go of but a waker still keeps
    /// (detached: see `task.rs`). With the slab's length, the task
    /// allocations alive.
    pub(crate) detached_allocations: AtomicUsize,
}

impl Shared {
    pub(crate) fn new(waker: mio::Waker) -> Shared {
        Shared { inbox: Inbox::new(RemoteQueue::default()), waker, detached_allocations: AtomicUsize::new(0) }
    }

    pub(super) fn push_remote(&self, id: TaskId) {
        let Ok(poke) = self.inbox.push(|q| {
            q.tasks.push(id);
            Ok::<(), Infallible>(())
        });
        self.poke_if(poke);
    }

    /// Jobs from other threads waiting to run (`current_statistics`).
    pub(crate) fn queued_jobs(&self) -> usize {
        self.inbox.lock().jobs.len()
    }

    /// Pokes the runtime out of its I/O wait if the handshake says so.
    fn poke_if(&self, poke: bool) {
        if poke {
            // Nothing useful to do if the poke fails: the runtime is gone.
            let _ = self.waker.wake();
        }
    }

    /// Queues `job` to run on the runtime thread between passes. Gives it
    /// back if the run is over.
    pub(crate) fn push_job(&self, job: Job) -> Result<(), Job> {
        let poke = self.inbox.push(|q| {
            if q.closed {
                return Err(job);
            }
            q.jobs.push(job);
            Ok(())
        })?;
        self.poke_if(poke);
        Ok(())
    }

    /// Refuses further jobs and returns those not run (the run is over).
    /// Dropping them tells their senders the run finished.
    pub(crate) fn close_jobs(&self) -> Vec<Job> {
        let mut q = self.inbox.lock();
        q.closed = true;
        std::mem::take(&mut q.jobs)
    }

    /// Called by the runtime just before blocking in the I/O wait. Returns
    /// false if a remote wake-up is already pending (then don't block).
    pub(crate) fn park(&self) -> bool {
        self.inbox.park()
    }

    /// Spins up to `limit` waiting for a remote wake-up; true if one came.
    pub(crate) fn spin_for_remote(&self, limit: std::time::Duration) -> bool {
        let start = std::time::Instant::now();
        let mut i: u32 = 0;
        loop {
            if self.inbox.has_pending() {
                return true;
            }
            i = i.wrapping_add(1);
            // Read the clock only every 64 spins: it costs ~20 ns.
            if i.is_multiple_of(64) && start.elapsed() >= limit {
                return false;
            }
            std::hint::spin_loop();
        }
    }

    pub(crate) fn unpark(&self) {
        self.inbox.unpark();
    }

    /// Whether remote wake-ups wait to be drained (one load).
    pub(crate) fn has_pending(&self) -> bool {
        self.inbox.has_pending()
    }

    /// Moves remote wake-ups and jobs into `tasks` and `jobs`. Cheap when
    /// there are none.
    pub(crate) fn drain_remote(&self, tasks: &mut Vec<TaskId>, jobs: &mut Vec<Job>) {
        self.inbox.drain(|q| {
            tasks.append(&mut q.tasks);
            jobs.append(&mut q.jobs);
        });
    }
}

/// The parking handshake under loom: remote wakers push and notify through
/// [`Inbox`], the runtime drains, parks and blocks exactly as
/// `scheduler.rs` does, with a loom `Notify` in place of the `mio::Waker`
/// (an eventfd: a poke before the wait is not lost, several pokes wake it
/// once, and the wait may return spuriously, as `epoll_wait` may). A lost
/// wake-up leaves the runtime blocked forever, which loom reports as a
/// deadlock.
#[cfg(all(test, loom))]
mod loom_models {
    use std::convert::Infallible;
    // std's `Arc` and counter, not loom's: they only share the model's
    // objects and count pokes, and a loom `Arc` dropped while a deadlock
    // unwinds aborts the test process instead of failing the test.
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use loom::sync::Notify;

    use super::Inbox;
    use crate::kernel::sync_shim::{check_model, fence, Ordering, BOUNDED};

    /// `wakers` threads each push their index once; the runtime loops as
    /// `Core`'s pass does (drain; if nothing came, `park`, block until poked
    /// unless a wake-up was pending, unpark) until it has every index.
    fn wakers_and_runtime(wakers: usize, park: fn(&Inbox<Vec<usize>>) -> bool) {
        let inbox = Arc::new(Inbox::new(Vec::<usize>::new()));
        let eventfd = Arc::new(Notify::new());
        let pokes = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..wakers)
            .map(|i| {
                let (inbox, eventfd, pokes) = (inbox.clone(), eventfd.clone(), pokes.clone());
                loom::thread::spawn(move || {
                    let Ok(poke) = inbox.push(|q| {
                        q.push(i);
                        Ok::<(), Infallible>(())
                    });
                    if poke {
                        pokes.fetch_add(1, Ordering::Relaxed);
                        eventfd.notify();
                    }
                })
            })
            .collect();
        let mut got = Vec::new();
        let mut announced = 0;
        loop {
            inbox.drain(|q| got.append(q));
            if got.len() == wakers {
                break;
            }
            announced += 1;
            if park(&inbox) {
                eventfd.wait();
            }
            inbox.unpark();
        }
        for t in threads {
            t.join().expect("a waker panicked");
        }
        got.sort_unstable();
        assert_eq!(got, (0..wakers).collect::<Vec<_>>(), "every pushed id is drained once");
        // A poke needs `parked`, which only `park` sets and the first poke
        // clears: a runtime that does not announce a park costs no poke.
        // (Not "no poke unless it blocks": when both sides see each other,
        // the runtime does not block and the waker pokes anyway; the
        // eventfd then makes one later wait return at once. Loom finds that
        // interleaving with one waker.)
        assert!(pokes.load(Ordering::Relaxed) <= announced, "a poke with the runtime not parked");
        inbox.drain(|q| assert!(q.is_empty(), "ids left behind: {q:?}"));
    }

    #[test]
    fn loom_parking_handshake_one_waker() {
        check_model("parking handshake, 1 waker", None, || wakers_and_runtime(1, Inbox::park));
    }

    #[test]
    fn loom_parking_handshake_two_wakers() {
        check_model("parking handshake, 2 wakers", BOUNDED, || wakers_and_runtime(2, Inbox::park));
    }

    /// The handshake in the wrong order: the runtime checks `pending`
    /// before it announces `parked`. A waker can then push and notify
    /// between the two, see `parked` still false and not poke, and the
    /// runtime blocks with a wake-up queued. The model must find that.
    fn park_checking_first(inbox: &Inbox<Vec<usize>>) -> bool {
        fence(Ordering::SeqCst);
        if inbox.pending.load(Ordering::Relaxed) {
            return false;
        }
        inbox.parked.swap(true, Ordering::Relaxed);
        true
    }

    #[test]
    #[should_panic(expected = "deadlock")]
    fn loom_parking_handshake_wrong_order_is_caught() {
        check_model("parking handshake, check before announce (broken)", None, || {
            wakers_and_runtime(1, park_checking_first)
        });
    }

    /// A runtime that never parks (busy): no waker pokes it.
    #[test]
    fn loom_parking_handshake_busy_runtime_costs_no_poke() {
        check_model("parking handshake, busy runtime", None, || {
            let inbox = Arc::new(Inbox::new(Vec::<u8>::new()));
            let pusher = inbox.clone();
            let t = loom::thread::spawn(move || {
                let Ok(poke) = pusher.push(|q| {
                    q.push(7);
                    Ok::<(), Infallible>(())
                });
                poke
            });
            let mut got = Vec::new();
            while got.is_empty() {
                inbox.drain(|q| got.append(q));
                loom::thread::yield_now();
            }
            assert_eq!(got, [7]);
            assert!(!t.join().expect("the waker panicked"), "a poke with the runtime not parked");
        });
    }
}
