//! `serve_tcp`, `serve_listeners` and `Server`: handler errors are logged
//! and the server goes on (the README's example survives bad clients), the
//! other policies, a graceful stop in virtual time, serving any `Listener`
//! into a nursery the caller chooses, and Trio's accept-error rule.
//!
//! Real sockets on 127.0.0.1 (port 0) where a socket matters; virtual time
//! (a `MockClock` that jumps after 50 ms of real quiet) wherever time does.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use trioxide::{
    current_time, fail_after, open_nursery, open_tcp_stream, sleep, wait_all_tasks_blocked, BoxError, Builder,
    GracefulShutdown, Instant, MockClock, Server, ShutdownReport, TcpStream,
};

const LOCALHOST: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
const HANG_GUARD: Duration = Duration::from_secs(3600);

/// The README's server example's handler, character for character (the
/// first test checks that the README still says exactly this).
const README_ECHO: &str = r#"async fn echo(stream: TcpStream) -> Result<(), BoxError> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.receive_some(&mut buf).await?;   // 0: the client closed
        if n == 0 { return Ok(()); }
        stream.send_all(&buf[..n]).await?;
    }
}"#;

#[rustfmt::skip]
async fn echo(stream: TcpStream) -> Result<(), BoxError> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.receive_some(&mut buf).await?;   // 0: the client closed
        if n == 0 { return Ok(()); }
        stream.send_all(&buf[..n]).await?;
    }
}

fn virtual_run<F, Fut>(body: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), BoxError>>,
{
    virtual_run_seeded(7, body)
}

fn virtual_run_seeded<F, Fut>(seed: u64, body: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), BoxError>>,
{
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::from_millis(50)));
    let (out, report) = Builder::new().seed(seed).clock(clock).run_with_report(fail_after(HANG_GUARD, body()));
    if let Err(e) = out {
        panic!("seed {seed}: the run failed: {e}");
    }
    assert_eq!((report.tasks_left, report.timers_left), (0, 0));
}

/// Sends `msg` and reads the echo back.
async fn round_trip(stream: &TcpStream, msg: &[u8]) -> Result<Vec<u8>, BoxError> {
    stream.send_all(msg).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < msg.len() {
        let n = stream.receive_some(&mut buf).await?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(got)
}

/// Closes `stream` so that the peer sees a reset (SO_LINGER 0).
fn reset(stream: TcpStream) {
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt on an open socket we own, with a pointer to a live
    // `linger` and its exact size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
    drop(stream);
}

#[test]
fn the_readme_example_is_the_code_under_test() {
    let readme = include_str!("../README.md");
    assert!(readme.contains(README_ECHO), "README.md's server example changed: update README_ECHO and echo() here");
    assert!(readme.contains("serve_tcp(echo, 0, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), status)"));
}

#[test]
fn the_readme_server_survives_a_reset_a_garbage_sender_and_a_staller_while_serving_a_good_client() {
    virtual_run(|| async {
        open_nursery(|n| async move {
            let addrs = n.start(|status| trioxide::serve_tcp(echo, 0, LOCALHOST, status)).await?;
            let port = addrs[0].port();
            let good = open_tcp_stream("127.0.0.1", port).await?;
            assert_eq!(round_trip(&good, b"hello").await?, b"hello");

            // A client that resets mid-conversation: its handler fails with
            // ECONNRESET, which is logged; the server goes on.
            let bad = open_tcp_stream("127.0.0.1", port).await?;
            bad.send_all(b"x").await?;
            wait_all_tasks_blocked().await?;
            reset(bad);
            // A client that sends garbage (echo takes any bytes) and leaves.
            let junk = open_tcp_stream("127.0.0.1", port).await?;
            junk.send_all(&[0xff; 3000]).await?;
            drop(junk);
            // A client that connects and never sends anything.
            let staller = open_tcp_stream("127.0.0.1", port).await?;
            sleep(Duration::from_secs(30)).await?;

            assert_eq!(round_trip(&good, b"still here").await?, b"still here");
            let late = open_tcp_stream("127.0.0.1", port).await?;
            assert_eq!(round_trip(&late, b"new client").await?, b"new client");
            drop(staller);
            n.cancel_scope().cancel();
            Ok::<_, BoxError>(())
        })
        .await?;
        Ok(())
    });
}

/// Sends `msg`, then reads everything until the server closes.
async fn ask(stream: &TcpStream, msg: &[u8]) -> Result<Vec<u8>, BoxError> {
    stream.send_all(msg).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        let n = stream.receive_some(&mut buf).await?;
        if n == 0 {
            return Ok(got);
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// Answers `ok` unless asked to fail.
async fn ok_or_fail(s: TcpStream) -> Result<(), BoxError> {
    let mut b = [0u8; 8];
    let n = s.receive_some(&mut b).await?;
    if &b[..n] == b"fail" {
        return Err("asked to fail".into());
    }
    s.send_all(b"ok").await?;
    Ok(())
}

#[test]
fn handler_errors_go_to_the_callback_with_the_peer_and_the_server_goes_on() {
    virtual_run(|| async {
        let seen: Rc<RefCell<Vec<(SocketAddr, String)>>> = Rc::default();
        let log = seen.clone();
        open_nursery(|n| async move {
            let server = Server::new(ok_or_fail)
                .on_handler_error(move |peer, e| log.borrow_mut().push((peer.expect("a TCP peer"), e.to_string())));
            let addrs = n.start(|status| server.serve_tcp(0, LOCALHOST, status)).await?;
            let failing = open_tcp_stream("127.0.0.1", addrs[0].port()).await?;
            let failing_addr = failing.local_addr()?;
            assert_eq!(ask(&failing, b"fail").await?, b"");
            let fine = open_tcp_stream("127.0.0.1", addrs[0].port()).await?;
            assert_eq!(ask(&fine, b"ping").await?, b"ok");
            assert_eq!(*seen.borrow(), vec![(failing_addr, "asked to fail".to_string())]);
            n.cancel_scope().cancel();
            Ok::<_, BoxError>(())
        })
        .await?;
        Ok(())
    });
}

#[test]
fn with_propagate_handler_errors_one_failing_handler_stops_the_server_as_in_trio() {
    virtual_run(|| async {
        let res = open_nursery(|n| async move {
            let server = Server::new(ok_or_fail).propagate_handler_errors();
            let addrs = n.start(|status| server.serve_tcp(0, LOCALHOST, status)).await?;
            let failing = open_tcp_stream("127.0.0.1", addrs[0].port()).await?;
            failing.send_all(b"fail").await?;
            trioxide::sleep_forever().await?;
            Ok::<_, BoxError>(())
        })
        .await;
        let err = res.expect_err("the handler's error stops the server");
        assert_eq!(err.to_string().matches("asked to fail").count(), 1, "{err}");
        Ok(())
    });
}

/// A server whose handler holds each connection for as long as the client
/// asks (`"<secs>"`), then answers `done`; under a graceful shutdown.
async fn slow_handler(s: TcpStream, shutdown: GracefulShutdown) -> Result<(), BoxError> {
    let mut b = [0u8; 16];
    let n = match shutdown.abandon_on_drain(s.receive_some(&mut b)).await? {
        Some(n) => n,
        None => return Ok(()), // idle at the drain: closed at once
    };
    let secs: u64 = std::str::from_utf8(&b[..n])?.trim().parse()?;
    sleep(Duration::from_secs(secs)).await?;
    s.send_all(b"done").await?;
    Ok(())
}

#[test]
fn graceful_shutdown_refuses_new_clients_at_once_and_cancels_only_what_outlives_the_grace() {
    for seed in 1..=4 {
        graceful_shutdown_scenario(seed);
    }
}

fn graceful_shutdown_scenario(seed: u64) {
    virtual_run_seeded(seed, || async {
        let shutdown = GracefulShutdown::new();
        let report: Rc<Cell<Option<(ShutdownReport, Instant)>>> = Rc::default();
        let out = report.clone();
        open_nursery(|n| async move {
            let sd = shutdown.clone();
            let server = Server::new(move |s| slow_handler(s, sd.clone())).graceful(&shutdown);
            let addrs = n.start(|status| server.serve_tcp(0, LOCALHOST, status)).await?;
            let port = addrs[0].port();
            // Four clients: idle, done before the 5 s grace, done exactly at
            // it, and one that would need 9 s.
            let idle = open_tcp_stream("127.0.0.1", port).await?;
            let mut busy = Vec::new();
            for secs in [2u64, 5, 9] {
                let c = open_tcp_stream("127.0.0.1", port).await?;
                c.send_all(secs.to_string().as_bytes()).await?;
                busy.push(c);
            }
            wait_all_tasks_blocked().await?;
            let t0 = current_time();
            shutdown.shutdown(Duration::from_secs(5));
            wait_all_tasks_blocked().await?;
            // New clients are refused at once (the listener is closed).
            let refused = open_tcp_stream("127.0.0.1", port).await;
            assert!(refused.is_err(), "a connection was accepted during the drain");
            // The idle client sees the end of the stream at once.
            let mut b = [0u8; 8];
            assert_eq!(idle.receive_some(&mut b).await?, 0);
            assert_eq!(current_time(), t0);
            let results = Rc::new(RefCell::new(Vec::new()));
            let collected = results.clone();
            open_nursery(|m| async move {
                for (i, c) in busy.into_iter().enumerate() {
                    let results = collected.clone();
                    m.start_soon(async move {
                        let mut got = Vec::new();
                        let mut b = [0u8; 8];
                        loop {
                            let n = c.receive_some(&mut b).await?;
                            if n == 0 {
                                break;
                            }
                            got.extend_from_slice(&b[..n]);
                        }
                        let at = current_time().saturating_duration_since(t0);
                        results.borrow_mut().push((i, String::from_utf8(got)?, at));
                        Ok::<_, BoxError>(())
                    })?;
                }
                Ok::<_, BoxError>(())
            })
            .await?;
            let r = shutdown.stopped().await?;
            out.set(Some((r, t0)));
            let mut results = results.borrow().clone();
            results.sort();
            assert_eq!(
                results,
                vec![
                    (0, "done".to_string(), Duration::from_secs(2)),
                    (1, "done".to_string(), Duration::from_secs(5)),
                    (2, String::new(), Duration::from_secs(5)),
                ]
            );
            Ok::<_, BoxError>(())
        })
        .await?;
        let (r, _) = report.get().expect("a report");
        assert_eq!(
            r,
            ShutdownReport {
                open_at_drain: 4,
                abandoned: 1,
                finished: 3,
                cancelled: 1,
                grace: Duration::from_secs(5),
                took: Duration::from_secs(5),
            }
        );
        Ok(())
    });
}

/// A listener whose `accept` fails with a fixed error (Trio's
/// `FakeSocket` in test_highlevel_serve_listeners.py).
struct FailingListener {
    errno: i32,
}

impl trioxide::Resource for FailingListener {
    fn close(&self) {}
}

impl trioxide::Listener for FailingListener {
    type Stream = trioxide::UnixStream;

    async fn accept(&self) -> std::io::Result<trioxide::UnixStream> {
        trioxide::checkpoint().await?;
        Err(std::io::Error::from_raw_os_error(self.errno))
    }
}

impl trioxide::LocalAddr for FailingListener {
    type Addr = &'static str;

    fn listening_on(&self) -> std::io::Result<&'static str> {
        Ok("fake")
    }
}

#[test]
fn test_serve_listeners_accept_unrecognized_error_propagates() {
    for errno in [libc::EINVAL, libc::EBADF, libc::ENOTSOCK] {
        virtual_run(|| async move {
            let handler = |_s: trioxide::UnixStream| async {};
            let res =
                trioxide::serve_listeners(handler, vec![FailingListener { errno }], trioxide::TASK_STATUS_IGNORED)
                    .await;
            let err = res.expect_err("an unrecognised accept error ends the server");
            let io = std::io::Error::from_raw_os_error(errno);
            assert!(err.to_string().contains(&io.to_string()), "{err}");
            Ok(())
        });
    }
}

#[test]
fn test_serve_listeners_connection_nursery_holds_the_connections() {
    virtual_run(|| async {
        open_nursery(|outer| async move {
            let handlers = outer.clone();
            let served = open_nursery(|n| async move {
                let server = Server::new(|s: TcpStream| async move {
                    trioxide::sleep_forever().await?;
                    drop(s);
                    Ok::<_, BoxError>(())
                })
                .handler_nursery(&handlers);
                let addrs = n.start(|status| server.serve_tcp(0, LOCALHOST, status)).await?;
                let _client = open_tcp_stream("127.0.0.1", addrs[0].port()).await?;
                wait_all_tasks_blocked().await?;
                // The connection's task is a child of the outer nursery's
                // owner (main), not of the server's task.
                let tree = trioxide::task_tree();
                let conn = tree.iter().find(|t| t.name == "trioxide connection handler").expect("a connection task");
                assert_eq!(conn.parent, Some(trioxide::current_task().id));
                // Stopping the server leaves the connection running.
                n.cancel_scope().cancel();
                Ok::<_, BoxError>(())
            })
            .await?;
            assert_eq!(served, Some(()), "the body finished before a checkpoint saw the cancel");
            wait_all_tasks_blocked().await?;
            let names: Vec<String> = trioxide::task_tree().into_iter().map(|t| t.name).collect();
            assert!(names.iter().any(|n| n == "trioxide connection handler"), "{names:?}");
            assert!(!names.iter().any(|n| n == "trioxide accept loop"), "{names:?}");
            outer.cancel_scope().cancel();
            Ok::<_, BoxError>(())
        })
        .await?;
        Ok(())
    });
}

#[test]
fn serving_a_unix_listener_without_start_via_task_status_ignored() {
    virtual_run(|| async {
        let dir = std::env::temp_dir().join(format!("trioxide-serving-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let listener = trioxide::UnixListener::bind(&path)?;
        let client_path = path.clone();
        open_nursery(|n| async move {
            n.start_soon(trioxide::serve_listeners(
                |s: trioxide::UnixStream| async move { s.send_all(b"hello").await },
                vec![listener],
                trioxide::TASK_STATUS_IGNORED,
            ))?;
            wait_all_tasks_blocked().await?;
            let c = trioxide::UnixStream::connect(&client_path).await?;
            let mut got = Vec::new();
            let mut b = [0u8; 16];
            loop {
                let k = c.receive_some(&mut b).await?;
                if k == 0 {
                    break;
                }
                got.extend_from_slice(&b[..k]);
            }
            assert_eq!(got, b"hello");
            n.cancel_scope().cancel();
            Ok::<_, BoxError>(())
        })
        .await?;
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&dir);
        Ok(())
    });
}
