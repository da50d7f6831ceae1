//! The process-wide cache of worker threads behind
//! [`to_thread::run_sync`](crate::thread::to_thread::run_sync).
//!
//! Starting a thread costs tens of microseconds; handing a job to a thread
//! that is already waiting costs one mutex and one futex wake. So a thread
//! that finishes a job waits for the next one for [`IDLE_TIMEOUT`] before it
//! exits (Trio's `_thread_cache` does the same). The pool itself has no
//! size limit: how many jobs run at once is the business of the
//! `CapacityLimiter` each caller goes through.

use std::collections::VecDeque;
use std::io;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::kernel::remote::Job;

/// How long an idle worker thread waits for a job before it exits. Trio's
/// thread cache uses 10 s: long enough that a steady trickle of calls
/// reuses threads, short enough that a burst leaves no threads behind for
/// long.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

struct State {
    jobs: VecDeque<Job>,
    /// Workers waiting on `ready`.
    idle: usize,
    /// Workers alive: a failed thread start checks whether any other
    /// worker will come back for the queue.
    threads: usize,
}

struct Pool {
    state: Mutex<State>,
    ready: Condvar,
}

static POOL: Pool =
    Pool { state: Mutex::new(State { jobs: VecDeque::new(), idle: 0, threads: 0 }), ready: Condvar::new() };

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Jobs run outside the lock and catch their own panics, so a
        // poisoned lock can only come from a panic in this file's few lines;
        // the state is still consistent then.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs `job` on a worker thread: an idle one if there is one, else a new
/// one. Fails only if no thread can be started.
pub(crate) fn spawn(job: Job) -> io::Result<()> {
    let mut st = POOL.lock();
    st.jobs.push_back(job);
    // Every idle worker will take one queued job; start a thread only if
    // the queue is longer than the idle workers can absorb.
    if st.idle >= st.jobs.len() {
        drop(st);
        POOL.ready.notify_one();
        return Ok(());
    }
    st.threads += 1;
    drop(st);
    let started = std::thread::Builder::new().name("trioxide-worker".into()).spawn(worker);
    if let Err(e) = started {
        let mut st = POOL.lock();
        st.threads -= 1;
        if st.threads > 0 {
            // A busy worker will come back for the queued job.
            return Ok(());
        }
        // No worker will ever run it: take it back (dropping a job tells its
        // caller it did not run).
        st.jobs.pop_back();
        return Err(e);
    }
    Ok(())
}

fn worker() {
    let mut st = POOL.lock();
    loop {
        if let Some(job) = st.jobs.pop_front() {
            drop(st);
            job();
            st = POOL.lock();
            continue;
        }
        st.idle += 1;
        let (guard, waited) = POOL.ready.wait_timeout(st, IDLE_TIMEOUT).unwrap_or_else(|p| p.into_inner());
        st = guard;
        st.idle -= 1;
        if waited.timed_out() && st.jobs.is_empty() {
            st.threads -= 1;
            return;
        }
    }
}
