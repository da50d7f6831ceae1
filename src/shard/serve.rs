//! Sharded listening (issue 13, part 4): one TCP address served by every
//! shard of a [`run_sharded`](crate::run_sharded) run, each shard running
//! its connections in its own nursery with the ordinary [`Server`]
//! machinery (accept batching, handler-error policy, graceful drain).
//!
//! Two ways to spread connections over the shards ([`Balance`]):
//!
//! * [`Balance::ReusePort`]: one `SO_REUSEPORT` listener per shard, all
//!   bound to the same address. The kernel picks the listener of each new
//!   connection by a hash of its addresses and ports: no message between
//!   shards, no shared state on the accept path. But the hash is blind to
//!   load: connections land where they hash, so a few long-lived busy
//!   connections (an 80/20 skew) can pile onto one shard and leave a core
//!   idle while the other is saturated.
//! * [`Balance::LeastLoaded`]: one listener, accepted on shard 0, which
//!   hands each connection to the shard with the fewest live connections
//!   (one atomic counter per shard, read by the acceptor, decremented by the
//!   shard when the connection's handler ends). Shard 0 keeps its own
//!   connections; one handed to another shard costs one cross-thread
//!   wake-up of that shard (a push onto its run's remote queue, and a
//!   syscall only if that shard is parked; connections handed over before
//!   it wakes share one wake-up). It balances what is *open*, not bytes or
//!   CPU, but open long-lived connections are what a hash gets wrong.
//!
//! A graceful shutdown crosses shards: [`ShardedListener::shutdown`], from
//! any thread (a signal handler's task on shard 0, say), sets a flag in
//! every shard's slot and wakes each shard's watcher task, which starts
//! that shard's own [`GracefulShutdown`]. Each shard then closes its
//! listener, cuts idle waits short, and gives its connections the grace
//! period, as a single-threaded server does. A shard that starts serving
//! after the request drains at once.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::kernel::cancel::CancelScope;
use crate::kernel::error::{BoxError, Cancelled};
use crate::kernel::sys::syscall;
use crate::kernel::Core;
use crate::net::serve::{GracefulShutdown, LocalAddr, Server};
use crate::net::tcp::{TcpListener, TcpStream, LISTEN_BACKLOG};
use crate::nursery::{open_nursery, Started, TaskOutput};
use crate::stream::{Listener, Resource};

use super::Shard;

/// How a [`ShardedListener`] spreads connections over the shards.
///
/// `ReusePort` costs nothing between shards, but the kernel picks each
/// connection's shard by a hash of its addresses and ports, blind to load:
/// a few long-lived busy connections (an 80/20 skew) can pile onto one
/// shard and leave a core idle. `LeastLoaded` sends each connection to the
/// shard with the fewest open (one atomic counter per shard), at the price
/// of one cross-thread wake-up per connection handed to another shard
/// (connections handed over before that shard wakes share one).
///
/// ```
/// use trioxide::Balance;
/// assert_eq!("reuseport".parse::<Balance>(), Ok(Balance::ReusePort));
/// assert_eq!("least-loaded".parse::<Balance>(), Ok(Balance::LeastLoaded));
/// assert_eq!(Balance::LeastLoaded.to_string(), "least-loaded");
/// assert!("round-robin".parse::<Balance>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Balance {
    /// One `SO_REUSEPORT` listener per shard; the kernel picks the shard
    /// by hashing the connection's addresses (no cross-shard cost, blind
    /// to load).
    #[default]
    ReusePort,
    /// One listener on shard 0, which hands each connection to the shard
    /// with the fewest live connections (one cross-thread wake-up per
    /// connection handed over).
    LeastLoaded,
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Balance::ReusePort => "reuseport",
            Balance::LeastLoaded => "least-loaded",
        })
    }
}

impl FromStr for Balance {
    type Err = String;

    fn from_str(s: &str) -> Result<Balance, String> {
        match s {
            "reuseport" => Ok(Balance::ReusePort),
            "least-loaded" => Ok(Balance::LeastLoaded),
            _ => Err(format!("unknown balance mode `{s}` (reuseport or least-loaded)")),
        }
    }
}

/// A TCP address served by every shard of a sharded run: bind it before
/// [`run_sharded`](crate::run_sharded), then call
/// [`serve`](ShardedListener::serve) on each shard. A cheap clone (`Send`
/// and `Sync`: one value is shared by the shards).
///
/// ```
/// use std::io::Read;
/// use std::time::Duration;
/// use trioxide::{run_sharded, Balance, BoxError, GracefulShutdown, ShardedListener, TcpStream};
///
/// let listener = ShardedListener::bind("127.0.0.1:0".parse()?, 2, Balance::LeastLoaded)?;
/// let addr = listener.local_addr();
/// let l = listener.clone();
/// let client = std::thread::spawn(move || {
///     let (mut got, mut open) = (Vec::new(), Vec::new());
///     for _ in 0..2 {
///         let mut c = std::net::TcpStream::connect(addr).unwrap();
///         let mut b = [0u8; 1];
///         c.read_exact(&mut b).unwrap(); // the serving shard's index
///         got.push(b[0]);
///         open.push(c); // stays open: counts as load
///     }
///     drop(open);
///     l.shutdown(Duration::from_secs(5)); // every shard drains
///     got
/// });
/// run_sharded(2, |shard| {
///     let listener = listener.clone();
///     async move {
///         let shutdown = GracefulShutdown::new();
///         let handler = move |s: TcpStream| async move {
///             s.send_all(&[shard.index() as u8]).await?;
///             let mut buf = [0u8; 8];
///             while s.receive_some(&mut buf).await? > 0 {} // until the client closes
///             Ok::<_, std::io::Error>(())
///         };
///         listener.serve(shard, handler, &shutdown, trioxide::TASK_STATUS_IGNORED).await?;
///         Ok::<_, BoxError>(())
///     }
/// })?;
/// // The first connection went to shard 0 (all idle); while it is open the
/// // second goes to shard 1, the least loaded.
/// assert_eq!(client.join().unwrap(), [0, 1]);
/// # Ok::<_, BoxError>(())
/// ```
#[derive(Clone)]
pub struct ShardedListener {
    inner: Arc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    balance: Balance,
    slots: Vec<Slot>,
}

/// What the shards share about one shard.
struct Slot {
    /// Connections open on this shard (handed over and not yet ended).
    live: AtomicUsize,
    /// Connections this shard has served (handlers started).
    served: AtomicUsize,
    /// Set when this shard's listener is gone (its drain began): the
    /// acceptor hands it nothing more.
    closed: AtomicBool,
    /// Set by the shard's `serve`: one serve per shard.
    taken: AtomicBool,
    /// The listening socket this shard serves, taken by its `serve`:
    /// every shard's with `ReusePort`, shard 0's alone with `LeastLoaded`.
    listener: Mutex<Option<std::net::TcpListener>>,
    inbox: Mutex<Inbox>,
}

/// Messages to one shard: connections handed over, and the shutdown.
#[derive(Default)]
struct Inbox {
    queue: VecDeque<std::net::TcpStream>,
    /// The shard's hand-off accept loop, when it waits.
    accept_waker: Option<Waker>,
    /// The grace period, once a shutdown is requested.
    stop: Option<Duration>,
    /// The shard's shutdown watcher, when it waits.
    stop_waker: Option<Waker>,
    closed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code that can panic runs under these locks; do not turn
    // poisoning into a second panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl fmt::Debug for ShardedListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedListener")
            .field("addr", &self.inner.addr)
            .field("balance", &self.inner.balance)
            .field("live", &self.live_connections())
            .field("served", &self.connections_served())
            .finish()
    }
}

impl ShardedListener {
    /// Binds `addr` for `shards` shards (port 0: any free port, the same
    /// for every shard). With [`Balance::ReusePort`], one socket per shard,
    /// each with `SO_REUSEADDR` and `SO_REUSEPORT`: the first is bound, its
    /// port read, and the others bound to that port. With
    /// [`Balance::LeastLoaded`], one socket (`SO_REUSEADDR`). Each listens
    /// with the system's maximum backlog, from now on: connections queue
    /// until the shards accept them.
    ///
    /// ```
    /// use trioxide::{Balance, ShardedListener};
    /// let l = ShardedListener::bind("127.0.0.1:0".parse()?, 2, Balance::ReusePort)?;
    /// assert_ne!(l.local_addr().port(), 0);
    /// assert_eq!((l.shards(), l.balance()), (2, Balance::ReusePort));
    /// // Zero shards is an error of the caller's.
    /// let e = ShardedListener::bind("127.0.0.1:0".parse()?, 0, Balance::ReusePort).unwrap_err();
    /// assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    /// # Ok::<_, trioxide::BoxError>(())
    /// ```
    pub fn bind(addr: SocketAddr, shards: usize, balance: Balance) -> io::Result<ShardedListener> {
        if shards == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a ShardedListener needs at least one shard"));
        }
        let (sockets, bound) = match balance {
            Balance::ReusePort => {
                let first = bind_listener(addr, true)?;
                let bound = first.local_addr()?;
                let mut sockets = vec![first];
                for _ in 1..shards {
                    sockets.push(bind_listener(bound, true)?);
                }
                (sockets, bound)
            }
            Balance::LeastLoaded => {
                let l = bind_listener(addr, false)?;
                let bound = l.local_addr()?;
                (vec![l], bound)
            }
        };
        let mut sockets = sockets.into_iter();
        let slots = (0..shards)
            .map(|_| Slot {
                live: AtomicUsize::new(0),
                served: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                taken: AtomicBool::new(false),
                listener: Mutex::new(sockets.next()),
                inbox: Mutex::new(Inbox::default()),
            })
            .collect();
        Ok(ShardedListener { inner: Arc::new(Inner { addr: bound, balance, slots }) })
    }

    /// The address every shard serves (the port the system picked, for
    /// port 0).
    ///
    /// ```
    /// let l = trioxide::ShardedListener::bind("127.0.0.1:0".parse()?, 1, trioxide::Balance::LeastLoaded)?;
    /// assert!(l.local_addr().ip().is_loopback());
    /// # Ok::<_, trioxide::BoxError>(())
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The balance mode it was bound with.
    ///
    /// ```
    /// use trioxide::{Balance, ShardedListener};
    /// let l = ShardedListener::bind("127.0.0.1:0".parse()?, 2, Balance::LeastLoaded)?;
    /// assert_eq!(l.balance(), Balance::LeastLoaded);
    /// # Ok::<_, trioxide::BoxError>(())
    /// ```
    pub fn balance(&self) -> Balance {
        self.inner.balance
    }

    /// How many shards it was bound for.
    ///
    /// ```
    /// let l = trioxide::ShardedListener::bind("127.0.0.1:0".parse()?, 3, trioxide::Balance::ReusePort)?;
    /// assert_eq!(l.shards(), 3);
    /// # Ok::<_, trioxide::BoxError>(())
    /// ```
    pub fn shards(&self) -> usize {
        self.inner.slots.len()
    }

    /// Connections open on each shard now, in shard order (with
    /// `LeastLoaded`, counted from the hand-over; with `ReusePort`, from the
    /// handler's start), until their handler ends.
    ///
    /// ```
    /// let l = trioxide::ShardedListener::bind("127.0.0.1:0".parse()?, 2, trioxide::Balance::ReusePort)?;
    /// assert_eq!(l.live_connections(), [0, 0]);
    /// # Ok::<_, trioxide::BoxError>(())
    /// ```
    pub fn live_connections(&self) -> Vec<usize> {
        self.inner.slots.iter().map(|s| s.live.load(Ordering::Relaxed)).collect()
    }

    /// Connections each shard has served so far (handlers started), in
    /// shard order.
    ///
    /// ```
    /// let l = trioxide::ShardedListener::bind("127.0.0.1:0".parse()?, 2, trioxide::Balance::LeastLoaded)?;
    /// assert_eq!(l.connections_served(), [0, 0]);
    /// # Ok::<_, trioxide::BoxError>(())
    /// ```
    pub fn connections_served(&self) -> Vec<usize> {
        self.inner.slots.iter().map(|s| s.served.load(Ordering::Relaxed)).collect()
    }

    /// Asks every shard to shut down gracefully with `grace` (see
    /// [`GracefulShutdown::shutdown`]): each stops accepting, cuts idle
    /// waits short, and cancels the connections still open `grace` after
    /// the request reaches it. Callable from any thread, in a run or not;
    /// a later call does nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{run_sharded, Balance, BoxError, GracefulShutdown, ShardedListener, TcpStream};
    /// let listener = ShardedListener::bind("127.0.0.1:0".parse()?, 2, Balance::ReusePort)?;
    /// listener.shutdown(Duration::from_secs(1)); // before serving: each shard drains at once
    /// let reports = run_sharded(2, |shard| {
    ///     let listener = listener.clone();
    ///     async move {
    ///         let shutdown = GracefulShutdown::new();
    ///         let hello = |s: TcpStream| async move { s.send_all(b"hi").await };
    ///         listener.serve(shard, hello, &shutdown, trioxide::TASK_STATUS_IGNORED).await?;
    ///         Ok::<_, BoxError>(shutdown.report().map(|r| r.open_at_drain))
    ///     }
    /// })?;
    /// assert_eq!(reports, [Some(0), Some(0)]);
    /// # Ok::<_, BoxError>(())
    /// ```
    pub fn shutdown(&self, grace: Duration) {
        for slot in &self.inner.slots {
            let waker = {
                let mut inbox = lock(&slot.inbox);
                if inbox.stop.is_some() {
                    continue;
                }
                inbox.stop = Some(grace);
                inbox.stop_waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    /// Serves this shard's part of the address until the shutdown (see
    /// [`shutdown`](ShardedListener::shutdown)) has drained it, running
    /// `handler(stream)` for each connection as a task, in this shard's
    /// nursery, as [`Server::serve_listeners`] does with
    /// [`Server::graceful`]`(shutdown)`: handler errors are logged and the
    /// shard goes on, a panic stops it. `shutdown` is this shard's own
    /// handle: give clones to handlers that cut idle waits short
    /// ([`GracefulShutdown::idle_waiter`]), or call it to drain this shard
    /// alone. `task_status` gets the address once the shard accepts.
    ///
    /// Call it once per shard, on that shard (an error otherwise:
    /// `InvalidInput` for a shard of a run with another shard count,
    /// `AddrInUse` for a shard already served). Cancelling the scope it
    /// runs in stops this shard's serving and cancels its connections.
    ///
    /// ```
    /// use std::io::Read;
    /// use trioxide::{run_sharded, Balance, BoxError, GracefulShutdown, ShardedListener, TcpStream};
    /// let listener = ShardedListener::bind("127.0.0.1:0".parse()?, 2, Balance::ReusePort)?;
    /// let addr = listener.local_addr();
    /// let l = listener.clone();
    /// let client = std::thread::spawn(move || {
    ///     let mut got = Vec::new();
    ///     std::net::TcpStream::connect(addr).unwrap().read_to_end(&mut got).unwrap();
    ///     l.shutdown(std::time::Duration::ZERO);
    ///     got
    /// });
    /// let served = run_sharded(2, |shard| {
    ///     let listener = listener.clone();
    ///     async move {
    ///         let hi = |s: TcpStream| async move { s.send_all(b"hi").await };
    ///         listener.serve(shard, hi, &GracefulShutdown::new(), trioxide::TASK_STATUS_IGNORED).await?;
    ///         Ok::<_, BoxError>(())
    ///     }
    /// });
    /// assert!(served.is_ok());
    /// assert_eq!(client.join().unwrap(), b"hi");
    /// assert_eq!(listener.connections_served().iter().sum::<usize>(), 1);
    /// # Ok::<_, BoxError>(())
    /// ```
    pub fn serve<H, F>(
        &self,
        shard: Shard,
        handler: H,
        shutdown: &GracefulShutdown,
        task_status: impl Started<Vec<SocketAddr>> + 'static,
    ) -> impl Future<Output = Result<(), BoxError>> + 'static
    where
        H: Fn(TcpStream) -> F + 'static,
        F: Future + 'static,
        F::Output: TaskOutput,
    {
        let inner = self.inner.clone();
        let shutdown = shutdown.clone();
        async move { serve_shard(inner, shard, handler, shutdown, task_status).await }
    }
}

/// [`ShardedListener::serve`]'s body, owning what it uses.
async fn serve_shard<H, F>(
    inner: Arc<Inner>,
    shard: Shard,
    handler: H,
    shutdown: GracefulShutdown,
    task_status: impl Started<Vec<SocketAddr>>,
) -> Result<(), BoxError>
where
    H: Fn(TcpStream) -> F + 'static,
    F: Future + 'static,
    F::Output: TaskOutput,
{
    let index = shard.index();
    if shard.count() != inner.slots.len() {
        let msg = format!(
            "ShardedListener bound for {} shard(s) served by shard {index} of {}",
            inner.slots.len(),
            shard.count()
        );
        return Err(io::Error::new(io::ErrorKind::InvalidInput, msg).into());
    }
    if inner.slots[index].taken.swap(true, Ordering::AcqRel) {
        let msg = format!("shard {index} of this ShardedListener is already served");
        return Err(io::Error::new(io::ErrorKind::AddrInUse, msg).into());
    }
    let socket = lock(&inner.slots[index].listener).take();
    let counting = inner.clone();
    let counted = move |s: TcpStream| Counted { fut: handler(s), _live: LiveGuard::new(counting.clone(), index) };
    let server = Server::new(counted).graceful(&shutdown);
    let sd = shutdown;
    open_nursery(|n| async move {
        let watch = CancelScope::new();
        let (w, watched, sd) = (watch.clone(), inner.clone(), sd);
        n.start_soon_named("trioxide shard shutdown watch", async move {
            if let Some(grace) = w.run(StopWait { inner: &watched, index }).await? {
                sd.shutdown(grace);
            }
            Ok::<_, Cancelled>(())
        })?;
        let served = match (inner.balance, socket) {
            (Balance::ReusePort, Some(socket)) => {
                let listener = TcpListener::from_std(socket)?;
                server.serve_listeners(vec![listener], task_status).await
            }
            (_, acceptor) => {
                if let Some(socket) = &acceptor {
                    socket.set_nonblocking(true)?;
                }
                let handoff = Handoff { inner: inner.clone(), index, acceptor };
                server.serve_listeners(vec![handoff], task_status).await
            }
        };
        watch.cancel();
        served
    })
    .await?;
    Ok(())
}

/// Makes a listening socket with `SO_REUSEADDR` (and `SO_REUSEPORT` if
/// asked), bound to `addr`, listening with the system's maximum backlog.
/// Written with libc: std's and mio's listeners cannot set `SO_REUSEPORT`
/// before binding.
fn bind_listener(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let domain = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let ty = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let ty = libc::SOCK_STREAM;
    // SAFETY: `socket` takes no pointers; the fd it returns is ours.
    let fd = syscall!(socket(domain, ty, 0))?;
    // SAFETY: `fd` is a fresh socket that nothing else owns; `OwnedFd`
    // closes it on every error path below.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: `fcntl` on our fd; no memory is passed.
    syscall!(fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC))?;
    set_flag(&socket, libc::SO_REUSEADDR)?;
    if reuse_port {
        set_flag(&socket, libc::SO_REUSEPORT)?;
    }
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: an all-zero `sockaddr_in` is a valid value of it.
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) };
            #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd", target_os = "openbsd"))]
            {
                sin.sin_len = std::mem::size_of::<libc::sockaddr_in>() as u8;
            }
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            // SAFETY: `sin` is a valid `sockaddr_in` of `len` bytes that
            // outlives the call.
            syscall!(bind(fd, (&sin as *const libc::sockaddr_in).cast(), len))?;
        }
        SocketAddr::V6(a) => {
            // SAFETY: an all-zero `sockaddr_in6` is a valid value of it.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr = libc::in6_addr { s6_addr: a.ip().octets() };
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd", target_os = "openbsd"))]
            {
                sin6.sin6_len = std::mem::size_of::<libc::sockaddr_in6>() as u8;
            }
            let len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            // SAFETY: `sin6` is a valid `sockaddr_in6` of `len` bytes that
            // outlives the call.
            syscall!(bind(fd, (&sin6 as *const libc::sockaddr_in6).cast(), len))?;
        }
    }
    // SAFETY: `listen` on our bound socket; no memory is passed.
    syscall!(listen(fd, LISTEN_BACKLOG))?;
    Ok(std::net::TcpListener::from(socket))
}

/// Sets the boolean `SOL_SOCKET` option `opt` on `socket`.
fn set_flag(socket: &OwnedFd, opt: libc::c_int) -> io::Result<()> {
    let one: libc::c_int = 1;
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `one` is a `c_int` of `len` bytes that outlives the call.
    syscall!(setsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, opt, (&one as *const libc::c_int).cast(), len))?;
    Ok(())
}

/// One open connection of a shard, for [`ShardedListener::live_connections`]:
/// counted up when made (with `ReusePort`; the acceptor counts hand-overs),
/// down when the handler's task ends.
struct LiveGuard {
    inner: Arc<Inner>,
    index: usize,
}

impl LiveGuard {
    fn new(inner: Arc<Inner>, index: usize) -> LiveGuard {
        let slot = &inner.slots[index];
        slot.served.fetch_add(1, Ordering::Relaxed);
        if inner.balance == Balance::ReusePort {
            slot.live.fetch_add(1, Ordering::Relaxed);
        }
        LiveGuard { inner, index }
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.inner.slots[self.index].live.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A handler's future and its connection's [`LiveGuard`] (a struct, not
    /// an `async` block, so the handler's future is stored once).
    struct Counted<F> {
        #[pin]
        fut: F,
        _live: LiveGuard,
    }
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().fut.poll(cx)
    }
}

/// Waits for [`ShardedListener::shutdown`] on shard `index`: the grace
/// period, or `Cancelled` (a checkpoint's cancel check at every poll; the
/// kernel wakes the task when its scope is cancelled).
struct StopWait<'a> {
    inner: &'a Inner,
    index: usize,
}

impl Future for StopWait<'_> {
    type Output = Result<Duration, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let core = Core::current();
        if core.is_cancelled() {
            return Poll::Ready(Err(Cancelled));
        }
        let mut inbox = lock(&self.inner.slots[self.index].inbox);
        if let Some(grace) = inbox.stop {
            return Poll::Ready(Ok(grace));
        }
        match &inbox.stop_waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => inbox.stop_waker = Some(cx.waker().clone()),
        }
        drop(inbox);
        core.set_waiting_on("ShardedListener shutdown");
        Poll::Pending
    }
}

/// A shard's listener with [`Balance::LeastLoaded`]: on shard 0 it owns
/// the socket and accepts, keeping its share and handing the others'
/// over; on every other shard it takes what shard 0 handed over.
struct Handoff {
    inner: Arc<Inner>,
    index: usize,
    acceptor: Option<std::net::TcpListener>,
}

impl Handoff {
    /// The open shard with the fewest live connections (the lowest index
    /// among equals); shard 0, which accepts, is open while it does.
    fn least_loaded(&self) -> usize {
        let mut best = (usize::MAX, 0);
        for (i, slot) in self.inner.slots.iter().enumerate() {
            if i != 0 && slot.closed.load(Ordering::Acquire) {
                continue;
            }
            let live = slot.live.load(Ordering::Relaxed);
            if live < best.0 {
                best = (live, i);
            }
        }
        best.1
    }

    /// Shard 0's accept: waits for the socket, accepts what is queued, and
    /// hands each connection to the least-loaded shard; returns once it has
    /// some of its own, or after `max` accepts (the caller loops).
    async fn accept_and_hand_over(
        &self,
        socket: &std::net::TcpListener,
        out: &mut Vec<TcpStream>,
        max: usize,
    ) -> io::Result<usize> {
        let before = out.len();
        loop {
            // A checkpoint; ready at once if connections are queued.
            crate::kernel::io::raw_fd::wait_readable(socket.as_raw_fd()).await?;
            let mut accepted = 0;
            while accepted < max.max(1) {
                let stream = match socket.accept() {
                    Ok((s, _)) => s,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if out.len() > before || accepted > 0 => {
                        let _ = e; // comes again on the next call
                        break;
                    }
                    Err(e) => return Err(e),
                };
                accepted += 1;
                let target = self.least_loaded();
                self.inner.slots[target].live.fetch_add(1, Ordering::Relaxed);
                let mine = if target == 0 {
                    Some(stream)
                } else {
                    // A shard that closed meanwhile bounces it back: kept here.
                    self.hand_over(target, stream).err().inspect(|_| {
                        self.inner.slots[target].live.fetch_sub(1, Ordering::Relaxed);
                        self.inner.slots[0].live.fetch_add(1, Ordering::Relaxed);
                    })
                };
                if let Some(s) = mine {
                    match TcpStream::from_std(s) {
                        Ok(s) => out.push(s),
                        // The connection died before we set its options.
                        Err(_) => {
                            self.inner.slots[0].live.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            if out.len() > before {
                return Ok(out.len() - before);
            }
            if accepted >= max.max(1) {
                return Ok(0);
            }
        }
    }

    /// Queues `stream` for shard `target` and wakes its accept loop;
    /// gives it back if that shard's listener is gone.
    fn hand_over(&self, target: usize, stream: std::net::TcpStream) -> Result<(), std::net::TcpStream> {
        let waker = {
            let mut inbox = lock(&self.inner.slots[target].inbox);
            if inbox.closed {
                return Err(stream);
            }
            inbox.queue.push_back(stream);
            inbox.accept_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

/// Another shard's accept with `LeastLoaded`: takes up to `max`
/// connections handed over, waiting for one (a checkpoint's cancel check
/// at every poll).
struct TakeHandedOver<'a> {
    slot: &'a Slot,
    out: &'a mut Vec<std::net::TcpStream>,
    max: usize,
}

impl Future for TakeHandedOver<'_> {
    type Output = Result<(), Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let core = Core::current();
        if core.is_cancelled() {
            return Poll::Ready(Err(Cancelled));
        }
        let mut inbox = lock(&this.slot.inbox);
        if !inbox.queue.is_empty() {
            let n = inbox.queue.len().min(this.max.max(1));
            this.out.extend(inbox.queue.drain(..n));
            return Poll::Ready(Ok(()));
        }
        match &inbox.accept_waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => inbox.accept_waker = Some(cx.waker().clone()),
        }
        drop(inbox);
        core.set_waiting_on("ShardedListener hand-over");
        Poll::Pending
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        let slot = &self.inner.slots[self.index];
        slot.closed.store(true, Ordering::Release);
        let left = {
            let mut inbox = lock(&slot.inbox);
            inbox.closed = true;
            inbox.accept_waker = None;
            std::mem::take(&mut inbox.queue)
        };
        // Handed over but never served: closed, and no longer counted.
        slot.live.fetch_sub(left.len(), Ordering::Relaxed);
        drop(left);
        if let Some(socket) = self.acceptor.take() {
            // The fd may be registered by `wait_readable`: forget it before
            // it is closed.
            if Core::try_current().is_some() {
                crate::kernel::io::raw_fd::notify_closing(socket.as_raw_fd());
            }
        }
    }
}

impl Resource for Handoff {
    fn close(&self) {
        // Dropping closes it; the accept loop that owns it is cancelled
        // instead (`Server`'s drain cancels the accept loops).
    }
}

impl LocalAddr for Handoff {
    type Addr = SocketAddr;

    fn listening_on(&self) -> io::Result<SocketAddr> {
        Ok(self.inner.addr)
    }
}

impl Listener for Handoff {
    type Stream = TcpStream;

    async fn accept(&self) -> io::Result<TcpStream> {
        let mut one = Vec::with_capacity(1);
        while one.is_empty() {
            self.accept_many(&mut one, 1).await?;
        }
        Ok(one.remove(0))
    }

    async fn accept_many(&self, out: &mut Vec<TcpStream>, max: usize) -> io::Result<usize> {
        if let Some(socket) = &self.acceptor {
            return self.accept_and_hand_over(socket, out, max).await;
        }
        let slot = &self.inner.slots[self.index];
        let mut taken = Vec::new();
        loop {
            TakeHandedOver { slot, out: &mut taken, max }.await?;
            let before = out.len();
            for s in taken.drain(..) {
                match TcpStream::from_std(s) {
                    Ok(s) => out.push(s),
                    Err(_) => {
                        slot.live.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
            if out.len() > before {
                return Ok(out.len() - before);
            }
        }
    }

    fn peer_of(stream: &TcpStream) -> Option<SocketAddr> {
        stream.peer_addr().ok()
    }
}
