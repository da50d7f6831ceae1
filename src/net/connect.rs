//! Client connections by name: [`open_tcp_stream`], with name resolution
//! off the loop thread and Happy Eyeballs (RFC 8305) over the addresses.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;

use std::time::Duration;

use crate::kernel::cancel::CancelScope;
use crate::kernel::error::{io_error_kind, Cancelled, IoErrorKind};
use crate::net::tcp::TcpStream;
use crate::nursery::open_nursery;
use crate::time::sleep_forever;

/// How long an attempt has before the next one starts alongside it: RFC
/// 8305's recommended "Connection Attempt Delay" and Trio's default.
///
/// ```
/// assert_eq!(trioxide::HAPPY_EYEBALLS_DELAY, std::time::Duration::from_millis(250));
/// ```
pub const HAPPY_EYEBALLS_DELAY: Duration = Duration::from_millis(250);

/// Connects to `host:port`: resolves the name (on a `to_thread` worker, so a
/// slow DNS server never stalls the loop; IP literals skip it), then tries
/// the addresses by [`happy_eyeballs`] with [`HAPPY_EYEBALLS_DELAY`].
/// A checkpoint.
///
/// ```no_run
/// trioxide::run(async {
///     let s = trioxide::open_tcp_stream("localhost", 8080).await?;
///     s.send_all(b"GET / HTTP/1.0\r\n\r\n").await?;
///     Ok::<_, std::io::Error>(())
/// }).unwrap();
/// ```
pub async fn open_tcp_stream(host: &str, port: u16) -> io::Result<TcpStream> {
    crate::time::checkpoint::checkpoint_if_cancelled()?;
    if let Some(net) = crate::sim::net::active() {
        // The simulated network resolves its hosts' names itself, at once.
        let ip = match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => net.resolve(host).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("trioxide sim: no host named {host}"))
            })?,
        };
        return TcpStream::connect(SocketAddr::new(ip, port)).await;
    }
    let addrs = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => interleave_families(resolve(host.to_owned(), port).await?),
    };
    if addrs.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("no addresses found for {host}")));
    }
    happy_eyeballs(addrs, HAPPY_EYEBALLS_DELAY, TcpStream::connect).await
}

/// RFC 8305 §4: alternate address families, starting with the family of
/// the resolver's first answer, so one broken family costs one delay.
fn interleave_families(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else { return addrs };
    let first_v6 = first.is_ipv6();
    let (mut a, mut b): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|x| x.is_ipv6() == first_v6);
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.drain(..), b.drain(..));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return out,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
}

/// Runs connection attempts RFC 8305's way: starts `connect(target)` for
/// the first target, then the next one after `delay` or as soon as an
/// earlier attempt fails, whichever comes first; the first success cancels
/// every other attempt and is returned. If all fail, the error is the only
/// one, or one listing them all. Exposed so other transports (and tests)
/// can use the same algorithm.
///
/// ```
/// use std::time::Duration;
/// use trioxide::{happy_eyeballs, sleep};
/// trioxide::run(async {
///     // The first target hangs; the second answers after 10 ms and wins.
///     let winner = happy_eyeballs(vec![1000u64, 10], Duration::from_millis(5), |ms| async move {
///         sleep(Duration::from_millis(ms)).await?;
///         Ok::<_, std::io::Error>(ms)
///     }).await?;
///     assert_eq!(winner, 10);
///     Ok::<_, std::io::Error>(())
/// }).unwrap();
/// ```
pub async fn happy_eyeballs<A, C, F, S>(targets: Vec<A>, delay: Duration, connect: C) -> io::Result<S>
where
    A: 'static,
    C: Fn(A) -> F,
    F: Future<Output = io::Result<S>> + 'static,
    S: 'static,
{
    let count = targets.len();
    let winner: Rc<RefCell<Option<S>>> = Rc::new(RefCell::new(None));
    let errors: Rc<RefCell<Vec<io::Error>>> = Rc::new(RefCell::new(Vec::new()));
    let connect = &connect;
    let outcome = open_nursery(|n| {
        let (winner, errors) = (winner.clone(), errors.clone());
        async move {
            for target in targets {
                // Trio's `attempt_failed` event, as a scope: the attempt
                // cancels it on failure, the delay is its deadline.
                let next_now = CancelScope::with_relative_deadline(delay);
                let attempt = connect(target);
                let (winner, errors, everyone, next) =
                    (winner.clone(), errors.clone(), n.cancel_scope(), next_now.clone());
                n.start_soon_named("trioxide happy-eyeballs attempt", async move {
                    match attempt.await {
                        Ok(s) => {
                            let mut w = winner.borrow_mut();
                            // Two attempts may succeed in the same pass:
                            // the later one is dropped (closed).
                            if w.is_none() {
                                *w = Some(s);
                            }
                            everyone.cancel();
                        }
                        Err(e) if io_error_kind(&e) == Some(IoErrorKind::Cancelled) => return Err(e),
                        Err(e) => {
                            errors.borrow_mut().push(e);
                            next.cancel();
                        }
                    }
                    Ok(())
                })?;
                next_now.run(sleep_forever()).await?;
            }
            Ok::<_, crate::kernel::error::BoxError>(())
        }
    })
    .await;
    if let Some(s) = winner.borrow_mut().take() {
        return Ok(s);
    }
    match outcome {
        Err(m) if m.is_cancelled() => return Err(Cancelled.into()),
        Err(m) => return Err(io::Error::other(m.to_string())),
        Ok(_) => {}
    }
    let mut errors = std::mem::take(&mut *errors.borrow_mut());
    match errors.len() {
        0 => Err(io::Error::new(io::ErrorKind::InvalidInput, "happy_eyeballs needs at least one target")),
        1 => Err(errors.remove(0)),
        _ => {
            let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            let kind = errors[0].kind();
            Err(io::Error::new(kind, format!("all {count} connection attempts failed: {}", list.join("; "))))
        }
    }
}

/// Resolves on a worker thread of `to_thread` (getaddrinfo blocks), as
/// Trio does. If the caller is cancelled, the lookup is abandoned: it
/// finishes on its own and its answer is dropped.
async fn resolve(host: String, port: u16) -> io::Result<Vec<SocketAddr>> {
    crate::thread::to_thread::run_sync(move || (host.as_str(), port).to_socket_addrs().map(|it| it.collect()))
        .abandon_on_cancel(true)
        .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_alternate_starting_with_the_first_answer() {
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let v4b: SocketAddr = "127.0.0.2:1".parse().unwrap();
        assert_eq!(interleave_families(vec![v4, v4b, v6]), vec![v4, v6, v4b]);
        assert_eq!(interleave_families(vec![v6, v4, v4b]), vec![v6, v4, v4b]);
        assert_eq!(interleave_families(vec![]), Vec::<SocketAddr>::new());
    }
}
