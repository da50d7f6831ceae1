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
//! reads `pending`. Both sides use `SeqCst` on these two flags, so at least
//! one side sees the other's write (Dekker's handshake): either the runtime
//! sees `pending` and does not block, or the waker sees `parked` and pokes
//! the `mio::Waker`. No wake-up is lost, and a runtime that is not parked
//! costs a remote waker no syscall.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

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

/// The part of the runtime other threads may touch: remote wake-ups and
/// jobs.
pub(crate) struct Shared {
    /// Drained by the runtime between passes.
    remote: Mutex<RemoteQueue>,
    /// Set after a push to `remote`, so the runtime can check for remote
    /// wake-ups with one load instead of taking the lock every pass.
    pending: AtomicBool,
    /// True while the runtime is (about to be) blocked in the I/O wait; a
    /// remote waker that clears it must poke `waker`.
    parked: AtomicBool,
    waker: mio::Waker,
    /// Task allocations the runtime has let go of but a waker still keeps
    /// (detached: see `task.rs`). With the slab's length, the task
    /// allocations alive.
    pub(crate) detached_allocations: AtomicUsize,
}

impl Shared {
    pub(crate) fn new(waker: mio::Waker) -> Shared {
        Shared {
            remote: Mutex::new(RemoteQueue::default()),
            pending: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            waker,
            detached_allocations: AtomicUsize::new(0),
        }
    }

    pub(super) fn push_remote(&self, id: TaskId) {
        // A poisoned lock only means another waker panicked mid-push; the
        // Vec is still valid.
        self.remote.lock().unwrap_or_else(|p| p.into_inner()).tasks.push(id);
        self.poke();
    }

    /// Jobs from other threads waiting to run (`current_statistics`).
    pub(crate) fn queued_jobs(&self) -> usize {
        self.remote.lock().unwrap_or_else(|p| p.into_inner()).jobs.len()
    }

    /// Tells the runtime that something waits in `remote`.
    fn poke(&self) {
        // SeqCst pairs with `park`: either the runtime sees `pending` before
        // it blocks, or we see `parked` and poke it (Dekker's handshake).
        self.pending.store(true, Ordering::SeqCst);
        if self.parked.swap(false, Ordering::SeqCst) {
            // Nothing useful to do if the poke fails: the runtime is gone.
            let _ = self.waker.wake();
        }
    }

    /// Queues `job` to run on the runtime thread between passes. Gives it
    /// back if the run is over.
    pub(crate) fn push_job(&self, job: Job) -> Result<(), Job> {
        let mut q = self.remote.lock().unwrap_or_else(|p| p.into_inner());
        if q.closed {
            return Err(job);
        }
        q.jobs.push(job);
        drop(q);
        self.poke();
        Ok(())
    }

    /// Refuses further jobs and returns those not run (the run is over).
    /// Dropping them tells their senders the run finished.
    pub(crate) fn close_jobs(&self) -> Vec<Job> {
        let mut q = self.remote.lock().unwrap_or_else(|p| p.into_inner());
        q.closed = true;
        std::mem::take(&mut q.jobs)
    }

    /// Called by the runtime just before blocking in the I/O wait. Returns
    /// false if a remote wake-up is already pending (then don't block).
    pub(crate) fn park(&self) -> bool {
        self.parked.store(true, Ordering::SeqCst);
        if self.pending.load(Ordering::SeqCst) {
            self.parked.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Spins up to `limit` waiting for a remote wake-up; true if one came.
    pub(crate) fn spin_for_remote(&self, limit: std::time::Duration) -> bool {
        let start = std::time::Instant::now();
        let mut i: u32 = 0;
        loop {
            if self.pending.load(Ordering::Relaxed) {
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
        self.parked.store(false, Ordering::SeqCst);
    }

    /// Whether remote wake-ups wait to be drained (one load).
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// Moves remote wake-ups and jobs into `tasks` and `jobs`. Cheap when
    /// there are none.
    pub(crate) fn drain_remote(&self, tasks: &mut Vec<TaskId>, jobs: &mut Vec<Job>) {
        if self.pending.load(Ordering::Relaxed) && self.pending.swap(false, Ordering::AcqRel) {
            let mut q = self.remote.lock().unwrap_or_else(|p| p.into_inner());
            tasks.append(&mut q.tasks);
            jobs.append(&mut q.jobs);
        }
    }
}
