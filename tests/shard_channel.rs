//! Cross-shard channels (issue 13, item 3): the memory channel's semantics
//! between threads, between two shards of `run_sharded` and between a plain
//! thread and a run, and a stress test with random cancellation in which
//! every value must arrive exactly once.
//!
//! Threads meet in real time, so every test that blocks runs on a helper
//! thread and fails (instead of hanging) after `SAFETY`. A thread that must
//! wait for a task to block watches the channel's statistics (the waiter
//! counts) rather than sleeping; timeouts inside runs use a `MockClock`.

use std::error::Error as _;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::Poll;
use std::thread;
use std::time::{Duration, Instant};

use trioxide::channel::{
    MemoryChannelStatistics, ReceiveError, SendErrorKind, TryReceiveError, TrySendError, UNBOUNDED,
};
use trioxide::shard_channel::{ShardReceiveChannel, ShardSendChannel};
use trioxide::{
    move_on_after, open_nursery, open_shard_channel, run, run_sharded, to_thread, BoxError, BrokenResource, Builder,
    CancelScope, ClosedResource, MockClock,
};

/// Far above any real latency; only there to turn a hang into a failure.
const SAFETY: Duration = Duration::from_secs(60);

/// Runs `f` on its own thread and returns its result (resuming its panic),
/// or fails the test if it has not returned within `SAFETY`.
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(SAFETY) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => resume_unwind(panic),
            Ok(()) => unreachable!("the thread ended without sending its result"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the test hung for {SAFETY:?}"),
    }
}

/// Spins (yielding the CPU) until `cond` holds; fails after `SAFETY`.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < SAFETY, "timed out waiting until {what}");
        thread::yield_now();
    }
}

/// A run whose timeouts end at once in virtual time.
fn autojump() -> Builder {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    Builder::new().clock(clock)
}

/// The channel's buffer and waiter counts, for exact comparisons.
fn load(s: MemoryChannelStatistics) -> (usize, usize, usize) {
    (s.current_buffer_used, s.tasks_waiting_send, s.tasks_waiting_receive)
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn handles_are_send_and_sync_for_send_values() {
    assert_send_sync::<ShardSendChannel<Vec<u8>>>();
    assert_send_sync::<ShardReceiveChannel<Vec<u8>>>();
    // Not only the handles: the futures can be sent too (not needed by a
    // run, whose tasks need not be Send, but harmless).
    fn future_is_send<F: Future + Send>(_: &F) {}
    let (tx, rx) = open_shard_channel::<String>(1);
    let send = tx.send(String::new());
    future_is_send(&send);
    future_is_send(&rx.receive());
    drop(send);
}

// ------------------------------------------------------------ between shards

/// Shard 0 sends `0..n`, shard 1 receives until the end of the channel and
/// returns what it got; then checks what a drained, ended channel reports.
fn stream_between_shards(capacity: usize, n: u64) -> (Vec<u64>, MemoryChannelStatistics) {
    bounded(move || {
        let (tx, rx) = open_shard_channel::<u64>(capacity);
        let (tx, rx) = (Mutex::new(Some(tx)), Mutex::new(Some(rx)));
        let out = run_sharded(2, |shard| {
            let tx = if shard.index() == 0 { tx.lock().unwrap().take() } else { None };
            let rx = if shard.index() == 1 { rx.lock().unwrap().take() } else { None };
            async move {
                if let Some(tx) = tx {
                    for i in 0..n {
                        tx.send(i).await?;
                    }
                    return Ok::<_, BoxError>((Vec::new(), None));
                }
                let rx = rx.ok_or("shard 1 has the receiver")?;
                let mut got = Vec::new();
                loop {
                    match rx.receive().await {
                        Ok(v) => got.push(v),
                        Err(ReceiveError::EndOfChannel) => break,
                        Err(e) => return Err(e.into()),
                    }
                }
                // The end is final.
                assert_eq!(rx.receive().await, Err(ReceiveError::EndOfChannel));
                assert_eq!(rx.try_receive(), Err(TryReceiveError::EndOfChannel));
                Ok((got, Some(rx.statistics())))
            }
        })
        .unwrap();
        let mut out = out.into_iter();
        let (sent, none) = out.next().unwrap();
        assert_eq!((sent, none), (Vec::new(), None));
        let (got, stats) = out.next().unwrap();
        (got, stats.unwrap())
    })
}

#[test]
fn bounded_channel_carries_values_between_shards_in_order_then_ends() {
    let (got, s) = stream_between_shards(16, 20_000);
    assert_eq!(got, (0..20_000).collect::<Vec<_>>());
    assert_eq!(load(s), (0, 0, 0));
    assert_eq!((s.open_send_channels, s.open_receive_channels, s.max_buffer_size), (0, 1, 16));
    assert!(s.peak_buffer_used <= 16, "a bounded buffer never holds more than its capacity: {s:?}");
}

#[test]
fn unbounded_channel_carries_values_between_shards_in_order_then_ends() {
    let (got, s) = stream_between_shards(UNBOUNDED, 20_000);
    assert_eq!(got, (0..20_000).collect::<Vec<_>>());
    assert_eq!(load(s), (0, 0, 0));
    assert_eq!(s.max_buffer_size, UNBOUNDED);
}

#[test]
fn rendezvous_channel_carries_values_between_shards_without_buffering() {
    let (got, s) = stream_between_shards(0, 2_000);
    assert_eq!(got, (0..2_000).collect::<Vec<_>>());
    assert_eq!(load(s), (0, 0, 0));
    // Every value went straight from a sender to a receiver.
    assert_eq!(s.peak_buffer_used, 0);
}

/// A value that counts its drops.
struct Tracked(u32, Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn closing_every_receiver_on_one_shard_breaks_a_sender_blocked_on_the_other() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let out = bounded(move || {
        let (tx, rx) = open_shard_channel::<Tracked>(1);
        let rx2 = rx.clone();
        let (tx, rxs) = (Mutex::new(Some(tx)), Mutex::new(Some((rx, rx2))));
        let drops = d;
        run_sharded(2, |shard| {
            let tx = if shard.index() == 0 { tx.lock().unwrap().take() } else { None };
            let rxs = if shard.index() == 1 { rxs.lock().unwrap().take() } else { None };
            let drops = drops.clone();
            async move {
                if let Some(tx) = tx {
                    tx.send(Tracked(1, drops.clone())).await.map_err(|e| e.to_string())?;
                    // The buffer is full: this one blocks until shard 1
                    // closes both receive handles.
                    let err = match tx.send(Tracked(2, drops.clone())).await {
                        Err(e) => e,
                        Ok(()) => return Err("the send went through".into()),
                    };
                    assert_eq!(err.kind(), SendErrorKind::Broken);
                    assert!(err.source().is_some_and(|s| s.is::<BrokenResource>()));
                    assert_eq!(err.value().0, 2, "the failed send gives its own value back");
                    // The buffered value was dropped with the last receiver.
                    assert_eq!((drops.load(Ordering::SeqCst), tx.statistics().current_buffer_used), (1, 0));
                    drop(err);
                    match tx.try_send(Tracked(3, drops.clone())) {
                        Err(TrySendError::Broken(v)) => assert_eq!(v.0, 3),
                        other => return Err(format!("try_send after every receiver closed: {other:?}").into()),
                    }
                    return Ok::<_, BoxError>(tx.statistics());
                }
                let (rx, rx2) = rxs.ok_or("shard 1 has the receivers")?;
                let probe = rx.clone();
                to_thread::run_sync(move || {
                    wait_until("the sender blocks", || probe.statistics().tasks_waiting_send == 1)
                })
                .await?;
                rx.close();
                assert_eq!(rx.statistics().open_receive_channels, 1, "rx2 still receives");
                drop(rx2);
                Ok(rx.statistics())
            }
        })
        .unwrap()
    });
    assert_eq!(drops.load(Ordering::SeqCst), 3);
    // Shard 0 saw its own handle open; shard 1 may look after it closed.
    assert_eq!((out[0].open_send_channels, out[0].open_receive_channels), (1, 0));
    assert_eq!(out[1].open_receive_channels, 0);
    assert_eq!((load(out[0]), load(out[1])), ((0, 0, 0), (0, 0, 0)));
}

// ------------------------------------------------------------ a thread and a run

#[test]
fn rendezvous_hands_over_exactly_when_both_sides_meet() {
    bounded(|| {
        let (tx, rx) = open_shard_channel::<u32>(0);
        // Nobody waits: a rendezvous has no room, in either direction.
        assert!(matches!(tx.try_send(1), Err(TrySendError::WouldBlock(1))));
        assert_eq!(rx.try_receive(), Err(TryReceiveError::WouldBlock));
        thread::scope(|s| {
            let helper = s.spawn(|| {
                // A receiver waits in the run: the next send meets it.
                wait_until("the run's receive blocks", || rx.statistics().tasks_waiting_receive == 1);
                assert!(tx.try_send(2).is_ok());
                // It was served; nobody waits now.
                assert!(matches!(tx.try_send(3), Err(TrySendError::WouldBlock(3))));
                // A sender waits in the run, holding its value (not buffered).
                wait_until("the run's send blocks", || tx.statistics().tasks_waiting_send == 1);
                assert_eq!(load(rx.statistics()), (0, 1, 0));
                assert_eq!(rx.try_receive(), Ok(4));
                assert_eq!(rx.try_receive(), Err(TryReceiveError::WouldBlock));
            });
            run(async {
                assert_eq!(rx.receive().await, Ok(2));
                tx.send(4).await.map_err(|e| e.to_string())?;
                Ok::<_, BoxError>(())
            })
            .unwrap();
            helper.join().unwrap();
        });
        assert_eq!(tx.statistics().peak_buffer_used, 0);
    });
}

#[test]
fn end_of_channel_comes_only_after_every_sender_clone_closes_and_the_buffer_drains() {
    bounded(|| {
        let (tx_a, rx) = open_shard_channel::<u32>(4);
        let (tx_b, tx_c) = (tx_a.clone(), tx_a.clone());
        assert_eq!(rx.statistics().open_send_channels, 3);
        thread::scope(|s| {
            let helper = s.spawn(move || {
                drop(tx_a);
                tx_b.try_send(1).unwrap();
                drop(tx_b);
                // The run took 1 and waits again: tx_c is still open.
                wait_until("the run's second receive blocks", || tx_c.statistics().tasks_waiting_receive == 1);
                assert_eq!(tx_c.statistics().open_send_channels, 1);
                tx_c.try_send(2).unwrap();
                tx_c.try_send(3).unwrap();
                tx_c.close();
                assert_eq!(tx_c.statistics().open_send_channels, 0);
            });
            let got = run(async {
                let mut got = Vec::new();
                loop {
                    match rx.receive().await {
                        Ok(v) => got.push(v),
                        Err(e) => return (got, e),
                    }
                }
            });
            helper.join().unwrap();
            // Values sent before the last close are still received.
            assert_eq!(got, (vec![1, 2, 3], ReceiveError::EndOfChannel));
        });
    });
}

#[test]
fn closing_one_receive_handle_fails_only_its_own_blocked_receives() {
    bounded(|| {
        let (tx, rx_a) = open_shard_channel::<u32>(0);
        let rx_b = rx_a.clone();
        let rx_a = Arc::new(rx_a);
        let closer = rx_a.clone();
        thread::scope(|s| {
            let helper = s.spawn(|| {
                wait_until("both receives block", || tx.statistics().tasks_waiting_receive == 2);
                closer.close();
                assert_eq!(tx.statistics().tasks_waiting_receive, 1);
                assert_eq!(tx.statistics().open_receive_channels, 1);
                tx.try_send(9).unwrap();
            });
            let a = Arc::new(Mutex::new(None));
            let b = run(open_nursery(|n| {
                let (a, rx_a) = (a.clone(), rx_a.clone());
                async move {
                    n.start_soon(async move {
                        *a.lock().unwrap() = Some(rx_a.receive().await);
                        Ok::<_, BoxError>(())
                    })?;
                    Ok::<_, BoxError>(rx_b.receive().await)
                }
            }));
            helper.join().unwrap();
            assert_eq!(*a.lock().unwrap(), Some(Err(ReceiveError::Closed)));
            assert_eq!(b.unwrap(), Some(Ok(9)));
        });
    });
}

#[test]
fn closing_one_send_handle_fails_only_its_own_blocked_sends_and_returns_the_value() {
    bounded(|| {
        let (tx_a, rx) = open_shard_channel::<String>(0);
        let tx_b = tx_a.clone();
        let tx_a = Arc::new(tx_a);
        let closer = tx_a.clone();
        thread::scope(|s| {
            let helper = s.spawn(|| {
                wait_until("both sends block", || rx.statistics().tasks_waiting_send == 2);
                closer.close();
                assert_eq!(load(rx.statistics()), (0, 1, 0));
                assert_eq!(rx.try_receive().as_deref(), Ok("b"));
            });
            let a = Arc::new(Mutex::new(None));
            let b = run(open_nursery(|n| {
                let (a, tx_a) = (a.clone(), tx_a.clone());
                async move {
                    n.start_soon(async move {
                        let out = tx_a.send("a".to_string()).await.map_err(|e| (e.kind(), e.into_inner()));
                        *a.lock().unwrap() = Some(out);
                        Ok::<_, BoxError>(())
                    })?;
                    Ok::<_, BoxError>(tx_b.send("b".to_string()).await.is_ok())
                }
            }));
            helper.join().unwrap();
            assert_eq!(*a.lock().unwrap(), Some(Err((SendErrorKind::Closed, "a".to_string()))));
            assert_eq!(b.unwrap(), Some(true));
        });
    });
}

#[test]
fn clones_are_counted_on_every_thread_and_a_closed_handle_clones_closed() {
    let (tx, rx) = open_shard_channel::<u8>(1);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let (t, r) = (tx.clone(), rx.clone());
                // Handles move between threads, and drop there.
                thread::scope(|s2| {
                    s2.spawn(move || drop((t, r)));
                });
            });
        }
    });
    let s = tx.statistics();
    assert_eq!((s.open_send_channels, s.open_receive_channels), (1, 1));
    let (tx2, rx2) = (tx.clone(), rx.try_clone().unwrap());
    assert_eq!((rx.statistics().open_send_channels, rx.statistics().open_receive_channels), (2, 2));
    tx.close();
    rx.close();
    assert_eq!(tx.try_clone().err(), Some(ClosedResource));
    assert_eq!(rx.try_clone().err(), Some(ClosedResource));
    let (tx3, rx3) = (tx.clone(), rx.clone());
    assert!(tx3.is_closed() && rx3.is_closed());
    let s = tx2.statistics();
    assert_eq!((s.open_send_channels, s.open_receive_channels), (1, 1), "closed clones are not counted");
    drop((tx2, tx3));
    assert_eq!(rx2.try_receive(), Err(TryReceiveError::EndOfChannel));
}

#[test]
fn try_operations_report_would_block_broken_closed_and_end() {
    let (tx, rx) = open_shard_channel::<u8>(1);
    assert_eq!(rx.try_receive(), Err(TryReceiveError::WouldBlock));
    assert!(tx.try_send(1).is_ok());
    let err = tx.try_send(2).unwrap_err();
    assert!(err.source().is_some_and(|s| s.is::<trioxide::WouldBlock>()));
    assert!(matches!(err, TrySendError::WouldBlock(2)));
    tx.close();
    assert!(matches!(tx.try_send(3), Err(TrySendError::Closed(3))));
    // Buffered values outlive the senders.
    assert_eq!(rx.try_receive(), Ok(1));
    assert_eq!(rx.try_receive(), Err(TryReceiveError::EndOfChannel));
    rx.close();
    assert_eq!(rx.try_receive(), Err(TryReceiveError::Closed));
    let (tx, rx) = open_shard_channel::<u8>(UNBOUNDED);
    drop(rx);
    assert!(matches!(tx.try_send(4), Err(TrySendError::Broken(4))));
}

#[test]
fn plain_thread_and_run_stream_both_ways_with_blocking_operations() {
    const N: u64 = 20_000;
    bounded(|| {
        let (to_run, from_thread) = open_shard_channel::<u64>(16);
        let (to_thread, from_run) = open_shard_channel::<u64>(0);
        let worker = thread::spawn(move || {
            let mut echoed = Vec::new();
            for i in 0..N {
                to_run.send_blocking(i).unwrap();
                if i % 100 == 0 {
                    echoed.push(from_run.receive_blocking().unwrap());
                }
            }
            drop(to_run);
            assert_eq!(from_run.receive_blocking(), Err(ReceiveError::EndOfChannel));
            echoed
        });
        let got = run(async move {
            let mut got = Vec::new();
            while let Ok(v) = from_thread.receive().await {
                if v % 100 == 0 {
                    to_thread.send(v * 2).await.map_err(|e| e.to_string())?;
                }
                got.push(v);
            }
            Ok::<_, BoxError>(got)
        })
        .unwrap();
        assert_eq!(got, (0..N).collect::<Vec<_>>());
        assert_eq!(worker.join().unwrap(), (0..N).step_by(100).map(|v| v * 2).collect::<Vec<_>>());
    });
}

#[test]
fn blocking_operations_panic_inside_a_run() {
    let (tx, rx) = open_shard_channel::<u8>(1);
    let send = catch_unwind(AssertUnwindSafe(|| run(async { tx.send_blocking(1) })));
    let receive = catch_unwind(AssertUnwindSafe(|| run(async { rx.receive_blocking() })));
    for (what, out) in [("send_blocking", send.map(|_| ())), ("receive_blocking", receive.map(|_| ()))] {
        let panic = out.expect_err("a blocking operation inside a run panics");
        let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains(what) && msg.contains("cannot be called inside a trioxide run"), "{msg}");
    }
    // Nothing happened to the channel.
    assert_eq!(load(tx.statistics()), (0, 0, 0));
}

/// Busy-waits `us` microseconds: a varying head start for another thread
/// (0-99 µs spans a thread's start-up, so the race is hit at every stage).
fn spin_for_micros(us: u32) {
    let until = Instant::now() + Duration::from_micros(u64::from(us));
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

#[test]
fn a_close_racing_a_send_on_the_same_shared_handle_never_strands_the_send() {
    // The handles are Sync: one thread may close a handle while another
    // sends on it. The send must end with `Closed`, whichever comes first
    // (a send that queued after the close had failed its waiters would
    // block forever, and `bounded` would report the hang).
    bounded(|| {
        let rounds = if std::env::var_os("TRIOXIDE_VALGRIND").is_some() { 50 } else { 500 };
        for round in 0..rounds {
            let (tx, rx) = open_shard_channel::<u32>(0);
            // Other handles stay open (and idle), so the outcomes are
            // `Closed`, not `Broken` or `EndOfChannel`.
            let (_tx2, _rx2) = (tx.clone(), rx.clone());
            let sent = thread::scope(|s| {
                let sender = s.spawn(|| tx.send_blocking(round).map_err(|e| (e.kind(), e.into_inner())));
                spin_for_micros(round % 100);
                tx.close();
                sender.join().unwrap()
            });
            assert_eq!(sent, Err((SendErrorKind::Closed, round)), "round {round}");
            let received = thread::scope(|s| {
                let receiver = s.spawn(|| rx.receive_blocking());
                spin_for_micros(round % 100);
                rx.close();
                receiver.join().unwrap()
            });
            assert_eq!(received, Err(ReceiveError::Closed), "round {round}");
        }
    });
}

// ------------------------------------------------------------ cancellation

#[test]
fn cancelled_send_sends_nothing_and_gives_the_value_back() {
    let (tx, rx) = open_shard_channel::<Vec<u8>>(0);
    let (tx1, rx1) = open_shard_channel::<u8>(4);
    autojump().run(async {
        // Blocked, then cancelled by its deadline.
        let out = move_on_after(Duration::from_secs(1), async {
            match tx.send(vec![1, 2, 3]).await {
                Err(e) if e.is_cancelled() => Ok(e.into_inner()),
                other => panic!("unexpected {other:?}"),
            }
        })
        .await;
        assert_eq!(out, Ok::<_, trioxide::Cancelled>(Some(vec![1, 2, 3])));
        // Cancelled on entry: nothing happens even though there is room.
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope.run(async { tx1.send(7).await }).await;
        assert!(matches!(out, Ok(None)));
    });
    // Another thread finds nothing in either channel.
    thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(rx.try_receive(), Err(TryReceiveError::WouldBlock));
            assert_eq!(load(rx.statistics()), (0, 0, 0));
            assert_eq!(rx1.try_receive(), Err(TryReceiveError::WouldBlock));
            assert_eq!(rx1.statistics().peak_buffer_used, 0);
        });
    });
}

/// Polls `fut` once, in place.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

#[test]
fn a_receive_cancelled_after_another_thread_handed_it_a_value_returns_the_value() {
    let (tx, rx) = open_shard_channel::<u32>(0);
    run(async {
        let mut fut = rx.receive();
        assert!(poll_once(&mut fut).await.is_pending());
        // The hand-over happens on another thread while the task is away.
        thread::scope(|s| {
            s.spawn(|| tx.try_send(7).unwrap());
        });
        assert_eq!(load(rx.statistics()), (0, 0, 0), "7 belongs to the queued receive now");
        let scope = CancelScope::new();
        scope.cancel();
        // Cancelled, but the value was already handed over: it is returned.
        assert_eq!(scope.run(fut).await, Ok(Some(7)));
        assert_eq!(rx.try_receive(), Err(TryReceiveError::WouldBlock));
    });
}

#[test]
fn a_receive_dropped_after_a_hand_over_puts_the_value_back_at_the_front() {
    let (tx, rx) = open_shard_channel::<u32>(0);
    run(async {
        let mut first = rx.receive();
        let mut second = rx.receive();
        assert!(poll_once(&mut first).await.is_pending());
        assert!(poll_once(&mut second).await.is_pending());
        thread::scope(|s| {
            s.spawn(|| tx.try_send(1).unwrap());
        });
        // `first` got 1; dropped, it passes 1 on to the next blocked receive.
        drop(first);
        assert_eq!(second.await, Ok(1));
        let mut third = rx.receive();
        assert!(poll_once(&mut third).await.is_pending());
        thread::scope(|s| {
            s.spawn(|| tx.try_send(2).unwrap());
        });
        // Nobody else waits: back into the buffer, even beyond a
        // rendezvous' capacity of zero, ahead of anything sent later.
        drop(third);
        assert_eq!(load(rx.statistics()), (1, 0, 0));
        assert!(matches!(tx.try_send(3), Err(TrySendError::WouldBlock(3))));
        assert_eq!(rx.try_receive(), Ok(2));
    });
}

// ------------------------------------------------ the unbounded batch
//
// An unbounded channel's receive that finds values waiting moves the whole
// buffer into a batch the receive handles share (DESIGN.md 18, "Cross-shard
// channels"). The batch must be invisible: the same order, the same counts,
// the same end of channel, the same drops at close.

#[test]
fn an_unbounded_receive_keeps_fifo_order_and_counts_across_its_batch() {
    let (tx, rx) = open_shard_channel::<u32>(UNBOUNDED);
    for i in 0..5 {
        tx.try_send(i).unwrap();
    }
    // Takes 0 and moves 1..5 into the batch.
    assert_eq!(rx.try_receive(), Ok(0));
    assert_eq!(load(tx.statistics()), (4, 0, 0));
    for i in 5..7 {
        tx.try_send(i).unwrap();
    }
    assert_eq!(load(rx.statistics()), (6, 0, 0));
    let got: Vec<u32> = (0..6).map(|_| rx.try_receive().unwrap()).collect();
    assert_eq!(got, [1, 2, 3, 4, 5, 6]);
    assert_eq!(rx.try_receive(), Err(TryReceiveError::WouldBlock));
    assert_eq!(load(tx.statistics()), (0, 0, 0));
}

#[test]
fn an_unbounded_channel_ends_only_after_its_batch_drains() {
    let (tx, rx) = open_shard_channel::<u32>(UNBOUNDED);
    for i in 0..3 {
        tx.try_send(i).unwrap();
    }
    assert_eq!(rx.try_receive(), Ok(0));
    drop(tx);
    assert_eq!(rx.receive_blocking(), Ok(1));
    assert_eq!(run(async { rx.receive().await }), Ok(2));
    assert_eq!(rx.try_receive(), Err(TryReceiveError::EndOfChannel));
    assert_eq!(rx.receive_blocking(), Err(ReceiveError::EndOfChannel));
}

/// Counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn closing_the_last_receiver_drops_the_batched_values_at_once_and_breaks_senders() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = open_shard_channel::<Counted>(UNBOUNDED);
    let rx2 = rx.clone();
    for _ in 0..4 {
        assert!(tx.try_send(Counted(drops.clone())).is_ok());
    }
    drop(rx.try_receive().unwrap()); // one delivered and dropped, three batched
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    rx.close();
    // Another receive handle is open: the batch is still the channel's.
    assert_eq!((drops.load(Ordering::SeqCst), tx.statistics().current_buffer_used), (1, 3));
    drop(rx2.try_receive().unwrap());
    drop(rx2);
    assert_eq!((drops.load(Ordering::SeqCst), tx.statistics().current_buffer_used), (4, 0));
    match tx.try_send(Counted(drops.clone())) {
        Err(TrySendError::Broken(v)) => drop(v),
        other => panic!("expected Broken, got ok={}", other.is_ok()),
    }
    assert_eq!(drops.load(Ordering::SeqCst), 5);
}

#[test]
fn an_unbounded_receive_dropped_while_yielding_puts_its_value_before_the_batch() {
    let (tx, rx) = open_shard_channel::<u32>(UNBOUNDED);
    run(open_nursery(|n| {
        let (tx, rx) = (&tx, &rx);
        async move {
            // A runnable sibling, so that a receive that takes the last
            // value yields before returning it (the "exhausted" rule).
            n.start_soon(async { Ok::<_, BoxError>(()) })?;
            tx.try_send(1).unwrap();
            let mut first = rx.receive();
            assert!(poll_once(&mut first).await.is_pending(), "took 1 and yields");
            tx.try_send(2).unwrap();
            tx.try_send(3).unwrap();
            // Takes 2 and moves 3 into the batch.
            assert_eq!(rx.try_receive(), Ok(2));
            drop(first); // 1 goes back in front of 3, not behind it
            assert_eq!(load(rx.statistics()), (2, 0, 0));
            assert_eq!(rx.try_receive(), Ok(1));
            assert_eq!(rx.try_receive(), Ok(3));
            Ok::<_, BoxError>(())
        }
    }))
    .unwrap();
}

#[test]
fn unbounded_receivers_on_two_threads_share_one_batch_and_get_each_value_once() {
    const N: u32 = 20_000;
    let (tx, rx) = open_shard_channel::<u32>(UNBOUNDED);
    let rx2 = rx.clone();
    let (a, b) = bounded(move || {
        let other = thread::spawn(move || {
            let mut got = Vec::new();
            while let Ok(v) = rx2.receive_blocking() {
                got.push(v);
            }
            got
        });
        let producer = thread::spawn(move || {
            for i in 0..N {
                tx.send_blocking(i).unwrap();
            }
        });
        let mine = run(async move {
            let mut got = Vec::new();
            while let Ok(v) = rx.receive().await {
                got.push(v);
            }
            got
        });
        producer.join().unwrap();
        (mine, other.join().unwrap())
    });
    for share in [&a, &b] {
        assert!(share.windows(2).all(|w| w[0] < w[1]), "each receiver sees the values in order");
    }
    let mut all = [a, b].concat();
    all.sort_unstable();
    assert_eq!(all, (0..N).collect::<Vec<_>>());
}

#[test]
fn a_receive_cancelled_on_entry_takes_nothing() {
    let (tx, rx) = open_shard_channel::<u32>(1);
    tx.try_send(5).unwrap();
    run(async {
        let scope = CancelScope::new();
        scope.cancel();
        assert_eq!(scope.run(rx.receive()).await, Ok(None));
    });
    assert_eq!(rx.try_receive(), Ok(5));
}

// ------------------------------------------------------------ batched wake-ups

/// A waker that counts its wake-ups.
struct CountingWaker(AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `fut` once with `waker` (inside a run, so the channel finds its
/// runtime, but the waker the channel stores is ours).
fn poll_with<F: Future + Unpin>(fut: &mut F, waker: &Arc<CountingWaker>) -> Poll<F::Output> {
    let waker = std::task::Waker::from(waker.clone());
    Pin::new(fut).poll(&mut std::task::Context::from_waker(&waker))
}

#[test]
fn a_burst_of_sends_from_another_thread_wakes_a_blocked_receiver_once() {
    let (tx, rx) = open_shard_channel::<u32>(UNBOUNDED);
    run(async {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let mut fut = rx.receive();
        assert!(poll_with(&mut fut, &counter).is_pending());
        thread::scope(|s| {
            s.spawn(|| {
                for i in 0..1000 {
                    tx.try_send(i).unwrap();
                }
            });
        });
        // The first send found the receive blocked: it took the waker and
        // handed 0 over. The other 999 found nobody blocked: buffered, and
        // no wake-up.
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(load(rx.statistics()), (999, 0, 0));
        assert_eq!(poll_with(&mut fut, &counter), Poll::Ready(Ok(0)));
        let rest: Vec<u32> = (1..1000).map(|_| rx.try_receive().unwrap()).collect();
        assert_eq!(rest, (1..1000).collect::<Vec<_>>());
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn receives_from_another_thread_wake_a_blocked_sender_once() {
    let (tx, rx) = open_shard_channel::<u32>(4);
    for i in 0..4 {
        tx.try_send(i).unwrap();
    }
    run(async {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let mut fut = tx.send(4);
        assert!(poll_with(&mut fut, &counter).is_pending());
        thread::scope(|s| {
            s.spawn(|| {
                // The first receive makes room and moves the blocked
                // sender's value in (one wake-up); the rest wake nobody.
                let got: Vec<u32> = (0..5).map(|_| rx.try_receive().unwrap()).collect();
                assert_eq!(got, [0, 1, 2, 3, 4]);
            });
        });
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(matches!(poll_with(&mut fut, &counter), Poll::Ready(Ok(()))));
    });
}

// ------------------------------------------------------------ stress

/// Sender and receiver tasks on each of the two shards.
const SENDERS_PER_SHARD: u32 = 4;
const RECEIVERS_PER_SHARD: usize = 3;
/// Deadlines are drawn from 0..MAX_DEADLINE_US virtual microseconds (0
/// cancels at the entry checkpoint), or there is none, one time in four.
const MAX_DEADLINE_US: u64 = 40;

/// Values each sender (task or plain thread) sends; fewer under valgrind.
fn values_per_sender() -> u32 {
    if std::env::var_os("TRIOXIDE_VALGRIND").is_some() {
        40
    } else {
        300
    }
}

/// SplitMix64: small, seedable, good enough to pick deadlines.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// What the tasks of one shard share.
struct Local {
    rng: std::cell::RefCell<Rng>,
    received: std::cell::RefCell<Vec<u32>>,
    /// Cancelled sends, cancelled receives, receives dropped while queued.
    counts: std::cell::Cell<(u32, u32, u32)>,
}

impl Local {
    fn rand(&self, n: u64) -> u64 {
        self.rng.borrow_mut().below(n)
    }

    fn scope(&self) -> CancelScope {
        if self.rand(4) == 0 {
            CancelScope::new()
        } else {
            CancelScope::with_relative_deadline(Duration::from_micros(self.rand(MAX_DEADLINE_US)))
        }
    }

    fn count(&self, f: impl FnOnce(&mut (u32, u32, u32))) {
        let mut c = self.counts.get();
        f(&mut c);
        self.counts.set(c);
    }
}

async fn stress_sender(local: std::rc::Rc<Local>, tx: ShardSendChannel<u32>, first: u32) -> Result<(), BoxError> {
    for v in first..first + values_per_sender() {
        let mut value = v;
        loop {
            let mut back = None;
            let out = local
                .scope()
                .run(async {
                    match tx.send(value).await {
                        Ok(()) => Ok(()),
                        Err(e) => {
                            assert_eq!(e.kind(), SendErrorKind::Cancelled, "only cancellation stops a send here");
                            back = Some(e.into_inner());
                            Err(trioxide::Cancelled)
                        }
                    }
                })
                .await;
            match out {
                Ok(Some(())) => break,
                Ok(None) => {
                    local.count(|c| c.0 += 1);
                    // The value came back: retry the same one.
                    value = back.ok_or("a cancelled send did not return its value")?;
                    assert_eq!(value, v);
                }
                Err(c) => return Err(c.into()),
            }
        }
        // Now and then a slow producer, so that receivers block too.
        match local.rand(8) {
            0 => trioxide::checkpoint().await?,
            1 => trioxide::sleep(Duration::from_micros(local.rand(2 * MAX_DEADLINE_US))).await?,
            _ => {}
        }
    }
    Ok(())
}

/// Records one receive's outcome (`Ok(None)`: its own scope caught its
/// cancellation); false at the end of the channel.
fn record(local: &Local, out: Result<Option<u32>, ReceiveError>) -> Result<bool, BoxError> {
    match out {
        Ok(Some(v)) => local.received.borrow_mut().push(v),
        Ok(None) => local.count(|c| c.1 += 1),
        Err(ReceiveError::EndOfChannel) => return Ok(false),
        Err(e) => return Err(format!("unexpected receive error: {e}").into()),
    }
    Ok(true)
}

async fn stress_receiver(local: std::rc::Rc<Local>, rx: ShardReceiveChannel<u32>) -> Result<(), BoxError> {
    loop {
        let more = if local.rand(3) < 2 {
            let scope = local.scope();
            let out = scope.run(rx.receive()).await;
            record(&local, out)?
        } else {
            // Queue a receive, let time pass, then await or drop it: a
            // value handed to it meanwhile must be passed on, not lost.
            let mut f = rx.receive();
            match poll_once(&mut f).await {
                Poll::Ready(r) => record(&local, r.map(Some))?,
                Poll::Pending => {
                    trioxide::sleep(Duration::from_micros(local.rand(MAX_DEADLINE_US))).await?;
                    if local.rand(2) == 0 {
                        drop(f);
                        local.count(|c| c.2 += 1);
                        true
                    } else {
                        let out = f.await;
                        record(&local, out.map(Some))?
                    }
                }
            }
        };
        if !more {
            return Ok(());
        }
    }
}

/// Two shards of senders and receivers, plus a plain sender thread and a
/// plain receiver thread, on one channel; every send and most receives
/// under random deadlines. Returns the counts of cancelled sends,
/// cancelled receives and dropped queued receives.
fn stress(capacity: usize, seed: u64) -> (u32, u32, u32) {
    bounded(move || {
        let per = values_per_sender();
        let (tx, rx) = open_shard_channel::<u32>(capacity);
        let ends: Vec<_> = (0..2).map(|_| Mutex::new(Some((tx.clone(), rx.clone())))).collect();
        let thread_first = 2 * SENDERS_PER_SHARD * per;
        let sender = thread::spawn(move || {
            for v in thread_first..thread_first + per {
                tx.send_blocking(v).unwrap();
            }
        });
        let receiver = thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                match rx.receive_blocking() {
                    Ok(v) => got.push(v),
                    Err(ReceiveError::EndOfChannel) => return got,
                    Err(e) => panic!("unexpected receive error: {e}"),
                }
            }
        });
        let out = trioxide::ShardedBuilder::new(2)
            .configure(move |shard| autojump().seed(seed * 2 + shard.index() as u64))
            .run(|shard| {
                let (tx, rx) = ends[shard.index()].lock().unwrap().take().expect("one pair of handles per shard");
                async move {
                    let local = std::rc::Rc::new(Local {
                        rng: std::cell::RefCell::new(Rng(seed * 1000 + shard.index() as u64)),
                        received: Default::default(),
                        counts: Default::default(),
                    });
                    let l = local.clone();
                    open_nursery(|n| async move {
                        for k in 0..SENDERS_PER_SHARD {
                            let first = (shard.index() as u32 * SENDERS_PER_SHARD + k) * per;
                            n.start_soon(stress_sender(l.clone(), tx.clone(), first))?;
                        }
                        for _ in 0..RECEIVERS_PER_SHARD {
                            n.start_soon(stress_receiver(l.clone(), rx.clone()))?;
                        }
                        // Only the tasks hold handles now.
                        drop((tx, rx));
                        Ok::<_, BoxError>(())
                    })
                    .await?;
                    Ok::<_, BoxError>((local.received.take(), local.counts.get()))
                }
            })
            .unwrap();
        sender.join().unwrap();
        let mut all = receiver.join().unwrap();
        let mut counts = (0, 0, 0);
        for (got, c) in out {
            all.extend(got);
            counts = (counts.0 + c.0, counts.1 + c.1, counts.2 + c.2);
        }
        all.sort_unstable();
        let expected: Vec<u32> = (0..(2 * SENDERS_PER_SHARD + 1) * per).collect();
        assert_eq!(all.len(), expected.len(), "capacity {capacity}, seed {seed}: values lost or duplicated");
        assert_eq!(all, expected, "capacity {capacity}, seed {seed}: every value exactly once");
        counts
    })
}

/// Runs `stress` under a few seeds and checks that cancellation did
/// strike (a deadline of 0 cancels at entry, so it always does).
fn stress_seeds(capacity: usize) {
    let seeds = if std::env::var_os("TRIOXIDE_VALGRIND").is_some() { 1 } else { 3 };
    for seed in 1..=seeds {
        let (cancelled_sends, cancelled_receives, _dropped) = stress(capacity, seed);
        assert!(cancelled_receives > 0, "seed {seed}: no receive was cancelled");
        assert!(cancelled_sends > 0, "seed {seed}: no send was cancelled");
    }
}

#[test]
fn stress_rendezvous_with_random_cancellation_delivers_every_value_exactly_once() {
    stress_seeds(0);
}

#[test]
fn stress_capacity_one_with_random_cancellation_delivers_every_value_exactly_once() {
    stress_seeds(1);
}

#[test]
fn stress_bounded_with_random_cancellation_delivers_every_value_exactly_once() {
    stress_seeds(8);
}

#[test]
fn stress_unbounded_with_random_cancellation_delivers_every_value_exactly_once() {
    stress_seeds(UNBOUNDED);
}
