//! TCP over the simulated network, as the application sees it: ordered,
//! reliable bytes; each write is one segment that arrives at a virtual
//! time drawn from the seed; connects that are refused; resets when a host
//! dies or a partition lasts too long. `TcpStream` and `TcpListener` hold
//! a [`SimStream`] or [`SimListener`] when the run is simulated.
//!
//! The rules are a socket's (the conformance checks of
//! `trioxide::testing` hold): every operation is a checkpoint, a second
//! task using one direction gets `BusyResource`, `close` wakes a blocked
//! receive with `ClosedResource`, sends to a closed peer fail with
//! `BrokenPipe`, a cancelled receive takes nothing. The send buffer is
//! unbounded: a send never waits (the bandwidth limit delays arrival).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::{Block, NetState, Segments};
use crate::kernel::budget::after_io;
use crate::kernel::clock::Instant;
use crate::kernel::error::{BusyResource, Cancelled, ClosedResource};
use crate::kernel::Core;
use crate::stream::poll_checkpoint::PollCheckpoint;

/// What `receive_into` reserves when the vector has no spare capacity.
const DEFAULT_RECEIVE: usize = 8 * 1024;

/// One write in flight: its bytes (or the end of the stream) and when it
/// arrives (`None`: held by a partition or a clog).
pub(crate) struct Seg {
    pub(crate) at: Option<Instant>,
    data: Vec<u8>,
    off: usize,
    eof: bool,
}

/// One direction of a connection: segments from one end to the other.
#[derive(Default)]
struct Pipe {
    segs: RefCell<Segments>,
    /// The arrival time of the last segment: later ones never overtake it.
    last_at: Cell<Instant>,
    /// The sender sent its FIN (`send_eof` or `close`).
    eof_sent: Cell<bool>,
    /// The receiving end is closed: sends fail with `BrokenPipe`.
    receiver_closed: Cell<bool>,
}

/// One end's own state.
#[derive(Default)]
struct End {
    closed: Cell<bool>,
    /// The connection is reset for this end from this time on, with this
    /// error.
    reset: Cell<Option<(Instant, io::ErrorKind)>>,
    rx_busy: Cell<bool>,
    tx_busy: Cell<bool>,
    rx_waker: Cell<Option<Waker>>,
    /// The timer of a waiting receive: its key and deadline.
    rx_timer: Cell<Option<(usize, Instant)>>,
    rx_poll: PollCheckpoint,
    tx_poll: PollCheckpoint,
}

/// A connection between two ends (0: the connecting side, 1: the
/// accepting side), on hosts that may be one.
pub(crate) struct Conn {
    net: Rc<NetState>,
    hosts: [u32; 2],
    addrs: [SocketAddr; 2],
    /// `pipes[i]` carries what end `i` sends.
    pipes: [Pipe; 2],
    ends: [End; 2],
    /// Since when a partition holds some of its traffic.
    held_since: Cell<Option<Instant>>,
}

impl Conn {
    /// Re-times held traffic after a fault change (see `NetState::faults_changed`).
    pub(crate) fn retime(&self, net: &NetState, now: Instant) {
        let mut any_held = false;
        for i in 0..2 {
            let (from, to) = (self.hosts[i], self.hosts[1 - i]);
            let pipe = &self.pipes[i];
            let mut segs = pipe.segs.borrow_mut();
            match net.blocked(from, to) {
                Some(kind) => {
                    let mut held = false;
                    for seg in segs.iter_mut() {
                        if seg.at.is_none_or(|t| t > now) {
                            seg.at = None;
                            held = true;
                        }
                    }
                    if held {
                        any_held = true;
                        if kind == Block::Partition && self.held_since.get().is_none() {
                            self.held_since.set(Some(now));
                        }
                    }
                }
                None => {
                    for seg in segs.iter_mut().filter(|s| s.at.is_none()) {
                        let t = net.delay(from, to, seg.data.len(), now).max(pipe.last_at.get());
                        pipe.last_at.set(t);
                        seg.at = Some(t);
                    }
                }
            }
        }
        if !any_held {
            self.held_since.set(None);
        }
    }

    pub(crate) fn wake_all(&self) {
        for e in &self.ends {
            if let Some(w) = e.rx_waker.take() {
                w.wake();
            }
        }
    }

    /// Host `h` was killed: the ends on it are reset now, their peers one
    /// latency later (the reset travels).
    pub(crate) fn host_killed(&self, net: &NetState, h: u32, now: Instant) {
        if !self.hosts.contains(&h) {
            return;
        }
        for i in 0..2 {
            if self.hosts[i] == h {
                self.set_reset(i, now, io::ErrorKind::ConnectionReset);
                let peer_at = if self.hosts[1 - i] == h { now } else { now + net.config.latency };
                self.set_reset(1 - i, peer_at, io::ErrorKind::ConnectionReset);
            }
        }
        for p in &self.pipes {
            p.segs.borrow_mut().clear();
        }
        self.wake_all();
    }

    fn set_reset(&self, end: usize, at: Instant, kind: io::ErrorKind) {
        let e = &self.ends[end];
        match e.reset.get() {
            Some((t, _)) if t <= at => {}
            _ => e.reset.set(Some((at, kind))),
        }
    }

    /// The partition held our traffic for longer than the timeout: both
    /// ends are reset now with `TimedOut`.
    fn timed_out(&self, now: Instant) {
        self.set_reset(0, now, io::ErrorKind::TimedOut);
        self.set_reset(1, now, io::ErrorKind::TimedOut);
        for p in &self.pipes {
            p.segs.borrow_mut().clear();
        }
        self.held_since.set(None);
        self.wake_all();
    }

    /// When a partition's hold resets this connection, if it will.
    fn timeout_at(&self) -> Option<Instant> {
        Some(self.held_since.get()? + self.net.config.partition_timeout?)
    }

    /// The error end `me` sees now, if the connection is reset for it (or
    /// has just timed out).
    fn reset_error(&self, me: usize, now: Instant) -> Option<io::Error> {
        if let Some(t) = self.timeout_at() {
            if now >= t {
                self.timed_out(now);
            }
        }
        match self.ends[me].reset.get() {
            Some((t, kind)) if t <= now => Some(io::Error::new(kind, reset_message(kind))),
            _ => None,
        }
    }
}

fn reset_message(kind: io::ErrorKind) -> &'static str {
    match kind {
        io::ErrorKind::TimedOut => "trioxide sim: connection timed out (partitioned)",
        _ => "trioxide sim: connection reset by peer",
    }
}

/// One end of a simulated TCP connection (inside a `TcpStream`).
pub(crate) struct SimStream {
    conn: Rc<Conn>,
    me: usize,
}

impl Drop for SimStream {
    fn drop(&mut self) {
        self.close();
        self.disarm();
    }
}

/// Holds one direction of an end for an `async fn` operation; releases it
/// (and the receive's timer and waker) on drop.
struct Claim<'a> {
    busy: &'a Cell<bool>,
    stream: &'a SimStream,
    rx: bool,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.busy.set(false);
        if self.rx {
            self.stream.disarm();
        }
    }
}

impl SimStream {
    fn end(&self) -> &End {
        &self.conn.ends[self.me]
    }

    fn claim<'a>(&'a self, busy: &'a Cell<bool>, rx: bool, op: &'static str) -> io::Result<Claim<'a>> {
        if self.end().closed.get() {
            return Err(ClosedResource.into());
        }
        if busy.replace(true) {
            return Err(BusyResource.into());
        }
        let claim = Claim { busy, stream: self, rx };
        if Core::current_for(op).is_cancelled() {
            return Err(Cancelled.into());
        }
        Ok(claim)
    }

    /// Drops the waiting receive's timer and waker.
    fn disarm(&self) {
        let e = self.end();
        if let Some((key, _)) = e.rx_timer.take() {
            if let Some(core) = Core::try_current() {
                core.remove_timer(key);
            }
        }
        drop(e.rx_waker.take());
    }

    /// One receive attempt: data that has arrived, 0 at the end of the
    /// stream, an error, or `Pending` with the waker and a timer armed for
    /// the next arrival.
    fn try_receive(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let core = Core::current();
        let conn = &*self.conn;
        let e = self.end();
        if e.closed.get() {
            return Poll::Ready(Err(ClosedResource.into()));
        }
        let now = core.now();
        if let Some(err) = conn.reset_error(self.me, now) {
            return Poll::Ready(Err(err));
        }
        let pipe = &conn.pipes[1 - self.me];
        let mut segs = pipe.segs.borrow_mut();
        let mut n = 0;
        while let Some(seg) = segs.front_mut() {
            match seg.at {
                Some(t) if t <= now => {}
                _ => break,
            }
            if seg.eof {
                if n == 0 {
                    return Poll::Ready(Ok(0));
                }
                break;
            }
            let k = (buf.len() - n).min(seg.data.len() - seg.off);
            buf[n..n + k].copy_from_slice(&seg.data[seg.off..seg.off + k]);
            seg.off += k;
            n += k;
            if seg.off == seg.data.len() {
                segs.pop_front();
            }
            if n == buf.len() {
                break;
            }
        }
        if n > 0 {
            return Poll::Ready(Ok(n));
        }
        let mut deadline = Instant::FAR_FUTURE;
        if let Some(t) = segs.front().and_then(|s| s.at) {
            deadline = t;
        }
        drop(segs);
        if let Some((t, _)) = e.reset.get() {
            deadline = deadline.min(t);
        }
        if let Some(t) = conn.timeout_at() {
            deadline = deadline.min(t);
        }
        match e.rx_waker.take() {
            Some(w) if w.will_wake(cx.waker()) => e.rx_waker.set(Some(w)),
            _ => e.rx_waker.set(Some(cx.waker().clone())),
        }
        if let Some((key, d)) = e.rx_timer.take() {
            if core.take_fired_timer(key) {
                // Fired and removed: arm anew below.
            } else if d == deadline {
                core.set_timer_waker(key, cx.waker());
                e.rx_timer.set(Some((key, d)));
                return Poll::Pending;
            } else {
                core.remove_timer(key);
            }
        }
        if deadline != Instant::FAR_FUTURE {
            e.rx_timer.set(Some((core.add_wake_timer(deadline, cx.waker().clone()), deadline)));
        }
        Poll::Pending
    }

    /// Sends `data` as one segment (nothing for an empty one), after the
    /// checks; never waits.
    fn try_send(&self, data: &[u8]) -> io::Result<()> {
        let conn = &*self.conn;
        let net = &*conn.net;
        let pipe = &conn.pipes[self.me];
        if self.end().closed.get() || pipe.eof_sent.get() {
            return Err(ClosedResource.into());
        }
        let now = net.now();
        if let Some(err) = conn.reset_error(self.me, now) {
            return Err(err);
        }
        if pipe.receiver_closed.get() {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "trioxide sim: the peer closed the connection"));
        }
        if data.is_empty() {
            return Ok(());
        }
        self.push(Seg { at: None, data: data.to_vec(), off: 0, eof: false }, now);
        Ok(())
    }

    /// Queues a segment (timed, or held if the link is blocked) and wakes
    /// the peer if it waits with no timer.
    fn push(&self, mut seg: Seg, now: Instant) {
        let conn = &*self.conn;
        let net = &*conn.net;
        let pipe = &conn.pipes[self.me];
        let (from, to) = (conn.hosts[self.me], conn.hosts[1 - self.me]);
        match net.blocked(from, to) {
            Some(kind) => {
                if kind == Block::Partition && conn.held_since.get().is_none() {
                    conn.held_since.set(Some(now));
                }
            }
            None => {
                let t = net.delay(from, to, seg.data.len(), now).max(pipe.last_at.get());
                pipe.last_at.set(t);
                seg.at = Some(t);
            }
        }
        pipe.segs.borrow_mut().push_back(seg);
        let peer = &conn.ends[1 - self.me];
        if peer.rx_timer.get().is_none() || conn.held_since.get().is_some() {
            if let Some(w) = peer.rx_waker.take() {
                w.wake();
            }
        }
    }

    fn send_fin(&self) {
        let pipe = &self.conn.pipes[self.me];
        if pipe.eof_sent.replace(true) {
            return;
        }
        let now = self.conn.net.now();
        if self.conn.reset_error(self.me, now).is_none() {
            self.push(Seg { at: None, data: Vec::new(), off: 0, eof: true }, now);
        }
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.conn.addrs[self.me]
    }

    pub(crate) fn peer_addr(&self) -> SocketAddr {
        self.conn.addrs[1 - self.me]
    }

    pub(crate) async fn receive_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "receive_some needs a non-empty buffer"));
        }
        let e = self.end();
        let claim = self.claim(&e.rx_busy, true, "trioxide::TcpStream::receive_some")?;
        let mut waited = false;
        let out = poll_fn(|cx| {
            if waited && Core::current().is_cancelled() {
                return Poll::Ready(Err(Cancelled.into()));
            }
            match self.try_receive(cx, buf) {
                Poll::Pending => {
                    waited = true;
                    Core::current().set_waiting_on("trioxide sim: TcpStream receive");
                    Poll::Pending
                }
                ready => ready,
            }
        })
        .await;
        drop(claim);
        if !waited && out.is_ok() {
            after_io().await;
        }
        out
    }

    pub(crate) async fn receive_into(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let want = (buf.capacity() - buf.len()).max(if buf.capacity() == buf.len() { DEFAULT_RECEIVE } else { 1 });
        let mut tmp = vec![0u8; want];
        let n = self.receive_some(&mut tmp).await?;
        buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    pub(crate) async fn send_all(&self, data: &[u8]) -> io::Result<()> {
        let e = self.end();
        let claim = self.claim(&e.tx_busy, false, "trioxide::TcpStream::send_all")?;
        self.try_send(data)?;
        drop(claim);
        after_io().await;
        Ok(())
    }

    pub(crate) async fn send_all_vectored(&self, chunks: &[&[u8]]) -> io::Result<()> {
        self.send_all(&chunks.concat()).await
    }

    pub(crate) async fn send_file(&self, file: &std::fs::File, offset: u64, count: u64) -> io::Result<u64> {
        use std::os::unix::fs::FileExt;
        // In chunks of 1 MiB, each one segment; fewer than `count` bytes
        // only if the file ends first.
        let mut sent = 0u64;
        let mut chunk = vec![0u8; count.min(1 << 20) as usize];
        while sent < count {
            let want = (count - sent).min(chunk.len() as u64) as usize;
            let k = file.read_at(&mut chunk[..want], offset + sent)?;
            if k == 0 {
                break;
            }
            self.send_all(&chunk[..k]).await?;
            sent += k as u64;
        }
        if count == 0 {
            self.send_all(&[]).await?;
        }
        Ok(sent)
    }

    pub(crate) async fn send_eof(&self) -> io::Result<()> {
        let e = self.end();
        let claim = self.claim(&e.tx_busy, false, "trioxide::TcpStream::send_eof")?;
        self.send_fin();
        drop(claim);
        after_io().await;
        Ok(())
    }

    pub(crate) async fn wait_send_all_might_not_block(&self) -> io::Result<()> {
        let e = self.end();
        let claim = self.claim(&e.tx_busy, false, "trioxide::TcpStream::wait_send_all_might_not_block")?;
        drop(claim);
        after_io().await;
        Ok(())
    }

    pub(crate) fn close(&self) {
        let e = self.end();
        if e.closed.get() {
            return;
        }
        self.send_fin();
        e.closed.set(true);
        let incoming = &self.conn.pipes[1 - self.me];
        incoming.receiver_closed.set(true);
        incoming.segs.borrow_mut().clear();
        if let Some(w) = e.rx_waker.take() {
            w.wake();
        }
    }

    /// `ClosedResource`, or `BusyResource` while an `async fn` operation
    /// holds the direction.
    fn poll_check(&self, busy: &Cell<bool>) -> io::Result<()> {
        if self.end().closed.get() {
            return Err(ClosedResource.into());
        }
        if busy.get() {
            return Err(BusyResource.into());
        }
        Ok(())
    }

    pub(crate) fn poll_receive(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let e = self.end();
        if let Err(err) = self.poll_check(&e.rx_busy) {
            return Poll::Ready(Err(err));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match e.rx_poll.poll_begin(cx, "trioxide::TcpStream::poll_receive") {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Pending => return Poll::Pending,
        }
        match self.try_receive(cx, buf) {
            Poll::Pending => {
                e.rx_poll.suspended("trioxide sim: TcpStream poll_receive");
                Poll::Pending
            }
            ready => {
                self.disarm();
                ready
            }
        }
    }

    pub(crate) fn poll_receive_uninit(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [std::mem::MaybeUninit<u8>],
    ) -> Poll<io::Result<usize>> {
        let mut tmp = vec![0u8; buf.len()];
        let out = self.poll_receive(cx, &mut tmp);
        if let Poll::Ready(Ok(n)) = out {
            for (d, s) in buf.iter_mut().zip(&tmp[..n]) {
                d.write(*s);
            }
        }
        out
    }

    pub(crate) fn poll_send(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let e = self.end();
        if let Err(err) = self.poll_check(&e.tx_busy) {
            return Poll::Ready(Err(err));
        }
        if self.conn.pipes[self.me].eof_sent.get() {
            return Poll::Ready(Err(ClosedResource.into()));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match e.tx_poll.poll_begin(cx, "trioxide::TcpStream::poll_send") {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|()| 0)),
        }
        Poll::Ready(self.try_send(data).map(|()| data.len()))
    }

    pub(crate) fn poll_send_vectored(&self, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let data: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        self.poll_send(cx, &data)
    }

    pub(crate) fn poll_send_eof(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let e = self.end();
        if let Err(err) = self.poll_check(&e.tx_busy) {
            return Poll::Ready(Err(err));
        }
        if Core::current_for("poll_send_eof").is_cancelled() {
            return Poll::Ready(Err(Cancelled.into()));
        }
        self.send_fin();
        Poll::Ready(Ok(()))
    }
}

/// A listening socket on a simulated host.
pub(crate) struct ListenerState {
    net: Rc<NetState>,
    pub(crate) host: u32,
    addr: SocketAddr,
    backlog: RefCell<VecDeque<SimStream>>,
    waker: Cell<Option<Waker>>,
    closed: Cell<bool>,
    /// Its host was killed.
    dead: Cell<bool>,
}

impl ListenerState {
    pub(crate) fn kill(&self) {
        self.dead.set(true);
        self.backlog.borrow_mut().clear();
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// What a simulated `TcpListener` holds.
pub(crate) struct SimListener {
    state: Rc<ListenerState>,
}

impl Drop for SimListener {
    fn drop(&mut self) {
        self.close();
    }
}

impl SimListener {
    /// Binds on the current host (an unspecified or loopback address means
    /// the host's own; port 0 an ephemeral one).
    pub(crate) fn bind(net: Rc<NetState>, addr: SocketAddr) -> io::Result<SimListener> {
        let (h, local) = net.bind_addr(addr)?;
        let mut ls = net.listeners.borrow_mut();
        super::check_port_free(&ls, local)?;
        let state = Rc::new(ListenerState {
            net: net.clone(),
            host: h,
            addr: local,
            backlog: RefCell::new(VecDeque::new()),
            waker: Cell::new(None),
            closed: Cell::new(false),
            dead: Cell::new(false),
        });
        ls.insert(local, Rc::downgrade(&state));
        Ok(SimListener { state })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.state.addr
    }

    pub(crate) fn close(&self) {
        let st = &*self.state;
        if st.closed.replace(true) {
            return;
        }
        super::release_port(&mut st.net.listeners.borrow_mut(), st.addr, &self.state);
        st.backlog.borrow_mut().clear();
        if let Some(w) = st.waker.take() {
            w.wake();
        }
    }

    /// Accepts up to `max` queued connections (waiting for the first),
    /// handing each to `push`.
    pub(crate) async fn accept_each(
        &self,
        max: usize,
        mut push: impl FnMut(SimStream, SocketAddr),
    ) -> io::Result<usize> {
        let st = &*self.state;
        if st.closed.get() {
            return Err(ClosedResource.into());
        }
        let core = Core::current_for("trioxide::TcpListener::accept");
        if core.is_cancelled() {
            return Err(Cancelled.into());
        }
        let mut waited = false;
        let out = poll_fn(|cx| {
            if st.closed.get() {
                return Poll::Ready(Err(ClosedResource.into()));
            }
            if waited && core.is_cancelled() {
                return Poll::Ready(Err(Cancelled.into()));
            }
            if st.dead.get() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "trioxide sim: the listener's host was killed",
                )));
            }
            let mut n = 0;
            let mut q = st.backlog.borrow_mut();
            while n < max.max(1) {
                let Some(s) = q.pop_front() else { break };
                let peer = s.peer_addr();
                push(s, peer);
                n += 1;
            }
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            waited = true;
            st.waker.set(Some(cx.waker().clone()));
            core.set_waiting_on("trioxide sim: TcpListener accept");
            Poll::Pending
        })
        .await;
        drop(st.waker.take());
        if !waited && out.is_ok() {
            after_io().await;
        }
        out
    }
}

/// Connects from the current host to `addr`: one delay for the SYN, the
/// listener's answer, one delay back. Waits while a partition or clog
/// separates the hosts (a partition at most its timeout: `TimedOut`).
pub(crate) async fn connect(net: Rc<NetState>, addr: SocketAddr) -> io::Result<SimStream> {
    let me = net.this_host()?;
    let Some(to) = net.host_by_ip(me, addr.ip()) else {
        crate::time::sleep(net.config.latency).await?;
        return Err(io::Error::new(
            io::ErrorKind::HostUnreachable,
            format!("trioxide sim: no host has address {}", addr.ip()),
        ));
    };
    let start = net.now();
    while let Some(kind) = net.blocked(me, to) {
        let deadline = match (kind, net.config.partition_timeout) {
            (Block::Partition, Some(pto)) => start + pto,
            _ => Instant::FAR_FUTURE,
        };
        if net.now() >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "trioxide sim: connect timed out (partitioned)"));
        }
        super::host::fault_change_or(&net, deadline).await?;
    }
    let syn = net.delay(me, to, 0, net.now());
    crate::time::sleep_until(syn).await?;
    let now = net.now();
    let target = SocketAddr::new(net.host_ip(to), addr.port());
    let listener = net.listeners.borrow().get(&target).and_then(|w| w.upgrade());
    let listener = listener.filter(|l| !l.closed.get() && !l.dead.get() && net.host_up(to));
    let back = net.delay(to, me, 0, now);
    let Some(listener) = listener else {
        crate::time::sleep_until(back).await?;
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("trioxide sim: connection to {target} refused"),
        ));
    };
    let local = SocketAddr::new(net.host_ip(me), net.ephemeral_port(me));
    let conn = Rc::new(Conn {
        net: net.clone(),
        hosts: [me, to],
        addrs: [local, target],
        pipes: [Pipe::default(), Pipe::default()],
        ends: [End::default(), End::default()],
        held_since: Cell::new(None),
    });
    for p in &conn.pipes {
        p.last_at.set(now);
    }
    {
        let mut conns = net.conns.borrow_mut();
        // Forget closed connections now and then, so a long run's list
        // stays proportional to the live ones.
        if conns.len() >= 64 && conns.len().is_power_of_two() {
            conns.retain(|w| w.strong_count() > 0);
        }
        conns.push(Rc::downgrade(&conn));
    }
    let client = SimStream { conn: conn.clone(), me: 0 };
    listener.backlog.borrow_mut().push_back(SimStream { conn, me: 1 });
    if let Some(w) = listener.waker.take() {
        w.wake();
    }
    crate::time::sleep_until(back).await?;
    Ok(client)
}
