//! The poll-level machinery of [`TlsStream`](super::TlsStream): rustls's
//! buffers on one side, the transport's `poll_receive`/`poll_send` on the
//! other, and the wakers that let several tasks wait on one transport.
//!
//! Three parties may touch the transport: the receiving direction, the
//! sending direction and an explicit `handshake()`. Each registers its
//! waker in a [`Fan`] before it polls the transport, and the transport is
//! polled with the fan's own waker, so a readiness event wakes everyone
//! who waits on that transport direction (the poll layer keeps only the
//! last waker it was given). After the handshake the receiving direction
//! only reads and the sending direction only writes, so each fan then has
//! one waiter and the fan-out costs an uncontended lock per transport poll.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice, Read, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use rustls::Connection;

use crate::kernel::error::{BrokenResource, ClosedResource};
use crate::kernel::task::TaskId;
use crate::kernel::Core;
use crate::stream::poll::{PollReceive, PollSend};

/// Who is polling: the slot of its waker in a [`Fan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Receive = 0,
    Send = 1,
    Handshake = 2,
}

/// Why a stream is broken as a whole (both directions).
pub(super) const PROTOCOL_ERROR: &str =
    "the TLS session failed with a protocol error (reported once, by the operation that met it)";
/// A handshake the peer cut short by closing the transport.
pub(super) const EOF_IN_HANDSHAKE: &str = "the peer closed the transport during the TLS handshake";
/// The peer closed the transport without a `close_notify`.
pub(super) const TRUNCATED: &str =
    "the peer closed the transport without a TLS close_notify, so the data may have been cut short";
/// A `send_all` stopped part-way (rule I3).
pub(super) const SEND_CUT: &str = "an earlier send_all stopped part-way, so the peer got an unknown prefix of its data";

/// The wakers of the parties waiting on one direction of the transport;
/// the transport holds a waker of the fan itself, and waking it wakes all.
#[derive(Default)]
pub(super) struct Fan {
    slots: Mutex<[Option<Waker>; 3]>,
}

impl Fan {
    pub(super) fn register(&self, role: Role, waker: &Waker) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut slots[role as usize] {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }

    /// Wakes every party but `except` (all with `None`).
    pub(super) fn wake_others(&self, except: Option<Role>) {
        let taken: Vec<Waker> = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            slots
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| except.is_none_or(|r| r as usize != *i))
                .filter_map(|(_, s)| s.take())
                .collect()
        };
        taken.into_iter().for_each(Waker::wake);
    }

    /// Forgets `role`'s waker: its operation is over.
    pub(super) fn forget(&self, role: Role) {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)[role as usize] = None;
    }
}

impl Wake for Fan {
    fn wake(self: Arc<Self>) {
        self.wake_others(None);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_others(None);
    }
}

/// What `send_eof` has done so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Eof {
    /// Sending is open.
    Open,
    /// `close_notify` is in rustls's buffer, maybe not on the wire yet.
    Queued,
    /// `close_notify` has been handed to the transport.
    Sent,
}

/// The state of a TLS stream below its public API.
pub(super) struct Engine<S> {
    pub(super) transport: S,
    pub(super) conn: RefCell<Connection>,
    pub(super) closed: Cell<bool>,
    /// Set by a protocol error or a cut handshake: every later operation
    /// fails with `BrokenResource` and this reason.
    pub(super) broken: Cell<Option<&'static str>>,
    /// Set when a `send_all` stopped part-way (rule I3).
    pub(super) send_broken: Cell<bool>,
    pub(super) eof: Cell<Eof>,
    pub(super) ignore_missing_close_notify: Cell<bool>,
    read_fan: Arc<Fan>,
    write_fan: Arc<Fan>,
    read_waker: Waker,
    write_waker: Waker,
}

/// The transport as `std::io::Read` for rustls: `Pending` becomes
/// `WouldBlock` (and is remembered, so no other error is mistaken for it).
struct TransportReader<'a, 'b, S> {
    transport: &'a S,
    cx: &'a mut Context<'b>,
    pending: bool,
}

impl<S: PollReceive> Read for TransportReader<'_, '_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.transport.poll_receive(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => {
                self.pending = true;
                Err(io::ErrorKind::WouldBlock.into())
            }
        }
    }
}

/// The transport as `std::io::Write` for rustls, as [`TransportReader`].
struct TransportWriter<'a, 'b, S> {
    transport: &'a S,
    cx: &'a mut Context<'b>,
    pending: bool,
}

impl<S: PollSend> TransportWriter<'_, '_, S> {
    fn pending<T>(&mut self, p: Poll<io::Result<T>>) -> io::Result<T> {
        match p {
            Poll::Ready(r) => r,
            Poll::Pending => {
                self.pending = true;
                Err(io::ErrorKind::WouldBlock.into())
            }
        }
    }
}

impl<S: PollSend> Write for TransportWriter<'_, '_, S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let p = self.transport.poll_send(self.cx, data);
        self.pending(p)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let p = self.transport.poll_send_vectored(self.cx, bufs);
        self.pending(p)
    }

    fn flush(&mut self) -> io::Result<()> {
        let p = self.transport.poll_flush(self.cx);
        self.pending(p)
    }
}

/// Whether a trioxide task is running on this thread (a best-effort
/// `close_notify` polls the transport, which needs one).
fn in_task() -> bool {
    Core::try_current().is_some_and(|core| core.current_task() != TaskId::NONE)
}

impl<S: PollReceive + PollSend> Engine<S> {
    pub(super) fn new(transport: S, conn: Connection) -> Self {
        let read_fan = Arc::new(Fan::default());
        let write_fan = Arc::new(Fan::default());
        Engine {
            transport,
            conn: RefCell::new(conn),
            closed: Cell::new(false),
            broken: Cell::new(None),
            send_broken: Cell::new(false),
            eof: Cell::new(Eof::Open),
            ignore_missing_close_notify: Cell::new(false),
            read_waker: Waker::from(read_fan.clone()),
            write_waker: Waker::from(write_fan.clone()),
            read_fan,
            write_fan,
        }
    }

    /// Closed or broken as a whole: the error every operation then gets.
    pub(super) fn check_usable(&self) -> io::Result<()> {
        if self.closed.get() {
            return Err(ClosedResource.into());
        }
        if let Some(reason) = self.broken.get() {
            return Err(BrokenResource { reason }.into());
        }
        Ok(())
    }

    /// [`check_usable`](Self::check_usable), and the sending direction is
    /// neither ended by `send_eof` nor broken by a cut `send_all`.
    pub(super) fn check_send(&self) -> io::Result<()> {
        self.check_usable()?;
        if self.send_broken.get() {
            return Err(BrokenResource { reason: SEND_CUT }.into());
        }
        if self.eof.get() != Eof::Open {
            return Err(ClosedResource.into());
        }
        Ok(())
    }

    /// Wakes every waiting party but `role`: `role` moved the session on
    /// (handshake progress, an error), which may be what they wait for.
    fn wake_others(&self, role: Option<Role>) {
        self.read_fan.wake_others(role);
        self.write_fan.wake_others(role);
    }

    /// `role`'s operation is over: its waker need not be kept.
    pub(super) fn forget(&self, role: Role) {
        self.read_fan.forget(role);
        self.write_fan.forget(role);
    }

    /// A protocol error: the stream is broken, the alert rustls queued
    /// goes out if the transport takes it at once, and the others wake.
    fn fail(&self, role: Option<Role>, e: rustls::Error) -> io::Error {
        self.broken.set(Some(PROTOCOL_ERROR));
        self.try_flush_now();
        self.wake_others(role);
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    /// Writes TLS records to the transport until rustls has none left.
    /// `role` `None`: register no waker (a best-effort flush).
    pub(super) fn poll_flush_tls(&self, cx: &mut Context<'_>, role: Option<Role>) -> Poll<io::Result<()>> {
        loop {
            if !self.conn.borrow().wants_write() {
                return Poll::Ready(Ok(()));
            }
            match self.poll_write_tls(cx, role) {
                Poll::Ready(Ok(_)) => {}
                other => return other.map_ok(drop),
            }
        }
    }

    /// One `write_tls` to the transport: the bytes it took.
    fn poll_write_tls(&self, cx: &mut Context<'_>, role: Option<Role>) -> Poll<io::Result<usize>> {
        if let Some(role) = role {
            // Before the poll: a transport that yields wakes us inside it.
            self.write_fan.register(role, cx.waker());
        }
        let mut tcx = Context::from_waker(&self.write_waker);
        let mut w = TransportWriter { transport: &self.transport, cx: &mut tcx, pending: false };
        let r = self.conn.borrow_mut().write_tls(&mut w);
        match r {
            Err(_) if w.pending => Poll::Pending,
            Ok(0) => Poll::Ready(Err(io::Error::new(io::ErrorKind::WriteZero, "the transport took no TLS bytes"))),
            r => Poll::Ready(r),
        }
    }

    /// One `read_tls` from the transport and the processing of what came:
    /// the bytes read, 0 at the transport's end.
    fn poll_read_tls(&self, cx: &mut Context<'_>, role: Role) -> Poll<io::Result<usize>> {
        self.read_fan.register(role, cx.waker());
        let mut tcx = Context::from_waker(&self.read_waker);
        let mut r = TransportReader { transport: &self.transport, cx: &mut tcx, pending: false };
        let mut conn = self.conn.borrow_mut();
        let n = match conn.read_tls(&mut r) {
            Ok(n) => n,
            Err(_) if r.pending => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let processed = conn.process_new_packets();
        drop(conn);
        match processed {
            Ok(_) => Poll::Ready(Ok(n)),
            Err(e) => Poll::Ready(Err(self.fail(Some(role), e))),
        }
    }

    /// Drives the handshake to its end, flushing its last flight.
    pub(super) fn poll_handshake(&self, cx: &mut Context<'_>, role: Role) -> Poll<io::Result<()>> {
        loop {
            self.check_usable()?;
            let (handshaking, wants_write) = {
                let conn = self.conn.borrow();
                (conn.is_handshaking(), conn.wants_write())
            };
            if wants_write {
                std::task::ready!(self.poll_flush_tls(cx, Some(role)))?;
                continue;
            }
            if !handshaking {
                return Poll::Ready(Ok(()));
            }
            let n = std::task::ready!(self.poll_read_tls(cx, role))?;
            if n == 0 {
                self.broken.set(Some(EOF_IN_HANDSHAKE));
                self.wake_others(Some(role));
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    BrokenResource { reason: EOF_IN_HANDSHAKE },
                )));
            }
            // Handshake messages came: a party waiting for them elsewhere
            // (another task's implicit handshake) must look again.
            self.wake_others(Some(role));
        }
    }

    /// Receives plaintext: what rustls holds, else one more read of the
    /// transport. Nothing is taken from rustls before it is returned, so a
    /// cancelled caller loses nothing.
    pub(super) fn poll_receive(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            self.check_usable()?;
            if self.conn.borrow().is_handshaking() {
                std::task::ready!(self.poll_handshake(cx, Role::Receive))?;
            }
            let read = self.conn.borrow_mut().reader().read(buf);
            match read {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    if self.ignore_missing_close_notify.get() {
                        return Poll::Ready(Ok(0));
                    }
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        BrokenResource { reason: TRUNCATED },
                    )));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
            std::task::ready!(self.poll_read_tls(cx, Role::Receive))?;
        }
    }

    /// Hands a prefix of `bufs` to rustls (after the handshake), pushing
    /// records out first when its buffer is full.
    pub(super) fn poll_send(&self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        self.check_send()?;
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        if self.conn.borrow().is_handshaking() {
            std::task::ready!(self.poll_handshake(cx, Role::Send))?;
        }
        loop {
            let n = self.conn.borrow_mut().writer().write_vectored(bufs)?;
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            // rustls's buffer is full (its limit, 64 KiB by default).
            std::task::ready!(self.poll_write_tls(cx, Some(Role::Send)))?;
        }
    }

    /// Drives the handshake, queues `close_notify` once and flushes it.
    pub(super) fn poll_send_eof(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check_usable()?;
        if self.send_broken.get() {
            // A close_notify now would pass a cut message off as complete.
            return Poll::Ready(Err(BrokenResource { reason: SEND_CUT }.into()));
        }
        if self.eof.get() == Eof::Sent {
            return Poll::Ready(Ok(()));
        }
        if self.eof.get() == Eof::Open {
            if self.conn.borrow().is_handshaking() {
                std::task::ready!(self.poll_handshake(cx, Role::Send))?;
            }
            self.conn.borrow_mut().send_close_notify();
            self.eof.set(Eof::Queued);
        }
        std::task::ready!(self.poll_flush_tls(cx, Some(Role::Send)))?;
        self.eof.set(Eof::Sent);
        Poll::Ready(Ok(()))
    }

    /// Writes what rustls holds if the transport takes it now, without
    /// waiting or registering a waker: for `close` and for the alert of a
    /// protocol error. A transport that yields before its attempt (the
    /// poll layer's schedule point) is polled again; one that is full is
    /// left alone.
    pub(super) fn try_flush_now(&self) {
        if !in_task() {
            return;
        }
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..4 {
            match self.poll_flush_tls(&mut cx, None) {
                Poll::Ready(_) => return,
                Poll::Pending => {}
            }
        }
    }

    /// `Resource::close`: a best-effort `close_notify`, then the
    /// transport's close, which wakes whoever waits on it.
    pub(super) fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        let clean = self.broken.get().is_none() && !self.send_broken.get();
        if clean && self.eof.get() == Eof::Open && !self.conn.borrow().is_handshaking() && in_task() {
            self.conn.borrow_mut().send_close_notify();
            self.eof.set(Eof::Queued);
        }
        if clean {
            self.try_flush_now();
        }
        self.transport.close();
        self.wake_others(None);
    }
}
