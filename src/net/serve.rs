//! Servers in a nursery: [`open_tcp_listeners`], [`serve_listeners`],
//! [`serve_tcp`], and [`Server`] for the choices they leave open: what a
//! handler's error does, which nursery connections live in, and a graceful
//! stop ([`GracefulShutdown`]).
//!
//! # Handler errors: logged, and the server goes on
//! Trio lets a handler's exception crash the whole server. Most Rust
//! servers log it and go on serving the others, and that is what a server
//! author needs in the first hour: one client that resets its connection
//! must not take down the healthy ones. So by default a handler's `Err` is
//! written to stderr with the peer's address and the server goes on;
//! [`Server::propagate_handler_errors`] gives Trio's behaviour, and
//! [`Server::on_handler_error`] takes your own logger. A *panic* in a
//! handler always propagates (it is a bug, not a client's doing): it
//! cancels the server and resumes in the caller, as in every nursery.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use slab::Slab;

use crate::kernel::cancel::CancelScope;
use crate::kernel::clock::Instant;
use crate::kernel::error::{is_cancelled_error, BoxError, Cancelled};
use crate::kernel::parking_lot::ParkingLot;
use crate::kernel::Core;
use crate::net::tcp::{TcpListener, ACCEPT_BATCH};
use crate::nursery::{open_nursery, Nursery, Started, TaskOutput};
use crate::stream::Listener;
use crate::time::{current_time, move_on_at, sleep};

/// How long an accept loop pauses after running out of file descriptors
/// (or kernel memory) before trying again: Trio's `SLEEP_TIME` in
/// `_highlevel_serve_listeners.py`. Handlers finishing meanwhile free fds.
///
/// ```
/// assert_eq!(trioxide::ACCEPT_RETRY_DELAY, std::time::Duration::from_millis(100));
/// ```
pub const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Binds TCP listeners on `port` (0: any free port) of `host`, or of every
/// IPv4 address if `host` is `None` (`0.0.0.0`; an IPv6 wildcard listener
/// is not opened yet). Each has `SO_REUSEADDR` and the system's maximum
/// backlog.
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr};
/// trioxide::run(async {
///     let listeners = trioxide::open_tcp_listeners(0, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)))?;
///     assert_eq!(listeners.len(), 1);
///     assert_ne!(listeners[0].local_addr()?.port(), 0);
///     Ok::<_, std::io::Error>(())
/// }).unwrap();
/// ```
pub fn open_tcp_listeners(port: u16, host: Option<IpAddr>) -> io::Result<Vec<TcpListener>> {
    let ip = host.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    Ok(vec![TcpListener::bind(SocketAddr::new(ip, port))?])
}

/// Serves TCP on `port` of `host` with the default settings:
/// `Server::new(handler).serve_tcp(port, host, task_status)`. See
/// [`Server::serve_tcp`] for what it guarantees (handler errors are logged
/// and the server goes on, a panic stops it, cancelling its scope stops it
/// and every connection) and [`Server`] for the other choices.
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr};
/// use trioxide::{run, open_nursery, serve_tcp, BoxError, TcpStream};
///
/// async fn echo(stream: TcpStream) -> Result<(), BoxError> {
///     let mut buf = vec![0u8; 16 * 1024];
///     loop {
///         let n = stream.receive_some(&mut buf).await?;
///         if n == 0 { return Ok(()); }
///         stream.send_all(&buf[..n]).await?;
///     }
/// }
///
/// run(open_nursery(|n| async move {
///     // `start` returns once the server accepts: the addresses it bound.
///     let addrs = n.start(|status| serve_tcp(echo, 0, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), status)).await?;
///     let client = TcpStream::connect(addrs[0]).await?;
///     client.send_all(b"ping").await?;
///     client.send_eof().await?; // the handler sees 0 and returns
///     let mut got = Vec::new();
///     while client.receive_into(&mut got).await? != 0 {}
///     assert_eq!(got, b"ping");
///     n.cancel_scope().cancel(); // stops the server and its connections
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
pub async fn serve_tcp<H, F>(
    handler: H,
    port: u16,
    host: Option<IpAddr>,
    task_status: impl Started<Vec<SocketAddr>>,
) -> Result<(), BoxError>
where
    H: Fn(crate::TcpStream) -> F + 'static,
    F: Future + 'static,
    F::Output: TaskOutput,
{
    Server::new(handler).serve_tcp(port, host, task_status).await
}

/// Serves listeners you opened yourself (TCP, Unix, or any [`Listener`])
/// with the default settings: `Server::new(handler).serve_listeners(listeners,
/// task_status)`. See [`Server::serve_listeners`] for what it guarantees and
/// [`Server`] for the other choices.
///
/// ```
/// use trioxide::{run, open_nursery, serve_listeners, BoxError, UnixListener, UnixStream};
///
/// run(open_nursery(|n| async move {
///     let path = std::env::temp_dir().join(format!("trioxide-doc-serve-{}.sock", std::process::id()));
///     let _ = std::fs::remove_file(&path);
///     let listener = UnixListener::bind(&path)?;
///     let hello = |s: UnixStream| async move { s.send_all(b"hello\n").await };
///     n.start(|status| serve_listeners(hello, vec![listener], status)).await?;
///     let client = UnixStream::connect(&path).await?;
///     let mut got = Vec::new();
///     while client.receive_into(&mut got).await? != 0 {} // the handler returned: closed
///     assert_eq!(got, b"hello\n");
///     n.cancel_scope().cancel();
///     std::fs::remove_file(&path)?;
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
pub async fn serve_listeners<L, H, F>(
    handler: H,
    listeners: Vec<L>,
    task_status: impl Started<Vec<L::Addr>>,
) -> Result<(), BoxError>
where
    L: Listener + LocalAddr + 'static,
    H: Fn(L::Stream) -> F + 'static,
    F: Future + 'static,
    F::Output: TaskOutput,
{
    Server::new(handler).serve_listeners(listeners, task_status).await
}

/// The address a listener reports through `task_status` when serving
/// starts: a `SocketAddr` for TCP, the socket's path for Unix listeners.
///
/// ```
/// use trioxide::{run, BoxError, LocalAddr, TcpListener};
/// run(async {
///     let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
///     assert_eq!(listener.listening_on()?, listener.local_addr()?);
///     Ok::<_, BoxError>(())
/// }).unwrap();
/// ```
pub trait LocalAddr {
    /// What the address is.
    type Addr: fmt::Debug + 'static;

    /// The address this listener accepts on.
    ///
    /// ```
    /// use trioxide::{run, BoxError, LocalAddr, UnixListener};
    /// run(async {
    ///     let path = std::env::temp_dir().join(format!("trioxide-doc-listening-{}.sock", std::process::id()));
    ///     let _ = std::fs::remove_file(&path);
    ///     let listener = UnixListener::bind(&path)?;
    ///     assert_eq!(listener.listening_on()?.as_pathname(), Some(path.as_path()));
    ///     std::fs::remove_file(&path)?;
    ///     Ok::<_, BoxError>(())
    /// }).unwrap();
    /// ```
    fn listening_on(&self) -> io::Result<Self::Addr>;
}

impl LocalAddr for TcpListener {
    type Addr = SocketAddr;

    fn listening_on(&self) -> io::Result<SocketAddr> {
        self.local_addr()
    }
}

impl LocalAddr for crate::UnixListener {
    type Addr = std::os::unix::net::SocketAddr;

    fn listening_on(&self) -> io::Result<Self::Addr> {
        self.local_addr()
    }
}

/// What a server does with a handler's `Err`.
enum OnError {
    /// Write it to stderr with the peer, and go on (the default).
    Log,
    /// Stop the server and report it (Trio's behaviour).
    Propagate,
    /// Call this, and go on.
    Call(Rc<dyn Fn(Option<SocketAddr>, BoxError)>),
}

/// A server's settings: the handler, what its errors do, where connections
/// live, and an optional graceful stop. [`serve_tcp`] and
/// [`serve_listeners`] are `Server::new(handler)` with the defaults.
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr};
/// use std::time::Duration;
/// use trioxide::{open_nursery, sleep, BoxError, Builder, GracefulShutdown, MockClock, Server, TcpStream};
///
/// async fn hello(stream: TcpStream) -> std::io::Result<()> {
///     stream.send_all(b"hello\n").await
/// }
///
/// // Virtual time, so that the minute below takes none.
/// let clock = MockClock::new();
/// clock.set_autojump_threshold(Some(Duration::ZERO));
/// Builder::new().clock(clock).run(open_nursery(|n| async move {
///     let shutdown = GracefulShutdown::new();
///     let server = Server::new(hello).graceful(&shutdown);
///     let addrs = n.start(|status| server.serve_tcp(0, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), status)).await?;
///     println!("serving on {}", addrs[0]);
///     sleep(Duration::from_secs(60)).await?;
///     // Stop accepting now; connections get 5 s to finish.
///     shutdown.shutdown(Duration::from_secs(5));
///     let report = shutdown.stopped().await?;
///     println!("{report}");
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
#[must_use = "a Server does nothing until you call .serve_tcp(..) or .serve_listeners(..) and await it"]
pub struct Server<H> {
    handler: H,
    on_error: OnError,
    handler_nursery: Option<Nursery>,
    shutdown: Option<GracefulShutdown>,
}

impl<H> fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on_error = match self.on_error {
            OnError::Log => "log",
            OnError::Propagate => "propagate",
            OnError::Call(_) => "callback",
        };
        f.debug_struct("Server")
            .field("on_handler_error", &on_error)
            .field("handler_nursery", &self.handler_nursery.is_some())
            .field("graceful", &self.shutdown.is_some())
            .finish()
    }
}

impl<H> Server<H> {
    /// A server that runs `handler(stream)` for every connection, logging
    /// handler errors, with connections in a nursery of its own.
    ///
    /// ```
    /// use trioxide::{Server, TcpStream};
    /// // Any `Fn(stream) -> future` whose output is a `Result` (or `()`).
    /// let server = Server::new(|s: TcpStream| async move { s.send_all(b"hi").await });
    /// assert!(format!("{server:?}").contains(r#"on_handler_error: "log""#));
    /// ```
    pub fn new(handler: H) -> Server<H> {
        Server { handler, on_error: OnError::Log, handler_nursery: None, shutdown: None }
    }

    /// Trio's policy: a handler's `Err` cancels the server (and the other
    /// connections) and comes out of the serve call.
    ///
    /// ```
    /// # use trioxide::{Server, TcpStream};
    /// let server = Server::new(|s: TcpStream| async move { s.send_all(b"hi").await })
    ///     .propagate_handler_errors();
    /// # drop(server);
    /// ```
    pub fn propagate_handler_errors(mut self) -> Server<H> {
        self.on_error = OnError::Propagate;
        self
    }

    /// Calls `log(peer, error)` for each handler `Err`, instead of writing
    /// it to stderr; the server goes on.
    ///
    /// ```
    /// # use trioxide::{Server, TcpStream};
    /// let server = Server::new(|s: TcpStream| async move { s.send_all(b"hi").await })
    ///     .on_handler_error(|peer, e| eprintln!("{peer:?}: {e}"));
    /// # drop(server);
    /// ```
    pub fn on_handler_error(mut self, log: impl Fn(Option<SocketAddr>, BoxError) + 'static) -> Server<H> {
        self.on_error = OnError::Call(Rc::new(log));
        self
    }

    /// Runs connections as children of `nursery` (Trio's
    /// `handler_nursery`) instead of a nursery of the server's own, so they
    /// can outlive the accept loops, or share a scope with other work.
    ///
    /// ```
    /// # use trioxide::{open_nursery, BoxError, Server, TcpStream};
    /// # trioxide::run(open_nursery(|n| async move {
    /// let server = Server::new(|s: TcpStream| async move { s.send_all(b"hi").await })
    ///     .handler_nursery(&n);
    /// # drop(server);
    /// # Ok::<_, BoxError>(()) })).unwrap();
    /// ```
    pub fn handler_nursery(mut self, nursery: &Nursery) -> Server<H> {
        self.handler_nursery = Some(nursery.clone());
        self
    }

    /// Lets `shutdown` stop this server gracefully (see
    /// [`GracefulShutdown`]).
    ///
    /// ```
    /// # use trioxide::{GracefulShutdown, Server, TcpStream};
    /// let shutdown = GracefulShutdown::new();
    /// let server = Server::new(|s: TcpStream| async move { s.send_all(b"hi").await }).graceful(&shutdown);
    /// # drop(server);
    /// ```
    pub fn graceful(mut self, shutdown: &GracefulShutdown) -> Server<H> {
        self.shutdown = Some(shutdown.clone());
        self
    }

    /// Binds TCP listeners as [`open_tcp_listeners`] does and serves them
    /// as [`serve_listeners`](Server::serve_listeners) does, reporting
    /// their addresses through `task_status` once they accept: use it with
    /// [`Nursery::start`], or pass
    /// [`TASK_STATUS_IGNORED`](crate::TASK_STATUS_IGNORED) and await it
    /// directly. A bind error comes out at once.
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr};
    /// use std::rc::Rc;
    /// use std::cell::Cell;
    /// use trioxide::{run, open_nursery, BoxError, Server, TcpStream};
    ///
    /// run(open_nursery(|n| async move {
    ///     let errors = Rc::new(Cell::new(0));
    ///     let seen = errors.clone();
    ///     let server = Server::new(|s: TcpStream| async move {
    ///         s.send_all(b"hi").await?;
    ///         Err::<(), BoxError>("this handler always fails".into())
    ///     })
    ///     .on_handler_error(move |_peer, _e| seen.set(seen.get() + 1));
    ///     let localhost = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    ///     let addrs = n.start(|status| server.serve_tcp(0, localhost, status)).await?;
    ///     for _ in 0..2 {
    ///         let client = TcpStream::connect(addrs[0]).await?;
    ///         let mut got = Vec::new();
    ///         while client.receive_into(&mut got).await? != 0 {}
    ///         assert_eq!(got, b"hi"); // the server goes on after an error
    ///     }
    ///     trioxide::testing::wait_all_tasks_blocked().await?;
    ///     assert_eq!(errors.get(), 2);
    ///     n.cancel_scope().cancel();
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub async fn serve_tcp<F>(
        self,
        port: u16,
        host: Option<IpAddr>,
        task_status: impl Started<Vec<SocketAddr>>,
    ) -> Result<(), BoxError>
    where
        H: Fn(crate::TcpStream) -> F + 'static,
        F: Future + 'static,
        F::Output: TaskOutput,
    {
        let listeners = open_tcp_listeners(port, host)?;
        self.serve_listeners(listeners, task_status).await
    }

    /// Serves `listeners` until cancelled, or until a graceful shutdown has
    /// finished: accepts on every listener and runs `handler(stream)` for
    /// each connection as a task, reporting the listeners' addresses
    /// through `task_status` once they accept.
    ///
    /// What it guarantees:
    ///
    /// * **Handler errors**: by default a handler's `Err` is written to
    ///   stderr with the peer's address and the server goes on;
    ///   [`propagate_handler_errors`](Server::propagate_handler_errors)
    ///   makes it stop the server (Trio's behaviour) and come out of this
    ///   call, [`on_handler_error`](Server::on_handler_error) hands it to
    ///   you. A handler's `Cancelled` is never an error.
    /// * **Panics**: a handler's panic cancels the server and every
    ///   connection, and resumes in the caller once they have finished.
    /// * **Cancellation**: cancelling the scope this runs in stops the
    ///   accept loops and cancels every connection (they are in the
    ///   server's nursery, or in [`handler_nursery`](Server::handler_nursery)'s),
    ///   and the call returns `Err(Cancelled)` for the scope to catch.
    /// * **Accept errors**: running out of file descriptors (or kernel
    ///   memory) is logged, and the loop sleeps [`ACCEPT_RETRY_DELAY`] and
    ///   goes on; any other accept error ends the server with that error,
    ///   as in Trio.
    /// * **Graceful stop**: with [`graceful`](Server::graceful), a
    ///   [`GracefulShutdown::shutdown`] closes the listeners at once and the
    ///   call returns once the connections have finished or been cancelled
    ///   at the grace deadline.
    ///
    /// ```
    /// use trioxide::{run, open_nursery, BoxError, Server, UnixStream};
    ///
    /// run(open_nursery(|n| async move {
    ///     let path = std::env::temp_dir().join(format!("trioxide-doc-serve2-{}.sock", std::process::id()));
    ///     let _ = std::fs::remove_file(&path);
    ///     let listener = trioxide::UnixListener::bind(&path)?;
    ///     let server = Server::new(|s: UnixStream| async move { s.send_all(b"hello").await });
    ///     let addrs = n.start(|status| server.serve_listeners(vec![listener], status)).await?;
    ///     assert_eq!(addrs[0].as_pathname(), Some(path.as_path()));
    ///     let client = UnixStream::connect(&path).await?;
    ///     let mut got = Vec::new();
    ///     while client.receive_into(&mut got).await? != 0 {}
    ///     assert_eq!(got, b"hello");
    ///     n.cancel_scope().cancel(); // stops the server
    ///     std::fs::remove_file(&path)?;
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub async fn serve_listeners<L, F>(
        self,
        listeners: Vec<L>,
        task_status: impl Started<Vec<L::Addr>>,
    ) -> Result<(), BoxError>
    where
        L: Listener + LocalAddr + 'static,
        H: Fn(L::Stream) -> F + 'static,
        F: Future + 'static,
        F::Output: TaskOutput,
    {
        let addrs = listeners.iter().map(|l| l.listening_on()).collect::<io::Result<Vec<_>>>()?;
        let Server { handler, on_error, handler_nursery, shutdown } = self;
        let conns = Rc::new(Conns { handler, on_error, shutdown: shutdown.clone() });
        open_nursery(|n| async move {
            let target = handler_nursery.unwrap_or_else(|| n.clone());
            // One scope per accept loop (a scope is entered once): the
            // drain cancels them, which drops and so closes the listeners.
            let mut accepting = Vec::new();
            for listener in listeners {
                let scope = CancelScope::new();
                accepting.push(scope.clone());
                let accept = accept_loop(listener, conns.clone(), target.clone());
                n.start_soon_named("trioxide accept loop", async move { scope.run(accept).await.map(drop) })?;
            }
            task_status.started(addrs);
            if let Some(shutdown) = shutdown {
                let (asked, deadline) = shutdown.requested().await?;
                for scope in &accepting {
                    scope.cancel();
                }
                shutdown.drain(asked, deadline).await?;
            }
            Ok::<_, BoxError>(())
        })
        .await?;
        Ok(())
    }
}

/// What every connection task shares.
struct Conns<H> {
    handler: H,
    on_error: OnError,
    shutdown: Option<GracefulShutdown>,
}

async fn accept_loop<L, H, F>(listener: L, conns: Rc<Conns<H>>, target: Nursery) -> Result<(), BoxError>
where
    L: Listener + LocalAddr + 'static,
    H: Fn(L::Stream) -> F + 'static,
    F: Future + 'static,
    F::Output: TaskOutput,
{
    let mut batch = Vec::with_capacity(ACCEPT_BATCH);
    loop {
        match listener.accept_many(&mut batch, ACCEPT_BATCH).await {
            Ok(_) => {
                for stream in batch.drain(..) {
                    let peer = L::peer_of(&stream);
                    let name = "trioxide connection handler";
                    match &conns.shutdown {
                        None => {
                            let fut = (conns.handler)(stream);
                            target.start_soon_named(name, Connection { fut, peer, conns: conns.clone() })?;
                        }
                        Some(sd) => {
                            target
                                .start_soon_named(name, graceful_connection(stream, peer, conns.clone(), sd.clone()))?;
                        }
                    }
                }
            }
            Err(e) if is_out_of_resources(&e) => {
                let on = listener.listening_on().map(|a| format!("{a:?}")).unwrap_or_else(|_| "a listener".into());
                eprintln!("trioxide: accept on {on} failed: {e}; retrying in {} ms", ACCEPT_RETRY_DELAY.as_millis());
                sleep(ACCEPT_RETRY_DELAY).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

pin_project_lite::pin_project! {
    /// `async { Ok::<_, Cancelled>(fut.await.into_task_result()) }` written
    /// by hand: an `async` block keeps the future it captures and the one it
    /// awaits in two slots, so it would store the handler's future twice.
    struct ScopeBody<F> {
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for ScopeBody<F>
where
    F::Output: TaskOutput,
{
    type Output = Result<Result<(), BoxError>, Cancelled>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        self.project().fut.poll(cx).map(|out| Ok(out.into_task_result()))
    }
}

pin_project_lite::pin_project! {
    /// One connection's task when the server has no graceful shutdown: the
    /// handler's future and what the error policy needs, nothing else.
    /// Written by hand, not as an `async fn`, so the handler's future is
    /// stored once (an `async fn` taking it as an argument keeps the
    /// argument's slot beside the future it awaits: `echo_server`'s
    /// 320-byte handler made a 1104-byte task; this one is 360 bytes).
    struct Connection<F, H> {
        #[pin]
        fut: F,
        peer: Option<SocketAddr>,
        conns: Rc<Conns<H>>,
    }
}

impl<F: Future, H> Future for Connection<F, H>
where
    F::Output: TaskOutput,
{
    type Output = Result<(), BoxError>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let this = self.project();
        this.fut.poll(cx).map(|out| this.conns.on_result(out.into_task_result(), *this.peer))
    }
}

/// One connection's task in a server with a graceful shutdown: the
/// handler runs in the member's cancel scope, which the grace deadline
/// cancels. The handler's future is made here, from the stream, so that it
/// is stored once (see [`Connection`]).
async fn graceful_connection<S, H, F>(
    stream: S,
    peer: Option<SocketAddr>,
    conns: Rc<Conns<H>>,
    sd: GracefulShutdown,
) -> Result<(), BoxError>
where
    H: Fn(S) -> F,
    F: Future + 'static,
    F::Output: TaskOutput,
{
    let member = sd.join();
    let out = member.scope.run(ScopeBody { fut: (conns.handler)(stream) }).await;
    // A connection that noticed the grace deadline's cancellation counts as
    // cancelled, whatever the handler then made of it (many swallow the
    // error and return `()`). One that finished its work without reaching a
    // checkpoint after the cancel counts as finished.
    if member.scope.cancel_called() && member.scope.cancel_seen() {
        sd.inner.cancelled.set(sd.inner.cancelled.get() + 1);
    }
    let result = match out {
        // Cancelled at the grace deadline: the shutdown's doing, not an
        // error of the handler or of the server.
        Ok(Some(Err(e))) if member.scope.cancel_called() && is_cancelled_error(&*e) => Ok(()),
        Ok(Some(r)) => r,
        Ok(None) | Err(_) => Ok(()),
    };
    conns.on_result(result, peer)
}

impl<H> Conns<H> {
    /// Applies the handler-error policy to a connection's result.
    fn on_result(&self, result: Result<(), BoxError>, peer: Option<SocketAddr>) -> Result<(), BoxError> {
        let Err(e) = result else { return Ok(()) };
        match &self.on_error {
            OnError::Propagate => Err(e),
            // A cancellation of the server itself is not the handler's
            // failure: it propagates, so the scope that cancelled catches
            // it.
            _ if is_cancelled_error(&*e) => Err(e),
            OnError::Log => {
                match peer {
                    Some(p) => eprintln!("trioxide: connection from {p}: handler failed: {e}"),
                    None => eprintln!("trioxide: connection handler failed: {e}"),
                }
                Ok(())
            }
            OnError::Call(log) => {
                log(peer, e);
                Ok(())
            }
        }
    }
}

/// Stops a server gracefully: [`shutdown(grace)`](GracefulShutdown::shutdown)
/// makes every server using it (see [`Server::graceful`])
///
/// 1. stop accepting at once (the listeners are closed: new clients are
///    refused);
/// 2. cut short the waits its handlers marked with
///    [`abandon_on_drain`](GracefulShutdown::abandon_on_drain) (an idle
///    keep-alive connection waiting for its next request, say);
/// 3. let the other connections run until the grace deadline, then cancel
///    those still open (work that completes at the deadline instant itself
///    is not cut off);
/// 4. return from the serve call, and record a [`ShutdownReport`].
///
/// A cheap clone; give one to each handler that wants to know
/// ([`is_draining`](GracefulShutdown::is_draining)).
///
/// ```no_run
/// use std::net::{IpAddr, Ipv4Addr};
/// use std::time::Duration;
/// use trioxide::{run, open_nursery, BoxError, GracefulShutdown, Server, TcpStream};
/// use trioxide::signal::open_signal_receiver;
///
/// run(open_nursery(|n| async move {
///     let signals = open_signal_receiver(&[libc::SIGINT, libc::SIGTERM])?;
///     let shutdown = GracefulShutdown::new();
///     let server = Server::new(|s: TcpStream| async move { s.send_all(b"hi").await }).graceful(&shutdown);
///     n.start(|status| server.serve_tcp(8000, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), status)).await?;
///     signals.receive().await?; // Ctrl-C
///     shutdown.shutdown(Duration::from_secs(5));
///     println!("{}", shutdown.stopped().await?);
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct GracefulShutdown {
    inner: Rc<ShutdownInner>,
}

impl fmt::Debug for GracefulShutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulShutdown")
            .field("draining", &self.is_draining())
            .field("connections", &self.inner.conns.borrow().len())
            .field("report", &self.inner.report.get())
            .finish()
    }
}

#[derive(Default)]
struct ShutdownInner {
    /// Set by `shutdown`: when it was asked for and the grace deadline.
    requested: Cell<Option<(Instant, Instant)>>,
    /// The cancel scope of every open connection.
    conns: RefCell<Slab<CancelScope>>,
    /// One entry per [`IdleWaiter`] and per pending one-off
    /// [`GracefulShutdown::abandon_on_drain`]: the waiting ones are woken
    /// when the drain begins, so that each sees it and gives up.
    idle_waits: RefCell<Slab<IdleEntry>>,
    /// Waits cut short by the drain, so far.
    abandoned: Cell<usize>,
    /// Connections that ended because the grace deadline cancelled them.
    cancelled: Cell<usize>,
    /// Connections open when `shutdown` was called (counted then: cut-short
    /// connections may end before the server's drain code runs).
    open_at_drain: Cell<usize>,
    /// Woken when `shutdown` is called, when the last connection ends, and
    /// when the report is ready.
    changed: ParkingLot,
    report: Cell<Option<ShutdownReport>>,
}

/// What a graceful shutdown did, from [`GracefulShutdown::stopped`] or
/// [`GracefulShutdown::report`]; its `Display` is a one-line summary for
/// logs.
///
/// ```
/// use std::time::Duration;
/// use trioxide::ShutdownReport;
/// let r = ShutdownReport {
///     open_at_drain: 3, abandoned: 1, finished: 2, cancelled: 1,
///     grace: Duration::from_secs(5), took: Duration::from_secs(5),
/// };
/// assert_eq!(r.finished + r.cancelled, r.open_at_drain);
/// assert_eq!(
///     r.to_string(),
///     "shut down in 5.000 s: listeners closed; of 3 open connection(s), 2 ended by the 5.000 s grace \
///      deadline (1 cut short at once), 1 cancelled at it"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections open when the drain began.
    pub open_at_drain: usize,
    /// Of those, the ones whose marked wait was cut short at once (see
    /// [`GracefulShutdown::abandon_on_drain`]).
    pub abandoned: usize,
    /// Of those, the ones that ended by the grace deadline (the abandoned
    /// ones included).
    pub finished: usize,
    /// Of those, the ones still open at the grace deadline, cancelled.
    pub cancelled: usize,
    /// The grace period asked for.
    pub grace: Duration,
    /// From the request until the last connection was gone.
    pub took: Duration,
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shut down in {:.3} s: listeners closed; of {} open connection(s), {} ended by the {:.3} s grace \
             deadline ({} cut short at once), {} cancelled at it",
            self.took.as_secs_f64(),
            self.open_at_drain,
            self.finished,
            self.grace.as_secs_f64(),
            self.abandoned,
            self.cancelled
        )
    }
}

impl GracefulShutdown {
    /// A shutdown not requested yet.
    ///
    /// ```
    /// let shutdown = trioxide::GracefulShutdown::new();
    /// assert!(!shutdown.is_draining());
    /// ```
    pub fn new() -> GracefulShutdown {
        GracefulShutdown::default()
    }

    /// Starts the drain: servers stop accepting at once, marked waits are
    /// cut short, and connections still open `grace` from now are
    /// cancelled. A later call does nothing (the first grace deadline
    /// stands).
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr};
    /// use std::time::Duration;
    /// use trioxide::{open_nursery, sleep, BoxError, GracefulShutdown, Server, TcpStream};
    /// use trioxide::{Builder, MockClock};
    ///
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO)); // virtual time
    /// Builder::new().clock(clock).run(open_nursery(|n| async move {
    ///     let shutdown = GracefulShutdown::new();
    ///     // Every connection takes 10 s, longer than the grace period.
    ///     let slow = |_s: TcpStream| async move { sleep(Duration::from_secs(10)).await };
    ///     let server = Server::new(slow).graceful(&shutdown);
    ///     let localhost = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    ///     let addrs = n.start(|status| server.serve_tcp(0, localhost, status)).await?;
    ///     let _client = TcpStream::connect(addrs[0]).await?;
    ///     trioxide::testing::wait_all_tasks_blocked().await?; // the handler runs
    ///     shutdown.shutdown(Duration::from_secs(2));
    ///     let report = shutdown.stopped().await?;
    ///     assert_eq!((report.open_at_drain, report.cancelled), (1, 1)); // cut off at 2 s
    ///     assert_eq!(report.took, Duration::from_secs(2));
    ///     assert!(TcpStream::connect(addrs[0]).await.is_err()); // no longer accepting
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    ///
    /// # Panics
    /// Outside [`run`](crate::run): "GracefulShutdown::shutdown must be
    /// called from inside trioxide::run", at the caller's line.
    #[track_caller]
    pub fn shutdown(&self, grace: Duration) {
        if self.inner.requested.get().is_some() {
            return;
        }
        let now = Core::current_for("GracefulShutdown::shutdown").now();
        self.inner.requested.set(Some((now, now + grace)));
        self.inner.open_at_drain.set(self.inner.conns.borrow().len());
        // Each pending wait removes its own entry when it gives up.
        let waits: Vec<Waker> = self
            .inner
            .idle_waits
            .borrow()
            .iter()
            .filter(|(_, e)| e.waiting)
            .filter_map(|(_, e)| e.waker.clone())
            .collect();
        for w in waits {
            w.wake();
        }
        self.inner.changed.unpark_all();
    }

    /// Whether [`shutdown`](GracefulShutdown::shutdown) has been called.
    ///
    /// ```
    /// # trioxide::run(async {
    /// let shutdown = trioxide::GracefulShutdown::new();
    /// shutdown.shutdown(std::time::Duration::from_secs(1));
    /// assert!(shutdown.is_draining());
    /// # });
    /// ```
    pub fn is_draining(&self) -> bool {
        self.inner.requested.get().is_some()
    }

    /// Runs `fut`, but gives up on it (returning `Ok(None)`) as soon as the
    /// drain begins, or at once if it has begun: for waits that may be cut
    /// short without losing anything, such as an idle keep-alive
    /// connection waiting for its next request. Otherwise its output is
    /// `fut`'s, in `Some`.
    ///
    /// Giving up means *dropping* `fut` where it waits, not cancelling it:
    /// it gets no checkpoint to clean up in. That is what makes this cheap
    /// enough to wrap every keep-alive wait (no cancel scope: a slab entry
    /// holding the task's waker while `fut` is pending), and it is safe
    /// for trioxide's receives, which consume nothing until they complete
    /// (rule I3). Do not wrap a send: a partial send would be lost.
    ///
    /// ```no_run
    /// # use trioxide::{GracefulShutdown, TcpStream};
    /// # #[allow(dead_code)] async fn f(shutdown: GracefulShutdown, stream: TcpStream) -> std::io::Result<()> {
    /// let mut buf = Vec::with_capacity(4096);
    /// match shutdown.abandon_on_drain(stream.receive_into(&mut buf)).await? {
    ///     None => return Ok(()), // shutting down: close this idle connection
    ///     Some(n) => println!("{n} bytes"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn abandon_on_drain<F, T, E>(&self, fut: F) -> AbandonOnDrain<'_, F>
    where
        F: Future<Output = Result<T, E>>,
    {
        AbandonOnDrain { fut, inner: &self.inner, key: None, owned: true }
    }

    /// A reusable registration for [`abandon_on_drain`]: a connection that
    /// waits for many requests takes one when it starts, and each wait
    /// then costs a flag and a waker comparison instead of a registration
    /// (`http_server` pays 150 fewer instructions per request). Dropping
    /// it unregisters.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{open_nursery, run, sleep_forever, wait_all_tasks_blocked, BoxError, GracefulShutdown};
    /// run(open_nursery(|n| async move {
    ///     let shutdown = GracefulShutdown::new();
    ///     let sd = shutdown.clone();
    ///     n.start_soon(async move {
    ///         let idle = sd.idle_waiter();
    ///         // Stands for "wait for the next request" on a quiet connection.
    ///         let next = idle.abandon_on_drain(async { sleep_forever().await.map(|_| ()) }).await?;
    ///         assert_eq!(next, None); // given up on when the drain began
    ///         Ok::<_, BoxError>(())
    ///     })?;
    ///     wait_all_tasks_blocked().await?;
    ///     shutdown.shutdown(Duration::from_secs(1));
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    ///
    /// [`abandon_on_drain`]: GracefulShutdown::abandon_on_drain
    pub fn idle_waiter(&self) -> IdleWaiter {
        let key = self.inner.idle_waits.borrow_mut().insert(IdleEntry { waker: None, waiting: false });
        IdleWaiter { shutdown: self.clone(), key }
    }

    /// Waits until every server using this handle has stopped after a
    /// [`shutdown`](GracefulShutdown::shutdown), and returns what happened.
    /// A checkpoint.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{run, open_nursery, BoxError, GracefulShutdown, Server, UnixStream};
    /// run(open_nursery(|n| async move {
    ///     let shutdown = GracefulShutdown::new();
    ///     let server = Server::new(|_: UnixStream| async {}).graceful(&shutdown);
    ///     let path = std::env::temp_dir().join(format!("trioxide-doc-stopped-{}.sock", std::process::id()));
    ///     let _ = std::fs::remove_file(&path);
    ///     let listener = trioxide::UnixListener::bind(&path)?;
    ///     n.start(|status| server.serve_listeners(vec![listener], status)).await?;
    ///     shutdown.shutdown(Duration::from_secs(1));
    ///     let report = shutdown.stopped().await?; // no connection: at once
    ///     assert_eq!(report.open_at_drain, 0);
    ///     assert_eq!(shutdown.report(), Some(report));
    ///     std::fs::remove_file(&path)?;
    ///     Ok::<_, BoxError>(())
    /// })).unwrap();
    /// ```
    pub async fn stopped(&self) -> Result<ShutdownReport, Cancelled> {
        crate::time::checkpoint().await?;
        loop {
            if let Some(r) = self.inner.report.get() {
                return Ok(r);
            }
            self.inner.changed.park().await.map_err(|_| Cancelled)?;
        }
    }

    /// The report, once a shutdown has finished.
    ///
    /// ```
    /// assert_eq!(trioxide::GracefulShutdown::new().report(), None);
    /// ```
    pub fn report(&self) -> Option<ShutdownReport> {
        self.inner.report.get()
    }

    /// Adds a connection; it leaves when the returned member is dropped.
    fn join(&self) -> Member<'_> {
        let scope = CancelScope::new();
        let key = self.inner.conns.borrow_mut().insert(scope.clone());
        Member { inner: &self.inner, key, scope }
    }

    /// Waits until `shutdown` is called. A checkpoint.
    async fn requested(&self) -> Result<(Instant, Instant), Cancelled> {
        loop {
            if let Some(r) = self.inner.requested.get() {
                return Ok(r);
            }
            self.inner.changed.park().await.map_err(|_| Cancelled)?;
        }
    }

    /// Waits until no connection is left. A checkpoint.
    async fn all_closed(&self) -> Result<(), Cancelled> {
        crate::time::checkpoint().await?;
        while !self.inner.conns.borrow().is_empty() {
            self.inner.changed.park().await.map_err(|_| Cancelled)?;
        }
        Ok(())
    }

    /// The drain, once the accept loops are cancelled: waits for the
    /// connections until `deadline`, cancels those left, and records the
    /// report.
    async fn drain(&self, asked: Instant, deadline: Instant) -> Result<(), Cancelled> {
        let open = self.inner.open_at_drain.get();
        let drained = move_on_at(deadline, self.all_closed()).await?;
        if drained.is_none() {
            // Work that completes at the deadline instant itself is not cut
            // off: a task woken at the same instant gets one schedule point
            // (whatever the pass order) before what is left is cancelled.
            crate::time::cancel_shielded_checkpoint().await;
            let left: Vec<CancelScope> = self.inner.conns.borrow().iter().map(|(_, s)| s.clone()).collect();
            for s in &left {
                s.cancel();
            }
            // Cancelled connections may still clean up (shielded).
            self.all_closed().await?;
        }
        let cancelled = self.inner.cancelled.get();
        let report = ShutdownReport {
            open_at_drain: open,
            abandoned: self.inner.abandoned.get(),
            finished: open.saturating_sub(cancelled),
            cancelled,
            grace: deadline.saturating_duration_since(asked),
            took: current_time().saturating_duration_since(asked),
        };
        self.inner.report.set(Some(report));
        self.inner.changed.unpark_all();
        Ok(())
    }
}

/// An entry of `ShutdownInner::idle_waits`.
struct IdleEntry {
    /// The waiting task's waker, once it has waited.
    waker: Option<Waker>,
    /// Whether an [`AbandonOnDrain`] is pending on this entry now.
    waiting: bool,
}

/// A connection's registration for cutting its idle waits short when a
/// graceful shutdown begins: see [`GracefulShutdown::idle_waiter`].
///
/// ```
/// # trioxide::run(async {
/// let shutdown = trioxide::GracefulShutdown::new();
/// let idle: trioxide::IdleWaiter = shutdown.idle_waiter(); // once per connection
/// let got = idle.abandon_on_drain(async { Ok::<_, trioxide::Cancelled>("request") }).await;
/// assert_eq!(got, Ok(Some("request")));
/// # });
/// ```
#[must_use = "an IdleWaiter registers on creation; keep it for the connection's life and wait through it"]
pub struct IdleWaiter {
    shutdown: GracefulShutdown,
    key: usize,
}

impl IdleWaiter {
    /// Whether the shutdown it belongs to has begun:
    /// [`GracefulShutdown::is_draining`].
    ///
    /// ```
    /// # trioxide::run(async {
    /// let shutdown = trioxide::GracefulShutdown::new();
    /// let idle = shutdown.idle_waiter();
    /// assert!(!idle.is_draining());
    /// shutdown.shutdown(std::time::Duration::ZERO);
    /// assert!(idle.is_draining());
    /// # });
    /// ```
    pub fn is_draining(&self) -> bool {
        self.shutdown.is_draining()
    }

    /// As [`GracefulShutdown::abandon_on_drain`], through this
    /// registration. One wait at a time per `IdleWaiter`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trioxide::{run, Cancelled, GracefulShutdown};
    /// run(async {
    ///     let shutdown = GracefulShutdown::new();
    ///     let idle = shutdown.idle_waiter();
    ///     // Not draining: the wait's own output, in `Some`.
    ///     assert_eq!(idle.abandon_on_drain(async { Ok::<_, Cancelled>(7) }).await, Ok(Some(7)));
    ///     shutdown.shutdown(Duration::from_secs(1));
    ///     // Draining: given up at once.
    ///     assert_eq!(idle.abandon_on_drain(async { Ok::<_, Cancelled>(8) }).await, Ok(None));
    /// });
    /// ```
    pub fn abandon_on_drain<F, T, E>(&self, fut: F) -> AbandonOnDrain<'_, F>
    where
        F: Future<Output = Result<T, E>>,
    {
        AbandonOnDrain { fut, inner: &self.shutdown.inner, key: Some(self.key), owned: false }
    }
}

impl Drop for IdleWaiter {
    fn drop(&mut self) {
        self.shutdown.inner.idle_waits.borrow_mut().try_remove(self.key);
    }
}

impl fmt::Debug for IdleWaiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdleWaiter").field("draining", &self.shutdown.is_draining()).finish()
    }
}

pin_project_lite::pin_project! {
    /// The future of [`GracefulShutdown::abandon_on_drain`] and
    /// [`IdleWaiter::abandon_on_drain`]: `fut`'s output in `Some`, or
    /// `None` once the drain has begun (then `fut` is dropped where it
    /// waits).
    ///
    /// ```
    /// # trioxide::run(async {
    /// let shutdown = trioxide::GracefulShutdown::new();
    /// shutdown.shutdown(std::time::Duration::ZERO);
    /// let wait: trioxide::AbandonOnDrain<'_, _> = shutdown.abandon_on_drain(async { Ok::<_, trioxide::Cancelled>(1) });
    /// assert_eq!(wait.await, Ok(None)); // the drain has begun: given up at once
    /// # });
    /// ```
    #[must_use = "abandon_on_drain does nothing unless awaited: it is the wait itself, cut short by a drain"]
    pub struct AbandonOnDrain<'a, F> {
        #[pin]
        fut: F,
        inner: &'a ShutdownInner,
        // Our entry in `idle_waits`: an `IdleWaiter`'s, or our own once
        // `fut` has been pending (`owned`: removed when we finish).
        key: Option<usize>,
        owned: bool,
    }

    impl<F> PinnedDrop for AbandonOnDrain<'_, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            finish_wait(this.inner, this.key, *this.owned);
        }
    }
}

/// Ends a wait's use of its `idle_waits` entry: removes it if the wait
/// owns it, else marks it as not waiting.
fn finish_wait(inner: &ShutdownInner, key: &mut Option<usize>, owned: bool) {
    if owned {
        if let Some(k) = key.take() {
            inner.idle_waits.borrow_mut().try_remove(k);
        }
    } else if let Some(k) = *key {
        if let Some(e) = inner.idle_waits.borrow_mut().get_mut(k) {
            e.waiting = false;
        }
    }
}

impl<F: Future<Output = Result<T, E>>, T, E> Future for AbandonOnDrain<'_, F> {
    type Output = Result<Option<T>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let inner = *this.inner;
        if inner.requested.get().is_some() {
            finish_wait(inner, this.key, *this.owned);
            inner.abandoned.set(inner.abandoned.get() + 1);
            return Poll::Ready(Ok(None));
        }
        match this.fut.poll(cx) {
            Poll::Ready(out) => {
                finish_wait(inner, this.key, *this.owned);
                Poll::Ready(out.map(Some))
            }
            Poll::Pending => {
                let mut waits = inner.idle_waits.borrow_mut();
                match this.key.and_then(|k| waits.get_mut(k)) {
                    Some(e) => {
                        e.waiting = true;
                        match &mut e.waker {
                            Some(w) if w.will_wake(cx.waker()) => {}
                            w => *w = Some(cx.waker().clone()),
                        }
                    }
                    None => {
                        *this.key = Some(waits.insert(IdleEntry { waker: Some(cx.waker().clone()), waiting: true }));
                        *this.owned = true;
                    }
                }
                Poll::Pending
            }
        }
    }
}

/// A connection's membership in a graceful shutdown.
struct Member<'a> {
    inner: &'a ShutdownInner,
    key: usize,
    scope: CancelScope,
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        let mut conns = self.inner.conns.borrow_mut();
        conns.try_remove(self.key);
        if conns.is_empty() {
            drop(conns);
            self.inner.changed.unpark_all();
        }
    }
}

/// The accept errors Trio retries after a pause (`SLEEP_TIME`): out of
/// file descriptors, process- or system-wide, or out of kernel memory.
fn is_out_of_resources(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}
