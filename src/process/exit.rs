//! Learning that a child exited without blocking the run.
//!
//! * **pidfd** (Linux 5.3+): `pidfd_open(pid)` gives an fd that turns
//!   readable when the process exits. It is an ordinary source for the
//!   driver (registered once, edge-triggered), so waiting costs nothing
//!   while the child runs. It is opened right after the spawn, before
//!   anyone can reap the child, so it can never name a recycled pid.
//! * **A waiter thread** when the kernel lacks pidfd (`ENOSYS`, or a
//!   sandbox refuses it): one thread per child, blocked in
//!   `waitid(P_PID, pid, WEXITED | WNOWAIT)`, which reports the exit
//!   *without reaping*, so the child stays ours to reap (and its pid stays
//!   reserved) until `Process` reaps it with `try_wait`. The thread then
//!   sets a flag and wakes the waiting task through its `Waker` (trioxide
//!   wakers work from any thread). It is spawned once per child, not per
//!   wait, so a wait cancelled again and again costs no new thread (Trio's
//!   `waitid` backend keeps one per process for the same reason). It lives
//!   until the child exits, even if the `Process` is dropped first.
//!
//! Either way this only says "the child may have exited": the caller
//! confirms with a non-blocking `waitpid`, which also reaps it.

use crate::kernel::sys::syscall;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use crate::kernel::error::{is_cancelled_error, Cancelled};
use crate::kernel::io::readiness::{Dir, Ready, Source};
use crate::kernel::Core;

/// How [`ExitWatch::open`] watches a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchKind {
    /// pidfd if the kernel has it, else a thread.
    Best,
    /// Always a thread (to test the fallback on kernels with pidfd).
    #[cfg_attr(not(test), allow(dead_code))]
    Thread,
}

pub(crate) enum ExitWatch {
    Pidfd(Source<OwnedFd>),
    Thread(Arc<WaiterThread>),
}

impl fmt::Debug for ExitWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitWatch::Pidfd(s) => write!(f, "pidfd {}", s.fd()),
            ExitWatch::Thread(_) => f.write_str("waiter thread"),
        }
    }
}

/// `pidfd_open(pid, 0)`; the fd is close-on-exec.
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: the syscall takes a pid and flags and returns a new fd or -1;
    // no memory is passed.
    let fd = syscall!(syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint))?;
    // SAFETY: a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl ExitWatch {
    /// Starts watching child `pid`, which must not have been reaped yet.
    pub(crate) fn open(pid: u32, kind: WatchKind) -> io::Result<ExitWatch> {
        if kind == WatchKind::Best {
            // Any failure (ENOSYS on kernels before 5.3, EPERM from a
            // seccomp filter) falls back to the thread, as Trio does.
            if let Ok(fd) = pidfd_open(pid) {
                let source = Source::new(fd);
                // Registered now when inside a run, so that a driver error
                // comes out of `open_process`; outside a run, on the first
                // wait.
                let registered = match Core::try_current() {
                    None => true,
                    Some(_) => source.register_now().is_ok(),
                };
                if registered {
                    return Ok(ExitWatch::Pidfd(source));
                }
            }
        }
        Ok(ExitWatch::Thread(WaiterThread::spawn(pid)?))
    }

    /// Waits until the child may have exited. The caller has just seen
    /// `waitpid(WNOHANG)` report it running. A cancel point.
    pub(crate) async fn wait(&self) -> Result<(), Cancelled> {
        match self {
            ExitWatch::Pidfd(source) => {
                // Forget the optimistic (or stale) readiness: the caller
                // just learned the child runs. An exit after that check is
                // a new edge, collected only between scheduler passes, so
                // it cannot be lost by clearing here.
                source.state.clear(Dir::Read);
                let ready = Ready { state: &source.state, dir: Dir::Read, fd: source.fd(), suspended: false };
                match ready.await {
                    Ok(_) => Ok(()),
                    Err(e) if e.get_ref().is_some_and(|i| is_cancelled_error(i)) => Err(Cancelled),
                    // Only a Process waited on in a later run than the one
                    // that opened it registers here; epoll_ctl refusing a
                    // pidfd leaves no way to learn of the exit.
                    Err(e) => panic!("trioxide: cannot wait for the child's pidfd: {e}"),
                }
            }
            ExitWatch::Thread(t) => t.wait().await,
        }
    }

    /// The child was reaped: the pidfd is no longer needed.
    pub(crate) fn close(&self) {
        if let ExitWatch::Pidfd(source) = self {
            source.close();
        }
    }
}

/// The fallback's shared state: set by the thread, read by the task.
pub(crate) struct WaiterThread {
    exited: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl WaiterThread {
    fn spawn(pid: u32) -> io::Result<Arc<WaiterThread>> {
        let pid = libc::id_t::from(pid);
        let shared = Arc::new(WaiterThread { exited: AtomicBool::new(false), waker: Mutex::new(None) });
        let theirs = shared.clone();
        std::thread::Builder::new().name(format!("trioxide waitid {pid}")).spawn(move || {
            loop {
                // SAFETY: zeroed siginfo_t is a valid out-buffer; waitid
                // fills it. WNOWAIT leaves the child unreaped.
                let r = unsafe {
                    let mut info: libc::siginfo_t = std::mem::zeroed();
                    libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT)
                };
                // EINTR: try again. Anything else (ECHILD: it was reaped
                // already) means there is nothing left to wait for.
                if r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    break;
                }
            }
            theirs.exited.store(true, Ordering::Release);
            let waker = theirs.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(w) = waker {
                w.wake();
            }
        })?;
        Ok(shared)
    }

    async fn wait(&self) -> Result<(), Cancelled> {
        let _clear = ClearWaker(self);
        poll_fn(|cx| {
            if self.exited.load(Ordering::Acquire) {
                return Poll::Ready(Ok(()));
            }
            let core = Core::current();
            if core.is_cancelled() {
                return Poll::Ready(Err(Cancelled));
            }
            *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            // The thread may have finished between the first check and
            // storing the waker; it would then have found no waker.
            if self.exited.load(Ordering::Acquire) {
                return Poll::Ready(Ok(()));
            }
            core.set_waiting_on("child exit (waiter thread)");
            Poll::Pending
        })
        .await
    }
}

/// Withdraws the task's waker when a wait ends (cancelled or abandoned).
struct ClearWaker<'a>(&'a WaiterThread);

impl Drop for ClearWaker<'_> {
    fn drop(&mut self) {
        self.0.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Whether this kernel lets us open a pidfd (for tests that check which
/// watch was chosen).
#[cfg(test)]
pub(crate) fn tests_pidfd_available() -> bool {
    pidfd_open(std::process::id()).is_ok()
}
