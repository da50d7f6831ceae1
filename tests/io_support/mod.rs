//! Helpers shared by the I/O test binaries (`io_rules`, `sockets`,
//! `happy_eyeballs`, `accept_emfile`): connected socket pairs on 127.0.0.1,
//! small kernel buffers (so "the send buffer is full" takes kilobytes, not
//! megabytes), data patterns, and a runner on virtual time with a hang guard.
//!
//! Not every binary uses every helper.
#![allow(dead_code)]

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener, TcpStream as StdTcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use trioxide::{
    fail_after, io_error_kind, BoxError, Builder, IoErrorKind, MockClock, ReceiveStream, RunReport, TcpStream,
};

/// Set by benches/valgrind.sh: heavy tests shrink their data, keeping the
/// same assertions.
pub fn valgrind() -> bool {
    std::env::var_os("TRIOXIDE_VALGRIND").is_some()
}

/// The autojump threshold for runs with real sockets. With 0 the clock
/// would jump while loopback data is still in flight; 50 ms of real quiet
/// means nothing is coming.
pub const AUTOJUMP: Duration = Duration::from_millis(50);

/// Virtual-time bound on every run of these tests: a hang (a lost wake-up)
/// makes the clock autojump to it after `AUTOJUMP` of real quiet, and the
/// run fails with `TooSlow` instead of hanging.
pub const HANG_GUARD: Duration = Duration::from_secs(3600);

/// A mock clock that autojumps after `AUTOJUMP` of real quiet.
pub fn io_clock() -> MockClock {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(AUTOJUMP));
    clock
}

/// Runs `main` with a fixed seed on `clock`, inside the hang guard, and
/// checks that the run left no task or timer behind. Returns the report
/// too, for the caller to check task allocations (see [`run_on`]).
pub fn run_on_with_report<T>(
    seed: u64,
    clock: MockClock,
    main: impl Future<Output = Result<T, BoxError>>,
) -> (T, RunReport) {
    let (out, report) = Builder::new().seed(seed).clock(clock).run_with_report(fail_after(HANG_GUARD, main));
    let out = match out {
        Ok(v) => v,
        Err(e) => panic!("the run failed: {e}"),
    };
    assert_eq!(report.tasks_left, 0, "tasks left behind");
    assert_eq!(report.timers_left, 0, "timers left behind");
    (out, report)
}

/// [`run_on_with_report`], also checking that no task allocation is left
/// (no waker kept anywhere). Not for runs that hand wakers to other
/// threads: such a thread may still be inside `wake()` when the run ends.
pub fn run_on<T>(seed: u64, clock: MockClock, main: impl Future<Output = Result<T, BoxError>>) -> T {
    let (out, report) = run_on_with_report(seed, clock, main);
    assert_eq!(report.task_allocations_left, 0, "task allocations left behind");
    out
}

/// [`run_on`] with a fresh [`io_clock`].
pub fn run_io<T>(seed: u64, main: impl Future<Output = Result<T, BoxError>>) -> T {
    run_on(seed, io_clock(), main)
}

/// Which of trioxide's conditions an error of an I/O result carries.
pub fn kind_of<T>(r: &io::Result<T>) -> Option<IoErrorKind> {
    match r {
        Ok(_) => None,
        Err(e) => io_error_kind(e),
    }
}

/// Asserts that `r` failed with trioxide's condition `kind`.
#[track_caller]
pub fn assert_kind<T: std::fmt::Debug>(r: &io::Result<T>, kind: IoErrorKind) {
    match r {
        Err(e) => assert_eq!(io_error_kind(e), Some(kind), "wrong error: {e} ({e:?})"),
        Ok(v) => panic!("expected {kind:?}, got Ok({v:?})"),
    }
}

/// `len` bytes of a pattern that depends on `seed` and on the position, so
/// a lost, duplicated or reordered byte shows.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            // xorshift64: cheap, and not periodic at any size used here.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Sets an integer `SOL_SOCKET` option.
pub fn set_sock_opt(fd: RawFd, opt: libc::c_int, value: libc::c_int) {
    // SAFETY: `value` is a live c_int and we pass its exact size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "setsockopt({opt}) failed: {}", io::Error::last_os_error());
}

/// A connected pair of std TCP sockets on 127.0.0.1: `(client, server)`.
/// With `small`, the client's send buffer and the server's receive buffer
/// are the kernel's minimum, so a send from client to server that the
/// server does not read blocks after about 10 KB.
pub fn std_tcp_pair(small: bool) -> (StdTcpStream, StdTcpStream) {
    let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    if small {
        // Set on the listener so that the accepted socket inherits it and
        // the window it advertises is small from the handshake on.
        set_sock_opt(listener.as_raw_fd(), libc::SO_RCVBUF, 4096);
    }
    let client = StdTcpStream::connect(listener.local_addr().unwrap()).expect("connect to our own listener");
    if small {
        set_sock_opt(client.as_raw_fd(), libc::SO_SNDBUF, 4096);
    }
    let (server, _) = listener.accept().expect("accept");
    (client, server)
}

/// [`std_tcp_pair`] as trioxide streams. Made outside any operation that
/// waits, so neither socket is registered with the driver yet.
pub fn tcp_pair(small: bool) -> (TcpStream, TcpStream) {
    let (c, s) = std_tcp_pair(small);
    (TcpStream::from_std(c).unwrap(), TcpStream::from_std(s).unwrap())
}

/// A port on 127.0.0.1 where nothing listens (bound, then closed), so a
/// connection to it is refused.
pub fn refused_addr() -> SocketAddr {
    let l = StdTcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

/// Receives exactly `n` bytes (fails on an early end of stream).
pub async fn recv_exact(s: &impl ReceiveStream, n: usize) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let k = s.receive_some(&mut out[got..]).await?;
        if k == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("EOF after {got} of {n} bytes")));
        }
        got += k;
    }
    Ok(out)
}

/// Receives until the end of the stream.
pub async fn recv_to_end(s: &impl ReceiveStream) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let k = s.receive_some(&mut buf).await?;
        if k == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..k]);
    }
}

/// Asserts two byte strings are equal, reporting where they first differ
/// instead of printing megabytes.
#[track_caller]
pub fn assert_same_bytes(got: &[u8], want: &[u8]) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        panic!("bytes differ: got {} bytes, want {}; first difference at offset {first}", got.len(), want.len());
    }
}

/// Blocks the thread (outside any trioxide wait) until `fd` is readable, so
/// a test can start from "the data is there" without a race. Fails after
/// 2 s.
pub fn block_until_readable(fd: RawFd) {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, count 1.
    let n = unsafe { libc::poll(&mut pfd, 1, 2000) };
    assert_eq!(n, 1, "fd {fd} did not become readable within 2 s");
}

/// Bytes waiting in the receive queue of socket `fd` (`FIONREAD`).
pub fn bytes_queued(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer we pass.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    assert_eq!(r, 0, "FIONREAD failed: {}", io::Error::last_os_error());
    n as usize
}

/// Puts `fd` in non-blocking mode (for filling a pipe from the test).
pub fn set_nonblocking(fd: RawFd) {
    // SAFETY: plain fcntl calls on an fd the caller owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        assert!(flags >= 0);
        assert_eq!(libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK), 0);
    }
}

/// Writes to a non-blocking `w` until the kernel refuses; returns how much
/// went in.
pub fn fill_nonblocking(mut w: impl io::Write) -> usize {
    let chunk = [0xA5u8; 4096];
    let mut total = 0;
    loop {
        match w.write(&chunk) {
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return total,
            Err(e) => panic!("filling failed: {e}"),
        }
    }
}
