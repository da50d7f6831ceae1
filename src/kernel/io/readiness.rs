//! Cached readiness: what the I/O driver has told us about one fd, the task
//! waiting on each direction, and the loop every socket operation runs.
//!
//! # The cache
//! Each source has two readiness bits, *readable* and *writable*. They start
//! **set**: a new socket is tried first, and is registered with epoll only
//! when the kernel first says `WouldBlock` (a socket that never blocks never
//! costs an `epoll_ctl`). A bit is
//! * **set** by an edge-triggered event for that direction (hang-ups and
//!   errors set both, so the next operation reports them);
//! * **cleared** only by the operation that saw the kernel refuse: a
//!   `WouldBlock`, or a read shorter than its buffer or a write shorter than
//!   its data (both mean the kernel's buffer was exhausted at that moment);
//!   But a short read or write does not clear a direction in which the peer
//!   hung up or the socket failed (`sticky`): the FIN may arrive, and be
//!   reported, before the short read that drains the last data, and no edge
//!   follows it. Only a `WouldBlock` clears such a bit.
//!
//! # Why no wake-up is lost
//! Edge-triggered epoll reports a transition to ready that happens after the
//! fd was drained. A bit is cleared right after the syscall that drained the
//! fd, with no `epoll_wait` in between (the runtime is single-threaded and
//! the driver runs only between scheduler passes), so any data that arrives
//! after that syscall produces a new edge, which sets the bit again. A bit is
//! never cleared on a guess. Events arriving while nobody waits just set the
//! bit, and the next operation finds it.
//!
//! A readiness bit may also be set wrongly: a closed socket's token can be
//! reused by a new socket while an old event for it is still queued. That
//! only costs the new socket one `WouldBlock`: the bits are hints that the
//! syscall confirms, never facts.

use crate::kernel::sys::syscall;
use std::cell::{Cell, Ref, RefCell};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::kernel::budget::after_io;
use crate::kernel::error::{BrokenResource, BusyResource, Cancelled, ClosedResource};
use crate::kernel::Core;

/// A direction of I/O on a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Read = 0,
    Write = 1,
}

impl Dir {
    fn bit(self) -> u8 {
        1 << self as u8
    }

    fn waiting_on(self) -> &'static str {
        match self {
            Dir::Read => "wait_readable",
            Dir::Write => "wait_writable",
        }
    }
}

const BOTH: u8 = 0b11;
/// `token` of a source not registered with the driver.
const NO_TOKEN: usize = usize::MAX;

/// The runtime-side state of one fd. Shared (`Rc`) between the object that
/// owns the fd and the driver's table.
pub(crate) struct IoState {
    ready: Cell<u8>,
    /// Directions whose readiness can no longer be cleared: the peer hung
    /// up or the socket is in error. Edge-triggered epoll reports that once;
    /// a short read of the last data before the FIN must not clear it, or
    /// the next receive would wait forever for the end of stream.
    sticky: Cell<u8>,
    closed: Cell<bool>,
    /// Set when a send was cancelled after sending part of its data.
    send_broken: Cell<bool>,
    /// Set by `send_eof`: the sending half is closed.
    send_closed: Cell<bool>,
    /// The driver token, or `NO_TOKEN` before the first wait.
    token: Cell<usize>,
    /// Which run registered it (a socket may outlive its run).
    run_id: Cell<u64>,
    /// An operation is in progress in that direction (rule I1).
    busy: [Cell<bool>; 2],
    /// Set when a poll-level operation in that direction has just given
    /// its schedule point (yielded, or suspended on readiness): the next
    /// poll attempts the syscall instead of yielding again. See
    /// [`Source::poll_op`].
    poll_yielded: [Cell<bool>; 2],
    waiters: [Cell<Option<Waker>>; 2],
}

impl IoState {
    pub(crate) fn new() -> IoState {
        IoState {
            ready: Cell::new(BOTH),
            sticky: Cell::new(0),
            closed: Cell::new(false),
            send_broken: Cell::new(false),
            send_closed: Cell::new(false),
            token: Cell::new(NO_TOKEN),
            run_id: Cell::new(0),
            busy: [Cell::new(false), Cell::new(false)],
            poll_yielded: [Cell::new(false), Cell::new(false)],
            waiters: [Cell::new(None), Cell::new(None)],
        }
    }

    pub(crate) fn token(&self) -> Option<usize> {
        (self.token.get() != NO_TOKEN).then_some(self.token.get())
    }

    pub(crate) fn set_registered(&self, key: usize) {
        self.token.set(key);
        if let Some(core) = Core::try_current() {
            self.run_id.set(core.run_id());
        }
    }

    /// Records an event; collects the wakers of the directions it readied.
    pub(crate) fn on_event(&self, event: &mio::event::Event, woken: &mut Vec<Waker>) {
        let mut bits = 0;
        let mut sticky = 0;
        if event.is_read_closed() || event.is_error() {
            sticky |= Dir::Read.bit();
        }
        if event.is_write_closed() || event.is_error() {
            sticky |= Dir::Write.bit();
        }
        if event.is_readable() {
            bits |= Dir::Read.bit();
        }
        if event.is_writable() {
            bits |= Dir::Write.bit();
        }
        bits |= sticky;
        self.sticky.set(self.sticky.get() | sticky);
        self.ready.set(self.ready.get() | bits);
        for dir in [Dir::Read, Dir::Write] {
            if bits & dir.bit() != 0 {
                if let Some(w) = self.waiters[dir as usize].take() {
                    woken.push(w);
                }
            }
        }
    }

    #[inline]
    pub(crate) fn is_ready(&self, dir: Dir) -> bool {
        self.ready.get() & dir.bit() != 0
    }

    /// Forgets that `dir` is ready: the kernel said `WouldBlock`, which is
    /// the truth whatever was reported before (a datagram socket's error,
    /// say, is gone once read).
    #[inline]
    pub(crate) fn clear(&self, dir: Dir) {
        self.ready.set(self.ready.get() & !dir.bit());
        self.sticky.set(self.sticky.get() & !dir.bit());
    }

    /// Forgets that `dir` is ready after a short read or write (the buffer
    /// was exhausted), unless the peer hung up or the socket failed in that
    /// direction: that was reported once, possibly before the short read of
    /// the last data, and the next operation must still find it.
    #[inline]
    pub(crate) fn clear_drained(&self, dir: Dir) {
        self.ready.set(self.ready.get() & !(dir.bit() & !self.sticky.get()));
    }

    /// Marks the source closed and wakes its waiters, which then report
    /// [`ClosedResource`] (Trio's `notify_closing`).
    pub(crate) fn mark_closed(&self) {
        self.closed.set(true);
        for w in &self.waiters {
            if let Some(w) = w.take() {
                w.wake();
            }
        }
    }

    /// Claims a direction for one operation (rule I1).
    pub(crate) fn begin(&self, dir: Dir) -> io::Result<OpGuard<'_>> {
        if self.closed.get() {
            return Err(ClosedResource.into());
        }
        if self.busy[dir as usize].replace(true) {
            return Err(BusyResource.into());
        }
        Ok(OpGuard { state: self, dir })
    }

    /// Fails if an earlier send was cancelled part-way (rule I3).
    pub(crate) fn check_send(&self) -> io::Result<()> {
        if self.send_closed.get() {
            return Err(ClosedResource.into());
        }
        if self.send_broken.get() {
            return Err(BrokenResource {
                reason: "an earlier send on this stream was cancelled after sending part of its data",
            }
            .into());
        }
        Ok(())
    }

    /// Records that the sending half was closed (`send_eof`).
    pub(crate) fn mark_send_closed(&self) {
        self.send_closed.set(true);
    }

    /// Waits until `dir` is ready (or the wait is cancelled, or the source is
    /// closed). Registers `fd` with the driver on first use.
    pub(crate) fn poll_ready(self: &Rc<Self>, dir: Dir, fd: RawFd, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.closed.get() {
            return Poll::Ready(Err(ClosedResource.into()));
        }
        let core = Core::current();
        if core.is_cancelled() {
            return Poll::Ready(Err(Cancelled.into()));
        }
        if self.is_ready(dir) {
            return Poll::Ready(Ok(()));
        }
        if self.token.get() == NO_TOKEN || self.run_id.get() != core.run_id() {
            let key = core.driver.borrow_mut().register(fd, self);
            match key {
                Ok(key) => self.set_registered(key),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        let slot = &self.waiters[dir as usize];
        match slot.take() {
            Some(w) if w.will_wake(cx.waker()) => slot.set(Some(w)),
            _ => slot.set(Some(cx.waker().clone())),
        }
        core.set_waiting_on(dir.waiting_on());
        Poll::Pending
    }

    /// Whether a task waits for `dir` (`current_statistics`).
    pub(crate) fn has_waiter(&self, dir: Dir) -> bool {
        let slot = &self.waiters[dir as usize];
        let w = slot.take();
        let waiting = w.is_some();
        slot.set(w);
        waiting
    }

    /// Frees the driver slot (the fd is about to be closed by its owner).
    pub(crate) fn forget(&self) {
        if let Some(key) = self.token() {
            self.token.set(NO_TOKEN);
            if let Some(core) = Core::try_current() {
                if core.run_id() == self.run_id.get() {
                    core.driver.borrow_mut().forget(key);
                }
            }
        }
    }
}

/// Holds a direction of a source for one operation; releases it on drop.
pub(crate) struct OpGuard<'a> {
    state: &'a IoState,
    dir: Dir,
}

impl Drop for OpGuard<'_> {
    fn drop(&mut self) {
        self.state.busy[self.dir as usize].set(false);
        // A cancelled or abandoned wait leaves no waker behind.
        drop(self.state.waiters[self.dir as usize].take());
    }
}

/// Marks the stream broken for sending if dropped before `finish`: a send
/// that stopped part-way (cancelled or abandoned) after sending some bytes.
pub(crate) struct SendProgress<'a> {
    state: &'a IoState,
    pub(crate) sent: u64,
    finished: bool,
}

impl<'a> SendProgress<'a> {
    pub(crate) fn new(state: &'a IoState) -> Self {
        SendProgress { state, sent: 0, finished: false }
    }

    pub(crate) fn finish(mut self) -> u64 {
        self.finished = true;
        self.sent
    }
}

impl Drop for SendProgress<'_> {
    fn drop(&mut self) {
        if !self.finished && self.sent > 0 {
            self.state.send_broken.set(true);
        }
    }
}

/// A future that waits for readiness of one direction of a source.
pub(crate) struct Ready<'a> {
    pub(crate) state: &'a Rc<IoState>,
    pub(crate) dir: Dir,
    pub(crate) fd: RawFd,
    /// Whether the wait suspended the task (then it was a schedule point).
    pub(crate) suspended: bool,
}

impl Future for Ready<'_> {
    type Output = io::Result<bool>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        match self.state.poll_ready(self.dir, self.fd, cx) {
            Poll::Ready(r) => Poll::Ready(r.map(|()| self.suspended)),
            Poll::Pending => {
                self.suspended = true;
                Poll::Pending
            }
        }
    }
}

/// An fd owned by a trioxide object, with its cached readiness.
pub(crate) struct Source<S: AsRawFd> {
    pub(crate) state: Rc<IoState>,
    /// `None` once closed. A `RefCell` because `close` takes `&self` (a
    /// stream shared by `Rc` can be closed while another task waits on it);
    /// it is borrowed only around a syscall, never across an `await`.
    io: RefCell<Option<S>>,
    fd: RawFd,
}

impl<S: AsRawFd> Source<S> {
    pub(crate) fn new(io: S) -> Source<S> {
        let fd = io.as_raw_fd();
        Source { state: Rc::new(IoState::new()), io: RefCell::new(Some(io)), fd }
    }

    /// The owned object, unless closed. Hold the guard only around a syscall.
    #[inline]
    pub(crate) fn io(&self) -> io::Result<Ref<'_, S>> {
        Ref::filter_map(self.io.borrow(), |io| io.as_ref()).map_err(|_| ClosedResource.into())
    }

    /// Runs `f` on the owned object (a syscall), unless closed.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&S) -> io::Result<R>) -> io::Result<R> {
        f(&*self.io()?)
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    /// Registers the fd with this run's driver now rather than on the
    /// first wait, so that a registration error reaches the caller that
    /// made the source (signal receivers, pidfds).
    ///
    /// # Panics
    /// Outside [`run`](crate::run).
    pub(crate) fn register_now(&self) -> io::Result<()> {
        let core = Core::current();
        let key = core.driver.borrow_mut().register(self.fd, &self.state)?;
        self.state.set_registered(key);
        Ok(())
    }

    pub(crate) fn ready(&self, dir: Dir) -> Ready<'_> {
        Ready { state: &self.state, dir, fd: self.fd, suspended: false }
    }

    /// Runs `attempt` until it stops saying `WouldBlock`: the loop behind
    /// every receive, accept and connect. `attempt` returns its result and
    /// whether the kernel's buffer is now known to be empty (a short read),
    /// which clears the readiness bit without another syscall.
    ///
    /// A checkpoint (rule I2): `Cancelled` before the socket is touched if
    /// the scope is already cancelled, or while waiting; after an immediate
    /// success it lets other tasks run without a cancel point (rule I3).
    pub(crate) async fn op<R>(&self, dir: Dir, mut attempt: impl FnMut(&S) -> io::Result<(R, bool)>) -> io::Result<R> {
        let _guard = self.state.begin(dir)?;
        if Core::current().is_cancelled() {
            return Err(Cancelled.into());
        }
        let mut suspended = false;
        loop {
            if self.state.is_ready(dir) {
                let result = self.with(&mut attempt);
                match result {
                    Ok((r, drained)) => {
                        if drained {
                            self.state.clear_drained(dir);
                        }
                        if !suspended {
                            after_io().await;
                        }
                        return Ok(r);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.state.clear(dir),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            suspended |= self.ready(dir).await?;
        }
    }

    /// The poll-level form of [`op`](Self::op), behind `poll_receive`,
    /// `poll_send` and the `futures-io`/hyper traits: one call, no future
    /// kept between polls.
    ///
    /// What it keeps of the checkpoint rules, and why it can keep no more:
    /// * **cancel point**: every poll reports `Cancelled` before touching
    ///   the fd if the task's scope is cancelled, so a cancelled poll has
    ///   consumed nothing (rule I3's receive half);
    /// * **schedule point**: a poll cannot return its data *and* yield, so
    ///   it yields *before* the attempt, on the channels' budget
    ///   (`Core::should_yield_before_poll_op`: every `CHANNEL_BUDGET`-th
    ///   poll-level operation of a step while another task is runnable),
    ///   and attempts on the next poll; a poll that suspended on readiness
    ///   has given its schedule point already;
    /// * **one task per direction** (rule I1): a poll while an `async fn`
    ///   operation holds the direction gets [`BusyResource`]. Two poll-level
    ///   users are not told apart: a poll interface has no end of operation
    ///   at which a claim could be released, so the last poller's waker is
    ///   the one woken, as `futures-io` documents.
    pub(crate) fn poll_op<R>(
        &self,
        dir: Dir,
        cx: &mut Context<'_>,
        mut attempt: impl FnMut(&S) -> io::Result<(R, bool)>,
    ) -> Poll<io::Result<R>> {
        let state = &*self.state;
        if state.closed.get() {
            return Poll::Ready(Err(ClosedResource.into()));
        }
        if state.busy[dir as usize].get() {
            return Poll::Ready(Err(BusyResource.into()));
        }
        let core = Core::current_for("a poll-level trioxide I/O operation");
        if core.is_cancelled() {
            return Poll::Ready(Err(Cancelled.into()));
        }
        let yielded = &state.poll_yielded[dir as usize];
        if yielded.get() {
            yielded.set(false);
        } else if core.should_yield_before_poll_op() {
            yielded.set(true);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        loop {
            if state.is_ready(dir) {
                match self.with(&mut attempt) {
                    Ok((r, drained)) => {
                        if drained {
                            state.clear_drained(dir);
                        }
                        return Poll::Ready(Ok(r));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => state.clear(dir),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            match self.state.poll_ready(dir, self.fd, cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // Suspending is this operation's schedule point.
                    yielded.set(true);
                    return Poll::Pending;
                }
            }
        }
    }

    /// Whether an `async fn` operation holds `dir` now (rule I1), for the
    /// poll-level operations that do not go through [`poll_op`](Self::poll_op).
    pub(crate) fn check_poll_direction(&self, dir: Dir) -> io::Result<()> {
        if self.state.closed.get() {
            return Err(ClosedResource.into());
        }
        if self.state.busy[dir as usize].get() {
            return Err(BusyResource.into());
        }
        Ok(())
    }

    /// Sends `total` bytes through `write`, which returns how many bytes one
    /// call sent (0: nothing more to send, e.g. the end of a file) and
    /// whether the kernel's buffer is now full. Returns the bytes sent. A
    /// send stopped part-way by cancellation (or a dropped future) leaves
    /// the stream broken for sending (rule I3).
    pub(crate) async fn send_loop(
        &self,
        total: u64,
        mut write: impl FnMut(&S, u64) -> io::Result<(usize, bool)>,
    ) -> io::Result<u64> {
        let _guard = self.state.begin(Dir::Write)?;
        self.state.check_send()?;
        if Core::current().is_cancelled() {
            return Err(Cancelled.into());
        }
        let mut progress = SendProgress::new(&self.state);
        let mut suspended = false;
        while progress.sent < total {
            if self.state.is_ready(Dir::Write) {
                let sent = progress.sent;
                let result = self.with(|io| write(io, sent));
                match result {
                    Ok((0, _)) => break,
                    Ok((n, full)) => {
                        progress.sent += n as u64;
                        if full {
                            self.state.clear_drained(Dir::Write);
                        }
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.state.clear(Dir::Write),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // `progress` marks the stream broken if part was sent:
                    // the peer got an unknown prefix.
                    Err(e) => return Err(e),
                }
            }
            suspended |= self.ready(Dir::Write).await?;
        }
        let sent = progress.finish();
        if !suspended {
            after_io().await;
        }
        Ok(sent)
    }

    /// Reads into `buf`'s spare capacity (reserving `reserve` bytes first
    /// if it has none), without zeroing it: `receive_into` of sockets and
    /// pipes. A short read counts as draining the fd (see `op`).
    pub(crate) async fn read_into_spare(&self, buf: &mut Vec<u8>, reserve: usize) -> io::Result<usize> {
        if buf.capacity() == buf.len() {
            buf.reserve(reserve);
        }
        self.op(Dir::Read, |io| {
            let spare = buf.spare_capacity_mut();
            let want = spare.len();
            // SAFETY: `spare` is writable memory of `want` bytes owned by
            // `buf`, borrowed exclusively for the call; read(2) writes at
            // most `want` bytes there, and the fd is open (borrowed through
            // `io`, which `op` only lends while the source is not closed).
            let n = syscall!(read(io.as_raw_fd(), spare.as_mut_ptr().cast(), want))? as usize;
            // SAFETY: the kernel initialised the first `n` bytes of the
            // spare capacity, right after the current length.
            unsafe { buf.set_len(buf.len() + n) };
            // (Not at end of stream: that edge has fired for good.)
            Ok((n, n > 0 && n < want))
        })
        .await
    }

    /// Closes the fd now: wakes any task waiting on it with
    /// [`ClosedResource`], and frees the driver slot. The kernel drops the
    /// fd from epoll as it closes, so no `epoll_ctl` is made.
    pub(crate) fn close(&self) {
        let io = self.io.borrow_mut().take();
        if io.is_some() {
            self.state.mark_closed();
            self.state.forget();
            drop(io);
        }
    }
}

impl<S: AsRawFd> Drop for Source<S> {
    fn drop(&mut self) {
        // Not `close`: no waiter can exist (they borrow the source), so only
        // the driver slot needs freeing before the fd closes.
        self.state.forget();
    }
}
