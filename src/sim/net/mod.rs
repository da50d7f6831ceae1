//! The simulated network: hosts with addresses, TCP between them as the
//! application sees it, and faults (latency and jitter, loss as delay,
//! bandwidth, partitions, clogged links and hosts, killed and restarted
//! hosts).
//!
//! A simulated run gets a network from
//! [`Builder::net`](crate::sim::Builder::net); inside it, [`net`] is its
//! handle. [`Net::add_host`] makes a [`Host`]; code run by
//! [`Host::run`] (or [`Host::enter`]) is *on* that host, and so are the
//! tasks of every nursery it opens: a socket it binds or connects uses the
//! host's address. The ordinary API ([`TcpListener::bind`](crate::TcpListener::bind),
//! [`TcpStream::connect`](crate::TcpStream::connect),
//! [`open_tcp_stream`](crate::open_tcp_stream) with host names,
//! [`serve_tcp`](crate::serve_tcp)) then talks over the simulated network:
//! no file descriptor, no epoll; every delivery is a timer of the run, at a
//! virtual time drawn from the run's seed.
//!
//! ```
//! use std::time::Duration;
//! use trioxide::{current_time, open_nursery, open_tcp_stream, sim, BoxError, TcpListener};
//!
//! let cfg = sim::NetConfig::new().latency(Duration::from_millis(5));
//! let rtt = sim::Builder::new().seed(1).net(cfg).run(open_nursery(|n| async move {
//!     let net = sim::net();
//!     let server = net.add_host("kv1", "10.0.0.1".parse()?)?;
//!     let client = net.add_host("client", "10.0.0.2".parse()?)?;
//!     n.start_soon(async move {
//!         server.run(|| async {
//!             let listener = TcpListener::bind("0.0.0.0:7000".parse()?)?;
//!             let (s, _) = listener.accept().await?;
//!             let mut buf = [0u8; 4];
//!             let k = s.receive_some(&mut buf).await?;
//!             s.send_all(&buf[..k]).await?;
//!             Ok::<_, BoxError>(())
//!         }).await
//!     })?;
//!     let rtt = client.enter(async {
//!         let s = open_tcp_stream("kv1", 7000).await?; // one round trip: 10 ms
//!         let t0 = current_time();
//!         s.send_all(b"ping").await?;
//!         let mut buf = [0u8; 4];
//!         s.receive_some(&mut buf).await?;
//!         Ok::<_, BoxError>(current_time().saturating_duration_since(t0))
//!     }).await?;
//!     Ok::<_, BoxError>(rtt)
//! })).unwrap();
//! assert_eq!(rtt, Some(Duration::from_millis(10)));
//! ```

mod host;
pub(crate) mod tcp;
pub(crate) mod udp;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::{Rc, Weak};
use std::task::Waker;
use std::time::Duration;

use crate::kernel::clock::Instant;
use crate::kernel::run_local::RunVar;
use crate::kernel::Core;

pub use host::Host;
use tcp::{Conn, ListenerState};

/// The network's parameters: per-segment latency and jitter, loss (seen
/// by TCP as a retransmission delay), a bandwidth limit per link, and how
/// long a partition may hold a connection's traffic before it is reset.
/// `Copy`, so it is part of a [`Builder`](crate::sim::Builder).
///
/// ```
/// use std::time::Duration;
/// let cfg = trioxide::sim::NetConfig::new()
///     .latency(Duration::from_millis(2))
///     .jitter(Duration::from_millis(1))
///     .loss_per_mille(10)
///     .bandwidth(Some(1_000_000))
///     .partition_timeout(Some(Duration::from_secs(3)));
/// assert_eq!(cfg.to_string(), "lat=2000us,jit=1000us,loss=10,bw=1000000,pto=3000ms");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetConfig {
    latency: Duration,
    jitter: Duration,
    loss_per_mille: u32,
    rto: Duration,
    bandwidth: Option<u64>,
    partition_timeout: Option<Duration>,
}

impl Default for NetConfig {
    fn default() -> NetConfig {
        NetConfig::new()
    }
}

impl NetConfig {
    /// A clean network: 1 ms latency, no jitter, no loss, no bandwidth
    /// limit, partitions hold traffic for as long as they last.
    ///
    /// ```
    /// let cfg = trioxide::sim::NetConfig::new();
    /// assert_eq!(cfg.to_string(), "lat=1000us,jit=0us,loss=0,bw=0,pto=0ms");
    /// ```
    pub const fn new() -> NetConfig {
        NetConfig {
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            loss_per_mille: 0,
            rto: Duration::from_millis(200),
            bandwidth: None,
            partition_timeout: None,
        }
    }

    /// Swarm testing: a configuration drawn from `seed` (each seed picks
    /// which faults are on and how strong): latency 0.1–10 ms, jitter off
    /// or up to the latency, loss off or up to 5%, a bandwidth limit or
    /// none, and a partition timeout of 1–10 s or none.
    ///
    /// ```
    /// use trioxide::sim::NetConfig;
    /// assert_eq!(NetConfig::swarm(7), NetConfig::swarm(7)); // a function of the seed
    /// assert!((0..20).any(|s| NetConfig::swarm(s) != NetConfig::swarm(7)));
    /// ```
    pub fn swarm(seed: u64) -> NetConfig {
        let mut r = SimRng::new(seed ^ 0x5eed_5a12_3f00_d00d);
        let latency = Duration::from_micros(100 + r.below(9_900));
        let jitter = if r.below(2) == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(r.below(latency.as_micros() as u64 + 1))
        };
        let loss_per_mille = if r.below(2) == 0 { 0 } else { r.below(51) as u32 };
        let bandwidth = if r.below(3) == 0 { Some(100_000 + r.below(10_000_000)) } else { None };
        let partition_timeout = if r.below(2) == 0 { None } else { Some(Duration::from_millis(1000 + r.below(9_000))) };
        NetConfig { latency, jitter, loss_per_mille, rto: Duration::from_millis(200), bandwidth, partition_timeout }
    }

    /// The one-way delay of every segment (before jitter, loss and
    /// bandwidth).
    ///
    /// ```
    /// use std::time::Duration;
    /// let cfg = trioxide::sim::NetConfig::new().latency(Duration::from_millis(7));
    /// assert_eq!(cfg.get_latency(), Duration::from_millis(7));
    /// ```
    pub const fn latency(mut self, latency: Duration) -> NetConfig {
        self.latency = latency;
        self
    }

    /// The latency set with [`latency`](NetConfig::latency).
    ///
    /// ```
    /// assert_eq!(trioxide::sim::NetConfig::new().get_latency(), std::time::Duration::from_millis(1));
    /// ```
    pub const fn get_latency(&self) -> Duration {
        self.latency
    }

    /// Extra delay of each segment, uniform in `0..=jitter`, drawn from
    /// the run's seed. A connection's bytes still arrive in order.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cfg = trioxide::sim::NetConfig::new().jitter(Duration::from_micros(500));
    /// assert_eq!(cfg.to_string(), "lat=1000us,jit=500us,loss=0,bw=0,pto=0ms");
    /// ```
    pub const fn jitter(mut self, jitter: Duration) -> NetConfig {
        self.jitter = jitter;
        self
    }

    /// The chance (per thousand) that a segment is lost; TCP sees a loss as
    /// a retransmission 200 ms later (and doubling while it is lost again).
    ///
    /// ```
    /// let cfg = trioxide::sim::NetConfig::new().loss_per_mille(1000); // capped at 999
    /// assert_eq!(cfg.to_string(), "lat=1000us,jit=0us,loss=999,bw=0,pto=0ms");
    /// ```
    pub const fn loss_per_mille(mut self, loss: u32) -> NetConfig {
        self.loss_per_mille = if loss > 999 { 999 } else { loss };
        self
    }

    /// A bandwidth limit per directed link between two hosts, in bytes per
    /// second (`None`: unlimited): a segment of `n` bytes occupies the link
    /// for `n / bandwidth` seconds.
    ///
    /// ```
    /// let cfg = trioxide::sim::NetConfig::new().bandwidth(Some(1000));
    /// assert_eq!(cfg.to_string(), "lat=1000us,jit=0us,loss=0,bw=1000,pto=0ms");
    /// ```
    pub const fn bandwidth(mut self, bytes_per_sec: Option<u64>) -> NetConfig {
        self.bandwidth = match bytes_per_sec {
            Some(0) => None,
            b => b,
        };
        self
    }

    /// How long a partition may hold a connection's traffic before the
    /// connection is reset with `TimedOut` at both ends (`None`: it waits
    /// for the partition to heal, however long). A connect across a
    /// partition waits as long, then fails with `TimedOut`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cfg = trioxide::sim::NetConfig::new().partition_timeout(Some(Duration::from_secs(2)));
    /// assert_eq!(cfg.to_string(), "lat=1000us,jit=0us,loss=0,bw=0,pto=2000ms");
    /// ```
    pub const fn partition_timeout(mut self, timeout: Option<Duration>) -> NetConfig {
        self.partition_timeout = timeout;
        self
    }
}

impl fmt::Display for NetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lat={}us,jit={}us,loss={},bw={},pto={}ms",
            self.latency.as_micros(),
            self.jitter.as_micros(),
            self.loss_per_mille,
            self.bandwidth.unwrap_or(0),
            self.partition_timeout.map_or(0, |d| d.as_millis())
        )
    }
}

/// The network's own random source (SplitMix64), seeded from the run's
/// seed: it never draws from the scheduler's, so adding a network does not
/// change the schedule of the code that does not use it.
#[derive(Debug, Clone)]
pub(crate) struct SimRng(u64);

impl SimRng {
    pub(crate) fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 if `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// Why traffic between two hosts is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Block {
    /// A partition: held, and reset after the partition timeout.
    Partition,
    /// A clogged link or host: held until unclogged.
    Clog,
}

/// One host's state. Host numbers start at 1 (0 is "no host", the
/// kernel's untagged scope).
pub(crate) struct HostState {
    pub(crate) name: String,
    pub(crate) ip: IpAddr,
    /// False from a kill until the host runs again.
    pub(crate) up: bool,
    /// Bumped by each kill: sockets of an older epoch are dead.
    pub(crate) epoch: u32,
    pub(crate) kills: u32,
    /// The scopes its code runs in (cancelled by a kill).
    pub(crate) scopes: Vec<(u64, crate::CancelScope)>,
    /// When a killed host boots again (`Host::restart`).
    pub(crate) restart_at: Option<Instant>,
    pub(crate) next_port: u16,
}

/// The network of one run.
pub(crate) struct NetState {
    pub(crate) config: NetConfig,
    pub(crate) rng: RefCell<SimRng>,
    pub(crate) hosts: RefCell<Vec<HostState>>,
    pub(crate) listeners: RefCell<Ports<ListenerState>>,
    pub(crate) conns: RefCell<Vec<Weak<Conn>>>,
    pub(crate) udp: RefCell<Ports<udp::UdpState>>,
    partitions: RefCell<Vec<(BTreeSet<u32>, BTreeSet<u32>)>>,
    clogged_links: RefCell<BTreeSet<(u32, u32)>>,
    clogged_hosts: RefCell<BTreeSet<u32>>,
    /// When each directed link is free again (the bandwidth limit).
    link_free: RefCell<BTreeMap<(u32, u32), Instant>>,
    /// Tasks waiting for any fault change (connects across a partition,
    /// hosts waiting to restart), by a key from `next_scope_key`: each
    /// wait takes its entry out when it ends.
    pub(crate) watchers: RefCell<BTreeMap<u64, Waker>>,
    /// Bumped by every fault change.
    pub(crate) generation: Cell<u64>,
    scope_keys: Cell<u64>,
}

/// The run's network slot: empty unless the run was built with
/// [`Builder::net`](crate::sim::Builder::net).
static NET: RunVar<Rc<RefCell<Option<Rc<NetState>>>>> = RunVar::new("trioxide::sim network", Default::default);

/// The current run's simulated network, if it has one (and we are in a
/// run at all): what `TcpListener::bind` and `TcpStream::connect` ask.
#[inline]
pub(crate) fn active() -> Option<Rc<NetState>> {
    Core::try_current()?;
    NET.get().borrow().clone()
}

/// Gives the current run a network (`sim::Builder::net` does, before main).
pub(crate) fn install(config: NetConfig) {
    let seed = crate::kernel::rng::current_seed();
    let state = Rc::new(NetState {
        config,
        rng: RefCell::new(SimRng::new(seed ^ 0x6e65_7477_6f72_6b21)),
        hosts: RefCell::new(Vec::new()),
        listeners: RefCell::new(BTreeMap::new()),
        conns: RefCell::new(Vec::new()),
        udp: RefCell::new(BTreeMap::new()),
        partitions: RefCell::new(Vec::new()),
        clogged_links: RefCell::new(BTreeSet::new()),
        clogged_hosts: RefCell::new(BTreeSet::new()),
        link_free: RefCell::new(BTreeMap::new()),
        watchers: RefCell::new(BTreeMap::new()),
        generation: Cell::new(0),
        scope_keys: Cell::new(0),
    });
    *NET.get().borrow_mut() = Some(state);
}

/// The host the code being polled runs on (0: none).
pub(crate) fn current_host() -> u32 {
    crate::kernel::cancel::current_tag(Core::current())
}

fn no_host() -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        "trioxide sim: sockets of a simulated run must be opened on a host (Host::run or Host::enter)",
    )
}

impl NetState {
    pub(crate) fn next_scope_key(&self) -> u64 {
        self.scope_keys.set(self.scope_keys.get() + 1);
        self.scope_keys.get()
    }

    pub(crate) fn now(&self) -> Instant {
        Core::current().now()
    }

    /// The current host's number, checked to be up.
    pub(crate) fn this_host(&self) -> io::Result<u32> {
        let h = current_host();
        if h == 0 {
            return Err(no_host());
        }
        if !self.hosts.borrow()[h as usize - 1].up {
            return Err(io::Error::new(io::ErrorKind::NetworkDown, "trioxide sim: this host was killed"));
        }
        Ok(h)
    }

    pub(crate) fn host_ip(&self, h: u32) -> IpAddr {
        self.hosts.borrow()[h as usize - 1].ip
    }

    pub(crate) fn host_epoch(&self, h: u32) -> u32 {
        self.hosts.borrow()[h as usize - 1].epoch
    }

    pub(crate) fn host_up(&self, h: u32) -> bool {
        self.hosts.borrow()[h as usize - 1].up
    }

    /// The host with address `ip` (a loopback address is `from` itself).
    pub(crate) fn host_by_ip(&self, from: u32, ip: IpAddr) -> Option<u32> {
        if ip.is_loopback() || ip.is_unspecified() {
            return Some(from);
        }
        self.hosts.borrow().iter().position(|h| h.ip == ip).map(|i| i as u32 + 1)
    }

    /// The address of the host named `name`.
    pub(crate) fn resolve(&self, name: &str) -> Option<IpAddr> {
        self.hosts.borrow().iter().find(|h| h.name == name).map(|h| h.ip)
    }

    /// The address a socket bound to `addr` on the current host gets: an
    /// unspecified or loopback address means the host's own, port 0 an
    /// ephemeral one. Fails outside a host, or for another host's address.
    pub(crate) fn bind_addr(&self, addr: SocketAddr) -> io::Result<(u32, SocketAddr)> {
        let h = self.this_host()?;
        let ip = self.host_ip(h);
        if !(addr.ip().is_unspecified() || addr.ip().is_loopback() || addr.ip() == ip) {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("{} is not this host's address", addr.ip()),
            ));
        }
        let port = if addr.port() == 0 { self.ephemeral_port(h) } else { addr.port() };
        Ok((h, SocketAddr::new(ip, port)))
    }

    pub(crate) fn ephemeral_port(&self, h: u32) -> u16 {
        let mut hosts = self.hosts.borrow_mut();
        let st = &mut hosts[h as usize - 1];
        let p = st.next_port;
        st.next_port = if p == u16::MAX { 32768 } else { p + 1 };
        p
    }

    /// Why traffic from `a` to `b` is held now, if it is.
    pub(crate) fn blocked(&self, a: u32, b: u32) -> Option<Block> {
        if a == b {
            return None;
        }
        let parted = self
            .partitions
            .borrow()
            .iter()
            .any(|(x, y)| (x.contains(&a) && y.contains(&b)) || (x.contains(&b) && y.contains(&a)));
        if parted {
            return Some(Block::Partition);
        }
        let hosts = self.clogged_hosts.borrow();
        if hosts.contains(&a) || hosts.contains(&b) || self.clogged_links.borrow().contains(&(a.min(b), a.max(b))) {
            return Some(Block::Clog);
        }
        None
    }

    /// The one-way delay of one segment of `len` bytes from `a` to `b`
    /// sent now: bandwidth, latency, jitter, loss. Draws from the seed.
    pub(crate) fn delay(&self, a: u32, b: u32, len: usize, now: Instant) -> Instant {
        self.delay_with(a, b, len, now, true)
    }

    /// [`delay`](NetState::delay) without loss (a lost datagram is gone,
    /// not late).
    pub(crate) fn delay_no_loss(&self, a: u32, b: u32, len: usize, now: Instant) -> Instant {
        self.delay_with(a, b, len, now, false)
    }

    fn delay_with(&self, a: u32, b: u32, len: usize, now: Instant, loss: bool) -> Instant {
        let cfg = &self.config;
        let mut start = now;
        if let (Some(bw), true) = (cfg.bandwidth, a != b) {
            let mut free = self.link_free.borrow_mut();
            let slot = free.entry((a, b)).or_insert(now);
            start = (*slot).max(now);
            let busy = Duration::from_nanos((len as u128 * 1_000_000_000 / bw as u128).min(u64::MAX as u128) as u64);
            start = start + busy;
            *slot = start;
        }
        let mut rng = self.rng.borrow_mut();
        let mut d = cfg.latency;
        if !cfg.jitter.is_zero() {
            d += Duration::from_nanos(rng.below(cfg.jitter.as_nanos() as u64 + 1));
        }
        if loss && a != b && cfg.loss_per_mille > 0 {
            let mut rto = cfg.rto;
            while rng.below(1000) < cfg.loss_per_mille as u64 {
                d += rto;
                rto = (rto * 2).min(Duration::from_secs(60));
            }
        }
        start + d
    }

    /// A fault changed: re-times held traffic and wakes everyone who may
    /// care (receivers recompute their wake-up, connects look again).
    pub(crate) fn faults_changed(&self) {
        self.generation.set(self.generation.get() + 1);
        let now = self.now();
        let conns: Vec<Rc<Conn>> = {
            let mut list = self.conns.borrow_mut();
            list.retain(|w| w.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        for c in &conns {
            c.retime(self, now);
        }
        for c in &conns {
            c.wake_all();
        }
        self.wake_watchers();
    }

    pub(crate) fn wake_watchers(&self) {
        let ws = std::mem::take(&mut *self.watchers.borrow_mut());
        for w in ws.into_values() {
            w.wake();
        }
    }

    /// Kills host `h`: bumps its epoch, resets its connections, drops its
    /// listeners and cancels the scopes its code runs in.
    pub(crate) fn kill(&self, h: u32) {
        let scopes = {
            let mut hosts = self.hosts.borrow_mut();
            let st = &mut hosts[h as usize - 1];
            st.up = false;
            st.epoch += 1;
            st.kills += 1;
            std::mem::take(&mut st.scopes)
        };
        for (_, s) in &scopes {
            s.cancel();
        }
        let now = self.now();
        let conns: Vec<Rc<Conn>> = self.conns.borrow().iter().filter_map(Weak::upgrade).collect();
        for c in conns {
            c.host_killed(self, h, now);
        }
        let dead: Vec<Rc<ListenerState>> = {
            let mut ls = self.listeners.borrow_mut();
            let mut dead = Vec::new();
            ls.retain(|_, w| match w.upgrade() {
                Some(l) if l.host == h => {
                    dead.push(l);
                    false
                }
                Some(_) => true,
                None => false,
            });
            dead
        };
        for l in dead {
            l.kill();
        }
        self.udp.borrow_mut().retain(|_, w| w.upgrade().is_some_and(|u| u.host != h));
        self.wake_watchers();
    }
}

/// The handle of the current run's simulated network.
///
/// # Panics
/// Outside a run, or in a run built without
/// [`Builder::net`](crate::sim::Builder::net).
///
/// ```
/// use trioxide::sim;
/// let hosts = sim::Builder::new().net(sim::NetConfig::new()).run(async {
///     let net = sim::net();
///     net.add_host("a", "10.0.0.1".parse().unwrap()).unwrap();
///     net.hosts().len()
/// });
/// assert_eq!(hosts, 1);
/// ```
#[track_caller]
pub fn net() -> Net {
    match try_net() {
        Some(n) => n,
        None => panic!("trioxide::sim::net: this run has no simulated network (sim::Builder::net)"),
    }
}

/// The current run's simulated network, or `None` (no run, or a run
/// without one: sockets are then real).
///
/// ```
/// assert!(trioxide::run(async { trioxide::sim::try_net().is_none() }));
/// assert!(trioxide::sim::try_net().is_none()); // outside any run
/// ```
pub fn try_net() -> Option<Net> {
    active().map(|state| Net { state })
}

/// A handle to a simulated network (see [`net`]): makes hosts and sets
/// faults. Clones are the same network.
///
/// ```
/// use trioxide::sim;
/// sim::Builder::new().net(sim::NetConfig::new()).run(async {
///     let net: sim::Net = sim::net();
///     assert_eq!(net.config(), sim::NetConfig::new());
/// });
/// ```
#[derive(Clone)]
pub struct Net {
    pub(crate) state: Rc<NetState>,
}

impl fmt::Debug for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Net").field("config", &self.state.config).field("hosts", &self.hosts()).finish()
    }
}

impl Net {
    /// Adds a host named `name` (for [`open_tcp_stream`](crate::open_tcp_stream))
    /// with address `ip`. It is up at once; run code on it with
    /// [`Host::run`] or [`Host::enter`].
    ///
    /// # Errors
    /// `AddrInUse` if the name or the address is taken; `InvalidInput` for
    /// a loopback or unspecified address.
    ///
    /// ```
    /// use trioxide::sim;
    /// sim::Builder::new().net(sim::NetConfig::new()).run(async {
    ///     let net = sim::net();
    ///     let a = net.add_host("a", "10.0.0.1".parse().unwrap()).unwrap();
    ///     assert_eq!((a.name(), a.ip().to_string()), ("a".to_string(), "10.0.0.1".to_string()));
    ///     assert!(net.add_host("b", "10.0.0.1".parse().unwrap()).is_err()); // address taken
    /// });
    /// ```
    pub fn add_host(&self, name: &str, ip: IpAddr) -> io::Result<Host> {
        if ip.is_loopback() || ip.is_unspecified() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a simulated host needs a routable address"));
        }
        let mut hosts = self.state.hosts.borrow_mut();
        if hosts.iter().any(|h| h.name == name || h.ip == ip) {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, format!("host {name} or address {ip} exists")));
        }
        hosts.push(HostState {
            name: name.to_string(),
            ip,
            up: true,
            epoch: 0,
            kills: 0,
            scopes: Vec::new(),
            restart_at: None,
            next_port: 49152,
        });
        Ok(Host { net: self.clone(), id: hosts.len() as u32 })
    }

    /// The host named `name`.
    ///
    /// ```
    /// use trioxide::sim;
    /// sim::Builder::new().net(sim::NetConfig::new()).run(async {
    ///     let net = sim::net();
    ///     net.add_host("a", "10.0.0.1".parse().unwrap()).unwrap();
    ///     assert_eq!(net.host("a").map(|h| h.name()), Some("a".to_string()));
    ///     assert!(net.host("b").is_none());
    /// });
    /// ```
    pub fn host(&self, name: &str) -> Option<Host> {
        let i = self.state.hosts.borrow().iter().position(|h| h.name == name)?;
        Some(Host { net: self.clone(), id: i as u32 + 1 })
    }

    /// Every host, in the order they were added.
    ///
    /// ```
    /// use trioxide::sim;
    /// sim::Builder::new().net(sim::NetConfig::new()).run(async {
    ///     let net = sim::net();
    ///     net.add_host("a", "10.0.0.1".parse().unwrap()).unwrap();
    ///     net.add_host("b", "10.0.0.2".parse().unwrap()).unwrap();
    ///     let names: Vec<String> = net.hosts().iter().map(|h| h.name()).collect();
    ///     assert_eq!(names, ["a", "b"]);
    /// });
    /// ```
    pub fn hosts(&self) -> Vec<Host> {
        let n = self.state.hosts.borrow().len() as u32;
        (1..=n).map(|id| Host { net: self.clone(), id }).collect()
    }

    /// The network's parameters.
    ///
    /// ```
    /// use trioxide::sim;
    /// let cfg = sim::NetConfig::swarm(3);
    /// assert_eq!(sim::Builder::new().net(cfg).run(async { sim::net().config() }), cfg);
    /// ```
    pub fn config(&self) -> NetConfig {
        self.state.config
    }

    /// A number uniform in `0..n` from the network's random source (seeded
    /// by the run's seed): for a test choosing its faults.
    ///
    /// ```
    /// use trioxide::sim;
    /// let draw = || sim::Builder::new().seed(5).net(sim::NetConfig::new()).run(async { sim::net().random(1000) });
    /// assert_eq!(draw(), draw());
    /// assert!(draw() < 1000);
    /// ```
    pub fn random(&self, n: u64) -> u64 {
        self.state.rng.borrow_mut().below(n)
    }

    /// Partitions the hosts of `a` from those of `b`: traffic between them
    /// (in flight or sent later) is held until [`heal`](Net::heal); with a
    /// partition timeout, a connection whose traffic is held that long is
    /// reset with `TimedOut`.
    ///
    /// ```
    /// use trioxide::sim;
    /// sim::Builder::new().net(sim::NetConfig::new()).run(async {
    ///     let net = sim::net();
    ///     let a = net.add_host("a", "10.0.0.1".parse().unwrap()).unwrap();
    ///     let b = net.add_host("b", "10.0.0.2".parse().unwrap()).unwrap();
    ///     net.partition(&[&a], &[&b]);
    ///     assert!(net.is_partitioned(&a, &b));
    ///     net.heal();
    ///     assert!(!net.is_partitioned(&a, &b));
    /// });
    /// ```
    pub fn partition(&self, a: &[&Host], b: &[&Host]) {
        let set = |hs: &[&Host]| hs.iter().map(|h| h.id).collect::<BTreeSet<u32>>();
        self.state.partitions.borrow_mut().push((set(a), set(b)));
        self.state.faults_changed();
    }

    /// Removes every partition: held traffic is sent again (arriving one
    /// latency from now).
    ///
    /// ```
    /// use trioxide::sim;
    /// sim::Builder::new().net(sim::NetConfig::new()).run(async {
    ///     let net = sim::net();
    ///     net.heal(); // no partition: nothing to do
    /// });
    /// ```
    pub fn heal(&self) {
        self.state.partitions.borrow_mut().clear();
        self.state.faults_changed();
    }

    /// Whether a partition separates `a` and `b` now.
    ///
    /// ```
    /// use trioxide::sim;
    /// sim::Builder::new().net(sim::NetConfig::new()).run(async {
    ///     let net = sim::net();
    ///     let a = net.add_host("a", "10.0.0.1".parse().unwrap()).unwrap();
    ///     assert!(!net.is_partitioned(&a, &a));
    /// });
    /// ```
    pub fn is_partitioned(&self, a: &Host, b: &Host) -> bool {
        self.state.blocked(a.id, b.id) == Some(Block::Partition)
    }

    /// The TCP connections still open at one end at least: a connection is
    /// gone once both of its streams are dropped (or it was refused, or
    /// queued on a listener that was dropped). A test's check that every
    /// connection was closed on both sides.
    ///
    /// ```
    /// use trioxide::{sim, BoxError, TcpListener, TcpStream};
    /// sim::Builder::new().net(sim::NetConfig::new()).run(async {
    ///     let net = sim::net();
    ///     let a = net.add_host("a", "10.0.0.1".parse()?)?;
    ///     a.enter(async {
    ///         let listener = TcpListener::bind("0.0.0.0:80".parse()?)?;
    ///         let client = TcpStream::connect("10.0.0.1:80".parse()?).await?;
    ///         let (server, _) = listener.accept().await?;
    ///         assert_eq!(sim::net().open_connections(), 1);
    ///         drop(client);
    ///         assert_eq!(sim::net().open_connections(), 1); // the server's end is open
    ///         drop(server);
    ///         assert_eq!(sim::net().open_connections(), 0);
    ///         Ok::<_, BoxError>(())
    ///     }).await?;
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    pub fn open_connections(&self) -> usize {
        let mut conns = self.state.conns.borrow_mut();
        conns.retain(|w| w.strong_count() > 0);
        conns.len()
    }

    /// Clogs the link between `a` and `b` (both ways): traffic is held,
    /// with no timeout, until [`unclog_link`](Net::unclog_link).
    ///
    /// ```
    /// use trioxide::sim;
    /// sim::Builder::new().net(sim::NetConfig::new()).run(async {
    ///     let net = sim::net();
    ///     let a = net.add_host("a", "10.0.0.1".parse().unwrap()).unwrap();
    ///     let b = net.add_host("b", "10.0.0.2".parse().unwrap()).unwrap();
    ///     net.clog_link(&a, &b);
    ///     net.unclog_link(&b, &a); // either order
    /// });
    /// ```
    pub fn clog_link(&self, a: &Host, b: &Host) {
        self.state.clogged_links.borrow_mut().insert((a.id.min(b.id), a.id.max(b.id)));
        self.state.faults_changed();
    }

    /// Unclogs the link between `a` and `b`: held traffic is sent again.
    ///
    /// ```
    /// use trioxide::sim;
    /// sim::Builder::new().net(sim::NetConfig::new()).run(async {
    ///     let net = sim::net();
    ///     let a = net.add_host("a", "10.0.0.1".parse().unwrap()).unwrap();
    ///     let b = net.add_host("b", "10.0.0.2".parse().unwrap()).unwrap();
    ///     net.unclog_link(&a, &b); // not clogged: nothing to do
    /// });
    /// ```
    pub fn unclog_link(&self, a: &Host, b: &Host) {
        self.state.clogged_links.borrow_mut().remove(&(a.id.min(b.id), a.id.max(b.id)));
        self.state.faults_changed();
    }

    /// Clogs every link of `h`: its traffic to and from other hosts is
    /// held until [`unclog_host`](Net::unclog_host).
    ///
    /// ```
    /// use trioxide::sim;
    /// sim::Builder::new().net(sim::NetConfig::new()).run(async {
    ///     let net = sim::net();
    ///     let a = net.add_host("a", "10.0.0.1".parse().unwrap()).unwrap();
    ///     net.clog_host(&a);
    ///     net.unclog_host(&a);
    /// });
    /// ```
    pub fn clog_host(&self, h: &Host) {
        self.state.clogged_hosts.borrow_mut().insert(h.id);
        self.state.faults_changed();
    }

    /// Unclogs `h`: held traffic is sent again.
    ///
    /// ```
    /// use trioxide::sim;
    /// sim::Builder::new().net(sim::NetConfig::new()).run(async {
    ///     let net = sim::net();
    ///     let a = net.add_host("a", "10.0.0.1".parse().unwrap()).unwrap();
    ///     net.unclog_host(&a);
    /// });
    /// ```
    pub fn unclog_host(&self, h: &Host) {
        self.state.clogged_hosts.borrow_mut().remove(&h.id);
        self.state.faults_changed();
    }
}

/// The bound sockets of one kind (listeners, UDP sockets), by address. An
/// entry whose socket is gone (a dead `Weak`) counts as free.
pub(crate) type Ports<S> = BTreeMap<SocketAddr, Weak<S>>;

/// `AddrInUse` if a live socket holds `local` in `ports`.
pub(crate) fn check_port_free<S>(ports: &Ports<S>, local: SocketAddr) -> io::Result<()> {
    if ports.get(&local).is_some_and(|w| w.strong_count() > 0) {
        return Err(io::Error::new(io::ErrorKind::AddrInUse, format!("trioxide sim: {local} is in use")));
    }
    Ok(())
}

/// Frees `addr` in `ports` if `me` still holds it (a socket bound there
/// since, after `me`'s entry died, keeps its own).
pub(crate) fn release_port<S>(ports: &mut Ports<S>, addr: SocketAddr, me: &Rc<S>) {
    if ports.get(&addr).is_some_and(|w| std::ptr::eq(w.as_ptr(), Rc::as_ptr(me))) {
        ports.remove(&addr);
    }
}

/// Segments of one direction of a connection.
pub(crate) type Segments = VecDeque<tcp::Seg>;
