//! Receiving Unix signals as values: [`open_signal_receiver`] (Trio's
//! `open_signal_receiver`).
//!
//! While a [`SignalReceiver`] exists, the signals it listens to no longer
//! do what they did before (terminate the process, say): each delivery is
//! recorded, and [`SignalReceiver::receive`] reports it. Dropping the
//! receiver puts the previous disposition back and hands any signal it had
//! not reported yet to that disposition, so a signal is never silently lost
//! (Trio's `_redeliver_remaining`).
//!
//! * **Coalescing.** A signal delivered several times before it is received
//!   is reported once; pending signals come out in order of first arrival.
//! * **Several receivers.** Every receiver of a signal gets each delivery,
//!   also receivers in other runs on other threads.
//! * **How.** The C handler only writes the signal's number to each
//!   receiver's non-blocking pipe (async-signal-safe); the receiver waits on
//!   the pipe's read end with the run's I/O driver. See `registry.rs`.
//!
//! ```
//! use trioxide::signal::open_signal_receiver;
//! trioxide::run(async {
//!     let signals = open_signal_receiver(&[libc::SIGUSR1])?;
//!     // SAFETY: raise is safe to call; the receiver handles SIGUSR1.
//!     unsafe { libc::raise(libc::SIGUSR1) };
//!     assert_eq!(signals.receive().await?, libc::SIGUSR1);
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! }).unwrap();
//! ```

mod registry;

use crate::kernel::sys::syscall;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::future::Future;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use libc::c_int;

use crate::kernel::error::{is_cancelled_error, Cancelled};
use crate::kernel::io::readiness::{Dir, OpGuard, Source};
use crate::kernel::Core;

use registry::{bit, signals_in, Registration, MAX_SIGNAL};

/// Signals that cannot be received: SIGKILL and SIGSTOP cannot be caught
/// at all, and a fault (SIGSEGV, SIGBUS, SIGILL, SIGFPE) raised by the CPU
/// would re-run the faulting instruction as soon as our handler returned,
/// looping forever (signal-hook refuses the same set).
const REFUSED: [(c_int, &str); 6] = [
    (libc::SIGKILL, "SIGKILL cannot be caught"),
    (libc::SIGSTOP, "SIGSTOP cannot be caught"),
    (libc::SIGSEGV, "SIGSEGV is a fault: handling it asynchronously would re-run the faulting instruction"),
    (libc::SIGBUS, "SIGBUS is a fault: handling it asynchronously would re-run the faulting instruction"),
    (libc::SIGILL, "SIGILL is a fault: handling it asynchronously would re-run the faulting instruction"),
    (libc::SIGFPE, "SIGFPE is a fault: handling it asynchronously would re-run the faulting instruction"),
];

/// Bytes one read of the pipe takes: it holds at most one byte per signal
/// number (see `registry.rs`, "Coalescing"), so this empties it.
const PIPE_READ: usize = MAX_SIGNAL as usize;

/// Starts receiving `signals`; they are reported by the returned
/// [`SignalReceiver`] until it is dropped.
///
/// Must be called inside a run (it registers the receiver's pipe with the
/// run's I/O driver, so a failure to do so is reported here).
///
/// Errors (`InvalidInput`): an empty list, a number that is not a signal,
/// SIGKILL or SIGSTOP (which cannot be caught), and the fault signals
/// SIGSEGV, SIGBUS, SIGILL and SIGFPE. The OS's error if a pipe cannot be
/// made or `sigaction` refuses (glibc keeps signals 32 and 33 for itself).
///
/// ```
/// use trioxide::signal::open_signal_receiver;
/// trioxide::run(async {
///     let err = open_signal_receiver(&[libc::SIGKILL]).unwrap_err();
///     assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
///     assert!(open_signal_receiver(&[libc::SIGUSR2, libc::SIGWINCH]).is_ok());
/// });
/// ```
///
/// # Panics
/// Outside [`run`](crate::run): "trioxide::signal::open_signal_receiver
/// must be called from inside trioxide::run", at the caller's line.
#[track_caller]
pub fn open_signal_receiver(signals: &[c_int]) -> io::Result<SignalReceiver> {
    // Outside a run this panics, before any argument is checked.
    Core::current_for("trioxide::signal::open_signal_receiver");
    if signals.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "open_signal_receiver needs at least one signal"));
    }
    let mut mask = 0u64;
    for &sig in signals {
        if !(1..=MAX_SIGNAL).contains(&sig) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{sig} is not a signal number")));
        }
        if let Some((_, why)) = REFUSED.iter().find(|(s, _)| *s == sig) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, *why));
        }
        mask |= bit(sig);
    }
    let (read_end, write_end) = nonblocking_pipe()?;
    let source = Source::new(File::from(read_end));
    // Registered now, not on the first wait as sockets are: the only
    // failure a later wait could meet is reported here instead, where the
    // caller can handle it.
    source.register_now()?;
    let registration = registry::register(mask, write_end.as_raw_fd())?;
    Ok(SignalReceiver {
        source,
        _write_end: write_end,
        registration,
        pending: RefCell::new(VecDeque::new()),
        stream_yielded: Cell::new(false),
        stream_suspended: Cell::new(false),
    })
}

/// A pipe whose two ends are non-blocking and close on exec.
fn nonblocking_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    syscall!(pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC))?;
    // SAFETY: pipe2 succeeded, so both are fresh descriptors that nothing
    // else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Signals delivered to this process, reported one by one (from
/// [`open_signal_receiver`]). Also a
/// [`futures_core::Stream`] of `Result<c_int, Cancelled>` that never ends.
///
/// Dropping it restores the signals' previous dispositions (for a signal
/// no other receiver listens to) and re-raises, in order of first arrival,
/// each signal it received but did not report, so the previous disposition
/// handles it: with the default one, an unreported SIGTERM still terminates
/// the process, as it would have without the receiver. A signal another
/// receiver also listens to is not re-raised (that receiver has it).
///
/// ```
/// use trioxide::signal::open_signal_receiver;
/// trioxide::run(async {
///     let signals = open_signal_receiver(&[libc::SIGWINCH])?;
///     // SAFETY: raise is safe to call; SIGWINCH is handled (and harmless).
///     unsafe { libc::raise(libc::SIGWINCH) };
///     unsafe { libc::raise(libc::SIGWINCH) };
///     // Delivered twice before being read: reported once.
///     assert_eq!(signals.receive().await?, libc::SIGWINCH);
///     let again = trioxide::move_on_after(std::time::Duration::from_millis(10), signals.receive()).await?;
///     assert_eq!(again, None);
///     Ok::<_, Box<dyn std::error::Error>>(())
/// }).unwrap();
/// ```
pub struct SignalReceiver {
    /// The pipe's read end, waited on with the run's driver.
    source: Source<File>,
    /// The write end: the handler writes here until `unregister` returns.
    _write_end: OwnedFd,
    registration: Registration,
    /// Signals taken out of the pipe and not reported yet, in order of first
    /// arrival, each once.
    pending: RefCell<VecDeque<c_int>>,
    /// The `Stream` implementation's state between polls (see `Receive`).
    stream_yielded: Cell<bool>,
    stream_suspended: Cell<bool>,
}

impl fmt::Debug for SignalReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalReceiver")
            .field("signals", &signals_in(self.registration.mask).collect::<Vec<_>>())
            .field("pending", &self.pending.borrow())
            .finish()
    }
}

impl SignalReceiver {
    /// Waits for the next signal and returns its number. A checkpoint: it
    /// reports `Cancelled` if the scope is cancelled before a signal is in
    /// hand, and a cancelled receive loses nothing (the signal stays pending
    /// for the next one).
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::signal::open_signal_receiver;
    /// trioxide::run(async {
    ///     let signals = open_signal_receiver(&[libc::SIGUSR2])?;
    ///     // Nothing arrives: the timeout cancels the wait.
    ///     let r = trioxide::move_on_after(Duration::from_millis(5), signals.receive()).await?;
    ///     assert_eq!(r, None);
    ///     Ok::<_, Box<dyn std::error::Error>>(())
    /// }).unwrap();
    /// ```
    ///
    /// # Panics
    /// If two tasks receive from the same receiver at once (Trio raises
    /// `BusyResourceError`; share one receiver per consumer instead).
    pub fn receive(&self) -> Receive<'_> {
        Receive { rx: self, guard: None, yielded: false, suspended: false }
    }

    /// The signals this receiver listens to, lowest first.
    ///
    /// ```
    /// use trioxide::signal::open_signal_receiver;
    /// trioxide::run(async {
    ///     let rx = open_signal_receiver(&[libc::SIGWINCH, libc::SIGUSR2])?;
    ///     assert_eq!(rx.signals(), vec![libc::SIGUSR2, libc::SIGWINCH]);
    ///     Ok::<_, std::io::Error>(())
    /// }).unwrap();
    /// ```
    pub fn signals(&self) -> Vec<c_int> {
        signals_in(self.registration.mask).collect()
    }

    /// Moves what the pipe holds into `pending`, if its readiness bit says
    /// it may hold something. Returns whether a signal is pending now.
    fn fill(&self) -> io::Result<bool> {
        if self.pending.borrow().is_empty() && self.source.state.is_ready(Dir::Read) {
            self.read_pipe()?;
        }
        Ok(!self.pending.borrow().is_empty())
    }

    /// One read of the pipe (it holds at most `PIPE_READ` bytes); returns
    /// the bytes taken. Keeps the readiness bit truthful.
    fn read_pipe(&self) -> io::Result<usize> {
        let mut buf = [0u8; PIPE_READ];
        loop {
            let r = self.source.with(|f| (&*f).read(&mut buf));
            match r {
                Ok(n) => {
                    if n < buf.len() {
                        self.source.state.clear_drained(Dir::Read);
                    }
                    for &b in &buf[..n] {
                        self.take(c_int::from(b));
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.source.state.clear(Dir::Read);
                    return Ok(0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Records one byte taken out of the pipe.
    fn take(&self, sig: c_int) {
        if !(1..=MAX_SIGNAL).contains(&sig) {
            return;
        }
        // Clear the bit first: a delivery from now on writes a new byte. One
        // arriving between the read and here merges with this one, which is
        // not reported yet (coalescing, as Trio's pending set does).
        self.registration.sink.taken(sig);
        let mut pending = self.pending.borrow_mut();
        if !pending.contains(&sig) {
            pending.push_back(sig);
        }
    }

    /// The receive loop shared by [`Receive`] and the `Stream`
    /// implementation. `yielded`: a signal is pending and we yielded once
    /// before reporting it (a schedule point that is not a cancel point: the
    /// signal stays in `pending` meanwhile, so dropping the future loses
    /// nothing). `suspended`: this receive has waited (then it was a
    /// schedule point already).
    fn poll_receive(
        &self,
        cx: &mut Context<'_>,
        yielded: &mut bool,
        suspended: &mut bool,
    ) -> Poll<Result<c_int, Cancelled>> {
        let core = Core::current();
        if *yielded {
            if let Some(sig) = self.pending.borrow_mut().pop_front() {
                return Poll::Ready(Ok(sig));
            }
            *yielded = false;
        }
        if !*suspended && core.is_cancelled() {
            return Poll::Ready(Err(Cancelled));
        }
        loop {
            match self.fill() {
                Ok(true) => {
                    if !*suspended && core.should_yield_after_io() {
                        *yielded = true;
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    let sig = self.pending.borrow_mut().pop_front();
                    if let Some(sig) = sig {
                        return Poll::Ready(Ok(sig));
                    }
                }
                Ok(false) => {}
                // Reading our own non-blocking pipe cannot fail; if the
                // system says otherwise there is no signal to report.
                Err(e) => panic!("trioxide: reading the signal pipe failed: {e}"),
            }
            match self.source.state.poll_ready(Dir::Read, self.source.fd(), cx) {
                Poll::Pending => {
                    *suspended = true;
                    return Poll::Pending;
                }
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) if e.get_ref().is_some_and(|i| is_cancelled_error(i)) => {
                    return Poll::Ready(Err(Cancelled))
                }
                // Only a receiver used in a later run than the one that
                // opened it registers here, and epoll_ctl refused.
                Poll::Ready(Err(e)) => panic!("trioxide: cannot wait for signals: {e}"),
            }
        }
    }
}

impl futures_core::Stream for SignalReceiver {
    type Item = Result<c_int, Cancelled>;

    /// Each item is a [`receive`](SignalReceiver::receive); the stream never
    /// ends.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let mut yielded = this.stream_yielded.get();
        let mut suspended = this.stream_suspended.get();
        let out = this.poll_receive(cx, &mut yielded, &mut suspended);
        if out.is_ready() {
            (yielded, suspended) = (false, false);
        }
        this.stream_yielded.set(yielded);
        this.stream_suspended.set(suspended);
        out.map(Some)
    }
}

impl Drop for SignalReceiver {
    fn drop(&mut self) {
        // 1. Restore the dispositions of signals nobody else listens to and
        //    stop the handler writing to our pipe (in that order, inside
        //    `unregister`: a delivery in between goes to the old
        //    disposition directly).
        let alone = registry::unregister(&self.registration);
        // 2. Collect what is still in the pipe.
        //    Read regardless of the cached readiness: the last bytes may
        //    have arrived after the last event was collected.
        while let Ok(1..) = self.read_pipe() {}
        // 3. Re-raise, in order of first arrival, what was never reported,
        //    for the previous disposition to handle (Trio's
        //    `_redeliver_remaining`). Another receiver of the signal has its
        //    own copy, so those are not re-raised.
        let pending: Vec<c_int> = self.pending.borrow_mut().drain(..).collect();
        for sig in pending {
            if alone & bit(sig) != 0 {
                // SAFETY: raise only sends a signal to this thread; the
                // disposition it meets is the one the program had before.
                unsafe { libc::raise(sig) };
            }
        }
    }
}

/// The future of [`SignalReceiver::receive`]. Dropping it before it
/// completes loses nothing: a signal it had seen stays pending.
///
/// ```
/// use trioxide::signal::open_signal_receiver;
/// trioxide::run(async {
///     let rx = open_signal_receiver(&[libc::SIGUSR1])?;
///     // SAFETY: raise is safe to call; the receiver handles SIGUSR1.
///     unsafe { libc::raise(libc::SIGUSR1) };
///     let fut = rx.receive();
///     drop(fut); // never polled
///     assert_eq!(rx.receive().await?, libc::SIGUSR1);
///     Ok::<_, Box<dyn std::error::Error>>(())
/// }).unwrap();
/// ```
#[must_use = "receive does nothing unless awaited; a dropped receive leaves its signal pending"]
pub struct Receive<'a> {
    rx: &'a SignalReceiver,
    /// Claims the pipe's read direction (one receiving task at a time).
    guard: Option<OpGuard<'a>>,
    yielded: bool,
    suspended: bool,
}

impl fmt::Debug for Receive<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receive").field("receiver", self.rx).finish()
    }
}

impl Future for Receive<'_> {
    type Output = Result<c_int, Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.guard.is_none() {
            match this.rx.source.state.begin(Dir::Read) {
                Ok(g) => this.guard = Some(g),
                Err(e) => panic!("trioxide: two tasks called SignalReceiver::receive at once ({e})"),
            }
        }
        this.rx.poll_receive(cx, &mut this.yielded, &mut this.suspended)
    }
}
