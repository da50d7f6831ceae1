//! `serve_tcp` when `accept` runs out of file descriptors (EMFILE): the
//! accept loop logs, sleeps `ACCEPT_RETRY_DELAY` (virtual time) and tries
//! again, and the server keeps running; once held connections are released
//! it accepts the clients that were waiting.
//!
//! The scenario lowers the process's `RLIMIT_NOFILE`, so it runs in a child
//! process (this binary again, running the ignored `emfile_scenario` test):
//! nothing else can be opening descriptors meanwhile, and the parent reads
//! the child's stderr to check what the accept loop logged.

mod io_support;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream as StdTcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use io_support::*;
use trioxide::{
    current_time, open_nursery, serve_tcp, sleep, task_tree, wait_all_tasks_blocked, BoxError, Instant, TcpStream,
    ACCEPT_RETRY_DELAY,
};

/// Set in the child's environment.
const CHILD_ENV: &str = "TRIOXIDE_EMFILE_CHILD";
/// Printed by the child on stdout at its very end, followed by the
/// listener's port (libtest may put it after the test's name on one line).
const DONE_MARKER: &str = "emfile scenario complete, port ";
/// Prefix of the child's own progress lines on stderr (interleaved in order
/// with the runtime's log lines).
const STEP: &str = "[emfile-test]";

/// Free descriptor numbers under the lowered limit: the server can hold
/// this many connections.
const FREE_SLOTS: usize = 4;
/// Clients: two more than the server can hold.
const CLIENTS: usize = 6;
/// Connections released while the accept loop sleeps.
const RELEASED: usize = 3;

#[test]
fn accept_running_out_of_fds_is_logged_retried_after_the_delay_and_the_server_keeps_serving() {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args(["--exact", "emfile_scenario", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .expect("run the scenario in a child process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the scenario failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    let port: u16 = stdout
        .split(DONE_MARKER)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the scenario did not run to its end:\n{stdout}\n{stderr}"))
        .parse()
        .expect("a port number");

    // In order: one EMFILE log line (the loop then slept instead of
    // spinning), the release, the accepts at the retry; no other EMFILE.
    let lines: Vec<&str> =
        stderr.lines().filter(|l| l.starts_with("trioxide: accept") || l.starts_with(STEP)).collect();
    let expected = [
        format!("trioxide: accept on 127.0.0.1:{port} failed: Too many open files (os error 24); retrying in 100 ms"),
        format!("{STEP} held {FREE_SLOTS} connections at 0 ms; the accept loop sleeps"),
        format!("{STEP} released {RELEASED} connections at 0 ms"),
        format!("{STEP} accepted the {} waiting clients at 100 ms", CLIENTS - FREE_SLOTS),
    ];
    assert_eq!(lines, expected, "\n--- stderr\n{stderr}");
}

/// Restores `RLIMIT_NOFILE` on drop (also when the scenario panics).
struct RestoreLimit(libc::rlimit);

impl Drop for RestoreLimit {
    fn drop(&mut self) {
        // SAFETY: setrlimit reads the struct we pass.
        let r = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.0) };
        assert_eq!(r, 0, "restoring RLIMIT_NOFILE failed");
    }
}

fn fd_is_open(fd: libc::c_int) -> bool {
    // SAFETY: F_GETFD only reads the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// The smallest limit that leaves exactly `free` descriptor numbers free
/// below it (new descriptors take the lowest free number; EMFILE when none
/// is below the limit).
fn limit_leaving_free(free: usize) -> libc::rlim_t {
    let mut seen = 0;
    let mut fd = 0;
    loop {
        if !fd_is_open(fd) {
            seen += 1;
            if seen == free {
                return (fd + 1) as libc::rlim_t;
            }
        }
        fd += 1;
    }
}

/// Moves a socket to a descriptor number far above the lowered limit, so
/// that closing it later frees no number the server could use.
fn move_high(s: StdTcpStream) -> StdTcpStream {
    // SAFETY: F_DUPFD_CLOEXEC duplicates an fd we own; the original is
    // closed when `s` drops, the duplicate is owned by the new stream.
    unsafe {
        let high = libc::fcntl(s.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 512);
        assert!(high >= 512, "F_DUPFD failed: {}", std::io::Error::last_os_error());
        drop(s);
        StdTcpStream::from_raw_fd(high)
    }
}

/// What the handlers saw: (client id, start time), and how many ended.
#[derive(Default)]
struct Held {
    started: RefCell<Vec<(u8, Instant)>>,
    ended: Cell<usize>,
}

/// Holds a connection until the client closes it.
async fn hold(stream: TcpStream, held: Rc<Held>) -> Result<(), BoxError> {
    let id = recv_exact(&stream, 1).await?[0];
    held.started.borrow_mut().push((id, current_time()));
    let mut buf = [0u8; 64];
    while stream.receive_some(&mut buf).await? != 0 {}
    drop(stream); // frees the descriptor before the count says so
    held.ended.set(held.ended.get() + 1);
    Ok(())
}

/// Waits (without letting virtual time move) until `cond` holds; gives up
/// after 5 s of real time.
async fn settle(what: &str, cond: impl Fn() -> bool) -> Result<(), BoxError> {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(5), "timed out waiting until {what}");
        wait_all_tasks_blocked().await?;
    }
    Ok(())
}

fn accept_loop_waits_on() -> &'static str {
    let tree = task_tree();
    tree.iter().find(|t| t.name == "trioxide accept loop").expect("the accept loop is alive").waiting_on
}

#[test]
#[ignore = "run in a child process by accept_running_out_of_fds_is_logged_retried_after_the_delay_and_the_server_keeps_serving"]
fn emfile_scenario() {
    assert!(std::env::var_os(CHILD_ENV).is_some(), "only meant to run as the child of the accept_emfile test");
    let port = run_io(1, async {
        let held = Rc::new(Held::default());
        let h = held.clone();
        let handler = move |stream: TcpStream| hold(stream, h.clone());
        let held_ref = &held;
        let port = open_nursery(|server| async move {
            let addrs =
                server.start(|status| serve_tcp(handler, 0, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), status)).await?;
            let addr = addrs[0];

            // All in one step, so the server does not run meanwhile: the
            // clients connect (the kernel completes the handshakes and queues
            // them) and send their id; then the limit drops.
            let mut clients: Vec<Option<StdTcpStream>> = Vec::new();
            for id in 0..CLIENTS as u8 {
                let mut c = move_high(StdTcpStream::connect(addr)?);
                c.write_all(&[id])?;
                clients.push(Some(c));
            }
            let mut saved = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: getrlimit writes the struct we pass.
            assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut saved) }, 0);
            let restore = RestoreLimit(saved);
            let lowered = libc::rlimit { rlim_cur: limit_leaving_free(FREE_SLOTS), rlim_max: saved.rlim_max };
            // SAFETY: setrlimit reads the struct we pass.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);

            // The server takes what it can hold; the next accept fails with
            // EMFILE, which is logged, and the loop sleeps.
            settle("the server holds its connections", || held_ref.started.borrow().len() == FREE_SLOTS).await?;
            settle("the accept loop sleeps", || accept_loop_waits_on() == "sleep").await?;
            assert_eq!(current_time(), Instant::ZERO);
            eprintln!("{STEP} held {FREE_SLOTS} connections at 0 ms; the accept loop sleeps");

            // Release some held connections: their handlers see the end of
            // the stream and close their sockets.
            let first: Vec<u8> = held_ref.started.borrow().iter().map(|&(id, _)| id).collect();
            for &id in &first[..RELEASED] {
                clients[id as usize] = None;
            }
            settle("the released handlers end", || held_ref.ended.get() == RELEASED).await?;
            assert_eq!(current_time(), Instant::ZERO);
            assert_eq!(accept_loop_waits_on(), "sleep", "no retry before the delay");
            eprintln!("{STEP} released {RELEASED} connections at 0 ms");

            // At the retry the waiting clients are accepted.
            sleep(ACCEPT_RETRY_DELAY).await?;
            settle("the waiting clients are accepted", || held_ref.started.borrow().len() == CLIENTS).await?;
            let started = held_ref.started.borrow().clone();
            let t0 = Instant::ZERO;
            let late: Vec<Instant> = started[FREE_SLOTS..].iter().map(|&(_, t)| t).collect();
            assert_eq!(started[..FREE_SLOTS].iter().map(|&(_, t)| t).collect::<Vec<_>>(), [t0; FREE_SLOTS]);
            assert_eq!(late, [t0 + ACCEPT_RETRY_DELAY; CLIENTS - FREE_SLOTS], "accepted exactly at the retry");
            let mut ids: Vec<u8> = started.iter().map(|&(id, _)| id).collect();
            ids.sort();
            assert_eq!(ids, (0..CLIENTS as u8).collect::<Vec<_>>(), "every client was served once");
            eprintln!("{STEP} accepted the {} waiting clients at 100 ms", CLIENTS - FREE_SLOTS);
            // One descriptor number is still free, so the queue's end is a
            // plain "would block", not another EMFILE.
            settle("the accept loop waits for connections", || accept_loop_waits_on() == "wait_readable").await?;

            // The held clients are still served: each stream is open.
            for c in clients.iter_mut().flatten() {
                let mut probe = [0u8; 1];
                c.set_nonblocking(true)?;
                let r = c.read(&mut probe);
                assert!(matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "{r:?}");
            }
            clients.clear();
            settle("every handler ends", || held_ref.ended.get() == CLIENTS).await?;
            server.cancel_scope().cancel();
            drop(restore);
            Ok::<_, BoxError>(addr.port())
        })
        .await?;
        assert_eq!(task_tree().len(), 1, "the server stopped because it was cancelled, and left nothing");
        Ok(port.expect("the body finished"))
    });
    // Make sure the process got its descriptors back.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("descriptors available again");
    drop(probe);
    println!("{DONE_MARKER}{port}");
}
