//! Memory channels: rules Y5–Y7 of RULES.md (at the repository root), and
//! the rest of Trio's test_channel.py (close, clone, statistics, capacities,
//! `try_*`), translated to trioxide's API and error values.
//!
//! Conventions: every run has a fixed seed; tests whose outcome must not
//! depend on the scheduler's order loop over [`SEEDS`]. Time is virtual
//! (`MockClock` with autojump), and every run checks that no task, timer or
//! task allocation (a waker kept somewhere) is left behind. Blocking points
//! are reached deterministically with `wait_all_tasks_blocked`, or by
//! polling a future exactly once by hand.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use futures_core::Stream;
use trioxide::channel::{
    MemoryChannelStatistics, MemoryReceiveChannel, MemorySendChannel, ReceiveError, SendErrorKind, TryReceiveError,
    TrySendError, CHANNEL_BUDGET, UNBOUNDED,
};
use trioxide::{
    checkpoint, current_time, fail_after, is_cancelled_error, move_on_after, open_memory_channel, open_nursery,
    wait_all_tasks_blocked, BoxError, Builder, CancelScope, Cancelled, ClosedResource, Instant, MockClock, Nursery,
    TooSlow,
};

// ---------------------------------------------------------------- helpers

/// Seeds for tests that must hold whatever order the scheduler picks.
const SEEDS: std::ops::Range<u64> = 0..8;

/// Virtual-time bound on every run: a lost wake-up makes the clock jump to
/// it and the run fail with `TooSlow` instead of hanging.
const HANG_GUARD: Duration = Duration::from_secs(3600);

fn autojump_clock() -> MockClock {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    clock
}

/// Runs `main` with `seed` on an autojumping mock clock, inside the hang
/// guard; checks that nothing was left behind.
fn run_seeded<T>(seed: u64, main: impl Future<Output = Result<T, BoxError>>) -> T {
    let (out, report) = Builder::new().seed(seed).clock(autojump_clock()).run_with_report(fail_after(HANG_GUARD, main));
    let out = out.unwrap_or_else(|e| panic!("the run (seed {seed}) failed: {e}"));
    assert_eq!(report.tasks_left, 0, "tasks left behind");
    assert_eq!(report.timers_left, 0, "timers left behind");
    assert_eq!(report.task_allocations_left, 0, "task allocations (wakers) left behind");
    out
}

/// [`run_seeded`] of a nursery body.
fn run_nursery<T, B, Fut>(seed: u64, body: B) -> Option<T>
where
    B: FnOnce(Nursery) -> Fut,
    Fut: Future<Output = Result<T, BoxError>>,
{
    run_seeded(seed, async move { Ok(open_nursery(body).await?) })
}

/// Seconds of virtual time since the start of the run.
fn now_secs() -> f64 {
    current_time().as_secs_f64()
}

type Log = Rc<RefCell<Vec<String>>>;

fn new_log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

fn push(log: &Log, entry: impl Into<String>) {
    log.borrow_mut().push(entry.into());
}

fn entries(log: &Log) -> Vec<String> {
    log.borrow().clone()
}

/// Polls `fut` exactly once from the current task, and returns the result.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

/// The stream's next item (`StreamExt::next`, which this crate does not
/// depend on).
fn next<T>(rx: &mut MemoryReceiveChannel<T>) -> impl Future<Output = Option<Result<T, ReceiveError>>> + '_ {
    poll_fn(move |cx| Pin::new(&mut *rx).poll_next(cx))
}

/// Polls the stream exactly once.
async fn poll_next_once<T>(rx: &mut MemoryReceiveChannel<T>) -> Poll<Option<Result<T, ReceiveError>>> {
    poll_fn(|cx| Poll::Ready(Pin::new(&mut *rx).poll_next(cx))).await
}

fn stats(
    buffer: usize,
    max: usize,
    senders: usize,
    receivers: usize,
    waiting: (usize, usize),
) -> MemoryChannelStatistics {
    MemoryChannelStatistics {
        current_buffer_used: buffer,
        peak_buffer_used: 0,
        max_buffer_size: max,
        open_send_channels: senders,
        open_receive_channels: receivers,
        tasks_waiting_send: waiting.0,
        tasks_waiting_receive: waiting.1,
    }
}

/// The fields Trio reports: `peak_buffer_used` (trioxide's own, tested in
/// tests/trio_parity.rs) set to 0 to compare with [`stats`].
fn trio_fields(s: MemoryChannelStatistics) -> MemoryChannelStatistics {
    MemoryChannelStatistics { peak_buffer_used: 0, ..s }
}

/// Which of the blocked operations are waiting: (senders, receivers).
fn waiting<T>(tx: &MemorySendChannel<T>) -> (usize, usize) {
    let s = tx.statistics();
    (s.tasks_waiting_send, s.tasks_waiting_receive)
}

/// A value that is neither `Clone` nor `Debug`, and records its drop.
struct Tracked {
    id: u32,
    drops: Rc<RefCell<Vec<u32>>>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.borrow_mut().push(self.id);
    }
}

fn tracked(id: u32, drops: &Rc<RefCell<Vec<u32>>>) -> Tracked {
    Tracked { id, drops: drops.clone() }
}

/// Spawns a task that receives once on `rx` and logs `"{name} got {v}"` or
/// `"{name} {error:?}"`.
fn spawn_receiver(
    n: &Nursery,
    name: &'static str,
    rx: Rc<MemoryReceiveChannel<u32>>,
    log: &Log,
) -> Result<(), BoxError> {
    let log = log.clone();
    n.start_soon(async move {
        match rx.receive().await {
            Ok(v) => push(&log, format!("{name} got {v}")),
            Err(e) => push(&log, format!("{name} {e:?}")),
        }
    })?;
    Ok(())
}

/// Spawns a task that sends `v` on `tx` and logs `"{name} sent"` or
/// `"{name} {kind:?} {value}"`.
fn spawn_sender(
    n: &Nursery,
    name: &'static str,
    tx: Rc<MemorySendChannel<u32>>,
    v: u32,
    log: &Log,
) -> Result<(), BoxError> {
    let log = log.clone();
    n.start_soon(async move {
        match tx.send(v).await {
            Ok(()) => push(&log, format!("{name} sent")),
            Err(e) => push(&log, format!("{name} {:?} {}", e.kind(), e.into_inner())),
        }
    })?;
    Ok(())
}

// ---------------------------------------------------------------- Y5

#[test]
fn y5_blocked_receiver_owns_the_next_value_even_against_a_faster_receiver() {
    // Trio's test_channel_fairness, first half, for a rendezvous channel
    // and a buffered one.
    for cap in [0, 1] {
        for seed in SEEDS {
            let log = new_log();
            let l = log.clone();
            run_nursery(seed, move |n| async move {
                let (tx, rx) = open_memory_channel::<u32>(cap);
                let rx = Rc::new(rx);
                if cap > 0 {
                    // With nobody waiting, we may take back what we sent.
                    tx.try_send(1)?;
                    assert_eq!(rx.try_receive(), Ok(1));
                }
                spawn_receiver(&n, "A", rx.clone(), &l)?;
                wait_all_tasks_blocked().await?;
                assert_eq!(waiting(&tx), (0, 1));
                tx.try_send(2)?;
                // A owns 2 now: we cannot take it although we run first.
                assert_eq!(rx.try_receive(), Err(TryReceiveError::WouldBlock));
                assert_eq!(trio_fields(tx.statistics()), stats(0, cap, 1, 1, (0, 0)));
                Ok(())
            });
            assert_eq!(entries(&log), ["A got 2"], "capacity {cap}, seed {seed}");
        }
    }
}

#[test]
fn y5_blocked_receivers_get_values_in_arrival_order() {
    for cap in [0, 1, UNBOUNDED] {
        for seed in SEEDS {
            let log = new_log();
            let l = log.clone();
            run_nursery(seed, move |n| async move {
                let (tx, rx) = open_memory_channel::<u32>(cap);
                let rx = Rc::new(rx);
                for name in ["A", "B", "C"] {
                    spawn_receiver(&n, name, rx.clone(), &l)?;
                    wait_all_tasks_blocked().await?;
                }
                assert_eq!(waiting(&tx), (0, 3));
                for v in 1..=3 {
                    tx.send(v).await?;
                }
                assert_eq!(waiting(&tx), (0, 0));
                Ok(())
            });
            let mut got = entries(&log);
            got.sort();
            assert_eq!(got, ["A got 1", "B got 2", "C got 3"], "capacity {cap}, seed {seed}");
        }
    }
}

#[test]
fn y5_blocked_senders_are_served_in_arrival_order() {
    for cap in [0, 1, 2] {
        for seed in SEEDS {
            let log = new_log();
            let l = log.clone();
            let got = run_nursery(seed, move |n| async move {
                let (tx, rx) = open_memory_channel::<u32>(cap);
                let tx = Rc::new(tx);
                for v in 0..cap as u32 {
                    tx.try_send(100 + v)?;
                }
                for (name, v) in [("S1", 1), ("S2", 2), ("S3", 3)] {
                    spawn_sender(&n, name, tx.clone(), v, &l)?;
                    wait_all_tasks_blocked().await?;
                }
                assert_eq!(waiting(&tx), (3, 0));
                let mut got = Vec::new();
                for _ in 0..cap + 3 {
                    got.push(rx.receive().await?);
                }
                Ok(got)
            });
            let mut expected: Vec<u32> = (0..cap as u32).map(|v| 100 + v).collect();
            expected.extend([1, 2, 3]);
            assert_eq!(got, Some(expected), "capacity {cap}, seed {seed}");
            let mut log = entries(&log);
            log.sort();
            assert_eq!(log, ["S1 sent", "S2 sent", "S3 sent"]);
        }
    }
}

#[test]
fn y5_a_freed_slot_belongs_to_the_blocked_sender() {
    // Trio's test_channel_fairness, second half.
    for seed in SEEDS {
        let log = new_log();
        let l = log.clone();
        run_nursery(seed, move |n| async move {
            let (tx, rx) = open_memory_channel::<u32>(1);
            let tx = Rc::new(tx);
            tx.try_send(1)?;
            assert!(matches!(tx.try_send(0), Err(TrySendError::WouldBlock(0))));
            spawn_sender(&n, "S", tx.clone(), 2, &l)?;
            wait_all_tasks_blocked().await?;
            assert_eq!(rx.try_receive(), Ok(1));
            // The slot 1 left went to the blocked sender's 2 at once.
            assert!(matches!(tx.try_send(3), Err(TrySendError::WouldBlock(3))));
            assert_eq!(trio_fields(tx.statistics()), stats(1, 1, 1, 1, (0, 0)));
            assert_eq!(rx.receive().await?, 2);
            Ok(())
        });
        assert_eq!(entries(&log), ["S sent"]);
    }
}

#[test]
fn y5_send_taken_by_a_receiver_succeeds_even_if_cancelled_before_it_runs() {
    for cap in [0, 1] {
        for seed in SEEDS {
            let out = Rc::new(RefCell::new(None));
            let o = out.clone();
            run_nursery(seed, move |n| async move {
                let (tx, rx) = open_memory_channel::<u32>(cap);
                let tx = Rc::new(tx);
                for v in 0..cap as u32 {
                    tx.try_send(100 + v)?;
                }
                let scope = CancelScope::new();
                let (s, t, o) = (scope.clone(), tx.clone(), o.clone());
                n.start_soon(async move {
                    let r =
                        s.run(async { Ok::<_, Cancelled>(t.send(7).await.map_err(|e| (e.kind(), e.into_inner()))) });
                    *o.borrow_mut() = Some(r.await);
                })?;
                wait_all_tasks_blocked().await?;
                assert_eq!(waiting(&tx), (1, 0));
                // The receiver takes the blocked sender's value (or moves it
                // into the freed slot) ...
                let mut got = vec![rx.try_receive()?];
                // ... and then the sender is cancelled before it runs.
                scope.cancel();
                wait_all_tasks_blocked().await?;
                while let Ok(v) = rx.try_receive() {
                    got.push(v);
                }
                let mut expected: Vec<u32> = (0..cap as u32).map(|v| 100 + v).collect();
                expected.push(7);
                assert_eq!(got, expected);
                Ok(())
            });
            // The send reports success: it cannot take the value back.
            assert_eq!(*out.borrow(), Some(Ok(Some(Ok(())))), "capacity {cap}, seed {seed}");
        }
    }
}

// ---------------------------------------------------------------- Y6

#[test]
fn y6_receive_cancelled_by_a_timeout_loses_nothing() {
    // Trio's test_553, with move_on_after and fail_after.
    run_seeded(1, async {
        let (tx, rx) = open_memory_channel::<&str>(1);
        let scope = CancelScope::with_relative_deadline(Duration::from_secs(10));
        let out = scope.run(rx.receive()).await;
        assert_eq!(out, Ok(None));
        assert!(scope.cancelled_caught());
        assert_eq!(now_secs(), 10.0);
        assert_eq!(waiting(&tx), (0, 0));
        tx.send("Test for PR #553").await?;
        assert_eq!(rx.receive().await?, "Test for PR #553");

        let r: Result<&str, BoxError> = fail_after(Duration::from_secs(5), async { Ok(rx.receive().await?) }).await;
        assert!(r.unwrap_err().is::<TooSlow>());
        assert_eq!(now_secs(), 15.0);
        tx.send("second").await?;
        assert_eq!(rx.try_receive(), Ok("second"));
        Ok(())
    });
}

#[test]
fn y6_value_handed_to_a_receiver_is_returned_although_it_was_cancelled_since() {
    for seed in SEEDS {
        let log = new_log();
        let l = log.clone();
        run_nursery(seed, move |n| async move {
            let (tx, rx) = open_memory_channel::<u32>(0);
            let rx = Rc::new(rx);
            let scope = CancelScope::new();
            let (s, r, l2) = (scope.clone(), rx.clone(), l.clone());
            n.start_soon(async move {
                let out = s
                    .run(async {
                        let v = r.receive().await;
                        push(&l2, format!("receive -> {v:?}"));
                        // The cancel is still there at the next checkpoint.
                        checkpoint().await?;
                        push(&l2, "not reached");
                        Ok::<_, Cancelled>(())
                    })
                    .await;
                push(&l2, format!("scope -> {out:?}, caught {}", s.cancelled_caught()));
            })?;
            wait_all_tasks_blocked().await?;
            tx.try_send(5)?;
            scope.cancel();
            Ok(())
        });
        assert_eq!(entries(&log), ["receive -> Ok(5)", "scope -> Ok(None), caught true"], "seed {seed}");
    }
}

#[test]
fn y6_dropped_receive_after_hand_over_passes_the_value_to_the_next_blocked_receiver() {
    for seed in SEEDS {
        let log = new_log();
        let l = log.clone();
        run_nursery(seed, move |n| async move {
            let (tx, rx) = open_memory_channel::<u32>(0);
            let rx = Rc::new(rx);
            let mut first = rx.receive();
            assert!(poll_once(&mut first).await.is_pending());
            spawn_receiver(&n, "B", rx.clone(), &l)?;
            wait_all_tasks_blocked().await?;
            assert_eq!(waiting(&tx), (0, 2));
            // `first` is the oldest blocked receiver: 1 is handed to it.
            tx.try_send(1)?;
            assert_eq!(waiting(&tx), (0, 1));
            // Dropped without being polled again (a select! that took
            // another branch): B gets the value instead.
            drop(first);
            assert_eq!(waiting(&tx), (0, 0));
            wait_all_tasks_blocked().await?;
            assert_eq!(trio_fields(tx.statistics()), stats(0, 0, 1, 1, (0, 0)));
            Ok(())
        });
        assert_eq!(entries(&log), ["B got 1"]);
    }
}

#[test]
fn y6_dropped_receive_after_hand_over_puts_the_value_back_at_the_front() {
    run_seeded(1, async {
        let (tx, rx) = open_memory_channel::<u32>(2);
        let mut first = rx.receive();
        assert!(poll_once(&mut first).await.is_pending());
        tx.try_send(1)?; // handed to `first`
        tx.try_send(2)?;
        tx.try_send(3)?;
        assert_eq!(tx.statistics().current_buffer_used, 2);
        drop(first);
        // Back at the front, beyond capacity: the order is kept.
        assert_eq!(tx.statistics().current_buffer_used, 3);
        assert!(matches!(tx.try_send(4), Err(TrySendError::WouldBlock(4))));
        let got: Vec<u32> = (0..3).map(|_| rx.try_receive()).collect::<Result<_, _>>()?;
        assert_eq!(got, [1, 2, 3]);
        Ok(())
    });
}

#[test]
fn y6_value_put_back_beyond_capacity_keeps_blocked_senders_waiting_their_turn() {
    for seed in SEEDS {
        let log = new_log();
        let l = log.clone();
        run_nursery(seed, move |n| async move {
            let (tx, rx) = open_memory_channel::<u32>(0);
            let tx = Rc::new(tx);
            let mut first = rx.receive();
            assert!(poll_once(&mut first).await.is_pending());
            tx.try_send(1)?;
            spawn_sender(&n, "S", tx.clone(), 2, &l)?;
            wait_all_tasks_blocked().await?;
            drop(first);
            assert_eq!(trio_fields(tx.statistics()), stats(1, 0, 1, 1, (1, 0)));
            assert_eq!(rx.try_receive(), Ok(1));
            // The sender was not told its value was taken: it still waits.
            assert_eq!(trio_fields(tx.statistics()), stats(0, 0, 1, 1, (1, 0)));
            assert_eq!(entries(&l), Vec::<String>::new());
            assert_eq!(rx.try_receive(), Ok(2));
            Ok(())
        });
        assert_eq!(entries(&log), ["S sent"]);
    }
}

#[test]
fn y6_receive_dropped_during_its_schedule_point_puts_the_value_back() {
    run_nursery(1, |n| async move {
        let (tx, rx) = open_memory_channel::<u32>(CHANNEL_BUDGET as usize + 1);
        for v in 1..=CHANNEL_BUDGET + 1 {
            tx.try_send(v)?;
        }
        // Another task is runnable and this step's budget is spent, so a
        // receive that completes at once yields before returning its value
        // ...
        n.start_soon(async {})?;
        for v in 1..CHANNEL_BUDGET {
            let mut f = rx.receive();
            assert_eq!(poll_once(&mut f).await, Poll::Ready(Ok(v)));
        }
        let mut f = rx.receive();
        assert!(poll_once(&mut f).await.is_pending());
        assert_eq!(tx.statistics().current_buffer_used, 1, "CHANNEL_BUDGET was taken");
        // ... and dropping it there returns the value to the front.
        drop(f);
        assert_eq!(tx.statistics().current_buffer_used, 2);
        assert_eq!(rx.try_receive(), Ok(CHANNEL_BUDGET));
        assert_eq!(rx.try_receive(), Ok(CHANNEL_BUDGET + 1));
        Ok(())
    })
    .unwrap();
}

/// Trio's test_generic_lock_fifo_fairness on channel-built locks rests on
/// this: a send that fills the buffer, or a receive that empties it, took
/// the channel's last unit (a lock's acquisition) and yields to a runnable
/// task at once, whatever the budget; with room left the budget applies,
/// and a hand-over to a blocked task never counts.
#[test]
fn y2_operation_taking_the_channels_last_unit_yields_to_runnable_tasks() {
    run_nursery(1, |n| async move {
        // Room left after the send: no yield (the budget applies).
        let (tx, rx) = open_memory_channel::<u32>(3);
        tx.try_send(1)?;
        n.start_soon(async {})?;
        let mut f = tx.send(2);
        assert!(poll_once(&mut f).await.is_ready());
        drop(f);
        // The send that fills the buffer yields, the value already sent,
        // though the budget has room.
        let mut f = tx.send(3);
        assert!(poll_once(&mut f).await.is_pending());
        assert_eq!(tx.statistics().current_buffer_used, 3);
        assert!(f.await.is_ok());
        drop((tx, rx));
        // The receive that empties the buffer yields too, with the value
        // in hand.
        let (tx1, rx1) = open_memory_channel::<u32>(2);
        tx1.try_send(7)?;
        tx1.try_send(8)?;
        n.start_soon(async {})?;
        assert_eq!(poll_once(&mut rx1.receive()).await, Poll::Ready(Ok(7)));
        let mut r = rx1.receive();
        assert!(poll_once(&mut r).await.is_pending());
        assert_eq!(tx1.statistics().current_buffer_used, 0);
        assert_eq!(r.await?, 8);
        // A hand-over to a blocked receiver is no acquisition, even on a
        // rendezvous channel: no yield.
        let (tx0, rx0) = open_memory_channel::<u32>(0);
        let rx0 = Rc::new(rx0);
        let r0 = rx0.clone();
        n.start_soon(async move {
            r0.receive().await?;
            Ok::<_, BoxError>(())
        })?;
        wait_all_tasks_blocked().await?;
        n.start_soon(async {})?;
        assert!(poll_once(&mut tx0.send(1)).await.is_ready());
        Ok(())
    })
    .unwrap();
}

#[test]
fn y6_value_handed_over_survives_the_close_of_its_receive_handle() {
    for seed in SEEDS {
        let log = new_log();
        let l = log.clone();
        run_nursery(seed, move |n| async move {
            let (tx, rx) = open_memory_channel::<u32>(0);
            let rx = Rc::new(rx);
            spawn_receiver(&n, "A", rx.clone(), &l)?;
            wait_all_tasks_blocked().await?;
            tx.try_send(9)?;
            rx.close(); // after the hand-over: A keeps 9
            Ok(())
        });
        assert_eq!(entries(&log), ["A got 9"]);
    }
}

// ---------------------------------------------------------------- Y7

#[test]
fn y7_trio_test_channel_sequence() {
    run_seeded(1, async {
        let (tx, rx) = open_memory_channel::<&str>(2);
        tx.try_send("1")?;
        tx.send("2").await?;
        assert!(matches!(tx.try_send("x"), Err(TrySendError::WouldBlock("x"))));
        assert_eq!(rx.receive().await?, "1");
        assert_eq!(rx.try_receive(), Ok("2"));
        assert_eq!(rx.try_receive(), Err(TryReceiveError::WouldBlock));

        tx.try_send("last")?;
        tx.close();
        let e = tx.send("too late").await.unwrap_err();
        assert_eq!((e.kind(), e.into_inner()), (SendErrorKind::Closed, "too late"));
        assert!(matches!(tx.try_send("too late"), Err(TrySendError::Closed("too late"))));
        assert_eq!(tx.try_clone().err(), Some(ClosedResource));
        tx.close();

        // The buffer is drained before the end is reported.
        assert_eq!(rx.try_receive(), Ok("last"));
        assert_eq!(rx.receive().await, Err(ReceiveError::EndOfChannel));
        assert_eq!(rx.try_receive(), Err(TryReceiveError::EndOfChannel));
        rx.close();
        assert_eq!(rx.receive().await, Err(ReceiveError::Closed));
        assert_eq!(rx.try_receive(), Err(TryReceiveError::Closed));
        rx.close();
        Ok(())
    });
}

#[test]
fn y7_closing_the_send_handle_wakes_its_blocked_sender_with_closed() {
    // Trio's test_close_basics, part 1.
    for seed in SEEDS {
        let log = new_log();
        let l = log.clone();
        run_nursery(seed, move |n| async move {
            let (tx, rx) = open_memory_channel::<u32>(0);
            let tx = Rc::new(tx);
            spawn_sender(&n, "S", tx.clone(), 1, &l)?;
            wait_all_tasks_blocked().await?;
            tx.close();
            assert_eq!(waiting(&tx), (0, 0));
            wait_all_tasks_blocked().await?;
            assert_eq!(entries(&l), ["S Closed 1"]);
            // Persistent.
            assert!(matches!(tx.try_send(2), Err(TrySendError::Closed(2))));
            assert_eq!(tx.send(3).await.unwrap_err().kind(), SendErrorKind::Closed);
            // And the receiver sees the end.
            assert_eq!(rx.try_receive(), Err(TryReceiveError::EndOfChannel));
            assert_eq!(rx.receive().await, Err(ReceiveError::EndOfChannel));
            Ok(())
        });
    }
}

#[test]
fn y7_closing_the_receive_handle_breaks_blocked_and_later_sends() {
    // Trio's test_close_basics, part 2.
    for seed in SEEDS {
        let log = new_log();
        let l = log.clone();
        run_nursery(seed, move |n| async move {
            let (tx, rx) = open_memory_channel::<u32>(0);
            let tx = Rc::new(tx);
            spawn_sender(&n, "S", tx.clone(), 1, &l)?;
            wait_all_tasks_blocked().await?;
            rx.close();
            wait_all_tasks_blocked().await?;
            assert_eq!(entries(&l), ["S Broken 1"]);
            assert!(matches!(tx.try_send(2), Err(TrySendError::Broken(2))));
            let e = tx.send(3).await.unwrap_err();
            assert_eq!((e.kind(), e.into_inner()), (SendErrorKind::Broken, 3));
            Ok(())
        });
    }
}

#[test]
fn y7_closing_the_receive_handle_wakes_its_blocked_receiver_with_closed() {
    // Trio's test_close_basics, part 3.
    for seed in SEEDS {
        let log = new_log();
        let l = log.clone();
        run_nursery(seed, move |n| async move {
            let (_tx, rx) = open_memory_channel::<u32>(0);
            let rx = Rc::new(rx);
            spawn_receiver(&n, "R", rx.clone(), &l)?;
            wait_all_tasks_blocked().await?;
            rx.close();
            wait_all_tasks_blocked().await?;
            assert_eq!(entries(&l), ["R Closed"]);
            assert_eq!(rx.try_receive(), Err(TryReceiveError::Closed));
            assert_eq!(rx.receive().await, Err(ReceiveError::Closed));
            Ok(())
        });
    }
}

#[test]
fn y7_closing_one_send_handle_wakes_only_the_senders_on_that_handle() {
    // Trio's test_close_multiple_send_handles.
    for seed in SEEDS {
        let log = new_log();
        let l = log.clone();
        run_nursery(seed, move |n| async move {
            let (s1, rx) = open_memory_channel::<u32>(0);
            let s2 = Rc::new(s1.clone());
            let s1 = Rc::new(s1);
            spawn_sender(&n, "on s1", s1.clone(), 1, &l)?;
            spawn_sender(&n, "on s2", s2.clone(), 2, &l)?;
            wait_all_tasks_blocked().await?;
            assert_eq!(waiting(&s1), (2, 0));
            s1.close();
            assert_eq!(waiting(&s1), (1, 0));
            assert_eq!(s1.statistics().open_send_channels, 1);
            assert_eq!(rx.receive().await?, 2);
            wait_all_tasks_blocked().await?;
            let mut got = entries(&l);
            got.sort();
            assert_eq!(got, ["on s1 Closed 1", "on s2 sent"]);
            Ok(())
        });
    }
}

#[test]
fn y7_closing_one_receive_handle_wakes_only_the_receivers_on_that_handle() {
    // Trio's test_close_multiple_receive_handles.
    for seed in SEEDS {
        let log = new_log();
        let l = log.clone();
        run_nursery(seed, move |n| async move {
            let (tx, r1) = open_memory_channel::<u32>(0);
            let r2 = Rc::new(r1.clone());
            let r1 = Rc::new(r1);
            spawn_receiver(&n, "on r1", r1.clone(), &l)?;
            spawn_receiver(&n, "on r2", r2.clone(), &l)?;
            wait_all_tasks_blocked().await?;
            r1.close();
            assert_eq!(waiting(&tx), (0, 1));
            tx.send(7).await?;
            wait_all_tasks_blocked().await?;
            let mut got = entries(&l);
            got.sort();
            assert_eq!(got, ["on r1 Closed", "on r2 got 7"]);
            Ok(())
        });
    }
}

#[test]
fn y7_end_of_channel_only_after_every_send_clone_is_closed_and_the_buffer_is_drained() {
    run_seeded(1, async {
        let (tx, rx) = open_memory_channel::<u32>(4);
        let tx2 = tx.clone();
        let tx3 = tx2.clone();
        tx.try_send(1)?;
        tx2.try_send(2)?;
        tx.close();
        tx3.close();
        assert_eq!(rx.try_receive(), Ok(1));
        // tx2 is still open: no end yet, however empty the buffer gets.
        tx2.try_send(3)?;
        drop(tx2);
        assert_eq!(tx.statistics().open_send_channels, 0);
        assert_eq!(rx.try_receive(), Ok(2));
        assert_eq!(rx.receive().await?, 3);
        assert_eq!(rx.try_receive(), Err(TryReceiveError::EndOfChannel));
        assert_eq!(rx.receive().await, Err(ReceiveError::EndOfChannel));
        Ok(())
    });
}

#[test]
fn y7_closing_the_last_send_handle_wakes_every_blocked_receiver_with_end_of_channel() {
    for seed in SEEDS {
        let log = new_log();
        let l = log.clone();
        run_nursery(seed, move |n| async move {
            let (tx, r1) = open_memory_channel::<u32>(0);
            let r2 = Rc::new(r1.clone());
            let r1 = Rc::new(r1);
            let tx2 = tx.clone();
            spawn_receiver(&n, "A", r1.clone(), &l)?;
            spawn_receiver(&n, "B", r1.clone(), &l)?;
            spawn_receiver(&n, "C", r2.clone(), &l)?;
            wait_all_tasks_blocked().await?;
            tx.close();
            wait_all_tasks_blocked().await?;
            assert_eq!(waiting(&tx2), (0, 3), "one send handle is still open");
            drop(tx2);
            wait_all_tasks_blocked().await?;
            let mut got = entries(&l);
            got.sort();
            assert_eq!(got, ["A EndOfChannel", "B EndOfChannel", "C EndOfChannel"]);
            Ok(())
        });
    }
}

#[test]
fn y7_closing_the_last_receive_handle_breaks_every_blocked_sender_and_drops_the_buffer() {
    for seed in SEEDS {
        let drops = Rc::new(RefCell::new(Vec::new()));
        let results = Rc::new(RefCell::new(Vec::new()));
        let (d, res) = (drops.clone(), results.clone());
        run_nursery(seed, move |n| async move {
            let (tx, rx) = open_memory_channel::<Tracked>(1);
            let tx2 = Rc::new(tx.clone());
            let tx = Rc::new(tx);
            tx.try_send(tracked(0, &d)).map_err(|_| "buffer should have room")?;
            for (id, t) in [(1, tx.clone()), (2, tx2.clone())] {
                let (d, res) = (d.clone(), res.clone());
                n.start_soon(async move {
                    let e = t.send(tracked(id, &d)).await.err().map(|e| (e.kind(), e.into_inner().id));
                    res.borrow_mut().push(e);
                })?;
                wait_all_tasks_blocked().await?;
            }
            let rx2 = rx.clone();
            drop(rx);
            assert_eq!(waiting(&tx), (2, 0), "one receive handle is still open");
            assert!(d.borrow().is_empty());
            drop(rx2);
            // The buffered value is dropped at once; the blocked senders
            // get theirs back.
            assert_eq!(*d.borrow(), [0]);
            assert_eq!(trio_fields(tx.statistics()), stats(0, 1, 2, 0, (0, 0)));
            wait_all_tasks_blocked().await?;
            Ok(())
        });
        let mut res = results.borrow().clone();
        res.sort_by_key(|r| r.map(|(_, id)| id));
        assert_eq!(res, [Some((SendErrorKind::Broken, 1)), Some((SendErrorKind::Broken, 2))]);
        let mut drops = drops.borrow().clone();
        drops.sort();
        assert_eq!(drops, [0, 1, 2], "every value dropped exactly once");
    }
}

#[test]
fn y7_receive_handle_clones_and_close() {
    // Trio's test_receive_channel_clone_and_close.
    let (tx, r) = open_memory_channel::<()>(10);
    let r2 = r.clone();
    let r3 = r.clone();
    tx.try_send(()).unwrap();
    r.close();
    drop(r2.clone()); // a clone that is dropped at once
    r2.close();
    assert_eq!(r.try_clone().err(), Some(ClosedResource));
    assert_eq!(r2.try_clone().err(), Some(ClosedResource));
    // Still one open receive handle.
    tx.try_send(()).unwrap();
    assert_eq!(tx.statistics().current_buffer_used, 2);
    r3.close();
    assert!(matches!(tx.try_send(()), Err(TrySendError::Broken(()))));
    assert_eq!(tx.statistics().current_buffer_used, 0);
}

// ---------------------------------------------------------------- capacities

#[test]
fn rendezvous_send_completes_only_when_a_receiver_takes_the_value() {
    for seed in SEEDS {
        let log = new_log();
        let l = log.clone();
        run_nursery(seed, move |n| async move {
            let (tx, rx) = open_memory_channel::<u32>(0);
            assert_eq!(rx.try_receive(), Err(TryReceiveError::WouldBlock));
            assert!(matches!(tx.try_send(1), Err(TrySendError::WouldBlock(1))));
            let tx = Rc::new(tx);
            for v in [1, 2] {
                let (t, l) = (tx.clone(), l.clone());
                n.start_soon(async move {
                    push(&l, format!("sending {v}"));
                    t.send(v).await.map_err(|e| e.kind()).unwrap();
                    push(&l, format!("sent {v}"));
                })?;
                wait_all_tasks_blocked().await?;
            }
            assert_eq!(entries(&l), ["sending 1", "sending 2"]);
            assert_eq!(trio_fields(tx.statistics()), stats(0, 0, 1, 1, (2, 0)));
            push(&l, "receiving");
            assert_eq!(rx.receive().await?, 1);
            wait_all_tasks_blocked().await?;
            assert_eq!(rx.receive().await?, 2);
            wait_all_tasks_blocked().await?;
            assert_eq!(rx.try_receive(), Err(TryReceiveError::WouldBlock));
            Ok(())
        });
        assert_eq!(entries(&log), ["sending 1", "sending 2", "receiving", "sent 1", "sent 2"], "seed {seed}");
    }
}

#[test]
fn rendezvous_ping_pong_keeps_order() {
    for seed in 0..3 {
        let got = run_nursery(seed, |n| async move {
            let (ping_tx, ping_rx) = open_memory_channel::<u32>(0);
            let (pong_tx, pong_rx) = open_memory_channel::<u32>(0);
            n.start_soon(async move {
                while let Ok(v) = ping_rx.receive().await {
                    pong_tx.send(v * 2).await?;
                }
                Ok::<_, BoxError>(())
            })?;
            let mut got = Vec::new();
            for i in 0..500 {
                ping_tx.send(i).await?;
                got.push(pong_rx.receive().await?);
            }
            drop(ping_tx);
            assert_eq!(pong_rx.receive().await, Err(ReceiveError::EndOfChannel));
            Ok(got)
        });
        assert_eq!(got, Some((0..500).map(|i| i * 2).collect()));
    }
}

#[test]
fn bounded_send_blocks_when_the_buffer_is_full() {
    for seed in SEEDS {
        let log = new_log();
        let l = log.clone();
        run_nursery(seed, move |n| async move {
            let (tx, rx) = open_memory_channel::<u32>(2);
            let (t, l2) = (Rc::new(tx), l.clone());
            let tx = t.clone();
            n.start_soon(async move {
                for v in 1..=4 {
                    t.send(v).await.map_err(|e| e.kind()).unwrap();
                    push(&l2, format!("sent {v}"));
                }
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(entries(&l), ["sent 1", "sent 2"]);
            assert_eq!(trio_fields(tx.statistics()), stats(2, 2, 1, 1, (1, 0)));
            assert_eq!(rx.try_receive(), Ok(1));
            // 3 moved into the freed slot at once.
            assert_eq!(trio_fields(tx.statistics()), stats(2, 2, 1, 1, (0, 0)));
            wait_all_tasks_blocked().await?;
            assert_eq!(entries(&l), ["sent 1", "sent 2", "sent 3"]);
            assert_eq!(trio_fields(tx.statistics()), stats(2, 2, 1, 1, (1, 0)));
            let rest: Vec<u32> = vec![rx.receive().await?, rx.receive().await?, rx.receive().await?];
            assert_eq!(rest, [2, 3, 4]);
            Ok(())
        });
    }
}

#[test]
fn unbounded_sends_never_block() {
    // Trio's test_inf_capacity.
    run_seeded(1, async {
        let (tx, mut rx) = open_memory_channel::<u32>(UNBOUNDED);
        for i in 0..1000 {
            tx.try_send(i)?;
        }
        for i in 1000..1010 {
            tx.send(i).await?;
        }
        assert_eq!(trio_fields(tx.statistics()), stats(1010, usize::MAX, 1, 1, (0, 0)));
        drop(tx);
        let mut got = Vec::new();
        while let Some(v) = next(&mut rx).await {
            got.push(v?);
        }
        assert_eq!(got, (0..1010).collect::<Vec<_>>());
        Ok(())
    });
}

// ---------------------------------------------------------------- checkpoints

#[test]
fn send_and_receive_report_cancelled_on_entry_and_change_nothing() {
    for seed in SEEDS {
        let log = new_log();
        let l = log.clone();
        run_nursery(seed, move |n| async move {
            let (tx, rx) = open_memory_channel::<u32>(1);
            let rx = Rc::new(rx);
            spawn_receiver(&n, "R", rx.clone(), &l)?;
            wait_all_tasks_blocked().await?;
            let scope = CancelScope::new();
            scope.cancel();
            let out = scope
                .run(async {
                    // A blocked receiver is there, but a cancelled send does
                    // nothing at all.
                    let e = tx.send(1).await.unwrap_err();
                    assert_eq!((e.kind(), e.into_inner()), (SendErrorKind::Cancelled, 1));
                    assert_eq!(waiting(&tx), (0, 1));
                    // try_send is not a checkpoint: it works here.
                    tx.try_send(2).map_err(|e| e.to_string()).unwrap();
                    tx.try_send(3).map_err(|e| e.to_string()).unwrap();
                    assert_eq!(tx.statistics().current_buffer_used, 1);
                    // A cancelled receive takes nothing, even though a value
                    // is buffered; try_receive works.
                    assert_eq!(rx.receive().await, Err(ReceiveError::Cancelled));
                    assert_eq!(tx.statistics().current_buffer_used, 1);
                    assert_eq!(rx.try_receive(), Ok(3));
                    Err::<(), _>(Cancelled)
                })
                .await;
            assert_eq!(out, Ok(None));
            Ok(())
        });
        assert_eq!(entries(&log), ["R got 2"]);
    }
}

/// Sends `first..first + n` with operations that must complete at once,
/// each polled once in the current step.
async fn send_at_once(tx: &MemorySendChannel<u32>, first: u32, n: u32) {
    for v in first..first + n {
        let mut f = tx.send(v);
        assert!(matches!(poll_once(&mut f).await, Poll::Ready(Ok(()))), "send of {v} did not complete at once");
    }
}

#[test]
fn operations_completing_at_once_yield_only_when_another_task_is_runnable_and_the_budget_is_spent() {
    run_nursery(1, |n| async move {
        let (tx, rx) = open_memory_channel::<u32>(4 * CHANNEL_BUDGET as usize);
        // Nobody else is runnable: no yield past the budget (up to the I/O
        // budget of 32, after which the scheduler polls epoll).
        send_at_once(&tx, 0, CHANNEL_BUDGET + 4).await;
        for v in 0..CHANNEL_BUDGET + 4 {
            assert_eq!(rx.try_receive(), Ok(v));
        }
        // Another task is runnable: the first CHANNEL_BUDGET - 1 operations
        // of this step complete without yielding; the next one completes,
        // then yields.
        n.start_soon(async {})?;
        send_at_once(&tx, 1, CHANNEL_BUDGET - 1).await;
        let mut f = tx.send(CHANNEL_BUDGET);
        assert!(poll_once(&mut f).await.is_pending());
        let sent = CHANNEL_BUDGET as usize;
        assert_eq!(tx.statistics().current_buffer_used, sent, "sent before yielding");
        assert_eq!(f.await.map_err(|e| e.kind()), Ok(()));
        // A new step: a fresh budget, receives count the same way.
        n.start_soon(async {})?;
        for v in 1..CHANNEL_BUDGET {
            let mut f = rx.receive();
            assert_eq!(poll_once(&mut f).await, Poll::Ready(Ok(v)));
        }
        let mut f = rx.receive();
        assert!(poll_once(&mut f).await.is_pending());
        assert_eq!(tx.statistics().current_buffer_used, 0, "taken before yielding");
        assert_eq!(f.await, Ok(CHANNEL_BUDGET));
        Ok(())
    })
    .unwrap();
}

#[test]
fn the_schedule_point_after_completion_is_not_a_cancel_point() {
    run_nursery(1, |n| async move {
        let (tx, rx) = open_memory_channel::<u32>(2 * CHANNEL_BUDGET as usize);
        let scope = CancelScope::new();
        let out = scope
            .run(async {
                n.start_soon(async {}).map_err(|_| Cancelled)?;
                send_at_once(&tx, 1, CHANNEL_BUDGET - 1).await;
                let mut f = tx.send(CHANNEL_BUDGET);
                assert!(poll_once(&mut f).await.is_pending());
                scope.cancel();
                assert_eq!(f.await.map_err(|e| e.kind()), Ok(()), "the value was sent: no Cancelled");
                checkpoint().await?;
                Ok::<_, Cancelled>(())
            })
            .await;
        assert_eq!(out, Ok(None));
        assert!(scope.cancelled_caught());
        let scope = CancelScope::new();
        let out = scope
            .run(async {
                n.start_soon(async {}).map_err(|_| Cancelled)?;
                for v in 1..CHANNEL_BUDGET {
                    let mut f = rx.receive();
                    assert_eq!(poll_once(&mut f).await, Poll::Ready(Ok(v)));
                }
                let mut f = rx.receive();
                assert!(poll_once(&mut f).await.is_pending());
                scope.cancel();
                assert_eq!(f.await, Ok(CHANNEL_BUDGET), "the value was taken: no Cancelled");
                checkpoint().await?;
                Ok::<_, Cancelled>(())
            })
            .await;
        assert_eq!(out, Ok(None));
        assert!(scope.cancelled_caught());
        Ok(())
    })
    .unwrap();
}

#[test]
fn cancelled_errors_are_caught_by_their_scope_after_boxing() {
    run_seeded(1, async {
        let (tx, rx) = open_memory_channel::<u32>(0);
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope
            .run(async {
                tx.send(1).await?;
                Ok::<_, BoxError>(())
            })
            .await;
        assert!(matches!(out, Ok(None)));
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope
            .run(async {
                rx.receive().await?;
                Ok::<_, BoxError>(())
            })
            .await;
        assert!(matches!(out, Ok(None)));
        // And the classification works on the bare errors too.
        assert!(is_cancelled_error(&ReceiveError::Cancelled));
        assert!(!is_cancelled_error(&ReceiveError::EndOfChannel));
        assert!(!is_cancelled_error(&ReceiveError::Closed));
        Ok(())
    });
}

// ---------------------------------------------------------------- cancelling blocked operations

#[test]
fn cancelling_a_blocked_sender_returns_its_value_and_leaves_the_queue_in_order() {
    for cap in [0, 1] {
        for seed in SEEDS {
            let log = new_log();
            let l = log.clone();
            run_nursery(seed, move |n| async move {
                let (tx, rx) = open_memory_channel::<u32>(cap);
                let tx = Rc::new(tx);
                for v in 0..cap as u32 {
                    tx.try_send(100 + v)?;
                }
                let mut scopes = Vec::new();
                for (name, v) in [("S1", 1), ("S2", 2), ("S3", 3)] {
                    let scope = CancelScope::new();
                    let (s, t, l) = (scope.clone(), tx.clone(), l.clone());
                    n.start_soon(async move {
                        let out = s
                            .run(async {
                                match t.send(v).await {
                                    Ok(()) => {
                                        push(&l, format!("{name} sent"));
                                        Ok(())
                                    }
                                    Err(e) if e.is_cancelled() => {
                                        push(&l, format!("{name} cancelled, got back {}", e.into_inner()));
                                        Err(Cancelled)
                                    }
                                    Err(e) => panic!("{e}"),
                                }
                            })
                            .await;
                        assert!(out.is_ok());
                    })?;
                    scopes.push(scope);
                    wait_all_tasks_blocked().await?;
                }
                scopes[1].cancel();
                wait_all_tasks_blocked().await?;
                assert_eq!(entries(&l), ["S2 cancelled, got back 2"]);
                assert_eq!(waiting(&tx), (2, 0));
                let mut got = Vec::new();
                for _ in 0..cap + 2 {
                    got.push(rx.receive().await?);
                }
                let mut expected: Vec<u32> = (0..cap as u32).map(|v| 100 + v).collect();
                expected.extend([1, 3]);
                assert_eq!(got, expected);
                wait_all_tasks_blocked().await?;
                assert_eq!(trio_fields(tx.statistics()), stats(0, cap, 1, 1, (0, 0)));
                // Still usable by others.
                spawn_sender(&n, "S4", tx.clone(), 4, &l)?;
                assert_eq!(rx.receive().await?, 4);
                Ok(())
            });
            let mut log = entries(&log);
            log.sort();
            assert_eq!(log, ["S1 sent", "S2 cancelled, got back 2", "S3 sent", "S4 sent"]);
        }
    }
}

#[test]
fn cancelling_a_blocked_receiver_takes_nothing_and_leaves_the_queue_in_order() {
    for seed in SEEDS {
        let log = new_log();
        let l = log.clone();
        run_nursery(seed, move |n| async move {
            let (tx, rx) = open_memory_channel::<u32>(0);
            let rx = Rc::new(rx);
            let mut scopes = Vec::new();
            for name in ["A", "B", "C"] {
                let scope = CancelScope::new();
                let (s, r, l) = (scope.clone(), rx.clone(), l.clone());
                n.start_soon(async move {
                    let out = s.run(r.receive()).await;
                    push(&l, format!("{name} {out:?}"));
                })?;
                scopes.push(scope);
                wait_all_tasks_blocked().await?;
            }
            scopes[1].cancel();
            wait_all_tasks_blocked().await?;
            assert_eq!(waiting(&tx), (0, 2));
            tx.send(1).await?;
            tx.send(2).await?;
            wait_all_tasks_blocked().await?;
            assert_eq!(trio_fields(tx.statistics()), stats(0, 0, 1, 1, (0, 0)));
            Ok(())
        });
        let mut log = entries(&log);
        log.sort();
        assert_eq!(log, ["A Ok(Some(1))", "B Ok(None)", "C Ok(Some(2))"], "seed {seed}");
    }
}

#[test]
fn dropping_a_blocked_send_withdraws_it_and_drops_its_value() {
    run_seeded(1, async {
        let drops = Rc::new(RefCell::new(Vec::new()));
        let (tx, rx) = open_memory_channel::<Tracked>(0);
        let mut f = tx.send(tracked(1, &drops));
        assert!(poll_once(&mut f).await.is_pending());
        assert_eq!(waiting(&tx), (1, 0));
        drop(f);
        assert_eq!(waiting(&tx), (0, 0));
        assert_eq!(*drops.borrow(), [1]);
        assert!(matches!(rx.try_receive(), Err(TryReceiveError::WouldBlock)));
        // A send dropped after a receiver took its value changes nothing.
        let mut f = tx.send(tracked(2, &drops));
        assert!(poll_once(&mut f).await.is_pending());
        let v = rx.try_receive().map_err(|e| e.to_string())?;
        drop(f);
        assert_eq!(v.id, 2);
        assert_eq!(*drops.borrow(), [1]);
        Ok(())
    });
}

// ---------------------------------------------------------------- clone, statistics, drop

#[test]
fn clones_count_while_open_and_a_clone_of_a_closed_handle_is_closed() {
    let (tx, rx) = open_memory_channel::<u32>(0);
    let tx2 = tx.clone();
    let rx2 = rx.try_clone().unwrap();
    assert_eq!(trio_fields(tx.statistics()), stats(0, 0, 2, 2, (0, 0)));
    tx2.close();
    let tx3 = tx2.clone();
    assert!(tx3.is_closed());
    assert_eq!(tx2.try_clone().err(), Some(ClosedResource));
    assert_eq!(tx.statistics().open_send_channels, 1);
    drop(tx3); // dropping a closed clone changes nothing
    assert_eq!(tx.statistics().open_send_channels, 1);
    rx2.close();
    let rx3 = rx2.clone();
    assert!(rx3.is_closed());
    assert_eq!(rx3.try_receive(), Err(TryReceiveError::Closed));
    assert_eq!(rx.statistics().open_receive_channels, 1);
    // A clone of an open handle sends and receives like the original.
    let tx4 = tx.clone();
    let rx4 = rx.clone();
    drop(tx);
    drop(rx);
    assert_eq!(trio_fields(tx4.statistics()), stats(0, 0, 1, 1, (0, 0)));
    assert!(matches!(tx4.try_send(1), Err(TrySendError::WouldBlock(1))));
    assert_eq!(rx4.try_receive(), Err(TryReceiveError::WouldBlock));
}

#[test]
fn statistics_at_each_step() {
    // Trio's test_statistics.
    run_seeded(1, async {
        let (tx, rx) = open_memory_channel::<()>(2);
        assert_eq!(tx.statistics(), rx.statistics());
        assert_eq!(trio_fields(tx.statistics()), stats(0, 2, 1, 1, (0, 0)));
        tx.try_send(())?;
        assert_eq!(tx.statistics().current_buffer_used, 1);
        let tx2 = tx.clone();
        assert_eq!(tx.statistics().open_send_channels, 2);
        tx.close();
        assert_eq!(tx2.statistics().open_send_channels, 1);
        let rx2 = rx.clone();
        assert_eq!(tx2.statistics().open_receive_channels, 2);
        rx2.close();
        assert_eq!(tx2.statistics().open_receive_channels, 1);

        let tx2 = Rc::new(tx2);
        let out = open_nursery(|n| async move {
            tx2.try_send(())?; // fill the buffer
            assert_eq!(tx2.statistics().current_buffer_used, 2);
            for _ in 0..2 {
                let t = tx2.clone();
                n.start_soon(async move { t.send(()).await })?;
            }
            wait_all_tasks_blocked().await?;
            assert_eq!(tx2.statistics().tasks_waiting_send, 2);
            n.cancel_scope().cancel();
            Ok::<_, BoxError>(tx2)
        })
        .await?;
        let tx2 = out.ok_or("the nursery body finished")?;
        assert_eq!(tx2.statistics().tasks_waiting_send, 0);
        while rx.try_receive().is_ok() {}
        assert_eq!(trio_fields(tx2.statistics()), stats(0, 2, 1, 1, (0, 0)));

        let rx = Rc::new(rx);
        let (r, r2) = (rx.clone(), rx.clone());
        open_nursery(|n| async move {
            n.start_soon(async move { r.receive().await.map(drop) })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(r2.statistics().tasks_waiting_receive, 1);
            n.cancel_scope().cancel();
            Ok::<_, BoxError>(())
        })
        .await?;
        assert_eq!(trio_fields(tx2.statistics()), stats(0, 2, 1, 1, (0, 0)));
        Ok(())
    });
}

#[test]
fn dropping_the_handles_closes_them() {
    let (tx, rx) = open_memory_channel::<u32>(1);
    tx.try_send(1).unwrap();
    drop(tx);
    assert_eq!(rx.try_receive(), Ok(1));
    assert_eq!(rx.try_receive(), Err(TryReceiveError::EndOfChannel));
    let (tx, rx) = open_memory_channel::<u32>(1);
    drop(rx);
    assert!(matches!(tx.try_send(1), Err(TrySendError::Broken(1))));
    assert_eq!(trio_fields(tx.statistics()), stats(0, 1, 1, 0, (0, 0)));
}

#[test]
fn values_need_not_be_clone_or_debug_and_are_dropped_exactly_once() {
    let drops = Rc::new(RefCell::new(Vec::new()));
    run_seeded(1, async {
        let (tx, rx) = open_memory_channel::<Tracked>(2);
        tx.send(tracked(1, &drops)).await.map_err(|e| e.to_string())?;
        tx.try_send(tracked(2, &drops)).map_err(|e| e.to_string())?;
        let e = tx.try_send(tracked(3, &drops)).unwrap_err();
        // Debug without T: Debug.
        assert_eq!(format!("{e:?}"), "WouldBlock(..)");
        drop(e);
        let scope = CancelScope::new();
        scope.cancel();
        let e = scope.run(async { Ok::<_, Cancelled>(tx.send(tracked(4, &drops)).await) }).await;
        let e = e.map(|r| r.map(|r| r.unwrap_err()));
        let Ok(Some(e)) = e else { panic!("the scope body should finish") };
        assert_eq!(format!("{e:?}"), "SendError { kind: Cancelled, .. }");
        assert_eq!(e.value().id, 4);
        drop(e);
        assert_eq!(rx.receive().await.map(|v| v.id), Ok(1));
        assert_eq!(*drops.borrow(), [3, 4, 1]);
        Ok(())
    });
    // 2 was still buffered when the channel went away.
    assert_eq!(*drops.borrow(), [3, 4, 1, 2]);
}

/// A value holding a handle of its own channel.
struct Holder(#[allow(dead_code)] MemorySendChannel<Holder>);

#[test]
fn a_value_whose_drop_uses_the_channel_is_dropped_outside_the_channel_borrow() {
    let (tx, rx) = open_memory_channel::<Holder>(UNBOUNDED);
    tx.try_send(Holder(tx.clone())).map_err(|_| "send").unwrap();
    tx.try_send(Holder(tx.clone())).map_err(|_| "send").unwrap();
    assert_eq!(tx.statistics().open_send_channels, 3);
    // Dropping the buffer closes the held clones: no double borrow.
    drop(rx);
    assert_eq!(tx.statistics().open_send_channels, 1);
    assert_eq!(tx.statistics().current_buffer_used, 0);
}

// ---------------------------------------------------------------- Stream

#[test]
fn stream_yields_every_value_then_ends() {
    // Trio's test_channel_multiple_producers, through the Stream impl.
    for seed in SEEDS {
        let got = run_nursery(seed, |n| async move {
            let (tx, mut rx) = open_memory_channel::<u32>(0);
            for i in 0..10 {
                let tx = tx.clone();
                n.start_soon(async move {
                    for j in 3 * i..3 * (i + 1) {
                        tx.send(j).await?;
                    }
                    Ok::<_, BoxError>(())
                })?;
            }
            drop(tx);
            let mut got = Vec::new();
            while let Some(v) = next(&mut rx).await {
                got.push(v?);
            }
            // Ended for good.
            assert!(next(&mut rx).await.is_none());
            got.sort();
            Ok(got)
        });
        assert_eq!(got, Some((0..30).collect()));
    }
}

#[test]
fn stream_reports_cancellation_as_an_error_not_as_the_end() {
    run_seeded(1, async {
        let (tx, mut rx) = open_memory_channel::<u32>(1);
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope.run(async { Ok::<_, Cancelled>(next(&mut rx).await) }).await;
        assert_eq!(out, Ok(Some(Some(Err(ReceiveError::Cancelled)))));
        // Blocked, then cancelled by a timeout.
        let out = move_on_after(Duration::from_secs(3), async { Ok::<_, Cancelled>(next(&mut rx).await) }).await;
        assert_eq!(out, Ok(Some(Some(Err(ReceiveError::Cancelled)))));
        assert_eq!(now_secs(), 3.0);
        assert_eq!(waiting(&tx), (0, 0));
        // The stream goes on afterwards.
        tx.send(4).await?;
        assert_eq!(next(&mut rx).await, Some(Ok(4)));
        Ok(())
    });
}

#[test]
fn stream_keeps_a_value_handed_to_it_while_nobody_polls() {
    run_seeded(1, async {
        let (tx, mut rx) = open_memory_channel::<u32>(0);
        assert!(poll_next_once(&mut rx).await.is_pending());
        assert_eq!(waiting(&tx), (0, 1));
        tx.try_send(1)?; // handed to the stream's queued receive
                         // A plain receive on the same handle does not get it.
        assert_eq!(rx.try_receive(), Err(TryReceiveError::WouldBlock));
        // Cancelled or not, the next poll returns it.
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope.run(async { Ok::<_, Cancelled>(next(&mut rx).await) }).await;
        assert_eq!(out, Ok(Some(Some(Ok(1)))));
        Ok(())
    });
}

#[test]
fn dropping_a_handle_passes_on_the_value_its_stream_was_handed() {
    for seed in SEEDS {
        let log = new_log();
        let l = log.clone();
        run_nursery(seed, move |n| async move {
            let (tx, mut rx) = open_memory_channel::<u32>(0);
            let other = Rc::new(rx.clone());
            assert!(poll_next_once(&mut rx).await.is_pending());
            spawn_receiver(&n, "other", other.clone(), &l)?;
            wait_all_tasks_blocked().await?;
            tx.try_send(1)?; // to the stream (the oldest)
            drop(rx);
            wait_all_tasks_blocked().await?;
            assert_eq!(trio_fields(tx.statistics()), stats(0, 0, 1, 1, (0, 0)));
            Ok(())
        });
        assert_eq!(entries(&log), ["other got 1"]);
    }
}

#[test]
fn stream_of_a_closed_handle_yields_closed() {
    run_seeded(1, async {
        let (tx, mut rx) = open_memory_channel::<u32>(0);
        assert!(poll_next_once(&mut rx).await.is_pending());
        assert_eq!(waiting(&tx), (0, 1));
        // Closing the handle wakes the stream's queued receive with Closed.
        rx.close();
        assert_eq!(waiting(&tx), (0, 0));
        assert_eq!(next(&mut rx).await, Some(Err(ReceiveError::Closed)));
        assert_eq!(next(&mut rx).await, Some(Err(ReceiveError::Closed)));
        Ok(())
    });
}

// ---------------------------------------------------------------- misc

#[test]
fn timeouts_on_blocked_operations_fire_at_the_exact_virtual_instant() {
    run_seeded(1, async {
        let (tx, rx) = open_memory_channel::<u32>(0);
        let start = current_time();
        let r = move_on_after(Duration::from_millis(1500), async {
            match tx.send(1).await {
                Err(e) if e.is_cancelled() => Err::<(), _>(Cancelled),
                other => panic!("{other:?}"),
            }
        })
        .await;
        assert_eq!(r, Ok(None::<()>));
        assert_eq!(current_time(), start + Duration::from_millis(1500));
        let r = move_on_after(Duration::from_millis(500), rx.receive()).await;
        assert_eq!(r, Ok(None));
        assert_eq!(current_time(), Instant::ZERO + Duration::from_secs(2));
        assert_eq!(trio_fields(tx.statistics()), stats(0, 0, 1, 1, (0, 0)));
        Ok(())
    });
}

#[test]
fn errors_display_and_debug_without_t_debug() {
    let (tx, rx) = open_memory_channel::<Tracked>(0);
    let drops = Rc::new(RefCell::new(Vec::new()));
    rx.close();
    let e = tx.try_send(tracked(1, &drops)).unwrap_err();
    assert_eq!(format!("{e:?}"), "Broken(..)");
    assert!(e.to_string().contains("every receive handle"), "{e}");
    assert_eq!(
        ReceiveError::EndOfChannel.to_string(),
        "end of channel: every send handle was closed and the buffer is empty"
    );
    assert_eq!(ReceiveError::from(Cancelled), ReceiveError::Cancelled);
    assert_eq!(format!("{:?}", e.into_inner().id), "1");
}
