//! The process-wide part of signal handling: which receivers want which
//! signals, the one C handler we install, and putting the previous
//! disposition back.
//!
//! # What the handler may touch
//! A signal handler runs on whatever thread the kernel picks, in the middle
//! of whatever that thread was doing (possibly holding the allocator's lock
//! or our own mutex). So [`on_signal`] takes no lock and allocates nothing:
//! it walks a list of [`Sink`]s that is only ever appended to (chunks are
//! leaked, never freed), reads atomics, and calls `write(2)`, which POSIX
//! lists as async-signal-safe. It saves and restores `errno`, which `write`
//! may change under the interrupted code's feet.
//!
//! # Registration and removal
//! Everything else happens under [`TABLE`]'s mutex, in ordinary thread
//! context. A receiver claims a free sink and fills it (`pending`, then
//! `fd`, then `mask`: a handler that sees the mask bit sees the fd), then
//! installs the handler for each signal that had no receiver yet. Removal
//! clears the mask and the fd, then waits until no handler is running
//! ([`IN_HANDLER`] back to 0): a handler that read the old fd just before
//! has finished writing to it, so the receiver may close it. Handlers are a
//! few atomic operations and a non-blocking write each, so that wait is
//! short.
//!
//! # Coalescing
//! Each sink has a `pending` bit per signal. The handler writes the signal's
//! byte only when it sets that bit; the receiver clears the bit when it
//! takes the byte out of the pipe. So a signal delivered many times before
//! the receiver looks is one byte, the pipe holds at most one byte per
//! signal number (64) and can never fill up, and the bytes come out in order
//! of first arrival.

use crate::kernel::sys::syscall;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

use libc::c_int;

/// Highest signal number on Linux (`SIGRTMAX`, `_NSIG - 1`): every signal
/// gets one bit of a `u64` mask.
pub(crate) const MAX_SIGNAL: c_int = 64;

/// Sinks per chunk of the list. Chunks are leaked when the list grows, so
/// this bounds the waste; 32 receivers at once is already unusual.
const SINKS_PER_CHUNK: usize = 32;

/// `fd` of a free sink.
const NO_FD: i32 = -1;

/// One receiver's entry, read by the handler.
pub(crate) struct Sink {
    /// The write end of the receiver's pipe, or `NO_FD`.
    fd: AtomicI32,
    /// The signals the receiver listens to (bit `sig - 1`).
    mask: AtomicU64,
    /// Signals written to the pipe and not yet taken out by the receiver.
    pending: AtomicU64,
}

impl Sink {
    const fn new() -> Sink {
        Sink { fd: AtomicI32::new(NO_FD), mask: AtomicU64::new(0), pending: AtomicU64::new(0) }
    }

    /// The receiver took `sig`'s byte out of its pipe: the next delivery
    /// writes a new one.
    pub(crate) fn taken(&self, sig: c_int) {
        self.pending.fetch_and(!bit(sig), SeqCst);
    }
}

struct Chunk {
    sinks: [Sink; SINKS_PER_CHUNK],
    next: AtomicPtr<Chunk>,
}

impl Chunk {
    const fn new() -> Chunk {
        Chunk { sinks: [const { Sink::new() }; SINKS_PER_CHUNK], next: AtomicPtr::new(std::ptr::null_mut()) }
    }
}

/// The head of the sink list; later chunks are leaked boxes.
static FIRST: Chunk = Chunk::new();

/// Handlers running right now, on any thread.
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Bookkeeping that only ordinary code touches.
struct Table {
    /// Receivers listening to each signal.
    receivers: [u32; MAX_SIGNAL as usize + 1],
    /// The disposition our handler replaced, and the handler value we
    /// installed in its place, while it is installed. `restore` compares
    /// the current handler with the value we wrote rather than with a fresh
    /// `on_signal as sighandler_t`: a function's address is not unique (an
    /// optimiser may keep several copies), the value we wrote is.
    saved: [Option<(libc::sigaction, libc::sighandler_t)>; MAX_SIGNAL as usize + 1],
}

static TABLE: Mutex<Table> =
    Mutex::new(Table { receivers: [0; MAX_SIGNAL as usize + 1], saved: [None; MAX_SIGNAL as usize + 1] });

fn table() -> std::sync::MutexGuard<'static, Table> {
    // The table stays consistent even if a holder panicked (every update
    // is a plain store), so a poisoned lock is still usable.
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The mask bit of `sig` (1..=MAX_SIGNAL).
pub(crate) fn bit(sig: c_int) -> u64 {
    1u64 << (sig - 1)
}

/// The signals in `mask`, lowest first.
pub(crate) fn signals_in(mask: u64) -> impl Iterator<Item = c_int> {
    (1..=MAX_SIGNAL).filter(move |&s| mask & bit(s) != 0)
}

/// The C-level handler for every signal a receiver listens to.
extern "C" fn on_signal(sig: c_int) {
    // SAFETY: `__errno_location` returns this thread's errno slot, valid
    // for the thread's life; reading and writing it is what C code does.
    let errno = unsafe { *libc::__errno_location() };
    IN_HANDLER.fetch_add(1, SeqCst);
    if (1..=MAX_SIGNAL).contains(&sig) {
        let b = bit(sig);
        let byte = sig as u8;
        let mut chunk: &Chunk = &FIRST;
        loop {
            for sink in &chunk.sinks {
                if sink.mask.load(SeqCst) & b == 0 {
                    continue;
                }
                let fd = sink.fd.load(SeqCst);
                if fd != NO_FD && sink.pending.fetch_or(b, SeqCst) & b == 0 {
                    // SAFETY: `fd` is the write end of a receiver's pipe,
                    // kept open until removal has seen IN_HANDLER at 0
                    // (after this handler returns); the buffer is one byte
                    // on our stack. A failed write cannot be reported from
                    // here; the pipe never fills (see "Coalescing").
                    unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
                }
            }
            let next = chunk.next.load(SeqCst);
            // SAFETY: chunks are leaked boxes, never freed, so a non-null
            // pointer stays valid for the rest of the process.
            match unsafe { next.as_ref() } {
                Some(c) => chunk = c,
                None => break,
            }
        }
    }
    IN_HANDLER.fetch_sub(1, SeqCst);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// What [`register`] gave a receiver: its sink and its signals.
pub(crate) struct Registration {
    pub(crate) sink: &'static Sink,
    pub(crate) mask: u64,
}

/// Starts delivering the signals in `mask` to `fd` (a non-blocking pipe's
/// write end), installing the handler for those that had no receiver.
pub(crate) fn register(mask: u64, fd: RawFd) -> io::Result<Registration> {
    let mut table = table();
    let sink = claim_sink();
    sink.pending.store(0, SeqCst);
    sink.fd.store(fd, SeqCst);
    sink.mask.store(mask, SeqCst);
    let mut installed = 0u64;
    for sig in signals_in(mask) {
        if table.receivers[sig as usize] == 0 {
            match install(sig) {
                Ok(saved) => table.saved[sig as usize] = Some(saved),
                Err(e) => {
                    // Undo: the receiver is not created.
                    for s in signals_in(installed) {
                        restore(&mut table, s);
                    }
                    for s in signals_in(mask & (bit(sig) - 1)) {
                        table.receivers[s as usize] -= 1;
                    }
                    release_sink(sink);
                    return Err(e);
                }
            }
            installed |= bit(sig);
        }
        table.receivers[sig as usize] += 1;
    }
    Ok(Registration { sink, mask })
}

/// Stops delivering to `reg`'s pipe. For each of its signals that now has
/// no receiver left, puts the previous disposition back *before* the sink
/// goes, so no delivery falls between the two. Returns those signals: the
/// ones whose undelivered occurrences go back to the previous disposition.
/// When this returns, no handler is writing to the pipe any more.
pub(crate) fn unregister(reg: &Registration) -> u64 {
    let mut table = table();
    let mut last = 0;
    for sig in signals_in(reg.mask) {
        let n = &mut table.receivers[sig as usize];
        *n -= 1;
        if *n == 0 {
            restore(&mut table, sig);
            last |= bit(sig);
        }
    }
    release_sink(reg.sink);
    last
}

/// A free sink, appending a chunk if all are taken. Called under the lock.
fn claim_sink() -> &'static Sink {
    let mut chunk: &'static Chunk = &FIRST;
    loop {
        if let Some(s) = chunk.sinks.iter().find(|s| s.fd.load(SeqCst) == NO_FD && s.mask.load(SeqCst) == 0) {
            return s;
        }
        let next = chunk.next.load(SeqCst);
        // SAFETY: chunks are leaked boxes, never freed.
        match unsafe { next.as_ref() } {
            Some(c) => chunk = c,
            None => {
                let fresh: &'static Chunk = Box::leak(Box::new(Chunk::new()));
                chunk.next.store(fresh as *const Chunk as *mut Chunk, SeqCst);
                return &fresh.sinks[0];
            }
        }
    }
}

/// Empties a sink and waits until no handler can still be using its old
/// fd. Called under the lock.
fn release_sink(sink: &Sink) {
    sink.mask.store(0, SeqCst);
    sink.fd.store(NO_FD, SeqCst);
    let mut spins = 0u32;
    while IN_HANDLER.load(SeqCst) != 0 {
        spins += 1;
        if spins < 100 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    sink.pending.store(0, SeqCst);
}

/// Installs [`on_signal`] for `sig`; returns the disposition it replaced
/// and the handler value it installed.
fn install(sig: c_int) -> io::Result<(libc::sigaction, libc::sighandler_t)> {
    // SAFETY: zeroed `sigaction` structs are valid (no handler, empty mask,
    // no flags); we fill the handler and flags, and both pointers passed to
    // `sigaction` point to live structs on our stack.
    unsafe {
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = on_signal as extern "C" fn(c_int) as libc::sighandler_t;
        // SA_RESTART: other code's blocking calls resume instead of failing
        // with EINTR because of us. (epoll_wait is never restarted; the
        // driver expects that.)
        new.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut new.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        syscall!(sigaction(sig, &new, &mut old))?;
        Ok((old, new.sa_sigaction))
    }
}

/// Puts back the disposition saved for `sig`, unless someone replaced our
/// handler meanwhile (then theirs stays: taking it away would break them).
fn restore(table: &mut Table, sig: c_int) {
    let Some((saved, ours)) = table.saved[sig as usize].take() else { return };
    // SAFETY: both structs live on our stack / in the table; a null `act`
    // only queries.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        if syscall!(sigaction(sig, std::ptr::null(), &mut current)).is_err() {
            return;
        }
        if current.sa_sigaction == ours {
            // Nothing to do if it fails: the signal keeps our handler,
            // which reports nothing once no receiver listens.
            let _ = syscall!(sigaction(sig, &saved, std::ptr::null_mut()));
        }
    }
}
