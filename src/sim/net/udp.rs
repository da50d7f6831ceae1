//! UDP over the simulated network: datagrams with latency, jitter (so they
//! may arrive out of order), loss (a lost datagram is gone), and faults
//! that drop them (a partition, a clog, a dead host). `UdpSocket` holds a
//! [`SimUdp`] when the run is simulated.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::NetState;
use crate::kernel::budget::after_io;
use crate::kernel::clock::Instant;
use crate::kernel::error::{BusyResource, Cancelled, ClosedResource};
use crate::kernel::Core;

/// One datagram on its way: when it arrives, its order of sending (ties),
/// its bytes and its sender.
type Datagram = (Instant, u64, Vec<u8>, SocketAddr);

/// A bound simulated UDP socket.
pub(crate) struct UdpState {
    pub(crate) host: u32,
    addr: SocketAddr,
    /// Datagrams in flight to this socket, sorted by arrival.
    queue: RefCell<Vec<Datagram>>,
    waker: Cell<Option<Waker>>,
    timer: Cell<Option<usize>>,
    closed: Cell<bool>,
    busy: Cell<bool>,
}

/// What a simulated `UdpSocket` holds.
pub(crate) struct SimUdp {
    net: Rc<NetState>,
    state: Rc<UdpState>,
}

impl Drop for SimUdp {
    fn drop(&mut self) {
        self.close();
    }
}

impl SimUdp {
    pub(crate) fn bind(net: Rc<NetState>, addr: SocketAddr) -> io::Result<SimUdp> {
        let (h, local) = net.bind_addr(addr)?;
        let mut socks = net.udp.borrow_mut();
        super::check_port_free(&socks, local)?;
        let state = Rc::new(UdpState {
            host: h,
            addr: local,
            queue: RefCell::new(Vec::new()),
            waker: Cell::new(None),
            timer: Cell::new(None),
            closed: Cell::new(false),
            busy: Cell::new(false),
        });
        socks.insert(local, Rc::downgrade(&state));
        drop(socks);
        Ok(SimUdp { net, state })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.state.addr
    }

    pub(crate) fn close(&self) {
        let st = &*self.state;
        if st.closed.replace(true) {
            return;
        }
        super::release_port(&mut self.net.udp.borrow_mut(), st.addr, &self.state);
        st.queue.borrow_mut().clear();
        if let Some(w) = st.waker.take() {
            w.wake();
        }
    }

    /// Sends one datagram: it arrives one delay later, or never (loss, a
    /// partition or clog between the hosts, nobody bound at `target`).
    pub(crate) async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        if self.state.closed.get() {
            return Err(ClosedResource.into());
        }
        let core = Core::current_for("trioxide::UdpSocket::send_to");
        if core.is_cancelled() {
            return Err(Cancelled.into());
        }
        let net = &*self.net;
        let me = self.state.host;
        let now = core.now();
        let to = net.host_by_ip(me, target.ip());
        let lost = {
            let loss = net.config.loss_per_mille as u64;
            loss > 0 && net.rng.borrow_mut().below(1000) < loss
        };
        if let (Some(to), false) = (to, lost) {
            let dest = SocketAddr::new(net.host_ip(to), target.port());
            let sock = net.udp.borrow().get(&dest).and_then(|w| w.upgrade());
            if let (Some(sock), None) = (sock, net.blocked(me, to)) {
                if net.host_up(to) && !sock.closed.get() {
                    // Jitter without the stream's order: datagrams may pass each other.
                    let at = net.delay_no_loss(me, to, buf.len(), now);
                    let seq = net.next_scope_key();
                    let mut q = sock.queue.borrow_mut();
                    let i = q.partition_point(|d| (d.0, d.1) <= (at, seq));
                    q.insert(i, (at, seq, buf.to_vec(), self.state.addr));
                    drop(q);
                    if let Some(w) = sock.waker.take() {
                        w.wake();
                    }
                }
            }
        }
        after_io().await;
        Ok(buf.len())
    }

    /// Receives the next datagram that has arrived (truncated to `buf`),
    /// waiting for one.
    pub(crate) async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let st = &*self.state;
        if st.closed.get() {
            return Err(ClosedResource.into());
        }
        if st.busy.replace(true) {
            return Err(BusyResource.into());
        }
        struct Release<'a>(&'a UdpState);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.busy.set(false);
                drop(self.0.waker.take());
                if let (Some(key), Some(core)) = (self.0.timer.take(), Core::try_current()) {
                    core.remove_timer(key);
                }
            }
        }
        let _release = Release(st);
        let core = Core::current_for("trioxide::UdpSocket::recv_from");
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
            let now = core.now();
            let mut q = st.queue.borrow_mut();
            if q.first().is_some_and(|d| d.0 <= now) {
                let (_, _, data, from) = q.remove(0);
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                return Poll::Ready(Ok((n, from)));
            }
            let next = q.first().map(|d| d.0);
            drop(q);
            waited = true;
            st.waker.set(Some(cx.waker().clone()));
            if let Some(key) = st.timer.take() {
                core.remove_timer(key);
            }
            if let Some(at) = next {
                st.timer.set(Some(core.add_wake_timer(at, cx.waker().clone())));
            }
            core.set_waiting_on("trioxide sim: UdpSocket recv_from");
            Poll::Pending
        })
        .await;
        if !waited && out.is_ok() {
            after_io().await;
        }
        out
    }
}
