//! [`Host`]: one machine of the simulated network, the code that runs on
//! it, and killing and restarting it.

use std::fmt;
use std::future::{poll_fn, Future};
use std::net::IpAddr;
use std::task::{Poll, Waker};
use std::time::Duration;

use super::Net;
use crate::kernel::clock::Instant;
use crate::kernel::error::{BoxError, Cancelled};
use crate::kernel::Core;
use crate::CancelScope;

/// One host of a simulated network, made by [`Net::add_host`]. Code run
/// by [`run`](Host::run) or [`enter`](Host::enter), and every task of the
/// nurseries it opens, is on this host: its sockets have the host's
/// address, and [`kill`](Host::kill) cancels it. Clones are the same host.
///
/// ```
/// use trioxide::sim;
/// sim::Builder::new().net(sim::NetConfig::new()).run(async {
///     let h: sim::Host = sim::net().add_host("db", "10.0.0.9".parse().unwrap()).unwrap();
///     assert!(h.is_up());
/// });
/// ```
#[derive(Clone)]
pub struct Host {
    pub(crate) net: Net,
    /// 1-based; the kernel tag of the host's scopes.
    pub(crate) id: u32,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host").field("name", &self.name()).field("ip", &self.ip()).field("up", &self.is_up()).finish()
    }
}

impl PartialEq for Host {
    fn eq(&self, other: &Host) -> bool {
        self.id == other.id && std::rc::Rc::ptr_eq(&self.net.state, &other.net.state)
    }
}

impl Eq for Host {}

impl Host {
    /// The host's name (what [`open_tcp_stream`](crate::open_tcp_stream)
    /// resolves).
    ///
    /// ```
    /// use trioxide::sim;
    /// sim::Builder::new().net(sim::NetConfig::new()).run(async {
    ///     assert_eq!(sim::net().add_host("kv1", "10.0.0.1".parse().unwrap()).unwrap().name(), "kv1");
    /// });
    /// ```
    pub fn name(&self) -> String {
        self.net.state.hosts.borrow()[self.id as usize - 1].name.clone()
    }

    /// The host's address.
    ///
    /// ```
    /// use trioxide::sim;
    /// sim::Builder::new().net(sim::NetConfig::new()).run(async {
    ///     let h = sim::net().add_host("kv1", "10.0.0.1".parse().unwrap()).unwrap();
    ///     assert_eq!(h.ip(), "10.0.0.1".parse::<std::net::IpAddr>().unwrap());
    /// });
    /// ```
    pub fn ip(&self) -> IpAddr {
        self.net.state.host_ip(self.id)
    }

    /// False from a [`kill`](Host::kill) until it runs again.
    ///
    /// ```
    /// use trioxide::sim;
    /// sim::Builder::new().net(sim::NetConfig::new()).run(async {
    ///     let h = sim::net().add_host("a", "10.0.0.1".parse().unwrap()).unwrap();
    ///     h.kill();
    ///     assert!(!h.is_up());
    /// });
    /// ```
    pub fn is_up(&self) -> bool {
        self.net.state.host_up(self.id)
    }

    /// How many times the host was killed.
    ///
    /// ```
    /// use trioxide::sim;
    /// sim::Builder::new().net(sim::NetConfig::new()).run(async {
    ///     let h = sim::net().add_host("a", "10.0.0.1".parse().unwrap()).unwrap();
    ///     h.kill();
    ///     h.kill();
    ///     assert_eq!(h.kills(), 2);
    /// });
    /// ```
    pub fn kills(&self) -> u32 {
        self.net.state.hosts.borrow()[self.id as usize - 1].kills
    }

    /// Marks a scope as this host's and remembers it, so a kill cancels it.
    fn host_scope(&self) -> (u64, CancelScope) {
        let scope = CancelScope::new();
        scope.set_tag(self.id);
        let key = self.net.state.next_scope_key();
        self.net.state.hosts.borrow_mut()[self.id as usize - 1].scopes.push((key, scope.clone()));
        (key, scope)
    }

    fn forget_scope(&self, key: u64) {
        let mut hosts = self.net.state.hosts.borrow_mut();
        hosts[self.id as usize - 1].scopes.retain(|(k, _)| *k != key);
    }

    /// Runs `body` on this host (in a scope of the host: a kill cancels
    /// it) and returns its output; `Err(Cancelled)` if the host was killed
    /// meanwhile (or is down). For a test's client code, or to make a
    /// connection from a host by hand.
    ///
    /// ```
    /// use trioxide::{sim, BoxError, TcpListener};
    /// sim::Builder::new().net(sim::NetConfig::new()).run(async {
    ///     let h = sim::net().add_host("a", "10.0.0.1".parse()?)?;
    ///     let addr = h.enter(async { Ok::<_, BoxError>(TcpListener::bind("0.0.0.0:80".parse()?)?.local_addr()?) }).await?;
    ///     assert_eq!(addr.to_string(), "10.0.0.1:80");
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub async fn enter<T, E>(&self, body: impl Future<Output = Result<T, E>>) -> Result<T, BoxError>
    where
        E: Into<BoxError>,
    {
        if !self.is_up() {
            return Err(Cancelled.into());
        }
        let (key, scope) = self.host_scope();
        let out = scope.run(async { body.await.map_err(Into::into) }).await;
        self.forget_scope(key);
        match out {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(Cancelled.into()),
            Err(e) => Err(e),
        }
    }

    /// Runs the host's main: `make_main()` in a scope of the host. Returns
    /// when main returns (its error is this call's), or when the host is
    /// killed and not restarted (`Ok`: the kill is the outcome, and the
    /// errors the dying code reported are dropped). After
    /// [`restart`](Host::restart) it waits the given downtime and runs
    /// `make_main()` again, on a fresh host: no socket of the old run is
    /// left.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{open_nursery, sim, sleep, sleep_forever, BoxError};
    /// let boots = std::rc::Rc::new(std::cell::Cell::new(0));
    /// let b = boots.clone();
    /// sim::Builder::new().net(sim::NetConfig::new()).run(open_nursery(|n| async move {
    ///     let h = sim::net().add_host("a", "10.0.0.1".parse()?)?;
    ///     let runner = h.clone();
    ///     n.start_soon(async move {
    ///         runner.run(|| {
    ///             b.set(b.get() + 1);
    ///             async { sleep_forever().await?; Ok::<_, BoxError>(()) }
    ///         }).await
    ///     })?;
    ///     sleep(Duration::from_secs(1)).await?;
    ///     h.restart(Duration::from_secs(5)); // killed now, boots again in 5 s
    ///     sleep(Duration::from_secs(6)).await?;
    ///     h.kill(); // for good: run returns Ok
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// assert_eq!(boots.get(), 2);
    /// ```
    pub async fn run<F, Fut, E>(&self, mut make_main: F) -> Result<(), BoxError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Into<BoxError>,
    {
        loop {
            {
                let mut hosts = self.net.state.hosts.borrow_mut();
                let st = &mut hosts[self.id as usize - 1];
                st.up = true;
                st.restart_at = None;
            }
            let epoch = self.net.state.host_epoch(self.id);
            let (key, scope) = self.host_scope();
            let main = make_main();
            let out = scope.run(async { main.await.map_err(Into::into) }).await;
            self.forget_scope(key);
            let killed = self.net.state.host_epoch(self.id) != epoch;
            if !killed {
                return match out {
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                };
            }
            // Killed: boot again if a restart is due. A kill or restart
            // during the downtime changes the plan (a kill cancels the
            // boot, a restart moves it): each bumps the epoch, so look
            // again whenever it changes.
            loop {
                let epoch = self.net.state.host_epoch(self.id);
                let restart_at = self.net.state.hosts.borrow()[self.id as usize - 1].restart_at;
                let Some(at) = restart_at else { return Ok(()) };
                if Core::current().now() >= at {
                    break;
                }
                let state = &*self.net.state;
                change_or(state, at, || state.host_epoch(self.id) != epoch).await?;
            }
        }
    }

    /// Kills the host now: every connection of it is reset (the peer sees
    /// `ConnectionReset` one latency later), its listeners are dropped (a
    /// connect is refused), and the code on it is cancelled. Its
    /// [`run`](Host::run) returns, unless [`restart`](Host::restart) is
    /// called; a kill during a restart's downtime cancels the restart (the
    /// host stays down, and `run` returns).
    ///
    /// ```
    /// use trioxide::sim;
    /// sim::Builder::new().net(sim::NetConfig::new()).run(async {
    ///     let h = sim::net().add_host("a", "10.0.0.1".parse().unwrap()).unwrap();
    ///     h.kill();
    ///     assert!(h.enter(async { Ok::<_, trioxide::BoxError>(()) }).await.is_err()); // down
    /// });
    /// ```
    pub fn kill(&self) {
        self.net.state.hosts.borrow_mut()[self.id as usize - 1].restart_at = None;
        self.net.state.kill(self.id);
    }

    /// Kills the host now and has its [`run`](Host::run) start main again
    /// after `downtime` (connects meanwhile are refused). During another
    /// restart's downtime, it moves the boot to `downtime` from now.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::sim;
    /// sim::Builder::new().net(sim::NetConfig::new()).run(async {
    ///     let h = sim::net().add_host("a", "10.0.0.1".parse().unwrap()).unwrap();
    ///     h.restart(Duration::from_secs(1));
    ///     assert_eq!(h.kills(), 1);
    /// });
    /// ```
    pub fn restart(&self, downtime: Duration) {
        let at = Core::current_for("trioxide::sim::Host::restart").now() + downtime;
        self.net.state.kill(self.id);
        self.net.state.hosts.borrow_mut()[self.id as usize - 1].restart_at = Some(at);
    }
}

/// Waits for a fault change of `net` or for `deadline`, whichever is
/// first; `Err(Cancelled)` if cancelled.
pub(crate) async fn fault_change_or(net: &super::NetState, deadline: Instant) -> Result<(), Cancelled> {
    let gen = net.generation.get();
    change_or(net, deadline, || net.generation.get() != gen).await
}

/// Waits until `changed()` (looked at whenever `net`'s watchers are woken:
/// a fault change, a kill, a restart) or `deadline`, whichever is first;
/// `Err(Cancelled)` if cancelled.
async fn change_or(net: &super::NetState, deadline: Instant, changed: impl Fn() -> bool) -> Result<(), Cancelled> {
    let core = Core::current();
    if core.is_cancelled() {
        return Err(Cancelled);
    }
    // Dropped when the wait ends, however it ends: takes our waker out of
    // the watchers (a wait that ended by its deadline, with no fault change
    // after it, would otherwise leave it there, and with it the task's
    // allocation, until the run's end) and removes the timer.
    let mut wait = Watch { net, core, key: None, timer: None, waited: false };
    poll_fn(|cx| {
        if wait.waited && core.is_cancelled() {
            return Poll::Ready(Err(Cancelled));
        }
        if changed() || core.now() >= deadline {
            return Poll::Ready(Ok(()));
        }
        if let Some(key) = wait.timer {
            if core.take_fired_timer(key) {
                wait.timer = None;
                return Poll::Ready(Ok(()));
            }
            core.set_timer_waker(key, cx.waker());
        } else if deadline != Instant::FAR_FUTURE {
            wait.timer = Some(core.add_wake_timer(deadline, cx.waker().clone()));
        }
        wait.waited = true;
        wait.register(cx.waker());
        core.set_waiting_on("trioxide sim: a network change");
        Poll::Pending
    })
    .await
}

/// A pending [`change_or`]: its entry in the network's watchers and its
/// timer, both removed on drop.
struct Watch<'a> {
    net: &'a super::NetState,
    core: &'a Core,
    key: Option<u64>,
    timer: Option<usize>,
    waited: bool,
}

impl Watch<'_> {
    /// Puts `waker` in the watchers (again, if a wake-up took it out).
    fn register(&mut self, waker: &Waker) {
        let mut ws = self.net.watchers.borrow_mut();
        match self.key.and_then(|k| ws.get_mut(&k)) {
            Some(w) => {
                if !w.will_wake(waker) {
                    *w = waker.clone();
                }
            }
            None => {
                let k = self.net.next_scope_key();
                ws.insert(k, waker.clone());
                self.key = Some(k);
            }
        }
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key {
            self.net.watchers.borrow_mut().remove(&k);
        }
        if let Some(t) = self.timer {
            self.core.remove_timer(t);
        }
    }
}
