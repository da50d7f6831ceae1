//! Servers in a nursery: [`open_tcp_listeners`], [`serve_listeners`],
//! [`serve_tcp`].

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use crate::kernel::error::BoxError;
use crate::net::tcp::{TcpListener, TcpStream, ACCEPT_BATCH};
use crate::nursery::start::TaskStatus;
use crate::nursery::{open_nursery, Nursery, TaskOutput};
use crate::time::sleep;

/// How long an accept loop pauses after running out of file descriptors
/// (or kernel memory) before trying again: Trio's `SLEEP_TIME` in
/// `_highlevel_serve_listeners.py`. Handlers finishing meanwhile free fds.
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

/// Accepts connections on every listener and runs `handler(stream)` for
/// each as a task in a nursery of its own, until cancelled. Reports the
/// listeners' addresses through `task_status` once they accept, so use it
/// with [`Nursery::start`]:
///
/// ```no_run
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
///     let addrs = n.start(|status| serve_tcp(echo, 0, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), status)).await?;
///     println!("echo server on {}", addrs[0]);
///     Ok::<_, BoxError>(())
/// })).unwrap();
/// ```
///
/// As in Trio, a handler's error is not swallowed: it cancels the server
/// and is reported by it. Handlers that must survive bad clients catch
/// their own errors. Running out of file descriptors while accepting is
/// not an error: the loop logs it to stderr, sleeps
/// [`ACCEPT_RETRY_DELAY`] and goes on.
pub async fn serve_tcp<H, F>(
    handler: H,
    port: u16,
    host: Option<IpAddr>,
    task_status: TaskStatus<Vec<SocketAddr>>,
) -> Result<(), BoxError>
where
    H: Fn(TcpStream) -> F + 'static,
    F: Future + 'static,
    F::Output: TaskOutput,
{
    let listeners = open_tcp_listeners(port, host)?;
    serve_listeners(handler, listeners, task_status).await
}

/// Like [`serve_tcp`], on listeners you opened yourself.
pub async fn serve_listeners<H, F>(
    handler: H,
    listeners: Vec<TcpListener>,
    task_status: TaskStatus<Vec<SocketAddr>>,
) -> Result<(), BoxError>
where
    H: Fn(TcpStream) -> F + 'static,
    F: Future + 'static,
    F::Output: TaskOutput,
{
    let addrs = listeners.iter().map(|l| l.local_addr()).collect::<io::Result<Vec<_>>>()?;
    let handler = Rc::new(handler);
    open_nursery(|n| async move {
        for listener in listeners {
            n.start_soon_named("trioxide accept loop", accept_loop(listener, handler.clone(), n.clone()))?;
        }
        task_status.started(addrs);
        Ok::<_, BoxError>(())
    })
    .await?;
    Ok(())
}

async fn accept_loop<H, F>(listener: TcpListener, handler: Rc<H>, nursery: Nursery) -> Result<(), BoxError>
where
    H: Fn(TcpStream) -> F + 'static,
    F: Future + 'static,
    F::Output: TaskOutput,
{
    let mut batch = Vec::with_capacity(ACCEPT_BATCH);
    loop {
        match listener.accept_batch(&mut batch, ACCEPT_BATCH).await {
            Ok(_) => {
                for (stream, _peer) in batch.drain(..) {
                    nursery.start_soon_named("trioxide connection handler", handler(stream))?;
                }
            }
            Err(e) if is_out_of_resources(&e) => {
                eprintln!(
                    "trioxide: accept on {} failed: {e}; retrying in {} ms",
                    listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                    ACCEPT_RETRY_DELAY.as_millis()
                );
                sleep(ACCEPT_RETRY_DELAY).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The accept errors Trio retries after a pause (`SLEEP_TIME`): out of
/// file descriptors, process- or system-wide, or out of kernel memory.
fn is_out_of_resources(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}
