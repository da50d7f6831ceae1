//! The poll-level layer (`PollReceive`, `PollSend`) on every byte stream:
//! sockets, the in-memory and lockstep ends and pairs, split halves, pipes
//! and `BufferedReceiveStream`. Each rule of the layer (src/stream/poll.rs)
//! is checked on every kind through `each_kind!`, which runs one generic
//! check per concrete pair of ends.
//!
//! Runs use `io_support`'s mock clock (autojump after 50 ms of real quiet)
//! inside its hang guard, with a fixed seed.

mod io_support;

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use io_support::*;
use trioxide::channel::CHANNEL_BUDGET;
use trioxide::process::{open_process, PipeReceiveStream, PipeSendStream};
use trioxide::testing::{
    lockstep_stream_one_way_pair, lockstep_stream_pair, memory_stream_one_way_pair, memory_stream_pair,
    MemoryReceiveStream, MemorySendStream,
};
use trioxide::{
    checkpoint, current_time, io_stats, move_on_after, open_nursery, sleep, split, wait_all_tasks_blocked, BoxError,
    BufferedReceiveStream, CancelScope, Cancelled, Instant, IoErrorKind, PollReceive, PollSend, ReceiveStream,
    Resource, SendStream, UnixStream,
};

// ------------------------------------------------------------ helpers

async fn recv(r: &impl PollReceive, buf: &mut [u8]) -> io::Result<usize> {
    poll_fn(|cx| r.poll_receive(cx, buf)).await
}

async fn send(s: &impl PollSend, data: &[u8]) -> io::Result<usize> {
    poll_fn(|cx| s.poll_send(cx, data)).await
}

async fn send_all(s: &impl PollSend, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = send(s, data).await?;
        data = &data[n..];
    }
    Ok(())
}

async fn send_eof(s: &impl PollSend) -> io::Result<()> {
    poll_fn(|cx| s.poll_send_eof(cx)).await
}

async fn recv_all(r: &impl PollReceive) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = recv(r, &mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

async fn recv_n(r: &impl PollReceive, n: usize) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let k = recv(r, &mut out[got..]).await?;
        assert_ne!(k, 0, "the end of the stream after {got} of {n} bytes");
        got += k;
    }
    Ok(out)
}

fn pipe() -> (PipeSendStream, PipeReceiveStream) {
    let (r, w) = io::pipe().expect("pipe");
    (PipeSendStream::new(w.into()).expect("pipe end"), PipeReceiveStream::new(r.into()).expect("pipe end"))
}

/// Runs `$check(name, send_end, receive_end)` (an async fn returning
/// `Result<(), BoxError>`) once per kind of stream, `send_end` sending
/// into `receive_end`. The split kinds drop the unused halves at once:
/// a stream closes only when both its halves are closed.
macro_rules! each_kind {
    ($check:ident $(, $arg:expr)*) => {{
        let (s, r) = memory_stream_one_way_pair();
        $check("memory", s, r $(, $arg)*).await?;
        let (s, r) = memory_stream_pair();
        $check("memory pair", s, r $(, $arg)*).await?;
        let (s, r) = lockstep_stream_one_way_pair();
        $check("lockstep", s, r $(, $arg)*).await?;
        let (s, r) = lockstep_stream_pair();
        $check("lockstep pair", s, r $(, $arg)*).await?;
        let (s, r) = UnixStream::pair()?;
        $check("unix", s, r $(, $arg)*).await?;
        let (s, r) = tcp_pair(false);
        $check("tcp", s, r $(, $arg)*).await?;
        let (s, r) = pipe();
        $check("pipe", s, r $(, $arg)*).await?;
        let (a, b) = UnixStream::pair()?;
        let ((_, s), (r, _)) = (split(a), split(b));
        $check("split unix", s, r $(, $arg)*).await?;
        let (a, b) = memory_stream_pair();
        let ((_, s), (r, _)) = (split(a), split(b));
        $check("split memory", s, r $(, $arg)*).await?;
        let (s, r) = memory_stream_one_way_pair();
        $check("buffered memory", s, BufferedReceiveStream::new(r) $(, $arg)*).await?;
    }};
}

/// Kinds whose sending end is a `writev` (sockets, pipes, halves of a
/// socket).
fn vectored(kind: &str) -> bool {
    matches!(kind, "unix" | "tcp" | "pipe" | "split unix")
}

// ------------------------------------------------------ the checks

async fn round_trip<S, R>(kind: &str, s: S, r: R) -> Result<(), BoxError>
where
    S: PollSend + 'static,
    R: PollReceive,
{
    let msg = pattern(7, 64 * 1024);
    let want = msg.clone();
    let r = &r;
    let got = open_nursery(|n| async move {
        n.start_soon(async move {
            send_all(&s, &msg).await?;
            send_eof(&s).await?;
            Ok::<_, BoxError>(())
        })?;
        let got = recv_all(r).await?;
        // The end of the stream stays the end.
        assert_eq!(recv(r, &mut [0u8; 8]).await?, 0, "{kind}: a second read after the end");
        Ok::<_, BoxError>(got)
    })
    .await?
    .expect("not cancelled");
    assert_eq!(got.len(), want.len(), "{kind}");
    assert_same_bytes(&got, &want);
    Ok(())
}

#[test]
fn poll_round_trip_then_the_end_of_the_stream_reads_as_zero_on_every_kind() {
    run_io(1, async {
        each_kind!(round_trip);
        Ok(())
    });
}

async fn cancelled_receive<S, R>(kind: &str, s: S, r: R) -> Result<(), BoxError>
where
    S: SendStream + 'static,
    R: PollReceive,
{
    let r = &r;
    open_nursery(|n| async move {
        n.start_soon(async move { s.send_all(b"every byte").await })?;
        // The bytes are sent (or, lockstep, offered by a waiting send).
        wait_all_tasks_blocked().await?;
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope
            .run(async {
                let e = recv(r, &mut [0u8; 64]).await.expect_err("a cancelled poll_receive fails");
                assert!(
                    e.get_ref().is_some_and(|inner| inner.is::<Cancelled>()),
                    "{kind}: get_ref is Cancelled: {e:?}"
                );
                assert_eq!(trioxide::io_error_kind(&e), Some(IoErrorKind::Cancelled), "{kind}");
                Err::<(), io::Error>(e)
            })
            .await;
        assert!(matches!(out, Ok(None)), "{kind}: the scope catches the io::Error: {out:?}");
        // Nothing was consumed: one receive gets every byte.
        let mut buf = [0u8; 64];
        let n = recv(r, &mut buf).await?;
        assert_eq!(&buf[..n], b"every byte", "{kind}");
        Ok::<_, BoxError>(())
    })
    .await?;
    Ok(())
}

#[test]
fn cancelled_poll_receive_is_an_io_error_carrying_cancelled_that_its_scope_catches_and_consumes_nothing() {
    run_io(1, async {
        each_kind!(cancelled_receive);
        Ok(())
    });
}

async fn busy_receive<S, R>(kind: &str, s: S, r: R) -> Result<(), BoxError>
where
    S: Resource,
    R: PollReceive + ReceiveStream + 'static,
{
    let r = Rc::new(r);
    let waiter: Rc<RefCell<Option<io::Result<usize>>>> = Rc::default();
    let (r2, w2) = (r.clone(), waiter.clone());
    let (r_ref, w_ref, s_ref) = (&r, &waiter, &s);
    open_nursery(|n| async move {
        n.start_soon(async move {
            let out = r2.receive_some(&mut [0u8; 8]).await;
            *w2.borrow_mut() = Some(out);
        })?;
        wait_all_tasks_blocked().await?;
        assert_kind(&recv(&**r_ref, &mut [0u8; 8]).await, IoErrorKind::Busy);
        assert!(w_ref.borrow().is_none(), "{kind}: the Busy poll leaves the async receive alone");
        s_ref.close(); // the waiting receive sees the end
        Ok::<_, BoxError>(())
    })
    .await?;
    let out = waiter.borrow_mut().take().expect("the async receive finished");
    assert_eq!(out?, 0, "{kind}");
    Ok(())
}

#[test]
fn poll_receive_while_an_async_receive_some_waits_in_another_task_is_busy_resource() {
    run_io(1, async {
        each_kind!(busy_receive);
        Ok(())
    });
}

async fn closed<S, R>(kind: &str, s: S, r: R) -> Result<(), BoxError>
where
    S: PollSend,
    R: PollReceive,
{
    r.close();
    assert_kind(&recv(&r, &mut [0u8; 8]).await, IoErrorKind::Closed);
    assert_kind(&recv(&r, &mut []).await, IoErrorKind::Closed);
    s.close();
    assert_kind(&send(&s, b"x").await, IoErrorKind::Closed);
    assert_kind(&poll_fn(|cx| s.poll_send_vectored(cx, &[IoSlice::new(b"x")])).await, IoErrorKind::Closed);
    let _ = kind;
    Ok(())
}

#[test]
fn poll_operations_after_close_are_closed_resource() {
    run_io(1, async {
        each_kind!(closed);
        Ok(())
    });
}

async fn vectored_send<S, R>(kind: &str, s: S, r: R) -> Result<(), BoxError>
where
    S: PollSend + 'static,
    R: PollReceive,
{
    let is_vectored = vectored(kind);
    assert_eq!(s.is_send_vectored(), is_vectored, "{kind}");
    let r = &r;
    let sent = Rc::new(Cell::new(0));
    let sent_ref = &sent;
    let got = open_nursery(|n| async move {
        let out = sent_ref.clone();
        n.start_soon(async move {
            let bufs = [IoSlice::new(b""), IoSlice::new(b"head "), IoSlice::new(b"body")];
            out.set(poll_fn(|cx| s.poll_send_vectored(cx, &bufs)).await?);
            send_eof(&s).await?;
            Ok::<_, BoxError>(())
        })?;
        Ok::<_, BoxError>(recv_all(r).await?)
    })
    .await?
    .expect("not cancelled");
    // One writev takes both; otherwise the first non-empty buffer.
    assert_eq!(sent.get(), if is_vectored { 9 } else { 5 }, "{kind}");
    let want: &[u8] = if is_vectored { b"head body" } else { b"head " };
    assert_eq!(got, want, "{kind}");
    Ok(())
}

#[test]
fn poll_send_vectored_sends_every_buffer_in_one_call_where_the_stream_can() {
    run_io(1, async {
        each_kind!(vectored_send);
        Ok(())
    });
}

async fn eof_twice<S, R>(kind: &str, s: S, r: R) -> Result<(), BoxError>
where
    S: PollSend + 'static,
    R: PollReceive,
{
    let r = &r;
    open_nursery(|n| async move {
        n.start_soon(async move {
            send_all(&s, b"last words").await?;
            send_eof(&s).await?;
            send_eof(&s).await?; // does nothing
            Ok::<_, BoxError>(()) // `s` is dropped (closed) only here
        })?;
        assert_eq!(recv_all(r).await?, b"last words", "{kind}");
        Ok::<_, BoxError>(())
    })
    .await?;
    Ok(())
}

#[test]
fn poll_send_eof_twice_succeeds_and_the_peer_sees_one_end_after_the_data() {
    run_io(1, async {
        each_kind!(eof_twice);
        Ok(())
    });
}

async fn schedule_point<S, R>(kind: &str, s: S, r: R) -> Result<(), BoxError>
where
    S: SendStream + 'static,
    R: PollReceive,
{
    const POLLS: usize = 40;
    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    let (r, log_ref) = (&r, &log);
    open_nursery(|n| async move {
        n.start_soon(async move { s.send_all(&[b'x'; POLLS]).await })?;
        wait_all_tasks_blocked().await?; // all the bytes are there (or offered)
        let l = log_ref.clone();
        n.start_soon(async move {
            for i in 0..4 {
                l.borrow_mut().push(format!("other {i}"));
                checkpoint().await?;
            }
            Ok::<_, BoxError>(())
        })?;
        for i in 0..POLLS {
            // Always finds data: without a schedule point this loop would
            // run all its polls before the other task.
            let mut b = [0u8; 1];
            assert_eq!(recv(r, &mut b).await?, 1, "{kind}");
            log_ref.borrow_mut().push(format!("poll {i}"));
        }
        Ok::<_, BoxError>(())
    })
    .await?;
    let log = log.borrow();
    // The poll layer yields on the channels' budget: a task whose polls
    // always find data yields after at most CHANNEL_BUDGET of them. The
    // next pass may run it first again (a batch runs forwards or
    // reversed), so a run of polls in the log is shorter than two budgets,
    // and the other task gets its turns while the polls go on.
    let mut run = 0;
    let mut longest = 0;
    for e in log.iter() {
        run = if e.starts_with("poll") { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    assert!(longest < 2 * CHANNEL_BUDGET as usize, "{kind}: {longest} polls in a row: {log:?}");
    let at = |what: &str| log.iter().position(|e| e == what).expect("logged");
    assert!(at("other 0") < at(&format!("poll {}", POLLS - 1)), "{kind}: {log:?}");
    Ok(())
}

#[test]
fn a_poll_that_always_finds_data_still_lets_another_runnable_task_run() {
    run_io(1, async {
        each_kind!(schedule_point);
        Ok(())
    });
}

/// A poll-level echo of `n` messages from `a` (sending with `a_tx`,
/// receiving with `a_rx`) to a server task on `b`.
async fn echo<AT, AR, BT, BR>(a_tx: &AT, a_rx: &AR, b_tx: Rc<BT>, b_rx: Rc<BR>, n: usize) -> Result<(), BoxError>
where
    AT: PollSend,
    AR: PollReceive,
    BT: PollSend + 'static,
    BR: PollReceive + 'static,
{
    open_nursery(|nursery| async move {
        nursery.start_soon(async move {
            let mut buf = [0u8; 64];
            loop {
                let k = recv(&*b_rx, &mut buf).await?;
                if k == 0 {
                    return Ok::<_, BoxError>(());
                }
                send_all(&*b_tx, &buf[..k]).await?;
            }
        })?;
        for i in 0..n {
            let msg = format!("message {i:04}");
            send_all(a_tx, msg.as_bytes()).await?;
            assert_eq!(recv_n(a_rx, msg.len()).await?, msg.as_bytes());
        }
        send_eof(a_tx).await?;
        Ok::<_, BoxError>(())
    })
    .await?;
    Ok(())
}

#[test]
fn a_poll_level_echo_registers_each_waiting_fd_once_and_no_other() {
    run_io(1, async {
        const N: usize = 200;
        // TCP: two fds, each waits for the other's message first.
        let before = io_stats().registrations;
        let (a, b) = tcp_pair(false);
        let b = Rc::new(b);
        echo(&a, &a, b.clone(), b, N).await?;
        assert_eq!(io_stats().registrations - before, 2, "tcp: one EPOLL_CTL_ADD per fd");

        let before = io_stats().registrations;
        let (a, b) = UnixStream::pair()?;
        let b = Rc::new(b);
        echo(&a, &a, b.clone(), b, N).await?;
        assert_eq!(io_stats().registrations - before, 2, "unix: one EPOLL_CTL_ADD per fd");

        // Pipes: four fds; only the two read ends ever wait (the messages
        // are small, the pipes never fill).
        let before = io_stats().registrations;
        let (to_server, server_in) = pipe();
        let (server_out, from_server) = pipe();
        echo(&to_server, &from_server, Rc::new(server_out), Rc::new(server_in), N).await?;
        assert_eq!(io_stats().registrations - before, 2, "pipes: one EPOLL_CTL_ADD per read end");
        Ok(())
    });
}

// --------------------------------------- rules of particular streams

#[test]
fn memory_hooks_run_at_the_poll_level_once_per_receive_and_send() {
    run_io(1, async {
        // A receive hook that waits a second, then delivers one byte.
        let rx = MemoryReceiveStream::new();
        let calls = Rc::new(Cell::new(0));
        let c = calls.clone();
        rx.set_receive_some_hook(move |rx| {
            c.set(c.get() + 1);
            Box::pin(async move {
                sleep(Duration::from_secs(1)).await?;
                rx.put_data(b"x")
            })
        });
        let t0 = current_time();
        let mut buf = [0u8; 8];
        assert_eq!(recv(&rx, &mut buf).await?, 1);
        assert_eq!(&buf[..1], b"x");
        assert_eq!(current_time(), t0 + Duration::from_secs(1), "the hook's wait is the receive's");
        assert_eq!(calls.get(), 1, "one hook run per receive, over several polls");
        // Cancelled while its hook waits: nothing consumed, the hook
        // starts over on the next receive.
        rx.put_data(b"kept")?;
        assert_eq!(move_on_after(Duration::from_millis(500), recv(&rx, &mut buf)).await?, None);
        assert_eq!(rx.buffered(), 4);
        assert_eq!(calls.get(), 2);
        assert_eq!(recv(&rx, &mut buf).await?, 5); // "kept" and the hook's "x"
        assert_eq!(&buf[..5], b"keptx");
        assert_eq!(calls.get(), 3);

        // A send hook that waits, then pumps: the count comes when it is done.
        let tx = MemorySendStream::new();
        let sink = Rc::new(MemoryReceiveStream::new());
        let to = sink.clone();
        tx.set_send_all_hook(move |tx| {
            let to = to.clone();
            Box::pin(async move {
                sleep(Duration::from_secs(2)).await?;
                trioxide::testing::memory_stream_pump(tx, &to, None)?;
                Ok(())
            })
        });
        let t0 = current_time();
        assert_eq!(send(&tx, b"abc").await?, 3);
        assert_eq!(current_time(), t0 + Duration::from_secs(2));
        assert_eq!(tx.buffered(), 0);
        assert_eq!(sink.buffered(), 3);
        // Dropping the stand-in the hook was given closed nothing.
        assert_eq!(send(&tx, b"d").await?, 1);
        Ok(())
    });
}

#[test]
fn lockstep_poll_send_reports_what_the_receiver_took_and_takes_the_rest_back() {
    run_io(1, async {
        let (tx, rx) = lockstep_stream_one_way_pair();
        let tx = &tx;
        open_nursery(|n| async move {
            let got: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
            let g = got.clone();
            n.start_soon(async move {
                for len in [2usize, 8] {
                    let mut buf = vec![0u8; len];
                    let k = recv(&rx, &mut buf).await?;
                    g.borrow_mut().push(buf[..k].to_vec());
                    // Let the sender see what was taken before taking more
                    // (a poll that finds data does not always yield).
                    wait_all_tasks_blocked().await?;
                }
                Ok::<_, BoxError>(())
            })?;
            // The receiver takes 2 of 5: the send reports 2 ...
            assert_eq!(send(tx, b"hello").await?, 2);
            // ... and the rest was taken back: the next send offers "llo".
            assert_eq!(send(tx, b"llo").await?, 3);
            wait_all_tasks_blocked().await?;
            assert_eq!(*got.borrow(), [b"he".to_vec(), b"llo".to_vec()]);
            Ok::<_, BoxError>(())
        })
        .await?;

        // An async send_all holding the direction: a poll is Busy.
        let (tx, rx) = lockstep_stream_one_way_pair();
        let tx = Rc::new(tx);
        let (tx_ref, rx_ref) = (&tx, &rx);
        open_nursery(|n| async move {
            let t = tx_ref.clone();
            n.start_soon(async move { t.send_all(b"waits").await })?;
            wait_all_tasks_blocked().await?;
            assert_kind(&send(&**tx_ref, b"x").await, IoErrorKind::Busy);
            assert_eq!(recv_n(rx_ref, 5).await?, b"waits");
            Ok::<_, BoxError>(())
        })
        .await?;
        Ok(())
    });
}

#[test]
fn lockstep_poll_send_polled_again_with_other_data_after_a_partial_take_breaks_the_stream() {
    run_io(1, async {
        let (tx, rx) = lockstep_stream_one_way_pair();
        let mut fut_data = *b"abc";
        // First poll: offers "abc", returns Pending.
        let first = poll_fn(|cx| std::task::Poll::Ready(tx.poll_send(cx, &fut_data))).await;
        assert!(first.is_pending());
        // The receiver takes one byte of the offer.
        assert_eq!(recv(&rx, &mut [0u8; 1]).await?, 1);
        // Polled again with bytes that do not start with what was taken.
        fut_data[0] = b'z';
        assert_kind(&send(&tx, &fut_data).await, IoErrorKind::Broken);
        assert_kind(&tx.send_all(b"more").await, IoErrorKind::Broken);
        Ok(())
    });
}

#[test]
fn buffered_poll_receive_serves_the_buffered_bytes_first_and_is_busy_during_an_async_call() {
    run_io(1, async {
        let (tx, rx) = memory_stream_one_way_pair();
        let rx = Rc::new(BufferedReceiveStream::new(rx));
        tx.send_all(b"head\nbody").await?;
        assert_eq!(rx.next_line(64).await?.as_deref(), Some(&b"head"[..]));
        assert_eq!(rx.buffered(), 4);
        tx.send_all(b" more").await?;
        let mut buf = [0u8; 64];
        let n = recv(&*rx, &mut buf).await?;
        assert_eq!(&buf[..n], b"body", "the buffer first, even with more in the stream");
        let n = recv(&*rx, &mut buf).await?;
        assert_eq!(&buf[..n], b" more");
        let (rx_ref, tx_ref) = (&rx, &tx);
        open_nursery(|n| async move {
            let r = rx_ref.clone();
            n.start_soon(async move {
                assert_eq!(r.next_line(64).await?.as_deref(), Some(&b"line"[..]));
                Ok::<_, BoxError>(())
            })?;
            wait_all_tasks_blocked().await?;
            assert_kind(&recv(&**rx_ref, &mut [0u8; 8]).await, IoErrorKind::Busy);
            tx_ref.send_all(b"line\n").await?;
            Ok::<_, BoxError>(())
        })
        .await?;
        Ok(())
    });
}

#[test]
fn closing_a_split_half_wakes_a_task_waiting_in_a_poll_of_it_with_closed_resource() {
    run_io(1, async {
        let (a, _b) = UnixStream::pair()?;
        let (rx, _tx) = split(a);
        let rx = Rc::new(rx);
        type Outcome = Option<(io::Result<usize>, Instant)>;
        let out: Rc<RefCell<Outcome>> = Rc::default();
        let (rx_ref, out_ref) = (&rx, &out);
        open_nursery(|n| async move {
            let (r, o) = (rx_ref.clone(), out_ref.clone());
            n.start_soon(async move {
                let got = recv(&*r, &mut [0u8; 8]).await;
                *o.borrow_mut() = Some((got, current_time()));
            })?;
            wait_all_tasks_blocked().await?;
            rx_ref.close();
            Ok::<_, BoxError>(())
        })
        .await?;
        let (got, when) = out.borrow_mut().take().expect("the poller finished");
        assert_kind(&got, IoErrorKind::Closed);
        assert_eq!(when, Instant::ZERO, "woken by the close, not by the hang guard");
        Ok(())
    });
}

#[test]
fn poll_level_io_with_a_child_process_through_its_pipes() {
    run_io(1, async {
        let mut cmd = Command::new("cat");
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = open_process(cmd)?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let msg = pattern(3, 200 * 1024); // more than a pipe holds: both sides wait
        let want = msg.clone();
        let got = open_nursery(|n| async move {
            n.start_soon(async move {
                send_all(&stdin, &msg).await?;
                send_eof(&stdin).await?; // closes: cat sees the end
                Ok::<_, BoxError>(())
            })?;
            Ok::<_, BoxError>(recv_all(&stdout).await?)
        })
        .await?
        .expect("not cancelled");
        assert_same_bytes(&got, &want);
        assert!(child.wait().await?.success());
        Ok(())
    });
}
