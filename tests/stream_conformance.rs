//! The conformance checks of `trioxide::testing` run on every stream type
//! trioxide has (memory, lockstep, TCP, Unix, process pipes), and on deliberately faulty
//! streams, which must fail them with the property they break.

mod io_support;

use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::pin::pin;
use std::task::Poll;

use io_support::{run_io, set_sock_opt, tcp_pair};
use trioxide::process::{PipeReceiveStream, PipeSendStream};
use trioxide::testing::{
    check_half_closeable_stream, check_one_way_stream, check_two_way_stream, lockstep_stream_one_way_pair,
    lockstep_stream_pair, memory_stream_one_way_pair, memory_stream_pair, CheckFailed, MemoryStream,
};
use trioxide::{
    io_error_kind, sleep_forever, BoxError, HalfCloseableStream, IoErrorKind, ReceiveStream, Resource, SendStream,
    TcpStream, UnixStream,
};

/// Seeds for the runs: the checks must hold whatever the scheduling order.
const SEEDS: [u64; 3] = [1, 2, 3];

/// Runs `check` under several seeds; it must pass under each.
fn passes<F: Future<Output = Result<(), BoxError>>>(check: impl Fn() -> F) {
    for seed in SEEDS {
        run_io(seed, async {
            if let Err(e) = check().await {
                panic!("seed {seed}: {e}");
            }
            Ok(())
        });
    }
}

#[test]
fn memory_stream_one_way_pair_passes_check_one_way_stream() {
    passes(|| check_one_way_stream(|| async { Ok(memory_stream_one_way_pair()) }, None));
}

#[test]
fn memory_stream_pair_passes_check_half_closeable_stream() {
    passes(|| check_half_closeable_stream(|| async { Ok(memory_stream_pair()) }, None));
}

#[test]
fn lockstep_stream_one_way_pair_passes_check_one_way_stream_also_as_its_own_clogged_maker() {
    let maker = || async { Ok(lockstep_stream_one_way_pair()) };
    passes(|| check_one_way_stream(maker, Some(maker)));
}

#[test]
fn lockstep_stream_pair_passes_check_half_closeable_stream_also_as_its_own_clogged_maker() {
    let maker = || async { Ok(lockstep_stream_pair()) };
    passes(|| check_half_closeable_stream(maker, Some(maker)));
}

/// Fills the send buffer of socket `fd` behind trioxide's back, with
/// non-blocking `send(2)` calls, until the kernel refuses.
fn fill_send_buffer(fd: RawFd) {
    let chunk = [0xA5u8; 4096];
    loop {
        // SAFETY: `chunk` is a live buffer of the length passed; `fd` is an
        // open socket owned by the caller's stream.
        let n = unsafe { libc::send(fd, chunk.as_ptr().cast(), chunk.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "filling the send buffer failed: {e}");
            return;
        }
    }
}

/// Clogs a socket stream: its next `send_all` and
/// `wait_send_all_might_not_block` block until the peer receives.
///
/// Filling the kernel buffer is not enough: trioxide caches readiness and
/// trusts "writable" until a write is refused. So after the fill, one
/// 1-byte `send_all` is polled once, so that trioxide sees the kernel
/// refuse it, and dropped; with nothing sent, the stream is not broken. If
/// the kernel took the byte after all (space was freed meanwhile), fill
/// again.
async fn clog<S: SendStream + AsRawFd>(s: &S) -> io::Result<()> {
    loop {
        fill_send_buffer(s.as_raw_fd());
        let mut send = pin!(s.send_all(&[0xA5]));
        match poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await {
            Poll::Pending => return Ok(()),
            Poll::Ready(r) => r?,
        }
    }
}

/// A connected TCP pair on 127.0.0.1: `(client, server)`; with `small`,
/// every buffer (both ends, both directions) is the kernel's minimum, set
/// before the handshake, so that the windows the ends advertise are small
/// from the start.
///
/// (A receive buffer shrunk after the handshake is smaller than the window
/// already advertised: a full send buffer then keeps draining into it as
/// delayed ACKs arrive, so a "clogged" sender wakes up by itself.)
fn tcp_pair_small_both_ways(small: bool) -> io::Result<(TcpStream, TcpStream)> {
    if !small {
        return Ok(tcp_pair(false));
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    set_sock_opt(listener.as_raw_fd(), libc::SO_RCVBUF, 4096);
    let addr = match listener.local_addr()? {
        std::net::SocketAddr::V4(a) => a,
        other => panic!("bound 127.0.0.1 but got {other}"),
    };
    // SAFETY: plain socket creation; the fd is owned by `client` right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket that nothing else owns.
    let client = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    set_sock_opt(client.as_raw_fd(), libc::SO_RCVBUF, 4096);
    set_sock_opt(client.as_raw_fd(), libc::SO_SNDBUF, 4096);
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*addr.ip()).to_be() },
        sin_zero: [0; 8],
    };
    // SAFETY: `sin` is a valid sockaddr_in and we pass its exact size; the
    // socket is blocking, so connect returns once connected (or failed).
    let r = unsafe {
        libc::connect(
            client.as_raw_fd(),
            &sin as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let (server, _) = listener.accept()?;
    set_sock_opt(server.as_raw_fd(), libc::SO_SNDBUF, 4096);
    Ok((TcpStream::from_std(std::net::TcpStream::from(client))?, TcpStream::from_std(server)?))
}

/// A connected TCP pair on 127.0.0.1; clogged, with small buffers and the
/// send buffers full in both directions (a two-way check runs the clogged
/// checks with each end sending).
async fn tcp_maker(clogged: bool) -> io::Result<(TcpStream, TcpStream)> {
    let (client, server) = tcp_pair_small_both_ways(clogged)?;
    if clogged {
        clog(&client).await?;
        clog(&server).await?;
    }
    Ok((client, server))
}

/// `UnixStream::pair()`; clogged, with small send buffers, full both ways.
async fn unix_maker(clogged: bool) -> io::Result<(UnixStream, UnixStream)> {
    let (a, b) = UnixStream::pair()?;
    if clogged {
        for s in [&a, &b] {
            set_sock_opt(s.as_raw_fd(), libc::SO_SNDBUF, 4096);
            clog(s).await?;
        }
    }
    Ok((a, b))
}

#[test]
fn tcp_stream_pairs_on_loopback_pass_check_half_closeable_stream_with_a_clogged_maker() {
    let maker = |clogged| move || tcp_maker(clogged);
    passes(|| check_half_closeable_stream(maker(false), Some(maker(true))));
}

#[test]
fn unix_stream_pairs_pass_check_half_closeable_stream_with_a_clogged_maker() {
    let maker = |clogged| move || unix_maker(clogged);
    passes(|| check_half_closeable_stream(maker(false), Some(maker(true))));
}

/// A pipe's write end `fd`, filled behind trioxide's back until the kernel
/// refuses (the fd is non-blocking once wrapped).
fn fill_pipe(fd: RawFd) {
    let chunk = [0xA5u8; 4096];
    loop {
        // SAFETY: `chunk` is a live buffer of the length passed; `fd` is the
        // open write end owned by the caller's stream.
        let n = unsafe { libc::write(fd, chunk.as_ptr().cast(), chunk.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "filling the pipe failed: {e}");
            return;
        }
    }
}

/// An OS pipe as trioxide's process pipe streams; clogged, shrunk to one
/// page and full, with the cached "writable" bit cleared as in [`clog`].
async fn pipe_maker(clogged: bool) -> io::Result<(PipeSendStream, PipeReceiveStream)> {
    let (reader, writer) = std::io::pipe()?;
    let send = PipeSendStream::new(std::os::fd::OwnedFd::from(writer))?;
    let receive = PipeReceiveStream::new(std::os::fd::OwnedFd::from(reader))?;
    if clogged {
        // SAFETY: F_SETPIPE_SZ on an open pipe fd we own; no pointers.
        unsafe { libc::fcntl(send.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
        loop {
            fill_pipe(send.as_raw_fd());
            let mut probe = pin!(send.send_all(&[0xA5]));
            match poll_fn(|cx| Poll::Ready(probe.as_mut().poll(cx))).await {
                Poll::Pending => break,
                Poll::Ready(r) => r?,
            }
        }
    }
    Ok((send, receive))
}

#[test]
fn process_pipe_streams_pass_check_one_way_stream_with_a_clogged_maker() {
    let maker = |clogged| move || pipe_maker(clogged);
    passes(|| check_one_way_stream(maker(false), Some(maker(true))));
}

// ---- Faulty streams: the checks must catch them ----

/// How a [`Faulty`] stream breaks the rules.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    /// Drops byte 1000 of every send longer than that.
    LosesAByte,
    /// A second concurrent receive waits instead of failing with Busy.
    NeverBusy,
    /// `send_all` of no data returns at once: no checkpoint.
    EmptySendIsNoCheckpoint,
    /// `send_eof` closes the whole stream.
    SendEofClosesBoth,
}

/// A memory stream with one fault.
struct Faulty {
    inner: MemoryStream,
    fault: Fault,
}

/// Where [`Fault::LosesAByte`] cuts.
const LOST_AT: usize = 1000;

fn faulty_pair(fault: Fault) -> (Faulty, Faulty) {
    let (a, b) = memory_stream_pair();
    (Faulty { inner: a, fault }, Faulty { inner: b, fault })
}

impl Resource for Faulty {
    fn close(&self) {
        self.inner.close();
    }
}

impl SendStream for Faulty {
    async fn send_all(&self, data: &[u8]) -> io::Result<()> {
        match self.fault {
            Fault::LosesAByte if data.len() > LOST_AT => {
                self.inner.send_all(&data[..LOST_AT]).await?;
                self.inner.send_all(&data[LOST_AT + 1..]).await
            }
            Fault::EmptySendIsNoCheckpoint if data.is_empty() => Ok(()),
            _ => self.inner.send_all(data).await,
        }
    }

    async fn wait_send_all_might_not_block(&self) -> io::Result<()> {
        self.inner.wait_send_all_might_not_block().await
    }
}

impl ReceiveStream for Faulty {
    async fn receive_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.receive_some(buf).await {
            Err(e) if self.fault == Fault::NeverBusy && io_error_kind(&e) == Some(IoErrorKind::Busy) => {
                sleep_forever().await?;
                unreachable!("sleep_forever returned")
            }
            other => other,
        }
    }
}

impl HalfCloseableStream for Faulty {
    async fn send_eof(&self) -> io::Result<()> {
        if self.fault == Fault::SendEofClosesBoth {
            trioxide::checkpoint().await?;
            self.inner.close();
            return Ok(());
        }
        self.inner.send_eof().await
    }
}

/// Runs the half-closeable check on a faulty stream and returns how it
/// failed; panics if it passed.
fn failure_of(fault: Fault) -> CheckFailed {
    run_io(7, async move {
        let err = match check_half_closeable_stream(move || async move { Ok(faulty_pair(fault)) }, None).await {
            Ok(()) => panic!("the check passed a stream with fault {fault:?}"),
            Err(e) => e,
        };
        match err.downcast::<CheckFailed>() {
            Ok(failed) => Ok(*failed),
            Err(other) => panic!("the check failed with something other than CheckFailed: {other}"),
        }
    })
}

#[test]
fn a_stream_that_loses_a_byte_fails_the_duplex_property_at_that_byte() {
    let failed = failure_of(Fault::LosesAByte);
    assert_eq!(failed.check(), "check_half_closeable_stream");
    assert_eq!(
        failed.property(),
        "data flows both ways at once (256 KiB each way in random chunks), intact and in order"
    );
    assert!(failed.detail().contains("differs"), "detail: {}", failed.detail());
    assert!(failed.to_string().starts_with("check_half_closeable_stream failed: data flows both ways"), "{failed}");
}

#[test]
fn a_stream_that_never_reports_busy_fails_the_concurrent_receive_property() {
    let failed = failure_of(Fault::NeverBusy);
    assert_eq!(failed.property(), "two receive_some calls at once: one fails with BusyResource");
    assert_eq!(failed.detail(), "neither call failed with BusyResource (first: still blocked; second: still blocked)");
    assert!(!failed.with_ends_swapped());
}

#[test]
fn a_stream_whose_empty_send_is_not_a_checkpoint_fails_the_empty_send_property() {
    let failed = failure_of(Fault::EmptySendIsNoCheckpoint);
    assert_eq!(failed.property(), "sending no data is allowed and sends nothing");
    assert_eq!(
        failed.detail(),
        "send_all returned without a checkpoint (it made 0 cancel point(s), 0 schedule point(s); it needs at least one of each)"
    );
}

#[test]
fn a_stream_whose_send_eof_closes_both_directions_fails_the_data_still_flows_back_property() {
    let failed = failure_of(Fault::SendEofClosesBoth);
    assert_eq!(failed.property(), "after one end's send_eof, data and send_eof still flow from the other end");
    assert!(failed.detail().starts_with("send_all failed: Broken error"), "detail: {}", failed.detail());
}

#[test]
fn check_two_way_stream_runs_the_one_way_checks_with_the_ends_swapped() {
    // The first end never reports Busy on receive: the one-way checks pass
    // while it only sends, and fail once the ends are swapped. (The second
    // end's fault shows only in the duplex check, which comes later.)
    let failed = run_io(3, async {
        let maker = || async {
            let (a, b) = memory_stream_pair();
            Ok((Faulty { inner: a, fault: Fault::NeverBusy }, Faulty { inner: b, fault: Fault::LosesAByte }))
        };
        let err = check_two_way_stream(maker, None).await.expect_err("the faulty stream passed");
        Ok(*err.downcast::<CheckFailed>().expect("a CheckFailed"))
    });
    assert_eq!(failed.check(), "check_two_way_stream");
    assert!(failed.with_ends_swapped());
    assert_eq!(failed.property(), "two receive_some calls at once: one fails with BusyResource");
    assert!(failed.to_string().starts_with("check_two_way_stream failed (with the ends swapped): two receive_some"));
}
