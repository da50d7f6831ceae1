//! The I/O driver: one `mio::Poll` (epoll on Linux) per run, the table of
//! registered sources, and the dispatch of readiness events to them.
//!
//! A source is registered **once**, edge-triggered, for both directions, the
//! first time a task has to wait on it ([`Driver::register`]). From then on
//! its readiness lives in its [`IoState`] (see `readiness.rs`): events set
//! bits there and wake the waiting task; the task clears a bit only when the
//! kernel said `WouldBlock` (or a read came back short). A task that waits
//! again on the same socket (every read loop) therefore makes no
//! `epoll_ctl` call at all.
//!
//! Sources are never deregistered when they close: closing an fd removes it
//! from every epoll set by itself (when the last descriptor of the open file
//! goes), so [`Driver::forget`] only frees the table slot. Raw fds handed to
//! [`wait_readable`](crate::wait_readable) are the exception: the caller owns
//! them and may keep them open after [`notify_closing`](crate::notify_closing),
//! so those are deregistered explicitly.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::task::Waker;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::kernel::io::readiness::IoState;

/// The token of the cross-thread waker. Sources use their slab key.
pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);

/// Events fetched per `epoll_wait`. 1024 matches mio's examples; more ready
/// fds than this are picked up by the next wait, which comes at once because
/// edge-triggered events stay queued in the kernel until fetched.
const EVENTS_CAPACITY: usize = 1024;

pub(crate) struct Driver {
    poll: Poll,
    events: Events,
    /// Registered sources by token. An `Rc` each: the socket object holds
    /// the other reference, so a closed socket's state outlives any event
    /// already fetched for it.
    sources: Slab<Rc<IoState>>,
    /// Raw fds waited on through `wait_readable` / `wait_writable`.
    raw: HashMap<RawFd, Rc<IoState>>,
    stats: IoStats,
}

/// Counts of the driver's `epoll_ctl` calls and `epoll_wait`s so far in this
/// run, from [`io_stats`]: what the "one registration per socket" rule can
/// be checked against.
///
/// ```
/// use trioxide::{io_stats, run, BoxError, UnixStream};
/// run(async {
///     let (a, b) = UnixStream::pair()?;
///     let before = io_stats();
///     a.send_all(b"x").await?; // ready at once: no registration
///     b.receive_some(&mut [0u8; 1]).await?;
///     assert_eq!(io_stats().registrations, before.registrations);
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoStats {
    /// `EPOLL_CTL_ADD` calls: one per socket that ever had to wait.
    pub registrations: u64,
    /// `EPOLL_CTL_DEL` calls: only for raw fds passed to
    /// [`notify_closing`](crate::notify_closing).
    pub deregistrations: u64,
    /// `epoll_wait` calls (blocking or not).
    pub polls: u64,
    /// Sources registered right now.
    pub registered_now: usize,
}

/// The I/O driver's counters for the current run.
///
/// ```
/// trioxide::run(async {
///     assert_eq!(trioxide::io_stats().registrations, 0);
/// });
/// ```
///
/// # Panics
/// Outside [`run`](crate::run): "trioxide::io_stats must be called from
/// inside trioxide::run", at the caller's line.
#[track_caller]
pub fn io_stats() -> IoStats {
    let driver = crate::kernel::Core::current_for("trioxide::io_stats").driver.borrow();
    IoStats { registered_now: driver.sources.len(), ..driver.stats }
}

impl Driver {
    pub(crate) fn new() -> io::Result<(Driver, mio::Waker)> {
        let poll = Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        let driver = Driver {
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            sources: Slab::new(),
            raw: HashMap::new(),
            stats: IoStats::default(),
        };
        Ok((driver, waker))
    }

    /// Whether any source is registered. While none is, the scheduler never
    /// polls epoll with a zero timeout: there would be nothing to report but
    /// remote wake-ups, which have their own flag.
    #[inline]
    pub(crate) fn has_sources(&self) -> bool {
        !self.sources.is_empty()
    }

    /// Tasks waiting for a registered fd to be readable, and writable
    /// (`current_statistics`; a scan of the sources, like Trio's).
    pub(crate) fn tasks_waiting(&self) -> (usize, usize) {
        use crate::kernel::io::readiness::Dir;
        self.sources.iter().fold((0, 0), |(r, w), (_, s)| {
            (r + usize::from(s.has_waiter(Dir::Read)), w + usize::from(s.has_waiter(Dir::Write)))
        })
    }

    /// Registers `fd` (edge-triggered, readable and writable) and returns its
    /// token. The one `epoll_ctl` a socket ever costs.
    pub(crate) fn register(&mut self, fd: RawFd, state: &Rc<IoState>) -> io::Result<usize> {
        let entry = self.sources.vacant_entry();
        let key = entry.key();
        self.poll.registry().register(&mut SourceFd(&fd), Token(key), Interest::READABLE | Interest::WRITABLE)?;
        entry.insert(state.clone());
        self.stats.registrations += 1;
        Ok(key)
    }

    /// Frees the slot of a source whose fd is being closed (no syscall).
    pub(crate) fn forget(&mut self, key: usize) {
        self.sources.try_remove(key);
    }

    /// The state for a raw fd, registering it on first use.
    pub(crate) fn raw_state(&mut self, fd: RawFd) -> io::Result<Rc<IoState>> {
        if let Some(state) = self.raw.get(&fd) {
            return Ok(state.clone());
        }
        let state = Rc::new(IoState::new());
        let key = self.register(fd, &state)?;
        state.set_registered(key);
        self.raw.insert(fd, state.clone());
        Ok(state)
    }

    /// Stops watching a raw fd its owner is about to close; returns its state
    /// so the caller can wake its waiters. Deregisters explicitly because the
    /// fd may stay open after this.
    pub(crate) fn forget_raw(&mut self, fd: RawFd) -> Option<Rc<IoState>> {
        let state = self.raw.remove(&fd)?;
        if let Some(key) = state.token() {
            self.forget(key);
            // The fd may already be closed (then the kernel dropped it and
            // this fails harmlessly); there is nothing to do about an error.
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            self.stats.deregistrations += 1;
        }
        Some(state)
    }

    /// Waits for readiness up to `timeout` (`None`: forever), records it in
    /// each source's state and collects the wakers to call into `woken`
    /// (called by the scheduler once this borrow has ended). Returns the
    /// number of events seen (the cross-thread waker's included); a wait a
    /// signal interrupted counts as one, so that an idle-primed wait cut
    /// short by a signal is not taken for a quiet one (the scheduler would
    /// autojump a mock clock, or wake `wait_all_tasks_blocked`, early: a
    /// process-directed signal landing on the runtime thread did exactly
    /// that in `tests/signals.rs`).
    pub(crate) fn wait(&mut self, timeout: Option<Duration>, woken: &mut Vec<Waker>) -> usize {
        self.stats.polls += 1;
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            // A signal interrupted the wait: the loop simply goes round.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return 1,
            // epoll_wait only fails on programming errors (bad fd, bad
            // buffer); there is no way to go on without it.
            Err(e) => panic!("trioxide: epoll_wait failed: {e}"),
        }
        let mut n = 0;
        for event in self.events.iter() {
            n += 1;
            // The waker's event needs no handling: being woken is the point.
            // A token with no source is a closed socket's last event.
            if let Some(state) = self.sources.get(event.token().0) {
                state.on_event(event, woken);
            }
        }
        n
    }
}
